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
 * TFLite's reference FULLY_CONNECTED (fully_connected.cc, kReference: the
 * FullyConnected / FullyConnectedPerChannel overloads taking the float scales)
 * instead rounds acc * (input_scale * filter_scale / output_scale) once, in
 * double: sophon_requant.rounding selects that per op (SOPHON_REQUANT_DOUBLE,
 * fc_int8 only); the two disagree by 1 LSB on about 1 output in 1000.
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

/* round(x * scale) in double, halves away from zero, saturated to int32 (TFLite's
 * reference FULLY_CONNECTED: static_cast<int32_t>(round(double(acc) * scale))). */
int32_t sophon_multiply_by_double_scale(int32_t x, double scale);

/* onnxruntime's requantization of an int32 accumulator (MLAS MlasRequantizeOutput):
 * the accumulator converted to float32, multiplied by the float32 scale, rounded to
 * nearest with halves to even, saturated to int32. One rounding, where TFLite's
 * fixed-point multiply rounds twice: the two differ by 1 where acc * scale lies
 * within about 2^-9 of a half. */
int32_t sophon_multiply_by_float_scale(int32_t x, float scale);

/* --------------------------------------------------------- requantize */

typedef struct {
  int32_t input_zero_point;  /* subtracted from every input element */
  int32_t output_zero_point; /* added after scaling */
  int32_t act_min, act_max;  /* output clamp, within [-128, 127] */
  int32_t per_channel;       /* 1: multiplier[oc], shift[oc]; 0: [0] for all */
  const int32_t* multiplier;
  const int32_t* shift;
  int32_t rounding;    /* sophon_requant_rounding (0, the default: fixed point) */
  const double* scale; /* SOPHON_REQUANT_DOUBLE: scale[oc] (or [0]) = input_scale *
                          filter_scale / output_scale in double; SOPHON_REQUANT_FLOAT32:
                          that ratio computed in float32 (exact in a double);
                          SOPHON_REQUANT_FLOAT_CONV: filter_scale[oc] (a float32 value);
                          otherwise unused */
  /* SOPHON_REQUANT_FLOAT_CONV only (others: 0): the float32 scales of the input and the
   * output, and the length of the runs of the reduction summed apart (see below) */
  float input_scale, output_scale;
  int32_t k_block;
} sophon_requant;

/* How acc * real is rounded: TFLite's kernels differ per op. */
typedef enum {
  SOPHON_REQUANT_FIXED_POINT = 0, /* MultiplyByQuantizedMultiplier(acc, multiplier, shift):
                                     CONV_2D, DEPTHWISE_CONV_2D (and every op but fc) */
  SOPHON_REQUANT_DOUBLE = 1,      /* sophon_multiply_by_double_scale(acc, scale):
                                     FULLY_CONNECTED's reference kernel; fc_int8 only */
  SOPHON_REQUANT_FLOAT32 = 2,     /* sophon_multiply_by_float_scale(acc, (float)scale):
                                     onnxruntime's QLinearConv / QLinearMatMul (MLAS's
                                     requantization) for ONNX QDQ models; conv2d_int8,
                                     conv2d_transpose_int8 and fc_int8 */
  SOPHON_REQUANT_FLOAT_CONV = 3   /* conv2d_int8 only: onnxruntime's float Conv between
                                     DequantizeLinear and QuantizeLinear (below) */
} sophon_requant_rounding;

