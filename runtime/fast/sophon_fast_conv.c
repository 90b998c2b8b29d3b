/*
 * sophon_fast_conv.c - fast f32 conv2d and fc, beside the reference kernels of
 * sophon_tiu_conv.c, which stay the specification (tests/test_fast_kernels.py
 * checks one against the other). Same operands, already checked by the
 * instruction; the LMEM lane layout is read and written as it is.
 *
 * conv2d, one GEMM per (batch item, group):
 *     C[oc][p] = sum_k A[oc][k] * B[k][p],   k = (ic, ky, kx), p = oy * OW + ox
 *   A is the weight (row oc is contiguous in oc's lane), B the input as columns of
 *   window taps (im2col; padding taps are zeros), C the output (channel oc's plane
 *   is contiguous in its lane). A is read in place: an A panel is mr weight rows;
 *   a weight whose load was deferred (sophon_gdma_load_constant) is read instead
 *   from a copy of its DDR view packed once per device in the micro-kernel's order
 *   (pack_a), the same values, so the same sums.
 *   Tasks own B panels (nr output pixels) or A panels, whichever has more; each
 *   walks its B panels K block by K block and runs an mr x nr register-blocked
 *   micro-kernel for every A panel over the block, keeping partial sums in a
 *   contiguous tile buffer (the implicit GEMM with tasks owning A panels turns the
 *   loops round: A panel by A panel, each over every B panel, so that A is read
 *   once; see conv_gemm_by_a_task); the last block adds the bias, applies the activation in
 *   registers (with AVX-512 sigmoid and SiLU too, see sophon_fast.h; tanh and the
 *   other special functions run after, over the task's outputs) and stores the
 *   output rows. Where B comes from:
 *   - implicit GEMM (the AVX-512 kernel): the input is copied once into the stride
 *     phases of its zero-padded planes, where every row of B is a contiguous run
 *     (see conv_gemm.b_rows); the kernel reads those rows in place, and columns that
 *     fall on padding are computed and dropped;
 *   - packed (AVX2, plain C, the special functions but AVX-512's sigmoid family):
 *     each block of a B panel (16 KiB, so it
 *     stays in L1) is packed from the input (im2col) before use, or all of B once,
 *     together, when tasks split the A panels.
 *   Micro-kernels: 8 x 32 with AVX-512 (8 x 24 in 256-bit vectors for implicit
 *   GEMMs that 32-wide panels fit badly: micro_kernel_ymm_rows), 6 x 16 with AVX2 +
 *   FMA, 6 x 16 plain C, chosen at run time from the CPU (sophon_device_set_isa
 *   caps the choice).
 * depthwise (one input and one output channel per group): sophon_fast_depthwise.c.
 * fc: the input vector gathered once, then one dot product per output feature.
 *
 * Threads: each task owns disjoint outputs (conv: a range of B panels or of A
 * panels, whichever has more; fc: features) and computes every element in one
 * fixed order, so results are bit-identical for any thread count.
 *
 * Tolerance against the reference. The GEMM adds each output's products in the
 * reference's (ic, ky, kx) order; padding taps add exact zeros. The x86 kernels
 * use fused multiply-adds (one rounding per step where the reference has two: on
 * the Zen 4 host this was tuned on, separate multiplies and adds ran at about 70%
 * of the FMA kernel's speed), the C kernel multiplies then adds, as the reference
 * does. fc sums in 8 interleaved partial sums, combined pairwise, so it differs by
 * reassociation. Either way both sums are within gamma_K * sum_k |a_k * b_k| of
 * the exact one (gamma_K ~ K * 2^-24), hence
 *     |fast - reference| <= 2 * K * 2^-24 * sum_k |a_k * b_k|   (before bias, act)
 * and bias and the activations (monotone, 1-Lipschitz) keep that bound up to one
 * more rounding. tests/test_fast_kernels.py checks every kernel against this bound.
 * The bound depends on the path: 3x3 stride-1 convs (dilation 1, one group) with
 * enough channels and tiles go to Winograd's F(2x2, 3x3) (sophon_fast_winograd.c,
 * the AVX-512 and plain C builds; sophon_fast_conv2d_f32 asks it first), which is
 * not bit-identical to the reference: its bound, stated there, is in terms of the
 * transformed operands' magnitudes (tests/test_fast_winograd.py).
 */
#include <string.h>

#include "fast/sophon_fast.h"

enum {
  MR_MAX = 8,  /* micro-tile rows (output channels): 8 with AVX-512, else 6 */
  NR_MAX = 32, /* widest micro-tile: output pixels */
  B_PANEL_FLOATS = 4096, /* a packed B panel (K block x nr) is 16 KiB: it stays in L1 */
  /* the K block of the implicit GEMM, whose B rows are read in place: longer blocks
     load and store the partial sums fewer times (ResNet-18 at 1 thread, CPU time:
     128 -> 256 about -5%, 256 -> 512 about -1.5% more) */
  IMPLICIT_KC = 256,
  /* the implicit GEMM takes 24-wide panels (micro_kernel_ymm_rows) where they
     compute fewer than this share of the columns 32-wide panels compute */
  NARROW_PERCENT = 98,
  /* a packed A block (pack_a) is prefetched this many k steps ahead */
  A_PREFETCH = 64
};

/* --------------------------------------------------------- micro-kernels
 * A micro-kernel computes one MR x nr tile of C over one K block of kc:
 *     acc[r][j] = (first ? 0 : tile[r*nr + j]) + sum_{k < kc} a[r][k] * b[k*nr + j]
 * adding the products in k order. a[r] is row r of A from the block's first k, read
 * in place from the weight in its lane (packing A would cost a pass over the
 * weights at every instruction, and a conv runs once per slice), or in a packed A
 * block (the _packed kernels: a[r] = block + r, k at k * MR, see pack_a); b is a packed B
 * panel (nr columns), tile a contiguous MR x nr buffer, both 64-byte aligned. Then
 * either
 *   - out == NULL (a block before the last): acc is stored back to tile; or
 *   - the last block: with bias != NULL, acc[r][j] = act(acc[r][j] + bias[r]) for
 *     an activation the kernels apply in registers (sophon_act_is_simple; act NULL
 *     for none); the first `cols` (1..nr) columns of row r go to out[r].
 * Partial sums live in the tile, not in the output rows, which sit in six lanes
 * far apart: one contiguous buffer is cheaper to re-read at every K block. */

typedef void (*micro_kernel_fn)(int64_t kc, const float* const* a, const float* b,
                                float* tile, int first, float* const* out, int32_t cols,
                                const float* bias, const sophon_activation* act);

/* The same over B rows read in place: row k of the block starts at b_rows[k] + b_col. */
typedef void (*micro_kernel_rows_fn)(int64_t kc, const float* const* a,
                                     const float* const* b_rows, int64_t b_col, float* tile,
                                     int first, float* const* out, int32_t cols,
                                     const float* bias, const sophon_activation* act);

typedef struct {
  micro_kernel_fn fn;
  micro_kernel_rows_fn rows_fn; /* NULL where B must be packed */
  micro_kernel_rows_fn rows_packed_fn; /* rows_fn over a packed A block (pack_a) */
  int32_t mr;  /* tile rows: 6 or 8 */
  int32_t nr;  /* panel width: 16 or 32 */
  int32_t kc;  /* K block: B_PANEL_FLOATS / nr (IMPLICIT_KC for the implicit GEMM) */
} micro_kernel;

static void micro_kernel_c(int64_t kc, const float* const* a, const float* b, float* tile,
                           int first, float* const* out, int32_t cols, const float* bias,
                           const sophon_activation* act) {
  enum { MR = 6, NR = 16 };
  float acc[MR][NR];
  int64_t k;
  int r, j;
  for (r = 0; r < MR; ++r)
    for (j = 0; j < NR; ++j) acc[r][j] = first ? 0.0f : tile[r * NR + j];
  for (k = 0; k < kc; ++k) {
    for (r = 0; r < MR; ++r) {
      const float a_r = a[r][k];
      for (j = 0; j < NR; ++j) acc[r][j] += a_r * b[j];
    }
    b += NR;
  }
  for (r = 0; r < MR; ++r) {
    if (out == NULL) {
      for (j = 0; j < NR; ++j) tile[r * NR + j] = acc[r][j];
      continue;
    }
    for (j = 0; j < cols; ++j) {
      float v = acc[r][j];
      if (bias != NULL) v = sophon_activate_f32(act, v + bias[r]);
      out[r][j] = v;
    }
  }
}

