/*
 * sophon_tiu_conv_int8.c - the TIU's INT8 MAC instructions (sophon_quant.h):
 * conv2d (dense, grouped, depthwise) and fully connected, bit-exact with TFLite's
 * reference kernels (reference/integer_ops/conv.h, depthwise_conv.h,
 * fully_connected.h); the INT8 checks shared with ADD and pool2d
 * (sophon_tiu_add_pool_int8.c).
 *
 * Each instruction's checks first ask for a chip with an INT8 datapath, then
 * validate its descriptors and parameters, LMEM bounds and operand overlap; the
 * instruction table (isa/sophon_isa.c) then runs one kernel (the fast one of
 * fast/sophon_fast_int8.c, bit-identical, unless the device is in reference mode
 * or the fast kernel declines; else the reference kernel here) and updates the
 * counters with the same cost functions as the f32 instructions (EU_NUM is taken
 * at the int8 operand dtype, so it includes chip->int8_macs_per_eu).
 * Requantization is fused and free, like the f32 bias and activation.
 *
 * Integer overflow. Every int32 accumulator has its bound written where it is
 * declared; the checks reject the sizes that could break it. The three places
 * where TFLite's int32 arithmetic could overflow for extreme but legal-looking
 * operands (bias + sum of products, x * 2^left_shift inside the multiply,
 * + output zero point) are computed in int64 and saturated to int32 before the
 * clamp; TFLite's behaviour there is undefined, everywhere else it is
 * reproduced exactly.
 */
#include <math.h>

#include "reference/sophon_reference.h"
#include "sophon_quant.h"

/* |(in - input_zero_point) * weight| <= 255 * 128 = 32640 (in, weight in
 * [-128, 127], input_zero_point in [-128, 127]). A sum of K such products stays
 * within int32 while K * 32640 <= 2^31 - 1, i.e. K <= 65793. */
#define INT8_MAX_PRODUCT 32640
#define INT8_MAX_REDUCTION 65793

/* ------------------------------------------------------------- checks */

sophon_status sophon_check_int8_chip(sophon_device* dev, const char* op) {
  if (!dev->chip.has_int8)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: chip %s has no INT8 datapath; INT8 needs a chip with an INT8 "
                            "datapath such as bm1684",
                            op, dev->chip.name[0] != '\0' ? dev->chip.name : "(unnamed)");
  return SOPHON_OK;
}

sophon_status sophon_check_dtype(sophon_device* dev, const char* op, const char* name,
                                 const sophon_local* t, sophon_dtype expected) {
  if (t->dtype != expected)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s dtype %s is not %s", op, name,
                            sophon_dtype_name(t->dtype), sophon_dtype_name(expected));
  return SOPHON_OK;
}

sophon_status sophon_check_int8_value(sophon_device* dev, const char* op, const char* name,
                                      int32_t value) {
  if (value < -128 || value > 127)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s %d is outside [-128, 127]", op,
                            name, (int)value);
  return SOPHON_OK;
}

sophon_status sophon_check_clamp(sophon_device* dev, const char* op, int32_t act_min,
                                 int32_t act_max) {
  sophon_status s;
  if ((s = sophon_check_int8_value(dev, op, "act_min", act_min)) != SOPHON_OK) return s;
  if ((s = sophon_check_int8_value(dev, op, "act_max", act_max)) != SOPHON_OK) return s;
  if (act_min > act_max)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: act_min %d > act_max %d", op,
                            (int)act_min, (int)act_max);
  return SOPHON_OK;
}

/* A (multiplier, shift) pair: multiplier >= 0 (scales are positive), shift in
 * [shift_min, shift_max]. `index` < 0 for a per-tensor pair. */
sophon_status sophon_check_multiplier(sophon_device* dev, const char* op, const char* name,
                                      int32_t index, int32_t multiplier, int32_t shift,
                                      int32_t shift_min, int32_t shift_max) {
  if (multiplier < 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s multiplier[%d] %ld is negative",
                            op, name, (int)(index < 0 ? 0 : index), (long)multiplier);
  if (shift < shift_min || shift > shift_max)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s shift[%d] %d is outside [%d, %d]", op, name,
                            (int)(index < 0 ? 0 : index), (int)shift, (int)shift_min,
                            (int)shift_max);
  return SOPHON_OK;
}

