/*
 * sophon_fast_int8_binary.c - fast binary_int8 (MUL, MAX, MIN, PRELU, MUL_FLOAT32,
 * SQUARED_DIFFERENCE and onnxruntime's ADD_FLOAT, SUB_FLOAT, MUL_FLOAT, ADD_QLINEAR*), beside the
 * reference kernel of reference/sophon_tiu_eltwise_int8.c (the specification;
 * tests/test_fast_int8.py checks one against the other for equality). Same
 * operands, already checked by the instruction. Tasks own channels (batch item,
 * channel); each output is computed by one task. a has out's shape; b has out's
 * shape or one value per channel (h = w = 1: PRELU's slope, a squeeze-and-
 * excitation scale); other broadcasts go to the reference.
 *
 * One loop per op over a contiguous channel (the reference calls its element
 * function through a pointer and steps each operand's broadcast dims). MUL and
 * PRELU run on 16 (AVX-512) or 8 (AVX2) int32 lanes with the vector primitives of
 * sophon_fast_int8.h, which equal the scalar MultiplyByQuantizedMultiplier lane by
 * lane (multipliers >= 0, shifts in [-31, 30]: checked); the products
 * (x - zp1) * (y - zp2) are within 255 * 255 in magnitude, exact in int32 lanes.
 * PRELU computes both branches and selects by the sign of x - zp1. MAX and MIN
 * are plain loops the compiler vectorises. SQUARED_DIFFERENCE calls the reference's
 * fixed-point functions (squared_difference_run). The float ops (ADD_FLOAT, SUB_FLOAT,
 * MUL_FLOAT) run their float32 steps on 8 or 16 float lanes, each one IEEE rounding as
 * in the scalar sophon_binary_int8_float_op; ADD_QLINEAR* (onnxruntime's QLinearAdd) the
 * same fused multiply-adds as its scalar code (AVX2 with FMA, AVX-512). So the outputs
 * are bit-identical.
 *
 * lut_int8, out = table[in]: by channel, as above, with the table in a local copy
 * (plain C) or, with AVX-512 VBMI, 64 bytes at a time: vpermi2b looks up the low 7
 * bits of each byte in the table's first and second 128 bytes, and the byte's top
 * bit (its sign) picks one of the two. A binary_int8 whose b is one value per
 * channel (a squeeze-and-excitation scale, a PRELU slope) is a function of a alone
 * in each channel: on a plane of at least LUT_MIN_PLANE elements its 256 results
 * are computed once, by binary_run itself on the 256 byte values, then looked up;
 * the same results, bit for bit.
 */
#include <string.h>

#include "fast/sophon_fast_int8.h"
#include "reference/sophon_reference.h"
#include "sophon_quant.h"

/* ------------------------------------------------------------ binary_int8 */

/* out[i] = table[(uint8_t)in[i]] for i < count (lookup_c, lookup_avx512). */
typedef void (*lookup_fn)(const int8_t* in, int8_t* out, int64_t count, const int8_t* table);

typedef struct {
  sophon_view out_v, a_v, b_v;
  const sophon_binary_int8_params* p;
  int32_t batches, channels;
  int64_t plane;
  int b_per_channel; /* b has h = w = 1: one value per (batch item, channel) */
  int b_batch_1, b_channel_1;
  int use_avx2, use_fma, use_avx512;
  lookup_fn lookup;
} binary_job;

static int32_t clamp(int32_t v, const sophon_binary_int8_params* p) {
  return v < p->act_min ? p->act_min : (v > p->act_max ? p->act_max : v);
}

/* SQUARED_DIFFERENCE (squared_difference.cc) with the reference's fixed-point functions:
 * S1((x - zp1) * 2^7) and S2((y - zp2) * 2^7) are functions of one byte each, taken
 * from two 256-entry tables on a run long enough to pay for them; then the square,
 * saturated as in the reference, S3, the zero point and the clamp. */
