/*
 * sophon_fast_int8.c - fast INT8 conv2d and fc, beside the reference kernels of
 * reference/sophon_tiu_conv_int8.c, which stay the specification
 * (tests/test_fast_int8.py checks one against the other for equality, at every
 * thread count and instruction-set level). Same operands, already checked by the
 * instruction; the LMEM lane layout is read and written as it is.
 *
 * A conv2d takes one of three paths:
 *
 * 1. Depthwise (one input channel per group, any depth multiplier): direct. With
 *    AVX-512 VNNI and VBMI (dw_vnni_rows), 16 outputs per vector: per kernel row one
 *    masked load of the input row (input_zero_point in the padding), byte permutes
 *    gather each output's 4 taps of a quad and vpdpbusd adds their 4 products;
 *    requantized in registers (3x3 kernels with one output row per vector:
 *    dw_vnni_ring_body loads and permutes each input row once and keeps it for the
 *    output rows that read it). Outputs of 8 or fewer columns (7x7 planes) take
 *    dw_vnni_flat instead: 16 consecutive outputs of the channel per vector, whatever
 *    rows they lie on, their taps gathered from a window of the input plane by
 *    per-instruction index tables, 64 outputs stored at once. Otherwise, per input channel the padded input,
 *    in - input_zero_point as int16 with 0 in the padding, is split into stride_h x
 *    stride_w phase planes (element (y, x) of plane (py, px) is padded element
 *    (y * sh + py, x * sw + px)). Output (oy, ox) is grid pixel p = oy * grid_w + ox,
 *    and its tap t is element p + offset[t] of one plane, so a strip of consecutive
 *    grid pixels (across rows; the columns past out_w are computed and dropped)
 *    accumulates each tap from consecutive elements: 16 int16 products at a time with
 *    AVX2 (each fits int16), int32 sums.
 *
 * 2. AVX-512 VNNI (dev->cpu_avx512vnni): an implicit GEMM per (batch item, group),
 *      acc[oc][p] = sum_{k4} sum_{c<4} A[oc][k4].c * B[k4][p].c,
 *    on vpdpbusd, which multiplies 4 unsigned bytes by 4 signed bytes and adds the
 *    4 products to an int32 lane. Step k4 = (quad q, tap t) covers input channels
 *    4q .. 4q+3 at tap t; A[oc][k4] is those 4 weights (0 past the group's
 *    channels). B is never materialised: the input is rewritten once per
 *    instruction into "quad planes", word (y, x) of plane (group, q, py, px)
 *    holding the 4 channels of padded pixel (y * sh + py, x * sw + px) as unsigned
 *    bytes u = in + 128, padding as input_zero_point + 128. As in 1., tap t of grid
 *    pixel p is word p + offset[k4] of its plane: consecutive pixels read
 *    consecutive words, so a block of 8 output channels x 48 grid pixels loads 3
 *    vectors of 16 words and issues 24 vpdpbusd (the weights broadcast from
 *    memory) per step. For stride 1 the rows share their padding (grid_w =
 *    in_w + max(pad_left, pad_right): a tap past a row's end reads the next row's
 *    left padding), so only 1 of 57 grid columns is dropped for a 3x3 conv on 56.
 *    With u = (in - input_zero_point) + (input_zero_point + 128),
 *      sum_k w * (in - input_zero_point) = sum_k w * u - (input_zero_point + 128) * sum_k w,
 *    and a padding tap has u = input_zero_point + 128, so it adds 0, as the
 *    reference's skipped tap. The second term, per output channel, is computed
 *    when A is packed: a task packs (transposes) the weight rows of a chunk of 64
 *    output channels when it reaches it, so they stay in its cache for all the
 *    chunk's pixels. The results are requantized in registers and stored, as
 *    bytes, run by output row (when the grid is the output, as for a 1x1 conv, one
 *    block's 48 outputs of a channel as one store, four vectors packed at once). (A 256-bit variant measured the same MACs per cycle
 *    on Zen 4, which splits 512-bit operations, so there is only the 512-bit one.)
 *
 * 3. Otherwise (AVX2, or plain C): an explicit GEMM per (batch item, group) with
 *    acc[oc][p] = sum_k A[oc][k] * B[k][p], k = (ic, ky, kx), p = oy * OW + ox. A is
 *    the weight, B the input minus input_zero_point (in [-255, 255]) as columns of
 *    window taps (im2col; padding taps are 0), both int16 in pairs along k, the
 *    layout of _mm256_madd_epi16 (int16 pairs multiplied, each pair's two products
 *    added into one int32). Each task packs B for a chunk of pixels of one group,
 *    then computes every output channel of the group on it in 6 x 16 blocks.
 *
 * Then per output, on every path,
 *     out = clamp(output_zero_point + MultiplyByQuantizedMultiplier(sat(acc + bias)))
 * with the reference's fixed-point arithmetic, in vectors where the ISA allows
 * (sophon_fast_int8.h states why each vector step is exact).
 * fc: the input vector is gathered once (int16 in - input_zero_point, or bytes
 * in + 128 for VNNI), then one dot product per output feature.
 *
 * Exactness. Every product w * (in - input_zero_point) is within +-32640 and the
 * instruction checked K <= 65793 taps, so every partial sum, in any order, stays
 * within int32 (the bound in sophon_tiu_conv_int8.c); _mm256_madd_epi16 adds two
 * products exactly. For VNNI, |w * u| <= 128 * 255 = 32640 as well, so every
 * partial sum of the w * u, and (input_zero_point + 128) * sum_k w (at most
 * 255 * 128 * K), are also within int32; vpdpbusd's sum of 4 products (<= 130560)
 * is exact, and the difference of the two, the reference's accumulator, is exact.
 * Integer addition without overflow is associative: the accumulators equal the
 * reference's, and so do the requantized outputs, bit for bit, for any thread
 * count (each output is computed by one task).
 */
#include <string.h>

#include "fast/sophon_fast_int8.h"
#include "sophon_quant.h"

/* ------------------------------------------------------- requantization */

/* What every output channel shares: clamp bounds relative to the zero point. */
typedef struct {
  int32_t zero_point;  /* output_zero_point */
  int32_t lo, hi;      /* act_min - zero_point, act_max - zero_point: within [-255, 255] */
} rq_output;

/* One output channel: out = zero_point + clamp(MBQM(sat(acc - offset + bias)), lo, hi),
 * or with by_float (SOPHON_REQUANT_FLOAT32, onnxruntime's) the multiply
 * sophon_multiply_by_float_scale(sat(...), float_scale) in place of MBQM.
 * offset is 0 except on the VNNI path, where it is (input_zero_point + 128) * sum w. */
typedef struct {
  int32_t offset, bias, multiplier, shift;
  int by_float;      /* q->rounding == SOPHON_REQUANT_FLOAT32 */
  float float_scale; /* (float)q->scale[channel] when by_float */
  int32_t left_shift, right_shift; /* max(shift, 0) in [0, 30], max(-shift, 0) in [0, 31] */
  /* 1 when sat(acc - offset + bias) never saturates: the reference's accumulator is
   * within 32640 * depth (the file comment), so |bias| + 32640 * depth < 2^31 makes the
   * sum exact in int32, and then it equals acc + (bias - offset) in wrapping int32
   * arithmetic (congruent mod 2^32, and within int32): folded = bias - offset */
  int exact_sum;
  int32_t folded;
  /* where the AVX-512 VNNI kernels start their accumulators: folded when exact_sum (the
   * sum then needs no add before the multiply, requantize_scaled_avx512), else 0 */
  int32_t start;
} rq_channel;

/* The output side of q. */
static rq_output output_requant(const sophon_requant* q) {
  rq_output o;
  o.zero_point = q->output_zero_point;
  o.lo = q->act_min - q->output_zero_point;
  o.hi = q->act_max - q->output_zero_point;
  return o;
}

/* Output channel oc's parameters (bias_v NULL: no bias); depth: the products summed
 * into one output. */
static rq_channel channel_requant_of(const sophon_requant* q, int32_t bias, int32_t oc,
                                     int32_t offset, int64_t depth) {
  const int32_t qc = q->per_channel ? oc : 0;
  rq_channel c;
  c.offset = offset;
  c.bias = bias;
  c.exact_sum = (c.bias < 0 ? -(int64_t)c.bias : (int64_t)c.bias) + 32640 * depth < INT32_MAX;
  c.folded = (int32_t)(uint32_t)((uint32_t)c.bias - (uint32_t)offset);
  c.start = c.exact_sum ? c.folded : 0;
  c.multiplier = q->multiplier[qc];
  c.shift = q->shift[qc];
  c.by_float = q->rounding == SOPHON_REQUANT_FLOAT32;
  c.float_scale = c.by_float ? (float)q->scale[qc] : 0.0f;
  c.left_shift = c.shift > 0 ? c.shift : 0;
  c.right_shift = c.shift < 0 ? -c.shift : 0;
  return c;
}

/* channel_requant_of with the bias of channel oc read from bias_v (NULL: no bias). */
static rq_channel channel_requant(const sophon_requant* q, const sophon_view* bias_v, int32_t oc,
                                  int32_t offset, int64_t depth) {
  return channel_requant_of(q, bias_v != NULL ? *sophon_view_i32(bias_v, 0, oc) : 0, oc, offset,
                            depth);
}

/* The reference's requantization (sophon_tiu_conv_int8.c: requantize(saturate_i32(acc +
 * bias))) with the same fixed-point function, inlined. acc - offset is the
 * reference's accumulator, exact in int32 (file comment). */
static int8_t requantize(int32_t acc, const rq_channel* c, const rq_output* o) {
  const int64_t sum = (int64_t)(acc - c->offset) + c->bias;
  const int32_t sat = sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : (int32_t)sum);
  const int32_t scaled = c->by_float ? sophon_multiply_by_float_scale(sat, c->float_scale)
                                     : sophon_mbqm_inline(sat, c->multiplier, c->shift);
  return (int8_t)(o->zero_point + (scaled < o->lo ? o->lo : (scaled > o->hi ? o->hi : scaled)));
}

/* The reference fc's SOPHON_REQUANT_DOUBLE rounding (TFLite's FULLY_CONNECTED):
 * requantize() with sophon_multiply_by_double_scale(sum, scale) for the multiply. */
static int8_t requantize_by_double(int32_t acc, const rq_channel* c, double scale,
                                   const rq_output* o) {
  const int64_t sum = (int64_t)(acc - c->offset) + c->bias;
  const int32_t sat = sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : (int32_t)sum);
  const int32_t scaled = sophon_multiply_by_double_scale(sat, scale);
  return (int8_t)(o->zero_point + (scaled < o->lo ? o->lo : (scaled > o->hi ? o->hi : scaled)));
}

/* out[i] = requantize(acc[i]) for `count` outputs of one channel. */
static void requantize_row_c(const int32_t* acc, int32_t count, int8_t* out, const rq_channel* c,
                             const rq_output* o) {
  int32_t i;
  for (i = 0; i < count; ++i) out[i] = requantize(acc[i], c, o);
}

typedef void (*requantize_row_fn)(const int32_t* acc, int32_t count, int8_t* out,
                                  const rq_channel* c, const rq_output* o);

#if SOPHON_X86_DISPATCH
/* The by_float multiply of requantize() on 8 saturated sums x, clamped and offset as
 * requantize_avx2 does. cvtdq2ps rounds x to nearest even as (float)x does, the
 * product is one float32 rounding, as in sophon_multiply_by_float_scale. The clamp to
 * the integers [lo, hi] comes before cvtps2dq's rounding (to nearest even, the default
 * mode, as rintf): rounding is monotone and keeps integers, so clamping first gives the
 * same result, and keeps cvtps2dq off values beyond int32 (where rintf's result
 * saturates and cvtps2dq's does not). */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i requantize_float_avx2(__m256i x,
                                                                           const rq_channel* c,
                                                                           const rq_output* o) {
  __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(x), _mm256_set1_ps(c->float_scale));
  f = _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps((float)o->lo)), _mm256_set1_ps((float)o->hi));
  return _mm256_add_epi32(_mm256_cvtps_epi32(f), _mm256_set1_epi32(o->zero_point));
}

/* requantize() on 8 accumulators of one channel, as int32 in [-128, 127], with the
 * vector primitives of sophon_fast_int8.h. Clamping to [lo, hi] = [act_min - zp,
 * act_max - zp] and then adding zp equals clamping x + zp to [act_min, act_max],
 * and cannot overflow. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i requantize_avx2(__m256i acc,
                                                                     const rq_channel* c,
                                                                     const rq_output* o) {
  __m256i x = _mm256_sub_epi32(acc, _mm256_set1_epi32(c->offset));
  x = sophon_sat_add_avx2(x, _mm256_set1_epi32(c->bias));
  if (c->by_float) return requantize_float_avx2(x, c, o);
  x = sophon_sat_shift_left_avx2(x, c->left_shift);
  x = sophon_srdhm_avx2(x, _mm256_set1_epi32(c->multiplier));
  x = sophon_rounding_shift_avx2(x, c->right_shift);
  x = _mm256_min_epi32(_mm256_max_epi32(x, _mm256_set1_epi32(o->lo)), _mm256_set1_epi32(o->hi));
  return _mm256_add_epi32(x, _mm256_set1_epi32(o->zero_point));
}

SOPHON_AVX2 static void requantize_row_avx2(const int32_t* acc, int32_t count, int8_t* out,
                                            const rq_channel* c, const rq_output* o) {
  int32_t i;
  for (i = 0; i + 16 <= count; i += 16) {
    const __m256i lo =
        requantize_avx2(_mm256_loadu_si256((const __m256i*)(const void*)(acc + i)), c, o);
    const __m256i hi =
        requantize_avx2(_mm256_loadu_si256((const __m256i*)(const void*)(acc + i + 8)), c, o);
    _mm_storeu_si128((__m128i*)(void*)(out + i), sophon_pack_bytes_avx2(lo, hi));
  }
  requantize_row_c(acc + i, count - i, out + i, c, o);
}

#endif

#if SOPHON_X86_DISPATCH
/* The requantization split for four vectors at a time: requantize_scaled_avx512 leaves
 * the multiplied value of 16 accumulators, s (before the zero point and the clamp),
 * and pack4_avx512 turns four such vectors into 64 output bytes in order, as
 *   clamp(sat8(sat16(sat16(s) + zero_point)), act_min, act_max)
 * (packs with signed saturation, one saturating int16 add): each saturation is
 * monotone and leaves [-128, 127] alone, and act_min, act_max lie in it, so this is
 * clamp(s + zero_point, act_min, act_max) = zero_point + clamp(s, lo, hi), the
 * reference's result (requantize()), for every s. In the by_float case s is rintf of
 * min(x * scale, 65536) (cvtps2dq rounds to nearest even, as rintf): the same as
 * sophon_multiply_by_float_scale's rint(x * scale) below 65536 and, above it, another
 * value above 127 + 128, which the clamp takes to act_max all the same; below -2^31
 * cvtps2dq gives INT32_MIN, the reference's saturation. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i requantize_by_float_avx512(__m512i x,
                                                                                  __m512 scale) {
  return _mm512_cvtps_epi32(
      _mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(x), scale), _mm512_set1_ps(65536.0f)));
}

SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i requantize_scaled_avx512(
    __m512i acc, const rq_channel* c) {
  __m512i x;
  if (c->exact_sum) {
    x = acc; /* started at folded (c->start): the wrapping sum is exact, as above */
  } else {
    x = _mm512_sub_epi32(acc, _mm512_set1_epi32(c->offset));
    x = sophon_sat_add_avx512(x, _mm512_set1_epi32(c->bias));
  }
  if (c->by_float) return requantize_by_float_avx512(x, _mm512_set1_ps(c->float_scale));
  x = sophon_sat_shift_left_avx512(x, c->left_shift);
  x = sophon_srdhm_avx512(x, _mm512_set1_epi32(c->multiplier));
  return sophon_rounding_shift_avx512(x, c->right_shift);
}