/*
 * SOPHON_REQUANT_FLOAT_CONV. On x86 onnxruntime does not fuse an ONNX QDQ conv with int8
 * activations into QLinearConv (its QDQ selector allows int8 activations on ARM only): it
 * runs DequantizeLinear, the float32 Conv of MLAS (im2col + SGEMM) and QuantizeLinear.
 * The result differs from any integer requantization where the float32 sum lands near a
 * half, so the chip computes the same float32 arithmetic:
 *   x = (float)(in - input_zero_point) * input_scale      (each a float32 product)
 *   w = (float)weight * scale[oc]
 *   the K = in.c/groups * KH * KW taps in the order [ic][ky][kx] (padding taps are 0 and
 *   add nothing) cut into runs of k_block: each run summed from 0 by fused multiply-adds
 *   in that order, the runs added to the total in order (SGEMM's K blocks: the first run
 *   is stored, each later one added to it);
 *   y = total + (float)bias * (float)(input_scale * scale[oc])   (bias's DequantizeLinear)
 *   out = clamp(output_zero_point + nearbyint(y / output_scale))  (halves to even)
 * k_block is MLAS's K stride (128 in onnxruntime 1.32 on x86, measured on every conv of
 * two YOLOv5s; the compiler passes it).
 */

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

/* Fully connected, shapes as sophon_tiu_fc; requantized like conv2d_int8, or with
 * q->rounding == SOPHON_REQUANT_DOUBLE as TFLite's reference FULLY_CONNECTED:
 * out = clamp(output_zero_point + sophon_multiply_by_double_scale(acc, scale[oc])).
 * conv2d_int8 and conv2d_transpose_int8 reject SOPHON_REQUANT_DOUBLE. */
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

/* ------------------------------------------------- element-wise (int8)
 * sophon_tiu_eltwise_int8.c. SUB is sophon_tiu_add_int8 with input2_multiplier
 * negated (TFLite's sub.cc does the same with its ADD kernel). */

/* An int8 unary op is a function of 256 inputs: a table. */
typedef enum {
  SOPHON_LUT_REQUANTIZE = 0, /* QUANTIZE int8 -> int8 (reference_ops::Requantize) */
  SOPHON_LUT_LOGISTIC = 1,   /* TFLite's float lookup table (PopulateLookupTable) */
  SOPHON_LUT_TANH = 2,       /* likewise */
  SOPHON_LUT_HARD_SWISH = 3, /* reference_ops::HardSwish, int16 fixed point */
  SOPHON_LUT_LEAKY_RELU = 4, /* reference_ops::QuantizeLeakyRelu */
  SOPHON_LUT_ELU = 5,        /* float lookup table of x < 0 ? alpha * expm1(x) : x */
  SOPHON_LUT_GELU = 6,       /* float lookup table of gelu.cc (erf form) */
  SOPHON_LUT_GELU_TANH = 7,  /* float lookup table of gelu.cc (approximate form) */
  SOPHON_LUT_CONCAT_RESCALE = 8, /* a CONCATENATION input rescaled to the output's quantization
                                    (reference_ops::ConcatenationWithScaling, float) */
  SOPHON_LUT_RELU = 9, /* RELU, RELU6, RELU_N1_TO_1, RELU_0_TO_1: reference_ops::ReluX (the
                          input requantized to the output's scale, then clamped to the
                          quantized [act_min, act_max]) */
  SOPHON_LUT_RSQRT = 10, /* int8 RSQRT (elementwise.cc): 1 / sqrt by gemmlowp's fixed-point
                            Newton iteration (GetInvSqrtQuantizedMultiplierExp), rescaled by
                            QuantizeMultiplier of 1 / (sqrtf(input_scale) * output_scale) */
  SOPHON_LUT_NEG = 11 /* NEG as the converter writes it in an int8 model: DEQUANTIZE, float
                         NEG, QUANTIZE (reference Dequantize and AffineQuantize); with one
                         scale it is int8 NEG's input_zero_point + output_zero_point - x */
} sophon_lut_kind;

typedef struct {
  sophon_lut_kind kind;
  float input_scale;
  int32_t input_zero_point;
  float output_scale;
  int32_t output_zero_point;
  float alpha;   /* LEAKY_RELU's slope, ELU's alpha; unused by the others */
  float act_min; /* RELU's float bounds (0 and INFINITY for RELU, 0 and 6 for RELU6, */
  float act_max; /* -1 and 1 for RELU_N1_TO_1); unused by the others */
} sophon_int8_unary;

