/*
 * sophon_fast_activation.c - fast f32 activation instruction (tiu_activation),
 * beside the reference kernel of reference/sophon_tiu_activation.c (same operands,
 * already checked by the instruction).
 *
 * Tasks own (batch, channel) planes of out; a plane is h * w floats back to back.
 * The cheap kinds run 8 floats per AVX2 vector, each lane doing the reference's
 * own operations in the reference's order, so results are bit-identical (a NaN may
 * carry another payload):
 *   none, relu, clip, leaky relu, hard-sigmoid, hard-swish
 *                  sophon_act_avx2 (sophon_fast.h), as the conv, depthwise and
 *                  binary kernels apply them
 *   abs, neg       the sign bit cleared / flipped, as fabsf and unary minus
 *   sqrt, rsqrt, reciprocal   sqrt_ps and div_ps, correctly rounded like sqrtf and /
 * The special functions (exp, log, erf, tanh, sigmoid and the kinds built on them:
 * SiLU, GELU, Mish, ELU, softplus) call the reference's function per element: a
 * vector polynomial would not match the C library bit for bit. The exception is
 * sigmoid and SiLU with AVX-512: 16 at a time, within SOPHON_SIGMOID_ULPS ulp of
 * the reference (sophon_fast.h). Every element is computed once, by one task, so
 * results do not depend on the thread count.
 */
#include "fast/sophon_fast.h"

typedef struct {
  sophon_view out_v, in_v;
  int64_t plane;
  const sophon_activation* act;
  int use_avx2;
  int use_avx512; /* the sigmoid family with AVX-512 */
} activation_job;

/* 1 for the kinds activation_avx2 computes in registers. */
static int vector_kind(const sophon_activation* act) {
  switch (act->kind) {
    case SOPHON_ACT_NONE:
    case SOPHON_ACT_RELU:
    case SOPHON_ACT_CLIP:
    case SOPHON_ACT_LEAKY_RELU:
    case SOPHON_ACT_HARD_SIGMOID:
    case SOPHON_ACT_HARD_SWISH:
    case SOPHON_ACT_ABS:
    case SOPHON_ACT_NEG:
    case SOPHON_ACT_SQRT:
    case SOPHON_ACT_RSQRT:
    case SOPHON_ACT_RECIPROCAL:
      return 1;
    default:
      return 0;
  }
}

#if SOPHON_X86_DISPATCH
/* sophon_activate_f32 on 8 floats for the vector_kind kinds. */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline __m256 activation_avx2(
    __m256 x, const sophon_activation* act) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  switch (act->kind) {
    case SOPHON_ACT_ABS: return _mm256_andnot_ps(sign, x);
    case SOPHON_ACT_NEG: return _mm256_xor_ps(sign, x);
    case SOPHON_ACT_SQRT: return _mm256_sqrt_ps(x);
    case SOPHON_ACT_RSQRT: return _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_sqrt_ps(x));
    case SOPHON_ACT_RECIPROCAL: return _mm256_div_ps(_mm256_set1_ps(1.0f), x);
    default: return sophon_act_avx2(x, act);
  }
}

SOPHON_AVX2 static void activation_span_avx2(float* out, const float* in, int64_t count,
                                             const sophon_activation* act) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8)
    _mm256_storeu_ps(out + i, activation_avx2(_mm256_loadu_ps(in + i), act));
  if (i < count) {
    const int32_t rest = (int32_t)(count - i);
    const __m256 x = _mm256_maskload_ps(in + i, sophon_tail_mask_avx2(rest));
    sophon_store_first_avx2(out + i, activation_avx2(x, act), rest);
  }
}

/* out[i] = act(in[i] (+ *bias)) for the sigmoid family, 16 floats per step (no add
 * without a bias: -0 + 0 would lose the sign SiLU keeps). */
SOPHON_AVX512 static void sigmoid_family_span_avx512(float* out, const float* in, int64_t count,
                                                     const float* bias,
                                                     const sophon_activation* act) {
  const __m512 b = _mm512_set1_ps(bias != NULL ? *bias : 0.0f);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __m512 x = _mm512_loadu_ps(in + i);
    if (bias != NULL) x = _mm512_add_ps(x, b);
    _mm512_storeu_ps(out + i, sophon_sigmoid_family_avx512(x, act));
  }
  if (i < count) {
    const __mmask16 mask = (__mmask16)((1u << (count - i)) - 1u);
    __m512 x = _mm512_maskz_loadu_ps(mask, in + i);
    if (bias != NULL) x = _mm512_add_ps(x, b);
    _mm512_mask_storeu_ps(out + i, mask, sophon_sigmoid_family_avx512(x, act));
  }
}
#endif

void sophon_finish_span_f32(int avx512, float* data, int64_t count, const float* bias,
                            const sophon_activation* act) {
#if SOPHON_X86_DISPATCH
  if (avx512 && sophon_act_is_sigmoid_family(act)) {
    sigmoid_family_span_avx512(data, data, count, bias, act);
    return;
  }
#else
  (void)avx512;
#endif
  if (bias != NULL)
    sophon_finish_f32(data, count, *bias, act);
  else
    sophon_activate_span_f32(data, count, act);
}

/* One task: planes [begin, end) of out in (batch, channel) order. */
static void activation_task(void* ctx, int32_t task, int32_t tasks) {
  const activation_job* j = (const activation_job*)ctx;
  const int32_t channels = j->out_v.c;
  int64_t begin, end, index, i;
  sophon_task_range((int64_t)j->out_v.n * channels, task, tasks, &begin, &end);
  for (index = begin; index < end; ++index) {
    const int32_t batch = (int32_t)(index / channels), channel = (int32_t)(index % channels);
    const float* in = sophon_view_f32(&j->in_v, batch, channel);
    float* out = sophon_view_f32(&j->out_v, batch, channel);
#if SOPHON_X86_DISPATCH
    if (j->use_avx512) {
      sigmoid_family_span_avx512(out, in, j->plane, NULL, j->act);
      continue;
    }
    if (j->use_avx2) {
      activation_span_avx2(out, in, j->plane, j->act);
      continue;
    }
#endif
    for (i = 0; i < j->plane; ++i) out[i] = sophon_activate_f32(j->act, in[i]);
  }
}

int sophon_fast_activation_f32(sophon_device* dev, const sophon_local* out,
                               const sophon_local* in, const sophon_activation* act) {
  activation_job j;
  const int64_t planes = (int64_t)out->n * out->c;
  sophon_view_init(&j.out_v, dev, out);
  sophon_view_init(&j.in_v, dev, in);
  j.plane = (int64_t)out->h * out->w;
  j.act = act;
  j.use_avx2 = dev->cpu_avx2 && vector_kind(act);
  j.use_avx512 = dev->cpu_avx512 && sophon_act_is_sigmoid_family(act);
  sophon_parallel_run(dev->pool, sophon_tasks_for(dev, (uint64_t)(planes * j.plane), planes),
                      activation_task, &j);
  return 0;
}