/* 64 output bytes of four vectors of requantize_scaled_avx512 (lanes of s0, then s1,
 * s2, s3): the packs work within 128-bit lanes (dword k of lane L then holds lanes
 * 4L .. 4L + 3 of s_k), one dword permute puts them in order. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i pack4_avx512(__m512i s0, __m512i s1,
                                                                    __m512i s2, __m512i s3,
                                                                    const rq_output* o) {
  const __m512i zero_point = _mm512_set1_epi16((int16_t)o->zero_point);
  const __m512i lo = _mm512_packs_epi32(s0, s1), hi = _mm512_packs_epi32(s2, s3);
  const __m512i bytes = _mm512_packs_epi16(_mm512_adds_epi16(lo, zero_point),
                                           _mm512_adds_epi16(hi, zero_point));
  const __m512i ordered = _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), bytes);
  return _mm512_min_epi8(_mm512_max_epi8(ordered, _mm512_set1_epi8((char)(o->zero_point + o->lo))),
                         _mm512_set1_epi8((char)(o->zero_point + o->hi)));
}

/* requantize_avx2 on 16 lanes (AVX-512 F: the VNNI kernels inline it too): the value of
 * requantize_scaled_avx512 clamped to [lo, hi] and offset by the zero point, which is
 * requantize() (the comment above). */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i requantize_avx512(
    __m512i acc, const rq_channel* c, const rq_output* o) {
  const __m512i x = requantize_scaled_avx512(acc, c);
  return _mm512_add_epi32(
      _mm512_min_epi32(_mm512_max_epi32(x, _mm512_set1_epi32(o->lo)), _mm512_set1_epi32(o->hi)),
      _mm512_set1_epi32(o->zero_point));
}
#endif

#if SOPHON_X86_DISPATCH
/* One run of grid pixels that are outputs, inside one vector of 16: lanes [lane,
 * lane + count) of vector `vector` of a strip go to output element `offset`
 * (oy * out_w + ox). */
typedef struct {
  int32_t vector, lane, count;
  int64_t offset;
} grid_run;

/* The runs of grid pixels [p0, p0 + count) (grid rows grid_w wide) with grid column
 * < out_w; returns how many (at most count). */
static int32_t grid_runs(int32_t grid_w, int32_t out_w, int64_t p0, int32_t count,
                         grid_run* runs) {
  int64_t oy = p0 / grid_w;
  int32_t x = (int32_t)(p0 % grid_w), i = 0, n = 0;
  while (i < count) {
    /* pixels [i, i + row) are on grid row oy, from column x */
    const int32_t row = grid_w - x < count - i ? grid_w - x : count - i;
    const int32_t valid = x >= out_w ? 0 : (out_w - x < row ? out_w - x : row);
    int32_t done = 0;
    while (done < valid) { /* split at vector boundaries */
      const int32_t lane = (i + done) % 16;
      const int32_t take = valid - done < 16 - lane ? valid - done : 16 - lane;
      runs[n].vector = (i + done) / 16;
      runs[n].lane = lane;
      runs[n].count = take;
      runs[n].offset = oy * out_w + x + done;
      ++n;
      done += take;
    }
    i += row;
    ++oy;
    x = 0;
  }
  return n;
}

/* Stores the runs of one strip: the int8 results of vector j are result[j] (int32
 * lanes within [-128, 127]); each run's lanes are moved to the bottom, then stored
 * as bytes. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void store_runs_avx512(const grid_run* runs,
                                                                       int32_t n_runs,
                                                                       const __m512i* result,
                                                                       int8_t* out) {
  int32_t k;
  for (k = 0; k < n_runs; ++k) {
    const __mmask16 first_lanes = (__mmask16)((1u << runs[k].count) - 1u);
    __m512i v = result[runs[k].vector];
    if (runs[k].lane != 0)
      v = _mm512_maskz_compress_epi32((__mmask16)(first_lanes << runs[k].lane), v);
    _mm_mask_storeu_epi8(out + runs[k].offset, first_lanes, sophon_pack_bytes_avx512(v));
  }
}
#endif

/* The operands and shape of an INT8 conv2d, shared by its
 * depthwise and GEMM paths. */
typedef struct {
  sophon_view out_v, in_v, weight_v, bias_v;
  const sophon_view* bias;  /* &bias_v or NULL */
  const sophon_conv_params* p;
  const sophon_requant* q;
  rq_output output;
  int32_t in_h, in_w, out_h, out_w, out_c;
  int32_t groups, icg, ocg;
} conv_operands;

/* Fills *c in place (c->bias points into it). */
static void conv_operands_init(conv_operands* c, sophon_device* dev, const sophon_local* out,
                               const sophon_local* in, const sophon_local* weight,
                               const sophon_local* bias, const sophon_conv_params* p,
                               const sophon_requant* q) {
  sophon_view_init(&c->out_v, dev, out);
  sophon_view_init(&c->in_v, dev, in);
  sophon_view_init(&c->weight_v, dev, weight);
  c->bias = NULL;
  if (bias != NULL) {
    sophon_view_init(&c->bias_v, dev, bias);
    c->bias = &c->bias_v;
  }
  c->p = p;
  c->q = q;
  c->output = output_requant(q);
  c->in_h = in->h;
  c->in_w = in->w;
  c->out_h = out->h;
  c->out_w = out->w;
  c->out_c = out->c;
  c->groups = p->groups;
  c->icg = in->c / p->groups;
  c->ocg = out->c / p->groups;
}

/* ========================================================= depthwise conv2d */

enum { DW_STRIP = 128 }; /* outputs accumulated at a time */

/* Taps (and quads of taps along a kernel row) dw_vnni_rows takes. */
#define DW_VNNI_MAX_TAPS 256
#define DW_VNNI_MAX_QUADS 16

typedef struct {
  conv_operands op;
  int32_t batches, in_c, multiplier, taps;
  int32_t grid_h, grid_w;    /* rows and columns of a phase plane */
  int64_t plane;             /* grid_h * grid_w */
  const int64_t* tap_offset; /* tap t of output (oy, ox): plane word oy * grid_w + ox + tap_offset[t] */
  int16_t* planes;           /* per task: stride_h * stride_w planes */
  int64_t task_elems;
  requantize_row_fn requantize_row;
  int use_avx2;
  /* dw_vnni_rows (AVX-512 VNNI and VBMI): 1 or 2 output rows per vector, 0 when not
   * taken; then no planes */
  int32_t vnni_rows;
  int32_t quads;                   /* ceil(kernel_w / 4) */
  uint8_t index[DW_VNNI_MAX_QUADS][64]; /* vpermb indices of each quad of a kernel row */
  /* dw_vnni_flat (AVX-512 VNNI and VBMI, small planes): vector v holds output pixels
   * 16v .. 16v + 15 of the channel, in order; 0 flat_vectors when not taken */
  int32_t flat_vectors;            /* ceil(out_h * out_w / 16) */
  int32_t flat_quads;              /* ceil(taps / 4) */
  int32_t flat_narrow;             /* 1: every window within 63 bytes (one vpermb) */
  const struct dw_flat_window* flat_window; /* per vector */
  const uint8_t* flat_index;       /* [vector][quad][64] vpermi2b indices */
} dw_conv;

/* The input bytes vector v of dw_vnni_flat reads: plane bytes [start, start + 127)
 * of the channel (those inside the plane, by the masks of the two 64-byte halves),
 * and byte 127 of the window, the padding byte; or, flat_narrow, plane bytes
 * [start, start + 63) and byte 63. */
struct dw_flat_window {
  uint64_t mask[2];
  int64_t start;
};

/* acc[i] = sum_t w[t] * base[tap_offset[t] + i] for i < count. Each product is within
 * +-32640 (|in - zp| <= 255, |w| <= 128) and there are at most 65793 taps. */
static void dw_strip_c(int32_t* restrict acc, const int16_t* restrict base,
                       const int64_t* tap_offset, const int8_t* w, int32_t taps, int32_t count) {
  int32_t t, i;
  for (i = 0; i < count; ++i) acc[i] = 0;
  for (t = 0; t < taps; ++t) {
    const int16_t* src = base + tap_offset[t];
    const int32_t wt = w[t];
    for (i = 0; i < count; ++i) acc[i] += wt * src[i];
  }
}

/* row[x] = src[x * sw] - zp for x < count (one phase row of the input). */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline void dw_phase_row_body(int16_t* restrict row, const int8_t* restrict src,
                                     int32_t sw, int32_t count, int32_t zp) {
  int32_t x;
  if (sw == 1) /* (loops the compiler vectorises) */
    for (x = 0; x < count; ++x) row[x] = (int16_t)(src[x] - zp);
  else if (sw == 2)
    for (x = 0; x < count; ++x) row[x] = (int16_t)(src[2 * x] - zp);
  else
    for (x = 0; x < count; ++x) row[x] = (int16_t)(src[(int64_t)x * sw] - zp);
}

/* dw_phase_row_body, compiled as it is and for AVX2. */
static void dw_phase_row_c(int16_t* row, const int8_t* src, int32_t sw, int32_t count,
                           int32_t zp) {
  dw_phase_row_body(row, src, sw, count, zp);
}

#if SOPHON_X86_DISPATCH
SOPHON_AVX2 static void dw_phase_row_avx2(int16_t* row, const int8_t* src, int32_t sw,
                                          int32_t count, int32_t zp) {
  dw_phase_row_body(row, src, sw, count, zp);
}

/* dw_strip_c for round_up(count, 16) outputs, 16 at a time: the 16 products of a tap
 * with one int16 multiply (exact: each fits int16), widened and added to two int32
 * vectors. acc and the planes have room for the rounding. */
SOPHON_AVX2 static void dw_strip_avx2(int32_t* acc, const int16_t* base,
                                      const int64_t* tap_offset, const int8_t* w, int32_t taps,
                                      int32_t count) {
  int32_t i, t;
  for (i = 0; i < count; i += 16) {
    __m256i lo = _mm256_setzero_si256(), hi = lo;
    for (t = 0; t < taps; ++t) {
      const __m256i x = _mm256_loadu_si256((const __m256i*)(const void*)(base + tap_offset[t] + i));
      const __m256i product = _mm256_mullo_epi16(x, _mm256_set1_epi16(w[t]));
      lo = _mm256_add_epi32(lo, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(product)));
      hi = _mm256_add_epi32(hi, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(product, 1)));
    }
    _mm256_storeu_si256((__m256i*)(void*)(acc + i), lo);
    _mm256_storeu_si256((__m256i*)(void*)(acc + i + 8), hi);
  }
}
#endif

#if SOPHON_X86_DISPATCH
/* AVX-512 with VNNI and VBMI: the byte-permute depthwise kernel (dw_vnni_rows). */
#define SOPHON_AVX512VNNI_VBMI \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi")))

/* The depthwise kernel on vpdpbusd, reading the input channel as it is (no planes).
 * A vector holds 16 outputs: vnni_rows (1 or 2) output rows of one channel,
 * lane i = r * out_w + x (r < vnni_rows, 2 only when out_w <= 8), or with one
 * row per vector, columns x0 .. x0 + 15 of it. For kernel row ky, the input bytes a
 * vector needs lie in one 64-byte window per output row (dw_vnni_rows_per_vector
 * checks the span: the window's columns start at x0 * sw - pad_left, and lane i's taps
 * 4g .. 4g + 3 of kernel row ky are at window bytes x * sw + (4g + j) * dw, j < 4;
 * with two rows per vector, row r's window is the r-th 32-byte half). One masked
 * load per row fills the columns outside the input with input_zero_point (a padding
 * tap), then the bytes are flipped to u = in + 128 and one vpermb per quad of taps
 * gathers each lane's 4 bytes; vpdpbusd multiplies them by the quad's 4 weights
 * (0 past the kernel row) and adds the 4 products to the lane. A kernel row outside
 * the input reads the padding byte everywhere. As on the VNNI conv path (file
 * comment), acc = sum w * u = the reference's accumulator + (input_zero_point + 128)
 * * sum w, which c->offset removes; every partial sum is within int32, so the
 * requantized outputs equal the reference's bit for bit. */

/* The vpermb indices of each quad of a kernel row (the comment above). */
static void dw_vnni_layout_init(dw_conv* l, const sophon_conv_params* p, int32_t out_w,
                                int32_t rows_per_vector) {
  int32_t g, i, j;
  l->vnni_rows = rows_per_vector;
  l->quads = (p->kernel_w + 3) / 4;
  for (g = 0; g < l->quads; ++g) {
    uint8_t idx[64];
    for (i = 0; i < 16; ++i) {
      const int32_t r = rows_per_vector == 1 ? 0 : i / out_w;
      const int32_t x = rows_per_vector == 1 ? i : i % out_w;
      for (j = 0; j < 4; ++j) {
        const int32_t tap = 4 * g + j;
        const int32_t byte = r * 32 + x * p->stride_w + (tap < p->kernel_w ? tap : 0) * p->dilation_w;
        /* lanes past the rows (r >= rows_per_vector) are dropped; any byte will do */
        idx[4 * i + j] = (uint8_t)(r < rows_per_vector && byte < 64 ? byte : 0);
      }
    }
    memcpy(l->index[g], idx, sizeof idx);
  }
}

