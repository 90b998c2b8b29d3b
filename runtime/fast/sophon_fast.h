/*
 * sophon_fast.h - what the fast kernels (sophon_fast_*.c) share; not public API.
 *
 * The fast kernels' entry points (each the twin of a reference kernel of
 * reference/, named beside it in the instruction table of isa/sophon_isa.c) and
 * the vector helpers they share. Work splitting is in chip/sophon_host.h.
 */
#ifndef SOPHON_FAST_H_
#define SOPHON_FAST_H_

#include "chip/sophon_host.h"
#include "chip/sophon_internal.h"
#include "reference/sophon_tiu_activation.h"

/* ------------------------------------------------------ fast kernels
 * sophon_fast_conv.c: fast f32 kernels beside the reference ones (same operands,
 * already checked; same results within the tolerance stated there). Each returns 0,
 * or -1 if its scratch memory could not be allocated: the caller then runs the
 * reference kernel. weight_ddr (sophon_operands): the weight's bytes as a DDR view,
 * read instead of LMEM where its rows are contiguous, or NULL. */
int sophon_fast_conv2d_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_local* weight, const sophon_local* bias,
                           const sophon_conv_params* p, const sophon_global* weight_ddr);
int sophon_fast_fc_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                       const sophon_local* weight, const sophon_local* bias,
                       const sophon_activation* act, const sophon_global* weight_ddr);
/* sophon_fast_pointwise.c: an unpadded 1x1 stride-1 f32 conv2d of one group on a small
 * plane with output channels in vector lanes (AVX-512), bit-identical to the GEMM of
 * sophon_fast_conv.c; 0 when done, 1 when it does not take the conv (the caller runs
 * the GEMM), -1 without scratch memory. weight_ddr as above. */
int sophon_fast_pointwise_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                              const sophon_local* weight, const sophon_local* bias,
                              const sophon_conv_params* p, const sophon_global* weight_ddr);
/* sophon_fast_winograd.c: f32 conv2d of 3x3 stride-1 kernels (dilation 1, one group)
 * by Winograd's F(2x2, 3x3), within the tolerance stated there of the reference (not
 * bit-identical); 0, -1 without scratch memory, or 1 when it declines the conv (other
 * kernels or shapes where the direct kernel is faster): the caller then runs that. */
int sophon_fast_winograd_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                             const sophon_local* weight, const sophon_local* bias,
                             const sophon_conv_params* p, const sophon_global* weight_ddr);
/* sophon_fast_depthwise.c: f32 depthwise conv2d (in->c == out->c == groups),
 * bit-identical to the reference (but AVX-512's sigmoid family, see below); cannot fail (without scratch memory it computes
 * the reference's way). */
void sophon_fast_depthwise_f32(sophon_device* dev, const sophon_local* out,
                               const sophon_local* in, const sophon_local* weight,
                               const sophon_local* bias, const sophon_conv_params* p);
/* sophon_fast_deconv.c: f32 conv2d_transpose, bit-identical to the reference;
 * 0, or -1 without scratch memory. */
int sophon_fast_conv2d_transpose_f32(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias, const sophon_conv_params* p);
/* sophon_fast_resize.c: f32 nearest resize, bit-identical to the reference; -1 for
 * bilinear or without scratch memory. */
int sophon_fast_resize_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_resize_params* p);
/* sophon_fast_int8.c: fast INT8 conv2d (dense, grouped, depthwise) and fc
 * (sophon_quant.h), bit-identical to the reference kernels of reference/sophon_tiu_conv_int8.c;
 * 0, or -1 as above. */
int sophon_fast_conv2d_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_local* weight, const sophon_local* bias,
                            const sophon_conv_params* p, const sophon_requant* q);
int sophon_fast_fc_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                        const sophon_local* weight, const sophon_local* bias,
                        const sophon_requant* q);
/* sophon_fast_int8_float_conv.c: conv2d_int8 with SOPHON_REQUANT_FLOAT_CONV (onnxruntime's
 * float Conv), bit-identical to the reference; 0, or -1 without scratch memory. */
int sophon_fast_conv2d_int8_float(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* in, const sophon_local* weight,
                                  const sophon_local* bias, const sophon_conv_params* p,
                                  const sophon_requant* q);
/* sophon_fast_int8_eltwise.c: fast INT8 ADD and pool2d, bit-identical to the
 * reference kernels; 0, or -1 for what they do not cover (ADD: a broadcast) or when
 * scratch cannot be had: the caller then runs the reference kernel. */
