// Whether the tests run in CI: any non-empty CI variable (CI=true, CI=1, ...). There, missing
// shared files, a missing native build or a kernel path that this CPU supports but the backend
// cannot start are failures, never skips.

export function inCi(): boolean {
  return (process.env['CI'] ?? '') !== '';
}
