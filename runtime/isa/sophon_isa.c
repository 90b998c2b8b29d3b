/*
 * sophon_isa.c - the instruction table (sophon_isa.h) and the public sophon_tiu_*
 * functions, which go through it.
 *
 * One row per TIU instruction: its command kind and names, its checks and
 * reference kernel (reference/, one file per family), its cost
 * (chip/sophon_cost.h) and MACs, and its fast kernel (fast/) or NULL. The small
 * functions above the table only unpack sophon_operands into each function's
 * own arguments. Adding an instruction: runtime/README.md.
 */
#include "isa/sophon_isa.h"

#include <string.h>

#include "chip/sophon_cost.h"
#include "fast/sophon_fast.h"
#include "reference/sophon_reference.h"

/* ------------------------------------------------------------- costs */

static uint64_t conv2d_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_conv2d(chip, o->out, o->a, o->conv);
}
static uint64_t conv2d_macs(const sophon_operands* o) {
  return (uint64_t)o->out->n * (uint64_t)o->out->c * (uint64_t)o->out->h *
         (uint64_t)o->out->w * (uint64_t)(o->a->c / o->conv->groups) *
         (uint64_t)o->conv->kernel_h * (uint64_t)o->conv->kernel_w;
}
static uint64_t conv2d_transpose_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_conv2d_transpose(chip, o->out, o->a, o->conv);
}
static uint64_t conv2d_transpose_macs(const sophon_operands* o) {
  return sophon_conv2d_transpose_macs(o->out, o->a, o->conv);
}
static uint64_t fc_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_fc(chip, o->out, o->a);
}
static uint64_t fc_macs(const sophon_operands* o) {
  /* in (M, K, 1, 1), weight (1, N, K, 1) */
  return (uint64_t)o->a->n * (uint64_t)o->b->c * (uint64_t)o->a->c;
}
static uint64_t pool2d_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_pool2d(chip, o->out, o->pool);
}
static uint64_t binary_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_binary_op(chip, o->out, o->binary_op, o->act);
}
static uint64_t activation_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_activation(chip, o->out, o->act);
}
static uint64_t softmax_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_softmax(chip, o->out);
}
static uint64_t resize_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_resize(chip, o->out, o->resize);
}
static uint64_t reduce_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_reduce(chip, o->a, o->reduce_kind);
}
static uint64_t norm_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_norm(chip, o->out);
}
static uint64_t lrn_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_lrn(chip, o->out, o->lrn);
}
static uint64_t softmax_int8_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_softmax_int8(chip, o->out);
}
static uint64_t cast_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_quantize(chip, o->out, o->a);
}
/* int8 ADD, binary_int8 and lut_int8: the rescales (or the table lookup) are fused
 * into the element-wise pass, one op per element */
static uint64_t add_int8_cost(const sophon_chip* chip, const sophon_operands* o) {
  return sophon_cost_binary(chip, o->out, NULL);
}

/* ------------------------------------------------------------ kernels */

