/*
 * sophon_fast_int8.c - fast INT8 conv2d and fc, beside the reference kernels of
 * sophon_tiu_int8.c, which stay the specification (tests/test_fast_int8.py checks
 * one against the other for equality). Same operands, already checked by the
 * instruction; the LMEM lane layout is read and written as it is.
 *
 * conv2d, one GEMM per (batch item, group):
 *     acc[oc][p] = sum_k A[oc][k] * B[k][p],   k = (ic, ky, kx), p = oy * OW + ox
 *   A is the weight, B the input minus input_zero_point (a value in [-255, 255]) as
 *   columns of window taps (im2col; padding taps are 0, so they add nothing, as the
 *   reference's skipped taps), both as int16 in pairs along k, the layout of
 *   _mm256_madd_epi16 (which multiplies int16 pairs and adds each pair's two
 *   products into one int32): a row of A is K/2 words (k = 2i, 2i+1), a chunk of B
 *   holds, for each pair i, the pairs of its pixels side by side. A is packed once
 *   per instruction; each task packs B for a chunk of pixels of one group at a
 *   time, then computes every output channel of the group on them in 6 x 16
 *   (channels x pixels) blocks: per pair, one broadcast of each channel's pair
 *   and one madd per 8 pixels (AVX2; else plain C). Then per output
 *     out = clamp(output_zero_point + MultiplyByQuantizedMultiplier(sat(acc + bias)))
 *   with sophon_mbqm_inline, the body of the reference's fixed-point function.
 * fc: the input vector gathered once as int16 (in - input_zero_point), then one
 *   dot product per output feature against its int8 weight row.
 *
 * Exactness. Every product is within +-32640 and the instruction checked K <=
 * 65793, so every partial sum, in any order, stays within int32 (the bound in
 * sophon_tiu_int8.c); _mm256_madd_epi16 adds two products (<= 65280) exactly.
 * Integer addition without overflow is associative: the accumulators equal the
 * reference's, and so do the requantized outputs, bit for bit, for any thread
 * count (each output is computed by one task).
 */
#include <string.h>

#include "sophon_fast.h"
#include "sophon_quant.h"

enum {
  BR = 6,  /* block rows: output channels */
  BN = 16  /* block columns: output pixels (two vectors of 8 int32) */
};

/* The reference's requantization (sophon_tiu_int8.c: requantize(saturate_i32(acc +
 * bias))) with the same fixed-point function (sophon_mbqm_inline is the body of
 * sophon_multiply_by_quantized_multiplier), inlined. */
static int8_t requantize(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                         const sophon_requant* q) {
  const int64_t sum = (int64_t)acc + bias;
  const int32_t sat = sum > INT32_MAX ? INT32_MAX : (sum < INT32_MIN ? INT32_MIN : (int32_t)sum);
  const int64_t scaled =
      (int64_t)sophon_mbqm_inline(sat, multiplier, shift) +
      q->output_zero_point;
  return (int8_t)(scaled < q->act_min ? q->act_min : (scaled > q->act_max ? q->act_max : scaled));
}

/* ------------------------------------------------------- block kernels
 * acc[r][j] = sum_{i < pairs} a[r][i].lo * b[i][j].lo + a[r][i].hi * b[i][j].hi for
 * r < BR, j < BN: a[r] is a row of A as int16 pairs (k = 2i, 2i + 1) in one 32-bit
 * word; b is a B panel of `pairs` rows of BN pixels, each an int16 pair for k = 2i,
 * 2i + 1, rows `b_step` pairs apart. */

typedef void (*block_fn)(int64_t pairs, const uint32_t* const* a, const int16_t* b,
                         int64_t b_step, int32_t acc[BR][BN]);

static void block_c(int64_t pairs, const uint32_t* const* a, const int16_t* b, int64_t b_step,
                    int32_t acc[BR][BN]) {
  int64_t i;
  int r, j;
  for (r = 0; r < BR; ++r)
    for (j = 0; j < BN; ++j) acc[r][j] = 0;
  for (i = 0; i < pairs; ++i) {
    const int16_t* row = b + i * b_step * 2;
    for (r = 0; r < BR; ++r) {
      const int32_t lo = (int16_t)(a[r][i] & 0xffffu), hi = (int16_t)(a[r][i] >> 16);
      for (j = 0; j < BN; ++j) acc[r][j] += lo * row[2 * j] + hi * row[2 * j + 1];
    }
  }
}

