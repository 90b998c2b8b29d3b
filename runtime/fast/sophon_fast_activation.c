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
 *
 * Planes of fewer than 16 floats (a squeeze-excite's 1152 x 1 x 1 sigmoid) would
 * leave most of a vector's lanes idle and pay a plane's set-up per element (45 ns
 * an element on EfficientNet-B0's): tasks then own LMEM lanes, and the planes of
 * one lane (its channels c, c + npu, ...) are gathered into a buffer, computed as
 * one span and written back. The same function of each element, so the same bits.
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

/* out = act(in) over `count` floats with the job's path. */
static void activation_span(const activation_job* j, float* out, const float* in, int64_t count) {
  int64_t i;
#if SOPHON_X86_DISPATCH
  if (j->use_avx512) {
    sigmoid_family_span_avx512(out, in, count, NULL, j->act);
    return;
  }
  if (j->use_avx2) {
    activation_span_avx2(out, in, count, j->act);
    return;
  }
#endif
  for (i = 0; i < count; ++i) out[i] = sophon_activate_f32(j->act, in[i]);
}

/* Floats gathered from one lane at a time (SMALL_PLANE planes or more). */
#define SMALL_PLANE 16
#define GATHER_FLOATS 256

/* Plane `slot` of lane `lane` of batch item `batch` (channel slot * npu + lane). */
static inline float* lane_plane(const sophon_view* v, int64_t lane, int32_t batch, int32_t slot) {
  return (float*)(void*)(v->lane0 + lane * v->lane_bytes + (int64_t)batch * v->batch_bytes +
                         (int64_t)slot * v->channel_bytes);
}

/* One task of small planes: lanes [begin, end), each lane's planes (batch item by
 * batch item, slot by slot) gathered GATHER_FLOATS / plane at a time. */
static void activation_lanes_task(void* ctx, int32_t task, int32_t tasks) {
  const activation_job* j = (const activation_job*)ctx;
  const int32_t npu = j->out_v.npu_num, per_chunk = (int32_t)(GATHER_FLOATS / j->plane);
  float buffer[GATHER_FLOATS];
  int64_t begin, end, lane;
  int32_t batch, slot, s, k;
  sophon_task_range(j->out_v.c < npu ? j->out_v.c : npu, task, tasks, &begin, &end);
  for (lane = begin; lane < end; ++lane) {
    const int32_t slots = (int32_t)((j->out_v.c - 1 - lane) / npu + 1); /* its channels */
    for (batch = 0; batch < j->out_v.n; ++batch) {
      for (slot = 0; slot < slots; slot += per_chunk) {
        const int32_t count = slots - slot < per_chunk ? slots - slot : per_chunk;
        for (s = 0; s < count; ++s) {
          const float* in = lane_plane(&j->in_v, lane, batch, slot + s);
          for (k = 0; k < j->plane; ++k) buffer[s * j->plane + k] = in[k];
        }
        activation_span(j, buffer, buffer, count * j->plane);
        for (s = 0; s < count; ++s) {
          float* out = lane_plane(&j->out_v, lane, batch, slot + s);
          for (k = 0; k < j->plane; ++k) out[k] = buffer[s * j->plane + k];
        }
      }
    }
  }
}

/* One task: planes [begin, end) of out in (batch, channel) order. */
static void activation_task(void* ctx, int32_t task, int32_t tasks) {
  const activation_job* j = (const activation_job*)ctx;
  const int32_t channels = j->out_v.c;
  int64_t begin, end, index;
  sophon_task_range((int64_t)j->out_v.n * channels, task, tasks, &begin, &end);
  for (index = begin; index < end; ++index) {
    const int32_t batch = (int32_t)(index / channels), channel = (int32_t)(index % channels);
    const float* in = sophon_view_f32(&j->in_v, batch, channel);
    activation_span(j, sophon_view_f32(&j->out_v, batch, channel), in, j->plane);
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
  if (j.plane < SMALL_PLANE && out->c > 1) {
    const int32_t lanes = out->c < j.out_v.npu_num ? out->c : j.out_v.npu_num;
    sophon_parallel_run(dev->pool, sophon_tasks_for(dev, (uint64_t)(planes * j.plane), lanes),
                        activation_lanes_task, &j);
    return 0;
  }
  sophon_parallel_run(dev->pool, sophon_tasks_for(dev, (uint64_t)(planes * j.plane), planes),
                      activation_task, &j);
  return 0;
}
