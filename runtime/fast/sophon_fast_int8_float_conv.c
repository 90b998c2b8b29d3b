/*
 * sophon_fast_int8_float_conv.c - fast conv2d_int8 with SOPHON_REQUANT_FLOAT_CONV
 * (onnxruntime's float Conv between DequantizeLinear and QuantizeLinear, sophon_quant.h),
 * beside the reference kernel of reference/sophon_tiu_conv_int8.c (the specification;
 * tests/test_fast_int8.py checks one against the other for equality). Same operands,
 * already checked by the instruction.
 *
 * Every output is the same chain of float32 operations as in the reference: the taps
 * in [ic][ky][kx] order, each run of k_block taps a chain of fused multiply-adds from 0,
 * the runs added to the total in order, then the dequantized bias, the division by the
 * output scale, rounding to nearest even and the clamp. Only the layout of the work
 * differs: the input is dequantized once into zero-padded float planes, from which the
 * taps of a block of BLOCK_PIXELS output pixels are gathered into a column buffer (im2col;
 * a pointwise conv of stride 1 reads the planes as they are; padding taps are 0, and
 * fma(0, w, s) == s up to the sign of a zero sum, which no output can tell), and the chains of 8 (AVX2) or 64 (AVX-512,
 * four vectors) pixels run side by side in vector lanes, four output channels at a time;
 * each lane is one output's own chain, so the results are bit-identical. The plain C level runs the
 * chains one output at a time with fmaf. On AVX-512 a dense conv whose output channels
 * fill vectors better than its pixels (7x7 .. 28x28 planes) puts the channels in the lanes
 * instead ("output channels in lanes" below), K block by K block.
 *
 * Tasks own ranges of units, a unit being four output channels of one (batch item, group,
 * pixel block), so that a layer of few blocks still splits evenly over the threads; in
 * lanes, (batch item, pixel block, channel chunk). Each output is computed by one task.
 * The input planes (and the filters of the pixel-block layout) are dequantized on the
 * pool too, by (batch item, channel) and by output channel.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fast/sophon_fast_int8.h"
#include "sophon_quant.h"

/* Output pixels per column buffer: four AVX-512 vectors (chains_avx512 takes it whole). */
#define BLOCK_PIXELS 64
/* Output channels in lanes (below): pixels per register tile, and at most this many
 * pixels per block (a block's taps are gathered one K block at a time). */
#define LANES_TILE_PIXELS 12
#define LANES_BLOCK_PIXELS 256

typedef struct {
  sophon_view out_v, in_v;
  const sophon_local *out, *in;
  const sophon_conv_params* p;
  const sophon_requant* q;
  int32_t in_c_per_group, out_c_per_group;
  int64_t k, pixels, blocks;
  const float* filters;     /* [oc][k]: (float)weight * filter scale */
  const float* bias;        /* [oc]: the dequantized bias */
  const float* planes;      /* the input dequantized and zero-padded, [n][c][plane_h][plane_w]
                               (+ BLOCK_PIXELS floats of tail) */
  int64_t plane_h, plane_w;
  int direct;               /* a 1x1 conv of stride 1 without padding: the planes are the
                               column buffer (row i = plane i), no gather */
  int level;                /* 2: AVX-512, 1: AVX2 with FMA, 0: C */
} float_conv_job;

/* QuantizeLinear of one output (as quantize_float_conv in the reference). */
static int8_t quantize_output(float total, float bias, const sophon_requant* q) {
  const float low = (float)(q->act_min - q->output_zero_point);
  const float high = (float)(q->act_max - q->output_zero_point);
  float scaled = nearbyintf((total + bias) / q->output_scale);
  scaled = scaled < low ? low : (scaled > high ? high : scaled);
  return (int8_t)((int32_t)scaled + q->output_zero_point);
}

/* The chain of output channel `oc` for column j of cols (k rows of `stride` floats). */
static float chain_c(const float* cols, int64_t stride, int64_t j, const float* filter, int64_t k,
                     int64_t block) {
  float total = 0.0f;
  int64_t start, i;
  for (start = 0; start < k; start += block) {
    const int64_t end = start + block < k ? start + block : k;
    float run = 0.0f;
    for (i = start; i < end; ++i) run = fmaf(cols[i * stride + j], filter[i], run);
    total = start == 0 ? run : run + total;
  }
  return total;
}

