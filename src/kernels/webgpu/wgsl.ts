// The WGSL compute kernels of the forward pass. Storage is read as the engine lays it out on the
// CPU: F32 as f32, F16/BF16 and the 4-bit codes packed in u32 words (WGSL has no 16- or 8-bit
// storage without extensions), so every weight and cache format uploads unchanged.
// Every kernel takes its sizes from a uniform `P` of 4-byte fields (kernels.ts writes them).

/**
 * Readers of the packed u32 binding `name` (a function each, as WGSL passes no pointers to
 * storage without an extension): half_NAME(e, dtype), element e as f32 from F16 (dtype 1) or
 * BF16 (2); byte_NAME(b), byte b.
 */
function packed(name: string): string {
  return /* wgsl */ `
fn half_${name}(e: u32, dtype: u32) -> f32 {
  let w = ${name}[e >> 1u];
  if (dtype == 1u) { return unpack2x16float(w)[e & 1u]; }
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (e & 1u) == 1u));
}
fn byte_${name}(b: u32) -> u32 {
  return (${name}[b >> 2u] >> (8u * (b & 3u))) & 0xffu;
}
`;
}

/**
 * weight(r, j): element j of row r of a matrix in any weight format (dtype 0-4 as MATMUL's), read
 * from the F32 binding `f`, the packed u32 binding `h` (with packed(h)) and `metadata` (F16 scales
 * [rows, nb], then for 4 bits the minimums [rows, nb]); `cols` and `rows` are WGSL expressions.
 */
function weightReader(f: string, h: string, cols: string, rows: string): string {
  return /* wgsl */ `
fn weight(r: u32, j: u32) -> f32 {
  if (p.dtype == 0u) { return ${f}[r * ${cols} + j]; }
  if (p.dtype <= 2u) { return half_${h}(r * ${cols} + j, p.dtype); }
  let nb = (${cols} + 31u) / 32u;
  let blk = r * nb + (j >> 5u);
  let i = j & 31u;
  let scale = unpack2x16float(metadata[blk >> 1u])[blk & 1u];
  if (p.dtype == 4u) {
    // the byte's sign extended: bits 24-31 of an i32 shifted back down
    return f32(bitcast<i32>(byte_${h}(blk * 32u + i) << 24u) >> 24u) * scale;
  }
  let byte = byte_${h}(blk * 16u + (i & 15u));
  let q = select(byte & 15u, byte >> 4u, i >= 16u);
  let mn = unpack2x16float(metadata[(blk + ${rows} * nb) >> 1u])[(blk + ${rows} * nb) & 1u];
  return f32(q) * scale + mn;
}
`;
}

/**
 * out[t, row0 + r] = Σ_j W[r, j] · x[t, j] (or += it, with accumulate), out rows of out_rows: W
 * is rows [row0, row0 + rows) of a matrix split by rows where it exceeds one binding. A workgroup of 64 takes one row and up to 4 tokens; each
 * thread strides over the columns, then the partial sums are reduced in workgroup memory.
 * W: F32 (dtype 0), F16 (1), BF16 (2), 4-bit blocks of 32 (3: codes [rows, nb, 16] bytes, F16
 * scales and minimums [rows, nb], w = q·scale + min) or 8-bit blocks of 32 (4: signed codes
 * [rows, nb, 32], F16 scales [rows, nb], w = q·scale), as quant/format.ts.
 */
export const MATMUL = /* wgsl */ `
struct P { rows: u32, cols: u32, n: u32, dtype: u32, row_groups: u32, accumulate: u32, out_rows: u32, row0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> wf: array<f32>;
@group(0) @binding(4) var<storage, read> wh: array<u32>;
@group(0) @binding(5) var<storage, read> metadata: array<u32>;
${packed('wh')}
var<workgroup> part: array<f32, 256>;

${weightReader('wf', 'wh', 'p.cols', 'p.rows')}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let r = wg.x + wg.y * p.row_groups;
  let t0 = wg.z * 4u;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  if (r < p.rows) {
    for (var j = tid; j < p.cols; j += 64u) {
      let w = weight(r, j);
      for (var k = 0u; k < 4u; k++) {
        if (t0 + k < p.n) { acc[k] += w * x[(t0 + k) * p.cols + j]; }
      }
    }
  }
  for (var k = 0u; k < 4u; k++) { part[k * 64u + tid] = acc[k]; }
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (tid < s) {
      for (var k = 0u; k < 4u; k++) { part[k * 64u + tid] += part[k * 64u + tid + s]; }
    }
    workgroupBarrier();
  }
  if (tid < 4u && r < p.rows && t0 + tid < p.n) {
    let o = (t0 + tid) * p.out_rows + p.row0 + r;
    // accumulate: out += the product (the residual add, as ELEMENTWISE's a += b would do it after)
    out[o] = select(part[tid * 64u], out[o] + part[tid * 64u], p.accumulate == 1u);
  }
}
`;

