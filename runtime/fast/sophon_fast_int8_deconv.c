/*
 * sophon_fast_int8_deconv.c - the fast twin of the reference int8 transposed
 * convolution (sophon_ref_conv2d_transpose_int8, reference/sophon_tiu_conv_int8.c),
 * bit-identical to it.
 *
 * The reference gathers per output element and tests every (input channel, filter
 * tap) for whether it lands. This kernel, like the f32 one (sophon_fast_deconv.c),
 * keeps one output row of int32 sums in scratch and, for each input channel and each
 * filter row that lands on that output row, walks the input row and adds each
 * product (in - input_zero_point) * w to the one output column it lands on; then
 * + bias (saturated), the requantization of q->rounding (TFLite's fixed point or
 * onnxruntime's float32 rounding; other roundings are declined) and the clamp, as
 * the reference. Every output receives the same integer terms as in the reference;
 * each is within +-32640 and there are at most the checked reduction bound of them,
 * so every partial sum, in any order, is exact in int32, and the sums, hence the
 * outputs, are the reference's bit for bit. Tasks own (batch item, output channel)
 * planes; the row loop is compiled as it is and for AVX2 (the compiler vectorises
 * the stride-1 row).
 */
#include "fast/sophon_fast.h"

#include "reference/sophon_reference.h"
#include "sophon_quant.h"

typedef struct {
  sophon_view out_v, in_v, weight_v, bias_v;
  const sophon_local *out, *in;
  const sophon_local* bias;
  const sophon_conv_params* p;
  const sophon_requant* q;
  int32_t in_c_per_group, out_c_per_group;
  int32_t* rows; /* per task: out->w sums */
  int use_avx2;
} deconv_job;

/* acc[x * stride + offset] += (in[x] - zp) * w for the x with 0 <= x * stride + offset <
 * out_w, x < in_w. */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline void scatter_row_body(int32_t* restrict acc, int32_t out_w, const int8_t* restrict in,
                                    int32_t in_w, int32_t stride, int64_t offset, int32_t zp,
                                    int32_t w) {
  /* the x with x * stride + offset inside [0, out_w): [first, end) */
  const int32_t first = sophon_first_tap(offset, stride);
  const int32_t end = sophon_end_tap(offset, stride, out_w, in_w);
  int32_t x;
  if (stride == 1) {
    int32_t* dst = acc + offset;
    for (x = first; x < end; ++x) dst[x] += (in[x] - zp) * w;
  } else {
    for (x = first; x < end; ++x) acc[(int64_t)x * stride + offset] += (in[x] - zp) * w;
  }
}

static void scatter_row_c(int32_t* acc, int32_t out_w, const int8_t* in, int32_t in_w,
                          int32_t stride, int64_t offset, int32_t zp, int32_t w) {
  scatter_row_body(acc, out_w, in, in_w, stride, offset, zp, w);
}

#if SOPHON_X86_DISPATCH
SOPHON_AVX2 static void scatter_row_avx2(int32_t* acc, int32_t out_w, const int8_t* in,
                                         int32_t in_w, int32_t stride, int64_t offset, int32_t zp,
                                         int32_t w) {
  scatter_row_body(acc, out_w, in, in_w, stride, offset, zp, w);
}
#endif

/* The reference's requantize(saturate(acc + bias)) for output channel `channel`. */
static int8_t requantize_one(int32_t acc, int32_t bias, int32_t channel, const sophon_requant* q) {
  const int64_t sum = (int64_t)acc + bias;
  const int32_t sat = sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : (int32_t)sum);
  const int32_t scaled =
      q->rounding == SOPHON_REQUANT_FLOAT32
          ? sophon_multiply_by_float_scale(sat, (float)q->scale[channel])
          : sophon_mbqm_inline(sat, q->multiplier[channel], q->shift[channel]);
  const int64_t value = (int64_t)scaled + q->output_zero_point;
  return (int8_t)(value < q->act_min ? q->act_min : (value > q->act_max ? q->act_max : value));
}

