/*
 * sophon_fast_eltwise.c - fast f32 binary element-wise and pool2d, beside the
 * reference kernels of reference/sophon_tiu_binary.c and sophon_tiu_pool.c (same
 * operands, already checked by the instruction).
 *
 * Binary (out = act(a op b) with broadcast). A (batch, channel) plane of out is h
 * rows of w; an operand row is either a row of w floats or one float repeated (a
 * broadcast w), and when no operand broadcasts along h alone the plane's rows are
 * back to back and run as one row of h * w. Rows run 8 floats per AVX2 vector
 * (the last one read through a mask, stored in parts). Tasks own planes.
 *
 * Pool2d. Two vector layouts (AVX2); plain C computes every output as the
 * reference does.
 *   - Rows (out_w >= 8): tasks own channels; for each output row the interior
 *     columns (every kx tap inside the input row) run in strips of up to 64
 *     outputs whose accumulators stay in registers over all taps; for stride
 *     sw > 1 the channel is first split into sw phase planes (sophon_fast.h) so a
 *     tap of 8 consecutive outputs is 8 consecutive floats. Border columns are
 *     computed one by one as the reference does, but in a max pool at stride_w 1
 *     whose every window has a real tap (padding narrower than the kernel, no
 *     dilation): its channel is copied into a plane with -inf where the padding is
 *     and every column runs in the strips (YOLOv5's SPPF: 5x5 pools of 10x10
 *     planes, 6 of whose 10 columns are borders, ran 6x slower one by one).
 *   - Channels (out_w < 8, e.g. global pooling): 8 channels per vector, one
 *     gather per tap. The channels of a vector share the window geometry, so
 *     every output keeps the reference's own tap loops.
 *
 * Exactness: bit-identical to the reference (a NaN may carry another payload), but
 * for a fused sigmoid or SiLU with AVX-512 (sophon_fast.h).
 *   - binary: each output is one rounded add, sub, mul or div of the same operands,
 *     or max_ps(x, y) / min_ps(x, y), which are exactly x > y ? x : y and
 *     x < y ? x : y, replaced by x + y (a NaN) where either is NaN, or prelu's
 *     blend of x * y on x > 0; the activations as in sophon_act_avx2
 *     (sophon_fast.h), the others by the scalar function after.
 *   - max pool: max = -inf, then max = (v > max || v is NaN ? v : max) over the
 *     real taps in (filter_y, filter_x) order (sophon_max_tap_avx2); -FLT_MAX
 *     when the window has no real tap. A padding tap read as -inf changes nothing
 *     (-inf > max is false, and max starts at -inf).
 *   - avg pool: sum = 0.0f, then sum += v over the real taps in (filter_y,
 *     filter_x) order, then sum / (float)divisor with the reference's divisor (a
 *     division, not a reciprocal multiply), or 0.0f for a zero divisor.
 * Every output is computed by one task in that order, so results do not depend
 * on the thread count either.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "fast/sophon_fast.h"

/* Pool kernels wider than this run every output through the per-output path. */
#define MAX_TAP_COLS 64
/* Outputs one register strip of a pool row holds: 8 vectors of 8. */
#define STRIP_VECTORS 8

/* ============================================================== binary */

typedef struct {
  sophon_view out_v, a_v, b_v;
  int32_t a_n1, a_c1, b_n1, b_c1;   /* the operand broadcasts n (c) */
  int64_t a_h_step, b_h_step;       /* operand row steps: 0 broadcasts h */
  int32_t a_w_step, b_w_step;       /* 1, or 0 when the operand broadcasts w */
  int64_t rows, cols;               /* a plane as rows x cols (one row when merged) */
  sophon_binary_op op;
  const sophon_activation* act;
  int use_avx2;
  int use_avx512; /* the sigmoid family in AVX-512 registers (sophon_fast.h) */
} binary_job;

/* a op b, as binary_f32 of sophon_tiu_binary.c. */
static inline float binary_op_f32(sophon_binary_op op, float x, float y) {
  switch (op) {
    case SOPHON_BINARY_ADD: return x + y;
    case SOPHON_BINARY_SUB: return x - y;
    case SOPHON_BINARY_MUL: return x * y;
    case SOPHON_BINARY_MAX: return x != x || y != y ? x + y : (x > y ? x : y);
    case SOPHON_BINARY_MIN: return x != x || y != y ? x + y : (x < y ? x : y);
    case SOPHON_BINARY_DIV: return x / y;
    case SOPHON_BINARY_PRELU: return x > 0.0f ? x : x * y;
  }
  return 0.0f;
}