/**
 * y[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight, one workgroup of 64 per row; y is x itself
 * (to_out 0) or out (1: x is left as it was, as the residual stream must be).
 */
export const RMSNORM = /* wgsl */ `
struct P { rows: u32, dim: u32, eps: f32, to_out: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let o = wg.x * p.dim;
  var ss = 0.0;
  for (var j = tid; j < p.dim; j += 64u) { ss += x[o + j] * x[o + j]; }
  part[tid] = ss;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (tid < s) { part[tid] += part[tid + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(part[0] / f32(p.dim) + p.eps);
  if (p.to_out == 1u) {
    for (var j = tid; j < p.dim; j += 64u) { out[o + j] = weight[j] * (x[o + j] * inv); }
  } else {
    for (var j = tid; j < p.dim; j += 64u) { x[o + j] = weight[j] * (x[o + j] * inv); }
  }
}
`;

/**
 * RoPE in place on x[n, heads, head_dim] and, in the same dispatch, on x2[n, heads2, head_dim]
 * (the queries and the keys; heads2 0 for one tensor), token t at position start + t; cos/sin
 * [positions, head_dim / 2]; pairs 0 rotates (i, i + half), 1 rotates (2i, 2i + 1) (RopeLayout).
 * One invocation per rotated pair.
 */
export const ROPE = /* wgsl */ `
struct P { n: u32, heads: u32, head_dim: u32, start: u32, pairs: u32, heads2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> cosv: array<f32>;
@group(0) @binding(3) var<storage, read> sinv: array<f32>;
@group(0) @binding(4) var<storage, read_write> x2: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let half = p.head_dim / 2u;
  let all = p.heads + p.heads2;
  let i = id.x + id.y * nw.x * 64u;
  if (i >= p.n * all * half) { return; }
  let j = i % half;
  let t = i / half / all;
  let h = (i / half) % all;
  let second = h >= p.heads;
  let heads = select(p.heads, p.heads2, second);
  let o = (t * heads + select(h, h - p.heads, second)) * p.head_dim;
  let c = cosv[(p.start + t) * half + j];
  let s = sinv[(p.start + t) * half + j];
  let ia = select(o + 2u * j, o + j, p.pairs == 0u);
  let ib = select(o + 2u * j + 1u, o + j + half, p.pairs == 0u);
  if (second) {
    let a = x2[ia];
    let b = x2[ib];
    x2[ia] = a * c - b * s;
    x2[ib] = b * c + a * s;
  } else {
    let a = x[ia];
    let b = x[ib];
    x[ia] = a * c - b * s;
    x[ib] = b * c + a * s;
  }
}
`;

/**
 * Elementwise ops over n elements, one invocation each: op 0 gate = silu(gate) · up; op 1
 * a += b; op 2 a[r, :] += b (a bias of `dim`).
 */
export const ELEMENTWISE = /* wgsl */ `
struct P { n: u32, op: u32, dim: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = id.x + id.y * nw.x * 64u;
  if (i >= p.n) { return; }
  if (p.op == 0u) {
    let g = a[i];
    a[i] = g / (1.0 + exp(-g)) * b[i];
  } else if (p.op == 1u) {
    a[i] += b[i];
  } else {
    a[i] += b[i % p.dim];
  }
}
`;

/**
 * out[t, :] = row tokens[t] of the table (F32, F16, BF16, 4- or 8-bit blocks: MATMUL's dtypes
 * 0-4), for the tokens whose row is in this slice of the table, rows [row0, row0 + rows).
 */
