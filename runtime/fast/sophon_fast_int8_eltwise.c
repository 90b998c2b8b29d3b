/*
 * sophon_fast_int8_eltwise.c - fast INT8 ADD and pool2d, beside the reference
 * kernels of reference/sophon_tiu_add_pool_int8.c (the specification;
 * tests/test_fast_int8.py checks one against the other for equality). Same
 * operands, already checked by the instruction. Tasks own channels; each output is
 * computed by one task.
 *
 * ADD (both inputs of out's shape; broadcasts go to the reference): TFLite's
 * AddFunc on 16 (AVX-512) or 8 (AVX2) lanes with the vector primitives of
 * sophon_fast_int8.h, which equal the scalar ones lane by lane, so the outputs are
 * bit-identical. The bounds of sophon_tiu_add_pool_int8.c (add_int8_element) hold
 * lane by lane: nothing overflows.
 *
 * pool2d, per output row: the window rows inside the input are first reduced
 * (max, or int32 sum) column by column into a row buffer whose padding columns
 * hold the neutral value (-128, TFLite's start for MAX; 0 for AVG, where padding
 * taps are not counted); then each output reduces its window's columns of that
 * buffer. For a stride sw > 1 the buffer is split into sw phase rows (element j of
 * phase r is column j * sw + r), so both steps are loops over consecutive
 * elements: plain C loops, compiled once as they are and once for AVX2, which the
 * compiler vectorises. MAX: max is associative and the neutral -128 is the
 * reference's start value, so the result is the reference's. AVG: the same
 * integer sum (no overflow: sophon_tiu_add_pool_int8.c bounds it) divided by the same
 * count with the reference's rounding, per output.
 *
 * reduce_int8 (over h): the rows of each channel reduced column by column into an
 * int32 row (the sum, or the max / min from the reference's start value), in
 * chunks of REDUCE_COLUMNS columns, the same loops compiled as they are and for
 * AVX2; then each column is requantized as the reference does. Integer sums are
 * exact in any order (|sum| <= 128 * 2^23: checked) and max / min are
 * associative, so the outputs are bit-identical.
 */
#include "fast/sophon_fast_int8.h"
#include "reference/sophon_reference.h"
#include "sophon_quant.h"

/* ------------------------------------------------------------------- add */

typedef struct {
  sophon_view out_v, a_v, b_v;
  const sophon_add_int8_params* p;
  int32_t batches, channels;
  int64_t plane; /* h * w */
  int use_avx2, use_avx512;
} add_job;

/* TFLite's AddFunc (sophon_tiu_add_pool_int8.c: add_int8_element) for one element pair. */
static int8_t add_one(int32_t x, int32_t y, const sophon_add_int8_params* p) {
  const int32_t shifted_x = (x - p->input1_zero_point) * (1 << p->left_shift);
  const int32_t shifted_y = (y - p->input2_zero_point) * (1 << p->left_shift);
  const int32_t scaled_x = (int32_t)sophon_rounding_shift_right(
      sophon_srdhm_inline(shifted_x, p->input1_multiplier), -p->input1_shift);
  const int32_t scaled_y = (int32_t)sophon_rounding_shift_right(
      sophon_srdhm_inline(shifted_y, p->input2_multiplier), -p->input2_shift);
  const int32_t result = (int32_t)sophon_rounding_shift_right(
                             sophon_srdhm_inline(scaled_x + scaled_y, p->output_multiplier),
                             -p->output_shift) +
                         p->output_zero_point;
  return (int8_t)(result < p->act_min ? p->act_min : (result > p->act_max ? p->act_max : result));
}

/* out[i] = AddFunc(a[i], b[i]) for i < count. */
static void add_run_c(const int8_t* a, const int8_t* b, int8_t* out, int64_t count,
                      const sophon_add_int8_params* p) {
  int64_t i;
  for (i = 0; i < count; ++i) out[i] = add_one(a[i], b[i], p);
}

