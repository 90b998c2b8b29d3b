/*
 * sophon_tiu_reduce_int8.c - the TIU's INT8 reductions (MEAN, SUM, REDUCE_MAX,
 * REDUCE_MIN) and INT8 softmax over h (sophon_quant.h), bit-exact with TFLite's
 * reference kernels (the BUILTIN_REF resolver):
 *   reduce   reference_ops::QuantizedMeanOrSum (reference/reduce.h) for MEAN and
 *            SUM, its integer form with the multiplier of in_scale / out_scale;
 *            reference_ops::ReduceGeneric for MAX and MIN (input and output
 *            quantization equal: TFLite requires it)
 *   softmax  reference_ops::Softmax<int8_t, int8_t> (reference/softmax.h) with
 *            gemmlowp's fixed-point exp_on_negative_values and
 *            one_over_one_plus_x_for_x_in_0_1 (fixedpoint/fixedpoint.h), the
 *            parameters of PreprocessSoftmaxScaling and CalculateInputRadius
 *            (quantization_util.cc) with kScaledDiffIntegerBits 5.
 * The compiler maps the reduced (softmax) axes onto h, those before onto c and
 * those after onto w, as for the f32 instructions.
 */
#include <float.h>
#include <math.h>

#include "reference/sophon_reference.h"
#include "sophon_quant.h"

/* A MEAN or SUM accumulates H int8 values in int32 and subtracts
 * input_zero_point * H: |sum - zp * H| <= 255 H < 2^31 while H <= 2^23. */
#define INT8_MAX_REDUCE_ROWS (1 << 23)

/* Softmax sums H values of exp in Q12.19, each at most 2^19 (exp(0) = 1): the
 * int32 sum cannot overflow while H <= 4095. */
#define INT8_MAX_SOFTMAX_ROWS 4095

/* Softmax's input difference is a Q5.26 number (kScaledDiffIntegerBits). */
#define SOFTMAX_DIFF_INTEGER_BITS 5

/* ------------------------------------------------------------------ reduce */

/* TFLite's QuantizedMeanOrSum for a MEAN folds 1 / count into the multiplier:
 * shift = floor(log2(count)), at most 32 and 31 + *shift (so that the new shift
 * stays >= -31), multiplier = (multiplier * 2^shift) / count (integer division
 * of the int64 product), *shift -= shift. With count <= 2^23 (checked) the
 * product is below 2^54 and the quotient below the multiplier. */
static void mean_multiplier(int32_t count, int32_t* multiplier, int32_t* shift) {
  int32_t log2_count = 0;
  while (((int64_t)1 << (log2_count + 1)) <= count) ++log2_count;
  if (log2_count > 32) log2_count = 32;
  if (log2_count > 31 + *shift) log2_count = 31 + *shift;
  *multiplier = (int32_t)((((int64_t)*multiplier) << log2_count) / count);
  *shift -= log2_count;
}

void sophon_reduce_int8_multiplier(sophon_reduce_kind kind, int32_t rows, const sophon_requant* q,
                                   int32_t* multiplier, int32_t* shift) {
  *multiplier = 0;
  *shift = 0;
  if (kind == SOPHON_REDUCE_SUM || kind == SOPHON_REDUCE_MEAN) {
    *multiplier = q->multiplier[0];
    *shift = q->shift[0];
    if (kind == SOPHON_REDUCE_MEAN) mean_multiplier(rows, multiplier, shift);
  }
}

void sophon_ref_reduce_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            sophon_reduce_kind kind, const sophon_requant* q) {
  sophon_plane_walk walk;
  const int32_t rows = in->h, width = in->w;
  int32_t multiplier, shift;
  int32_t x, y;

  sophon_reduce_int8_multiplier(kind, rows, q, &multiplier, &shift);
  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const int8_t* in_data = (const int8_t*)walk.in.base;
    int8_t* out_data = (int8_t*)walk.out.base;
    for (x = 0; x < width; ++x) {
      int32_t result;
      if (kind == SOPHON_REDUCE_MAX || kind == SOPHON_REDUCE_MIN) {
        /* TFLite starts from the lowest (highest) int8 and keeps the quantization */
        int32_t acc = kind == SOPHON_REDUCE_MAX ? -128 : 127;
        for (y = 0; y < rows; ++y) {
          const int32_t v = in_data[(int64_t)y * width + x];
          if (kind == SOPHON_REDUCE_MAX ? v > acc : v < acc) acc = v;
        }
        result = acc;
      } else {
        /* rows <= 2^23 (checked): |sum| <= 128 * 2^23 and |sum - zp * rows| <=
         * 255 * 2^23 < 2^31 */
        int32_t sum = 0;
        for (y = 0; y < rows; ++y) sum += in_data[(int64_t)y * width + x];
        result = (q->rounding == SOPHON_REQUANT_FLOAT32
                      ? sophon_multiply_by_float_scale(sum - q->input_zero_point * rows,
                                                       (float)q->scale[0])
                      : sophon_mbqm_inline(sum - q->input_zero_point * rows, multiplier, shift)) +
                 q->output_zero_point;
        if (result < q->act_min) result = q->act_min;
        if (result > q->act_max) result = q->act_max;
      }
      out_data[x] = (int8_t)result;
    }
  }
}