/* Whether dw_vnni_rows takes the geometry, and with how many rows per vector (0: no). */
static int32_t dw_vnni_rows_per_vector(const sophon_conv_params* p, int32_t out_w) {
  const int64_t span = (int64_t)15 * p->stride_w + (int64_t)(p->kernel_w - 1) * p->dilation_w;
  const int64_t half = (int64_t)7 * p->stride_w + (int64_t)(p->kernel_w - 1) * p->dilation_w;
  if ((int64_t)p->kernel_h * p->kernel_w > DW_VNNI_MAX_TAPS || p->kernel_w > 4 * DW_VNNI_MAX_QUADS)
    return 0;
  if (out_w <= 8 && half < 32) return 2;
  return span < 64 ? 1 : 0;
}

/* Bits [lo, hi) of a 64-bit mask (0 <= lo, hi <= 64). */
static uint64_t bit_range(int64_t lo, int64_t hi) {
  uint64_t below_hi, below_lo;
  if (lo < 0) lo = 0;
  if (hi > 64) hi = 64;
  if (hi <= lo) return 0;
  below_hi = hi == 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1u);
  below_lo = ((uint64_t)1 << lo) - 1u;
  return below_hi & ~below_lo;
}

/* The body of dw_vnni_rows for a kernel of kh rows of `quads` quads (constants in the
 * common case, so that the compiler unrolls the tap loops). Everything it reads is
 * copied into locals first: the byte stores to `out` may alias anything else. */
SOPHON_AVX512VNNI_VBMI SOPHON_ALWAYS_INLINE static inline void dw_vnni_body(
    const dw_conv* d, const int8_t* in, const int32_t* weight, const rq_channel* channel,
    int8_t* out, int32_t kh, int32_t quads) {
  const sophon_conv_params* p = d->op.p;
  const int32_t in_h = d->op.in_h, in_w = d->op.in_w, out_h = d->op.out_h, out_w = d->op.out_w;
  const int32_t rpv = d->vnni_rows, sh = p->stride_h, dh = p->dilation_h, top = p->pad_top;
  const int64_t x_step = (int64_t)16 * p->stride_w;
  const rq_channel c = *channel;
  const rq_output o = d->op.output;
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  const __m512i fill = _mm512_set1_epi8((char)d->op.q->input_zero_point);
  const __m512i pad = _mm512_xor_si512(fill, flip);
  __m512i index[DW_VNNI_MAX_QUADS];
  int64_t start0 = -(int64_t)p->pad_left;
  int32_t ky, g, oy, x0, r;
  for (g = 0; g < quads; ++g) index[g] = _mm512_loadu_si512((const void*)d->index[g]);
  for (x0 = 0; x0 < out_w; x0 += 16, start0 += x_step) {
    /* the window's columns start at x0 * sw - pad_left; those inside the input */
    const uint64_t window = bit_range(-start0, in_w - start0);
    const int32_t columns = out_w - x0 < 16 ? out_w - x0 : 16;
    for (oy = 0; oy < out_h; oy += rpv) {
      const int32_t rows = out_h - oy < rpv ? out_h - oy : rpv;
      const int32_t lanes = rpv == 1 ? columns : rows * out_w;
      __m512i acc = _mm512_set1_epi32(c.start);
      for (ky = 0; ky < kh; ++ky) {
        __m512i u;
        if (rpv == 1) {
          const int64_t iy = (int64_t)oy * sh + (int64_t)ky * dh - top;
          if (iy < 0 || iy >= in_h) {
            u = pad;
          } else {
            const void* src = (const void*)((uintptr_t)(in + iy * in_w) + (uintptr_t)start0);
            u = _mm512_xor_si512(_mm512_mask_loadu_epi8(fill, (__mmask64)window, src), flip);
          }
        } else {
          __m256i half[2];
          for (r = 0; r < 2; ++r) {
            const int64_t iy = (int64_t)(oy + r) * sh + (int64_t)ky * dh - top;
            if (r >= rows || iy < 0 || iy >= in_h) {
              half[r] = _mm512_castsi512_si256(fill);
            } else {
              const void* src = (const void*)((uintptr_t)(in + iy * in_w) + (uintptr_t)start0);
              half[r] = _mm256_mask_loadu_epi8(_mm512_castsi512_si256(fill), (__mmask32)window, src);
            }
          }
          u = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(half[0]), half[1], 1),
                               flip);
        }
        for (g = 0; g < quads; ++g)
          acc = _mm512_dpbusd_epi32(acc, _mm512_permutexvar_epi8(index[g], u),
                                    _mm512_set1_epi32(weight[ky * quads + g]));
      }
      {
        const __m128i bytes = sophon_pack_bytes_avx512(requantize_avx512(acc, &c, &o));
        int8_t* dst = out + (int64_t)oy * out_w + x0;
        if (lanes == 16)
          _mm_storeu_si128((__m128i*)(void*)dst, bytes);
        else
          _mm_mask_storeu_epi8(dst, (__mmask16)((1u << lanes) - 1u), bytes);
      }
    }
  }
}

/* Input row iy of a column block of dw_vnni_ring_body, flipped to unsigned bytes and
 * permuted by the kernel row's one quad index: a row outside the input is the padding
 * byte everywhere, which the permute leaves as it is. */
SOPHON_AVX512VNNI_VBMI SOPHON_ALWAYS_INLINE static inline __m512i dw_ring_row(
    const int8_t* in, int64_t iy, int32_t in_h, int32_t in_w, int64_t start, uint64_t window,
    __m512i index, __m512i fill, __m512i pad) {
  const void* src;
  if (iy < 0 || iy >= in_h) return pad;
  src = (const void*)((uintptr_t)(in + iy * in_w) + (uintptr_t)start);
  return _mm512_permutexvar_epi8(
      index, _mm512_xor_si512(_mm512_mask_loadu_epi8(fill, (__mmask64)window, src),
                              _mm512_set1_epi8((char)0x80)));
}

/* The first `columns` (1 .. 16) bytes of v to dst. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void dw_ring_store(int8_t* dst, __m128i v,
                                                                   int32_t columns) {
  if (columns == 16)
    _mm_storeu_si128((__m128i*)(void*)dst, v);
  else
    _mm_mask_storeu_epi8(dst, (__mmask16)((1u << columns) - 1u), v);
}

enum { DW_RING_MAX = 3 }; /* kernel rows dw_vnni_ring_body takes */

/* dw_vnni_body for one output row per vector, one quad per kernel row (kernel_w <= 4)
 * and dilation_h 1. Kernel row ky of output row oy reads input row oy * sh - pad_top
 * + ky with the same permute (one quad index) whatever ky is, so each input row of a
 * column block is loaded, flipped and permuted once and kept for the output rows that
 * read it, in a ring of kh vectors: kernel row ky of output row oy + 1 is kernel row
 * ky + sh of oy. The accumulator adds the kernel rows in the same order as
 * dw_vnni_body, so the outputs are the same. */
SOPHON_AVX512VNNI_VBMI SOPHON_ALWAYS_INLINE static inline void dw_vnni_ring_body(
    const dw_conv* d, const int8_t* in, const int32_t* weight, const rq_channel* channel,
    int8_t* out, int32_t kh, int32_t sh, int float_exact) {
  const sophon_conv_params* p = d->op.p;
  const int32_t in_h = d->op.in_h, in_w = d->op.in_w, out_h = d->op.out_h, out_w = d->op.out_w;
  const int64_t x_step = (int64_t)16 * p->stride_w;
  const rq_channel c = *channel;
  const rq_output o = d->op.output;
  const __m512i fill = _mm512_set1_epi8((char)d->op.q->input_zero_point);
  const __m512i pad = _mm512_xor_si512(fill, _mm512_set1_epi8((char)0x80));
  const __m512i index = _mm512_loadu_si512((const void*)d->index[0]);
  __m512i w[DW_RING_MAX], ring[DW_RING_MAX];
  int64_t start = -(int64_t)p->pad_left;
  int32_t ky, oy, x0;
  for (ky = 0; ky < kh; ++ky) w[ky] = _mm512_set1_epi32(weight[ky]);
  for (x0 = 0; x0 < out_w; x0 += 16, start += x_step) {
    const uint64_t window = bit_range(-start, in_w - start);
    const int32_t columns = out_w - x0 < 16 ? out_w - x0 : 16;
    int64_t iy = -(int64_t)p->pad_top; /* input row of kernel row 0 of output row oy */
    /* the rows output row -1 would have left in ring[sh .. kh): kernel rows
       0 .. kh - sh - 1 of output row 0 */
    for (ky = sh; ky < kh; ++ky)
      ring[ky] = dw_ring_row(in, iy - sh + ky, in_h, in_w, start, window, index, fill, pad);
    /* four output rows at a time, requantized and packed together (pack4_avx512) */
    for (oy = 0; oy < out_h; oy += 4) {
      __m512i s[4], bytes;
      int32_t i;
      for (i = 0; i < 4; ++i, iy += sh) {
        __m512i acc = _mm512_set1_epi32(c.start);
        if (oy + i >= out_h) {
          s[i] = acc; /* past the last row: dropped */
          continue;
        }
        for (ky = 0; ky < kh; ++ky)
          ring[ky] = ky + sh < kh ? ring[ky + sh]
                                  : dw_ring_row(in, iy + ky, in_h, in_w, start, window, index, fill, pad);
        for (ky = 0; ky < kh; ++ky) acc = _mm512_dpbusd_epi32(acc, ring[ky], w[ky]);
        s[i] = float_exact ? requantize_by_float_avx512(acc, _mm512_set1_ps(c.float_scale))
                           : requantize_scaled_avx512(acc, &c);
      }
      bytes = pack4_avx512(s[0], s[1], s[2], s[3], &o);
      dw_ring_store(out + (int64_t)oy * out_w + x0, _mm512_castsi512_si128(bytes), columns);
      if (oy + 1 < out_h)
        dw_ring_store(out + (int64_t)(oy + 1) * out_w + x0, _mm512_extracti32x4_epi32(bytes, 1), columns);
      if (oy + 2 < out_h)
        dw_ring_store(out + (int64_t)(oy + 2) * out_w + x0, _mm512_extracti32x4_epi32(bytes, 2), columns);
      if (oy + 3 < out_h)
        dw_ring_store(out + (int64_t)(oy + 3) * out_w + x0, _mm512_extracti32x4_epi32(bytes, 3), columns);
    }
  }
}

/* Output channel oc (weights w, requantization c) of input channel `in` into `out`
 * (the comment above dw_vnni_layout_init): the weights as one 4-byte word per quad. */
SOPHON_AVX512VNNI_VBMI static void dw_vnni_rows(const dw_conv* d, const int8_t* in, const int8_t* w,
                                                const rq_channel* c, int8_t* out) {
  const int32_t kh = d->op.p->kernel_h, kw = d->op.p->kernel_w, quads = d->quads;
  int32_t weight[DW_VNNI_MAX_TAPS]; /* kh * quads <= kh * kw */
  int32_t ky, g, j;
  for (ky = 0; ky < kh; ++ky) {
    for (g = 0; g < quads; ++g) {
      uint32_t word = 0;
      for (j = 0; j < 4 && 4 * g + j < kw; ++j)
        word |= (uint32_t)(uint8_t)w[ky * kw + 4 * g + j] << (8 * j);
      weight[ky * quads + g] = (int32_t)word;
    }
  }
  /* (float_exact, onnxruntime's requantization of an exact sum: straight-line code) */
  const int float_exact = c->by_float && c->exact_sum;
  const int ring = kh == 3 && quads == 1 && d->vnni_rows == 1 && d->op.p->dilation_h == 1;
  if (ring && d->op.p->stride_h == 1 && float_exact)
    dw_vnni_ring_body(d, in, weight, c, out, 3, 1, 1);
  else if (ring && d->op.p->stride_h == 1)
    dw_vnni_ring_body(d, in, weight, c, out, 3, 1, 0);
  else if (ring && d->op.p->stride_h == 2 && float_exact)
    dw_vnni_ring_body(d, in, weight, c, out, 3, 2, 1);
  else if (ring && d->op.p->stride_h == 2)
    dw_vnni_ring_body(d, in, weight, c, out, 3, 2, 0);
  else if (kh == 3 && quads == 1)
    dw_vnni_body(d, in, weight, c, out, 3, 1);
  else if (kh == 5 && quads == 2)
    dw_vnni_body(d, in, weight, c, out, 5, 2);
  else
    dw_vnni_body(d, in, weight, c, out, kh, quads);
}
#endif

#if SOPHON_X86_DISPATCH
enum {
  DW_FLAT_MAX_TABLE = 1 << 16, /* bytes of tables dw_vnni_flat takes */
  DW_FLAT_MAX_QUADS = 7        /* quads of taps (5x5 kernels) */
};

/* Sets up dw_vnni_flat for the geometry if every vector's input window fits 127 bytes
 * (7x7 outputs at stride 1 and 2, for instance); table: room for the windows and the
 * index tables (dw_flat_table_bytes). */
