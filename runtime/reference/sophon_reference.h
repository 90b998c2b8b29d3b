/*
 * sophon_reference.h - the instruction set's reference kernels and checks, one
 * .c file per instruction family (not public API).
 *
 * A reference kernel is the specification of its instruction: plain C, fixed
 * accumulation order, run on operands its checks accepted. A check function
 * sophon_check_tiu_<name> validates one instruction's operands (descriptors,
 * parameters, dtypes, LMEM bounds, overlap) and names `op` in its error. The
 * instruction table (isa/sophon_isa.c) ties each instruction's check, cost,
 * reference kernel and fast kernel together.
 */
#ifndef SOPHON_REFERENCE_H_
#define SOPHON_REFERENCE_H_

#include "chip/sophon_internal.h"
#include "sophon_quant.h"

/* ---------------------------------------- conv2d, fc (sophon_tiu_conv.c) */

void sophon_ref_conv2d_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_local* weight, const sophon_local* bias,
                           const sophon_conv_params* p);
void sophon_ref_fc_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                       const sophon_local* weight, const sophon_local* bias,
                       const sophon_activation* act);
/* A per-channel bias of shape (1, channels, 1, 1), or NULL: conv2d, fc and
 * conv2d_transpose share it. */
sophon_status sophon_check_bias_shape(sophon_device* dev, const char* op, const sophon_local* bias,
                                      int32_t channels);
sophon_status sophon_check_tiu_conv2d(sophon_device* dev, const char* op,
                                      const sophon_operands* o);
sophon_status sophon_check_tiu_fc(sophon_device* dev, const char* op, const sophon_operands* o);
/* The f32 operand checks conv2d, fc and conv2d_transpose share once shapes are
 * known: one dtype, bounds, out disjoint from every input. */
sophon_status sophon_check_conv_operands(sophon_device* dev, const char* op,
                                         const sophon_local* out, const sophon_local* in,
                                         const sophon_local* weight, const sophon_local* bias);

/* ------------------------------------------------ pool2d (sophon_tiu_pool.c) */

void sophon_ref_pool2d_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_pool_params* p);
sophon_status sophon_check_tiu_pool2d(sophon_device* dev, const char* op,
                                      const sophon_operands* o);

/* ---------------------------------------------- binary (sophon_tiu_binary.c) */

void sophon_ref_binary_f32(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                           const sophon_local* b, sophon_binary_op op,
                           const sophon_activation* act);
sophon_status sophon_check_tiu_binary(sophon_device* dev, const char* op,
                                      const sophon_operands* o);

/* -------------------------------------- activation (sophon_tiu_activation.c) */

void sophon_ref_activation_f32(sophon_device* dev, const sophon_local* out,
                               const sophon_local* in, const sophon_activation* act);
sophon_status sophon_check_tiu_activation(sophon_device* dev, const char* op,
                                          const sophon_operands* o);
/* The checks of a unary instruction (activation, softmax): same dtype and shape,
 * bounds, out disjoint from in or in place. */
sophon_status sophon_check_unary(sophon_device* dev, const char* op, const sophon_local* out,
                                 const sophon_local* in);

/* -------------------------------------------- softmax (sophon_tiu_softmax.c) */

void sophon_ref_softmax_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in);
sophon_status sophon_check_tiu_softmax(sophon_device* dev, const char* op,
                                       const sophon_operands* o);

/* ------------------------------ conv2d_transpose (sophon_tiu_deconv.c) */

void sophon_ref_conv2d_transpose_f32(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias, const sophon_conv_params* p);
sophon_status sophon_check_tiu_conv2d_transpose(sophon_device* dev, const char* op,
                                                const sophon_operands* o);
/* Its parameter and shape rules (descriptors already checked), shared with int8. */
sophon_status sophon_check_conv2d_transpose_shapes(sophon_device* dev, const char* op,
                                                  const sophon_local* out, const sophon_local* in,
                                                  const sophon_local* weight,
                                                  const sophon_local* bias,
                                                  const sophon_conv_params* p);
/* Input index of output index `out_index` through filter tap `tap`, or -1 if that
 * tap of the transposed conv does not land on it:
 * in_index * stride - pad + tap * dilation == out_index. */
int64_t sophon_deconv_source(int64_t out_index, int32_t pad, int32_t tap, int32_t dilation,
                             int32_t stride, int32_t in_size);
/* The multiply-accumulates it does: the (output pixel, filter tap) pairs that land. */
uint64_t sophon_conv2d_transpose_macs(const sophon_local* out, const sophon_local* in,
                                      const sophon_conv_params* p);

/* ---------------------------------------------- reduce (sophon_tiu_reduce.c) */

void sophon_ref_reduce_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           sophon_reduce_kind kind);
sophon_status sophon_check_tiu_reduce(sophon_device* dev, const char* op,
                                      const sophon_operands* o);

/* -------------------------------------------------- norm (sophon_tiu_norm.c) */

void sophon_ref_norm_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                         const sophon_local* gamma, const sophon_local* beta,
                         const sophon_norm_params* p);