#if SOPHON_X86_DISPATCH
#define SOPHON_ROW(r)                                                              \
  do {                                                                             \
    const __m256i a_r = _mm256_set1_epi32((int32_t)a##r[i]);                       \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(a_r, b0));               \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(a_r, b1));               \
  } while (0)

SOPHON_AVX2 static void block_avx2(int64_t pairs, const uint32_t* const* a, const int16_t* b,
                                   int64_t b_step, int32_t acc[BR][BN]) {
  const uint32_t *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  int64_t i;
  for (i = 0; i < pairs; ++i, b += b_step * 2) {
    const __m256i b0 = _mm256_loadu_si256((const __m256i*)(const void*)b);
    const __m256i b1 = _mm256_loadu_si256((const __m256i*)(const void*)(b + 16));
    SOPHON_ROW(0);
    SOPHON_ROW(1);
    SOPHON_ROW(2);
    SOPHON_ROW(3);
    SOPHON_ROW(4);
    SOPHON_ROW(5);
  }
  _mm256_storeu_si256((__m256i*)(void*)acc[0], c00);
  _mm256_storeu_si256((__m256i*)(void*)(acc[0] + 8), c01);
  _mm256_storeu_si256((__m256i*)(void*)acc[1], c10);
  _mm256_storeu_si256((__m256i*)(void*)(acc[1] + 8), c11);
  _mm256_storeu_si256((__m256i*)(void*)acc[2], c20);
  _mm256_storeu_si256((__m256i*)(void*)(acc[2] + 8), c21);
  _mm256_storeu_si256((__m256i*)(void*)acc[3], c30);
  _mm256_storeu_si256((__m256i*)(void*)(acc[3] + 8), c31);
  _mm256_storeu_si256((__m256i*)(void*)acc[4], c40);
  _mm256_storeu_si256((__m256i*)(void*)(acc[4] + 8), c41);
  _mm256_storeu_si256((__m256i*)(void*)acc[5], c50);
  _mm256_storeu_si256((__m256i*)(void*)(acc[5] + 8), c51);
}
#undef SOPHON_ROW
#endif

static block_fn block_for(const sophon_device* dev) {
#if SOPHON_X86_DISPATCH
  if (dev->cpu_avx2) return block_avx2;
#else
  (void)dev;
#endif
  return block_c;
}

/* ----------------------------------------------------------- conv GEMM */

typedef struct {
  sophon_view out_v, in_v, weight_v, bias_v;
  int has_bias;
  const sophon_conv_params* p;
  const sophon_requant* q;
  int32_t in_h, in_w, out_w, out_c;
  int32_t icg, ocg;
  int64_t k, pairs;    /* icg * KH * KW; ceil(k / 2) */
  int64_t n;           /* OH * OW */
  int64_t pc, chunks;  /* pixels per chunk (a multiple of BN); per group ceil(n / pc) */
  int32_t groups, batch;
  uint32_t* a_pack;    /* out.c x pairs */
  int16_t* b_pack;     /* per task: pairs x pc x 2 */
  block_fn block;
} conv_job;

static void pack_a_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_job* g = (const conv_job*)ctx;
  int64_t begin, end, oc, i;
  sophon_task_range(g->out_c, task, tasks, &begin, &end);
  for (oc = begin; oc < end; ++oc) {
    const int8_t* src = sophon_view_i8(&g->weight_v, 0, (int32_t)oc);
    uint32_t* dst = g->a_pack + oc * g->pairs;
    for (i = 0; i < g->pairs; ++i) {
      const int32_t lo = src[2 * i], hi = 2 * i + 1 < g->k ? src[2 * i + 1] : 0;
      dst[i] = ((uint32_t)lo & 0xffffu) | ((uint32_t)hi << 16);
    }
  }
}