static void squared_difference_run(const int8_t* a, const int8_t* b, int64_t b_step, int8_t* out,
                                   int64_t count, const sophon_binary_int8_params* p) {
  int32_t first[256], second[256];
  const int tables = count >= 256;
  int64_t i;
  int32_t v;
  if (tables) {
    for (v = -128; v < 128; ++v) {
      first[v + 128] = sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
          (v - p->input1_zero_point) * (1 << 7), p->multiplier1, p->shift1);
      second[v + 128] = sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
          (v - p->input2_zero_point) * (1 << 7), p->multiplier2, p->shift2);
    }
  }
  for (i = 0; i < count; ++i) {
    const int32_t x = a[i], y = b[i * b_step];
    const int32_t d =
        tables ? first[x + 128] - second[y + 128]
               : sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
                     (x - p->input1_zero_point) * (1 << 7), p->multiplier1, p->shift1) -
                     sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
                         (y - p->input2_zero_point) * (1 << 7), p->multiplier2, p->shift2);
    const int64_t square = (int64_t)d * d;
    out[i] = (int8_t)clamp(sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
                               square > INT32_MAX ? INT32_MAX : (int32_t)square, p->multiplier3,
                               p->shift3) +
                               p->output_zero_point,
                           p);
  }
}

/* out[i] = op(a[i], b[i * b_step]) for i < count (b_step 0: one b value). */
static void binary_run(const int8_t* a, const int8_t* b, int64_t b_step, int8_t* out,
                       int64_t count, const sophon_binary_int8_params* p) {
  const int32_t zp1 = p->input1_zero_point, zp2 = p->input2_zero_point;
  const int32_t zp_out = p->output_zero_point;
  int64_t i;
  switch (p->op) {
    case SOPHON_BINARY_INT8_MUL:
      for (i = 0; i < count; ++i)
        out[i] = (int8_t)clamp(sophon_mbqm_inline((a[i] - zp1) * (b[i * b_step] - zp2),
                                                  p->multiplier1, p->shift1) +
                                   zp_out,
                               p);
      break;
    case SOPHON_BINARY_INT8_MAX:
      for (i = 0; i < count; ++i) {
        const int32_t x = a[i], y = b[i * b_step];
        out[i] = (int8_t)clamp(x > y ? x : y, p);
      }
      break;
    case SOPHON_BINARY_INT8_MIN:
      for (i = 0; i < count; ++i) {
        const int32_t x = a[i], y = b[i * b_step];
        out[i] = (int8_t)clamp(x < y ? x : y, p);
      }
      break;
    case SOPHON_BINARY_INT8_PRELU:
      for (i = 0; i < count; ++i) {
        const int32_t x = a[i] - zp1;
        out[i] = (int8_t)clamp(
            (x >= 0 ? sophon_mbqm_inline(x, p->multiplier1, p->shift1)
                    : sophon_mbqm_inline(x * (b[i * b_step] - zp2), p->multiplier2, p->shift2)) +
                zp_out,
            p);
      }
      break;
    case SOPHON_BINARY_INT8_MUL_FLOAT32: /* onnxruntime's QLinearMul: one float32 rounding */
      for (i = 0; i < count; ++i)
        out[i] = (int8_t)clamp(
            sophon_multiply_by_float_scale((a[i] - zp1) * (b[i * b_step] - zp2), p->scale) +
                zp_out,
            p);
      break;
    case SOPHON_BINARY_INT8_ADD_FLOAT:
    case SOPHON_BINARY_INT8_SUB_FLOAT:
    case SOPHON_BINARY_INT8_MUL_FLOAT: /* onnxruntime's float op between DQ and Q */
    case SOPHON_BINARY_INT8_ADD_QLINEAR:
    case SOPHON_BINARY_INT8_ADD_QLINEAR_BROADCAST: /* its QLinearAdd */
      for (i = 0; i < count; ++i) out[i] = (int8_t)sophon_binary_int8_float_op(a[i], b[i * b_step], p);
      break;
    case SOPHON_BINARY_INT8_SQUARED_DIFFERENCE:
      squared_difference_run(a, b, b_step, out, count, p);
      break;
  }
}

/* ADD_FLOAT, SUB_FLOAT and MUL_FLOAT: the float ops (is_float_op) have vector loops. */
static int is_float_op(sophon_binary_int8_op op) {
  return op == SOPHON_BINARY_INT8_ADD_FLOAT || op == SOPHON_BINARY_INT8_SUB_FLOAT ||
         op == SOPHON_BINARY_INT8_MUL_FLOAT;
}

/* ADD_QLINEAR and ADD_QLINEAR_BROADCAST (onnxruntime's QLinearAdd): vector loops with FMA. */
static int is_qlinear_add(sophon_binary_int8_op op) {
  return op == SOPHON_BINARY_INT8_ADD_QLINEAR || op == SOPHON_BINARY_INT8_ADD_QLINEAR_BROADCAST;
}