#if SOPHON_X86_DISPATCH
/* AddFunc on 8 lanes: x, y are the int8 inputs widened to int32. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i add_avx2(__m256i x, __m256i y,
                                                              const sophon_add_int8_params* p) {
  const __m128i left_shift = _mm_cvtsi32_si128(p->left_shift);
  const __m256i shifted_x =
      _mm256_sll_epi32(_mm256_sub_epi32(x, _mm256_set1_epi32(p->input1_zero_point)), left_shift);
  const __m256i shifted_y =
      _mm256_sll_epi32(_mm256_sub_epi32(y, _mm256_set1_epi32(p->input2_zero_point)), left_shift);
  const __m256i scaled_x = sophon_rounding_shift_avx2(
      sophon_srdhm_avx2(shifted_x, _mm256_set1_epi32(p->input1_multiplier)), -p->input1_shift);
  const __m256i scaled_y = sophon_rounding_shift_avx2(
      sophon_srdhm_avx2(shifted_y, _mm256_set1_epi32(p->input2_multiplier)), -p->input2_shift);
  const __m256i result = _mm256_add_epi32(
      sophon_rounding_shift_avx2(sophon_srdhm_avx2(_mm256_add_epi32(scaled_x, scaled_y),
                                                   _mm256_set1_epi32(p->output_multiplier)),
                                 -p->output_shift),
      _mm256_set1_epi32(p->output_zero_point));
  return _mm256_min_epi32(_mm256_max_epi32(result, _mm256_set1_epi32(p->act_min)),
                          _mm256_set1_epi32(p->act_max));
}

/* add_run_c, 16 elements at a time. */
SOPHON_AVX2 static void add_run_avx2(const int8_t* a, const int8_t* b, int8_t* out,
                                     int64_t count, const sophon_add_int8_params* params) {
  const sophon_add_int8_params local = *params, *p = &local; /* not aliased by out */
  int64_t i;
  for (i = 0; i + 16 <= count; i += 16) {
    /* in place (out == a or b): all 16 inputs are read before the 16 outputs are written */
    const __m128i a16 = _mm_loadu_si128((const __m128i*)(const void*)(a + i));
    const __m128i b16 = _mm_loadu_si128((const __m128i*)(const void*)(b + i));
    const __m256i lo = add_avx2(_mm256_cvtepi8_epi32(a16), _mm256_cvtepi8_epi32(b16), p);
    const __m256i hi = add_avx2(_mm256_cvtepi8_epi32(_mm_srli_si128(a16, 8)),
                                _mm256_cvtepi8_epi32(_mm_srli_si128(b16, 8)), p);
    _mm_storeu_si128((__m128i*)(void*)(out + i), sophon_pack_bytes_avx2(lo, hi));
  }
  add_run_c(a + i, b + i, out + i, count - i, p);
}

