/*
 * sophon_tiu_eltwise_int8.c - the TIU's INT8 element-wise instructions
 * (sophon_quant.h), bit-exact with TFLite's kernels:
 *
 *   lut_int8     out = table[in]: every int8 unary op (LOGISTIC, TANH,
 *                HARD_SWISH, LEAKY_RELU, ELU, GELU, RELU / RELU6 / RELU_N1_TO_1,
 *                RSQRT, NEG, QUANTIZE int8 -> int8) is a
 *                function of 256 inputs, so one table lookup runs them all;
 *   binary_int8  MUL, MAXIMUM, MINIMUM, PRELU, SQUARED_DIFFERENCE with broadcast (SUB is ADD with
 *                input2's multiplier negated, as TFLite's sub.cc does: add_int8).
 *
 * sophon_int8_lut_build states how each table is computed, step by step as
 * TFLite computes it (activations.cc, gelu.cc, quantize.cc, elementwise.cc: Prepare;
 * reference/hard_swish.h, leaky_relu.h, requantize.h: Eval). The compiler calls
 * it at compile time (tvm_sophon/quant_eltwise.py, through ctypes), so the table
 * arithmetic exists once, here.
 */
#include <math.h>
#include <string.h>

#include "reference/sophon_reference.h"
#include "sophon_quant.h"

/* ------------------------------------------------------ table arithmetic */

/* TFLite's PopulateLookupTable / LUTPopulate (float, as TFLite computes it):
 *   dequantized = input_scale * (value - input_zero_point)       (float)
 *   rescaled    = round(transform(dequantized) * (1 / output_scale))  (float)
 *   quantized   = (int32)(rescaled + output_zero_point), clamped to int8. */
static float lut_transform(const sophon_int8_unary* u, float x) {
  switch (u->kind) {
    case SOPHON_LUT_LOGISTIC:
      return 1.0f / (1.0f + expf(-x));
    case SOPHON_LUT_TANH:
      return tanhf(x);
    case SOPHON_LUT_ELU:
      return x < 0.0f ? u->alpha * expm1f(x) : x;
    case SOPHON_LUT_GELU:
      /* gelu.cc: 0.5f * x * (1.0f + erf(x * M_SQRT1_2)); M_SQRT1_2 is a double,
       * so the erf and the products after it are double, rounded to float */
      return (float)(0.5f * x * (1.0 + erf(x * 0.70710678118654752440)));
    case SOPHON_LUT_GELU_TANH: {
      /* gelu.cc's approximation: sqrt(2 / pi) as a float constant */
      const float sqrt_2_over_pi = (float)(1.12837916709551257390 * 0.70710678118654752440);
      return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * (x + 0.044715f * x * x * x)));
    }
    default:
      return 0.0f;
  }
}

static int8_t clamp_int8(int32_t v) { return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v)); }

static int8_t lut_float(const sophon_int8_unary* u, int32_t value) {
  const float inverse_scale = 1.0f / u->output_scale;
  const float dequantized = u->input_scale * (float)(value - u->input_zero_point);
  const float rescaled = roundf(lut_transform(u, dequantized) * inverse_scale);
  return clamp_int8((int32_t)(rescaled + (float)u->output_zero_point));
}

/* The int16 fixed-point helpers of reference/hard_swish.h (gemmlowp's). */
static int16_t srdhm_int16(int16_t a, int16_t b) {
  const int32_t ab = (int32_t)a * (int32_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 14) : 1 - (1 << 14);
  if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
  return (int16_t)((ab + nudge) / (1 << 15)); /* C99 division truncates, as gemmlowp's */
}
static int16_t sdhm_int16(int16_t a, int16_t b) { /* SaturatingDoublingHighMul: no nudge */
  if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
  return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}
static int16_t saturating_left_shift_int16(int16_t v, int32_t amount) {
  const int64_t r = (int64_t)v * ((int64_t)1 << amount);
  return (int16_t)(r > INT16_MAX ? INT16_MAX : (r < INT16_MIN ? INT16_MIN : r));
}

/* TFLite's DownScaleInt32ToInt16Multiplier (activations.cc). */
static int16_t downscale_multiplier(int32_t m) {
  if (m >= INT32_MAX - (1 << 15)) return INT16_MAX;
  return (int16_t)((m + (1 << 15)) / (1 << 16)); /* m >= 0 */
}

