/*
 * sophon_fast_conv.c - fast f32 conv2d and fc, beside the reference kernels of
 * sophon_tiu_conv.c, which stay the specification (tests/test_fast_kernels.py
 * checks one against the other). Same operands, already checked by the
 * instruction; the LMEM lane layout is read and written as it is.
 *
 * conv2d, one GEMM per (batch item, group):
 *     C[oc][p] = sum_k A[oc][k] * B[k][p],   k = (ic, ky, kx), p = oy * OW + ox
 *   A is the weight (row oc is contiguous in oc's lane), B the input as columns of
 *   window taps (im2col; padding taps are zeros), C the output: channel oc's plane
 *   is contiguous in its lane, so C is written in place. A is packed into panels of
 *   MR rows, B into panels of NR columns, both into the device's scratch buffer;
 *   the product runs over K in blocks of KC with an MR x NR register-blocked
 *   micro-kernel (AVX2 when the CPU has it, else plain C), accumulating into
 *   the output; then out = act(C + bias).
 * depthwise (one input and one output channel per group): sophon_fast_depthwise.c.
 * fc: the input vector gathered once, then one dot product per output feature.
 *
 * Threads: each task owns disjoint outputs (conv: a range of B panels or of A
 * panels; fc: features) and computes every element in one
 * fixed order, so results are bit-identical for any thread count.
 *
 * Tolerance against the reference. The GEMM path adds each output's products in
 * the reference's (ic, ky, kx) order with the same roundings (a multiply, then an
 * add: no fused multiply-add, which on the Zen-class hosts this targets costs no
 * throughput since adds and multiplies issue on separate pipes); padding taps add
 * exact zeros. So conv results are
 * bit-identical to the reference (up to the sign of an all-zero sum) as long as the
 * compiler does not contract a*b + c into an FMA: GCC in ISO C mode, as the
 * toolchain builds it, does not. fc sums in 8 interleaved partial sums, combined
 * pairwise, so it differs by reassociation: both sums are within
 * gamma_K * sum_k |a_k * b_k| of the exact one (gamma_K ~ K * 2^-24), hence
 *     |fast - reference| <= 2 * K * 2^-24 * sum_k |a_k * b_k|   (before bias, act)
 * and bias and the activations (monotone, 1-Lipschitz) keep that bound up to one
 * more rounding. tests/test_fast_kernels.py checks every kernel against this bound.
 */
#include <string.h>

#include "sophon_fast.h"

enum {
  MR = 6,   /* micro-tile rows: output channels */
  NR = 16,  /* micro-tile columns: output pixels (two AVX vectors) */
  KC = 256  /* K block: an A panel (6 KiB) and a B panel (16 KiB) stay in L1 */
};

/* --------------------------------------------------------- micro-kernels
 * c[r][0..NR) (+)= sum_k a[r][k * a_step] * b[k*NR + j] for k < kc, r < MR: the
 * accumulators start from c (or from 0 when `first`) and add the products in k
 * order. a[r] is row r of A: a packed panel (a_step MR) or the weight row in its
 * lane (a_step 1); c[r] points at row r of the tile. */

typedef void (*micro_kernel_fn)(int64_t kc, const float* const* a, int64_t a_step,
                                const float* b, float* const* c, int first);

static void micro_kernel_c(int64_t kc, const float* const* a, int64_t a_step, const float* b,
                           float* const* c, int first) {
  float acc[MR][NR];
  int64_t k;
  int r, j;
  for (r = 0; r < MR; ++r)
    for (j = 0; j < NR; ++j) acc[r][j] = first ? 0.0f : c[r][j];
  for (k = 0; k < kc; ++k) {
    for (r = 0; r < MR; ++r) {
      const float a_r = a[r][k * a_step];
      for (j = 0; j < NR; ++j) acc[r][j] += a_r * b[j];
    }
    b += NR;
  }
  for (r = 0; r < MR; ++r)
    for (j = 0; j < NR; ++j) c[r][j] = acc[r][j];
}

