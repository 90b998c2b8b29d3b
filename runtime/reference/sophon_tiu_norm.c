/*
 * sophon_tiu_norm.c - TIU normalisation over h (layer norm, instance norm): for
 * each (n, c, w) column of h values,
 *   mean = sum_y x / H,  var = sum_y (x - mean)^2 / H   (two passes, y in order, f32)
 *   out  = (x - mean) * (1 / sqrt(var + epsilon)) * gamma + beta
 * gamma and beta (either may be absent: 1 and 0) broadcast as in tiu_binary: each
 * of their c, h, w is 1 or in's, n is 1; a broadcast channel is read from lane 0.
 * The compiler puts the normalised axes on h: a layer norm over channels (NHWC,
 * axis -1) has gamma along h, an instance norm (NCHW) has gamma along c.
 */
#include <math.h>

#include "reference/sophon_reference.h"

/* Element (c, y, x) of a broadcast (1, c|1, h|1, w|1) operand. */
static float broadcast_at(const sophon_view* v, int32_t c, int32_t y, int32_t x) {
  const float* plane = sophon_view_f32(v, 0, v->c == 1 ? 0 : c);
  return plane[(int64_t)(v->h == 1 ? 0 : y) * v->w + (v->w == 1 ? 0 : x)];
}

void sophon_ref_norm_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                         const sophon_local* gamma, const sophon_local* beta,
                         const sophon_norm_params* p) {
  sophon_view gamma_v, beta_v;
  sophon_plane_walk walk;
  const int32_t rows = in->h, width = in->w;
  int32_t x, y;

  if (gamma != NULL) sophon_view_init(&gamma_v, dev, gamma);
  if (beta != NULL) sophon_view_init(&beta_v, dev, beta);
  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const float* in_data = (const float*)(const void*)walk.in.base;
    float* out_data = (float*)(void*)walk.out.base;
    for (x = 0; x < width; ++x) {
      float sum = 0.0f, squares = 0.0f, mean, inv_std;
      for (y = 0; y < rows; ++y) sum += in_data[(int64_t)y * width + x];
      mean = sum / (float)rows;
      for (y = 0; y < rows; ++y) {
        const float d = in_data[(int64_t)y * width + x] - mean;
        squares += d * d;
      }
      inv_std = 1.0f / sqrtf(squares / (float)rows + p->epsilon);
      for (y = 0; y < rows; ++y) {
        const int64_t i = (int64_t)y * width + x;
        float v = (in_data[i] - mean) * inv_std; /* in place: in_data[i] read first */
        if (gamma != NULL) v *= broadcast_at(&gamma_v, walk.channel, y, x);
        if (beta != NULL) v += broadcast_at(&beta_v, walk.channel, y, x);
        out_data[i] = v;
      }
    }
  }
}

static sophon_status check_affine(sophon_device* dev, const char* op, const char* name,
                                  const sophon_local* t, const sophon_local* in) {
  sophon_status s;
  if (t == NULL) return SOPHON_OK;
  if ((s = sophon_check_local(dev, op, name, t)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, name, t, "in", in)) != SOPHON_OK) return s;
  if (t->n != 1 || (t->c != 1 && t->c != in->c) || (t->h != 1 && t->h != in->h) ||
      (t->w != 1 && t->w != in->w))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s shape (%d,%d,%d,%d) does not broadcast to in (%d,%d,%d,%d)", op,
                            name, (int)t->n, (int)t->c, (int)t->h, (int)t->w, (int)in->n,
                            (int)in->c, (int)in->h, (int)in->w);
  return sophon_check_bounds(dev, op, name, t);
}

/* tiu_norm's checks (operands: out, a = in, b = gamma or NULL, c = beta or NULL,
 * norm); the instruction table (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_norm(sophon_device* dev, const char* op, const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a, *gamma = o->b, *beta = o->c;
  sophon_status s;

  if (o->norm == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params are NULL", op);
  if (!(o->norm->epsilon >= 0.0f))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: epsilon %g is negative or NaN", op,
                            (double)o->norm->epsilon);
  if ((s = sophon_check_unary(dev, op, out, in)) != SOPHON_OK) return s;
  if ((s = check_affine(dev, op, "gamma", gamma, in)) != SOPHON_OK) return s;
  if ((s = check_affine(dev, op, "beta", beta, in)) != SOPHON_OK) return s;
  if (gamma != NULL && (s = sophon_check_disjoint(dev, op, out, "gamma", gamma)) != SOPHON_OK)
    return s;
  if (beta != NULL && (s = sophon_check_disjoint(dev, op, out, "beta", beta)) != SOPHON_OK)
    return s;
  return SOPHON_OK;
}
