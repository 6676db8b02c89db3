// Opening a WebGPU device: navigator.gpu in a browser, the `webgpu` package (Dawn) in Node.
// The adapter's own limits are asked for (a device otherwise gets the small defaults), and an
// adapter without what the kernels need is refused with an error that names what is missing.

import { BackendUnavailableError } from '../../core/errors.js';

/** What the kernels need beyond core WebGPU's defaults. */
export const REQUIRED_LIMITS = {
  /**
   * WebGPU's default, which lavapipe also reports. A weight matrix larger than the adapter's
   * binding is split into slices of rows (llama-3.2-1b's 525 MB F16 embedding: 5 slices); any
   * other buffer (activations, a layer's cache) must fit one binding and is refused by name otherwise.
   */
  maxStorageBufferBindingSize: 128 * 1024 * 1024,
  maxComputeWorkgroupStorageSize: 16 * 1024,
  maxComputeInvocationsPerWorkgroup: 64,
  maxStorageBuffersPerShaderStage: 8,
} as const;

export interface GpuContext {
  readonly device: GPUDevice;
  /** The adapter as it describes itself (vendor, architecture, description). */
  readonly adapterName: string;
  /** Whether the device has 'shader-f16' (F16 arithmetic in shaders; the kernels read F16 without it too). */
  readonly hasF16: boolean;
  readonly limits: GPUSupportedLimits;
}

/**
 * Dawn's GPU object in Node: it must stay reachable for the life of the process (the process
 * crashes when it is collected while a device lives), so it is kept here once made.
 */
let nodeGpu: GPU | null = null;

async function gpuEntry(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (nodeGpu) return nodeGpu;
  let mod: { create(options: string[]): GPU; globals: Record<string, unknown> };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    throw new BackendUnavailableError(
      `WebGPU is not available in this Node: the \`webgpu\` package could not be loaded (${(e as Error).message}). Install it with \`npm install webgpu\`.`,
    );
  }
  // GPUBufferUsage, GPUMapMode, GPUShaderStage: globals in a browser, exported by the package in Node.
  for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  nodeGpu = mod.create([]);
  return nodeGpu;
}

/** Open a device on the first adapter that has what the kernels need; BackendUnavailableError otherwise. */
export async function openGpu(): Promise<GpuContext> {
  const gpu = await gpuEntry();
  const adapter = await gpu.requestAdapter();
  if (!adapter) {
    throw new BackendUnavailableError(
      'no WebGPU adapter was found. On Linux without a GPU, install a Vulkan driver new enough for Dawn ' +
        '(Mesa lavapipe from Debian bookworm-backports: apt-get install -t bookworm-backports mesa-vulkan-drivers, plus libvulkan1).',
    );
  }
  const missing: string[] = [];
  const requiredLimits: Record<string, number> = {};
  for (const [name, need] of Object.entries(REQUIRED_LIMITS)) {
    const have = (adapter.limits as unknown as Record<string, number>)[name]!;
    if (!(have >= need)) missing.push(`${name} ${have} (need ${need})`);
    requiredLimits[name] = have;
  }
  requiredLimits['maxBufferSize'] = adapter.limits.maxBufferSize;
  if (missing.length > 0) {
    throw new BackendUnavailableError(`the WebGPU adapter lacks limits the kernels need: ${missing.join(', ')}. Use another adapter or --backend cpu.`);
  }
  const hasF16 = adapter.features.has('shader-f16');
  const device = await adapter.requestDevice({ requiredFeatures: hasF16 ? ['shader-f16'] : [], requiredLimits });
  const info = adapter.info;
  const adapterName = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  return { device, adapterName, hasF16, limits: device.limits };
}
