/*
 * test_int8.c - unit tests of the INT8 instructions (sophon_quant.h) and their
 * fixed-point helpers.
 *
 * A standalone program with the harness of sophon_test.h: each
 * failing CHECK prints file:line; the last line is "N passed, M failed"; the
 * exit status is nonzero iff a check failed. Golden values are small enough to
 * work out by hand (the working is in the comments); the structural tests
 * compare instructions with each other (grouped conv == dense conv with
 * block-diagonal weights, a program == the direct calls).
 *
 * Build: gcc -std=c99 -pedantic -Wall -Wextra -Werror -O2 -I. \
 *            tests/test_int8.c sophon_*.c -lm -o /tmp/test_int8
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sophon.h"
#include "chip/sophon_cost.h"
#include "sophon_program.h"
#include "sophon_quant.h"

#include "sophon_test.h"

/* int8 arrays are equal; reports the first difference. */
static int i8_equal(const int8_t* got, const int8_t* want, int count, const char* file,
                    int line) {
  int i;
  for (i = 0; i < count; ++i) {
    if (got[i] != want[i]) {
      printf("%s:%d: element %d is %d, expected %d\n", file, line, i, (int)got[i],
             (int)want[i]);
      return 0;
    }
  }
  return 1;
}
#define CHECK_I8_EQUAL(got, want, count)                      \
  do {                                                        \
    if (i8_equal((got), (want), (count), __FILE__, __LINE__)) \
      ++g_passed;                                             \
    else                                                      \
      ++g_failed;                                             \
  } while (0)

/* ------------------------------------------------------------- fixtures */

/* 4 lanes of 4 KiB; EU_NUM(f32) = 4, EU_NUM(i8) = 16 * 2 = 32. */
static sophon_chip small_chip(int has_int8) {
  sophon_chip chip = sophon_test_chip(has_int8 ? "tiny8" : "tiny_f32", 4, 4096, 16);
  chip.has_int8 = has_int8;
  chip.int8_macs_per_eu = 2;
  return chip;
}

static sophon_local local(uint32_t addr, int32_t n, int32_t c, int32_t h, int32_t w,
                          sophon_dtype dtype, sophon_layout layout) {
  return sophon_test_local(addr, n, c, h, w, dtype, layout);
}

/* A dense NCHW host view of t's shape. */
static sophon_global dense(void* data, const sophon_local* t) {
  return sophon_test_dense_view(data, t);
}

static sophon_status load(sophon_device* dev, const sophon_local* t, const void* data) {
  sophon_global g = dense((void*)(uintptr_t)data, t);
  return sophon_gdma_load(dev, t, &g);
}

static sophon_status store(sophon_device* dev, const sophon_local* t, void* data) {
  sophon_global g = dense(data, t);
  return sophon_gdma_store(dev, &g, t);
}

static sophon_conv_params conv_params(int32_t k, int32_t stride, int32_t pad, int32_t dilation,
                                      int32_t groups) {
  sophon_conv_params p;
  memset(&p, 0, sizeof p);
  p.kernel_h = p.kernel_w = k;
  p.stride_h = p.stride_w = stride;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = pad;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  p.act.kind = SOPHON_ACT_NONE;
  return p;
}

static sophon_pool_params pool_params(sophon_pool_kind kind, int32_t k, int32_t stride,
                                      int32_t pad) {
  sophon_pool_params p;
  memset(&p, 0, sizeof p);
  p.kind = kind;
  p.kernel_h = p.kernel_w = k;
  p.stride_h = p.stride_w = stride;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = pad;
  p.dilation_h = p.dilation_w = 1;
  return p;
}

static const int32_t k_half = 1 << 30; /* 0.5 in Q31: real = 2^30 * 2^(shift - 31) */

static sophon_requant requant(int32_t in_zp, int32_t out_zp, const int32_t* m,
                              const int32_t* shift, int32_t per_channel) {
  sophon_requant q;
  q.input_zero_point = in_zp;
  q.output_zero_point = out_zp;
  q.act_min = -128;
  q.act_max = 127;
  q.per_channel = per_channel;
  q.multiplier = m;
  q.shift = shift;
  q.rounding = SOPHON_REQUANT_FIXED_POINT;
  q.scale = NULL;
  return q;
}

/* ------------------------------------------------------------ fixed point */

static void test_quantize_multiplier(void) {
  int32_t m = -1, s = -1;
  sophon_quantize_multiplier(0.5, &m, &s); /* 0.5 = 0.5 * 2^0 */
  CHECK_EQ_INT(m, 1 << 30);
  CHECK_EQ_INT(s, 0);
  sophon_quantize_multiplier(1.0, &m, &s); /* 0.5 * 2^1 */
  CHECK_EQ_INT(m, 1 << 30);
  CHECK_EQ_INT(s, 1);
  sophon_quantize_multiplier(0.75, &m, &s); /* 0.75 * 2^31 = 1610612736 */
  CHECK_EQ_INT(m, 1610612736);
  CHECK_EQ_INT(s, 0);
  sophon_quantize_multiplier(0.1, &m, &s); /* 0.8 * 2^-3: round(0.8 * 2^31) = 1717986918 */
  CHECK_EQ_INT(m, 1717986918);
  CHECK_EQ_INT(s, -3);
  sophon_quantize_multiplier(0.0, &m, &s);
  CHECK_EQ_INT(m, 0);
  CHECK_EQ_INT(s, 0);
  /* the fraction rounds up to 1.0: halved, shift + 1 */
  sophon_quantize_multiplier(1.0 - 1e-12, &m, &s);
  CHECK_EQ_INT(m, 1 << 30);
  CHECK_EQ_INT(s, 1);
  /* below 2^-32 every bit shifts out: flushed to zero */
  sophon_quantize_multiplier(1e-11, &m, &s);
  CHECK_EQ_INT(m, 0);
  CHECK_EQ_INT(s, 0);
  /* 2^-32 = 0.5 * 2^-31 is the smallest kept */
  sophon_quantize_multiplier(1.0 / 4294967296.0, &m, &s);
  CHECK_EQ_INT(m, 1 << 30);
  CHECK_EQ_INT(s, -31);
  /* above the largest left shift: saturated */
  sophon_quantize_multiplier(4294967296.0, &m, &s);
  CHECK_EQ_INT(m, INT32_MAX);
  CHECK_EQ_INT(s, 30);
}

static void test_multiply_by_quantized_multiplier(void) {
  /* x * 0.5 */
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(100, k_half, 0), 50);
  /* the high mul rounds ties up (toward +infinity, gemmlowp's nudge):
   * 3 * 0.5 = 1.5 -> 2, -3 * 0.5 = -1.5 -> -1 */
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(3, k_half, 0), 2);
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(-3, k_half, 0), -1);
  /* the rounding shift rounds ties away from zero: -6 * 0.5 = -3 exactly, / 2 = -1.5 -> -2;
   * 6 * 0.5 / 2 = 1.5 -> 2; 7 * 0.5 = 3.5 -> 4, / 2 = 2 */
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(-6, k_half, -1), -2);
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(6, k_half, -1), 2);
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(7, k_half, -1), 2);
  /* double rounding: 5 * 0.5 / 2 = 1.25 exactly, but 2.5 -> 3 in the high mul, then
   * 3 / 2 = 1.5 -> 2 (TFLite's double-rounding build gives 2 as well) */
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(5, k_half, -1), 2);
  /* double rounding: 0.75 * 3 = 2.25 in the high mul (-> 2), then / 2 = 1.0 -> 1;
   * with x = 5: 3.75 -> 4, / 2 -> 2 */
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(5, 1610612736, -1), 2);
  /* positive shift: 3 * 4 * 0.5 = 6 */
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(3, k_half, 2), 6);
  /* the left shift saturates: INT32_MAX * 2 * 0.5 -> INT32_MAX * 0.5 rounded */
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(INT32_MAX, k_half, 1), 1073741824);
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(INT32_MIN, k_half, 1), -1073741824);
  /* the high mul saturates for INT32_MIN * INT32_MIN only; shift -31 halves 2^31 - 1 */
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(INT32_MIN, INT32_MIN, 0), INT32_MAX);
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(INT32_MAX, INT32_MAX, -31), 1);
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(0, INT32_MAX, 30), 0);
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(12345, 0, 0), 0);
}

/* ----------------------------------------------------------------- conv */

