/*
 * sophon_fast_depthwise.c - fast f32 depthwise conv2d (one input and one output
 * channel per group), beside the reference kernel of sophon_tiu_conv.c.
 *
 * Method. Tasks own channels. Each input channel is first copied into the task's
 * scratch as "tap rows": tap kx of output ox reads in[iy][ox * sw + c] with
 * c = kx * dw - pad_left = q * sw + r (0 <= r < sw); the copy holds, for each
 * phase r and input row iy, the row P_r[iy][j] = in[iy][j * sw + r] over every j
 * that any output's tap can ask for, with 0.0f where j * sw + r falls in the left
 * or right padding. Then tap kx of 8 consecutive outputs is 8 consecutive floats
 * of P_r (one unaligned load) whatever the stride, padding or dilation, and no
 * load needs a bounds check. Output rows run in strips of up to 64 outputs
 * (8 AVX2 vectors) whose accumulators stay in registers over every tap (ky, kx);
 * narrow rows (up to 32 outputs) run several rows at once so that there are
 * still up to 8 independent accumulators. Taps in the top or bottom padding are
 * skipped for the whole row. bias and the activation are applied in registers
 * before the strip is stored.
 *
 * Exactness. The reference computes act(acc + bias) with acc = 0.0f, then
 * acc += in * w over the taps inside the input in (filter_y, filter_x) order. The
 * vector rows make the same rounded products (no FMA; GCC in ISO C mode, as the
 * toolchain builds, never contracts a * b + c) and add them in the same order, so
 * they agree bit for bit on every output whose taps are all inside the input.
 * A tap in the left or right padding adds w * 0.0f = +-0.0f, which leaves the
 * accumulator unchanged when w is finite: acc starts at +0.0f, a rounded sum is
 * -0.0f only when both addends are, so acc is never -0.0f, and x + +-0.0f = x for
 * any x that is not -0.0f. A channel with an infinite or NaN weight (where
 * w * 0.0f is NaN) computes the outputs whose window reaches into the left or
 * right padding one by one with the reference's own loops. The vector
 * activations equal the scalar ones bit for bit (sophon_act_avx2). So results are
 * bit-identical to the reference (a NaN may carry another payload) for any
 * input, thread count and instruction set. The plain C path does the same with
 * the output row as accumulator.
 *
 * Memory: one channel of tap rows per task from the device's scratch; if that
 * cannot be allocated every output is computed the reference's way.
 */
#include <math.h>
#include <string.h>

#include "fast/sophon_fast.h"

/* Kernels with more taps than this (not seen in practice) run the reference's way. */
#define MAX_TAPS 256
/* Accumulator vectors of one strip: 8 outputs each. */
#define STRIP_VECTORS 8

typedef struct {
  sophon_view out_v, in_v, weight_v, bias_v;
  int has_bias;
  const sophon_conv_params* p;
  int32_t batches, channels, in_h, in_w, out_h, out_w;
  /* tap rows (see the file comment): stride_w phases of in_h rows of row_len
   * floats; row j of phase r starts at element j = shift_min. Tap t = (ky, kx) of
   * output ox of the output row whose window starts at input row iy0 is at
   * tap_rows[iy0 * row_len + tap_offset[t] + ox]. */
  int vector_rows;           /* 0: every output the reference's way */
  int64_t shift_min, row_len, phase_plane;
  int64_t tap_offset[MAX_TAPS];
  /* outputs [ox_begin, ox_end) have every kx tap inside the input row */
  int32_t ox_begin, ox_end;
  /* output rows [oy_begin, oy_end) have every ky tap inside the input */
  int32_t oy_begin, oy_end;
  float* scratch;            /* task t's tap rows at scratch + t * task_floats */
  int64_t task_floats;
  int use_avx2;
  int use_avx512; /* the sigmoid family in AVX-512 registers (sophon_fast.h) */
} conv_depthwise;