/* The B chunk of pixels [p0, p0 + count) of `group`: tap k = (ic, ky, kx) of chunk
 * pixel t at dst[((k / 2) * pc + t) * 2 + k % 2], in - input_zero_point inside the
 * input, 0 in the padding, past K and past `count`. */
static void pack_b_chunk(const conv_job* g, int32_t group, int64_t p0, int32_t count,
                         int16_t* dst) {
  const sophon_conv_params* p = g->p;
  const int32_t zp = g->q->input_zero_point;
  const sophon_channel_iter first = sophon_channel_begin(&g->in_v, g->batch, group * g->icg);
  int64_t pix = p0;
  memset(dst, 0, (size_t)(g->pairs * g->pc * 2) * sizeof(int16_t));
  while (pix < p0 + count) { /* a run of pixels on one output row */
    const int64_t oy = pix / g->out_w, ox = pix % g->out_w;
    const int32_t col = (int32_t)(pix - p0);
    const int64_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    const int32_t sw = p->stride_w;
    int32_t run = (int32_t)(g->out_w - ox < p0 + count - pix ? g->out_w - ox : p0 + count - pix);
    sophon_channel_iter channel = first;
    int32_t ic = 0, ky = 0, kx = 0, t;
    int64_t pair;
    for (pair = 0; pair < g->pairs; ++pair) {
      /* taps k = 2 * pair + h, h = 0, 1: the input row (NULL: padding or past K), the
         column of the run's first pixel, and the pixels [lo, hi) inside the row */
      const int8_t* src[2];
      int64_t ix[2];
      int32_t lo[2], hi[2], h, both_lo, both_hi;
      int16_t* out = dst + (pair * g->pc + col) * 2;
      for (h = 0; h < 2; ++h) {
        const int64_t iy = iy0 + (int64_t)ky * p->dilation_h;
        src[h] = NULL;
        ix[h] = 0;
        lo[h] = hi[h] = 0;
        if (ic < g->icg && iy >= 0 && iy < g->in_h) {
          src[h] = (const int8_t*)channel.base + iy * g->in_w;
          ix[h] = ix0 + (int64_t)kx * p->dilation_w;
          lo[h] = sophon_first_tap(ix[h], sw);
          hi[h] = sophon_end_tap(ix[h], sw, g->in_w, run);
          if (hi[h] < lo[h]) hi[h] = lo[h];
        }
        if (ic < g->icg && ++kx == p->kernel_w) { /* the next tap */
          kx = 0;
          if (++ky == p->kernel_h) {
            ky = 0;
            ++ic;
            sophon_channel_next(&g->in_v, &channel);
          }
        }
      }
      both_lo = lo[0] > lo[1] ? lo[0] : lo[1];
      both_hi = hi[0] < hi[1] ? hi[0] : hi[1];
      if (src[0] != NULL && src[1] != NULL && sw == 1 && both_lo < both_hi) {
        const int8_t* s0 = src[0] + ix[0];
        const int8_t* s1 = src[1] + ix[1];
        for (t = lo[0]; t < both_lo; ++t) out[2 * t] = (int16_t)(s0[t] - zp);
        for (t = lo[1]; t < both_lo; ++t) out[2 * t + 1] = (int16_t)(s1[t] - zp);
        for (t = both_lo; t < both_hi; ++t) {
          out[2 * t] = (int16_t)(s0[t] - zp);
          out[2 * t + 1] = (int16_t)(s1[t] - zp);
        }
        for (t = both_hi; t < hi[0]; ++t) out[2 * t] = (int16_t)(s0[t] - zp);
        for (t = both_hi; t < hi[1]; ++t) out[2 * t + 1] = (int16_t)(s1[t] - zp);
      } else {
        for (h = 0; h < 2; ++h)
          if (src[h] != NULL)
            for (t = lo[h]; t < hi[h]; ++t)
              out[2 * t + h] = (int16_t)(src[h][ix[h] + (int64_t)t * sw] - zp);
      }
    }
    pix += run;
  }
}