/* One row in plain C: out[i] = act(a[i * a_step] op b[i * b_step]). */
static void binary_row_c(const binary_job* j, float* out, const float* a, int32_t a_step,
                         const float* b, int32_t b_step, int64_t count) {
  int64_t i;
  for (i = 0; i < count; ++i)
    out[i] = sophon_activate_f32(j->act, binary_op_f32(j->op, a[i * a_step], b[i * b_step]));
}

#if SOPHON_X86_DISPATCH
/* binary_op_f32 on 8 floats: max_ps / min_ps are exactly x > y ? x : y and
 * x < y ? x : y, and where either operand is NaN (unordered) the result is x + y;
 * div_ps is the correctly rounded division; prelu blends x * y in where the
 * ordered x > 0 is false, as the reference's select. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256 binary_op_avx2(sophon_binary_op op,
                                                                     __m256 x, __m256 y) {
  switch (op) {
    case SOPHON_BINARY_ADD: return _mm256_add_ps(x, y);
    case SOPHON_BINARY_SUB: return _mm256_sub_ps(x, y);
    case SOPHON_BINARY_MUL: return _mm256_mul_ps(x, y);
    case SOPHON_BINARY_MAX:
      return _mm256_blendv_ps(_mm256_max_ps(x, y), _mm256_add_ps(x, y), _mm256_cmp_ps(x, y, _CMP_UNORD_Q));
    case SOPHON_BINARY_MIN:
      return _mm256_blendv_ps(_mm256_min_ps(x, y), _mm256_add_ps(x, y), _mm256_cmp_ps(x, y, _CMP_UNORD_Q));
    case SOPHON_BINARY_DIV: return _mm256_div_ps(x, y);
    case SOPHON_BINARY_PRELU:
      return _mm256_blendv_ps(_mm256_mul_ps(x, y), x, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
  }
  return x;
}

/* 8 floats of an operand row at i: a load, or the broadcast value when step is 0. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256 operand_avx2(const float* row,
                                                                   int32_t step, int64_t i) {
  return step ? _mm256_loadu_ps(row + i) : _mm256_set1_ps(row[0]);
}

/* One row with AVX2 for a constant op and operand steps (after inlining). The
 * last vector reads (masked load) and stores only the `count % 8` floats left. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline void binary_row_for(
    sophon_binary_op op, const sophon_activation* act, float* out, const float* a,
    int32_t a_step, const float* b, int32_t b_step, int64_t count) {
  int64_t i;
  for (i = 0; i + 8 <= count; i += 8) {
    const __m256 v = binary_op_avx2(op, operand_avx2(a, a_step, i), operand_avx2(b, b_step, i));
    _mm256_storeu_ps(out + i, sophon_act_avx2(v, act));
  }
  if (i < count) {
    const __m256i mask = sophon_tail_mask_avx2((int32_t)(count - i));
    const __m256 x = a_step ? _mm256_maskload_ps(a + i, mask) : _mm256_set1_ps(a[0]);
    const __m256 y = b_step ? _mm256_maskload_ps(b + i, mask) : _mm256_set1_ps(b[0]);
    sophon_store_first_avx2(out + i, sophon_act_avx2(binary_op_avx2(op, x, y), act),
                            (int32_t)(count - i));
  }
}

/* binary_row_for with the operand steps made constant. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline void binary_row_op(
    sophon_binary_op op, const sophon_activation* act, float* out, const float* a,
    int32_t a_step, const float* b, int32_t b_step, int64_t count) {
  if (a_step && b_step)
    binary_row_for(op, act, out, a, 1, b, 1, count);
  else if (a_step)
    binary_row_for(op, act, out, a, 1, b, 0, count);
  else if (b_step)
    binary_row_for(op, act, out, a, 0, b, 1, count);
  else
    binary_row_for(op, act, out, a, 0, b, 0, count);
}

/* One row with AVX2: out[i] = act(a[i * a_step] op b[i * b_step]). */
SOPHON_AVX2 static void binary_row_avx2(const binary_job* j, float* out, const float* a,
                                        int32_t a_step, const float* b, int32_t b_step,
                                        int64_t count) {
  /* one case per op, so that binary_row_op is inlined with the op a constant */
#define BINARY_ROW_CASE(OP) \
  case OP: binary_row_op(OP, j->act, out, a, a_step, b, b_step, count); break
  switch (j->op) {
    BINARY_ROW_CASE(SOPHON_BINARY_ADD);
    BINARY_ROW_CASE(SOPHON_BINARY_SUB);
    BINARY_ROW_CASE(SOPHON_BINARY_MUL);
    BINARY_ROW_CASE(SOPHON_BINARY_MAX);
    BINARY_ROW_CASE(SOPHON_BINARY_MIN);
    BINARY_ROW_CASE(SOPHON_BINARY_DIV);
    BINARY_ROW_CASE(SOPHON_BINARY_PRELU);
  }
#undef BINARY_ROW_CASE
  if (!sophon_act_is_simple(j->act)) sophon_finish_span_f32(j->use_avx512, out, count, NULL, j->act);
}
#endif

