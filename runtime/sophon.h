/*
 * sophon.h - public API of the emulated Sophon BM1680 (the C reference runtime).
 *
 * The emulator mirrors the chip's programming model (Sophgo TPU-MLIR docs):
 *
 *   - global memory (DDR) is host memory: tensors are described by a pointer and
 *     element strides (sophon_global), so NCHW, NHWC and any permutation are one case;
 *   - local memory (LMEM) is lanes x lmem_bytes_per_lane bytes, owned by the device;
 *     a local tensor (sophon_local) spreads its C dimension over the lanes: channel c
 *     lives in lane c % npu_num at the same byte address `addr` of every lane, and each
 *     lane holds [n][ceil(c / npu_num)][h][w];
 *   - a GDMA engine moves 4-D strided tensors between global memory and LMEM;
 *   - a compute engine (TIU) whose instructions read and write LMEM only.
 *
 * Every public function returns a sophon_status; on failure the device keeps a
 * message (sophon_device_error) that names the instruction and the operand.
 * Every LMEM access is bounds-checked once per instruction, before it runs.
 * Counters (MACs, instructions, bytes moved, estimated cycles per engine) follow
 * the cost model in chip/sophon_cost.h.
 *
 * C99. No global state: everything lives in a sophon_device.
 */
#ifndef SOPHON_H_
#define SOPHON_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */

typedef enum {
  SOPHON_OK = 0,
  SOPHON_ERR_ARGUMENT = 1,    /* malformed descriptor or parameter */
  SOPHON_ERR_BOUNDS = 2,      /* an LMEM access beyond the lane's memory */
  SOPHON_ERR_UNSUPPORTED = 3, /* e.g. a dtype the chip profile has no datapath for */
  SOPHON_ERR_NOMEM = 4        /* host allocation failed */
} sophon_status;

const char* sophon_status_name(sophon_status status);

/* ---------------------------------------------------------- chip profile */

/*
 * The chip description. The compiler reads the same numbers from
 * tvm_sophon/chips/<name>.json and emits this struct into generated code; the
 * runtime never has numbers of its own.
 */
typedef struct {
  const char* name;
  int32_t npu_num;              /* lanes (NPUs) */
  int64_t lmem_bytes_per_lane;  /* local memory per lane */
  int32_t lmem_banks;           /* banks per lane (informational for the allocator) */
  int32_t eu_bytes;             /* bytes one lane's execution units take per cycle:
                                   EU_NUM(dtype) = eu_bytes / sizeof(dtype) */
  int32_t has_int8;             /* 0: int8 instructions are rejected */
  double clock_hz;              /* TIU clock; every cycle counter is in its cycles */
  double ddr_bytes_per_second;  /* DDR bandwidth seen by the GDMA */
  double power_watts;           /* typical power, for energy estimates */
  int32_t gdma_latency_cycles;  /* fixed cost of one GDMA instruction, GDMA cycles */
  int32_t tiu_latency_cycles;   /* issue cost of one TIU instruction, TIU cycles */
  int32_t int8_macs_per_eu;     /* INT8 MACs one EU does per cycle per batch item */
  /* Members below were added with the measured-silicon cost model
   * (chip/sophon_cost.h); 0 keeps the simpler model they refine. */
  double gdma_clock_hz;         /* GDMA engine clock (0: clock_hz) */
  int32_t gdma_burst_bytes;     /* DDR and LMEM access granularity of the GDMA: a
                                   contiguous run costs whole bursts (0: 1 byte) */
  int32_t timestep_sync_cycles; /* TIU/GDMA synchronisation at the end of a
                                   timestep that holds work, TIU cycles */
  int32_t dwpool_eu_bytes;      /* bytes per cycle per lane of the depthwise/pooling
                                   unit (0: eu_bytes, the conv unit's) */
  int32_t int8_batch_pack;      /* batch items packed in one 32-bit word of an
                                   INT8 tensor: 4 for the BM1684's "4N" layout (0: 1) */
  int32_t eltwise_eu_bytes;     /* bytes per cycle per lane of the element-wise
                                   (tensor-arithmetic, table-lookup) datapath, which
                                   holds every element in a 32-bit slot, one batch
                                   item each (0: eu_bytes, and element-wise work
                                   packed like the conv unit's) */
} sophon_chip;