#if SOPHON_X86_DISPATCH
/* MultiplyByQuantizedMultiplier(x, m, shift) on 8 lanes, shift in [-31, 30]. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i mbqm_avx2(__m256i x, int32_t m,
                                                               int32_t shift) {
  return sophon_rounding_shift_avx2(
      sophon_srdhm_avx2(sophon_sat_shift_left_avx2(x, shift > 0 ? shift : 0), _mm256_set1_epi32(m)),
      shift < 0 ? -shift : 0);
}

/* MUL or PRELU on 8 lanes: x, y are the int8 inputs widened to int32. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i mul_prelu_avx2(
    __m256i x, __m256i y, const sophon_binary_int8_params* p) {
  const __m256i dx = _mm256_sub_epi32(x, _mm256_set1_epi32(p->input1_zero_point));
  const __m256i dy = _mm256_sub_epi32(y, _mm256_set1_epi32(p->input2_zero_point));
  const __m256i product = mbqm_avx2(_mm256_mullo_epi32(dx, dy),
                                    p->op == SOPHON_BINARY_INT8_MUL ? p->multiplier1 : p->multiplier2,
                                    p->op == SOPHON_BINARY_INT8_MUL ? p->shift1 : p->shift2);
  __m256i result = product;
  if (p->op == SOPHON_BINARY_INT8_PRELU) /* x - zp1 >= 0: the identity rescale */
    result = _mm256_blendv_epi8(mbqm_avx2(dx, p->multiplier1, p->shift1), product,
                                _mm256_cmpgt_epi32(_mm256_setzero_si256(), dx));
  result = _mm256_add_epi32(result, _mm256_set1_epi32(p->output_zero_point));
  return _mm256_min_epi32(_mm256_max_epi32(result, _mm256_set1_epi32(p->act_min)),
                          _mm256_set1_epi32(p->act_max));
}

/* sophon_binary_int8_float_op on 8 lanes: x, y are the int8 inputs widened to int32. Each
 * float32 product, sum and quotient is one IEEE rounding, as in the scalar code (no fused
 * multiply-add); clamping to the integers [act_min - zp, act_max - zp] before cvtps2dq's
 * rounding (to nearest even, as nearbyintf) equals clamping after it. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i float_op_avx2(
    __m256i x, __m256i y, const sophon_binary_int8_params* p) {
  const __m256 fx = _mm256_mul_ps(
      _mm256_cvtepi32_ps(_mm256_sub_epi32(x, _mm256_set1_epi32(p->input1_zero_point))),
      _mm256_set1_ps(p->input1_scale));
  const __m256 fy = _mm256_mul_ps(
      _mm256_cvtepi32_ps(_mm256_sub_epi32(y, _mm256_set1_epi32(p->input2_zero_point))),
      _mm256_set1_ps(p->input2_scale));
  const __m256 value = p->op == SOPHON_BINARY_INT8_ADD_FLOAT   ? _mm256_add_ps(fx, fy)
                       : p->op == SOPHON_BINARY_INT8_SUB_FLOAT ? _mm256_sub_ps(fx, fy)
                                                               : _mm256_mul_ps(fx, fy);
  __m256 q = _mm256_div_ps(value, _mm256_set1_ps(p->output_scale));
  q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps((float)(p->act_min - p->output_zero_point))),
                    _mm256_set1_ps((float)(p->act_max - p->output_zero_point)));
  return _mm256_add_epi32(_mm256_cvtps_epi32(q), _mm256_set1_epi32(p->output_zero_point));
}

/* qlinear_add (reference/sophon_tiu_eltwise_int8.c) on 8 lanes: the same fused
 * multiply-adds and roundings; clamping to the integers [act_min + o, act_max + o]
 * before cvtps2dq's rounding to nearest even equals clamping after it. */