sophon_status sophon_check_tiu_norm(sophon_device* dev, const char* op, const sophon_operands* o);

/* ---------------------------------------------------- lrn (sophon_tiu_lrn.c) */

void sophon_ref_lrn_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                        const sophon_lrn_params* p);
sophon_status sophon_check_tiu_lrn(sophon_device* dev, const char* op, const sophon_operands* o);

/* ---------------------------------------------- resize (sophon_tiu_resize.c) */

/* The nearest source index (clamped to the image) of output index x along an axis
 * of in_size -> out_size (p's coord and rounding): what NEAREST reads. */
int32_t sophon_resize_nearest_index(const sophon_resize_params* p, int32_t x, int32_t in_size,
                                    int32_t out_size);
void sophon_ref_resize_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_resize_params* p);
sophon_status sophon_check_tiu_resize(sophon_device* dev, const char* op,
                                      const sophon_operands* o);
/* An int8 op in onnxruntime's arithmetic (sophon_tiu_add_pool_int8.c): finite positive
 * scales, zero points in int8. */
sophon_status sophon_check_onnxruntime_quantization(sophon_device* dev, const char* op,
                                                    float input_scale, int32_t input_zero_point,
                                                    float output_scale,
                                                    int32_t output_zero_point);
/* The int8 resizes, TFLite's or onnxruntime's by p->arithmetic (sophon_quant.h), same params. */
void sophon_ref_resize_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_resize_params* p);
sophon_status sophon_check_tiu_resize_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o);

/* ---------------------------------- int8 conv2d, fc (sophon_tiu_conv_int8.c) */

void sophon_ref_conv2d_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_local* weight, const sophon_local* bias,
                            const sophon_conv_params* p, const sophon_requant* q);
void sophon_ref_fc_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                        const sophon_local* weight, const sophon_local* bias,
                        const sophon_requant* q);
sophon_status sophon_check_tiu_conv2d_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o);
sophon_status sophon_check_tiu_fc_int8(sophon_device* dev, const char* op,
                                       const sophon_operands* o);
void sophon_ref_conv2d_transpose_int8(sophon_device* dev, const sophon_local* out,
                                      const sophon_local* in, const sophon_local* weight,
                                      const sophon_local* bias, const sophon_conv_params* p,
                                      const sophon_requant* q);
sophon_status sophon_check_tiu_conv2d_transpose_int8(sophon_device* dev, const char* op,
                                                     const sophon_operands* o);

/* ---------------------------- int8 add, pool2d (sophon_tiu_add_pool_int8.c) */

void sophon_ref_add_int8(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                         const sophon_local* b, const sophon_add_int8_params* p);
void sophon_ref_pool2d_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_pool_params* p, int32_t act_min, int32_t act_max);
sophon_status sophon_check_tiu_add_int8(sophon_device* dev, const char* op,
                                        const sophon_operands* o);
sophon_status sophon_check_tiu_pool2d_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o);

/* ------------- int8 lut, binary (sophon_tiu_eltwise_int8.c; SUB is add_int8) */

/* One int8 result of a binary op from the int8 pair (x, y) and the op's params. */
typedef int8_t (*sophon_int8_pair_fn)(int32_t x, int32_t y, const void* params);
/* out[n, c, h, w] = fn(a[...], b[...], params) with broadcast as sophon_tiu_binary:
 * the element loop of add_int8 and binary_int8. */
void sophon_ref_int8_broadcast(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                               const sophon_local* b, sophon_int8_pair_fn fn, const void* params);
/* The operand checks of add_int8 and binary_int8 (sophon_tiu_add_pool_int8.c): an
 * int8 chip; out, a, b int8 locals in bounds; a and b broadcast to out; out
 * disjoint from each input or that input itself (in place). */
sophon_status sophon_check_int8_broadcast_operands(sophon_device* dev, const char* op,
                                                   const sophon_operands* o);

void sophon_ref_lut_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                         const sophon_lut_int8_params* p);
void sophon_ref_binary_int8(sophon_device* dev, const sophon_local* out, const sophon_local* a,
                            const sophon_local* b, const sophon_binary_int8_params* p);
sophon_status sophon_check_tiu_lut_int8(sophon_device* dev, const char* op,
                                        const sophon_operands* o);
sophon_status sophon_check_tiu_binary_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o);

/* --------------------------------------------------- checks shared by families */

/* Each dim of `t` equals out's or is 1 (sophon_tiu_binary.c), shared with int8 add. */
sophon_status sophon_check_broadcast(sophon_device* dev, const char* op, const char* name,
                                     const sophon_local* t, const sophon_local* out);
/* One axis of a pool (sophon_tiu_pool.c), shared with int8: the dilated kernel fits
 * the padded input, and out_size lies between the floor-mode size and the ceil-mode
 * size whose last window starts inside the padded input. */
