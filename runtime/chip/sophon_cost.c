/*
 * sophon_cost.c - the cost model documented in sophon_cost.h, formula for formula.
 *
 * Shared by the runtime's counters and by the compiler (through ctypes). Every
 * function returns 0 when an argument is NULL or malformed (non-positive dims,
 * unknown dtype, npu_num <= 0, a unit with no EU, non-positive bandwidth or
 * clock), so a caller cannot crash it. The datapath is taken at the input dtype
 * for conv2d and fc (the MAC datapath) and at out's dtype for pool and
 * element-wise.
 */
#include <math.h>
#include <string.h>

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

static uint64_t round_up_u64(uint64_t a, uint64_t b) { return ceil_div_u64(a, b) * b; }

/* Seconds-to-cycles safe conversion: 0 for NaN or negative, saturated above. */
static uint64_t to_cycles(double cycles) {
  if (!(cycles > 0.0)) return 0;
  if (cycles >= 18446744073709551615.0) return UINT64_MAX;
  return (uint64_t)ceil(cycles);
}

static int clocks_ok(const sophon_chip* chip) {
  return chip != NULL && chip->clock_hz > 0.0 && chip->ddr_bytes_per_second > 0.0 &&
         chip->gdma_clock_hz >= 0.0;
}

static double gdma_clock(const sophon_chip* chip) {
  return chip->gdma_clock_hz > 0.0 ? chip->gdma_clock_hz : chip->clock_hz;
}

static uint64_t burst(const sophon_chip* chip) {
  return chip->gdma_burst_bytes > 1 ? (uint64_t)chip->gdma_burst_bytes : 1;
}

/* GDMA cycles for `effective` bytes, converted to TIU cycles. */
static uint64_t gdma_cycles(const sophon_chip* chip, uint64_t effective) {
  const double clock = gdma_clock(chip);
  const double bytes_per_cycle = chip->ddr_bytes_per_second / clock;
  const double latency = chip->gdma_latency_cycles > 0 ? chip->gdma_latency_cycles : 0;
  const double cycles = latency + ceil((double)effective / bytes_per_cycle);
  return to_cycles(cycles * chip->clock_hz / clock);
}

uint64_t sophon_cost_gdma(const sophon_chip* chip, uint64_t bytes) {
  if (!clocks_ok(chip)) return 0;
  return gdma_cycles(chip, round_up_u64(bytes, burst(chip)));
}

/* Elements of the longest runs of `l` that are contiguous in DDR: the dims of
 * size > 1 in order of stride, merged while each stride equals the run so far. */
static uint64_t ddr_run_elements(const sophon_local* l, const int64_t strides[4]) {
  int64_t size[4], stride[4];
  uint64_t run = 1;
  int i, j, count = 0;
  const int32_t dims[4] = {l->n, l->c, l->h, l->w};
  for (i = 0; i < 4; ++i) {
    if (dims[i] <= 1) continue;
    size[count] = dims[i];
    stride[count] = strides[i] < 0 ? -strides[i] : strides[i];
    ++count;
  }
  for (i = 1; i < count; ++i) /* insertion sort by stride, stable */
    for (j = i; j > 0 && stride[j - 1] > stride[j]; --j) {
      int64_t t = stride[j];
      stride[j] = stride[j - 1];
      stride[j - 1] = t;
      t = size[j];
      size[j] = size[j - 1];
      size[j - 1] = t;
    }
  for (i = 0; i < count && (uint64_t)stride[i] == run; ++i) run *= (uint64_t)size[i];
  return run;
}

uint64_t sophon_cost_gdma_transfer(const sophon_chip* chip, const sophon_local* l,
                                   const int64_t global_strides[4]) {
  uint64_t elements, run, elem, ddr_side, lmem_side, slots, pack;
  if (!clocks_ok(chip) || !dims_ok(l) || global_strides == NULL) return 0;
  elem = (uint64_t)sophon_dtype_size(l->dtype);
  elements = (uint64_t)l->n * (uint64_t)l->c * (uint64_t)l->h * (uint64_t)l->w;
  run = ddr_run_elements(l, global_strides);
  ddr_side = elements / run * round_up_u64(run * elem, burst(chip));
  /* a 4N INT8 tensor: each group of p batch items is one plane of 32-bit words */
  slots = (uint64_t)sophon_local_batch_slots(chip, l);
  pack = l->dtype == SOPHON_I8 && l->layout == SOPHON_LAYOUT_ALIGNED && chip->int8_batch_pack > 1
             ? (uint64_t)chip->int8_batch_pack
             : 1;
  lmem_side = slots / pack * (uint64_t)l->c *
              round_up_u64((uint64_t)l->h * (uint64_t)l->w * elem * pack, burst(chip));
  return gdma_cycles(chip, ddr_side > lmem_side ? ddr_side : lmem_side);
}