#if SOPHON_X86_DISPATCH
#define SOPHON_ROW(r)                                                   \
  do {                                                                  \
    const __m256 a_r = _mm256_broadcast_ss(a##r + i);                   \
    c##r##0 = _mm256_add_ps(c##r##0, _mm256_mul_ps(a_r, b0));           \
    c##r##1 = _mm256_add_ps(c##r##1, _mm256_mul_ps(a_r, b1));           \
  } while (0)

SOPHON_AVX2 static void micro_kernel_avx2(int64_t kc, const float* const* a, int64_t a_step,
                                          const float* b, float* const* c, int first) {
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  int64_t k, i;
  if (first) {
    c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_ps();
    c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  } else {
    c00 = _mm256_loadu_ps(c[0]); c01 = _mm256_loadu_ps(c[0] + 8);
    c10 = _mm256_loadu_ps(c[1]); c11 = _mm256_loadu_ps(c[1] + 8);
    c20 = _mm256_loadu_ps(c[2]); c21 = _mm256_loadu_ps(c[2] + 8);
    c30 = _mm256_loadu_ps(c[3]); c31 = _mm256_loadu_ps(c[3] + 8);
    c40 = _mm256_loadu_ps(c[4]); c41 = _mm256_loadu_ps(c[4] + 8);
    c50 = _mm256_loadu_ps(c[5]); c51 = _mm256_loadu_ps(c[5] + 8);
  }
  for (k = 0, i = 0; k < kc; ++k, i += a_step) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    SOPHON_ROW(0);
    SOPHON_ROW(1);
    SOPHON_ROW(2);
    SOPHON_ROW(3);
    SOPHON_ROW(4);
    SOPHON_ROW(5);
    b += NR;
  }
  _mm256_storeu_ps(c[0], c00); _mm256_storeu_ps(c[0] + 8, c01);
  _mm256_storeu_ps(c[1], c10); _mm256_storeu_ps(c[1] + 8, c11);
  _mm256_storeu_ps(c[2], c20); _mm256_storeu_ps(c[2] + 8, c21);
  _mm256_storeu_ps(c[3], c30); _mm256_storeu_ps(c[3] + 8, c31);
  _mm256_storeu_ps(c[4], c40); _mm256_storeu_ps(c[4] + 8, c41);
  _mm256_storeu_ps(c[5], c50); _mm256_storeu_ps(c[5] + 8, c51);
}
#undef SOPHON_ROW
#endif

static micro_kernel_fn micro_kernel_for(const sophon_device* dev) {
#if SOPHON_X86_DISPATCH
  if (dev->cpu_avx2) return micro_kernel_avx2;
#else
  (void)dev;
#endif
  return micro_kernel_c;
}

/* ----------------------------------------------------------- conv GEMM */

typedef struct {
  sophon_view out_v, in_v, weight_v, bias_v;
  int has_bias;
  const sophon_conv_params* p;
  int32_t in_h, in_w, out_w;
  int32_t icg, ocg;
  int64_t k;                 /* icg * KH * KW */
  int64_t n;                 /* OH * OW */
  int64_t m_panels, n_panels;
  int32_t batch, group;      /* the GEMM being run */
  int pack_a;                /* pack A (else the kernel reads the weight rows) */
  float* a_pack;             /* m_panels x k x MR, when pack_a */
  float* b_pack;             /* n_panels x k x NR, 64-byte aligned rows */
  int split_n;               /* tasks own B panels (else A panels) */
  micro_kernel_fn kernel;
} conv_gemm;

static void pack_a_panel(const conv_gemm* g, int64_t panel, float* dst) {
  const int32_t oc0 = g->group * g->ocg + (int32_t)(panel * MR);
  const int32_t rows = g->ocg - (int32_t)(panel * MR) < MR ? g->ocg - (int32_t)(panel * MR) : MR;
  int32_t r;
  int64_t k0, k;
  /* one row at a time through a K block (the block's panel stays in L1): the six
     rows sit in six lanes, lmem_bytes_per_lane apart, and collide in cache sets */
  for (k0 = 0; k0 < g->k; k0 += KC) {
    const int64_t k1 = g->k - k0 < KC ? g->k : k0 + KC;
    for (r = 0; r < MR; ++r) {
      if (r < rows) {
        const float* src = sophon_view_f32(&g->weight_v, 0, oc0 + r);
        for (k = k0; k < k1; ++k) dst[k * MR + r] = src[k];
      } else {
        for (k = k0; k < k1; ++k) dst[k * MR + r] = 0.0f;
      }
    }
  }
}

/* A run of panel columns on one output row: columns [col, col+count) are output
 * pixels (oy, ox0 .. ox0+count-1), whose windows start at input (iy0, ix0 + t*sw). */