static int64_t dw_flat_vectors(const dw_conv* d) {
  return sophon_ceil_div((int64_t)d->op.out_h * d->op.out_w, 16);
}
static int64_t dw_flat_table_bytes(const dw_conv* d) {
  return dw_flat_vectors(d) * (sizeof(struct dw_flat_window) + (int64_t)(d->taps + 3) / 4 * 64);
}
static void dw_flat_init(dw_conv* d, uint8_t* table) {
  const sophon_conv_params* p = d->op.p;
  const int32_t in_h = d->op.in_h, in_w = d->op.in_w, out_w = d->op.out_w;
  const int64_t out_n = (int64_t)d->op.out_h * out_w, plane = (int64_t)in_h * in_w;
  const int32_t vectors = (int32_t)dw_flat_vectors(d), quads = (d->taps + 3) / 4;
  struct dw_flat_window* window = (struct dw_flat_window*)(void*)table;
  uint8_t* index = table + (int64_t)vectors * sizeof(struct dw_flat_window);
  int32_t dy[DW_VNNI_MAX_TAPS], dx[DW_VNNI_MAX_TAPS];
  int32_t v, i, t, h, narrow = 1;
  for (t = 0; t < d->taps; ++t) {
    dy[t] = t / p->kernel_w * p->dilation_h - p->pad_top;
    dx[t] = t % p->kernel_w * p->dilation_w - p->pad_left;
  }
  for (v = 0; v < vectors; ++v) {
    /* each lane's taps: the plane byte each reads, or -1 (padding, dropped lanes, taps
       past the kernel); the window runs from the lowest to the highest */
    int32_t at[16 * 4 * DW_FLAT_MAX_QUADS];
    int64_t lo = -1, hi = -1;
    uint8_t* row = index + (int64_t)v * quads * 64;
    for (i = 0; i < 16; ++i) {
      const int64_t pixel = (int64_t)16 * v + i;
      const int64_t y0 = pixel / out_w * p->stride_h, x0 = pixel % out_w * p->stride_w;
      for (t = 0; t < 4 * quads; ++t) {
        int64_t byte = -1;
        if (pixel < out_n && t < d->taps) {
          const int64_t iy = y0 + dy[t], ix = x0 + dx[t];
          if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) {
            byte = iy * in_w + ix; /* < 2^28 (depthwise_int8's check) */
            if (lo < 0 || byte < lo) lo = byte;
            if (byte > hi) hi = byte;
          }
        }
        at[i * 4 * quads + t] = (int32_t)byte;
      }
    }
    if (lo < 0) lo = hi = 0;
    if (hi - lo >= 127) return; /* not taken */
    if (hi - lo >= 63) narrow = 0;
    window[v].start = lo;
    for (i = 0; i < 16; ++i)
      for (t = 0; t < 4 * quads; ++t) {
        const int64_t byte = at[i * 4 * quads + t];
        row[(t / 4) * 64 + 4 * i + t % 4] = (uint8_t)(byte < 0 ? 255 : byte - lo);
      }
  }
  /* the padding byte: 63 or 127 (255 above), and the masks (bytes inside the plane,
     never the padding byte) */
  for (v = 0; v < vectors; ++v) {
    uint8_t* row = index + (int64_t)v * quads * 64;
    const uint64_t pad_bit = (uint64_t)1 << 63;
    for (i = 0; i < quads * 64; ++i)
      if (row[i] == 255) row[i] = narrow ? 63 : 127;
    for (h = 0; h < 2; ++h)
      window[v].mask[h] = h == 1 && narrow ? 0
                          : bit_range(0, plane - window[v].start - 64 * h) &
                                (h == (narrow ? 0 : 1) ? ~pad_bit : ~(uint64_t)0);
  }
  d->flat_narrow = narrow;
  d->flat_vectors = vectors;
  d->flat_quads = quads;
  d->flat_window = window;
  d->flat_index = index;
}

/* The depthwise kernel on small planes (dw_flat_init): vector v holds output pixels
 * 16v .. 16v + 15 of the channel in order, whatever rows they lie on. Its input
 * window (two masked loads, input_zero_point outside the plane and in byte 127; one,
 * and byte 63, when flat_narrow) is flipped to u = in + 128; per quad of the kernel's
 * taps (in [ky][kx] order) one vpermi2b (vpermb) gathers each lane's 4 bytes, a
 * padding tap's from the padding byte, and vpdpbusd
 * adds their products with the quad's 4 weights (0 past the taps): the accumulator of
 * dw_vnni_rows (its comment), requantized 4 vectors at a time as on the VNNI conv
 * path (requantize_scaled_avx512, pack4_avx512) and stored as 64 consecutive bytes. */
SOPHON_AVX512VNNI_VBMI SOPHON_ALWAYS_INLINE static inline void dw_vnni_flat_body(
    const dw_conv* d, const int8_t* in, const int32_t* weight, const rq_channel* channel,
    int8_t* out, int narrow, int32_t quads, int float_exact) {
  const int64_t out_n = (int64_t)d->op.out_h * d->op.out_w;
  const int32_t vectors = d->flat_vectors;
  const rq_channel c = *channel;
  const rq_output o = d->op.output;
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  const __m512i fill = _mm512_set1_epi8((char)d->op.q->input_zero_point);
  int32_t v, k, g;
  for (v = 0; v < vectors; v += 4) {
    __m512i s[4];
    int64_t left;
    for (k = 0; k < 4; ++k) {
      const struct dw_flat_window* win = &d->flat_window[v + k];
      const uint8_t* index = d->flat_index + (int64_t)(v + k) * quads * 64;
      __m512i lo, hi = fill, acc = _mm512_set1_epi32(c.start);
      if (v + k >= vectors) {
        s[k] = acc;
        continue;
      }
      lo = _mm512_xor_si512(_mm512_mask_loadu_epi8(fill, (__mmask64)win->mask[0], in + win->start), flip);
      if (!narrow)
        hi = _mm512_xor_si512(
            _mm512_mask_loadu_epi8(fill, (__mmask64)win->mask[1], in + win->start + 64), flip);
      for (g = 0; g < quads; ++g) {
        const __m512i idx = _mm512_loadu_si512((const void*)(index + 64 * g));
        acc = _mm512_dpbusd_epi32(acc,
                                  narrow ? _mm512_permutexvar_epi8(idx, lo)
                                         : _mm512_permutex2var_epi8(lo, idx, hi),
                                  _mm512_set1_epi32(weight[g]));
      }
      s[k] = float_exact ? requantize_by_float_avx512(acc, _mm512_set1_ps(c.float_scale))
                         : requantize_scaled_avx512(acc, &c);
    }
    {
      const __m512i bytes = pack4_avx512(s[0], s[1], s[2], s[3], &o);
      left = out_n - (int64_t)16 * v;
      if (left >= 64)
        _mm512_storeu_si512((void*)(out + 16 * v), bytes);
      else
        _mm512_mask_storeu_epi8(out + 16 * v, ((__mmask64)1 << left) - 1u, bytes);
    }
  }
}

SOPHON_AVX512VNNI_VBMI static void dw_vnni_flat(const dw_conv* d, const int8_t* in,
                                                const int8_t* w, const rq_channel* c,
                                                int8_t* out) {
  int32_t weight[DW_FLAT_MAX_QUADS]; /* the taps' weights as one 4-byte word per quad */
  int32_t g, j;
  for (g = 0; g < d->flat_quads; ++g) {
    uint32_t word = 0;
    for (j = 0; j < 4 && 4 * g + j < d->taps; ++j)
      word |= (uint32_t)(uint8_t)w[4 * g + j] << (8 * j);
    weight[g] = (int32_t)word;
  }
  /* (constants for the 3x3 and 5x5 kernels, so that the compiler unrolls the quads; and
     for float_exact, onnxruntime's requantization of an exact sum: straight-line code) */
  if (d->flat_narrow && d->flat_quads == 3 && c->by_float && c->exact_sum)
    dw_vnni_flat_body(d, in, weight, c, out, 1, 3, 1);
  else if (d->flat_narrow && d->flat_quads == 3)
    dw_vnni_flat_body(d, in, weight, c, out, 1, 3, 0);
  else if (d->flat_quads == 3 && c->by_float && c->exact_sum)
    dw_vnni_flat_body(d, in, weight, c, out, 0, 3, 1);
  else if (d->flat_quads == 3)
    dw_vnni_flat_body(d, in, weight, c, out, 0, 3, 0);
  else if (d->flat_narrow && d->flat_quads == 7)
    dw_vnni_flat_body(d, in, weight, c, out, 1, 7, 0);
  else if (d->flat_quads == 7)
    dw_vnni_flat_body(d, in, weight, c, out, 0, 7, 0);
  else
    dw_vnni_flat_body(d, in, weight, c, out, d->flat_narrow, d->flat_quads, 0);
}
#endif

/* The phase planes of input channel `channel` of batch item `batch`. */
static void dw_split_phases(const dw_conv* d, int32_t batch, int32_t channel, int16_t* planes) {
  const sophon_conv_params* p = d->op.p;
  const int8_t* in = sophon_view_i8(&d->op.in_v, batch, channel);
  const int32_t zp = d->op.q->input_zero_point, sh = p->stride_h, sw = p->stride_w;
  int32_t py, px, y, x;
  for (py = 0; py < sh; ++py) {
    for (px = 0; px < sw; ++px) {
      int16_t* plane = planes + (int64_t)(py * sw + px) * d->plane;
      /* columns x with x * sw + px - pad_left inside the row: [x_lo, x_hi) */
      const int32_t x_lo = sophon_first_tap((int64_t)px - p->pad_left, sw);
      const int32_t x_hi = sophon_end_tap((int64_t)px - p->pad_left, sw, d->op.in_w, d->grid_w);
      for (y = 0; y < d->grid_h; ++y) {
        const int64_t iy = (int64_t)y * sh + py - p->pad_top;
        int16_t* row = plane + (int64_t)y * d->grid_w;
        if (iy < 0 || iy >= d->op.in_h || x_hi <= x_lo) {
          memset(row, 0, (size_t)d->grid_w * sizeof(int16_t));
          continue;
        }
        {
          const int8_t* src = in + iy * d->op.in_w + ((int64_t)x_lo * sw + px - p->pad_left);
          for (x = 0; x < x_lo; ++x) row[x] = 0;
#if SOPHON_X86_DISPATCH
          if (d->use_avx2)
            dw_phase_row_avx2(row + x_lo, src, sw, x_hi - x_lo, zp);
          else
#endif
            dw_phase_row_c(row + x_lo, src, sw, x_hi - x_lo, zp);
          for (x = x_hi; x < d->grid_w; ++x) row[x] = 0;
        }
      }
    }
  }
}

/* Copies the results of grid pixels [p0, p0 + count) (grid rows grid_w wide) whose
 * column is an output column (< out_w) from bytes to the output channel `out`. */
static void store_grid_run(const int8_t* bytes, int64_t p0, int32_t count, int32_t grid_w,
                           int32_t out_w, int8_t* out) {
  int64_t oy = p0 / grid_w;
  int32_t x = (int32_t)(p0 % grid_w), i = 0;
  if (grid_w == out_w) {
    memcpy(out + p0, bytes, (size_t)count);
    return;
  }
  while (i < count) {
    const int32_t run = grid_w - x < count - i ? grid_w - x : count - i;
    const int32_t valid = x >= out_w ? 0 : (out_w - x < run ? out_w - x : run);
    if (valid > 0) memcpy(out + oy * out_w + x, bytes + i, (size_t)valid);
    i += run;
    ++oy;
    x = 0;
  }
}

#if SOPHON_X86_DISPATCH
/* Items [begin, end) of dw_task on dw_vnni_rows. On 7x7 and 14x14 planes a channel is
 * a few vectors, so what is per channel counts: the channel bases are walked without
 * divisions (sophon_channel_iter), and the next input channel, a few lines in another
 * lane that the hardware prefetchers do not follow, is prefetched while this one is
 * computed. */
static void dw_vnni_items(const dw_conv* d, int64_t begin, int64_t end) {
  const int64_t plane_bytes = (int64_t)d->op.in_h * d->op.in_w;
  const int64_t prefetch_bytes = plane_bytes < 1024 ? plane_bytes : 1024;
  const int32_t correction = d->op.q->input_zero_point + 128;
  int64_t item = begin;
  while (item < end) {
    const int32_t batch = (int32_t)(item / d->in_c), first = (int32_t)(item % d->in_c);
    const int32_t last = end - item < d->in_c - first ? first + (int32_t)(end - item) : d->in_c;
    const int32_t oc0 = first * d->multiplier;
    sophon_channel_iter in = sophon_channel_begin(&d->op.in_v, batch, first);
    sophon_channel_iter out = sophon_channel_begin(&d->op.out_v, batch, oc0);
    sophon_channel_iter w = sophon_channel_begin(&d->op.weight_v, 0, oc0); /* (1, OC, 1, KH*KW) */
    sophon_channel_iter b = d->op.bias != NULL ? sophon_channel_begin(d->op.bias, 0, oc0) : w;
    int32_t channel, m, t;
    for (channel = first; channel < last; ++channel) {
      const int8_t* in_data = (const int8_t*)in.base;
      if (channel + 1 < last) {
        int64_t i;
        sophon_channel_next(&d->op.in_v, &in);
        for (i = 0; i < prefetch_bytes; i += 64) __builtin_prefetch(in.base + i);
      }
      for (m = 0; m < d->multiplier; ++m) {
        /* depth multiplier m: output channel channel * multiplier + m, as TFLite */
        const int8_t* weight = (const int8_t*)w.base;
        int32_t sum_w = 0;
        rq_channel c;
        for (t = 0; t < d->taps; ++t) sum_w += weight[t];
        c = channel_requant_of(d->op.q,
                               d->op.bias != NULL ? *(const int32_t*)(const void*)b.base : 0,
                               channel * d->multiplier + m, correction * sum_w, d->taps);
        if (d->flat_vectors)
          dw_vnni_flat(d, in_data, weight, &c, (int8_t*)out.base);
        else
          dw_vnni_rows(d, in_data, weight, &c, (int8_t*)out.base);
        if (channel + 1 < last || m + 1 < d->multiplier) {
          sophon_channel_next(&d->op.out_v, &out);
          sophon_channel_next(&d->op.weight_v, &w);
          if (d->op.bias != NULL) sophon_channel_next(d->op.bias, &b);
        }
      }
    }
    item += last - first;
  }
}
#endif

/* The input channels (batch item, channel) of task `task`: phase planes, then each
 * output channel of the channel in strips of grid pixels (file comment). */
