/*
 * sophon_fast_winograd.c - f32 conv2d of 3x3 stride-1 kernels (dilation 1, one
 * group) by Winograd's minimal filtering F(2x2, 3x3), beside the direct GEMM of
 * sophon_fast_conv.c (which takes every conv this file declines) and the
 * reference kernel of sophon_tiu_conv.c, the specification
 * (tests/test_fast_winograd.py checks one against the other).
 *
 * The output plane is cut into 2x2 tiles (the last row and column of tiles are
 * partial when the output height or width is odd: their extra outputs are computed
 * and dropped); tile (ty, tx) reads the 4x4 input patch d at padded rows 2ty..2ty+3,
 * columns 2tx..2tx+3. With
 *         | 1  0 -1  0 |        |  1    0    0  |
 *   B^T = | 0  1  1  0 |    G = | 1/2  1/2  1/2 |    A^T = | 1  1  1  0 |
 *         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |          | 0  1 -1 -1 |
 *         | 0  1  0 -1 |        |  0    0    1  |
 * the tile's outputs are, exactly,
 *     Y = A^T [ sum_ic (G g_ic G^T) . (B^T d_ic B) ] A      (. element-wise)
 * for the 3x3 weight g_ic of each input channel: 16 multiplies per input channel
 * and tile where the direct conv does 36, so 16 GEMMs, one per element xi of the
 * 4x4 transformed tile:
 *     M_xi[oc][t] = sum_ic U_xi[oc][ic] * V_xi[ic][t],   U = G g G^T, V = B^T d B.
 * Steps, per batch item:
 *   1. the input channels are copied once into zero-padded planes (2 * tiles_h + 2
 *      rows, 2 * tiles_w + 2 columns: padding and the partial tiles' extra row and
 *      column are zeros), split into even and odd columns, so that element (i, j) of
 *      16 tiles side by side is one contiguous load;
 *   2. a block of T tiles (as many as keep V, 16 x in_ch x T floats, within half of
 *      L2) is transformed (B^T d B) into V, rows of T tiles;
 *   3. the 16 GEMMs run with an 8 x 32 (or 8 x 16) register-blocked micro-kernel
 *      (the style of sophon_fast_conv.c's packed kernels: A panels of 8 output
 *      channels, k by k, in a packed U) into a buffer M of one panel of 8 output
 *      channels, then A^T M A goes to the output planes with the bias and the
 *      activation (in registers for the kinds the direct kernels apply there,
 *      sophon_act_is_simple and AVX-512's sigmoid family; the others after, over
 *      the outputs written).
 * U, the transformed weight (16 x out_ch x in_ch floats, 1.78x the weight), is made
 * once per device for a deferred constant weight (weight_ddr, in the packed cache
 * under its own arrangement key), else per call from LMEM. Both by the same code, so
 * a constant weight gives the bits of the same weight passed at run time.
 *
 * Threads: step 1 and 2 split the input channels, step 3 the panels of output
 * channels. Every output is computed in one fixed order whatever the split and the
 * block (each tile's transforms are its own; each GEMM element sums ic in order), so
 * results are bit-identical for any thread count.
 * They are not independent of where the instruction's output rows start, unlike the
 * direct kernel's: an output is computed as the top or the bottom row (left or right
 * column) of its tile, by different sums, and the tiles start at the instruction's
 * first output row. A conv the compiler cuts into row bands (layer-group slices) gives
 * the bits of the uncut conv where every band starts at an even output row; else
 * results within the bound below, not the same bits.
 *
 * Instruction sets: AVX-512 (vectors of 16 tiles) and plain C (the same steps tile
 * by tile). A host with AVX2 but not AVX-512 keeps the direct kernel, whose 6 x 16
 * AVX2 micro-kernel is not matched by a Winograd AVX2 path written here.
 *
 * Tolerance against the reference (not bit-identical, unlike the direct kernel).
 * Let u = 2^-24, gamma_n = n u / (1 - n u), K = in_ch, and per tile the operands'
 * magnitudes transformed with absolute values,
 *     U~ = |G| |g| |G|^T,   V~ = |B^T| |d| |B|,   S = |A^T| [ sum_ic U~ . V~ ] |A|.
 * Each element of U sums 3 then 3 terms (weights 1 or 1/2, the halving exact but
 * for subnormal values), 4 roundings:
 * |U^ - U| <= gamma_4 U~; of V, 2 then 2 terms: |V^ - V| <= gamma_2 V~; the GEMM
 * sums K products in ic order (fused multiply-adds with AVX-512, multiply then add
 * in C): within gamma_K sum |U^| |V^|; A^T M A sums 3 then 3 terms: gamma_4 more. So
 *     |winograd - exact| <= (K + 10) u S   (to first order in u)
 * and the reference, summing 9K products, is within gamma_9K sum_k |a_k b_k| of the
 * exact value, where sum_k |a_k b_k| (the direct conv of |g| and |d|) is
 * A^T [ sum (G|g|G^T) . (B^T|d|B) ] A <= S. Hence
 *     |winograd - reference| <= (K + 10) u S + 9 K u sum_k |a_k b_k|
 *                            <= (10 K + 10) u S             (before bias and act)
 * and bias and the activations keep that bound up to one more rounding, as in
 * sophon_fast_conv.c. S is about 7-8 times sum_k |a_k b_k| for random normal data;
 * the errors measured (tests/test_fast_winograd.py's shapes) stay below 0.75 u S,
 * 2-5 u sum_k |a_k b_k|, about twice the direct kernel's. An infinity in a patch
 * can make a NaN (inf - inf in B^T d B) where the reference gives an infinity.
 */
