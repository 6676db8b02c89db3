/* The kernel table in use, chosen once at load by instruction set (QUANTSPEC_CPU overrides). */
#ifndef QUANTSPEC_ISA_H
#define QUANTSPEC_ISA_H
#include "kernels.h"

extern const kernel_table *K;

/* The table for `want` ("" = the best this CPU runs, "scalar", "avx2", "avx512"); NULL when this
 * CPU cannot run it. */
const kernel_table *select_kernels(const char *want);

#endif