/* ----------------------------------------------------------------- dtypes */

typedef enum {
  SOPHON_F32 = 0,
  SOPHON_I8 = 1,
  SOPHON_I32 = 2
} sophon_dtype;

int32_t sophon_dtype_size(sophon_dtype dtype); /* bytes, 0 for an unknown dtype */

/* ------------------------------------------------------------ descriptors */

/* A 4-D view of a host tensor: element (n, c, h, w) is at
 * data + (n*stride_n + c*stride_c + h*stride_h + w*stride_w) * sizeof(dtype).
 * Strides are in elements and may be zero (broadcast on load). */
typedef struct {
  void* data;
  int32_t n, c, h, w;
  int64_t stride_n, stride_c, stride_h, stride_w;
  sophon_dtype dtype;
} sophon_global;

typedef enum {
  /* per-channel stride is h*w rounded up to EU_NUM(dtype) elements (conv activations) */
  SOPHON_LAYOUT_ALIGNED = 0,
  /* per-channel stride is h*w (weights, bias, vectors) */
  SOPHON_LAYOUT_COMPACT = 1
} sophon_layout;

/* A tensor in LMEM. Channel c lives in lane c % npu_num; in every lane the tensor
 * starts at byte `addr` and holds [n][ceil(c/npu_num)][h][w] with the channel stride
 * given by `layout`, or by `cstride` when it is non-zero. `addr` must be a multiple
 * of the dtype size (runtime check).
 *
 * An explicit `cstride` (elements, >= h*w) makes the tensor a window of a larger
 * buffer: rows [r, r+h) of a buffer with channel stride S are the tensor at
 * addr + r*w*sizeof(dtype) with cstride S. The compiler uses it to hand a conv the
 * band of rows it needs out of a slice loaded once for several consumers. */
typedef struct {
  uint32_t addr;
  int32_t n, c, h, w;
  sophon_dtype dtype;
  sophon_layout layout;
  int32_t cstride; /* 0: from layout */
} sophon_local;

/* Bytes one lane needs for `t` on `chip` (0 if `t` is malformed): for a derived
 * channel stride n*ceil(c/npu)*stride*size; for an explicit one the footprint up to
 * the last element, ((n*ceil(c/npu) - 1)*cstride + h*w)*size. An INT8 tensor in the
 * ALIGNED layout on a chip with int8_batch_pack p > 1 reserves the "4N" layout's
 * footprint: n rounded up to a multiple of p (a batch-1 tensor takes a whole 32-bit
 * word per element, as on the BM1684); a window (explicit cstride) lies inside
 * such a buffer and keeps its own footprint. */
int64_t sophon_local_lane_bytes(const sophon_chip* chip, const sophon_local* t);
/* Batch items `t` occupies in LMEM: n, or n rounded up to int8_batch_pack for an
 * INT8 ALIGNED tensor (the "4N" layout packs p items in each 32-bit word). */
int64_t sophon_local_batch_slots(const sophon_chip* chip, const sophon_local* t);
/* Elements between consecutive channels of one lane. */
int64_t sophon_local_channel_stride(const sophon_chip* chip, const sophon_local* t);

/* ------------------------------------------------------------------ device */

typedef struct {
  uint64_t macs;               /* multiply-accumulates done by the TIU */
  uint64_t tiu_instructions;
  uint64_t gdma_instructions;
  uint64_t bytes_loaded;       /* DDR -> LMEM */
  uint64_t bytes_stored;       /* LMEM -> DDR */
  uint64_t tiu_cycles;         /* estimated, chip/sophon_cost.h */
  uint64_t gdma_cycles;        /* estimated, chip/sophon_cost.h */
  uint64_t lmem_peak_bytes;    /* highest byte touched in any lane, + 1 */
  uint64_t timesteps;          /* closed by sophon_timestep_end */
  uint64_t cycles;             /* estimated time: the sum over closed timesteps of
                                  max(TIU cycles, GDMA cycles) of the timestep; the two
                                  engines overlap within a timestep (chip/sophon_cost.h) */
} sophon_counters;