#if SOPHON_X86_DISPATCH
/* Four output channels' chains for 8 pixels (columns j .. j + 7) in AVX2 lanes. */
SOPHON_AVX2_FMA static void chains_avx2(const float* cols, int64_t stride, int64_t j,
                                        const float* const filters[4], int64_t k, int64_t block,
                                        float totals[4][8]) {
  __m256 total[4];
  int64_t start, i;
  int r;
  for (start = 0; start < k; start += block) {
    const int64_t end = start + block < k ? start + block : k;
    __m256 run[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (i = start; i < end; ++i) {
      const __m256 c = _mm256_loadu_ps(cols + i * stride + j);
      for (r = 0; r < 4; ++r) run[r] = _mm256_fmadd_ps(c, _mm256_set1_ps(filters[r][i]), run[r]);
    }
    for (r = 0; r < 4; ++r) total[r] = start == 0 ? run[r] : _mm256_add_ps(run[r], total[r]);
  }
  for (r = 0; r < 4; ++r) _mm256_storeu_ps(totals[r], total[r]);
}

/* chains_avx2 for a whole block of BLOCK_PIXELS (64) pixels: four vectors of 16 lanes
 * for each of up to four output channels (filter_count), up to 16 chains side by side
 * (each lane still one output's own chain); the runs' totals wait in `totals`. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void chains_avx512(
    const float* cols, int64_t stride, const float* const filters[], const int filter_count, int64_t k,
    int64_t block, float totals[][BLOCK_PIXELS]) {
  int64_t start, i;
  int r, v;
  for (start = 0; start < k; start += block) {
    const int64_t end = start + block < k ? start + block : k;
    __m512 run[4][4];
    for (r = 0; r < filter_count; ++r)
      for (v = 0; v < 4; ++v) run[r][v] = _mm512_setzero_ps();
    for (i = start; i < end; ++i) {
      const float* row = cols + i * stride;
      const __m512 c0 = _mm512_loadu_ps(row), c1 = _mm512_loadu_ps(row + 16);
      const __m512 c2 = _mm512_loadu_ps(row + 32), c3 = _mm512_loadu_ps(row + 48);
      for (r = 0; r < filter_count; ++r) {
        const __m512 w = _mm512_set1_ps(filters[r][i]);
        run[r][0] = _mm512_fmadd_ps(c0, w, run[r][0]);
        run[r][1] = _mm512_fmadd_ps(c1, w, run[r][1]);
        run[r][2] = _mm512_fmadd_ps(c2, w, run[r][2]);
        run[r][3] = _mm512_fmadd_ps(c3, w, run[r][3]);
      }
    }
    for (r = 0; r < filter_count; ++r)
      for (v = 0; v < 4; ++v) {
        float* total = totals[r] + 16 * v;
        _mm512_storeu_ps(total, start == 0 ? run[r][v] : _mm512_add_ps(run[r][v], _mm512_loadu_ps(total)));
      }
  }
}

/* chains_avx512 with the channel count known to the compiler, so that the 16 (or 4)
 * runs stay in registers. */
SOPHON_AVX512 static void chains4_avx512(const float* cols, int64_t stride, const float* const filters[4],
                                         int64_t k, int64_t block, float totals[4][BLOCK_PIXELS]) {
  chains_avx512(cols, stride, filters, 4, k, block, totals);
}
SOPHON_AVX512 static void chains1_avx512(const float* cols, int64_t stride, const float* filter, int64_t k,
                                         int64_t block, float totals[BLOCK_PIXELS]) {
  const float* const filters[1] = {filter};
  chains_avx512(cols, stride, filters, 1, k, block, (float(*)[BLOCK_PIXELS])totals);
}
/* quantize_output of `count` totals of one output channel, 16 lanes at a time: the same
 * float32 add and division, nearest-even rounding (roundscale), clamp and zero point. */
SOPHON_AVX512 static void quantize_outputs_avx512(const float* totals, int64_t count, float bias,
                                                  const sophon_requant* q, int8_t* out) {
  const __m512 add = _mm512_set1_ps(bias), scale = _mm512_set1_ps(q->output_scale);
  const __m512 low = _mm512_set1_ps((float)(q->act_min - q->output_zero_point));
  const __m512 high = _mm512_set1_ps((float)(q->act_max - q->output_zero_point));
  const __m512i zero_point = _mm512_set1_epi32(q->output_zero_point);
  int64_t n;
  for (n = 0; n < count; n += 16) {
    const __mmask16 lanes = count - n >= 16 ? (__mmask16)0xFFFFu : (__mmask16)((1u << (count - n)) - 1u);
    __m512 v = _mm512_div_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(lanes, totals + n), add), scale);
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(v, low), high);
    _mm_mask_storeu_epi8(out + n, lanes,
                         _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(v), zero_point)));
  }
}
#endif

#if SOPHON_X86_DISPATCH
/* gather's copies at stride 1 on AVX-512: runs of a row's length or less (a 14x14
 * depthwise conv copies 25 taps x 5 runs of 14 floats per block), too short for a memcpy
 * call to pay: 16 floats at a time, the last ones masked. */
SOPHON_AVX512 static void copy_runs_avx512(float* row, const float* tap, const int64_t* run_first,
                                           const int64_t* run_length, const int64_t* run_origin, int runs,
                                           int64_t count, int64_t width) {
  int64_t n;
  int r;
  for (n = count; n < width; n += 16) /* lanes past the block: 0, not stored */
    _mm512_mask_storeu_ps(row + n, width - n >= 16 ? (__mmask16)0xFFFFu : (__mmask16)((1u << (width - n)) - 1u),
                          _mm512_setzero_ps());
  for (r = 0; r < runs; ++r) {
    float* dst = row + run_first[r];
    const float* src = tap + run_origin[r];
    const int64_t n = run_length[r];
    int64_t m;
    for (m = 0; m + 16 <= n; m += 16) _mm512_storeu_ps(dst + m, _mm512_loadu_ps(src + m));
    if (m < n) {
      const __mmask16 lanes = (__mmask16)((1u << (n - m)) - 1u);
      _mm512_mask_storeu_ps(dst + m, lanes, _mm512_maskz_loadu_ps(lanes, src + m));
    }
  }
}
#endif

/* The column buffer of pixels [first, first + count) of one (batch, group) for taps
 * [tap_begin, tap_end): row i - tap_begin is tap i = [ic][ky][kx], `width` floats (count
 * of them the dequantized input or 0 at padding, read from the zero-padded planes, the
 * rest 0). The block's pixels are cut into runs along output rows, each with its window
 * origin in the plane, once; a tap copies each run from its own offset (a memcpy at
 * stride 1). */
