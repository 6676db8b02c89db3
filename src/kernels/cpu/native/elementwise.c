/* Elementwise kernels of the native backend, in portable C (the compiler vectorises what it can).
 * Each computes exactly what the TypeScript reference computes, in double where the reference
 * works in JavaScript numbers, so the results match it bit for bit. SiLU-gate, whose exp is worth
 * vectorising, is in the per-ISA kernel tables (silu_mul_scalar here is the portable one). */
#include <math.h>
#include <string.h>
#include "kernels.h"

void rmsnorm_rows(float *out, const float *x, const float *w, int dim, double eps, int r0, int r1) {
  for (int r = r0; r < r1; r++) {
    const float *xr = x + (size_t)r * dim;
    float *o = out + (size_t)r * dim;
    double ss = 0;
    for (int j = 0; j < dim; j++) ss += (double)xr[j] * xr[j];
    /* HF computes in F32: w * (x * rsqrt(mean(x²) + eps)). */
    const float inv = (float)(1.0 / sqrt((double)(float)(ss / dim) + eps));
    for (int j = 0; j < dim; j++) o[j] = w[j] * (xr[j] * inv);
  }
}

void rope_rows(float *x, int n_heads, int head_dim, int start_pos, const float *cos_t, const float *sin_t, int layout,
               int t0, int t1) {
  const int half = head_dim >> 1;
  for (int t = t0; t < t1; t++) {
    const float *c = cos_t + (size_t)(start_pos + t) * half;
    const float *s = sin_t + (size_t)(start_pos + t) * half;
    for (int h = 0; h < n_heads; h++) {
      float *v = x + ((size_t)t * n_heads + h) * head_dim;
      if (layout == 0) {
        /* neox: element j pairs with j + half */
        for (int j = 0; j < half; j++) {
          const double a = v[j], b = v[j + half];
          v[j] = (float)(a * c[j] - b * s[j]);
          v[j + half] = (float)(b * c[j] + a * s[j]);
        }
      } else {
        /* interleaved pairs (2j, 2j + 1) */
        for (int j = 0; j < half; j++) {
          const double a = v[2 * j], b = v[2 * j + 1];
          v[2 * j] = (float)(a * c[j] - b * s[j]);
          v[2 * j + 1] = (float)(b * c[j] + a * s[j]);
        }
      }
    }
  }
}

void embed_rows(float *out, const void *table, int dtype, int dim, const int32_t *tokens, int t0, int t1) {
  for (int t = t0; t < t1; t++) {
    float *o = out + (size_t)t * dim;
    const size_t base = (size_t)tokens[t] * dim;
    if (dtype == 0) {
      memcpy(o, (const float *)table + base, sizeof(float) * dim);
    } else if (dtype == 1) {
      const uint16_t *h = (const uint16_t *)table + base;
      for (int j = 0; j < dim; j++) o[j] = qs_f16_to_f32(h[j]);
    } else {
      const uint16_t *h = (const uint16_t *)table + base;
      for (int j = 0; j < dim; j++) {
        const uint32_t bits = (uint32_t)h[j] << 16;
        memcpy(o + j, &bits, 4);
      }
    }
  }
}

void add_rows(float *out, const float *x, const float *bias, int dim, int r0, int r1) {
  if (bias) {
    for (int r = r0; r < r1; r++)
      for (int j = 0; j < dim; j++) out[(size_t)r * dim + j] += bias[j];
  } else {
    for (size_t i = (size_t)r0 * dim; i < (size_t)r1 * dim; i++) out[i] += x[i];
  }
}

void silu_mul_scalar(float *gate, const float *up, int i0, int i1) {
  for (int i = i0; i < i1; i++) {
    const double g = gate[i];
    gate[i] = (float)((g / (1.0 + exp(-g))) * up[i]);
  }
}
