/* The AVX attention driver (attention_avx.c) compiled with AVX-512 for the AVX-512 and AMX
 * kernel tables: the same source and the same float operations, with 32 vector registers. */
#define ATTENTION_DRIVER attention_rows_with512
#include "attention_avx.c"
