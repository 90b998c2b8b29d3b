/*
 * sophon_fast_pointwise.c - fast f32 pointwise conv2d (1x1, stride 1, no padding, one
 * group) on small planes, with output channels in the vector lanes (AVX-512).
 *
 * The GEMM of sophon_fast_conv.c puts pixels in the lanes: a 7x7 plane (49 pixels)
 * computes 56 or 64 columns, and every 8-channel tile of a short K pays its own
 * partial sums, bias, activation and stores. Here each lane is one output channel:
 *     out[oc][p] = act(bias[oc] + sum_k W[oc][k] * X[k][p])
 * a register tile is up to PW_TILE_PIXELS pixels x 32 output channels (two vectors;
 * one for a last panel of 16 or fewer), each input value X[k][p] broadcast to the
 * tile's channels, the weights read as [k][32 channels] panels: packed once per
 * device for a deferred constant weight (sophon_device_packed, its own key), else
 * by each task from LMEM (16 x 16 transposes). A tile runs over the whole K (no
 * partial sums), adds the bias and applies the activation in registers, and its
 * results go to a [pixel][channel] buffer, transposed 16 x 16 into the output's
 * channel planes when the task's pixel block is done.
 *
 * Bits: every output starts at 0 and adds W[oc][k] * X[k][p] for k = 0, 1, ... with
 * one fused multiply-add each, then the bias (0 without one), then the activation
 * (sophon_act_avx512): the operations of the GEMM's AVX-512 micro-kernels, in the same
 * order, so the outputs are bit-identical to that path and to the AVX2 one (whose
 * K blocks keep the same chain); tests/test_fast_kernels.py checks both.
 *
 * Threads: work items are (output channel panel, batch item, pixel block), each
 * computed by one task, so results do not depend on the thread count.
 */
#include <string.h>

#include "fast/sophon_fast.h"

enum {
  PW_PANEL = 32,       /* output channels of a weight panel and of a register tile */
  PW_TILE_PIXELS = 12, /* pixels of a register tile: 24 accumulators */
  /* planes this kernel takes: 7x7 and 14x14 (where pixel lanes compute 56-64 and
     200 columns for 49 and 196 pixels) */
  PW_MAX_PIXELS = 256,
  PW_BLOCK_PIXELS = 128, /* pixels of a work item at most */
  /* from this K on, the whole-K tiles beat the GEMM's tiles where both compute about
     as many lanes (14x14: MobileNetV2's 384 -> 64 0.93 of the GEMM's time, 64 -> 384
     1.02: with a short K the transposed store of every output weighs more) */
  PW_LONG_K = 128
};

#if SOPHON_X86_DISPATCH
/* Columns the GEMM of sophon_fast_conv.c computes for an n-pixel plane of a 1x1
 * conv read in place: 24-wide panels (the last 8 at a time) where they compute under
 * 98% of what 32-wide ones do (conv2d_gemm's NARROW_PERCENT), else 32-wide. */
static int64_t gemm_columns(int64_t n) {
  const int64_t narrow = n / 24 * 24 + sophon_ceil_div(n % 24, 8) * 8;
  const int64_t wide = sophon_ceil_div(n, 32) * 32;
  return narrow * 100 < wide * 98 ? narrow : wide;
}

/* 1 where the channel lanes cost less than the GEMM's pixel lanes: no more lanes
 * computed per output, and either a long K or at least 5% fewer lanes (the measured
 * shapes: docs/host_speed.md). */
static int pw_pays(int64_t n, int32_t oc, int64_t k) {
  const int64_t lanes = sophon_ceil_div(oc, 16) * 16, columns = gemm_columns(n);
  return n <= PW_MAX_PIXELS && lanes * n <= columns * oc &&
         (k >= PW_LONG_K || lanes * n * 100 < columns * oc * 95);
}

typedef struct {
  sophon_view out_v, in_v, weight_v;
  const sophon_activation* act; /* NULL for none */
  int32_t oc, batches;
  int64_t k, n;                 /* input channels, pixels per plane */
  int64_t panels, blocks;       /* weight panels; pixel blocks per batch item */
  const float* packed;          /* panels x k x PW_PANEL (deferred weight), or NULL */
  const float* biases;          /* panels x PW_PANEL, 0 without a bias and past oc */
  const float* const* x_rows;   /* batches x k: input channel planes */
  float* scratch;
  int64_t task_floats;
} pw_job;

