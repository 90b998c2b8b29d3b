/*
 * sophon_tiu_quantize.c - the TIU's float32 <-> int8 casts (sophon_quant.h), so
 * that one region can hold int8 layers and the float32 layers between them:
 *   quantize    float32 -> int8 with one scale and zero point:
 *                 q = saturate(round(x / scale) + zero_point)
 *               x / scale in float32, then the rounding of the model's source:
 *               TFLite's QUANTIZE (reference_ops::AffineQuantize, TfLiteRound:
 *               half away from zero) or onnxruntime's QuantizeLinear (MLAS:
 *               half to even, the quotient clamped before it is converted)
 *   dequantize  int8 -> float32: (q - zero_point) * scale in float32; TFLite's
 *               DEQUANTIZE multiplies in double and rounds to float once, which
 *               is the same value: |q - zp| <= 255 needs 9 bits, so the double
 *               product of a 24-bit scale is exact and one rounding remains.
 * Both walk planes of equal (n, c, h, w); each operand keeps its own layout (the
 * int8 one 4N-packed on bm1684), so a cast sits in a layer group with either.
 */
#include <float.h>
#include <math.h>

#include "reference/sophon_reference.h"
#include "sophon_quant.h"

/* One value. Clamping the quotient to [-128 - zp, 127 - zp] before rounding is
 * the same as saturating after it (the bounds are integers); a NaN quotient
 * fails the first comparison and becomes -128, as MLAS's MAXPS makes it. */
static int8_t quantize_value(float x, float scale, int32_t zero_point,
                             sophon_quantize_rounding rounding) {
  const float low = (float)(-128 - zero_point), high = (float)(127 - zero_point);
  float v = x / scale;
  if (!(v >= low)) v = low;
  if (v > high) v = high;
  v = rounding == SOPHON_QUANTIZE_HALF_TO_EVEN ? nearbyintf(v) : roundf(v);
  return (int8_t)((int32_t)v + zero_point);
}

void sophon_ref_quantize_int8(sophon_device* dev, const sophon_local* out,
                              const sophon_local* in, float scale, int32_t zero_point,
                              sophon_quantize_rounding rounding) {
  sophon_plane_walk walk;
  const int64_t plane = (int64_t)out->h * out->w;
  int64_t i;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const float* in_data = (const float*)(const void*)walk.in.base;
    int8_t* out_data = (int8_t*)walk.out.base;
    for (i = 0; i < plane; ++i)
      out_data[i] = quantize_value(in_data[i], scale, zero_point, rounding);
  }
}

void sophon_ref_dequantize_int8(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, float scale, int32_t zero_point) {
  sophon_plane_walk walk;
  const int64_t plane = (int64_t)out->h * out->w;
  int64_t i;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const int8_t* in_data = (const int8_t*)walk.in.base;
    float* out_data = (float*)(void*)walk.out.base;
    for (i = 0; i < plane; ++i) out_data[i] = (float)((int32_t)in_data[i] - zero_point) * scale;
  }
}

/* The checks both casts share (operands: out, a = in, quant_scale,
 * quant_zero_point); `to` and `from` are the dtypes of out and in. */
static sophon_status check_cast(sophon_device* dev, const char* op, const sophon_operands* o,
                                sophon_dtype to, sophon_dtype from) {
  const sophon_local *out = o->out, *in = o->a;
  sophon_status s;

  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "out", out, to)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "in", in, from)) != SOPHON_OK) return s;
  if (!(o->quant_scale > 0.0f && o->quant_scale <= FLT_MAX))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: scale %g must be finite and positive",
                            op, (double)o->quant_scale);
  if (o->quant_zero_point < -128 || o->quant_zero_point > 127)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: zero point %d outside int8", op,
                            (int)o->quant_zero_point);
  if ((s = sophon_check_same_shape(dev, op, "out", out, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  return sophon_check_disjoint(dev, op, out, "in", in);
}

sophon_status sophon_check_tiu_quantize_int8(sophon_device* dev, const char* op,
                                             const sophon_operands* o) {
  if (o->quant_rounding != SOPHON_QUANTIZE_HALF_AWAY && o->quant_rounding != SOPHON_QUANTIZE_HALF_TO_EVEN)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown rounding %d", op,
                            (int)o->quant_rounding);
  return check_cast(dev, op, o, SOPHON_I8, SOPHON_F32);
}

sophon_status sophon_check_tiu_dequantize_int8(sophon_device* dev, const char* op,
                                               const sophon_operands* o) {
  return check_cast(dev, op, o, SOPHON_F32, SOPHON_I8);
}