static void gather(const float_conv_job* j, int32_t batch, int32_t group, int64_t first,
                   int64_t count, int64_t tap_begin, int64_t tap_end, int64_t width, float* cols) {
  const sophon_conv_params* p = j->p;
  const int32_t out_w = j->out->w;
  const int64_t plane = j->plane_h * j->plane_w;
  const float* channel_plane =
      j->planes + ((int64_t)batch * j->in->c + (int64_t)group * j->in_c_per_group) * plane;
  const int64_t window = (int64_t)p->kernel_h * p->kernel_w;
  int64_t run_first[LANES_BLOCK_PIXELS], run_length[LANES_BLOCK_PIXELS], run_origin[LANES_BLOCK_PIXELS];
  int64_t i, n, m;
  int runs = 0, r;
  for (n = 0; n < count; n += run_length[runs++]) {
    const int64_t y = (first + n) / out_w, x = (first + n) % out_w;
    run_first[runs] = n;
    run_length[runs] = out_w - x < count - n ? out_w - x : count - n;
    run_origin[runs] = y * p->stride_h * j->plane_w + x * p->stride_w;
  }
  for (i = tap_begin; i < tap_end; ++i) {
    const int64_t filter_y = i % window / p->kernel_w, filter_x = i % p->kernel_w;
    const float* tap = channel_plane + i / window * plane + filter_y * p->dilation_h * j->plane_w +
                       filter_x * p->dilation_w;
    float* row = cols + (i - tap_begin) * width;
#if SOPHON_X86_DISPATCH
    if (j->level == 2 && p->stride_w == 1) {
      copy_runs_avx512(row, tap, run_first, run_length, run_origin, runs, count, width);
      continue;
    }
#endif
    for (r = 0; r < runs; ++r) {
      if (p->stride_w == 1) {
        memcpy(row + run_first[r], tap + run_origin[r], sizeof(float) * (size_t)run_length[r]);
      } else {
        for (m = 0; m < run_length[r]; ++m)
          row[run_first[r] + m] = tap[run_origin[r] + m * p->stride_w];
      }
    }
    for (n = count; n < width; ++n) row[n] = 0.0f; /* lanes past the block: not stored */
  }
}

/* Output channels [4 * quad_begin, 4 * quad_end) of the group (clipped to it) for one
 * (batch, group, pixel block): gather, then those channels. */
static void block_outputs(const float_conv_job* j, int64_t item, int64_t quad_begin, int64_t quad_end,
                          float* cols) {
  const int64_t per_batch = (int64_t)j->p->groups * j->blocks;
  const int32_t batch = (int32_t)(item / per_batch);
  const int32_t group = (int32_t)(item % per_batch / j->blocks);
  const int64_t first = item % j->blocks * BLOCK_PIXELS;
  const int64_t count = j->pixels - first < BLOCK_PIXELS ? j->pixels - first : BLOCK_PIXELS;
  const int64_t k = j->k, block = j->q->k_block;
  const int32_t group_end = (group + 1) * j->out_c_per_group;
  const int32_t oc_begin = group * j->out_c_per_group + (int32_t)(4 * quad_begin);
  const int32_t oc_end = group_end - oc_begin < 4 * (quad_end - quad_begin)
                             ? group_end
                             : oc_begin + (int32_t)(4 * (quad_end - quad_begin));
  int32_t oc = oc_begin;
  int64_t n;
  int64_t stride = BLOCK_PIXELS;
  if (j->direct) { /* the taps of a pixel block are runs of the dequantized planes */
    cols = (float*)j->planes + ((int64_t)batch * j->in->c + (int64_t)group * j->in_c_per_group) * j->pixels + first;
    stride = j->pixels;
  } else {
    gather(j, batch, group, first, count, 0, k, BLOCK_PIXELS, cols);
  }
#if SOPHON_X86_DISPATCH
  if (j->level > 0) {
    /* AVX-512: every channel, four at a time (a depthwise group's one channel alone);
       AVX2: four at a time, the channels left over at the C level */
    while (j->level == 2 ? oc < oc_end : oc + 4 <= oc_end) {
      const int filter_count = oc_end - oc < 4 ? oc_end - oc : 4;
      const float* filters[4];
      float totals[4][BLOCK_PIXELS];
      int64_t col;
      int r;
      for (r = 0; r < 4; ++r) filters[r] = j->filters + (oc + (r < filter_count ? r : 0)) * k;
      if (j->level == 2 && filter_count == 4) {
        chains4_avx512(cols, stride, filters, k, block, totals);
      } else if (j->level == 2) { /* each lane is its own chain: one channel at a time is the same */
        for (r = 0; r < filter_count; ++r) chains1_avx512(cols, stride, filters[r], k, block, totals[r]);
      } else {
        for (col = 0; col < count; col += 8) {
          float totals8[4][8];
          chains_avx2(cols, stride, col, filters, k, block, totals8);
          for (r = 0; r < 4; ++r) memcpy(totals[r] + col, totals8[r], sizeof totals8[r]);
        }
      }
      for (r = 0; r < filter_count; ++r) {
        int8_t* out_data = sophon_view_i8(&j->out_v, batch, oc + r) + first;
        if (j->level == 2) {
          quantize_outputs_avx512(totals[r], count, j->bias[oc + r], j->q, out_data);
        } else {
          for (n = 0; n < count; ++n) out_data[n] = quantize_output(totals[r][n], j->bias[oc + r], j->q);
        }
      }
      oc += filter_count;
    }
  }
#endif
  for (; oc < oc_end; ++oc) { /* the C level, and the channels left over */
    int8_t* out_data = sophon_view_i8(&j->out_v, batch, oc) + first;
    for (n = 0; n < count; ++n)
      out_data[n] = quantize_output(chain_c(cols, stride, n, j->filters + oc * k, k, block),
                                    j->bias[oc], j->q);
  }
}