#if SOPHON_X86_DISPATCH
/* 6 x 16: two 8-float vectors per row, twelve accumulators. */
#define SOPHON_ROW(r)                                                   \
  do {                                                                  \
    const __m256 a_r = _mm256_broadcast_ss(a##r + k);                   \
    c##r##0 = _mm256_fmadd_ps(a_r, b0, c##r##0);                        \
    c##r##1 = _mm256_fmadd_ps(a_r, b1, c##r##1);                        \
  } while (0)
#define SOPHON_TILE(r) \
  acc[r][0] = c##r##0; \
  acc[r][1] = c##r##1

SOPHON_AVX2_FMA static void micro_kernel_avx2(int64_t kc, const float* const* a,
                                              const float* b, float* tile, int first,
                                              float* const* out, int32_t cols,
                                              const float* bias, const sophon_activation* act) {
  enum { MR = 6 };
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  __m256 acc[MR][2];
  int64_t k;
  int r;
  if (first) {
    c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_ps();
    c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  } else {
    c00 = _mm256_load_ps(tile + 0); c01 = _mm256_load_ps(tile + 8);
    c10 = _mm256_load_ps(tile + 16); c11 = _mm256_load_ps(tile + 24);
    c20 = _mm256_load_ps(tile + 32); c21 = _mm256_load_ps(tile + 40);
    c30 = _mm256_load_ps(tile + 48); c31 = _mm256_load_ps(tile + 56);
    c40 = _mm256_load_ps(tile + 64); c41 = _mm256_load_ps(tile + 72);
    c50 = _mm256_load_ps(tile + 80); c51 = _mm256_load_ps(tile + 88);
  }
  for (k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    SOPHON_ROW(0);
    SOPHON_ROW(1);
    SOPHON_ROW(2);
    SOPHON_ROW(3);
    SOPHON_ROW(4);
    SOPHON_ROW(5);
    b += 16;
  }
  SOPHON_TILE(0); SOPHON_TILE(1); SOPHON_TILE(2);
  SOPHON_TILE(3); SOPHON_TILE(4); SOPHON_TILE(5);
  if (out == NULL) {
    for (r = 0; r < MR; ++r) {
      _mm256_store_ps(tile + r * 16, acc[r][0]);
      _mm256_store_ps(tile + r * 16 + 8, acc[r][1]);
    }
    return;
  }
  for (r = 0; r < MR; ++r) {
    __m256 v0 = acc[r][0], v1 = acc[r][1];
    if (bias != NULL) {
      const __m256 bias_r = _mm256_broadcast_ss(bias + r);
      v0 = sophon_act_avx2(_mm256_add_ps(v0, bias_r), act);
      v1 = sophon_act_avx2(_mm256_add_ps(v1, bias_r), act);
    }
    sophon_store_first_avx2(out[r], v0, cols);
    if (cols > 8) sophon_store_first_avx2(out[r] + 8, v1, cols - 8);
  }
}
#undef SOPHON_ROW

/* 8 x 32: two 16-float vectors per row, sixteen accumulators (of the 32 vector
 * registers). On hosts that run 512-bit operations as two 256-bit halves this has
 * the AVX2 kernel's arithmetic throughput with half the instructions; masked
 * stores handle the edge columns. */
#define SOPHON_ROW(r)                                                   \
  do {                                                                  \
    const __m512 a_r = _mm512_set1_ps(a##r[k * as]);                    \
    c##r##0 = _mm512_fmadd_ps(a_r, b0, c##r##0);                        \
    c##r##1 = _mm512_fmadd_ps(a_r, b1, c##r##1);                        \
  } while (0)
#define SOPHON_LOAD(r)                                \
  c##r##0 = _mm512_load_ps(tile + (r) * 32);          \
  c##r##1 = _mm512_load_ps(tile + (r) * 32 + 16)

/* b_rows == NULL: B is a packed panel b (rows 32 floats apart); else row k of B
 * starts at b_rows[k] + b_col (the implicit GEMM of conv2d_gemm: no packing). */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void micro_kernel_avx512_body(
    const int as, int64_t kc, const float* const* a, const float* b, const float* const* b_rows,
    int64_t b_col, float* tile, int first, float* const* out, int32_t cols, const float* bias,
    const sophon_activation* act) {
  enum { MR = 8 };
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
  const float *a4 = a[4], *a5 = a[5], *a6 = a[6], *a7 = a[7];
  __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
  __m512 acc[MR][2];
  int64_t k;
  int r;
  if (first) {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm512_setzero_ps();
    c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = _mm512_setzero_ps();
  } else {
    SOPHON_LOAD(0); SOPHON_LOAD(1); SOPHON_LOAD(2); SOPHON_LOAD(3);
    SOPHON_LOAD(4); SOPHON_LOAD(5); SOPHON_LOAD(6); SOPHON_LOAD(7);
  }
  for (k = 0; k < kc; ++k) {
    const float* b_k = b_rows != NULL ? b_rows[k] + b_col : b + k * 32;
    const __m512 b0 = _mm512_loadu_ps(b_k), b1 = _mm512_loadu_ps(b_k + 16);
    if (as > 1) _mm_prefetch((const char*)(a0 + (k + A_PREFETCH) * as), _MM_HINT_T0);
    SOPHON_ROW(0);
    SOPHON_ROW(1);
    SOPHON_ROW(2);
    SOPHON_ROW(3);
    SOPHON_ROW(4);
    SOPHON_ROW(5);
    SOPHON_ROW(6);
    SOPHON_ROW(7);
  }
  SOPHON_TILE(0); SOPHON_TILE(1); SOPHON_TILE(2); SOPHON_TILE(3);
  SOPHON_TILE(4); SOPHON_TILE(5); SOPHON_TILE(6); SOPHON_TILE(7);
  if (out == NULL) {
    for (r = 0; r < MR; ++r) {
      _mm512_store_ps(tile + r * 32, acc[r][0]);
      _mm512_store_ps(tile + r * 32 + 16, acc[r][1]);
    }
    return;
  }
  {
    const __mmask16 mask0 = (__mmask16)(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
    const __mmask16 mask1 =
        (__mmask16)(cols >= 32 ? 0xFFFFu : cols <= 16 ? 0u : (1u << (cols - 16)) - 1u);
    for (r = 0; r < MR; ++r) {
      __m512 v0 = acc[r][0], v1 = acc[r][1];
      if (bias != NULL) {
        const __m512 bias_r = _mm512_set1_ps(bias[r]);
        v0 = sophon_act_avx512(_mm512_add_ps(v0, bias_r), act);
        v1 = sophon_act_avx512(_mm512_add_ps(v1, bias_r), act);
      }
      if (cols == 32) {
        _mm512_storeu_ps(out[r], v0);
        _mm512_storeu_ps(out[r] + 16, v1);
      } else {
        _mm512_mask_storeu_ps(out[r], mask0, v0);
        _mm512_mask_storeu_ps(out[r] + 16, mask1, v1);
      }
    }
  }
}
#undef SOPHON_LOAD
#undef SOPHON_ROW
#undef SOPHON_TILE

SOPHON_AVX512 static void micro_kernel_avx512(int64_t kc, const float* const* a,
                                              const float* b, float* tile, int first,
                                              float* const* out, int32_t cols,
                                              const float* bias, const sophon_activation* act) {
  micro_kernel_avx512_body(1, kc, a, b, NULL, 0, tile, first, out, cols, bias, act);
}

SOPHON_AVX512 static void micro_kernel_avx512_rows(int64_t kc, const float* const* a,
                                                   const float* const* b_rows, int64_t b_col,
                                                   float* tile, int first, float* const* out,
                                                   int32_t cols, const float* bias,
                                                   const sophon_activation* act) {
  micro_kernel_avx512_body(1, kc, a, NULL, b_rows, b_col, tile, first, out, cols, bias, act);
}

/* The same over a packed A block (a[r] = block + r, element k at k * MR: pack_a). */
SOPHON_AVX512 static void micro_kernel_avx512_packed(int64_t kc, const float* const* a,
                                                     const float* const* b_rows, int64_t b_col,
                                                     float* tile, int first, float* const* out,
                                                     int32_t cols, const float* bias,
                                                     const sophon_activation* act) {
  micro_kernel_avx512_body(8, kc, a, NULL, b_rows, b_col, tile, first, out, cols, bias, act);
}

/* Two 8-float vectors as one 16-float register. */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512 ymm_pair(__m256 lo, __m256 hi) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/* Row r's three accumulators (named, so that they stay in registers). */
#define SOPHON_ROW(r)                                                   \
  do {                                                                  \
    const __m256 a_r = _mm256_broadcast_ss(a##r + k * as);              \
    c##r##0 = _mm256_fmadd_ps(a_r, b0, c##r##0);                        \
    if (nv > 1) c##r##1 = _mm256_fmadd_ps(a_r, b1, c##r##1);            \
    if (nv > 2) c##r##2 = _mm256_fmadd_ps(a_r, b2, c##r##2);            \
  } while (0)
#define SOPHON_LOAD(r)                                                               \
  do {                                                                               \
    c##r##0 = first ? _mm256_setzero_ps() : _mm256_load_ps(tile + (r) * 24);         \
    c##r##1 = first || nv < 2 ? _mm256_setzero_ps() : _mm256_load_ps(tile + (r) * 24 + 8); \
    c##r##2 = first || nv < 3 ? _mm256_setzero_ps() : _mm256_load_ps(tile + (r) * 24 + 16); \
  } while (0)
#define SOPHON_TILE(r)                                                                 \
  do {                                                                                 \
    _mm256_store_ps(tile + (r) * 24, c##r##0);                                         \
    if (nv > 1) _mm256_store_ps(tile + (r) * 24 + 8, c##r##1);                         \
    if (nv > 2) _mm256_store_ps(tile + (r) * 24 + 16, c##r##2);                        \
  } while (0)

/* 8 x 24 in 256-bit vectors over B rows read in place (AVX-512VL gives it the 32
 * registers it needs), for implicit GEMMs whose columns fill 32-wide panels badly:
 * panels of 24 columns, a panel's last ones computed 8 at a time (nv vectors, a
 * constant in each instance below), so a 7x7 output's 49 pixels (or 56 virtual
 * columns of a padded 3x3) cost 56 columns where 32-wide panels compute 64. Zen 4
 * runs two 256-bit FMAs a cycle, the arithmetic rate of one 512-bit FMA. The bias
 * and activation are applied on 512-bit registers (sophon_act_avx512, so the same bits
 * as the 8 x 32 kernel); a block before the last leaves the partial sums in tile
 * (8 rows of 24). */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void micro_kernel_ymm_body(
    const int nv, const int as, int64_t kc, const float* const* a, const float* const* b_rows, int64_t b_col,
    float* tile, int first, float* const* out, int32_t cols, const float* bias,
    const sophon_activation* act) {
  enum { MR = 8 };
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
  const float *a4 = a[4], *a5 = a[5], *a6 = a[6], *a7 = a[7];
  __m256 c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32;
  __m256 c40, c41, c42, c50, c51, c52, c60, c61, c62, c70, c71, c72;
  __m512 acc[MR][2];
  int64_t k;
  int r;
  SOPHON_LOAD(0); SOPHON_LOAD(1); SOPHON_LOAD(2); SOPHON_LOAD(3);
  SOPHON_LOAD(4); SOPHON_LOAD(5); SOPHON_LOAD(6); SOPHON_LOAD(7);
  for (k = 0; k < kc; ++k) {
    const float* b = b_rows[k] + b_col;
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = nv > 1 ? _mm256_loadu_ps(b + 8) : b0;
    const __m256 b2 = nv > 2 ? _mm256_loadu_ps(b + 16) : b0;
    if (as > 1) _mm_prefetch((const char*)(a0 + (k + A_PREFETCH) * as), _MM_HINT_T0);
    SOPHON_ROW(0);
    SOPHON_ROW(1);
    SOPHON_ROW(2);
    SOPHON_ROW(3);
    SOPHON_ROW(4);
    SOPHON_ROW(5);
    SOPHON_ROW(6);
    SOPHON_ROW(7);
  }
  if (out == NULL) { /* a block before the last: partial sums back to the tile */
    SOPHON_TILE(0); SOPHON_TILE(1); SOPHON_TILE(2); SOPHON_TILE(3);
    SOPHON_TILE(4); SOPHON_TILE(5); SOPHON_TILE(6); SOPHON_TILE(7);
    return;
  }
  acc[0][0] = ymm_pair(c00, c01); acc[0][1] = _mm512_castps256_ps512(c02);
  acc[1][0] = ymm_pair(c10, c11); acc[1][1] = _mm512_castps256_ps512(c12);
  acc[2][0] = ymm_pair(c20, c21); acc[2][1] = _mm512_castps256_ps512(c22);
  acc[3][0] = ymm_pair(c30, c31); acc[3][1] = _mm512_castps256_ps512(c32);
  acc[4][0] = ymm_pair(c40, c41); acc[4][1] = _mm512_castps256_ps512(c42);
  acc[5][0] = ymm_pair(c50, c51); acc[5][1] = _mm512_castps256_ps512(c52);
  acc[6][0] = ymm_pair(c60, c61); acc[6][1] = _mm512_castps256_ps512(c62);
  acc[7][0] = ymm_pair(c70, c71); acc[7][1] = _mm512_castps256_ps512(c72);
  {
    const __mmask16 mask0 = (__mmask16)(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
    const __mmask16 mask1 = (__mmask16)(cols <= 16 ? 0u : (1u << (cols - 16)) - 1u);
    for (r = 0; r < MR; ++r) {
      __m512 v0 = acc[r][0], v1 = acc[r][1];
      if (bias != NULL) {
        const __m512 bias_r = _mm512_set1_ps(bias[r]);
        v0 = sophon_act_avx512(_mm512_add_ps(v0, bias_r), act);
        if (nv > 2) v1 = sophon_act_avx512(_mm512_add_ps(v1, bias_r), act);
      }
      _mm512_mask_storeu_ps(out[r], mask0, v0);
      if (nv > 2) _mm512_mask_storeu_ps(out[r] + 16, mask1, v1);
    }
  }
}
#undef SOPHON_LOAD
#undef SOPHON_ROW
#undef SOPHON_TILE

/* The panel's columns decide how many vectors the kernel computes. */
#define SOPHON_YMM_KERNEL(name, nv, as)                                                   \
  SOPHON_AVX512 static void name(                                                         \
      int64_t kc, const float* const* a, const float* const* b_rows, int64_t b_col,       \
      float* tile, int first, float* const* out, int32_t cols, const float* bias,         \
      const sophon_activation* act) {                                                     \
    micro_kernel_ymm_body(nv, as, kc, a, b_rows, b_col, tile, first, out, cols, bias, act); \
  }
SOPHON_YMM_KERNEL(micro_kernel_ymm_1, 1, 1)
SOPHON_YMM_KERNEL(micro_kernel_ymm_2, 2, 1)
SOPHON_YMM_KERNEL(micro_kernel_ymm_3, 3, 1)
SOPHON_YMM_KERNEL(micro_kernel_ymm_packed_1, 1, 8) /* over a packed A block (pack_a) */
SOPHON_YMM_KERNEL(micro_kernel_ymm_packed_2, 2, 8)
SOPHON_YMM_KERNEL(micro_kernel_ymm_packed_3, 3, 8)
#undef SOPHON_YMM_KERNEL

/* The panel's last columns decide how many vectors the kernel computes. */
#define SOPHON_YMM_DISPATCH(name, kernel)                                                  \
  static void name(int64_t kc, const float* const* a, const float* const* b_rows,          \
                   int64_t b_col, float* tile, int first, float* const* out, int32_t cols, \
                   const float* bias, const sophon_activation* act) {                      \
    if (cols > 16)                                                                         \
      kernel##3(kc, a, b_rows, b_col, tile, first, out, cols, bias, act);                  \
    else if (cols > 8)                                                                     \
      kernel##2(kc, a, b_rows, b_col, tile, first, out, cols, bias, act);                  \
    else                                                                                   \
      kernel##1(kc, a, b_rows, b_col, tile, first, out, cols, bias, act);                  \
  }
SOPHON_YMM_DISPATCH(micro_kernel_ymm_rows, micro_kernel_ymm_)
SOPHON_YMM_DISPATCH(micro_kernel_ymm_packed, micro_kernel_ymm_packed_)
#undef SOPHON_YMM_DISPATCH
#endif

static micro_kernel micro_kernel_for(const sophon_device* dev) {
  micro_kernel k;
  k.fn = micro_kernel_c;
  k.rows_fn = NULL;
  k.rows_packed_fn = NULL;
  k.mr = 6;
  k.nr = 16;
#if SOPHON_X86_DISPATCH
  if (dev->cpu_avx512) {
    k.fn = micro_kernel_avx512;
    k.rows_fn = micro_kernel_avx512_rows;
    k.rows_packed_fn = micro_kernel_avx512_packed;
    k.mr = 8;
    k.nr = 32;
  } else if (dev->cpu_fma) {
    k.fn = micro_kernel_avx2;
  }
#else
  (void)dev;
#endif
  k.kc = B_PANEL_FLOATS / k.nr;
  return k;
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
  int split_n;               /* tasks own B panels (else A panels) */
  int fused_act;             /* the micro-kernels apply bias and activation */
  micro_kernel kernel;
  int pack_avx512;           /* pack B with the AVX-512 build of the packing code */
  float* scratch;            /* task_floats per task */
  float* b_shared;           /* all of B, packed once (panel np at np * k * nr), when
                                tasks split the A panels; else NULL: each task packs
                                its own B panels block by block */
  /* implicit GEMM (a kernel with rows_fn): no B packing. The zero-padded input
     plane of each channel is split into its stride phases, P[py][px][y][x] =
     padded[y*sh + py][x*sw + px] (one phase for stride 1), rows of row_pitch
     columns. Columns of B are "virtual pixels" v = oy * row_pitch + ox, so row k =
     (ic, ky, kx) of B is the contiguous run P[(ky*dh) % sh][(kx*dw) % sw] of channel
     ic from ((ky*dh) / sh) * row_pitch + (kx*dw) / sw + v; columns with ox >= out_w
     are computed and dropped. With stride_w 1 the rows share their padding columns
     (row_pitch = in_w + max(pad_left, pad_right), at least out_w): a window past a
     row's end reads the next row's left padding, zeros, so fewer columns drop. An unpadded 1x1 stride-1 conv reads the input's own
     channel planes (row_pitch = out_w). */
  float* biases;             /* every output channel's bias (0 without), gathered once */
  /* A packed once (a deferred constant weight, see pack_a): the current group's
     m_panels panels of mr x k floats, or NULL: A is read in place, row by row */
  const float* a_packed;
  const float* a_packed_all; /* every group's, m_panels * mr * k floats apart */
  int64_t a_step;            /* floats between A's k and k + 1: 1 in place, mr packed */
  const float** b_rows;      /* k entries, or NULL: B is packed */
  float* planes;             /* the phase planes (icg blocks of plane_floats), or NULL */
  int64_t plane_floats;      /* per channel: stride_h * stride_w phases, then slack */
  int64_t phase_floats;      /* one phase: phase_rows x row_pitch */
  int64_t row_pitch, phase_rows;
  int64_t columns;           /* virtual columns: n, or out_h * row_pitch */
  int64_t task_floats;
} conv_gemm;

/* A run of panel columns on one output row: columns [col, col+count) are output
 * pixels (oy, ox0 .. ox0+count-1), whose windows start at input (iy0, ix0 + t*sw). */
typedef struct {
  int32_t col, count;
  int64_t iy0, ix0;
} pixel_run;

/* Packs rows k0 .. k0+kc-1 of B for the nr columns from pixel p0 (zeros past n) as
 * one panel, dst[(k - k0) * nr + j]: the im2col of the input, padding taps 0. */
SOPHON_ALWAYS_INLINE static inline void pack_b_panel_body(const conv_gemm* g, int64_t p0,
                                                            int64_t k0, int64_t kc, float* dst) {
  const sophon_conv_params* p = g->p;
  const int32_t nr = g->kernel.nr;
  const int32_t cols = (int32_t)(g->n - p0 < nr ? g->n - p0 : nr);
  const int32_t taps = p->kernel_h * p->kernel_w;
  pixel_run runs[NR_MAX];
  int32_t num_runs = 0, ic, ky, kx, r, t;
  int64_t pix = p0, k;
  sophon_channel_iter channel;

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
  ic = (int32_t)(k0 / taps);
  ky = (int32_t)(k0 % taps) / p->kernel_w;
  kx = (int32_t)(k0 % taps) % p->kernel_w;
  channel = sophon_channel_begin(&g->in_v, g->batch, g->group * g->icg + ic);
  for (k = 0; k < kc; ++k) {
    const float* plane = (const float*)(const void*)channel.base;
    for (t = cols; t < nr; ++t) dst[t] = 0.0f;
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
      /* taps t with 0 <= ix0 + t*sw < in_w (strides 1 and 2 without a division) */
      if (sw == 1) {
        lo = ix0 < 0 ? (int32_t)-ix0 : 0;
        hi = ix0 >= g->in_w ? 0 : (g->in_w - ix0 < run->count ? (int32_t)(g->in_w - ix0) : run->count);
      } else if (sw == 2) {
        lo = ix0 < 0 ? (int32_t)((1 - ix0) >> 1) : 0;
        hi = ix0 >= g->in_w ? 0 : (int32_t)((g->in_w - ix0 + 1) >> 1);
        if (hi > run->count) hi = run->count;
      } else {
        lo = sophon_first_tap(ix0, sw);
        hi = sophon_end_tap(ix0, sw, g->in_w, run->count);
      }
      if (lo > run->count) lo = run->count;
      if (hi < lo) hi = lo;
      src = plane + iy * g->in_w + ix0;
      for (t = 0; t < lo; ++t) out[t] = 0.0f;
      if (sw == 1) {
        for (t = lo; t < hi; ++t) out[t] = src[t];
      } else if (sw == 2) {
        for (t = lo; t < hi; ++t) out[t] = src[2 * t];
      } else {
        for (t = lo; t < hi; ++t) out[t] = src[(int64_t)t * sw];
      }
      for (t = hi; t < run->count; ++t) out[t] = 0.0f;
    }
    dst += nr;
    if (++kx == p->kernel_w) {
      kx = 0;
      if (++ky == p->kernel_h) {
        ky = 0;
        sophon_channel_next(&g->in_v, &channel);
      }
    }
  }
}

static void pack_b_panel_c(const conv_gemm* g, int64_t p0, int64_t k0, int64_t kc, float* dst) {
  pack_b_panel_body(g, p0, k0, kc, dst);
}

#if SOPHON_X86_DISPATCH
/* The same, compiled for AVX-512: the copies of the runs (most of the packing
 * time) move 16 floats per instruction instead of 4. */
SOPHON_AVX512 static void pack_b_panel_avx512(const conv_gemm* g, int64_t p0, int64_t k0,
                                              int64_t kc, float* dst) {
  pack_b_panel_body(g, p0, k0, kc, dst);
}
#endif

/* Packs rows k0 .. k0+kc-1 of the B panel starting at pixel p0 (pack_b_panel_body). */
static void pack_b_panel(const conv_gemm* g, int64_t p0, int64_t k0, int64_t kc, float* dst) {
#if SOPHON_X86_DISPATCH
  if (g->pack_avx512) {
    pack_b_panel_avx512(g, p0, k0, kc, dst);
    return;
  }
#endif
  pack_b_panel_c(g, p0, k0, kc, dst);
}

/* A run of a finished tile's columns that are output pixels: tile columns
 * [from, from + count) go to plane elements [to, to + count). */
typedef struct {
  int32_t from, count;
  int64_t to;
} column_run;

/* The runs of the virtual columns [col0, col0 + cols) (the columns past out_w are
 * dropped); at most NR_MAX of them. */
static int32_t column_runs(const conv_gemm* g, int64_t col0, int32_t cols, column_run* runs) {
  int32_t num_runs = 0;
  int64_t v = col0;
  while (v < col0 + cols) {
    const int64_t oy = v / g->row_pitch, ox = v - oy * g->row_pitch;
    const int64_t run = g->row_pitch - ox < col0 + cols - v ? g->row_pitch - ox : col0 + cols - v;
    if (ox < g->out_w) {
      runs[num_runs].from = (int32_t)(v - col0);
      runs[num_runs].count = (int32_t)(g->out_w - ox < run ? g->out_w - ox : run);
      runs[num_runs].to = oy * g->out_w + ox;
      ++num_runs;
    }
    v += run;
  }
  return num_runs;
}

/* Writes rows [0, rows) of a finished tile (nr floats a row) to the output planes
 * out[r] by the column runs: short copies, inline rather than memcpy calls. */
SOPHON_ALWAYS_INLINE static inline void scatter_tile_body(const float* tile, int32_t nr,
                                                          int32_t rows, float* const* out,
                                                          const column_run* runs,
                                                          int32_t num_runs) {
  int32_t r, k, t;
  for (r = 0; r < rows; ++r) {
    const float* tile_row = tile + (int64_t)r * nr;
    for (k = 0; k < num_runs; ++k) {
      float* dst = out[r] + runs[k].to;
      const float* src = tile_row + runs[k].from;
      for (t = 0; t < runs[k].count; ++t) dst[t] = src[t];
    }
  }
}

static void scatter_tile_c(const float* tile, int32_t nr, int32_t rows, float* const* out,
                           const column_run* runs, int32_t num_runs) {
  scatter_tile_body(tile, nr, rows, out, runs, num_runs);
}

#if SOPHON_X86_DISPATCH
SOPHON_AVX512 static void scatter_tile_avx512(const float* tile, int32_t nr, int32_t rows,
                                              float* const* out, const column_run* runs,
                                              int32_t num_runs) {
  scatter_tile_body(tile, nr, rows, out, runs, num_runs);
}
#endif

/* Writes a finished tile's columns [col0, col0 + cols) to rows [0, rows) of the
 * output planes `out`. */
static void scatter_tile(const conv_gemm* g, const float* tile, int64_t col0, int32_t cols,
                         int32_t rows, float* const* out) {
  column_run runs[NR_MAX];
  const int32_t num_runs = column_runs(g, col0, cols, runs);
#if SOPHON_X86_DISPATCH
  if (g->pack_avx512) {
    scatter_tile_avx512(tile, g->kernel.nr, rows, out, runs, num_runs);
    return;
  }
#endif
  scatter_tile_c(tile, g->kernel.nr, rows, out, runs, num_runs);
}

/* Fills the phase planes of one input channel `src` (zeros in the padding and past
 * the input), writing each float of the block once: phase (py, px) row j is padded
 * row j*sh + py, its column i padded column i*sw + px. */
SOPHON_ALWAYS_INLINE static inline void pad_plane_body(const conv_gemm* g, const float* src,
                                                       float* block) {
  const sophon_conv_params* p = g->p;
  const int32_t sh = p->stride_h, sw = p->stride_w;
  const int64_t pitch = g->row_pitch;
  int32_t py, px;
  int64_t i, j;
  for (py = 0; py < sh; ++py) {
    for (px = 0; px < sw; ++px) {
      float* phase = block + ((int64_t)py * sw + px) * g->phase_floats;
      /* columns i whose input column x = i*sw + px - pad_left is in [0, in_w) */
      const int64_t skip = p->pad_left - px; /* x = i*sw - skip */
      int64_t lo = skip > 0 ? (skip + sw - 1) / sw : 0;
      int64_t hi = g->in_w + skip > 0 ? (g->in_w - 1 + skip) / sw + 1 : 0;
      if (hi > pitch) hi = pitch;
      if (lo > hi) lo = hi;
      for (j = 0; j < g->phase_rows; ++j) {
        const int64_t y = j * sh + py - p->pad_top;
        float* row = phase + j * pitch;
        const float* in_row = src + y * g->in_w;
        if (y < 0 || y >= g->in_h || lo == hi) {
          memset(row, 0, (size_t)pitch * sizeof(float));
          continue;
        }
        for (i = 0; i < lo; ++i) row[i] = 0.0f;
        if (sw == 1) {
          memcpy(row + lo, in_row + (lo - skip), (size_t)(hi - lo) * sizeof(float));
        } else if (sw == 2) {
          for (i = lo; i < hi; ++i) row[i] = in_row[2 * i - skip];
        } else {
          for (i = lo; i < hi; ++i) row[i] = in_row[i * sw - skip];
        }
        for (i = hi; i < pitch; ++i) row[i] = 0.0f;
      }
    }
  }
  memset(block + (int64_t)sh * sw * g->phase_floats, 0, /* the slack */
         (size_t)(g->plane_floats - (int64_t)sh * sw * g->phase_floats) * sizeof(float));
}

static void pad_plane_c(const conv_gemm* g, const float* src, float* block) {
  pad_plane_body(g, src, block);
}

#if SOPHON_X86_DISPATCH
/* The same, compiled for AVX-512 (the stride-2 gathers vectorise). */
SOPHON_AVX512 static void pad_plane_avx512(const conv_gemm* g, const float* src, float* block) {
  pad_plane_body(g, src, block);
}
#endif

/* Copies a share of the group's input channels into their phase planes. */
static void pad_planes_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_gemm* g = (const conv_gemm*)ctx;
  int64_t begin, end, ic;
  sophon_task_range(g->icg, task, tasks, &begin, &end);
  for (ic = begin; ic < end; ++ic) {
    const float* src = sophon_view_f32(&g->in_v, g->batch, g->group * g->icg + (int32_t)ic);
    float* block = g->planes + ic * g->plane_floats;
#if SOPHON_X86_DISPATCH
    if (g->pack_avx512) {
      pad_plane_avx512(g, src, block);
      continue;
    }
#endif
    pad_plane_c(g, src, block);
  }
}

/* Points b_rows[k] at row k = (ic, ky, kx) of the implicit B for this batch item and
 * group: a phase plane, or the input's own channel plane. */
static void set_b_rows(conv_gemm* g) {
  const sophon_conv_params* p = g->p;
  sophon_channel_iter channel = sophon_channel_begin(&g->in_v, g->batch, g->group * g->icg);
  int64_t k = 0;
  int32_t ic, ky, kx;
  for (ic = 0; ic < g->icg; ++ic) {
    for (ky = 0; ky < p->kernel_h; ++ky) {
      for (kx = 0; kx < p->kernel_w; ++kx) {
        const int64_t dy = (int64_t)ky * p->dilation_h, dx = (int64_t)kx * p->dilation_w;
        if (g->planes == NULL) {
          g->b_rows[k++] = (const float*)(const void*)channel.base + dy * g->row_pitch + dx;
        } else {
          const float* phase = g->planes + ic * g->plane_floats +
                               ((dy % p->stride_h) * p->stride_w + dx % p->stride_w) *
                                   g->phase_floats;
          g->b_rows[k++] = phase + (dy / p->stride_h) * g->row_pitch + dx / p->stride_w;
        }
      }
    }
    sophon_channel_next(&g->in_v, &channel);
  }
}

/* The rows of one A panel (tile_m of mr; the iterators and `biases` at its first
 * channel, then advanced past it): a[r] is weight row r from column kb; with
 * `outputs`, planes[r] is output channel r's plane and bias[r] its bias. Rows past
 * tile_m repeat the last A row, write to `sink` (rows[r]) and have bias 0. */
static void panel_rows(const conv_gemm* g, int64_t mp, int32_t tile_m, int64_t kb, int outputs,
                       sophon_channel_iter* w_it, sophon_channel_iter* o_it,
                       const float** biases, const float** a, float** planes,
                       float* bias, float** rows, float* sink) {
  const float* packed = g->a_packed != NULL ? g->a_packed + (mp * g->kernel.mr * g->k + kb * g->kernel.mr) : NULL;
  int32_t r;
  for (r = 0; r < tile_m; ++r) {
    if (packed != NULL) {
      a[r] = packed + r;
    } else {
      a[r] = (const float*)(const void*)w_it->base + kb;
      sophon_channel_next(&g->weight_v, w_it);
    }
    if (outputs) {
      planes[r] = (float*)(void*)o_it->base;
      bias[r] = (*biases)[r];
      sophon_channel_next(&g->out_v, o_it);
    }
  }
  *biases += tile_m;
  for (; r < g->kernel.mr; ++r) { /* past the last channel: drop the results */
    a[r] = packed != NULL ? packed + r : a[tile_m - 1]; /* packed: rows of zeros */
    rows[r] = sink;
    bias[r] = 0.0f;
  }
}

/* Gathers the bias of each of the `channels` output channels (lane by lane in
 * LMEM) into g->biases, zeros without a bias. */
static void gather_biases(conv_gemm* g, int32_t channels) {
  int32_t c;
  if (!g->has_bias) {
    for (c = 0; c < channels; ++c) g->biases[c] = 0.0f;
    return;
  }
  {
    sophon_channel_iter it = sophon_channel_begin(&g->bias_v, 0, 0);
    for (c = 0; c < channels; ++c) {
      g->biases[c] = *(const float*)(const void*)it.base;
      sophon_channel_next(&g->bias_v, &it);
    }
  }
}

/* Scratch floats of one task: one B panel, the partial sums of its tiles on one B
 * panel, mr bias values and a sink row for the tile rows past the last output
 * channel. */
static int64_t task_scratch_floats(const conv_gemm* g, int64_t my_m_panels) {
  return B_PANEL_FLOATS + my_m_panels * g->kernel.mr * g->kernel.nr + 16 + NR_MAX;
}

/* One task: for each of its B panels (pixel columns), K block by K block, packs the
 * block of the panel once and runs every A panel (MR weight rows) over it (the B
 * panel stays in L1, the A block streams from L2, the partial sums stay in a
 * contiguous buffer); the last block adds the bias and the fused activation and
 * writes the output rows. */
static void conv_gemm_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_gemm* g = (const conv_gemm*)ctx;
  const int32_t mr = g->kernel.mr, nr = g->kernel.nr;
  const sophon_activation* act = &g->p->act;
  int64_t m_begin = 0, m_end = g->m_panels, n_begin = 0, n_end = g->n_panels;
  int64_t kb, mp, np;
  float *b_pack, *tiles, *bias, *sink;
  const float* a[MR_MAX];
  float* rows[MR_MAX];
  float* tile_rows[MR_MAX];
  float* planes_out[MR_MAX];
  const int scatter = g->b_rows != NULL && g->row_pitch != g->out_w;
  int32_t r;

  if (g->split_n)
    sophon_task_range(g->n_panels, task, tasks, &n_begin, &n_end);
  else
    sophon_task_range(g->m_panels, task, tasks, &m_begin, &m_end);
  if (m_begin >= m_end || n_begin >= n_end) return;
  b_pack = g->scratch + task * g->task_floats;
  tiles = b_pack + B_PANEL_FLOATS;
  bias = tiles + (m_end - m_begin) * mr * nr;
  sink = bias + 16;

  for (np = n_begin; np < n_end; ++np) {
    const int64_t col0 = np * nr;
    const int32_t cols = (int32_t)(g->columns - col0 < nr ? g->columns - col0 : nr);
    for (kb = 0; kb < g->k; kb += g->kernel.kc) {
      const int64_t kc = g->k - kb < g->kernel.kc ? g->k - kb : g->kernel.kc;
      const int last = kb + kc == g->k;
      /* the A panels' rows are consecutive channels: walk them without divisions */
      const int32_t first_channel = g->group * g->ocg + (int32_t)(m_begin * mr);
      sophon_channel_iter w_it = sophon_channel_begin(&g->weight_v, 0, first_channel);
      sophon_channel_iter o_it = sophon_channel_begin(&g->out_v, g->batch, first_channel);
      const float* b_next = g->biases + first_channel;
      const float* b = b_pack;
      if (g->b_rows != NULL)
        b = NULL;
      else if (g->b_shared != NULL)
        b = g->b_shared + (np * g->k + kb) * nr;
      else
        pack_b_panel(g, col0, kb, kc, b_pack);
      for (mp = m_begin; mp < m_end; ++mp) {
        const int32_t oc0 = (int32_t)(mp * mr);
        const int32_t tile_m = g->ocg - oc0 < mr ? g->ocg - oc0 : mr;
        float* tile = tiles + (mp - m_begin) * mr * nr;
        panel_rows(g, mp, tile_m, kb, last, &w_it, &o_it, &b_next, a, planes_out, bias, rows, sink);
        if (last)
          for (r = 0; r < tile_m; ++r) rows[r] = planes_out[r] + col0;
        if (b != NULL) {
          g->kernel.fn(kc, a, b, tile, kb == 0, last ? rows : NULL, cols,
                       g->fused_act ? bias : NULL, act->kind == SOPHON_ACT_NONE ? NULL : act);
        } else if (!scatter) {
          g->kernel.rows_fn(kc, a, g->b_rows + kb, col0, tile, kb == 0, last ? rows : NULL,
                            cols, g->fused_act ? bias : NULL,
                            act->kind == SOPHON_ACT_NONE ? NULL : act);
        } else { /* finish in the tile, then drop the padding columns on the way out */
          for (r = 0; r < mr; ++r) tile_rows[r] = tile + r * nr;
          g->kernel.rows_fn(kc, a, g->b_rows + kb, col0, tile, kb == 0,
                            last ? tile_rows : NULL, cols, bias,
                            act->kind == SOPHON_ACT_NONE ? NULL : act);
          if (last)
            scatter_tile(g, tile, col0, cols, tile_m, planes_out);
        }
      }
    }
  }
  if (!g->fused_act) { /* other activations: bias and activation over this task's outputs */
    const int64_t col_begin = n_begin * nr;
    const int64_t col_end = n_end * nr < g->n ? n_end * nr : g->n;
    const int32_t oc_end = m_end * mr < g->ocg ? (int32_t)(m_end * mr) : g->ocg;
    int32_t oc;
    for (oc = (int32_t)(m_begin * mr); oc < oc_end; ++oc) {
      const int32_t channel = g->group * g->ocg + oc;
      sophon_finish_f32(sophon_view_f32(&g->out_v, g->batch, channel) + col_begin,
                        col_end - col_begin,
                        g->has_bias ? *sophon_view_f32(&g->bias_v, 0, channel) : 0.0f, act);
    }
  }
}

/* conv_gemm_task for the implicit GEMM when tasks own A panels (few B panels, many
 * output channels: the 7x7 and 14x14 outputs of deep layers): A panel by A panel,
 * K block by K block, over every B panel. Each weight row is then read from memory
 * once, where B panel by B panel read all of A once per B panel (a 3x3 512->512
 * weight is 9 MiB, past the caches, and the LMEM copy the GDMA made of it is cold
 * by the second pass), while B, the padded input planes, stays in L2 and the A
 * block in L1. The same sums in the same order as conv_gemm_task. */
static void conv_gemm_by_a_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_gemm* g = (const conv_gemm*)ctx;
  const int32_t mr = g->kernel.mr, nr = g->kernel.nr;
  const sophon_activation* act = g->p->act.kind == SOPHON_ACT_NONE ? NULL : &g->p->act;
  const int scatter = g->row_pitch != g->out_w;
  int64_t m_begin, m_end, mp, kb, np;
  float *tiles, *bias, *sink;
  const float* a[MR_MAX];
  const float* a_k[MR_MAX];
  float* planes_out[MR_MAX];
  float* rows[MR_MAX];
  float* tile_rows[MR_MAX];
  sophon_channel_iter w_it, o_it;
  const float* b_next;
  int32_t r, first_channel;

  sophon_task_range(g->m_panels, task, tasks, &m_begin, &m_end);
  if (m_begin >= m_end) return;
  tiles = g->scratch + task * g->task_floats + B_PANEL_FLOATS;
  bias = tiles + g->n_panels * mr * nr;
  sink = bias + 16;
  first_channel = g->group * g->ocg + (int32_t)(m_begin * mr);
  w_it = sophon_channel_begin(&g->weight_v, 0, first_channel);
  o_it = sophon_channel_begin(&g->out_v, g->batch, first_channel);
  b_next = g->biases + first_channel;
  for (mp = m_begin; mp < m_end; ++mp) {
    const int32_t tile_m = g->ocg - (int32_t)(mp * mr) < mr ? g->ocg - (int32_t)(mp * mr) : mr;
    panel_rows(g, mp, tile_m, 0, 1, &w_it, &o_it, &b_next, a, planes_out, bias, rows, sink);
    for (kb = 0; kb < g->k; kb += g->kernel.kc) {
      const int64_t kc = g->k - kb < g->kernel.kc ? g->k - kb : g->kernel.kc;
      const int last = kb + kc == g->k;
      for (r = 0; r < mr; ++r) a_k[r] = a[r] + kb * g->a_step;
      for (np = 0; np < g->n_panels; ++np) {
        const int64_t col0 = np * nr;
        const int32_t cols = (int32_t)(g->columns - col0 < nr ? g->columns - col0 : nr);
        float* tile = tiles + np * mr * nr;
        if (!scatter) {
          for (r = 0; r < tile_m; ++r) rows[r] = planes_out[r] + col0;
          g->kernel.rows_fn(kc, a_k, g->b_rows + kb, col0, tile, kb == 0, last ? rows : NULL,
                            cols, bias, act);
        } else { /* finish in the tile, then drop the padding columns on the way out */
          for (r = 0; r < mr; ++r) tile_rows[r] = tile + r * nr;
          g->kernel.rows_fn(kc, a_k, g->b_rows + kb, col0, tile, kb == 0,
                            last ? tile_rows : NULL, cols, bias, act);
          if (last) scatter_tile(g, tile, col0, cols, tile_m, planes_out);
        }
      }
    }
  }
}

/* L2 bytes of B that conv_gemm_rows_task runs every A panel over (half of a 1 MiB L2). */
#define B_L2_BYTES (512 * 1024)

/* conv_gemm_task for a GEMM whose B is read in place with no columns to drop (an
 * unpadded 1x1 stride-1 conv: B rows are input planes) and whose K fits one block:
 * the task's B panels in chunks of about B_L2_BYTES, and for each chunk A panel by A
 * panel, each over all of the chunk's B panels. The output then goes out as mr
 * sequential streams instead of a tile of every output channel per B panel, which
 * with a short K (MobileNet's and EfficientNet's expand convs) made the stores, not
 * the FMAs, the bottleneck. Same sums in the same order as conv_gemm_task. */
static void conv_gemm_rows_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_gemm* g = (const conv_gemm*)ctx;
  const int32_t mr = g->kernel.mr, nr = g->kernel.nr;
  const sophon_activation* act = g->p->act.kind == SOPHON_ACT_NONE ? NULL : &g->p->act;
  const int64_t chunk = B_L2_BYTES / (g->k * nr * (int64_t)sizeof(float)) + 1;
  int64_t n_begin, n_end, n0, mp, np;
  float *tile, *bias, *sink;
  const float* a[MR_MAX];
  float* planes_out[MR_MAX];
  float* rows[MR_MAX];
  int32_t r;

  sophon_task_range(g->n_panels, task, tasks, &n_begin, &n_end);
  tile = g->scratch + task * g->task_floats + B_PANEL_FLOATS;
  bias = tile + mr * nr;
  sink = bias + 16;
  for (n0 = n_begin; n0 < n_end; n0 += chunk) {
    const int64_t n1 = n_end - n0 < chunk ? n_end : n0 + chunk;
    sophon_channel_iter w_it = sophon_channel_begin(&g->weight_v, 0, g->group * g->ocg);
    sophon_channel_iter o_it = sophon_channel_begin(&g->out_v, g->batch, g->group * g->ocg);
    const float* b_next = g->biases + g->group * g->ocg;
    for (mp = 0; mp < g->m_panels; ++mp) {
      const int32_t oc0 = (int32_t)(mp * mr);
      const int32_t tile_m = g->ocg - oc0 < mr ? g->ocg - oc0 : mr;
      panel_rows(g, mp, tile_m, 0, 1, &w_it, &o_it, &b_next, a, planes_out, bias, rows, sink);
      for (np = n0; np < n1; ++np) {
        const int64_t col0 = np * nr;
        const int32_t cols = (int32_t)(g->columns - col0 < nr ? g->columns - col0 : nr);
        for (r = 0; r < tile_m; ++r) rows[r] = planes_out[r] + col0;
        g->kernel.rows_fn(g->k, a, g->b_rows, col0, tile, 1, rows, cols, bias, act);
      }
    }
  }
}

/* The A operand of a weight that stays in DDR (a deferred constant load: `ddr` is
 * the weight's view there, rows of k contiguous floats), packed once for the
 * device's life (sophon_device_packed) in the order the micro-kernel reads it: per
 * group, A panel by A panel, k by k, the panel's mr values side by side (rows past
 * the group's last output channel are zeros). A task then reads each A block as one
 * sequential stream, prefetched ahead (A_PREFETCH), where in place it reads mr rows
 * in mr lanes far apart. NULL without room or memory: A is then read in LMEM. */
static const float* pack_a(sophon_device* dev, const conv_gemm* g, const sophon_global* ddr,
                           int32_t groups) {
  const int64_t mr = g->kernel.mr, panel_floats = mr * g->k;
  sophon_packed_key key;
  float* packed;
  int64_t group, mp, k;
  int32_t r;
  int fresh;
  memset(&key, 0, sizeof(key));
  key.data = ddr->data;
  key.data_end = (const float*)ddr->data + (int64_t)(ddr->c - 1) * ddr->stride_c + g->k;
  key.shape[0] = ddr->c;
  key.shape[1] = g->k;
  key.shape[2] = ddr->stride_c;
  key.shape[3] = mr;
  key.shape[4] = groups;
  packed = sophon_device_packed(dev, &key, (size_t)(groups * g->m_panels * panel_floats), &fresh);
  if (packed == NULL || !fresh) return packed;
  for (group = 0; group < groups; ++group) {
    for (mp = 0; mp < g->m_panels; ++mp) {
      float* panel = packed + (group * g->m_panels + mp) * panel_floats;
      for (r = 0; r < mr; ++r) {
        const int64_t oc = mp * mr + r;
        const float* row = (const float*)ddr->data + (group * g->ocg + oc) * ddr->stride_c;
        if (oc >= g->ocg) {
          for (k = 0; k < g->k; ++k) panel[k * mr + r] = 0.0f;
          continue;
        }
        for (k = 0; k < g->k; ++k) panel[k * mr + r] = row[k];
      }
    }
  }
  return packed;
}

/* Packs a share of the B panels, all of K, into g->b_shared. */
static void pack_b_task(void* ctx, int32_t task, int32_t tasks) {
  const conv_gemm* g = (const conv_gemm*)ctx;
  int64_t begin, end, np;
  sophon_task_range(g->n_panels, task, tasks, &begin, &end);
  for (np = begin; np < end; ++np)
    pack_b_panel(g, np * g->kernel.nr, 0, g->k, g->b_shared + np * g->k * g->kernel.nr);
}

static int conv2d_gemm(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                       const sophon_local* weight, const sophon_local* bias,
                       const sophon_conv_params* p, const sophon_global* weight_ddr) {
  conv_gemm g;
  int32_t tasks;
  int64_t b_floats, rows_floats;
  int implicit, by_rows, by_a;
  uint64_t macs;

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
  g.kernel = micro_kernel_for(dev);
  g.pack_avx512 = dev->cpu_avx512;
  g.fused_act = sophon_act_is_simple(&p->act) ||
                (dev->cpu_avx512 && sophon_act_is_sigmoid_family(&p->act));
  g.m_panels = sophon_ceil_div(g.ocg, g.kernel.mr);
  g.b_rows = NULL;
  g.planes = NULL;
  g.plane_floats = g.phase_floats = 0;
  g.row_pitch = out->w;
  g.phase_rows = in->h;
  g.columns = g.n;
  implicit = g.kernel.rows_fn != NULL && g.fused_act;
  if (implicit && !(p->pad_top == 0 && p->pad_bottom == 0 && p->pad_left == 0 &&
                    p->pad_right == 0 && p->kernel_w == 1 && p->stride_h == 1 &&
                    p->stride_w == 1)) {
    /* phase planes; reads of the last panel run past a phase by < nr + row_pitch +
       (kernel_w - 1) * dilation_w, into the next phase or the slack after the
       channel's last one */
    g.row_pitch = sophon_ceil_div((int64_t)in->w + p->pad_left + p->pad_right, p->stride_w);
    if (p->stride_w == 1) { /* a row's right padding is the next row's left padding */
      g.row_pitch = in->w + (p->pad_left > p->pad_right ? p->pad_left : p->pad_right);
      if (g.row_pitch < out->w) g.row_pitch = out->w;
    }
    g.phase_rows = sophon_ceil_div((int64_t)in->h + p->pad_top + p->pad_bottom, p->stride_h);
    g.phase_floats = g.phase_rows * g.row_pitch;
    g.plane_floats = sophon_ceil_div((int64_t)p->stride_h * p->stride_w * g.phase_floats +
                                         g.row_pitch + g.kernel.nr +
                                         (int64_t)(p->kernel_w - 1) * p->dilation_w, 16) * 16;
    g.columns = (int64_t)out->h * g.row_pitch;
  }
  if (implicit) g.kernel.kc = IMPLICIT_KC;
#if SOPHON_X86_DISPATCH
  if (implicit && (g.columns / 24 * 24 + sophon_ceil_div(g.columns % 24, 8) * 8) * 100 <
                      sophon_ceil_div(g.columns, 32) * 32 * NARROW_PERCENT) {
    g.kernel.rows_fn = micro_kernel_ymm_rows; /* fewer columns computed */
    g.kernel.rows_packed_fn = micro_kernel_ymm_packed;
    g.kernel.nr = 24;
  }
#endif
  g.n_panels = sophon_ceil_div(g.columns, g.kernel.nr);
  g.a_packed = g.a_packed_all = NULL;
  g.a_step = 1;
  if (weight_ddr != NULL) {
    if (implicit && weight->n == 1 && weight_ddr->stride_w == 1 &&
        (weight_ddr->h == 1 || weight_ddr->stride_h == weight_ddr->w))
      g.a_packed_all = pack_a(dev, &g, weight_ddr, p->groups);
    if (g.a_packed_all == NULL) {
      sophon_lmem_reading(dev, weight); /* read A in LMEM: make the deferred copy now */
    } else {
      g.a_step = g.kernel.mr;
      g.kernel.rows_fn = g.kernel.rows_packed_fn;
    }
  }

  macs = (uint64_t)g.ocg * (uint64_t)g.n * (uint64_t)g.k;
  g.split_n = g.n_panels >= g.m_panels;
  tasks = sophon_tasks_for(dev, macs, g.split_n ? g.n_panels : g.m_panels);
  /* each task's tiles: for all A panels when tasks split B, else its share (at most) */
  by_a = implicit && !g.split_n;
  g.task_floats = task_scratch_floats(&g, g.split_n ? g.m_panels
                                      : by_a ? g.n_panels : sophon_ceil_div(g.m_panels, tasks));
  if (implicit) { /* the B row table (k pointers), then the padded planes if any */
    rows_floats = sophon_ceil_div(g.k * (int64_t)sizeof(const float*), 64) * 16;
    b_floats = rows_floats + g.icg * g.plane_floats;
  } else { /* tasks that split the A panels all need every B panel: pack B once, together */
    rows_floats = 0;
    b_floats = !g.split_n && tasks > 1 ? g.n_panels * g.k * g.kernel.nr : 0;
  }
  g.scratch = sophon_device_scratch(dev, (size_t)(g.task_floats * tasks + b_floats + out->c));
  if (g.scratch == NULL) return -1;
  g.biases = g.scratch + g.task_floats * tasks + b_floats;
  gather_biases(&g, out->c);
  g.b_shared = NULL;
  by_rows = implicit && g.plane_floats == 0 && g.split_n && g.k <= B_PANEL_FLOATS / g.kernel.nr;
  if (implicit) {
    g.b_rows = (const float**)(void*)(g.scratch + g.task_floats * tasks);
    if (g.plane_floats > 0) g.planes = g.scratch + g.task_floats * tasks + rows_floats;
  } else if (b_floats > 0) {
    g.b_shared = g.scratch + g.task_floats * tasks;
  }
  for (g.batch = 0; g.batch < out->n; ++g.batch) {
    for (g.group = 0; g.group < p->groups; ++g.group) {
      if (g.a_packed_all != NULL) g.a_packed = g.a_packed_all + g.group * g.m_panels * g.kernel.mr * g.k;
      if (g.planes != NULL)
        sophon_parallel_run(dev->pool, sophon_tasks_for(dev, macs, g.icg), pad_planes_task, &g);
      if (g.b_rows != NULL) set_b_rows(&g);
      if (g.b_shared != NULL) sophon_parallel_run(dev->pool, tasks, pack_b_task, &g);
      sophon_parallel_run(dev->pool, tasks,
                          by_rows ? conv_gemm_rows_task : by_a ? conv_gemm_by_a_task : conv_gemm_task,
                          &g);
    }
  }
  return 0;
}

int sophon_fast_conv2d_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_local* weight, const sophon_local* bias,
                           const sophon_conv_params* p, const sophon_global* weight_ddr) {
  if (in->c == p->groups && out->c == p->groups) {
    if (weight_ddr != NULL) sophon_lmem_reading(dev, weight); /* it reads LMEM */
    sophon_fast_depthwise_f32(dev, out, in, weight, bias, p);
    return 0;
  }
  {
    const int winograd = sophon_fast_winograd_f32(dev, out, in, weight, bias, p, weight_ddr);
    if (winograd <= 0) return winograd; /* done, or no scratch memory */
  }
  return conv2d_gemm(dev, out, in, weight, bias, p, weight_ddr);
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

/* The fc weight (1, features, depth, 1) of a deferred load from `ddr` (any strides:
 * the fc weight is often loaded transposed), packed once for the device's life in
 * LMEM's order without the lanes (feature j's depth values at j * depth), and `v`
 * a view over it (one lane). 0 without room or memory: `weight` is then read in
 * LMEM, its deferred copy made now. */
static int fc_weight_packed(sophon_device* dev, sophon_view* v, const sophon_local* weight,
                            const sophon_global* ddr) {
  const int64_t depth = (int64_t)weight->h * weight->w;
  sophon_packed_key key;
  float* packed;
  int64_t j, k;
  int fresh;
  sophon_packed_view_key(&key, ddr);
  if (weight->n != 1 || ddr->stride_c < 0 || ddr->stride_h < 0 || ddr->stride_w < 0 ||
      (packed = sophon_device_packed(dev, &key, (size_t)(weight->c * depth), &fresh)) == NULL) {
    sophon_lmem_reading(dev, weight);
    return 0;
  }
  if (fresh) {
    for (j = 0; j < weight->c; ++j)
      for (k = 0; k < depth; ++k)
        packed[j * depth + k] = ((const float*)ddr->data)[j * ddr->stride_c +
                                                           (k / ddr->w) * ddr->stride_h +
                                                           (k % ddr->w) * ddr->stride_w];
  }
  v->lane0 = (uint8_t*)packed; /* one lane: feature j at j * depth floats */
  v->lane_bytes = 0;
  v->channel_bytes = depth * (int64_t)sizeof(float);
  v->batch_bytes = weight->c * v->channel_bytes;
  v->npu_num = 1;
  v->n = weight->n;
  v->c = weight->c;
  v->h = weight->h;
  v->w = weight->w;
  return 1;
}

int sophon_fast_fc_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                       const sophon_local* weight, const sophon_local* bias,
                       const sophon_activation* act, const sophon_global* weight_ddr) {
  static const sophon_activation none = {SOPHON_ACT_NONE, 0.0f, 0.0f, 0.0f, 0.0f};
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
  if (weight_ddr == NULL || !fc_weight_packed(dev, &f.weight_v, weight, weight_ddr))
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