typedef struct {
  int32_t col, count;
  int64_t iy0, ix0;
} pixel_run;

static void pack_b_panel(const conv_gemm* g, int64_t panel, float* dst) {
  const sophon_conv_params* p = g->p;
  const int64_t p0 = panel * NR;
  const int32_t cols = (int32_t)(g->n - p0 < NR ? g->n - p0 : NR);
  pixel_run runs[NR];
  int32_t num_runs = 0, ic, ky, kx, r, t;
  int64_t pix = p0;
  sophon_channel_iter channel = sophon_channel_begin(&g->in_v, g->batch, g->group * g->icg);

  while (pix < p0 + cols) {
    const int64_t oy = pix / g->out_w, ox = pix % g->out_w;
    int64_t count = g->out_w - ox;
    if (count > p0 + cols - pix) count = p0 + cols - pix;
    runs[num_runs].col = (int32_t)(pix - p0);
    runs[num_runs].count = (int32_t)count;
    runs[num_runs].iy0 = oy * p->stride_h - p->pad_top;
    runs[num_runs].ix0 = ox * p->stride_w - p->pad_left;
    ++num_runs;
    pix += count;
  }
  for (ic = 0; ic < g->icg; ++ic) {
    const float* plane = (const float*)(const void*)channel.base;
    for (ky = 0; ky < p->kernel_h; ++ky) {
      for (kx = 0; kx < p->kernel_w; ++kx) {
        for (t = cols; t < NR; ++t) dst[t] = 0.0f;
        for (r = 0; r < num_runs; ++r) {
          const pixel_run* run = &runs[r];
          float* out = dst + run->col;
          const int64_t iy = run->iy0 + (int64_t)ky * p->dilation_h;
          const int64_t ix0 = run->ix0 + (int64_t)kx * p->dilation_w;
          const int32_t sw = p->stride_w;
          int32_t lo, hi;
          const float* src;
          if (iy < 0 || iy >= g->in_h) {
            for (t = 0; t < run->count; ++t) out[t] = 0.0f;
            continue;
          }
          /* taps t with 0 <= ix0 + t*sw < in_w */
          lo = sophon_first_tap(ix0, sw);
          hi = sophon_end_tap(ix0, sw, g->in_w, run->count);
          if (lo > run->count) lo = run->count;
          if (hi < lo) hi = lo;
          src = plane + iy * g->in_w;
          for (t = 0; t < lo; ++t) out[t] = 0.0f;
          if (sw == 1) {
            memcpy(out + lo, src + ix0 + lo, (size_t)(hi - lo) * sizeof(float));
          } else {
            for (t = lo; t < hi; ++t) out[t] = src[ix0 + (int64_t)t * sw];
          }
          for (t = hi; t < run->count; ++t) out[t] = 0.0f;
        }
        dst += NR;
      }
    }
    sophon_channel_next(&g->in_v, &channel);
  }
}

static void conv_pack_task(void* ctx, int32_t task, int32_t tasks) {
  conv_gemm* g = (conv_gemm*)ctx;
  int64_t begin, end, panel;
  sophon_task_range(g->m_panels, task, tasks, &begin, &end);
  for (panel = begin; panel < end && g->pack_a; ++panel)
    pack_a_panel(g, panel, g->a_pack + panel * g->k * MR);
  sophon_task_range(g->n_panels, task, tasks, &begin, &end);
  for (panel = begin; panel < end; ++panel)
    pack_b_panel(g, panel, g->b_pack + panel * g->k * NR);
}

