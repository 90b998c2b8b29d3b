/*
 * sophon_program.c - executes a command buffer (sophon_program.h) on a device.
 * Every index in a command is checked against its table before use, so a
 * malformed program fails with a message instead of reading out of bounds; the
 * TIU commands then run through the instruction table (sophon_isa.h).
 */
#include "sophon_program.h"

#include <stdio.h>
#include <string.h>

#include "chip/sophon_internal.h"
#include "isa/sophon_isa.h"

static const char* cmd_name(sophon_cmd_kind kind) {
  const sophon_instruction* ins = sophon_isa_find(kind);
  switch (kind) {
    case SOPHON_CMD_LOAD: return "load";
    case SOPHON_CMD_STORE: return "store";
    case SOPHON_CMD_TIMESTEP: return "timestep";
    case SOPHON_CMD_COPY: return "copy";
    case SOPHON_CMD_FILL: return "fill";
    default: return ins != NULL ? ins->name : "unknown";
  }
}

/* Table entry `index`, or NULL when the index is outside the table. */
#define SOPHON_ENTRY(table, count, index) \
  ((index) >= 0 && (index) < (count) ? &(table)[(index)] : NULL)

/* sophon_program_run prefixes the command index and kind. */
static sophon_status bad_index(sophon_device* dev, const char* what, int32_t index) {
  return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s index %d out of range", what, (int)index);
}

static sophon_status make_global(sophon_device* dev, const sophon_program* prog,
                                 void* const* buffers, int32_t index, sophon_global* out) {
  const sophon_global_ref* ref = SOPHON_ENTRY(prog->globals, prog->num_globals, index);
  if (ref == NULL) return bad_index(dev, "global", index);
  if (ref->buffer < 0 || ref->buffer >= prog->num_buffers || buffers[ref->buffer] == NULL)
    return bad_index(dev, "buffer", ref->buffer);
  out->data = (char*)buffers[ref->buffer] + ref->offset * sophon_dtype_size(ref->dtype);
  out->n = ref->n;
  out->c = ref->c;
  out->h = ref->h;
  out->w = ref->w;
  out->stride_n = ref->stride_n;
  out->stride_c = ref->stride_c;
  out->stride_h = ref->stride_h;
  out->stride_w = ref->stride_w;
  out->dtype = ref->dtype;
  return SOPHON_OK;
}

/* Runs TIU command `kind` with out = a and inputs b, c, d (each NULL when the
 * command has none) and the parameters already set in o. */
static sophon_status run_tiu(sophon_device* dev, sophon_cmd_kind kind, sophon_operands* o,
                             const sophon_local* out, const sophon_local* in0,
                             const sophon_local* in1, const sophon_local* in2) {
  o->out = out;
  o->a = in0;
  o->b = in1;
  o->c = in2;
  return sophon_isa_execute(dev, kind, o);
}