/* table[(uint8_t)x] = the op's int8 result for input x, computed with TFLite's
 * arithmetic for the op. SOPHON_ERR_ARGUMENT for NULL, a scale that is not
 * positive and finite or a zero point outside int8; SOPHON_ERR_UNSUPPORTED for
 * a hard-swish whose output multiplier TFLite refuses (above 1, or below 2^-16). */
sophon_status sophon_int8_lut_build(const sophon_int8_unary* u, int8_t table[256]);

typedef struct {
  int8_t table[256]; /* indexed by the input's byte: table[(uint8_t)x] */
} sophon_lut_int8_params;

/* out = table[in], element-wise (same shape; in place allowed). */
sophon_status sophon_tiu_lut_int8(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* in, const sophon_lut_int8_params* p);

typedef enum {
  SOPHON_BINARY_INT8_MUL = 0,  /* zp_out + MBQM((a - zp1) * (b - zp2), multiplier1, shift1) */
  SOPHON_BINARY_INT8_MAX = 1,  /* max(a, b) on the raw values (one quantization for all) */
  SOPHON_BINARY_INT8_MIN = 2,  /* min(a, b) likewise */
  SOPHON_BINARY_INT8_PRELU = 3, /* x = a - zp1; zp_out + (x >= 0 ? MBQM(x, multiplier1, shift1)
                                   : MBQM(x * (b - zp2), multiplier2, shift2)); b = alpha */
  SOPHON_BINARY_INT8_SQUARED_DIFFERENCE = 4, /* squared_difference.cc: d = S1((a - zp1) * 2^7)
                                               - S2((b - zp2) * 2^7); zp_out + S3(d * d), where
                                               Si(v) = MBQMSmallerThanOneExp(v, multiplieri,
                                               shifti), shifts in [-31, 0] */
  SOPHON_BINARY_INT8_MUL_FLOAT32 = 5, /* onnxruntime's QLinearMul (MLAS, ONNX QDQ models):
                                         zp_out + sophon_multiply_by_float_scale((a - zp1) *
                                         (b - zp2), scale); multipliers unused (0, 0) */
  /* onnxruntime's float Add / Sub / Mul between DequantizeLinear and QuantizeLinear (what
   * it runs for an ONNX QDQ Add, Sub or Mul on x86 unless its QDQ selector fuses the group,
   * which takes inputs and output of one type after its int8 -> uint8 rewrite): in float32,
   *   x = (float)(a - zp1) * input1_scale, y = (float)(b - zp2) * input2_scale,
   *   zp_out + nearbyint((x op y) / output_scale)   (halves to even); multipliers unused */
  SOPHON_BINARY_INT8_ADD_FLOAT = 6,
  SOPHON_BINARY_INT8_SUB_FLOAT = 7,
  SOPHON_BINARY_INT8_MUL_FLOAT = 8,
  /* onnxruntime's QLinearAdd (MLAS's AVX2 kernel), what it runs for an ONNX QDQ Add whose
   * group it fuses: with o = value_offset (128 where onnxruntime rewrote the int8 values
   * to uint8, else 0), ratios r1 = input1_scale, r2 = input2_scale (scale1 / out_scale,
   * scale2 / out_scale) and the constant output_scale = out_zp + o - fma(r1, zp1 + o,
   * r2 * (zp2 + o)), all float32 (the compiler computes them; zero points unused here):
   *   ADD_QLINEAR:           v = fma(a + o, r1, fma(b + o, r2, output_scale))
   *   ADD_QLINEAR_BROADCAST: v = fma(a + o, r1, output_scale + (b + o) * r2)
   *                          (b one value per run of a: MLAS's scalar-operand kernel)
   *   out = clamp(nearbyint(v) - o)   (halves to even) */
  SOPHON_BINARY_INT8_ADD_QLINEAR = 9,
  SOPHON_BINARY_INT8_ADD_QLINEAR_BROADCAST = 10
} sophon_binary_int8_op;