static void conv_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_job* g = (const conv_job*)ctx;
  const sophon_requant* q = g->q;
  int16_t* b_pack = g->b_pack + (int64_t)task * g->pairs * g->pc * 2;
  int64_t begin, end, item;
  sophon_task_range((int64_t)g->groups * g->chunks, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t group = (int32_t)(item / g->chunks);
    const int64_t p0 = (item % g->chunks) * g->pc;
    const int32_t count = (int32_t)(g->n - p0 < g->pc ? g->n - p0 : g->pc);
    int32_t oc0, t0, r, j;
    pack_b_chunk(g, group, p0, count, b_pack);
    for (oc0 = 0; oc0 < g->ocg; oc0 += BR) {
      const int32_t rows = g->ocg - oc0 < BR ? g->ocg - oc0 : BR;
      const uint32_t* a[BR];
      int8_t* out_rows[BR];
      int32_t bias[BR], multiplier[BR], shift[BR];
      for (r = 0; r < BR; ++r) { /* rows past the edge repeat the last; dropped */
        const int32_t oc = group * g->ocg + oc0 + (r < rows ? r : rows - 1);
        const int32_t qc = q->per_channel ? oc : 0;
        a[r] = g->a_pack + (int64_t)oc * g->pairs;
        out_rows[r] = sophon_view_i8(&g->out_v, g->batch, oc) + p0;
        bias[r] = g->has_bias ? *sophon_view_i32(&g->bias_v, 0, oc) : 0;
        multiplier[r] = q->multiplier[qc];
        shift[r] = q->shift[qc];
      }
      for (t0 = 0; t0 < count; t0 += BN) {
        const int32_t cols = count - t0 < BN ? count - t0 : BN;
        int32_t acc[BR][BN];
        g->block(g->pairs, a, b_pack + (int64_t)t0 * 2, g->pc, acc);
        for (r = 0; r < rows; ++r)
          for (j = 0; j < cols; ++j)
            out_rows[r][t0 + j] = requantize(acc[r][j], bias[r], multiplier[r], shift[r], q);
      }
    }
  }
}

int sophon_fast_conv2d_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_local* weight, const sophon_local* bias,
                            const sophon_conv_params* p, const sophon_requant* q) {
  conv_job g;
  int64_t a_words, b_elems;
  int32_t tasks;
  uint64_t macs;
  uint32_t* scratch;

  sophon_view_init(&g.out_v, dev, out);
  sophon_view_init(&g.in_v, dev, in);
  sophon_view_init(&g.weight_v, dev, weight);
  g.has_bias = bias != NULL;
  if (bias != NULL) sophon_view_init(&g.bias_v, dev, bias);
  g.p = p;
  g.q = q;
  g.in_h = in->h;
  g.in_w = in->w;
  g.out_w = out->w;
  g.out_c = out->c;
  g.groups = p->groups;
  g.icg = in->c / p->groups;
  g.ocg = out->c / p->groups;
  g.k = (int64_t)g.icg * p->kernel_h * p->kernel_w;
  g.pairs = sophon_ceil_div(g.k, 2);
  g.n = (int64_t)out->h * out->w;
  g.pc = g.n >= 8 * BN ? 4 * BN : BN;
  g.chunks = sophon_ceil_div(g.n, g.pc);
  g.block = block_for(dev);

  macs = (uint64_t)out->c * (uint64_t)g.n * (uint64_t)g.k;
  tasks = sophon_tasks_for(dev, macs, (int64_t)g.groups * g.chunks);
  a_words = sophon_ceil_div((int64_t)out->c * g.pairs, 16) * 16; /* keeps b_pack aligned */
  b_elems = (int64_t)tasks * g.pairs * g.pc * 2;
  scratch = (uint32_t*)(void*)sophon_device_scratch(dev, (size_t)(a_words + b_elems / 2));
  if (scratch == NULL) return -1;
  g.a_pack = scratch;
  g.b_pack = (int16_t*)(void*)(scratch + a_words);

  sophon_parallel_run(dev->pool, sophon_tasks_for(dev, macs, out->c), pack_a_task, &g);
  for (g.batch = 0; g.batch < out->n; ++g.batch)
    sophon_parallel_run(dev->pool, tasks, conv_task, &g);
  return 0;
}