uint64_t sophon_cost_timestep(const sophon_chip* chip, uint64_t tiu, uint64_t gdma) {
  uint64_t longer = tiu > gdma ? tiu : gdma;
  if (longer == 0 || chip == NULL) return longer;
  return longer + (uint64_t)(chip->timestep_sync_cycles > 0 ? chip->timestep_sync_cycles : 0);
}

/* Bytes the DDR side of a view of `dims` moves: its DDR runs in whole bursts. */
static uint64_t ddr_side(const sophon_chip* chip, const int32_t dims[4], sophon_dtype dtype,
                         const int64_t strides[4]) {
  sophon_local l;
  uint64_t elements, run;
  memset(&l, 0, sizeof(l));
  l.n = dims[0];
  l.c = dims[1];
  l.h = dims[2];
  l.w = dims[3];
  l.dtype = dtype;
  elements = (uint64_t)l.n * (uint64_t)l.c * (uint64_t)l.h * (uint64_t)l.w;
  run = ddr_run_elements(&l, strides);
  return elements / run * round_up_u64(run * (uint64_t)sophon_dtype_size(dtype), burst(chip));
}

static int copy_args_ok(const sophon_chip* chip, const int32_t dims[4], sophon_dtype dtype) {
  return clocks_ok(chip) && dims != NULL && dims[0] > 0 && dims[1] > 0 && dims[2] > 0 &&
         dims[3] > 0 && sophon_dtype_size(dtype) > 0;
}

uint64_t sophon_cost_gdma_copy(const sophon_chip* chip, const int32_t dims[4], sophon_dtype dtype,
                               const int64_t dst_strides[4], const int64_t src_strides[4]) {
  if (!copy_args_ok(chip, dims, dtype) || dst_strides == NULL || src_strides == NULL) return 0;
  return gdma_cycles(chip, ddr_side(chip, dims, dtype, src_strides) +
                               ddr_side(chip, dims, dtype, dst_strides));
}

uint64_t sophon_cost_gdma_fill(const sophon_chip* chip, const int32_t dims[4], sophon_dtype dtype,
                               const int64_t dst_strides[4]) {
  if (!copy_args_ok(chip, dims, dtype) || dst_strides == NULL) return 0;
  return gdma_cycles(chip, ddr_side(chip, dims, dtype, dst_strides));
}

static uint64_t tiu_latency(const sophon_chip* chip) {
  return (uint64_t)(chip->tiu_latency_cycles > 0 ? chip->tiu_latency_cycles : 0);
}

/* ceil(C / npu) * batch groups * ceil(H*W / positions) of a tensor shaped like `t`
 * on a unit taking `unit_bytes` per lane per cycle (0 if malformed). */
static uint64_t lane_passes(const sophon_chip* chip, int64_t c, int64_t n, int64_t hw,
                            sophon_dtype dtype, int64_t unit_bytes) {
  uint64_t groups, positions;
  if (chip->npu_num <= 0 || unit_bytes <= 0) return 0;
  if (dtype == SOPHON_I8) {
    const int64_t pack = chip->int8_batch_pack > 1 ? chip->int8_batch_pack : 1;
    groups = ceil_div_u64((uint64_t)n, (uint64_t)pack);
    positions = (uint64_t)(unit_bytes / pack);
  } else {
    groups = (uint64_t)n;
    positions = (uint64_t)(unit_bytes / sophon_dtype_size(dtype));
  }
  if (positions == 0) return 0;
  return ceil_div_u64((uint64_t)c, (uint64_t)chip->npu_num) * groups *
         ceil_div_u64((uint64_t)hw, positions);
}

static int64_t dwpool_bytes(const sophon_chip* chip) {
  return chip->dwpool_eu_bytes > 0 ? chip->dwpool_eu_bytes : chip->eu_bytes;
}

/* Reduction steps per lane pass: int8 EUs take int8_macs_per_eu taps at once. */
static uint64_t reduction_steps(const sophon_chip* chip, uint64_t taps, sophon_dtype dtype) {
  if (dtype == SOPHON_I8 && chip->int8_macs_per_eu > 1)
    return ceil_div_u64(taps, (uint64_t)chip->int8_macs_per_eu);
  return taps;
}