/* Positive, finite and a float32 value. */
static int is_float_scale(double scale) {
  return scale > 0.0 && isfinite(scale) && (double)(float)scale == scale;
}

/* SOPHON_REQUANT_FLOAT_CONV's scales and run length (conv2d_int8 only). */
static sophon_status check_float_conv(sophon_device* dev, const char* op, const sophon_requant* q,
                                      int32_t channels, int float_conv_ok) {
  int32_t i;
  if (!float_conv_ok)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: requant rounding SOPHON_REQUANT_FLOAT_CONV is conv2d_int8's only "
                            "(onnxruntime's float Conv)", op);
  if (q->scale == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: requant rounding SOPHON_REQUANT_FLOAT_CONV needs the filter scales",
                            op);
  if (!is_float_scale(q->input_scale) || !is_float_scale(q->output_scale))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: requant input_scale %g and output_scale %g must be positive and "
                            "finite (SOPHON_REQUANT_FLOAT_CONV)", op, (double)q->input_scale,
                            (double)q->output_scale);
  if (q->k_block < 1)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: requant k_block %d is not positive (SOPHON_REQUANT_FLOAT_CONV)",
                            op, (int)q->k_block);
  for (i = 0; i < (q->per_channel ? channels : 1); ++i)
    if (!is_float_scale(q->scale[i]))
      return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                              "%s: requant filter scale[%d] %g is not a positive finite float32 "
                              "value (SOPHON_REQUANT_FLOAT_CONV)", op, (int)i, q->scale[i]);
  return SOPHON_OK;
}

/* q is well formed for `channels` output channels. */
static sophon_status check_requant(sophon_device* dev, const char* op, const sophon_requant* q,
                                   int32_t channels, int double_ok, int float_conv_ok) {
  sophon_status s;
  int32_t i;
  if (q == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: requant is NULL", op);
  if (q->per_channel != 0 && q->per_channel != 1)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: requant per_channel %d is not 0 or 1",
                            op, (int)q->per_channel);
  if (q->multiplier == NULL || q->shift == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: requant multiplier or shift array is NULL (%s)", op,
                            q->per_channel ? "per channel: out.c entries each"
                                           : "per tensor: one entry each");
  if ((s = sophon_check_int8_value(dev, op, "input_zero_point", q->input_zero_point)) != SOPHON_OK)
    return s;
  if ((s = sophon_check_int8_value(dev, op, "output_zero_point", q->output_zero_point)) !=
      SOPHON_OK)
    return s;
  if ((s = sophon_check_clamp(dev, op, q->act_min, q->act_max)) != SOPHON_OK) return s;
  for (i = 0; i < (q->per_channel ? channels : 1); ++i) {
    if ((s = sophon_check_multiplier(dev, op, "requant", i, q->multiplier[i], q->shift[i], -31,
                                     30)) != SOPHON_OK)
      return s;
  }
  if (q->rounding == SOPHON_REQUANT_FIXED_POINT) return SOPHON_OK;
  if (q->rounding == SOPHON_REQUANT_FLOAT_CONV) return check_float_conv(dev, op, q, channels,
                                                                        float_conv_ok);
  if (q->rounding != SOPHON_REQUANT_DOUBLE && q->rounding != SOPHON_REQUANT_FLOAT32)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: requant rounding %d is not %d, %d, %d or %d", op,
                            (int)q->rounding, SOPHON_REQUANT_FIXED_POINT, SOPHON_REQUANT_DOUBLE,
                            SOPHON_REQUANT_FLOAT32, SOPHON_REQUANT_FLOAT_CONV);
  if (q->rounding == SOPHON_REQUANT_DOUBLE && !double_ok)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: requant rounding SOPHON_REQUANT_DOUBLE is fc_int8's only "
                            "(TFLite's FULLY_CONNECTED); this op rounds in fixed point",
                            op);
  if (q->scale == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: requant rounding %s needs a scale array",
                            op, q->rounding == SOPHON_REQUANT_DOUBLE ? "SOPHON_REQUANT_DOUBLE"
                                                                     : "SOPHON_REQUANT_FLOAT32");
  for (i = 0; i < (q->per_channel ? channels : 1); ++i) {
    if (!(q->scale[i] >= 0.0 && isfinite(q->scale[i]))) /* also rejects NaN */
      return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                              "%s: requant scale[%d] %g is not finite and non-negative", op,
                              (int)i, q->scale[i]);
    if (q->rounding == SOPHON_REQUANT_FLOAT32 && (double)(float)q->scale[i] != q->scale[i])
      return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                              "%s: requant scale[%d] %g is not a float32 value "
                              "(SOPHON_REQUANT_FLOAT32)", op, (int)i, q->scale[i]);
  }
  return SOPHON_OK;
}