/* ------------------------------------------------------------- set-up */

/* floor(a / b) for b > 0. */
static int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* [begin, end) of the outputs of one axis whose window has every tap inside
 * [0, size): origin = o * stride - pad >= 0 and origin + span <= size - 1. */
static void interior_range(int64_t size, int32_t pad, int32_t stride, int64_t span,
                           int32_t outputs, int32_t* begin, int32_t* end) {
  int64_t b = sophon_ceil_div(pad, stride);
  int64_t e = size - 1 + pad - span < 0 ? 0 : (size - 1 + pad - span) / stride + 1;
  if (e > outputs) e = outputs;
  if (e < b) b = e = 0;
  *begin = (int32_t)b;
  *end = (int32_t)e;
}

/* Sets the tap-row layout, its size per task, and the interior ranges. */
static void plan_layout(conv_depthwise* d) {
  const sophon_conv_params* p = d->p;
  const int64_t sw = p->stride_w;
  int64_t shift_max = 0;
  int32_t ky, kx;
  interior_range(d->in_w, p->pad_left, p->stride_w, (int64_t)(p->kernel_w - 1) * p->dilation_w,
                 d->out_w, &d->ox_begin, &d->ox_end);
  interior_range(d->in_h, p->pad_top, p->stride_h, (int64_t)(p->kernel_h - 1) * p->dilation_h,
                 d->out_h, &d->oy_begin, &d->oy_end);
  d->vector_rows = (int64_t)p->kernel_h * p->kernel_w <= MAX_TAPS;
  if (!d->vector_rows) return;
  for (kx = 0; kx < p->kernel_w; ++kx) {
    const int64_t q = floor_div((int64_t)kx * p->dilation_w - p->pad_left, sw);
    if (kx == 0 || q < d->shift_min) d->shift_min = q;
    if (kx == 0 || q > shift_max) shift_max = q;
  }
  /* the lanes of a strip cover outputs up to out_w + 6 (a last vector of 1 output
     starting at out_w - 1): they ask for j in [shift_min, out_w + 7 + shift_max) */
  d->row_len = d->out_w + 7 + shift_max - d->shift_min;
  d->phase_plane = (int64_t)d->in_h * d->row_len;
  for (ky = 0; ky < p->kernel_h; ++ky) {
    for (kx = 0; kx < p->kernel_w; ++kx) {
      const int64_t c = (int64_t)kx * p->dilation_w - p->pad_left;
      const int64_t q = floor_div(c, sw);
      d->tap_offset[ky * p->kernel_w + kx] = (int64_t)ky * p->dilation_h * d->row_len +
                                             (c - q * sw) * d->phase_plane + (q - d->shift_min);
    }
  }
  d->task_floats = sophon_ceil_div(sw * d->phase_plane, 16) * 16; /* 64-byte aligned */
}

/* Elements of phase r that hold input data: j in [0, phase_end(d, r)). */
static int64_t phase_end(const conv_depthwise* d, int32_t r) {
  const int64_t j_end = d->shift_min + d->row_len; /* rows hold j in [shift_min, j_end) */
  const int64_t valid = r < d->in_w ? sophon_ceil_div(d->in_w - r, d->p->stride_w) : 0;
  return valid < j_end ? valid : j_end;
}

/* Writes the data of the tap rows of one input channel (see the file comment):
 * phase r holds in[j * sw + r] at j in [0, phase_end). The zeros around it were
 * written once per task (depthwise_task) and stay. */