export const EMBED = /* wgsl */ `
struct P { n: u32, dim: u32, dtype: u32, row0: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> tf: array<f32>;
@group(0) @binding(4) var<storage, read> th: array<u32>;
@group(0) @binding(5) var<storage, read> metadata: array<u32>;
${packed('th')}

${weightReader('tf', 'th', 'p.dim', 'p.rows')}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = id.x + id.y * nw.x * 64u;
  if (i >= p.n * p.dim) { return; }
  let token = tokens[i / p.dim];
  // This dispatch holds rows [row0, row0 + rows) of the table; other tokens are another's.
  if (token < p.row0 || token >= p.row0 + p.rows) { return; }
  out[i] = weight(token - p.row0, i % p.dim);
}
`;

/**
 * Causal attention of n queries (query i at position start + i) over one layer's cache, split
 * over the context (flash-decoding): ATTENTION writes, for each chunk of `chunk` positions, each
 * query-head's partial softmax (running max m, sum l, and the weighted sum of values);
 * ATTENTION_MERGE combines the chunks. Positions below a query's quantization boundary read the
 * planes at 4 or 8 bits (hier = 1), the others the full-precision rows (F32, or F16 with
 * fp_dtype 1; row t - fp_start). GQA: head h reads KV head h / (heads / kv_heads).
 *
 * A workgroup takes one chunk of one KV head and up to qg query-heads (every query of the pass
 * times the heads sharing that KV head), and decodes each key and value row of the chunk once,
 * into workgroup memory, for all of them: the verify pass of γ + 1 queries reads the cache once,
 * as a plain step does. Tiles of `tile` positions; a tile where the pass's queries disagree on
 * the boundary is read twice (planes, then rows), each query taking only its own.
 * Batch invariance: a query's sums run over the same chunks and tiles in the same order whatever
 * the other queries of its pass are, and positions it cannot see leave its state bit for bit as it
 * was; so QuantSpec's verify gives exactly the plain step's numbers.
 * Scores: (q · k) · scale. head_dim at most 256; qg · head_dim <= 2048, tile · head_dim <= 1024,
 * qg · tile <= 512 (kernels.ts picks them).
 */