/* add_avx2 on 16 lanes. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i add_avx512(
    __m512i x, __m512i y, const sophon_add_int8_params* p) {
  const __m128i left_shift = _mm_cvtsi32_si128(p->left_shift);
  const __m512i shifted_x =
      _mm512_sll_epi32(_mm512_sub_epi32(x, _mm512_set1_epi32(p->input1_zero_point)), left_shift);
  const __m512i shifted_y =
      _mm512_sll_epi32(_mm512_sub_epi32(y, _mm512_set1_epi32(p->input2_zero_point)), left_shift);
  const __m512i scaled_x = sophon_rounding_shift_avx512(
      sophon_srdhm_avx512(shifted_x, _mm512_set1_epi32(p->input1_multiplier)), -p->input1_shift);
  const __m512i scaled_y = sophon_rounding_shift_avx512(
      sophon_srdhm_avx512(shifted_y, _mm512_set1_epi32(p->input2_multiplier)), -p->input2_shift);
  const __m512i result = _mm512_add_epi32(
      sophon_rounding_shift_avx512(sophon_srdhm_avx512(_mm512_add_epi32(scaled_x, scaled_y),
                                                       _mm512_set1_epi32(p->output_multiplier)),
                                   -p->output_shift),
      _mm512_set1_epi32(p->output_zero_point));
  return _mm512_min_epi32(_mm512_max_epi32(result, _mm512_set1_epi32(p->act_min)),
                          _mm512_set1_epi32(p->act_max));
}

/* add_run_c, 16 elements at a time, the tail masked. */
SOPHON_AVX512 static void add_run_avx512(const int8_t* a, const int8_t* b, int8_t* out,
                                             int64_t count,
                                             const sophon_add_int8_params* params) {
  const sophon_add_int8_params local = *params, *p = &local; /* not aliased by out */
  int64_t i;
  for (i = 0; i < count; i += 16) {
    const __mmask16 mask =
        count - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (count - i)) - 1u);
    const __m512i x = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, a + i));
    const __m512i y = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, b + i));
    _mm_mask_storeu_epi8(out + i, mask, sophon_pack_bytes_avx512(add_avx512(x, y, p)));
  }
}
#endif

/* The channels (batch item, channel) of task `task`. */
static void add_task(void* ctx, int32_t task, int32_t tasks) {
  const add_job* j = (const add_job*)ctx;
  int64_t begin, end, item;
  sophon_task_range((int64_t)j->batches * j->channels, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t batch = (int32_t)(item / j->channels), channel = (int32_t)(item % j->channels);
    const int8_t* a = sophon_view_i8(&j->a_v, batch, channel);
    const int8_t* b = sophon_view_i8(&j->b_v, batch, channel);
    int8_t* out = sophon_view_i8(&j->out_v, batch, channel);
#if SOPHON_X86_DISPATCH
    if (j->use_avx512)
      add_run_avx512(a, b, out, j->plane, j->p);
    else if (j->use_avx2)
      add_run_avx2(a, b, out, j->plane, j->p);
    else
#endif
      add_run_c(a, b, out, j->plane, j->p);
  }
}

/* ADD without broadcast (else -1: the reference runs), tasks over channels. */
int sophon_fast_add_int8(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                         const sophon_local* b, const sophon_add_int8_params* p) {
  add_job j;
  if (a->n != out->n || a->c != out->c || a->h != out->h || a->w != out->w || b->n != out->n ||
      b->c != out->c || b->h != out->h || b->w != out->w)
    return -1; /* a broadcast */
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.a_v, dev, a);
  sophon_view_init(&j.b_v, dev, b);
  j.p = p;
  j.batches = out->n;
  j.channels = out->c;
  j.plane = (int64_t)out->h * out->w;
  j.use_avx2 = dev->cpu_avx2;
  j.use_avx512 = dev->cpu_avx512;
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)out->n * (uint64_t)out->c * (uint64_t)j.plane,
                                       (int64_t)out->n * out->c),
                      add_task, &j);
  return 0;
}

/* ---------------------------------------------------------------- pool2d */

typedef struct {
  sophon_view out_v, in_v;
  const sophon_pool_params* p;
  int32_t act_min, act_max;
  int32_t batches, channels, in_h, in_w, out_h, out_w;
  int32_t span;        /* buffer columns: (out_w - 1) * sw + (kernel_w - 1) * dw + 1 */
  int32_t phase_len;   /* elements of a phase row: ceil(span / sw) */
  int32_t* counts;     /* AVG: in-bounds columns of output ox's window */
  int32_t* buffers;    /* per task: span + sw * phase_len int32 */
  int64_t task_elems;
  int use_avx2;
} pool_job;