typedef struct {
  const float_conv_job* job;
  float* cols;   /* a column buffer per task */
  int64_t quads; /* units per (batch, group, pixel block): the group's channels by fours */
} float_conv_tasks;

static void float_conv_task(void* ctx, int32_t task, int32_t tasks) {
  const float_conv_tasks* t = (const float_conv_tasks*)ctx;
  const float_conv_job* j = t->job;
  int64_t begin, end, unit, quad_end;
  sophon_task_range((int64_t)j->out->n * j->p->groups * j->blocks * t->quads, task, tasks, &begin,
                    &end);
  for (unit = begin; unit < end; unit += quad_end - unit % t->quads) {
    quad_end = end - unit < t->quads - unit % t->quads ? unit % t->quads + (end - unit) : t->quads;
    block_outputs(j, unit / t->quads, unit % t->quads, quad_end,
                  t->cols + (int64_t)task * j->k * BLOCK_PIXELS);
  }
}

/* dst[i] = (float)(src[i] - zero_point) * scale for i < count: the reference's
 * dequantization (exact conversion, one float32 multiply), 16 at a time on AVX-512. */
static void dequantize_run(const int8_t* src, int64_t count, int32_t zero_point, float scale, float* dst,
                           int level);
#if SOPHON_X86_DISPATCH
SOPHON_AVX512 static int64_t dequantize_run_avx512(const int8_t* src, int64_t count, int32_t zero_point,
                                                   float scale, float* dst) {
  const __m512i zp = _mm512_set1_epi32(zero_point);
  const __m512 factor = _mm512_set1_ps(scale);
  int64_t i;
  for (i = 0; i < count; i += 16) { /* the last up to 16 masked: rows of 7 or 14 too */
    const __mmask16 lanes = count - i >= 16 ? (__mmask16)0xFFFFu : (__mmask16)((1u << (count - i)) - 1u);
    const __m512i x = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(lanes, src + i));
    _mm512_mask_storeu_ps(dst + i, lanes, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(x, zp)), factor));
  }
  return count;
}
#endif
static void dequantize_run(const int8_t* src, int64_t count, int32_t zero_point, float scale, float* dst,
                           int level) {
  int64_t i = 0;
#if SOPHON_X86_DISPATCH
  if (level == 2 && count >= 8) i = dequantize_run_avx512(src, count, zero_point, scale, dst); /* else scalar: 1x1 planes */
#endif
  (void)level;
  for (; i < count; ++i) dst[i] = (float)((int32_t)src[i] - zero_point) * scale;
}

/* Input plane (batch, channel) dequantized ((float)(x - zp) * input_scale, as the
 * reference) into its zero-padded plane. */
static void fill_plane(const float_conv_job* j, int32_t batch, int32_t channel) {
  const int32_t in_h = j->in->h, in_w = j->in->w, pad_top = j->p->pad_top, pad_left = j->p->pad_left;
  const int8_t* src = sophon_view_i8(&j->in_v, batch, channel);
  float* dst = (float*)j->planes + ((int64_t)batch * j->in->c + channel) * j->plane_h * j->plane_w;
  int64_t y, x;
  for (y = -pad_top; y < j->plane_h - pad_top; ++y, dst += j->plane_w) {
    if (y < 0 || y >= in_h) {
      memset(dst, 0, sizeof(float) * (size_t)j->plane_w);
      continue;
    }
    if (pad_left == 0 && j->plane_w == in_w) { /* no padding columns: the rows are one run */
      dequantize_run(src, (int64_t)in_h * in_w, j->q->input_zero_point, j->q->input_scale, dst, j->level);
      dst += (in_h - 1 - y) * j->plane_w;
      y = in_h - 1;
      continue;
    }
    for (x = 0; x < pad_left; ++x) dst[x] = 0.0f;
    dequantize_run(src + y * in_w, in_w, j->q->input_zero_point, j->q->input_scale, dst + pad_left,
                   j->level);
    for (x = pad_left + in_w; x < j->plane_w; ++x) dst[x] = 0.0f;
  }
}

typedef struct {
  const float_conv_job* job;
  const sophon_view* weight_v; /* NULL: no filters to dequantize */
  float* filters;              /* [oc][k] */
} prepare_job;

/* A task's share of the input planes, then of the dequantized filters. */
static void prepare_task(void* ctx, int32_t task, int32_t tasks) {
  const prepare_job* t = (const prepare_job*)ctx;
  const float_conv_job* j = t->job;
  const sophon_requant* q = j->q;
  int64_t begin, end, item;
  sophon_task_range((int64_t)j->in->n * j->in->c, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item)
    fill_plane(j, (int32_t)(item / j->in->c), (int32_t)(item % j->in->c));
  if (t->weight_v == NULL) return;
  sophon_task_range(j->out->c, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item)
    dequantize_run(sophon_view_i8(t->weight_v, 0, (int32_t)item), j->k, 0,
                   (float)q->scale[q->per_channel ? item : 0], t->filters + item * j->k, j->level);
}

/* The input dequantized into zero-padded planes at `planes` (the tail after them zeroed)
 * and, with weight_v, the filters into `filters`, on the device's pool. */