#include <string.h>

#include "fast/sophon_fast.h"

enum {
  WINO_MR = 8,            /* output channels per micro-tile (and per U panel) */
  WINO_NR = 16,           /* tiles per vector */
  /* V's block: 16 x in_ch x T floats within this many bytes (half a 1 MiB L2) */
  WINO_V_BYTES = 512 * 1024,
  WINO_T_MAX = 256,       /* at most this many tiles a block */
  WINO_PREFETCH = 64,     /* U is prefetched this many k steps ahead */
  /* the shapes Winograd takes (measured on the Zen 4 host, docs/host_speed.md):
     fewer channels or tiles keep the direct kernel */
  WINO_MIN_IC = 16,
  WINO_MIN_OC = 32,
  WINO_MIN_TILES = 16
};

typedef struct {
  sophon_view out_v, in_v;
  const sophon_conv_params* p;
  const sophon_activation* act;   /* NULL for none */
  int32_t ic, oc, in_h, in_w, out_h, out_w;
  int32_t tiles_h, tiles_w;
  int64_t tiles;                  /* per batch item */
  int64_t m_panels;               /* ceil(oc / WINO_MR) */
  int64_t pitch;                  /* a phase row: tiles_w + 1 floats */
  int64_t phase_floats;           /* (2 * tiles_h + 2) * pitch */
  int64_t plane_floats;           /* per channel: even and odd phases, then slack */
  float* planes;                  /* ic blocks of plane_floats */
  const float* u;                 /* U: panel (xi, mp) at (xi * m_panels + mp) * ic * 8,
                                     element (k, r) at k * 8 + r (rows past oc: 0) */
  float* v;                       /* V: element (xi, k, t) at xi * v_xi + k * block + t */
  float* m;                       /* per task m_floats: M (xi, r, t) at xi * m_xi + r * block + t */
  /* V's and M's 16 matrices, one cache line more apart than their size: the input
     transform stores, and the inverse loads, one row of each of the 16 at a time,
     which sizes of 4 KiB multiples put in one L1 set (one instruction, 1 thread,
     paired: 32->32 @80 0.85 of the time, 64->64 @56 0.90, 256->256 @14 0.96) */
  int64_t v_xi, m_xi;
  int64_t m_floats;
  float* biases;                  /* oc values (0 without a bias) */
  int64_t block;                  /* T: tiles a block, a multiple of WINO_NR */
  int64_t t0, t_count;            /* the block being run */
  int32_t batch;
  int avx512;
  int fused_act;                  /* the AVX-512 path applies act in registers */
  /* the weight, for the per-call transform */
  const float* w_data;            /* a DDR view with contiguous rows, or NULL: LMEM */
  int64_t w_stride;               /* floats between output channels of w_data */
  sophon_view weight_v;
  float* u_out;                   /* where transform_weight_task writes U */
  float* u_panels;                /* with u NULL: per task, U of the panel being run
                                     (16 x ic x 8 floats), made there */
} wino_job;

/* --------------------------------------------------------- weight: G g G^T */

/* One input channel's 3x3 weight g (row-major, 9 floats) to its 16 transformed values
 * u[xi], xi_stride apart (the same operations as the vector version below). */
static inline void transform_weight_tile(const float* g, float* u, int64_t xi_stride) {
  float h[4][3];
  int32_t i, j;
  for (j = 0; j < 3; ++j) { /* G g: the kernel's rows combined */
    const float a = g[j], b = g[3 + j], c = g[6 + j];
    h[0][j] = a;
    h[1][j] = ((a + c) + b) * 0.5f;
    h[2][j] = ((a + c) - b) * 0.5f;
    h[3][j] = c;
  }
  for (i = 0; i < 4; ++i) { /* (G g) G^T: then its columns */
    const float a = h[i][0], b = h[i][1], c = h[i][2];
    u[(i * 4 + 0) * xi_stride] = a;
    u[(i * 4 + 1) * xi_stride] = ((a + c) + b) * 0.5f;
    u[(i * 4 + 2) * xi_stride] = ((a + c) - b) * 0.5f;
    u[(i * 4 + 3) * xi_stride] = c;
  }
}

/* The weight row of output channel oc (in_ch x 9 floats), or NULL past the last. */
static const float* weight_row(const wino_job* w, int32_t oc) {
  if (oc >= w->oc) return NULL;
  return w->w_data != NULL ? w->w_data + oc * w->w_stride : sophon_view_f32(&w->weight_v, 0, oc);
}

/* U for the panels [mp_begin, mp_end) from the weight (DDR view or LMEM) into
 * u_out: panel (xi, mp) at (xi * u_panels + mp - mp_begin) * ic * 8, element (k, r)
 * (input channel k, output channel mp * 8 + r; zeros past the last) at k * 8 + r. */
static void transform_weight_c(const wino_job* w, int64_t mp_begin, int64_t mp_end,
                               float* u_out, int64_t u_panels) {
  const int64_t ic = w->ic, xi_stride = u_panels * ic * WINO_MR;
  int64_t mp, k;
  int32_t r, xi;
  for (mp = mp_begin; mp < mp_end; ++mp) {
    for (r = 0; r < WINO_MR; ++r) {
      const float* row = weight_row(w, (int32_t)(mp * WINO_MR + r));
      float* u = u_out + (mp - mp_begin) * ic * WINO_MR + r;
      for (k = 0; k < ic; ++k) {
        if (row != NULL)
          transform_weight_tile(row + k * 9, u + k * WINO_MR, xi_stride);
        else
          for (xi = 0; xi < 16; ++xi) u[xi * xi_stride + k * WINO_MR] = 0.0f;
      }
    }
  }
}