/* HardSwishPrepare's parameters, in float as TFLite computes them. */
typedef struct {
  int16_t output_multiplier, reluish_multiplier;
  int32_t output_exponent, reluish_exponent;
} hard_swish_params;

static hard_swish_params hard_swish_prepare(const sophon_int8_unary* u) {
  hard_swish_params p;
  const float hires_input_scale = (1.0f / 128.0f) * u->input_scale;
  const float reluish_scale = 3.0f / 32768.0f;
  const float output_multiplier = hires_input_scale / u->output_scale;
  const float reluish_multiplier = hires_input_scale / reluish_scale;
  int32_t m;
  sophon_quantize_multiplier((double)output_multiplier, &m, &p.output_exponent);
  p.output_multiplier = downscale_multiplier(m);
  sophon_quantize_multiplier((double)reluish_multiplier, &m, &p.reluish_exponent);
  p.reluish_multiplier = downscale_multiplier(m);
  return p;
}

/* reference_ops::HardSwish for one int8 value. */
static int8_t hard_swish_value(const sophon_int8_unary* u, const hard_swish_params* p,
                               int32_t value) {
  const int16_t input = (int16_t)(value - u->input_zero_point);
  /* the input on a scale 128 times finer: |.| <= 255 * 128 fits int16 */
  const int16_t hires = (int16_t)(input * (1 << 7));
  /* the input on the output scale, before the output shift */
  const int16_t preshift_output = srdhm_int16(hires, p->output_multiplier);
  /* "reluish": the input rescaled so that 3.0 is 32768, saturating; the left
   * shift is applied one bit short before the multiply and the last bit after */
  int16_t reluish = hires;
  int16_t preshift_result;
  int32_t out;
  if (p->reluish_exponent > 0)
    reluish = saturating_left_shift_int16(reluish, p->reluish_exponent - 1);
  reluish = srdhm_int16(reluish, p->reluish_multiplier);
  if (p->reluish_exponent > 0) reluish = saturating_left_shift_int16(reluish, 1);
  if (p->reluish_exponent < 0)
    reluish = (int16_t)sophon_rounding_divide_by_pot(reluish, -p->reluish_exponent);
  /* [-1, 1] in Q15 to [0, 1]: (reluish + 2^15) / 2, in [0, 32767] */
  reluish = (int16_t)(((int32_t)reluish + (1 << 15)) >> 1);
  preshift_result = sdhm_int16(reluish, preshift_output);
  out = sophon_rounding_divide_by_pot(preshift_result, -p->output_exponent) +
        u->output_zero_point;
  return clamp_int8(out);
}

/* reference_ops::QuantizeLeakyRelu (identity and alpha multipliers from
 * LeakyReluPrepare, float products) and reference_ops::Requantize (quantize.cc:
 * the scale ratio in double) for one int8 value. */
static int8_t rescale_value(int32_t value, int32_t zero_point, int32_t multiplier, int32_t shift,
                            int32_t output_zero_point) {
  return clamp_int8(sophon_multiply_by_quantized_multiplier(value - zero_point, multiplier, shift) +
                    output_zero_point);
}

/* ----------------------------------------------------------------- RSQRT */

static int32_t leading_zeros_u32(uint32_t v) {
  int32_t n = 0;
  if (v == 0) return 32;
  while (!(v & 0x80000000u)) {
    v <<= 1;
    ++n;
  }
  return n;
}

/* gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent: v * 2^exponent,
 * saturated to int32. */
static int32_t saturating_shift_left(int64_t v, int32_t exponent) {
  const int64_t r = v * ((int64_t)1 << exponent);
  return (int32_t)(r > INT32_MAX ? INT32_MAX : (r < INT32_MIN ? INT32_MIN : r));
}

/* TFLite's GetInvSqrtQuantizedMultiplierExp(input, kReverseShift = -1): 1 / sqrt(input)
 * for an integer input > 1 as multiplier * 2^(shift - 31), computed as gemmlowp does.
 *   - input is brought into [2^27, 2^29) by shifts of two bits (each one halves the
 *     root: right_shift counts them, starting from 11);
 *   - read as a Q3.28 number y = input / 2^29 in [0.25, 1) (input >> 1), five Newton
 *     steps x <- 1.5 x - (y / 2) x^3 from x = 1, every product a
 *     SaturatingRoundingDoublingHighMul and every Rescale<3> a saturating left shift;
 *   - x * sqrt(2) / 2 (1518500250 in Q0.31); a negative right shift is applied to x.
 * With input <= 255 (an int8 difference), the values stay well inside int32. */
