/*
 * sophon_tiu_reduce.c - TIU reduction over h: out[n, c, 0, w] = reduce over y of
 * in[n, c, y, w] (sum, mean, max, min). The compiler maps any run of adjacent
 * tensor axes onto h (the axes before it onto c, the lanes; those after onto w),
 * as it does for softmax.
 *
 * Fixed order: y = 0, 1, ... in f32; MEAN is that sum divided by H (TVM's
 * topi.sum then divide).
 */
#include "reference/sophon_reference.h"

void sophon_ref_reduce_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           sophon_reduce_kind kind) {
  sophon_plane_walk walk;
  const int32_t rows = in->h, width = in->w;
  int32_t x, y;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const float* in_data = (const float*)(const void*)walk.in.base;
    float* out_data = (float*)(void*)walk.out.base;
    for (x = 0; x < width; ++x) {
      float acc = in_data[x];
      for (y = 1; y < rows; ++y) {
        const float v = in_data[(int64_t)y * width + x];
        switch (kind) {
          case SOPHON_REDUCE_MAX: acc = v > acc ? v : acc; break;
          case SOPHON_REDUCE_MIN: acc = v < acc ? v : acc; break;
          default: acc += v; break; /* SUM, MEAN */
        }
      }
      out_data[x] = kind == SOPHON_REDUCE_MEAN ? acc / (float)rows : acc;
    }
  }
}

/* out is in (N, C, H, W) reduced over h, (N, C, 1, W); both within local memory
 * and apart. Shared with the int8 reductions (sophon_tiu_reduce_int8.c). */
sophon_status sophon_check_reduced_over_h(sophon_device* dev, const char* op,
                                          const sophon_local* out, const sophon_local* in) {
  sophon_status s;
  if (out->n != in->n || out->c != in->c || out->h != 1 || out->w != in->w)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out shape (%d,%d,%d,%d) is not in (%d,%d,%d,%d) reduced over h",
                            op, (int)out->n, (int)out->c, (int)out->h, (int)out->w, (int)in->n,
                            (int)in->c, (int)in->h, (int)in->w);
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  return sophon_check_disjoint(dev, op, out, "in", in);
}

/* tiu_reduce's checks (operands: out, a = in, reduce_kind); the instruction table
 * (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_reduce(sophon_device* dev, const char* op,
                                      const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  sophon_status s;

  if ((int)o->reduce_kind < 0 || o->reduce_kind > SOPHON_REDUCE_MIN)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown reduction %d", op,
                            (int)o->reduce_kind);
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, "in", in, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_tiu_dtype(dev, op, out->dtype)) != SOPHON_OK) return s;
  return sophon_check_reduced_over_h(dev, op, out, in);
}
