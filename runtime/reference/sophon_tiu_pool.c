/*
 * sophon_tiu_pool.c - TIU max / average pool2d.
 *
 * Windows are clipped to the padded input (ceil mode may ask for one more output
 * row/column than the floor formula). MAX reads real input taps only; a window
 * with no real tap gives -FLT_MAX (TVM's max-pool pad value). AVG sums real taps
 * in filter_y, filter_x order and divides by the taps inside the padded input
 * (count_include_pad = 1) or inside the real input (0); a zero divisor gives 0.
 *
 * The f32 kernel here is the specification; fast/sophon_fast_eltwise.c holds a fast
 * twin with bit-identical results, used unless the device is in reference mode.
 */
#include <float.h>
#include <math.h>

#include "reference/sophon_reference.h"

void sophon_ref_pool2d_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_pool_params* p) {
  sophon_plane_walk walk;
  const int32_t dilation_h = p->dilation_h, dilation_w = p->dilation_w;
  const int32_t in_w = in->w;
  const int64_t padded_h = (int64_t)in->h + p->pad_top + p->pad_bottom;
  const int64_t padded_w = (int64_t)in->w + p->pad_left + p->pad_right;
  int32_t out_y, out_x, filter_y, filter_x;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const float* in_data = (const float*)(const void*)walk.in.base;
    float* out_data = (float*)(void*)walk.out.base;

    for (out_y = 0; out_y < out->h; ++out_y) {
      const int64_t in_y_origin = (int64_t)out_y * p->stride_h - p->pad_top;
      const int32_t filter_y_begin = sophon_first_tap(in_y_origin, dilation_h);
      const int32_t filter_y_end = sophon_end_tap(in_y_origin, dilation_h, in->h, p->kernel_h);
      /* taps inside the padded input start at 0: windows never start left of it */
      const int32_t padded_rows =
          sophon_end_tap(in_y_origin + p->pad_top, dilation_h, padded_h, p->kernel_h);
      const int32_t real_rows = filter_y_end > filter_y_begin ? filter_y_end - filter_y_begin : 0;

      for (out_x = 0; out_x < out->w; ++out_x) {
        const int64_t in_x_origin = (int64_t)out_x * p->stride_w - p->pad_left;
        const int32_t filter_x_begin = sophon_first_tap(in_x_origin, dilation_w);
        const int32_t filter_x_end = sophon_end_tap(in_x_origin, dilation_w, in_w, p->kernel_w);
        const int32_t padded_cols =
            sophon_end_tap(in_x_origin + p->pad_left, dilation_w, padded_w, p->kernel_w);
        const int32_t real_cols =
            filter_x_end > filter_x_begin ? filter_x_end - filter_x_begin : 0;
        float result;

        if (p->kind == SOPHON_POOL_MAX) {
          float max_value = -INFINITY;
          for (filter_y = filter_y_begin; filter_y < filter_y_end; ++filter_y) {
            const float* in_row =
                in_data + (in_y_origin + (int64_t)filter_y * dilation_h) * in_w;
            for (filter_x = filter_x_begin; filter_x < filter_x_end; ++filter_x) {
              const float v = in_row[in_x_origin + (int64_t)filter_x * dilation_w];
              if (v > max_value || v != v) max_value = v; /* a NaN tap wins, and stays */
            }
          }
          result = real_rows * real_cols > 0 ? max_value : -FLT_MAX;
        } else {
          const int64_t divisor = p->count_include_pad
                                      ? (int64_t)padded_rows * padded_cols
                                      : (int64_t)real_rows * real_cols;
          float sum = 0.0f;
          for (filter_y = filter_y_begin; filter_y < filter_y_end; ++filter_y) {
            const float* in_row =
                in_data + (in_y_origin + (int64_t)filter_y * dilation_h) * in_w;
            for (filter_x = filter_x_begin; filter_x < filter_x_end; ++filter_x) {
              sum += in_row[in_x_origin + (int64_t)filter_x * dilation_w];
            }
          }
          result = divisor > 0 ? sum / (float)divisor : 0.0f;
        }
        out_data[(int64_t)out_y * out->w + out_x] = result;
      }
    }
  }
}

sophon_status sophon_check_pool_axis(sophon_device* dev, const char* op, const char* axis,
                                    int32_t out_size, int32_t in_size, int32_t pad_a,
                                    int32_t pad_b, int32_t kernel, int32_t stride,
                                    int32_t dilation) {
  const int64_t padded = (int64_t)in_size + pad_a + pad_b;
  const int64_t span = padded - (int64_t)dilation * (kernel - 1) - 1;
  int64_t floor_size, ceil_size;
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
  return SOPHON_OK;
}

/* pool2d's parameter rules (sophon.h), shared by the float and the int8 instruction. */
sophon_status sophon_check_pool_params(sophon_device* dev, const char* op,
                                       const sophon_pool_params* p) {
  if (p == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params are NULL", op);
  if (p->kind != SOPHON_POOL_MAX && p->kind != SOPHON_POOL_AVG)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown pool kind %d", op,
                            (int)p->kind);
  if (p->kernel_h <= 0 || p->kernel_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
      p->dilation_h <= 0 || p->dilation_w <= 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: kernel %dx%d, stride %dx%d and dilation %dx%d must be positive",
                            op, (int)p->kernel_h, (int)p->kernel_w, (int)p->stride_h,
                            (int)p->stride_w, (int)p->dilation_h, (int)p->dilation_w);
  if (p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: padding (top %d, left %d, bottom %d, right %d) is negative",
                            op, (int)p->pad_top, (int)p->pad_left, (int)p->pad_bottom,
                            (int)p->pad_right);
  if (p->count_include_pad != 0 && p->count_include_pad != 1)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: count_include_pad %d is not 0 or 1",
                            op, (int)p->count_include_pad);
  return SOPHON_OK;
}

/* tiu_pool2d's checks (operands: out, a = in, pool); the instruction table
 * (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_pool2d(sophon_device* dev, const char* op,
                                      const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  const sophon_pool_params* p = o->pool;
  sophon_status s;

  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_pool_params(dev, op, p)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, "in", in, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_tiu_dtype(dev, op, in->dtype)) != SOPHON_OK) return s;
  if (out->n != in->n || out->c != in->c)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out shape (%d,%d,%d,%d) does not keep in's n=%d, c=%d", op,
                            (int)out->n, (int)out->c, (int)out->h, (int)out->w, (int)in->n,
                            (int)in->c);
  if ((s = sophon_check_pool_axis(dev, op, "h", out->h, in->h, p->pad_top, p->pad_bottom,
                           p->kernel_h, p->stride_h, p->dilation_h)) != SOPHON_OK)
    return s;
  if ((s = sophon_check_pool_axis(dev, op, "w", out->w, in->w, p->pad_left, p->pad_right,
                           p->kernel_w, p->stride_w, p->dilation_w)) != SOPHON_OK)
    return s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint(dev, op, out, "in", in)) != SOPHON_OK) return s;

  return SOPHON_OK;
}