static void conv2d_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_conv2d_f32(dev, o->out, o->a, o->b, o->c, o->conv);
}
static int conv2d_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_conv2d_f32(dev, o->out, o->a, o->b, o->c, o->conv, o->weight_ddr);
}
static void fc_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_fc_f32(dev, o->out, o->a, o->b, o->c, o->act);
}
static int fc_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_fc_f32(dev, o->out, o->a, o->b, o->c, o->act, o->weight_ddr);
}
static void pool2d_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_pool2d_f32(dev, o->out, o->a, o->pool);
}
static int pool2d_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_pool2d_f32(dev, o->out, o->a, o->pool);
}
static void binary_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_binary_f32(dev, o->out, o->a, o->b, o->binary_op, o->act);
}
static int binary_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_binary_f32(dev, o->out, o->a, o->b, o->binary_op, o->act);
}
static void activation_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_activation_f32(dev, o->out, o->a, o->act);
}
static int activation_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_activation_f32(dev, o->out, o->a, o->act);
}
static void softmax_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_softmax_f32(dev, o->out, o->a);
}
static void conv2d_transpose_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_conv2d_transpose_f32(dev, o->out, o->a, o->b, o->c, o->conv);
}
static void reduce_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_reduce_f32(dev, o->out, o->a, o->reduce_kind);
}
static void norm_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_norm_f32(dev, o->out, o->a, o->b, o->c, o->norm);
}
static void lrn_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_lrn_f32(dev, o->out, o->a, o->lrn);
}
static int conv2d_transpose_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_conv2d_transpose_f32(dev, o->out, o->a, o->b, o->c, o->conv);
}
static void resize_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_resize_f32(dev, o->out, o->a, o->resize);
}
static int resize_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_resize_f32(dev, o->out, o->a, o->resize);
}
static void conv2d_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_conv2d_int8(dev, o->out, o->a, o->b, o->c, o->conv, o->requant);
}
static int conv2d_int8_fast(sophon_device* dev, const sophon_operands* o) {
  if (o->requant->rounding == SOPHON_REQUANT_FLOAT_CONV) /* onnxruntime's float Conv */
    return sophon_fast_conv2d_int8_float(dev, o->out, o->a, o->b, o->c, o->conv, o->requant);
  return sophon_fast_conv2d_int8(dev, o->out, o->a, o->b, o->c, o->conv, o->requant);
}
static void fc_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_fc_int8(dev, o->out, o->a, o->b, o->c, o->requant);
}
static int fc_int8_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_fc_int8(dev, o->out, o->a, o->b, o->c, o->requant);
}
static void add_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_add_int8(dev, o->out, o->a, o->b, o->add);
}
static int add_int8_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_add_int8(dev, o->out, o->a, o->b, o->add);
}
static void pool2d_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_pool2d_int8(dev, o->out, o->a, o->pool, o->act_min, o->act_max);
}
static void lut_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_lut_int8(dev, o->out, o->a, o->lut);
}
static int lut_int8_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_lut_int8(dev, o->out, o->a, o->lut);
}
static void binary_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_binary_int8(dev, o->out, o->a, o->b, o->binary_int8);
}
static int binary_int8_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_binary_int8(dev, o->out, o->a, o->b, o->binary_int8);
}
static int pool2d_int8_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_pool2d_int8(dev, o->out, o->a, o->pool, o->act_min, o->act_max);
}
static void reduce_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_reduce_int8(dev, o->out, o->a, o->reduce_kind, o->requant);
}
static int reduce_int8_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_reduce_int8(dev, o->out, o->a, o->reduce_kind, o->requant);
}
static void softmax_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_softmax_int8(dev, o->out, o->a, o->softmax_multiplier, o->softmax_left_shift);
}

static void softmax_int8_onnxruntime_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_softmax_int8_onnxruntime(dev, o->out, o->a, o->softmax_input_scale,
                                      o->softmax_output_scale, o->softmax_output_zero_point);
}

static void quantize_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_quantize_int8(dev, o->out, o->a, o->quant_scale, o->quant_zero_point,
                           (sophon_quantize_rounding)o->quant_rounding);
}
static void dequantize_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_dequantize_int8(dev, o->out, o->a, o->quant_scale, o->quant_zero_point);
}

static void conv2d_transpose_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_conv2d_transpose_int8(dev, o->out, o->a, o->b, o->c, o->conv, o->requant);
}
static int conv2d_transpose_int8_fast(sophon_device* dev, const sophon_operands* o) {
  return sophon_fast_conv2d_transpose_int8(dev, o->out, o->a, o->b, o->c, o->conv, o->requant);
}
static void resize_int8_ref(sophon_device* dev, const sophon_operands* o) {
  sophon_ref_resize_int8(dev, o->out, o->a, o->resize);
}

/* -------------------------------------------------------------- table
 * Operands per row (sophon_operands): a = in (binary, add: lhs), b = weight
 * (binary, add: rhs), c = bias or NULL; then the parameters named. */
