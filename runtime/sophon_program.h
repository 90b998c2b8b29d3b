/*
 * sophon_program.h - a region's program as the chip consumes it: a command
 * buffer. The compiler emits static tables (local tensors, global views,
 * instruction parameters, commands); sophon_program_run executes the commands in
 * order, as the chip's command queue would, stopping at the first failure.
 *
 * Global views carry an element offset into one of the program's DDR buffers
 * (the region's arguments and scratch buffers); the caller passes the buffers'
 * base pointers at run time, so one program serves every call.
 */
#ifndef SOPHON_PROGRAM_H_
#define SOPHON_PROGRAM_H_

#include "sophon.h"
#include "sophon_quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SOPHON_CMD_LOAD = 0,     /* gdma_load(local[a], global[b]) */
  SOPHON_CMD_STORE = 1,    /* gdma_store(global[b], local[a]) */
  SOPHON_CMD_CONV2D = 2,   /* conv2d(out=local[a], in=local[b], weight=local[c], bias=local[d] or -1, conv[p]) */
  SOPHON_CMD_FC = 3,       /* fc(out=a, in=b, weight=c, bias=d or -1, act[p]) */
  SOPHON_CMD_POOL2D = 4,   /* pool2d(out=a, in=b, pool[p]) */
  SOPHON_CMD_BINARY = 5,   /* binary(out=a, lhs=b, rhs=c, op=d, act[p]) */
  SOPHON_CMD_ACTIVATION = 6, /* activation(out=a, in=b, act[p]) */
  SOPHON_CMD_SOFTMAX = 7,  /* softmax(out=a, in=b) */
  SOPHON_CMD_TIMESTEP = 8, /* sophon_timestep_end */
  /* INT8 (sophon_quant.h; chips with has_int8) */
  SOPHON_CMD_CONV2D_INT8 = 9,  /* conv2d_int8(out=a, in=b, weight=c, bias=d or -1, conv[p], requant[q]) */
  SOPHON_CMD_FC_INT8 = 10,     /* fc_int8(out=a, in=b, weight=c, bias=d or -1, requant[p]) */
  SOPHON_CMD_ADD_INT8 = 11,    /* add_int8(out=a, lhs=b, rhs=c, add[p]) */
  SOPHON_CMD_POOL2D_INT8 = 12, /* pool2d_int8(out=a, in=b, pool[p], act_min=c, act_max=d):
                                  c and d are the clamp bounds themselves, not indices */
  /* data movement, DDR to DDR */
  SOPHON_CMD_COPY = 13,        /* gdma_copy(dst=global[b], src=global[c]) */
  SOPHON_CMD_FILL = 14,        /* gdma_fill(dst=global[b], value=values[p]) */
  SOPHON_CMD_RESIZE = 15,      /* resize(out=a, in=b, resize[p]) */
  SOPHON_CMD_CONV2D_TRANSPOSE = 16, /* conv2d_transpose(out=a, in=b, weight=c, bias=d or -1, conv[p]) */
  SOPHON_CMD_REDUCE = 17,      /* reduce(out=a, in=b, kind=d): d is a sophon_reduce_kind */
  SOPHON_CMD_NORM = 18,        /* norm(out=a, in=b, gamma=c or -1, beta=d or -1, norm[p]) */
  SOPHON_CMD_LRN = 19,         /* lrn(out=a, in=b, lrn[p]) */
  SOPHON_CMD_LUT_INT8 = 20,    /* lut_int8(out=a, in=b, luts[p]) */
  SOPHON_CMD_BINARY_INT8 = 21, /* binary_int8(out=a, lhs=b, rhs=c, binaries_int8[p]) */
  /* 30-39: INT8 movement, resize and transposed conv */
  SOPHON_CMD_CONV2D_TRANSPOSE_INT8 = 30, /* conv2d_transpose_int8(out=a, in=b, weight=c, bias=d or -1,
                                            conv[p], requant[q]) */
  SOPHON_CMD_RESIZE_INT8 = 31, /* resize_int8(out=a, in=b, resize[p]) */
  /* 40-49: INT8 reductions and softmax */
  SOPHON_CMD_REDUCE_INT8 = 40, /* reduce_int8(out=a, in=b, kind=d, requant[p] or -1 for MAX, MIN) */
  SOPHON_CMD_SOFTMAX_INT8 = 41, /* softmax_int8(out=a, in=b, input_multiplier=c,
                                   input_left_shift=d): c and d are the values themselves */
  SOPHON_CMD_SOFTMAX_INT8_ONNXRUNTIME = 52, /* softmax_int8_onnxruntime(out=a, in=b): c and d are
                                              the f32 bit patterns of the input and output scales,
                                              p the output zero point (values themselves) */
  /* 53-54: float32 <-> int8 casts inside a region (values themselves, c the
     scale's f32 bit pattern, d the zero point) */
  SOPHON_CMD_QUANTIZE_INT8 = 53,  /* quantize_int8(out=a int8, in=b f32): p a sophon_quantize_rounding */
  SOPHON_CMD_DEQUANTIZE_INT8 = 54 /* dequantize_int8(out=a f32, in=b int8) */
} sophon_cmd_kind;