static void dw_task(void* ctx, int32_t task, int32_t tasks) {
  const dw_conv* d = (const dw_conv*)ctx;
  int16_t* planes = d->planes + (int64_t)task * d->task_elems;
  const int64_t planes_end = (int64_t)d->op.p->stride_h * d->op.p->stride_w * d->plane;
  int64_t begin, end, item;
  /* the slack past the planes is only read for dropped pixels; keep it defined */
  if (!d->vnni_rows)
    memset(planes + planes_end, 0, (size_t)(d->task_elems - planes_end) * sizeof(int16_t));
  sophon_task_range((int64_t)d->batches * d->in_c, task, tasks, &begin, &end);
#if SOPHON_X86_DISPATCH
  if (d->vnni_rows) {
    dw_vnni_items(d, begin, end);
    return;
  }
#endif
  for (item = begin; item < end; ++item) {
    const int32_t batch = (int32_t)(item / d->in_c), channel = (int32_t)(item % d->in_c);
    const int64_t grid_n = (int64_t)d->op.out_h * d->grid_w;
    int64_t p0;
    int32_t m;
    if (!d->vnni_rows) dw_split_phases(d, batch, channel, planes);
    for (m = 0; m < d->multiplier; ++m) {
      /* depth multiplier m: output channel channel * multiplier + m, as TFLite */
      const int32_t oc = channel * d->multiplier + m;
      const int8_t* w = sophon_view_i8(&d->op.weight_v, 0, oc); /* (1, OC, 1, KH*KW) */
      int8_t* out = sophon_view_i8(&d->op.out_v, batch, oc);
      {
        const rq_channel c = channel_requant(d->op.q, d->op.bias, oc, 0, d->taps);
        /* strips of grid pixels p = oy * grid_w + ox, ox < grid_w: consecutive even across
           rows; the columns ox >= out_w are computed and dropped */
        for (p0 = 0; p0 < grid_n; p0 += DW_STRIP) {
          const int32_t count = (int32_t)(grid_n - p0 < DW_STRIP ? grid_n - p0 : DW_STRIP);
          int32_t acc[DW_STRIP], computed = count; /* DW_STRIP: a multiple of 16 */
          int8_t bytes[DW_STRIP];
#if SOPHON_X86_DISPATCH
          if (d->use_avx2) {
            dw_strip_avx2(acc, planes + p0, d->tap_offset, w, d->taps, count);
            computed = (count + 15) / 16 * 16; /* the rest dropped */
          } else
#endif
            dw_strip_c(acc, planes + p0, d->tap_offset, w, d->taps, count);
          d->requantize_row(acc, computed, bytes, &c, &d->op.output);
          store_grid_run(bytes, p0, count, d->grid_w, d->op.out_w, out);
        }
      }
    }
  }
}

/* Depthwise conv2d (in->c == groups); 0, or -1 when scratch cannot be had. */
static int depthwise_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                          const sophon_local* weight, const sophon_local* bias,
                          const sophon_conv_params* p, const sophon_requant* q) {
  const int32_t phases = p->stride_h * p->stride_w;
  dw_conv d;
  int64_t* tap_offset;
  int64_t tap_words, total, flat_bytes = 0;
  int32_t tasks, ky, kx;
  uint64_t macs;
  uint8_t* scratch;

  conv_operands_init(&d.op, dev, out, in, weight, bias, p, q);
  d.batches = out->n;
  d.in_c = in->c;
  d.multiplier = out->c / in->c;
  d.taps = p->kernel_h * p->kernel_w;
  d.grid_h = (int32_t)sophon_ceil_div((int64_t)in->h + p->pad_top + p->pad_bottom, p->stride_h);
  d.grid_w = (int32_t)sophon_ceil_div((int64_t)in->w + p->pad_left + p->pad_right, p->stride_w);
  d.plane = (int64_t)d.grid_h * d.grid_w;
  /* + what the dropped grid pixels of the last row, and those up to a multiple of 32,
   * read past the planes */
  d.task_elems =
      sophon_ceil_div(phases * d.plane + (int64_t)(p->kernel_w - 1) * p->dilation_w + 32, 32) * 32;
  d.use_avx2 = d.vnni_rows = d.flat_vectors = 0;
  d.requantize_row = requantize_row_c;
#if SOPHON_X86_DISPATCH
  d.use_avx2 = dev->cpu_avx2;
  if (dev->cpu_avx2) d.requantize_row = requantize_row_avx2;
  if (dev->cpu_avx512vnni && dev->cpu_avx512vbmi && dw_vnni_rows_per_vector(p, out->w) > 0)
    dw_vnni_layout_init(&d, p, out->w, dw_vnni_rows_per_vector(p, out->w));
#endif

  macs = (uint64_t)out->n * (uint64_t)out->c * (uint64_t)out->h * (uint64_t)out->w *
         (uint64_t)d.taps;
  tasks = sophon_tasks_for(dev, macs, (int64_t)d.batches * d.in_c);
  tap_words = sophon_ceil_div(d.taps, 8) * 8;  /* int64 tap offsets, 64-byte multiple */
  /* (dw_vnni_rows reads the input as it is: no planes) */
  total = tap_words * 8 + (d.vnni_rows ? 0 : (int64_t)tasks * d.task_elems * 2);
#if SOPHON_X86_DISPATCH
  /* dw_vnni_flat where dw_vnni_rows would put two output rows in a vector (out_w <= 8)
   * and the windows fit: its tables in place of the planes. (On 14x14 and 28x28 planes,
   * one row per vector, dw_vnni_rows measured 1.0-1.4x faster.) */
  flat_bytes = d.vnni_rows == 2 && d.taps <= 4 * DW_FLAT_MAX_QUADS &&
                       dw_flat_table_bytes(&d) <= DW_FLAT_MAX_TABLE
                   ? dw_flat_table_bytes(&d)
                   : 0;
  total += flat_bytes;
#endif
  if (d.plane > ((int64_t)1 << 28) || total > ((int64_t)1 << 32)) return -1;
  scratch = (uint8_t*)(void*)sophon_device_scratch(dev, (size_t)sophon_ceil_div(total, 4));
  if (scratch == NULL) return -1;
  tap_offset = (int64_t*)(void*)scratch;
  d.planes = (int16_t*)(void*)(scratch + tap_words * 8);
#if SOPHON_X86_DISPATCH
  if (flat_bytes > 0) dw_flat_init(&d, scratch + tap_words * 8);
#endif

  /* tap (ky, kx) reads padded row oy * sh + ky * dh: plane row oy + ky * dh / sh of
   * phase (ky * dh) % sh, and likewise for the columns */
  for (ky = 0; ky < p->kernel_h; ++ky) {
    for (kx = 0; kx < p->kernel_w; ++kx) {
      const int64_t row = (int64_t)ky * p->dilation_h, col = (int64_t)kx * p->dilation_w;
      const int64_t phase = (row % p->stride_h) * p->stride_w + col % p->stride_w;
      tap_offset[ky * p->kernel_w + kx] =
          phase * d.plane + (row / p->stride_h) * d.grid_w + col / p->stride_w;
    }
  }
  d.tap_offset = tap_offset;
  sophon_parallel_run(dev->pool, tasks, dw_task, &d);
  return 0;
}


/* ================================================= AVX-512 VNNI conv2d */

#if SOPHON_X86_DISPATCH

enum {
  VR = 8,          /* block rows: output channels */
  VV = 3,          /* block vectors of 16 grid pixels */
  VN = 16 * VV,    /* block columns: grid pixels */
  OC_CHUNK = 64,   /* output channels of one work item */
  PIXEL_CHUNK = 4  /* pixel blocks of one work item */
};

typedef struct {
  conv_operands op;
  int32_t batch;
  int32_t taps;
  int32_t quads;            /* per group: ceil(icg / 4) */
  int32_t phases;           /* stride_h * stride_w */
  int32_t grid_h, grid_w;   /* rows and columns of a quad plane */
  int64_t plane;            /* words of a quad plane: grid_h * grid_w */
  int64_t k4;               /* steps: quads * taps */
  int64_t grid_n;           /* grid pixels: out_h * grid_w */
  int64_t blocks;           /* pixel blocks: ceil(ceil(grid_n / 16) / VV) */
  int64_t pixel_chunks, oc_chunks;
  int32_t oc_chunk;         /* output channels of one work item: OC_CHUNK, or fewer (a
                               multiple of VR) to give each thread several items */
  uint32_t pad_word;        /* 4 x (input_zero_point + 128) */
  uint32_t* planes;         /* groups * quads * phases planes, then slack */
  int32_t* offsets;         /* k4 */
  int8_t* zp_row;           /* in_w x input_zero_point */
  /* per task: A rows of the output-channel chunk at hand (OC_CHUNK x k4 words), then
   * their rq_channel; task_words apart */
  uint32_t* task_scratch;
  int64_t task_words;
} vnni_conv;

/* Row oc of A: word q * taps + t holds the weights of the group's input channels
 * 4q .. 4q + 3 at tap t (0 past icg), as 4 signed bytes: the weight row, [ic][tap],
 * transposed in blocks of 4 channels. Returns sum w (|sum| <= 128 * K). dst NULL:
 * only the sum (a 1x1 kernel with icg a multiple of 4, whose A row is the weight row
 * as it is). */
SOPHON_AVX512VNNI static int32_t vnni_pack_row(const int8_t* w, int32_t icg, int32_t taps,
                                               int32_t quads, uint32_t* dst) {
  const int64_t row_bytes = (int64_t)icg * taps, row_words = (int64_t)quads * taps;
  const int32_t last_chunk = (taps - 1) / 16 * 16;
  /* quads [0, vector_quads) take 16 taps of their 4 channels at once (4 loads, then
   * the byte interleave); that reads and writes up to 16 past the taps, which must
   * stay inside the weight row and the A row (the next quad's words come later) */
  int64_t vector_quads = 0, i;
  int32_t q, t, t0, c;
  __m512i sum_u = _mm512_setzero_si512();
  if (taps >= 4) {
    /* the largest q with 4 q taps + 3 taps + last_chunk + 16 <= row_bytes and
       q taps + last_chunk + 16 <= row_words, plus 1 (0 if none) */
    const int64_t reads = row_bytes - 3 * taps - last_chunk - 16;
    const int64_t writes = row_words - last_chunk - 16;
    const int64_t by_reads = reads < 0 ? 0 : reads / (4 * (int64_t)taps) + 1;
    const int64_t by_writes = writes < 0 ? 0 : writes / taps + 1;
    vector_quads = by_reads < by_writes ? by_reads : by_writes;
    if (vector_quads > icg / 4) vector_quads = icg / 4;
  }
  if (taps == 1) {
    /* a 1x1 kernel: word q is bytes 4q .. 4q + 3 of the weight row as they are; the
       bytes past icg in the last word are 0 */
    if (dst != NULL) {
      memcpy(dst, w, (size_t)icg);
      memset((int8_t*)(void*)dst + icg, 0, (size_t)(4 * quads - icg));
    }
    vector_quads = quads;
  }
  for (q = 0; q < vector_quads && taps > 1; ++q) {
    const int8_t* src = w + (int64_t)4 * q * taps;
    uint32_t* row = dst + (int64_t)q * taps;
    for (t0 = 0; t0 < taps; t0 += 16) {
      const __m128i r0 = _mm_loadu_si128((const __m128i*)(const void*)(src + t0));
      const __m128i r1 = _mm_loadu_si128((const __m128i*)(const void*)(src + taps + t0));
      const __m128i r2 = _mm_loadu_si128((const __m128i*)(const void*)(src + 2 * taps + t0));
      const __m128i r3 = _mm_loadu_si128((const __m128i*)(const void*)(src + 3 * taps + t0));
      const __m128i lo01 = _mm_unpacklo_epi8(r0, r1), hi01 = _mm_unpackhi_epi8(r0, r1);
      const __m128i lo23 = _mm_unpacklo_epi8(r2, r3), hi23 = _mm_unpackhi_epi8(r2, r3);
      _mm_storeu_si128((__m128i*)(void*)(row + t0), _mm_unpacklo_epi16(lo01, lo23));
      _mm_storeu_si128((__m128i*)(void*)(row + t0 + 4), _mm_unpackhi_epi16(lo01, lo23));
      _mm_storeu_si128((__m128i*)(void*)(row + t0 + 8), _mm_unpacklo_epi16(hi01, hi23));
      _mm_storeu_si128((__m128i*)(void*)(row + t0 + 12), _mm_unpackhi_epi16(hi01, hi23));
    }
  }
  for (q = (int32_t)vector_quads; q < quads; ++q) {
    const int32_t channels = icg - 4 * q < 4 ? icg - 4 * q : 4;
    const int8_t* src = w + (int64_t)4 * q * taps;
    for (t = 0; t < taps; ++t) {
      uint32_t word = 0;
      for (c = 0; c < channels; ++c)
        word |= (uint32_t)(uint8_t)src[(int64_t)c * taps + t] << (8 * c);
      dst[(int64_t)q * taps + t] = word;
    }
  }
  /* sum w = sum (w + 128) - 128 * count; the sum of the unsigned bytes w ^ 0x80, 8 at
     a time, with psadbw (a masked load for the tail) */
  for (i = 0; i < row_bytes; i += 64) {
    const __mmask64 mask =
        row_bytes - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (row_bytes - i)) - 1);
    const __m512i u = _mm512_maskz_mov_epi8(
        mask, _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, w + i), _mm512_set1_epi8((char)0x80)));
    sum_u = _mm512_add_epi64(sum_u, _mm512_sad_epu8(u, _mm512_setzero_si512()));
  }
  return (int32_t)(_mm512_reduce_add_epi64(sum_u) - 128 * row_bytes);
}

/* A rows and requantization of output channels [oc_first, oc_last) (absolute):
 * rows[i] is output channel oc_first + i's A row, packed into a, or with a 1x1 kernel
 * and icg a multiple of 4 the weight row itself (no copy). */
static void vnni_pack_chunk(const vnni_conv* g, int32_t oc_first, int32_t oc_last, uint32_t* a,
                            const uint32_t** rows, rq_channel* channels) {
  const int32_t correction = g->op.q->input_zero_point + 128; /* in [0, 255] */
  const int direct = g->taps == 1 && g->op.icg % 4 == 0;
  sophon_channel_iter w = sophon_channel_begin(&g->op.weight_v, 0, oc_first);
  int32_t oc;
  for (oc = oc_first; oc < oc_last; ++oc, sophon_channel_next(&g->op.weight_v, &w)) {
    uint32_t* row = a + (int64_t)(oc - oc_first) * g->k4;
    const int32_t sum = vnni_pack_row((const int8_t*)w.base, g->op.icg, g->taps, g->quads,
                                      direct ? NULL : row);
    rows[oc - oc_first] = direct ? (const uint32_t*)(const void*)w.base : row;
    channels[oc - oc_first] =
        channel_requant(g->op.q, g->op.bias, oc, correction * sum, (int64_t)g->op.icg * g->taps);
  }
}

/* dst[x] = the 4 channels of src (bytes + 128, channel c in byte c) at column x * sw,
 * for x < count; `avail` bytes of each row are readable from src[c]. Strides 1 and 2
 * take 16 columns at a time: 4 (masked) loads, the even bytes for stride 2, the
 * flip to unsigned, then the byte interleave; the last, partial, 16 with masks; at
 * stride 1 64 at a time first. */
