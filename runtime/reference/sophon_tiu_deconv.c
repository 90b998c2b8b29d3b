/*
 * sophon_tiu_deconv.c - TIU transposed convolution (conv2d_transpose), f32.
 *
 * Written as a gather, one output pixel at a time, so that every output element
 * has one fixed accumulation order (in_channel, filter_y, filter_x, as conv2d) and
 * a band of output rows can be computed from the band of input rows that reaches
 * it. Output row oy receives input row iy through filter row ky when
 *   iy * stride_h - pad_top + ky * dilation_h == oy,
 * likewise along w; out's size says where the output ends (TVM's output_padding
 * are the rows past the last input's reach: they get the bias alone).
 */
#include "reference/sophon_reference.h"
#include "reference/sophon_tiu_activation.h"

int64_t sophon_deconv_source(int64_t out_index, int32_t pad, int32_t tap, int32_t dilation,
                             int32_t stride, int32_t in_size) {
  const int64_t t = out_index + pad - (int64_t)tap * dilation;
  if (t < 0 || t % stride != 0 || t / stride >= in_size) return -1;
  return t / stride;
}

void sophon_ref_conv2d_transpose_f32(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias, const sophon_conv_params* p) {
  sophon_view out_v, in_v, weight_v, bias_v;
  const int32_t in_c_per_group = in->c / p->groups;
  const int32_t out_c_per_group = out->c / p->groups;
  const int32_t kernel_h = p->kernel_h, kernel_w = p->kernel_w;
  const int64_t filter_floats = (int64_t)kernel_h * kernel_w;
  int32_t batch, out_channel, out_y, out_x, in_channel, filter_y, filter_x;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  sophon_view_init(&weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&bias_v, dev, bias);

  for (batch = 0; batch < out->n; ++batch) {
    for (out_channel = 0; out_channel < out->c; ++out_channel) {
      const int32_t group = out_channel / out_c_per_group;
      const int32_t out_in_group = out_channel % out_c_per_group;
      const float bias_value = bias != NULL ? *sophon_view_f32(&bias_v, 0, out_channel) : 0.0f;
      float* out_data = sophon_view_f32(&out_v, batch, out_channel);

      for (out_y = 0; out_y < out->h; ++out_y) {
        for (out_x = 0; out_x < out->w; ++out_x) {
          float acc = 0.0f;
          for (in_channel = group * in_c_per_group; in_channel < (group + 1) * in_c_per_group;
               ++in_channel) {
            const float* in_data = sophon_view_f32(&in_v, batch, in_channel);
            /* weight (1, IC, OC/groups, KH*KW): input channel in_channel's filter
               towards this output channel, [ky][kx] */
            const float* filter =
                sophon_view_f32(&weight_v, 0, in_channel) + out_in_group * filter_floats;
            for (filter_y = 0; filter_y < kernel_h; ++filter_y) {
              const int64_t in_y = sophon_deconv_source(out_y, p->pad_top, filter_y, p->dilation_h,
                                                 p->stride_h, in->h);
              if (in_y < 0) continue;
              for (filter_x = 0; filter_x < kernel_w; ++filter_x) {
                const int64_t in_x = sophon_deconv_source(out_x, p->pad_left, filter_x, p->dilation_w,
                                                   p->stride_w, in->w);
                if (in_x < 0) continue;
                acc += in_data[in_y * in->w + in_x] * filter[filter_y * kernel_w + filter_x];
              }
            }
          }
          out_data[(int64_t)out_y * out->w + out_x] = sophon_activate_f32(&p->act, acc + bias_value);
        }
      }
    }
  }
}

/* Taps (output index, filter tap) that land along one axis. */
static uint64_t deconv_axis_taps(int32_t out_size, int32_t pad, int32_t kernel, int32_t dilation,
                                 int32_t stride, int32_t in_size) {
  uint64_t taps = 0;
  int32_t x, k;
  for (x = 0; x < out_size; ++x)
    for (k = 0; k < kernel; ++k)
      if (sophon_deconv_source(x, pad, k, dilation, stride, in_size) >= 0) ++taps;
  return taps;
}

uint64_t sophon_conv2d_transpose_macs(const sophon_local* out, const sophon_local* in,
                                      const sophon_conv_params* p) {
  return (uint64_t)out->n * (uint64_t)out->c * (uint64_t)(in->c / p->groups) *
         deconv_axis_taps(out->h, p->pad_top, p->kernel_h, p->dilation_h, p->stride_h, in->h) *
         deconv_axis_taps(out->w, p->pad_left, p->kernel_w, p->dilation_w, p->stride_w, in->w);
}

sophon_status sophon_check_conv2d_transpose_shapes(sophon_device* dev, const char* op,
                                                  const sophon_local* out, const sophon_local* in,
                                                  const sophon_local* weight,
                                                  const sophon_local* bias,
                                                  const sophon_conv_params* p) {
  if (p == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params are NULL", op);
  if (p->kernel_h <= 0 || p->kernel_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
      p->dilation_h <= 0 || p->dilation_w <= 0 || p->groups <= 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: kernel %dx%d, stride %dx%d, dilation %dx%d and groups %d "
                            "must be positive",
                            op, (int)p->kernel_h, (int)p->kernel_w, (int)p->stride_h,
                            (int)p->stride_w, (int)p->dilation_h, (int)p->dilation_w,
                            (int)p->groups);
  if (p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom != 0 || p->pad_right != 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: padding (top %d, left %d, bottom %d, right %d): top and left "
                            "must be >= 0, bottom and right 0 (out's size sets the end)",
                            op, (int)p->pad_top, (int)p->pad_left, (int)p->pad_bottom,
                            (int)p->pad_right);
  if (in->c % p->groups != 0 || out->c % p->groups != 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: groups %d does not divide in.c %d and out.c %d", op,
                            (int)p->groups, (int)in->c, (int)out->c);
  if (out->n != in->n)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: out.n %d differs from in.n %d", op,
                            (int)out->n, (int)in->n);
  if (weight->layout != SOPHON_LAYOUT_COMPACT)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: weight must be COMPACT", op);
  if (weight->n != 1 || weight->c != in->c || weight->h != out->c / p->groups ||
      (int64_t)weight->w != (int64_t)p->kernel_h * p->kernel_w)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: weight shape (%d,%d,%d,%d) does not match (1, in.c=%d, "
                            "out.c/groups=%d, kernel %dx%d)",
                            op, (int)weight->n, (int)weight->c, (int)weight->h, (int)weight->w,
                            (int)in->c, (int)(out->c / p->groups), (int)p->kernel_h,
                            (int)p->kernel_w);
  return sophon_check_bias_shape(dev, op, bias, out->c);
}

/* tiu_conv2d_transpose's checks (operands: out, a = in, b = weight, c = bias or NULL,
 * conv); the instruction table (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_conv2d_transpose(sophon_device* dev, const char* op,
                                                const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a, *weight = o->b, *bias = o->c;
  const sophon_conv_params* p = o->conv;
  sophon_status s;

  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "weight", weight)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_local(dev, op, "bias", bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_conv2d_transpose_shapes(dev, op, out, in, weight, bias, p)) != SOPHON_OK)
    return s;
  if ((s = sophon_check_activation(dev, op, &p->act)) != SOPHON_OK) return s;
  return sophon_check_conv_operands(dev, op, out, in, weight, bias);
}