static void test_conv2d_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  /* in 1x1x3x3, zero point 1; weight 1x1 filter 2x2; bias 3; real scale 0.5; out zp -1 */
  const int8_t in_data[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const int8_t w_data[4] = {1, -1, 2, 0};
  const int32_t bias_data[1] = {3};
  const int32_t m[1] = {1 << 30}, s[1] = {0};
  sophon_local in = local(0, 1, 1, 3, 3, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local weight = local(64, 1, 1, 1, 4, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local bias = local(128, 1, 1, 1, 1, SOPHON_I32, SOPHON_LAYOUT_COMPACT);
  sophon_local out = local(256, 1, 1, 2, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p = conv_params(2, 1, 0, 1, 1);
  sophon_requant q = requant(1, -1, m, s, 0);
  int8_t got[4];
  /* (in - 1) = [0 1 2; 3 4 5; 6 7 8]; taps a,b,c,d of a window: a - b + 2c
   *   (0,0): 0 - 1 + 6 = 5; (0,1): 1 - 2 + 8 = 7; (1,0): 3 - 4 + 12 = 11; (1,1): 4 - 5 + 14 = 13
   * + bias 3: 8, 10, 14, 16; * 0.5: 4, 5, 7, 8; + zp -1: 3, 4, 6, 7 */
  const int8_t want[4] = {3, 4, 6, 7};
  /* with pad 1 and clamp [-1, 5] the corner (0,0) sees only tap d = in[0,0] - 1 = 0 (weight 0):
   * acc = 3, 1.5 -> 2, + -1 = 1 */
  int8_t got_pad[16];
  sophon_local out_pad = local(256, 1, 1, 4, 4, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  const sophon_counters* counters;

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  CHECK_OK(dev, load(dev, &weight, w_data));
  CHECK_OK(dev, load(dev, &bias, bias_data));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &q));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want, 4);
  counters = sophon_device_counters(dev);
  CHECK_EQ_INT(counters->macs, 4 * 4);
  CHECK_EQ_INT(counters->tiu_instructions, 1);
  /* 5 + ceil(1 channel / 4 lanes) * 1 batch group * ceil(4 pixels / 16 int8 positions)
   *   * ceil(4 taps / 2 int8 MACs per EU) */
  CHECK_EQ_INT(counters->tiu_cycles, 5 + 2);
  CHECK_EQ_INT(counters->tiu_cycles, sophon_cost_conv2d(&chip, &out, &in, &p));
  CHECK_EQ_INT(counters->lmem_peak_bytes, 256 + 32);

  p = conv_params(2, 1, 1, 1, 1);
  q.act_min = -1;
  q.act_max = 5;
  CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &out_pad, &in, &weight, &bias, &p, &q));
  CHECK_OK(dev, store(dev, &out_pad, got_pad));
  CHECK_EQ_INT(got_pad[0], 1);
  /* window (1,1) is the unpadded (0,0): 3 before the clamp; (2,2) is 6 -> clamped to 5 */
  CHECK_EQ_INT(got_pad[5], 3);
  CHECK_EQ_INT(got_pad[10], 5);
  sophon_device_destroy(dev);
}

/* Fills a with a deterministic pseudo-random int8 sequence. */
static void fill_i8(int8_t* a, int count, uint32_t seed) {
  int i;
  for (i = 0; i < count; ++i) {
    seed = seed * 1664525u + 1013904223u;
    a[i] = (int8_t)(int32_t)((seed >> 24) & 0xff);
  }
}

/* A grouped (here depthwise, multiplier 2) conv equals the dense conv whose
 * weights are zero outside each group's block, channel for channel, with
 * per-channel requantization and channels spread over several lanes. */
static void test_grouped_equals_block_dense(void) {
  enum { C = 5, MULT = 2, OC = C * MULT, H = 6, W = 5, K = 3 };
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  static int8_t in_data[2 * C * H * W], dw_weights[OC * K * K], dense_weights[OC * C * K * K];
  int32_t bias_data[OC], m[OC], s[OC];
  int8_t got_dw[2 * OC * 3 * 3], got_dense[2 * OC * 3 * 3];
  sophon_local in = local(0, 2, C, H, W, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_dw = local(128, 1, OC, 1, K * K, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local w_dense = local(160, 1, OC, C, K * K, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local bias = local(400, 1, OC, 1, 1, SOPHON_I32, SOPHON_LAYOUT_COMPACT);
  /* stride 2, pad 2, dilation 2: OH = (6 + 4 - 4 - 1) / 2 + 1 = 3, OW = (5 + 4 - 5) / 2 + 1 = 3 */
  sophon_local out = local(512, 2, OC, 3, 3, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p_dw = conv_params(K, 2, 2, 2, C), p_dense = conv_params(K, 2, 2, 2, 1);
  sophon_requant q = requant(-7, 3, m, s, 1);
  int oc, ic, k;

  fill_i8(in_data, 2 * C * H * W, 1);
  fill_i8(dw_weights, OC * K * K, 2);
  memset(dense_weights, 0, sizeof dense_weights);
  for (oc = 0; oc < OC; ++oc) {
    ic = oc / MULT;
    for (k = 0; k < K * K; ++k) dense_weights[(oc * C + ic) * K * K + k] = dw_weights[oc * K * K + k];
    bias_data[oc] = (oc - 4) * 997;
    m[oc] = (1 << 30) + oc * 12345677;
    s[oc] = -6 - (oc % 4);
  }
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  CHECK_OK(dev, load(dev, &w_dw, dw_weights));
  CHECK_OK(dev, load(dev, &w_dense, dense_weights));
  CHECK_OK(dev, load(dev, &bias, bias_data));
  CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &w_dw, &bias, &p_dw, &q));
  CHECK_OK(dev, store(dev, &out, got_dw));
  CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &w_dense, &bias, &p_dense, &q));
  CHECK_OK(dev, store(dev, &out, got_dense));
  CHECK_I8_EQUAL(got_dw, got_dense, 2 * OC * 9);
  /* and a per-tensor requant is the per-channel one with every entry equal */
  q.per_channel = 0;
  CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &w_dw, &bias, &p_dw, &q));
  CHECK_OK(dev, store(dev, &out, got_dw));
  for (oc = 0; oc < OC; ++oc) {
    m[oc] = m[0];
    s[oc] = s[0];
  }
  q.per_channel = 1;
  CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &w_dw, &bias, &p_dw, &q));
  CHECK_OK(dev, store(dev, &out, got_dense));
  CHECK_I8_EQUAL(got_dw, got_dense, 2 * OC * 9);
  sophon_device_destroy(dev);
}

static void test_conv2d_errors(void) {
  sophon_chip chip = small_chip(1), f32_chip = small_chip(0);
  sophon_device* dev = NULL;
  sophon_device* f32_dev = NULL;
  const int32_t m[2] = {1 << 30, 1 << 30}, s[2] = {0, 0}, bad_s[2] = {0, 31};
  sophon_local in = local(0, 1, 2, 3, 3, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local weight = local(64, 1, 2, 2, 4, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local bias = local(128, 1, 2, 1, 1, SOPHON_I32, SOPHON_LAYOUT_COMPACT);
  sophon_local out = local(256, 1, 2, 2, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local bad;
  sophon_conv_params p = conv_params(2, 1, 0, 1, 1);
  sophon_requant q = requant(0, 0, m, s, 1), bad_q;

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK(sophon_device_create(&f32_chip, &f32_dev) == SOPHON_OK);
  CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &q));
  CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, NULL, &p, &q));
  CHECK_STATUS(NULL, sophon_tiu_conv2d_int8(NULL, &out, &in, &weight, &bias, &p, &q),
               SOPHON_ERR_ARGUMENT);

  /* a chip without the INT8 datapath */
  CHECK_STATUS(f32_dev, sophon_tiu_conv2d_int8(f32_dev, &out, &in, &weight, &bias, &p, &q),
               SOPHON_ERR_UNSUPPORTED);
  CHECK_ERROR_HAS(f32_dev, "tiny_f32");
  CHECK_ERROR_HAS(f32_dev, "bm1684");

  /* dtypes: f32 activations, i8 bias */
  bad = in;
  bad.dtype = SOPHON_F32;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &bad, &weight, &bias, &p, &q),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "in dtype F32 is not I8");
  bad = bias;
  bad.dtype = SOPHON_I8;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bad, &p, &q),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "bias dtype I8 is not I32");

  /* shapes */
  bad = out;
  bad.h = 3;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &bad, &in, &weight, &bias, &p, &q),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "out shape");
  bad = weight;
  bad.layout = SOPHON_LAYOUT_ALIGNED;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &bad, &bias, &p, &q),
               SOPHON_ERR_ARGUMENT);
  p.groups = 3;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &q),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "groups 3");
  p.groups = 1;

  /* requant */
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, NULL),
               SOPHON_ERR_ARGUMENT);
  bad_q = q;
  bad_q.shift = bad_s;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &bad_q),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "shift[1] 31 is outside [-31, 30]");
  bad_q = q;
  bad_q.multiplier = NULL;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &bad_q),
               SOPHON_ERR_ARGUMENT);
  bad_q = q;
  bad_q.act_min = 10;
  bad_q.act_max = 5;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &bad_q),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "act_min 10 > act_max 5");
  bad_q = q;
  bad_q.act_max = 128;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &bad_q),
               SOPHON_ERR_ARGUMENT);
  bad_q = q;
  bad_q.input_zero_point = -129;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &bad_q),
               SOPHON_ERR_ARGUMENT);
  bad_q = q;
  bad_q.per_channel = 2;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out, &in, &weight, &bias, &p, &bad_q),
               SOPHON_ERR_ARGUMENT);

  /* memory: out overlapping in, out beyond the lane */
  bad = out;
  bad.addr = 16;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &bad, &in, &weight, &bias, &p, &q),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "out overlaps in");
  bad.addr = 4096 - 16;
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &bad, &in, &weight, &bias, &p, &q),
               SOPHON_ERR_BOUNDS);

  /* a reduction too long for the int32 accumulator: K = 65794 (checked before memory) */
  {
    sophon_local big_in = local(0, 1, 65794, 1, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
    sophon_local big_w = local(0, 1, 2, 65794, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
    sophon_conv_params p1 = conv_params(1, 1, 0, 1, 1);
    sophon_local out1 = local(0, 1, 2, 1, 1, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
    CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &out1, &big_in, &big_w, NULL, &p1, &q),
                 SOPHON_ERR_UNSUPPORTED);
    CHECK_ERROR_HAS(dev, "65794 taps");
    CHECK_STATUS(dev, sophon_tiu_fc_int8(dev, &out1, &big_in, &big_w, NULL, &q),
                 SOPHON_ERR_UNSUPPORTED);
  }
  sophon_device_destroy(dev);
  sophon_device_destroy(f32_dev);
}