/* MAX or sum of the window rows [first, first + rows * dh) (step dh, row stride
 * in_w) of `in` into acc[x], x < width. */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline void pool_rows_body(int32_t* restrict acc, const int8_t* restrict in, int64_t step,
                                  int32_t rows, int32_t width, int is_max) {
  int32_t r, x;
  for (x = 0; x < width; ++x) acc[x] = in[x];
  for (r = 1; r < rows; ++r) {
    const int8_t* row = in + r * step;
    if (is_max)
      for (x = 0; x < width; ++x) acc[x] = acc[x] > row[x] ? acc[x] : row[x];
    else
      for (x = 0; x < width; ++x) acc[x] += row[x];
  }
}

/* out[ox] = MAX or sum over taps kx of phase[tap_phase[kx]][ox + tap_shift[kx]]:
 * the window reduction along the row, taps as plain offsets into `phases`. */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline void pool_cols_body(int32_t* restrict out, const int32_t* restrict phases,
                                  int32_t phase_len, int32_t sw, int32_t dw, int32_t kernel_w,
                                  int32_t count, int is_max) {
  int32_t kx, x;
  for (kx = 0; kx < kernel_w; ++kx) {
    const int32_t col = kx * dw;
    const int32_t* src = phases + (int64_t)(col % sw) * phase_len + col / sw;
    if (kx == 0)
      for (x = 0; x < count; ++x) out[x] = src[x];
    else if (is_max)
      for (x = 0; x < count; ++x) out[x] = out[x] > src[x] ? out[x] : src[x];
    else
      for (x = 0; x < count; ++x) out[x] += src[x];
  }
}

/* out[i] = clamp(acc[i], lo, hi) as int8. */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline void pool_clamp_body(int8_t* restrict out, const int32_t* restrict acc,
                                   int32_t count, int32_t lo, int32_t hi) {
  int32_t i;
  for (i = 0; i < count; ++i) out[i] = (int8_t)(acc[i] < lo ? lo : (acc[i] > hi ? hi : acc[i]));
}

/* The bodies above, compiled as they are and for AVX2. */
static void pool_rows_c(int32_t* acc, const int8_t* in, int64_t step, int32_t rows, int32_t width,
                        int is_max) {
  pool_rows_body(acc, in, step, rows, width, is_max);
}
static void pool_cols_c(int32_t* out, const int32_t* phases, int32_t phase_len, int32_t sw,
                        int32_t dw, int32_t kernel_w, int32_t count, int is_max) {
  pool_cols_body(out, phases, phase_len, sw, dw, kernel_w, count, is_max);
}
static void pool_clamp_c(int8_t* out, const int32_t* acc, int32_t count, int32_t lo, int32_t hi) {
  pool_clamp_body(out, acc, count, lo, hi);
}

#if SOPHON_X86_DISPATCH
SOPHON_AVX2 static void pool_rows_avx2(int32_t* acc, const int8_t* in, int64_t step, int32_t rows,
                                       int32_t width, int is_max) {
  pool_rows_body(acc, in, step, rows, width, is_max);
}
SOPHON_AVX2 static void pool_cols_avx2(int32_t* out, const int32_t* phases, int32_t phase_len,
                                       int32_t sw, int32_t dw, int32_t kernel_w, int32_t count,
                                       int is_max) {
  pool_cols_body(out, phases, phase_len, sw, dw, kernel_w, count, is_max);
}
SOPHON_AVX2 static void pool_clamp_avx2(int8_t* out, const int32_t* acc, int32_t count,
                                        int32_t lo, int32_t hi) {
  pool_clamp_body(out, acc, count, lo, hi);
}
#endif