static void conv_gemm_task(void* ctx, int32_t task, int32_t tasks) {
  conv_gemm* g = (conv_gemm*)ctx;
  int64_t m_begin = 0, m_end = g->m_panels, n_begin = 0, n_end = g->n_panels;
  int64_t kb, mp, np;
  float tile[MR][NR];
  float* tile_rows[MR];
  float* rows[MR];
  int32_t r;

  if (g->split_n)
    sophon_task_range(g->n_panels, task, tasks, &n_begin, &n_end);
  else
    sophon_task_range(g->m_panels, task, tasks, &m_begin, &m_end);
  memset(tile, 0, sizeof tile);
  for (r = 0; r < MR; ++r) tile_rows[r] = tile[r];

  for (kb = 0; kb < g->k; kb += KC) {
    const int64_t kc = g->k - kb < KC ? g->k - kb : KC;
    const int first = kb == 0;
    for (np = n_begin; np < n_end; ++np) {
      const int64_t col0 = np * NR;
      const int32_t cols = (int32_t)(g->n - col0 < NR ? g->n - col0 : NR);
      const float* b = g->b_pack + (np * g->k + kb) * NR;
      for (mp = m_begin; mp < m_end; ++mp) {
        const int32_t oc0 = (int32_t)(mp * MR);
        const int32_t tile_m = g->ocg - oc0 < MR ? g->ocg - oc0 : MR;
        const float* a[MR];
        int64_t a_step;
        for (r = 0; r < tile_m; ++r)
          rows[r] = sophon_view_f32(&g->out_v, g->batch, g->group * g->ocg + oc0 + r) + col0;
        if (g->pack_a) {
          for (r = 0; r < MR; ++r) a[r] = g->a_pack + (mp * g->k + kb) * MR + r;
          a_step = MR;
        } else { /* rows past the edge repeat the last one; their results are dropped */
          for (r = 0; r < MR; ++r)
            a[r] = sophon_view_f32(&g->weight_v, 0, g->group * g->ocg + oc0 +
                                                        (r < tile_m ? r : tile_m - 1)) + kb;
          a_step = 1;
        }
        if (tile_m == MR && cols == NR) {
          g->kernel(kc, a, a_step, b, rows, first);
        } else { /* an edge tile: through a full-size tile buffer */
          if (!first)
            for (r = 0; r < tile_m; ++r) memcpy(tile[r], rows[r], (size_t)cols * sizeof(float));
          g->kernel(kc, a, a_step, b, tile_rows, first);
          for (r = 0; r < tile_m; ++r) memcpy(rows[r], tile[r], (size_t)cols * sizeof(float));
        }
      }
    }
  }
  /* bias and activation over the outputs this task owns */
  {
    const int64_t col_begin = n_begin * NR;
    const int64_t col_end = n_end * NR < g->n ? n_end * NR : g->n;
    const int32_t oc_begin = (int32_t)(m_begin * MR);
    const int32_t oc_end = m_end * MR < g->ocg ? (int32_t)(m_end * MR) : g->ocg;
    int32_t oc;
    for (oc = oc_begin; oc < oc_end; ++oc) {
      const int32_t channel = g->group * g->ocg + oc;
      const float bias = g->has_bias ? *sophon_view_f32(&g->bias_v, 0, channel) : 0.0f;
      sophon_finish_f32(sophon_view_f32(&g->out_v, g->batch, channel) + col_begin,
                     col_end - col_begin, bias, &g->p->act);
    }
  }
}

static int conv2d_gemm(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                       const sophon_local* weight, const sophon_local* bias,
                       const sophon_conv_params* p) {
  conv_gemm g;
  int64_t a_floats, b_floats;
  int32_t tasks;
  uint64_t macs;
  float* scratch;

  sophon_view_init(&g.out_v, dev, out);
  sophon_view_init(&g.in_v, dev, in);
  sophon_view_init(&g.weight_v, dev, weight);
  g.has_bias = bias != NULL;
  if (bias != NULL) sophon_view_init(&g.bias_v, dev, bias);
  g.p = p;
  g.in_h = in->h;
  g.in_w = in->w;
  g.out_w = out->w;
  g.icg = in->c / p->groups;
  g.ocg = out->c / p->groups;
  g.k = (int64_t)g.icg * p->kernel_h * p->kernel_w;
  g.n = (int64_t)out->h * out->w;
  g.m_panels = sophon_ceil_div(g.ocg, MR);
  g.n_panels = sophon_ceil_div(g.n, NR);
  g.kernel = micro_kernel_for(dev);

  /* reading the weight rows in place is half as fast: the six rows of a tile sit in
     six lanes, lmem_bytes_per_lane apart, and collide in the same cache sets */
  g.pack_a = 1;
  a_floats = g.pack_a ? g.m_panels * g.k * MR : 0;
  b_floats = g.n_panels * g.k * NR;
  a_floats = sophon_ceil_div(a_floats, 16) * 16; /* keeps b_pack 64-byte aligned */
  scratch = sophon_device_scratch(dev, (size_t)(a_floats + b_floats));
  if (scratch == NULL) return -1;
  g.a_pack = scratch;
  g.b_pack = scratch + a_floats;

  macs = (uint64_t)g.ocg * (uint64_t)g.n * (uint64_t)g.k;
  g.split_n = g.n_panels >= g.m_panels;
  tasks = sophon_tasks_for(dev, macs, g.split_n ? g.n_panels : g.m_panels);
  for (g.batch = 0; g.batch < out->n; ++g.batch) {
    for (g.group = 0; g.group < p->groups; ++g.group) {
      sophon_parallel_run(dev->pool, tasks, conv_pack_task, &g);
      sophon_parallel_run(dev->pool, tasks, conv_gemm_task, &g);
    }
  }
  return 0;
}