static void fill_tap_rows(const conv_depthwise* d, const float* in, float* rows) {
  const int32_t sw = d->p->stride_w;
  int32_t y, r;
  int64_t j;
#if SOPHON_X86_DISPATCH
  if (d->use_avx2 && sw <= 2) {
    const int64_t end = phase_end(d, 0), pairs = phase_end(d, 1); /* pairs = 0 for sw 1 */
    for (y = 0; y < d->in_h; ++y) {
      const float* in_row = in + (int64_t)y * d->in_w;
      float* row = rows + (int64_t)y * d->row_len - d->shift_min; /* shift_min <= 0 */
      if (sw == 1) {
        sophon_copy_avx2(row, in_row, end);
      } else if (pairs > 0) {
        sophon_deinterleave2_avx2(in_row, pairs, row, row + d->phase_plane);
        if (end > pairs) row[pairs] = in_row[2 * pairs]; /* odd in_w: one more even */
      } else if (end > 0) {
        row[0] = in_row[0];
      }
    }
    return;
  }
#endif
  for (r = 0; r < sw; ++r) {
    const int64_t end = phase_end(d, r);
    for (y = 0; y < d->in_h && end > 0; ++y) {
      const float* in_row = in + (int64_t)y * d->in_w;
      float* row = rows + r * d->phase_plane + (int64_t)y * d->row_len - d->shift_min;
      if (sw == 1)
        memcpy(row, in_row, (size_t)end * sizeof(float));
      else
        for (j = 0; j < end; ++j) row[j] = in_row[j * sw + r];
    }
  }
}

/* ------------------------------------------------------------- outputs */

/* One output row: the real taps rows [ky_begin, ky_end), input row iy0 + ky * dh. */
typedef struct {
  const float* taps;      /* the channel's tap rows */
  const float* filter;    /* [ky][kx] */
  float* out_row;
  int64_t iy0;
  int32_t ky_begin, ky_end;
  float bias;
} depthwise_row;

/* Output row oy of the channel described by `channel`. */
static depthwise_row row_at(const conv_depthwise* d, const depthwise_row* channel,
                            float* out, int32_t oy) {
  const sophon_conv_params* p = d->p;
  depthwise_row row = *channel;
  row.iy0 = (int64_t)oy * p->stride_h - p->pad_top;
  if (oy >= d->oy_begin && oy < d->oy_end) { /* every ky tap inside */
    row.ky_begin = 0;
    row.ky_end = p->kernel_h;
  } else {
    row.ky_begin = sophon_first_tap(row.iy0, p->dilation_h);
    row.ky_end = sophon_end_tap(row.iy0, p->dilation_h, d->in_h, p->kernel_h);
    if (row.ky_end < row.ky_begin) row.ky_end = row.ky_begin;
  }
  row.out_row = out + (int64_t)oy * d->out_w;
  return row;
}

/* One output exactly as the reference computes it: the taps inside the input
 * in (filter_y, filter_x) order, then bias and activation. */
static float depthwise_output(const conv_depthwise* d, const float* in,
                              const depthwise_row* row, int32_t ox) {
  const sophon_conv_params* p = d->p;
  const int64_t ix0 = (int64_t)ox * p->stride_w - p->pad_left;
  const int32_t kx_begin = sophon_first_tap(ix0, p->dilation_w);
  const int32_t kx_end = sophon_end_tap(ix0, p->dilation_w, d->in_w, p->kernel_w);
  float acc = 0.0f;
  int32_t ky, kx;
  for (ky = row->ky_begin; ky < row->ky_end; ++ky) {
    const float* in_row = in + (row->iy0 + (int64_t)ky * p->dilation_h) * d->in_w;
    const float* filter_row = row->filter + (int64_t)ky * p->kernel_w;
    for (kx = kx_begin; kx < kx_end; ++kx)
      acc += in_row[ix0 + (int64_t)kx * p->dilation_w] * filter_row[kx];
  }
  return sophon_activate_f32(&p->act, acc + row->bias);
}