int sophon_fast_add_int8(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                         const sophon_local* b, const sophon_add_int8_params* p);
int sophon_fast_pool2d_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_pool_params* p, int32_t act_min, int32_t act_max);
/* sophon_fast_int8_binary.c: fast binary_int8 (every op; b of out's
 * shape or one value per channel, else -1), bit-identical to the reference kernel of
 * reference/sophon_tiu_eltwise_int8.c. */
int sophon_fast_binary_int8(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                            const sophon_local* b, const sophon_binary_int8_params* p);
/* sophon_fast_int8_deconv.c: conv2d_transpose_int8 by output rows, bit-identical to
 * the reference kernel; 0, or -1 for a rounding other than fixed point and float32 or
 * when scratch cannot be had. */
int sophon_fast_conv2d_transpose_int8(sophon_device* dev, const sophon_local* out,
                                      const sophon_local* in, const sophon_local* weight,
                                      const sophon_local* bias, const sophon_conv_params* p,
                                      const sophon_requant* q);
/* sophon_fast_int8_eltwise.c: reduce_int8 over h, bit-identical to its reference
 * kernel (reference/sophon_tiu_reduce_int8.c), SUM and MEAN in fixed point or
 * float32 (SOPHON_REQUANT_FLOAT32); declines (nonzero) other roundings. */
int sophon_fast_reduce_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            sophon_reduce_kind kind, const sophon_requant* q);
/* sophon_fast_int8_binary.c: ... and lut_int8 (the table lookup; with AVX-512 VBMI 64 bytes at a time),
 * bit-identical to its reference kernel; always 0. */
int sophon_fast_lut_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                         const sophon_lut_int8_params* p);
/* sophon_fast_activation.c: f32 activation (every kind), bit-identical (but
 * AVX-512's sigmoid family, see below) to the reference kernel of reference/sophon_tiu_activation.c; always 0. */
int sophon_fast_activation_f32(sophon_device* dev, const sophon_local* out,
                               const sophon_local* in, const sophon_activation* act);
/* sophon_fast_eltwise.c: f32 binary element-wise and pool2d, bit-identical to the
 * reference kernels of
 * reference/sophon_tiu_binary.c and sophon_tiu_pool.c; 0, or -1 as above. */
int sophon_fast_binary_f32(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                           const sophon_local* b, sophon_binary_op op,
                           const sophon_activation* act);
int sophon_fast_pool2d_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_pool_params* p);

/* data[i] = act(data[i] + bias) for `count` accumulated f32 outputs. */
static inline void sophon_finish_f32(float* data, int64_t count, float bias,
                                     const sophon_activation* act) {
  int64_t i;
  if (act->kind == SOPHON_ACT_NONE || act->kind == SOPHON_ACT_RELU) {
    const int relu = act->kind == SOPHON_ACT_RELU;
    for (i = 0; i < count; ++i) {
      const float v = data[i] + bias;
      data[i] = relu && !(v > 0.0f) && v == v ? 0.0f : v;
    }
    return;
  }
  for (i = 0; i < count; ++i) data[i] = sophon_activate_f32(act, data[i] + bias);
}

/* data[i] = act(data[i]) for `count` floats. */
static inline void sophon_activate_span_f32(float* data, int64_t count,
                                            const sophon_activation* act) {
  int64_t i;
  for (i = 0; i < count; ++i) data[i] = sophon_activate_f32(act, data[i]);
}

/* The activations the vector kernels apply in registers (none, relu, clip, leaky
 * relu, hard-sigmoid, hard-swish); every other kind is applied element by element
 * with sophon_activate_f32, in a second pass over the kernel's outputs (the vector
 * helpers below leave x unchanged for them). */
static inline int sophon_act_is_simple(const sophon_activation* act) {
  return act == NULL || act->kind == SOPHON_ACT_NONE || act->kind == SOPHON_ACT_RELU ||
         act->kind == SOPHON_ACT_CLIP || act->kind == SOPHON_ACT_LEAKY_RELU ||
         act->kind == SOPHON_ACT_HARD_SIGMOID || act->kind == SOPHON_ACT_HARD_SWISH;
}