/* ------------------------------------------------------------------- fc */

static void test_fc_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  /* M = 2, K = 5 (over 4 lanes), N = 3; input zp 2, per-channel scales 0.5, 0.25, 1 */
  const int8_t in_data[10] = {2, 3, 4, 5, 6, -128, 127, 2, 2, 2};
  const int8_t w_data[15] = {1, 1, 1, 1, 1, 1, 0, 0, 0, -1, -128, -128, 0, 0, 0};
  const int32_t bias_data[3] = {0, 1, -2};
  const int32_t m[3] = {1 << 30, 1 << 30, 1 << 30}, s[3] = {0, -1, 1};
  sophon_local in = local(0, 2, 5, 1, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local weight = local(16, 1, 3, 5, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local bias = local(32, 1, 3, 1, 1, SOPHON_I32, SOPHON_LAYOUT_COMPACT);
  sophon_local out = local(48, 2, 3, 1, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_requant q = requant(2, 1, m, s, 1);
  int8_t got[6];
  /* in - 2: row 0 = [0 1 2 3 4], row 1 = [-130 125 0 0 0]
   * row 0: n0 = 10 (+0) * 0.5 = 5 -> 6; n1 = 0 - 4 + 1 = -3, * 0.25 = -0.75 -> -1 -> 0;
   *        n2 = -128 * 1 - 2 = -130, * 1 = -130 -> -129 -> clamp -128
   * row 1: n0 = -5 * 0.5 = -2.5 -> -2 (high-mul ties go up) -> -1; n1 = -130 + 1 = -129 * 0.25 = -32.25 -> -32 -> -31;
   *        n2 = -128 * -130 + -128 * 125 - 2 = 638 -> 639 -> 127 */
  const int8_t want[6] = {6, 0, -128, -1, -31, 127};

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  CHECK_OK(dev, load(dev, &weight, w_data));
  CHECK_OK(dev, load(dev, &bias, bias_data));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, &bias, &q));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want, 6);
  CHECK_EQ_INT(sophon_device_counters(dev)->macs, 2 * 3 * 5);
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, sophon_cost_fc(&chip, &out, &in));
  /* the weight must be (1, N, K, 1) */
  weight.h = 4;
  CHECK_STATUS(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, &bias, &q), SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

/* TFLite's FULLY_CONNECTED rounds acc * scale once, in double (SOPHON_REQUANT_DOUBLE);
 * its CONV_2D rounds twice in fixed point. real = 0.375 = 0.75 * 2^-1 (multiplier
 * 0.75 = 1610612736 / 2^31, shift -1), exact in both. */
static void test_fc_double_rounding_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  /* M = 1, K = 1, N = 3: in 6, weights 1, -1, 5: acc 6, -6, 30 */
  const int8_t in_data[1] = {6};
  const int8_t w_data[3] = {1, -1, 5};
  const int32_t m[1] = {1610612736}, s[1] = {-1};
  const double scale[1] = {0.375};
  sophon_local in = local(0, 1, 1, 1, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local weight = local(16, 1, 3, 1, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local out = local(48, 1, 3, 1, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local conv_in = local(0, 1, 1, 3, 3, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local conv_w = local(64, 1, 1, 1, 4, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local conv_out = local(256, 1, 1, 2, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p = conv_params(2, 1, 0, 1, 1);
  sophon_requant q = requant(0, 0, m, s, 0);
  int8_t got[3];
  /* double: 6 * 0.375 = 2.25 -> 2; -6 * 0.375 = -2.25 -> -2; 30 * 0.375 = 11.25 -> 11 */
  const int8_t want_double[3] = {2, -2, 11};
  /* fixed point: 6 * 0.75 = 4.5 -> 5 (high-mul ties go up), 5 / 2 = 2.5 -> 3 (away);
   * -6 * 0.75 = -4.5 -> -4, -4 / 2 = -2; 30 * 0.75 = 22.5 -> 23, 23 / 2 = 11.5 -> 12 */
  const int8_t want_fixed[3] = {3, -2, 12};

  CHECK_EQ_INT(sophon_multiply_by_double_scale(6, 0.375), 2);
  CHECK_EQ_INT(sophon_multiply_by_quantized_multiplier(6, 1610612736, -1), 3);
  /* halves go away from zero (C's round): +-3 * 0.5 = +-1.5 -> +-2 */
  CHECK_EQ_INT(sophon_multiply_by_double_scale(3, 0.5), 2);
  CHECK_EQ_INT(sophon_multiply_by_double_scale(-3, 0.5), -2);
  /* float32 (onnxruntime, MLAS): halves go to even: 10 * 0.25 = 2.5 -> 2, -2.5 -> -2,
   * 6 * 0.25 = 1.5 -> 2; (float)16777217 is 16777216 before the multiply */
  CHECK_EQ_INT(sophon_multiply_by_float_scale(10, 0.25f), 2);
  CHECK_EQ_INT(sophon_multiply_by_float_scale(-10, 0.25f), -2);
  CHECK_EQ_INT(sophon_multiply_by_float_scale(6, 0.25f), 2);
  CHECK_EQ_INT(sophon_multiply_by_double_scale(10, 0.25), 3);
  CHECK_EQ_INT(sophon_multiply_by_float_scale(16777217, 1.0f), 16777216);
  CHECK_EQ_INT(sophon_multiply_by_float_scale(INT32_MAX, 4.0f), INT32_MAX);
  CHECK_EQ_INT(sophon_multiply_by_float_scale(INT32_MIN, 4.0f), INT32_MIN);
  /* saturated to int32 */
  CHECK_EQ_INT(sophon_multiply_by_double_scale(INT32_MAX, 4.0), INT32_MAX);
  CHECK_EQ_INT(sophon_multiply_by_double_scale(INT32_MIN, 4.0), INT32_MIN);

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  CHECK_OK(dev, load(dev, &weight, w_data));
  CHECK_OK(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, NULL, &q));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_fixed, 3);
  q.rounding = SOPHON_REQUANT_DOUBLE;
  q.scale = scale;
  CHECK_OK(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, NULL, &q));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_double, 3);
  /* conv2d_int8 rounds in fixed point only (TFLite's CONV_2D) */
  CHECK_STATUS(dev, sophon_tiu_conv2d_int8(dev, &conv_out, &conv_in, &conv_w, NULL, &p, &q),
               SOPHON_ERR_UNSUPPORTED);
  /* a scale array is required; the scales must be finite and non-negative */
  q.scale = NULL;
  CHECK_STATUS(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, NULL, &q), SOPHON_ERR_ARGUMENT);
  {
    const double bad[1] = {-0.375};
    q.scale = bad;
    CHECK_STATUS(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, NULL, &q), SOPHON_ERR_ARGUMENT);
  }
  q.scale = scale;
  q.rounding = 4;
  CHECK_STATUS(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, NULL, &q), SOPHON_ERR_ARGUMENT);
  /* onnxruntime's float Conv arithmetic is conv2d_int8's only */
  q.rounding = SOPHON_REQUANT_FLOAT_CONV;
  CHECK_STATUS(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, NULL, &q), SOPHON_ERR_UNSUPPORTED);
  /* onnxruntime's float32 rounding (SOPHON_REQUANT_FLOAT32): 0.375 exact, no ties here */
  q.rounding = SOPHON_REQUANT_FLOAT32;
  CHECK_OK(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, NULL, &q));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_double, 3);
  {
    const double not_float[1] = {0.1}; /* 0.1 is no float32 value */
    q.scale = not_float;
    CHECK_STATUS(dev, sophon_tiu_fc_int8(dev, &out, &in, &weight, NULL, &q), SOPHON_ERR_ARGUMENT);
  }
  sophon_device_destroy(dev);
}

/* ------------------------------------------------------------------ add */

static sophon_add_int8_params add_params(void) {
  /* both inputs * 0.5 after << 20, output * 0.5 / 2^19: out = (a + b) / 2 rounded */
  sophon_add_int8_params p;
  p.left_shift = 20;
  p.input1_zero_point = 0;
  p.input2_zero_point = 0;
  p.output_zero_point = 0;
  p.input1_multiplier = 1 << 30;
  p.input1_shift = 0;
  p.input2_multiplier = 1 << 30;
  p.input2_shift = 0;
  p.output_multiplier = 1 << 30;
  p.output_shift = -19;
  p.act_min = -128;
  p.act_max = 127;
  return p;
}