SOPHON_AVX512VNNI static void vnni_gather_quad(uint32_t* dst, const int8_t* const* src,
                                               int32_t sw, int32_t count, int64_t avail) {
  const __m128i flip = _mm_set1_epi8((char)0x80);
  const __m128i low_bytes = _mm_set1_epi16(0x00ff);
  int32_t x, c, i;
  if (sw > 2) {
    for (x = 0; x < count; ++x) {
      const int64_t ix = (int64_t)x * sw;
      dst[x] = ((uint32_t)(uint8_t)src[0][ix] ^ 0x80u) |
               ((uint32_t)(uint8_t)src[1][ix] ^ 0x80u) << 8 |
               ((uint32_t)(uint8_t)src[2][ix] ^ 0x80u) << 16 |
               ((uint32_t)(uint8_t)src[3][ix] ^ 0x80u) << 24;
    }
    return;
  }
  x = 0;
  if (sw == 1) {
    /* 64 columns at a time: the same interleave within each 128-bit lane of 512-bit
       vectors, then a 4 x 4 transpose of the lanes puts the words in column order */
    const __m512i flip512 = _mm512_set1_epi8((char)0x80);
    for (; x + 64 <= count; x += 64) {
      __m512i u[4], ab_lo, ab_hi, cd_lo, cd_hi, w[4], t[4];
      for (c = 0; c < 4; ++c)
        u[c] = _mm512_xor_si512(_mm512_loadu_si512((const void*)(src[c] + x)), flip512);
      ab_lo = _mm512_unpacklo_epi8(u[0], u[1]);
      ab_hi = _mm512_unpackhi_epi8(u[0], u[1]);
      cd_lo = _mm512_unpacklo_epi8(u[2], u[3]);
      cd_hi = _mm512_unpackhi_epi8(u[2], u[3]);
      w[0] = _mm512_unpacklo_epi16(ab_lo, cd_lo); /* lane L: columns 16L .. 16L + 3 */
      w[1] = _mm512_unpackhi_epi16(ab_lo, cd_lo); /* 16L + 4 .. 16L + 7 */
      w[2] = _mm512_unpacklo_epi16(ab_hi, cd_hi);
      w[3] = _mm512_unpackhi_epi16(ab_hi, cd_hi);
      t[0] = _mm512_shuffle_i32x4(w[0], w[1], 0x44); /* w0.0 w0.1 w1.0 w1.1 */
      t[1] = _mm512_shuffle_i32x4(w[2], w[3], 0x44);
      t[2] = _mm512_shuffle_i32x4(w[0], w[1], 0xee); /* w0.2 w0.3 w1.2 w1.3 */
      t[3] = _mm512_shuffle_i32x4(w[2], w[3], 0xee);
      _mm512_storeu_si512((void*)(dst + x), _mm512_shuffle_i32x4(t[0], t[1], 0x88));
      _mm512_storeu_si512((void*)(dst + x + 16), _mm512_shuffle_i32x4(t[0], t[1], 0xdd));
      _mm512_storeu_si512((void*)(dst + x + 32), _mm512_shuffle_i32x4(t[2], t[3], 0x88));
      _mm512_storeu_si512((void*)(dst + x + 48), _mm512_shuffle_i32x4(t[2], t[3], 0xdd));
    }
  }
  for (; x < count; x += 16) {
    const int32_t n = count - x < 16 ? count - x : 16; /* columns to store */
    const int64_t readable = avail - (int64_t)x * sw; /* >= (n - 1) * sw + 1 */
    const int32_t bytes = (int32_t)(readable < 16 * sw ? readable : 16 * sw);
    const __mmask16 lo_mask = bytes >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << bytes) - 1u);
    const __mmask16 hi_mask = bytes >= 32   ? (__mmask16)0xffff
                              : bytes > 16 ? (__mmask16)((1u << (bytes - 16)) - 1u)
                                           : (__mmask16)0;
    __m128i v[4], ab_lo, ab_hi, cd_lo, cd_hi, words[4];
    for (c = 0; c < 4; ++c) {
      const int8_t* s = src[c] + (int64_t)x * sw;
      if (sw == 1) {
        v[c] = _mm_maskz_loadu_epi8(lo_mask, s);
      } else { /* the even bytes of 32 */
        const __m128i lo = _mm_and_si128(_mm_maskz_loadu_epi8(lo_mask, s), low_bytes);
        const __m128i hi = _mm_and_si128(_mm_maskz_loadu_epi8(hi_mask, s + 16), low_bytes);
        v[c] = _mm_packus_epi16(lo, hi);
      }
      v[c] = _mm_xor_si128(v[c], flip);
    }
    ab_lo = _mm_unpacklo_epi8(v[0], v[1]);
    ab_hi = _mm_unpackhi_epi8(v[0], v[1]);
    cd_lo = _mm_unpacklo_epi8(v[2], v[3]);
    cd_hi = _mm_unpackhi_epi8(v[2], v[3]);
    words[0] = _mm_unpacklo_epi16(ab_lo, cd_lo);
    words[1] = _mm_unpackhi_epi16(ab_lo, cd_lo);
    words[2] = _mm_unpacklo_epi16(ab_hi, cd_hi);
    words[3] = _mm_unpackhi_epi16(ab_hi, cd_hi);
    for (i = 0; i < 4; ++i) {
      const int32_t left = n - 4 * i; /* columns of words[i] to store */
      if (left >= 4)
        _mm_storeu_si128((__m128i*)(void*)(dst + x + 4 * i), words[i]);
      else if (left > 0)
        _mm_mask_storeu_epi32(dst + x + 4 * i, (__mmask8)((1u << left) - 1u), words[i]);
    }
  }
}

/* The quad planes of the batch item (file comment), one task per range of planes.
 * A quad with fewer than 4 channels reads the missing ones from zp_row, a row of
 * input_zero_point, which becomes padding (their weights are 0 anyway). */
SOPHON_AVX512VNNI static void vnni_planes_task(void* ctx, int32_t task, int32_t tasks) {
  const vnni_conv* g = (const vnni_conv*)ctx;
  const sophon_conv_params* p = g->op.p;
  const int32_t sh = p->stride_h, sw = p->stride_w;
  int64_t begin, end, item;
  sophon_task_range((int64_t)g->op.groups * g->quads * g->phases, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t phase = (int32_t)(item % g->phases);
    const int32_t quad = (int32_t)(item / g->phases); /* over all groups */
    const int32_t group = quad / g->quads, q = quad % g->quads;
    const int32_t py = phase / sw, px = phase % sw;
    const int32_t channels = g->op.icg - 4 * q < 4 ? g->op.icg - 4 * q : 4;
    /* columns x whose input column x * sw + px - pad_left is inside the row */
    const int64_t origin = (int64_t)px - p->pad_left;
    const int32_t x_lo = sophon_first_tap(origin, sw);
    const int32_t x_hi = sophon_end_tap(origin, sw, g->op.in_w, g->grid_w);
    uint32_t* plane = g->planes + item * g->plane;
    const int8_t* channel[4];
    int32_t c, y, x;
    for (c = 0; c < 4; ++c)
      channel[c] = c < channels ? sophon_view_i8(&g->op.in_v, g->batch, group * g->op.icg + 4 * q + c)
                                : NULL;
    if (channels == 4 && g->grid_w == g->op.in_w && g->grid_h == g->op.in_h && sh == 1 && sw == 1) {
      /* no padding at stride 1 (a 1x1 conv): the plane is the channels' rows end to end,
         one run (a 7x7 plane: 4 vectors' columns rather than 7 rows of 7) */
      vnni_gather_quad(plane, channel, 1, (int32_t)g->plane, g->plane);
      continue;
    }
    for (y = 0; y < g->grid_h; ++y) {
      const int64_t iy = (int64_t)y * sh + py - p->pad_top;
      uint32_t* row = plane + (int64_t)y * g->grid_w;
      if (iy < 0 || iy >= g->op.in_h || x_hi <= x_lo) {
        for (x = 0; x < g->grid_w; ++x) row[x] = g->pad_word;
        continue;
      }
      for (x = 0; x < x_lo; ++x) row[x] = g->pad_word;
      for (x = x_hi; x < g->grid_w; ++x) row[x] = g->pad_word;
      {
        const int64_t ix0 = (int64_t)x_lo * sw + origin; /* >= 0 */
        const int8_t* src[4];
        for (c = 0; c < 4; ++c)
          src[c] = (channel[c] != NULL ? channel[c] + iy * g->op.in_w : g->zp_row) + ix0;
        vnni_gather_quad(row + x_lo, src, sw, x_hi - x_lo, g->op.in_w - ix0);
      }
    }
  }
}

/* tile[r][j] = start[r] + sum_k dot4(a[r][k], b[off[k] + j]) for r < VR, j < 16 *
 * vectors: vpdpbusd with the 16 words of b as the unsigned and a's word, broadcast, as
 * the signed operand. */
#define VNNI_ROW(r)                                                            \
  do {                                                                         \
    const __m512i w = _mm512_set1_epi32((int32_t)a##r[k]);                     \
    for (j = 0; j < vectors; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], b_k[j], w); \
  } while (0)

SOPHON_AVX512VNNI SOPHON_ALWAYS_INLINE static inline void vnni_block(
    int vectors, const uint32_t* b, const int32_t* off, int64_t k4, const uint32_t* const* a,
    const int32_t* start, int32_t tile[VR][VN]) {
  const uint32_t *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
  const uint32_t *a4 = a[4], *a5 = a[5], *a6 = a[6], *a7 = a[7];
  __m512i acc[VR][VV];
  int64_t k;
  int r, j;
  for (r = 0; r < VR; ++r)
    for (j = 0; j < VV; ++j) acc[r][j] = _mm512_set1_epi32(start[r]);
  for (k = 0; k < k4; ++k) {
    const uint32_t* b_row = b + off[k];
    __m512i b_k[VV];
    for (j = 0; j < vectors; ++j) b_k[j] = _mm512_loadu_si512((const void*)(b_row + 16 * j));
    VNNI_ROW(0);
    VNNI_ROW(1);
    VNNI_ROW(2);
    VNNI_ROW(3);
    VNNI_ROW(4);
    VNNI_ROW(5);
    VNNI_ROW(6);
    VNNI_ROW(7);
  }
  for (r = 0; r < VR; ++r)
    for (j = 0; j < vectors; ++j) _mm512_storeu_si512((void*)(tile[r] + 16 * j), acc[r][j]);
}
#undef VNNI_ROW

/* vnni_block for 1, 2 and 3 vectors. */
SOPHON_AVX512VNNI static void vnni_block1(const uint32_t* b, const int32_t* off, int64_t k4,
                                          const uint32_t* const* a, const int32_t* start,
                                          int32_t tile[VR][VN]) {
  vnni_block(1, b, off, k4, a, start, tile);
}
SOPHON_AVX512VNNI static void vnni_block2(const uint32_t* b, const int32_t* off, int64_t k4,
                                          const uint32_t* const* a, const int32_t* start,
                                          int32_t tile[VR][VN]) {
  vnni_block(2, b, off, k4, a, start, tile);
}
SOPHON_AVX512VNNI static void vnni_block3(const uint32_t* b, const int32_t* off, int64_t k4,
                                          const uint32_t* const* a, const int32_t* start,
                                          int32_t tile[VR][VN]) {
  vnni_block(3, b, off, k4, a, start, tile);
}

/* Vectors [*first, *first + *count) of pixel block `block`: blocks of VV vectors,
 * except that a remainder of one vector makes the last two blocks 2 + 2 (a block of
 * one vector issues 8 vpdpbusd per step, too few to hide their latency). */
static void vnni_block_vectors(const vnni_conv* g, int64_t block, int64_t* first,
                               int32_t* count) {
  const int64_t vectors = sophon_ceil_div(g->grid_n, 16);
  if (vectors % VV == 1 && vectors > 1 && block >= g->blocks - 2) {
    *first = (g->blocks - 2) * VV + (block - (g->blocks - 2)) * 2;
    *count = 2;
  } else {
    *first = block * VV;
    *count = (int32_t)(vectors - *first < VV ? vectors - *first : VV);
  }
}

/* Work items are (group, output-channel chunk, pixel chunk), in that order; a task
 * packs the A rows of a chunk when it reaches it, so they are read from its own
 * cache for all the chunk's pixels. */
