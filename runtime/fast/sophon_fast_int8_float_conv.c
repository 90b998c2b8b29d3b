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
 * chains one output at a time with fmaf.
 *
 * Tasks own ranges of units, a unit being four output channels of one (batch item, group,
 * pixel block), so that a layer of few blocks (7x7: one) still splits evenly over the
 * threads; each output is computed by one task.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fast/sophon_fast_int8.h"
#include "sophon_quant.h"

/* Output pixels per column buffer: four AVX-512 vectors (chains_avx512 takes it whole). */
#define BLOCK_PIXELS 64

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

/* The column buffer of pixels [first, first + count) of one (batch, group): row i is
 * tap i = [ic][ky][kx], BLOCK_PIXELS floats, the dequantized input or 0 at padding, read
 * from the zero-padded planes. The block's pixels are cut into runs along output rows,
 * each with its window origin in the plane, once; a tap copies each run from its own
 * offset (a memcpy at stride 1). */
static void gather(const float_conv_job* j, int32_t batch, int32_t group, int64_t first,
                   int64_t count, float* cols) {
  const sophon_conv_params* p = j->p;
  const int32_t out_w = j->out->w;
  const int64_t plane = j->plane_h * j->plane_w;
  const float* channel_plane =
      j->planes + ((int64_t)batch * j->in->c + (int64_t)group * j->in_c_per_group) * plane;
  int64_t run_first[BLOCK_PIXELS], run_length[BLOCK_PIXELS], run_origin[BLOCK_PIXELS];
  int64_t i = 0, n, m;
  int runs = 0, r;
  int32_t in_channel, filter_y, filter_x;
  for (n = 0; n < count; n += run_length[runs++]) {
    const int64_t y = (first + n) / out_w, x = (first + n) % out_w;
    run_first[runs] = n;
    run_length[runs] = out_w - x < count - n ? out_w - x : count - n;
    run_origin[runs] = y * p->stride_h * j->plane_w + x * p->stride_w;
  }
  for (in_channel = 0; in_channel < j->in_c_per_group; ++in_channel, channel_plane += plane) {
    for (filter_y = 0; filter_y < p->kernel_h; ++filter_y) {
      for (filter_x = 0; filter_x < p->kernel_w; ++filter_x, ++i) {
        const float* tap = channel_plane + (int64_t)filter_y * p->dilation_h * j->plane_w +
                           (int64_t)filter_x * p->dilation_w;
        float* row = cols + i * BLOCK_PIXELS;
        for (r = 0; r < runs; ++r) {
          if (p->stride_w == 1) {
            memcpy(row + run_first[r], tap + run_origin[r], sizeof(float) * (size_t)run_length[r]);
          } else {
            for (m = 0; m < run_length[r]; ++m)
              row[run_first[r] + m] = tap[run_origin[r] + m * p->stride_w];
          }
        }
        for (n = count; n < BLOCK_PIXELS; ++n) row[n] = 0.0f; /* lanes past the block: not stored */
      }
    }
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
    gather(j, batch, group, first, count, cols);
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
  for (i = 0; i + 16 <= count; i += 16) {
    const __m512i x = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(x, zp)), factor));
  }
  return i;
}
#endif
static void dequantize_run(const int8_t* src, int64_t count, int32_t zero_point, float scale, float* dst,
                           int level) {
  int64_t i = 0;
#if SOPHON_X86_DISPATCH
  if (level == 2) i = dequantize_run_avx512(src, count, zero_point, scale, dst);
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
    for (x = 0; x < pad_left; ++x) dst[x] = 0.0f;
    dequantize_run(src + y * in_w, in_w, j->q->input_zero_point, j->q->input_scale, dst + pad_left,
                   j->level);
    for (x = pad_left + in_w; x < j->plane_w; ++x) dst[x] = 0.0f;
  }
}

typedef struct {
  const float_conv_job* job;
  sophon_view weight_v, bias_v;
  const sophon_local* bias;
  float *filters, *biases; /* written: j->filters, j->bias */
} prepare_job;