SOPHON_AVX2_FMA SOPHON_ALWAYS_INLINE static inline __m256i qlinear_add_avx2(
    __m256i x, __m256i y, const sophon_binary_int8_params* p) {
  const __m256i o = _mm256_set1_epi32(p->value_offset);
  const __m256 fx = _mm256_cvtepi32_ps(_mm256_add_epi32(x, o));
  const __m256 fy = _mm256_cvtepi32_ps(_mm256_add_epi32(y, o));
  const __m256 c = _mm256_set1_ps(p->output_scale), r2 = _mm256_set1_ps(p->input2_scale);
  const __m256 partial = p->op == SOPHON_BINARY_INT8_ADD_QLINEAR
                             ? _mm256_fmadd_ps(fy, r2, c)
                             : _mm256_add_ps(c, _mm256_mul_ps(fy, r2));
  __m256 v = _mm256_fmadd_ps(fx, _mm256_set1_ps(p->input1_scale), partial);
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps((float)(p->act_min + p->value_offset))),
                    _mm256_set1_ps((float)(p->act_max + p->value_offset)));
  return _mm256_sub_epi32(_mm256_cvtps_epi32(v), o);
}

/* binary_run for ADD_QLINEAR and ADD_QLINEAR_BROADCAST, 16 elements at a time. */
SOPHON_AVX2_FMA static void qlinear_add_run_avx2(const int8_t* a, const int8_t* b, int64_t b_step,
                                                 int8_t* out, int64_t count,
                                                 const sophon_binary_int8_params* params) {
  const sophon_binary_int8_params local = *params, *p = &local; /* not aliased by out */
  int64_t i;
  for (i = 0; i + 16 <= count; i += 16) {
    /* in place (out == a or b): all 16 inputs are read before the 16 outputs are written */
    const __m128i a16 = _mm_loadu_si128((const __m128i*)(const void*)(a + i));
    const __m128i b16 = b_step ? _mm_loadu_si128((const __m128i*)(const void*)(b + i))
                               : _mm_set1_epi8((char)b[0]);
    const __m256i lo = qlinear_add_avx2(_mm256_cvtepi8_epi32(a16), _mm256_cvtepi8_epi32(b16), p);
    const __m256i hi = qlinear_add_avx2(_mm256_cvtepi8_epi32(_mm_srli_si128(a16, 8)),
                                        _mm256_cvtepi8_epi32(_mm_srli_si128(b16, 8)), p);
    _mm_storeu_si128((__m128i*)(void*)(out + i), sophon_pack_bytes_avx2(lo, hi));
  }
  binary_run(a + i, b + i * b_step, b_step, out + i, count - i, p);
}

/* binary_run for MUL and PRELU (and, float_op_avx2, the float ops), 16 elements at a time. */
SOPHON_AVX2 static void mul_prelu_run_avx2(const int8_t* a, const int8_t* b, int64_t b_step,
                                           int8_t* out, int64_t count,
                                           const sophon_binary_int8_params* params) {
  const sophon_binary_int8_params local = *params, *p = &local; /* not aliased by out */
  int64_t i;
  for (i = 0; i + 16 <= count; i += 16) {
    /* in place (out == a or b): all 16 inputs are read before the 16 outputs are written */
    const __m128i a16 = _mm_loadu_si128((const __m128i*)(const void*)(a + i));
    const __m128i b16 = b_step ? _mm_loadu_si128((const __m128i*)(const void*)(b + i))
                               : _mm_set1_epi8((char)b[0]);
    const __m256i xlo = _mm256_cvtepi8_epi32(a16), ylo = _mm256_cvtepi8_epi32(b16);
    const __m256i xhi = _mm256_cvtepi8_epi32(_mm_srli_si128(a16, 8));
    const __m256i yhi = _mm256_cvtepi8_epi32(_mm_srli_si128(b16, 8));
    const int float_op = is_float_op(p->op);
    const __m256i lo = float_op ? float_op_avx2(xlo, ylo, p) : mul_prelu_avx2(xlo, ylo, p);
    const __m256i hi = float_op ? float_op_avx2(xhi, yhi, p) : mul_prelu_avx2(xhi, yhi, p);
    _mm_storeu_si128((__m128i*)(void*)(out + i), sophon_pack_bytes_avx2(lo, hi));
  }
  binary_run(a + i, b + i * b_step, b_step, out + i, count - i, p);
}

