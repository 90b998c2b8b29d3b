/*
 * sophon_threads.h - the device's worker threads (not public API).
 *
 * A pool is created once per device (sophon_device_set_threads) and reused by
 * every instruction. sophon_parallel_run(pool, fn, ctx) calls fn(ctx, task,
 * num_tasks) for task = 0 .. num_tasks-1, one task per thread (the calling
 * thread runs task 0), and returns when all have finished. Kernels split their
 * work by `task` so that every output element is computed by exactly one task
 * in a fixed order: results do not depend on the number of threads.
 */
#ifndef SOPHON_THREADS_H_
#define SOPHON_THREADS_H_

#include <stdint.h>

typedef struct sophon_thread_pool sophon_thread_pool;

typedef void (*sophon_task_fn)(void* ctx, int32_t task, int32_t num_tasks);

/* A pool of num_threads - 1 workers beside the caller; NULL if num_threads <= 1
 * (then sophon_parallel_run runs the single task inline) or on failure. */
sophon_thread_pool* sophon_thread_pool_create(int32_t num_threads, int* failed);
void sophon_thread_pool_destroy(sophon_thread_pool* pool);
/* Threads of the pool, including the caller (1 for a NULL pool). */
int32_t sophon_thread_pool_size(const sophon_thread_pool* pool);
/* Runs fn over min(num_tasks, pool size) tasks (num_tasks >= 1). */
void sophon_parallel_run(sophon_thread_pool* pool, int32_t num_tasks, sophon_task_fn fn,
                         void* ctx);
/* Online CPUs of the host (at least 1). */
int32_t sophon_online_cpus(void);

#endif /* SOPHON_THREADS_H_ */