static const sophon_instruction instructions[] = {
  /* kind, name, op, check, cost, macs, reference, fast */
  {SOPHON_CMD_CONV2D, "conv2d", "tiu_conv2d", /* out, a, b, c, conv */
   sophon_check_tiu_conv2d, conv2d_cost, conv2d_macs, conv2d_ref, conv2d_fast},
  {SOPHON_CMD_FC, "fc", "tiu_fc", /* out, a, b, c, act */
   sophon_check_tiu_fc, fc_cost, fc_macs, fc_ref, fc_fast},
  {SOPHON_CMD_POOL2D, "pool2d", "tiu_pool2d", /* out, a, pool */
   sophon_check_tiu_pool2d, pool2d_cost, NULL, pool2d_ref, pool2d_fast},
  {SOPHON_CMD_BINARY, "binary", "tiu_binary", /* out, a, b, binary_op, act */
   sophon_check_tiu_binary, binary_cost, NULL, binary_ref, binary_fast},
  {SOPHON_CMD_ACTIVATION, "activation", "tiu_activation", /* out, a, act */
   sophon_check_tiu_activation, activation_cost, NULL, activation_ref, activation_fast},
  {SOPHON_CMD_SOFTMAX, "softmax", "tiu_softmax", /* out, a */
   sophon_check_tiu_softmax, softmax_cost, NULL, softmax_ref, NULL},
  {SOPHON_CMD_CONV2D_INT8, "conv2d_int8", "tiu_conv2d_int8", /* out, a, b, c, conv, requant */
   sophon_check_tiu_conv2d_int8, conv2d_cost, conv2d_macs, conv2d_int8_ref, conv2d_int8_fast},
  {SOPHON_CMD_FC_INT8, "fc_int8", "tiu_fc_int8", /* out, a, b, c, requant */
   sophon_check_tiu_fc_int8, fc_cost, fc_macs, fc_int8_ref, fc_int8_fast},
  {SOPHON_CMD_ADD_INT8, "add_int8", "tiu_add_int8", /* out, a, b, add */
   sophon_check_tiu_add_int8, add_int8_cost, NULL, add_int8_ref, add_int8_fast},
  {SOPHON_CMD_POOL2D_INT8, "pool2d_int8", "tiu_pool2d_int8", /* out, a, pool, act_min, act_max */
   sophon_check_tiu_pool2d_int8, pool2d_cost, NULL, pool2d_int8_ref, pool2d_int8_fast},
  {SOPHON_CMD_RESIZE, "resize", "tiu_resize", /* out, a, resize */
   sophon_check_tiu_resize, resize_cost, NULL, resize_ref, resize_fast},
  {SOPHON_CMD_CONV2D_TRANSPOSE, "conv2d_transpose", "tiu_conv2d_transpose", /* out, a, b, c, conv */
   sophon_check_tiu_conv2d_transpose, conv2d_transpose_cost, conv2d_transpose_macs,
   conv2d_transpose_ref, conv2d_transpose_fast},
  {SOPHON_CMD_REDUCE, "reduce", "tiu_reduce", /* out, a, reduce_kind */
   sophon_check_tiu_reduce, reduce_cost, NULL, reduce_ref, NULL},
  {SOPHON_CMD_NORM, "norm", "tiu_norm", /* out, a, b = gamma, c = beta, norm */
   sophon_check_tiu_norm, norm_cost, NULL, norm_ref, NULL},
  {SOPHON_CMD_LRN, "lrn", "tiu_lrn", /* out, a, lrn */
   sophon_check_tiu_lrn, lrn_cost, NULL, lrn_ref, NULL},
  {SOPHON_CMD_LUT_INT8, "lut_int8", "tiu_lut_int8", /* out, a, lut */
   sophon_check_tiu_lut_int8, add_int8_cost, NULL, lut_int8_ref, lut_int8_fast},
  {SOPHON_CMD_BINARY_INT8, "binary_int8", "tiu_binary_int8", /* out, a, b, binary_int8 */
   sophon_check_tiu_binary_int8, add_int8_cost, NULL, binary_int8_ref, binary_int8_fast},
  {SOPHON_CMD_CONV2D_TRANSPOSE_INT8, "conv2d_transpose_int8", "tiu_conv2d_transpose_int8",
   /* out, a, b, c, conv, requant */
   sophon_check_tiu_conv2d_transpose_int8, conv2d_transpose_cost, conv2d_transpose_macs,
   conv2d_transpose_int8_ref, conv2d_transpose_int8_fast},
  {SOPHON_CMD_RESIZE_INT8, "resize_int8", "tiu_resize_int8", /* out, a, resize */
   sophon_check_tiu_resize_int8, resize_cost, NULL, resize_int8_ref, NULL},
  {SOPHON_CMD_REDUCE_INT8, "reduce_int8", "tiu_reduce_int8", /* out, a, reduce_kind, requant */
   sophon_check_tiu_reduce_int8, reduce_cost, NULL, reduce_int8_ref, reduce_int8_fast},
  {SOPHON_CMD_SOFTMAX_INT8, "softmax_int8", "tiu_softmax_int8", /* out, a, softmax_* */
   sophon_check_tiu_softmax_int8, softmax_int8_cost, NULL, softmax_int8_ref, NULL},
  {SOPHON_CMD_SOFTMAX_INT8_ONNXRUNTIME, "softmax_int8_onnxruntime", "tiu_softmax_int8_onnxruntime",
   /* out, a, softmax_input_scale, softmax_output_scale, softmax_output_zero_point */
   sophon_check_tiu_softmax_int8_onnxruntime, softmax_int8_cost, NULL,
   softmax_int8_onnxruntime_ref, NULL},
  {SOPHON_CMD_QUANTIZE_INT8, "quantize_int8", "tiu_quantize_int8", /* out, a, quant_* */
   sophon_check_tiu_quantize_int8, cast_cost, NULL, quantize_int8_ref, NULL},
  {SOPHON_CMD_DEQUANTIZE_INT8, "dequantize_int8", "tiu_dequantize_int8", /* out, a, quant_* */
   sophon_check_tiu_dequantize_int8, cast_cost, NULL, dequantize_int8_ref, NULL},
};

