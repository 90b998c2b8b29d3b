/*
 * sophon_threads.c - a fixed pool of worker threads for the fast kernels.
 *
 * A run publishes (fn, ctx) and a claim word (generation, num_tasks, next task),
 * bumps a generation counter, and then the calling thread and the workers claim
 * tasks from the word with a compare-and-swap until none is left; the caller
 * returns once all num_tasks are done. Which thread runs a task does not matter:
 * a task is a fixed share of the work (sophon_host.h), so results do not depend on
 * the thread count or on who ran what. Claiming, rather than one task per thread,
 * matters on a loaded host: a worker that is not scheduled when a run starts does
 * not hold the run up, the caller runs its task too (before, every instruction
 * waited for every worker to wake up and check in).
 *
 * Waiting is spin-then-sleep. A model runs hundreds of short instructions per
 * inference, back to back; a worker that went to sleep on a condition variable
 * after each one would cost a futex wake-up (tens of microseconds) per
 * instruction and per thread. So workers and the caller first poll the shared
 * counters for a bounded time (SPIN_NS, with a pause instruction in the loop),
 * then sleep on the condition variables: a pool between inferences, or on a
 * host shared with other work, does not burn a core for longer than that.
 * Every 64 polls a spinning thread also yields its core (sched_yield: returns at
 * once when nothing else is runnable there). Without that, when the scheduler put
 * a worker on the caller's core (a woken worker usually lands there when the other
 * core is busy), the spinning worker kept the caller off its core until its spin
 * ended: an empty run on a pool whose worker had gone to sleep took 170-470 us
 * instead of 0.2-5 us, with other work on the second core.
 *
 * The claim word carries the run's generation: a worker that read an older run's
 * word fails its compare-and-swap, so it can only claim tasks of the current run,
 * and it reads fn and ctx after its claim succeeded, when the run cannot end (and
 * the caller cannot publish the next one) before that task is done.
 *
 * The counters are read and written with GCC's __atomic builtins (acquire and
 * release); the mutex guards only sleeping and waking, so a sleeper re-checks its
 * condition under the lock and no wake-up is lost.
 *
 * Fork: a child process has only the thread that called fork(), none of the
 * pool's workers. The pool remembers the process that created it; in any other
 * process a run executes every task on the calling thread, and destroying the
 * pool frees it without joining (or touching the locks of) threads that are not
 * there.
 */
#define _POSIX_C_SOURCE 200809L

#include "chip/sophon_threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* How long a thread polls before it sleeps: about the time of a small instruction. */
#define SPIN_NS 200000L

struct sophon_thread_pool {
  int32_t size;            /* threads including the caller */
  pthread_t* workers;      /* size - 1 */
  int32_t started;         /* workers successfully created */
  pid_t owner;             /* the process whose threads these are */
  pthread_mutex_t lock;
  pthread_cond_t wake;     /* generation changed or shutdown */
  pthread_cond_t done_cond; /* done reached the run's num_tasks */
  uint64_t generation;     /* atomic: bumped by every run */
  uint64_t claim;          /* atomic: generation << 32 | num_tasks << 16 | next task */
  int32_t done;            /* atomic: tasks of the current run finished */
  int32_t shutdown;        /* atomic */
  /* the current run, published before claim and generation */
  sophon_task_fn fn;
  void* ctx;
};