#if SOPHON_X86_DISPATCH
/* The same, two input channels of the panel's 8 rows at a time, in lanes k' * 8 + r
 * (where U wants them: 16 contiguous floats): the 16 weights' 9 taps loaded as 16
 * rows and transposed (tap t of the 16 in one register; gathers, vgatherdps, ran
 * at a quarter of the speed on the Zen 4 host), then the same operations on vectors. */
SOPHON_AVX512 static void transform_weight_avx512(const wino_job* w, int64_t mp_begin,
                                                  int64_t mp_end, float* u_out, int64_t u_panels) {
  const int64_t ic = w->ic, xi_stride = u_panels * ic * WINO_MR;
  const __m512 half = _mm512_set1_ps(0.5f);
  int64_t mp, k;
  int32_t r, i, j, xi;
  for (mp = mp_begin; mp < mp_end; ++mp) {
    const float* rows[WINO_MR];
    float* u = u_out + (mp - mp_begin) * ic * WINO_MR;
    for (r = 0; r < WINO_MR; ++r) rows[r] = weight_row(w, (int32_t)(mp * WINO_MR + r));
    for (k = 0; k < ic; k += 2) {
      __m512 g[16], h[4][3], x[16];
      for (i = 0; i < 16; ++i) { /* lane i: channel k + i / 8 of row i % 8 */
        const float* row = rows[i % WINO_MR];
        const int64_t channel = k + i / WINO_MR;
        g[i] = row == NULL || channel >= ic ? _mm512_setzero_ps()
                                            : _mm512_maskz_loadu_ps(0x1FF, row + channel * 9);
      }
      sophon_transpose16_avx512(g); /* g[t]: tap t of the 16 */
      for (j = 0; j < 3; ++j) {
        const __m512 a = g[j], b = g[3 + j], c = g[6 + j];
        const __m512 ac = _mm512_add_ps(a, c);
        h[0][j] = a;
        h[1][j] = _mm512_mul_ps(_mm512_add_ps(ac, b), half);
        h[2][j] = _mm512_mul_ps(_mm512_sub_ps(ac, b), half);
        h[3][j] = c;
      }
      for (i = 0; i < 4; ++i) {
        const __m512 a = h[i][0], b = h[i][1], c = h[i][2];
        const __m512 ac = _mm512_add_ps(a, c);
        x[i * 4 + 0] = a;
        x[i * 4 + 1] = _mm512_mul_ps(_mm512_add_ps(ac, b), half);
        x[i * 4 + 2] = _mm512_mul_ps(_mm512_sub_ps(ac, b), half);
        x[i * 4 + 3] = c;
      }
      for (xi = 0; xi < 16; ++xi) {
        if (k + 1 < ic)
          _mm512_storeu_ps(u + xi * xi_stride + k * WINO_MR, x[xi]);
        else
          _mm512_mask_storeu_ps(u + xi * xi_stride + k * WINO_MR, 0xFF, x[xi]);
      }
    }
  }
}
#endif

/* U of the panels [mp_begin, mp_end) into u_out (transform_weight_c). */
static void transform_weight(const wino_job* w, int64_t mp_begin, int64_t mp_end, float* u_out,
                             int64_t u_panels) {
#if SOPHON_X86_DISPATCH
  if (w->avx512) {
    transform_weight_avx512(w, mp_begin, mp_end, u_out, u_panels);
    return;
  }
#endif
  transform_weight_c(w, mp_begin, mp_end, u_out, u_panels);
}

/* A share of U's panels, into w->u_out (all of U: m_panels panels per xi). */
static void transform_weight_task(void* ctx, int32_t task, int32_t tasks) {
  const wino_job* w = (const wino_job*)ctx;
  int64_t begin, end;
  sophon_task_range(w->m_panels, task, tasks, &begin, &end);
  if (begin < end)
    transform_weight(w, begin, end, w->u_out + begin * w->ic * WINO_MR, w->m_panels);
}

/* ------------------------------------------------------ input: padded planes */

/* Even and odd columns of channel `src`'s zero-padded plane: E[y][x] = P[y][2x],
 * O[y][x] = P[y][2x + 1], P[y][x] = in[y - pad_top][x - pad_left] (0 outside). */
SOPHON_ALWAYS_INLINE static inline void pad_plane_body(const wino_job* w, const float* src,
                                                       float* block) {
  const int64_t rows = 2 * (int64_t)w->tiles_h + 2, pitch = w->pitch;
  int64_t y, x;
  int32_t phase;
  for (phase = 0; phase < 2; ++phase) {
    float* plane = block + phase * w->phase_floats;
    /* P column 2x + phase is input column 2x + phase - pad_left */
    for (y = 0; y < rows; ++y) {
      const int64_t iy = y - w->p->pad_top;
      float* row = plane + y * pitch;
      const float* in_row = src + iy * w->in_w;
      if (iy < 0 || iy >= w->in_h) {
        memset(row, 0, (size_t)pitch * sizeof(float));
        continue;
      }
      for (x = 0; x < pitch; ++x) {
        const int64_t ix = 2 * x + phase - w->p->pad_left;
        row[x] = ix >= 0 && ix < w->in_w ? in_row[ix] : 0.0f;
      }
    }
  }
  memset(block + 2 * w->phase_floats, 0,
         (size_t)(w->plane_floats - 2 * w->phase_floats) * sizeof(float));
}