static void prepare(sophon_device* dev, float_conv_job* j, float* planes, const sophon_view* weight_v,
                    float* filters) {
  const int64_t plane_floats = (int64_t)j->in->n * j->in->c * j->plane_h * j->plane_w;
  prepare_job t;
  t.job = j;
  t.weight_v = weight_v;
  t.filters = filters;
  j->planes = planes;
  memset(planes + plane_floats, 0, sizeof(float) * BLOCK_PIXELS);
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)plane_floats + (weight_v != NULL ? (uint64_t)j->out->c * j->k : 0),
                                       (int64_t)j->in->n * j->in->c + (weight_v != NULL ? j->out->c : 0)),
                      prepare_task, &t);
}

#if SOPHON_X86_DISPATCH
/* ------------------------------------------------------ output channels in lanes
 *
 * A dense conv whose output channels fill 16-lane vectors better than its pixels do
 * (7x7, 10x10, 14x14, 20x20, 28x28 planes; 1x1 planes of squeeze convs): each lane is
 * one output channel, a register tile is LANES_TILE_PIXELS pixels x 32 channels (two
 * vectors; 16 for the last of an odd count), each input tap broadcast to the tile's
 * channels. Still one chain per output, in the same order, with the same K blocks: a
 * work item (batch, pixel block, channel chunk) walks the K blocks in order; per K block
 * it gathers that block's taps of its pixels, dequantizes that block's weights of its
 * channels into [tap][channel] panels (16 x 16 transposes), and runs every tile's chains
 * from 0, the totals added as the reference does; the last K block quantizes. */

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

typedef struct {
  const float_conv_job* job;
  const sophon_view* weight_v;
  int64_t vectors;        /* output channels / 16, rounded up */
  int64_t chunk_vectors;  /* channel vectors per work item (even but for the last) */
  int64_t chunks, pixel_blocks, block_pixels, run_taps;
  int64_t task_floats;    /* scratch floats per task */
  float* scratch;
} lanes_job;

/* The chains of one register tile over `taps` taps: pixels x[0 .. mr) of each tap row
 * (rows x_stride apart), channel vectors w (nv of them per tap); the run's totals go
 * to totals[p][v] (stored at the first K block, else added to what is there). */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void lanes_tile(const float* x, int64_t x_stride,
                                                                 const float* w, int64_t taps, const int nv,
                                                                 const int mr, float* totals, int first_run) {
  __m512 acc[LANES_TILE_PIXELS][2];
  int64_t i;
  int p, v;
  for (p = 0; p < mr; ++p)
    for (v = 0; v < nv; ++v) acc[p][v] = _mm512_setzero_ps();
  for (i = 0; i < taps; ++i, x += x_stride, w += 16 * nv) {
    const __m512 w0 = _mm512_load_ps(w), w1 = nv == 2 ? _mm512_load_ps(w + 16) : w0;
    for (p = 0; p < mr; ++p) {
      const __m512 b = _mm512_set1_ps(x[p]);
      acc[p][0] = _mm512_fmadd_ps(b, w0, acc[p][0]);
      if (nv == 2) acc[p][1] = _mm512_fmadd_ps(b, w1, acc[p][1]);
    }
  }
  for (p = 0; p < mr; ++p)
    for (v = 0; v < nv; ++v) {
      float* t = totals + (p * nv + v) * 16;
      _mm512_store_ps(t, first_run ? acc[p][v] : _mm512_add_ps(acc[p][v], _mm512_load_ps(t)));
    }
}

typedef void (*lanes_tile_fn)(const float*, int64_t, const float*, int64_t, float*, int);
#define SOPHON_LANES_TILE(MR, NV)                                                                   \
  SOPHON_AVX512 static void lanes_tile_##MR##_##NV(const float* x, int64_t x_stride, const float* w, \
                                                   int64_t taps, float* totals, int first_run) {    \
    lanes_tile(x, x_stride, w, taps, NV, MR, totals, first_run);                                    \
  }
#define SOPHON_LANES_TILES(MR) SOPHON_LANES_TILE(MR, 1) SOPHON_LANES_TILE(MR, 2)
SOPHON_LANES_TILES(1) SOPHON_LANES_TILES(2) SOPHON_LANES_TILES(3) SOPHON_LANES_TILES(4)
SOPHON_LANES_TILES(5) SOPHON_LANES_TILES(6) SOPHON_LANES_TILES(7) SOPHON_LANES_TILES(8)
SOPHON_LANES_TILES(9) SOPHON_LANES_TILES(10) SOPHON_LANES_TILES(11) SOPHON_LANES_TILES(12)
/* [pixels - 1][vectors - 1] */
static const lanes_tile_fn lanes_tiles[LANES_TILE_PIXELS][2] = {
    {lanes_tile_1_1, lanes_tile_1_2},   {lanes_tile_2_1, lanes_tile_2_2},
    {lanes_tile_3_1, lanes_tile_3_2},   {lanes_tile_4_1, lanes_tile_4_2},
    {lanes_tile_5_1, lanes_tile_5_2},   {lanes_tile_6_1, lanes_tile_6_2},
    {lanes_tile_7_1, lanes_tile_7_2},   {lanes_tile_8_1, lanes_tile_8_2},
    {lanes_tile_9_1, lanes_tile_9_2},   {lanes_tile_10_1, lanes_tile_10_2},
    {lanes_tile_11_1, lanes_tile_11_2}, {lanes_tile_12_1, lanes_tile_12_2}};

