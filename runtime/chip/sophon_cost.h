/*
 * sophon_cost.h - the cost model of the emulated chip, in one place.
 *
 * The runtime's counters use these functions for every instruction it executes,
 * and the compiler (tvm_sophon/cost.py, through ctypes) calls the same functions
 * when it plans, so the plan's estimate and the run's counters cannot drift apart.
 *
 * Every term is a property of the chip in sophon_chip (tvm_sophon/chips/NAME.json,
 * where each number has its source or is named an assumption). All cycle counts
 * are in cycles of the TIU clock (clock_hz); GDMA work is timed at gdma_clock_hz
 * and converted. Members left 0 fall back as sophon.h says.
 *
 *   lane passes      the TIU puts channels on the npu_num lanes and, in each lane,
 *                    `positions` elements of the h*w plane side by side:
 *                      passes = ceil(C / npu_num) * batch_groups * ceil(H*W / positions)
 *                    f32:  batch_groups = N, positions = unit_bytes / 4
 *                    int8: the "4N" layout packs int8_batch_pack (p) batch items
 *                          in each 32-bit word, so batch_groups = ceil(N / p) and
 *                          positions = unit_bytes / p: at batch 1 three quarters of
 *                          a BM1684's int8 datapath idle (EU alignment of H*W and
 *                          of C over the lanes is in the ceilings)
 *                    unit_bytes = eu_bytes for the conv and FC units,
 *                    dwpool_eu_bytes for the depthwise/pooling unit
 *   element passes   element-wise work (tensor arithmetic, table lookup, the
 *                    special functions) runs on its own datapath, which holds each
 *                    element in a 32-bit slot, one batch item per slot (an INT8
 *                    value widened for its requantization: the 4N packing does not
 *                    help it), eltwise_eu_bytes per lane per cycle:
 *                      epasses = ceil(C / npu_num) * N * ceil(H*W*4 / eltwise_eu_bytes)
 *                    (eltwise_eu_bytes 0: the lane passes of the conv unit)
 *   conv2d           tiu_latency + passes(out) * taps * fetch, taps = IC/groups * KH * KW;
 *                    int8: taps / int8_macs_per_eu (rounded up); fetch = stride_w
 *                    (1 for stride 1): the EUs read one contiguous eu_bytes row of
 *                    LMEM per cycle, and output positions stride_w apart in the
 *                    input span stride_w rows (derived from eu_bytes, not fitted;
 *                    it is why stride-2 layers run at half the MAC rate). A depthwise conv
 *                    (groups == IC == OC, one input channel per output) runs on the
 *                    depthwise/pooling unit, any other on the conv unit
 *   LMEM footprint   an INT8 tensor in the aligned (activation) layout takes the 4N
 *                    layout's room: its batch rounded up to int8_batch_pack, so at
 *                    batch 1 a whole 32-bit word per element (tpu-mlir
 *                    bm1684_defs.py: an INT8_4N tensor's element is 4 bytes in LMEM);
 *                    the planner's tiles shrink accordingly (sophon_local_lane_bytes)
 *   conv2d_transpose as conv2d with taps = IC/groups * ceil(KH/sh) * ceil(KW/sw)
 *                    (the taps that land on one output pixel) and fetch 1
 *   fc               tiu_latency + ceil(N / npu_num) * batch_groups(M)
 *                    * ceil(K / positions) (output features on lanes, the
 *                    reduction along the EUs; int8 / int8_macs_per_eu)
 *   pool2d           tiu_latency + passes(out) on the depthwise/pooling unit * KH*KW
 *                    * fetch (as conv2d)
 *   element-wise     tiu_latency + epasses(out) * ops_per_element: binary 1 (DIV
 *                    and PRELU 2) + its fused activation's ops (relu, clip and
 *                    leaky relu free, on the way out); activation: its
 *                    ops, none 1 (a copy); softmax 5 (max, subtract, exp, sum, divide);
 *                    reduce: one pass over its input (mean 2: the divide; int8
 *                    sum and mean 2 as well: the requantization);
 *                    softmax int8 10 (max, subtract and rescale 2, the fixed-point
 *                    exp 4 as the special-function unit's, sum, the reciprocal
 *                    amortised over the row, multiply and shift 2; assumption);
 *                    lrn size + 6 (a square-add per window channel, scale,
 *                    shift, power 4, divide: assumption);
 *                    norm 8 (sum, subtract, square-add, rsqrt amortised,
 *                    subtract, multiply, scale, shift: assumption);
 *                    resize: nearest 1 (a gather), bilinear 4 (two taps per lerp,
 *                    three lerps: assumption)
 *   activation ops   (assumption: one pass of the EUs per add, multiply, compare or
 *                     select; a square root or a reciprocal 2, the special-function
 *                     unit's table-and-polynomial taking about twice an add; exp, log,
 *                     erf, tanh and sigmoid 4, as sigmoid and tanh always were here)
 *                      relu, clip, leaky relu, abs, neg 1; hard-sigmoid 2 (multiply-
 *                      add, clamp); sqrt, rsqrt, reciprocal 2; hard-swish 4 (add,
 *                      clamp, multiply, scale); exp, log, erf, sigmoid, tanh 4; SiLU 5
 *                      (sigmoid, multiply); ELU 6 (exp, subtract-multiply, select);
 *                      GELU 7 (erf, 3 arithmetic); GELU-tanh 9 (tanh, 5 arithmetic);
 *                      softplus 11 (exp, log, abs, max, add); Mish 16 (softplus,
 *                      tanh, multiply)
 *   fused bias and relu, clip or leaky relu in conv and fc are free (done on the
 *   way out); any other activation fused into a conv is epasses(out) times the
 *   activation's ops per element on the element-wise datapath.
 *
 *   GDMA transfer    gdma_latency + ceil(effective_bytes / (ddr_bytes_per_second /
 *                    gdma_clock_hz)) GDMA cycles, where the DDR and the LMEM are both
 *                    accessed in bursts of gdma_burst_bytes:
 *                      DDR side   the transfer is made of runs that are contiguous in
 *                                 DDR (the dims ordered by stride, merged while
 *                                 contiguous); each run costs whole bursts
 *                      LMEM side  each (n, c) plane lands in one lane: n*c runs of
 *                                 h*w elements, each whole bursts; a 4N INT8 tensor
 *                                 (above) is ceil(n/p)*c planes of h*w 32-bit words,
 *                                 so at batch 1 it moves as many LMEM bytes as FP32
 *                      effective_bytes = max(DDR side, LMEM side)
 *                    so small, strided and channel-scattered transfers (a depthwise
 *                    weight is 9 floats per lane) cost more per byte than large
 *                    contiguous ones.
 *   GDMA DDR -> DDR  a copy reads its source and writes its destination, each side
 *                    in whole bursts of its DDR runs: effective_bytes = DDR side of
 *                    the source + DDR side of the destination; a constant fill
 *                    only writes: its destination's DDR side
 *   timestep         max(TIU cycles, GDMA cycles) of the work issued in it, plus
 *                    timestep_sync_cycles when it holds any (the engines wait for
 *                    each other at the boundary; an empty timestep costs nothing).
 *
 * Seconds = cycles / clock_hz; energy = seconds * power_watts.
 *
 * The chip-wide parameters, with the bm1684 profile's values (tvm_sophon/chips/
 * bm1684.json gives each one's source; "fitted" ones by bench/fidelity.py --fit to
 * Sophgo's measured BM1684 times, one value for every model):
 *   clock_hz              TIU clock, 550 MHz              tpu-mlir bm1684_defs.py
 *   gdma_clock_hz         GDMA clock, 575 MHz             tpu-mlir bm1684_defs.py
 *   npu_num               lanes, 64                       tpu-mlir BM1684.h
 *   eu_bytes              conv/FC bytes per lane per cycle, 128
 *                         (32 FP32 EUs)                   tpu-mlir BM1684.h (EU_BYTES)
 *   int8_macs_per_eu      2 per batch item                17.6 TOPS published
 *   int8_batch_pack       4 batch items per 32-bit word   ALIGN_4N, BM1684.h
 *   ddr_bytes_per_second  32 GB/s                         tpu-perf run.py
 *   gdma_burst_bytes      512, DDR/LMEM access granularity            fitted
 *   gdma_latency_cycles   300 GDMA cycles per transfer (start-up)     fitted
 *   tiu_latency_cycles    100 per TIU instruction (issue, fill)       fitted
 *   timestep_sync_cycles  600 per timestep (TIU/GDMA handshake)       fitted
 *   dwpool_eu_bytes       8, depthwise/pooling unit width per lane    fitted
 *   eltwise_eu_bytes      2, element-wise datapath bytes per lane per cycle   fitted
 * The W-stride fetch of window ops is derived from eu_bytes (no parameter); the
 * element-wise ops per activation are assumptions (above).
 */
