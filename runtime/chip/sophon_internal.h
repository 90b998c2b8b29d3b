/*
 * sophon_internal.h - the chip's internals, shared by the runtime's .c files (not
 * public API).
 *
 * Holds the device struct, error reporting, the descriptor checks every
 * instruction runs before it touches memory (shape, dtype, bounds, overlap), the
 * LMEM lane-layout math as cheap inline "views", the operands of a TIU
 * instruction (sophon_operands, what the instruction table of isa/ passes to
 * checks, costs and kernels) and TFLite's inline fixed-point helpers.
 */
#ifndef SOPHON_INTERNAL_H_
#define SOPHON_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>

#include "sophon.h"
#include "sophon_quant.h"
#include "chip/sophon_threads.h"

#if defined(__GNUC__)
#define SOPHON_PRINTF_FORMAT(fmt_index, first_arg) \
  __attribute__((format(printf, fmt_index, first_arg)))
#else
#define SOPHON_PRINTF_FORMAT(fmt_index, first_arg)
#endif

/* The fast kernels have AVX2 variants (no FMA: see sophon_fast_conv.c), selected at
 * run time, when the compiler is GCC or Clang targeting x86-64; elsewhere (or with
 * -DSOPHON_PORTABLE, which the toolchain sets when the compiler cannot build them)
 * they run as plain C. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(SOPHON_PORTABLE)
#define SOPHON_X86_DISPATCH 1
#else
#define SOPHON_X86_DISPATCH 0
#endif

#define SOPHON_ERROR_BYTES 512
#define SOPHON_NAME_BYTES 64
#define SOPHON_MAX_DEFERRED 128 /* deferred constant loads a device keeps */

/* A load of a constant DDR view (sophon_gdma_load_constant) whose host copy has not
 * been made yet, or not all of it: as far as the chip is concerned, the bytes of
 * dst's channel blocks in lanes [l0, l1) at per-lane offsets [wb, we) hold `src`
 * (see "deferred loads" in chip/sophon_gdma.c). */
typedef struct {
  sophon_local dst;
  sophon_global view; /* the load's source as the program gave it */
  sophon_global src;  /* where the bytes are copied from: `view` itself when each of
                         its (n, c) blocks is contiguous, else a packed contiguous
                         copy of it (sophon_device_packed) */
  int64_t begin, end; /* per-lane byte range of dst */
  int64_t wb, we;     /* the pending part: bytes [wb, we) of lanes [l0, l1) */
  int32_t l0, l1;
  int32_t lanes;      /* lanes dst reaches: min(c, npu_num) */
} sophon_deferred_load;

struct sophon_device {
  sophon_chip chip;                   /* copy; chip.name points at chip_name */
  char chip_name[SOPHON_NAME_BYTES];
  uint8_t* lmem;                      /* npu_num * lane_pitch bytes; lane l starts
                                         at l * lane_pitch; 64-byte aligned */
  void* lmem_block;                   /* the allocation lmem lies in */
  int64_t lane_pitch;                 /* >= lmem_bytes_per_lane: see sophon_device.c */
  sophon_counters counters;
  uint64_t step_tiu_cycles;           /* of the open timestep */
  uint64_t step_gdma_cycles;
  char error[SOPHON_ERROR_BYTES];     /* last failure, "" if none */
  /* host execution (sophon_device_set_threads / _set_reference); none of it changes
     what an instruction computes beyond the fast kernels' stated f32 tolerance */
  int32_t num_threads;                /* threads the fast kernels use (>= 1) */
  int32_t reference;                  /* 1: plain reference kernels only */
  int32_t cpu_avx2;                   /* the host CPU has AVX2 (checked once) */
  int32_t cpu_fma;                    /* ... FMA3 */
  int32_t cpu_avx512;                 /* ... AVX-512 F, BW, DQ and VL */
  int32_t cpu_avx512vnni;             /* ... AVX-512 VNNI (with cpu_avx512) */
  int32_t cpu_avx512vbmi;             /* ... AVX-512 VBMI (with cpu_avx512): byte permutes */
  sophon_thread_pool* pool;           /* num_threads - 1 workers, NULL for 1 thread */
  void* scratch_block;                /* packing buffers of the fast kernels: grown, */
  float* scratch;                     /* never shrunk; scratch is 64-byte aligned */
  size_t scratch_floats;
  sophon_deferred_load deferred[SOPHON_MAX_DEFERRED]; /* in load order */
  int32_t num_deferred;
  struct sophon_packed* packed;       /* constant weights packed by the fast kernels */
  int32_t num_packed;                 /* (sophon_device_packed), kept while the device lives */
  size_t packed_bytes;
};