static void test_add_golden(void) {
  sophon_chip chip = small_chip(1), f32_chip = small_chip(0);
  sophon_device* dev = NULL;
  sophon_device* f32_dev = NULL;
  /* out (1, 5, 1, 2); b broadcasts over channels (c = 1) */
  const int8_t a_data[10] = {10, 1, -1, 127, -128, 3, 0, 0, 100, -100};
  const int8_t b_data[2] = {6, 0};
  sophon_local a = local(0, 1, 5, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local b = local(64, 1, 1, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out = local(128, 1, 5, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_add_int8_params p = add_params();
  int8_t got[10];
  /* (a + b) * 0.5 * 0.5 * 2^20 ... = (a + b) / 2: 16/2 = 8; 1/2 -> 1 (tie away from zero);
   * 5/2 -> 3; 127/2 -> 64; -122/2 = -61; 3/2 -> 2; 6/2 = 3; 0; 106/2 = 53; -100/2 = -50 */
  const int8_t want[10] = {8, 1, 3, 64, -61, 2, 3, 0, 53, -50};
  /* in place: out = a */
  const int8_t want_inplace[10] = {8, 1, 3, 64, -61, 2, 3, 0, 53, -50};

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK(sophon_device_create(&f32_chip, &f32_dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &a, a_data));
  CHECK_OK(dev, load(dev, &b, b_data));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_add_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want, 10);
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, sophon_cost_binary(&chip, &out, NULL));
  CHECK_EQ_INT(sophon_device_counters(dev)->macs, 0);

  /* zero points a 10, b -4, out 5, clamp [-3, 60]: out = (a - 10 + b + 4) / 2 + 5
   *   a - 10: 0 -9 -11 117 -138 -7 -10 -10 90 -110; b + 4: 10 4 (along w)
   *   sums: 10 -5 -1 121 -134 -3 0 -6 100 -106
   *   the input rescales are exact (even * 2^20 * 0.5); the output one rounds once
   *   the final shift: / 2 ties away from zero: 5 -3 -1 61 -67 -2 0 -3 50 -53
   *   + 5: 10 2 4 66 -62 3 5 2 55 -48; clamp: 10 2 4 60 -3 3 5 2 55 -3 */
  p.input1_zero_point = 10;
  p.input2_zero_point = -4;
  p.output_zero_point = 5;
  p.act_min = -3;
  p.act_max = 60;
  CHECK_OK(dev, sophon_tiu_add_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  {
    const int8_t want_zp[10] = {10, 2, 4, 60, -3, 3, 5, 2, 55, -3};
    CHECK_I8_EQUAL(got, want_zp, 10);
  }

  p = add_params();
  CHECK_OK(dev, sophon_tiu_add_int8(dev, &a, &a, &b, &p));
  CHECK_OK(dev, store(dev, &a, got));
  CHECK_I8_EQUAL(got, want_inplace, 10);

  /* errors */
  CHECK_STATUS(f32_dev, sophon_tiu_add_int8(f32_dev, &out, &a, &b, &p), SOPHON_ERR_UNSUPPORTED);
  CHECK_ERROR_HAS(f32_dev, "bm1684");
  p.output_shift = 1;
  CHECK_STATUS(dev, sophon_tiu_add_int8(dev, &out, &a, &b, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "output shift[0] 1 is outside [-31, 0]");
  p = add_params();
  p.left_shift = 23;
  CHECK_STATUS(dev, sophon_tiu_add_int8(dev, &out, &a, &b, &p), SOPHON_ERR_ARGUMENT);
  /* SUB (TFLite's sub.cc): input2's multiplier negated; the rescales stay exact, so
   * out = (a - b) / 2, ties away from zero: a - b = 4 1 -7 127 -134 3 -6 0 94 -100 */
  p = add_params();
  p.input2_multiplier = -(1 << 30);
  CHECK_OK(dev, load(dev, &a, a_data));
  CHECK_OK(dev, sophon_tiu_add_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  {
    const int8_t want_sub[10] = {2, 1, -4, 64, -67, 2, -3, 0, 47, -50};
    CHECK_I8_EQUAL(got, want_sub, 10);
  }
  p.input2_multiplier = INT32_MIN;
  CHECK_STATUS(dev, sophon_tiu_add_int8(dev, &out, &a, &b, &p), SOPHON_ERR_ARGUMENT);
  p = add_params();
  CHECK_STATUS(dev, sophon_tiu_add_int8(dev, &out, &a, &b, NULL), SOPHON_ERR_ARGUMENT);
  {
    sophon_local partial = out; /* overlapping a without being it */
    partial.addr = 32;
    CHECK_STATUS(dev, sophon_tiu_add_int8(dev, &partial, &a, &b, &p), SOPHON_ERR_ARGUMENT);
    partial = b;
    partial.c = 2;
    CHECK_STATUS(dev, sophon_tiu_add_int8(dev, &out, &a, &partial, &p), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "does not broadcast");
  }
  sophon_device_destroy(dev);
  sophon_device_destroy(f32_dev);
}

/* ------------------------------------------------------ lut, binary_int8 */

/* RELU's table (reference_ops::ReluX) on hand-worked values, inputs in byte order
 * of the probe list: -128 -11 -10 -7 -5 -3 -1 0 1 2 3 5 127. */
static void test_lut_relu_golden(void) {
  static const int8_t probe[13] = {-128, -11, -10, -7, -5, -3, -1, 0, 1, 2, 3, 5, 127};
  /* RELU6, one quantization (scale 0.5, zero point -10): multiplier 1 leaves x,
   * qmin = -10 + round(0 / 0.5) = -10, qmax = -10 + round(6 / 0.5) = 2: clamp(x, -10, 2) */
  static const int8_t want_relu6[13] = {-10, -10, -10, -7, -5, -3, -1, 0, 1, 2, 2, 2, 2};
  /* RELU, scale 1 zero point 0 -> scale 2 zero point -128: -128 + x / 2 (ties toward
   * +infinity: -3 -> -1, -1 -> 0, 1 -> 1, 3 -> 2, 5 -> 3, 127 -> 64), at least
   * qmin = -128, qmax = 127 (act_max infinite) */
  static const int8_t want_relu[13] = {-128, -128, -128, -128, -128, -128, -128, -128, -127,
                                       -127, -126, -125, -64};
  /* RELU_N1_TO_1, scale 1 -> scale 2, zero points 0: x / 2 ties up, clamped to
   * [round(-1 / 2), round(1 / 2)] = [-1, 1] (roundf: half away from zero) */
  static const int8_t want_n1_to_1[13] = {-1, -1, -1, -1, -1, -1, 0, 0, 1, 1, 1, 1, 1};
  sophon_int8_unary u;
  int8_t table[256], got[13];
  int i;

  memset(&u, 0, sizeof(u));
  u.kind = SOPHON_LUT_RELU;
  u.input_scale = u.output_scale = 0.5f;
  u.input_zero_point = u.output_zero_point = -10;
  u.act_min = 0.0f;
  u.act_max = 6.0f;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_OK);
  for (i = 0; i < 13; ++i) got[i] = table[(uint8_t)probe[i]];
  CHECK_I8_EQUAL(got, want_relu6, 13);

  u.input_scale = 1.0f;
  u.output_scale = 2.0f;
  u.input_zero_point = 0;
  u.output_zero_point = -128;
  u.act_max = INFINITY;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_OK);
  for (i = 0; i < 13; ++i) got[i] = table[(uint8_t)probe[i]];
  CHECK_I8_EQUAL(got, want_relu, 13);

  u.output_zero_point = 0;
  u.act_min = -1.0f;
  u.act_max = 1.0f;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_OK);
  for (i = 0; i < 13; ++i) got[i] = table[(uint8_t)probe[i]];
  CHECK_I8_EQUAL(got, want_n1_to_1, 13);

  /* bounds that are not a range */
  u.act_min = NAN;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_ERR_ARGUMENT);
  u.act_min = 2.0f;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_ERR_ARGUMENT);
}

/* RSQRT's and NEG's tables on hand-worked values. */
static void test_lut_rsqrt_neg_golden(void) {
  /* RSQRT, input scale 1 zero point -128, output scale 1/64 zero point -128: v = x + 128,
   * out = -128 + round(64 / sqrt(v)) (the multiplier of 1 / (1 * 1/64) = 64 is (2^30, 7));
   * on the squares the Newton iteration is exact: v = 1, 4, 16, 64, 256 - 1 = 255 gives
   * 64, 32, 16, 8, 64 / 15.97 = 4; v = 0 (and TFLite's invalid v < 0) gives 127 */
  static const int8_t rsqrt_probe[7] = {-128, -127, -124, -112, -64, 127, -10};
  static const int8_t want_rsqrt[7] = {127, -64, -96, -112, -120, -124, -128 + 6};
  /* NEG with one scale (0.5): zero points -10 -> 7, out = -10 + 7 - x, clamped;
   * NEG from scale 0.5 to scale 1 (zero points 0): -x / 2, halves away from zero */
  static const int8_t neg_probe[7] = {-128, -3, -1, 0, 1, 3, 127};
  static const int8_t want_neg_same[7] = {125, 0, -2, -3, -4, -6, -128};
  static const int8_t want_neg_half[7] = {64, 2, 1, 0, -1, -2, -64};
  sophon_int8_unary u;
  int8_t table[256], got[7];
  int i;

  memset(&u, 0, sizeof(u));
  u.kind = SOPHON_LUT_RSQRT;
  u.input_scale = 1.0f;
  u.input_zero_point = -128;
  u.output_scale = 1.0f / 64.0f;
  u.output_zero_point = -128;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_OK);
  /* v = 118: 64 / sqrt(118) = 5.89 -> 6 */
  for (i = 0; i < 7; ++i) got[i] = table[(uint8_t)rsqrt_probe[i]];
  CHECK_I8_EQUAL(got, want_rsqrt, 7);
  u.input_zero_point = 0; /* x < 0: below the zero point, TFLite refuses; the table holds 127 */
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_OK);
  CHECK(table[(uint8_t)-5] == 127 && table[0] == 127 && table[1] == -64);

  u.kind = SOPHON_LUT_NEG;
  u.input_scale = u.output_scale = 0.5f;
  u.input_zero_point = -10;
  u.output_zero_point = 7;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_OK);
  for (i = 0; i < 7; ++i) got[i] = table[(uint8_t)neg_probe[i]];
  CHECK_I8_EQUAL(got, want_neg_same, 7);
  u.input_zero_point = u.output_zero_point = 0;
  u.output_scale = 1.0f;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_OK);
  for (i = 0; i < 7; ++i) got[i] = table[(uint8_t)neg_probe[i]];
  CHECK_I8_EQUAL(got, want_neg_half, 7);
}