typedef struct sophon_device sophon_device;

/* Creates a device with zeroed LMEM of chip->npu_num x chip->lmem_bytes_per_lane.
 * The chip struct is copied (the name string too). Returns SOPHON_ERR_ARGUMENT, with
 * no message since there is no device yet, unless npu_num > 0, lmem_bytes_per_lane
 * is a positive multiple of 4, eu_bytes >= 4, clock_hz and ddr_bytes_per_second
 * are > 0, the latencies are >= 0 and the cost-model members after them are >= 0. */
sophon_status sophon_device_create(const sophon_chip* chip, sophon_device** out);
void sophon_device_destroy(sophon_device* dev);

/* Host threads the emulator's compute kernels use (default 1); n = 0 takes the
 * number of online CPUs. The pool is created here, once, and kept. Results do not
 * depend on the thread count: every output element is computed by one thread in a
 * fixed order. SOPHON_ERR_ARGUMENT for n < 0, SOPHON_ERR_NOMEM if threads cannot be
 * started (the device then keeps 1 thread). */
sophon_status sophon_device_set_threads(sophon_device* dev, int32_t n);
/* on = 1: run the plain reference kernels only (single-threaded, for debugging);
 * on = 0 (default): the fast kernels, which match the reference within a small f32
 * tolerance (summation order; fast/sophon_fast_conv.c). SOPHON_ERR_ARGUMENT otherwise. */
sophon_status sophon_device_set_reference(sophon_device* dev, int32_t on);

/* The host instruction sets the fast kernels may use, at most (default: all the
 * CPU has). Lowering it selects the other variants of the same kernels, for tests
 * and for comparing them; it never changes INT8 results, nor f32 results beyond
 * the tolerance each fast kernel states. SOPHON_ERR_ARGUMENT for an unknown value. */
typedef enum {
  SOPHON_ISA_C = 0,       /* portable C only */
  SOPHON_ISA_AVX2 = 1,    /* AVX2 (and FMA where a kernel uses it) */
  SOPHON_ISA_AVX512 = 2   /* AVX-512 (F, BW, DQ, VL; VNNI where present) */
} sophon_isa;
sophon_status sophon_device_set_isa(sophon_device* dev, int32_t max_isa);

const sophon_chip* sophon_device_chip(const sophon_device* dev);
/* The message of the last failed call on this device ("" if none). */
const char* sophon_device_error(const sophon_device* dev);
const sophon_counters* sophon_device_counters(const sophon_device* dev);
void sophon_device_reset_counters(sophon_device* dev);

/* Closes the current timestep: the instructions issued since the previous one
 * run concurrently on the two engines, so the timestep takes the longer of the
 * TIU and GDMA cycles it holds. A program that loads slice i+1 while computing
 * slice i issues both in one timestep (double buffering). */
sophon_status sophon_timestep_end(sophon_device* dev);

/* Raw access to one lane's LMEM, bounds-checked (for tests and debugging). */
sophon_status sophon_lmem_read(sophon_device* dev, int32_t lane, uint32_t addr,
                               void* dst, size_t bytes);
sophon_status sophon_lmem_write(sophon_device* dev, int32_t lane, uint32_t addr,
                                const void* src, size_t bytes);

/* -------------------------------------------------------------------- GDMA */

/* Copies the 4-D global view `src` into `dst`. Shapes and dtypes must match. */
sophon_status sophon_gdma_load(sophon_device* dev, const sophon_local* dst,
                               const sophon_global* src);
/* sophon_gdma_load of a view that stays unchanged, and allocated, while the device
 * lives unless the device itself writes it (a compiled model's weights: the program
 * marks their buffers, see sophon_program.constant_buffers). The same checks,
 * counters and, as far as anything can observe, LMEM contents: the host copy of an
 * f32 view is deferred until an instruction, a store or sophon_lmem_read reads those
 * bytes, and skipped for the bytes overwritten first (a view whose (n, c) blocks are
 * not contiguous, such as a transposed fc weight, comes from a contiguous copy of it
 * packed once: one batch item, no negative stride); a fast f32 conv2d or fc whose
 * weight operand is exactly that destination reads the weight from a copy of `src`
 * packed once (the same values). Other views, and every view in reference mode, are
 * copied at once. */
