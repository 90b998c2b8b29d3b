/*
 * sophon_tiu_eltwise.c - TIU element-wise instructions: binary ops with
 * broadcast (+ fused activation), activations, and softmax over h.
 *
 * out may alias an input exactly (same addr, shape, dtype and layout: in place);
 * any other overlap is rejected. Every element is read before it is written.
 * Costs: sophon_cost_binary, sophon_cost_activation, sophon_cost_softmax.
 *
 * The f32 binary kernel here is the specification; sophon_fast_eltwise.c holds a
 * fast twin with bit-identical results, used unless the device is in reference mode.
 */
#include <math.h>

#include "chip/sophon_internal.h"

float sophon_sigmoid_f32(float x) { return 1.0f / (1.0f + expf(-x)); }
float sophon_tanh_f32(float x) { return tanhf(x); }

/* ------------------------------------------------------------- binary */

static inline float binary_f32(sophon_binary_op op, float x, float y) {
  switch (op) {
    case SOPHON_BINARY_ADD: return x + y;
    case SOPHON_BINARY_SUB: return x - y;
    case SOPHON_BINARY_MUL: return x * y;
    case SOPHON_BINARY_MAX: return x > y ? x : y;
    case SOPHON_BINARY_MIN: return x < y ? x : y;
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

static void binary_f32_kernel(sophon_device* dev, const sophon_local* out,
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

sophon_status sophon_tiu_binary(sophon_device* dev, const sophon_local* out,
                                const sophon_local* a, const sophon_local* b,
                                sophon_binary_op bop, const sophon_activation* act) {
  static const char* op = "tiu_binary";
  sophon_status s;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "a", a)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "b", b)) != SOPHON_OK) return s;
  if ((int)bop < (int)SOPHON_BINARY_ADD || (int)bop > (int)SOPHON_BINARY_MIN)
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

  switch (out->dtype) {
    case SOPHON_F32:
      if (dev->reference || sophon_fast_binary_f32(dev, out, a, b, bop, act) != 0)
        binary_f32_kernel(dev, out, a, b, bop, act);
      break;
    default: break; /* rejected by sophon_check_tiu_dtype */
  }

  sophon_count_tiu(dev, sophon_cost_binary(&dev->chip, out, act), 0);
  sophon_touch(dev, out);
  sophon_touch(dev, a);
  sophon_touch(dev, b);
  return SOPHON_OK;
}

/* --------------------------------------------------------- activation */

static void activation_f32_kernel(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* in, const sophon_activation* act) {
  sophon_view out_v, in_v;
  const int64_t plane = (int64_t)out->h * out->w;
  int32_t batch, channel;
  int64_t i;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  for (batch = 0; batch < out->n; ++batch) {
    sophon_channel_iter in_it = sophon_channel_begin(&in_v, batch, 0);
    sophon_channel_iter out_it = sophon_channel_begin(&out_v, batch, 0);
    for (channel = 0; channel < out->c; ++channel) {
      const float* in_data = (const float*)(const void*)in_it.base;
      float* out_data = (float*)(void*)out_it.base;
      for (i = 0; i < plane; ++i) out_data[i] = sophon_activate_f32(act, in_data[i]);
      sophon_channel_next(&in_v, &in_it);
      sophon_channel_next(&out_v, &out_it);
    }
  }
}

/* Checks shared by the unary instructions (activation, softmax). */
static sophon_status check_unary(sophon_device* dev, const char* op, const sophon_local* out,
                                 const sophon_local* in) {
  sophon_status s;
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, "in", in, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_tiu_dtype(dev, op, out->dtype)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_shape(dev, op, "out", out, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  return sophon_check_disjoint_or_same(dev, op, out, "in", in);
}

sophon_status sophon_tiu_activation(sophon_device* dev, const sophon_local* out,
                                    const sophon_local* in, const sophon_activation* act) {
  static const char* op = "tiu_activation";
  sophon_status s;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if (act == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: act is NULL", op);
  if ((s = sophon_check_activation(dev, op, act)) != SOPHON_OK) return s;
  if ((s = check_unary(dev, op, out, in)) != SOPHON_OK) return s;

  switch (out->dtype) {
    case SOPHON_F32: activation_f32_kernel(dev, out, in, act); break;
    default: break; /* rejected by sophon_check_tiu_dtype */
  }

  sophon_count_tiu(dev, sophon_cost_activation(&dev->chip, out, act), 0);
  sophon_touch(dev, out);
  sophon_touch(dev, in);
  return SOPHON_OK;
}

/* ------------------------------------------------------------ softmax */

static void softmax_f32_kernel(sophon_device* dev, const sophon_local* out,
                               const sophon_local* in) {
  sophon_view out_v, in_v;
  const int32_t rows = out->h, width = out->w;
  int32_t batch, channel, x, y;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  for (batch = 0; batch < out->n; ++batch) {
    sophon_channel_iter in_it = sophon_channel_begin(&in_v, batch, 0);
    sophon_channel_iter out_it = sophon_channel_begin(&out_v, batch, 0);
    for (channel = 0; channel < out->c; ++channel) {
      const float* in_data = (const float*)(const void*)in_it.base;
      float* out_data = (float*)(void*)out_it.base;
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
      sophon_channel_next(&in_v, &in_it);
      sophon_channel_next(&out_v, &out_it);
    }
  }
}

sophon_status sophon_tiu_softmax(sophon_device* dev, const sophon_local* out,
                                 const sophon_local* in) {
  static const char* op = "tiu_softmax";
  sophon_status s;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if ((s = check_unary(dev, op, out, in)) != SOPHON_OK) return s;

  switch (out->dtype) {
    case SOPHON_F32: softmax_f32_kernel(dev, out, in); break;
    default: break; /* rejected by sophon_check_tiu_dtype */
  }

  sophon_count_tiu(dev, sophon_cost_softmax(&dev->chip, out), 0);
  sophon_touch(dev, out);
  sophon_touch(dev, in);
  return SOPHON_OK;
}