typedef struct {
  sophon_cmd_kind kind;
  int32_t a, b, c, d; /* operand indices, meaning per kind (above) */
  int32_t p;          /* parameter index, meaning per kind */
  int32_t q;          /* second parameter index (CONV2D_INT8, CONV2D_TRANSPOSE_INT8: requant); unused by the
                         other kinds, so a 6-value initializer leaves it 0 */
} sophon_cmd;

/* A global view relative to buffer `buffer` of the program. */
typedef struct {
  int32_t buffer;
  int64_t offset; /* elements */
  int32_t n, c, h, w;
  int64_t stride_n, stride_c, stride_h, stride_w;
  sophon_dtype dtype;
} sophon_global_ref;

typedef struct {
  const sophon_local* locals;
  int32_t num_locals;
  const sophon_global_ref* globals;
  int32_t num_globals;
  const sophon_conv_params* convs;
  int32_t num_convs;
  const sophon_pool_params* pools;
  int32_t num_pools;
  const sophon_activation* acts;
  int32_t num_acts;
  const sophon_cmd* cmds;
  int32_t num_cmds;
  int32_t num_buffers;
  /* INT8 tables, last so that initializers without them stay valid (NULL, 0) */
  const sophon_requant* requants;        /* CONV2D_INT8, CONV2D_TRANSPOSE_INT8 (q), FC_INT8 (p) */
  int32_t num_requants;
  const sophon_add_int8_params* adds;    /* ADD_INT8 (p) */
  int32_t num_adds;
  const float* values;                   /* FILL (p) */
  int32_t num_values;
  const sophon_resize_params* resizes;   /* RESIZE, RESIZE_INT8 (p) */
  int32_t num_resizes;
  const sophon_norm_params* norms;       /* NORM (p) */
  int32_t num_norms;
  const sophon_lrn_params* lrns;         /* LRN (p) */
  int32_t num_lrns;
  const sophon_lut_int8_params* luts;    /* LUT_INT8 (p) */
  int32_t num_luts;
  const sophon_binary_int8_params* binaries_int8; /* BINARY_INT8 (p) */
  int32_t num_binaries_int8;
  /* num_buffers flags, or NULL: 1 marks a buffer that stays unchanged and allocated
     while the device lives (the model's weights); LOADs from it run as
     sophon_gdma_load_constant */
  const uint8_t* constant_buffers;
} sophon_program;

/* Runs every command. buffers[i] is the base of DDR buffer i (num_buffers of
 * them). On failure the device's error names the command index and kind. */
sophon_status sophon_program_run(sophon_device* dev, const sophon_program* prog,
                                 void* const* buffers);

#ifdef __cplusplus
}
#endif

#endif /* SOPHON_PROGRAM_H_ */
