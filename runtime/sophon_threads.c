/*
 * sophon_threads.c - a fixed pool of worker threads for the fast kernels.
 *
 * Workers sleep on a condition variable between instructions (the host may be
 * shared, so nobody spins). A run bumps a generation counter, wakes the workers,
 * runs task 0 on the calling thread and waits until the other tasks are done.
 */
#define _POSIX_C_SOURCE 200809L

#include "sophon_threads.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct sophon_thread_pool {
  int32_t size;            /* threads including the caller */
  pthread_t* workers;      /* size - 1 */
  int32_t started;         /* workers successfully created */
  pthread_mutex_t lock;
  pthread_cond_t wake;     /* generation changed or shutdown */
  pthread_cond_t done;     /* pending reached 0 */
  uint64_t generation;
  int32_t pending;         /* worker tasks of the current run not yet finished */
  int shutdown;
  /* the current run */
  sophon_task_fn fn;
  void* ctx;
  int32_t num_tasks;
};

typedef struct {
  sophon_thread_pool* pool;
  int32_t index;           /* 1 .. size-1 */
} worker_arg;

static void* worker_main(void* arg_ptr) {
  worker_arg* arg = (worker_arg*)arg_ptr;
  sophon_thread_pool* pool = arg->pool;
  const int32_t index = arg->index;
  uint64_t seen = 0;
  free(arg);
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    while (!pool->shutdown && pool->generation == seen) pthread_cond_wait(&pool->wake, &pool->lock);
    if (pool->shutdown) break;
    seen = pool->generation;
    if (index < pool->num_tasks) {
      sophon_task_fn fn = pool->fn;
      void* ctx = pool->ctx;
      const int32_t num_tasks = pool->num_tasks;
      pthread_mutex_unlock(&pool->lock);
      fn(ctx, index, num_tasks);
      pthread_mutex_lock(&pool->lock);
      if (--pool->pending == 0) pthread_cond_signal(&pool->done);
    }
  }
  pthread_mutex_unlock(&pool->lock);
  return NULL;
}

sophon_thread_pool* sophon_thread_pool_create(int32_t num_threads, int* failed) {
  sophon_thread_pool* pool;
  int32_t i;
  *failed = 0;
  if (num_threads <= 1) return NULL;
  pool = (sophon_thread_pool*)calloc(1, sizeof *pool);
  if (pool == NULL) {
    *failed = 1;
    return NULL;
  }
  pool->workers = (pthread_t*)calloc((size_t)num_threads - 1, sizeof *pool->workers);
  if (pool->workers == NULL) {
    free(pool);
    *failed = 1;
    return NULL;
  }
  pool->size = num_threads;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done, NULL);
  for (i = 1; i < num_threads; ++i) {
    worker_arg* arg = (worker_arg*)malloc(sizeof *arg);
    if (arg == NULL) break;
    arg->pool = pool;
    arg->index = i;
    if (pthread_create(&pool->workers[i - 1], NULL, worker_main, arg) != 0) {
      free(arg);
      break;
    }
    pool->started += 1;
  }
  if (pool->started != num_threads - 1) {
    sophon_thread_pool_destroy(pool);
    *failed = 1;
    return NULL;
  }
  return pool;
}

void sophon_thread_pool_destroy(sophon_thread_pool* pool) {
  int32_t i;
  if (pool == NULL) return;
  pthread_mutex_lock(&pool->lock);
  pool->shutdown = 1;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  for (i = 0; i < pool->started; ++i) pthread_join(pool->workers[i], NULL);
  pthread_cond_destroy(&pool->done);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->lock);
  free(pool->workers);
  free(pool);
}

int32_t sophon_thread_pool_size(const sophon_thread_pool* pool) {
  return pool != NULL ? pool->size : 1;
}

void sophon_parallel_run(sophon_thread_pool* pool, int32_t num_tasks, sophon_task_fn fn,
                         void* ctx) {
  if (pool == NULL || num_tasks <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  if (num_tasks > pool->size) num_tasks = pool->size;
  pthread_mutex_lock(&pool->lock);
  pool->fn = fn;
  pool->ctx = ctx;
  pool->num_tasks = num_tasks;
  pool->pending = num_tasks - 1;
  pool->generation += 1;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  fn(ctx, 0, num_tasks);
  pthread_mutex_lock(&pool->lock);
  while (pool->pending > 0) pthread_cond_wait(&pool->done, &pool->lock);
  pthread_mutex_unlock(&pool->lock);
}

int32_t sophon_online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? (n > 1024 ? 1024 : (int32_t)n) : 1;
}
