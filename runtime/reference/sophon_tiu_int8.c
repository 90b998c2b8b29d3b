/*
 * sophon_tiu_int8.c - the TIU's INT8 instructions (sophon_quant.h): conv2d
 * (dense, grouped, depthwise), fully connected, ADD and pool2d, bit-exact with
 * TFLite's reference kernels (reference/integer_ops/conv.h, depthwise_conv.h,
 * fully_connected.h, add.h, pooling.h).
 *
 * Each instruction first checks that the chip has an INT8 datapath, then
 * validates its descriptors and parameters, checks LMEM bounds and operand
 * overlap once, runs one kernel (the fast one of sophon_fast_int8.c or
 * sophon_fast_int8_eltwise.c, bit-identical, unless the device is in reference
 * mode or the fast kernel declines; else the reference kernel here) and updates
 * the counters with the same cost functions as the f32 instructions (EU_NUM is
 * taken at the int8 operand dtype, so it includes chip->int8_macs_per_eu).
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
#include "chip/sophon_internal.h"
#include "sophon_quant.h"

/* |(in - input_zero_point) * weight| <= 255 * 128 = 32640 (in, weight in
 * [-128, 127], input_zero_point in [-128, 127]). A sum of K such products stays
 * within int32 while K * 32640 <= 2^31 - 1, i.e. K <= 65793. */
#define INT8_MAX_PRODUCT 32640
#define INT8_MAX_REDUCTION 65793

/* An avg-pool sum of T int8 taps is within [-128 T, 127 T]; with the rounding
 * term (T / 2) it stays within int32 while 128.5 T < 2^31: T <= 2^23 is ample. */
#define INT8_MAX_POOL_TAPS (1 << 23)

/* TFLite ADD: (x - zero_point) in [-255, 255] times 2^left_shift, two of them
 * summed after a multiply that cannot grow them: 2 * 255 * 2^22 < 2^31. */
#define INT8_MAX_ADD_LEFT_SHIFT 22

/* ------------------------------------------------------------- checks */

static sophon_status check_int8_chip(sophon_device* dev, const char* op) {
  if (!dev->chip.has_int8)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: chip %s has no INT8 datapath; INT8 needs a chip with an INT8 "
                            "datapath such as bm1684",
                            op, dev->chip.name[0] != '\0' ? dev->chip.name : "(unnamed)");
  return SOPHON_OK;
}

static sophon_status check_dtype(sophon_device* dev, const char* op, const char* name,
                                 const sophon_local* t, sophon_dtype expected) {
  if (t->dtype != expected)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s dtype %s is not %s", op, name,
                            sophon_dtype_name(t->dtype), sophon_dtype_name(expected));
  return SOPHON_OK;
}

static sophon_status check_int8_value(sophon_device* dev, const char* op, const char* name,
                                      int32_t value) {
  if (value < -128 || value > 127)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s %d is outside [-128, 127]", op,
                            name, (int)value);
  return SOPHON_OK;
}

static sophon_status check_clamp(sophon_device* dev, const char* op, int32_t act_min,
                                 int32_t act_max) {
  sophon_status s;
  if ((s = check_int8_value(dev, op, "act_min", act_min)) != SOPHON_OK) return s;
  if ((s = check_int8_value(dev, op, "act_max", act_max)) != SOPHON_OK) return s;
  if (act_min > act_max)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: act_min %d > act_max %d", op,
                            (int)act_min, (int)act_max);
  return SOPHON_OK;
}

/* A (multiplier, shift) pair: multiplier >= 0 (scales are positive), shift in
 * [shift_min, shift_max]. `index` < 0 for a per-tensor pair. */
