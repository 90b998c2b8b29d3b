/*
 * sophon_tiu_activation.h - the f32 activation functions of the instruction set
 * (sophon_tiu_activation.c defines sigmoid and tanh), applied by the reference
 * kernels and, bit for bit, by the fast ones (fast/sophon_fast.h).
 */
#ifndef SOPHON_TIU_ACTIVATION_H_
#define SOPHON_TIU_ACTIVATION_H_

#include "sophon.h"

float sophon_sigmoid_f32(float x);
float sophon_tanh_f32(float x);

/* act may be NULL (none). The caller checked it with sophon_check_activation. */
static inline float sophon_activate_f32(const sophon_activation* act, float x) {
  if (act == NULL) return x;
  switch (act->kind) {
    case SOPHON_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case SOPHON_ACT_CLIP: return x < act->lo ? act->lo : (x > act->hi ? act->hi : x);
    case SOPHON_ACT_LEAKY_RELU: return x >= 0.0f ? x : act->alpha * x;
    case SOPHON_ACT_SIGMOID: return sophon_sigmoid_f32(x);
    case SOPHON_ACT_TANH: return sophon_tanh_f32(x);
    case SOPHON_ACT_NONE:
    default: return x;
  }
}

#endif /* SOPHON_TIU_ACTIVATION_H_ */
