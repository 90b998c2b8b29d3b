/*
 * sophon_tiu_lrn.c - TIU local response normalisation across channels (AlexNet,
 * GoogLeNet), as ONNX LRN defines it and TVM's importer computes it:
 *   sq  = sum_{k = 0 .. size-1} in[n, c - size/2 + k, h, w]^2   (channels outside
 *         [0, C) count as 0; k in order, f32)
 *   out = in / (bias + alpha * (sq / size))^beta
 * The window crosses lanes (channel c lives in lane c % npu_num).
 */
#include <math.h>

#include "reference/sophon_reference.h"

void sophon_ref_lrn_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                        const sophon_lrn_params* p) {
  sophon_plane_walk walk;
  const int64_t plane = (int64_t)in->h * in->w;
  const int32_t half = p->size / 2;
  int32_t k;
  int64_t i;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const float* in_data = (const float*)(const void*)walk.in.base;
    float* out_data = (float*)(void*)walk.out.base;
    for (i = 0; i < plane; ++i) {
      float sq = 0.0f;
      for (k = 0; k < p->size; ++k) {
        const int32_t source = walk.channel - half + k;
        if (source >= 0 && source < in->c) {
          const float v = sophon_view_f32(&walk.in_v, walk.batch, source)[i];
          sq += v * v;
        }
      }
      out_data[i] = in_data[i] / powf(p->bias + p->alpha * (sq / (float)p->size), p->beta);
    }
  }
}

/* tiu_lrn's checks (operands: out, a = in, lrn); out must not overlap in (the window
 * reads neighbouring channels after their own output would be written). */
sophon_status sophon_check_tiu_lrn(sophon_device* dev, const char* op, const sophon_operands* o) {
  const sophon_lrn_params* p = o->lrn;
  sophon_status s;

  if (p == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params are NULL", op);
  if (p->size <= 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: size %d must be positive", op,
                            (int)p->size);
  if (!isfinite(p->alpha) || !isfinite(p->beta) || !isfinite(p->bias))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: alpha, beta and bias must be finite", op);
  if ((s = sophon_check_local(dev, op, "out", o->out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", o->a)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, "in", o->a, "out", o->out)) != SOPHON_OK) return s;
  if ((s = sophon_check_tiu_dtype(dev, op, o->out->dtype)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_shape(dev, op, "out", o->out, "in", o->a)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "out", o->out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", o->a)) != SOPHON_OK) return s;
  return sophon_check_disjoint(dev, op, o->out, "in", o->a);
}