#ifndef SOPHON_COST_H_
#define SOPHON_COST_H_

#include "sophon.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Elements of `dtype` one lane takes per cycle in the ALIGNED LMEM layout
 * (eu_bytes / sizeof(dtype), x int8_macs_per_eu for int8). */
int64_t sophon_eu_num(const sophon_chip* chip, sophon_dtype dtype);

/* A GDMA transfer of one contiguous run of `bytes` on both sides, TIU cycles. */
uint64_t sophon_cost_gdma(const sophon_chip* chip, uint64_t bytes);
/* A GDMA load or store of the local tensor `l` from or to a global view with the
 * given element strides (n, c, h, w), TIU cycles. */
uint64_t sophon_cost_gdma_transfer(const sophon_chip* chip, const sophon_local* l,
                                   const int64_t global_strides[4]);
/* What a timestep holding `tiu` and `gdma` cycles of work takes. */
uint64_t sophon_cost_timestep(const sophon_chip* chip, uint64_t tiu, uint64_t gdma);
/* A GDMA DDR -> DDR copy of (n, c, h, w) = dims elements of `dtype` between views
 * with the given element strides, and a constant fill of one view, TIU cycles. */
uint64_t sophon_cost_gdma_copy(const sophon_chip* chip, const int32_t dims[4], sophon_dtype dtype,
                               const int64_t dst_strides[4], const int64_t src_strides[4]);