const sophon_instruction* sophon_isa_find(sophon_cmd_kind kind) {
  size_t i;
  for (i = 0; i < sizeof(instructions) / sizeof(instructions[0]); ++i)
    if (instructions[i].kind == kind) return &instructions[i];
  return NULL;
}

sophon_status sophon_isa_execute(sophon_device* dev, sophon_cmd_kind kind,
                                 const sophon_operands* o) {
  const sophon_instruction* ins = sophon_isa_find(kind);
  const sophon_global* weight_src;
  sophon_global weight;
  sophon_operands fast;
  sophon_status s;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if (ins == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "unknown instruction kind %d", (int)kind);
  if ((s = ins->check(dev, ins->op, o)) != SOPHON_OK) return s;

  /* LMEM holds what the operands read, and no deferred load outlives a write over
     it (chip/sophon_gdma.c); a fast conv2d or fc reads a deferred weight from DDR */
  fast = *o;
  if (o->a != NULL) sophon_lmem_reading(dev, o->a);
  if (o->c != NULL) sophon_lmem_reading(dev, o->c);
  if (o->b != NULL && !dev->reference && ins->fast != NULL &&
      (kind == SOPHON_CMD_CONV2D || kind == SOPHON_CMD_FC) &&
      (weight_src = sophon_deferred_source(dev, o->b)) != NULL) {
    weight = *weight_src; /* by value: the table moves */
    fast.weight_ddr = &weight;
  } else if (o->b != NULL) {
    sophon_lmem_reading(dev, o->b);
  }
  sophon_lmem_writing(dev, o->out);

  if (dev->reference || ins->fast == NULL || ins->fast(dev, &fast) != 0) {
    if (fast.weight_ddr != NULL) sophon_lmem_reading(dev, o->b);
    ins->reference(dev, o);
  }

  sophon_count_tiu(dev, ins->cost(&dev->chip, o), ins->macs != NULL ? ins->macs(o) : 0);
  sophon_touch(dev, o->out);
  if (o->a != NULL) sophon_touch(dev, o->a);
  if (o->b != NULL) sophon_touch(dev, o->b);
  if (o->c != NULL) sophon_touch(dev, o->c);
  return SOPHON_OK;
}

/* ------------------------------------------------- public instructions */