static void pad_plane_c(const wino_job* w, const float* src, float* block) {
  pad_plane_body(w, src, block);
}

#if SOPHON_X86_DISPATCH
/* The same: each input row's even and odd elements split 8 pairs at a time
 * (input element x lands at padded column x + pad_left: in the even phase when
 * that is even). */
SOPHON_AVX512 static void pad_plane_avx512(const wino_job* w, const float* src, float* block) {
  const int64_t rows = 2 * (int64_t)w->tiles_h + 2, pitch = w->pitch;
  const int32_t left = w->p->pad_left;
  int64_t y;
  memset(block, 0, (size_t)w->plane_floats * sizeof(float));
  for (y = 0; y < rows; ++y) {
    const int64_t iy = y - w->p->pad_top;
    float* even = block + y * pitch;
    float* odd = even + w->phase_floats;
    const float* in_row = src + iy * w->in_w;
    if (iy < 0 || iy >= w->in_h) continue;
    if (left % 2 == 0) { /* in[2j] -> E[j + left/2], in[2j + 1] -> O[j + left/2] */
      sophon_deinterleave2_avx2(in_row, w->in_w / 2, even + left / 2, odd + left / 2);
      if (w->in_w % 2 != 0) even[left / 2 + w->in_w / 2] = in_row[w->in_w - 1];
    } else { /* in[2j] -> O[j + (left-1)/2], in[2j + 1] -> E[j + (left+1)/2] */
      sophon_deinterleave2_avx2(in_row, w->in_w / 2, odd + (left - 1) / 2, even + (left + 1) / 2);
      if (w->in_w % 2 != 0) odd[(left - 1) / 2 + w->in_w / 2] = in_row[w->in_w - 1];
    }
  }
}
#endif

static void pad_planes_task(void* ctx, int32_t task, int32_t tasks) {
  const wino_job* w = (const wino_job*)ctx;
  int64_t begin, end, k;
  sophon_task_range(w->ic, task, tasks, &begin, &end);
  for (k = begin; k < end; ++k) {
    const float* src = sophon_view_f32(&w->in_v, w->batch, (int32_t)k);
    float* block = w->planes + k * w->plane_floats;
#if SOPHON_X86_DISPATCH
    if (w->avx512) {
      pad_plane_avx512(w, src, block);
      continue;
    }
#endif
    pad_plane_c(w, src, block);
  }
}

/* ---------------------------------------------------- input: V = B^T d B */

/* The transform of one patch: d[i][j] in, v[i * 4 + j] out (the same operations as
 * the vector version below). */
static void transform_input_tile(const float d[4][4], float* v) {
  float t[4][4];
  int i, j;
  for (j = 0; j < 4; ++j) { /* B^T d */
    t[0][j] = d[0][j] - d[2][j];
    t[1][j] = d[1][j] + d[2][j];
    t[2][j] = d[2][j] - d[1][j];
    t[3][j] = d[1][j] - d[3][j];
  }
  for (i = 0; i < 4; ++i) { /* (B^T d) B */
    v[i * 4 + 0] = t[i][0] - t[i][2];
    v[i * 4 + 1] = t[i][1] + t[i][2];
    v[i * 4 + 2] = t[i][2] - t[i][1];
    v[i * 4 + 3] = t[i][1] - t[i][3];
  }
}

/* The run of the current block's tiles from tile t that lies on one tile row:
 * tiles (ty, tx .. tx + count - 1), block columns from t - t0. */
static inline void tile_run(const wino_job* w, int64_t t, int64_t* ty, int64_t* tx,
                            int64_t* count) {
  const int64_t end = w->t0 + w->t_count;
  *ty = t / w->tiles_w;
  *tx = t - *ty * w->tiles_w;
  *count = w->tiles_w - *tx < end - t ? w->tiles_w - *tx : end - t;
}

static void transform_input_c(const wino_job* w, int64_t k_begin, int64_t k_end) {
  const int64_t channel_stride = w->block, xi_stride = w->v_xi;
  int64_t k, c, t, ty, tx, count;
  int32_t i, xi;
  for (k = k_begin; k < k_end; ++k) {
    const float* even = w->planes + k * w->plane_floats;
    const float* odd = even + w->phase_floats;
    float* v = w->v + k * channel_stride;
    for (t = w->t0; t < w->t0 + w->t_count; t += count) {
      const int64_t offset = t - w->t0;
      tile_run(w, t, &ty, &tx, &count);
      for (c = 0; c < count; ++c) {
        float d[4][4], out[16];
        for (i = 0; i < 4; ++i) {
          const int64_t at = (2 * ty + i) * w->pitch + tx + c;
          d[i][0] = even[at];
          d[i][1] = odd[at];
          d[i][2] = even[at + 1];
          d[i][3] = odd[at + 1];
        }
        transform_input_tile((const float(*)[4])d, out);
        for (xi = 0; xi < 16; ++xi) v[xi * xi_stride + offset + c] = out[xi];
      }
    }
  }
}