int sophon_fast_conv2d_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_local* weight, const sophon_local* bias,
                           const sophon_conv_params* p) {
  if (in->c == p->groups && out->c == p->groups) {
    sophon_fast_depthwise_f32(dev, out, in, weight, bias, p);
    return 0;
  }
  return conv2d_gemm(dev, out, in, weight, bias, p);
}

/* ------------------------------------------------------------------ fc */

typedef struct {
  sophon_view out_v, weight_v, bias_v;
  int has_bias;
  const sophon_activation* act;
  int32_t batches, features;
  int64_t depth;
  const float* inputs;   /* batches x depth, gathered from the lanes */
  int use_avx2;
} fc_job;

/* x . w in 8 interleaved partial sums, combined pairwise, then the tail. */
#if SOPHON_X86_DISPATCH
SOPHON_ALWAYS_INLINE
#endif
static inline float dot_f32(const float* restrict x, const float* restrict w, int64_t n) {
  float part[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  float acc;
  int64_t k;
  int i;
  for (k = 0; k + 8 <= n; k += 8)
    for (i = 0; i < 8; ++i) part[i] += x[k + i] * w[k + i];
  acc = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; k < n; ++k) acc += x[k] * w[k];
  return acc;
}

#if SOPHON_X86_DISPATCH
SOPHON_AVX2 static float dot_f32_avx2(const float* x, const float* w, int64_t n) {
  return dot_f32(x, w, n);
}
#endif

static void fc_task(void* ctx, int32_t task, int32_t tasks) {
  const fc_job* f = (const fc_job*)ctx;
  int64_t begin, end, feature;
  int32_t batch;
  sophon_task_range(f->features, task, tasks, &begin, &end);
  for (batch = 0; batch < f->batches; ++batch) {
    const float* x = f->inputs + (int64_t)batch * f->depth;
    for (feature = begin; feature < end; ++feature) {
      const float* w = sophon_view_f32(&f->weight_v, 0, (int32_t)feature);
      const float bias = f->has_bias ? *sophon_view_f32(&f->bias_v, 0, (int32_t)feature) : 0.0f;
      float acc;
#if SOPHON_X86_DISPATCH
      if (f->use_avx2)
        acc = dot_f32_avx2(x, w, f->depth);
      else
#endif
        acc = dot_f32(x, w, f->depth);
      *sophon_view_f32(&f->out_v, batch, (int32_t)feature) = sophon_activate_f32(f->act, acc + bias);
    }
  }
}

int sophon_fast_fc_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                       const sophon_local* weight, const sophon_local* bias,
                       const sophon_activation* act) {
  static const sophon_activation none = {SOPHON_ACT_NONE, 0.0f, 0.0f, 0.0f};
  sophon_view in_v;
  fc_job f;
  float* inputs;
  int32_t batch, k;

  inputs = sophon_device_scratch(dev, (size_t)in->n * (size_t)in->c);
  if (inputs == NULL) return -1;
  sophon_view_init(&in_v, dev, in);
  for (batch = 0; batch < in->n; ++batch) { /* in[batch, k] lives in lane k % npu */
    sophon_channel_iter it = sophon_channel_begin(&in_v, batch, 0);
    for (k = 0; k < in->c; ++k) {
      inputs[(int64_t)batch * in->c + k] = *(const float*)(const void*)it.base;
      sophon_channel_next(&in_v, &it);
    }
  }
  sophon_view_init(&f.out_v, dev, out);
  sophon_view_init(&f.weight_v, dev, weight);
  f.has_bias = bias != NULL;
  if (bias != NULL) sophon_view_init(&f.bias_v, dev, bias);
  f.act = act != NULL ? act : &none;
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