/* MultiplyByQuantizedMultiplier on 16 lanes, shift in [-31, 30]. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i mbqm_avx512(__m512i x, int32_t m,
                                                                   int32_t shift) {
  return sophon_rounding_shift_avx512(
      sophon_srdhm_avx512(sophon_sat_shift_left_avx512(x, shift > 0 ? shift : 0),
                          _mm512_set1_epi32(m)),
      shift < 0 ? -shift : 0);
}

/* mul_prelu_avx2 on 16 lanes. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i mul_prelu_avx512(
    __m512i x, __m512i y, const sophon_binary_int8_params* p) {
  const __m512i dx = _mm512_sub_epi32(x, _mm512_set1_epi32(p->input1_zero_point));
  const __m512i dy = _mm512_sub_epi32(y, _mm512_set1_epi32(p->input2_zero_point));
  __m512i result = mbqm_avx512(_mm512_mullo_epi32(dx, dy),
                               p->op == SOPHON_BINARY_INT8_MUL ? p->multiplier1 : p->multiplier2,
                               p->op == SOPHON_BINARY_INT8_MUL ? p->shift1 : p->shift2);
  if (p->op == SOPHON_BINARY_INT8_PRELU) /* x - zp1 >= 0: the identity rescale */
    result = _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(dx, _mm512_setzero_si512()), result,
                                     mbqm_avx512(dx, p->multiplier1, p->shift1));
  result = _mm512_add_epi32(result, _mm512_set1_epi32(p->output_zero_point));
  return _mm512_min_epi32(_mm512_max_epi32(result, _mm512_set1_epi32(p->act_min)),
                          _mm512_set1_epi32(p->act_max));
}

/* MUL_FLOAT32 on 16 lanes: x, y are the int8 inputs widened to int32. The product of
 * the differences (|.| <= 65025) is exact in float32, cvtdq2ps keeps it, the multiply
 * is the one float32 rounding of sophon_multiply_by_float_scale; clamping to the
 * integers [act_min - zp, act_max - zp] before cvtps2dq's rounding (to nearest even,
 * as rintf) gives the same result as clamping after it, since rounding is monotone
 * and keeps integers, and keeps cvtps2dq within int32. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i mul_float_avx512(
    __m512i x, __m512i y, const sophon_binary_int8_params* p) {
  const __m512i product = _mm512_mullo_epi32(_mm512_sub_epi32(x, _mm512_set1_epi32(p->input1_zero_point)),
                                             _mm512_sub_epi32(y, _mm512_set1_epi32(p->input2_zero_point)));
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(product), _mm512_set1_ps(p->scale));
  f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps((float)(p->act_min - p->output_zero_point))),
                    _mm512_set1_ps((float)(p->act_max - p->output_zero_point)));
  return _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(p->output_zero_point));
}

/* float_op_avx2 on 16 lanes. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i float_op_avx512(
    __m512i x, __m512i y, const sophon_binary_int8_params* p) {
  const __m512 fx = _mm512_mul_ps(
      _mm512_cvtepi32_ps(_mm512_sub_epi32(x, _mm512_set1_epi32(p->input1_zero_point))),
      _mm512_set1_ps(p->input1_scale));
  const __m512 fy = _mm512_mul_ps(
      _mm512_cvtepi32_ps(_mm512_sub_epi32(y, _mm512_set1_epi32(p->input2_zero_point))),
      _mm512_set1_ps(p->input2_scale));
  const __m512 value = p->op == SOPHON_BINARY_INT8_ADD_FLOAT   ? _mm512_add_ps(fx, fy)
                       : p->op == SOPHON_BINARY_INT8_SUB_FLOAT ? _mm512_sub_ps(fx, fy)
                                                               : _mm512_mul_ps(fx, fy);
  __m512 q = _mm512_div_ps(value, _mm512_set1_ps(p->output_scale));
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps((float)(p->act_min - p->output_zero_point))),
                    _mm512_set1_ps((float)(p->act_max - p->output_zero_point)));
  return _mm512_add_epi32(_mm512_cvtps_epi32(q), _mm512_set1_epi32(p->output_zero_point));
}

/* qlinear_add_avx2 on 16 lanes. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i qlinear_add_avx512(
    __m512i x, __m512i y, const sophon_binary_int8_params* p) {
  const __m512i o = _mm512_set1_epi32(p->value_offset);
  const __m512 fx = _mm512_cvtepi32_ps(_mm512_add_epi32(x, o));
  const __m512 fy = _mm512_cvtepi32_ps(_mm512_add_epi32(y, o));
  const __m512 c = _mm512_set1_ps(p->output_scale), r2 = _mm512_set1_ps(p->input2_scale);
  const __m512 partial = p->op == SOPHON_BINARY_INT8_ADD_QLINEAR
                             ? _mm512_fmadd_ps(fy, r2, c)
                             : _mm512_add_ps(c, _mm512_mul_ps(fy, r2));
  __m512 v = _mm512_fmadd_ps(fx, _mm512_set1_ps(p->input1_scale), partial);
  v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps((float)(p->act_min + p->value_offset))),
                    _mm512_set1_ps((float)(p->act_max + p->value_offset)));
  return _mm512_sub_epi32(_mm512_cvtps_epi32(v), o);
}

/* binary_run for MUL, PRELU, MUL_FLOAT32, the float ops and QLinearAdd, 16 elements at a
 * time (the last 16 through masks). */
