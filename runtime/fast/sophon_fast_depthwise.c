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
 * With AVX-512 (stride 1 or 2) a channel whose filter is finite skips the tap
 * rows: its outputs are computed from the input plane itself, 16 per vector, the
 * loads that would read padding zero-masked (see "AVX-512" below), with the same
 * products in the same order, so the same bits; a small plane (up to 1024 outputs,
 * stride 1, "same" padding) as one flat row of vectors.
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
/* The AVX-512 path (see there) takes filters up to this wide, rows up to 16 times
 * this many outputs. */
#define MAX_AVX512_KW 16
#define MAX_ROW_VECTORS 64
/* ... and planes of up to 16 times this many outputs with up to this many taps as
 * one flat row */
#define MAX_FLAT_VECTORS 64
#define MAX_FLAT_TAPS 49

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
  int plane_avx512; /* channels with finite filters straight from the input (AVX-512) */
#if SOPHON_X86_DISPATCH
  /* plane_avx512's loads of vector v (outputs 16 v ..) for tap column kx: zero-masks
   * of the input columns inside the row (stride 2: of the two loads), and whether
   * every tap of the vector reads inside the row (plain loads then) */
  __mmask16 mask_lo[MAX_ROW_VECTORS][MAX_AVX512_KW], mask_hi[MAX_ROW_VECTORS][MAX_AVX512_KW];
  /* vector v masks its loads for the tap columns kx < mask_below[v] and
   * kx >= mask_from[v] (those that read padding for an output it stores) */
  int32_t mask_below[MAX_ROW_VECTORS], mask_from[MAX_ROW_VECTORS];
  /* small planes (plan_flat_avx512): the output plane as one row of flat_vectors
   * vectors; tap t reads input element o + flat_offset[t] for output o = oy * out_w
   * + ox, in the lanes of flat_mask[t][v] (the taps inside the input) */
  int flat;
  /* stride-2 planes of at most 8 outputs a row (plan_pairs_avx512): two output rows
     per vector; tap column kx loads input columns x .. x + 15 of a row in the lanes
     of pair_mask[kx], and pair_index picks the even ones of two rows */
  int pairs;
  __mmask16 pair_mask[MAX_AVX512_KW];
  int32_t pair_index[16];
  int32_t flat_vectors;
  int64_t flat_offset[MAX_FLAT_TAPS];
  __mmask16 flat_mask[MAX_FLAT_TAPS][MAX_FLAT_VECTORS];
#endif
} conv_depthwise;

/* One channel of one batch item. */
typedef struct {
  const float* in;     /* the channel's input plane */
  const float* filter; /* [ky][kx] */
  float* out;          /* the channel's output plane */
  float bias;
} dw_plane;

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

#if SOPHON_X86_DISPATCH
/* ------------------------------------------ AVX-512: straight from the input
 * With AVX-512 (stride 1 or 2, filters up to MAX_AVX512_KW wide) the outputs are
 * computed from the input plane itself, without tap rows: 16 outputs per vector,
 * tap (ky, kx) of a vector is one load (stride 1) or two loads and a permute of
 * their even elements (stride 2), zero-masked so that lanes whose input column
 * falls in the left or right padding (or past the row's last output) read +0.0f;
 * rows of taps in the top or bottom padding are skipped, as the reference skips
 * them. Accumulators (up to 8: nv vectors of each of nr output rows) stay in
 * registers over every tap, then bias and the activation (sophon_act_avx512, the
 * sigmoid family included) are applied before a masked store. The same products
 * in the same order as the other paths (a zero-masked lane adds w * 0.0f, which
 * leaves the accumulator unchanged: see the file comment), so the same bits. */
/* Lanes [lo, hi) of 16 (clamped to [0, 16)). */
static inline __mmask16 lanes_between(int64_t lo, int64_t hi) {
  if (lo < 0) lo = 0;
  if (hi > 16) hi = 16;
  if (hi <= lo) return 0;
  return (__mmask16)(((1u << (hi - lo)) - 1u) << lo);
}


/* Vector (i) % nv of the tile is masked when it is the first or last of a row that
 * needs masks there (plan_plane_avx512 checks that no other vector does). */