export const ATTENTION = /* wgsl */ `
struct P {
  n: u32, start: u32, heads: u32, kv_heads: u32, head_dim: u32, window: u32, fp_start: u32, kv_dim: u32,
  fp_dtype: u32, hier: u32, bits: u32, key_group: u32, value_group: u32, scale: f32, plane_pos: u32,
  chunk: u32, qg: u32, tile: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
// [chunks, n · heads, head_dim + 2]: the weighted value sums, then m and l
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<storage, read> fpk: array<u32>;
@group(0) @binding(4) var<storage, read> fpv: array<u32>;
// planes: [upper keys | lower keys | upper values | lower values] bytes, each [plane_pos, kv_dim / 2]
@group(0) @binding(5) var<storage, read> planes: array<u32>;
// F16 metadata: key scales and key mins, each [plane_pos / key_group, kv_dim]; then value scales
// and value mins, each [plane_pos, kv_dim / value_group] (kv/layout.ts KvPlanes, concatenated)
@group(0) @binding(6) var<storage, read> metadata: array<u32>;
${packed('fpk')}
${packed('fpv')}
${packed('planes')}
var<workgroup> qs: array<f32, 2048>; // [qg, head_dim]
var<workgroup> kv: array<f32, 1024>; // [tile, head_dim] keys, then values
var<workgroup> ps: array<f32, 512>; // [qg, tile] scores, then weights
var<workgroup> ms: array<f32, 64>;
var<workgroup> ls: array<f32, 64>;
var<workgroup> alphas: array<f32, 64>;

const NEG: f32 = -3.0e38;

fn quant_boundary(pos: u32, g: u32) -> u32 {
  if (pos >= 2u * g) { return g * ((pos - g) / g); }
  return 0u;
}

fn nibble(plane: u32, t: u32, c: u32, plane_bytes: u32) -> u32 {
  let b = byte_planes(plane * plane_bytes + t * (p.kv_dim / 2u) + (c >> 1u));
  return select(b & 15u, b >> 4u, (c & 1u) == 1u);
}

fn meta_at(e: u32) -> f32 { return unpack2x16float(metadata[e >> 1u])[e & 1u]; }

// Key (which 0) or value (which 1) channel c of position t, from the planes (src 0) or the rows (1).
fn kv_at(which: u32, t: u32, c: u32, src: u32) -> f32 {
  if (src == 0u) {
    let plane_pos = p.plane_pos;
    let plane_bytes = plane_pos * (p.kv_dim / 2u);
    var s: f32;
    var mn: f32;
    if (which == 0u) {
      let key_meta = (plane_pos / p.key_group) * p.kv_dim;
      let m = (t / p.key_group) * p.kv_dim + c;
      s = meta_at(m);
      mn = meta_at(key_meta + m);
    } else {
      let groups = p.kv_dim / p.value_group;
      let base = 2u * (plane_pos / p.key_group) * p.kv_dim;
      let m = t * groups + c / p.value_group;
      s = meta_at(base + m);
      mn = meta_at(base + plane_pos * groups + m);
    }
    var v = mn + f32(nibble(2u * which, t, c, plane_bytes)) * s;
    if (p.bits == 8u) { v += (f32(nibble(2u * which + 1u, t, c, plane_bytes)) - 8.0) * (s / 16.0); }
    return v;
  }
  let e = (t - p.fp_start) * p.kv_dim + c;
  if (p.fp_dtype == 0u) {
    return bitcast<f32>(select(fpv[e], fpk[e], which == 0u));
  }
  return select(half_fpv(e, 1u), half_fpk(e, 1u), which == 0u);
}

// The boundary of query i: positions below it come from the planes.
fn boundary(i: u32) -> u32 {
  if (p.hier == 1u) { return quant_boundary(p.start + i, p.key_group); }
  return 0u;
}

// Load keys (which 0) or values (1) of positions t0.. (one tile) of KV head g from src into kv.
fn load_tile(which: u32, t0: u32, hi: u32, g: u32, src: u32, tid: u32) {
  let d = p.head_dim;
  for (var e = tid; e < p.tile * d; e += 64u) {
    let t = t0 + e / d;
    var x = 0.0;
    // Rows below fp_start are gone (no query reads them from the rows: they are below every boundary).
    if (t < hi && (src == 0u || t >= p.fp_start)) { x = kv_at(which, t, g * d + e % d, src); }
    kv[e] = x;
  }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let d = p.head_dim;
  let g = wg.y;
  let gsize = p.heads / p.kv_heads;
  let total = p.n * gsize; // query-heads of this KV head
  let first = wg.z * p.qg;
  let count = min(p.qg, total - first);
  let lo = wg.x * p.chunk;
  let hi = min(lo + p.chunk, p.start + p.n); // positions [lo, hi) of this chunk
  let units = (d + 63u) / 64u; // channels per thread
  // This workgroup's queries, and their running max and sum.
  for (var e = tid; e < count * d; e += 64u) {
    let qh = first + e / d;
    let h = g * gsize + qh % gsize;
    qs[e] = q[((qh / gsize) * p.heads + h) * d + e % d];
  }
  if (tid < count) {
    ms[tid] = NEG;
    ls[tid] = 0.0;
  }
  var acc: array<f32, 32>; // [count, units]
  for (var k = 0u; k < 32u; k++) { acc[k] = 0.0; }
  let b_min = boundary(0u);
  let b_max = boundary(p.n - 1u);
  for (var t0 = lo; t0 < hi; t0 += p.tile) {
    for (var src = 0u; src < 2u; src++) {
      // Planes for the positions below some query's boundary, rows for those at or above one.
      if (src == 0u && t0 >= b_max) { continue; }
      if (src == 1u && t0 + p.tile <= b_min) { continue; }
      workgroupBarrier();
      load_tile(0u, t0, hi, g, src, tid);
      workgroupBarrier();
      for (var e = tid; e < count * p.tile; e += 64u) {
        let ql = e / p.tile;
        let tt = e % p.tile;
        let i = (first + ql) / gsize;
        let pos = p.start + i;
        let t = t0 + tt;
        var wlo = 0u;
        if (p.window > 0u && pos + 1u > p.window) { wlo = pos + 1u - p.window; }
        let from_planes = t < boundary(i);
        var s = NEG;
        if (t < hi && t <= pos && t >= wlo && from_planes == (src == 0u)) {
          var dot = 0.0;
          for (var c = 0u; c < d; c++) { dot += qs[ql * d + c] * kv[tt * d + c]; }
          s = dot * p.scale;
        }
        ps[e] = s;
      }
      workgroupBarrier();
      if (tid < count) {
        var tile_max = NEG;
        for (var tt = 0u; tt < p.tile; tt++) { tile_max = max(tile_max, ps[tid * p.tile + tt]); }
        let m_new = max(ms[tid], tile_max);
        let alpha = exp(ms[tid] - m_new);
        var sum = 0.0;
        for (var tt = 0u; tt < p.tile; tt++) {
          let s = ps[tid * p.tile + tt];
          let w = select(0.0, exp(s - m_new), s > NEG);
          ps[tid * p.tile + tt] = w;
          sum += w;
        }
        ls[tid] = ls[tid] * alpha + sum;
        ms[tid] = m_new;
        alphas[tid] = alpha;
      }
      workgroupBarrier();
      load_tile(1u, t0, hi, g, src, tid);
      workgroupBarrier();
      for (var ql = 0u; ql < count; ql++) {
        for (var u = 0u; u < units; u++) {
          let c = tid + 64u * u;
          if (c < d) {
            var a = acc[ql * units + u] * alphas[ql];
            for (var tt = 0u; tt < p.tile; tt++) { a += ps[ql * p.tile + tt] * kv[tt * d + c]; }
            acc[ql * units + u] = a;
          }
        }
      }
    }
  }
  workgroupBarrier();
  let stride = d + 2u;
  for (var ql = 0u; ql < count; ql++) {
    let qh = first + ql;
    let row = (wg.x * p.n * p.heads + (qh / gsize) * p.heads + g * gsize + qh % gsize) * stride;
    for (var u = 0u; u < units; u++) {
      let c = tid + 64u * u;
      if (c < d) { partial[row + c] = acc[ql * units + u]; }
    }
    if (tid == 0u) {
      partial[row + d] = ms[ql];
      partial[row + d + 1u] = ls[ql];
    }
  }
}
`;