/* The plane of a binary operand for channel `channel` of batch item `batch`:
 * walks the channels of one batch item with an iterator (no divisions); a
 * broadcast channel stays at channel 0, in lane 0. */
typedef struct {
  const sophon_view* v;
  int n1, c1;              /* the operand broadcasts n (c) */
  sophon_channel_iter it;
} operand_walk;

static void walk_begin(operand_walk* w, const sophon_view* v, int n1, int c1, int32_t batch,
                       int32_t channel) {
  w->v = v;
  w->n1 = n1;
  w->c1 = c1;
  w->it = sophon_channel_begin(v, n1 ? 0 : batch, c1 ? 0 : channel);
}

static void walk_next(operand_walk* w) {
  if (!w->c1) sophon_channel_next(w->v, &w->it);
}

/* One task: planes [begin, end) of out in (batch, channel) order. */
static void binary_task(void* ctx, int32_t task, int32_t tasks) {
  const binary_job* j = (const binary_job*)ctx;
  const int32_t channels = j->out_v.c;
  int64_t begin, end, plane, y;
  int32_t batch, channel;
  operand_walk out, a, b;
  sophon_task_range((int64_t)j->out_v.n * channels, task, tasks, &begin, &end);
  if (begin >= end) return;
  batch = (int32_t)(begin / channels);
  channel = (int32_t)(begin % channels);
  walk_begin(&out, &j->out_v, 0, 0, batch, channel);
  walk_begin(&a, &j->a_v, j->a_n1, j->a_c1, batch, channel);
  walk_begin(&b, &j->b_v, j->b_n1, j->b_c1, batch, channel);
  for (plane = begin; plane < end; ++plane) {
    const float* a_data = (const float*)(const void*)a.it.base;
    const float* b_data = (const float*)(const void*)b.it.base;
    float* out_data = (float*)(void*)out.it.base;
    for (y = 0; y < j->rows; ++y) {
      const float* a_row = a_data + y * j->a_h_step;
      const float* b_row = b_data + y * j->b_h_step;
      float* out_row = out_data + y * j->cols;
#if SOPHON_X86_DISPATCH
      if (j->use_avx2) {
        binary_row_avx2(j, out_row, a_row, j->a_w_step, b_row, j->b_w_step, j->cols);
        continue;
      }
#endif
      binary_row_c(j, out_row, a_row, j->a_w_step, b_row, j->b_w_step, j->cols);
    }
    if (++channel == channels && plane + 1 < end) { /* next batch item */
      channel = 0;
      ++batch;
      walk_begin(&out, &j->out_v, 0, 0, batch, 0);
      walk_begin(&a, &j->a_v, j->a_n1, j->a_c1, batch, 0);
      walk_begin(&b, &j->b_v, j->b_n1, j->b_c1, batch, 0);
    } else {
      walk_next(&out);
      walk_next(&a);
      walk_next(&b);
    }
  }
}

/* 1 if the operand's rows are back to back within its plane (a full plane, or one
 * value for the whole plane), so the plane can run as a single row. */
static int rows_merge(int64_t h_step, int32_t w_step, int32_t w) {
  return h_step == (int64_t)w * w_step;
}

int sophon_fast_binary_f32(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                           const sophon_local* b, sophon_binary_op op,
                           const sophon_activation* act) {
  binary_job j;
  const int64_t planes = (int64_t)out->n * out->c;
  const uint64_t elements = (uint64_t)planes * (uint64_t)out->h * (uint64_t)out->w;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.a_v, dev, a);
  sophon_view_init(&j.b_v, dev, b);
  j.a_n1 = a->n == 1;
  j.a_c1 = a->c == 1;
  j.b_n1 = b->n == 1;
  j.b_c1 = b->c == 1;
  j.a_h_step = a->h == 1 ? 0 : a->w;
  j.b_h_step = b->h == 1 ? 0 : b->w;
  j.a_w_step = a->w == 1 ? 0 : 1;
  j.b_w_step = b->w == 1 ? 0 : 1;
  j.rows = out->h;
  j.cols = out->w;
  if (out->h == 1 || (rows_merge(j.a_h_step, j.a_w_step, out->w) &&
                      rows_merge(j.b_h_step, j.b_w_step, out->w))) {
    j.rows = 1;
    j.cols = (int64_t)out->h * out->w;
  }
  j.op = op;
  j.act = act;
  j.use_avx2 = dev->cpu_avx2;
  j.use_avx512 = dev->cpu_avx512;
  sophon_parallel_run(dev->pool, sophon_tasks_for(dev, elements, planes), binary_task, &j);
  return 0;
}