static sophon_status check_reduction(sophon_device* dev, const char* op, int64_t taps,
                                     const char* what) {
  if (taps > INT8_MAX_REDUCTION)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: reduction of %lld taps (%s) exceeds %d, the most an int32 "
                            "accumulator of int8 products (each within +-%d) can hold; split "
                            "the reduction",
                            op, (long long)taps, what, INT8_MAX_REDUCTION, INT8_MAX_PRODUCT);
  return SOPHON_OK;
}

/* ----------------------------------------------------------- requantize */

static int32_t saturate_i32(int64_t x) {
  return x > INT32_MAX ? INT32_MAX : (x < INT32_MIN ? INT32_MIN : (int32_t)x);
}

/* clamp(output_zero_point + scaled). */
static int8_t requant_output(int32_t scaled, const sophon_requant* q) {
  const int64_t value = (int64_t)scaled + q->output_zero_point;
  return (int8_t)(value < q->act_min ? q->act_min : (value > q->act_max ? q->act_max : value));
}

/* clamp(output_zero_point + acc * real) for output channel `channel`, rounded as
 * q->rounding says: MultiplyByQuantizedMultiplier(acc, multiplier, shift) (TFLite),
 * once in double (TFLite's FULLY_CONNECTED) or once in float32 (onnxruntime). */
static int8_t requantize(int32_t acc, int32_t channel, const sophon_requant* q) {
  if (q->rounding == SOPHON_REQUANT_DOUBLE)
    return requant_output(sophon_multiply_by_double_scale(acc, q->scale[channel]), q);
  if (q->rounding == SOPHON_REQUANT_FLOAT32)
    return requant_output(sophon_multiply_by_float_scale(acc, (float)q->scale[channel]), q);
  return requant_output(
      sophon_multiply_by_quantized_multiplier(acc, q->multiplier[channel], q->shift[channel]), q);
}

/* ---------------------------------------------------------------- conv2d */

/* SOPHON_REQUANT_FLOAT_CONV's QuantizeLinear of the float32 conv output y of a channel
 * whose filter scale is filter_scale: y + the dequantized bias, / output_scale, nearest
 * with halves to even, + output zero point, clamped. */
static int8_t quantize_float_conv(float y, int32_t bias_value, float filter_scale,
                                  const sophon_requant* q) {
  const float low = (float)(q->act_min - q->output_zero_point);
  const float high = (float)(q->act_max - q->output_zero_point);
  const float biased = y + (float)bias_value * (q->input_scale * filter_scale);
  float scaled = nearbyintf(biased / q->output_scale); /* default rounding: halves to even */
  scaled = scaled < low ? low : (scaled > high ? high : scaled);
  return (int8_t)((int32_t)scaled + q->output_zero_point);
}

/* conv2d_int8 with SOPHON_REQUANT_FLOAT_CONV (sophon_quant.h): onnxruntime's float32
 * Conv of the dequantized operands. Tap i of an output runs over [ic][ky][kx] (the
 * im2col row of MLAS), padding taps included in the count (they add nothing). */
