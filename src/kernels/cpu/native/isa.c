/* Kernel table selection (isa.h): the best instruction set this CPU supports, or the one asked for. */
#include <string.h>
#include "isa.h"

const kernel_table *K = &kernels_scalar;

const kernel_table *select_kernels(const char *want) {
#if defined(__x86_64__) || defined(_M_X64)
  const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const int has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  if (want && strcmp(want, "scalar") == 0) return &kernels_scalar;
  if (want && strcmp(want, "avx2") == 0) return has_avx2 ? &kernels_avx2 : NULL;
  if (want && strcmp(want, "avx512") == 0) return has_avx512 ? &kernels_avx512 : NULL;
  if (want && *want) return NULL;
  return has_avx512 ? &kernels_avx512 : has_avx2 ? &kernels_avx2 : &kernels_scalar;
#else
  if (want && *want && strcmp(want, "scalar") != 0) return NULL;
  return &kernels_scalar;
#endif
}