/* ============================================================== pool2d */

typedef struct {
  sophon_view out_v, in_v;
  const sophon_pool_params* p;
  int32_t batches, channels, in_h, in_w, out_h, out_w;
  int64_t padded_h, padded_w;
  int channel_vectors;     /* 1: 8 channels per vector; 0: rows (see the file comment) */
  int global_avx512;       /* 1: a global pool, 16 channels per vector (AVX-512) */
  /* rows: the layout the interior reads, as in sophon_fast_depthwise.c: tap kx of
   * output ox in input row iy is at base + tap_col[kx] + iy * phase_w + ox */
  int phased;
  int64_t phase_w, phase_plane;
  int64_t tap_col[MAX_TAP_COLS];
  int32_t ox_begin, ox_end; /* interior columns: every kx tap inside the row */
  float* scratch;          /* phased: task t's planes at scratch + t * task_floats */
  int64_t task_floats;
  int use_avx2;
  /* max pools with padding at stride_w 1: each channel is copied into a plane with
   * -inf where the padding is (task t's at scratch + t * task_floats), which the rows
   * then read as an unpadded input of in_h x in_w (the padded sizes) with p pointing
   * at `unpadded` (the params without padding) */
  int padded;
  int32_t pad_top, pad_left, data_h, data_w;
  sophon_pool_params unpadded;
} pool_job;

/* Window rows of output row oy: real taps [ky_begin, ky_end) and the divisor's row
 * count (taps inside the padded input, or the real ones). */
typedef struct {
  int64_t iy0;
  int32_t ky_begin, ky_end;
  int32_t real_rows, padded_rows;
} pool_rows;

static pool_rows pool_rows_of(const pool_job* j, int32_t oy) {
  const sophon_pool_params* p = j->p;
  pool_rows r;
  r.iy0 = (int64_t)oy * p->stride_h - p->pad_top;
  r.ky_begin = sophon_first_tap(r.iy0, p->dilation_h);
  r.ky_end = sophon_end_tap(r.iy0, p->dilation_h, j->in_h, p->kernel_h);
  /* taps inside the padded input start at 0: windows never start above it */
  r.padded_rows = sophon_end_tap(r.iy0 + p->pad_top, p->dilation_h, j->padded_h, p->kernel_h);
  r.real_rows = r.ky_end > r.ky_begin ? r.ky_end - r.ky_begin : 0;
  if (r.ky_end < r.ky_begin) r.ky_end = r.ky_begin;
  return r;
}

/* One output exactly as the reference computes it (see sophon_tiu_pool.c). */
static float pool_output(const pool_job* j, const float* in, const pool_rows* r, int32_t ox) {
  const sophon_pool_params* p = j->p;
  const int64_t ix0 = (int64_t)ox * p->stride_w - p->pad_left;
  const int32_t kx_begin = sophon_first_tap(ix0, p->dilation_w);
  const int32_t kx_end = sophon_end_tap(ix0, p->dilation_w, j->in_w, p->kernel_w);
  const int32_t padded_cols = sophon_end_tap(ix0 + p->pad_left, p->dilation_w, j->padded_w,
                                             p->kernel_w);
  const int32_t real_cols = kx_end > kx_begin ? kx_end - kx_begin : 0;
  int32_t ky, kx;
  if (p->kind == SOPHON_POOL_MAX) {
    float max_value = -INFINITY;
    for (ky = r->ky_begin; ky < r->ky_end; ++ky) {
      const float* in_row = in + (r->iy0 + (int64_t)ky * p->dilation_h) * j->in_w;
      for (kx = kx_begin; kx < kx_end; ++kx) {
        const float v = in_row[ix0 + (int64_t)kx * p->dilation_w];
        if (v > max_value || v != v) max_value = v;
      }
    }
    return r->real_rows * real_cols > 0 ? max_value : -FLT_MAX;
  } else {
    const int64_t divisor = p->count_include_pad ? (int64_t)r->padded_rows * padded_cols
                                                 : (int64_t)r->real_rows * real_cols;
    float sum = 0.0f;
    for (ky = r->ky_begin; ky < r->ky_end; ++ky) {
      const float* in_row = in + (r->iy0 + (int64_t)ky * p->dilation_h) * j->in_w;
      for (kx = kx_begin; kx < kx_end; ++kx) sum += in_row[ix0 + (int64_t)kx * p->dilation_w];
    }
    return divisor > 0 ? sum / (float)divisor : 0.0f;
  }
}