static sophon_status run_one(sophon_device* dev, const sophon_program* prog,
                             void* const* buffers, int32_t i) {
  const sophon_cmd* c = &prog->cmds[i];
  const sophon_local* a = SOPHON_ENTRY(prog->locals, prog->num_locals, c->a);
  const sophon_local* b = SOPHON_ENTRY(prog->locals, prog->num_locals, c->b);
  const sophon_local* lc = SOPHON_ENTRY(prog->locals, prog->num_locals, c->c);
  const sophon_local* ld = SOPHON_ENTRY(prog->locals, prog->num_locals, c->d);
  sophon_global g;
  sophon_operands o;
  sophon_status s;

  memset(&o, 0, sizeof(o));
  switch (c->kind) {
    case SOPHON_CMD_LOAD:
    case SOPHON_CMD_STORE:
      if (a == NULL) return bad_index(dev, "local", c->a);
      if ((s = make_global(dev, prog, buffers, c->b, &g)) != SOPHON_OK) return s;
      if (c->kind == SOPHON_CMD_STORE) return sophon_gdma_store(dev, &g, a);
      if (prog->constant_buffers != NULL && prog->constant_buffers[prog->globals[c->b].buffer])
        return sophon_gdma_load_constant(dev, a, &g);
      return sophon_gdma_load(dev, a, &g);
    case SOPHON_CMD_CONV2D:
    case SOPHON_CMD_CONV2D_INT8:
    case SOPHON_CMD_CONV2D_TRANSPOSE:
    case SOPHON_CMD_CONV2D_TRANSPOSE_INT8:
      o.conv = SOPHON_ENTRY(prog->convs, prog->num_convs, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (c->d >= 0 && ld == NULL) return bad_index(dev, "bias", c->d);
      if (o.conv == NULL) return bad_index(dev, "conv params", c->p);
      if (c->kind == SOPHON_CMD_CONV2D_INT8 || c->kind == SOPHON_CMD_CONV2D_TRANSPOSE_INT8) {
        o.requant = SOPHON_ENTRY(prog->requants, prog->num_requants, c->q);
        if (o.requant == NULL) return bad_index(dev, "requant", c->q);
      }
      return run_tiu(dev, c->kind, &o, a, b, lc, ld);
    case SOPHON_CMD_FC:
      o.act = SOPHON_ENTRY(prog->acts, prog->num_acts, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (c->d >= 0 && ld == NULL) return bad_index(dev, "bias", c->d);
      if (o.act == NULL) return bad_index(dev, "activation", c->p);
      return run_tiu(dev, c->kind, &o, a, b, lc, ld);
    case SOPHON_CMD_POOL2D:
    case SOPHON_CMD_POOL2D_INT8:
      o.pool = SOPHON_ENTRY(prog->pools, prog->num_pools, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (o.pool == NULL) return bad_index(dev, "pool params", c->p);
      o.act_min = c->c; /* POOL2D_INT8: the clamp bounds themselves */
      o.act_max = c->d;
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_BINARY:
      o.act = SOPHON_ENTRY(prog->acts, prog->num_acts, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (o.act == NULL) return bad_index(dev, "activation", c->p);
      o.binary_op = (sophon_binary_op)c->d;
      return run_tiu(dev, c->kind, &o, a, b, lc, NULL);
    case SOPHON_CMD_ACTIVATION:
      o.act = SOPHON_ENTRY(prog->acts, prog->num_acts, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (o.act == NULL) return bad_index(dev, "activation", c->p);
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_SOFTMAX:
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_REDUCE:
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      o.reduce_kind = (sophon_reduce_kind)c->d;
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_NORM:
      o.norm = SOPHON_ENTRY(prog->norms, prog->num_norms, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (c->c >= 0 && lc == NULL) return bad_index(dev, "gamma", c->c);
      if (c->d >= 0 && ld == NULL) return bad_index(dev, "beta", c->d);
      if (o.norm == NULL) return bad_index(dev, "norm params", c->p);
      return run_tiu(dev, c->kind, &o, a, b, lc, ld);
    case SOPHON_CMD_LRN:
      o.lrn = SOPHON_ENTRY(prog->lrns, prog->num_lrns, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (o.lrn == NULL) return bad_index(dev, "lrn params", c->p);
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_RESIZE:
    case SOPHON_CMD_RESIZE_INT8:
      o.resize = SOPHON_ENTRY(prog->resizes, prog->num_resizes, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (o.resize == NULL) return bad_index(dev, "resize params", c->p);
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_TIMESTEP:
      return sophon_timestep_end(dev);
    case SOPHON_CMD_FC_INT8:
      o.requant = SOPHON_ENTRY(prog->requants, prog->num_requants, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (c->d >= 0 && ld == NULL) return bad_index(dev, "bias", c->d);
      if (o.requant == NULL) return bad_index(dev, "requant", c->p);
      return run_tiu(dev, c->kind, &o, a, b, lc, ld);
    case SOPHON_CMD_ADD_INT8:
      o.add = SOPHON_ENTRY(prog->adds, prog->num_adds, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (o.add == NULL) return bad_index(dev, "add params", c->p);
      return run_tiu(dev, c->kind, &o, a, b, lc, NULL);
    case SOPHON_CMD_LUT_INT8:
      o.lut = SOPHON_ENTRY(prog->luts, prog->num_luts, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (o.lut == NULL) return bad_index(dev, "lut", c->p);
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_BINARY_INT8:
      o.binary_int8 = SOPHON_ENTRY(prog->binaries_int8, prog->num_binaries_int8, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (o.binary_int8 == NULL) return bad_index(dev, "binary_int8 params", c->p);
      return run_tiu(dev, c->kind, &o, a, b, lc, NULL);
    case SOPHON_CMD_REDUCE_INT8:
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      o.reduce_kind = (sophon_reduce_kind)c->d;
      if (c->p >= 0) {
        o.requant = SOPHON_ENTRY(prog->requants, prog->num_requants, c->p);
        if (o.requant == NULL) return bad_index(dev, "requant", c->p);
      }
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_SOFTMAX_INT8:
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      o.softmax_multiplier = c->c; /* the values themselves */
      o.softmax_left_shift = c->d;
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    case SOPHON_CMD_SOFTMAX_INT8_ONNXRUNTIME: {
      uint32_t bits[2];
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      bits[0] = (uint32_t)c->c; /* the scales' f32 bit patterns */
      bits[1] = (uint32_t)c->d;
      memcpy(&o.softmax_input_scale, &bits[0], sizeof(float));
      memcpy(&o.softmax_output_scale, &bits[1], sizeof(float));
      o.softmax_output_zero_point = c->p;
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    }
    case SOPHON_CMD_QUANTIZE_INT8:
    case SOPHON_CMD_DEQUANTIZE_INT8: {
      uint32_t bits;
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      bits = (uint32_t)c->c; /* the scale's f32 bit pattern */
      memcpy(&o.quant_scale, &bits, sizeof(float));
      o.quant_zero_point = c->d;
      o.quant_rounding = c->kind == SOPHON_CMD_QUANTIZE_INT8 ? c->p : 0;
      return run_tiu(dev, c->kind, &o, a, b, NULL, NULL);
    }
    case SOPHON_CMD_COPY: { /* GDMA DDR -> DDR */
      sophon_global src;
      if ((s = make_global(dev, prog, buffers, c->b, &g)) != SOPHON_OK) return s;
      if ((s = make_global(dev, prog, buffers, c->c, &src)) != SOPHON_OK) return s;
      return sophon_gdma_copy(dev, &g, &src);
    }
    case SOPHON_CMD_FILL: {
      const float* value = SOPHON_ENTRY(prog->values, prog->num_values, c->p);
      if (value == NULL) return bad_index(dev, "value", c->p);
      if ((s = make_global(dev, prog, buffers, c->b, &g)) != SOPHON_OK) return s;
      return sophon_gdma_fill(dev, &g, *value);
    }
  }
  return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "unknown command kind %d", (int)c->kind);
}

sophon_status sophon_program_run(sophon_device* dev, const sophon_program* prog,
                                 void* const* buffers) {
  int32_t i;
  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if (prog == NULL || buffers == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "program_run: program or buffers is NULL");
  for (i = 0; i < prog->num_cmds; ++i) {
    sophon_status s = run_one(dev, prog, buffers, i);
    if (s != SOPHON_OK) {
      /* keep the instruction's own message, prefixed with where it happened */
      char detail[SOPHON_ERROR_BYTES];
      memcpy(detail, dev->error, sizeof(detail)); /* same size; dev->error is terminated */
      detail[sizeof(detail) - 1] = '\0';
      sophon_set_error(dev, s, "command %d (%s): %s", (int)i, cmd_name(prog->cmds[i].kind), detail);
      return s;
    }
  }
  return SOPHON_OK;
}