static sophon_operands operands(const sophon_local* out, const sophon_local* a,
                                const sophon_local* b, const sophon_local* c) {
  sophon_operands o;
  memset(&o, 0, sizeof(o));
  o.out = out;
  o.a = a;
  o.b = b;
  o.c = c;
  return o;
}

sophon_status sophon_tiu_conv2d(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, const sophon_local* weight,
                                const sophon_local* bias, const sophon_conv_params* p) {
  sophon_operands o = operands(out, in, weight, bias);
  o.conv = p;
  return sophon_isa_execute(dev, SOPHON_CMD_CONV2D, &o);
}

sophon_status sophon_tiu_fc(sophon_device* dev, const sophon_local* out,
                            const sophon_local* in, const sophon_local* weight,
                            const sophon_local* bias, const sophon_activation* act) {
  sophon_operands o = operands(out, in, weight, bias);
  o.act = act;
  return sophon_isa_execute(dev, SOPHON_CMD_FC, &o);
}

sophon_status sophon_tiu_pool2d(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, const sophon_pool_params* p) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.pool = p;
  return sophon_isa_execute(dev, SOPHON_CMD_POOL2D, &o);
}

sophon_status sophon_tiu_binary(sophon_device* dev, const sophon_local* out,
                                const sophon_local* a, const sophon_local* b,
                                sophon_binary_op op, const sophon_activation* act) {
  sophon_operands o = operands(out, a, b, NULL);
  o.binary_op = op;
  o.act = act;
  return sophon_isa_execute(dev, SOPHON_CMD_BINARY, &o);
}

sophon_status sophon_tiu_activation(sophon_device* dev, const sophon_local* out,
                                    const sophon_local* in, const sophon_activation* act) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.act = act;
  return sophon_isa_execute(dev, SOPHON_CMD_ACTIVATION, &o);
}

sophon_status sophon_tiu_softmax(sophon_device* dev, const sophon_local* out,
                                 const sophon_local* in) {
  sophon_operands o = operands(out, in, NULL, NULL);
  return sophon_isa_execute(dev, SOPHON_CMD_SOFTMAX, &o);
}

sophon_status sophon_tiu_conv2d_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias, const sophon_conv_params* p,
                                     const sophon_requant* q) {
  sophon_operands o = operands(out, in, weight, bias);
  o.conv = p;
  o.requant = q;
  return sophon_isa_execute(dev, SOPHON_CMD_CONV2D_INT8, &o);
}

sophon_status sophon_tiu_fc_int8(sophon_device* dev, const sophon_local* out,
                                 const sophon_local* in, const sophon_local* weight,
                                 const sophon_local* bias, const sophon_requant* q) {
  sophon_operands o = operands(out, in, weight, bias);
  o.requant = q;
  return sophon_isa_execute(dev, SOPHON_CMD_FC_INT8, &o);
}

sophon_status sophon_tiu_add_int8(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* a, const sophon_local* b,
                                  const sophon_add_int8_params* p) {
  sophon_operands o = operands(out, a, b, NULL);
  o.add = p;
  return sophon_isa_execute(dev, SOPHON_CMD_ADD_INT8, &o);
}

sophon_status sophon_tiu_pool2d_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_pool_params* p,
                                     int32_t act_min, int32_t act_max) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.pool = p;
  o.act_min = act_min;
  o.act_max = act_max;
  return sophon_isa_execute(dev, SOPHON_CMD_POOL2D_INT8, &o);
}

sophon_status sophon_tiu_resize(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, const sophon_resize_params* p) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.resize = p;
  return sophon_isa_execute(dev, SOPHON_CMD_RESIZE, &o);
}

sophon_status sophon_tiu_conv2d_transpose(sophon_device* dev, const sophon_local* out,
                                          const sophon_local* in, const sophon_local* weight,
                                          const sophon_local* bias, const sophon_conv_params* p) {
  sophon_operands o = operands(out, in, weight, bias);
  o.conv = p;
  return sophon_isa_execute(dev, SOPHON_CMD_CONV2D_TRANSPOSE, &o);
}

sophon_status sophon_tiu_reduce(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, sophon_reduce_kind kind) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.reduce_kind = kind;
  return sophon_isa_execute(dev, SOPHON_CMD_REDUCE, &o);
}

