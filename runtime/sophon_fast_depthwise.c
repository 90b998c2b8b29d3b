/*
 * sophon_fast_depthwise.c - fast f32 depthwise conv2d (one input and one output
 * channel per group), beside the reference kernel of sophon_tiu_conv.c.
 *
 * Direct, row by row: each output row accumulates its taps in the reference's
 * order (filter_y, filter_x) with the same roundings (a multiply, then an add),
 * so results are bit-identical to the reference. Tasks own channels.
 */
#include "sophon_fast.h"

typedef struct {
  sophon_view out_v, in_v, weight_v, bias_v;
  int has_bias;
  const sophon_conv_params* p;
  int32_t batches, channels, in_h, in_w, out_h, out_w;
  int use_avx2;
} conv_depthwise;

/* out_row[ox] += w * in_row[ox * sw + offset] for the ox whose tap is inside the row. */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline void depthwise_row(float* restrict out_row, const float* restrict in_row,
                                 int32_t out_w, int32_t in_w, int32_t sw, int64_t offset,
                                 float w) {
  const int32_t lo = sophon_first_tap(offset, sw);
  const int32_t hi = sophon_end_tap(offset, sw, in_w, out_w);
  int32_t ox;
  if (sw == 1) {
    for (ox = lo; ox < hi; ++ox) out_row[ox] += w * in_row[ox + offset];
  } else {
    for (ox = lo; ox < hi; ++ox) out_row[ox] += w * in_row[(int64_t)ox * sw + offset];
  }
}

/* One output channel, taps in the reference's order (filter_y, filter_x). */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline void depthwise_channel(const conv_depthwise* d, int32_t batch, int32_t channel) {
  const sophon_conv_params* p = d->p;
  const float* in = sophon_view_f32(&d->in_v, batch, channel);
  const float* filter = sophon_view_f32(&d->weight_v, 0, channel);
  float* out = sophon_view_f32(&d->out_v, batch, channel);
  const float bias = d->has_bias ? *sophon_view_f32(&d->bias_v, 0, channel) : 0.0f;
  int32_t oy, ky, kx, ox;
  for (oy = 0; oy < d->out_h; ++oy) {
    const int64_t iy0 = (int64_t)oy * p->stride_h - p->pad_top;
    const int32_t ky_begin = sophon_first_tap(iy0, p->dilation_h);
    const int32_t ky_end = sophon_end_tap(iy0, p->dilation_h, d->in_h, p->kernel_h);
    float* out_row = out + (int64_t)oy * d->out_w;
    for (ox = 0; ox < d->out_w; ++ox) out_row[ox] = 0.0f;
    for (ky = ky_begin; ky < ky_end; ++ky) {
      const float* in_row = in + (iy0 + (int64_t)ky * p->dilation_h) * d->in_w;
      for (kx = 0; kx < p->kernel_w; ++kx)
        depthwise_row(out_row, in_row, d->out_w, d->in_w, p->stride_w,
                      (int64_t)kx * p->dilation_w - p->pad_left,
                      filter[(int64_t)ky * p->kernel_w + kx]);
    }
  }
  sophon_finish_f32(out, (int64_t)d->out_h * d->out_w, bias, &p->act);
}

static void depthwise_channel_c(const conv_depthwise* d, int32_t batch, int32_t channel) {
  depthwise_channel(d, batch, channel);
}

#if SOPHON_X86_DISPATCH
SOPHON_AVX2 static void depthwise_channel_avx2(const conv_depthwise* d, int32_t batch,
                                               int32_t channel) {
  depthwise_channel(d, batch, channel);
}
#endif

static void depthwise_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_depthwise* d = (const conv_depthwise*)ctx;
  int64_t begin, end, channel;
  int32_t batch;
  sophon_task_range(d->channels, task, tasks, &begin, &end);
  for (batch = 0; batch < d->batches; ++batch) {
    for (channel = begin; channel < end; ++channel) {
#if SOPHON_X86_DISPATCH
      if (d->use_avx2) {
        depthwise_channel_avx2(d, batch, (int32_t)channel);
        continue;
      }
#endif
      depthwise_channel_c(d, batch, (int32_t)channel);
    }
  }
}

void sophon_fast_depthwise_f32(sophon_device* dev, const sophon_local* out,
                             const sophon_local* in, const sophon_local* weight,
                             const sophon_local* bias, const sophon_conv_params* p) {
  conv_depthwise d;
  const uint64_t macs = (uint64_t)out->n * (uint64_t)out->c * (uint64_t)out->h *
                        (uint64_t)out->w * (uint64_t)p->kernel_h * (uint64_t)p->kernel_w;
  sophon_view_init(&d.out_v, dev, out);
  sophon_view_init(&d.in_v, dev, in);
  sophon_view_init(&d.weight_v, dev, weight);
  d.has_bias = bias != NULL;
  if (bias != NULL) sophon_view_init(&d.bias_v, dev, bias);
  d.p = p;
  d.batches = out->n;
  d.channels = out->c;
  d.in_h = in->h;
  d.in_w = in->w;
  d.out_h = out->h;
  d.out_w = out->w;
  d.use_avx2 = dev->cpu_avx2;
  sophon_parallel_run(dev->pool, sophon_tasks_for(dev, macs, out->c), depthwise_task, &d);
}
