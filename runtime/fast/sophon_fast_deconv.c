/*
 * sophon_fast_deconv.c - the fast twin of the reference transposed convolution
 * (reference/sophon_tiu_deconv.c), bit-identical to it.
 *
 * The reference gathers per output pixel and tests every (input channel, filter
 * tap) for whether it lands: KH*KW tests per MAC at stride 2 with a 2x2 kernel,
 * and about 90x slower than the fast conv on a U-Net decoder layer. This kernel
 * keeps one output row in scratch and, for each input channel and each filter row
 * that lands on it, walks the input row and adds each product to the one output
 * column it lands on. Every output element still receives its terms in the
 * reference's order (input channel, then filter_y, then filter_x; one term per
 * triple), from 0, then the bias, then the activation, with the same f32
 * operations, so the results are the same bits. Plain C, one thread.
 */
#include "fast/sophon_fast.h"

#include <string.h>

int sophon_fast_conv2d_transpose_f32(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias, const sophon_conv_params* p) {
  sophon_view out_v, in_v, weight_v, bias_v;
  const int32_t in_c_per_group = in->c / p->groups;
  const int32_t out_c_per_group = out->c / p->groups;
  const int32_t kernel_h = p->kernel_h, kernel_w = p->kernel_w;
  const int64_t filter_floats = (int64_t)kernel_h * kernel_w;
  float* acc = sophon_device_scratch(dev, (size_t)out->w);
  int32_t batch, out_channel, out_y, in_channel, filter_y, filter_x, in_x;

  if (acc == NULL) return -1;
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
        int32_t out_x;
        memset(acc, 0, (size_t)out->w * sizeof(float));
        for (in_channel = group * in_c_per_group; in_channel < (group + 1) * in_c_per_group;
             ++in_channel) {
          const float* in_data = sophon_view_f32(&in_v, batch, in_channel);
          const float* filter =
              sophon_view_f32(&weight_v, 0, in_channel) + out_in_group * filter_floats;
          for (filter_y = 0; filter_y < kernel_h; ++filter_y) {
            const int64_t t = (int64_t)out_y + p->pad_top - (int64_t)filter_y * p->dilation_h;
            const float* in_row;
            if (t < 0 || t % p->stride_h != 0 || t / p->stride_h >= in->h) continue;
            in_row = in_data + (t / p->stride_h) * in->w;
            for (filter_x = 0; filter_x < kernel_w; ++filter_x) {
              const float w = filter[filter_y * kernel_w + filter_x];
              /* input column in_x lands on out_x = in_x*sw - pl + filter_x*dw */
              const int64_t offset = (int64_t)filter_x * p->dilation_w - p->pad_left;
              for (in_x = 0; in_x < in->w; ++in_x) {
                const int64_t x = (int64_t)in_x * p->stride_w + offset;
                if (x >= 0 && x < out->w) acc[x] += in_row[in_x] * w;
              }
            }
          }
        }
        for (out_x = 0; out_x < out->w; ++out_x)
          out_data[(int64_t)out_y * out->w + out_x] =
              sophon_activate_f32(&p->act, acc[out_x] + bias_value);
      }
    }
  }
  return 0;
}