#define TILE_TAP(i)                                                                 \
  if ((i) < nr * nv && row_ok[(i) / nv]) {                                          \
    const float* src = rows[(i) / nv] + x0 + 16 * ((i) % nv) * stride;              \
    const int masked = ((i) % nv == 0 && (kx < first_below || kx >= first_from)) ||  \
                       ((i) % nv == nv - 1 && (kx < last_below || kx >= last_from));   \
    __m512 v;                                                                       \
    if (stride == 1 && !masked) {                                                   \
      v = _mm512_loadu_ps(src);                                                     \
    } else if (stride == 1) {                                                       \
      v = _mm512_maskz_loadu_ps(d->mask_lo[v0 + (i) % nv][kx], src);               \
    } else if (!masked) {                                                           \
      v = _mm512_permutex2var_ps(_mm512_loadu_ps(src), even, _mm512_loadu_ps(src + 16)); \
    } else {                                                                        \
      v = _mm512_permutex2var_ps(                                                   \
          _mm512_maskz_loadu_ps(d->mask_lo[v0 + (i) % nv][kx], src), even,         \
          _mm512_maskz_loadu_ps(d->mask_hi[v0 + (i) % nv][kx], src + 16));         \
    }                                                                               \
    acc##i = _mm512_add_ps(acc##i, _mm512_mul_ps(v, w));                            \
  }