static void deconv_task(void* ctx, int32_t task, int32_t tasks) {
  const deconv_job* j = (const deconv_job*)ctx;
  const sophon_conv_params* p = j->p;
  const int32_t out_w = j->out->w, in_w = j->in->w, kernel_h = p->kernel_h, kernel_w = p->kernel_w;
  const int64_t filter_size = (int64_t)kernel_h * kernel_w;
  int32_t* acc = j->rows + (int64_t)task * out_w;
  int64_t begin, end, item;
  sophon_task_range((int64_t)j->out->n * j->out->c, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t batch = (int32_t)(item / j->out->c), out_channel = (int32_t)(item % j->out->c);
    const int32_t group = out_channel / j->out_c_per_group;
    const int32_t out_in_group = out_channel % j->out_c_per_group;
    const int32_t bias = j->bias != NULL ? *sophon_view_i32(&j->bias_v, 0, out_channel) : 0;
    const int32_t channel = j->q->per_channel ? out_channel : 0;
    int8_t* out_data = sophon_view_i8(&j->out_v, batch, out_channel);
    int32_t out_y, out_x, in_channel, filter_y, filter_x;
    for (out_y = 0; out_y < j->out->h; ++out_y) {
      for (out_x = 0; out_x < out_w; ++out_x) acc[out_x] = 0;
      for (in_channel = group * j->in_c_per_group; in_channel < (group + 1) * j->in_c_per_group;
           ++in_channel) {
        const int8_t* in_data = sophon_view_i8(&j->in_v, batch, in_channel);
        /* weight (1, IC, OC/groups, KH*KW): in_channel's filter towards out_channel */
        const int8_t* filter = sophon_view_i8(&j->weight_v, 0, in_channel) + out_in_group * filter_size;
        for (filter_y = 0; filter_y < kernel_h; ++filter_y) {
          const int64_t in_y =
              sophon_deconv_source(out_y, p->pad_top, filter_y, p->dilation_h, p->stride_h, j->in->h);
          if (in_y < 0) continue;
          for (filter_x = 0; filter_x < kernel_w; ++filter_x) {
            /* input column x lands on output column x * sw - pad_left + filter_x * dw */
            const int64_t offset = (int64_t)filter_x * p->dilation_w - p->pad_left;
            const int32_t w = filter[filter_y * kernel_w + filter_x];
#if SOPHON_X86_DISPATCH
            if (j->use_avx2)
              scatter_row_avx2(acc, out_w, in_data + in_y * in_w, in_w, p->stride_w, offset,
                               j->q->input_zero_point, w);
            else
#endif
              scatter_row_c(acc, out_w, in_data + in_y * in_w, in_w, p->stride_w, offset,
                            j->q->input_zero_point, w);
          }
        }
      }
      for (out_x = 0; out_x < out_w; ++out_x)
        out_data[(int64_t)out_y * out_w + out_x] = requantize_one(acc[out_x], bias, channel, j->q);
    }
  }
}

int sophon_fast_conv2d_transpose_int8(sophon_device* dev, const sophon_local* out,
                                      const sophon_local* in, const sophon_local* weight,
                                      const sophon_local* bias, const sophon_conv_params* p,
                                      const sophon_requant* q) {
  deconv_job j;
  int32_t tasks;
  if (q->rounding != SOPHON_REQUANT_FIXED_POINT && q->rounding != SOPHON_REQUANT_FLOAT32)
    return -1; /* another rounding: the reference kernel */
  tasks = sophon_tasks_for(dev, sophon_conv2d_transpose_macs(out, in, p), (int64_t)out->n * out->c);
  j.rows = (int32_t*)(void*)sophon_device_scratch(dev, (size_t)tasks * (size_t)out->w);
  if (j.rows == NULL) return -1;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  sophon_view_init(&j.weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&j.bias_v, dev, bias);
  j.out = out;
  j.in = in;
  j.bias = bias;
  j.p = p;
  j.q = q;
  j.in_c_per_group = in->c / p->groups;
  j.out_c_per_group = out->c / p->groups;
  j.use_avx2 = dev->cpu_avx2;
  sophon_parallel_run(dev->pool, tasks, deconv_task, &j);
  return 0;
}