sophon_status sophon_gdma_load_constant(sophon_device* dev, const sophon_local* dst,
                                        const sophon_global* src);
/* Copies `src` into the 4-D global view `dst`. Shapes and dtypes must match.
 * A zero dst stride on a dim > 1 is rejected (broadcast is for loads only). */
sophon_status sophon_gdma_store(sophon_device* dev, const sophon_global* dst,
                                const sophon_local* src);
/* DDR to DDR (S2S): copies the 4-D view `src` onto `dst` (same shape and dtype;
 * src may broadcast with zero strides). dst must not write an element twice, and
 * the two views' address ranges must not overlap. Costs its bytes twice over the
 * DDR bandwidth (read and written: sophon_cost_gdma_copy). */
sophon_status sophon_gdma_copy(sophon_device* dev, const sophon_global* dst,
                               const sophon_global* src);
/* Constant fill of the 4-D view `dst` with `value` (exactly representable in its
 * dtype): the border of a pad. */
sophon_status sophon_gdma_fill(sophon_device* dev, const sophon_global* dst, double value);

/* --------------------------------------------------------------------- TIU */

/* NaN and infinities. Every f32 instruction follows IEEE 754 arithmetic (a NaN
 * operand gives NaN; inf - inf, 0 * inf and inf / inf are NaN; overflow is inf),
 * and the selections propagate NaN like IEEE 754-2019 maximum / minimum (and
 * numpy, onnxruntime, PyTorch):
 *   relu(NaN) = NaN, clip(NaN, lo, hi) = NaN, max(NaN, y) = max(x, NaN) = NaN,
 *   min likewise, a max-pool window with a NaN tap gives NaN, a softmax vector
 *   with a NaN or an infinity gives NaN throughout (exp(inf - inf)).
 * Signed zeros: relu(-0) = +0; max / min of +0 and -0 return the second operand.
 * The reference kernels define this and the fast kernels match them bit for bit
 * (a NaN may carry another payload). TVM's own llvm build does not define these
 * cases (its selections are plain compares: relu(NaN) = 0, max(NaN, 1) = 1 but
 * max(1, NaN) = NaN). */

typedef enum {
  SOPHON_ACT_NONE = 0,
  SOPHON_ACT_RELU = 1,
  SOPHON_ACT_CLIP = 2,       /* min(max(x, lo), hi): relu6 is lo=0, hi=6 */
  SOPHON_ACT_LEAKY_RELU = 3, /* x >= 0 ? x : alpha * x */
  SOPHON_ACT_SIGMOID = 4,
  SOPHON_ACT_TANH = 5,
  SOPHON_ACT_SILU = 6,         /* x * sigmoid(x) (swish) */
  SOPHON_ACT_HARD_SIGMOID = 7, /* min(max(alpha * x + beta, 0), 1) */
  SOPHON_ACT_HARD_SWISH = 8,   /* x * min(max(x + 3, 0), 6) / 6 */
  SOPHON_ACT_GELU = 9,         /* x * (0.5 + erf(x * sqrt(1/2)) * 0.5) */
  SOPHON_ACT_GELU_TANH = 10,   /* 0.5 * x * (1 + tanh(sqrt(2/pi) * x * (1 + 0.044715 * x * x))) */
  SOPHON_ACT_MISH = 11,        /* x * tanh(softplus(x)) */
  SOPHON_ACT_ELU = 12,         /* x > 0 ? x : alpha * (exp(x) - 1) */
  SOPHON_ACT_SOFTPLUS = 13,    /* log(1 + exp(x)), as max(x, 0) + log1p(exp(-|x|)) */
  /* the special functions, element-wise */
  SOPHON_ACT_SQRT = 14,
  SOPHON_ACT_RSQRT = 15,       /* 1 / sqrt(x) */
  SOPHON_ACT_EXP = 16,
  SOPHON_ACT_LOG = 17,
  SOPHON_ACT_RECIPROCAL = 18,  /* 1 / x */
  SOPHON_ACT_ABS = 19,
  SOPHON_ACT_NEG = 20,
  SOPHON_ACT_ERF = 21
} sophon_act_kind;

