/* Scalar helpers shared by every instruction set: F16 conversion, the quantization boundary and
 * the hierarchical KV quantizer. The quantizer does exactly the float operations of the
 * TypeScript reference (src/kernels/reference/kvquant.ts), so both produce identical codes. */
#include <math.h>
#include <string.h>
#include "kernels.h"

float qs_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t frac = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (frac == 0) {
      bits = sign;
    } else {
      /* subnormal: normalise */
      int e = -1;
      do { frac <<= 1; e++; } while ((frac & 0x400) == 0);
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((frac & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (frac << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (frac << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

void row_to_f32_scalar(float *dst, const uint16_t *src, int n, int dtype) {
  if (dtype == 1) {
    for (int j = 0; j < n; j++) dst[j] = qs_f16_to_f32(src[j]);
    return;
  }
  for (int j = 0; j < n; j++) {
    const uint32_t b = (uint32_t)src[j] << 16;
    memcpy(dst + j, &b, 4);
  }
}

/* four independent chains of plain comparisons */
void q4_range_scalar(const float *row, int lo, int hi, float *mn, float *mx, int *nan) {
  float lo4[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, hi4[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int bad = 0, j = lo;
  for (; j + 4 <= hi; j += 4)
    for (int k = 0; k < 4; k++) {
      const float x = row[j + k];
      lo4[k] = x < lo4[k] ? x : lo4[k];
      hi4[k] = x > hi4[k] ? x : hi4[k];
      bad |= x != x;
    }
  for (; j < hi; j++) {
    lo4[0] = row[j] < lo4[0] ? row[j] : lo4[0];
    hi4[0] = row[j] > hi4[0] ? row[j] : hi4[0];
    bad |= row[j] != row[j];
  }
  for (int k = 1; k < 4; k++) lo4[0] = lo4[k] < lo4[0] ? lo4[k] : lo4[0], hi4[0] = hi4[k] > hi4[0] ? hi4[k] : hi4[0];
  *mn = lo4[0];
  *mx = hi4[0];
  *nan = bad;
}

/* Round half to even, as rint() in the default rounding mode, for |x| < 2^51 (beyond it the
 * clamp that follows gives the same code either way). */
static inline double round_even(double x) {
  const double magic = 6755399441055744.0; /* 1.5 · 2^52 */
  return (x + magic) - magic;
}

void q4_codes_scalar(uint8_t *codes, const float *row, int j0, int j1, double off, double inv, double add) {
  for (int j = j0; j < j1; j++) {
    double q = round_even(((double)row[j] - off) * inv) + add;
    q = q > 15 ? 15 : q >= 0 ? q : 0; /* NaN gives 0, as in the reference */
    const int i = j & 31;
    codes[(j >> 5) * 16 + (i & 15)] |= (uint8_t)((int)q << (i < 16 ? 0 : 4));
  }
}

void q8_codes_scalar(int8_t *codes, const float *row, int j0, int j1, double inv) {
  for (int j = j0; j < j1; j++) {
    const double q = round_even((double)row[j] * inv);
    codes[j] = q != q ? 0 : q < -127 ? -127 : q > 127 ? 127 : (int8_t)q; /* NaN gives 0, as in the reference */
  }
}

/* Round to nearest even, as src/core/half.ts f32ToF16. */
uint16_t qs_f32_to_f16(float value) {
  uint32_t x;
  memcpy(&x, &value, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int exp = (int)((x >> 23) & 0xff);
  uint32_t mant = x & 0x7fffff;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
  int e = exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000;
    int shift = 14 - e;
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((uint32_t)e << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return (uint16_t)(sign | half);
}

void f32_to_f16_scalar(uint16_t *dst, const float *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = qs_f32_to_f16(src[i]);
}

int quant_boundary(int p, int g) {
  return p >= 2 * g ? g * ((p - g) / g) : 0;
}

int dense_lo(const attn_args *a, int pos) {
  int from = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
  const kv_view *kv = a->kv;
  if (kv->sel_positions) {
    int f = kv->sel_dense_from;
    if (kv->sel_recent > 0 && pos - kv->sel_recent + 1 > f) f = pos - kv->sel_recent + 1;
    if (f > from) from = f;
  }
  return from;
}

#define F16_MAX 65504.0f

static float clamp_f16(float x) {
  return x > F16_MAX ? F16_MAX : (x < -F16_MAX ? -F16_MAX : x);
}

void kv_group_meta(float mn, float mx, uint16_t *s_bits, uint16_t *mn_bits) {
  *mn_bits = qs_f32_to_f16(clamp_f16(mn));
  volatile float m = qs_f16_to_f32(*mn_bits);
  volatile float range = clamp_f16(mx) - m;
  volatile float s = range / 15.0f;
  *s_bits = qs_f32_to_f16(s > 0.0f ? s : 0.0f);
}

/* Codes of x: u | (l + 8) << 4. volatile keeps every intermediate a rounded F32, like Math.fround.
 * A quotient at or above the top code is clamped before the conversion to int (an infinite key
 * gets 15, as in the reference); NaN and anything below int32 range convert to INT32_MIN and clamp
 * to the bottom code, which is the reference's NaN code too. */
static int encode(float x, float s, float mn) {
  if (s == 0.0f) return 8 << 4;
  volatile float t = x - mn;
  volatile float qt = t / s;
  int u = qt >= 15.0f ? 15 : (int)rintf(qt);
  u = u < 0 ? 0 : (u > 15 ? 15 : u);
  volatile float us = (float)u * s;
  volatile float rec = mn + us;
  volatile float r = x - rec;
  volatile float sl = s / 16.0f;
  volatile float qr = r / sl;
  int l = qr >= 7.0f ? 7 : (int)rintf(qr);
  l = l < -8 ? -8 : (l > 7 ? 7 : l);
  return u | ((l + 8) << 4);
}

static void set_nibble(uint8_t *plane, size_t index, int odd, int code) {
  uint8_t b = plane[index];
  plane[index] = odd ? (uint8_t)((b & 0x0f) | (code << 4)) : (uint8_t)((b & 0xf0) | code);
}

float kv_fp_value(int fp_dtype, const void *rows, size_t i) {
  return fp_dtype == 0 ? ((const float *)rows)[i] : qs_f16_to_f32(((const uint16_t *)rows)[i]);
}

void kv_quantize(const kv_planes *p, uint8_t *k_upper, uint8_t *k_lower, uint16_t *k_scale, uint16_t *k_min,
                 uint8_t *v_upper, uint8_t *v_lower, uint16_t *v_scale, uint16_t *v_min, int fp_dtype, const void *fp_keys,
                 const void *fp_values, int src_row, int dst_pos, int n_tokens) {
  const int kv_dim = p->kv_dim, G = p->group_k, Gv = p->group_v, half = kv_dim / 2;
  for (int g0 = 0; g0 < n_tokens; g0 += G) {
    size_t meta_row = (size_t)((dst_pos + g0) / G) * kv_dim;
    for (int c = 0; c < kv_dim; c++) {
      float mn = INFINITY, mx = -INFINITY;
      for (int t = 0; t < G; t++) {
        float x = kv_fp_value(fp_dtype, fp_keys, (size_t)(src_row + g0 + t) * kv_dim + c);
        if (x < mn) mn = x;
        if (x > mx) mx = x;
      }
      uint16_t sb, mb;
      kv_group_meta(mn, mx, &sb, &mb);
      k_scale[meta_row + c] = sb;
      k_min[meta_row + c] = mb;
      float s = qs_f16_to_f32(sb), m = qs_f16_to_f32(mb);
      for (int t = 0; t < G; t++) {
        int code = encode(kv_fp_value(fp_dtype, fp_keys, (size_t)(src_row + g0 + t) * kv_dim + c), s, m);
        size_t byte = (size_t)(dst_pos + g0 + t) * half + (c >> 1);
        set_nibble(k_upper, byte, c & 1, code & 15);
        set_nibble(k_lower, byte, c & 1, code >> 4);
      }
    }
  }
  const int groups = kv_dim / Gv;
  for (int t = 0; t < n_tokens; t++) {
    size_t src = (size_t)(src_row + t) * kv_dim;
    for (int g = 0; g < groups; g++) {
      float mn = INFINITY, mx = -INFINITY;
      for (int c = g * Gv; c < (g + 1) * Gv; c++) {
        float x = kv_fp_value(fp_dtype, fp_values, src + c);
        if (x < mn) mn = x;
        if (x > mx) mx = x;
      }
      uint16_t sb, mb;
      kv_group_meta(mn, mx, &sb, &mb);
      v_scale[(size_t)(dst_pos + t) * groups + g] = sb;
      v_min[(size_t)(dst_pos + t) * groups + g] = mb;
      float s = qs_f16_to_f32(sb), m = qs_f16_to_f32(mb);
      for (int c = g * Gv; c < (g + 1) * Gv; c++) {
        int code = encode(kv_fp_value(fp_dtype, fp_values, src + c), s, m);
        size_t byte = (size_t)(dst_pos + t) * half + (c >> 1);
        set_nibble(v_upper, byte, c & 1, code & 15);
        set_nibble(v_lower, byte, c & 1, code >> 4);
      }
    }
  }
}

/* Block b of token t's activations to int8 (x ≈ q·d, d = max|x|/127), zero-padded past cols. */
void quantize_acts_block(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t, int b) {
  const int j0 = b * QK;
  const int len = cols - j0 < QK ? cols - j0 : QK;
  float amax = 0;
  for (int j = 0; j < len; j++) {
    float a = fabsf(x[(size_t)t * cols + j0 + j]);
    if (a > amax) amax = a;
  }
  const float dd = amax / 127.0f;
  const float inv = dd > 0 ? 1.0f / dd : 0.0f;
  int32_t s = 0;
  int8_t *qb = q + ((size_t)t * nb + b) * QK;
  for (int j = 0; j < QK; j++) {
    int v = j < len ? (int)rintf(x[(size_t)t * cols + j0 + j] * inv) : 0;
    qb[j] = (int8_t)v;
    s += v;
  }
  d[(size_t)t * nb + b] = dd;
  sum[(size_t)t * nb + b] = s;
  dsum[(size_t)t * nb + b] = dd * (float)s;
}

/* Activations to int8 per 32-block, every block of tokens [t0, t1). */
void quantize_acts(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t0, int t1) {
  for (int t = t0; t < t1; t++)
    for (int b = 0; b < nb; b++) quantize_acts_block(q, d, sum, dsum, x, cols, nb, t, b);
}

void act_halves_first(int8_t *q, int nb, int per, int whole, int t0, int t1) {
  int8_t tmp[4 * QK];
  for (int t = t0; t < t1; t++) {
    for (int b = 0; b + per <= (nb / whole) * whole; b += per) {
      int8_t *g = q + ((size_t)t * nb + b) * QK;
      for (int k = 0; k < per; k++) {
        memcpy(tmp + 16 * k, g + QK * k, 16);
        memcpy(tmp + 16 * (per + k), g + QK * k + 16, 16);
      }
      memcpy(g, tmp, (size_t)per * QK);
    }
  }
}