static void inv_sqrt_multiplier_exp(int32_t input, int32_t* multiplier, int32_t* shift) {
  const int32_t half_three = (1 << 28) + (1 << 27); /* 1.5 in Q3.28 */
  int32_t right_shift = 11, pairs, half_input, x = 1 << 28, step;
  if (input <= 1) { /* TFLite: 0 and 1 both give the largest multiplier */
    *multiplier = INT32_MAX;
    *shift = 0;
    return;
  }
  while (input >= (1 << 29)) {
    input /= 4;
    ++right_shift;
  }
  pairs = (leading_zeros_u32((uint32_t)input) - 1) / 2 - 1;
  right_shift -= pairs;
  input *= (int32_t)1 << (2 * pairs);
  half_input = sophon_rounding_divide_by_pot(input / 2, 1);
  for (step = 0; step < 5; ++step) {
    const int32_t cube = saturating_shift_left(
        sophon_srdhm_inline(sophon_srdhm_inline(x, x), x), 6); /* Q9 -> Q3 */
    const int64_t next = (int64_t)sophon_srdhm_inline(half_three, x) -
                         (int64_t)sophon_srdhm_inline(half_input, cube); /* Q6 */
    x = saturating_shift_left(next, 3);                                 /* Q6 -> Q3 */
  }
  x = sophon_srdhm_inline(x, 1518500250);
  if (right_shift < 0) {
    x *= (int32_t)1 << -right_shift;
    right_shift = 0;
  }
  *multiplier = x;
  *shift = -right_shift;
}

/* elementwise.cc RsqrtEvalQuantizedInt8 for one int8 value: v = value - input_zero_point;
 * v == 0 gives 127 ("any value close to 0 represents the max output value"); otherwise
 *   data = MBQM(1, inv_sqrt, inv_shift + 20)
 *   out  = clamp(output_zero_point + MBQM(data, multiplier, shift - 20)).
 * TFLite's Invoke fails on v < 0 ("Rsqrt is only defined for positive values"); the
 * table holds 127 for those inputs too. */
static int8_t rsqrt_value(const sophon_int8_unary* u, int32_t multiplier, int32_t shift,
                          int32_t value) {
  const int32_t v = value - u->input_zero_point;
  int32_t inv_sqrt, inv_shift, data;
  if (v <= 0) return 127;
  inv_sqrt_multiplier_exp(v, &inv_sqrt, &inv_shift);
  data = sophon_multiply_by_quantized_multiplier(1, inv_sqrt, inv_shift + 20);
  return clamp_int8(sophon_multiply_by_quantized_multiplier(data, multiplier, shift - 20) +
                    u->output_zero_point);
}

/* DEQUANTIZE -> float NEG -> QUANTIZE for one int8 value (reference Dequantize:
 * float(double(input_scale) * (value - zero point)); AffineQuantize: roundf of the
 * float quotient by the float scale, plus the zero point, clamped in double). */
static int8_t neg_value(const sophon_int8_unary* u, int32_t value) {
  const float x = (float)((double)u->input_scale * (double)(value - u->input_zero_point));
  const double q = (double)roundf(-x / u->output_scale) + (double)u->output_zero_point;
  return (int8_t)(q < -128.0 ? -128 : (q > 127.0 ? 127 : (int32_t)q));
}