#if SOPHON_X86_DISPATCH
/* Interior outputs [ox, ox + 8 * (nv - 1) + last) of one row (see pool_row_avx2),
 * accumulated in nv registers over the window's real rows and all kx taps; the
 * last vector reads its first `last` lanes only (a masked load) and stores them. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline void pool_strip_avx2(
    const pool_job* j, const float* base, const pool_rows* r, float* out_row, int32_t ox,
    int nv, int32_t last) {
  const sophon_pool_params* p = j->p;
  const int is_max = p->kind == SOPHON_POOL_MAX;
  const __m256i mask = sophon_tail_mask_avx2(last);
  __m256 acc[STRIP_VECTORS];
  int32_t ky, kx;
  int v;
  for (v = 0; v < nv; ++v) acc[v] = is_max ? _mm256_set1_ps(-INFINITY) : _mm256_setzero_ps();
  for (ky = r->ky_begin; ky < r->ky_end; ++ky) {
    const int64_t row_base = (r->iy0 + (int64_t)ky * p->dilation_h) * j->phase_w + ox;
    for (kx = 0; kx < p->kernel_w; ++kx) {
      const float* in = base + (row_base + j->tap_col[kx]);
      for (v = 0; v < nv; ++v) {
        const __m256 x = v == nv - 1 && last < 8 ? _mm256_maskload_ps(in + 8 * v, mask)
                                                 : _mm256_loadu_ps(in + 8 * v);
        acc[v] = is_max ? sophon_max_tap_avx2(x, acc[v]) : _mm256_add_ps(acc[v], x);
      }
    }
  }
  for (v = 0; v < nv; ++v) {
    __m256 y;
    if (is_max) {
      y = acc[v]; /* the window has real taps in every column; no rows: see the caller */
    } else {
      const int64_t divisor =
          (int64_t)(p->count_include_pad ? r->padded_rows : r->real_rows) * p->kernel_w;
      y = divisor > 0 ? _mm256_div_ps(acc[v], _mm256_set1_ps((float)divisor))
                      : _mm256_setzero_ps();
    }
    if (v == nv - 1 && last < 8)
      sophon_store_first_avx2(out_row + ox + 8 * v, y, last);
    else
      _mm256_storeu_ps(out_row + ox + 8 * v, y);
  }
}

/* The interior columns of one output row with AVX2, in strips of up to 64. A
 * max-pool row with no real input row is the reference's -FLT_MAX. */
SOPHON_AVX2 static void pool_row_avx2(const pool_job* j, const float* base, const pool_rows* r,
                                      float* out_row) {
  const int32_t strip = 8 * STRIP_VECTORS;
  int32_t ox;
  if (j->p->kind == SOPHON_POOL_MAX && r->real_rows == 0) {
    for (ox = j->ox_begin; ox < j->ox_end; ++ox) out_row[ox] = -FLT_MAX;
    return;
  }
  for (ox = j->ox_begin; ox < j->ox_end; ox += strip) {
    const int32_t count = j->ox_end - ox < strip ? j->ox_end - ox : strip;
    const int32_t last = (count - 1) % 8 + 1;
    switch ((count + 7) / 8) {
      case 1: pool_strip_avx2(j, base, r, out_row, ox, 1, last); break;
      case 2: pool_strip_avx2(j, base, r, out_row, ox, 2, last); break;
      case 3: pool_strip_avx2(j, base, r, out_row, ox, 3, last); break;
      case 4: pool_strip_avx2(j, base, r, out_row, ox, 4, last); break;
      case 5: pool_strip_avx2(j, base, r, out_row, ox, 5, last); break;
      case 6: pool_strip_avx2(j, base, r, out_row, ox, 6, last); break;
      case 7: pool_strip_avx2(j, base, r, out_row, ox, 7, last); break;
      default: pool_strip_avx2(j, base, r, out_row, ox, 8, last); break;
    }
  }
}

/* Channels [c0, c0 + count) (count <= 8) of one batch item, one channel per lane:
 * every output with the reference's tap loops, a gather per tap. */