#define TILE_STORE(i)                                                               \
  if ((i) < nr * nv)                                                                \
    _mm512_mask_storeu_ps(                                                          \
        pl->out + (int64_t)(oy + (i) / nv) * d->out_w + ox + 16 * ((i) % nv),       \
        (i) % nv == nv - 1 ? last_mask : (__mmask16)0xFFFF,                         \
        sophon_act_avx512(_mm512_add_ps(acc##i, bias), &p->act));

/* One tile with nr * nv <= 8 accumulators; nr, nv and stride (1 or 2) are constants
 * after inlining. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void tile_avx512(
    const conv_depthwise* d, const dw_plane* pl, int32_t oy, int nr, int32_t ox, int nv,
    int32_t last, int stride) {
  const sophon_conv_params* p = d->p;
  const __m512 bias = _mm512_set1_ps(pl->bias);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __mmask16 last_mask = lanes_between(0, last);
  const int32_t v0 = ox / 16; /* the row's first vector of this tile */
  const int32_t first_below = d->mask_below[v0], first_from = d->mask_from[v0];
  const int32_t last_below = d->mask_below[v0 + nv - 1], last_from = d->mask_from[v0 + nv - 1];
  const float* rows[8];
  int row_ok[8];
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, acc4 = acc0,
         acc5 = acc0, acc6 = acc0, acc7 = acc0;
  int32_t ky, kx, r;
  for (ky = 0; ky < p->kernel_h; ++ky) {
    for (r = 0; r < nr; ++r) {
      const int64_t iy = (int64_t)(oy + r) * p->stride_h - p->pad_top + (int64_t)ky * p->dilation_h;
      row_ok[r] = iy >= 0 && iy < d->in_h;
      rows[r] = pl->in + (row_ok[r] ? iy : 0) * d->in_w;
    }
    for (kx = 0; kx < p->kernel_w; ++kx) {
      const __m512 w = _mm512_set1_ps(pl->filter[ky * p->kernel_w + kx]);
      const int64_t x0 = (int64_t)ox * stride + (int64_t)kx * p->dilation_w - p->pad_left;
      TILE_TAP(0)
      TILE_TAP(1)
      TILE_TAP(2)
      TILE_TAP(3)
      TILE_TAP(4)
      TILE_TAP(5)
      TILE_TAP(6)
      TILE_TAP(7)
    }
  }
  TILE_STORE(0)
  TILE_STORE(1)
  TILE_STORE(2)
  TILE_STORE(3)
  TILE_STORE(4)
  TILE_STORE(5)
  TILE_STORE(6)
  TILE_STORE(7)
}
#undef TILE_TAP
#undef TILE_STORE

#define TILE_CASES(stride)                                                              \
  switch (nv * 16 + nr) {                                                               \
    case 1 * 16 + 8: tile_avx512(d, pl, oy, 8, ox, 1, last, stride); break;             \
    case 1 * 16 + 7: tile_avx512(d, pl, oy, 7, ox, 1, last, stride); break;             \
    case 1 * 16 + 6: tile_avx512(d, pl, oy, 6, ox, 1, last, stride); break;             \
    case 1 * 16 + 5: tile_avx512(d, pl, oy, 5, ox, 1, last, stride); break;             \
    case 1 * 16 + 4: tile_avx512(d, pl, oy, 4, ox, 1, last, stride); break;             \
    case 1 * 16 + 3: tile_avx512(d, pl, oy, 3, ox, 1, last, stride); break;             \
    case 1 * 16 + 2: tile_avx512(d, pl, oy, 2, ox, 1, last, stride); break;             \
    case 1 * 16 + 1: tile_avx512(d, pl, oy, 1, ox, 1, last, stride); break;             \
    case 2 * 16 + 4: tile_avx512(d, pl, oy, 4, ox, 2, last, stride); break;             \
    case 2 * 16 + 3: tile_avx512(d, pl, oy, 3, ox, 2, last, stride); break;             \
    case 2 * 16 + 2: tile_avx512(d, pl, oy, 2, ox, 2, last, stride); break;             \
    case 2 * 16 + 1: tile_avx512(d, pl, oy, 1, ox, 2, last, stride); break;             \
    case 3 * 16 + 2: tile_avx512(d, pl, oy, 2, ox, 3, last, stride); break;             \
    case 3 * 16 + 1: tile_avx512(d, pl, oy, 1, ox, 3, last, stride); break;             \
    case 4 * 16 + 2: tile_avx512(d, pl, oy, 2, ox, 4, last, stride); break;             \
    case 4 * 16 + 1: tile_avx512(d, pl, oy, 1, ox, 4, last, stride); break;             \
    case 5 * 16 + 1: tile_avx512(d, pl, oy, 1, ox, 5, last, stride); break;             \
    case 6 * 16 + 1: tile_avx512(d, pl, oy, 1, ox, 6, last, stride); break;             \
    case 7 * 16 + 1: tile_avx512(d, pl, oy, 1, ox, 7, last, stride); break;             \
    default: tile_avx512(d, pl, oy, 1, ox, 8, last, stride); break;                     \
  }

SOPHON_AVX512 static void tile_stride1_avx512(const conv_depthwise* d, const dw_plane* pl,
                                              int32_t oy, int nr, int32_t ox, int nv,
                                              int32_t last) {
  TILE_CASES(1)
}

SOPHON_AVX512 static void tile_stride2_avx512(const conv_depthwise* d, const dw_plane* pl,
                                              int32_t oy, int nr, int32_t ox, int nv,
                                              int32_t last) {
  TILE_CASES(2)
}
#undef TILE_CASES

/* 1 if plane_avx512 computes this instruction's channels (whose filters are
 * finite); then sets its masks. */
static int plan_plane_avx512(conv_depthwise* d) {
  const sophon_conv_params* p = d->p;
  const int64_t stride = p->stride_w;
  const int32_t vectors = (d->out_w + 15) / 16; /* per output row */
  int32_t v, kx;
  /* unmasked loads may read past the last input column of a plane, up to
     16 * stride + (kernel_w - 1) * dilation_w floats: never past the gap after its
     lane's memory (LANE_SKEW_LINES in chip/sophon_device.c, 1088 bytes), and only
     into lanes nobody stores */
  if (!d->use_avx512 || (stride != 1 && stride != 2) || p->kernel_w > MAX_AVX512_KW ||
      d->out_w > 16 * MAX_ROW_VECTORS || (int64_t)(p->kernel_w - 1) * p->dilation_w > 128)
    return 0;
  /* rows of 17 to 32 outputs are two vectors, both at an edge of the row and mostly
     masked: the tap rows of the AVX2 path ran 1.1-1.3x faster there (bench of
     MobileNetV2's and EfficientNet-B0's layers at 28 outputs per row) */
  if (d->out_w > 16 && d->out_w <= 32) return 0;
  for (v = 0; v < vectors; ++v) {
    const int32_t count = d->out_w - 16 * v < 16 ? d->out_w - 16 * v : 16;
    d->mask_below[v] = 0;
    d->mask_from[v] = p->kernel_w;
    for (kx = 0; kx < p->kernel_w; ++kx) {
      /* lane 0's input column; the last stored lane's is x + stride * (count - 1) */
      const int64_t x = 16 * v * stride - p->pad_left + (int64_t)kx * p->dilation_w;
      if (x < 0) d->mask_below[v] = kx + 1;
      if (x + stride * (count - 1) >= d->in_w && d->mask_from[v] == p->kernel_w)
        d->mask_from[v] = kx;
      if (stride == 1) {
        d->mask_lo[v][kx] = lanes_between(-x, d->in_w - x) & lanes_between(0, count);
      } else { /* element i of the 32 loaded is input column x + i; even i feed outputs */
        d->mask_lo[v][kx] = lanes_between(-x, d->in_w - x) & lanes_between(0, 2 * count - 1);
        d->mask_hi[v][kx] = lanes_between(-x - 16, d->in_w - x - 16) &
                            lanes_between(0, 2 * count - 17);
      }
    }
    /* only a row's first and last vectors may need masks (padding up to 16 columns) */
    if (v != 0 && v != vectors - 1 && (d->mask_below[v] > 0 || d->mask_from[v] < p->kernel_w))
      return 0;
  }
  return 1;
}

/* Small planes at stride 1 whose input rows are as wide as the output rows (the
 * padding is "same"): output o = oy * out_w + ox reads input element o + offset of
 * each tap, so the whole plane (up to 16 * MAX_FLAT_VECTORS outputs) runs as one
 * row of vectors, 8 at a time, every load zero-masked to the lanes whose tap is
 * inside the input (a tap in any padding adds w * 0.0f; see the file comment).
 * 7 x 7 planes use 4 vectors instead of 7 rows of 7 lanes (0.41-0.45 of the row
 * tiles' time), 14 x 14 planes 13 vectors instead of 14 (0.62-0.70), 28 x 28 ones
 * 49 (0.75-0.95). */
static int plan_flat_avx512(conv_depthwise* d) {
  const sophon_conv_params* p = d->p;
  const int64_t plane = (int64_t)d->out_h * d->out_w;
  int32_t ky, kx, v;
  if (p->stride_h != 1 || p->stride_w != 1 || d->in_w != d->out_w || plane > 16 * MAX_FLAT_VECTORS ||
      (int64_t)p->kernel_h * p->kernel_w > MAX_FLAT_TAPS)
    return 0;
  d->flat_vectors = (int32_t)((plane + 15) / 16);
  for (ky = 0; ky < p->kernel_h; ++ky) {
    for (kx = 0; kx < p->kernel_w; ++kx) {
      const int32_t t = ky * p->kernel_w + kx;
      const int64_t dy = (int64_t)ky * p->dilation_h - p->pad_top;
      const int64_t dx = (int64_t)kx * p->dilation_w - p->pad_left;
      d->flat_offset[t] = dy * d->in_w + dx;
      for (v = 0; v < d->flat_vectors; ++v) {
        uint32_t mask = 0;
        int32_t j;
        for (j = 0; j < 16; ++j) {
          const int64_t o = 16 * v + j, iy = o / d->out_w + dy, ix = o % d->out_w + dx;
          if (o < plane && iy >= 0 && iy < d->in_h && ix >= 0 && ix < d->in_w) mask |= 1u << j;
        }
        d->flat_mask[t][v] = (__mmask16)mask;
      }
    }
  }
  return 1;
}

#define FLAT_TAP(i)                                                                 \
  if ((i) < nv)                                                                     \
    acc##i = _mm512_add_ps(                                                         \
        acc##i, _mm512_mul_ps(_mm512_maskz_loadu_ps(d->flat_mask[t][v0 + (i)],      \
                                                    in + 16 * (i) + offset), w));
