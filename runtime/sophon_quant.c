/*
 * sophon_quant.c - the fixed-point arithmetic of the INT8 instructions, stated as
 * TFLite states it (quantization_util.cc QuantizeMultiplier; common.h
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

#include "sophon_internal.h"
#include "sophon_quant.h"

/* floor(x / 2^exponent) for exponent in [0, 62], |x| < 2^62. */
static int64_t floor_shift_right(int64_t x, int32_t exponent) {
  return x >= 0 ? x >> exponent : -((-x - 1) >> exponent) - 1;
}

/* round(x / 2^exponent), ties away from zero (RoundingDivideByPOT), for
 * exponent in [0, 62] and |x| < 2^62. */
static int64_t rounding_shift_right(int64_t x, int32_t exponent) {
  const int64_t mask = ((int64_t)1 << exponent) - 1;
  const int64_t floor_q = floor_shift_right(x, exponent);
  const int64_t remainder = x - floor_q * ((int64_t)1 << exponent); /* x & mask, in [0, mask] */
  const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return floor_q + (remainder > threshold ? 1 : 0);
}

static int32_t saturate_i32(int64_t x) {
  return x > INT32_MAX ? INT32_MAX : (x < INT32_MIN ? INT32_MIN : (int32_t)x);
}

int32_t sophon_saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  /* |a * b| <= 2^62 fits int64; the only product whose doubled high word does not
   * fit int32 is INT32_MIN * INT32_MIN. Division truncates toward zero; with the
   * nudge (2^30, or 1 - 2^30 for a negative product) that rounds to nearest with
   * ties toward +infinity: 1.5 -> 2 but -1.5 -> -1 (not symmetric, as in gemmlowp). */
  int64_t product, nudge;
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  product = (int64_t)a * (int64_t)b;
  nudge = product >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30);
  return (int32_t)((product + nudge) / ((int64_t)1 << 31));
}

int32_t sophon_rounding_divide_by_pot(int32_t x, int32_t exponent) {
  return (int32_t)rounding_shift_right(x, exponent);
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
  /* left_shift = max(shift, 0), right_shift = max(-shift, 0); both clamped to
   * ranges where the result no longer changes (|x| * 2^31 saturates anyway, and
   * round(x / 2^62) is 0 for any int32 x). */
  const int32_t left_shift = shift > 31 ? 31 : (shift > 0 ? shift : 0);
  const int32_t right_shift = shift < -62 ? 62 : (shift < 0 ? -shift : 0);
  const int32_t shifted = saturate_i32((int64_t)x * ((int64_t)1 << left_shift));
  return (int32_t)rounding_shift_right(
      sophon_saturating_rounding_doubling_high_mul(shifted, multiplier), right_shift);
}