#if SOPHON_X86_DISPATCH
/* sophon_activate_f32 on 8 floats for the simple kinds (x unchanged for the others),
 * bit for bit, NaN and signed zeros included. max_ps(a, b) is exactly
 * a > b ? a : b and min_ps(a, b) is a < b ? a : b, so
 *   relu  x > 0 || x is NaN ? x : 0              = max_ps(x, 0), NaN lanes kept
 *   clip  x < lo ? lo : (x > hi ? hi : x)        = max_ps(lo, min_ps(hi, x))
 *         (if x < lo then x <= hi, so the inner select is x; otherwise the inner
 *          select is >= lo and the outer one keeps it; NaN stays NaN)
 *   leaky x >= 0 ? x : alpha * x                 = blend on the ordered x >= 0
 *   hard-sigmoid  clamp(alpha * x + beta, 0, 1)  = a multiply, an add (two roundings:
 *                                                  the runtime is built without
 *                                                  contraction), then clip's selects
 *   hard-swish    x * clamp(x + 3, 0, 6) / 6     = add, clip's selects, multiply, divide */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256 sophon_clamp_avx2(__m256 r, float lo, float hi) {
  return _mm256_max_ps(_mm256_set1_ps(lo), _mm256_min_ps(_mm256_set1_ps(hi), r));
}

SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256 sophon_act_avx2(
    __m256 x, const sophon_activation* act) {
  if (act == NULL) return x;
  switch (act->kind) {
    case SOPHON_ACT_HARD_SIGMOID:
      return sophon_clamp_avx2(_mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(act->alpha), x),
                                             _mm256_set1_ps(act->beta)), 0.0f, 1.0f);
    case SOPHON_ACT_HARD_SWISH:
      return _mm256_div_ps(_mm256_mul_ps(x, sophon_clamp_avx2(_mm256_add_ps(x, _mm256_set1_ps(3.0f)),
                                                              0.0f, 6.0f)),
                           _mm256_set1_ps(6.0f));
    case SOPHON_ACT_RELU:
      return _mm256_blendv_ps(_mm256_max_ps(x, _mm256_setzero_ps()), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    case SOPHON_ACT_CLIP: return sophon_clamp_avx2(x, act->lo, act->hi);
    case SOPHON_ACT_LEAKY_RELU:
      return _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(act->alpha), x), x,
                              _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
    default: return x;
  }
}