/* tiu_reduce_int8's checks (operands: out, a = in, reduce_kind, requant: NULL
 * for MAX and MIN); the instruction table (isa/sophon_isa.c) runs them. */
sophon_status sophon_check_tiu_reduce_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o) {
  const sophon_requant* q = o->requant;
  sophon_status s;

  if ((int)o->reduce_kind < 0 || o->reduce_kind > SOPHON_REDUCE_MIN)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown reduction %d", op,
                            (int)o->reduce_kind);
  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "out", o->out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", o->a)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "out", o->out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "in", o->a, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_reduced_over_h(dev, op, o->out, o->a)) != SOPHON_OK) return s;
  if (o->reduce_kind == SOPHON_REDUCE_MAX || o->reduce_kind == SOPHON_REDUCE_MIN)
    return SOPHON_OK; /* the input's quantization is kept: nothing to requantize */
  if (q == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: a SUM or MEAN needs a requant", op);
  if (q->per_channel != 0 || q->multiplier == NULL || q->shift == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: requant must be per tensor (per_channel 0, one multiplier "
                            "and shift)",
                            op);
  if ((s = sophon_check_int8_value(dev, op, "input_zero_point", q->input_zero_point)) !=
      SOPHON_OK)
    return s;
  if ((s = sophon_check_int8_value(dev, op, "output_zero_point", q->output_zero_point)) !=
      SOPHON_OK)
    return s;
  if ((s = sophon_check_clamp(dev, op, q->act_min, q->act_max)) != SOPHON_OK) return s;
  /* QuantizeMultiplier's range; mean_multiplier needs shift >= -31 */
  if ((s = sophon_check_multiplier(dev, op, "requant", -1, q->multiplier[0], q->shift[0], -31,
                                   30)) != SOPHON_OK)
    return s;
  if (q->rounding != SOPHON_REQUANT_FIXED_POINT && q->rounding != SOPHON_REQUANT_FLOAT32)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: requant rounding %d is not %d or %d",
                            op, (int)q->rounding, SOPHON_REQUANT_FIXED_POINT,
                            SOPHON_REQUANT_FLOAT32);
  if (q->rounding == SOPHON_REQUANT_FLOAT32 &&
      (q->scale == NULL || !(q->scale[0] >= 0.0 && isfinite(q->scale[0])) ||
       (double)(float)q->scale[0] != q->scale[0]))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: requant rounding SOPHON_REQUANT_FLOAT32 needs scale[0], a finite "
                            "non-negative float32 value",
                            op);
  if (o->a->h > INT8_MAX_REDUCE_ROWS)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: %d rows to reduce exceed %d, the most an int32 sum of int8 "
                            "values less their zero point is checked for",
                            op, (int)o->a->h, INT8_MAX_REDUCE_ROWS);
  return SOPHON_OK;
}

/* ----------------------------------------------------------------- softmax
 * gemmlowp's fixed point: a Qm.n number is an int32 raw value r standing for
 * r / 2^n (m integer bits, n = 31 - m); a product of two is their
 * SaturatingRoundingDoublingHighMul (Qa * Qb -> Q(a+b)), a sum their int32 sum. */

/* SaturatingRoundingMultiplyByPOT<exponent> for exponent in [1, 30]: x * 2^exponent,
 * saturated to int32 when |x| exceeds 2^(31 - exponent) - 1. */
static int32_t saturating_shift_left(int32_t x, int32_t exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return (int32_t)((int64_t)x * ((int64_t)1 << exponent));
}

/* exp(a) for a (Q0.31) in [-1/4, 0): the Taylor expansion around -1/8 (gemmlowp's
 * exp_on_interval_between_negative_one_quarter_and_0_excl). Every term stays within
 * Q0.31: x = a + 1/8 in [-1/8, 1/8), its powers smaller still. */