static sophon_status check_multiplier(sophon_device* dev, const char* op, const char* name,
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

/* q is well formed for `channels` output channels. */
static sophon_status check_requant(sophon_device* dev, const char* op, const sophon_requant* q,
                                   int32_t channels) {
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
  if ((s = check_int8_value(dev, op, "input_zero_point", q->input_zero_point)) != SOPHON_OK)
    return s;
  if ((s = check_int8_value(dev, op, "output_zero_point", q->output_zero_point)) != SOPHON_OK)
    return s;
  if ((s = check_clamp(dev, op, q->act_min, q->act_max)) != SOPHON_OK) return s;
  for (i = 0; i < (q->per_channel ? channels : 1); ++i) {
    if ((s = check_multiplier(dev, op, "requant", i, q->multiplier[i], q->shift[i], -31, 30)) !=
        SOPHON_OK)
      return s;
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

/* clamp(output_zero_point + MultiplyByQuantizedMultiplier(acc, multiplier, shift)). */
static int8_t requantize(int32_t acc, int32_t multiplier, int32_t shift,
                         const sophon_requant* q) {
  const int64_t scaled =
      (int64_t)sophon_multiply_by_quantized_multiplier(acc, multiplier, shift) +
      q->output_zero_point;
  return (int8_t)(scaled < q->act_min ? q->act_min : (scaled > q->act_max ? q->act_max : scaled));
}

/* ---------------------------------------------------------------- conv2d */

static void conv2d_int8_kernel(sophon_device* dev, const sophon_local* out,
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
      const int32_t multiplier = q->multiplier[channel], shift = q->shift[channel];
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
          out_data[(int64_t)out_y * out->w + out_x] = requantize(
              saturate_i32((int64_t)acc + bias_value), multiplier, shift, q);
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
  if ((s = check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = check_dtype(dev, op, "in", in, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = check_dtype(dev, op, "weight", weight, SOPHON_I8)) != SOPHON_OK) return s;
  if (bias != NULL && (s = check_dtype(dev, op, "bias", bias, SOPHON_I32)) != SOPHON_OK) return s;
  return SOPHON_OK;
}

sophon_status sophon_tiu_conv2d_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias, const sophon_conv_params* p,
                                     const sophon_requant* q) {
  static const char* op = "tiu_conv2d_int8";
  sophon_status s;
  uint64_t macs;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if ((s = check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = check_mac_operands(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;
  if ((s = check_conv(dev, op, out, in, weight, bias, p)) != SOPHON_OK) return s;
  if ((s = check_requant(dev, op, q, out->c)) != SOPHON_OK) return s;
  if ((s = check_memory(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;

  if (dev->reference || sophon_fast_conv2d_int8(dev, out, in, weight, bias, p, q) != 0)
    conv2d_int8_kernel(dev, out, in, weight, bias, p, q);

  macs = (uint64_t)out->n * (uint64_t)out->c * (uint64_t)out->h * (uint64_t)out->w *
         (uint64_t)(in->c / p->groups) * (uint64_t)p->kernel_h * (uint64_t)p->kernel_w;
  sophon_count_tiu(dev, sophon_cost_conv2d(&dev->chip, out, in, p), macs);
  sophon_touch(dev, out);
  sophon_touch(dev, in);
  sophon_touch(dev, weight);
  if (bias != NULL) sophon_touch(dev, bias);
  return SOPHON_OK;
}

/* -------------------------------------------------------------------- fc */

static void fc_int8_kernel(sophon_device* dev, const sophon_local* out, const sophon_local* in,
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
      *sophon_view_i8(&out_v, batch, out_feature) =
          requantize(saturate_i32((int64_t)acc + bias_value), q->multiplier[channel],
                     q->shift[channel], q);
    }
  }
}

sophon_status sophon_tiu_fc_int8(sophon_device* dev, const sophon_local* out,
                                 const sophon_local* in, const sophon_local* weight,
                                 const sophon_local* bias, const sophon_requant* q) {
  static const char* op = "tiu_fc_int8";
  sophon_status s;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if ((s = check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = check_mac_operands(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_fc_shapes(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;
  if ((s = check_reduction(dev, op, in->c, "K = in.c")) != SOPHON_OK) return s;
  if ((s = check_requant(dev, op, q, out->c)) != SOPHON_OK) return s;
  if ((s = check_memory(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;

  if (dev->reference || sophon_fast_fc_int8(dev, out, in, weight, bias, q) != 0)
    fc_int8_kernel(dev, out, in, weight, bias, q);

  sophon_count_tiu(dev, sophon_cost_fc(&dev->chip, out, in),
                   (uint64_t)in->n * (uint64_t)weight->c * (uint64_t)in->c);
  sophon_touch(dev, out);
  sophon_touch(dev, in);
  sophon_touch(dev, weight);
  if (bias != NULL) sophon_touch(dev, bias);
  return SOPHON_OK;
}

/* ------------------------------------------------------------------- add */

/* TFLite's AddFunc for one element pair. Bounds, from the checks (zero points
 * in [-128, 127], left_shift <= 22, multipliers >= 0, shifts <= 0):
 *   x - zero_point in [-255, 255]; shifted by 2^22 at most: |.| <= 255 * 2^22;
 *   a multiply by multiplier / 2^31 < 1 and a rounding right shift never grow a
 *   magnitude, so |sum| <= 2 * 255 * 2^22 = 2139095040 < 2^31, and so is the
 *   rescaled output; + output_zero_point stays below 2^31 as well. */
static int8_t add_int8_element(int32_t x, int32_t y, const sophon_add_int8_params* p) {
  const int32_t shifted_x = (x - p->input1_zero_point) * (1 << p->left_shift);
  const int32_t shifted_y = (y - p->input2_zero_point) * (1 << p->left_shift);
  const int32_t scaled_x = sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
      shifted_x, p->input1_multiplier, p->input1_shift);
  const int32_t scaled_y = sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
      shifted_y, p->input2_multiplier, p->input2_shift);
  const int32_t sum = scaled_x + scaled_y;
  const int32_t result = sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(
                             sum, p->output_multiplier, p->output_shift) +
                         p->output_zero_point;
  return (int8_t)(result < p->act_min ? p->act_min : (result > p->act_max ? p->act_max : result));
}

static void add_int8_kernel(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                            const sophon_local* b, const sophon_add_int8_params* p) {
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
        for (x = 0; x < out->w; ++x) {
          /* in place: both inputs of element (y, x) are read before it is written */
          out_row[x] = add_int8_element(a_row[x * a_w_step], b_row[x * b_w_step], p);
        }
      }
    }
  }
}

static sophon_status check_add_params(sophon_device* dev, const char* op,
                                      const sophon_add_int8_params* p) {
  sophon_status s;
  if (p == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params are NULL", op);
  if (p->left_shift < 0 || p->left_shift > INT8_MAX_ADD_LEFT_SHIFT)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: left_shift %d is outside [0, %d] (TFLite uses 20; above %d "
                            "the int32 sum of two shifted inputs can overflow)",
                            op, (int)p->left_shift, INT8_MAX_ADD_LEFT_SHIFT,
                            INT8_MAX_ADD_LEFT_SHIFT);
  if ((s = check_int8_value(dev, op, "input1_zero_point", p->input1_zero_point)) != SOPHON_OK)
    return s;
  if ((s = check_int8_value(dev, op, "input2_zero_point", p->input2_zero_point)) != SOPHON_OK)
    return s;
  if ((s = check_int8_value(dev, op, "output_zero_point", p->output_zero_point)) != SOPHON_OK)
    return s;
  /* MultiplyByQuantizedMultiplierSmallerThanOneExp: shifts in [-31, 0] */
  if ((s = check_multiplier(dev, op, "input1", -1, p->input1_multiplier, p->input1_shift, -31,
                            0)) != SOPHON_OK)
    return s;
  if ((s = check_multiplier(dev, op, "input2", -1, p->input2_multiplier, p->input2_shift, -31,
                            0)) != SOPHON_OK)
    return s;
  if ((s = check_multiplier(dev, op, "output", -1, p->output_multiplier, p->output_shift, -31,
                            0)) != SOPHON_OK)
    return s;
  return check_clamp(dev, op, p->act_min, p->act_max);
}

sophon_status sophon_tiu_add_int8(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* a, const sophon_local* b,
                                  const sophon_add_int8_params* p) {
  static const char* op = "tiu_add_int8";
  sophon_status s;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if ((s = check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "b", b)) != SOPHON_OK) return s;
  if ((s = check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = check_dtype(dev, op, "a", a, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = check_dtype(dev, op, "b", b, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = check_add_params(dev, op, p)) != SOPHON_OK) return s;
  if ((s = sophon_check_broadcast(dev, op, "a", a, out)) != SOPHON_OK) return s;
  if ((s = sophon_check_broadcast(dev, op, "b", b, out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "b", b)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint_or_same(dev, op, out, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint_or_same(dev, op, out, "b", b)) != SOPHON_OK) return s;

  if (dev->reference || sophon_fast_add_int8(dev, out, a, b, p) != 0)
    add_int8_kernel(dev, out, a, b, p);

  /* the rescales are fused into the element-wise pass: one op per element */
  sophon_count_tiu(dev, sophon_cost_binary(&dev->chip, out, NULL), 0);
  sophon_touch(dev, out);
  sophon_touch(dev, a);
  sophon_touch(dev, b);
  return SOPHON_OK;
}

/* ---------------------------------------------------------------- pool2d */

static void pool2d_int8_kernel(sophon_device* dev, const sophon_local* out,
                               const sophon_local* in, const sophon_pool_params* p,
                               int32_t act_min, int32_t act_max) {
  sophon_view out_v, in_v;
  const int32_t dilation_h = p->dilation_h, dilation_w = p->dilation_w;
  const int32_t in_w = in->w;
  int32_t batch, channel, out_y, out_x, filter_y, filter_x;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);

  for (batch = 0; batch < out->n; ++batch) {
    sophon_channel_iter in_it = sophon_channel_begin(&in_v, batch, 0);
    sophon_channel_iter out_it = sophon_channel_begin(&out_v, batch, 0);
    for (channel = 0; channel < out->c; ++channel) {
      const int8_t* in_data = (const int8_t*)in_it.base;
      int8_t* out_data = (int8_t*)out_it.base;

      for (out_y = 0; out_y < out->h; ++out_y) {
        const int64_t in_y_origin = (int64_t)out_y * p->stride_h - p->pad_top;
        const int32_t filter_y_begin = sophon_first_tap(in_y_origin, dilation_h);
        const int32_t filter_y_end = sophon_end_tap(in_y_origin, dilation_h, in->h, p->kernel_h);

        for (out_x = 0; out_x < out->w; ++out_x) {
          const int64_t in_x_origin = (int64_t)out_x * p->stride_w - p->pad_left;
          const int32_t filter_x_begin = sophon_first_tap(in_x_origin, dilation_w);
          const int32_t filter_x_end = sophon_end_tap(in_x_origin, dilation_w, in_w, p->kernel_w);
          int32_t result;

          if (p->kind == SOPHON_POOL_MAX) {
            /* TFLite starts from the lowest int8: a window of padding only gives -128 */
            int32_t max_value = -128;
            for (filter_y = filter_y_begin; filter_y < filter_y_end; ++filter_y) {
              const int8_t* in_row =
                  in_data + (in_y_origin + (int64_t)filter_y * dilation_h) * in_w;
              for (filter_x = filter_x_begin; filter_x < filter_x_end; ++filter_x) {
                const int32_t v = in_row[in_x_origin + (int64_t)filter_x * dilation_w];
                if (v > max_value) max_value = v;
              }
            }
            result = max_value;
          } else {
            /* count <= kernel_h * kernel_w <= INT8_MAX_POOL_TAPS (2^23, checked) taps in
             * [-128, 127]: |sum| + count / 2 <= 128.5 * 2^23 < 2^31. Every window has at
             * least one real tap (checked), so count > 0. */
            int32_t sum = 0, count = 0;
            for (filter_y = filter_y_begin; filter_y < filter_y_end; ++filter_y) {
              const int8_t* in_row =
                  in_data + (in_y_origin + (int64_t)filter_y * dilation_h) * in_w;
              for (filter_x = filter_x_begin; filter_x < filter_x_end; ++filter_x) {
                sum += in_row[in_x_origin + (int64_t)filter_x * dilation_w];
                ++count;
              }
            }
            /* round half away from zero; C99 division truncates toward zero */
            result = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
          }
          out_data[(int64_t)out_y * out->w + out_x] =
              (int8_t)(result < act_min ? act_min : (result > act_max ? act_max : result));
        }
      }
      sophon_channel_next(&in_v, &in_it);
      sophon_channel_next(&out_v, &out_it);
    }
  }
}

/* Checks out_size against the floor formula and the ceil-mode limit of one axis
 * (the rules of sophon_tiu_pool2d); for AVG also that every window has a real tap
 * (TFLite fails an average over no input). */
static sophon_status check_pool_axis(sophon_device* dev, const char* op, const char* axis,
                                     const sophon_pool_params* p, int32_t out_size,
                                     int32_t in_size, int32_t pad_a, int32_t pad_b,
                                     int32_t kernel, int32_t stride, int32_t dilation) {
  const int64_t padded = (int64_t)in_size + pad_a + pad_b;
  const int64_t span = padded - (int64_t)dilation * (kernel - 1) - 1;
  int64_t floor_size, ceil_size;
  int32_t i;
  if (span < 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: dilated kernel %s %d (dilation %d) exceeds padded input %lld",
                            op, axis, (int)kernel, (int)dilation, (long long)padded);
  floor_size = span / stride + 1;
  /* ceil mode: at most one more window, and it must start inside the padded input */
  ceil_size = sophon_ceil_div(span, stride) + 1;
  if ((ceil_size - 1) * stride >= padded) ceil_size -= 1;
  if (out_size < floor_size || out_size > ceil_size)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out %s %d is outside [%lld, %lld] (floor, ceil mode) from in "
                            "%d, kernel %d, stride %d, pad %d+%d, dilation %d",
                            op, axis, (int)out_size, (long long)floor_size,
                            (long long)ceil_size, (int)in_size, (int)kernel, (int)stride,
                            (int)pad_a, (int)pad_b, (int)dilation);
  if (p->kind == SOPHON_POOL_AVG) {
    for (i = 0; i < out_size; ++i) {
      const int64_t origin = (int64_t)i * stride - pad_a;
      if (sophon_first_tap(origin, dilation) >=
          sophon_end_tap(origin, dilation, in_size, kernel))
        return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                                "%s: AVG window %d along %s covers padding only (no input tap "
                                "to average)",
                                op, (int)i, axis);
    }
  }
  return SOPHON_OK;
}

sophon_status sophon_tiu_pool2d_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_pool_params* p,
                                     int32_t act_min, int32_t act_max) {
  static const char* op = "tiu_pool2d_int8";
  sophon_status s;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if ((s = check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = check_dtype(dev, op, "in", in, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_pool_params(dev, op, p)) != SOPHON_OK) return s;
  if (p->kind == SOPHON_POOL_AVG && p->count_include_pad)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: int8 AVG divides by the in-bounds taps only "
                            "(count_include_pad 0, as TFLite); padding taps would need the "
                            "input zero point",
                            op);
  if ((int64_t)p->kernel_h * p->kernel_w > INT8_MAX_POOL_TAPS)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: kernel %dx%d has more than %d taps, the most an int32 "
                            "average accumulator is checked for",
                            op, (int)p->kernel_h, (int)p->kernel_w, INT8_MAX_POOL_TAPS);
  if ((s = check_clamp(dev, op, act_min, act_max)) != SOPHON_OK) return s;
  if (out->n != in->n || out->c != in->c)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out shape (%d,%d,%d,%d) does not keep in's n=%d, c=%d", op,
                            (int)out->n, (int)out->c, (int)out->h, (int)out->w, (int)in->n,
                            (int)in->c);
  if ((s = check_pool_axis(dev, op, "h", p, out->h, in->h, p->pad_top, p->pad_bottom,
                           p->kernel_h, p->stride_h, p->dilation_h)) != SOPHON_OK)
    return s;
  if ((s = check_pool_axis(dev, op, "w", p, out->w, in->w, p->pad_left, p->pad_right,
                           p->kernel_w, p->stride_w, p->dilation_w)) != SOPHON_OK)
    return s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint(dev, op, out, "in", in)) != SOPHON_OK) return s;

  if (dev->reference || sophon_fast_pool2d_int8(dev, out, in, p, act_min, act_max) != 0)
    pool2d_int8_kernel(dev, out, in, p, act_min, act_max);

  sophon_count_tiu(dev, sophon_cost_pool2d(&dev->chip, out, p), 0);
  sophon_touch(dev, out);
  sophon_touch(dev, in);
  return SOPHON_OK;
}