/* ------------------------------------------------------------- errors */

/* Formats the message into dev->error and returns `status` (dev may be NULL). */
sophon_status sophon_set_error(sophon_device* dev, sophon_status status,
                               const char* fmt, ...) SOPHON_PRINTF_FORMAT(3, 4);

const char* sophon_dtype_name(sophon_dtype dtype); /* "F32", "I8", "I32", "?" */

/* ------------------------------------------------------------ checks
 * Each returns SOPHON_OK or sets an error naming `op` and `name` and returns
 * its status. */

/* t is non-NULL, dims positive, dtype and layout known, addr aligned to the
 * dtype size, and the lane size computable (SOPHON_ERR_ARGUMENT). */
sophon_status sophon_check_local(sophon_device* dev, const char* op, const char* name,
                                 const sophon_local* t);
/* addr + lane bytes <= lmem_bytes_per_lane (SOPHON_ERR_BOUNDS). Call after
 * sophon_check_local. */
sophon_status sophon_check_bounds(sophon_device* dev, const char* op, const char* name,
                                  const sophon_local* t);
/* The TIU has an f32 datapath only for now (SOPHON_ERR_UNSUPPORTED). */
sophon_status sophon_check_tiu_dtype(sophon_device* dev, const char* op,
                                     sophon_dtype dtype);
/* Both operands have the same dtype (SOPHON_ERR_ARGUMENT). */
sophon_status sophon_check_same_dtype(sophon_device* dev, const char* op,
                                      const char* name_a, const sophon_local* a,
                                      const char* name_b, const sophon_local* b);
/* Both operands have the same n, c, h, w (SOPHON_ERR_ARGUMENT). */
sophon_status sophon_check_same_shape(sophon_device* dev, const char* op,
                                      const char* name_a, const sophon_local* a,
                                      const char* name_b, const sophon_local* b);
/* act is a known kind with sane parameters (clip: lo <= hi). NULL is fine. */
sophon_status sophon_check_activation(sophon_device* dev, const char* op,
                                      const sophon_activation* act);
/* The per-lane byte ranges of out and in are disjoint ("out overlaps in"). */
sophon_status sophon_check_disjoint(sophon_device* dev, const char* op,
                                    const sophon_local* out, const char* name,
                                    const sophon_local* in);
/* Disjoint, or an exact alias (same addr, shape, dtype and layout: in place). */
sophon_status sophon_check_disjoint_or_same(sophon_device* dev, const char* op,
                                            const sophon_local* out, const char* name,
                                            const sophon_local* in);

/* A host copy of a constant DDR view (sophon_gdma_load_constant's promise: it does
 * not change while the device lives) rearranged the way a fast kernel reads it,
 * made once: the key names the view and the arrangement. Returns the buffer of
 * `floats` floats (64-byte aligned) for `key`, with *fresh = 1 when it is new and
 * the caller must fill it; NULL past SOPHON_MAX_PACKED entries or _BYTES bytes, or
 * without memory (the caller then reads the view as it is). */
#define SOPHON_MAX_PACKED 512
#define SOPHON_MAX_PACKED_BYTES ((size_t)1 << 30)
typedef struct {
  const void* data;
  const void* data_end; /* one past the view's last byte: a DDR write there drops it */
  int64_t shape[6]; /* the view's dims and strides, the arrangement's parameters */
} sophon_packed_key;
float* sophon_device_packed(sophon_device* dev, const sophon_packed_key* key, size_t floats,
                            int* fresh);