uint64_t sophon_cost_gdma_fill(const sophon_chip* chip, const int32_t dims[4], sophon_dtype dtype,
                               const int64_t dst_strides[4]);

uint64_t sophon_cost_conv2d(const sophon_chip* chip, const sophon_local* out,
                            const sophon_local* in, const sophon_conv_params* p);
uint64_t sophon_cost_conv2d_transpose(const sophon_chip* chip, const sophon_local* out,
                                      const sophon_local* in, const sophon_conv_params* p);
uint64_t sophon_cost_fc(const sophon_chip* chip, const sophon_local* out,
                        const sophon_local* in);
uint64_t sophon_cost_pool2d(const sophon_chip* chip, const sophon_local* out,
                            const sophon_pool_params* p);
uint64_t sophon_cost_eltwise(const sophon_chip* chip, const sophon_local* out,
                             int64_t ops_per_element);
/* Element-wise instructions, with the ops per element described above. */
uint64_t sophon_cost_binary(const sophon_chip* chip, const sophon_local* out,
                            const sophon_activation* act); /* as ADD */
uint64_t sophon_cost_binary_op(const sophon_chip* chip, const sophon_local* out,
                               sophon_binary_op op, const sophon_activation* act);
uint64_t sophon_cost_activation(const sophon_chip* chip, const sophon_local* out,
                                const sophon_activation* act);
uint64_t sophon_cost_softmax(const sophon_chip* chip, const sophon_local* out);
uint64_t sophon_cost_reduce(const sophon_chip* chip, const sophon_local* in,
                            sophon_reduce_kind kind);
uint64_t sophon_cost_softmax_int8(const sophon_chip* chip, const sophon_local* out);
uint64_t sophon_cost_norm(const sophon_chip* chip, const sophon_local* out);
/* quantize_int8 / dequantize_int8: two element-wise passes over the float32 operand */
uint64_t sophon_cost_quantize(const sophon_chip* chip, const sophon_local* out,
                              const sophon_local* in);
uint64_t sophon_cost_lrn(const sophon_chip* chip, const sophon_local* out,
                         const sophon_lrn_params* p);
uint64_t sophon_cost_resize(const sophon_chip* chip, const sophon_local* out,
                            const sophon_resize_params* p);

#ifdef __cplusplus
}
#endif

#endif /* SOPHON_COST_H_ */