static uint64_t epilogue_cycles(const sophon_chip* chip, const sophon_local* out,
                                const sophon_activation* act);

/* LMEM reads per tap of a window op (conv, depthwise, pool): the EUs take one
 * contiguous eu_bytes row per cycle, so output positions w apart in the input
 * (stride_w > 1) span stride_w such rows. */
static uint64_t window_fetch(int32_t stride_w) { return stride_w > 1 ? (uint64_t)stride_w : 1; }

uint64_t sophon_cost_conv2d(const sophon_chip* chip, const sophon_local* out,
                            const sophon_local* in, const sophon_conv_params* p) {
  uint64_t taps, passes;
  int depthwise;
  if (chip == NULL || p == NULL || !dims_ok(out) || !dims_ok(in)) return 0;
  if (p->groups <= 0 || p->kernel_h <= 0 || p->kernel_w <= 0) return 0;
  depthwise = p->groups > 1 && p->groups == in->c && out->c == in->c;
  taps = (uint64_t)(in->c / p->groups) * (uint64_t)p->kernel_h * (uint64_t)p->kernel_w;
  passes = lane_passes(chip, out->c, out->n, (int64_t)out->h * out->w, in->dtype,
                       depthwise ? dwpool_bytes(chip) : chip->eu_bytes);
  if (passes == 0) return 0;
  return tiu_latency(chip) + passes * reduction_steps(chip, taps, in->dtype) * window_fetch(p->stride_w) +
         epilogue_cycles(chip, out, &p->act);
}

uint64_t sophon_cost_fc(const sophon_chip* chip, const sophon_local* out,
                        const sophon_local* in) {
  uint64_t passes;
  if (chip == NULL || !dims_ok(out) || !dims_ok(in)) return 0;
  /* out (M, N, 1, 1), in (M, K, 1, 1): N on the lanes, K along the EUs */
  passes = lane_passes(chip, out->c, out->n, in->c, in->dtype, chip->eu_bytes);
  if (passes == 0) return 0;
  if (in->dtype == SOPHON_I8 && chip->int8_macs_per_eu > 1)
    passes = ceil_div_u64(passes, (uint64_t)chip->int8_macs_per_eu);
  return tiu_latency(chip) + passes;
}

uint64_t sophon_cost_pool2d(const sophon_chip* chip, const sophon_local* out,
                            const sophon_pool_params* p) {
  uint64_t passes;
  if (chip == NULL || p == NULL || !dims_ok(out)) return 0;
  if (p->kernel_h <= 0 || p->kernel_w <= 0) return 0;
  passes = lane_passes(chip, out->c, out->n, (int64_t)out->h * out->w, out->dtype,
                       dwpool_bytes(chip));
  if (passes == 0) return 0;
  return tiu_latency(chip) +
         passes * ((uint64_t)p->kernel_h * (uint64_t)p->kernel_w) * window_fetch(p->stride_w);
}

/* Cycles of one op over every element of a tensor shaped like `out` on the
 * element-wise datapath: each element in a 32-bit slot, one batch item each, at
 * eltwise_eu_bytes per lane per cycle (bytes, so a datapath narrower than a slot
 * takes several cycles per element); with eltwise_eu_bytes 0, the conv unit's
 * lane passes (0 if malformed). */
static uint64_t eltwise_passes(const sophon_chip* chip, const sophon_local* out) {
  const int64_t hw = (int64_t)out->h * out->w;
  if (chip->eltwise_eu_bytes <= 0)
    return lane_passes(chip, out->c, out->n, hw, out->dtype, chip->eu_bytes);
  if (chip->npu_num <= 0) return 0;
  return ceil_div_u64((uint64_t)out->c, (uint64_t)chip->npu_num) * (uint64_t)out->n *
         ceil_div_u64((uint64_t)hw * 4u, (uint64_t)chip->eltwise_eu_bytes);
}

uint64_t sophon_cost_eltwise(const sophon_chip* chip, const sophon_local* out,
                             int64_t ops_per_element) {
  uint64_t passes;
  if (chip == NULL || !dims_ok(out) || ops_per_element < 0) return 0;
  passes = eltwise_passes(chip, out);
  if (passes == 0) return 0;
  return tiu_latency(chip) + passes * (uint64_t)ops_per_element;
}