/* The key of a copy of the f32 view g (no negative stride) with channel j's h*w
 * elements at j*h*w in (h, w) order (a deferred transposed load's source, an fc
 * weight: one arrangement, so the two find one copy). */
void sophon_packed_view_key(sophon_packed_key* key, const sophon_global* g);
/* Drops the packed copies whose view meets DDR bytes [first, end) (about to be written). */
void sophon_device_packed_drop(sophon_device* dev, const void* first, const void* end);

/* ------------------------------------------------------ deferred loads
 * (chip/sophon_gdma.c). Whatever reads or writes LMEM outside the GDMA calls it
 * first: an instruction for each operand (isa/sophon_isa.c), the raw LMEM access. */

/* Before reading t: copies the pending bytes of the deferred loads whose window
 * t's range [addr, addr + lane bytes) meets. */
void sophon_lmem_reading(sophon_device* dev, const sophon_local* t);
/* Before writing t: takes t's range out of every pending window, copying first the
 * pending bytes in it that t does not write. */
void sophon_lmem_writing(sophon_device* dev, const sophon_local* t);
/* Before raw access to bytes [begin, end) of one lane: copies the pending bytes of
 * the deferred loads whose part meets them. */
void sophon_lmem_reading_lane(sophon_device* dev, int32_t lane, int64_t begin, int64_t end);
/* The DDR view of t when t is exactly the destination of a deferred load (its bytes
 * in LMEM would be that view's, element for element), else NULL. */
const sophon_global* sophon_deferred_source(const sophon_device* dev, const sophon_local* t);

/* ----------------------------------------------------------- operands
 * One TIU instruction's operands, as its descriptor carries them: out and up to
 * three local inputs (a, b, c; their meaning per instruction is written beside
 * its entry in isa/sophon_isa.c) and the parameters it takes. Fields an
 * instruction does not use are NULL or 0. */
typedef struct {
  const sophon_local* out;
  const sophon_local* a;                 /* in, or the binary lhs */
  const sophon_local* b;                 /* weight, or the binary rhs */
  const sophon_local* c;                 /* bias (NULL: none) */
  const sophon_conv_params* conv;
  const sophon_pool_params* pool;
  const sophon_activation* act;
  const sophon_requant* requant;
  const sophon_add_int8_params* add;
  const sophon_resize_params* resize;
  const sophon_norm_params* norm;
  const sophon_lrn_params* lrn;
  const sophon_lut_int8_params* lut;
  const sophon_binary_int8_params* binary_int8;
  const sophon_global* weight_ddr;       /* conv2d, fc (f32): b's bytes as a DDR view
                                            (a deferred load's source) the fast kernel
                                            reads instead of LMEM; NULL: read b */
  sophon_binary_op binary_op;
  sophon_reduce_kind reduce_kind;
  int32_t act_min, act_max;              /* pool2d_int8's clamp */
  int32_t softmax_multiplier;            /* softmax_int8's input multiplier */
  int32_t softmax_left_shift;            /* and left shift */
  float softmax_input_scale;             /* softmax_int8_onnxruntime's quantization */
  float softmax_output_scale;
  int32_t softmax_output_zero_point;
  float quant_scale;                     /* quantize_int8, dequantize_int8 */
  int32_t quant_zero_point;
  int32_t quant_rounding;                /* quantize_int8: a sophon_quantize_rounding */
} sophon_operands;

/* ----------------------------------------------------------- counters */

/* Raises lmem_peak_bytes to t's end (addr + lane bytes). */
void sophon_touch(sophon_device* dev, const sophon_local* t);
void sophon_count_tiu(sophon_device* dev, uint64_t cycles, uint64_t macs);
void sophon_count_gdma(sophon_device* dev, uint64_t cycles, uint64_t bytes, int is_load);

/* -------------------------------------------------------- layout math */

static inline int64_t sophon_ceil_div(int64_t a, int64_t b) { /* a >= 0, b > 0 */
  return (a + b - 1) / b;
}

/* Channels one lane holds per batch item: ceil(c / npu_num). */
static inline int64_t sophon_channels_per_lane(const sophon_chip* chip, int32_t c) {
  return sophon_ceil_div(c, chip->npu_num);
}

