/*
 * sophon_tiu_activation.c - the f32 activation functions (sophon_tiu_activation.h) and
 * the TIU activation instruction (every sophon_act_kind).
 *
 * out may alias in exactly (in place); any other overlap is rejected.
 */
#include <math.h>

#include "reference/sophon_tiu_activation.h"
#include "reference/sophon_reference.h"

float sophon_sigmoid_f32(float x) { return 1.0f / (1.0f + expf(-x)); }
float sophon_tanh_f32(float x) { return tanhf(x); }

/* x * (0.5 + erf(x * sqrt(1/2)) * 0.5), in the order of TVM's legalisation of
 * relax.nn.gelu and of its TFLite import (float32(sqrt(1/2)) = 0.70710677). */
float sophon_gelu_f32(float x) { return x * (0.5f + erff(x * 0.70710677f) * 0.5f); }

/* 0.5 * x * (1 + tanh(sqrt(2/pi) * x * (1 + 0.044715 * x * x))), as relax.nn.gelu_tanh. */
float sophon_gelu_tanh_f32(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608f * x * (1.0f + 0.044715f * x * x)));
}

/* log(1 + exp(x)) without overflow or underflow: max(x, 0) + log1p(exp(-|x|)).
 * Above x = 17 the second term is below half an ulp of x and the result is x;
 * below, it differs from the naive log(exp(x) + 1) only where 1 + exp(x) rounds
 * to 1 (there the naive form gives 0, this one exp(x)). */
float sophon_softplus_f32(float x) { return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x))); }

float sophon_mish_f32(float x) { return x * tanhf(sophon_softplus_f32(x)); }

/* alpha * (exp(x) - 1) below 0 as ONNX defines it (not expm1: the importers'
 * chains compute exp(x) and subtract 1 too). */
float sophon_elu_f32(float x, float alpha) { return x > 0.0f ? x : alpha * (expf(x) - 1.0f); }

/* --------------------------------------------------------- activation */

void sophon_ref_activation_f32(sophon_device* dev, const sophon_local* out,
                               const sophon_local* in, const sophon_activation* act) {
  sophon_plane_walk walk;
  const int64_t plane = (int64_t)out->h * out->w;
  int64_t i;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const float* in_data = (const float*)(const void*)walk.in.base;
    float* out_data = (float*)(void*)walk.out.base;
    for (i = 0; i < plane; ++i) out_data[i] = sophon_activate_f32(act, in_data[i]);
  }
}

/* Checks shared by the unary instructions (activation, softmax). */
sophon_status sophon_check_unary(sophon_device* dev, const char* op, const sophon_local* out,
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

/* tiu_activation's checks (operands: out, a = in, act); the instruction table
 * (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_activation(sophon_device* dev, const char* op,
                                          const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  const sophon_activation* act = o->act;
  sophon_status s;

  if (act == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: act is NULL", op);
  if ((s = sophon_check_activation(dev, op, act)) != SOPHON_OK) return s;
  if ((s = sophon_check_unary(dev, op, out, in)) != SOPHON_OK) return s;

  return SOPHON_OK;
}
