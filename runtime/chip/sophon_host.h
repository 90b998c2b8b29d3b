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
#else
#define SOPHON_ALWAYS_INLINE
#endif

/* Below this many MACs (or elements) an instruction runs on the calling thread. */
#define SOPHON_PARALLEL_MIN_WORK 65536

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
