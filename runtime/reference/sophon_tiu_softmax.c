/*
 * sophon_tiu_softmax.c - TIU softmax over h (each column of a channel's h x w
 * plane is one vector).
 *
 * out may alias in exactly (in place); any other overlap is rejected.
 */
#include <math.h>

#include "reference/sophon_reference.h"

/* ------------------------------------------------------------ softmax */

void sophon_ref_softmax_f32(sophon_device* dev, const sophon_local* out,
                            const sophon_local* in) {
  sophon_plane_walk walk;
  const int32_t rows = out->h, width = out->w;
  int32_t x, y;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const float* in_data = (const float*)(const void*)walk.in.base;
    float* out_data = (float*)(void*)walk.out.base;
    /* column x is one softmax vector: elements y * width + x, y = 0 .. rows-1 */
    for (x = 0; x < width; ++x) {
      float max_value = in_data[x], sum = 0.0f;
      for (y = 1; y < rows; ++y) {
        const float v = in_data[(int64_t)y * width + x];
        if (v > max_value) max_value = v;
      }
      for (y = 0; y < rows; ++y) {
        const int64_t i = (int64_t)y * width + x;
        const float e = expf(in_data[i] - max_value);
        out_data[i] = e; /* in place: in_data[i] was read first */
        sum += e;
      }
      for (y = 0; y < rows; ++y) out_data[(int64_t)y * width + x] /= sum;
    }
  }
}

/* tiu_softmax's checks (operands: out, a = in); the instruction table (isa/sophon_isa.c)
 * runs them before any kernel. */
sophon_status sophon_check_tiu_softmax(sophon_device* dev, const char* op,
                                       const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  sophon_status s;

  if ((s = sophon_check_unary(dev, op, out, in)) != SOPHON_OK) return s;

  return SOPHON_OK;
}