SOPHON_AVX512VNNI static void vnni_gemm_task(void* ctx, int32_t task, int32_t tasks) {
  const vnni_conv* g = (const vnni_conv*)ctx;
  const int64_t per_group = g->oc_chunks * g->pixel_chunks;
  uint32_t* a_chunk = g->task_scratch + (int64_t)task * g->task_words;
  rq_channel* channels = (rq_channel*)(void*)(a_chunk + (int64_t)OC_CHUNK * g->k4);
  const uint32_t* rows[OC_CHUNK]; /* the A rows of the chunk (vnni_pack_chunk) */
  int8_t* outs[OC_CHUNK];         /* and their output channels */
  int64_t begin, end, item, packed = -1; /* the (group, chunk) in a_chunk */
  sophon_task_range(g->op.groups * per_group, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t group = (int32_t)(item / per_group);
    const int64_t oc_chunk = item / g->pixel_chunks; /* over all groups */
    const int64_t pixel_chunk = item % g->pixel_chunks;
    const int32_t oc_first = (int32_t)(oc_chunk % g->oc_chunks) * g->oc_chunk;
    const int32_t oc_last = oc_first + g->oc_chunk < g->op.ocg ? oc_first + g->oc_chunk : g->op.ocg;
    const uint32_t* planes = g->planes + (int64_t)group * g->quads * g->phases * g->plane;
    int64_t block = pixel_chunk * PIXEL_CHUNK;
    const int64_t block_end = block + PIXEL_CHUNK < g->blocks ? block + PIXEL_CHUNK : g->blocks;
    if (oc_chunk != packed) {
      sophon_channel_iter o = sophon_channel_begin(&g->op.out_v, g->batch, group * g->op.ocg + oc_first);
      int32_t i;
      vnni_pack_chunk(g, group * g->op.ocg + oc_first, group * g->op.ocg + oc_last, a_chunk, rows,
                      channels);
      for (i = 0; i < oc_last - oc_first; ++i, sophon_channel_next(&g->op.out_v, &o))
        outs[i] = (int8_t*)o.base;
      packed = oc_chunk;
    }
    for (; block < block_end; ++block) {
      grid_run runs[VN];
      int64_t first, p0;
      int32_t vectors, count, n_runs, oc0, r, j, contiguous;
      vnni_block_vectors(g, block, &first, &vectors);
      p0 = first * 16;
      count = (int32_t)(g->grid_n - p0 < 16 * vectors ? g->grid_n - p0 : 16 * vectors);
      n_runs = grid_runs(g->grid_w, g->op.out_w, p0, count, runs);
      contiguous = g->grid_w == g->op.out_w;
      for (oc0 = oc_first; oc0 < oc_last; oc0 += VR) {
        const int32_t used = oc_last - oc0 < VR ? oc_last - oc0 : VR; /* rows of the tile */
        const uint32_t* a[VR];
        int32_t start[VR], tile[VR][VN];
        for (r = 0; r < VR; ++r) { /* rows past the edge repeat the last; dropped */
          a[r] = rows[oc0 - oc_first + (r < used ? r : used - 1)];
          start[r] = channels[oc0 - oc_first + (r < used ? r : used - 1)].start;
        }
        if (vectors == 3)
          vnni_block3(planes + p0, g->offsets, g->k4, a, start, tile);
        else if (vectors == 2)
          vnni_block2(planes + p0, g->offsets, g->k4, a, start, tile);
        else
          vnni_block1(planes + p0, g->offsets, g->k4, a, start, tile);
        for (r = 0; r < used; ++r) {
          const int32_t oc = group * g->op.ocg + oc0 + r;
          const rq_channel* c = &channels[oc - group * g->op.ocg - oc_first];
          int8_t* out = outs[oc0 - oc_first + r];
          __m512i result[VV];
          if (contiguous) { /* the block's pixels are outputs p0 .. p0 + count - 1 */
            __m512i s[4];
            if (c->by_float && c->exact_sum) { /* straight-line: onnxruntime's requantization */
              const __m512 scale = _mm512_set1_ps(c->float_scale);
              for (j = 0; j < VV; ++j)
                s[j] = j < vectors ? requantize_by_float_avx512(
                                         _mm512_loadu_si512((const void*)(tile[r] + 16 * j)), scale)
                                   : _mm512_setzero_si512();
            } else {
              for (j = 0; j < VV; ++j)
                s[j] = j < vectors ? requantize_scaled_avx512(
                                         _mm512_loadu_si512((const void*)(tile[r] + 16 * j)), c)
                                   : _mm512_setzero_si512();
            }
            s[3] = _mm512_setzero_si512();
            {
              const __m512i bytes = pack4_avx512(s[0], s[1], s[2], s[3], &g->op.output);
              if (count == VN) { /* (no masked store: slower) */
                _mm256_storeu_si256((__m256i*)(void*)(out + p0), _mm512_castsi512_si256(bytes));
                _mm_storeu_si128((__m128i*)(void*)(out + p0 + 32), _mm512_extracti32x4_epi32(bytes, 2));
              } else {
                _mm512_mask_storeu_epi8(out + p0, ((__mmask64)1 << count) - 1u, bytes);
              }
            }
            continue;
          }
          for (j = 0; j < vectors; ++j)
            result[j] = requantize_avx512(_mm512_loadu_si512((const void*)(tile[r] + 16 * j)), c,
                                          &g->op.output);
          store_runs_avx512(runs, n_runs, result, out);
        }
      }
    }
  }
}

/* conv2d on the VNNI implicit GEMM; 0, or -1 when scratch cannot be had (or the
 * padded planes would be absurdly large): the caller then takes another path. */
static int conv_vnni(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                     const sophon_local* weight, const sophon_local* bias,
                     const sophon_conv_params* p, const sophon_requant* q) {
  vnni_conv g;
  int64_t plane_words, slack, offset_words, total, i;
  int32_t quad, ky, kx, tasks;
  uint64_t macs;
  uint32_t* scratch;

  conv_operands_init(&g.op, dev, out, in, weight, bias, p, q);
  g.taps = p->kernel_h * p->kernel_w;
  g.quads = (g.op.icg + 3) / 4;
  g.phases = p->stride_h * p->stride_w;
  g.grid_h = (int32_t)sophon_ceil_div((int64_t)in->h + p->pad_top + p->pad_bottom, p->stride_h);
  g.grid_w = (int32_t)sophon_ceil_div((int64_t)in->w + p->pad_left + p->pad_right, p->stride_w);
  if (p->stride_w == 1 &&
      (p->pad_left < p->pad_right ? p->pad_left : p->pad_right) <= (p->kernel_w - 1) * p->dilation_w) {
    /* rows share their padding: a tap past the row's last column reads the next row's
     * left padding (the file comment), and out_w <= grid_w still */
    g.grid_w = in->w + (p->pad_left > p->pad_right ? p->pad_left : p->pad_right);
  }
  g.plane = (int64_t)g.grid_h * g.grid_w;
  g.k4 = (int64_t)g.quads * g.taps;
  g.grid_n = (int64_t)out->h * g.grid_w;
  g.blocks = sophon_ceil_div(sophon_ceil_div(g.grid_n, 16), VV);
  g.pixel_chunks = sophon_ceil_div(g.blocks, PIXEL_CHUNK);
  /* with several threads, halve the chunk while there are fewer than 4 items per
     thread (small layers: 2 or 3 items split 1:1 or 2:1 between 2 threads) */
  g.oc_chunk = OC_CHUNK;
  while (dev->num_threads > 1 && g.oc_chunk > VR &&
         g.op.groups * sophon_ceil_div(g.op.ocg, g.oc_chunk) * g.pixel_chunks <
             4 * (int64_t)dev->num_threads)
    g.oc_chunk /= 2;
  g.oc_chunks = sophon_ceil_div(g.op.ocg, g.oc_chunk);
  g.pad_word = 0x01010101u * (uint32_t)(q->input_zero_point + 128);
  /* (a zero-point byte, flipped by the gather, is the padding byte) */

  macs = (uint64_t)out->c * (uint64_t)g.grid_n * (uint64_t)g.k4 * 4u;
  tasks = sophon_tasks_for(dev, macs, g.op.groups * g.oc_chunks * g.pixel_chunks);

  /* scratch, in 64-byte multiples: the planes plus the slack the last block's
   * vectors read past the last plane (at most 15 + (KW - 1) * dw / sw words), the
   * step offsets, each task's A chunk and its channels */
  slack = 16 + (int64_t)(p->kernel_w - 1) * p->dilation_w / p->stride_w;
  plane_words = sophon_ceil_div((int64_t)g.op.groups * g.quads * g.phases * g.plane + slack, 16) * 16;
  offset_words = sophon_ceil_div(g.k4, 16) * 16;
  g.task_words = sophon_ceil_div((int64_t)OC_CHUNK * g.k4, 16) * 16 +
                 sophon_ceil_div(OC_CHUNK * (int64_t)sizeof(rq_channel), 64) * 16;
  total = plane_words + offset_words + sophon_ceil_div(in->w, 64) * 16 + tasks * g.task_words;
  if (plane_words > ((int64_t)1 << 30) || total > ((int64_t)1 << 31)) return -1;
  scratch = (uint32_t*)(void*)sophon_device_scratch(dev, (size_t)total);
  if (scratch == NULL) return -1;
  g.planes = scratch;
  g.offsets = (int32_t*)(void*)(g.planes + plane_words);
  g.zp_row = (int8_t*)(void*)(g.offsets + offset_words);
  memset(g.zp_row, q->input_zero_point, (size_t)in->w);
  g.task_scratch = scratch + plane_words + offset_words + sophon_ceil_div(in->w, 64) * 16;
  /* the slack is only read by dropped grid pixels; keep it defined */
  for (i = (int64_t)g.op.groups * g.quads * g.phases * g.plane; i < plane_words; ++i)
    g.planes[i] = g.pad_word;

  /* step (quad, ky, kx) reads padded row oy * sh + ky * dh, i.e. plane row
   * oy + ky * dh / sh of phase row (ky * dh) % sh, and likewise for the columns */
  for (quad = 0; quad < g.quads; ++quad) {
    for (ky = 0; ky < p->kernel_h; ++ky) {
      for (kx = 0; kx < p->kernel_w; ++kx) {
        const int64_t row = (int64_t)ky * p->dilation_h, col = (int64_t)kx * p->dilation_w;
        const int64_t phase = (row % p->stride_h) * p->stride_w + col % p->stride_w;
        g.offsets[((int64_t)quad * p->kernel_h + ky) * p->kernel_w + kx] =
            (int32_t)(((int64_t)quad * g.phases + phase) * g.plane + (row / p->stride_h) * g.grid_w +
                      col / p->stride_w);
      }
    }
  }

  for (g.batch = 0; g.batch < out->n; ++g.batch) {
    sophon_parallel_run(
        dev->pool,
        sophon_tasks_for(dev, (uint64_t)g.plane * (uint64_t)(g.op.groups * g.quads * g.phases),
                         (int64_t)g.op.groups * g.quads * g.phases),
        vnni_planes_task, &g);
    sophon_parallel_run(dev->pool, tasks, vnni_gemm_task, &g);
  }
  return 0;
}
#endif /* SOPHON_X86_DISPATCH */

/* ============================================== im2col GEMM (AVX2, C) */

enum {
  BR = 6,  /* block rows: output channels */
  BN = 16  /* block columns: output pixels (two vectors of 8 int32) */
};

/* ------------------------------------------------------- block kernels
 * acc[r][j] = sum_{i < pairs} a[r][i].lo * b[i][j].lo + a[r][i].hi * b[i][j].hi for
 * r < BR, j < BN: a[r] is a row of A as int16 pairs (k = 2i, 2i + 1) in one 32-bit
 * word; b is a B panel of `pairs` rows of BN pixels, each an int16 pair for k = 2i,
 * 2i + 1, rows `b_step` pairs apart. */

typedef void (*block_fn)(int64_t pairs, const uint32_t* const* a, const int16_t* b,
                         int64_t b_step, int32_t acc[BR][BN]);

static void block_c(int64_t pairs, const uint32_t* const* a, const int16_t* b, int64_t b_step,
                    int32_t acc[BR][BN]) {
  int64_t i;
  int r, j;
  for (r = 0; r < BR; ++r)
    for (j = 0; j < BN; ++j) acc[r][j] = 0;
  for (i = 0; i < pairs; ++i) {
    const int16_t* row = b + i * b_step * 2;
    for (r = 0; r < BR; ++r) {
      const int32_t lo = (int16_t)(a[r][i] & 0xffffu), hi = (int16_t)(a[r][i] >> 16);
      for (j = 0; j < BN; ++j) acc[r][j] += lo * row[2 * j] + hi * row[2 * j + 1];
    }
  }
}

#if SOPHON_X86_DISPATCH
#define SOPHON_ROW(r)                                                              \
  do {                                                                             \
    const __m256i a_r = _mm256_set1_epi32((int32_t)a##r[i]);                       \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(a_r, b0));               \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(a_r, b1));               \
  } while (0)

SOPHON_AVX2 static void block_avx2(int64_t pairs, const uint32_t* const* a, const int16_t* b,
                                   int64_t b_step, int32_t acc[BR][BN]) {
  const uint32_t *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  int64_t i;
  for (i = 0; i < pairs; ++i, b += b_step * 2) {
    const __m256i b0 = _mm256_loadu_si256((const __m256i*)(const void*)b);
    const __m256i b1 = _mm256_loadu_si256((const __m256i*)(const void*)(b + 16));
    SOPHON_ROW(0);
    SOPHON_ROW(1);
    SOPHON_ROW(2);
    SOPHON_ROW(3);
    SOPHON_ROW(4);
    SOPHON_ROW(5);
  }
  _mm256_storeu_si256((__m256i*)(void*)acc[0], c00);
  _mm256_storeu_si256((__m256i*)(void*)(acc[0] + 8), c01);
  _mm256_storeu_si256((__m256i*)(void*)acc[1], c10);
  _mm256_storeu_si256((__m256i*)(void*)(acc[1] + 8), c11);
  _mm256_storeu_si256((__m256i*)(void*)acc[2], c20);
  _mm256_storeu_si256((__m256i*)(void*)(acc[2] + 8), c21);
  _mm256_storeu_si256((__m256i*)(void*)acc[3], c30);
  _mm256_storeu_si256((__m256i*)(void*)(acc[3] + 8), c31);
  _mm256_storeu_si256((__m256i*)(void*)acc[4], c40);
  _mm256_storeu_si256((__m256i*)(void*)(acc[4] + 8), c41);
  _mm256_storeu_si256((__m256i*)(void*)acc[5], c50);
  _mm256_storeu_si256((__m256i*)(void*)(acc[5] + 8), c51);
}
#undef SOPHON_ROW
#endif

/* ----------------------------------------------------------- conv GEMM */

typedef struct {
  conv_operands op;
  int64_t k, pairs;    /* icg * KH * KW; ceil(k / 2) */
  int64_t n;           /* OH * OW */
  int64_t pc, chunks;  /* pixels per chunk (a multiple of BN); per group ceil(n / pc) */
  int32_t batch;
  uint32_t* a_pack;    /* out.c x pairs */
  int16_t* b_pack;     /* per task: pairs x pc x 2 */
  block_fn block;
  requantize_row_fn requantize_row;
} conv_job;

/* A as int16 pairs along k: rows [begin, end) of task `task`. */
static void pack_a_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_job* g = (const conv_job*)ctx;
  int64_t begin, end, oc, i;
  sophon_task_range(g->op.out_c, task, tasks, &begin, &end);
  for (oc = begin; oc < end; ++oc) {
    const int8_t* src = sophon_view_i8(&g->op.weight_v, 0, (int32_t)oc);
    uint32_t* dst = g->a_pack + oc * g->pairs;
    for (i = 0; i < g->pairs; ++i) {
      const int32_t lo = src[2 * i], hi = 2 * i + 1 < g->k ? src[2 * i + 1] : 0;
      dst[i] = ((uint32_t)lo & 0xffffu) | ((uint32_t)hi << 16);
    }
  }
}

/* The B chunk of pixels [p0, p0 + count) of `group`: tap k = (ic, ky, kx) of chunk
 * pixel t at dst[((k / 2) * pc + t) * 2 + k % 2], in - input_zero_point inside the
 * input, 0 in the padding, past K and past `count`. */