#define FLAT_STORE(i)                                                               \
  if ((i) < nv)                                                                     \
    _mm512_mask_storeu_ps(out + 16 * (i), (i) == nv - 1 ? last_mask : (__mmask16)0xFFFF, \
                          sophon_act_avx512(_mm512_add_ps(acc##i, bias), &d->p->act));

/* Vectors [v0, v0 + nv) of the flat plane of plan_flat_avx512 in nv (constant after
 * inlining) accumulators. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void flat_avx512(const conv_depthwise* d,
                                                                  const dw_plane* pl,
                                                                  int32_t v0, int nv) {
  const int32_t taps = d->p->kernel_h * d->p->kernel_w;
  const int64_t plane = (int64_t)d->out_h * d->out_w;
  const float* in = pl->in + 16 * v0;
  float* out = pl->out + 16 * v0;
  const __m512 bias = _mm512_set1_ps(pl->bias);
  const __mmask16 last_mask = lanes_between(0, plane - 16 * (v0 + nv - 1));
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, acc4 = acc0,
         acc5 = acc0, acc6 = acc0, acc7 = acc0;
  int32_t t;
  for (t = 0; t < taps; ++t) { /* (ky, kx) in order */
    const __m512 w = _mm512_set1_ps(pl->filter[t]);
    const int64_t offset = d->flat_offset[t];
    FLAT_TAP(0)
    FLAT_TAP(1)
    FLAT_TAP(2)
    FLAT_TAP(3)
    FLAT_TAP(4)
    FLAT_TAP(5)
    FLAT_TAP(6)
    FLAT_TAP(7)
  }
  FLAT_STORE(0)
  FLAT_STORE(1)
  FLAT_STORE(2)
  FLAT_STORE(3)
  FLAT_STORE(4)
  FLAT_STORE(5)
  FLAT_STORE(6)
  FLAT_STORE(7)
}
#undef FLAT_TAP
#undef FLAT_STORE

SOPHON_AVX512 static void plane_flat_avx512(const conv_depthwise* d, const dw_plane* pl) {
  int32_t v0;
  for (v0 = 0; v0 < d->flat_vectors; v0 += 8) {
    switch (d->flat_vectors - v0) {
      case 1: flat_avx512(d, pl, v0, 1); break;
      case 2: flat_avx512(d, pl, v0, 2); break;
      case 3: flat_avx512(d, pl, v0, 3); break;
      case 4: flat_avx512(d, pl, v0, 4); break;
      case 5: flat_avx512(d, pl, v0, 5); break;
      case 6: flat_avx512(d, pl, v0, 6); break;
      case 7: flat_avx512(d, pl, v0, 7); break;
      default: flat_avx512(d, pl, v0, 8); break;
    }
  }
}

/* Two channels of a flat plane of at most 4 vectors (7 x 7, 8 x 8) in one set of
 * 8 accumulators (vectors i of a in acc i, of b in acc 4 + i): each tap's masks are
 * loaded once for both, and 8 independent sums instead of 4 hide the adds' latency.
 * Each channel's products and sums are those of flat_avx512. */
#define FLAT2_TAP(i)                                                                 \
  if ((i) < nv) {                                                                    \
    const __mmask16 m = d->flat_mask[t][i];                                          \
    acc##i = _mm512_add_ps(                                                          \
        acc##i, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a->in + 16 * (i) + offset), wa)); \
    acc_b##i = _mm512_add_ps(                                                        \
        acc_b##i, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, b->in + 16 * (i) + offset), wb)); \
  }
#define FLAT2_STORE(i)                                                               \
  if ((i) < nv) {                                                                    \
    const __mmask16 m = (i) == nv - 1 ? last_mask : (__mmask16)0xFFFF;              \
    _mm512_mask_storeu_ps(a->out + 16 * (i), m,                                      \
                          sophon_act_avx512(_mm512_add_ps(acc##i, bias_a), &d->p->act)); \
    _mm512_mask_storeu_ps(b->out + 16 * (i), m,                                      \
                          sophon_act_avx512(_mm512_add_ps(acc_b##i, bias_b), &d->p->act)); \
  }

SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void flat2_avx512(const conv_depthwise* d,
                                                                   const dw_plane* a,
                                                                   const dw_plane* b, int nv) {
  const int32_t taps = d->p->kernel_h * d->p->kernel_w;
  const int64_t plane = (int64_t)d->out_h * d->out_w;
  const __m512 bias_a = _mm512_set1_ps(a->bias), bias_b = _mm512_set1_ps(b->bias);
  const __mmask16 last_mask = lanes_between(0, plane - 16 * (nv - 1));
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, acc_b0 = acc0,
         acc_b1 = acc0, acc_b2 = acc0, acc_b3 = acc0;
  int32_t t;
  for (t = 0; t < taps; ++t) { /* (ky, kx) in order */
    const __m512 wa = _mm512_set1_ps(a->filter[t]), wb = _mm512_set1_ps(b->filter[t]);
    const int64_t offset = d->flat_offset[t];
    FLAT2_TAP(0)
    FLAT2_TAP(1)
    FLAT2_TAP(2)
    FLAT2_TAP(3)
  }
  FLAT2_STORE(0)
  FLAT2_STORE(1)
  FLAT2_STORE(2)
  FLAT2_STORE(3)
}
#undef FLAT2_TAP
#undef FLAT2_STORE

SOPHON_AVX512 static void plane_flat2_avx512(const conv_depthwise* d, const dw_plane* a,
                                             const dw_plane* b) {
  switch (d->flat_vectors) {
    case 1: flat2_avx512(d, a, b, 1); break;
    case 2: flat2_avx512(d, a, b, 2); break;
    case 3: flat2_avx512(d, a, b, 3); break;
    default: flat2_avx512(d, a, b, 4); break;
  }
}

/* The kinds sophon_act_avx512 leaves alone: a second pass over the plane. */
static void finish_plane(const conv_depthwise* d, const dw_plane* pl) {
  if (!sophon_act_is_simple(&d->p->act) && !sophon_act_is_sigmoid_family(&d->p->act))
    sophon_activate_span_f32(pl->out, (int64_t)d->out_h * d->out_w, &d->p->act);
}

/* 1 if every weight of the filter is finite, 16 weights per test. */
SOPHON_AVX512 static int filter_is_finite_avx512(const float* filter, int64_t taps) {
  __mmask16 bad = 0;
  int64_t t;
  for (t = 0; t < taps; t += 16) {
    const __mmask16 m = lanes_between(0, taps - t);
    bad |= _mm512_mask_fpclass_ps_mask(m, _mm512_maskz_loadu_ps(m, filter + t),
                                       0x99); /* NaN or infinity */
  }
  return bad == 0;
}

/* Planes at stride 2 whose rows have at most 8 outputs (14 x 14 -> 7 x 7): the row
 * tiles would use out_w of 16 lanes per vector; here a vector holds output rows oy
 * and oy + 1 (consecutive in the plane), tap (ky, kx) one masked load from each of
 * their input rows and one permute of the even columns of both. */
static int plan_pairs_avx512(conv_depthwise* d) {
  const sophon_conv_params* p = d->p;
  int32_t kx, j;
  if (!d->use_avx512 || p->stride_w != 2 || d->out_w > 8 || p->kernel_w > MAX_AVX512_KW)
    return 0;
  for (kx = 0; kx < p->kernel_w; ++kx) { /* lane i: input column x + i, inside the row */
    const int64_t x = (int64_t)kx * p->dilation_w - p->pad_left;
    d->pair_mask[kx] = lanes_between(-x, d->in_w - x) & lanes_between(0, 2 * d->out_w - 1);
  }
  for (j = 0; j < 16; ++j)
    d->pair_index[j] = j < d->out_w ? 2 * j : j < 2 * d->out_w ? 16 + 2 * (j - d->out_w) : 0;
  return 1;
}

#define PAIR_TAP(i)                                                                     \
  if ((i) < nv) {                                                                       \
    const __m512 a = row_a[i] != NULL ? _mm512_maskz_loadu_ps(m, row_a[i] + x) : zero; \
    const __m512 b = row_b[i] != NULL ? _mm512_maskz_loadu_ps(m, row_b[i] + x) : zero; \
    acc##i = _mm512_add_ps(acc##i, _mm512_mul_ps(_mm512_permutex2var_ps(a, index, b), w)); \
  }
#define PAIR_STORE(i)                                                                   \
  if ((i) < nv) {                                                                       \
    const int32_t oy = oy0 + 2 * (i);                                                   \
    _mm512_mask_storeu_ps(pl->out + (int64_t)oy * d->out_w,                             \
                          lanes_between(0, (oy + 1 < d->out_h ? 2 : 1) * d->out_w),    \
                          sophon_act_avx512(_mm512_add_ps(acc##i, bias), &p->act));    \
  }

/* Output rows oy0 .. oy0 + 2 nv - 1 (nv <= 8, a constant after inlining). */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void pairs_avx512(const conv_depthwise* d,
                                                                   const dw_plane* pl,
                                                                   int32_t oy0, int nv) {
  const sophon_conv_params* p = d->p;
  const __m512 bias = _mm512_set1_ps(pl->bias), zero = _mm512_setzero_ps();
  const __m512i index = _mm512_loadu_si512((const void*)d->pair_index);
  const float* row_a[8];
  const float* row_b[8];
  __m512 acc0 = zero, acc1 = zero, acc2 = zero, acc3 = zero, acc4 = zero, acc5 = zero,
         acc6 = zero, acc7 = zero;
  int32_t ky, kx, i;
  for (ky = 0; ky < p->kernel_h; ++ky) {
    for (i = 0; i < nv; ++i) { /* the input rows of output rows oy, oy + 1 (NULL: padding) */
      const int32_t oy = oy0 + 2 * i;
      const int64_t iy = (int64_t)oy * p->stride_h - p->pad_top + (int64_t)ky * p->dilation_h;
      row_a[i] = iy >= 0 && iy < d->in_h ? pl->in + iy * d->in_w : NULL;
      row_b[i] = oy + 1 < d->out_h && iy + p->stride_h >= 0 && iy + p->stride_h < d->in_h
                     ? pl->in + (iy + p->stride_h) * d->in_w
                     : NULL;
    }
    for (kx = 0; kx < p->kernel_w; ++kx) {
      const __m512 w = _mm512_set1_ps(pl->filter[ky * p->kernel_w + kx]);
      const __mmask16 m = d->pair_mask[kx];
      const int64_t x = (int64_t)kx * p->dilation_w - p->pad_left;
      PAIR_TAP(0)
      PAIR_TAP(1)
      PAIR_TAP(2)
      PAIR_TAP(3)
      PAIR_TAP(4)
      PAIR_TAP(5)
      PAIR_TAP(6)
      PAIR_TAP(7)
    }
  }
  PAIR_STORE(0)
  PAIR_STORE(1)
  PAIR_STORE(2)
  PAIR_STORE(3)
  PAIR_STORE(4)
  PAIR_STORE(5)
  PAIR_STORE(6)
  PAIR_STORE(7)
}
#undef PAIR_TAP
#undef PAIR_STORE

SOPHON_AVX512 static void plane_pairs_avx512(const conv_depthwise* d, const dw_plane* pl) {
  const int32_t vectors = (d->out_h + 1) / 2;
  int32_t v0;
  for (v0 = 0; v0 < vectors; v0 += 8) {
    switch (vectors - v0) {
      case 1: pairs_avx512(d, pl, 2 * v0, 1); break;
      case 2: pairs_avx512(d, pl, 2 * v0, 2); break;
      case 3: pairs_avx512(d, pl, 2 * v0, 3); break;
      case 4: pairs_avx512(d, pl, 2 * v0, 4); break;
      case 5: pairs_avx512(d, pl, 2 * v0, 5); break;
      case 6: pairs_avx512(d, pl, 2 * v0, 6); break;
      case 7: pairs_avx512(d, pl, 2 * v0, 7); break;
      default: pairs_avx512(d, pl, 2 * v0, 8); break;
    }
  }
}

/* One channel's output plane: tiles of up to 8 vectors of 16 outputs, over as many
 * output rows as fit in 8 accumulators (a row of at most 64 outputs runs with the
 * next rows). */
static void plane_avx512(const conv_depthwise* d, const dw_plane* pl) {
  const int32_t nv_row = (d->out_w + 15) / 16;
  const int32_t rows_per_tile = nv_row >= 8 ? 1 : 8 / nv_row;
  int32_t oy, ox;
  for (oy = 0; oy < d->out_h && !d->flat && !d->pairs; oy += rows_per_tile) {
    const int nr = d->out_h - oy < rows_per_tile ? d->out_h - oy : rows_per_tile;
    for (ox = 0; ox < d->out_w; ox += 128) {
      const int32_t count = d->out_w - ox < 128 ? d->out_w - ox : 128;
      const int nv = (count + 15) / 16;
      if (d->p->stride_w == 1)
        tile_stride1_avx512(d, pl, oy, nr, ox, nv, count - 16 * (nv - 1));
      else
        tile_stride2_avx512(d, pl, oy, nr, ox, nv, count - 16 * (nv - 1));
    }
  }
  if (d->flat) plane_flat_avx512(d, pl);
  if (d->pairs) plane_pairs_avx512(d, pl);
  finish_plane(d, pl);
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

/* One output channel of one batch item: its input and output planes, filter and
 * bias; `tap_rows` is this task's scratch, whose padding *zeroed says is written
 * (done at the first channel that needs it). */
static void depthwise_channel(const conv_depthwise* d, const float* in, float* out,
                              const float* filter, float bias, float* tap_rows, int* zeroed) {
  const sophon_conv_params* p = d->p;
  int whole_rows = 0; /* the vector rows may read the padding (finite weights) */
  depthwise_row channel_row;
  int32_t oy, ox;

  channel_row.taps = tap_rows;
  channel_row.filter = filter;
  channel_row.bias = bias;
#if SOPHON_X86_DISPATCH
  if (d->plane_avx512 && filter_is_finite_avx512(filter, (int64_t)p->kernel_h * p->kernel_w)) {
    dw_plane plane;
    plane.in = in;
    plane.filter = filter;
    plane.out = out;
    plane.bias = bias;
    plane_avx512(d, &plane);
    return;
  }
#endif
  if (d->vector_rows && !*zeroed) { /* the padding of the tap rows, for every channel */
    memset(tap_rows, 0, (size_t)d->task_floats * sizeof(float));
    *zeroed = 1;
  }
  if (d->vector_rows) {
    fill_tap_rows(d, in, tap_rows);
    whole_rows = filter_is_finite(filter, (int64_t)p->kernel_h * p->kernel_w);
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

/* The planes of one channel, walked channel by channel without divisions. */
typedef struct {
  sophon_channel_iter in, out, weight, bias;
} channel_walk;

static channel_walk walk_begin(const conv_depthwise* d, int32_t batch, int32_t channel) {
  channel_walk w;
  w.in = sophon_channel_begin(&d->in_v, batch, channel);
  w.out = sophon_channel_begin(&d->out_v, batch, channel);
  w.weight = sophon_channel_begin(&d->weight_v, 0, channel);
  if (d->has_bias) w.bias = sophon_channel_begin(&d->bias_v, 0, channel);
  return w;
}

static void walk_next(const conv_depthwise* d, channel_walk* w) {
  sophon_channel_next(&d->in_v, &w->in);
  sophon_channel_next(&d->out_v, &w->out);
  sophon_channel_next(&d->weight_v, &w->weight);
  if (d->has_bias) sophon_channel_next(&d->bias_v, &w->bias);
}

static dw_plane plane_at(const conv_depthwise* d, const channel_walk* w) {
  dw_plane pl;
  pl.in = (const float*)(const void*)w->in.base;
  pl.out = (float*)(void*)w->out.base;
  pl.filter = (const float*)(const void*)w->weight.base;
  pl.bias = d->has_bias ? *(const float*)(const void*)w->bias.base : 0.0f;
  return pl;
}

static void depthwise_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_depthwise* d = (const conv_depthwise*)ctx;
  float* tap_rows = d->vector_rows ? d->scratch + task * d->task_floats : NULL;
  const int64_t taps = (int64_t)d->p->kernel_h * d->p->kernel_w;
  int zeroed = 0;
  int64_t begin, end, channel;
  int32_t batch;
  sophon_task_range(d->channels, task, tasks, &begin, &end);
  if (begin >= end) return;
  for (batch = 0; batch < d->batches; ++batch) {
    channel_walk w = walk_begin(d, batch, (int32_t)begin);
    for (channel = begin; channel < end; ++channel) {
      dw_plane a = plane_at(d, &w);
#if SOPHON_X86_DISPATCH
      /* small flat planes two channels at a time */
      if (d->flat && d->flat_vectors <= 4 && channel + 1 < end &&
          filter_is_finite_avx512(a.filter, taps)) {
        dw_plane b;
        walk_next(d, &w);
        b = plane_at(d, &w);
        if (filter_is_finite_avx512(b.filter, taps)) {
          plane_flat2_avx512(d, &a, &b);
          finish_plane(d, &a);
          finish_plane(d, &b);
        } else {
          plane_avx512(d, &a);
          depthwise_channel(d, b.in, b.out, b.filter, b.bias, tap_rows, &zeroed);
        }
        walk_next(d, &w);
        ++channel;
        continue;
      }
#endif
      depthwise_channel(d, a.in, a.out, a.filter, a.bias, tap_rows, &zeroed);
      walk_next(d, &w);
    }
  }
  (void)taps; /* used by the AVX-512 pairs only */
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
#if SOPHON_X86_DISPATCH
  d.flat = d.use_avx512 && plan_flat_avx512(&d);
  d.pairs = !d.flat && plan_pairs_avx512(&d);
  d.plane_avx512 = d.flat || d.pairs || plan_plane_avx512(&d);
#else
  d.plane_avx512 = 0;
#endif
  d.scratch = NULL;
  if (d.vector_rows) {
    d.scratch = sophon_device_scratch(dev, (size_t)(d.task_floats * tasks));
    d.vector_rows = d.scratch != NULL;
  }
  sophon_parallel_run(dev->pool, tasks, depthwise_task, &d);
}