sophon_status sophon_int8_lut_build(const sophon_int8_unary* u, int8_t table[256]) {
  int32_t value;
  if (u == NULL || table == NULL) return SOPHON_ERR_ARGUMENT;
  if (!(u->input_scale > 0.0f) || !(u->output_scale > 0.0f) || isinf(u->input_scale) ||
      isinf(u->output_scale))
    return SOPHON_ERR_ARGUMENT;
  if (u->input_zero_point < -128 || u->input_zero_point > 127 || u->output_zero_point < -128 ||
      u->output_zero_point > 127)
    return SOPHON_ERR_ARGUMENT;

  switch (u->kind) {
    case SOPHON_LUT_LOGISTIC:
    case SOPHON_LUT_TANH:
    case SOPHON_LUT_ELU:
    case SOPHON_LUT_GELU:
    case SOPHON_LUT_GELU_TANH:
      for (value = -128; value <= 127; ++value) table[(uint8_t)value] = lut_float(u, value);
      return SOPHON_OK;
    case SOPHON_LUT_HARD_SWISH: {
      const hard_swish_params p = hard_swish_prepare(u);
      /* TFLite refuses an output multiplier above 1 (the output shift is a right
       * shift); an int16 rounding shift by 16 or more is not defined there */
      if (p.output_exponent > 0 || p.output_exponent < -15 || p.reluish_exponent < -15)
        return SOPHON_ERR_UNSUPPORTED;
      for (value = -128; value <= 127; ++value)
        table[(uint8_t)value] = hard_swish_value(u, &p, value);
      return SOPHON_OK;
    }
    case SOPHON_LUT_LEAKY_RELU: {
      int32_t alpha_m, alpha_s, identity_m, identity_s;
      sophon_quantize_multiplier((double)(u->input_scale * u->alpha / u->output_scale), &alpha_m,
                                 &alpha_s);
      sophon_quantize_multiplier((double)(u->input_scale / u->output_scale), &identity_m,
                                 &identity_s);
      for (value = -128; value <= 127; ++value) {
        const int negative = value - u->input_zero_point < 0;
        table[(uint8_t)value] =
            rescale_value(value, u->input_zero_point, negative ? alpha_m : identity_m,
                          negative ? alpha_s : identity_s, u->output_zero_point);
      }
      return SOPHON_OK;
    }
    case SOPHON_LUT_CONCAT_RESCALE: {
      /* ConcatenationWithScaling, for an input quantized unlike the output:
       *   scale = input_scale * (1 / output_scale), bias = -input_zero_point * scale (float)
       *   out = clamp(round(value * scale + bias) + output_zero_point), round half away */
      const float scale = u->input_scale * (1.0f / u->output_scale);
      const float bias = -(float)u->input_zero_point * scale;
      for (value = -128; value <= 127; ++value) {
        const float rescaled = (float)value * scale;
        table[(uint8_t)value] =
            clamp_int8((int32_t)roundf(rescaled + bias) + u->output_zero_point);
      }
      return SOPHON_OK;
    }
    case SOPHON_LUT_RELU: {
      /* activations.cc ReluPrepare: the multiplier of input_scale / output_scale
       * (a float quotient widened to double); QuantizedReluX: the bounds
       *   qmin = max(-128, output_zero_point + (int32)roundf(act_min / output_scale))
       *   qmax = act_max infinite ? 127
       *        : min(127, output_zero_point + (int32)roundf(act_max / output_scale));
       * reference_ops::ReluX: out = clamp(output_zero_point
       *   + MultiplyByQuantizedMultiplier(value - input_zero_point, m, s), qmin, qmax). */
      int32_t m, s, qmin, qmax;
      if (isnan(u->act_min) || isnan(u->act_max) || isinf(u->act_min) || u->act_min > u->act_max)
        return SOPHON_ERR_ARGUMENT;
      sophon_quantize_multiplier((double)(u->input_scale / u->output_scale), &m, &s);
      qmin = u->output_zero_point + (int32_t)roundf(u->act_min / u->output_scale);
      if (qmin < -128) qmin = -128;
      qmax = 127;
      if (!isinf(u->act_max)) {
        const int32_t bound = u->output_zero_point + (int32_t)roundf(u->act_max / u->output_scale);
        if (bound < qmax) qmax = bound;
      }
      for (value = -128; value <= 127; ++value) {
        int32_t out = u->output_zero_point +
                      sophon_multiply_by_quantized_multiplier(value - u->input_zero_point, m, s);
        out = out < qmin ? qmin : (out > qmax ? qmax : out);
        table[(uint8_t)value] = (int8_t)out;
      }
      return SOPHON_OK;
    }
    case SOPHON_LUT_RSQRT: {
      /* SetRsqrtOutputMultiplier: std::sqrt of the float scale is a float, its
       * product with output_scale too; 1. / that product in double */
      int32_t m, s;
      sophon_quantize_multiplier(1.0 / (double)(sqrtf(u->input_scale) * u->output_scale), &m, &s);
      for (value = -128; value <= 127; ++value) table[(uint8_t)value] = rsqrt_value(u, m, s, value);
      return SOPHON_OK;
    }
    case SOPHON_LUT_NEG:
      for (value = -128; value <= 127; ++value) table[(uint8_t)value] = neg_value(u, value);
      return SOPHON_OK;
    case SOPHON_LUT_REQUANTIZE: {
      int32_t m, s;
      sophon_quantize_multiplier((double)u->input_scale / (double)u->output_scale, &m, &s);
      for (value = -128; value <= 127; ++value)
        table[(uint8_t)value] = rescale_value(value, u->input_zero_point, m, s,
                                              u->output_zero_point);
      return SOPHON_OK;
    }
  }
  return SOPHON_ERR_ARGUMENT;
}