#if SOPHON_X86_DISPATCH
/* The same, 16 tiles of a run at a time (the last ones through masks). */
SOPHON_AVX512 static void transform_input_avx512(const wino_job* w, int64_t k_begin,
                                                 int64_t k_end) {
  const int64_t xi_stride = w->v_xi;
  int64_t k, c, t, ty, tx, count;
  int32_t i;
  for (k = k_begin; k < k_end; ++k) {
    const float* even = w->planes + k * w->plane_floats;
    const float* odd = even + w->phase_floats;
    float* v = w->v + k * w->block;
    for (t = w->t0; t < w->t0 + w->t_count; t += count) {
      const int64_t offset = t - w->t0;
      tile_run(w, t, &ty, &tx, &count);
      for (c = 0; c < count; c += WINO_NR) {
        const int64_t n = count - c < WINO_NR ? count - c : WINO_NR;
        const __mmask16 mask = (__mmask16)(n == WINO_NR ? 0xFFFFu : (1u << n) - 1u);
        __m512 d[4][4], e[4][4], x[16];
        float* dst = v + offset + c;
        for (i = 0; i < 4; ++i) {
          const int64_t at = (2 * ty + i) * w->pitch + tx + c;
          d[i][0] = _mm512_maskz_loadu_ps(mask, even + at);
          d[i][1] = _mm512_maskz_loadu_ps(mask, odd + at);
          d[i][2] = _mm512_maskz_loadu_ps(mask, even + at + 1);
          d[i][3] = _mm512_maskz_loadu_ps(mask, odd + at + 1);
        }
        for (i = 0; i < 4; ++i) {
          e[0][i] = _mm512_sub_ps(d[0][i], d[2][i]);
          e[1][i] = _mm512_add_ps(d[1][i], d[2][i]);
          e[2][i] = _mm512_sub_ps(d[2][i], d[1][i]);
          e[3][i] = _mm512_sub_ps(d[1][i], d[3][i]);
        }
        for (i = 0; i < 4; ++i) {
          x[i * 4 + 0] = _mm512_sub_ps(e[i][0], e[i][2]);
          x[i * 4 + 1] = _mm512_add_ps(e[i][1], e[i][2]);
          x[i * 4 + 2] = _mm512_sub_ps(e[i][2], e[i][1]);
          x[i * 4 + 3] = _mm512_sub_ps(e[i][1], e[i][3]);
        }
        /* lanes past n are zeros (masked loads): stored whole where they stay in the
           block (the next run writes its own columns after), so that the GEMM's
           columns past the block's tiles read zeros rather than stale scratch (their
           results are dropped either way) */
        for (i = 0; i < 16; ++i) {
          if (offset + c + WINO_NR <= w->block)
            _mm512_storeu_ps(dst + i * xi_stride, x[i]);
          else
            _mm512_mask_storeu_ps(dst + i * xi_stride, mask, x[i]);
        }
      }
    }
  }
}
#endif

static void transform_input_task(void* ctx, int32_t task, int32_t tasks) {
  const wino_job* w = (const wino_job*)ctx;
  int64_t begin, end;
  sophon_task_range(w->ic, task, tasks, &begin, &end);
#if SOPHON_X86_DISPATCH
  if (w->avx512) {
    transform_input_avx512(w, begin, end);
    return;
  }
#endif
  transform_input_c(w, begin, end);
}

/* ------------------------------------------------------------ the GEMMs
 * A micro-kernel computes an 8 x (16 * nv) tile of one M_xi over all of K:
 *     m[r * ldm + j] = sum_{k < kc} a[k * 8 + r] * b[k * ldb + j]
 * in k order (a: a U panel; b: V_xi from the tile column; m: M_xi's rows). */

static void micro_kernel_c(int nv, int64_t kc, const float* a, const float* b, int64_t ldb,
                           float* m, int64_t ldm) {
  float acc[WINO_MR][2 * WINO_NR];
  const int32_t cols = nv * WINO_NR;
  int64_t k;
  int32_t r, j;
  for (r = 0; r < WINO_MR; ++r)
    for (j = 0; j < cols; ++j) acc[r][j] = 0.0f;
  for (k = 0; k < kc; ++k) {
    const float* b_k = b + k * ldb;
    for (r = 0; r < WINO_MR; ++r) {
      const float a_r = a[k * WINO_MR + r];
      for (j = 0; j < cols; ++j) acc[r][j] += a_r * b_k[j];
    }
  }
  for (r = 0; r < WINO_MR; ++r)
    for (j = 0; j < cols; ++j) m[r * ldm + j] = acc[r][j];
}

#if SOPHON_X86_DISPATCH
#define SOPHON_ROW(r)                                                   \
  do {                                                                  \
    const __m512 a_r = _mm512_set1_ps(a_k[r]);                          \
    c##r##0 = _mm512_fmadd_ps(a_r, b0, c##r##0);                        \
    if (nv > 1) c##r##1 = _mm512_fmadd_ps(a_r, b1, c##r##1);            \
  } while (0)