/* Channel vector g (of a chunk of `vectors`) sits in the tile that starts at the even
 * vector below it: that tile's panel starts at vector * 16 * taps floats, its rows hold
 * 16 * (its vectors) floats. */
static int lanes_tile_vectors(int64_t tile_first, int64_t vectors) {
  return tile_first + 1 < vectors ? 2 : 1;
}

/* Taps [start, start + taps) of channels [oc_first, oc_first + 16 * vectors), dequantized
 * ((float)w * filter scale, as dequantize_run) into the tiles' [tap][channel] panels;
 * channels past the last are 0 (their lanes are never stored). Each vector's 16 rows are
 * dequantized in turn into `rows` (16 x run_taps floats, rounded up to vectors), then moved 16 x 16 at a time. */
SOPHON_AVX512 static void lanes_pack_weights(const lanes_job* l, int32_t oc_first, int64_t vectors,
                                             int64_t start, int64_t taps, float* rows, float* panels) {
  const float_conv_job* j = l->job;
  const sophon_requant* q = j->q;
  const int64_t row_floats = round16(l->run_taps);
  int64_t g, t0;
  int r;
  for (g = 0; g < vectors; ++g) {
    const int64_t tile_first = g & ~(int64_t)1;
    const int nv = lanes_tile_vectors(tile_first, vectors);
    float* panel = panels + tile_first * 16 * taps + (g - tile_first) * 16;
    /* the next vector's 16 weight rows (16 lanes, cold: the GDMA has just written
       them) are fetched while this one's are dequantized and transposed */
    for (r = 0; r < 16 && g + 1 < vectors; ++r) {
      const int32_t oc = oc_first + (int32_t)((g + 1) * 16) + r;
      if (oc < j->out->c) {
        const char* w = (const char*)(sophon_view_i8(l->weight_v, 0, oc) + start);
        for (t0 = 0; t0 < taps; t0 += 64) _mm_prefetch(w + t0, _MM_HINT_T0);
      }
    }
    for (r = 0; r < 16; ++r) {
      const int32_t oc = oc_first + (int32_t)(g * 16) + r;
      float* row = rows + r * row_floats;
      if (oc < j->out->c) {
        const int8_t* w = sophon_view_i8(l->weight_v, 0, oc) + start;
        const __m512 scale = _mm512_set1_ps((float)q->scale[q->per_channel ? oc : 0]);
        for (t0 = 0; t0 < taps; t0 += 16) {
          const int n = taps - t0 < 16 ? (int)(taps - t0) : 16;
          const __m512i v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8((__mmask16)((1u << n) - 1u), w + t0));
          _mm512_storeu_ps(row + t0, _mm512_mul_ps(_mm512_cvtepi32_ps(v), scale));
        }
      } else {
        for (t0 = 0; t0 < taps; t0 += 16) _mm512_storeu_ps(row + t0, _mm512_setzero_ps());
      }
    }
    for (t0 = 0; t0 < taps; t0 += 16) {
      const int n = taps - t0 < 16 ? (int)(taps - t0) : 16;
      __m512 block[16];
      for (r = 0; r < 16; ++r) block[r] = _mm512_load_ps(rows + r * row_floats + t0);
      sophon_transpose16_avx512(block);
      for (r = 0; r < n; ++r) _mm512_store_ps(panel + (t0 + r) * 16 * nv, block[r]);
    }
  }
}

/* quantize_output of a tile's totals ([pixel][channel], nv vectors a pixel) for its
 * `channels` channels, written to out[c][first + p]: 16 pixels x 16 channels at a time,
 * transposed so that each channel's 16 outputs are one vector (its bias broadcast). */
SOPHON_AVX512 static void lanes_quantize(const float* totals, int64_t count, int nv, int channels,
                                         const float* bias, const sophon_requant* q, int8_t* const out[32],
                                         int64_t first) {
  const __m512 scale = _mm512_set1_ps(q->output_scale);
  const __m512 low = _mm512_set1_ps((float)(q->act_min - q->output_zero_point));
  const __m512 high = _mm512_set1_ps((float)(q->act_max - q->output_zero_point));
  const __m512i zero_point = _mm512_set1_epi32(q->output_zero_point);
  int64_t p0;
  int v, c;
  for (v = 0; v < nv; ++v) {
    const int left = channels - 16 * v < 16 ? channels - 16 * v : 16;
    for (p0 = 0; p0 < count; p0 += 16) {
      const int n = count - p0 < 16 ? (int)(count - p0) : 16;
      const __mmask16 lanes = (__mmask16)((1u << n) - 1u);
      __m512 block[16];
      for (c = 0; c < 16; ++c) /* rows past the pixels: never stored */
        block[c] = c < n ? _mm512_load_ps(totals + ((p0 + c) * nv + v) * 16) : _mm512_setzero_ps();
      sophon_transpose16_avx512(block);
      for (c = 0; c < left; ++c) {
        __m512 y = _mm512_div_ps(_mm512_add_ps(block[c], _mm512_set1_ps(bias[16 * v + c])), scale);
        y = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        y = _mm512_min_ps(_mm512_max_ps(y, low), high);
        _mm_mask_storeu_epi8(out[16 * v + c] + first + p0, lanes,
                             _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(y), zero_point)));
      }
    }
  }
}