/* Outputs [from, to) of one row in plain C, the output row as accumulator. */
static void row_c(const conv_depthwise* d, const depthwise_row* row, int32_t from, int32_t to) {
  const int32_t kernel_w = d->p->kernel_w;
  const int64_t base = row->iy0 * d->row_len;
  float* restrict out = row->out_row;
  int32_t t, ox;
  for (ox = from; ox < to; ++ox) out[ox] = 0.0f;
  for (t = row->ky_begin * kernel_w; t < row->ky_end * kernel_w; ++t) {
    const float* restrict in = row->taps + (base + d->tap_offset[t]);
    const float w = row->filter[t];
    for (ox = from; ox < to; ++ox) out[ox] += in[ox] * w;
  }
  sophon_finish_f32(out + from, to - from, row->bias, &d->p->act);
}

#if SOPHON_X86_DISPATCH
/* Accumulator i (< nr * nv) of a strip is vector i % nv of row i / nv. The eight
 * are named, not an array, so that they stay in registers; the unused ones vanish
 * once nr and nv are constants. */
#define STRIP_TAP(i)                                                                  \
  if ((i) < nr * nv)                                                                  \
  acc##i = _mm256_add_ps(                                                             \
      acc##i, _mm256_mul_ps(_mm256_loadu_ps(in + (i) / nv * row_step + 8 * ((i) % nv)), w))