#define SOPHON_STORE(r)                                                 \
  do {                                                                  \
    _mm512_storeu_ps(m + (r) * ldm, c##r##0);                           \
    if (nv > 1) _mm512_storeu_ps(m + (r) * ldm + 16, c##r##1);          \
  } while (0)

/* 8 x 32 (nv 2) or 8 x 16 (nv 1), as the packed 8 x 32 kernel of sophon_fast_conv.c:
 * sixteen (eight) accumulators, U's k step one 32-byte stream, prefetched ahead (a
 * U panel as 8 rows of K, read as 8 streams 2 KiB apart at K = 512, ran 15-20%
 * slower on the Zen 4 host). */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void micro_kernel_avx512_body(
    const int nv, int64_t kc, const float* a, const float* b, int64_t ldb, float* m,
    int64_t ldm) {
  __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
  int64_t k;
  c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm512_setzero_ps();
  c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = _mm512_setzero_ps();
  for (k = 0; k < kc; ++k) {
    const float* a_k = a + k * WINO_MR;
    const float* b_k = b + k * ldb;
    const __m512 b0 = _mm512_loadu_ps(b_k);
    const __m512 b1 = nv > 1 ? _mm512_loadu_ps(b_k + 16) : b0;
    _mm_prefetch((const char*)(a_k + WINO_PREFETCH * WINO_MR), _MM_HINT_T0);
    SOPHON_ROW(0);
    SOPHON_ROW(1);
    SOPHON_ROW(2);
    SOPHON_ROW(3);
    SOPHON_ROW(4);
    SOPHON_ROW(5);
    SOPHON_ROW(6);
    SOPHON_ROW(7);
  }
  SOPHON_STORE(0); SOPHON_STORE(1); SOPHON_STORE(2); SOPHON_STORE(3);
  SOPHON_STORE(4); SOPHON_STORE(5); SOPHON_STORE(6); SOPHON_STORE(7);
}
#undef SOPHON_ROW
#undef SOPHON_STORE

SOPHON_AVX512 static void micro_kernel_avx512_1(int64_t kc, const float* a, const float* b,
                                                int64_t ldb, float* m, int64_t ldm) {
  micro_kernel_avx512_body(1, kc, a, b, ldb, m, ldm);
}

SOPHON_AVX512 static void micro_kernel_avx512_2(int64_t kc, const float* a, const float* b,
                                                int64_t ldb, float* m, int64_t ldm) {
  micro_kernel_avx512_body(2, kc, a, b, ldb, m, ldm);
}
#endif

/* --------------------------------------------------- output: Y = A^T M A */

/* Output channel oc's 2x2 outputs of one tile from its 16 GEMM results: m[xi], then
 * bias and act, into out (row pitch out_w; rows / columns past the output dropped). */
static void inverse_tile_c(const float* m, float bias, const sophon_activation* act,
                           float* out, int64_t out_w, int32_t rows, int32_t cols) {
  float s[2][4], y[2][2];
  int32_t i, j;
  for (j = 0; j < 4; ++j) { /* A^T M */
    s[0][j] = (m[0 * 4 + j] + m[1 * 4 + j]) + m[2 * 4 + j];
    s[1][j] = (m[1 * 4 + j] - m[2 * 4 + j]) - m[3 * 4 + j];
  }
  for (i = 0; i < 2; ++i) { /* (A^T M) A */
    y[i][0] = (s[i][0] + s[i][1]) + s[i][2];
    y[i][1] = (s[i][1] - s[i][2]) - s[i][3];
  }
  for (i = 0; i < rows; ++i)
    for (j = 0; j < cols; ++j) out[i * out_w + j] = sophon_activate_f32(act, y[i][j] + bias);
}

/* The current block's outputs of the panel's `tile_m` channels from M (m). */
static void inverse_c(const wino_job* w, const float* m, int64_t mp, int32_t tile_m) {
  int32_t r, xi;
  int64_t c, t, ty, tx, count;
  for (r = 0; r < tile_m; ++r) {
    const int32_t oc = (int32_t)(mp * WINO_MR + r);
    float* plane = sophon_view_f32(&w->out_v, w->batch, oc);
    for (t = w->t0; t < w->t0 + w->t_count; t += count) {
      const int64_t offset = t - w->t0;
      tile_run(w, t, &ty, &tx, &count);
      for (c = 0; c < count; ++c) {
        const int64_t oy = 2 * ty, ox = 2 * (tx + c);
        float tile[16];
        for (xi = 0; xi < 16; ++xi) tile[xi] = m[xi * w->m_xi + r * w->block + offset + c];
        inverse_tile_c(tile, w->biases[oc], &w->p->act, plane + oy * w->out_w + ox, w->out_w,
                       oy + 1 < w->out_h ? 2 : 1, ox + 1 < w->out_w ? 2 : 1);
      }
    }
  }
}

#if SOPHON_X86_DISPATCH
/* The same, 16 tiles of a run at a time: the 2x2 outputs of 16 tiles side by side
 * are two rows of 32 floats (interleaved by a permute), stored through masks. */
SOPHON_AVX512 static void inverse_avx512(const wino_job* w, const float* m, int64_t mp,
                                         int32_t tile_m) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
                                       15, 31);
  int32_t r, i, j;
  int64_t c, t, ty, tx, count;
  for (r = 0; r < tile_m; ++r) {
    const int32_t oc = (int32_t)(mp * WINO_MR + r);
    float* plane = sophon_view_f32(&w->out_v, w->batch, oc);
    const __m512 bias = _mm512_set1_ps(w->biases[oc]);
    const float* m_r = m + r * w->block;
    for (t = w->t0; t < w->t0 + w->t_count; t += count) {
      const int64_t offset = t - w->t0;
      tile_run(w, t, &ty, &tx, &count);
      for (c = 0; c < count; c += WINO_NR) {
        const int64_t n = count - c < WINO_NR ? count - c : WINO_NR;
        const __mmask16 mask = (__mmask16)(n == WINO_NR ? 0xFFFFu : (1u << n) - 1u);
        const int64_t oy = 2 * ty, ox = 2 * (tx + c);
        const int64_t cols = w->out_w - ox < 2 * n ? w->out_w - ox : 2 * n;
        const __mmask16 mask0 = (__mmask16)(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
        const __mmask16 mask1 = (__mmask16)(cols >= 32 ? 0xFFFFu : cols <= 16 ? 0u
                                                                  : (1u << (cols - 16)) - 1u);
        __m512 x[16], s[2][4], y[2][2];
        for (i = 0; i < 16; ++i)
          x[i] = _mm512_maskz_loadu_ps(mask, m_r + i * w->m_xi + offset + c);
        for (j = 0; j < 4; ++j) {
          s[0][j] = _mm512_add_ps(_mm512_add_ps(x[0 * 4 + j], x[1 * 4 + j]), x[2 * 4 + j]);
          s[1][j] = _mm512_sub_ps(_mm512_sub_ps(x[1 * 4 + j], x[2 * 4 + j]), x[3 * 4 + j]);
        }
        for (i = 0; i < 2; ++i) {
          y[i][0] = _mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]);
          y[i][1] = _mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]);
        }
        for (i = 0; i < 2 && oy + i < w->out_h; ++i) {
          float* dst = plane + (oy + i) * w->out_w + ox;
          __m512 y0 = _mm512_add_ps(y[i][0], bias), y1 = _mm512_add_ps(y[i][1], bias);
          if (w->fused_act) {
            y0 = sophon_act_avx512(y0, w->act);
            y1 = sophon_act_avx512(y1, w->act);
          }
          _mm512_mask_storeu_ps(dst, mask0, _mm512_permutex2var_ps(y0, lo, y1));
          _mm512_mask_storeu_ps(dst + 16, mask1, _mm512_permutex2var_ps(y0, hi, y1));
          if (!w->fused_act) sophon_activate_span_f32(dst, cols, w->act);
        }
      }
    }
  }
}
#endif