/* A task's share of the input planes, then of the dequantized filters and biases. */
static void prepare_task(void* ctx, int32_t task, int32_t tasks) {
  const prepare_job* t = (const prepare_job*)ctx;
  const float_conv_job* j = t->job;
  const sophon_requant* q = j->q;
  int64_t begin, end, item;
  sophon_task_range((int64_t)j->in->n * j->in->c, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item)
    fill_plane(j, (int32_t)(item / j->in->c), (int32_t)(item % j->in->c));
  sophon_task_range(j->out->c, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t oc = (int32_t)item;
    const float filter_scale = (float)q->scale[q->per_channel ? oc : 0];
    const int32_t b = t->bias != NULL ? *sophon_view_i32(&t->bias_v, 0, oc) : 0;
    dequantize_run(sophon_view_i8(&t->weight_v, 0, oc), j->k, 0, filter_scale, t->filters + oc * j->k,
                   j->level);
    t->biases[oc] = (float)b * (q->input_scale * filter_scale);
  }
}

int sophon_fast_conv2d_int8_float(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* in, const sophon_local* weight,
                                  const sophon_local* bias, const sophon_conv_params* p,
                                  const sophon_requant* q) {
  float_conv_job j;
  float_conv_tasks t;
  prepare_job prep;
  float* filters;
  int32_t tasks;
  int64_t filter_floats, col_floats, plane_floats;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  sophon_view_init(&prep.weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&prep.bias_v, dev, bias);
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
  /* the work is by whole blocks: a 1x1 output (a squeeze-excite conv) costs 64 lanes */
  tasks = sophon_tasks_for(dev, (uint64_t)out->n * out->c * j.blocks * BLOCK_PIXELS * j.k,
                           (int64_t)out->n * p->groups * j.blocks * t.quads);
  /* the padded plane: the rows and columns the windows reach, from -pad_top / -pad_left */
  j.plane_h = (int64_t)(out->h - 1) * p->stride_h + (int64_t)(p->kernel_h - 1) * p->dilation_h + 1;
  j.plane_w = (int64_t)(out->w - 1) * p->stride_w + (int64_t)(p->kernel_w - 1) * p->dilation_w + 1;
  if (j.plane_h < (int64_t)p->pad_top + in->h) j.plane_h = (int64_t)p->pad_top + in->h;
  if (j.plane_w < (int64_t)p->pad_left + in->w) j.plane_w = (int64_t)p->pad_left + in->w;
  j.direct = p->kernel_h == 1 && p->kernel_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
             p->pad_top == 0 && p->pad_left == 0 && j.plane_h == in->h && j.plane_w == in->w;
  filter_floats = (int64_t)out->c * j.k + out->c;
  col_floats = j.direct ? 0 : (int64_t)tasks * j.k * BLOCK_PIXELS;
  /* + a tail: lanes past a block's pixels read on into the next plane, or into it */
  plane_floats = (int64_t)in->n * in->c * j.plane_h * j.plane_w + BLOCK_PIXELS;
  filters = sophon_device_scratch(dev, (size_t)(filter_floats + col_floats + plane_floats));
  if (filters == NULL) return -1; /* the reference runs it */
  t.cols = filters + filter_floats;
  j.planes = t.cols + col_floats;
  memset((float*)j.planes + plane_floats - BLOCK_PIXELS, 0, sizeof(float) * BLOCK_PIXELS);
  j.filters = filters;
  j.bias = filters + out->c * j.k;
  prep.job = &j;
  prep.bias = bias;
  prep.filters = filters;
  prep.biases = filters + out->c * j.k;
  /* the input planes and the filters, dequantized */
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)(plane_floats + filter_floats),
                                       (int64_t)in->n * in->c + out->c),
                      prepare_task, &prep);
  t.job = &j;
  sophon_parallel_run(dev->pool, tasks, float_conv_task, &t);
  return 0;
}