/**
 * out[i, h, :] from the chunks' partials of ATTENTION: with M the largest running max,
 * Σ_c acc_c · exp(m_c - M) / Σ_c l_c · exp(m_c - M), the chunks in order. One workgroup per
 * (query, head). A chunk a query cannot see (m = NEG, l = 0) adds exactly zero.
 */
export const ATTENTION_MERGE = /* wgsl */ `
struct P { n: u32, heads: u32, head_dim: u32, chunks: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let d = p.head_dim;
  let stride = d + 2u;
  let qh = wg.x * p.heads + wg.y;
  let per_chunk = p.n * p.heads * stride;
  var m = -3.0e38;
  for (var c = 0u; c < p.chunks; c++) { m = max(m, partial[c * per_chunk + qh * stride + d]); }
  var l = 0.0;
  for (var c = 0u; c < p.chunks; c++) {
    let r = c * per_chunk + qh * stride;
    l += partial[r + d + 1u] * exp(partial[r + d] - m);
  }
  for (var ch = tid; ch < d; ch += 64u) {
    var o = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
      let r = c * per_chunk + qh * stride;
      o += partial[r + ch] * exp(partial[r + d] - m);
    }
    out[qh * d + ch] = o / l;
  }
}
`;

/**
 * F16 bits of an f32, rounded to nearest even as core/half.ts f32ToF16 and the CPU's F16C
 * (WGSL leaves pack2x16float's rounding to the implementation).
 */
const F16_BITS = /* wgsl */ `
fn f16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let e = i32((b >> 23u) & 0xffu);
  let m = b & 0x7fffffu;
  if (e == 255) { return sign | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u); }
  let he = e - 112;
  if (he >= 31) { return sign | 0x7c00u; }
  if (he <= 0) {
    if (he < -10) { return sign; }
    let full = m | 0x800000u;
    let shift = u32(14 - he);
    var hm = full >> shift;
    let rem = full & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (hm & 1u) == 1u)) { hm += 1u; }
    return sign | hm;
  }
  let hm = m >> 13u;
  let rem = m & 0x1fffu;
  var out = sign | (u32(he) << 10u) | hm;
  if (rem > 0x1000u || (rem == 0x1000u && (hm & 1u) == 1u)) { out += 1u; }
  return out;
}
`;