static int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a) {
  const int32_t constant_term = 1895147668;     /* exp(-1/8) in Q0.31 */
  const int32_t constant_1_over_3 = 715827883;  /* 1/3 in Q0.31 */
  const int32_t x = a + (1 << 28);              /* a + 1/8 */
  const int32_t x2 = sophon_srdhm_inline(x, x);
  const int32_t x3 = sophon_srdhm_inline(x2, x);
  const int32_t x4 = sophon_srdhm_inline(x2, x2);
  const int32_t x4_over_4 = (int32_t)sophon_rounding_shift_right(x4, 2);
  const int32_t x4_over_24_plus_x3_over_6_plus_x2_over_2 = (int32_t)sophon_rounding_shift_right(
      sophon_srdhm_inline(x4_over_4 + x3, constant_1_over_3) + x2, 1);
  return constant_term +
         sophon_srdhm_inline(constant_term, x + x4_over_24_plus_x3_over_6_plus_x2_over_2);
}

/* exp(a) for a <= 0 in Q5.26, the result in Q0.31 (gemmlowp's exp_on_negative_values):
 * a = (a mod 1/4 - 1/4) - remainder; exp of the first part by the polynomial, then
 * a multiply by exp(-2^k) for each bit 2^k (k = -2 .. 4) set in the remainder. */
static int32_t exp_on_negative_values(int32_t a) {
  static const int32_t barrel_multipliers[7] = {
      1672461947, /* exp(-1/4) in Q0.31 */
      1302514674, /* exp(-1/2) */
      790015084,  /* exp(-1) */
      290630308,  /* exp(-2) */
      39332535,   /* exp(-4) */
      720401,     /* exp(-8) */
      242         /* exp(-16) */
  };
  const int32_t fractional_bits = 31 - SOFTMAX_DIFF_INTEGER_BITS; /* 26 */
  const int32_t one_quarter = 1 << (fractional_bits - 2);
  /* a & (one_quarter - 1), written without bitwise operations on a negative value */
  const int32_t a_mod_quarter = (int32_t)(a - sophon_floor_shift_right(a, fractional_bits - 2) *
                                                  one_quarter);
  const int32_t a_mod_quarter_minus_one_quarter = a_mod_quarter - one_quarter;
  const int32_t remainder = a_mod_quarter_minus_one_quarter - a; /* >= 0, a multiple of 1/4 */
  int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(
      saturating_shift_left(a_mod_quarter_minus_one_quarter, SOFTMAX_DIFF_INTEGER_BITS));
  int32_t k;
  for (k = 0; k < 7; ++k) {
    if (remainder & (1 << (fractional_bits - 2 + k)))
      result = sophon_srdhm_inline(result, barrel_multipliers[k]);
  }
  return a == 0 ? INT32_MAX : result; /* exp(0) = 1, the largest Q0.31 value */
}

/* 1 / (1 + a) for a (Q0.31) in [0, 1), in Q0.31: three Newton-Raphson steps on
 * the half denominator in Q2.29 (gemmlowp's one_over_one_plus_x_for_x_in_0_1). */
static int32_t one_over_one_plus_x_for_x_in_0_1(int32_t a) {
  const int32_t constant_48_over_17 = 1515870810;      /* Q2.29 */
  const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
  const int32_t one_q2 = 1 << 29;                      /* 1.0 in Q2.29 */
  /* RoundingHalfSum(a, 1.0): (a + b + 1) / 2, the sum being non-negative */
  const int32_t half_denominator = (int32_t)(((int64_t)a + INT32_MAX + 1) / 2);
  int32_t x = constant_48_over_17 + sophon_srdhm_inline(half_denominator, constant_neg_32_over_17);
  int32_t i;
  for (i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = sophon_srdhm_inline(half_denominator, x);
    const int32_t one_minus_half_denominator_times_x = one_q2 - half_denominator_times_x;
    /* x * (1 - d x) is Q4.27: back to Q2.29 */
    x = x + saturating_shift_left(sophon_srdhm_inline(x, one_minus_half_denominator_times_x), 2);
  }
  return saturating_shift_left(x, 1); /* x / 2 in Q1.30 read as Q0.31 */
}

/* TFLite's CalculateInputRadius(5, input_left_shift): the largest input
 * difference whose rescaled value, 31 in Q5.26, still fits. */