/* Cost-model ops of an activation (sophon_cost.h); none 0. */
static int64_t activation_ops(const sophon_activation* act) {
  if (act == NULL) return 0;
  switch (act->kind) {
    case SOPHON_ACT_NONE: return 0;
    case SOPHON_ACT_RELU:
    case SOPHON_ACT_CLIP:
    case SOPHON_ACT_LEAKY_RELU:
    case SOPHON_ACT_ABS:
    case SOPHON_ACT_NEG: return 1;
    case SOPHON_ACT_HARD_SIGMOID:
    case SOPHON_ACT_SQRT:
    case SOPHON_ACT_RSQRT:
    case SOPHON_ACT_RECIPROCAL: return 2;
    case SOPHON_ACT_HARD_SWISH:
    case SOPHON_ACT_SIGMOID:
    case SOPHON_ACT_TANH:
    case SOPHON_ACT_EXP:
    case SOPHON_ACT_LOG:
    case SOPHON_ACT_ERF: return 4;
    case SOPHON_ACT_SILU: return 5;
    case SOPHON_ACT_ELU: return 6;
    case SOPHON_ACT_GELU: return 7;
    case SOPHON_ACT_GELU_TANH: return 9;
    case SOPHON_ACT_SOFTPLUS: return 11;
    case SOPHON_ACT_MISH: return 16;
  }
  return 0;
}

/* Ops a fused activation adds to the instruction that computes its input: relu,
 * clip and leaky relu are applied on the way out, for free; any other costs its
 * ops per element. */
static int64_t fused_activation_ops(const sophon_activation* act) {
  if (act == NULL || act->kind == SOPHON_ACT_RELU || act->kind == SOPHON_ACT_CLIP ||
      act->kind == SOPHON_ACT_LEAKY_RELU)
    return 0;
  return activation_ops(act);
}

/* A fused activation that is not free is a pass of the element-wise datapath over
 * a conv's output at its ops per element. */
static uint64_t epilogue_cycles(const sophon_chip* chip, const sophon_local* out,
                                const sophon_activation* act) {
  return eltwise_passes(chip, out) * (uint64_t)fused_activation_ops(act);
}

/* Ops per element of a binary op: a division or a PReLU (multiply and select) 2. */
static int64_t binary_ops(sophon_binary_op op) {
  return op == SOPHON_BINARY_DIV || op == SOPHON_BINARY_PRELU ? 2 : 1;
}

uint64_t sophon_cost_binary(const sophon_chip* chip, const sophon_local* out,
                            const sophon_activation* act) {
  return sophon_cost_binary_op(chip, out, SOPHON_BINARY_ADD, act);
}

uint64_t sophon_cost_binary_op(const sophon_chip* chip, const sophon_local* out,
                               sophon_binary_op op, const sophon_activation* act) {
  return sophon_cost_eltwise(chip, out, binary_ops(op) + fused_activation_ops(act));
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
  landing.stride_h = landing.stride_w = 1; /* it reads its input contiguously */
  return sophon_cost_conv2d(chip, out, in, &landing);
}

uint64_t sophon_cost_reduce(const sophon_chip* chip, const sophon_local* in,
                            sophon_reduce_kind kind) {
  /* a mean divides; an int8 sum requantizes */
  const int requantizes = kind == SOPHON_REDUCE_SUM && in != NULL && in->dtype == SOPHON_I8;
  return sophon_cost_eltwise(chip, in, kind == SOPHON_REDUCE_MEAN || requantizes ? 2 : 1);
}

uint64_t sophon_cost_softmax_int8(const sophon_chip* chip, const sophon_local* out) {
  return sophon_cost_eltwise(chip, out, 10); /* sophon_cost.h: fixed-point exp and reciprocal */
}

uint64_t sophon_cost_quantize(const sophon_chip* chip, const sophon_local* out,
                              const sophon_local* in) {
  /* the float32 side sets the passes (fewer values per EU); divide or multiply, round */
  const sophon_local* wide = out != NULL && out->dtype == SOPHON_F32 ? out : in;
  return sophon_cost_eltwise(chip, wide, 2);
}

uint64_t sophon_cost_norm(const sophon_chip* chip, const sophon_local* out) {
  return sophon_cost_eltwise(chip, out, 8);
}

uint64_t sophon_cost_lrn(const sophon_chip* chip, const sophon_local* out,
                         const sophon_lrn_params* p) {
  return sophon_cost_eltwise(chip, out, (int64_t)p->size + 6);
}