sophon_status sophon_tiu_norm(sophon_device* dev, const sophon_local* out,
                              const sophon_local* in, const sophon_local* gamma,
                              const sophon_local* beta, const sophon_norm_params* p) {
  sophon_operands o = operands(out, in, gamma, beta);
  o.norm = p;
  return sophon_isa_execute(dev, SOPHON_CMD_NORM, &o);
}

sophon_status sophon_tiu_lrn(sophon_device* dev, const sophon_local* out,
                             const sophon_local* in, const sophon_lrn_params* p) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.lrn = p;
  return sophon_isa_execute(dev, SOPHON_CMD_LRN, &o);
}

sophon_status sophon_tiu_lut_int8(sophon_device* dev, const sophon_local* out,
                                  const sophon_local* in, const sophon_lut_int8_params* p) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.lut = p;
  return sophon_isa_execute(dev, SOPHON_CMD_LUT_INT8, &o);
}

sophon_status sophon_tiu_binary_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* a, const sophon_local* b,
                                     const sophon_binary_int8_params* p) {
  sophon_operands o = operands(out, a, b, NULL);
  o.binary_int8 = p;
  return sophon_isa_execute(dev, SOPHON_CMD_BINARY_INT8, &o);
}

sophon_status sophon_tiu_conv2d_transpose_int8(sophon_device* dev, const sophon_local* out,
                                               const sophon_local* in, const sophon_local* weight,
                                               const sophon_local* bias,
                                               const sophon_conv_params* p,
                                               const sophon_requant* q) {
  sophon_operands o = operands(out, in, weight, bias);
  o.conv = p;
  o.requant = q;
  return sophon_isa_execute(dev, SOPHON_CMD_CONV2D_TRANSPOSE_INT8, &o);
}

sophon_status sophon_tiu_resize_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, const sophon_resize_params* p) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.resize = p;
  return sophon_isa_execute(dev, SOPHON_CMD_RESIZE_INT8, &o);
}

sophon_status sophon_tiu_reduce_int8(sophon_device* dev, const sophon_local* out,
                                     const sophon_local* in, sophon_reduce_kind kind,
                                     const sophon_requant* q) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.reduce_kind = kind;
  o.requant = q;
  return sophon_isa_execute(dev, SOPHON_CMD_REDUCE_INT8, &o);
}

sophon_status sophon_tiu_softmax_int8(sophon_device* dev, const sophon_local* out,
                                      const sophon_local* in, int32_t input_multiplier,
                                      int32_t input_left_shift) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.softmax_multiplier = input_multiplier;
  o.softmax_left_shift = input_left_shift;
  return sophon_isa_execute(dev, SOPHON_CMD_SOFTMAX_INT8, &o);
}

sophon_status sophon_tiu_softmax_int8_onnxruntime(sophon_device* dev, const sophon_local* out,
                                                  const sophon_local* in, float input_scale,
                                                  float output_scale, int32_t output_zero_point) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.softmax_input_scale = input_scale;
  o.softmax_output_scale = output_scale;
  o.softmax_output_zero_point = output_zero_point;
  return sophon_isa_execute(dev, SOPHON_CMD_SOFTMAX_INT8_ONNXRUNTIME, &o);
}

sophon_status sophon_tiu_quantize_int8(sophon_device* dev, const sophon_local* out,
                                       const sophon_local* in, float scale, int32_t zero_point,
                                       sophon_quantize_rounding rounding) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.quant_scale = scale;
  o.quant_zero_point = zero_point;
  o.quant_rounding = (int32_t)rounding;
  return sophon_isa_execute(dev, SOPHON_CMD_QUANTIZE_INT8, &o);
}

sophon_status sophon_tiu_dequantize_int8(sophon_device* dev, const sophon_local* out,
                                         const sophon_local* in, float scale, int32_t zero_point) {
  sophon_operands o = operands(out, in, NULL, NULL);
  o.quant_scale = scale;
  o.quant_zero_point = zero_point;
  return sophon_isa_execute(dev, SOPHON_CMD_DEQUANTIZE_INT8, &o);
}