static int32_t softmax_diff_min(int32_t input_left_shift) {
  const int64_t max_input_rescaled =
      (((int64_t)1 << SOFTMAX_DIFF_INTEGER_BITS) - 1) << (31 - SOFTMAX_DIFF_INTEGER_BITS);
  return -(int32_t)(max_input_rescaled >> input_left_shift); /* floor: a positive value */
}

/* exp(input_diff * beta * input_scale) in Q0.31, for input_diff in [diff_min, 0]:
 * the rescale is MultiplyByQuantizedMultiplierGreaterThanOne; |input_diff| *
 * 2^input_left_shift <= 31 * 2^26 < 2^31 by the choice of diff_min. */
static int32_t softmax_exp(int32_t input_diff, int32_t input_multiplier,
                           int32_t input_left_shift) {
  const int32_t rescaled =
      sophon_srdhm_inline(input_diff * (1 << input_left_shift), input_multiplier);
  return exp_on_negative_values(rescaled);
}

void sophon_ref_softmax_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                             int32_t input_multiplier, int32_t input_left_shift) {
  sophon_plane_walk walk;
  const int32_t rows = in->h, width = in->w;
  const int32_t diff_min = softmax_diff_min(input_left_shift);
  const int32_t accumulation_integer_bits = 12; /* kAccumulationIntegerBits */
  int32_t x, y;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const int8_t* in_data = (const int8_t*)walk.in.base;
    int8_t* out_data = (int8_t*)walk.out.base;
    for (x = 0; x < width; ++x) {
      int32_t max_in_row = -128, sum_of_exps = 0;
      int32_t headroom_plus_one, num_bits_over_unit, exponent, shifted_scale;
      uint32_t shifted_sum;
      for (y = 0; y < rows; ++y) {
        const int32_t v = in_data[(int64_t)y * width + x];
        if (v > max_in_row) max_in_row = v;
      }
      /* the sum in Q12.19; the largest element adds exp(0) = 2^19, the others
       * at most as much: rows <= 4095 (checked) keeps it below 2^31 */
      for (y = 0; y < rows; ++y) {
        const int32_t input_diff = in_data[(int64_t)y * width + x] - max_in_row;
        if (input_diff >= diff_min)
          sum_of_exps += (int32_t)sophon_rounding_shift_right(
              softmax_exp(input_diff, input_multiplier, input_left_shift),
              accumulation_integer_bits);
      }
      /* GetReciprocal: sum = 2^num_bits_over_unit * (1 + shifted_sum), shifted_sum
       * in Q0.31; 1 / (1 + shifted_sum) by Newton-Raphson. sum >= 2^19, so
       * headroom_plus_one <= 12 and num_bits_over_unit >= 0. */
      headroom_plus_one = 0;
      while (((uint32_t)sum_of_exps << headroom_plus_one) < 0x80000000u) ++headroom_plus_one;
      num_bits_over_unit = accumulation_integer_bits - headroom_plus_one;
      shifted_sum = ((uint32_t)sum_of_exps << headroom_plus_one) - 0x80000000u;
      shifted_scale = one_over_one_plus_x_for_x_in_0_1((int32_t)shifted_sum);
      /* to 8 output bits: exp / sum in Q0.31, divided by 2^(num_bits_over_unit + 23).
       * An exponent above 31 (more than 256 rows near the maximum) is undefined in
       * TFLite; here it is the rounded quotient, 0 or 1. */
      exponent = num_bits_over_unit + 31 - 8;
      for (y = 0; y < rows; ++y) {
        const int32_t input_diff = in_data[(int64_t)y * width + x] - max_in_row;
        int32_t result = -128;
        if (input_diff >= diff_min) {
          const int32_t exp_in_0 = softmax_exp(input_diff, input_multiplier, input_left_shift);
          const int32_t unsat_output = (int32_t)sophon_rounding_shift_right(
              sophon_srdhm_inline(shifted_scale, exp_in_0), exponent);
          result = unsat_output - 128;
          if (result > 127) result = 127;
          if (result < -128) result = -128;
        }
        out_data[(int64_t)y * width + x] = (int8_t)result;
      }
    }
  }
}

/* Both int8 softmaxes: int8 locals of one shape (their memory: check_softmax_memory). */
static sophon_status check_softmax_operands(sophon_device* dev, const char* op,
                                            const sophon_local* out, const sophon_local* in) {
  sophon_status s;
  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "in", in, SOPHON_I8)) != SOPHON_OK) return s;
  if (out->n != in->n || out->c != in->c || out->h != in->h || out->w != in->w)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out shape (%d,%d,%d,%d) is not in's (%d,%d,%d,%d)", op,
                            (int)out->n, (int)out->c, (int)out->h, (int)out->w, (int)in->n,
                            (int)in->c, (int)in->h, (int)in->w);
  return SOPHON_OK;
}