/* One work item: (batch, pixel block, channel chunk), its K blocks in order. */
SOPHON_AVX512 static void lanes_item(const lanes_job* l, int64_t item, float* scratch) {
  const float_conv_job* j = l->job;
  const int64_t per_batch = l->pixel_blocks * l->chunks;
  const int32_t batch = (int32_t)(item / per_batch);
  const int64_t pixel_block = item % per_batch / l->chunks, chunk = item % l->chunks;
  const int64_t first = j->pixels * pixel_block / l->pixel_blocks;
  const int64_t count = j->pixels * (pixel_block + 1) / l->pixel_blocks - first;
  const int64_t vector_first = chunk * l->chunk_vectors;
  const int64_t vectors = l->vectors - vector_first < l->chunk_vectors ? l->vectors - vector_first
                                                                         : l->chunk_vectors;
  const int32_t oc_first = (int32_t)(vector_first * 16);
  const int64_t k = j->k, block = j->q->k_block;
  const int64_t tiles_p = (count + LANES_TILE_PIXELS - 1) / LANES_TILE_PIXELS;
  float* cols = scratch;
  float* panels = cols + round16(l->run_taps * l->block_pixels); /* 64-byte aligned, as task_floats */
  float* totals = panels + l->chunk_vectors * 16 * l->run_taps;
  float* rows = totals + l->chunk_vectors * 16 * l->block_pixels;
  int64_t start, tile, tp;
  for (start = 0; start < k; start += block) {
    const int64_t taps = k - start < block ? k - start : block;
    const float* x = cols;
    int64_t x_stride = count;
    if (j->direct) {
      x = j->planes + ((int64_t)batch * j->in->c + start) * j->pixels + first;
      x_stride = j->pixels;
    } else {
      gather(j, batch, 0, first, count, start, start + taps, count, cols);
    }
    lanes_pack_weights(l, oc_first, vectors, start, taps, rows, panels);
    for (tp = 0; tp < tiles_p; ++tp) { /* tiles of (nearly) equal pixel counts */
      const int64_t p0 = count * tp / tiles_p, p1 = count * (tp + 1) / tiles_p;
      for (tile = 0; tile < vectors; tile += 2) {
        const int nv = lanes_tile_vectors(tile, vectors);
        lanes_tiles[p1 - p0 - 1][nv - 1](x + p0, x_stride, panels + tile * 16 * taps, taps,
                                         totals + tile * 16 * l->block_pixels + p0 * 16 * nv, start == 0);
      }
    }
    for (tile = 0; tile < vectors && start + taps == k; tile += 2) {
      const int nv = lanes_tile_vectors(tile, vectors);
      {
        const int channels = j->out->c - (oc_first + (int32_t)tile * 16) < 16 * nv
                                 ? j->out->c - (oc_first + (int32_t)tile * 16) : 16 * nv;
        int8_t* out[32];
        int c;
        for (c = 0; c < channels; ++c)
          out[c] = sophon_view_i8(&j->out_v, batch, oc_first + (int32_t)tile * 16 + c);
        lanes_quantize(totals + tile * 16 * l->block_pixels, count, nv, channels, j->bias + oc_first + tile * 16,
                       j->q, out, first);
      }
    }
  }
}

static void lanes_task(void* ctx, int32_t task, int32_t tasks) {
  const lanes_job* l = (const lanes_job*)ctx;
  int64_t begin, end, item;
  sophon_task_range((int64_t)l->job->out->n * l->pixel_blocks * l->chunks, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) lanes_item(l, item, l->scratch + (int64_t)task * l->task_floats);
}
#endif

/* The dequantized bias of each output channel: (float)bias * (input scale * filter scale). */
static void dequantize_biases(const float_conv_job* j, const sophon_local* bias, const sophon_view* bias_v,
                              float* biases) {
  const sophon_requant* q = j->q;
  int32_t oc;
  for (oc = 0; oc < j->out->c; ++oc) {
    const float filter_scale = (float)q->scale[q->per_channel ? oc : 0];
    const int32_t b = bias != NULL ? *sophon_view_i32(bias_v, 0, oc) : 0;
    biases[oc] = (float)b * (q->input_scale * filter_scale);
  }
}

#if SOPHON_X86_DISPATCH
/* Output channels in lanes when that costs less, counted in lane-taps (one FMA lane):
 * the chains over the lanes each layout fills (pixels in blocks of 64, channels in
 * vectors of 16), plus what each output costs beside its chain (the lanes' transposed
 * quantization about 6 taps, the pixel blocks' 2) and the lanes' weight panels (16 x 16
 * transposes, about 8 lane-taps a weight, once per pixel block). */
static int lanes_fit(const float_conv_job* j) {
  const int64_t oc = j->out->c, k = j->k, pixels = j->pixels;
  const int64_t pixel_blocks = (pixels + LANES_BLOCK_PIXELS - 1) / LANES_BLOCK_PIXELS;
  const double lanes = (double)round16(oc) * (double)pixels * (double)(k + 6) + 8.0 * (double)(oc * k * pixel_blocks);
  const double blocks = (double)((pixels + BLOCK_PIXELS - 1) / BLOCK_PIXELS * BLOCK_PIXELS) * (double)oc * (double)(k + 2);
  return j->level == 2 && j->p->groups == 1 && lanes < blocks;
}