SOPHON_AVX512 static void mul_prelu_run_avx512(const int8_t* a, const int8_t* b, int64_t b_step,
                                               int8_t* out, int64_t count,
                                               const sophon_binary_int8_params* params) {
  const sophon_binary_int8_params local = *params, *p = &local; /* not aliased by out */
  int64_t i;
  for (i = 0; i < count; i += 16) {
    /* in place (out == a or b): the 16 inputs are read before the 16 outputs are written */
    const __mmask16 lanes =
        count - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (count - i)) - 1u);
    const __m512i x = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(lanes, a + i));
    const __m512i y = b_step ? _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(lanes, b + i))
                             : _mm512_set1_epi32(b[0]);
    const __m512i result = p->op == SOPHON_BINARY_INT8_MUL_FLOAT32 ? mul_float_avx512(x, y, p)
                           : is_float_op(p->op)                     ? float_op_avx512(x, y, p)
                           : is_qlinear_add(p->op)                  ? qlinear_add_avx512(x, y, p)
                                                                    : mul_prelu_avx512(x, y, p);
    _mm_mask_storeu_epi8(out + i, lanes, sophon_pack_bytes_avx512(result));
  }
}
#endif

/* ---------------------------------------------------------------- lookup */

/* A binary_int8 channel of at least this many elements with one b value runs as a
 * table lookup (the table costs 256 evaluations). */
#define LUT_MIN_PLANE 1024

/* out[i] = table[(uint8_t)in[i]] for i < count (in place allowed). */
static void lookup_c(const int8_t* in, int8_t* out, int64_t count, const int8_t* table) {
  int8_t local[256]; /* a copy: stores through out cannot change it */
  int64_t i;
  memcpy(local, table, sizeof(local));
  for (i = 0; i < count; ++i) out[i] = local[(uint8_t)in[i]];
}

#if SOPHON_X86_DISPATCH
/* lookup_c, 64 bytes at a time (the last 64 through masks). */
SOPHON_AVX512VBMI static void lookup_avx512(const int8_t* in, int8_t* out, int64_t count,
                                            const int8_t* table) {
  const __m512i t0 = _mm512_loadu_si512((const void*)table);
  const __m512i t1 = _mm512_loadu_si512((const void*)(table + 64));
  const __m512i t2 = _mm512_loadu_si512((const void*)(table + 128));
  const __m512i t3 = _mm512_loadu_si512((const void*)(table + 192));
  int64_t i;
  for (i = 0; i < count; i += 64) {
    const __mmask64 lanes =
        count - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (count - i)) - 1u);
    const __m512i x = _mm512_maskz_loadu_epi8(lanes, in + i);
    const __m512i low = _mm512_permutex2var_epi8(t0, x, t1);  /* bytes 0 .. 127 */
    const __m512i high = _mm512_permutex2var_epi8(t2, x, t3); /* bytes 128 .. 255 */
    _mm512_mask_storeu_epi8(out + i, lanes,
                            _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), low, high));
  }
}
#endif

/* The lookup for the device's instruction sets. */

static lookup_fn lookup_for(const sophon_device* dev) {
#if SOPHON_X86_DISPATCH
  if (dev->cpu_avx512vbmi) return lookup_avx512;
#else
  (void)dev;
#endif
  return lookup_c;
}