/* The channels (batch item, channel) of task `task`, row by row (file comment). */
static void pool_task(void* ctx, int32_t task, int32_t tasks) {
  const pool_job* j = (const pool_job*)ctx;
  const sophon_pool_params* p = j->p;
  const int is_max = p->kind == SOPHON_POOL_MAX;
  const int32_t neutral = is_max ? -128 : 0;
  const int32_t sw = p->stride_w, span = j->span, phase_len = j->phase_len;
  /* columns of the buffer: window column c (from -pad_left) at c; input column ix
   * at ix + pad_left for ix in [x_lo, x_hi) */
  const int32_t x_lo = p->pad_left, x_hi = p->pad_left + j->in_w < span
                                              ? p->pad_left + j->in_w : span;
  int32_t* columns = j->buffers + (int64_t)task * j->task_elems;
  /* stride 1: the buffer is its own single phase row */
  int32_t* phases = sw == 1 ? columns : columns + span;
  int64_t begin, end, item;
  sophon_task_range((int64_t)j->batches * j->channels, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t batch = (int32_t)(item / j->channels), channel = (int32_t)(item % j->channels);
    const int8_t* in = sophon_view_i8(&j->in_v, batch, channel);
    int8_t* out = sophon_view_i8(&j->out_v, batch, channel);
    int32_t oy, x, r;
    for (x = 0; x < span; ++x) columns[x] = neutral;
    for (oy = 0; oy < j->out_h; ++oy) {
      const int64_t origin = (int64_t)oy * p->stride_h - p->pad_top;
      const int32_t ky_lo = sophon_first_tap(origin, p->dilation_h);
      const int32_t ky_hi = sophon_end_tap(origin, p->dilation_h, j->in_h, p->kernel_h);
      int8_t* out_row = out + (int64_t)oy * j->out_w;
      int32_t acc[256];
      int32_t ox;
      if (ky_hi <= ky_lo) { /* MAX over padding only (AVG windows always have a tap) */
        for (ox = 0; ox < j->out_w; ++ox)
          out_row[ox] = (int8_t)(neutral < j->act_min ? j->act_min
                                                      : (neutral > j->act_max ? j->act_max : neutral));
        continue;
      }
      if (x_hi > x_lo) {
        const int8_t* first = in + (origin + (int64_t)ky_lo * p->dilation_h) * j->in_w +
                              (x_lo - p->pad_left);
#if SOPHON_X86_DISPATCH
        if (j->use_avx2)
          pool_rows_avx2(columns + x_lo, first, (int64_t)p->dilation_h * j->in_w, ky_hi - ky_lo,
                         x_hi - x_lo, is_max);
        else
#endif
          pool_rows_c(columns + x_lo, first, (int64_t)p->dilation_h * j->in_w, ky_hi - ky_lo,
                      x_hi - x_lo, is_max);
      }
      /* phase rows: element e of phase r is buffer column e * sw + r (neutral past span) */
      for (r = 0; r < sw && sw > 1; ++r)
        for (x = 0; x < phase_len; ++x) {
          const int64_t c = (int64_t)x * sw + r;
          phases[(int64_t)r * phase_len + x] = c < span ? columns[c] : neutral;
        }
      for (ox = 0; ox < j->out_w; ox += 256) {
        const int32_t count = j->out_w - ox < 256 ? j->out_w - ox : 256;
        int32_t i;
#if SOPHON_X86_DISPATCH
        if (j->use_avx2)
          pool_cols_avx2(acc, phases + ox, phase_len, sw, p->dilation_w, p->kernel_w, count,
                         is_max);
        else
#endif
          pool_cols_c(acc, phases + ox, phase_len, sw, p->dilation_w, p->kernel_w, count,
                      is_max);
        for (i = 0; i < count && !is_max; ++i) {
          /* taps > 0 (checked); round half away from zero as the reference */
          const int32_t taps = (ky_hi - ky_lo) * j->counts[ox + i];
          acc[i] = acc[i] > 0 ? (acc[i] + taps / 2) / taps : (acc[i] - taps / 2) / taps;
        }
#if SOPHON_X86_DISPATCH
        if (j->use_avx2)
          pool_clamp_avx2(out_row + ox, acc, count, j->act_min, j->act_max);
        else
#endif
          pool_clamp_c(out_row + ox, acc, count, j->act_min, j->act_max);
      }
    }
  }
}

/* pool2d (MAX, or AVG over the in-bounds taps), tasks over channels; -1 for windows
 * too wide to buffer or when scratch cannot be had. */