/* ---------------------------------------------------------------- lut_int8 */

void sophon_ref_lut_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                         const sophon_lut_int8_params* p) {
  sophon_plane_walk walk;
  const int64_t plane = (int64_t)out->h * out->w;
  int64_t i;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const int8_t* in_data = (const int8_t*)walk.in.base;
    int8_t* out_data = (int8_t*)walk.out.base;
    /* the table is indexed by the int8 value's byte (two's complement) */
    for (i = 0; i < plane; ++i) out_data[i] = p->table[(uint8_t)in_data[i]];
  }
}

/* tiu_lut_int8's checks (operands: out, a = in, lut); in place is allowed. */
sophon_status sophon_check_tiu_lut_int8(sophon_device* dev, const char* op,
                                        const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  sophon_status s;

  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if (o->lut == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: table is NULL", op);
  if ((s = sophon_check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "in", in, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_shape(dev, op, "out", out, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  return sophon_check_disjoint_or_same(dev, op, out, "in", in);
}

/* ------------------------------------------------------------- binary_int8 */

/* ADD_QLINEAR and ADD_QLINEAR_BROADCAST (sophon_quant.h): MLAS's QLinearAdd, its fused
 * multiply-adds where MLAS has them, the broadcast operand's product rounded on its own. */
static int32_t qlinear_add(int32_t x, int32_t y, const sophon_binary_int8_params* p) {
  const int32_t o = p->value_offset;
  const float low = (float)(p->act_min + o), high = (float)(p->act_max + o);
  const float partial = p->op == SOPHON_BINARY_INT8_ADD_QLINEAR
                            ? fmaf((float)(y + o), p->input2_scale, p->output_scale)
                            : p->output_scale + (float)(y + o) * p->input2_scale;
  float v = nearbyintf(fmaf((float)(x + o), p->input1_scale, partial));
  v = v < low ? low : (v > high ? high : v);
  return (int32_t)v - o;
}

/* ADD_FLOAT, SUB_FLOAT, MUL_FLOAT (sophon_quant.h): onnxruntime's DequantizeLinear, the
 * float32 op, QuantizeLinear (the quotient rounded to nearest, halves to even, then
 * clamped to the output's int8 range less its zero point). No fused multiply-add: the
 * runtime builds as ISO C, where GCC and Clang keep each product rounded. ADD_QLINEAR and
 * ADD_QLINEAR_BROADCAST go to qlinear_add. */
int32_t sophon_binary_int8_float_op(int32_t x, int32_t y, const sophon_binary_int8_params* p) {
  const float fx = (float)(x - p->input1_zero_point) * p->input1_scale;
  const float fy = (float)(y - p->input2_zero_point) * p->input2_scale;
  const float low = (float)(p->act_min - p->output_zero_point);
  const float high = (float)(p->act_max - p->output_zero_point);
  float value, scaled;
  if (p->op == SOPHON_BINARY_INT8_ADD_QLINEAR || p->op == SOPHON_BINARY_INT8_ADD_QLINEAR_BROADCAST)
    return qlinear_add(x, y, p);
  value = p->op == SOPHON_BINARY_INT8_ADD_FLOAT   ? fx + fy
          : p->op == SOPHON_BINARY_INT8_SUB_FLOAT ? fx - fy
                                                  : fx * fy;
  scaled = nearbyintf(value / p->output_scale);
  scaled = scaled < low ? low : (scaled > high ? high : scaled);
  return (int32_t)scaled + p->output_zero_point;
}

/* One element pair. Bounds (zero points in [-128, 127], checked): x - zp and
 * y - zp are in [-255, 255], so their product is within 65025 in magnitude, far
 * inside int32; MultiplyByQuantizedMultiplier saturates its left shift. */
static int8_t binary_int8_element(int32_t x, int32_t y, const void* params) {
  const sophon_binary_int8_params* p = (const sophon_binary_int8_params*)params;
  int32_t result;
  switch (p->op) {
    case SOPHON_BINARY_INT8_MUL: /* reference_integer_ops::MulElementwise */
      result = sophon_multiply_by_quantized_multiplier(
                   (x - p->input1_zero_point) * (y - p->input2_zero_point), p->multiplier1,
                   p->shift1) +
               p->output_zero_point;
      break;
    case SOPHON_BINARY_INT8_MUL_FLOAT32: /* onnxruntime's QLinearMul: one float32 rounding */
      result = sophon_multiply_by_float_scale(
                   (x - p->input1_zero_point) * (y - p->input2_zero_point), p->scale) +
               p->output_zero_point;
      break;
    case SOPHON_BINARY_INT8_ADD_FLOAT:
    case SOPHON_BINARY_INT8_SUB_FLOAT:
    case SOPHON_BINARY_INT8_MUL_FLOAT: /* onnxruntime's float op between DQ and Q */
    case SOPHON_BINARY_INT8_ADD_QLINEAR:
    case SOPHON_BINARY_INT8_ADD_QLINEAR_BROADCAST: /* its QLinearAdd */
      result = sophon_binary_int8_float_op(x, y, p);
      break;
    case SOPHON_BINARY_INT8_MAX: /* maximum_minimum.cc: the raw values (one quantization) */
      result = x > y ? x : y;
      break;
    case SOPHON_BINARY_INT8_MIN:
      result = x < y ? x : y;
      break;
    case SOPHON_BINARY_INT8_PRELU: { /* reference_ops::BroadcastPrelu4DSlow */
      const int32_t input = x - p->input1_zero_point;
      result = (input >= 0 ? sophon_multiply_by_quantized_multiplier(input, p->multiplier1,
                                                                     p->shift1)
                           : sophon_multiply_by_quantized_multiplier(
                                 input * (y - p->input2_zero_point), p->multiplier2, p->shift2)) +
               p->output_zero_point;
      break;
    }
    case SOPHON_BINARY_INT8_SQUARED_DIFFERENCE: { /* squared_difference.cc, left shift 7 */
      const int32_t d =
          sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
              (x - p->input1_zero_point) * (1 << 7), p->multiplier1, p->shift1) -
          sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
              (y - p->input2_zero_point) * (1 << 7), p->multiplier2, p->shift2);
      /* |d| <= 32640 with TFLite's input multipliers (at most 1/2), so d * d fits
       * int32 as TFLite says; other multipliers saturate where TFLite would overflow */
      const int64_t square = (int64_t)d * d;
      result = sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
                   square > INT32_MAX ? INT32_MAX : (int32_t)square, p->multiplier3, p->shift3) +
               p->output_zero_point;
      break;
    }
    default:
      result = 0;
  }
  return (int8_t)(result < p->act_min ? p->act_min : (result > p->act_max ? p->act_max : result));
}

void sophon_ref_binary_int8(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                            const sophon_local* b, const sophon_binary_int8_params* p) {
  sophon_ref_int8_broadcast(dev, out, a, b, binary_int8_element, p);
}

void sophon_ref_int8_broadcast(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                               const sophon_local* b, sophon_int8_pair_fn fn, const void* params) {
  sophon_view out_v, a_v, b_v;
  /* element steps along h and w, 0 on a broadcast dim */
  const int64_t a_h_step = a->h == 1 ? 0 : a->w, a_w_step = a->w == 1 ? 0 : 1;
  const int64_t b_h_step = b->h == 1 ? 0 : b->w, b_w_step = b->w == 1 ? 0 : 1;
  int32_t batch, channel, y, x;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&a_v, dev, a);
  sophon_view_init(&b_v, dev, b);
  for (batch = 0; batch < out->n; ++batch) {
    for (channel = 0; channel < out->c; ++channel) {
      /* a broadcast channel is channel 0, in lane 0 */
      const int8_t* a_data = sophon_view_i8(&a_v, a->n == 1 ? 0 : batch, a->c == 1 ? 0 : channel);
      const int8_t* b_data = sophon_view_i8(&b_v, b->n == 1 ? 0 : batch, b->c == 1 ? 0 : channel);
      int8_t* out_data = sophon_view_i8(&out_v, batch, channel);
      for (y = 0; y < out->h; ++y) {
        const int8_t* a_row = a_data + y * a_h_step;
        const int8_t* b_row = b_data + y * b_h_step;
        int8_t* out_row = out_data + (int64_t)y * out->w;
        /* in place: both inputs of element (y, x) are read before it is written */
        for (x = 0; x < out->w; ++x) out_row[x] = fn(a_row[x * a_w_step], b_row[x * b_w_step], params);
      }
    }
  }
}

