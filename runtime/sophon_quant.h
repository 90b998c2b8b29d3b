/*
 * sophon_quant.h - INT8 instructions of chips that have an INT8 datapath
 * (chip->has_int8; the BM1684 profile), with TFLite's quantization arithmetic so
 * that results are bit-exact with the TFLite interpreter.
 *
 * Tensors: activations and weights SOPHON_I8, bias SOPHON_I32, in the same lane
 * layout as float tensors. Weights are symmetric (zero point 0), per output
 * channel or per tensor.
 *
 * Requantization (TFLite's MultiplyByQuantizedMultiplier): an int32 accumulator
 * acc is scaled by real = multiplier * 2^(shift - 31), rounding to nearest
 * (ties away from zero in the final rounding shift, SaturatingRoundingDoubling-
 * HighMul for the multiply), then the output zero point is added and the result
 * clamped to [act_min, act_max] (fused relu / relu6 are clamps).
 * The compiler computes multipliers and shifts once, at compile time
 * (sophon_quantize_multiplier is the C statement of the same rule, for tests).
 *
 * A chip without an INT8 datapath rejects every instruction here with
 * SOPHON_ERR_UNSUPPORTED and a message naming the chip.
 */
#ifndef SOPHON_QUANT_H_
#define SOPHON_QUANT_H_

#include "sophon.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------- fixed point */

/* (multiplier, shift) with real ~= multiplier * 2^(shift - 31), multiplier in
 * [2^30, 2^31) or 0 for real == 0 (TFLite's QuantizeMultiplier). */
void sophon_quantize_multiplier(double real, int32_t* multiplier, int32_t* shift);

/* TFLite's MultiplyByQuantizedMultiplier(x, multiplier, shift). */
int32_t sophon_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

/* --------------------------------------------------------- requantize */

typedef struct {
  int32_t input_zero_point;  /* subtracted from every input element */
  int32_t output_zero_point; /* added after scaling */
  int32_t act_min, act_max;  /* output clamp, within [-128, 127] */
  int32_t per_channel;       /* 1: multiplier[oc], shift[oc]; 0: [0] for all */
  const int32_t* multiplier;
  const int32_t* shift;
} sophon_requant;

/*
 * acc[n, oc, oy, ox] = bias[oc] + sum (in - input_zero_point) * weight   (as sophon_tiu_conv2d;
 *                      padding taps contribute nothing, i.e. they read input_zero_point)
 * out = clamp(output_zero_point + MultiplyByQuantizedMultiplier(acc, multiplier[oc], shift[oc]))
 * p->act is ignored (fused activations are the clamp).
 */
sophon_status sophon_tiu_conv2d_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias, const sophon_conv_params* p,
                                     const sophon_requant* q);

/* Fully connected, shapes as sophon_tiu_fc; requantized like conv2d_int8. */
sophon_status sophon_tiu_fc_int8(sophon_device* dev, const sophon_local* out,
                                 const sophon_local* in, const sophon_local* weight,
                                 const sophon_local* bias, const sophon_requant* q);

/* TFLite's int8 ADD (reference_ops::AddElementwise with broadcast as
 * sophon_tiu_binary): both inputs rescaled to a common scale after a left shift,
 * summed, rescaled to the output. */
typedef struct {
  int32_t left_shift; /* 20 in TFLite */
  int32_t input1_zero_point, input2_zero_point, output_zero_point;
  int32_t input1_multiplier, input1_shift;
  int32_t input2_multiplier, input2_shift;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} sophon_add_int8_params;

sophon_status sophon_tiu_add_int8(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* a, const sophon_local* b,
                                  const sophon_add_int8_params* p);

/* int8 pooling with the input's quantization kept (TFLite): MAX takes the
 * largest value; AVG sums the in-bounds taps in int32 and divides by their count
 * (count_include_pad == 0; TFLite's rounding: half away from zero). Then clamp. */
sophon_status sophon_tiu_pool2d_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_pool_params* p,
                                     int32_t act_min, int32_t act_max);

/* TFLite's int8 MEAN, SUM (reference_ops::QuantizedMeanOrSum) and REDUCE_MAX /
 * REDUCE_MIN over h, shapes as sophon_tiu_reduce. SUM and MEAN:
 *   out = clamp(output_zero_point + MultiplyByQuantizedMultiplier(
 *                   sum over y of in - input_zero_point * H, multiplier', shift'))
 * with q's per-tensor (multiplier, shift) of input_scale / output_scale; a MEAN
 * folds 1 / H into it as TFLite does (multiplier' = multiplier * 2^k / H,
 * shift' = shift - k, k = floor(log2 H)). MAX and MIN keep the input's
 * quantization (q may be NULL). */
sophon_status sophon_tiu_reduce_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, sophon_reduce_kind kind,
                                     const sophon_requant* q);

/* TFLite's int8 SOFTMAX over h (reference_ops::Softmax, output scale 1/256 and
 * zero point -128): input_multiplier and input_left_shift are
 * PreprocessSoftmaxScaling(beta, input_scale, 5), i.e. QuantizeMultiplier of
 * beta * input_scale * 2^26; exp and the reciprocal in gemmlowp's fixed point. */
sophon_status sophon_tiu_softmax_int8(sophon_device* dev, const sophon_local* out,
                                      const sophon_local* in, int32_t input_multiplier,
                                      int32_t input_left_shift);

#ifdef __cplusplus
}
#endif

#endif /* SOPHON_QUANT_H_ */
