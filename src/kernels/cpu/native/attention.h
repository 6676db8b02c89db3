/* The attention scheduler: queries grouped by quantization boundary, each group's visible range
 * cut into fixed chunks at absolute positions (work items for the pool), partials merged by
 * log-sum-exp. */
#ifndef QUANTSPEC_ATTENTION_H
#define QUANTSPEC_ATTENTION_H
#include "kernels.h"

enum { ATTN_OK = 0, ATTN_TOO_MANY_GROUPS = -1, ATTN_OUT_OF_MEMORY = -2 };

/* Attention of a->nq queries (query i at position a->start_pos + i) over the view a->kv into a->out. */
int attention_run(const attn_args *a);

#endif
