/*
 * sophon_cost.h - the cost model of the emulated chip, in one place.
 *
 * The runtime's counters use these functions for every instruction it executes,
 * and the compiler (tvm_sophon/cost.py, through ctypes) calls the same functions
 * when it plans, so the plan's estimate and the run's counters cannot drift apart.
 *
 * Model (all numbers from sophon_chip; the fixed latencies are named assumptions):
 *
 *   EU_NUM(dtype)    = eu_bytes / sizeof(dtype)           elements a lane takes per cycle
 *                      (x int8_macs_per_eu for int8)
 *   GDMA cycles      = gdma_latency_cycles
 *                      + ceil(bytes / (ddr_bytes_per_second / clock_hz))
 *   conv2d cycles    = tiu_latency_cycles
 *                      + ceil(OC / npu_num) * N * ceil(OH*OW / EU_NUM) * (IC/groups * KH * KW)
 *                      (output channels on lanes, output pixels along the EUs, one
 *                       MAC per EU per cycle; a 3-channel output fills 3 of 64 lanes)
 *   conv2d_transpose = as conv2d with each output pixel taking
 *                      ceil(KH/sh) * ceil(KW/sw) taps per input channel (the taps
 *                      that land on one output pixel)
 *   fc cycles        = tiu_latency_cycles
 *                      + ceil(N / npu_num) * M * ceil(K / EU_NUM)
 *                      (output features on lanes, the reduction along the EUs)
 *   pool cycles      = tiu_latency_cycles
 *                      + ceil(C / npu_num) * N * ceil(OH*OW / EU_NUM) * (KH * KW)
 *   element-wise     = tiu_latency_cycles
 *                      + ceil(C / npu_num) * N * ceil(H*W / EU_NUM) * ops_per_element
 *                      with ops_per_element: binary 1 + its fused activation's ops;
 *                      activation: relu, clip, leaky relu 1, sigmoid and tanh 4
 *                      (exp + divide, assumption), none 1 (a copy); softmax 5
 *                      (max, subtract, exp, sum, divide); resize: nearest 1 (a
 *                      gather), bilinear 4 (two taps per lerp, three lerps:
 *                      assumption)
 *   fused bias/activation in conv and fc is free (done on the way out).
 *
 * Region time (until layer groups overlap them) = sum of TIU and GDMA cycles:
 * the engines run one after the other. Seconds = cycles / clock_hz; energy =
 * seconds * power_watts.
 */
#ifndef SOPHON_COST_H_
#define SOPHON_COST_H_

#include "sophon.h"

#ifdef __cplusplus
extern "C" {
#endif

int64_t sophon_eu_num(const sophon_chip* chip, sophon_dtype dtype);

uint64_t sophon_cost_gdma(const sophon_chip* chip, uint64_t bytes);
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
                            const sophon_activation* act);
uint64_t sophon_cost_activation(const sophon_chip* chip, const sophon_local* out,
                                const sophon_activation* act);
uint64_t sophon_cost_softmax(const sophon_chip* chip, const sophon_local* out);
uint64_t sophon_cost_resize(const sophon_chip* chip, const sophon_local* out,
                            const sophon_resize_params* p);

#ifdef __cplusplus
}
#endif

#endif /* SOPHON_COST_H_ */