/* A share of the output-channel panels: the 16 GEMMs of each panel over the block,
 * then its outputs. */
static void gemm_task(void* ctx, int32_t task, int32_t tasks) {
  const wino_job* w = (const wino_job*)ctx;
  const int64_t ic = w->ic;
  float* m = w->m + task * w->m_floats;
  float* u_panel = w->u_panels + task * 16 * ic * WINO_MR;
  int64_t begin, end, mp, col;
  int32_t xi;
  sophon_task_range(w->m_panels, task, tasks, &begin, &end);
  for (mp = begin; mp < end; ++mp) {
    const int32_t tile_m = w->oc - (int32_t)(mp * WINO_MR) < WINO_MR ? w->oc - (int32_t)(mp * WINO_MR)
                                                                     : WINO_MR;
    if (w->u == NULL) transform_weight(w, mp, mp + 1, u_panel, 1);
    for (xi = 0; xi < 16; ++xi) {
      const float* a = w->u != NULL ? w->u + (xi * w->m_panels + mp) * ic * WINO_MR
                                     : u_panel + xi * ic * WINO_MR;
      const float* b = w->v + xi * w->v_xi;
      float* m_xi = m + xi * w->m_xi;
      for (col = 0; col < w->t_count; col += 2 * WINO_NR) {
        const int nv = w->t_count - col > WINO_NR ? 2 : 1;
#if SOPHON_X86_DISPATCH
        if (w->avx512) {
          if (nv == 2)
            micro_kernel_avx512_2(ic, a, b + col, w->block, m_xi + col, w->block);
          else
            micro_kernel_avx512_1(ic, a, b + col, w->block, m_xi + col, w->block);
          continue;
        }
#endif
        micro_kernel_c(nv, ic, a, b + col, w->block, m_xi + col, w->block);
      }
    }
#if SOPHON_X86_DISPATCH
    if (w->avx512) {
      inverse_avx512(w, m, mp, tile_m);
      continue;
    }
#endif
    inverse_c(w, m, mp, tile_m);
  }
}

/* ----------------------------------------------------------------- driver */

/* U of a deferred constant weight (`ddr`: rows of in_ch * 9 contiguous floats),
 * made once for the device's life under its own arrangement key (shape[5] = -1:
 * pack_a's keys have 0 there, fc's a stride >= 0); NULL without room or memory. */
static const float* packed_u(sophon_device* dev, wino_job* w, const sophon_global* ddr,
                             int32_t tasks) {
  const int64_t k = (int64_t)w->ic * 9;
  sophon_packed_key key;
  float* packed;
  int fresh;
  if (ddr->stride_w != 1 || !(ddr->h == 1 || ddr->stride_h == ddr->w) || ddr->stride_c < k ||
      (int64_t)ddr->h * ddr->w != k || ddr->c != w->oc || ddr->n != 1)
    return NULL;
  memset(&key, 0, sizeof(key));
  key.data = ddr->data;
  key.data_end = (const float*)ddr->data + (int64_t)(ddr->c - 1) * ddr->stride_c + k;
  key.shape[0] = ddr->c;
  key.shape[1] = k;
  key.shape[2] = ddr->stride_c;
  key.shape[3] = 4; /* F(2x2, 3x3): 4x4 tiles */
  key.shape[4] = 3;
  key.shape[5] = -1;
  packed = sophon_device_packed(dev, &key, (size_t)(16 * w->m_panels * WINO_MR * w->ic), &fresh);
  if (packed == NULL || !fresh) return packed;
  w->w_data = (const float*)ddr->data;
  w->w_stride = ddr->stride_c;
  w->u_out = packed;
  sophon_parallel_run(dev->pool, tasks, transform_weight_task, w);
  return packed;
}