static void ref_conv2d_float(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                             const sophon_local* weight, const sophon_local* bias,
                             const sophon_conv_params* p, const sophon_requant* q) {
  sophon_view out_v, in_v, weight_v, bias_v;
  const int32_t in_c_per_group = in->c / p->groups;
  const int32_t out_c_per_group = out->c / p->groups;
  const int32_t kernel_h = p->kernel_h, kernel_w = p->kernel_w;
  const int64_t block = q->k_block;
  int32_t batch, out_channel, out_y, out_x, in_channel, filter_y, filter_x;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  sophon_view_init(&weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&bias_v, dev, bias);
  for (batch = 0; batch < out->n; ++batch) {
    for (out_channel = 0; out_channel < out->c; ++out_channel) {
      const int32_t group = out_channel / out_c_per_group;
      const int8_t* filters = sophon_view_i8(&weight_v, 0, out_channel); /* [ic][ky][kx] */
      const int32_t bias_value = bias != NULL ? *sophon_view_i32(&bias_v, 0, out_channel) : 0;
      const float filter_scale = (float)q->scale[q->per_channel ? out_channel : 0];
      int8_t* out_data = sophon_view_i8(&out_v, batch, out_channel);
      for (out_y = 0; out_y < out->h; ++out_y) {
        const int64_t in_y_origin = (int64_t)out_y * p->stride_h - p->pad_top;
        for (out_x = 0; out_x < out->w; ++out_x) {
          const int64_t in_x_origin = (int64_t)out_x * p->stride_w - p->pad_left;
          sophon_channel_iter it = sophon_channel_begin(&in_v, batch, group * in_c_per_group);
          float total = 0.0f, run = 0.0f;
          int64_t i = 0;
          for (in_channel = 0; in_channel < in_c_per_group; ++in_channel) {
            const int8_t* in_data = (const int8_t*)it.base;
            for (filter_y = 0; filter_y < kernel_h; ++filter_y) {
              const int64_t y = in_y_origin + (int64_t)filter_y * p->dilation_h;
              for (filter_x = 0; filter_x < kernel_w; ++filter_x, ++i) {
                const int64_t x = in_x_origin + (int64_t)filter_x * p->dilation_w;
                if (i > 0 && i % block == 0) { /* an SGEMM K block ends: into the total */
                  total = i == block ? run : run + total;
                  run = 0.0f;
                }
                if (y >= 0 && y < in->h && x >= 0 && x < in->w) {
                  const float xf =
                      (float)((int32_t)in_data[y * in->w + x] - q->input_zero_point) *
                      q->input_scale;
                  run = fmaf(xf, (float)filters[i] * filter_scale, run);
                }
              }
            }
            sophon_channel_next(&in_v, &it);
          }
          total = i > block ? run + total : run;
          out_data[(int64_t)out_y * out->w + out_x] =
              quantize_float_conv(total, bias_value, filter_scale, q);
        }
      }
    }
  }
}