/* SQUARED_DIFFERENCE with scales 1: input multipliers 1 / (2 * 1) = (2^30, 0), output
 * multiplier 2^2 / (2^14 * 1) = 2^-12 = (2^30, -11); d = (x * 2^7) / 2 - (y * 2^7) / 2
 * = 64 (x - y) and d^2 / 4096 = (x - y)^2 exactly, + output zero point -128, clamped.
 * b (1, 1, 1, 2) broadcasts over channels. */
static void test_squared_difference_int8_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  const int8_t a_data[10] = {10, 1, -1, 127, -128, 3, 0, 0, 100, -100};
  const int8_t b_data[2] = {6, 0};
  /* (x - y)^2: 16 1 49 16129 17956 9 36 0 8836 10000 */
  const int8_t want[10] = {-112, -127, -79, 127, 127, -119, -92, -128, 127, 127};
  sophon_local a = local(0, 1, 5, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local b = local(64, 1, 1, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out = local(192, 1, 5, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_binary_int8_params p;
  int8_t got[10];

  memset(&p, 0, sizeof(p));
  p.op = SOPHON_BINARY_INT8_SQUARED_DIFFERENCE;
  p.output_zero_point = -128;
  p.multiplier1 = p.multiplier2 = p.multiplier3 = 1 << 30;
  p.shift3 = -11;
  p.act_min = -128;
  p.act_max = 127;
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &a, a_data));
  CHECK_OK(dev, load(dev, &b, b_data));
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want, 10);

  /* its multipliers are MultiplyByQuantizedMultiplierSmallerThanOneExp's: no left shift */
  p.shift3 = 1;
  CHECK_STATUS(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "3 shift[0] 1 is outside [-31, 0]");
  sophon_device_destroy(dev);
}

