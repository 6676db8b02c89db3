/* Kernel table selection (isa.h): the best instruction set this CPU supports, or the one asked for. */
#include <string.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#include "isa.h"
#include "amx.h"

const kernel_table *K = &kernels_scalar;

#ifdef QUANTSPEC_AMX
/* AMX-TILE, AMX-INT8 and AMX-BF16 in CPUID, and the tile state granted by the kernel (asked for once). */
static int amx_usable(void) {
  static int state = -1;
  if (state < 0) state = amx_cpu() && amx_request() == 0;
  return state;
}
#endif

const kernel_table *select_kernels(const char *want) {
#if defined(__x86_64__) || defined(_M_X64)
  const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const int has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#ifdef QUANTSPEC_AMX
  const kernel_table *best512 = has_avx512 && amx_usable() ? &kernels_amx : &kernels_avx512;
  if (want && strcmp(want, "amx") == 0) return best512 == &kernels_amx ? &kernels_amx : NULL;
#else
  const kernel_table *best512 = &kernels_avx512;
#endif
  /* avx512 takes the BF16 dot-product prompt matmul where the CPU has AVX512_BF16 */
  const kernel_table *avx512 = &kernels_avx512;
#ifdef QUANTSPEC_AVX512BF16
  if (has_avx512 && __builtin_cpu_supports("avx512bf16")) avx512 = &kernels_avx512_bf16;
  if (best512 == &kernels_avx512) best512 = avx512;
#endif
  if (want && strcmp(want, "scalar") == 0) return &kernels_scalar;
  if (want && strcmp(want, "avx2") == 0) return has_avx2 ? &kernels_avx2 : NULL;
  if (want && strcmp(want, "avx512") == 0) return has_avx512 ? avx512 : NULL;
  if (want && *want) return NULL;
  return has_avx512 ? best512 : has_avx2 ? &kernels_avx2 : &kernels_scalar;
#else
  if (want && *want && strcmp(want, "scalar") != 0) return NULL;
  return &kernels_scalar;
#endif
}