void sophon_ref_conv2d_int8(sophon_device* dev, const sophon_local* out,
                            const sophon_local* in, const sophon_local* weight,
                            const sophon_local* bias, const sophon_conv_params* p,
                            const sophon_requant* q) {
  sophon_view out_v, in_v, weight_v, bias_v;
  const int32_t in_c_per_group = in->c / p->groups;
  const int32_t out_c_per_group = out->c / p->groups;
  const int32_t kernel_h = p->kernel_h, kernel_w = p->kernel_w;
  const int32_t dilation_h = p->dilation_h, dilation_w = p->dilation_w;
  const int32_t in_h = in->h, in_w = in->w;
  const int32_t input_zero_point = q->input_zero_point;
  const int64_t filter_size = (int64_t)kernel_h * kernel_w;
  int32_t batch, out_channel, out_y, out_x, in_channel, filter_y, filter_x;

  if (q->rounding == SOPHON_REQUANT_FLOAT_CONV) {
    ref_conv2d_float(dev, out, in, weight, bias, p, q);
    return;
  }
  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  sophon_view_init(&weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&bias_v, dev, bias);

  for (batch = 0; batch < out->n; ++batch) {
    for (out_channel = 0; out_channel < out->c; ++out_channel) {
      /* depthwise (groups == in.c) is the case in_c_per_group == 1: output channel
       * oc reads input channel oc / depth_multiplier, as TFLite's depthwise conv */
      const int32_t group = out_channel / out_c_per_group;
      const sophon_channel_iter first_in =
          sophon_channel_begin(&in_v, batch, group * in_c_per_group);
      /* weight (1, OC, IC/groups, KH*KW): this output channel's filters, [ic][ky][kx] */
      const int8_t* filters = sophon_view_i8(&weight_v, 0, out_channel);
      const int32_t bias_value = bias != NULL ? *sophon_view_i32(&bias_v, 0, out_channel) : 0;
      const int32_t channel = q->per_channel ? out_channel : 0;
      int8_t* out_data = sophon_view_i8(&out_v, batch, out_channel);

      for (out_y = 0; out_y < out->h; ++out_y) {
        const int64_t in_y_origin = (int64_t)out_y * p->stride_h - p->pad_top;
        const int32_t filter_y_begin = sophon_first_tap(in_y_origin, dilation_h);
        const int32_t filter_y_end = sophon_end_tap(in_y_origin, dilation_h, in_h, kernel_h);

        for (out_x = 0; out_x < out->w; ++out_x) {
          const int64_t in_x_origin = (int64_t)out_x * p->stride_w - p->pad_left;
          const int32_t filter_x_begin = sophon_first_tap(in_x_origin, dilation_w);
          const int32_t filter_x_end = sophon_end_tap(in_x_origin, dilation_w, in_w, kernel_w);
          sophon_channel_iter in_channel_it = first_in;
          /* Each term is within +-INT8_MAX_PRODUCT (32640) and there are at most
           * K = IC/groups * KH * KW <= INT8_MAX_REDUCTION (65793, checked) of them:
           * |acc| <= 2147483520 < 2^31 after every addition, whatever the order.
           * Padding taps are skipped: they would read input_zero_point and add 0. */
          int32_t acc = 0;

          for (in_channel = 0; in_channel < in_c_per_group; ++in_channel) {
            const int8_t* in_data = (const int8_t*)in_channel_it.base;
            const int8_t* filter_data = filters + (int64_t)in_channel * filter_size;
            for (filter_y = filter_y_begin; filter_y < filter_y_end; ++filter_y) {
              const int8_t* in_row =
                  in_data + (in_y_origin + (int64_t)filter_y * dilation_h) * in_w;
              const int8_t* filter_row = filter_data + (int64_t)filter_y * kernel_w;
              for (filter_x = filter_x_begin; filter_x < filter_x_end; ++filter_x) {
                const int32_t in_value = in_row[in_x_origin + (int64_t)filter_x * dilation_w];
                acc += (in_value - input_zero_point) * (int32_t)filter_row[filter_x];
              }
            }
            sophon_channel_next(&in_v, &in_channel_it);
          }
          /* + bias in int64, saturated (TFLite: int32 add, undefined on overflow) */
          out_data[(int64_t)out_y * out->w + out_x] =
              requantize(saturate_i32((int64_t)acc + bias_value), channel, q);
        }
      }
    }
  }
}

/* The shape rules of sophon_tiu_conv2d (sophon.h), then the int8 reduction bound. */
static sophon_status check_conv(sophon_device* dev, const char* op, const sophon_local* out,
                                const sophon_local* in, const sophon_local* weight,
                                const sophon_local* bias, const sophon_conv_params* p) {
  sophon_status s = sophon_check_conv_shapes(dev, op, out, in, weight, bias, p);
  if (s != SOPHON_OK) return s;
  return check_reduction(dev, op, (int64_t)(in->c / p->groups) * p->kernel_h * p->kernel_w,
                         "in.c/groups * kernel_h * kernel_w");
}

/* Bounds of every operand, then out disjoint from every input. */
static sophon_status check_memory(sophon_device* dev, const char* op, const sophon_local* out,
                                  const sophon_local* in, const sophon_local* weight,
                                  const sophon_local* bias) {
  sophon_status s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "weight", weight)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_bounds(dev, op, "bias", bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint(dev, op, out, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint(dev, op, out, "weight", weight)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_disjoint(dev, op, out, "bias", bias)) != SOPHON_OK)
    return s;
  return SOPHON_OK;
}