static void pack_b_chunk(const conv_job* g, int32_t group, int64_t p0, int32_t count,
                         int16_t* dst) {
  const sophon_conv_params* p = g->op.p;
  const int32_t zp = g->op.q->input_zero_point;
  const sophon_channel_iter first = sophon_channel_begin(&g->op.in_v, g->batch, group * g->op.icg);
  int64_t pix = p0;
  memset(dst, 0, (size_t)(g->pairs * g->pc * 2) * sizeof(int16_t));
  while (pix < p0 + count) { /* a run of pixels on one output row */
    const int64_t oy = pix / g->op.out_w, ox = pix % g->op.out_w;
    const int32_t col = (int32_t)(pix - p0);
    const int64_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    const int32_t sw = p->stride_w;
    int32_t run = (int32_t)(g->op.out_w - ox < p0 + count - pix ? g->op.out_w - ox : p0 + count - pix);
    sophon_channel_iter channel = first;
    int32_t ic = 0, ky = 0, kx = 0, t;
    int64_t pair;
    for (pair = 0; pair < g->pairs; ++pair) {
      /* taps k = 2 * pair + h, h = 0, 1: the input row (NULL: padding or past K), the
         column of the run's first pixel, and the pixels [lo, hi) inside the row */
      const int8_t* src[2];
      int64_t ix[2];
      int32_t lo[2], hi[2], h, both_lo, both_hi;
      int16_t* out = dst + (pair * g->pc + col) * 2;
      for (h = 0; h < 2; ++h) {
        const int64_t iy = iy0 + (int64_t)ky * p->dilation_h;
        src[h] = NULL;
        ix[h] = 0;
        lo[h] = hi[h] = 0;
        if (ic < g->op.icg && iy >= 0 && iy < g->op.in_h) {
          src[h] = (const int8_t*)channel.base + iy * g->op.in_w;
          ix[h] = ix0 + (int64_t)kx * p->dilation_w;
          lo[h] = sophon_first_tap(ix[h], sw);
          hi[h] = sophon_end_tap(ix[h], sw, g->op.in_w, run);
          if (hi[h] < lo[h]) hi[h] = lo[h];
        }
        if (ic < g->op.icg && ++kx == p->kernel_w) { /* the next tap */
          kx = 0;
          if (++ky == p->kernel_h) {
            ky = 0;
            ++ic;
            sophon_channel_next(&g->op.in_v, &channel);
          }
        }
      }
      both_lo = lo[0] > lo[1] ? lo[0] : lo[1];
      both_hi = hi[0] < hi[1] ? hi[0] : hi[1];
      if (src[0] != NULL && src[1] != NULL && sw == 1 && both_lo < both_hi) {
        const int8_t* s0 = src[0] + ix[0];
        const int8_t* s1 = src[1] + ix[1];
        for (t = lo[0]; t < both_lo; ++t) out[2 * t] = (int16_t)(s0[t] - zp);
        for (t = lo[1]; t < both_lo; ++t) out[2 * t + 1] = (int16_t)(s1[t] - zp);
        for (t = both_lo; t < both_hi; ++t) {
          out[2 * t] = (int16_t)(s0[t] - zp);
          out[2 * t + 1] = (int16_t)(s1[t] - zp);
        }
        for (t = both_hi; t < hi[0]; ++t) out[2 * t] = (int16_t)(s0[t] - zp);
        for (t = both_hi; t < hi[1]; ++t) out[2 * t + 1] = (int16_t)(s1[t] - zp);
      } else {
        for (h = 0; h < 2; ++h)
          if (src[h] != NULL)
            for (t = lo[h]; t < hi[h]; ++t)
              out[2 * t + h] = (int16_t)(src[h][ix[h] + (int64_t)t * sw] - zp);
      }
    }
    pix += run;
  }
}

/* The (group, pixel chunk) items of task `task`: B packed, then every output channel
 * of the group in BR x BN blocks, requantized. */
static void conv_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_job* g = (const conv_job*)ctx;
  int16_t* b_pack = g->b_pack + (int64_t)task * g->pairs * g->pc * 2;
  int64_t begin, end, item;
  sophon_task_range((int64_t)g->op.groups * g->chunks, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t group = (int32_t)(item / g->chunks);
    const int64_t p0 = (item % g->chunks) * g->pc;
    const int32_t count = (int32_t)(g->n - p0 < g->pc ? g->n - p0 : g->pc);
    int32_t oc0, t0, r;
    pack_b_chunk(g, group, p0, count, b_pack);
    for (oc0 = 0; oc0 < g->op.ocg; oc0 += BR) {
      const int32_t rows = g->op.ocg - oc0 < BR ? g->op.ocg - oc0 : BR;
      const uint32_t* a[BR];
      int8_t* out_rows[BR];
      rq_channel channels[BR];
      for (r = 0; r < BR; ++r) { /* rows past the edge repeat the last; dropped */
        const int32_t oc = group * g->op.ocg + oc0 + (r < rows ? r : rows - 1);
        a[r] = g->a_pack + (int64_t)oc * g->pairs;
        out_rows[r] = sophon_view_i8(&g->op.out_v, g->batch, oc) + p0;
        channels[r] = channel_requant(g->op.q, g->op.bias, oc, 0, g->k);
      }
      for (t0 = 0; t0 < count; t0 += BN) {
        const int32_t cols = count - t0 < BN ? count - t0 : BN;
        int32_t acc[BR][BN];
        g->block(g->pairs, a, b_pack + (int64_t)t0 * 2, g->pc, acc);
        for (r = 0; r < rows; ++r)
          g->requantize_row(acc[r], cols, out_rows[r] + t0, &channels[r], &g->op.output);
      }
    }
  }
}

/* conv2d on the im2col GEMM with the AVX2 or the C block kernel. */
static int conv_gemm(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                     const sophon_local* weight, const sophon_local* bias,
                     const sophon_conv_params* p, const sophon_requant* q) {
  conv_job g;
  int64_t a_words, b_elems;
  int32_t tasks;
  uint64_t macs;
  uint32_t* scratch;

  conv_operands_init(&g.op, dev, out, in, weight, bias, p, q);
  g.k = (int64_t)g.op.icg * p->kernel_h * p->kernel_w;
  g.pairs = sophon_ceil_div(g.k, 2);
  g.n = (int64_t)out->h * out->w;
  g.pc = g.n >= 8 * BN ? 4 * BN : BN;
  g.chunks = sophon_ceil_div(g.n, g.pc);
  g.block = block_c;
  g.requantize_row = requantize_row_c;
#if SOPHON_X86_DISPATCH
  if (dev->cpu_avx2) {
    g.block = block_avx2;
    g.requantize_row = requantize_row_avx2;
  }
#endif

  macs = (uint64_t)out->c * (uint64_t)g.n * (uint64_t)g.k;
  tasks = sophon_tasks_for(dev, macs, (int64_t)g.op.groups * g.chunks);
  a_words = sophon_ceil_div((int64_t)out->c * g.pairs, 16) * 16; /* keeps b_pack aligned */
  b_elems = (int64_t)tasks * g.pairs * g.pc * 2;
  scratch = (uint32_t*)(void*)sophon_device_scratch(dev, (size_t)(a_words + b_elems / 2));
  if (scratch == NULL) return -1;
  g.a_pack = scratch;
  g.b_pack = (int16_t*)(void*)(scratch + a_words);

  sophon_parallel_run(dev->pool, sophon_tasks_for(dev, macs, out->c), pack_a_task, &g);
  for (g.batch = 0; g.batch < out->n; ++g.batch)
    sophon_parallel_run(dev->pool, tasks, conv_task, &g);
  return 0;
}

/* conv2d: depthwise directly, else the VNNI implicit GEMM where the host has it,
 * else the im2col GEMM (file comment). */
int sophon_fast_conv2d_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_local* weight, const sophon_local* bias,
                            const sophon_conv_params* p, const sophon_requant* q) {
  /* conv instructions take SOPHON_REQUANT_FLOAT32 (onnxruntime's) or fixed point */
  if (q->rounding != SOPHON_REQUANT_FIXED_POINT && q->rounding != SOPHON_REQUANT_FLOAT32) return 1;
  if (in->c == p->groups) return depthwise_int8(dev, out, in, weight, bias, p, q);
#if SOPHON_X86_DISPATCH
  if (dev->cpu_avx512vnni && conv_vnni(dev, out, in, weight, bias, p, q) == 0) return 0;
#endif
  return conv_gemm(dev, out, in, weight, bias, p, q);
}

/* ------------------------------------------------------------------ fc */

typedef struct {
  sophon_view out_v, weight_v, bias_v;
  const sophon_view* bias; /* &bias_v or NULL */
  const sophon_requant* q;
  rq_output output;
  int32_t batches, features;
  int64_t depth;
  /* batches x depth, from the lanes: in - input_zero_point (int16), or for VNNI
   * in + 128 (bytes) */
  const int16_t* inputs;
  const uint8_t* inputs_u8;
  int use_avx2, use_vnni;
} fc_job;

/* sum x[k] * w[k], k < n. */
static int32_t dot_i8_c(const int16_t* restrict x, const int8_t* restrict w, int64_t n) {
  int32_t sum = 0;
  int64_t k;
  for (k = 0; k < n; ++k) sum += (int32_t)x[k] * w[k];
  return sum;
}

#if SOPHON_X86_DISPATCH
/* The sum of the 8 lanes. */
SOPHON_AVX2 static int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

/* dot_i8_c, 16 at a time with _mm256_madd_epi16. */
SOPHON_AVX2 static int32_t dot_i8_avx2(const int16_t* x, const int8_t* w, int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  int64_t k;
  for (k = 0; k + 16 <= n; k += 16) {
    const __m256i wv =
        _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(const void*)(w + k)));
    const __m256i xv = _mm256_loadu_si256((const __m256i*)(const void*)(x + k));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wv));
  }
  return hsum_epi32(acc) + dot_i8_c(x + k, w + k, n - k);
}

/* sum_k w[k] * (u[k] - correction), u[k] = in + 128: sum w * u and sum w with
 * vpdpbusd (the latter against bytes of 1), 64 at a time, the tail masked to 0. */
SOPHON_AVX512VNNI static int32_t dot_u8_vnni(const uint8_t* u, const int8_t* w, int64_t n,
                                             int32_t correction) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc = _mm512_setzero_si512(), sum_w = acc;
  int64_t k;
  for (k = 0; k < n; k += 64) {
    const __mmask64 mask = n - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - k)) - 1);
    const __m512i uv = _mm512_maskz_loadu_epi8(mask, u + k);
    const __m512i wv = _mm512_maskz_loadu_epi8(mask, w + k);
    acc = _mm512_dpbusd_epi32(acc, uv, wv);
    sum_w = _mm512_dpbusd_epi32(sum_w, ones, wv);
  }
  return _mm512_reduce_add_epi32(acc) - correction * _mm512_reduce_add_epi32(sum_w);
}
#endif

/* Output features [begin, end) of task `task`, for every batch item. */
static void fc_task(void* ctx, int32_t task, int32_t tasks) {
  const fc_job* f = (const fc_job*)ctx;
  int64_t begin, end, feature;
  int32_t batch;
  sophon_task_range(f->features, task, tasks, &begin, &end);
  for (batch = 0; batch < f->batches; ++batch) {
    for (feature = begin; feature < end; ++feature) {
      /* weight (1, N, K, 1): row `feature` is contiguous along h */
      const int8_t* w = sophon_view_i8(&f->weight_v, 0, (int32_t)feature);
      const rq_channel c = channel_requant(f->q, f->bias, (int32_t)feature, 0, f->depth);
      const int16_t* x = f->inputs + (int64_t)batch * f->depth;
      int32_t acc;
#if SOPHON_X86_DISPATCH
      if (f->use_vnni)
        acc = dot_u8_vnni(f->inputs_u8 + (int64_t)batch * f->depth, w, f->depth,
                          f->q->input_zero_point + 128);
      else if (f->use_avx2)
        acc = dot_i8_avx2(x, w, f->depth);
      else
#endif
        acc = dot_i8_c(x, w, f->depth);
      *sophon_view_i8(&f->out_v, batch, (int32_t)feature) =
          f->q->rounding == SOPHON_REQUANT_DOUBLE
              ? requantize_by_double(acc, &c, f->q->scale[f->q->per_channel ? feature : 0],
                                     &f->output)
              : requantize(acc, &c, &f->output); /* fixed point or FLOAT32 (c.by_float) */
    }
  }
}

/* fc: the inputs gathered from the lanes once, then one dot product per output. */
int sophon_fast_fc_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                        const sophon_local* weight, const sophon_local* bias,
                        const sophon_requant* q) {
  const int64_t count = (int64_t)in->n * in->c;
  sophon_view in_v;
  fc_job f;
  uint8_t* scratch;
  int32_t batch, k;

  /* int16 inputs, then (a 64-byte multiple later) the byte inputs */
  scratch = (uint8_t*)(void*)sophon_device_scratch(
      dev, (size_t)(sophon_ceil_div(count * 2, 64) * 16 + sophon_ceil_div(count, 4)));
  if (scratch == NULL) return -1;
  f.inputs = (const int16_t*)(const void*)scratch;
  f.inputs_u8 = scratch + sophon_ceil_div(count * 2, 64) * 64;
  sophon_view_init(&in_v, dev, in);
  for (batch = 0; batch < in->n; ++batch) { /* in[batch, k] lives in lane k % npu */
    sophon_channel_iter it = sophon_channel_begin(&in_v, batch, 0);
    int16_t* x = (int16_t*)(void*)scratch + (int64_t)batch * in->c;
    uint8_t* u = scratch + sophon_ceil_div(count * 2, 64) * 64 + (int64_t)batch * in->c;
    for (k = 0; k < in->c; ++k) {
      const int8_t value = *(const int8_t*)it.base;
      x[k] = (int16_t)(value - q->input_zero_point);
      u[k] = (uint8_t)((uint8_t)value ^ 0x80u);
      sophon_channel_next(&in_v, &it);
    }
  }
  sophon_view_init(&f.out_v, dev, out);
  sophon_view_init(&f.weight_v, dev, weight);
  f.bias = NULL;
  if (bias != NULL) {
    sophon_view_init(&f.bias_v, dev, bias);
    f.bias = &f.bias_v;
  }
  f.q = q;
  f.output = output_requant(q);
  f.batches = in->n;
  f.features = out->c;
  f.depth = in->c;
  f.use_avx2 = dev->cpu_avx2;
  f.use_vnni = dev->cpu_avx512vnni;
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)in->n * (uint64_t)out->c * (uint64_t)in->c, out->c),
                      fc_task, &f);
  return 0;
}
