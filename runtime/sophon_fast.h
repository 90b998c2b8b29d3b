/*
 * sophon_fast.h - what the fast kernels (sophon_fast_*.c) share; not public API.
 *
 * Work splitting: an instruction runs as `tasks` tasks on the device's pool
 * (sophon_threads.h); task_range gives each task a contiguous range of items,
 * and tasks_for keeps small instructions on the calling thread. Every output is
 * computed by one task in a fixed order, so results do not depend on the thread
 * count.
 */
#ifndef SOPHON_FAST_H_
#define SOPHON_FAST_H_

#include "sophon_internal.h"

#if SOPHON_X86_DISPATCH
#include <immintrin.h>
#define SOPHON_AVX2 __attribute__((target("avx2")))
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

/* data[i] = act(data[i] + bias) for `count` accumulated f32 outputs. */
static inline void sophon_finish_f32(float* data, int64_t count, float bias,
                                     const sophon_activation* act) {
  int64_t i;
  if (act->kind == SOPHON_ACT_NONE || act->kind == SOPHON_ACT_RELU) {
    const int relu = act->kind == SOPHON_ACT_RELU;
    for (i = 0; i < count; ++i) {
      const float v = data[i] + bias;
      data[i] = relu && !(v > 0.0f) ? 0.0f : v;
    }
    return;
  }
  for (i = 0; i < count; ++i) data[i] = sophon_activate_f32(act, data[i] + bias);
}

#endif /* SOPHON_FAST_H_ */