/* One register tile: pixels [p0, p0 + np) of every input plane x_rows[k], weight panel
 * w ([k][PW_PANEL]), nv channel vectors; act(sum + bias) to t[p][PW_PANEL]. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void pw_tile(const float* const* x_rows, int64_t p0,
                                                              const float* w, int64_t k, const int nv,
                                                              const int np, const float* bias,
                                                              const sophon_activation* act, float* t) {
  __m512 acc[PW_TILE_PIXELS][2];
  int64_t i;
  int p;
  for (p = 0; p < np; ++p) acc[p][0] = acc[p][1] = _mm512_setzero_ps();
  for (i = 0; i < k; ++i, w += PW_PANEL) {
    const float* x = x_rows[i] + p0;
    const __m512 w0 = _mm512_load_ps(w), w1 = nv == 2 ? _mm512_load_ps(w + 16) : w0;
    for (p = 0; p < np; ++p) {
      const __m512 b = _mm512_set1_ps(x[p]);
      acc[p][0] = _mm512_fmadd_ps(b, w0, acc[p][0]);
      if (nv == 2) acc[p][1] = _mm512_fmadd_ps(b, w1, acc[p][1]);
    }
  }
  {
    const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
    for (p = 0; p < np; ++p) {
      _mm512_store_ps(t + p * PW_PANEL, sophon_act_avx512(_mm512_add_ps(acc[p][0], b0), act));
      if (nv == 2)
        _mm512_store_ps(t + p * PW_PANEL + 16, sophon_act_avx512(_mm512_add_ps(acc[p][1], b1), act));
    }
  }
}

typedef void (*pw_tile_fn)(const float* const*, int64_t, const float*, int64_t, const float*,
                           const sophon_activation*, float*);
#define SOPHON_PW_TILE(NP, NV)                                                                \
  SOPHON_AVX512 static void pw_tile_##NP##_##NV(const float* const* x_rows, int64_t p0,       \
                                                const float* w, int64_t k, const float* bias, \
                                                const sophon_activation* act, float* t) {     \
    pw_tile(x_rows, p0, w, k, NV, NP, bias, act, t);                                          \
  }
#define SOPHON_PW_TILES(NP) SOPHON_PW_TILE(NP, 1) SOPHON_PW_TILE(NP, 2)
SOPHON_PW_TILES(1) SOPHON_PW_TILES(2) SOPHON_PW_TILES(3) SOPHON_PW_TILES(4)
SOPHON_PW_TILES(5) SOPHON_PW_TILES(6) SOPHON_PW_TILES(7) SOPHON_PW_TILES(8)
SOPHON_PW_TILES(9) SOPHON_PW_TILES(10) SOPHON_PW_TILES(11) SOPHON_PW_TILES(12)
#undef SOPHON_PW_TILES
#undef SOPHON_PW_TILE
/* [pixels - 1][vectors - 1] */
static const pw_tile_fn pw_tiles[PW_TILE_PIXELS][2] = {
    {pw_tile_1_1, pw_tile_1_2},   {pw_tile_2_1, pw_tile_2_2},   {pw_tile_3_1, pw_tile_3_2},
    {pw_tile_4_1, pw_tile_4_2},   {pw_tile_5_1, pw_tile_5_2},   {pw_tile_6_1, pw_tile_6_2},
    {pw_tile_7_1, pw_tile_7_2},   {pw_tile_8_1, pw_tile_8_2},   {pw_tile_9_1, pw_tile_9_2},
    {pw_tile_10_1, pw_tile_10_2}, {pw_tile_11_1, pw_tile_11_2}, {pw_tile_12_1, pw_tile_12_2}};

/* Weight rows [oc0, oc0 + PW_PANEL) of the LMEM weight as a [k][PW_PANEL] panel (rows
 * past the last output channel 0), 16 x 16 at a time. */
SOPHON_AVX512 static void pw_pack_panel(const pw_job* j, int32_t oc0, float* panel) {
  int64_t k0;
  int v, r;
  for (v = 0; v < PW_PANEL / 16; ++v) {
    const float* rows[16];
    for (r = 0; r < 16; ++r)
      rows[r] = oc0 + 16 * v + r < j->oc ? sophon_view_f32(&j->weight_v, 0, oc0 + 16 * v + r) : NULL;
    for (k0 = 0; k0 < j->k; k0 += 16) {
      const int n = j->k - k0 < 16 ? (int)(j->k - k0) : 16;
      const __mmask16 lanes = (__mmask16)((1u << n) - 1u);
      __m512 block[16];
      for (r = 0; r < 16; ++r)
        block[r] = rows[r] != NULL ? _mm512_maskz_loadu_ps(lanes, rows[r] + k0) : _mm512_setzero_ps();
      sophon_transpose16_avx512(block);
      for (r = 0; r < n; ++r) _mm512_store_ps(panel + (k0 + r) * PW_PANEL + 16 * v, block[r]);
    }
  }
}

/* The block's results t[p][PW_PANEL] (count pixels) to output channels [oc0, oc0 +
 * PW_PANEL) of batch item `batch`, pixels [first, first + count): 16 pixels x 16
 * channels at a time, transposed so that each channel's pixels are one vector. */