/* In bounds and apart, checked after each softmax's own parameters. */
static sophon_status check_softmax_memory(sophon_device* dev, const char* op,
                                          const sophon_local* out, const sophon_local* in) {
  sophon_status s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  return sophon_check_disjoint(dev, op, out, "in", in);
}

/* ------------------------------------------------- softmax, onnxruntime */

/* QLinearSoftmax's table of exps for `rows` values (sophon_quant.h): entry k is the
 * exp of (k - 255) input steps, lifted by b so that a sum of `rows` stays finite. */
static void qlinear_softmax_table(float input_scale, int32_t rows, float table[256]) {
  const double lift = log((double)(FLT_MAX / (float)rows)) - 5.0;
  const double shift = (lift > 0.0 ? lift : 0.0) / (double)input_scale;
  int32_t k;
  for (k = 0; k < 256; ++k)
    table[k] = (float)exp(((double)k - 255.0 + shift) * (double)input_scale);
}

void sophon_ref_softmax_int8_onnxruntime(sophon_device* dev, const sophon_local* out,
                                         const sophon_local* in, float input_scale,
                                         float output_scale, int32_t output_zero_point) {
  sophon_plane_walk walk;
  const int32_t rows = in->h, width = in->w;
  const float steps = floorf(1.0f / output_scale); /* output steps in 1 */
  float table[256];
  int32_t x, y;

  qlinear_softmax_table(input_scale, rows, table);
  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const int8_t* in_data = (const int8_t*)walk.in.base;
    int8_t* out_data = (int8_t*)walk.out.base;
    for (x = 0; x < width; ++x) {
      int32_t max_in_column = -128;
      float sum = 0.0f;
      for (y = 0; y < rows; ++y) {
        const int32_t v = in_data[(int64_t)y * width + x];
        if (v > max_in_column) max_in_column = v;
      }
      for (y = 0; y < rows; ++y)
        sum += table[in_data[(int64_t)y * width + x] - max_in_column + 255];
      for (y = 0; y < rows; ++y) {
        const float e = table[in_data[(int64_t)y * width + x] - max_in_column + 255];
        const int32_t q = (int32_t)nearbyintf(e * steps / sum) + output_zero_point;
        out_data[(int64_t)y * width + x] = (int8_t)(q > 127 ? 127 : q); /* q >= zero point */
      }
    }
  }
}

/* tiu_softmax_int8_onnxruntime's checks (operands: out, a = in, the softmax_*
 * quantization). */
sophon_status sophon_check_tiu_softmax_int8_onnxruntime(sophon_device* dev, const char* op,
                                                        const sophon_operands* o) {
  sophon_status s;
  if ((s = check_softmax_operands(dev, op, o->out, o->a)) != SOPHON_OK) return s;
  if ((s = sophon_check_onnxruntime_quantization(dev, op, o->softmax_input_scale, 0,
                                                 o->softmax_output_scale,
                                                 o->softmax_output_zero_point)) != SOPHON_OK)
    return s;
  if (!(o->softmax_output_scale <= 1.0f))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: output scale %g above 1 leaves no output step in 1", op,
                            (double)o->softmax_output_scale);
  return check_softmax_memory(dev, op, o->out, o->a);
}

/* tiu_softmax_int8's checks (operands: out, a = in, softmax_multiplier,
 * softmax_left_shift); the instruction table (isa/sophon_isa.c) runs them. */
sophon_status sophon_check_tiu_softmax_int8(sophon_device* dev, const char* op,
                                            const sophon_operands* o) {
  sophon_status s;
  if ((s = check_softmax_operands(dev, op, o->out, o->a)) != SOPHON_OK) return s;
  /* QuantizeMultiplierGreaterThanOne of beta * input_scale * 2^26: a shift in [0, 30] */
  if ((s = sophon_check_multiplier(dev, op, "input", -1, o->softmax_multiplier,
                                   o->softmax_left_shift, 0, 30)) != SOPHON_OK)
    return s;
  if (o->a->h > INT8_MAX_SOFTMAX_ROWS)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: softmax over %d values exceeds %d, the most whose int32 sum "
                            "of exps (Q12.19) cannot overflow",
                            op, (int)o->a->h, INT8_MAX_SOFTMAX_ROWS);
  return check_softmax_memory(dev, op, o->out, o->a);
}