static int lanes_conv(sophon_device* dev, float_conv_job* j, const sophon_view* weight_v,
                      const sophon_local* bias, const sophon_view* bias_v) {
  lanes_job l;
  const int64_t batches = j->out->n;
  int64_t plane_floats, chunk_alloc, items;
  int32_t tasks;
  float* scratch;
  l.job = j;
  l.weight_v = weight_v;
  l.vectors = (j->out->c + 15) / 16;
  l.pixel_blocks = (j->pixels + LANES_BLOCK_PIXELS - 1) / LANES_BLOCK_PIXELS;
  l.block_pixels = (j->pixels + l.pixel_blocks - 1) / l.pixel_blocks;
  l.run_taps = j->q->k_block < j->k ? j->q->k_block : j->k;
  tasks = sophon_tasks_for(dev, (uint64_t)batches * j->out->c * j->pixels * j->k,
                           batches * l.pixel_blocks * l.vectors);
  /* few pixel blocks: the channels split too, so that every thread has an item */
  l.chunks = tasks > batches * l.pixel_blocks ? (tasks + batches * l.pixel_blocks - 1) / (batches * l.pixel_blocks) : 1;
  l.chunk_vectors = (l.vectors + l.chunks - 1) / l.chunks;
  if (l.chunks > 1) l.chunk_vectors += l.chunk_vectors & 1;
  l.chunks = (l.vectors + l.chunk_vectors - 1) / l.chunk_vectors;
  items = batches * l.pixel_blocks * l.chunks;
  if (tasks > items) tasks = (int32_t)items;
  chunk_alloc = l.chunk_vectors + (l.chunk_vectors & 1);
  l.task_floats = round16(l.run_taps * l.block_pixels) + chunk_alloc * 16 * (l.run_taps + l.block_pixels) +
                  16 * round16(l.run_taps);
  plane_floats = (int64_t)j->in->n * j->in->c * j->plane_h * j->plane_w + BLOCK_PIXELS;
  scratch = sophon_device_scratch(dev, (size_t)(round16(j->out->c) + round16(plane_floats) + tasks * l.task_floats));
  if (scratch == NULL) return -1; /* the reference runs it */
  dequantize_biases(j, bias, bias_v, scratch);
  j->bias = scratch;
  prepare(dev, j, scratch + round16(j->out->c), NULL, NULL);
  l.scratch = scratch + round16(j->out->c) + round16(plane_floats);
  sophon_parallel_run(dev->pool, tasks, lanes_task, &l);
  return 0;
}
#endif

int sophon_fast_conv2d_int8_float(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* in, const sophon_local* weight,
                                  const sophon_local* bias, const sophon_conv_params* p,
                                  const sophon_requant* q) {
  float_conv_job j;
  float_conv_tasks t;
  sophon_view weight_v, bias_v;
  float *filters, *biases;
  int32_t tasks;
  int64_t filter_floats, col_floats, plane_floats;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  sophon_view_init(&weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&bias_v, dev, bias);
  j.out = out;
  j.in = in;
  j.p = p;
  j.q = q;
  j.in_c_per_group = in->c / p->groups;
  j.out_c_per_group = out->c / p->groups;
  j.k = (int64_t)j.in_c_per_group * p->kernel_h * p->kernel_w;
  j.pixels = (int64_t)out->h * out->w;
  j.blocks = (j.pixels + BLOCK_PIXELS - 1) / BLOCK_PIXELS;
  j.level = 0;
#if SOPHON_X86_DISPATCH
  j.level = dev->cpu_avx512 ? 2 : dev->cpu_fma ? 1 : 0;
#endif
  t.quads = (j.out_c_per_group + 3) / 4;
  /* the work is by whole blocks: a block of few pixels costs its 64 lanes */
  tasks = sophon_tasks_for(dev, (uint64_t)out->n * out->c * j.blocks * BLOCK_PIXELS * j.k,
                           (int64_t)out->n * p->groups * j.blocks * t.quads);
  /* the padded plane: the rows and columns the windows reach, from -pad_top / -pad_left */
  j.plane_h = (int64_t)(out->h - 1) * p->stride_h + (int64_t)(p->kernel_h - 1) * p->dilation_h + 1;
  j.plane_w = (int64_t)(out->w - 1) * p->stride_w + (int64_t)(p->kernel_w - 1) * p->dilation_w + 1;
  if (j.plane_h < (int64_t)p->pad_top + in->h) j.plane_h = (int64_t)p->pad_top + in->h;
  if (j.plane_w < (int64_t)p->pad_left + in->w) j.plane_w = (int64_t)p->pad_left + in->w;
  j.direct = p->kernel_h == 1 && p->kernel_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
             p->pad_top == 0 && p->pad_left == 0 && j.plane_h == in->h && j.plane_w == in->w;
#if SOPHON_X86_DISPATCH
  if (lanes_fit(&j)) return lanes_conv(dev, &j, &weight_v, bias, &bias_v);
#endif
  filter_floats = (int64_t)out->c * j.k + out->c;
  col_floats = j.direct ? 0 : (int64_t)tasks * j.k * BLOCK_PIXELS;
  /* + a tail: lanes past a block's pixels read on into the next plane, or into it */
  plane_floats = (int64_t)in->n * in->c * j.plane_h * j.plane_w + BLOCK_PIXELS;
  filters = sophon_device_scratch(dev, (size_t)(filter_floats + col_floats + plane_floats));
  if (filters == NULL) return -1; /* the reference runs it */
  t.cols = filters + filter_floats;
  prepare(dev, &j, t.cols + col_floats, &weight_v, filters);
  biases = filters + out->c * j.k;
  dequantize_biases(&j, bias, &bias_v, biases);
  j.filters = filters;
  j.bias = biases;
  t.job = &j;
  sophon_parallel_run(dev->pool, tasks, float_conv_task, &t);
  return 0;
}