sophon_status sophon_check_pool_axis(sophon_device* dev, const char* op, const char* axis,
                                    int32_t out_size, int32_t in_size, int32_t pad_a,
                                    int32_t pad_b, int32_t kernel, int32_t stride,
                                    int32_t dilation);
/* pool2d's parameter rules (sophon_tiu_pool.c), shared with int8. */
sophon_status sophon_check_pool_params(sophon_device* dev, const char* op,
                                       const sophon_pool_params* p);
/* fc's shape rules (sophon_tiu_conv.c), shared with int8. */
sophon_status sophon_check_fc_shapes(sophon_device* dev, const char* op, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias);
/* conv2d's parameter and shape rules (sophon_tiu_conv.c), shared with int8. */
sophon_status sophon_check_conv_shapes(sophon_device* dev, const char* op, const sophon_local* out,
                                       const sophon_local* in, const sophon_local* weight,
                                       const sophon_local* bias, const sophon_conv_params* p);
/* INT8 checks (sophon_tiu_conv_int8.c), shared by the four INT8 instructions. */
/* The chip has an INT8 datapath (SOPHON_ERR_UNSUPPORTED). */
sophon_status sophon_check_int8_chip(sophon_device* dev, const char* op);
/* t has dtype `expected`. */
sophon_status sophon_check_dtype(sophon_device* dev, const char* op, const char* name,
                                 const sophon_local* t, sophon_dtype expected);
/* value is in [-128, 127]. */
sophon_status sophon_check_int8_value(sophon_device* dev, const char* op, const char* name,
                                      int32_t value);
/* act_min, act_max in [-128, 127] and act_min <= act_max. */
sophon_status sophon_check_clamp(sophon_device* dev, const char* op, int32_t act_min,
                                 int32_t act_max);
/* multiplier >= 0, shift in [shift_min, shift_max]; index < 0: a per-tensor pair. */
sophon_status sophon_check_multiplier(sophon_device* dev, const char* op, const char* name,
                                      int32_t index, int32_t multiplier, int32_t shift,
                                      int32_t shift_min, int32_t shift_max);

/* ------------------------ int8 reduce, softmax (sophon_tiu_reduce_int8.c) */

/* The multiplier and shift a SUM or MEAN over `rows` requantizes with (a MEAN
 * folds 1 / rows in, as TFLite's QuantizedMeanOrSum); 0 and 0 for MAX and MIN. */
void sophon_reduce_int8_multiplier(sophon_reduce_kind kind, int32_t rows, const sophon_requant* q,
                                   int32_t* multiplier, int32_t* shift);
void sophon_ref_reduce_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            sophon_reduce_kind kind, const sophon_requant* q);
void sophon_ref_softmax_int8_onnxruntime(sophon_device* dev, const sophon_local* out,
                                         const sophon_local* in, float input_scale,
                                         float output_scale, int32_t output_zero_point);
sophon_status sophon_check_tiu_softmax_int8_onnxruntime(sophon_device* dev, const char* op,
                                                        const sophon_operands* o);
/* ------------------------------ float32 <-> int8 casts (sophon_tiu_quantize.c) */

void sophon_ref_quantize_int8(sophon_device* dev, const sophon_local* out,
                              const sophon_local* in, float scale, int32_t zero_point,
                              sophon_quantize_rounding rounding);
void sophon_ref_dequantize_int8(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, float scale, int32_t zero_point);
sophon_status sophon_check_tiu_quantize_int8(sophon_device* dev, const char* op,
                                             const sophon_operands* o);
sophon_status sophon_check_tiu_dequantize_int8(sophon_device* dev, const char* op,
                                               const sophon_operands* o);
void sophon_ref_softmax_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                             int32_t input_multiplier, int32_t input_left_shift);
/* out is in reduced over h, both in local memory and apart (sophon_tiu_reduce.c). */
sophon_status sophon_check_reduced_over_h(sophon_device* dev, const char* op,
                                          const sophon_local* out, const sophon_local* in);
sophon_status sophon_check_tiu_reduce_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o);
sophon_status sophon_check_tiu_softmax_int8(sophon_device* dev, const char* op,
                                            const sophon_operands* o);

/* ------------------------------------------- int8 fixed point (sophon_fixed_point.c)
 * TFLite's (gemmlowp's) primitives, used by the INT8 instructions. */

/* round(a * b / 2^31) with ties rounded up (toward +infinity: gemmlowp's nudge
 * of 2^30, 1 - 2^30 for negative products, then a truncating division);
 * (INT32_MIN, INT32_MIN) saturates to INT32_MAX. */
int32_t sophon_saturating_rounding_doubling_high_mul(int32_t a, int32_t b);
/* round(x / 2^exponent), ties away from zero; exponent in [0, 31]. */
int32_t sophon_rounding_divide_by_pot(int32_t x, int32_t exponent);
/* TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp: shift in [-31, 0]. */
int32_t sophon_multiply_by_quantized_multiplier_smaller_than_one_exp(int32_t x,
                                                                     int32_t multiplier,
                                                                     int32_t shift);

#endif /* SOPHON_REFERENCE_H_ */