int sophon_fast_winograd_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                             const sophon_local* weight, const sophon_local* bias,
                             const sophon_conv_params* p, const sophon_global* weight_ddr) {
  wino_job w;
  int64_t u_floats, v_floats, plane_total, macs;
  int32_t tasks, c;
  int per_panel;
  float* scratch;

  if (!(p->kernel_h == 3 && p->kernel_w == 3 && p->stride_h == 1 && p->stride_w == 1 &&
        p->dilation_h == 1 && p->dilation_w == 1 && p->groups == 1))
    return 1;
  if (dev->cpu_fma && !dev->cpu_avx512) return 1; /* AVX2: the direct kernel */
  if (in->c < WINO_MIN_IC || out->c < WINO_MIN_OC) return 1;

  memset(&w, 0, sizeof(w));
  w.p = p;
  w.ic = in->c;
  w.oc = out->c;
  w.in_h = in->h;
  w.in_w = in->w;
  w.out_h = out->h;
  w.out_w = out->w;
  w.tiles_h = (out->h + 1) / 2;
  w.tiles_w = (out->w + 1) / 2;
  w.tiles = (int64_t)w.tiles_h * w.tiles_w;
  if (w.tiles < WINO_MIN_TILES) return 1;
  w.avx512 = dev->cpu_avx512;
  w.act = p->act.kind == SOPHON_ACT_NONE ? NULL : &p->act;
  w.fused_act = sophon_act_is_simple(&p->act) || sophon_act_is_sigmoid_family(&p->act);
  w.m_panels = sophon_ceil_div(w.oc, WINO_MR);
  w.pitch = w.tiles_w + 1;
  w.phase_floats = (2 * (int64_t)w.tiles_h + 2) * w.pitch;
  w.plane_floats = sophon_ceil_div(2 * w.phase_floats + WINO_NR, 16) * 16;
  /* the block: V within WINO_V_BYTES, a multiple of 16 tiles, no more than needed */
  w.block = WINO_V_BYTES / (16 * (int64_t)sizeof(float) * w.ic) / WINO_NR * WINO_NR;
  if (w.block < WINO_NR) w.block = WINO_NR;
  if (w.block > WINO_T_MAX) w.block = WINO_T_MAX;
  if (w.block > sophon_ceil_div(w.tiles, WINO_NR) * WINO_NR)
    w.block = sophon_ceil_div(w.tiles, WINO_NR) * WINO_NR;
  w.v_xi = (int64_t)w.ic * w.block + WINO_NR;
  w.m_xi = WINO_MR * w.block + WINO_NR;
  w.m_floats = 16 * w.m_xi;
  macs = 16 * (int64_t)w.oc * w.ic * w.tiles * out->n;
  tasks = sophon_tasks_for(dev, (uint64_t)macs, w.m_panels);

  w.u = NULL;
  if (weight_ddr != NULL && weight->n == 1) w.u = packed_u(dev, &w, weight_ddr, tasks);
  if (w.u == NULL && weight_ddr != NULL) sophon_lmem_reading(dev, weight);
  /* a weight in LMEM: U made for this call, all of it before the GEMMs when they run
     over several blocks, else panel by panel in the GEMM tasks (in cache, where all
     of U, 1.78x the weight, goes to memory and back: 16 MiB for 512 x 512) */
  per_panel = w.u == NULL && out->n * sophon_ceil_div(w.tiles, w.block) == 1;
  u_floats = w.u == NULL ? (per_panel ? tasks : w.m_panels) * 16 * WINO_MR * (int64_t)w.ic : 0;
  plane_total = (int64_t)w.ic * w.plane_floats;
  v_floats = 16 * w.v_xi;
  scratch = sophon_device_scratch(dev, (size_t)(u_floats + plane_total + v_floats +
                                                tasks * w.m_floats + w.oc));
  if (scratch == NULL) return -1;
  w.planes = scratch + u_floats;
  w.v = w.planes + plane_total;
  w.m = w.v + v_floats;
  w.biases = w.m + tasks * w.m_floats;
  if (w.u == NULL) { /* the weight in LMEM, transformed for this call */
    sophon_view_init(&w.weight_v, dev, weight);
    w.w_data = NULL;
    w.u_panels = scratch;
    if (!per_panel) {
      w.u_out = scratch;
      sophon_parallel_run(dev->pool, tasks, transform_weight_task, &w);
      w.u = scratch;
    }
  }
  sophon_view_init(&w.out_v, dev, out);
  sophon_view_init(&w.in_v, dev, in);
  if (bias != NULL) {
    sophon_view bias_v;
    sophon_channel_iter it;
    sophon_view_init(&bias_v, dev, bias);
    it = sophon_channel_begin(&bias_v, 0, 0);
    for (c = 0; c < w.oc; ++c) {
      w.biases[c] = *(const float*)(const void*)it.base;
      sophon_channel_next(&bias_v, &it);
    }
  } else {
    for (c = 0; c < w.oc; ++c) w.biases[c] = 0.0f;
  }

  for (w.batch = 0; w.batch < out->n; ++w.batch) {
    const int32_t in_tasks = sophon_tasks_for(dev, (uint64_t)macs, w.ic);
    sophon_parallel_run(dev->pool, in_tasks, pad_planes_task, &w);
    for (w.t0 = 0; w.t0 < w.tiles; w.t0 += w.block) {
      w.t_count = w.tiles - w.t0 < w.block ? w.tiles - w.t0 : w.block;
      sophon_parallel_run(dev->pool, in_tasks, transform_input_task, &w);
      sophon_parallel_run(dev->pool, tasks, gemm_task, &w);
    }
  }
  return 0;
}