SOPHON_AVX2 static void pool_channels_avx2(const pool_job* j, int32_t batch, int32_t c0,
                                           int32_t count) {
  const sophon_pool_params* p = j->p;
  const int is_max = p->kind == SOPHON_POOL_MAX;
  const float* in0 = sophon_view_f32(&j->in_v, batch, c0);
  const __m256i lanes = sophon_tail_mask_avx2(count);
  float* out[8];
  int32_t in_offset[8], k, oy, ox, ky, kx;
  __m256i offsets;
  /* channel c0 + k's input is in0 + in_offset[k] (the lanes are one allocation) */
  for (k = 0; k < 8; ++k) {
    const int32_t c = c0 + (k < count ? k : 0);
    in_offset[k] = (int32_t)(sophon_view_f32(&j->in_v, batch, c) - in0);
    out[k] = sophon_view_f32(&j->out_v, batch, c);
  }
  offsets = _mm256_loadu_si256((const __m256i*)(const void*)in_offset);
  for (oy = 0; oy < j->out_h; ++oy) {
    const pool_rows r = pool_rows_of(j, oy);
    for (ox = 0; ox < j->out_w; ++ox) {
      const int64_t ix0 = (int64_t)ox * p->stride_w - p->pad_left;
      const int32_t kx_begin = sophon_first_tap(ix0, p->dilation_w);
      const int32_t kx_end = sophon_end_tap(ix0, p->dilation_w, j->in_w, p->kernel_w);
      const int32_t padded_cols = sophon_end_tap(ix0 + p->pad_left, p->dilation_w,
                                                 j->padded_w, p->kernel_w);
      const int32_t real_cols = kx_end > kx_begin ? kx_end - kx_begin : 0;
      __m256 acc = is_max ? _mm256_set1_ps(-INFINITY) : _mm256_setzero_ps();
      float result[8];
      for (ky = r.ky_begin; ky < r.ky_end; ++ky) {
        const float* in_row = in0 + (r.iy0 + (int64_t)ky * p->dilation_h) * j->in_w;
        for (kx = kx_begin; kx < kx_end; ++kx) {
          const __m256 x = _mm256_mask_i32gather_ps(
              _mm256_setzero_ps(), in_row + ix0 + (int64_t)kx * p->dilation_w, offsets,
              _mm256_castsi256_ps(lanes), 4);
          acc = is_max ? sophon_max_tap_avx2(x, acc) : _mm256_add_ps(acc, x);
        }
      }
      if (is_max) {
        if (r.real_rows * real_cols == 0) acc = _mm256_set1_ps(-FLT_MAX);
      } else {
        const int64_t divisor = p->count_include_pad ? (int64_t)r.padded_rows * padded_cols
                                                     : (int64_t)r.real_rows * real_cols;
        acc = divisor > 0 ? _mm256_div_ps(acc, _mm256_set1_ps((float)divisor))
                          : _mm256_setzero_ps();
      }
      _mm256_storeu_ps(result, acc);
      for (k = 0; k < count; ++k) out[k][(int64_t)oy * j->out_w + ox] = result[k];
    }
  }
}

/* A global pool (the window is the whole unpadded input, one output) of channels
 * [c0, c0 + count) (count <= 16) of one batch item with AVX-512, one channel per
 * lane: 16 positions of each of the 16 planes loaded, transposed, and added (or
 * max-tapped) in the reference's order, position by position; then the
 * reference's divide. */
SOPHON_AVX512 static void pool_global_avx512(const pool_job* j, int32_t batch, int32_t c0,
                                             int32_t count) {
  const int is_max = j->p->kind == SOPHON_POOL_MAX;
  const int64_t plane = (int64_t)j->in_h * j->in_w;
  const float* in[16];
  float result[16];
  __m512 r[16], acc = is_max ? _mm512_set1_ps(-INFINITY) : _mm512_setzero_ps();
  int64_t x;
  int32_t k, i;
  for (k = 0; k < 16; ++k) in[k] = sophon_view_f32(&j->in_v, batch, c0 + (k < count ? k : 0));
  for (x = 0; x < plane; x += 16) {
    const int32_t n = plane - x < 16 ? (int32_t)(plane - x) : 16;
    const __mmask16 mask = (__mmask16)(n == 16 ? 0xFFFFu : (1u << n) - 1u);
    for (k = 0; k < 16; ++k) r[k] = _mm512_maskz_loadu_ps(mask, in[k] + x);
    sophon_transpose16_avx512(r); /* r[i]: position x + i of the 16 channels */
    for (i = 0; i < n; ++i)
      acc = is_max ? _mm512_mask_blend_ps(_mm512_cmp_ps_mask(r[i], r[i], _CMP_UNORD_Q),
                                          _mm512_max_ps(r[i], acc), r[i])
                   : _mm512_add_ps(acc, r[i]);
  }
  if (!is_max) acc = _mm512_div_ps(acc, _mm512_set1_ps((float)plane));
  _mm512_storeu_ps(result, acc);
  for (k = 0; k < count; ++k) *sophon_view_f32(&j->out_v, batch, c0 + k) = result[k];
}
#endif

