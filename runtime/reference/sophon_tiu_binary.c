/*
 * sophon_tiu_binary.c - TIU binary element-wise instruction: add, sub, mul, max,
 * min, div and prelu (a > 0 ? a : a * slope) with broadcast (+ fused activation).
 *
 * out may alias an input exactly (same addr, shape, dtype and layout: in place);
 * any other overlap is rejected. Every element is read before it is written.
 *
 * The f32 kernel here is the specification; fast/sophon_fast_eltwise.c holds a
 * fast twin with bit-identical results, used unless the device is in reference mode.
 */
#include "reference/sophon_tiu_activation.h"
#include "reference/sophon_reference.h"

/* ------------------------------------------------------------- binary */

static inline float binary_f32(sophon_binary_op op, float x, float y) {
  switch (op) {
    case SOPHON_BINARY_ADD: return x + y;
    case SOPHON_BINARY_SUB: return x - y;
    case SOPHON_BINARY_MUL: return x * y;
    /* IEEE 754-2019 maximum / minimum: NaN if either operand is NaN */
    case SOPHON_BINARY_MAX: return x != x || y != y ? x + y : (x > y ? x : y);
    case SOPHON_BINARY_MIN: return x != x || y != y ? x + y : (x < y ? x : y);
    case SOPHON_BINARY_DIV: return x / y;
    case SOPHON_BINARY_PRELU: return x > 0.0f ? x : x * y;
  }
  return 0.0f;
}

/* Element steps of a broadcast operand along h and w (0 on a broadcast dim). */
typedef struct {
  int64_t h_step, w_step;
} broadcast_steps;

static broadcast_steps broadcast_steps_of(const sophon_local* t) {
  broadcast_steps s;
  s.h_step = t->h == 1 ? 0 : t->w;
  s.w_step = t->w == 1 ? 0 : 1;
  return s;
}

void sophon_ref_binary_f32(sophon_device* dev, const sophon_local* out,
                           const sophon_local* a, const sophon_local* b,
                           sophon_binary_op op, const sophon_activation* act) {
  sophon_view out_v, a_v, b_v;
  const broadcast_steps a_steps = broadcast_steps_of(a), b_steps = broadcast_steps_of(b);
  int32_t batch, channel, y, x;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&a_v, dev, a);
  sophon_view_init(&b_v, dev, b);
  for (batch = 0; batch < out->n; ++batch) {
    for (channel = 0; channel < out->c; ++channel) {
      /* a broadcast channel is channel 0, in lane 0 */
      const float* a_data =
          sophon_view_f32(&a_v, a->n == 1 ? 0 : batch, a->c == 1 ? 0 : channel);
      const float* b_data =
          sophon_view_f32(&b_v, b->n == 1 ? 0 : batch, b->c == 1 ? 0 : channel);
      float* out_data = sophon_view_f32(&out_v, batch, channel);
      for (y = 0; y < out->h; ++y) {
        const float* a_row = a_data + y * a_steps.h_step;
        const float* b_row = b_data + y * b_steps.h_step;
        float* out_row = out_data + (int64_t)y * out->w;
        for (x = 0; x < out->w; ++x) {
          const float v = binary_f32(op, a_row[x * a_steps.w_step], b_row[x * b_steps.w_step]);
          out_row[x] = sophon_activate_f32(act, v);
        }
      }
    }
  }
}

sophon_status sophon_check_broadcast(sophon_device* dev, const char* op, const char* name,
                                     const sophon_local* t, const sophon_local* out) {
  if ((t->n != out->n && t->n != 1) || (t->c != out->c && t->c != 1) ||
      (t->h != out->h && t->h != 1) || (t->w != out->w && t->w != 1))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s shape (%d,%d,%d,%d) does not broadcast to out shape "
                            "(%d,%d,%d,%d) (each dim must equal out's or be 1)",
                            op, name, (int)t->n, (int)t->c, (int)t->h, (int)t->w,
                            (int)out->n, (int)out->c, (int)out->h, (int)out->w);
  return SOPHON_OK;
}

/* tiu_binary's checks (operands: out, a, b, binary_op, act); the instruction table
 * (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_binary(sophon_device* dev, const char* op,
                                      const sophon_operands* o) {
  const sophon_local *out = o->out, *a = o->a, *b = o->b;
  const sophon_binary_op bop = o->binary_op;
  const sophon_activation* act = o->act;
  sophon_status s;

  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "b", b)) != SOPHON_OK) return s;
  if ((int)bop < (int)SOPHON_BINARY_ADD || (int)bop > (int)SOPHON_BINARY_PRELU)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown binary op %d", op, (int)bop);
  if ((s = sophon_check_activation(dev, op, act)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, "a", a, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, "b", b, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_tiu_dtype(dev, op, out->dtype)) != SOPHON_OK) return s;
  if ((s = sophon_check_broadcast(dev, op, "a", a, out)) != SOPHON_OK) return s;
  if ((s = sophon_check_broadcast(dev, op, "b", b, out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "b", b)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint_or_same(dev, op, out, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint_or_same(dev, op, out, "b", b)) != SOPHON_OK) return s;

  return SOPHON_OK;
}