/* One max-pool tap: x > acc || x is NaN ? x : acc (a NaN tap wins, and a NaN
 * accumulator stays: max_ps returns its second operand when either is NaN). */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256 sophon_max_tap_avx2(__m256 x, __m256 acc) {
  return _mm256_blendv_ps(_mm256_max_ps(x, acc), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* A mask selecting the first `count` (0..8) of 8 floats, for maskload. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i sophon_tail_mask_avx2(int32_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Stores the first `count` (0..8) floats of v to dst, writing nothing else: 4, 2
 * and 1 at a time (a masked store, vmaskmovps, is microcoded and slow on AMD). */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline void sophon_store_first_avx2(float* dst, __m256 v,
                                                                           int32_t count) {
  __m128 part = _mm256_castps256_ps128(v);
  if (count >= 8) {
    _mm256_storeu_ps(dst, v);
    return;
  }
  if (count >= 4) {
    _mm_storeu_ps(dst, part);
    part = _mm256_extractf128_ps(v, 1);
    dst += 4;
    count -= 4;
  }
  if (count >= 2) {
    _mm_storel_epi64((__m128i*)(void*)dst, _mm_castps_si128(part));
    part = _mm_movehl_ps(part, part);
    dst += 2;
    count -= 2;
  }
  if (count >= 1) _mm_store_ss(dst, part);
}
#endif

/* ------------------------------------------------- sigmoid and SiLU, AVX-512
 * The one place where a fast f32 kernel does not repeat the reference's operations:
 * sigmoid and SiLU (x * sigmoid(x), EfficientNet's and YOLO's activation) call the
 * C library's expf per element in the reference, which costs more than the conv it
 * follows. With AVX-512, the conv micro-kernel, depthwise conv and tiu_activation
 * compute them 16 at a time in registers instead:
 *     e = exp(-x): -x = n * ln2 + r (n rounded to nearest, |r| <= ln2 / 2, ln2 in
 *         two parts), e^r by Cephes' degree-7 polynomial (1 + r + r^2 * P(r)),
 *         e = e^r * 2^n by scalef (exact, and inf / 0 past the f32 range, as expf);
 *     sigmoid = 1 / (1 + e), SiLU = x * sigmoid: the reference's last operations.
 * e is within about 1.5 ulp of expf's; the add, divide and multiply round as the
 * reference's do (each side half an ulp per step), so the result is within
 * SOPHON_SIGMOID_ULPS ulp of the reference's (4 at most over 12 million random
 * inputs on the Zen 4 host; more only where SiLU multiplies a subnormal sigmoid,
 * below 2^-140 in absolute terms: tests/test_fast_activations.py). NaN stays NaN,
 * +-inf give the reference's 1 / 0 (sigmoid) and inf / NaN (SiLU); x is not negated
 * and a NaN is carried through rather than blended back (see the function: the same
 * bits as negating, 9% faster on Zen 4). Other ISA levels
 * and every other kind stay bit-identical to the reference. */
#define SOPHON_SIGMOID_ULPS 6

/* 1 for the kinds the AVX-512 kernels compute as above. */
static inline int sophon_act_is_sigmoid_family(const sophon_activation* act) {
  return act != NULL && (act->kind == SOPHON_ACT_SIGMOID || act->kind == SOPHON_ACT_SILU);
}

/* data[i] = act(data[i] + *bias) for `count` floats (bias NULL: act(data[i])), as
 * sophon_finish_f32 / sophon_activate_span_f32, with the sigmoid family in AVX-512
 * registers when `avx512` (sophon_fast_activation.c). */
void sophon_finish_span_f32(int avx512, float* data, int64_t count, const float* bias,
                            const sophon_activation* act);

#if SOPHON_X86_DISPATCH
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512 sophon_sigmoid_avx512(__m512 x) {
  /* u = -t with t = -x clamped to [-104, 89], where exp(t) is 0 or inf in f32 anyway:
     u = x clamped to [-89, 104], the constant first so that a NaN x comes through
     (min_ps and max_ps return their second operand when one is NaN) and every step
     after keeps it NaN. n = round(t * log2 e) = round(u * -log2 e) and r = t - n * c1
     = -(n * c1) - u, the same exact values rounded once each (rounding to nearest is
     symmetric), so the same bits as with t itself (all 2^32 inputs checked) */
  const __m512 u = _mm512_min_ps(_mm512_set1_ps(104.0f),
                                 _mm512_max_ps(_mm512_set1_ps(-89.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(u, _mm512_set1_ps(-1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmsub_ps(n, _mm512_set1_ps(0.693359375f), u);
  __m512 p;
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_div_ps(_mm512_set1_ps(1.0f),
                       _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_scalef_ps(p, n)));
}

/* act(x) for the sigmoid family; x unchanged for other kinds. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512 sophon_sigmoid_family_avx512(
    __m512 x, const sophon_activation* act) {
  if (act->kind == SOPHON_ACT_SIGMOID) return sophon_sigmoid_avx512(x);
  if (act->kind == SOPHON_ACT_SILU) return _mm512_mul_ps(x, sophon_sigmoid_avx512(x));
  return x;
}

/* clamp(r, lo, hi) on 16 floats, as sophon_clamp_avx2. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512 sophon_clamp_avx512(__m512 r, float lo,
                                                                          float hi) {
  return _mm512_max_ps(_mm512_set1_ps(lo), _mm512_min_ps(_mm512_set1_ps(hi), r));
}

/* sophon_act_avx2 on 16 floats (same operations and selections, so the same bits),
 * and the sigmoid family as above; x unchanged for the other kinds. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512 sophon_act_avx512(
    __m512 x, const sophon_activation* act) {
  if (act == NULL) return x;
  switch (act->kind) {
    case SOPHON_ACT_HARD_SIGMOID:
      return sophon_clamp_avx512(_mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(act->alpha), x),
                                               _mm512_set1_ps(act->beta)), 0.0f, 1.0f);
    case SOPHON_ACT_HARD_SWISH:
      return _mm512_div_ps(
          _mm512_mul_ps(x, sophon_clamp_avx512(_mm512_add_ps(x, _mm512_set1_ps(3.0f)), 0.0f, 6.0f)),
          _mm512_set1_ps(6.0f));
    case SOPHON_ACT_RELU: /* NaN lanes kept, as sophon_act_avx2 */
      return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q),
                                  _mm512_max_ps(x, _mm512_setzero_ps()), x);
    case SOPHON_ACT_CLIP: return sophon_clamp_avx512(x, act->lo, act->hi);
    case SOPHON_ACT_LEAKY_RELU:
      return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ),
                                  _mm512_mul_ps(_mm512_set1_ps(act->alpha), x), x);
    case SOPHON_ACT_SIGMOID:
    case SOPHON_ACT_SILU: return sophon_sigmoid_family_avx512(x, act);
    default: return x;
  }
}
#endif

/* ------------------------------------------------------------ phase planes
 * A strided window reads in[y][x * sw + c] for consecutive outputs x. Split into
 * its sw phase planes, P_r[y][j] = in[y][j * sw + r] (rows of phase_w =
 * ceil(w / sw) floats, planes of h * phase_w), the same taps are consecutive:
 * in[y][x * sw + c] = P_r[y][x + q] with c = q * sw + r, 0 <= r < sw. */

/* Writes the sw phase planes of the h x w plane `in` to `phases`. */
static inline void sophon_split_phases_f32(const float* in, int32_t h, int32_t w, int32_t sw,
                                           int64_t phase_w, float* phases) {
  int32_t y, r;
  int64_t j;
  for (r = 0; r < sw; ++r) {
    float* plane = phases + r * (int64_t)h * phase_w;
    for (y = 0; y < h; ++y) {
      const float* in_row = in + (int64_t)y * w;
      float* row = plane + (int64_t)y * phase_w;
      for (j = 0; j * sw + r < w; ++j) row[j] = in_row[j * sw + r];
    }
  }
}

#if SOPHON_X86_DISPATCH
/* even[j] = in[2 * j], odd[j] = in[2 * j + 1] for j < pairs, 8 pairs per step (the
 * last step through masks); reads and writes nothing else. */
SOPHON_AVX2 static inline void sophon_deinterleave2_avx2(const float* in, int64_t pairs,
                                                         float* even, float* odd) {
  int64_t j;
  for (j = 0; j < pairs; j += 8) {
    const int32_t left = pairs - j < 8 ? (int32_t)(pairs - j) : 8;
    __m256 a, b, e, o;
    if (left == 8) {
      a = _mm256_loadu_ps(in + 2 * j);     /* x0 .. x7 */
      b = _mm256_loadu_ps(in + 2 * j + 8); /* x8 .. x15 */
    } else {
      a = _mm256_maskload_ps(in + 2 * j, sophon_tail_mask_avx2(2 * left));
      b = left > 4 ? _mm256_maskload_ps(in + 2 * j + 8, sophon_tail_mask_avx2(2 * left - 8))
                   : _mm256_setzero_ps();
    }
    /* the shuffles give [x0 x2 x8 x10 | x4 x6 x12 x14] (and the odd ones); the
       permute of 64-bit pairs puts them in order */
    e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
    o = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
    if (left == 8) {
      _mm256_storeu_ps(even + j, e);
      _mm256_storeu_ps(odd + j, o);
    } else {
      sophon_store_first_avx2(even + j, e, left);
      sophon_store_first_avx2(odd + j, o, left);
    }
  }
}

/* dst[j] = src[j] for j < count, 8 floats per step (the last through a mask). */
SOPHON_AVX2 static inline void sophon_copy_avx2(float* dst, const float* src, int64_t count) {
  int64_t j;
  for (j = 0; j + 8 <= count; j += 8) _mm256_storeu_ps(dst + j, _mm256_loadu_ps(src + j));
  if (j < count) {
    const __m256i mask = sophon_tail_mask_avx2((int32_t)(count - j));
    sophon_store_first_avx2(dst + j, _mm256_maskload_ps(src + j, mask), (int32_t)(count - j));
  }
}

/* sophon_split_phases_f32 for sw = 2 with AVX2. */
SOPHON_AVX2 static inline void sophon_split_phases2_avx2(const float* in, int32_t h, int32_t w,
                                                         int64_t phase_w, float* phases) {
  float* even = phases;
  float* odd = phases + (int64_t)h * phase_w;
  int32_t y;
  for (y = 0; y < h; ++y) {
    const float* in_row = in + (int64_t)y * w;
    sophon_deinterleave2_avx2(in_row, w / 2, even + (int64_t)y * phase_w,
                              odd + (int64_t)y * phase_w);
    if (w % 2 != 0) even[(int64_t)y * phase_w + w / 2] = in_row[w - 1];
  }
}
#endif

#endif /* SOPHON_FAST_H_ */