typedef struct {
  sophon_thread_pool* pool;
  int32_t index;           /* 1 .. size-1 */
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Polls until generation differs from `seen` or shutdown, for at most SPIN_NS;
 * returns nonzero if it saw a change. Every 64 polls: the clock, and a yield. */
static int spin_for_generation(sophon_thread_pool* pool, uint64_t seen) {
  const int64_t deadline = now_ns() + SPIN_NS;
  uint32_t polls = 0;
  for (;;) {
    if (__atomic_load_n(&pool->generation, __ATOMIC_ACQUIRE) != seen ||
        __atomic_load_n(&pool->shutdown, __ATOMIC_ACQUIRE))
      return 1;
    cpu_relax();
    if ((++polls & 63u) == 0) {
      if (now_ns() > deadline) return 0;
      sched_yield();
    }
  }
}

/* Claims the next task of run `generation` (its low 32 bits): the task's index and
 * *num_tasks, or -1 when that run has no task left or is not the current one. */
static int32_t claim_task(sophon_thread_pool* pool, uint64_t generation, int32_t* num_tasks) {
  uint64_t word = __atomic_load_n(&pool->claim, __ATOMIC_ACQUIRE);
  for (;;) {
    const int32_t next = (int32_t)(word & 0xFFFFu), count = (int32_t)((word >> 16) & 0xFFFFu);
    if ((word >> 32) != (generation & 0xFFFFFFFFu) || next >= count) return -1;
    if (__atomic_compare_exchange_n(&pool->claim, &word, word + 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
      *num_tasks = count;
      return next;
    }
  }
}

/* Runs the tasks this thread can claim of run `generation`; nonzero if it finished
 * the run's last task. */
static int run_tasks(sophon_thread_pool* pool, uint64_t generation) {
  int32_t num_tasks, task, last = 0;
  while ((task = claim_task(pool, generation, &num_tasks)) >= 0) {
    pool->fn(pool->ctx, task, num_tasks);
    last = __atomic_add_fetch(&pool->done, 1, __ATOMIC_ACQ_REL) == num_tasks;
  }
  return last;
}

static void* worker_main(void* arg_ptr) {
  worker_arg* arg = (worker_arg*)arg_ptr;
  sophon_thread_pool* pool = arg->pool;
  uint64_t seen = 0;
  free(arg);
  for (;;) {
    if (!spin_for_generation(pool, seen)) {
      pthread_mutex_lock(&pool->lock);
      while (!__atomic_load_n(&pool->shutdown, __ATOMIC_ACQUIRE) &&
             __atomic_load_n(&pool->generation, __ATOMIC_ACQUIRE) == seen)
        pthread_cond_wait(&pool->wake, &pool->lock);
      pthread_mutex_unlock(&pool->lock);
    }
    if (__atomic_load_n(&pool->shutdown, __ATOMIC_ACQUIRE)) break;
    seen = __atomic_load_n(&pool->generation, __ATOMIC_ACQUIRE);
    if (run_tasks(pool, seen)) {
      /* under the lock: the caller checks done under it before sleeping */
      pthread_mutex_lock(&pool->lock);
      pthread_cond_signal(&pool->done_cond);
      pthread_mutex_unlock(&pool->lock);
    }
  }
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
  pool->owner = getpid();
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done_cond, NULL);
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
  if (pool->owner != getpid()) { /* a forked child: the workers are not here */
    free(pool->workers);
    free(pool);
    return;
  }
  pthread_mutex_lock(&pool->lock);
  __atomic_store_n(&pool->shutdown, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  for (i = 0; i < pool->started; ++i) pthread_join(pool->workers[i], NULL);
  pthread_cond_destroy(&pool->done_cond);
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
  int64_t deadline;
  uint64_t generation;
  uint32_t polls = 0;
  if (pool == NULL || num_tasks <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  if (num_tasks > pool->size) num_tasks = pool->size;
  if (pool->owner != getpid()) { /* a forked child: no workers, run every task here */
    int32_t task;
    for (task = 0; task < num_tasks; ++task) fn(ctx, task, num_tasks);
    return;
  }
  pool->fn = fn;
  pool->ctx = ctx;
  __atomic_store_n(&pool->done, 0, __ATOMIC_RELAXED);
  generation = __atomic_load_n(&pool->generation, __ATOMIC_RELAXED) + 1;
  __atomic_store_n(&pool->claim, (generation & 0xFFFFFFFFu) << 32 | (uint64_t)num_tasks << 16,
                   __ATOMIC_RELEASE);
  pthread_mutex_lock(&pool->lock);
  __atomic_store_n(&pool->generation, generation, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  run_tasks(pool, generation);
  deadline = now_ns() + SPIN_NS;
  while (__atomic_load_n(&pool->done, __ATOMIC_ACQUIRE) < num_tasks) {
    cpu_relax();
    if ((++polls & 63u) != 0) continue;
    sched_yield();
    if (now_ns() > deadline) {
      pthread_mutex_lock(&pool->lock);
      while (__atomic_load_n(&pool->done, __ATOMIC_ACQUIRE) < num_tasks)
        pthread_cond_wait(&pool->done_cond, &pool->lock);
      pthread_mutex_unlock(&pool->lock);
      break;
    }
  }
}

int32_t sophon_online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? (n > 1024 ? 1024 : (int32_t)n) : 1;
}
