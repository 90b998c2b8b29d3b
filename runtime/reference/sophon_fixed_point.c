/*
 * sophon_fixed_point.c - the fixed-point arithmetic of the INT8 instructions
 * (sophon_quant.h, sophon_reference.h), stated as TFLite states it (quantization_util.cc QuantizeMultiplier; common.h
 * SaturatingRoundingDoublingHighMul, RoundingDivideByPOT,
 * MultiplyByQuantizedMultiplier, MultiplyByQuantizedMultiplierSmallerThanOneExp,
 * the default "double rounding" build).
 *
 * Everything here is total: no input is undefined behaviour. Where TFLite's
 * int32 arithmetic would overflow (its behaviour is then undefined), we say what
 * we do instead:
 *   - MultiplyByQuantizedMultiplier's x * 2^left_shift saturates to int32
 *     (TFLite: signed overflow). The instructions' checks keep left_shift <= 30.
 *   - QuantizeMultiplier for real >= 2^30 (a shift above 30) saturates to
 *     (2^31 - 1, 30), as TFLite's single-rounding build does; NaN gives (0, 0)
 *     and +-infinity (+-(2^31 - 1), 30).
 * Right shifts of negative numbers are written as floor divisions, so nothing
 * depends on the implementation-defined >> of a negative signed value.
 */
#include <math.h>

#include "reference/sophon_reference.h"
#include "sophon_quant.h"

/* floor(x / 2^exponent) for exponent in [0, 62], |x| < 2^62. */
int32_t sophon_saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  return sophon_srdhm_inline(a, b);
}

int32_t sophon_rounding_divide_by_pot(int32_t x, int32_t exponent) {
  return (int32_t)sophon_rounding_shift_right(x, exponent);
}

int32_t sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(int32_t x,
                                                                     int32_t multiplier,
                                                                     int32_t shift) {
  return sophon_rounding_divide_by_pot(
      sophon_saturating_rounding_doubling_high_mul(x, multiplier), -shift);
}

void sophon_quantize_multiplier(double real, int32_t* multiplier, int32_t* shift) {
  int exponent = 0;
  double fraction;
  int64_t q_fixed;
  if (multiplier == NULL || shift == NULL) return;
  if (real == 0.0 || isnan(real)) {
    *multiplier = 0;
    *shift = 0;
    return;
  }
  if (isinf(real)) {
    *multiplier = real > 0.0 ? INT32_MAX : -INT32_MAX;
    *shift = 30;
    return;
  }
  /* real = fraction * 2^exponent, |fraction| in [0.5, 1); the multiplier is the
   * fraction in Q31, rounded half away from zero (TfLiteRound). */
  fraction = frexp(real, &exponent);
  q_fixed = (int64_t)round(fraction * 2147483648.0);
  if (q_fixed == ((int64_t)1 << 31)) { /* fraction rounded up to 1.0 */
    q_fixed /= 2;
    ++exponent;
  }
  if (exponent < -31) { /* every bit would be shifted out: flush to zero */
    exponent = 0;
    q_fixed = 0;
  }
  if (exponent > 30) { /* a left shift beyond 30 cannot be applied: saturate */
    exponent = 30;
    q_fixed = real > 0.0 ? INT32_MAX : -INT32_MAX;
  }
  *multiplier = (int32_t)q_fixed;
  *shift = (int32_t)exponent;
}

int32_t sophon_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
  return sophon_mbqm_inline(x, multiplier, shift);
}

int32_t sophon_multiply_by_double_scale(int32_t x, double scale) {
  /* one rounding of the double product; round() takes halves away from zero */
  const double scaled = round((double)x * scale);
  if (scaled >= (double)INT32_MAX) return INT32_MAX;
  if (scaled <= (double)INT32_MIN) return INT32_MIN;
  return (int32_t)scaled;
}

int32_t sophon_multiply_by_float_scale(int32_t x, float scale) {
  /* (float)x rounds to nearest even as cvtdq2ps does; the product is one float32
   * rounding; rintf rounds halves to even in the default rounding mode */
  const float scaled = rintf((float)x * scale);
  if (scaled >= 2147483648.0f) return INT32_MAX;
  if (scaled <= -2147483648.0f) return INT32_MIN;
  return (int32_t)scaled;
}