/* One channel of one batch item by rows; `phases` is this task's scratch. */
static void pool_channel(const pool_job* j, int32_t batch, int32_t channel, float* phases) {
  const float* in = sophon_view_f32(&j->in_v, batch, channel);
  float* out = sophon_view_f32(&j->out_v, batch, channel);
  const float* base = in;
  int32_t oy, ox;
  if (j->padded) {
    int32_t y;
    for (y = 0; y < j->data_h; ++y)
      memcpy(phases + ((int64_t)y + j->pad_top) * j->in_w + j->pad_left, in + (int64_t)y * j->data_w,
             (size_t)j->data_w * sizeof(float));
    in = base = phases;
  } else if (j->phased) {
#if SOPHON_X86_DISPATCH
    if (j->p->stride_w == 2)
      sophon_split_phases2_avx2(in, j->in_h, j->in_w, j->phase_w, phases);
    else
#endif
      sophon_split_phases_f32(in, j->in_h, j->in_w, j->p->stride_w, j->phase_w, phases);
    base = phases;
  }
  for (oy = 0; oy < j->out_h; ++oy) {
    const pool_rows r = pool_rows_of(j, oy);
    float* out_row = out + (int64_t)oy * j->out_w;
    for (ox = 0; ox < j->ox_begin; ++ox) out_row[ox] = pool_output(j, in, &r, ox);
    for (ox = j->ox_end; ox < j->out_w; ++ox) out_row[ox] = pool_output(j, in, &r, ox);
#if SOPHON_X86_DISPATCH
    if (j->ox_end > j->ox_begin) pool_row_avx2(j, base, &r, out_row);
#else
    (void)base;
#endif
  }
}

/* One task: its channels (rows) or its groups of 8 channels (channel vectors). */
static void pool_task(void* ctx, int32_t task, int32_t tasks) {
  const pool_job* j = (const pool_job*)ctx;
  float* phases = j->phased || j->padded ? j->scratch + task * j->task_floats : NULL;
  int64_t i;
  if (j->padded) /* the padding, for every channel of this task */
    for (i = 0; i < j->task_floats; ++i) phases[i] = -INFINITY;
  const int64_t items = j->global_avx512     ? sophon_ceil_div(j->channels, 16)
                        : j->channel_vectors ? sophon_ceil_div(j->channels, 8)
                                             : j->channels;
  int64_t begin, end, item;
  int32_t batch;
  sophon_task_range(items, task, tasks, &begin, &end);
  for (batch = 0; batch < j->batches; ++batch) {
    for (item = begin; item < end; ++item) {
#if SOPHON_X86_DISPATCH
      if (j->global_avx512) {
        const int32_t c0 = (int32_t)(item * 16);
        pool_global_avx512(j, batch, c0, j->channels - c0 < 16 ? j->channels - c0 : 16);
        continue;
      }
      if (j->channel_vectors) {
        const int32_t c0 = (int32_t)(item * 8);
        pool_channels_avx2(j, batch, c0, j->channels - c0 < 8 ? j->channels - c0 : 8);
        continue;
      }
#endif
      pool_channel(j, batch, (int32_t)item, phases);
    }
  }
}

/* Sets the interior column range and the tap offsets of the rows layout. */
static void pool_plan_columns(pool_job* j) {
  const sophon_pool_params* p = j->p;
  const int64_t sw = p->stride_w;
  const int64_t span = (int64_t)(p->kernel_w - 1) * p->dilation_w;
  int64_t begin, end;
  int32_t kx;
  j->phase_w = j->phased ? sophon_ceil_div(j->in_w, sw) : j->in_w;
  j->phase_plane = (int64_t)j->in_h * j->phase_w;
  for (kx = 0; kx < p->kernel_w && kx < MAX_TAP_COLS; ++kx) {
    const int64_t c = (int64_t)kx * p->dilation_w - p->pad_left; /* = q * sw + r */
    const int64_t q = j->phased ? (c >= 0 ? c / sw : -((-c + sw - 1) / sw)) : c;
    j->tap_col[kx] = (c - q * sw) * j->phase_plane + q;
  }
  begin = sophon_ceil_div(p->pad_left, sw);
  end = j->in_w - 1 + p->pad_left - span < 0 ? 0 : (j->in_w - 1 + p->pad_left - span) / sw + 1;
  if (end > j->out_w) end = j->out_w;
  if (end < begin) begin = end = 0;
  j->ox_begin = (int32_t)begin;
  j->ox_end = (int32_t)end;
}

