/*
 * sophon_program.c - executes a command buffer (sophon_program.h) on a device.
 * Every index in a command is checked against its table before use, so a
 * malformed program fails with a message instead of reading out of bounds.
 */
#include "sophon_program.h"

#include <stdio.h>
#include <string.h>

#include "sophon_internal.h"

static const char* cmd_name(sophon_cmd_kind kind) {
  switch (kind) {
    case SOPHON_CMD_LOAD: return "load";
    case SOPHON_CMD_STORE: return "store";
    case SOPHON_CMD_CONV2D: return "conv2d";
    case SOPHON_CMD_FC: return "fc";
    case SOPHON_CMD_POOL2D: return "pool2d";
    case SOPHON_CMD_BINARY: return "binary";
    case SOPHON_CMD_ACTIVATION: return "activation";
    case SOPHON_CMD_SOFTMAX: return "softmax";
    case SOPHON_CMD_TIMESTEP: return "timestep";
    case SOPHON_CMD_CONV2D_INT8: return "conv2d_int8";
    case SOPHON_CMD_FC_INT8: return "fc_int8";
    case SOPHON_CMD_ADD_INT8: return "add_int8";
    case SOPHON_CMD_POOL2D_INT8: return "pool2d_int8";
    case SOPHON_CMD_COPY: return "copy";
    case SOPHON_CMD_FILL: return "fill";
  }
  return "unknown";
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

static sophon_status run_one(sophon_device* dev, const sophon_program* prog,
                             void* const* buffers, int32_t i) {
  const sophon_cmd* c = &prog->cmds[i];
  const sophon_local* a = SOPHON_ENTRY(prog->locals, prog->num_locals, c->a);
  const sophon_local* b = SOPHON_ENTRY(prog->locals, prog->num_locals, c->b);
  const sophon_local* lc = SOPHON_ENTRY(prog->locals, prog->num_locals, c->c);
  const sophon_local* ld = SOPHON_ENTRY(prog->locals, prog->num_locals, c->d);
  sophon_global g;
  sophon_status s;

  switch (c->kind) {
    case SOPHON_CMD_LOAD:
    case SOPHON_CMD_STORE:
      if (a == NULL) return bad_index(dev, "local", c->a);
      if ((s = make_global(dev, prog, buffers, c->b, &g)) != SOPHON_OK) return s;
      return c->kind == SOPHON_CMD_LOAD ? sophon_gdma_load(dev, a, &g) : sophon_gdma_store(dev, &g, a);
    case SOPHON_CMD_CONV2D: {
      const sophon_conv_params* p = SOPHON_ENTRY(prog->convs, prog->num_convs, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (c->d >= 0 && ld == NULL) return bad_index(dev, "bias", c->d);
      if (p == NULL) return bad_index(dev, "conv params", c->p);
      return sophon_tiu_conv2d(dev, a, b, lc, ld, p);
    }
    case SOPHON_CMD_FC: {
      const sophon_activation* act = SOPHON_ENTRY(prog->acts, prog->num_acts, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (c->d >= 0 && ld == NULL) return bad_index(dev, "bias", c->d);
      if (act == NULL) return bad_index(dev, "activation", c->p);
      return sophon_tiu_fc(dev, a, b, lc, ld, act);
    }
    case SOPHON_CMD_POOL2D: {
      const sophon_pool_params* p = SOPHON_ENTRY(prog->pools, prog->num_pools, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (p == NULL) return bad_index(dev, "pool params", c->p);
      return sophon_tiu_pool2d(dev, a, b, p);
    }
    case SOPHON_CMD_BINARY: {
      const sophon_activation* act = SOPHON_ENTRY(prog->acts, prog->num_acts, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (act == NULL) return bad_index(dev, "activation", c->p);
      return sophon_tiu_binary(dev, a, b, lc, (sophon_binary_op)c->d, act);
    }
    case SOPHON_CMD_ACTIVATION: {
      const sophon_activation* act = SOPHON_ENTRY(prog->acts, prog->num_acts, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (act == NULL) return bad_index(dev, "activation", c->p);
      return sophon_tiu_activation(dev, a, b, act);
    }
    case SOPHON_CMD_SOFTMAX:
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      return sophon_tiu_softmax(dev, a, b);
    case SOPHON_CMD_TIMESTEP:
      return sophon_timestep_end(dev);
    case SOPHON_CMD_CONV2D_INT8: {
      const sophon_conv_params* p = SOPHON_ENTRY(prog->convs, prog->num_convs, c->p);
      const sophon_requant* q = SOPHON_ENTRY(prog->requants, prog->num_requants, c->q);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (c->d >= 0 && ld == NULL) return bad_index(dev, "bias", c->d);
      if (p == NULL) return bad_index(dev, "conv params", c->p);
      if (q == NULL) return bad_index(dev, "requant", c->q);
      return sophon_tiu_conv2d_int8(dev, a, b, lc, ld, p, q);
    }
    case SOPHON_CMD_FC_INT8: {
      const sophon_requant* q = SOPHON_ENTRY(prog->requants, prog->num_requants, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (c->d >= 0 && ld == NULL) return bad_index(dev, "bias", c->d);
      if (q == NULL) return bad_index(dev, "requant", c->p);
      return sophon_tiu_fc_int8(dev, a, b, lc, ld, q);
    }
    case SOPHON_CMD_ADD_INT8: {
      const sophon_add_int8_params* p = SOPHON_ENTRY(prog->adds, prog->num_adds, c->p);
      if (a == NULL || b == NULL || lc == NULL) return bad_index(dev, "operand", -1);
      if (p == NULL) return bad_index(dev, "add params", c->p);
      return sophon_tiu_add_int8(dev, a, b, lc, p);
    }
    case SOPHON_CMD_POOL2D_INT8: {
      const sophon_pool_params* p = SOPHON_ENTRY(prog->pools, prog->num_pools, c->p);
      if (a == NULL || b == NULL) return bad_index(dev, "operand", -1);
      if (p == NULL) return bad_index(dev, "pool params", c->p);
      return sophon_tiu_pool2d_int8(dev, a, b, p, c->c, c->d);
    }
    case SOPHON_CMD_COPY: {
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
      strncpy(detail, dev->error, sizeof(detail) - 1);
      detail[sizeof(detail) - 1] = '\0';
      sophon_set_error(dev, s, "command %d (%s): %s", (int)i, cmd_name(prog->cmds[i].kind), detail);
      return s;
    }
  }
  return SOPHON_OK;
}
