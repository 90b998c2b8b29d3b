/*
 * sophon_cost.c - the cost model documented in sophon_cost.h, formula for formula.
 *
 * Shared by the runtime's counters and by the compiler (through ctypes). Every
 * function returns 0 when an argument is NULL or malformed (non-positive dims,
 * unknown dtype, npu_num <= 0, EU_NUM <= 0, non-positive bandwidth or clock),
 * so a caller cannot crash it. EU_NUM is taken at the input dtype for conv2d
 * and fc (the MAC datapath) and at out's dtype for pool and element-wise.
 */
#include <math.h>

#include "chip/sophon_cost.h"

int64_t sophon_eu_num(const sophon_chip* chip, sophon_dtype dtype) {
  int32_t size = sophon_dtype_size(dtype);
  if (chip == NULL || size == 0) return 0;
  if (dtype == SOPHON_I8 && chip->int8_macs_per_eu > 1)
    return (int64_t)(chip->eu_bytes / size) * chip->int8_macs_per_eu;
  return chip->eu_bytes / size;
}

static int dims_ok(const sophon_local* t) {
  return t != NULL && t->n > 0 && t->c > 0 && t->h > 0 && t->w > 0 &&
         sophon_dtype_size(t->dtype) > 0;
}

static uint64_t ceil_div_u64(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

uint64_t sophon_cost_gdma(const sophon_chip* chip, uint64_t bytes) {
  double bytes_per_cycle, cycles;
  if (chip == NULL || !(chip->clock_hz > 0.0) || !(chip->ddr_bytes_per_second > 0.0))
    return 0;
  bytes_per_cycle = chip->ddr_bytes_per_second / chip->clock_hz;
  cycles = ceil((double)bytes / bytes_per_cycle);
  if (cycles >= 18446744073709551615.0) return UINT64_MAX;
  return (uint64_t)(chip->gdma_latency_cycles > 0 ? chip->gdma_latency_cycles : 0) +
         (uint64_t)cycles;
}

static uint64_t tiu_latency(const sophon_chip* chip) {
  return (uint64_t)(chip->tiu_latency_cycles > 0 ? chip->tiu_latency_cycles : 0);
}

uint64_t sophon_cost_conv2d(const sophon_chip* chip, const sophon_local* out,
                            const sophon_local* in, const sophon_conv_params* p) {
  int64_t eu;
  uint64_t taps;
  if (chip == NULL || p == NULL || chip->npu_num <= 0 || !dims_ok(out) || !dims_ok(in))
    return 0;
  if (p->groups <= 0 || p->kernel_h <= 0 || p->kernel_w <= 0) return 0;
  eu = sophon_eu_num(chip, in->dtype);
  if (eu <= 0) return 0;
  taps = (uint64_t)(in->c / p->groups) * (uint64_t)p->kernel_h * (uint64_t)p->kernel_w;
  return tiu_latency(chip) +
         ceil_div_u64((uint64_t)out->c, (uint64_t)chip->npu_num) * (uint64_t)out->n *
             ceil_div_u64((uint64_t)out->h * (uint64_t)out->w, (uint64_t)eu) * taps;
}

uint64_t sophon_cost_fc(const sophon_chip* chip, const sophon_local* out,
                        const sophon_local* in) {
  int64_t eu;
  if (chip == NULL || chip->npu_num <= 0 || !dims_ok(out) || !dims_ok(in)) return 0;
  eu = sophon_eu_num(chip, in->dtype);
  if (eu <= 0) return 0;
  /* out (M, N, 1, 1), in (M, K, 1, 1) */
  return tiu_latency(chip) +
         ceil_div_u64((uint64_t)out->c, (uint64_t)chip->npu_num) * (uint64_t)out->n *
             ceil_div_u64((uint64_t)in->c, (uint64_t)eu);
}

uint64_t sophon_cost_pool2d(const sophon_chip* chip, const sophon_local* out,
                            const sophon_pool_params* p) {
  int64_t eu;
  if (chip == NULL || p == NULL || chip->npu_num <= 0 || !dims_ok(out)) return 0;
  if (p->kernel_h <= 0 || p->kernel_w <= 0) return 0;
  eu = sophon_eu_num(chip, out->dtype);
  if (eu <= 0) return 0;
  return tiu_latency(chip) +
         ceil_div_u64((uint64_t)out->c, (uint64_t)chip->npu_num) * (uint64_t)out->n *
             ceil_div_u64((uint64_t)out->h * (uint64_t)out->w, (uint64_t)eu) *
             ((uint64_t)p->kernel_h * (uint64_t)p->kernel_w);
}

uint64_t sophon_cost_eltwise(const sophon_chip* chip, const sophon_local* out,
                             int64_t ops_per_element) {
  int64_t eu;
  if (chip == NULL || chip->npu_num <= 0 || !dims_ok(out) || ops_per_element < 0) return 0;
  eu = sophon_eu_num(chip, out->dtype);
  if (eu <= 0) return 0;
  return tiu_latency(chip) +
         ceil_div_u64((uint64_t)out->c, (uint64_t)chip->npu_num) * (uint64_t)out->n *
             ceil_div_u64((uint64_t)out->h * (uint64_t)out->w, (uint64_t)eu) *
             (uint64_t)ops_per_element;
}

/* Cost-model ops of an activation: relu, clip and leaky relu 1; sigmoid and
 * tanh 4 (exp and divide, assumption); none 0. */
static int64_t activation_ops(const sophon_activation* act) {
  if (act == NULL) return 0;
  switch (act->kind) {
    case SOPHON_ACT_NONE: return 0;
    case SOPHON_ACT_SIGMOID:
    case SOPHON_ACT_TANH: return 4;
    case SOPHON_ACT_RELU:
    case SOPHON_ACT_CLIP:
    case SOPHON_ACT_LEAKY_RELU: return 1;
  }
  return 0;
}

uint64_t sophon_cost_binary(const sophon_chip* chip, const sophon_local* out,
                            const sophon_activation* act) {
  return sophon_cost_eltwise(chip, out, 1 + activation_ops(act));
}

uint64_t sophon_cost_activation(const sophon_chip* chip, const sophon_local* out,
                                const sophon_activation* act) {
  const int64_t ops = activation_ops(act);
  return sophon_cost_eltwise(chip, out, ops > 0 ? ops : 1); /* NONE is a copy */
}

uint64_t sophon_cost_softmax(const sophon_chip* chip, const sophon_local* out) {
  return sophon_cost_eltwise(chip, out, 5); /* max, subtract, exp, sum, divide */
}

uint64_t sophon_cost_resize(const sophon_chip* chip, const sophon_local* out,
                            const sophon_resize_params* p) {
  return sophon_cost_eltwise(chip, out, p->method == SOPHON_RESIZE_BILINEAR ? 4 : 1);
}

uint64_t sophon_cost_conv2d_transpose(const sophon_chip* chip, const sophon_local* out,
                                      const sophon_local* in, const sophon_conv_params* p) {
  sophon_conv_params landing;
  if (p == NULL || p->stride_h <= 0 || p->stride_w <= 0) return 0;
  landing = *p;
  landing.kernel_h = (int32_t)ceil_div_u64((uint64_t)p->kernel_h, (uint64_t)p->stride_h);
  landing.kernel_w = (int32_t)ceil_div_u64((uint64_t)p->kernel_w, (uint64_t)p->stride_w);
  return sophon_cost_conv2d(chip, out, in, &landing);
}