typedef struct {
  sophon_act_kind kind;
  float alpha;  /* leaky relu and ELU slope, hard-sigmoid slope */
  float lo, hi; /* clip bounds */
  float beta;   /* hard-sigmoid offset (after the older fields, so that their
                   initializers stay valid) */
} sophon_activation;

typedef struct {
  int32_t kernel_h, kernel_w;
  int32_t stride_h, stride_w;
  int32_t pad_top, pad_left, pad_bottom, pad_right;
  int32_t dilation_h, dilation_w;
  int32_t groups;               /* 1: dense; == in.c == out.c: depthwise */
  sophon_activation act;        /* applied after the bias */
} sophon_conv_params;

/*
 * out[n, oc, oy, ox] = act(bias[oc] + sum_{ic in group, ky, kx}
 *     in[n, g*icg + ic, oy*sh - pt + ky*dh, ox*sw - pl + kx*dw] * weight[oc, ic, ky*kw + kx])
 * Shapes: in (N, IC, H, W); weight (1, OC, IC/groups, KH*KW), COMPACT;
 *         bias (1, OC, 1, 1) or NULL; out (N, OC, OH, OW) with
 *         OH = (H + pt + pb - dh*(KH-1) - 1) / sh + 1, likewise OW.
 * Padding reads as zero.
 */
sophon_status sophon_tiu_conv2d(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, const sophon_local* weight,
                                const sophon_local* bias, const sophon_conv_params* p);

/*
 * Fully connected: out[m, j] = act(bias[j] + sum_k in[m, k] * weight[j, k]).
 * act may be NULL (no activation).
 * Shapes: in (M, K, 1, 1); weight (1, N, K, 1), COMPACT; bias (1, N, 1, 1) or NULL;
 *         out (M, N, 1, 1).
 */
sophon_status sophon_tiu_fc(sophon_device* dev, const sophon_local* out,
                            const sophon_local* in, const sophon_local* weight,
                            const sophon_local* bias, const sophon_activation* act);

/* Whose arithmetic an int8 pool or resize (sophon_quant.h) follows; the f32
 * instructions ignore it and the quantization fields after it. */
typedef enum {
  SOPHON_INT8_TFLITE = 0,      /* TFLite's int8 kernels, the quantization kept */
  SOPHON_INT8_ONNXRUNTIME = 1  /* onnxruntime's for an ONNX QDQ model, in f32 */
} sophon_int8_arithmetic;

typedef enum { SOPHON_POOL_MAX = 0, SOPHON_POOL_AVG = 1 } sophon_pool_kind;

typedef struct {
  sophon_pool_kind kind;
  int32_t kernel_h, kernel_w;
  int32_t stride_h, stride_w;
  int32_t pad_top, pad_left, pad_bottom, pad_right;
  int32_t dilation_h, dilation_w;
  /* AVG only: 1 divides by kernel_h*kernel_w, 0 by the number of in-bounds taps.
   * Taps beyond the padded input (ceil mode) never count. MAX ignores padding. */
  int32_t count_include_pad;
  sophon_int8_arithmetic arithmetic;        /* int8 AVG only */
  float input_scale, output_scale;          /* int8 ONNXRUNTIME only */
  int32_t input_zero_point, output_zero_point;
} sophon_pool_params;

/* in (N, C, H, W) -> out (N, C, OH, OW), OH as for conv (the caller may ask for a
 * larger OH/OW, ceil mode: windows are clipped to the padded input). OH may be at
 * most ceil((H + pt + pb - dh*(KH-1) - 1) / sh) + 1, and the last window must start
 * inside the padded input. AVG with count_include_pad = 1 divides by the taps inside
 * the padded input (KH*KW except for clipped ceil-mode windows); an empty divisor
 * gives 0. MAX over a window with no real input tap gives -FLT_MAX. */