/* Descriptors and dtypes shared by conv2d_int8 and fc_int8. */
static sophon_status check_mac_operands(sophon_device* dev, const char* op,
                                        const sophon_local* out, const sophon_local* in,
                                        const sophon_local* weight, const sophon_local* bias) {
  sophon_status s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "weight", weight)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_local(dev, op, "bias", bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "in", in, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "weight", weight, SOPHON_I8)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_dtype(dev, op, "bias", bias, SOPHON_I32)) != SOPHON_OK)
    return s;
  return SOPHON_OK;
}

/* tiu_conv2d_int8's checks (operands: out, a = in, b = weight, c = bias (or NULL), conv,
 * requant); the instruction table (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_conv2d_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a, *weight = o->b, *bias = o->c;
  const sophon_conv_params* p = o->conv;
  const sophon_requant* q = o->requant;
  sophon_status s;

  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = check_mac_operands(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;
  if ((s = check_conv(dev, op, out, in, weight, bias, p)) != SOPHON_OK) return s;
  if ((s = check_requant(dev, op, q, out->c, 0, 1)) != SOPHON_OK) return s;
  if ((s = check_memory(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;

  return SOPHON_OK;
}

/* -------------------------------------------------------------------- fc */

void sophon_ref_fc_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                        const sophon_local* weight, const sophon_local* bias,
                        const sophon_requant* q) {
  sophon_view out_v, in_v, weight_v, bias_v;
  const int32_t batches = in->n, depth = in->c;
  const int32_t input_zero_point = q->input_zero_point;
  int32_t batch, out_feature, k;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  sophon_view_init(&weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&bias_v, dev, bias);

  for (batch = 0; batch < batches; ++batch) {
    const sophon_channel_iter first_in = sophon_channel_begin(&in_v, batch, 0);
    for (out_feature = 0; out_feature < out->c; ++out_feature) {
      /* weight (1, N, K, 1): row out_feature is contiguous along h */
      const int8_t* weight_row = sophon_view_i8(&weight_v, 0, out_feature);
      const int32_t bias_value = bias != NULL ? *sophon_view_i32(&bias_v, 0, out_feature) : 0;
      const int32_t channel = q->per_channel ? out_feature : 0;
      sophon_channel_iter in_it = first_in; /* in[batch, k] lives in lane k % npu */
      /* K = in.c <= INT8_MAX_REDUCTION (65793, checked) terms, each within
       * +-INT8_MAX_PRODUCT (32640): |acc| <= 2147483520 < 2^31. */
      int32_t acc = 0;
      for (k = 0; k < depth; ++k) {
        const int32_t in_value = *(const int8_t*)in_it.base;
        acc += (in_value - input_zero_point) * (int32_t)weight_row[k];
        sophon_channel_next(&in_v, &in_it);
      }
      /* + bias in int64, saturated (TFLite: int32 add, undefined on overflow) */
      const int32_t sum = saturate_i32((int64_t)acc + bias_value);
      *sophon_view_i8(&out_v, batch, out_feature) = requantize(sum, channel, q);
    }
  }
}

/* tiu_fc_int8's checks (operands: out, a = in, b = weight, c = bias (or NULL), requant);
 * the instruction table (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_fc_int8(sophon_device* dev, const char* op,
                                       const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a, *weight = o->b, *bias = o->c;
  const sophon_requant* q = o->requant;
  sophon_status s;

  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = check_mac_operands(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_fc_shapes(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;
  if ((s = check_reduction(dev, op, in->c, "K = in.c")) != SOPHON_OK) return s;
  if ((s = check_requant(dev, op, q, out->c, 1, 0)) != SOPHON_OK) return s;
  if ((s = check_memory(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;

  return SOPHON_OK;
}

/* ------------------------------------------------------ conv2d_transpose */

/*
 * TFLite's reference_integer_ops::TransposeConv, written as a gather (as the f32
 * sophon_tiu_deconv.c, so that a band of output rows can be computed from the
 * input rows that reach it): TFLite scatters (in + input_offset) * filter into an
 * int32 scratch image; every output element receives the same terms, and an
 * int32 sum of them is the same whatever its order (bounded below, no overflow).
 * Then + bias, MultiplyByQuantizedMultiplier per output channel, + output zero
 * point, clamp: as conv2d_int8.
 */