typedef struct {
  sophon_binary_int8_op op;
  int32_t input1_zero_point, input2_zero_point, output_zero_point;
  int32_t multiplier1, shift1; /* MultiplyByQuantizedMultiplier pairs (unused: 0, 0) */
  int32_t multiplier2, shift2;
  int32_t act_min, act_max;
  int32_t multiplier3, shift3; /* SQUARED_DIFFERENCE's output rescale (others: 0, 0) */
  float scale;                 /* MUL_FLOAT32: scale1 * scale2 / out_scale in float32 (others: 0) */
  float input1_scale, input2_scale, output_scale; /* ADD_FLOAT, SUB_FLOAT, MUL_FLOAT, ADD_QLINEAR*
                                                     (others: 0) */
  int32_t value_offset;                           /* ADD_QLINEAR*: 0 or 128 (others: 0) */
} sophon_binary_int8_params;

/* ADD_FLOAT, SUB_FLOAT, MUL_FLOAT, ADD_QLINEAR or ADD_QLINEAR_BROADCAST (p->op) of one
 * pair of int8 values x, y, clamped: the reference arithmetic of those ops, shared by the
 * reference and fast kernels. */
int32_t sophon_binary_int8_float_op(int32_t x, int32_t y, const sophon_binary_int8_params* p);

/* Element-wise with broadcast as sophon_tiu_binary, then clamped to [act_min, act_max]. */
sophon_status sophon_tiu_binary_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* a, const sophon_local* b,
                                     const sophon_binary_int8_params* p);

/* TFLite's int8 TRANSPOSE_CONV (reference_integer_ops::TransposeConv): shapes and
 * params as sophon_tiu_conv2d_transpose (p->act ignored), the int32 sum of
 * (in - input_zero_point) * weight over the taps that land, + bias, requantized
 * like conv2d_int8. */
sophon_status sophon_tiu_conv2d_transpose_int8(sophon_device* dev, const sophon_local* out,
                                               const sophon_local* in, const sophon_local* weight,
                                               const sophon_local* bias,
                                               const sophon_conv_params* p,
                                               const sophon_requant* q);

/* An int8 resize, params as sophon_tiu_resize, in one of two arithmetics:
 *
 * SOPHON_INT8_TFLITE: TFLite's int8 RESIZE_NEAREST_NEIGHBOR and
 * RESIZE_BILINEAR (the int8 reference kernels: nearest index in f32, bilinear in
 * 10-bit fixed point), the input's quantization kept. coord is ASYMMETRIC,
 * ALIGN_CORNERS (align_corners) or HALF_PIXEL (half_pixel_centers; nearest also
 * takes TF_HALF_PIXEL_FOR_NN); rounding is ignored: TFLite's own per mode.
 *
 * SOPHON_INT8_ONNXRUNTIME: what onnxruntime's CPU provider runs for an
 * ONNX QDQ DequantizeLinear -> Resize -> QuantizeLinear, all in f32. Along each
 * axis, with s = out_size / in_size (f32; 1 keeps v = x):
 *   HALF_PIXEL v = (x + 0.5) / s - 0.5, PYTORCH_HALF_PIXEL the same but 0 when
 *   out_size = 1, ASYMMETRIC v = x / s, TF_HALF_PIXEL_FOR_NN v = (x + 0.5) / s,
 *   ALIGN_CORNERS v = x * (in_size - 1) / (out_size - 1) (0 when out_size = 1).
 * NEAREST: index = round(v) by `rounding`, ONNX's nearest_mode (PREFER_FLOOR: halves
 *   down, else half away from zero; PREFER_CEIL: half away from zero, as std::round;
 *   FLOOR; CEIL; HALF_EVEN is no ONNX mode: SOPHON_ERR_ARGUMENT), clamped to the
 *   image; the value is requantized as below (unchanged when both quantizations
 *   are equal).
 * BILINEAR: v clamped to [0, in_size - 1], i1 = (int)v, i2 = min(i1 + 1, in_size - 1),
 *   d1 = |v - i1|, d2 = |v - i2| (both 0.5 when i1 = i2); with f = (q - input_zero_point)
 *   * input_scale of the taps: out = dx2*dy2*f(y1,x1) + dx1*dy2*f(y1,x2)
 *   + dx2*dy1*f(y2,x1) + dx1*dy1*f(y2,x2), summed left to right.
 * The f32 result r is quantized as QuantizeLinear: round_half_even(r / output_scale)
 * + output_zero_point, saturated to int8. */