static void binary_task(void* ctx, int32_t task, int32_t tasks) {
  const binary_job* j = (const binary_job*)ctx;
  int64_t begin, end, item;
  sophon_task_range((int64_t)j->batches * j->channels, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t batch = (int32_t)(item / j->channels), channel = (int32_t)(item % j->channels);
    const int8_t* a = sophon_view_i8(&j->a_v, batch, channel);
    /* a broadcast channel is channel 0, in lane 0 */
    const int8_t* b = sophon_view_i8(&j->b_v, j->b_batch_1 ? 0 : batch, j->b_channel_1 ? 0 : channel);
    int8_t* out = sophon_view_i8(&j->out_v, batch, channel);
    if (j->b_per_channel && j->plane >= LUT_MIN_PLANE) {
      /* table[byte] = op(byte as int8, b), from the scalar loop itself */
      int8_t values[256], table[256];
      int32_t v;
      for (v = 0; v < 256; ++v) values[v] = (int8_t)(v < 128 ? v : v - 256);
      binary_run(values, b, 0, table, 256, j->p);
      j->lookup(a, out, j->plane, table);
      continue;
    }
#if SOPHON_X86_DISPATCH
    if (j->use_avx512 && (j->p->op == SOPHON_BINARY_INT8_MUL || j->p->op == SOPHON_BINARY_INT8_PRELU ||
                          j->p->op == SOPHON_BINARY_INT8_MUL_FLOAT32 || is_float_op(j->p->op) ||
                          is_qlinear_add(j->p->op))) {
      mul_prelu_run_avx512(a, b, j->b_per_channel ? 0 : 1, out, j->plane, j->p);
      continue;
    }
    if (j->use_fma && is_qlinear_add(j->p->op)) {
      qlinear_add_run_avx2(a, b, j->b_per_channel ? 0 : 1, out, j->plane, j->p);
      continue;
    }
    if (j->use_avx2 && (j->p->op == SOPHON_BINARY_INT8_MUL || j->p->op == SOPHON_BINARY_INT8_PRELU ||
                        is_float_op(j->p->op))) {
      mul_prelu_run_avx2(a, b, j->b_per_channel ? 0 : 1, out, j->plane, j->p);
      continue;
    }
#endif
    binary_run(a, b, j->b_per_channel ? 0 : 1, out, j->plane, j->p);
  }
}

int sophon_fast_binary_int8(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                            const sophon_local* b, const sophon_binary_int8_params* p) {
  binary_job j;
  const int b_full = b->h == out->h && b->w == out->w;
  if (a->n != out->n || a->c != out->c || a->h != out->h || a->w != out->w) return -1;
  if (!b_full && (b->h != 1 || b->w != 1)) return -1; /* a broadcast along h or w only */
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.a_v, dev, a);
  sophon_view_init(&j.b_v, dev, b);
  j.p = p;
  j.batches = out->n;
  j.channels = out->c;
  j.plane = (int64_t)out->h * out->w;
  j.b_per_channel = !b_full;
  j.b_batch_1 = b->n == 1;
  j.b_channel_1 = b->c == 1;
  j.use_avx2 = dev->cpu_avx2;
  j.use_fma = dev->cpu_fma;
  j.use_avx512 = dev->cpu_avx512;
  j.lookup = lookup_for(dev);
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)out->n * (uint64_t)out->c * (uint64_t)j.plane,
                                       (int64_t)out->n * out->c),
                      binary_task, &j);
  return 0;
}

/* ---------------------------------------------------------------- lut_int8 */

typedef struct {
  sophon_view out_v, in_v;
  const int8_t* table;
  int32_t batches, channels;
  int64_t plane;
  lookup_fn lookup;
} lut_job;

static void lut_task(void* ctx, int32_t task, int32_t tasks) {
  const lut_job* j = (const lut_job*)ctx;
  int64_t begin, end, item;
  sophon_task_range((int64_t)j->batches * j->channels, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t batch = (int32_t)(item / j->channels), channel = (int32_t)(item % j->channels);
    j->lookup(sophon_view_i8(&j->in_v, batch, channel), sophon_view_i8(&j->out_v, batch, channel),
              j->plane, j->table);
  }
}

int sophon_fast_lut_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                         const sophon_lut_int8_params* p) {
  lut_job j;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  j.table = p->table;
  j.batches = out->n;
  j.channels = out->c;
  j.plane = (int64_t)out->h * out->w;
  j.lookup = lookup_for(dev);
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)out->n * (uint64_t)out->c * (uint64_t)j.plane,
                                       (int64_t)out->n * out->c),
                      lut_task, &j);
  return 0;
}