/**
 * New K/V rows into a layer's full-precision rows: k, v [n, kv_dim] F32 to rows row.. of fpk/fpv,
 * as F32 (fp_dtype 0, one invocation per element) or F16 (1, one per pair of elements, one word).
 */
export const KV_WRITE = /* wgsl */ `
struct P { n: u32, kv_dim: u32, row: u32, fp_dtype: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> fpk: array<u32>;
@group(0) @binding(4) var<storage, read_write> fpv: array<u32>;
${F16_BITS}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = id.x + id.y * nw.x * 64u;
  if (p.fp_dtype == 0u) {
    if (i >= p.n * p.kv_dim) { return; }
    fpk[p.row * p.kv_dim + i] = bitcast<u32>(k[i]);
    fpv[p.row * p.kv_dim + i] = bitcast<u32>(v[i]);
    return;
  }
  if (i >= p.n * p.kv_dim / 2u) { return; }
  let w = p.row * p.kv_dim / 2u + i;
  fpk[w] = f16_bits(k[2u * i]) | (f16_bits(k[2u * i + 1u]) << 16u);
  fpv[w] = f16_bits(v[2u * i]) | (f16_bits(v[2u * i + 1u]) << 16u);
}
`;

/**
 * The hierarchical quantizer (DESIGN 2.1, the reference's kernels/reference/kvquant.ts): positions
 * [dst_pos, dst_pos + n) from full-precision rows src_row.. into the planes and their F16
 * metadata, laid out as the attention kernel reads them. Keys per channel over each group of
 * key_group positions, values per position over groups of value_group channels; codes against
 * the F16-rounded scale and minimum, rounded half to even.
 * Each invocation owns one u32 word of its buffer, so neighbours never race: phase 0 writes
 * metadata words (two F16 each), phase 1 plane words (eight codes each, reading phase 0's
 * metadata), recomputing what it needs. Halves and nibbles outside the positions keep their bits.
 */