static void test_lut_golden(void) {
  sophon_chip chip = small_chip(1), f32_chip = small_chip(0);
  sophon_device* dev = NULL;
  sophon_device* f32_dev = NULL;
  const int8_t in_data[10] = {-128, -3, -1, 0, 1, 3, 127, -8, -4, 2};
  sophon_local in = local(0, 1, 5, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out = local(64, 1, 5, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_int8_unary u;
  sophon_lut_int8_params p;
  int8_t got[10];

  /* REQUANTIZE from scale 1 to scale 2: MultiplyByQuantizedMultiplier(x, 2^30, 0)
   * = SaturatingRoundingDoublingHighMul(x, 2^30) = x / 2, ties toward +infinity:
   * -64 -1 0 0 1 2 64 -4 -2 1 (-1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 63.5 -> 64) */
  const int8_t want_requantize[10] = {-64, -1, 0, 0, 1, 2, 64, -4, -2, 1};
  /* LEAKY_RELU, scales 1, alpha 0.25: x >= 0 -> x (identity multiplier 1 = (2^30, 1));
   * x < 0 -> MBQM(x, 2^30, -1): SRDHM(x, 2^30) = x / 2 ties up, then / 2 ties
   * away from zero: -128 -> -32; -3 -> -1 -> -1 (-0.5 away); -1 -> 0 -> 0;
   * -8 -> -2; -4 -> -1 */
  const int8_t want_leaky[10] = {-32, -1, 0, 0, 1, 3, 127, -2, -1, 2};

  memset(&u, 0, sizeof(u));
  u.kind = SOPHON_LUT_REQUANTIZE;
  u.input_scale = 1.0f;
  u.output_scale = 2.0f;
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK(sophon_device_create(&f32_chip, &f32_dev) == SOPHON_OK);
  CHECK(sophon_int8_lut_build(&u, p.table) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_lut_int8(dev, &out, &in, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_requantize, 10);
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, sophon_cost_binary(&chip, &out, NULL));

  u.kind = SOPHON_LUT_LEAKY_RELU;
  u.output_scale = 1.0f;
  u.alpha = 0.25f;
  CHECK(sophon_int8_lut_build(&u, p.table) == SOPHON_OK);
  CHECK_OK(dev, sophon_tiu_lut_int8(dev, &in, &in, &p)); /* in place */
  CHECK_OK(dev, store(dev, &in, got));
  CHECK_I8_EQUAL(got, want_leaky, 10);

  /* the table builder's errors */
  CHECK(sophon_int8_lut_build(NULL, p.table) == SOPHON_ERR_ARGUMENT);
  u.output_scale = 0.0f;
  CHECK(sophon_int8_lut_build(&u, p.table) == SOPHON_ERR_ARGUMENT);
  u.output_scale = 1.0f;
  u.input_zero_point = 128;
  CHECK(sophon_int8_lut_build(&u, p.table) == SOPHON_ERR_ARGUMENT);
  u.input_zero_point = 0;
  u.kind = SOPHON_LUT_HARD_SWISH; /* input / (128 output) = 2: TFLite refuses it */
  u.input_scale = 256.0f;
  CHECK(sophon_int8_lut_build(&u, p.table) == SOPHON_ERR_UNSUPPORTED);

  /* the instruction's errors */
  CHECK_STATUS(f32_dev, sophon_tiu_lut_int8(f32_dev, &out, &in, &p), SOPHON_ERR_UNSUPPORTED);
  CHECK_STATUS(dev, sophon_tiu_lut_int8(dev, &out, &in, NULL), SOPHON_ERR_ARGUMENT);
  {
    sophon_local other = out;
    other.c = 4;
    CHECK_STATUS(dev, sophon_tiu_lut_int8(dev, &other, &in, &p), SOPHON_ERR_ARGUMENT);
    other = out;
    other.addr = 32; /* overlaps in without being it */
    CHECK_STATUS(dev, sophon_tiu_lut_int8(dev, &other, &in, &p), SOPHON_ERR_ARGUMENT);
  }
  sophon_device_destroy(dev);
  sophon_device_destroy(f32_dev);
}

static void test_binary_int8_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  /* a (1, 5, 1, 2); b broadcasts over channels (MUL, MAX, MIN) */
  const int8_t a_data[10] = {10, 1, -1, 127, -128, 3, 0, 0, 100, -100};
  const int8_t b_data[2] = {6, 0};
  const int8_t alpha_data[5] = {1, 2, -1, 0, 3};
  sophon_local a = local(0, 1, 5, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local b = local(64, 1, 1, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local alpha = local(128, 1, 5, 1, 1, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out = local(192, 1, 5, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_binary_int8_params p;
  int8_t got[10];
  /* MUL by 1/4 = (2^30, -1): products 60 0 -6 0 -768 0 0 0 600 0; SRDHM halves them
   * exactly, the rounding shift halves again, ties away from zero: 15 0 -2 0 -192
   * 0 0 0 150 0, clamped to int8 */
  const int8_t want_mul[10] = {15, 0, -2, 0, -128, 0, 0, 0, 127, 0};
  const int8_t want_max[10] = {10, 1, 6, 127, 6, 3, 6, 0, 100, 0};
  const int8_t want_min[10] = {6, 0, -1, 0, -128, 0, 0, 0, 6, -100};
  /* PRELU, multiplier1 = 1 (2^30, 1), multiplier2 = 1/2 (2^30, 0), alpha per
   * channel 1 2 -1 0 3: x >= 0 -> x; x < 0 -> x * alpha / 2:
   * ch1 -1 * 2 / 2 = -1; ch2 -128 * -1 / 2 = 64; ch4 -100 * 3 / 2 = -150 -> -128 */
  const int8_t want_prelu[10] = {10, 1, -1, 127, 64, 3, 0, 0, 100, -128};

  memset(&p, 0, sizeof(p));
  p.act_min = -128;
  p.act_max = 127;
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &a, a_data));
  CHECK_OK(dev, load(dev, &b, b_data));
  CHECK_OK(dev, load(dev, &alpha, alpha_data));

  p.op = SOPHON_BINARY_INT8_MUL;
  p.multiplier1 = 1 << 30;
  p.shift1 = -1;
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_mul, 10);

  /* MUL_FLOAT32 (onnxruntime's QLinearMul) by 1/4: one rounding, halves to even:
   * 60 -> 15, -6 / 4 = -1.5 -> -2, 600 / 4 = 150 -> 127; 10 * 1 / 4 = 2.5 -> 2 below */
  p.op = SOPHON_BINARY_INT8_MUL_FLOAT32;
  p.multiplier1 = 0;
  p.shift1 = 0;
  p.scale = 0.25f;
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_mul, 10);
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &alpha, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_EQ_INT(got[0], 2);  /* 10 * alpha 1 * 0.25 = 2.5: to even (MUL's fixed point: 3) */
  p.scale = -1.0f;
  CHECK_STATUS(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p), SOPHON_ERR_ARGUMENT);
  p.scale = 0.0f;

  /* onnxruntime's float ops need three positive finite scales; QLinearAdd an offset of 0
   * or 128 and finite constants */
  p.op = SOPHON_BINARY_INT8_ADD_FLOAT;
  CHECK_STATUS(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p), SOPHON_ERR_ARGUMENT);
  p.input1_scale = p.input2_scale = p.output_scale = 0.5f;
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_EQ_INT(got[0], 16); /* a[0] 10, b[0] 6: (5 + 3) / 0.5 */
  p.op = SOPHON_BINARY_INT8_ADD_QLINEAR;
  p.value_offset = 64;
  CHECK_STATUS(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p), SOPHON_ERR_ARGUMENT);
  p.value_offset = 128; /* the same add in uint8: ratios 1, constant 0 + 128 - (128 + 128) */
  p.input1_scale = p.input2_scale = 1.0f;
  p.output_scale = -128.0f;
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_EQ_INT(got[0], 16); /* 138 + 134 - 128 = 144, less the offset */
  p.input1_scale = p.input2_scale = p.output_scale = 0.0f;
  p.value_offset = 0;

  p.op = SOPHON_BINARY_INT8_MAX;
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_max, 10);
  p.op = SOPHON_BINARY_INT8_MIN;
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_min, 10);

  p.op = SOPHON_BINARY_INT8_PRELU;
  p.multiplier1 = 1 << 30;
  p.shift1 = 1;
  p.multiplier2 = 1 << 30;
  p.shift2 = 0;
  CHECK_OK(dev, sophon_tiu_binary_int8(dev, &out, &a, &alpha, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_prelu, 10);

  /* errors */
  p.multiplier2 = -5;
  CHECK_STATUS(dev, sophon_tiu_binary_int8(dev, &out, &a, &alpha, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "negative");
  p.multiplier2 = 1 << 30;
  p.op = (sophon_binary_int8_op)11;
  CHECK_STATUS(dev, sophon_tiu_binary_int8(dev, &out, &a, &alpha, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "unknown op 11");
  p.op = SOPHON_BINARY_INT8_MUL;
  p.output_zero_point = 300;
  CHECK_STATUS(dev, sophon_tiu_binary_int8(dev, &out, &a, &b, &p), SOPHON_ERR_ARGUMENT);
  p.output_zero_point = 0;
  {
    sophon_local wide = b;
    wide.c = 2;
    CHECK_STATUS(dev, sophon_tiu_binary_int8(dev, &out, &a, &wide, &p), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "does not broadcast");
  }
  sophon_device_destroy(dev);
}

/* ----------------------------------------------------------------- pool */

static void test_pool_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  /* 2 channels of 2x3 */
  const int8_t in_data[12] = {1, 2, 2, -1, -2, 4, -128, -128, -128, 127, 127, 126};
  sophon_local in = local(0, 1, 2, 2, 3, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out = local(64, 1, 2, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_pool_params p = pool_params(SOPHON_POOL_AVG, 2, 1, 0);
  int8_t got[12];
  /* AVG 2x2 stride 1: ch0 (1+2-1-2)/4 = 0; (2+2-2+4)/4 = 1.5 -> 2;
   *                  ch1 (-256+254)/4 = -0.5 -> -1; (-256+253)/4 = -0.75 -> -1 */
  const int8_t want_avg[4] = {0, 2, -1, -1};
  /* MAX 2x2 stride 1 clamped to [-100, 100]: ch0 2, 4; ch1 127 -> 100, 127 -> 100 */
  const int8_t want_max[4] = {2, 4, 100, 100};

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_pool2d_int8(dev, &out, &in, &p, -128, 127));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_avg, 4);
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, sophon_cost_pool2d(&chip, &out, &p));
  p.kind = SOPHON_POOL_MAX;
  CHECK_OK(dev, sophon_tiu_pool2d_int8(dev, &out, &in, &p, -100, 100));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_max, 4);

  /* AVG with padding divides by the in-bounds taps: 2x2 stride 2 pad 1 -> out 2x2
   * ch0 windows: {1} = 1; {2, 2} = 2; {-1} = -1; {-2, 4} = 1; ch1: -128, -128, 127, 126.5 -> 127 */
  {
    sophon_local out2 = local(64, 1, 2, 2, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
    const int8_t want_pad[8] = {1, 2, -1, 1, -128, -128, 127, 127};
    p = pool_params(SOPHON_POOL_AVG, 2, 2, 1);
    CHECK_OK(dev, sophon_tiu_pool2d_int8(dev, &out2, &in, &p, -128, 127));
    CHECK_OK(dev, store(dev, &out2, got));
    CHECK_I8_EQUAL(got, want_pad, 8);
    /* count_include_pad = 1 is not TFLite's int8 rule */
    p.count_include_pad = 1;
    CHECK_STATUS(dev, sophon_tiu_pool2d_int8(dev, &out2, &in, &p, -128, 127),
                 SOPHON_ERR_UNSUPPORTED);
  }
  /* a window over padding only: MAX gives -128 (then the clamp), AVG is rejected */
  {
    sophon_pool_params pad_only = pool_params(SOPHON_POOL_MAX, 1, 1, 1);
    sophon_local out3 = local(64, 1, 2, 4, 5, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
    int8_t got3[40];
    CHECK_OK(dev, sophon_tiu_pool2d_int8(dev, &out3, &in, &pad_only, -120, 127));
    CHECK_OK(dev, store(dev, &out3, got3));
    CHECK_EQ_INT(got3[0], -120);
    CHECK_EQ_INT(got3[6], 1);
    pad_only.kind = SOPHON_POOL_AVG;
    CHECK_STATUS(dev, sophon_tiu_pool2d_int8(dev, &out3, &in, &pad_only, -128, 127),
                 SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "padding only");
  }
  p = pool_params(SOPHON_POOL_AVG, 2, 1, 0);
  CHECK_STATUS(dev, sophon_tiu_pool2d_int8(dev, &out, &in, &p, 5, 4), SOPHON_ERR_ARGUMENT);
  CHECK_STATUS(dev, sophon_tiu_pool2d_int8(dev, &out, &in, &p, -129, 4), SOPHON_ERR_ARGUMENT);
  CHECK_STATUS(dev, sophon_tiu_pool2d_int8(dev, &in, &in, &p, -128, 127), SOPHON_ERR_ARGUMENT);
  in.dtype = SOPHON_F32;
  CHECK_STATUS(dev, sophon_tiu_pool2d_int8(dev, &out, &in, &p, -128, 127), SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

/* ------------------------------------------------------ reduce, softmax */

static void test_reduce_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  /* 1 channel, 3 rows of 2: column 0 {1, 2, 4}, column 1 {-10, -11, -12} */
  const int8_t in_data[6] = {1, -10, 2, -11, 4, -12};
  sophon_local in = local(0, 1, 1, 3, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out = local(64, 1, 1, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  const int32_t m_one = 1 << 30, s_one = 1; /* real 1.0 */
  const int32_t m_half = 1 << 30, s_half = 0; /* real 0.5 */
  sophon_requant q = requant(1, -5, &m_one, &s_one, 0);
  int8_t got[2];
  /* MEAN, count 3: multiplier 2^31 / 3 = 715827882 (truncated), shift 0;
   * column 0 (7 - 1*3) / 3 = 1.33 -> 1 - 5 = -4; column 1 (-33 - 3) / 3 = -12 -> -17 */
  const int8_t want_mean[2] = {-4, -17};
  /* SUM by 0.5: (7 - 3) / 2 = 2 -> -3; (-36) / 2 = -18 -> -23 */
  const int8_t want_sum[2] = {-3, -23};
  const int8_t want_max[2] = {4, -10}, want_min[2] = {1, -12};

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_MEAN, &q));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_mean, 2);
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles,
               sophon_cost_reduce(&chip, &in, SOPHON_REDUCE_MEAN));
  q = requant(1, -5, &m_half, &s_half, 0);
  CHECK_OK(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_SUM, &q));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_sum, 2);
  /* MAX and MIN keep the quantization: no requant */
  CHECK_OK(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_MAX, NULL));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_max, 2);
  CHECK_OK(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_MIN, NULL));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_min, 2);

  /* errors */
  CHECK_STATUS(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_MEAN, NULL),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "needs a requant");
  CHECK_STATUS(dev, sophon_tiu_reduce_int8(dev, &out, &in, (sophon_reduce_kind)9, &q),
               SOPHON_ERR_ARGUMENT);
  q.shift = &s_one;
  q.per_channel = 1;
  CHECK_STATUS(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_SUM, &q),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "per tensor");
  q.per_channel = 0;
  q.input_zero_point = 128;
  CHECK_STATUS(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_SUM, &q),
               SOPHON_ERR_ARGUMENT);
  q.input_zero_point = 1;
  CHECK_STATUS(dev, sophon_tiu_reduce_int8(dev, &in, &in, SOPHON_REDUCE_MAX, NULL),
               SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "reduced over h");
  in.dtype = SOPHON_F32;
  CHECK_STATUS(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_MAX, NULL),
               SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);

  chip = small_chip(0);
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  in.dtype = SOPHON_I8;
  CHECK_STATUS(dev, sophon_tiu_reduce_int8(dev, &out, &in, SOPHON_REDUCE_MAX, NULL),
               SOPHON_ERR_UNSUPPORTED);
  sophon_device_destroy(dev);
}