/*
 * A checked local tensor resolved against the device's LMEM, so kernels do the
 * layout arithmetic once per instruction. Element (n, c, h, w) lives at
 *   channel(n, c) + (h * w_dim + w) * elem_bytes.
 */
typedef struct {
  uint8_t* lane0;          /* lane 0 at t.addr */
  int64_t lane_bytes;      /* host distance between lanes (the device's lane_pitch) */
  int64_t channel_bytes;   /* channel stride within a lane, in bytes */
  int64_t batch_bytes;     /* ceil(c/npu) * channel_bytes */
  int32_t npu_num;
  int32_t n, c, h, w;
} sophon_view;

void sophon_view_init(sophon_view* v, sophon_device* dev, const sophon_local* t);

/* Base of channel c of batch item n (lane c % npu, slot c / npu). */
static inline uint8_t* sophon_view_channel(const sophon_view* v, int32_t n, int32_t c) {
  return v->lane0 + (int64_t)(c % v->npu_num) * v->lane_bytes +
         (int64_t)n * v->batch_bytes + (int64_t)(c / v->npu_num) * v->channel_bytes;
}
static inline float* sophon_view_f32(const sophon_view* v, int32_t n, int32_t c) {
  return (float*)(void*)sophon_view_channel(v, n, c);
}
static inline int8_t* sophon_view_i8(const sophon_view* v, int32_t n, int32_t c) {
  return (int8_t*)sophon_view_channel(v, n, c);
}
static inline int32_t* sophon_view_i32(const sophon_view* v, int32_t n, int32_t c) {
  return (int32_t*)(void*)sophon_view_channel(v, n, c);
}

/* Walks consecutive channels c, c+1, ... of one batch item without divisions. */
typedef struct {
  uint8_t* base;
  int32_t lane;
} sophon_channel_iter;

static inline sophon_channel_iter sophon_channel_begin(const sophon_view* v, int32_t n,
                                                       int32_t c) {
  sophon_channel_iter it;
  it.base = sophon_view_channel(v, n, c);
  it.lane = c % v->npu_num;
  return it;
}
static inline void sophon_channel_next(const sophon_view* v, sophon_channel_iter* it) {
  if (++it->lane == v->npu_num) { /* back to lane 0, next slot */
    it->lane = 0;
    it->base += v->channel_bytes - (int64_t)(v->npu_num - 1) * v->lane_bytes;
  } else {
    it->base += v->lane_bytes;
  }
}

/*
 * The channel loop of a kernel whose output plane (n, c) reads the same plane of
 * one input (activation, pool, reduce, softmax, resize, lut, lrn, norm): resolves
 * the views of out and in, then visits every plane of out, batch item by batch
 * item, channel by channel, with its base in out and in (no divisions). out and
 * in have the same n and c (the kernel's checks ensure it).
 *
 *   sophon_plane_walk walk;
 *   for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
 *        sophon_plane_walk_next(&walk)) {
 *     const float* in_data = (const float*)(const void*)walk.in.base;
 *     float* out_data = (float*)(void*)walk.out.base;
 *     ... plane (walk.batch, walk.channel) ...
 *   }
 */
typedef struct {
  sophon_view out_v, in_v;
  sophon_channel_iter out, in;  /* plane (batch, channel) of out and of in */
  int32_t batch, channel;
} sophon_plane_walk;

static inline void sophon_plane_walk_begin(sophon_plane_walk* walk, sophon_device* dev,
                                           const sophon_local* out, const sophon_local* in) {
  sophon_view_init(&walk->out_v, dev, out);
  sophon_view_init(&walk->in_v, dev, in);
  walk->batch = 0;
  walk->channel = 0;
  walk->out = sophon_channel_begin(&walk->out_v, 0, 0);
  walk->in = sophon_channel_begin(&walk->in_v, 0, 0);
}
static inline int sophon_plane_walk_more(const sophon_plane_walk* walk) {
  return walk->batch < walk->out_v.n;
}
static inline void sophon_plane_walk_next(sophon_plane_walk* walk) {
  if (++walk->channel < walk->out_v.c) {
    sophon_channel_next(&walk->out_v, &walk->out);
    sophon_channel_next(&walk->in_v, &walk->in);
  } else if (++walk->batch < walk->out_v.n) { /* channel 0 of the next batch item */
    walk->channel = 0;
    walk->out = sophon_channel_begin(&walk->out_v, walk->batch, 0);
    walk->in = sophon_channel_begin(&walk->in_v, walk->batch, 0);
  }
}

