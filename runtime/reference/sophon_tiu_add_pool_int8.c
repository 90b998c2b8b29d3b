/*
 * sophon_tiu_add_pool_int8.c - the TIU's INT8 ADD and pool2d (sophon_quant.h),
 * bit-exact with TFLite's reference kernels (reference/integer_ops/add.h,
 * pooling.h). Their fast twins are in fast/sophon_fast_int8_eltwise.c; the INT8
 * checks they share with conv2d and fc are in sophon_tiu_conv_int8.c.
 */
#include <float.h>
#include <math.h>

#include "reference/sophon_reference.h"
#include "sophon_quant.h"

/* TFLite ADD: (x - zero_point) in [-255, 255] times 2^left_shift, two of them
 * summed after a multiply that cannot grow them: 2 * 255 * 2^22 < 2^31. */
#define INT8_MAX_ADD_LEFT_SHIFT 22

/* An avg-pool sum of T int8 taps is within [-128 T, 127 T]; with the rounding
 * term (T / 2) it stays within int32 while 128.5 T < 2^31: T <= 2^23 is ample. */
#define INT8_MAX_POOL_TAPS (1 << 23)

/* ------------------------------------------------------------------- add */

/* TFLite's AddFunc for one element pair. Bounds, from the checks (zero points
 * in [-128, 127], left_shift <= 22, |multipliers| < 2^31 (input2's is negative
 * for SUB), shifts <= 0):
 *   x - zero_point in [-255, 255]; shifted by 2^22 at most: |.| <= 255 * 2^22;
 *   a multiply by multiplier / 2^31 < 1 and a rounding right shift never grow a
 *   magnitude, so |sum| <= 2 * 255 * 2^22 = 2139095040 < 2^31, and so is the
 *   rescaled output; + output_zero_point stays below 2^31 as well. */
static int8_t add_int8_element(int32_t x, int32_t y, const void* params) {
  const sophon_add_int8_params* p = (const sophon_add_int8_params*)params;
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

void sophon_ref_add_int8(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                         const sophon_local* b, const sophon_add_int8_params* p) {
  sophon_ref_int8_broadcast(dev, out, a, b, add_int8_element, p);
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
  if ((s = sophon_check_int8_value(dev, op, "input1_zero_point", p->input1_zero_point)) !=
      SOPHON_OK)
    return s;
  if ((s = sophon_check_int8_value(dev, op, "input2_zero_point", p->input2_zero_point)) !=
      SOPHON_OK)
    return s;
  if ((s = sophon_check_int8_value(dev, op, "output_zero_point", p->output_zero_point)) !=
      SOPHON_OK)
    return s;
  /* MultiplyByQuantizedMultiplierSmallerThanOneExp: shifts in [-31, 0] */
  if ((s = sophon_check_multiplier(dev, op, "input1", -1, p->input1_multiplier, p->input1_shift,
                                    -31, 0)) != SOPHON_OK)
    return s;
  /* a negative input2 multiplier makes the instruction TFLite's SUB (sub.cc negates
   * it and runs the ADD kernel); its magnitude follows the same rule */
  if (p->input2_multiplier == INT32_MIN)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: input2 multiplier is INT32_MIN", op);
  if ((s = sophon_check_multiplier(dev, op, "input2", -1,
                                    p->input2_multiplier < 0 ? -p->input2_multiplier
                                                             : p->input2_multiplier,
                                    p->input2_shift, -31, 0)) != SOPHON_OK)
    return s;
  if ((s = sophon_check_multiplier(dev, op, "output", -1, p->output_multiplier, p->output_shift,
                                    -31, 0)) != SOPHON_OK)
    return s;
  return sophon_check_clamp(dev, op, p->act_min, p->act_max);
}

sophon_status sophon_check_int8_broadcast_operands(sophon_device* dev, const char* op,
                                                   const sophon_operands* o) {
  const sophon_local *out = o->out, *a = o->a, *b = o->b;
  sophon_status s;

  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "b", b)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "a", a, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "b", b, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_broadcast(dev, op, "a", a, out)) != SOPHON_OK) return s;
  if ((s = sophon_check_broadcast(dev, op, "b", b, out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "b", b)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint_or_same(dev, op, out, "a", a)) != SOPHON_OK) return s;
  return sophon_check_disjoint_or_same(dev, op, out, "b", b);
}

/* tiu_add_int8's checks (operands: out, a, b, add); the instruction table
 * (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_add_int8(sophon_device* dev, const char* op,
                                        const sophon_operands* o) {
  const sophon_status s = sophon_check_int8_broadcast_operands(dev, op, o);
  return s != SOPHON_OK ? s : check_add_params(dev, op, o->add);
}

/* ---------------------------------------------------------------- pool2d */

/* onnxruntime's QLinearAveragePool of one window (taps [filter_*_begin, filter_*_end)
 * of the window at in_*_origin): the taps dequantized, (q - zero point) * scale, and
 * summed in f32 row by row, divided by the window's size (count_include_pad) or its
 * in-bounds taps, then round_half_even(average / output_scale + output_zero_point),
 * saturated. Padding adds nothing. Dilation is 1 (checked). */