sophon_status sophon_tiu_pool2d(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, const sophon_pool_params* p);

typedef enum {
  SOPHON_BINARY_ADD = 0,
  SOPHON_BINARY_SUB = 1,
  SOPHON_BINARY_MUL = 2,
  SOPHON_BINARY_MAX = 3,
  SOPHON_BINARY_MIN = 4,
  SOPHON_BINARY_DIV = 5,  /* a / b */
  SOPHON_BINARY_PRELU = 6 /* a > 0 ? a : a * b (b: the slope, e.g. one per channel) */
} sophon_binary_op;

/* out = act(a op b), element-wise with broadcast: each of n, c, h, w of `a` and `b`
 * is either equal to out's or 1. A broadcast channel (c == 1) is read from lane 0.
 * act may be NULL (no activation). For binary, activation and softmax, out may
 * alias an input exactly (same addr, n, c, h, w, dtype and layout); any other
 * overlap of the per-lane byte ranges is SOPHON_ERR_ARGUMENT. conv2d, fc and
 * pool2d reject any overlap of out with an input. */
sophon_status sophon_tiu_binary(sophon_device* dev, const sophon_local* out,
                                const sophon_local* a, const sophon_local* b,
                                sophon_binary_op op, const sophon_activation* act);

/* out = act(in), same shape. */
sophon_status sophon_tiu_activation(sophon_device* dev, const sophon_local* out,
                                    const sophon_local* in, const sophon_activation* act);

/* Softmax over h: out[n, c, :, w] = softmax(in[n, c, :, w]). The compiler maps any
 * softmax axis to h (outer dims -> c, inner dims -> w). Numerically stable (max
 * subtracted). */
sophon_status sophon_tiu_softmax(sophon_device* dev, const sophon_local* out,
                                 const sophon_local* in);

/*
 * Transposed convolution (the gradient of conv2d with respect to its input):
 * out[n, g*OCg + o, oy, ox] = act(bias[oc] + sum_{ic in group g, ky, kx}
 *     in[n, ic, iy, ix] * weight[ic, o, ky*kw + kx])
 * over the taps with iy*sh - pt + ky*dh == oy and ix*sw - pl + kx*dw == ox.
 * Shapes: in (N, IC, H, W); weight (1, IC, OC/groups, KH*KW), COMPACT (TVM's IOHW);
 *         bias (1, OC, 1, 1) or NULL; out (N, OC, OH, OW) of any size: rows no tap
 *         reaches get the bias alone (output padding). pad_top, pad_left >= 0;
 *         pad_bottom and pad_right must be 0 (out's size sets the end).
 */
sophon_status sophon_tiu_conv2d_transpose(sophon_device* dev, const sophon_local* out,
                                          const sophon_local* in, const sophon_local* weight,
                                          const sophon_local* bias, const sophon_conv_params* p);

typedef enum {
  SOPHON_REDUCE_SUM = 0,
  SOPHON_REDUCE_MEAN = 1, /* the sum divided by H */
  SOPHON_REDUCE_MAX = 2,
  SOPHON_REDUCE_MIN = 3
} sophon_reduce_kind;

/* Reduction over h: in (N, C, H, W) -> out (N, C, 1, W), summed (max, min) over
 * y = 0, 1, ... in f32. The compiler maps the reduced axes onto h. */
sophon_status sophon_tiu_reduce(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, sophon_reduce_kind kind);

typedef struct {
  float epsilon; /* added to the variance */
} sophon_norm_params;

/* Normalisation over h (layer norm, instance norm): for each (n, c, w) column,
 * out = (x - mean) / sqrt(var + epsilon) * gamma + beta, mean and the (biased)
 * variance over h in two passes in f32. gamma, beta may be NULL (1 and 0); each of
 * their c, h, w is 1 (broadcast; c from lane 0) or in's, n is 1. out may alias in. */
sophon_status sophon_tiu_norm(sophon_device* dev, const sophon_local* out,
                              const sophon_local* in, const sophon_local* gamma,
                              const sophon_local* beta, const sophon_norm_params* p);

