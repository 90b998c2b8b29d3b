/*
 * sophon_tiu_activation.h - the f32 activation functions of the instruction set
 * (sophon_tiu_activation.c defines the special functions), applied by the reference
 * kernels and, bit for bit, by the fast ones (fast/sophon_fast.h).
 */
#ifndef SOPHON_TIU_ACTIVATION_H_
#define SOPHON_TIU_ACTIVATION_H_

#include <math.h>

#include "sophon.h"

/* The special functions and the activations built on them
 * (sophon_tiu_activation.c; formulas in sophon.h's sophon_act_kind). */
float sophon_sigmoid_f32(float x);
float sophon_tanh_f32(float x);
float sophon_gelu_f32(float x);
float sophon_gelu_tanh_f32(float x);
float sophon_softplus_f32(float x);
float sophon_mish_f32(float x);
float sophon_elu_f32(float x, float alpha);

/* min(max(r, lo), hi) as r < lo ? lo : (r > hi ? hi : r): NaN stays NaN. */
static inline float sophon_clamp_f32(float r, float lo, float hi) {
  return r < lo ? lo : (r > hi ? hi : r);
}

/* act may be NULL (none). The caller checked it with sophon_check_activation.
 * The cheap kinds are written here, in the order of operations the fast kernels
 * repeat lane by lane (fast/sophon_fast.h, fast/sophon_fast_activation.c).
 * NaN in, NaN out, for every kind (sophon.h, "NaN and infinities"). */
static inline float sophon_activate_f32(const sophon_activation* act, float x) {
  if (act == NULL) return x;
  switch (act->kind) {
    case SOPHON_ACT_RELU: return x > 0.0f || x != x ? x : 0.0f;
    case SOPHON_ACT_CLIP: return sophon_clamp_f32(x, act->lo, act->hi);
    case SOPHON_ACT_LEAKY_RELU: return x >= 0.0f ? x : act->alpha * x;
    case SOPHON_ACT_SIGMOID: return sophon_sigmoid_f32(x);
    case SOPHON_ACT_TANH: return sophon_tanh_f32(x);
    case SOPHON_ACT_SILU: return x * sophon_sigmoid_f32(x);
    case SOPHON_ACT_HARD_SIGMOID: return sophon_clamp_f32(act->alpha * x + act->beta, 0.0f, 1.0f);
    case SOPHON_ACT_HARD_SWISH: return x * sophon_clamp_f32(x + 3.0f, 0.0f, 6.0f) / 6.0f;
    case SOPHON_ACT_GELU: return sophon_gelu_f32(x);
    case SOPHON_ACT_GELU_TANH: return sophon_gelu_tanh_f32(x);
    case SOPHON_ACT_MISH: return sophon_mish_f32(x);
    case SOPHON_ACT_ELU: return sophon_elu_f32(x, act->alpha);
    case SOPHON_ACT_SOFTPLUS: return sophon_softplus_f32(x);
    case SOPHON_ACT_SQRT: return sqrtf(x);
    case SOPHON_ACT_RSQRT: return 1.0f / sqrtf(x);
    case SOPHON_ACT_EXP: return expf(x);
    case SOPHON_ACT_LOG: return logf(x);
    case SOPHON_ACT_RECIPROCAL: return 1.0f / x;
    case SOPHON_ACT_ABS: return fabsf(x);
    case SOPHON_ACT_NEG: return -x;
    case SOPHON_ACT_ERF: return erff(x);
    case SOPHON_ACT_NONE:
    default: return x;
  }
}

#endif /* SOPHON_TIU_ACTIVATION_H_ */