int sophon_fast_pool2d_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_pool_params* p, int32_t act_min, int32_t act_max) {
  pool_job j;
  int64_t span, count_words, total;
  int32_t tasks, ox;
  int32_t* scratch;

  if (p->kind == SOPHON_POOL_AVG && p->arithmetic != SOPHON_INT8_TFLITE) return -1; /* f32 sums */
  span = (int64_t)(out->w - 1) * p->stride_w + (int64_t)(p->kernel_w - 1) * p->dilation_w + 1;
  if (span > ((int64_t)1 << 24)) return -1; /* absurdly wide windows: the reference */
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  j.p = p;
  j.act_min = act_min;
  j.act_max = act_max;
  j.batches = out->n;
  j.channels = out->c;
  j.in_h = in->h;
  j.in_w = in->w;
  j.out_h = out->h;
  j.out_w = out->w;
  j.span = (int32_t)span;
  j.phase_len = (int32_t)sophon_ceil_div(span, p->stride_w);
  j.task_elems = sophon_ceil_div(span + (int64_t)p->stride_w * j.phase_len, 16) * 16;
  j.use_avx2 = dev->cpu_avx2;
  tasks = sophon_tasks_for(dev, (uint64_t)out->n * (uint64_t)out->c * (uint64_t)out->h *
                                    (uint64_t)out->w * (uint64_t)p->kernel_h * (uint64_t)p->kernel_w,
                           (int64_t)out->n * out->c);
  count_words = sophon_ceil_div(out->w, 16) * 16;
  total = count_words + tasks * j.task_elems;
  scratch = (int32_t*)(void*)sophon_device_scratch(dev, (size_t)total);
  if (scratch == NULL) return -1;
  j.counts = scratch;
  j.buffers = scratch + count_words;
  for (ox = 0; ox < out->w; ++ox) {
    const int64_t origin = (int64_t)ox * p->stride_w - p->pad_left;
    j.counts[ox] = sophon_end_tap(origin, p->dilation_w, in->w, p->kernel_w) -
                   sophon_first_tap(origin, p->dilation_w);
  }
  sophon_parallel_run(dev->pool, tasks, pool_task, &j);
  return 0;
}

/* ---------------------------------------------------------------- reduce */

/* Columns reduced at a time (an int32 row on the stack). */
#define REDUCE_COLUMNS 256

/* acc[x] = the reduction of in[y * width + x] over y < rows, for x < count. */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline void reduce_columns_body(const int8_t* restrict in, int32_t rows, int32_t width,
                                       int32_t count, sophon_reduce_kind kind,
                                       int32_t* restrict acc) {
  int32_t x, y;
  if (count == 1 && (kind == SOPHON_REDUCE_SUM || kind == SOPHON_REDUCE_MEAN)) {
    int32_t sum = 0; /* one column: a reduction the compiler vectorises */
    for (y = 0; y < rows; ++y) sum += in[(int64_t)y * width];
    acc[0] = sum;
    return;
  }
  for (x = 0; x < count; ++x)
    acc[x] = kind == SOPHON_REDUCE_MAX ? -128 : kind == SOPHON_REDUCE_MIN ? 127 : 0;
  for (y = 0; y < rows; ++y) {
    const int8_t* row = in + (int64_t)y * width;
    if (kind == SOPHON_REDUCE_MAX)
      for (x = 0; x < count; ++x) acc[x] = row[x] > acc[x] ? row[x] : acc[x];
    else if (kind == SOPHON_REDUCE_MIN)
      for (x = 0; x < count; ++x) acc[x] = row[x] < acc[x] ? row[x] : acc[x];
    else
      for (x = 0; x < count; ++x) acc[x] += row[x];
  }
}

static void reduce_columns_c(const int8_t* in, int32_t rows, int32_t width, int32_t count,
                             sophon_reduce_kind kind, int32_t* acc) {
  reduce_columns_body(in, rows, width, count, kind, acc);
}