#define STRIP_STORE(i)                                                                \
  if ((i) < nr * nv) {                                                                \
    float* out = row->out_row + (int64_t)((i) / nv) * d->out_w + ox + 8 * ((i) % nv); \
    const __m256 y = sophon_act_avx2(_mm256_add_ps(acc##i, bias), &p->act);           \
    if ((i) % nv == nv - 1 && last < 8)                                               \
      sophon_store_first_avx2(out, y, last);                                          \
    else                                                                              \
      _mm256_storeu_ps(out, y);                                                       \
  }

/* Outputs [ox, ox + 8 * (nv - 1) + last) of rows oy .. oy + nr - 1, which share
 * their real ky range (row is row oy), accumulated in nr * nv <= 8 registers over
 * every tap; only the first `last` outputs of the last vector of a row are stored.
 * nr and nv are constants after inlining. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline void strip_avx2(
    const conv_depthwise* d, const depthwise_row* row, int nr, int32_t ox, int nv,
    int32_t last) {
  const sophon_conv_params* p = d->p;
  const int64_t row_step = (int64_t)p->stride_h * d->row_len; /* next output row */
  const float* taps = row->taps + (row->iy0 * d->row_len + ox);
  const __m256 bias = _mm256_set1_ps(row->bias);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, acc4 = acc0,
         acc5 = acc0, acc6 = acc0, acc7 = acc0;
  int32_t t;
  /* the taps of the real rows, (ky, kx) in order */
  for (t = row->ky_begin * p->kernel_w; t < row->ky_end * p->kernel_w; ++t) {
    const __m256 w = _mm256_broadcast_ss(row->filter + t);
    const float* in = taps + d->tap_offset[t];
    STRIP_TAP(0);
    STRIP_TAP(1);
    STRIP_TAP(2);
    STRIP_TAP(3);
    STRIP_TAP(4);
    STRIP_TAP(5);
    STRIP_TAP(6);
    STRIP_TAP(7);
  }
  STRIP_STORE(0)
  STRIP_STORE(1)
  STRIP_STORE(2)
  STRIP_STORE(3)
  STRIP_STORE(4)
  STRIP_STORE(5)
  STRIP_STORE(6)
  STRIP_STORE(7)
}
#undef STRIP_TAP
#undef STRIP_STORE

/* A strip of nv vectors over nr rows, nr * nv <= 8 (nr a power of two). */
SOPHON_AVX2 static void strip_rows_avx2(const conv_depthwise* d, const depthwise_row* row,
                                        int nr, int32_t ox, int nv, int32_t last) {
  switch (nv * 16 + nr) {
    case 1 * 16 + 8: strip_avx2(d, row, 8, ox, 1, last); break;
    case 1 * 16 + 4: strip_avx2(d, row, 4, ox, 1, last); break;
    case 1 * 16 + 2: strip_avx2(d, row, 2, ox, 1, last); break;
    case 1 * 16 + 1: strip_avx2(d, row, 1, ox, 1, last); break;
    case 2 * 16 + 4: strip_avx2(d, row, 4, ox, 2, last); break;
    case 2 * 16 + 2: strip_avx2(d, row, 2, ox, 2, last); break;
    case 2 * 16 + 1: strip_avx2(d, row, 1, ox, 2, last); break;
    case 3 * 16 + 2: strip_avx2(d, row, 2, ox, 3, last); break;
    case 3 * 16 + 1: strip_avx2(d, row, 1, ox, 3, last); break;
    case 4 * 16 + 2: strip_avx2(d, row, 2, ox, 4, last); break;
    case 4 * 16 + 1: strip_avx2(d, row, 1, ox, 4, last); break;
    case 5 * 16 + 1: strip_avx2(d, row, 1, ox, 5, last); break;
    case 6 * 16 + 1: strip_avx2(d, row, 1, ox, 6, last); break;
    case 7 * 16 + 1: strip_avx2(d, row, 1, ox, 7, last); break;
    default: strip_avx2(d, row, 1, ox, 8, last); break;
  }
}

/* Outputs [from, to) of `rows` consecutive output rows that share their real ky
 * range (row is the first), with AVX2, row by row in strips of up to 64 outputs;
 * a row of at most 32 outputs is one strip, and runs together with the next
 * rows so that there are up to 8 accumulators. */
SOPHON_AVX2 static void rows_avx2(const conv_depthwise* d, const depthwise_row* row,
                                  int32_t rows, int32_t from, int32_t to) {
  const int32_t strip = 8 * STRIP_VECTORS;
  const int nv_row = (to - from + 7) / 8; /* vectors per row */
  int nr = nv_row == 1 ? 8 : nv_row == 2 ? 4 : nv_row <= 4 ? 2 : 1;
  int32_t ox, r;
  for (r = 0; r < rows; r += nr) {
    depthwise_row first = *row;
    while (nr > rows - r) nr /= 2;
    first.iy0 = row->iy0 + (int64_t)r * d->p->stride_h;
    first.out_row = row->out_row + (int64_t)r * d->out_w;
    for (ox = from; ox < to; ox += strip) {
      const int32_t count = to - ox < strip ? to - ox : strip;
      const int nv = (count + 7) / 8;
      strip_rows_avx2(d, &first, nr, ox, nv, count - 8 * (nv - 1));
    }
  }
  if (sophon_act_is_simple(&d->p->act)) return;
  /* the special functions: a second pass, over whole rows as one span (they are back
     to back: 16 lanes busy however narrow the rows), else row by row */
  if (from == 0 && to == d->out_w)
    sophon_finish_span_f32(d->use_avx512, row->out_row, (int64_t)rows * d->out_w, NULL,
                           &d->p->act);
  else
    for (r = 0; r < rows; ++r)
      sophon_finish_span_f32(d->use_avx512, row->out_row + (int64_t)r * d->out_w + from,
                             to - from, NULL, &d->p->act);
}

#endif

/* 1 if every weight of the filter is finite. */
static int filter_is_finite(const float* filter, int64_t taps) {
  int64_t t;
  for (t = 0; t < taps; ++t)
    if (!isfinite(filter[t])) return 0;
  return 1;
}

/* Rows [oy, oy + rows) (sharing their real ky range), outputs [from, to). */
static void vector_rows(const conv_depthwise* d, const depthwise_row* row, int32_t rows,
                        int32_t from, int32_t to) {
  int32_t r;
  if (from >= to) return;
#if SOPHON_X86_DISPATCH
  if (d->use_avx2) {
    rows_avx2(d, row, rows, from, to);
    return;
  }
#endif
  for (r = 0; r < rows; ++r) {
    depthwise_row next = *row;
    next.iy0 += (int64_t)r * d->p->stride_h;
    next.out_row += (int64_t)r * d->out_w;
    row_c(d, &next, from, to);
  }
}

/* One output channel of one batch item; `tap_rows` is this task's scratch. */
static void depthwise_channel(const conv_depthwise* d, int32_t batch, int32_t channel,
                              float* tap_rows) {
  const sophon_conv_params* p = d->p;
  const float* in = sophon_view_f32(&d->in_v, batch, channel);
  float* out = sophon_view_f32(&d->out_v, batch, channel);
  int whole_rows = 0; /* the vector rows may read the padding (finite weights) */
  depthwise_row channel_row;
  int32_t oy, ox;

  channel_row.taps = tap_rows;
  channel_row.filter = sophon_view_f32(&d->weight_v, 0, channel);
  channel_row.bias = d->has_bias ? *sophon_view_f32(&d->bias_v, 0, channel) : 0.0f;
  if (d->vector_rows) {
    fill_tap_rows(d, in, tap_rows);
    whole_rows = filter_is_finite(channel_row.filter, (int64_t)p->kernel_h * p->kernel_w);
  }
  for (oy = 0; oy < d->out_h;) {
    depthwise_row row = row_at(d, &channel_row, out, oy);
    /* rows inside [oy_begin, oy_end) share the full ky range and run together */
    const int32_t rows = oy >= d->oy_begin && oy < d->oy_end ? d->oy_end - oy : 1;
    const int32_t from = whole_rows ? 0 : d->ox_begin, to = whole_rows ? d->out_w : d->ox_end;
    int32_t r;
    if (!d->vector_rows) {
      for (ox = 0; ox < d->out_w; ++ox) row.out_row[ox] = depthwise_output(d, in, &row, ox);
      oy += 1;
      continue;
    }
    for (r = 0; r < rows && !whole_rows; ++r) { /* the border columns */
      depthwise_row next = row;
      next.iy0 += (int64_t)r * p->stride_h;
      next.out_row += (int64_t)r * d->out_w;
      for (ox = 0; ox < from; ++ox) next.out_row[ox] = depthwise_output(d, in, &next, ox);
      for (ox = to; ox < d->out_w; ++ox) next.out_row[ox] = depthwise_output(d, in, &next, ox);
    }
    vector_rows(d, &row, rows, from, to);
    oy += rows;
  }
}

static void depthwise_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_depthwise* d = (const conv_depthwise*)ctx;
  float* tap_rows = d->vector_rows ? d->scratch + task * d->task_floats : NULL;
  int64_t begin, end, channel;
  int32_t batch;
  sophon_task_range(d->channels, task, tasks, &begin, &end);
  if (tap_rows != NULL && begin < end) /* the padding of the tap rows, for every channel */
    memset(tap_rows, 0, (size_t)d->task_floats * sizeof(float));
  for (batch = 0; batch < d->batches; ++batch)
    for (channel = begin; channel < end; ++channel)
      depthwise_channel(d, batch, (int32_t)channel, tap_rows);
}

void sophon_fast_depthwise_f32(sophon_device* dev, const sophon_local* out,
                               const sophon_local* in, const sophon_local* weight,
                               const sophon_local* bias, const sophon_conv_params* p) {
  conv_depthwise d;
  const uint64_t macs = (uint64_t)out->n * (uint64_t)out->c * (uint64_t)out->h *
                        (uint64_t)out->w * (uint64_t)p->kernel_h * (uint64_t)p->kernel_w;
  const int32_t tasks = sophon_tasks_for(dev, macs, out->c);
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
  d.use_avx512 = dev->cpu_avx512;
  plan_layout(&d);
  d.scratch = NULL;
  if (d.vector_rows) {
    d.scratch = sophon_device_scratch(dev, (size_t)(d.task_floats * tasks));
    d.vector_rows = d.scratch != NULL;
  }
  sophon_parallel_run(dev->pool, tasks, depthwise_task, &d);
}