/* ------------------------------------------------------------------ fc */

typedef struct {
  sophon_view out_v, weight_v, bias_v;
  int has_bias;
  const sophon_requant* q;
  int32_t batches, features;
  int64_t depth;
  const int16_t* inputs; /* batches x depth: in - input_zero_point, from the lanes */
  int use_avx2;
} fc_job;

static int32_t dot_i8_c(const int16_t* restrict x, const int8_t* restrict w, int64_t n) {
  int32_t sum = 0;
  int64_t k;
  for (k = 0; k < n; ++k) sum += (int32_t)x[k] * w[k];
  return sum;
}

#if SOPHON_X86_DISPATCH
SOPHON_AVX2 static int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

SOPHON_AVX2 static int32_t dot_i8_avx2(const int16_t* x, const int8_t* w, int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  int64_t k;
  for (k = 0; k + 16 <= n; k += 16) {
    const __m256i wv =
        _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(const void*)(w + k)));
    const __m256i xv = _mm256_loadu_si256((const __m256i*)(const void*)(x + k));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wv));
  }
  return hsum_epi32(acc) + dot_i8_c(x + k, w + k, n - k);
}
#endif

static void fc_task(void* ctx, int32_t task, int32_t tasks) {
  const fc_job* f = (const fc_job*)ctx;
  const sophon_requant* q = f->q;
  int64_t begin, end, feature;
  int32_t batch;
  sophon_task_range(f->features, task, tasks, &begin, &end);
  for (batch = 0; batch < f->batches; ++batch) {
    const int16_t* x = f->inputs + (int64_t)batch * f->depth;
    for (feature = begin; feature < end; ++feature) {
      /* weight (1, N, K, 1): row `feature` is contiguous along h */
      const int8_t* w = sophon_view_i8(&f->weight_v, 0, (int32_t)feature);
      const int32_t bias = f->has_bias ? *sophon_view_i32(&f->bias_v, 0, (int32_t)feature) : 0;
      const int32_t qc = q->per_channel ? (int32_t)feature : 0;
      int32_t acc;
#if SOPHON_X86_DISPATCH
      if (f->use_avx2)
        acc = dot_i8_avx2(x, w, f->depth);
      else
#endif
        acc = dot_i8_c(x, w, f->depth);
      *sophon_view_i8(&f->out_v, batch, (int32_t)feature) =
          requantize(acc, bias, q->multiplier[qc], q->shift[qc], q);
    }
  }
}

int sophon_fast_fc_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                        const sophon_local* weight, const sophon_local* bias,
                        const sophon_requant* q) {
  sophon_view in_v;
  fc_job f;
  int16_t* inputs;
  int32_t batch, k;

  inputs = (int16_t*)(void*)sophon_device_scratch(
      dev, (size_t)sophon_ceil_div((int64_t)in->n * in->c, 2));
  if (inputs == NULL) return -1;
  sophon_view_init(&in_v, dev, in);
  for (batch = 0; batch < in->n; ++batch) { /* in[batch, k] lives in lane k % npu */
    sophon_channel_iter it = sophon_channel_begin(&in_v, batch, 0);
    for (k = 0; k < in->c; ++k) {
      inputs[(int64_t)batch * in->c + k] =
          (int16_t)(*(const int8_t*)it.base - q->input_zero_point);
      sophon_channel_next(&in_v, &it);
    }
  }
  sophon_view_init(&f.out_v, dev, out);
  sophon_view_init(&f.weight_v, dev, weight);
  f.has_bias = bias != NULL;
  if (bias != NULL) sophon_view_init(&f.bias_v, dev, bias);
  f.q = q;
  f.batches = in->n;
  f.features = out->c;
  f.depth = in->c;
  f.inputs = inputs;
  f.use_avx2 = dev->cpu_avx2;
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)in->n * (uint64_t)out->c * (uint64_t)in->c, out->c),
                      fc_task, &f);
  return 0;
}
