/*
 * sophon_host.h - how the emulator uses the host CPU (not public API): the x86
 * SIMD target attributes and the work splitting of the device's thread pool
 * (sophon_threads.h), shared by GDMA and the fast kernels.
 *
 * Work splitting: an instruction runs as `tasks` tasks on the device's pool;
 * task_range gives each task a contiguous range of items, and tasks_for keeps
 * small instructions on the calling thread. Every output is computed by one task
 * in a fixed order, so results do not depend on the thread count.
 */
#ifndef SOPHON_HOST_H_
#define SOPHON_HOST_H_

#include "chip/sophon_internal.h"

#if SOPHON_X86_DISPATCH
#include <immintrin.h>
#define SOPHON_AVX2 __attribute__((target("avx2")))
#define SOPHON_AVX2_FMA __attribute__((target("avx2,fma")))
#define SOPHON_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")))
/* AVX-512 with VNNI (vpdpbusd), for the INT8 kernels of sophon_fast_int8.c. */
#define SOPHON_AVX512VNNI \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
/* AVX-512 with VBMI (vpermi2b: 128-byte table lookups), for lut_int8. */
#define SOPHON_AVX512VBMI \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")))
#define SOPHON_ALWAYS_INLINE __attribute__((always_inline))

/* Transposes the 16 x 16 floats r[0..16) in place (r[i][j] <-> r[j][i]). */
SOPHON_AVX512 SOPHON_ALWAYS_INLINE static inline void sophon_transpose16_avx512(__m512* r) {
  __m512 t[16];
  int i;
  for (i = 0; i < 16; i += 2) { /* pairs of rows interleaved by 1 float */
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (i = 0; i < 16; i += 4) { /* then by 2 floats: 4 x 4 blocks in each 128-bit lane */
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (i = 0; i < 4; ++i) { /* then the 128-bit lanes: rows i, i + 4, i + 8, i + 12 */
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);      /* lanes 0, 2 of each */
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);  /* lanes 1, 3 */
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
  }
}
#else
#define SOPHON_ALWAYS_INLINE
#endif

/* Below this many MACs (or elements) an instruction runs on the calling thread. A run
 * on the pool costs about a microsecond while its worker spins (sophon_threads.c),
 * about the time of 16384 elements of the cheapest element-wise op. */
#define SOPHON_PARALLEL_MIN_WORK 16384

/* [begin, end) of task `task` when `count` items are split over `tasks`. */
static inline void sophon_task_range(int64_t count, int32_t task, int32_t tasks,
                                     int64_t* begin, int64_t* end) {
  *begin = count * task / tasks;
  *end = count * (task + 1) / tasks;
}

/* Tasks for an instruction of `work` MACs (or elements) over `items` units. */
static inline int32_t sophon_tasks_for(const sophon_device* dev, uint64_t work,
                                       int64_t items) {
  int64_t tasks = dev->num_threads;
  if (work < SOPHON_PARALLEL_MIN_WORK) return 1;
  if (tasks > items) tasks = items;
  return tasks < 1 ? 1 : (int32_t)tasks;
}

#endif /* SOPHON_HOST_H_ */