SOPHON_AVX512 static void pw_store_block(const pw_job* j, const float* t, int32_t batch, int32_t oc0,
                                         int64_t first, int64_t count) {
  int64_t p0;
  int v, c;
  for (v = 0; v < PW_PANEL / 16 && oc0 + 16 * v < j->oc; ++v) {
    const int channels = j->oc - (oc0 + 16 * v) < 16 ? j->oc - (oc0 + 16 * v) : 16;
    float* out[16];
    sophon_channel_iter it = sophon_channel_begin(&j->out_v, batch, oc0 + 16 * v);
    for (c = 0; c < channels; ++c) {
      out[c] = (float*)(void*)it.base + first;
      sophon_channel_next(&j->out_v, &it);
    }
    if (count == 1) { /* a 1x1 plane (squeeze-excite): no transpose */
      for (c = 0; c < channels; ++c) out[c][0] = t[16 * v + c];
      continue;
    }
    for (p0 = 0; p0 < count; p0 += 16) {
      const int n = count - p0 < 16 ? (int)(count - p0) : 16;
      const __mmask16 lanes = (__mmask16)((1u << n) - 1u);
      __m512 block[16];
      for (c = 0; c < 16; ++c) /* rows past the pixels: never stored */
        block[c] = c < n ? _mm512_load_ps(t + (p0 + c) * PW_PANEL + 16 * v) : _mm512_setzero_ps();
      sophon_transpose16_avx512(block);
      for (c = 0; c < channels; ++c) _mm512_mask_storeu_ps(out[c] + p0, lanes, block[c]);
    }
  }
}

/* A task's work items: item = (panel * batches + batch) * blocks + block, so that
 * consecutive items share a weight panel (packed once per run of them from LMEM). */
static void pw_task(void* ctx, int32_t task, int32_t tasks) {
  const pw_job* j = (const pw_job*)ctx;
  float* t = j->scratch + task * j->task_floats;
  float* own_panel = t + PW_BLOCK_PIXELS * PW_PANEL;
  int64_t begin, end, item, packed_panel = -1;
  sophon_task_range(j->panels * j->batches * j->blocks, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int64_t panel = item / (j->batches * j->blocks);
    const int32_t batch = (int32_t)(item / j->blocks % j->batches);
    const int64_t block = item % j->blocks;
    const int64_t first = j->n * block / j->blocks, count = j->n * (block + 1) / j->blocks - first;
    const int32_t oc0 = (int32_t)(panel * PW_PANEL);
    const int nv = j->oc - oc0 > 16 ? 2 : 1;
    const int64_t tiles = sophon_ceil_div(count, PW_TILE_PIXELS);
    const float* w = j->packed != NULL ? j->packed + panel * j->k * PW_PANEL : own_panel;
    int64_t tile;
    if (j->packed == NULL && panel != packed_panel) {
      pw_pack_panel(j, oc0, own_panel);
      packed_panel = panel;
    }
    for (tile = 0; tile < tiles; ++tile) { /* tiles of (nearly) equal pixel counts */
      const int64_t p0 = count * tile / tiles, p1 = count * (tile + 1) / tiles;
      pw_tiles[p1 - p0 - 1][nv - 1](j->x_rows + (int64_t)batch * j->k, first + p0, w, j->k,
                                    j->biases + oc0, j->act, t + p0 * PW_PANEL);
    }
    pw_store_block(j, t, batch, oc0, first, count);
  }
}

/* The deferred weight `ddr` (rows of k contiguous floats) as panels [k][PW_PANEL],
 * packed once for the device's life; NULL without room or memory. */
static const float* pw_packed_weight(sophon_device* dev, const pw_job* j, const sophon_global* ddr) {
  sophon_packed_key key;
  float* packed;
  int64_t panel, k;
  int32_t c;
  int fresh;
  memset(&key, 0, sizeof(key));
  key.data = ddr->data;
  key.data_end = (const float*)ddr->data + (int64_t)(ddr->c - 1) * ddr->stride_c + j->k;
  key.shape[0] = ddr->c;
  key.shape[1] = j->k;
  key.shape[2] = ddr->stride_c;
  key.shape[3] = PW_PANEL;
  key.shape[5] = -1; /* this arrangement (pack_a of sophon_fast_conv.c has 0) */
  packed = sophon_device_packed(dev, &key, (size_t)(j->panels * j->k * PW_PANEL), &fresh);
  if (packed == NULL || !fresh) return packed;
  for (panel = 0; panel < j->panels; ++panel) {
    float* dst = packed + panel * j->k * PW_PANEL;
    for (c = 0; c < PW_PANEL; ++c) {
      const int32_t oc = (int32_t)(panel * PW_PANEL) + c;
      const float* row = (const float*)ddr->data + (int64_t)oc * ddr->stride_c;
      for (k = 0; k < j->k; ++k) dst[k * PW_PANEL + c] = oc < j->oc ? row[k] : 0.0f;
    }
  }
  return packed;
}
#endif

