/*
 * sophon_fast_int8.h - TFLite's fixed-point primitives (chip/sophon_internal.h) on
 * vectors, for the fast INT8 kernels (sophon_fast_int8.c,
 * sophon_fast_int8_eltwise.c); not public API.
 *
 * Each equals its scalar definition lane by lane for every input the INT8
 * instructions' checks allow (multipliers >= 0, or down to -INT32_MAX for add's
 * input 2 in a SUB; shifts in range):
 *   - sat(x + y): the wrapped sum overflowed iff its sign differs from the signs
 *     of both addends; it then saturates toward the sign of x.
 *   - x * 2^s saturated (MultiplyByQuantizedMultiplier's left shift, s in
 *     [0, 30]): x > INT32_MAX >> s overflows upward, x < -2^(31 - s) downward;
 *     otherwise the shift is exact.
 *   - SaturatingRoundingDoublingHighMul(x, m), m > INT32_MIN: the scalar code
 *     truncates (P + nudge) / 2^31, P = x * m, nudge = 2^30, or 1 - 2^30 when
 *     P < 0. For P < 0, trunc((P + 1 - 2^30) / 2^31) = ceil((P + 1 - 2^30) / 2^31)
 *     = floor((P + 2^30) / 2^31); for P >= 0 it is floor((P + 2^30) / 2^31)
 *     directly. Both are bits 31..62 of the 64-bit P + 2^30 (|P| < 2^62), read
 *     with a logical shift; _mm256_mul_epi32 forms the even lanes' 64-bit
 *     products, a second one (after moving the odd lanes down) the odd lanes'.
 *     The one saturating case, INT32_MIN * INT32_MIN, needs m = INT32_MIN, which
 *     the checks refuse.
 *   - RoundingDivideByPOT(x, e), e in [0, 31]: floor(x / 2^e) (an arithmetic
 *     shift), plus 1 when the remainder x & (2^e - 1) exceeds (2^e - 1) / 2, or
 *     (2^e - 1) / 2 + 1 for x < 0: ties away from zero, the scalar rule.
 */
#ifndef SOPHON_FAST_INT8_H_
#define SOPHON_FAST_INT8_H_

#include "fast/sophon_fast.h"

#if SOPHON_X86_DISPATCH

/* ------------------------------------------------------------------ AVX2 */

SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i sophon_sat_add_avx2(__m256i x, __m256i y) {
  const __m256i sum = _mm256_add_epi32(x, y);
  const __m256i overflow = _mm256_and_si256(_mm256_xor_si256(x, sum), _mm256_xor_si256(y, sum));
  const __m256i limit = _mm256_xor_si256(_mm256_srai_epi32(x, 31), _mm256_set1_epi32(INT32_MAX));
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(sum), _mm256_castsi256_ps(limit),
                                              _mm256_castsi256_ps(overflow)));
}

SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i sophon_sat_shift_left_avx2(__m256i x,
                                                                                int32_t shift) {
  __m256i shifted;
  if (shift == 0) return x;
  shifted = _mm256_sll_epi32(x, _mm_cvtsi32_si128(shift));
  shifted = _mm256_blendv_epi8(shifted, _mm256_set1_epi32(INT32_MAX),
                               _mm256_cmpgt_epi32(x, _mm256_set1_epi32(INT32_MAX >> shift)));
  return _mm256_blendv_epi8(
      shifted, _mm256_set1_epi32(INT32_MIN),
      _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)-((int64_t)1 << (31 - shift))), x));
}

SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i sophon_srdhm_avx2(__m256i x, __m256i m) {
  const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
  const __m256i even = _mm256_add_epi64(_mm256_mul_epi32(x, m), nudge);
  const __m256i odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), m), nudge);
  return _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_slli_epi64(odd, 1), 0xaa);
}

SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256i sophon_rounding_shift_avx2(
    __m256i x, int32_t exponent) {
  const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
  const __m256i remainder = _mm256_and_si256(x, _mm256_set1_epi32(mask));
  const __m256i threshold =
      _mm256_sub_epi32(_mm256_set1_epi32(mask >> 1), _mm256_srai_epi32(x, 31));
  const __m256i floor_q = _mm256_sra_epi32(x, _mm_cvtsi32_si128(exponent));
  return _mm256_sub_epi32(floor_q, _mm256_cmpgt_epi32(remainder, threshold));
}

/* 16 int32 within [-128, 127] (lo: the first 8) as 16 bytes, in order. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m128i sophon_pack_bytes_avx2(__m256i lo,
                                                                            __m256i hi) {
  const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xd8);
  return _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
}

/* --------------------------------------------------------------- AVX-512 */

SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i sophon_sat_add_avx512(__m512i x,
                                                                                 __m512i y) {
  const __m512i sum = _mm512_add_epi32(x, y);
  const __mmask16 overflow = _mm512_movepi32_mask(
      _mm512_and_si512(_mm512_xor_si512(x, sum), _mm512_xor_si512(y, sum)));
  return _mm512_mask_mov_epi32(
      sum, overflow, _mm512_xor_si512(_mm512_srai_epi32(x, 31), _mm512_set1_epi32(INT32_MAX)));
}

SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i sophon_sat_shift_left_avx512(
    __m512i x, int32_t shift) {
  __mmask16 above, below;
  __m512i shifted;
  if (shift == 0) return x;
  shifted = _mm512_sll_epi32(x, _mm_cvtsi32_si128(shift));
  above = _mm512_cmpgt_epi32_mask(x, _mm512_set1_epi32(INT32_MAX >> shift));
  below = _mm512_cmplt_epi32_mask(x, _mm512_set1_epi32((int32_t)-((int64_t)1 << (31 - shift))));
  shifted = _mm512_mask_mov_epi32(shifted, above, _mm512_set1_epi32(INT32_MAX));
  return _mm512_mask_mov_epi32(shifted, below, _mm512_set1_epi32(INT32_MIN));
}

SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i sophon_srdhm_avx512(__m512i x,
                                                                               __m512i m) {
  const __m512i nudge = _mm512_set1_epi64((int64_t)1 << 30);
  const __m512i even = _mm512_add_epi64(_mm512_mul_epi32(x, m), nudge);
  const __m512i odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), m), nudge);
  return _mm512_mask_blend_epi32(0xaaaa, _mm512_srli_epi64(even, 31), _mm512_slli_epi64(odd, 1));
}

SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m512i sophon_rounding_shift_avx512(
    __m512i x, int32_t exponent) {
  const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
  const __m512i remainder = _mm512_and_si512(x, _mm512_set1_epi32(mask));
  const __m512i threshold =
      _mm512_sub_epi32(_mm512_set1_epi32(mask >> 1), _mm512_srai_epi32(x, 31));
  const __m512i floor_q = _mm512_sra_epi32(x, _mm_cvtsi32_si128(exponent));
  return _mm512_mask_add_epi32(floor_q, _mm512_cmpgt_epi32_mask(remainder, threshold), floor_q,
                               _mm512_set1_epi32(1));
}

/* 16 int32 within [-128, 127] as 16 bytes, in order, in a register: the two packs
 * work within 128-bit lanes (dword 0 of lane L then holds lanes 4L .. 4L + 3), one
 * dword permute gathers them. (The compiler turns vpmovdb followed by a masked
 * store into vpmovdb to memory, which Zen 4 runs many times slower.) */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline __m128i sophon_pack_bytes_avx512(__m512i v) {
  const __m512i words = _mm512_packs_epi32(v, v);
  const __m512i bytes = _mm512_packs_epi16(words, words);
  return _mm512_castsi512_si128(_mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12), bytes));
}

#endif /* SOPHON_X86_DISPATCH */

#endif /* SOPHON_FAST_INT8_H_ */