int sophon_fast_pool2d_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_pool_params* p) {
  pool_job j;
  const uint64_t work = (uint64_t)out->n * (uint64_t)out->c * (uint64_t)out->h *
                        (uint64_t)out->w * (uint64_t)p->kernel_h * (uint64_t)p->kernel_w;
  int32_t tasks;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  j.p = p;
  j.batches = out->n;
  j.channels = out->c;
  j.in_h = in->h;
  j.in_w = in->w;
  j.out_h = out->h;
  j.out_w = out->w;
  j.padded_h = (int64_t)in->h + p->pad_top + p->pad_bottom;
  j.padded_w = (int64_t)in->w + p->pad_left + p->pad_right;
  j.use_avx2 = dev->cpu_avx2;
  /* channel vectors gather with int32 float offsets from one channel to the others */
  j.channel_vectors = j.use_avx2 && out->w < 8 &&
                      j.in_v.lane_bytes / 4 * j.in_v.npu_num < (int64_t)INT32_MAX;
  /* a global pool: one output, the window the whole unpadded input */
  j.global_avx512 = dev->cpu_avx512 && out->h == 1 && out->w == 1 && p->kernel_h == in->h &&
                    p->kernel_w == in->w && p->pad_top == 0 && p->pad_left == 0 &&
                    p->pad_bottom == 0 && p->pad_right == 0 && p->dilation_h == 1 &&
                    p->dilation_w == 1;
  j.phased = 0;
  j.padded = 0;
  j.scratch = NULL;
  j.task_floats = 0;
  tasks = sophon_tasks_for(dev, work, j.global_avx512     ? sophon_ceil_div(out->c, 16)
                                     : j.channel_vectors ? sophon_ceil_div(out->c, 8)
                                                         : out->c);
  /* the rows layout needs AVX2 and, for stride > 1, the phase planes */
  if (j.use_avx2 && !j.channel_vectors && p->kernel_w <= MAX_TAP_COLS && p->stride_w > 1) {
    j.task_floats = sophon_ceil_div(
        (int64_t)p->stride_w * in->h * sophon_ceil_div(in->w, p->stride_w), 16) * 16;
    j.scratch = sophon_device_scratch(dev, (size_t)(j.task_floats * tasks));
    j.phased = j.scratch != NULL;
  }
  /* a max pool whose every window has a real tap (pads below the kernel, no
     dilation, and no window starting past the last real row or column: a ceil-mode
     output's last window can lie wholly in the padding, where the reference gives
     -FLT_MAX) reads its padding as -inf, which no tap's max takes (v > max is false,
     and max starts at -inf): the same outputs as skipping those taps */
  if (j.use_avx2 && !j.channel_vectors && !j.global_avx512 && p->kind == SOPHON_POOL_MAX &&
      p->stride_w == 1 && p->dilation_h == 1 && p->dilation_w == 1 &&
      p->kernel_w <= MAX_TAP_COLS && (p->pad_top | p->pad_left | p->pad_bottom | p->pad_right) > 0 &&
      p->pad_top < p->kernel_h && p->pad_bottom < p->kernel_h && p->pad_left < p->kernel_w &&
      p->pad_right < p->kernel_w && p->pad_top >= 0 && p->pad_left >= 0 && p->pad_bottom >= 0 &&
      p->pad_right >= 0 && (int64_t)(out->h - 1) * p->stride_h < (int64_t)p->pad_top + in->h &&
      (int64_t)(out->w - 1) * p->stride_w < (int64_t)p->pad_left + in->w) {
    j.task_floats = sophon_ceil_div(j.padded_h * j.padded_w, 16) * 16;
    j.scratch = sophon_device_scratch(dev, (size_t)(j.task_floats * tasks));
    j.padded = j.scratch != NULL;
  }
  if (j.padded) {
    j.unpadded = *p;
    j.unpadded.pad_top = j.unpadded.pad_left = j.unpadded.pad_bottom = j.unpadded.pad_right = 0;
    j.p = &j.unpadded;
    j.pad_top = p->pad_top;
    j.pad_left = p->pad_left;
    j.data_h = in->h;
    j.data_w = in->w;
    j.in_h = (int32_t)j.padded_h;
    j.in_w = (int32_t)j.padded_w;
  }
  pool_plan_columns(&j);
  if (!j.use_avx2 || j.channel_vectors || p->kernel_w > MAX_TAP_COLS ||
      (p->stride_w > 1 && !j.phased))
    j.ox_begin = j.ox_end = 0; /* every output by the per-output path */
  sophon_parallel_run(dev->pool, tasks, pool_task, &j);
  return 0;
}