typedef struct {
  int32_t size;                  /* channels in the window, centred as size / 2 before */
  float alpha, beta, bias;
} sophon_lrn_params;

/* Local response normalisation across channels (ONNX LRN):
 * out[n, c] = in[n, c] / (bias + alpha * (sum_{k < size} in[n, c - size/2 + k]^2) / size)^beta,
 * channels outside [0, C) counting 0. Same shapes; out must not overlap in. */
sophon_status sophon_tiu_lrn(sophon_device* dev, const sophon_local* out,
                             const sophon_local* in, const sophon_lrn_params* p);

typedef enum { SOPHON_RESIZE_NEAREST = 0, SOPHON_RESIZE_BILINEAR = 1 } sophon_resize_method;

/* Where output pixel x samples the input (scale = in_size / out_size, in f32):
 * the coordinate modes of ONNX Resize / TVM's image.resize2d. */
typedef enum {
  SOPHON_COORD_HALF_PIXEL = 0,         /* (x + 0.5) * scale - 0.5 */
  SOPHON_COORD_ALIGN_CORNERS = 1,      /* x * (in - 1) / (out - 1); out = 1 needs in = 1 */
  SOPHON_COORD_ASYMMETRIC = 2,         /* x * scale */
  SOPHON_COORD_PYTORCH_HALF_PIXEL = 3, /* half pixel, but 0 when out = 1 */
  SOPHON_COORD_TF_HALF_PIXEL_FOR_NN = 4 /* (x + 0.5) * scale */
} sophon_resize_coord;

/* How NEAREST turns the coordinate into an index (BILINEAR ignores it). */
typedef enum {
  SOPHON_ROUND_HALF_EVEN = 0,          /* round to nearest, ties to even */
  SOPHON_ROUND_PREFER_FLOOR = 1,       /* ceil(v - 0.5) */
  SOPHON_ROUND_PREFER_CEIL = 2,        /* floor(v + 0.5) */
  SOPHON_ROUND_FLOOR = 3,              /* floor(v + 1e-5) */
  SOPHON_ROUND_CEIL = 4                /* ceil(v - 1e-5) */
} sophon_resize_rounding;

/* The image's full heights and where the operands' rows sit in it, so that a band
 * of output rows can be computed from the band of input rows it reads. Widths are
 * never sliced: in->w and out->w are the full widths. */
typedef struct {
  sophon_resize_method method;
  sophon_resize_coord coord;
  sophon_resize_rounding rounding;
  int32_t in_h, out_h;        /* full image heights */
  int32_t in_row0, out_row0;  /* first image row held by in / out */
  sophon_int8_arithmetic arithmetic;        /* int8 only */
  float input_scale, output_scale;          /* int8 ONNXRUNTIME only */
  int32_t input_zero_point, output_zero_point;
} sophon_resize_params;

/*
 * 2-D resize of every (n, c) plane: in (N, C, h_in, W_in) -> out (N, C, h_out, W_out),
 * where out holds image rows [out_row0, out_row0 + h_out) of an out_h-row image and
 * in holds rows [in_row0, in_row0 + h_in) of an in_h-row one. Along each axis the
 * source coordinate v of output index x follows `coord` (in f32, as TVM's topi):
 *   NEAREST:  out = in[clamp(round(v_y))][clamp(round(v_x))], round by `rounding`;
 *             ASYMMETRIC with FLOOR and an integer ratio r = out/in is x / r exactly;
 *   BILINEAR: y0 = floor(v_y), ly = v_y - y0 (likewise x), indices clamped to the image,
 *             top = p00 * (1 - lx) + p01 * lx, bottom likewise,
 *             out = top * (1 - ly) + bottom * ly.
 * Every clamped source row must be inside in's band (SOPHON_ERR_ARGUMENT otherwise).
 */
sophon_status sophon_tiu_resize(sophon_device* dev, const sophon_local* out,
                                const sophon_local* in, const sophon_resize_params* p);

#ifdef __cplusplus
}
#endif

#endif /* SOPHON_H_ */