export const KV_QUANTIZE = /* wgsl */ `
struct P {
  kv_dim: u32, key_group: u32, value_group: u32, fp_dtype: u32, src_row: u32, dst_pos: u32, n: u32, plane_pos: u32,
  phase: u32, first_word: u32, words: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> fpk: array<u32>;
@group(0) @binding(2) var<storage, read> fpv: array<u32>;
@group(0) @binding(3) var<storage, read_write> planes: array<u32>;
@group(0) @binding(4) var<storage, read_write> metadata: array<u32>;
${packed('fpk')}
${packed('fpv')}
${F16_BITS}

const F16_MAX: f32 = 65504.0;

fn fp_at(which: u32, t: u32, c: u32) -> f32 {
  let e = (p.src_row + t - p.dst_pos) * p.kv_dim + c;
  if (p.fp_dtype == 0u) { return bitcast<f32>(select(fpv[e], fpk[e], which == 0u)); }
  return select(half_fpv(e, 1u), half_fpk(e, 1u), which == 0u);
}

fn meta_at(e: u32) -> f32 { return unpack2x16float(metadata[e >> 1u])[e & 1u]; }
fn half_value(bits: u32) -> f32 { return unpack2x16float(bits)[0]; }

// F16 bits of the group's scale (want 0) or minimum (1), over positions t0.. (count) of channels c0.. (width).
fn group_meta(which: u32, t0: u32, count: u32, c0: u32, width: u32, want: u32) -> u32 {
  var lo = 3.4e38;
  var hi = -3.4e38;
  for (var t = t0; t < t0 + count; t++) {
    for (var c = c0; c < c0 + width; c++) {
      let x = fp_at(which, t, c);
      lo = min(lo, x);
      hi = max(hi, x);
    }
  }
  let mn_bits = f16_bits(clamp(lo, -F16_MAX, F16_MAX));
  if (want == 1u) { return mn_bits; }
  let s = (clamp(hi, -F16_MAX, F16_MAX) - half_value(mn_bits)) / 15.0;
  return f16_bits(max(0.0, s));
}

// u | (l + 8) << 4 for x in a group (s, mn).
fn encode(x: f32, s: f32, mn: f32) -> u32 {
  if (s == 0.0) { return 8u << 4u; }
  let u = clamp(round((x - mn) / s), 0.0, 15.0);
  let r = x - (mn + u * s);
  let l = clamp(round(r / (s / 16.0)), -8.0, 7.0);
  return u32(u) | (u32(l + 8.0) << 4u);
}

fn meta_half(e: u32) -> u32 {
  let key_meta = (p.plane_pos / p.key_group) * p.kv_dim;
  let vg = p.kv_dim / p.value_group;
  let vs = 2u * key_meta;
  let vm = vs + p.plane_pos * vg;
  let old = (metadata[e >> 1u] >> (16u * (e & 1u))) & 0xffffu;
  if (e < vs) {
    let want = select(0u, 1u, e >= key_meta);
    let i = select(e, e - key_meta, e >= key_meta);
    let t0 = (i / p.kv_dim) * p.key_group;
    if (t0 < p.dst_pos || t0 >= p.dst_pos + p.n) { return old; }
    return group_meta(0u, t0, p.key_group, i % p.kv_dim, 1u, want);
  }
  let want = select(0u, 1u, e >= vm);
  let i = select(e - vs, e - vm, e >= vm);
  let t = i / vg;
  if (t < p.dst_pos || t >= p.dst_pos + p.n) { return old; }
  return group_meta(1u, t, 1u, (i % vg) * p.value_group, p.value_group, want);
}

fn code_nibble(nib: u32) -> u32 {
  let row_bytes = p.kv_dim / 2u;
  let plane_bytes = p.plane_pos * row_bytes;
  let byte = nib >> 1u;
  let plane = byte / plane_bytes;
  let b = byte % plane_bytes;
  let t = b / row_bytes;
  let old = (planes[nib >> 3u] >> (4u * (nib & 7u))) & 15u;
  if (plane >= 4u || t < p.dst_pos || t >= p.dst_pos + p.n) { return old; }
  let c = 2u * (b % row_bytes) + (nib & 1u);
  let which = plane / 2u;
  var m: u32;
  if (which == 0u) {
    m = (t / p.key_group) * p.kv_dim + c;
  } else {
    let key_meta = (p.plane_pos / p.key_group) * p.kv_dim;
    m = 2u * key_meta + t * (p.kv_dim / p.value_group) + c / p.value_group;
  }
  let groups = select(p.plane_pos * (p.kv_dim / p.value_group), (p.plane_pos / p.key_group) * p.kv_dim, which == 0u);
  let code = encode(fp_at(which, t, c), meta_at(m), meta_at(m + groups));
  return select(code & 15u, code >> 4u, (plane & 1u) == 1u);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = id.x + id.y * nw.x * 64u;
  if (i >= p.words) { return; }
  let w = p.first_word + i;
  if (p.phase == 0u) {
    metadata[w] = meta_half(2u * w) | (meta_half(2u * w + 1u) << 16u);
    return;
  }
  var word = 0u;
  for (var k = 0u; k < 8u; k++) { word |= code_nibble(8u * w + k) << (4u * k); }
  planes[w] = word;
}
`;

/**
 * out[r] = the index of row r's largest value, the first one where several are equal (as
 * sampling/sampler.ts argmax). One workgroup per row: each thread scans a stride, then the pairs
 * are reduced, larger value or else smaller index. Rows with NaN or infinities get what the GPU's
 * comparisons give (WGSL does not promise IEEE special values): the decoder sends only plain
 * greedy steps here, where no bias or constraint writes -Infinity.
 */
export const ARGMAX = /* wgsl */ `
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
var<workgroup> vals: array<f32, 64>;
var<workgroup> idxs: array<u32, 64>;

const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let o = wg.x * p.cols;
  var best = 0.0;
  var at = NONE;
  for (var j = tid; j < p.cols; j += 64u) {
    let v = x[o + j];
    if (at == NONE || v > best) {
      best = v;
      at = j;
    }
  }
  vals[tid] = best;
  idxs[tid] = at;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (tid < s) {
      let v = vals[tid + s];
      let i = idxs[tid + s];
      if (i != NONE && (idxs[tid] == NONE || v > vals[tid] || (v == vals[tid] && i < idxs[tid]))) {
        vals[tid] = v;
        idxs[tid] = i;
      }
    }
    workgroupBarrier();
  }
  if (tid == 0u) { out[wg.x] = idxs[0]; }
}
`;