sophon_status sophon_tiu_resize_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_resize_params* p);

/* TFLite's int8 MEAN, SUM (reference_ops::QuantizedMeanOrSum) and REDUCE_MAX /
 * REDUCE_MIN over h, shapes as sophon_tiu_reduce. SUM and MEAN:
 *   out = clamp(output_zero_point + MultiplyByQuantizedMultiplier(
 *                   sum over y of in - input_zero_point * H, multiplier', shift'))
 * with q's per-tensor (multiplier, shift) of input_scale / output_scale; a MEAN
 * folds 1 / H into it as TFLite does (multiplier' = multiplier * 2^k / H,
 * shift' = shift - k, k = floor(log2 H)). With q->rounding SOPHON_REQUANT_FLOAT32
 * (onnxruntime's QLinearGlobalAveragePool, ONNX QDQ models) the sum is scaled by
 * sophon_multiply_by_float_scale(sum, (float)q->scale[0]) instead, scale[0] holding
 * the whole factor (input_scale / (output_scale * H) for a MEAN, computed in float32
 * by the compiler). MAX and MIN keep the input's quantization (q may be NULL). */
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

/* onnxruntime's int8 QLinearSoftmax (com.microsoft, what its QDQ transformer makes of
 * DequantizeLinear -> Softmax -> QuantizeLinear) over h, D = in->h values:
 *   table[k] = (float)exp((k - 255 + b) * input_scale) for k in [0, 255], in double,
 *     b = max(0, log((float)(FLT_MAX / D)) - 5) / input_scale (keeps the f32 sum finite);
 *   per column, m = max over h: e = table[x - m + 255], sum = the e summed in f32 in h
 *     order, out = (int32)nearbyintf(e * floorf(1 / output_scale) / sum)
 *     + output_zero_point, saturated to 127 (an output scale of 1/256 makes a certain
 *     1.0 the 128 that onnxruntime 1.32 saturates so). */
sophon_status sophon_tiu_softmax_int8_onnxruntime(sophon_device* dev, const sophon_local* out,
                                                  const sophon_local* in, float input_scale,
                                                  float output_scale, int32_t output_zero_point);

/* The rounding of quantize's x / scale: TFLite's QUANTIZE rounds half away from
 * zero (TfLiteRound), onnxruntime's QuantizeLinear half to even. */
typedef enum {
  SOPHON_QUANTIZE_HALF_AWAY = 0,
  SOPHON_QUANTIZE_HALF_TO_EVEN = 1
} sophon_quantize_rounding;

/* float32 -> int8 (out int8, in f32, same shape): out = saturate(round(in / scale)
 * + zero_point), the quotient in float32, a NaN quotient to -128; scale finite and
 * positive, zero_point in [-128, 127]. */
sophon_status sophon_tiu_quantize_int8(sophon_device* dev, const sophon_local* out,
                                       const sophon_local* in, float scale, int32_t zero_point,
                                       sophon_quantize_rounding rounding);

/* int8 -> float32 (out f32, in int8, same shape): out = (in - zero_point) * scale in
 * float32 (TFLite's DEQUANTIZE and onnxruntime's DequantizeLinear alike). */
sophon_status sophon_tiu_dequantize_int8(sophon_device* dev, const sophon_local* out,
                                         const sophon_local* in, float scale, int32_t zero_point);

#ifdef __cplusplus
}
#endif

#endif /* SOPHON_QUANT_H_ */