int sophon_fast_pointwise_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                              const sophon_local* weight, const sophon_local* bias,
                              const sophon_conv_params* p, const sophon_global* weight_ddr) {
#if SOPHON_X86_DISPATCH
  pw_job j;
  sophon_view bias_v;
  float* biases;
  const float** x_rows;
  int32_t tasks, batch, c;
  int64_t items, bias_floats, rows_floats;
  if (!dev->cpu_avx512 || p->groups != 1 || p->kernel_h != 1 || p->kernel_w != 1 ||
      p->stride_h != 1 || p->stride_w != 1 || p->pad_top != 0 || p->pad_bottom != 0 ||
      p->pad_left != 0 || p->pad_right != 0 || !pw_pays((int64_t)out->h * out->w, out->c, in->c) ||
      !(sophon_act_is_simple(&p->act) || sophon_act_is_sigmoid_family(&p->act)))
    return 1;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  sophon_view_init(&j.weight_v, dev, weight);
  j.act = p->act.kind == SOPHON_ACT_NONE ? NULL : &p->act;
  j.oc = out->c;
  j.batches = out->n;
  j.k = in->c;
  j.n = (int64_t)out->h * out->w;
  j.panels = sophon_ceil_div(j.oc, PW_PANEL);
  j.blocks = sophon_ceil_div(j.n, PW_BLOCK_PIXELS);
  if (dev->num_threads > 1 && j.panels * j.batches * j.blocks < 4 * (int64_t)dev->num_threads) {
    /* a few panels (a 7x7 plane's 96 channels: 3 items) would split unevenly over
       the threads: smaller pixel blocks, down to one tile each (the same sums) */
    j.blocks = sophon_ceil_div(4 * (int64_t)dev->num_threads, j.panels * j.batches);
    if (j.blocks > sophon_ceil_div(j.n, PW_TILE_PIXELS)) j.blocks = sophon_ceil_div(j.n, PW_TILE_PIXELS);
  }
  j.packed = NULL;
  if (weight_ddr != NULL && weight->n == 1 && weight_ddr->stride_w == 1 &&
      (weight_ddr->h == 1 || weight_ddr->stride_h == weight_ddr->w))
    j.packed = pw_packed_weight(dev, &j, weight_ddr);
  if (weight_ddr != NULL && j.packed == NULL)
    sophon_lmem_reading(dev, weight); /* read the weight in LMEM: make the deferred copy now */
  items = j.panels * j.batches * j.blocks;
  tasks = sophon_tasks_for(dev, (uint64_t)j.oc * (uint64_t)j.n * (uint64_t)j.k * (uint64_t)j.batches,
                           items);
  /* per task: the block's results, then (LMEM weight) its own panel */
  j.task_floats = PW_BLOCK_PIXELS * PW_PANEL + (j.packed == NULL ? j.k * PW_PANEL : 0);
  bias_floats = j.panels * PW_PANEL;
  rows_floats = sophon_ceil_div((int64_t)j.batches * j.k * (int64_t)sizeof(const float*), 64) * 16;
  j.scratch = sophon_device_scratch(dev, (size_t)(j.task_floats * tasks + bias_floats + rows_floats));
  if (j.scratch == NULL) return -1;
  biases = j.scratch + j.task_floats * tasks;
  x_rows = (const float**)(void*)(biases + bias_floats);
  for (c = 0; c < bias_floats; ++c) biases[c] = 0.0f;
  if (bias != NULL) {
    sophon_channel_iter it;
    sophon_view_init(&bias_v, dev, bias);
    it = sophon_channel_begin(&bias_v, 0, 0);
    for (c = 0; c < j.oc; ++c) {
      biases[c] = *(const float*)(const void*)it.base;
      sophon_channel_next(&bias_v, &it);
    }
  }
  for (batch = 0; batch < j.batches; ++batch) {
    sophon_channel_iter it = sophon_channel_begin(&j.in_v, batch, 0);
    for (c = 0; c < j.k; ++c) {
      x_rows[(int64_t)batch * j.k + c] = (const float*)(const void*)it.base;
      sophon_channel_next(&j.in_v, &it);
    }
  }
  j.biases = biases;
  j.x_rows = x_rows;
  sophon_parallel_run(dev->pool, tasks, pw_task, &j);
  return 0;
#else
  (void)dev, (void)out, (void)in, (void)weight, (void)bias, (void)p, (void)weight_ddr;
  return 1;
#endif
}