static int32_t qlinear_average(const sophon_pool_params* p, const int8_t* in_data, int32_t in_w,
                               int64_t in_y_origin, int64_t in_x_origin, int32_t filter_y_begin,
                               int32_t filter_y_end, int32_t filter_x_begin,
                               int32_t filter_x_end) {
  const int32_t count = p->count_include_pad ? p->kernel_h * p->kernel_w
                                             : (filter_y_end - filter_y_begin) *
                                                   (filter_x_end - filter_x_begin);
  float sum = 0.0f, q;
  int32_t filter_y, filter_x;
  for (filter_y = filter_y_begin; filter_y < filter_y_end; ++filter_y) {
    const int8_t* in_row = in_data + (in_y_origin + filter_y) * in_w;
    for (filter_x = filter_x_begin; filter_x < filter_x_end; ++filter_x)
      sum += p->input_scale * (float)((int32_t)in_row[in_x_origin + filter_x] - p->input_zero_point);
  }
  q = nearbyintf(sum / (float)count / p->output_scale + (float)p->output_zero_point);
  return q < -128.0f ? -128 : (q > 127.0f ? 127 : (int32_t)q);
}

void sophon_ref_pool2d_int8(sophon_device* dev, const sophon_local* out,
                            const sophon_local* in, const sophon_pool_params* p,
                            int32_t act_min, int32_t act_max) {
  sophon_plane_walk walk;
  const int32_t dilation_h = p->dilation_h, dilation_w = p->dilation_w;
  const int32_t in_w = in->w;
  int32_t out_y, out_x, filter_y, filter_x;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const int8_t* in_data = (const int8_t*)walk.in.base;
    int8_t* out_data = (int8_t*)walk.out.base;

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
        } else if (p->arithmetic == SOPHON_INT8_ONNXRUNTIME) {
          result = qlinear_average(p, in_data, in_w, in_y_origin, in_x_origin, filter_y_begin,
                                   filter_y_end, filter_x_begin, filter_x_end);
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
  }
}

/* sophon_check_pool_axis (the rules of sophon_tiu_pool2d), and for AVG also that
 * every window has a real tap (TFLite fails an average over no input). */
static sophon_status check_pool_axis(sophon_device* dev, const char* op, const char* axis,
                                     const sophon_pool_params* p, int32_t out_size,
                                     int32_t in_size, int32_t pad_a, int32_t pad_b,
                                     int32_t kernel, int32_t stride, int32_t dilation) {
  int32_t i;
  const sophon_status s = sophon_check_pool_axis(dev, op, axis, out_size, in_size, pad_a, pad_b,
                                                 kernel, stride, dilation);
  if (s != SOPHON_OK) return s;
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

sophon_status sophon_check_onnxruntime_quantization(sophon_device* dev, const char* op,
                                                    float input_scale, int32_t input_zero_point,
                                                    float output_scale,
                                                    int32_t output_zero_point) {
  if (!(input_scale > 0.0f && input_scale <= FLT_MAX) ||
      !(output_scale > 0.0f && output_scale <= FLT_MAX))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: scales %g and %g must be finite and positive", op,
                            (double)input_scale, (double)output_scale);
  if (input_zero_point < -128 || input_zero_point > 127 || output_zero_point < -128 ||
      output_zero_point > 127)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: zero points %d and %d outside int8", op,
                            (int)input_zero_point, (int)output_zero_point);
  return SOPHON_OK;
}

/* onnxruntime's average (qlinear_average): dilation 1, then its quantization. */
static sophon_status check_qlinear_average(sophon_device* dev, const char* op,
                                           const sophon_pool_params* p) {
  if (p->dilation_h != 1 || p->dilation_w != 1)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: onnxruntime's int8 average pool has no dilation (%d, %d)", op,
                            (int)p->dilation_h, (int)p->dilation_w);
  return sophon_check_onnxruntime_quantization(dev, op, p->input_scale, p->input_zero_point,
                                               p->output_scale, p->output_zero_point);
}

/* tiu_pool2d_int8's checks (operands: out, a = in, pool, act_min, act_max); the
 * instruction table (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_pool2d_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  const sophon_pool_params* p = o->pool;
  const int32_t act_min = o->act_min, act_max = o->act_max;
  sophon_status s;

  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "in", in, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_pool_params(dev, op, p)) != SOPHON_OK) return s;
  if (p->kind == SOPHON_POOL_AVG && p->arithmetic == SOPHON_INT8_ONNXRUNTIME) {
    if ((s = check_qlinear_average(dev, op, p)) != SOPHON_OK) return s;
  } else if (p->kind == SOPHON_POOL_AVG && p->arithmetic != SOPHON_INT8_TFLITE) {
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown arithmetic %d", op,
                            (int)p->arithmetic);
  } else if (p->kind == SOPHON_POOL_AVG && p->count_include_pad)
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
  if ((s = sophon_check_clamp(dev, op, act_min, act_max)) != SOPHON_OK) return s;
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

  return SOPHON_OK;
}