/* tiu_binary_int8's checks (operands: out, a, b, binary_int8). */
sophon_status sophon_check_tiu_binary_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o) {
  const sophon_binary_int8_params* p = o->binary_int8;
  int32_t shift_max;
  sophon_status s;

  if ((s = sophon_check_int8_broadcast_operands(dev, op, o)) != SOPHON_OK) return s;
  if (p == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params are NULL", op);
  if (p->op < SOPHON_BINARY_INT8_MUL || p->op > SOPHON_BINARY_INT8_ADD_QLINEAR_BROADCAST)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown op %d", op, (int)p->op);
  if ((s = sophon_check_int8_value(dev, op, "input1_zero_point", p->input1_zero_point)) !=
      SOPHON_OK)
    return s;
  if ((s = sophon_check_int8_value(dev, op, "input2_zero_point", p->input2_zero_point)) !=
      SOPHON_OK)
    return s;
  if ((s = sophon_check_int8_value(dev, op, "output_zero_point", p->output_zero_point)) !=
      SOPHON_OK)
    return s;
  /* MultiplyByQuantizedMultiplier: QuantizeMultiplier's shifts, in [-31, 30];
   * SQUARED_DIFFERENCE's MultiplyByQuantizedMultiplierSmallerThanOneExp: [-31, 0] */
  shift_max = p->op == SOPHON_BINARY_INT8_SQUARED_DIFFERENCE ? 0 : 30;
  if ((s = sophon_check_multiplier(dev, op, "1", -1, p->multiplier1, p->shift1, -31,
                                   shift_max)) != SOPHON_OK)
    return s;
  if ((s = sophon_check_multiplier(dev, op, "2", -1, p->multiplier2, p->shift2, -31,
                                   shift_max)) != SOPHON_OK)
    return s;
  if (p->op == SOPHON_BINARY_INT8_SQUARED_DIFFERENCE &&
      (s = sophon_check_multiplier(dev, op, "3", -1, p->multiplier3, p->shift3, -31, 0)) !=
          SOPHON_OK)
    return s;
  if (p->op == SOPHON_BINARY_INT8_MUL_FLOAT32 && !(p->scale >= 0.0f && isfinite(p->scale)))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: MUL_FLOAT32 scale %g is not finite and "
                            "non-negative", op, (double)p->scale);
  if ((p->op == SOPHON_BINARY_INT8_ADD_QLINEAR || p->op == SOPHON_BINARY_INT8_ADD_QLINEAR_BROADCAST) &&
      ((p->value_offset != 0 && p->value_offset != 128) || !isfinite(p->input1_scale) ||
       !isfinite(p->input2_scale) || !isfinite(p->output_scale)))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: QLinearAdd value offset %d (0 or 128) or constants %g, %g, %g not "
                            "finite", op, (int)p->value_offset, (double)p->input1_scale,
                            (double)p->input2_scale, (double)p->output_scale);
  if ((p->op == SOPHON_BINARY_INT8_ADD_FLOAT || p->op == SOPHON_BINARY_INT8_SUB_FLOAT ||
       p->op == SOPHON_BINARY_INT8_MUL_FLOAT) &&
      !(p->input1_scale > 0.0f && isfinite(p->input1_scale) && p->input2_scale > 0.0f &&
        isfinite(p->input2_scale) && p->output_scale > 0.0f && isfinite(p->output_scale)))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: float op scales %g, %g -> %g must be positive and finite", op,
                            (double)p->input1_scale, (double)p->input2_scale,
                            (double)p->output_scale);
  return sophon_check_clamp(dev, op, p->act_min, p->act_max);
}