#if SOPHON_X86_DISPATCH
SOPHON_AVX2 static void reduce_columns_avx2(const int8_t* in, int32_t rows, int32_t width,
                                            int32_t count, sophon_reduce_kind kind, int32_t* acc) {
  reduce_columns_body(in, rows, width, count, kind, acc);
}
#endif

typedef struct {
  sophon_view out_v, in_v;
  sophon_reduce_kind kind;
  const sophon_requant* q;
  int32_t multiplier, shift;
  int by_float;      /* SOPHON_REQUANT_FLOAT32: sophon_multiply_by_float_scale(sum, float_scale) */
  float float_scale; /* (float)q->scale[0] */
  int32_t batches, channels, rows, width;
  int use_avx2;
} reduce_job;

static void reduce_task(void* ctx, int32_t task, int32_t tasks) {
  const reduce_job* j = (const reduce_job*)ctx;
  const int requantize = j->kind == SOPHON_REDUCE_SUM || j->kind == SOPHON_REDUCE_MEAN;
  int64_t begin, end, item;
  sophon_task_range((int64_t)j->batches * j->channels, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t batch = (int32_t)(item / j->channels), channel = (int32_t)(item % j->channels);
    const int8_t* in = sophon_view_i8(&j->in_v, batch, channel);
    int8_t* out = sophon_view_i8(&j->out_v, batch, channel);
    int32_t x0, x;
    for (x0 = 0; x0 < j->width; x0 += REDUCE_COLUMNS) {
      const int32_t count = j->width - x0 < REDUCE_COLUMNS ? j->width - x0 : REDUCE_COLUMNS;
      int32_t acc[REDUCE_COLUMNS];
#if SOPHON_X86_DISPATCH
      if (j->use_avx2)
        reduce_columns_avx2(in + x0, j->rows, j->width, count, j->kind, acc);
      else
#endif
        reduce_columns_c(in + x0, j->rows, j->width, count, j->kind, acc);
      for (x = 0; x < count; ++x) {
        int32_t result = acc[x];
        if (requantize) { /* the reference's requantization of sum - zp * rows */
          const int32_t sum = acc[x] - j->q->input_zero_point * j->rows;
          result = (j->by_float ? sophon_multiply_by_float_scale(sum, j->float_scale)
                                : sophon_mbqm_inline(sum, j->multiplier, j->shift)) +
                   j->q->output_zero_point;
          if (result < j->q->act_min) result = j->q->act_min;
          if (result > j->q->act_max) result = j->q->act_max;
        }
        out[x0 + x] = (int8_t)result;
      }
    }
  }
}

int sophon_fast_reduce_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            sophon_reduce_kind kind, const sophon_requant* q) {
  const int requantize = kind == SOPHON_REDUCE_SUM || kind == SOPHON_REDUCE_MEAN;
  reduce_job j;
  /* fixed point (TFLite) or onnxruntime's float32 scaling (ONNX QDQ models); other
     roundings run on the reference kernel */
  if (requantize && q->rounding != SOPHON_REQUANT_FIXED_POINT &&
      q->rounding != SOPHON_REQUANT_FLOAT32)
    return 1;
  j.by_float = requantize && q->rounding == SOPHON_REQUANT_FLOAT32;
  j.float_scale = j.by_float ? (float)q->scale[0] : 0.0f;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  j.kind = kind;
  j.q = q;
  sophon_reduce_int8_multiplier(kind, in->h, q, &j.multiplier, &j.shift);
  j.batches = in->n;
  j.channels = in->c;
  j.rows = in->h;
  j.width = in->w;
  j.use_avx2 = dev->cpu_avx2;
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)in->n * (uint64_t)in->c * (uint64_t)in->h *
                                                (uint64_t)in->w,
                                       (int64_t)in->n * in->c),
                      reduce_task, &j);
  return 0;
}