static void test_softmax_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  /* 2 channels, softmax over 4 rows. Input scale 1.0: beta * scale * 2^26 gives
   * multiplier 2^30, left shift 27; diff_min = -floor(31 * 2^26 / 2^27) = -15. */
  const int8_t in_data[8] = {3, 3, 3, 3, 100, -100, -100, -100};
  sophon_local in = local(0, 1, 2, 4, 1, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out = local(64, 1, 2, 4, 1, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  int8_t got[8];
  /* channel 0: four exp(0) = 2^19 each in Q12.19, sum 2^21: 1 / sum is (2^31 - 1)
   * scaled by 2^-2, so each output rounds (2^31 - 2) / 2^25 = 64 -> 64 - 128 = -64.
   * channel 1: the differences -200 are below diff_min (output -128); the max alone
   * sums to 2^19: 256 -> 128, clamped to 127. */
  const int8_t want[8] = {-64, -64, -64, -64, 127, -128, -128, -128};

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_softmax_int8(dev, &out, &in, 1 << 30, 27));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want, 8);
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, sophon_cost_softmax_int8(&chip, &out));

  CHECK_STATUS(dev, sophon_tiu_softmax_int8(dev, &out, &in, 1 << 30, 31), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "shift");
  CHECK_STATUS(dev, sophon_tiu_softmax_int8(dev, &out, &in, -1, 3), SOPHON_ERR_ARGUMENT);
  CHECK_STATUS(dev, sophon_tiu_softmax_int8(dev, &in, &in, 1 << 30, 27), SOPHON_ERR_ARGUMENT);
  {
    sophon_local tall = local(0, 1, 1, 4096, 1, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
    sophon_local tall_out = local(0, 1, 1, 4096, 1, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
    CHECK_STATUS(dev, sophon_tiu_softmax_int8(dev, &tall_out, &tall, 1 << 30, 27),
                 SOPHON_ERR_UNSUPPORTED);
    CHECK_ERROR_HAS(dev, "4095");
  }
  out.h = 3;
  CHECK_STATUS(dev, sophon_tiu_softmax_int8(dev, &out, &in, 1 << 30, 27), SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

/* The two commands in a program give what the direct calls give. */
static void test_reduce_softmax_program(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  const int8_t in_data[6] = {1, -10, 2, -11, 4, -12};
  int8_t mean_data[2], soft_data[6];
  void* buffers[1] = {NULL}; /* no DDR: the input is loaded beforehand */
  const int32_t m = 1 << 30, s = 1;
  const sophon_requant requants[1] = {
      {1, -5, -128, 127, 0, &m, &s, SOPHON_REQUANT_FIXED_POINT, NULL, 0.0f, 0.0f, 0}};
  const sophon_local locals[3] = {local(0, 1, 1, 3, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED),
                                  local(64, 1, 1, 1, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED),
                                  local(128, 1, 1, 3, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED)};
  sophon_cmd cmds[2] = {{SOPHON_CMD_REDUCE_INT8, 1, 0, -1, SOPHON_REDUCE_MEAN, 0, 0},
                        {SOPHON_CMD_SOFTMAX_INT8, 2, 0, 1 << 30, 27, -1, 0}};
  sophon_program prog;
  const int8_t want_mean[2] = {-4, -17};

  memset(&prog, 0, sizeof prog);
  prog.locals = locals;
  prog.num_locals = 3;
  prog.cmds = cmds;
  prog.num_cmds = 2;
  prog.requants = requants;
  prog.num_requants = 1;
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &locals[0], in_data));
  CHECK_OK(dev, sophon_program_run(dev, &prog, buffers));
  CHECK_OK(dev, store(dev, &locals[1], mean_data));
  CHECK_I8_EQUAL(mean_data, want_mean, 2);
  CHECK_OK(dev, store(dev, &locals[2], soft_data));
  {
    int8_t direct[6];
    CHECK_OK(dev, sophon_tiu_softmax_int8(dev, &locals[2], &locals[0], 1 << 30, 27));
    CHECK_OK(dev, store(dev, &locals[2], direct));
    CHECK_I8_EQUAL(soft_data, direct, 6);
  }
  cmds[0].p = 1;
  CHECK_STATUS(dev, sophon_program_run(dev, &prog, buffers), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "command 0 (reduce_int8): requant index 1 out of range");
  sophon_device_destroy(dev);
}

/* -------------------------------------------------------------- program */

/* A program of the four INT8 commands gives what the direct calls give. */
static void test_program(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  static int8_t in_data[1 * 3 * 4 * 4], w_data[6 * 3 * 9], fc_w[2 * 24];
  int8_t out_prog[2], out_direct[2];
  int32_t bias_data[6] = {5, -5, 100, -100, 0, 7};
  const int32_t m[6] = {1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30};
  const int32_t s[6] = {-4, -5, -6, -4, -5, -6};
  const sophon_local locals[] = {
      {0, 1, 3, 4, 4, SOPHON_I8, SOPHON_LAYOUT_ALIGNED, 0},    /* 0 in */
      {64, 1, 6, 3, 9, SOPHON_I8, SOPHON_LAYOUT_COMPACT, 0},   /* 1 conv weight */
      {128, 1, 6, 1, 1, SOPHON_I32, SOPHON_LAYOUT_COMPACT, 0}, /* 2 conv bias */
      {192, 1, 6, 4, 4, SOPHON_I8, SOPHON_LAYOUT_ALIGNED, 0},  /* 3 conv out */
      {256, 1, 6, 2, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED, 0},  /* 4 pool out */
      {320, 1, 24, 1, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT, 0}, /* 5 pool out as fc input */
      {384, 1, 2, 24, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT, 0}, /* 6 fc weight */
      {448, 1, 2, 1, 1, SOPHON_I8, SOPHON_LAYOUT_COMPACT, 0},  /* 7 fc out */
  };
  sophon_global_ref globals[6];
  const sophon_conv_params convs[] = {{3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, {SOPHON_ACT_NONE, 0, 0, 0, 0}}};
  const sophon_pool_params pools[] = {
      {SOPHON_POOL_MAX, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 0, SOPHON_INT8_TFLITE, 0.0f, 0.0f, 0, 0}};
  const sophon_requant requants[] = {
      {3, -2, -128, 127, 1, m, s, SOPHON_REQUANT_FIXED_POINT, NULL, 0.0f, 0.0f, 0},
      {0, 1, -128, 127, 0, m, s, SOPHON_REQUANT_FIXED_POINT, NULL, 0.0f, 0.0f, 0}};
  sophon_add_int8_params adds[1];
  /* the 24 pool outputs are re-read as fc input (1, 24, 1, 1): stored to DDR as
   * (1, 6, 2, 2) through globals[4] and loaded back through globals[5] */
  static int8_t scratch[24];
  sophon_cmd cmds[] = {
      {SOPHON_CMD_LOAD, 0, 0, -1, -1, -1, 0},
      {SOPHON_CMD_LOAD, 1, 1, -1, -1, -1, 0},
      {SOPHON_CMD_LOAD, 2, 2, -1, -1, -1, 0},
      {SOPHON_CMD_LOAD, 6, 3, -1, -1, -1, 0},
      {SOPHON_CMD_CONV2D_INT8, 3, 0, 1, 2, 0, 0},
      {SOPHON_CMD_ADD_INT8, 3, 3, 3, -1, 0, 0}, /* in place: out = (x + x) / 2 = x */
      {SOPHON_CMD_POOL2D_INT8, 4, 3, -100, 100, 0, 0},
      {SOPHON_CMD_STORE, 4, 4, -1, -1, -1, 0},
      {SOPHON_CMD_LOAD, 5, 5, -1, -1, -1, 0},
      {SOPHON_CMD_FC_INT8, 7, 5, 6, -1, 1, 0},
      {SOPHON_CMD_TIMESTEP, -1, -1, -1, -1, -1, 0},
  };
  sophon_program prog;
  void* buffers[5];
  int i;

  fill_i8(in_data, (int)sizeof in_data, 11);
  fill_i8(w_data, (int)sizeof w_data, 12);
  fill_i8(fc_w, (int)sizeof fc_w, 13);
  adds[0] = add_params();
  /* buffers: 0 in, 1 conv weight, 2 bias, 3 fc weight, 4 scratch (globals 4 and 5) */
  {
    const int32_t dims[6][4] = {{1, 3, 4, 4}, {1, 6, 3, 9}, {1, 6, 1, 1},
                                {1, 2, 24, 1}, {1, 6, 2, 2}, {1, 24, 1, 1}};
    const sophon_dtype dtypes[6] = {SOPHON_I8, SOPHON_I8, SOPHON_I32, SOPHON_I8, SOPHON_I8, SOPHON_I8};
    for (i = 0; i < 6; ++i) {
      memset(&globals[i], 0, sizeof globals[i]);
      globals[i].buffer = i < 5 ? i : 4;
      globals[i].n = dims[i][0];
      globals[i].c = dims[i][1];
      globals[i].h = dims[i][2];
      globals[i].w = dims[i][3];
      globals[i].stride_w = 1;
      globals[i].stride_h = dims[i][3];
      globals[i].stride_c = (int64_t)dims[i][2] * dims[i][3];
      globals[i].stride_n = (int64_t)dims[i][1] * dims[i][2] * dims[i][3];
      globals[i].dtype = dtypes[i];
    }
  }
  buffers[0] = in_data;
  buffers[1] = w_data;
  buffers[2] = bias_data;
  buffers[3] = fc_w;
  buffers[4] = scratch;

  memset(&prog, 0, sizeof prog);
  prog.locals = locals;
  prog.num_locals = 8;
  prog.globals = globals;
  prog.num_globals = 6;
  prog.convs = convs;
  prog.num_convs = 1;
  prog.pools = pools;
  prog.num_pools = 1;
  prog.cmds = cmds;
  prog.num_cmds = 11;
  prog.num_buffers = 5;
  prog.requants = requants;
  prog.num_requants = 2;
  prog.adds = adds;
  prog.num_adds = 1;

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  {
    CHECK_OK(dev, sophon_program_run(dev, &prog, buffers));
    CHECK_OK(dev, store(dev, &locals[7], out_prog));

    /* the same by direct calls */
    CHECK_OK(dev, load(dev, &locals[0], in_data));
    CHECK_OK(dev, sophon_tiu_conv2d_int8(dev, &locals[3], &locals[0], &locals[1], &locals[2],
                                         &convs[0], &requants[0]));
    CHECK_OK(dev, sophon_tiu_pool2d_int8(dev, &locals[4], &locals[3], &pools[0], -100, 100));
    {
      int8_t pooled[24];
      CHECK_OK(dev, store(dev, &locals[4], pooled));
      CHECK_OK(dev, load(dev, &locals[5], pooled));
    }
    CHECK_OK(dev, sophon_tiu_fc_int8(dev, &locals[7], &locals[5], &locals[6], NULL, &requants[1]));
    CHECK_OK(dev, store(dev, &locals[7], out_direct));
    CHECK_I8_EQUAL(out_prog, out_direct, 2);

    /* a bad requant index names the command */
    cmds[4].q = 7;
    CHECK_STATUS(dev, sophon_program_run(dev, &prog, buffers), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "command 4 (conv2d_int8): requant index 7 out of range");
    cmds[4].q = 0;
    cmds[5].p = 1;
    CHECK_STATUS(dev, sophon_program_run(dev, &prog, buffers), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "add params index 1");
    cmds[5].p = 0;
    cmds[6].c = 101; /* act_min > act_max */
    CHECK_STATUS(dev, sophon_program_run(dev, &prog, buffers), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "command 6 (pool2d_int8)");
  }
  sophon_device_destroy(dev);
}

/* ------------------------------------------- transposed conv, resize */

static void test_conv2d_transpose_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  /* in 1x1x2x2, zero point 1; filter 2x2, stride 2: each input pixel paints one 2x2
   * block; real scale 0.5, out zp -3, bias 1 */
  const int8_t in_data[4] = {2, 3, 4, 5};
  const int8_t w_data[4] = {1, 2, 3, 4};
  const int32_t bias_data[1] = {1};
  const int32_t m[1] = {k_half}, sh[1] = {0};
  sophon_local in = local(0, 1, 1, 2, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local weight = local(64, 1, 1, 1, 4, SOPHON_I8, SOPHON_LAYOUT_COMPACT);
  sophon_local bias = local(128, 1, 1, 1, 1, SOPHON_I32, SOPHON_LAYOUT_COMPACT);
  sophon_local out = local(256, 1, 1, 4, 4, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_f32 = local(256, 1, 1, 4, 4, SOPHON_F32, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p = conv_params(2, 2, 0, 1, 1);
  sophon_requant q = requant(1, -3, m, sh, 0);
  int8_t got[16];
  /* (in - 1) = [1 2; 3 4]; block (0,0) = 1 * [1 2; 3 4], + bias 1 = [2 3; 4 5],
   * * 0.5 rounding half away from zero = [1 2; 2 3], + zp -3 = [-2 -1; -1 0];
   * block (1,1) = 4 * [1 2; 3 4] + 1 = [5 9; 13 17] -> [3 5; 7 9] -> [0 2; 4 6] */
  const int8_t want_00[4] = {-2, -1, -1, 0};
  const int8_t want_11[4] = {0, 2, 4, 6};

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  CHECK_OK(dev, load(dev, &weight, w_data));
  CHECK_OK(dev, load(dev, &bias, bias_data));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_conv2d_transpose_int8(dev, &out, &in, &weight, &bias, &p, &q));
  CHECK_EQ_INT(sophon_device_counters(dev)->macs, 16);
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_EQ_INT(got[0], want_00[0]);
  CHECK_EQ_INT(got[1], want_00[1]);
  CHECK_EQ_INT(got[4], want_00[2]);
  CHECK_EQ_INT(got[5], want_00[3]);
  CHECK_EQ_INT(got[10], want_11[0]);
  CHECK_EQ_INT(got[11], want_11[1]);
  CHECK_EQ_INT(got[14], want_11[2]);
  CHECK_EQ_INT(got[15], want_11[3]);
  /* an f32 out is refused, naming the operand */
  CHECK(sophon_tiu_conv2d_transpose_int8(dev, &out_f32, &in, &weight, &bias, &p, &q) ==
        SOPHON_ERR_ARGUMENT);
  CHECK(strstr(sophon_device_error(dev), "out dtype") != NULL);
  sophon_device_destroy(dev);

  chip = small_chip(0); /* no INT8 datapath */
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK(sophon_tiu_conv2d_transpose_int8(dev, &out, &in, &weight, &bias, &p, &q) ==
        SOPHON_ERR_UNSUPPORTED);
  sophon_device_destroy(dev);
}

static sophon_resize_params resize_int8_params(sophon_resize_method method,
                                               sophon_resize_coord coord, int32_t in_h,
                                               int32_t out_h) {
  sophon_resize_params p;
  memset(&p, 0, sizeof p);
  p.method = method;
  p.coord = coord;
  p.in_h = in_h;
  p.out_h = out_h;
  return p;
}

static void test_resize_golden(void) {
  sophon_chip chip = small_chip(1);
  sophon_device* dev = NULL;
  const int8_t in_data[4] = {0, 100, -100, 50};
  sophon_local in = local(0, 1, 1, 2, 2, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local out = local(256, 1, 1, 3, 3, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_local band = local(256, 1, 1, 1, 3, SOPHON_I8, SOPHON_LAYOUT_ALIGNED);
  sophon_resize_params p =
      resize_int8_params(SOPHON_RESIZE_BILINEAR, SOPHON_COORD_ALIGN_CORNERS, 2, 3);
  int8_t got[9];
  /* align_corners 2 -> 3: scale (1024 * 1 + 1) / 2 = 512 (one half in 10 bits);
   * the middle row and column average their neighbours, the centre all four:
   * (0 + 100 - 100 + 50) / 4 = 12.5 -> 13 (half away from zero); -25 stays -25 */
  const int8_t want[9] = {0, 50, 100, -50, 13, 75, -100, -25, 50};
  /* nearest, asymmetric 2 -> 3: floor(x * 2/3) = 0, 0, 1 */
  const int8_t want_nearest[9] = {0, 0, 100, 0, 0, 100, -100, -100, 50};

  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  CHECK_OK(dev, load(dev, &in, in_data));
  CHECK_OK(dev, sophon_tiu_resize_int8(dev, &out, &in, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want, 9);
  /* a band: out row 1 alone, from both input rows */
  p.out_row0 = 1;
  CHECK_OK(dev, sophon_tiu_resize_int8(dev, &band, &in, &p));
  CHECK_OK(dev, store(dev, &band, got));
  CHECK_I8_EQUAL(got, want + 3, 3);
  p = resize_int8_params(SOPHON_RESIZE_NEAREST, SOPHON_COORD_ASYMMETRIC, 2, 3);
  CHECK_OK(dev, sophon_tiu_resize_int8(dev, &out, &in, &p));
  CHECK_OK(dev, store(dev, &out, got));
  CHECK_I8_EQUAL(got, want_nearest, 9);
  /* a coordinate mode TFLite has not */
  p.coord = SOPHON_COORD_PYTORCH_HALF_PIXEL;
  CHECK(sophon_tiu_resize_int8(dev, &out, &in, &p) == SOPHON_ERR_ARGUMENT);
  CHECK(strstr(sophon_device_error(dev), "coordinate mode") != NULL);
  sophon_device_destroy(dev);
}

/* The table of a concat input quantized unlike the output (ConcatenationWithScaling):
 * scale 0.375 -> 0.5 is a factor 0.75 (exact in float), zero points 2 -> -1:
 * round(0.75 * v - 1.5) - 1, ties away from zero. */
static void test_concat_rescale_table(void) {
  sophon_int8_unary u;
  int8_t table[256];
  memset(&u, 0, sizeof(u));
  u.kind = SOPHON_LUT_CONCAT_RESCALE;
  u.input_scale = 0.375f;
  u.input_zero_point = 2;
  u.output_scale = 0.5f;
  u.output_zero_point = -1;
  CHECK(sophon_int8_lut_build(&u, table) == SOPHON_OK);
  CHECK_EQ_INT(table[(uint8_t)2], -1);   /* the input's zero: the output's zero */
  CHECK_EQ_INT(table[(uint8_t)4], 1);    /* 1.5 -> 2 (away), - 1 */
  CHECK_EQ_INT(table[(uint8_t)0], -3);   /* -1.5 -> -2 (away), - 1 */
  CHECK_EQ_INT(table[(uint8_t)8], 4);    /* 4.5 -> 5 (away; half to even would say 4), - 1 */
  CHECK_EQ_INT(table[(uint8_t)127], 93); /* 93.75 -> 94, - 1 */
  CHECK_EQ_INT(table[(uint8_t)-128], -99); /* -97.5 -> -98, - 1 */
}

int main(void) {
  test_quantize_multiplier();
  test_multiply_by_quantized_multiplier();
  test_conv2d_golden();
  test_grouped_equals_block_dense();
  test_conv2d_errors();
  test_fc_golden();
  test_fc_double_rounding_golden();
  test_add_golden();
  test_lut_golden();
  test_lut_relu_golden();
  test_binary_int8_golden();
  test_lut_rsqrt_neg_golden();
  test_squared_difference_int8_golden();
  test_pool_golden();
  test_program();
  test_conv2d_transpose_golden();
  test_resize_golden();
  test_concat_rescale_table();
  test_reduce_golden();
  test_softmax_golden();
  test_reduce_softmax_program();
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed > 0 ? 1 : 0;
}