void sophon_ref_conv2d_transpose_int8(sophon_device* dev, const sophon_local* out,
                                      const sophon_local* in, const sophon_local* weight,
                                      const sophon_local* bias, const sophon_conv_params* p,
                                      const sophon_requant* q) {
  sophon_view out_v, in_v, weight_v, bias_v;
  const int32_t in_c_per_group = in->c / p->groups;
  const int32_t out_c_per_group = out->c / p->groups;
  const int32_t kernel_h = p->kernel_h, kernel_w = p->kernel_w;
  const int32_t input_zero_point = q->input_zero_point;
  const int64_t filter_size = (int64_t)kernel_h * kernel_w;
  int32_t batch, out_channel, out_y, out_x, in_channel, filter_y, filter_x;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  sophon_view_init(&weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&bias_v, dev, bias);

  for (batch = 0; batch < out->n; ++batch) {
    for (out_channel = 0; out_channel < out->c; ++out_channel) {
      const int32_t group = out_channel / out_c_per_group;
      const int32_t out_in_group = out_channel % out_c_per_group;
      const int32_t bias_value = bias != NULL ? *sophon_view_i32(&bias_v, 0, out_channel) : 0;
      const int32_t channel = q->per_channel ? out_channel : 0;
      int8_t* out_data = sophon_view_i8(&out_v, batch, out_channel);

      for (out_y = 0; out_y < out->h; ++out_y) {
        for (out_x = 0; out_x < out->w; ++out_x) {
          /* at most K = IC/groups * KH * KW <= INT8_MAX_REDUCTION (checked) terms, each
           * within +-INT8_MAX_PRODUCT: |acc| < 2^31 after every addition */
          int32_t acc = 0;
          for (in_channel = group * in_c_per_group; in_channel < (group + 1) * in_c_per_group;
               ++in_channel) {
            const int8_t* in_data = sophon_view_i8(&in_v, batch, in_channel);
            /* weight (1, IC, OC/groups, KH*KW): in_channel's filter towards out_channel */
            const int8_t* filter =
                sophon_view_i8(&weight_v, 0, in_channel) + out_in_group * filter_size;
            for (filter_y = 0; filter_y < kernel_h; ++filter_y) {
              const int64_t in_y = sophon_deconv_source(out_y, p->pad_top, filter_y,
                                                        p->dilation_h, p->stride_h, in->h);
              if (in_y < 0) continue;
              for (filter_x = 0; filter_x < kernel_w; ++filter_x) {
                const int64_t in_x = sophon_deconv_source(out_x, p->pad_left, filter_x,
                                                          p->dilation_w, p->stride_w, in->w);
                if (in_x < 0) continue;
                acc += ((int32_t)in_data[in_y * in->w + in_x] - input_zero_point) *
                       (int32_t)filter[filter_y * kernel_w + filter_x];
              }
            }
          }
          /* + bias in int64, saturated (TFLite: int32 add, undefined on overflow) */
          out_data[(int64_t)out_y * out->w + out_x] =
              requantize(saturate_i32((int64_t)acc + bias_value), channel, q);
        }
      }
    }
  }
}

/* tiu_conv2d_transpose_int8's checks (operands: out, a = in, b = weight, c = bias or
 * NULL, conv, requant): the f32 instruction's shape rules, int8 dtypes, the int8
 * reduction bound and the requantization. */
sophon_status sophon_check_tiu_conv2d_transpose_int8(sophon_device* dev, const char* op,
                                                     const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a, *weight = o->b, *bias = o->c;
  const sophon_conv_params* p = o->conv;
  sophon_status s;

  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = check_mac_operands(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_conv2d_transpose_shapes(dev, op, out, in, weight, bias, p)) != SOPHON_OK)
    return s;
  if ((s = check_reduction(dev, op, (int64_t)(in->c / p->groups) * p->kernel_h * p->kernel_w,
                           "in.c/groups * kernel_h * kernel_w")) != SOPHON_OK)
    return s;
  if ((s = check_requant(dev, op, o->requant, out->c, 0, 0)) != SOPHON_OK) return s;
  return check_memory(dev, op, out, in, weight, bias);
}