/*
 * Window taps along one axis: tap t reads input index origin + t * dilation.
 * [sophon_first_tap, sophon_end_tap) are the taps with 0 <= index < size
 * (an empty range when begin >= end).
 */
static inline int32_t sophon_first_tap(int64_t origin, int32_t dilation) {
  return origin >= 0 ? 0 : (int32_t)sophon_ceil_div(-origin, dilation);
}
static inline int32_t sophon_end_tap(int64_t origin, int32_t dilation, int64_t size,
                                     int32_t kernel) {
  int64_t end;
  if (origin >= size) return 0;
  end = sophon_ceil_div(size - origin, dilation);
  return end < kernel ? (int32_t)end : kernel;
}

/* ------------------------------------------------------ fixed point
 * TFLite's fixed-point helpers (reference/sophon_fixed_point.c states the rules),
 * inline so that the int8 kernels, reference and fast, use one definition at no
 * call cost. */

/* floor(x / 2^exponent) for exponent in [0, 62] (no right shift of a negative value). */
static inline int64_t sophon_floor_shift_right(int64_t x, int32_t exponent) {
  return x >= 0 ? x >> exponent : -((-x - 1) >> exponent) - 1;
}

/* round(x / 2^exponent), ties away from zero (RoundingDivideByPOT), for
 * exponent in [0, 62] and |x| < 2^62. */
static inline int64_t sophon_rounding_shift_right(int64_t x, int32_t exponent) {
  const int64_t mask = ((int64_t)1 << exponent) - 1;
  const int64_t floor_q = sophon_floor_shift_right(x, exponent);
  const int64_t remainder = x - floor_q * ((int64_t)1 << exponent); /* x & mask, in [0, mask] */
  const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return floor_q + (remainder > threshold ? 1 : 0);
}

/* SaturatingRoundingDoublingHighMul. |a * b| <= 2^62 fits int64; the only product
 * whose doubled high word does not fit int32 is INT32_MIN * INT32_MIN. Division
 * truncates toward zero; with the nudge (2^30, or 1 - 2^30 for a negative product)
 * that rounds to nearest with ties toward +infinity: 1.5 -> 2 but -1.5 -> -1 (not
 * symmetric, as in gemmlowp). */
static inline int32_t sophon_srdhm_inline(int32_t a, int32_t b) {
  int64_t product, nudge;
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  product = (int64_t)a * (int64_t)b;
  nudge = product >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30);
  return (int32_t)((product + nudge) / ((int64_t)1 << 31));
}

/* MultiplyByQuantizedMultiplier (sophon_multiply_by_quantized_multiplier).
 * left_shift = max(shift, 0), right_shift = max(-shift, 0); both clamped to ranges
 * where the result no longer changes (|x| * 2^31 saturates anyway, and
 * round(x / 2^62) is 0 for any int32 x). */
static inline int32_t sophon_mbqm_inline(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left_shift = shift > 31 ? 31 : (shift > 0 ? shift : 0);
  const int32_t right_shift = shift < -62 ? 62 : (shift < 0 ? -shift : 0);
  const int64_t wide = (int64_t)x * ((int64_t)1 << left_shift);
  const int32_t shifted =
      wide > INT32_MAX ? INT32_MAX : (wide < INT32_MIN ? INT32_MIN : (int32_t)wide);
  return (int32_t)sophon_rounding_shift_right(sophon_srdhm_inline(shifted, multiplier),
                                              right_shift);
}

/* At least `floats` floats of 64-byte aligned scratch owned by the device (grown
 * when needed, kept between instructions), or NULL when the host is out of memory. */
float* sophon_device_scratch(sophon_device* dev, size_t floats);

#endif /* SOPHON_INTERNAL_H_ */
