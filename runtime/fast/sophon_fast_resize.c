/*
 * sophon_fast_resize.c - the fast twin of the reference f32 nearest resize
 * (reference/sophon_tiu_resize.c), bit-identical to it: both only copy elements.
 *
 * The reference finds the source pixel of every output element with f32
 * coordinate arithmetic (sophon_resize_nearest_index), per element. This kernel
 * finds the source column of every output column and the source row of every
 * output row once per instruction, with the same function, then builds each
 * output row as a gather of its source row, or as a copy of the output row above
 * it when both read the same source row (an upsampling repeats each row). Planes
 * are split over the device's threads. Bilinear runs the reference (-1).
 */
#include "fast/sophon_fast.h"

#include <string.h>

#include "reference/sophon_reference.h"

typedef struct {
  sophon_view out_v, in_v;
  int32_t out_h, out_w, in_w;
  const int32_t* src_x; /* out_w source columns */
  const int32_t* src_y; /* out_h source rows, relative to in's first row */
} resize_job;

static void resize_task(void* ctx, int32_t task, int32_t tasks) {
  const resize_job* j = (const resize_job*)ctx;
  int64_t begin, end, plane;
  int32_t y, x;
  sophon_task_range((int64_t)j->out_v.n * j->out_v.c, task, tasks, &begin, &end);
  for (plane = begin; plane < end; ++plane) {
    const int32_t batch = (int32_t)(plane / j->out_v.c), channel = (int32_t)(plane % j->out_v.c);
    const float* in = sophon_view_f32(&j->in_v, batch, channel);
    float* out_row = sophon_view_f32(&j->out_v, batch, channel);
    for (y = 0; y < j->out_h; ++y, out_row += j->out_w) {
      const float* in_row = in + (int64_t)j->src_y[y] * j->in_w;
      if (y > 0 && j->src_y[y] == j->src_y[y - 1]) {
        memcpy(out_row, out_row - j->out_w, (size_t)j->out_w * sizeof(float));
        continue;
      }
      for (x = 0; x < j->out_w; ++x) out_row[x] = in_row[j->src_x[x]];
    }
  }
}

int sophon_fast_resize_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_resize_params* p) {
  resize_job j;
  int32_t* index;
  int32_t i;
  if (p->method != SOPHON_RESIZE_NEAREST) return -1;
  /* int32 indices in the float scratch (the same size) */
  index = (int32_t*)(void*)sophon_device_scratch(dev, (size_t)out->w + (size_t)out->h);
  if (index == NULL) return -1;
  for (i = 0; i < out->w; ++i) index[i] = sophon_resize_nearest_index(p, i, in->w, out->w);
  for (i = 0; i < out->h; ++i)
    index[out->w + i] = sophon_resize_nearest_index(p, p->out_row0 + i, p->in_h, p->out_h) -
                        p->in_row0;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  j.out_h = out->h;
  j.out_w = out->w;
  j.in_w = in->w;
  j.src_x = index;
  j.src_y = index + out->w;
  sophon_parallel_run(dev->pool,
                      sophon_tasks_for(dev, (uint64_t)out->n * out->c * out->h * out->w,
                                       (int64_t)out->n * out->c),
                      resize_task, &j);
  return 0;
}
