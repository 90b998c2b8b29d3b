/*
 * test_runtime.c - unit tests of the emulated Sophon runtime (C reference).
 *
 * A standalone program with a tiny harness: each CHECK that fails prints
 * file:line; the last line is "N passed, M failed"; the exit status is nonzero
 * iff a check failed. Most tests use a small chip (4 lanes, 4 KiB per lane,
 * EU_NUM(f32) = 4) so expected addresses and costs can be worked out by hand;
 * one test uses BM1680-like numbers.
 *
 * Build: gcc -std=c99 -pedantic -Wall -Wextra -Werror -O2 -I. \
 *            tests/test_runtime.c sophon_*.c -lm -o /tmp/test_runtime
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sophon.h"
#include "chip/sophon_cost.h"
#include "chip/sophon_threads.h"
#include "isa/sophon_isa.h"
#include "sophon_program.h"

#include "sophon_test.h"

/* Float arrays agree to a relative/absolute tolerance; reports the first miss. */
static int arrays_near(const float* got, const float* want, int count, float tol,
                       const char* file, int line) {
  int i;
  for (i = 0; i < count; ++i) {
    float diff = fabsf(got[i] - want[i]);
    float scale = fabsf(want[i]) > 1.0f ? fabsf(want[i]) : 1.0f;
    if (!(diff <= tol * scale) && !(got[i] == want[i])) {
      printf("%s:%d: element %d is %.9g, expected %.9g\n", file, line, i, (double)got[i],
             (double)want[i]);
      return 0;
    }
  }
  return 1;
}
#define CHECK_ARRAY_NEAR(got, want, count, tol) \
  CHECK(arrays_near((got), (want), (count), (tol), __FILE__, __LINE__))

/* Dot products of length k summed in f32 in any order, with or without fused
 * multiply-adds, are each within k * 2^-24 * sum |a_i b_i| of the exact sum, so two
 * of them differ by at most twice that; the bias and the activation add one more
 * rounding of the result. */
static int within_dot_bound(const float* got, const float* want, const float* mag, int count,
                            int k, const char* file, int line) {
  const double eps = 1.0 / 16777216.0;
  int i;
  for (i = 0; i < count; ++i) {
    const double bound = 2.0 * k * eps * mag[i] + 2.0 * eps * fabs((double)want[i]);
    if (!(fabs((double)got[i] - (double)want[i]) <= bound) && !(got[i] == want[i])) {
      printf("%s:%d: element %d is %.9g, expected %.9g (bound %.3g)\n", file, line, i,
             (double)got[i], (double)want[i], bound);
      return 0;
    }
  }
  return 1;
}

/* ------------------------------------------------------------- fixtures */

/* 4 lanes x 4 KiB, EU_NUM(f32) = 4, 4 DDR bytes per cycle. */
static sophon_chip small_chip(void) { return sophon_test_chip("test-small", 4, 4096, 16); }

static sophon_chip bm1680_chip(void) {
  sophon_chip chip;
  memset(&chip, 0, sizeof chip);
  chip.name = "bm1680";
  chip.npu_num = 64;
  chip.lmem_bytes_per_lane = 512 * 1024;
  chip.lmem_banks = 8;
  chip.eu_bytes = 256;
  chip.has_int8 = 1;
  chip.clock_hz = 244e6;
  chip.ddr_bytes_per_second = 83.2e9;
  chip.power_watts = 25.0;
  chip.gdma_latency_cycles = 32;
  chip.tiu_latency_cycles = 16;
  return chip;
}

static sophon_device* make_device(const sophon_chip* chip) {
  sophon_device* dev = NULL;
  if (sophon_device_create(chip, &dev) != SOPHON_OK) {
    printf("%s:%d: sophon_device_create failed\n", __FILE__, __LINE__);
    exit(2);
  }
  return dev;
}

static sophon_local local4(uint32_t addr, int n, int c, int h, int w, sophon_layout layout) {
  return sophon_test_local(addr, n, c, h, w, SOPHON_F32, layout);
}

/* Bump allocator over one lane: each tensor starts 64-byte aligned. */
static sophon_local alloc_local(const sophon_chip* chip, uint32_t* next, int n, int c, int h,
                                int w, sophon_layout layout) {
  sophon_local t = local4(*next, n, c, h, w, layout);
  int64_t bytes = sophon_local_lane_bytes(chip, &t);
  *next += (uint32_t)((bytes + 63) / 64 * 64);
  return t;
}

/* Contiguous NCHW global view. */
static sophon_global global_nchw(void* data, int n, int c, int h, int w) {
  sophon_global g;
  g.data = data;
  g.n = n;
  g.c = c;
  g.h = h;
  g.w = w;
  g.stride_w = 1;
  g.stride_h = w;
  g.stride_c = (int64_t)h * w;
  g.stride_n = (int64_t)c * h * w;
  g.dtype = SOPHON_F32;
  return g;
}

static sophon_status load(sophon_device* dev, const sophon_local* t, float* data) {
  sophon_global g = global_nchw(data, t->n, t->c, t->h, t->w);
  return sophon_gdma_load(dev, t, &g);
}

static sophon_status store(sophon_device* dev, float* data, const sophon_local* t) {
  sophon_global g = global_nchw(data, t->n, t->c, t->h, t->w);
  return sophon_gdma_store(dev, &g, t);
}

/* Deterministic values in [-1, 1). */
static void fill(float* data, int count, unsigned seed) {
  unsigned state = seed * 2654435761u + 12345u;
  int i;
  for (i = 0; i < count; ++i) {
    state = state * 1103515245u + 12345u;
    data[i] = (float)((state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
  }
}

static float* alloc_floats(int count) {
  float* p = (float*)calloc((size_t)count, sizeof(float));
  if (p == NULL) {
    printf("out of memory\n");
    exit(2);
  }
  return p;
}

static sophon_activation act_of(sophon_act_kind kind, float alpha, float lo, float hi) {
  sophon_activation a;
  memset(&a, 0, sizeof a);
  a.kind = kind;
  a.alpha = alpha;
  a.lo = lo;
  a.hi = hi;
  return a;
}

static float ref_act(const sophon_activation* act, float x) {
  if (act == NULL) return x;
  switch (act->kind) {
    case SOPHON_ACT_RELU: return x < 0.0f ? 0.0f : x;
    case SOPHON_ACT_CLIP: return fminf(fmaxf(x, act->lo), act->hi);
    case SOPHON_ACT_LEAKY_RELU: return x >= 0.0f ? x : act->alpha * x;
    case SOPHON_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case SOPHON_ACT_TANH: return tanhf(x);
    default: return x;
  }
}

/* -------------------------------------------------------- naive references */

/* The header's conv formula on NCHW host arrays; weight is [OC][IC/groups][KH][KW]. */
/* Also writes mag[i] = sum_k |in_k * weight_k| over output i's taps, the scale of
 * the f32 rounding bound (see within_dot_bound). */
static void conv_ref(const float* in, int N, int IC, int H, int W, const float* weight,
                     const float* bias, int OC, const sophon_conv_params* p, float* out,
                     float* mag, int OH, int OW) {
  int icg = IC / p->groups, ocg = OC / p->groups;
  int n, oc, oy, ox, ic, ky, kx;
  for (n = 0; n < N; ++n)
    for (oc = 0; oc < OC; ++oc)
      for (oy = 0; oy < OH; ++oy)
        for (ox = 0; ox < OW; ++ox) {
          int g = oc / ocg;
          float acc = 0.0f;
          double magnitude = 0.0;
          for (ic = 0; ic < icg; ++ic)
            for (ky = 0; ky < p->kernel_h; ++ky)
              for (kx = 0; kx < p->kernel_w; ++kx) {
                int iy = oy * p->stride_h - p->pad_top + ky * p->dilation_h;
                int ix = ox * p->stride_w - p->pad_left + kx * p->dilation_w;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                {
                  const float product = in[((n * IC + g * icg + ic) * H + iy) * W + ix] *
                                        weight[((oc * icg + ic) * p->kernel_h + ky) * p->kernel_w + kx];
                  acc += product;
                  magnitude += fabs((double)product);
                }
              }
          out[((n * OC + oc) * OH + oy) * OW + ox] =
              ref_act(&p->act, acc + (bias != NULL ? bias[oc] : 0.0f));
          mag[((n * OC + oc) * OH + oy) * OW + ox] = (float)magnitude;
        }
}

/* Pool on NCHW host arrays, written the slow obvious way. */
static void pool_ref(const float* in, int N, int C, int H, int W, const sophon_pool_params* p,
                     float* out, int OH, int OW) {
  int n, c, oy, ox, ky, kx;
  for (n = 0; n < N; ++n)
    for (c = 0; c < C; ++c)
      for (oy = 0; oy < OH; ++oy)
        for (ox = 0; ox < OW; ++ox) {
          float max_v = -INFINITY, sum = 0.0f;
          int real = 0, padded = 0;
          for (ky = 0; ky < p->kernel_h; ++ky)
            for (kx = 0; kx < p->kernel_w; ++kx) {
              int iy = oy * p->stride_h - p->pad_top + ky * p->dilation_h;
              int ix = ox * p->stride_w - p->pad_left + kx * p->dilation_w;
              if (iy < H + p->pad_bottom && ix < W + p->pad_right) ++padded;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              ++real;
              sum += in[((n * C + c) * H + iy) * W + ix];
              if (in[((n * C + c) * H + iy) * W + ix] > max_v)
                max_v = in[((n * C + c) * H + iy) * W + ix];
            }
          if (p->kind == SOPHON_POOL_MAX) {
            out[((n * C + c) * OH + oy) * OW + ox] = real > 0 ? max_v : -FLT_MAX;
          } else {
            int divisor = p->count_include_pad ? padded : real;
            out[((n * C + c) * OH + oy) * OW + ox] = divisor > 0 ? sum / (float)divisor : 0.0f;
          }
        }
}

static sophon_conv_params conv_params(int k_h, int k_w, int s, int pad, int d, int groups) {
  sophon_conv_params p;
  memset(&p, 0, sizeof p);
  p.kernel_h = k_h;
  p.kernel_w = k_w;
  p.stride_h = p.stride_w = s;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = pad;
  p.dilation_h = p.dilation_w = d;
  p.groups = groups;
  p.act.kind = SOPHON_ACT_NONE;
  return p;
}

static sophon_pool_params pool_params(sophon_pool_kind kind, int k, int s, int pad,
                                      int include_pad) {
  sophon_pool_params p;
  memset(&p, 0, sizeof p);
  p.kind = kind;
  p.kernel_h = p.kernel_w = k;
  p.stride_h = p.stride_w = s;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = pad;
  p.dilation_h = p.dilation_w = 1;
  p.count_include_pad = include_pad;
  return p;
}

static int conv_out(int in, int pa, int pb, int d, int k, int s) {
  return (in + pa + pb - d * (k - 1) - 1) / s + 1;
}

/* Runs one conv through the device and compares with conv_ref. */
static void run_conv_case(const sophon_chip* chip, int N, int IC, int H, int W, int OC,
                          const sophon_conv_params* p, int with_bias, const char* what) {
  sophon_device* dev = make_device(chip);
  int icg = IC / p->groups;
  int OH = conv_out(H, p->pad_top, p->pad_bottom, p->dilation_h, p->kernel_h, p->stride_h);
  int OW = conv_out(W, p->pad_left, p->pad_right, p->dilation_w, p->kernel_w, p->stride_w);
  int kk = p->kernel_h * p->kernel_w;
  float* in = alloc_floats(N * IC * H * W);
  float* weight = alloc_floats(OC * icg * kk);
  float* bias = alloc_floats(OC);
  float* got = alloc_floats(N * OC * OH * OW);
  float* want = alloc_floats(N * OC * OH * OW);
  float* mag = alloc_floats(N * OC * OH * OW);
  uint32_t next = 0;
  sophon_local in_t = alloc_local(chip, &next, N, IC, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = alloc_local(chip, &next, N, OC, OH, OW, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_t = alloc_local(chip, &next, 1, OC, icg, kk, SOPHON_LAYOUT_COMPACT);
  sophon_local b_t = alloc_local(chip, &next, 1, OC, 1, 1, SOPHON_LAYOUT_COMPACT);
  int ok;

  fill(in, N * IC * H * W, 1);
  fill(weight, OC * icg * kk, 2);
  fill(bias, OC, 3);
  conv_ref(in, N, IC, H, W, weight, with_bias ? bias : NULL, OC, p, want, mag, OH, OW);

  CHECK_OK(dev, load(dev, &in_t, in));
  CHECK_OK(dev, load(dev, &w_t, weight));
  CHECK_OK(dev, load(dev, &b_t, bias));
  CHECK_OK(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, with_bias ? &b_t : NULL, p));
  CHECK_OK(dev, store(dev, got, &out_t));
  ok = within_dot_bound(got, want, mag, N * OC * OH * OW, icg * kk, __FILE__, __LINE__);
  if (!ok) printf("  (conv case: %s)\n", what);
  CHECK(ok);
  CHECK(sophon_device_counters(dev)->macs ==
        (uint64_t)N * OC * OH * OW * icg * p->kernel_h * p->kernel_w);

  free(in);
  free(weight);
  free(bias);
  free(got);
  free(want);
  free(mag);
  sophon_device_destroy(dev);
}

/* ------------------------------------------------------------------ tests */

static void test_names_and_sizes(void) {
  CHECK(strcmp(sophon_status_name(SOPHON_OK), "SOPHON_OK") == 0);
  CHECK(strcmp(sophon_status_name(SOPHON_ERR_BOUNDS), "SOPHON_ERR_BOUNDS") == 0);
  CHECK(sophon_dtype_size(SOPHON_F32) == 4);
  CHECK(sophon_dtype_size(SOPHON_I8) == 1);
  CHECK(sophon_dtype_size(SOPHON_I32) == 4);
  CHECK(sophon_dtype_size((sophon_dtype)42) == 0);
}

static void test_device_create(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = NULL;
  char name[16];
  strcpy(name, "temp-name");
  chip.name = name;
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_OK);
  name[0] = 'X'; /* the device keeps its own copy */
  CHECK(strcmp(sophon_device_chip(dev)->name, "temp-name") == 0);
  CHECK(sophon_device_chip(dev)->npu_num == 4);
  CHECK(strcmp(sophon_device_error(dev), "") == 0);
  CHECK(sophon_device_counters(dev)->tiu_instructions == 0);
  sophon_device_destroy(dev);

  chip = small_chip();
  chip.npu_num = 0;
  dev = (sophon_device*)&chip; /* must be reset to NULL */
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_ERR_ARGUMENT);
  CHECK(dev == NULL);
  chip = small_chip();
  chip.lmem_bytes_per_lane = 4094; /* lanes would misalign f32 */
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_ERR_ARGUMENT);
  chip = small_chip();
  chip.lmem_bytes_per_lane = INT64_MAX - 3; /* rounding it up to the lane pitch would overflow */
  CHECK(sophon_device_create(&chip, &dev) == SOPHON_ERR_ARGUMENT);
  CHECK(sophon_device_create(NULL, &dev) == SOPHON_ERR_ARGUMENT);
  CHECK(sophon_device_create(&chip, NULL) == SOPHON_ERR_ARGUMENT);
}

static void test_layout_functions(void) {
  sophon_chip chip = small_chip();
  sophon_local t = local4(0, 2, 6, 3, 3, SOPHON_LAYOUT_ALIGNED);
  /* ceil(6/4) = 2 channels per lane; h*w = 9 rounded up to EU_NUM 4 = 12 */
  CHECK(sophon_local_channel_stride(&chip, &t) == 12);
  CHECK(sophon_local_lane_bytes(&chip, &t) == 2 * 2 * 12 * 4);
  t.layout = SOPHON_LAYOUT_COMPACT;
  CHECK(sophon_local_channel_stride(&chip, &t) == 9);
  CHECK(sophon_local_lane_bytes(&chip, &t) == 2 * 2 * 9 * 4);
  t.dtype = SOPHON_I8;
  t.layout = SOPHON_LAYOUT_ALIGNED; /* EU_NUM(i8) = 16 */
  CHECK(sophon_local_channel_stride(&chip, &t) == 16);
  CHECK(sophon_local_lane_bytes(&chip, &t) == 2 * 2 * 16);
  t.c = 0;
  CHECK(sophon_local_lane_bytes(&chip, &t) == 0);
  CHECK(sophon_local_lane_bytes(&chip, NULL) == 0);
  CHECK(sophon_eu_num(&chip, SOPHON_F32) == 4);
  CHECK(sophon_eu_num(&chip, SOPHON_I8) == 16);
}

/* Channel c of element (n, c, h, w) lands in lane c % 4 at the documented address. */
static void check_lane_layout(sophon_layout layout, int64_t cstride) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 2, C = 6, H = 3, W = 3 };
  float data[N * C * H * W];
  const uint32_t addr = 64;
  sophon_local t = local4(addr, N, C, H, W, layout);
  int n, c, h, w, bad = 0;
  for (n = 0; n < N * C * H * W; ++n) data[n] = (float)n;
  CHECK(sophon_local_channel_stride(&chip, &t) == cstride);
  CHECK_OK(dev, load(dev, &t, data));
  for (n = 0; n < N; ++n)
    for (c = 0; c < C; ++c)
      for (h = 0; h < H; ++h)
        for (w = 0; w < W; ++w) {
          float v = -1.0f;
          uint32_t at =
              addr + (uint32_t)(((n * 2 + c / 4) * cstride + h * W + w) * 4);
          if (sophon_lmem_read(dev, c % 4, at, &v, sizeof v) != SOPHON_OK ||
              v != (float)(((n * C + c) * H + h) * W + w))
            ++bad;
        }
  CHECK(bad == 0);
  /* lane 3 holds channels 3 and 7-ish: channel 7 does not exist, so slot 1 of lane 3
     stays zero (C = 6 uses lanes 0,1 in slot 1) */
  {
    float v = 123.0f;
    CHECK_OK(dev, sophon_lmem_read(dev, 3, addr + (uint32_t)(cstride * 4), &v, sizeof v));
    CHECK(v == 0.0f);
  }
  sophon_device_destroy(dev);
}

static void test_lane_layout(void) {
  check_lane_layout(SOPHON_LAYOUT_ALIGNED, 12);
  check_lane_layout(SOPHON_LAYOUT_COMPACT, 9);
}

static void test_gdma_roundtrip_nchw(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 2, C = 5, H = 3, W = 4, COUNT = N * C * H * W };
  float src[COUNT], dst[COUNT];
  sophon_local t = local4(128, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
  fill(src, COUNT, 7);
  memset(dst, 0, sizeof dst);
  CHECK_OK(dev, load(dev, &t, src));
  CHECK_OK(dev, store(dev, dst, &t));
  CHECK(memcmp(src, dst, sizeof src) == 0);
  sophon_device_destroy(dev);
}

static void test_gdma_roundtrip_nhwc(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 2, C = 5, H = 3, W = 4, COUNT = N * C * H * W };
  float nhwc[COUNT], back[COUNT], nchw[COUNT];
  sophon_local t = local4(0, N, C, H, W, SOPHON_LAYOUT_COMPACT);
  sophon_global g;
  int n, c, h, w, bad = 0;
  fill(nhwc, COUNT, 9);
  g.data = nhwc;
  g.n = N;
  g.c = C;
  g.h = H;
  g.w = W;
  g.stride_n = H * W * C;
  g.stride_c = 1;
  g.stride_h = W * C;
  g.stride_w = C;
  g.dtype = SOPHON_F32;
  CHECK_OK(dev, sophon_gdma_load(dev, &t, &g));
  /* NHWC -> LMEM -> NCHW is a transpose */
  CHECK_OK(dev, store(dev, nchw, &t));
  for (n = 0; n < N; ++n)
    for (c = 0; c < C; ++c)
      for (h = 0; h < H; ++h)
        for (w = 0; w < W; ++w)
          if (nchw[((n * C + c) * H + h) * W + w] != nhwc[((n * H + h) * W + w) * C + c]) ++bad;
  CHECK(bad == 0);
  /* and back to NHWC */
  memset(back, 0, sizeof back);
  g.data = back;
  CHECK_OK(dev, sophon_gdma_store(dev, &g, &t));
  CHECK(memcmp(back, nhwc, sizeof back) == 0);
  sophon_device_destroy(dev);
}

static void test_gdma_broadcast_load(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 2, C = 6, H = 2, W = 3, COUNT = N * C * H * W };
  float vec[C] = {1, 2, 3, 4, 5, 6};
  float out[COUNT];
  sophon_local t = local4(0, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_global g;
  int i, bad = 0;
  g.data = vec;
  g.n = N;
  g.c = C;
  g.h = H;
  g.w = W;
  g.stride_n = 0;
  g.stride_c = 1;
  g.stride_h = 0;
  g.stride_w = 0;
  g.dtype = SOPHON_F32;
  CHECK_OK(dev, sophon_gdma_load(dev, &t, &g));
  CHECK_OK(dev, store(dev, out, &t));
  for (i = 0; i < COUNT; ++i)
    if (out[i] != vec[(i / (H * W)) % C]) ++bad;
  CHECK(bad == 0);
  /* bytes count the local tensor, not the 6 floats read */
  CHECK(sophon_device_counters(dev)->bytes_loaded == COUNT * 4);
  /* a zero stride on store would write several elements to one place */
  CHECK_STATUS(dev, sophon_gdma_store(dev, &g, &t), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "gdma_store: dst strides");
  sophon_device_destroy(dev);
}

static void test_gdma_int8(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  int8_t src[2 * 5 * 3], dst[2 * 5 * 3];
  sophon_local t = local4(3, 2, 5, 3, 1, SOPHON_LAYOUT_ALIGNED); /* odd addr is fine for i8 */
  sophon_global g;
  int8_t v = 0;
  int i;
  for (i = 0; i < 30; ++i) src[i] = (int8_t)(i - 15);
  g.data = src;
  g.n = 2;
  g.c = 5;
  g.h = 3;
  g.w = 1;
  g.stride_n = 15;
  g.stride_c = 3;
  g.stride_h = 1;
  g.stride_w = 1;
  g.dtype = SOPHON_I8;
  t.dtype = SOPHON_I8;
  CHECK_OK(dev, sophon_gdma_load(dev, &t, &g));
  /* element (1, 4, 2, 0): lane 0, slot 1*2 + 1 = 3, cstride 16 -> byte 3 + 3*16 + 2 */
  CHECK_OK(dev, sophon_lmem_read(dev, 0, 3 + 3 * 16 + 2, &v, 1));
  CHECK(v == src[15 + 12 + 2]);
  g.data = dst;
  CHECK_OK(dev, sophon_gdma_store(dev, &g, &t));
  CHECK(memcmp(src, dst, sizeof src) == 0);
  CHECK(sophon_device_counters(dev)->bytes_loaded == 30);
  sophon_device_destroy(dev);
}

/* ------------------------------------------------- GDMA DDR to DDR (S2S) */

/* A 4-D DDR view of f32 data with the given element strides. */
static sophon_global ddr_view(void* data, int n, int c, int h, int w, int64_t sn, int64_t sc,
                          int64_t sh, int64_t sw) {
  sophon_global g;
  g.data = data;
  g.n = n;
  g.c = c;
  g.h = h;
  g.w = w;
  g.stride_n = sn;
  g.stride_c = sc;
  g.stride_h = sh;
  g.stride_w = sw;
  g.dtype = SOPHON_F32;
  return g;
}

/* NCHW (2, 3, 5, 7) -> NHWC: the dst view walks (n, c, h, w) with NHWC strides. */
static void test_copy_transpose(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 2, C = 3, H = 5, W = 7, COUNT = N * C * H * W };
  float src[COUNT], dst[COUNT];
  int n, c, h, w, bad = 0;
  sophon_global s = ddr_view(src, N, C, H, W, C * H * W, H * W, W, 1);
  sophon_global d = ddr_view(dst, N, C, H, W, H * W * C, 1, W * C, C);
  const sophon_counters* k = sophon_device_counters(dev);
  for (n = 0; n < COUNT; ++n) src[n] = (float)n * 0.5f - 3.0f;
  memset(dst, 0, sizeof dst);
  CHECK_OK(dev, sophon_gdma_copy(dev, &d, &s));
  for (n = 0; n < N; ++n)
    for (c = 0; c < C; ++c)
      for (h = 0; h < H; ++h)
        for (w = 0; w < W; ++w)
          if (dst[((n * H + h) * W + w) * C + c] != src[((n * C + c) * H + h) * W + w]) ++bad;
  CHECK(bad == 0);
  /* one instruction; 840 bytes read and written: 10 + ceil(1680 / 4) cycles */
  CHECK_EQ_INT(k->gdma_instructions, 1);
  CHECK_EQ_INT(k->bytes_loaded, COUNT * 4);
  CHECK_EQ_INT(k->bytes_stored, COUNT * 4);
  CHECK_EQ_INT(k->gdma_cycles, 10 + 420);
  {
    /* the cost model prices both DDR sides in bursts of their contiguous runs */
    const int32_t dims[4] = {N, C, H, W}, row[4] = {1, 1, 1, 8};
    const int64_t dst_strides[4] = {H * W * C, 1, W * C, C}, src_strides[4] = {C * H * W, H * W, W, 1};
    const int64_t every_other[4] = {16, 16, 16, 2}, packed[4] = {8, 8, 8, 1};
    CHECK_EQ_INT(sophon_cost_gdma_copy(&chip, dims, SOPHON_F32, dst_strides, src_strides), 10 + 420);
    chip.gdma_burst_bytes = 64;
    /* 8 floats read one per 64-byte burst (512 B) and written in one burst (64 B) */
    CHECK_EQ_INT(sophon_cost_gdma_copy(&chip, row, SOPHON_F32, packed, every_other), 10 + 576 / 4);
    CHECK_EQ_INT(sophon_cost_gdma_fill(&chip, row, SOPHON_F32, packed), 10 + 64 / 4);
    CHECK_EQ_INT(sophon_cost_gdma_copy(NULL, row, SOPHON_F32, packed, packed), 0);
  }
  CHECK_EQ_INT(k->tiu_instructions, 0);
  sophon_device_destroy(dev);
}

/* A row slice with a negative step read from the end, and a broadcast source. */
static void test_copy_negative_and_broadcast(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float src[4 * 9], dst[4 * 5], vec[3], wide[2 * 3 * 4];
  int c, h, i, bad = 0;
  /* src (1, 4, 9, 1); dst = src[:, :, 8:-10:-2] -> (1, 4, 5, 1) */
  sophon_global s = ddr_view(src + 8, 1, 4, 5, 1, 36, 9, -2, 1);
  sophon_global d = ddr_view(dst, 1, 4, 5, 1, 20, 5, 1, 1);
  for (i = 0; i < 36; ++i) src[i] = (float)i;
  CHECK_OK(dev, sophon_gdma_copy(dev, &d, &s));
  for (c = 0; c < 4; ++c)
    for (h = 0; h < 5; ++h)
      if (dst[c * 5 + h] != src[c * 9 + 8 - 2 * h]) ++bad;
  CHECK(bad == 0);
  /* (3,) broadcast to (2, 3, 4) along n and w */
  vec[0] = 1.0f;
  vec[1] = -2.0f;
  vec[2] = 0.25f;
  s = ddr_view(vec, 2, 3, 1, 4, 0, 1, 0, 0);
  d = ddr_view(wide, 2, 3, 1, 4, 12, 4, 4, 1);
  CHECK_OK(dev, sophon_gdma_copy(dev, &d, &s));
  bad = 0;
  for (i = 0; i < 24; ++i)
    if (wide[i] != vec[(i / 4) % 3]) ++bad;
  CHECK(bad == 0);
  sophon_device_destroy(dev);
}

/* The border of a pad: fill a strided slab, leave the rest alone. */
static void test_fill(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float plane[5 * 6];
  int8_t bytes[8];
  int32_t words[3];
  int h, w, bad = 0;
  /* rows 0 and 4 of a (5, 6) plane: (1, 1, 2, 6) with a row stride of 4 rows */
  sophon_global d = ddr_view(plane, 1, 1, 2, 6, 30, 30, 24, 1);
  const sophon_counters* k = sophon_device_counters(dev);
  for (h = 0; h < 30; ++h) plane[h] = 7.0f;
  CHECK_OK(dev, sophon_gdma_fill(dev, &d, -1.5));
  for (h = 0; h < 5; ++h)
    for (w = 0; w < 6; ++w)
      if (plane[h * 6 + w] != ((h == 0 || h == 4) ? -1.5f : 7.0f)) ++bad;
  CHECK(bad == 0);
  /* 48 bytes written: 10 + 12 cycles, nothing read */
  CHECK_EQ_INT(k->gdma_instructions, 1);
  CHECK_EQ_INT(k->bytes_stored, 48);
  CHECK_EQ_INT(k->bytes_loaded, 0);
  CHECK_EQ_INT(k->gdma_cycles, 10 + 12);
  /* int8 and int32 fills; a value the dtype cannot hold is an error */
  d = ddr_view(bytes, 1, 1, 1, 8, 8, 8, 8, 1);
  d.dtype = SOPHON_I8;
  CHECK_OK(dev, sophon_gdma_fill(dev, &d, -128.0));
  CHECK(bytes[0] == -128 && bytes[7] == -128);
  CHECK_STATUS(dev, sophon_gdma_fill(dev, &d, 0.5), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "not an int8 value");
  d = ddr_view(words, 1, 1, 1, 3, 3, 3, 3, 1);
  d.dtype = SOPHON_I32;
  CHECK_OK(dev, sophon_gdma_fill(dev, &d, 123456.0));
  CHECK(words[0] == 123456 && words[2] == 123456);
  CHECK_STATUS(dev, sophon_gdma_fill(dev, &d, 3e10), SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

static void test_copy_fill_argument_errors(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float a[64], b[64];
  sophon_global s = ddr_view(a, 1, 2, 4, 4, 32, 16, 4, 1);
  sophon_global d = ddr_view(b, 1, 2, 4, 4, 32, 16, 4, 1);
  sophon_global bad;
  memset(a, 0, sizeof a);
  CHECK_STATUS(dev, sophon_gdma_copy(dev, NULL, &s), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "gdma_copy: dst is NULL");
  bad = d;
  bad.data = NULL;
  CHECK_STATUS(dev, sophon_gdma_copy(dev, &bad, &s), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "dst data is NULL");
  bad = d;
  bad.h = 0;
  CHECK_STATUS(dev, sophon_gdma_copy(dev, &bad, &s), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "is not positive");
  bad = d;
  bad.w = 3;
  CHECK_STATUS(dev, sophon_gdma_copy(dev, &bad, &s), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "differs from src shape");
  bad = d;
  bad.dtype = SOPHON_I32;
  CHECK_STATUS(dev, sophon_gdma_copy(dev, &bad, &s), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "dtype");
  /* a dst writing one element twice (zero stride, or strides that collide) */
  bad = d;
  bad.stride_h = 0;
  CHECK_STATUS(dev, sophon_gdma_copy(dev, &bad, &s), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "write some element twice");
  bad = d;
  bad.stride_c = 2;
  CHECK_STATUS(dev, sophon_gdma_fill(dev, &bad, 0.0), SOPHON_ERR_ARGUMENT);
  /* overlapping views: the copy would read what it writes */
  bad = ddr_view(a + 8, 1, 2, 4, 4, 32, 16, 4, 1);
  CHECK_STATUS(dev, sophon_gdma_copy(dev, &bad, &s), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "overlap");
  /* disjoint halves of one buffer are fine */
  bad = ddr_view(a + 32, 1, 2, 4, 2, 32, 8, 2, 1);
  s = ddr_view(a, 1, 2, 4, 2, 32, 8, 2, 1);
  CHECK_OK(dev, sophon_gdma_copy(dev, &bad, &s));
  CHECK(sophon_gdma_copy(NULL, &d, &s) == SOPHON_ERR_ARGUMENT);
  CHECK_EQ_INT(sophon_device_counters(dev)->gdma_instructions, 1);
  sophon_device_destroy(dev);
}

static void test_bounds(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float data[4 * 16 * 16];
  float probe = 1.0f;
  /* (1,4,16,16) ALIGNED: one channel per lane, 256 floats = 1024 bytes per lane */
  sophon_local t = local4(3584, 1, 4, 16, 16, SOPHON_LAYOUT_ALIGNED);
  uint8_t zeros[512], lane_bytes[512];
  fill(data, 4 * 16 * 16, 4);
  CHECK_STATUS(dev, load(dev, &t, data), SOPHON_ERR_BOUNDS);
  CHECK_ERROR_HAS(dev, "gdma_load: dst needs 1024 bytes per lane at addr 3584, lane holds 4096");
  /* nothing was written, nothing was counted */
  memset(zeros, 0, sizeof zeros);
  CHECK_OK(dev, sophon_lmem_read(dev, 0, 3584, lane_bytes, sizeof lane_bytes));
  CHECK(memcmp(lane_bytes, zeros, sizeof zeros) == 0);
  CHECK(sophon_device_counters(dev)->gdma_instructions == 0);
  CHECK(sophon_device_counters(dev)->bytes_loaded == 0);
  /* exactly at the end is fine */
  t.addr = 3072;
  CHECK_OK(dev, load(dev, &t, data));
  CHECK(sophon_device_counters(dev)->lmem_peak_bytes == 4096);
  /* TIU operands too */
  {
    sophon_local out = local4(3584, 1, 4, 16, 16, SOPHON_LAYOUT_ALIGNED);
    sophon_activation relu = act_of(SOPHON_ACT_RELU, 0, 0, 0);
    CHECK_STATUS(dev, sophon_tiu_activation(dev, &out, &t, &relu), SOPHON_ERR_BOUNDS);
    CHECK_ERROR_HAS(dev, "tiu_activation: out needs 1024 bytes per lane at addr 3584");
  }
  /* raw access */
  CHECK_STATUS(dev, sophon_lmem_read(dev, 0, 4093, &probe, 4), SOPHON_ERR_BOUNDS);
  CHECK_STATUS(dev, sophon_lmem_write(dev, 4, 0, &probe, 4), SOPHON_ERR_BOUNDS);
  CHECK_ERROR_HAS(dev, "lmem_write: lane 4");
  CHECK_OK(dev, sophon_lmem_write(dev, 3, 4092, &probe, 4));
  /* misaligned f32 address */
  t.addr = 2;
  CHECK_STATUS(dev, load(dev, &t, data), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "not a multiple of its element size 4");
  sophon_device_destroy(dev);
}

static void test_conv_golden(void) {
  /* 3x3 input 1..9, 2x2 ones kernel, bias -13, relu: sums 12 16 24 28 -> 0 3 11 15 */
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  float weight[4] = {1, 1, 1, 1};
  float bias[1] = {-13};
  float out[4];
  const float want[4] = {0, 3, 11, 15};
  sophon_local in_t = local4(0, 1, 1, 3, 3, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = local4(256, 1, 1, 2, 2, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_t = local4(512, 1, 1, 1, 4, SOPHON_LAYOUT_COMPACT);
  sophon_local b_t = local4(768, 1, 1, 1, 1, SOPHON_LAYOUT_COMPACT);
  sophon_conv_params p = conv_params(2, 2, 1, 0, 1, 1);
  p.act.kind = SOPHON_ACT_RELU;
  CHECK_OK(dev, load(dev, &in_t, in));
  CHECK_OK(dev, load(dev, &w_t, weight));
  CHECK_OK(dev, load(dev, &b_t, bias));
  CHECK_OK(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, &b_t, &p));
  CHECK_OK(dev, store(dev, out, &out_t));
  CHECK(memcmp(out, want, sizeof want) == 0);

  /* stride 2, asymmetric pad (top 1, left 0, bottom 0, right 1), 2x2 kernel:
     padded rows -1..2, cols 0..3 -> windows at (-1,0),(-1,2),(1,0),(1,2)
     = [1+2, 3, 4+5+7+8, 6+9] = [3, 3, 24, 15] (+ bias -13, no act) */
  {
    const float want2[4] = {-10, -10, 11, 2};
    p.stride_h = p.stride_w = 2;
    p.pad_top = 1;
    p.pad_left = 0;
    p.pad_bottom = 0;
    p.pad_right = 1;
    p.act.kind = SOPHON_ACT_NONE;
    CHECK_OK(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, &b_t, &p));
    CHECK_OK(dev, store(dev, out, &out_t));
    CHECK(memcmp(out, want2, sizeof want2) == 0);
  }
  sophon_device_destroy(dev);
}

static void test_conv_cases(void) {
  sophon_chip chip = small_chip();
  sophon_conv_params p;

  p = conv_params(3, 3, 1, 1, 1, 1);
  p.act.kind = SOPHON_ACT_RELU;
  run_conv_case(&chip, 2, 5, 6, 6, 6, &p, 1, "3x3 pad 1, 5->6 channels, relu");

  p = conv_params(3, 3, 2, 1, 1, 1);
  run_conv_case(&chip, 1, 3, 7, 7, 5, &p, 1, "stride 2");

  p = conv_params(3, 2, 1, 0, 1, 1);
  p.pad_top = 0;
  p.pad_left = 1;
  p.pad_bottom = 2;
  p.pad_right = 0;
  run_conv_case(&chip, 1, 4, 5, 6, 3, &p, 0, "asymmetric padding, 3x2 kernel");

  p = conv_params(3, 3, 1, 2, 2, 1);
  run_conv_case(&chip, 1, 2, 7, 7, 4, &p, 1, "dilation 2");

  p = conv_params(3, 3, 1, 1, 1, 2);
  p.act = act_of(SOPHON_ACT_LEAKY_RELU, 0.1f, 0, 0);
  run_conv_case(&chip, 2, 6, 5, 5, 4, &p, 1, "groups 2");

  p = conv_params(3, 3, 2, 1, 1, 6);
  p.act = act_of(SOPHON_ACT_CLIP, 0, -0.5f, 0.5f);
  run_conv_case(&chip, 1, 6, 6, 6, 6, &p, 1, "depthwise stride 2, clip");

  p = conv_params(1, 1, 1, 0, 1, 1);
  run_conv_case(&chip, 1, 9, 4, 4, 7, &p, 1, "1x1 over 3 slots");
}

static void test_fc(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { M = 3, K = 10, N = 6 };
  float in[M * K], weight[N * K], bias[N], got[M * N], want[M * N];
  sophon_activation leaky = act_of(SOPHON_ACT_LEAKY_RELU, 0.25f, 0, 0);
  uint32_t next = 0;
  sophon_local in_t = alloc_local(&chip, &next, M, K, 1, 1, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_t = alloc_local(&chip, &next, 1, N, K, 1, SOPHON_LAYOUT_COMPACT);
  sophon_local b_t = alloc_local(&chip, &next, 1, N, 1, 1, SOPHON_LAYOUT_COMPACT);
  sophon_local out_t = alloc_local(&chip, &next, M, N, 1, 1, SOPHON_LAYOUT_ALIGNED);
  int m, j, k;
  fill(in, M * K, 11);
  fill(weight, N * K, 12);
  fill(bias, N, 13);
  for (m = 0; m < M; ++m)
    for (j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (k = 0; k < K; ++k) acc += in[m * K + k] * weight[j * K + k];
      want[m * N + j] = ref_act(&leaky, acc + bias[j]);
    }
  CHECK_OK(dev, load(dev, &in_t, in));
  CHECK_OK(dev, load(dev, &w_t, weight));
  CHECK_OK(dev, load(dev, &b_t, bias));
  CHECK_OK(dev, sophon_tiu_fc(dev, &out_t, &in_t, &w_t, &b_t, &leaky));
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK_ARRAY_NEAR(got, want, M * N, 1e-6f);
  CHECK(sophon_device_counters(dev)->macs == M * N * K);

  /* by hand: in [1, 2], weight [[1, 1], [2, -1]], bias [0.5, 0], no act -> [3.5, 0] */
  {
    float in2[2] = {1, 2}, w2[4] = {1, 1, 2, -1}, b2[2] = {0.5f, 0}, out2[2];
    sophon_local i2 = local4(0, 1, 2, 1, 1, SOPHON_LAYOUT_COMPACT);
    sophon_local wt2 = local4(64, 1, 2, 2, 1, SOPHON_LAYOUT_COMPACT);
    sophon_local bt2 = local4(128, 1, 2, 1, 1, SOPHON_LAYOUT_COMPACT);
    sophon_local o2 = local4(192, 1, 2, 1, 1, SOPHON_LAYOUT_COMPACT);
    CHECK_OK(dev, load(dev, &i2, in2));
    CHECK_OK(dev, load(dev, &wt2, w2));
    CHECK_OK(dev, load(dev, &bt2, b2));
    CHECK_OK(dev, sophon_tiu_fc(dev, &o2, &i2, &wt2, &bt2, NULL));
    CHECK_OK(dev, store(dev, out2, &o2));
    CHECK(out2[0] == 3.5f && out2[1] == 0.0f);
  }
  sophon_device_destroy(dev);
}

/* Runs pool on a 1x1 input and returns the output through `out`. */
static void run_pool(sophon_device* dev, const float* in, int H, int W,
                     const sophon_pool_params* p, float* out, int OH, int OW) {
  sophon_local in_t = local4(0, 1, 1, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = local4(1024, 1, 1, OH, OW, SOPHON_LAYOUT_ALIGNED);
  CHECK_OK(dev, load(dev, &in_t, (float*)in));
  CHECK_OK(dev, sophon_tiu_pool2d(dev, &out_t, &in_t, p));
  CHECK_OK(dev, store(dev, out, &out_t));
}

static void test_max_pool(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  const float in[16] = {1, 5, 2, 0, 3, 4, -1, 7, -2, -3, -4, -5, 9, 8, -6, 6};
  float out[9];
  const float want[4] = {5, 7, 9, 6};
  sophon_pool_params p = pool_params(SOPHON_POOL_MAX, 2, 2, 0, 0);
  run_pool(dev, in, 4, 4, &p, out, 2, 2);
  CHECK(memcmp(out, want, sizeof want) == 0);

  /* ceil mode with padding: 3x3 input 1..9, k2 s2 pad 1 -> 3x3 (floor 2);
     the last row/column windows hold only bottom/right padding -> -FLT_MAX */
  {
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float want3[9] = {1, 3, -FLT_MAX, 7, 9, -FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX};
    p = pool_params(SOPHON_POOL_MAX, 2, 2, 1, 0);
    run_pool(dev, x, 3, 3, &p, out, 3, 3);
    CHECK(memcmp(out, want3, sizeof want3) == 0);
  }
  /* many channels, padding, dilation: compare with the naive loop */
  {
    enum { N = 2, C = 6, H = 7, W = 6 };
    float src[N * C * H * W], got[N * C * 7 * 8], ref[N * C * 7 * 8];
    uint32_t next = 0;
    sophon_local in_t, out_t;
    int OH, OW;
    p = pool_params(SOPHON_POOL_MAX, 3, 1, 2, 0);
    p.dilation_h = 2;
    OH = conv_out(H, 2, 2, 2, 3, 1);
    OW = conv_out(W, 2, 2, 1, 3, 1);
    in_t = alloc_local(&chip, &next, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
    out_t = alloc_local(&chip, &next, N, C, OH, OW, SOPHON_LAYOUT_COMPACT);
    fill(src, N * C * H * W, 21);
    pool_ref(src, N, C, H, W, &p, ref, OH, OW);
    CHECK_OK(dev, load(dev, &in_t, src));
    CHECK_OK(dev, sophon_tiu_pool2d(dev, &out_t, &in_t, &p));
    CHECK_OK(dev, store(dev, got, &out_t));
    CHECK(memcmp(got, ref, sizeof(float) * (size_t)(N * C * OH * OW)) == 0);
  }
  sophon_device_destroy(dev);
}

static void test_avg_pool(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  float out[9];
  sophon_pool_params p;

  /* k3 s1 pad 1 on 3x3: corner has 4 real taps summing 12, centre 9 taps summing 45 */
  p = pool_params(SOPHON_POOL_AVG, 3, 1, 1, 1);
  run_pool(dev, x, 3, 3, &p, out, 3, 3);
  CHECK(fabsf(out[0] - 12.0f / 9.0f) < 1e-6f);
  CHECK(fabsf(out[4] - 5.0f) < 1e-6f);
  CHECK(fabsf(out[1] - 21.0f / 9.0f) < 1e-6f); /* 1+2+3+4+5+6 */
  p.count_include_pad = 0;
  run_pool(dev, x, 3, 3, &p, out, 3, 3);
  CHECK(fabsf(out[0] - 3.0f) < 1e-6f);
  CHECK(fabsf(out[4] - 5.0f) < 1e-6f);
  CHECK(fabsf(out[1] - 3.5f) < 1e-6f);

  /* ceil mode: k2 s2 pad 1 on 3x3 -> 3x3. Row windows start at -1, 1, 3: rows in the
     padded input (-1..3) per window are 2, 2, 1; real rows 1, 2, 0 (same for cols). */
  {
    const float include[9] = {0.25f, 1.25f, 0, 2.75f, 7, 0, 0, 0, 0};
    const float exclude[9] = {1, 2.5f, 0, 5.5f, 7, 0, 0, 0, 0};
    p = pool_params(SOPHON_POOL_AVG, 2, 2, 1, 1);
    run_pool(dev, x, 3, 3, &p, out, 3, 3);
    CHECK(memcmp(out, include, sizeof include) == 0);
    p.count_include_pad = 0;
    run_pool(dev, x, 3, 3, &p, out, 3, 3);
    CHECK(memcmp(out, exclude, sizeof exclude) == 0);
  }
  /* ceil mode without padding: k2 s2 on 3x3 -> 2x2, last windows clipped to the input */
  {
    const float want[4] = {3, 4.5f, 7.5f, 9};
    p = pool_params(SOPHON_POOL_AVG, 2, 2, 0, 1);
    run_pool(dev, x, 3, 3, &p, out, 2, 2);
    CHECK(memcmp(out, want, sizeof want) == 0);
  }
  /* naive comparison, several channels, both modes, asymmetric padding */
  {
    enum { N = 1, C = 5, H = 6, W = 7 };
    float src[N * C * H * W], got[N * C * 4 * 4], ref[N * C * 4 * 4];
    uint32_t next = 0;
    sophon_local in_t = alloc_local(&chip, &next, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
    sophon_local out_t;
    int include;
    fill(src, N * C * H * W, 31);
    CHECK_OK(dev, load(dev, &in_t, src));
    for (include = 0; include <= 1; ++include) {
      p = pool_params(SOPHON_POOL_AVG, 3, 2, 1, include);
      p.pad_bottom = 0;
      p.pad_right = 2;
      /* H: (6+1-2-1)/2+1 = 3 floor, ceil 3+... ask 3; W: (7+3-2-1)/2+1 = 4 */
      out_t = alloc_local(&chip, &next, N, C, 3, 4, SOPHON_LAYOUT_ALIGNED);
      pool_ref(src, N, C, H, W, &p, ref, 3, 4);
      CHECK_OK(dev, sophon_tiu_pool2d(dev, &out_t, &in_t, &p));
      CHECK_OK(dev, store(dev, got, &out_t));
      CHECK_ARRAY_NEAR(got, ref, N * C * 3 * 4, 1e-6f);
    }
  }
  /* too large an output is rejected */
  {
    sophon_local in_t = local4(0, 1, 1, 3, 3, SOPHON_LAYOUT_ALIGNED);
    sophon_local out_t = local4(1024, 1, 1, 4, 3, SOPHON_LAYOUT_ALIGNED);
    p = pool_params(SOPHON_POOL_AVG, 2, 2, 1, 1);
    CHECK_STATUS(dev, sophon_tiu_pool2d(dev, &out_t, &in_t, &p), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "tiu_pool2d: out h 4 is outside [2, 3]");
  }
  sophon_device_destroy(dev);
}

static float binary_ref(sophon_binary_op op, float x, float y) {
  switch (op) {
    case SOPHON_BINARY_ADD: return x + y;
    case SOPHON_BINARY_SUB: return x - y;
    case SOPHON_BINARY_MUL: return x * y;
    case SOPHON_BINARY_MAX: return x > y ? x : y;
    case SOPHON_BINARY_MIN: return x < y ? x : y;
    case SOPHON_BINARY_DIV: return x / y;
    case SOPHON_BINARY_PRELU: return x > 0 ? x : x * y;
  }
  return 0;
}

static void test_binary(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 2, C = 6, H = 2, W = 3, COUNT = N * C * H * W };
  float a[COUNT], b[C], c2[N * H], got[COUNT], want[COUNT];
  sophon_local a_t = local4(0, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_local b_t = local4(512, 1, C, 1, 1, SOPHON_LAYOUT_COMPACT);      /* per channel */
  sophon_local c_t = local4(768, N, 1, H, 1, SOPHON_LAYOUT_COMPACT);      /* per n, h */
  sophon_local out_t = local4(1024, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_activation relu = act_of(SOPHON_ACT_RELU, 0, 0, 0);
  int op, n, ch, h, w;
  fill(a, COUNT, 41);
  fill(b, C, 42);
  fill(c2, N * H, 43);
  CHECK_OK(dev, load(dev, &a_t, a));
  CHECK_OK(dev, load(dev, &b_t, b));
  CHECK_OK(dev, load(dev, &c_t, c2));
  for (op = SOPHON_BINARY_ADD; op <= SOPHON_BINARY_PRELU; ++op) {
    for (n = 0; n < N; ++n)
      for (ch = 0; ch < C; ++ch)
        for (h = 0; h < H; ++h)
          for (w = 0; w < W; ++w) {
            int i = ((n * C + ch) * H + h) * W + w;
            want[i] = binary_ref((sophon_binary_op)op, a[i], b[ch]);
          }
    CHECK_OK(dev, sophon_tiu_binary(dev, &out_t, &a_t, &b_t, (sophon_binary_op)op, NULL));
    CHECK_OK(dev, store(dev, got, &out_t));
    CHECK(memcmp(got, want, sizeof want) == 0);
  }
  /* broadcast on the left operand too, with a fused relu: c (N,1,H,1) - a */
  for (n = 0; n < N; ++n)
    for (ch = 0; ch < C; ++ch)
      for (h = 0; h < H; ++h)
        for (w = 0; w < W; ++w) {
          int i = ((n * C + ch) * H + h) * W + w;
          want[i] = ref_act(&relu, c2[n * H + h] - a[i]);
        }
  CHECK_OK(dev, sophon_tiu_binary(dev, &out_t, &c_t, &a_t, SOPHON_BINARY_SUB, &relu));
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK(memcmp(got, want, sizeof want) == 0);

  /* in place: out is exactly a */
  for (n = 0; n < COUNT; ++n) want[n] = a[n] * b[(n / (H * W)) % C];
  CHECK_OK(dev, sophon_tiu_binary(dev, &a_t, &a_t, &b_t, SOPHON_BINARY_MUL, NULL));
  CHECK_OK(dev, store(dev, got, &a_t));
  CHECK(memcmp(got, want, sizeof want) == 0);

  /* partial overlap is rejected */
  {
    sophon_local shifted = a_t;
    shifted.addr = 16;
    CHECK_STATUS(dev, sophon_tiu_binary(dev, &shifted, &a_t, &b_t, SOPHON_BINARY_ADD, NULL),
                 SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "tiu_binary: out overlaps a");
  }
  /* a shape that does not broadcast */
  {
    sophon_local bad = local4(512, 1, 3, 1, 1, SOPHON_LAYOUT_COMPACT);
    CHECK_STATUS(dev, sophon_tiu_binary(dev, &out_t, &a_t, &bad, SOPHON_BINARY_ADD, NULL),
                 SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "b shape (1,3,1,1) does not broadcast to out shape (2,6,2,3)");
  }
  sophon_device_destroy(dev);
}

static void test_activations(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 1, C = 5, H = 3, W = 3, COUNT = N * C * H * W };
  float x[COUNT], got[COUNT], want[COUNT];
  sophon_local in_t = local4(0, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = local4(512, N, C, H, W, SOPHON_LAYOUT_COMPACT);
  sophon_activation acts[6];
  int k, i;
  acts[0] = act_of(SOPHON_ACT_NONE, 0, 0, 0);
  acts[1] = act_of(SOPHON_ACT_RELU, 0, 0, 0);
  acts[2] = act_of(SOPHON_ACT_CLIP, 0, -0.25f, 0.5f);
  acts[3] = act_of(SOPHON_ACT_LEAKY_RELU, 0.1f, 0, 0);
  acts[4] = act_of(SOPHON_ACT_SIGMOID, 0, 0, 0);
  acts[5] = act_of(SOPHON_ACT_TANH, 0, 0, 0);
  fill(x, COUNT, 51);
  for (i = 0; i < COUNT; ++i) x[i] *= 4.0f;
  CHECK_OK(dev, load(dev, &in_t, x));
  for (k = 0; k < 6; ++k) {
    for (i = 0; i < COUNT; ++i) want[i] = ref_act(&acts[k], x[i]);
    CHECK_OK(dev, sophon_tiu_activation(dev, &out_t, &in_t, &acts[k]));
    CHECK_OK(dev, store(dev, got, &out_t));
    CHECK_ARRAY_NEAR(got, want, COUNT, 1e-6f);
  }
  /* spot values by hand */
  {
    float v[4] = {-2.0f, 0.0f, 3.0f, 8.0f}, r[4];
    sophon_local t = local4(1024, 1, 1, 1, 4, SOPHON_LAYOUT_COMPACT);
    sophon_activation relu6 = act_of(SOPHON_ACT_CLIP, 0, 0, 6);
    CHECK_OK(dev, load(dev, &t, v));
    CHECK_OK(dev, sophon_tiu_activation(dev, &t, &t, &relu6)); /* in place */
    CHECK_OK(dev, store(dev, r, &t));
    CHECK(r[0] == 0 && r[1] == 0 && r[2] == 3 && r[3] == 6);
    CHECK_OK(dev, load(dev, &t, v));
    CHECK_OK(dev, sophon_tiu_activation(dev, &t, &t, &acts[4]));
    CHECK_OK(dev, store(dev, r, &t));
    CHECK(r[1] == 0.5f);
  }
  /* bad parameters */
  {
    sophon_activation bad = act_of(SOPHON_ACT_CLIP, 0, 1, -1);
    CHECK_STATUS(dev, sophon_tiu_activation(dev, &out_t, &in_t, &bad), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "clip bounds lo=1 > hi=-1");
    bad = act_of((sophon_act_kind)99, 0, 0, 0);
    CHECK_STATUS(dev, sophon_tiu_activation(dev, &out_t, &in_t, &bad), SOPHON_ERR_ARGUMENT);
    CHECK_STATUS(dev, sophon_tiu_activation(dev, &out_t, &in_t, NULL), SOPHON_ERR_ARGUMENT);
  }
  sophon_device_destroy(dev);
}

static void test_softmax(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 2, C = 5, H = 4, W = 3, COUNT = N * C * H * W };
  float x[COUNT], got[COUNT], want[COUNT];
  sophon_local in_t = local4(0, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = local4(1024, N, C, H, W, SOPHON_LAYOUT_ALIGNED);
  int nc, w, h, bad_sum = 0;
  fill(x, COUNT, 61);
  for (h = 0; h < COUNT; ++h) x[h] *= 5.0f;
  x[7] = 1000.0f; /* would overflow expf without the max subtracted */
  for (nc = 0; nc < N * C; ++nc)
    for (w = 0; w < W; ++w) {
      double m = -INFINITY, s = 0.0;
      for (h = 0; h < H; ++h) m = fmax(m, x[(nc * H + h) * W + w]);
      for (h = 0; h < H; ++h) s += exp(x[(nc * H + h) * W + w] - m);
      for (h = 0; h < H; ++h)
        want[(nc * H + h) * W + w] = (float)(exp(x[(nc * H + h) * W + w] - m) / s);
    }
  CHECK_OK(dev, load(dev, &in_t, x));
  CHECK_OK(dev, sophon_tiu_softmax(dev, &out_t, &in_t));
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK_ARRAY_NEAR(got, want, COUNT, 1e-5f);
  for (nc = 0; nc < N * C; ++nc)
    for (w = 0; w < W; ++w) {
      float s = 0.0f;
      for (h = 0; h < H; ++h) s += got[(nc * H + h) * W + w];
      if (fabsf(s - 1.0f) > 1e-5f) ++bad_sum;
    }
  CHECK(bad_sum == 0);
  /* in place gives the same */
  CHECK_OK(dev, sophon_tiu_softmax(dev, &in_t, &in_t));
  CHECK_OK(dev, store(dev, x, &in_t));
  CHECK(memcmp(x, got, sizeof got) == 0);
  sophon_device_destroy(dev);
}

static void test_argument_errors(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  sophon_local in_t = local4(0, 1, 4, 5, 5, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = local4(1024, 1, 16, 3, 3, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_t = local4(2048, 1, 16, 3, 9, SOPHON_LAYOUT_COMPACT);
  sophon_conv_params p = conv_params(3, 3, 1, 0, 1, 4);
  sophon_counters before;

  /* groups 4: weight must be (1,16,1,9) */
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_conv2d: weight shape (1,16,3,9) does not match");
  CHECK_ERROR_HAS(dev, "in.c/groups=1");
  w_t.h = 1;
  CHECK_OK(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p));
  /* wrong OH */
  out_t.h = 4;
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_conv2d: out shape (1,16,4,3) does not match (1,16,3,3)");
  out_t.h = 3;
  /* groups not dividing */
  p.groups = 3;
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "groups 3 does not divide in.c 4 and out.c 16");
  p.groups = 4;
  /* NULL operand */
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, NULL, &w_t, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_conv2d: in is NULL");
  CHECK_STATUS(dev, sophon_tiu_conv2d(NULL, &out_t, &in_t, &w_t, NULL, &p), SOPHON_ERR_ARGUMENT);
  /* dtype mismatch, then unsupported int8 */
  in_t.dtype = SOPHON_I8;
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "in dtype I8 differs from out dtype F32");
  out_t.dtype = w_t.dtype = SOPHON_I8;
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p),
               SOPHON_ERR_UNSUPPORTED);
  CHECK_ERROR_HAS(dev, "tiu_conv2d: dtype I8 is not supported");
  {
    sophon_local i8 = local4(0, 1, 4, 2, 2, SOPHON_LAYOUT_ALIGNED);
    i8.dtype = SOPHON_I8;
    CHECK_STATUS(dev, sophon_tiu_softmax(dev, &i8, &i8), SOPHON_ERR_UNSUPPORTED);
    CHECK_ERROR_HAS(dev, "tiu_softmax: dtype I8");
  }
  in_t.dtype = out_t.dtype = w_t.dtype = SOPHON_F32;
  /* out overlapping in */
  out_t.addr = 64;
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_conv2d: out overlaps in");
  out_t.addr = 1024;
  /* weight layout */
  w_t.layout = SOPHON_LAYOUT_ALIGNED;
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "weight must be COMPACT");
  w_t.layout = SOPHON_LAYOUT_COMPACT;
  /* fc shape mismatch */
  {
    sophon_local fi = local4(0, 2, 8, 1, 1, SOPHON_LAYOUT_COMPACT);
    sophon_local fw = local4(256, 1, 5, 7, 1, SOPHON_LAYOUT_COMPACT);
    sophon_local fo = local4(512, 2, 5, 1, 1, SOPHON_LAYOUT_COMPACT);
    CHECK_STATUS(dev, sophon_tiu_fc(dev, &fo, &fi, &fw, NULL, NULL), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "tiu_fc: weight shape (1,5,7,1) does not match (1,N,K=8,1)");
  }
  /* pool on mismatching channels */
  {
    sophon_pool_params pp = pool_params(SOPHON_POOL_MAX, 2, 2, 0, 0);
    sophon_local po = local4(1024, 1, 3, 2, 2, SOPHON_LAYOUT_ALIGNED);
    CHECK_STATUS(dev, sophon_tiu_pool2d(dev, &po, &in_t, &pp), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "tiu_pool2d: out shape (1,3,2,2) does not keep in's n=1, c=4");
  }
  /* failures leave the counters alone: only the one good conv counted */
  before = *sophon_device_counters(dev);
  CHECK(before.tiu_instructions == 1);
  CHECK_STATUS(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, NULL, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK(memcmp(&before, sophon_device_counters(dev), sizeof before) == 0);
  sophon_device_destroy(dev);
}

static void test_counters(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  /* in (1,5,6,6) ALIGNED: 2 slots x 36 -> 288 B/lane; conv 3x3 pad 1 -> out (1,6,6,6) */
  float in[5 * 36], weight[6 * 5 * 9], out[6 * 36];
  sophon_local in_t = local4(0, 1, 5, 6, 6, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_t = local4(512, 1, 6, 5, 9, SOPHON_LAYOUT_COMPACT);
  sophon_local out_t = local4(1024, 1, 6, 6, 6, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p = conv_params(3, 3, 1, 1, 1, 1);
  const sophon_counters* k = sophon_device_counters(dev);
  fill(in, 5 * 36, 71);
  fill(weight, 6 * 45, 72);
  CHECK_OK(dev, load(dev, &in_t, in));         /* 720 bytes: 10 + 180 cycles */
  CHECK_OK(dev, load(dev, &w_t, weight));      /* 1080 bytes: 10 + 270 */
  CHECK_OK(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p));
  CHECK_OK(dev, store(dev, out, &out_t));      /* 864 bytes: 10 + 216 */
  CHECK(k->gdma_instructions == 3);
  CHECK(k->bytes_loaded == 720 + 1080);
  CHECK(k->bytes_stored == 864);
  CHECK(k->gdma_cycles == 190 + 280 + 226);
  CHECK(k->tiu_instructions == 1);
  CHECK(k->macs == 6 * 36 * 5 * 9);
  /* 5 + ceil(6/4) * 1 * ceil(36/4) * (5*9) = 5 + 2*9*45 */
  CHECK(k->tiu_cycles == 5 + 810);
  /* out: 1024 + 2 slots * 36 * 4 = 1312 */
  CHECK(k->lmem_peak_bytes == 1312);
  sophon_device_reset_counters(dev);
  CHECK(k->macs == 0 && k->gdma_instructions == 0 && k->lmem_peak_bytes == 0);
  {
    sophon_activation sig = act_of(SOPHON_ACT_SIGMOID, 0, 0, 0);
    CHECK_OK(dev, sophon_tiu_activation(dev, &out_t, &out_t, &sig));
    CHECK(k->tiu_cycles == 5 + 2 * 9 * 4);
    CHECK_OK(dev, sophon_tiu_softmax(dev, &out_t, &out_t));
    CHECK(k->tiu_cycles == (5 + 2 * 9 * 4) + (5 + 2 * 9 * 5));
    CHECK(k->tiu_instructions == 2 && k->macs == 0);
  }
  sophon_device_destroy(dev);
}

/* A row window of a buffer (explicit cstride) reads the buffer's rows in place. */
static void test_row_window(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  /* buffer (1,5,6,6) ALIGNED: channel stride 36; window rows [2,5) */
  float in[5 * 36], out[5 * 9], expect[5 * 9];
  sophon_local buf = local4(0, 1, 5, 6, 6, SOPHON_LAYOUT_ALIGNED);
  sophon_local win = local4(2 * 6 * 4, 1, 5, 3, 6, SOPHON_LAYOUT_ALIGNED);
  sophon_local dst = local4(1024, 1, 5, 3, 3, SOPHON_LAYOUT_ALIGNED);
  sophon_pool_params p;
  int c, y, x;
  win.cstride = 36;
  memset(&p, 0, sizeof p);
  p.kind = SOPHON_POOL_MAX;
  p.kernel_h = 1; p.kernel_w = 2; p.stride_h = 1; p.stride_w = 2;
  p.dilation_h = 1; p.dilation_w = 1;
  fill(in, 5 * 36, 91);
  CHECK_OK(dev, load(dev, &buf, in));
  CHECK_OK(dev, sophon_tiu_pool2d(dev, &dst, &win, &p));
  CHECK_OK(dev, store(dev, out, &dst));
  for (c = 0; c < 5; ++c)
    for (y = 0; y < 3; ++y)
      for (x = 0; x < 3; ++x) {
        float a = in[c * 36 + (y + 2) * 6 + 2 * x], b = in[c * 36 + (y + 2) * 6 + 2 * x + 1];
        expect[(c * 3 + y) * 3 + x] = a > b ? a : b;
      }
  CHECK(memcmp(out, expect, sizeof out) == 0);
  /* footprint: (2 slots - 1) * 36 + 18 elements = 216 bytes from the window's addr */
  CHECK(sophon_local_lane_bytes(&chip, &win) == (36 + 18) * 4);
  win.cstride = 17; /* below h*w = 18 */
  CHECK_STATUS(dev, sophon_tiu_pool2d(dev, &dst, &win, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "channel stride 17");
  sophon_device_destroy(dev);
}

/* Two engines overlap within a timestep: the timestep costs the longer of them. */
static void test_timesteps(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float in[5 * 36], weight[6 * 5 * 9];
  sophon_local in_t = local4(0, 1, 5, 6, 6, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_t = local4(512, 1, 6, 5, 9, SOPHON_LAYOUT_COMPACT);
  sophon_local out_t = local4(1024, 1, 6, 6, 6, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p = conv_params(3, 3, 1, 1, 1, 1);
  const sophon_counters* k = sophon_device_counters(dev);
  fill(in, 5 * 36, 81);
  fill(weight, 6 * 45, 82);
  /* timestep 1: two loads alone (190 + 280 GDMA cycles) */
  CHECK_OK(dev, load(dev, &in_t, in));
  CHECK_OK(dev, load(dev, &w_t, weight));
  CHECK_OK(dev, sophon_timestep_end(dev));
  CHECK(k->cycles == 470 && k->timesteps == 1);
  /* timestep 2: conv (815 TIU cycles) beside a reload of the input (190 GDMA) */
  CHECK_OK(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, NULL, &p));
  CHECK_OK(dev, load(dev, &in_t, in));
  CHECK_OK(dev, sophon_timestep_end(dev));
  CHECK(k->cycles == 470 + 815 && k->timesteps == 2);
  /* an empty timestep costs nothing; the engine sums are unchanged by timesteps */
  CHECK_OK(dev, sophon_timestep_end(dev));
  CHECK(k->cycles == 470 + 815 && k->timesteps == 3);
  CHECK(k->gdma_cycles == 190 + 280 + 190 && k->tiu_cycles == 815);
  sophon_device_reset_counters(dev);
  CHECK(k->cycles == 0 && k->timesteps == 0);
  CHECK_STATUS(dev, sophon_timestep_end(NULL), SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

static void test_cost_functions(void) {
  sophon_chip chip = bm1680_chip();
  sophon_local out = local4(0, 1, 64, 112, 112, SOPHON_LAYOUT_ALIGNED);
  sophon_local in = local4(0, 1, 3, 224, 224, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p = conv_params(7, 7, 2, 3, 1, 1);
  sophon_pool_params pp = pool_params(SOPHON_POOL_MAX, 3, 2, 1, 0);
  CHECK(sophon_eu_num(&chip, SOPHON_F32) == 64);
  CHECK(sophon_eu_num(&chip, SOPHON_I8) == 256);
  /* 83.2e9 / 244e6 = 340.98 B/cycle; 1e6 B -> ceil(2932.69) = 2933, + 32 */
  CHECK(sophon_cost_gdma(&chip, 1000000) == 2965);
  CHECK(sophon_cost_gdma(&chip, 0) == 32);
  /* ResNet-18 conv1: 16 + 1 * 1 * ceil(12544/64)=196 * 3*49, times 2 for its
   * W stride (each tap reads two EU rows of input) */
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 16 + 196 * 147 * 2);
  /* 3 output channels still take a full lane pass */
  out.c = 3;
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 16 + 196 * 147 * 2);
  p.stride_w = 1; /* stride along H only: each tap still reads one row */
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 16 + 196 * 147);
  p.stride_w = 2;
  /* fc 512 -> 1000: 16 + ceil(1000/64)=16 * 1 * ceil(512/64)=8 */
  out = local4(0, 1, 1000, 1, 1, SOPHON_LAYOUT_ALIGNED);
  in = local4(0, 1, 512, 1, 1, SOPHON_LAYOUT_ALIGNED);
  CHECK(sophon_cost_fc(&chip, &out, &in) == 16 + 128);
  /* max pool 3x3 stride 2 to (1,64,56,56): 16 + 1 * 1 * 49 * 9 * 2 */
  out = local4(0, 1, 64, 56, 56, SOPHON_LAYOUT_ALIGNED);
  CHECK(sophon_cost_pool2d(&chip, &out, &pp) == 16 + 441 * 2);
  CHECK(sophon_cost_eltwise(&chip, &out, 1) == 16 + 49);
  CHECK(sophon_cost_eltwise(&chip, &out, 5) == 16 + 245);
  /* small chip, grouped conv: 5 + ceil(6/4)=2 * 2 * ceil(25/4)=7 * (6/2 * 9) */
  chip = small_chip();
  out = local4(0, 2, 6, 5, 5, SOPHON_LAYOUT_ALIGNED);
  in = local4(0, 2, 6, 5, 5, SOPHON_LAYOUT_ALIGNED);
  p = conv_params(3, 3, 1, 1, 1, 2);
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 5 + 2 * 2 * 7 * 27);
  CHECK(sophon_cost_gdma(&chip, 10) == 10 + 3); /* 4 B/cycle: ceil(2.5) */
  /* malformed input gives 0, never a crash */
  CHECK(sophon_cost_conv2d(NULL, &out, &in, &p) == 0);
  CHECK(sophon_cost_fc(&chip, NULL, &in) == 0);
}

/* The measured-silicon terms: two clocks, bursts, the depthwise unit, 4N int8,
 * the timestep synchronisation; each checked by hand on small numbers. */
static void test_cost_silicon_terms(void) {
  sophon_chip chip = small_chip();
  sophon_local t = local4(0, 1, 4, 2, 3, SOPHON_LAYOUT_ALIGNED); /* 24 floats, 96 B */
  /* the whole tensor in NCHW; and 4 of the 8 channels of an NHWC tensor */
  const int64_t contiguous[4] = {24, 6, 3, 1}, nhwc_slice[4] = {48, 1, 24, 8};
  sophon_local in, out;
  sophon_conv_params p;
  chip.gdma_latency_cycles = 0;
  /* no bursts, one clock: 96 B at 4 B/cycle */
  CHECK(sophon_cost_gdma_transfer(&chip, &t, contiguous) == 24);
  /* 32-byte bursts: DDR side one run of 96 B = 3 bursts; LMEM side 4 planes of
   * 24 B, each a whole burst: 128 B -> 32 cycles */
  chip.gdma_burst_bytes = 32;
  CHECK(sophon_cost_gdma_transfer(&chip, &t, contiguous) == 32);
  CHECK(sophon_cost_gdma(&chip, 96) == 24);
  /* the NHWC channel slice: DDR runs of 4 floats = 16 B, 6 runs of one burst each =
   * 192 B -> 48 cycles */
  CHECK(sophon_cost_gdma_transfer(&chip, &t, nhwc_slice) == 48);
  /* bandwidth is per second, so a GDMA clock at half the TIU clock only stretches
   * the latency: 10 GDMA cycles = 20 TIU cycles */
  chip.gdma_clock_hz = chip.clock_hz / 2;
  chip.gdma_latency_cycles = 10;
  CHECK(sophon_cost_gdma_transfer(&chip, &t, contiguous) == 20 + 32);
  /* timestep: the longer engine plus the synchronisation, nothing when empty */
  chip.timestep_sync_cycles = 7;
  CHECK(sophon_cost_timestep(&chip, 10, 3) == 17);
  CHECK(sophon_cost_timestep(&chip, 0, 0) == 0);
  /* depthwise 3x3 on 8 channels of 4x4: conv unit 4 positions, dw unit 2 */
  in = local4(0, 1, 8, 4, 4, SOPHON_LAYOUT_ALIGNED);
  out = in;
  p = conv_params(3, 3, 1, 1, 1, 8);
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 5 + 2 * 4 * 9);
  chip.dwpool_eu_bytes = 8;
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 5 + 2 * 8 * 9);
  /* 4N int8: four batch items share each 32-bit word, so batch 1 and 4 cost the
   * same and batch 5 twice as much */
  chip.int8_batch_pack = 4;
  chip.int8_macs_per_eu = 2;
  p = conv_params(3, 3, 1, 1, 1, 1);
  in = local4(0, 1, 8, 4, 4, SOPHON_LAYOUT_ALIGNED);
  in.dtype = SOPHON_I8;
  out = in;
  /* 16 B / 4 = 4 positions: ceil(16/4) = 4 passes per lane slot, 72 taps / 2 */
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 5 + 2 * 1 * 4 * 36);
  in.n = out.n = 4;
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 5 + 2 * 1 * 4 * 36);
  in.n = out.n = 5;
  CHECK(sophon_cost_conv2d(&chip, &out, &in, &p) == 5 + 2 * 2 * 4 * 36);
}

/* The 4N layout's LMEM footprint and the element-wise datapath, by hand from the
 * formulas of sophon.h and chip/sophon_cost.h. Removing either term fails here. */
static void test_cost_4n_and_eltwise_terms(void) {
  sophon_chip chip = small_chip(); /* 4 lanes, eu_bytes 16, 4 B per cycle of DDR */
  const int64_t contiguous1[4] = {128, 16, 4, 1}, contiguous4[4] = {128, 16, 4, 1};
  sophon_local q = local4(0, 1, 8, 4, 4, SOPHON_LAYOUT_ALIGNED), f, win;
  sophon_conv_params p;
  sophon_activation silu;
  q.dtype = SOPHON_I8;
  chip.int8_macs_per_eu = 2; /* int8 EU_NUM 32: a 4x4 plane takes a 32-byte channel slot */
  /* 1N: one batch item x 2 channels per lane x 32 B */
  CHECK(sophon_local_lane_bytes(&chip, &q) == 1 * 2 * 32);
  CHECK(sophon_local_batch_slots(&chip, &q) == 1);
  /* 4N: batch 1 reserves the four items of a 32-bit word, batch 4 the same, batch 5 two words */
  chip.int8_batch_pack = 4;
  CHECK(sophon_local_batch_slots(&chip, &q) == 4);
  CHECK(sophon_local_lane_bytes(&chip, &q) == 4 * 2 * 32);
  q.n = 4;
  CHECK(sophon_local_lane_bytes(&chip, &q) == 4 * 2 * 32);
  q.n = 5;
  CHECK(sophon_local_lane_bytes(&chip, &q) == 8 * 2 * 32);
  /* not 4N: compact int8 (weights), float, and a window inside a 4N buffer */
  q.n = 1;
  q.layout = SOPHON_LAYOUT_COMPACT;
  CHECK(sophon_local_lane_bytes(&chip, &q) == 1 * 2 * 16);
  f = local4(0, 1, 8, 4, 4, SOPHON_LAYOUT_ALIGNED);
  CHECK(sophon_local_lane_bytes(&chip, &f) == 1 * 2 * 16 * 4);
  win = local4(0, 1, 8, 2, 4, SOPHON_LAYOUT_ALIGNED);
  win.dtype = SOPHON_I8;
  win.cstride = 32;
  CHECK(sophon_local_lane_bytes(&chip, &win) == (1 * 2 - 1) * 32 + 8);
  /* the LMEM side of a GDMA transfer writes the 4N planes: 8 channels of 16 int8
   * at batch 1 are 8 planes of 16 words = 64 B each, 512 B -> 128 cycles at 4 B per
   * cycle (the DDR side is one 128 B run); 1N would write 8 planes of 16 B, each a
   * whole 32-byte burst: 256 B -> 64 cycles */
  chip.gdma_latency_cycles = 0;
  chip.gdma_burst_bytes = 32;
  q.layout = SOPHON_LAYOUT_ALIGNED;
  CHECK(sophon_cost_gdma_transfer(&chip, &q, contiguous1) == 512 / 4);
  chip.int8_batch_pack = 0;
  CHECK(sophon_cost_gdma_transfer(&chip, &q, contiguous1) == 256 / 4);
  /* batch 4 in 4N: 8 planes of 64 B (the four items interleaved), as big as the
   * DDR side's 512 B; 1N would write 32 planes of 16 B in 32-byte bursts */
  q.n = 4;
  CHECK(sophon_cost_gdma_transfer(&chip, &q, contiguous4) == 1024 / 4);
  chip.int8_batch_pack = 4;
  CHECK(sophon_cost_gdma_transfer(&chip, &q, contiguous4) == 512 / 4);
  /* the element-wise datapath: 32-bit slots, one batch item each, eltwise_eu_bytes
   * per lane per cycle. f32 (2, 6, 5, 5): ceil(6/4) = 2 channel slots x 2 items x
   * ceil(25 * 4 / 2) = 50 cycles per op */
  f = local4(0, 2, 6, 5, 5, SOPHON_LAYOUT_ALIGNED);
  CHECK(sophon_cost_eltwise(&chip, &f, 3) == 5 + 3 * (2 * 2 * 7)); /* 0: the conv unit's 4 positions */
  chip.eltwise_eu_bytes = 2;
  CHECK(sophon_cost_eltwise(&chip, &f, 3) == 5 + 3 * (2 * 2 * 50));
  /* int8 gets no 4N packing there: batch 4 costs four times batch 1 */
  q = local4(0, 4, 6, 5, 5, SOPHON_LAYOUT_ALIGNED);
  q.dtype = SOPHON_I8;
  CHECK(sophon_cost_eltwise(&chip, &q, 1) == 5 + 2 * 4 * 50);
  q.n = 1;
  CHECK(sophon_cost_eltwise(&chip, &q, 1) == 5 + 2 * 1 * 50);
  /* a SiLU (5 ops) fused into a conv is a pass of that datapath over its output:
   * 1x1 conv 6 -> 6 channels, batch 2: 2 slots x 2 x ceil(25/4) = 7 passes x 6 taps */
  memset(&silu, 0, sizeof silu);
  silu.kind = SOPHON_ACT_SILU;
  p = conv_params(1, 1, 1, 0, 1, 1);
  p.act = silu;
  CHECK(sophon_cost_conv2d(&chip, &f, &f, &p) == 5 + 2 * 2 * 7 * 6 + 5 * (2 * 2 * 50));
}

/* The same code on BM1680-like numbers: 64 lanes, EU_NUM 64, > 64 channels. */
static void test_bm1680_conv(void) {
  sophon_chip chip = bm1680_chip();
  sophon_conv_params p = conv_params(3, 3, 1, 1, 1, 1);
  sophon_device* dev = make_device(&chip);
  sophon_local t = local4(0, 1, 70, 10, 10, SOPHON_LAYOUT_ALIGNED);
  p.act.kind = SOPHON_ACT_RELU;
  /* 70 channels -> 2 slots of round_up(100, 64) = 128 floats */
  CHECK(sophon_local_lane_bytes(&chip, &t) == 2 * 128 * 4);
  sophon_device_destroy(dev);
  run_conv_case(&chip, 1, 66, 10, 10, 70, &p, 1, "bm1680 66->70 channels");
  p = conv_params(3, 3, 2, 1, 1, 130);
  run_conv_case(&chip, 1, 130, 9, 9, 130, &p, 1, "bm1680 depthwise 130");
}

static sophon_resize_params resize_params(sophon_resize_method method, sophon_resize_coord coord,
                                          sophon_resize_rounding rounding, int in_h, int out_h) {
  sophon_resize_params p;
  memset(&p, 0, sizeof(p));
  p.method = method;
  p.coord = coord;
  p.rounding = rounding;
  p.in_h = in_h;
  p.out_h = out_h;
  return p;
}

/* Hand-worked resizes of the 2x2 image [1 2; 3 4] (and a 1x4 row), bands of rows,
 * the counters, and the checks' errors. */
static void test_resize(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float image[4] = {1, 2, 3, 4}, row4[4] = {10, 20, 30, 40}, got[16];
  /* nearest, asymmetric, floor: 2x upsampling repeats each pixel */
  static const float nearest2x[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  /* bilinear, align_corners, 2 -> 3: the middle samples are the averages */
  static const float corners3[9] = {1, 1.5f, 2, 2, 2.5f, 3, 3, 3.5f, 4};
  /* bilinear, half_pixel, 2 -> 4: coordinates -0.25, 0.25, 0.75, 1.25; the outer
   * ones clamp to the edge pixel, the inner ones weigh 3:1 and 1:3 */
  static const float half4[16] = {1,    1.25f, 1.75f, 2,    1.5f, 1.75f, 2.25f, 2.5f,
                                  2.5f, 2.75f, 3.25f, 3.5f, 3,    3.25f, 3.75f, 4};
  sophon_local in_t = local4(0, 1, 1, 2, 2, SOPHON_LAYOUT_ALIGNED);
  sophon_local out4 = local4(1024, 1, 1, 4, 4, SOPHON_LAYOUT_ALIGNED);
  sophon_local out3 = local4(1024, 1, 1, 3, 3, SOPHON_LAYOUT_ALIGNED);
  sophon_local row_in = local4(2048, 1, 1, 1, 4, SOPHON_LAYOUT_ALIGNED);
  sophon_local row_out = local4(3072, 1, 1, 1, 2, SOPHON_LAYOUT_ALIGNED);
  sophon_resize_params p;

  CHECK_OK(dev, load(dev, &in_t, image));
  p = resize_params(SOPHON_RESIZE_NEAREST, SOPHON_COORD_ASYMMETRIC, SOPHON_ROUND_FLOOR, 2, 4);
  CHECK_OK(dev, sophon_tiu_resize(dev, &out4, &in_t, &p));
  CHECK_OK(dev, store(dev, got, &out4));
  CHECK(memcmp(got, nearest2x, sizeof nearest2x) == 0);

  p = resize_params(SOPHON_RESIZE_BILINEAR, SOPHON_COORD_ALIGN_CORNERS, SOPHON_ROUND_FLOOR, 2, 3);
  CHECK_OK(dev, sophon_tiu_resize(dev, &out3, &in_t, &p));
  CHECK_OK(dev, store(dev, got, &out3));
  CHECK_ARRAY_NEAR(got, corners3, 9, 1e-6f);

  p = resize_params(SOPHON_RESIZE_BILINEAR, SOPHON_COORD_HALF_PIXEL, SOPHON_ROUND_FLOOR, 2, 4);
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_resize(dev, &out4, &in_t, &p));
  /* 5 latency + 1 lane slot * ceil(16 / 4) * 4 ops */
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, 21);
  CHECK_EQ_INT(sophon_device_counters(dev)->macs, 0);
  CHECK_OK(dev, store(dev, got, &out4));
  CHECK_ARRAY_NEAR(got, half4, 16, 1e-6f);

  /* downsampling 4 -> 2 along w (h stays 1), half_pixel: coordinates 0.5 and 2.5 */
  CHECK_OK(dev, load(dev, &row_in, row4));
  p = resize_params(SOPHON_RESIZE_NEAREST, SOPHON_COORD_HALF_PIXEL, SOPHON_ROUND_PREFER_CEIL, 1, 1);
  CHECK_OK(dev, sophon_tiu_resize(dev, &row_out, &row_in, &p));
  CHECK_OK(dev, store(dev, got, &row_out));
  CHECK(got[0] == 20.0f && got[1] == 40.0f);
  p.rounding = SOPHON_ROUND_PREFER_FLOOR;
  CHECK_OK(dev, sophon_tiu_resize(dev, &row_out, &row_in, &p));
  CHECK_OK(dev, store(dev, got, &row_out));
  CHECK(got[0] == 10.0f && got[1] == 30.0f);
  p.rounding = SOPHON_ROUND_HALF_EVEN; /* 0.5 -> 0, 2.5 -> 2 */
  CHECK_OK(dev, sophon_tiu_resize(dev, &row_out, &row_in, &p));
  CHECK_OK(dev, store(dev, got, &row_out));
  CHECK(got[0] == 10.0f && got[1] == 30.0f);

  /* a band: output rows [2, 4) of the nearest 2x image read input row 1 only */
  {
    sophon_local band_in = local4(0, 1, 1, 1, 2, SOPHON_LAYOUT_ALIGNED);
    sophon_local band_out = local4(1024, 1, 1, 2, 4, SOPHON_LAYOUT_ALIGNED);
    float lower[2] = {3, 4};
    CHECK_OK(dev, load(dev, &band_in, lower));
    p = resize_params(SOPHON_RESIZE_NEAREST, SOPHON_COORD_ASYMMETRIC, SOPHON_ROUND_FLOOR, 2, 4);
    p.in_row0 = 1;
    p.out_row0 = 2;
    CHECK_OK(dev, sophon_tiu_resize(dev, &band_out, &band_in, &p));
    CHECK_OK(dev, store(dev, got, &band_out));
    CHECK(memcmp(got, nearest2x + 8, 8 * sizeof(float)) == 0);
    /* the same band claimed to hold row 0: output row 2 reads row 1 */
    p.in_row0 = 0;
    CHECK_STATUS(dev, sophon_tiu_resize(dev, &band_out, &band_in, &p), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "tiu_resize: out row 2 reads input rows [1, 1], in holds [0, 1)");
    p.in_row0 = 2; /* past the 2-row image */
    CHECK_STATUS(dev, sophon_tiu_resize(dev, &band_out, &band_in, &p), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "in rows [2, 3) are outside the 2-row input image");
  }

  /* argument errors */
  p = resize_params(SOPHON_RESIZE_NEAREST, SOPHON_COORD_ASYMMETRIC, SOPHON_ROUND_FLOOR, 2, 4);
  CHECK_STATUS(dev, sophon_tiu_resize(dev, &out4, &in_t, NULL), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_resize: params is NULL");
  p.method = (sophon_resize_method)7;
  CHECK_STATUS(dev, sophon_tiu_resize(dev, &out4, &in_t, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "unknown method 7");
  p.method = SOPHON_RESIZE_NEAREST;
  p.coord = (sophon_resize_coord)9;
  CHECK_STATUS(dev, sophon_tiu_resize(dev, &out4, &in_t, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "unknown coordinate mode 9");
  p.coord = SOPHON_COORD_ASYMMETRIC;
  p.out_h = 3; /* out holds 4 rows */
  CHECK_STATUS(dev, sophon_tiu_resize(dev, &out4, &in_t, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "out rows [0, 4) are outside the 3-row output image");
  p.out_h = 4;
  {
    sophon_local two = local4(1024, 1, 2, 4, 4, SOPHON_LAYOUT_ALIGNED);
    sophon_local overlapping = local4(0, 1, 1, 4, 4, SOPHON_LAYOUT_ALIGNED);
    CHECK_STATUS(dev, sophon_tiu_resize(dev, &two, &in_t, &p), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "differ in batch or channels");
    CHECK_STATUS(dev, sophon_tiu_resize(dev, &overlapping, &in_t, &p), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "overlaps");
  }
  sophon_device_destroy(dev);
}

static sophon_conv_params deconv_params(int kh, int kw, int sh, int sw, int pt, int pl, int groups) {
  sophon_conv_params p;
  memset(&p, 0, sizeof(p));
  p.kernel_h = kh;
  p.kernel_w = kw;
  p.stride_h = sh;
  p.stride_w = sw;
  p.pad_top = pt;
  p.pad_left = pl;
  p.dilation_h = p.dilation_w = 1;
  p.groups = groups;
  return p;
}

/* Hand-worked transposed convolutions: a 2x2 stride-2 kernel of ones spreads each
 * pixel over a 2x2 block; a 3-tap kernel [1 2 3] along h is a full 1-D convolution
 * (with pad_top cropping its first row, and an output-padding row getting the bias
 * alone); a grouped 1x1 scales each channel by its own weight. */
static void test_conv2d_transpose(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float image[4] = {1, 2, 3, 4}, ones[4] = {1, 1, 1, 1}, taps[3] = {1, 2, 3}, column[2] = {1, 1};
  float scales[2] = {2, 3}, half = 0.5f, got[16];
  static const float blocks[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  static const float full[5] = {1.5f, 3.5f, 5.5f, 3.5f, 0.5f};
  sophon_local in_t = local4(0, 1, 1, 2, 2, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_t = local4(256, 1, 1, 1, 4, SOPHON_LAYOUT_COMPACT);
  sophon_local out_t = local4(1024, 1, 1, 4, 4, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p = deconv_params(2, 2, 2, 2, 0, 0, 1);

  CHECK_OK(dev, load(dev, &in_t, image));
  CHECK_OK(dev, load(dev, &w_t, ones));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_conv2d_transpose(dev, &out_t, &in_t, &w_t, NULL, &p));
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK(memcmp(got, blocks, sizeof blocks) == 0);
  CHECK_EQ_INT(sophon_device_counters(dev)->macs, 16); /* one tap lands on each pixel */
  /* 5 latency + 1 lane slot * ceil(16 / 4) pixels * 1 channel * 1x1 landing taps */
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, 9);

  {
    sophon_local col = local4(0, 1, 1, 2, 1, SOPHON_LAYOUT_ALIGNED);
    sophon_local w3 = local4(256, 1, 1, 1, 3, SOPHON_LAYOUT_COMPACT);
    sophon_local b1 = local4(512, 1, 1, 1, 1, SOPHON_LAYOUT_COMPACT);
    sophon_local out5 = local4(1024, 1, 1, 5, 1, SOPHON_LAYOUT_ALIGNED);
    sophon_local out2 = local4(1024, 1, 1, 2, 1, SOPHON_LAYOUT_ALIGNED);
    CHECK_OK(dev, load(dev, &col, column));
    CHECK_OK(dev, load(dev, &w3, taps));
    CHECK_OK(dev, load(dev, &b1, &half));
    p = deconv_params(3, 1, 1, 1, 0, 0, 1);
    CHECK_OK(dev, sophon_tiu_conv2d_transpose(dev, &out5, &col, &w3, &b1, &p));
    CHECK_OK(dev, store(dev, got, &out5));
    CHECK(memcmp(got, full, sizeof full) == 0);
    p.pad_top = 1; /* rows 1 and 2 of the full result: 3 and 5 */
    CHECK_OK(dev, sophon_tiu_conv2d_transpose(dev, &out2, &col, &w3, NULL, &p));
    CHECK_OK(dev, store(dev, got, &out2));
    CHECK(got[0] == 3.0f && got[1] == 5.0f);
    p.pad_bottom = 1;
    CHECK_STATUS(dev, sophon_tiu_conv2d_transpose(dev, &out2, &col, &w3, NULL, &p),
                 SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "tiu_conv2d_transpose: padding (top 1, left 0, bottom 1, right 0)");
    p.pad_bottom = 0;
    CHECK_STATUS(dev, sophon_tiu_conv2d_transpose(dev, &out2, &col, &w_t, NULL, &p),
                 SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "weight shape (1,1,1,4) does not match (1, in.c=1, out.c/groups=1, kernel 3x1)");
  }
  {
    sophon_local two_in = local4(0, 1, 2, 2, 2, SOPHON_LAYOUT_ALIGNED);
    sophon_local two_w = local4(256, 1, 2, 1, 1, SOPHON_LAYOUT_COMPACT);
    sophon_local two_out = local4(1024, 1, 2, 2, 2, SOPHON_LAYOUT_ALIGNED);
    float two[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_OK(dev, load(dev, &two_in, two));
    CHECK_OK(dev, load(dev, &two_w, scales));
    p = deconv_params(1, 1, 1, 1, 0, 0, 2);
    CHECK_OK(dev, sophon_tiu_conv2d_transpose(dev, &two_out, &two_in, &two_w, NULL, &p));
    CHECK_OK(dev, store(dev, got, &two_out));
    CHECK(got[0] == 2.0f && got[3] == 8.0f && got[4] == 15.0f && got[7] == 24.0f);
    p.groups = 3;
    CHECK_STATUS(dev, sophon_tiu_conv2d_transpose(dev, &two_out, &two_in, &two_w, NULL, &p),
                 SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "groups 3 does not divide in.c 2 and out.c 2");
    p.groups = 2;
    CHECK_STATUS(dev, sophon_tiu_conv2d_transpose(dev, &two_in, &two_in, &two_w, NULL, &p),
                 SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "overlaps");
  }
  sophon_device_destroy(dev);
}

/* Reductions over h of two hand-made 3x2 planes, their cost, and the checks. */
static void test_reduce(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float x[12] = {1, 2, 3, 4, 5, 6, /* channel 1 */ -1, 0, 7, -3, 2, 2}, got[4];
  static const float sums[4] = {9, 12, 8, -1}, maxs[4] = {5, 6, 7, 2}, mins[4] = {1, 2, -1, -3};
  static const float means[4] = {3, 4, 8.0f / 3.0f, -1.0f / 3.0f};
  sophon_local in_t = local4(0, 1, 2, 3, 2, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = local4(1024, 1, 2, 1, 2, SOPHON_LAYOUT_ALIGNED);
  sophon_local wrong = local4(1024, 1, 2, 2, 2, SOPHON_LAYOUT_ALIGNED);

  CHECK_OK(dev, load(dev, &in_t, x));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_reduce(dev, &out_t, &in_t, SOPHON_REDUCE_SUM));
  /* 5 latency + 1 lane slot * ceil(6 / 4) passes over the input */
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, 7);
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK(memcmp(got, sums, sizeof sums) == 0);
  CHECK_OK(dev, sophon_tiu_reduce(dev, &out_t, &in_t, SOPHON_REDUCE_MEAN));
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK_ARRAY_NEAR(got, means, 4, 1e-7f);
  CHECK_OK(dev, sophon_tiu_reduce(dev, &out_t, &in_t, SOPHON_REDUCE_MAX));
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK(memcmp(got, maxs, sizeof maxs) == 0);
  CHECK_OK(dev, sophon_tiu_reduce(dev, &out_t, &in_t, SOPHON_REDUCE_MIN));
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK(memcmp(got, mins, sizeof mins) == 0);

  CHECK_STATUS(dev, sophon_tiu_reduce(dev, &wrong, &in_t, SOPHON_REDUCE_SUM), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_reduce: out shape (1,2,2,2) is not in (1,2,3,2) reduced over h");
  CHECK_STATUS(dev, sophon_tiu_reduce(dev, &out_t, &in_t, (sophon_reduce_kind)9), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_reduce: unknown reduction 9");
  CHECK_STATUS(dev, sophon_tiu_reduce(dev, &in_t, &in_t, SOPHON_REDUCE_SUM), SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

/* Normalisation of two columns of 4 values: [1 2 3 4] has mean 2.5 and variance
 * 1.25; [2 2 2 2] has variance 0, so with epsilon 0.25 it normalises to 0 (then
 * beta). gamma along h scales each row; beta along c shifts each channel. */
static void test_norm(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float x[8] = {1, 2, 2, 2, 3, 2, 4, 2}, gamma[4] = {1, 2, 3, 4}, beta[1] = {10}, got[8];
  sophon_local in_t = local4(0, 1, 1, 4, 2, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = local4(1024, 1, 1, 4, 2, SOPHON_LAYOUT_ALIGNED);
  sophon_local gamma_t = local4(2048, 1, 1, 4, 1, SOPHON_LAYOUT_COMPACT);
  sophon_local beta_t = local4(2560, 1, 1, 1, 1, SOPHON_LAYOUT_COMPACT);
  sophon_local bad_gamma = local4(2048, 1, 1, 3, 1, SOPHON_LAYOUT_COMPACT);
  sophon_norm_params p = {0.25f};
  float want[8];
  int y;
  for (y = 0; y < 4; ++y) {
    /* (x - 2.5) / sqrt(1.25 + 0.25) * gamma + beta; the constant column gives beta */
    want[2 * y] = (float)(((y + 1) - 2.5) / sqrt(1.5)) * gamma[y] + 10.0f;
    want[2 * y + 1] = 10.0f;
  }
  CHECK_OK(dev, load(dev, &in_t, x));
  CHECK_OK(dev, load(dev, &gamma_t, gamma));
  CHECK_OK(dev, load(dev, &beta_t, beta));
  sophon_device_reset_counters(dev);
  CHECK_OK(dev, sophon_tiu_norm(dev, &out_t, &in_t, &gamma_t, &beta_t, &p));
  /* 5 latency + ceil(8 / 4) passes * 8 ops */
  CHECK_EQ_INT(sophon_device_counters(dev)->tiu_cycles, 21);
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK_ARRAY_NEAR(got, want, 8, 1e-6f);
  /* without gamma and beta, in place */
  CHECK_OK(dev, sophon_tiu_norm(dev, &in_t, &in_t, NULL, NULL, &p));
  CHECK_OK(dev, store(dev, got, &in_t));
  CHECK(fabsf(got[0] + 1.5f / sqrtf(1.5f)) < 1e-6f && got[1] == 0.0f);

  CHECK_STATUS(dev, sophon_tiu_norm(dev, &out_t, &in_t, &bad_gamma, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_norm: gamma shape (1,1,3,1) does not broadcast to in (1,1,4,2)");
  p.epsilon = -1.0f;
  CHECK_STATUS(dev, sophon_tiu_norm(dev, &out_t, &in_t, NULL, NULL, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "epsilon -1 is negative");
  CHECK_STATUS(dev, sophon_tiu_norm(dev, &out_t, &in_t, NULL, NULL, NULL), SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

/* LRN over 3 channels of one pixel, x = [1 2 3], size 3, alpha 3, beta 1, bias 1:
 * the windows' square sums are 5, 14, 13 (the edges miss a channel), so
 * out = x / (1 + 3 * sum / 3) = [1/6, 2/15, 3/14]. A 4-lane chip puts channel 3 of
 * a 5-channel tensor in another lane than channel 4: the window crosses lanes. */
static void test_lrn(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float x[5] = {1, 2, 3, 0.5f, -2}, got[5];
  sophon_local in_t = local4(0, 1, 3, 1, 1, SOPHON_LAYOUT_ALIGNED);
  sophon_local out_t = local4(1024, 1, 3, 1, 1, SOPHON_LAYOUT_ALIGNED);
  sophon_local in5 = local4(0, 1, 5, 1, 1, SOPHON_LAYOUT_ALIGNED);
  sophon_local out5 = local4(1024, 1, 5, 1, 1, SOPHON_LAYOUT_ALIGNED);
  sophon_lrn_params p = {3, 3.0f, 1.0f, 1.0f};
  static const float want[3] = {1.0f / 6.0f, 2.0f / 15.0f, 3.0f / 14.0f};

  CHECK_OK(dev, load(dev, &in_t, x));
  CHECK_OK(dev, sophon_tiu_lrn(dev, &out_t, &in_t, &p));
  CHECK_OK(dev, store(dev, got, &out_t));
  CHECK_ARRAY_NEAR(got, want, 3, 1e-6f);
  /* channel 4 (lane 0, slot 1) sees channels 3 and 4: 0.25 + 4 */
  CHECK_OK(dev, load(dev, &in5, x));
  CHECK_OK(dev, sophon_tiu_lrn(dev, &out5, &in5, &p));
  CHECK_OK(dev, store(dev, got, &out5));
  CHECK(fabsf(got[4] - (-2.0f / 5.25f)) < 1e-6f);

  CHECK_STATUS(dev, sophon_tiu_lrn(dev, &in_t, &in_t, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "overlaps");
  p.size = 0;
  CHECK_STATUS(dev, sophon_tiu_lrn(dev, &out_t, &in_t, &p), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "tiu_lrn: size 0 must be positive");
  sophon_device_destroy(dev);
}

/* The fast conv2d_transpose against the reference, bit for bit, over odd shapes:
 * strides 1-3, kernels 1-4, dilation, padding, output-padding rows, groups,
 * depthwise, bias and an activation, channels across the 4 lanes. */
static void test_conv2d_transpose_fast_matches_reference(void) {
  static const struct { int n, ic, h, w, oc, kh, kw, sh, sw, pt, pl, dh, dw, groups, extra; } cases[] = {
      {1, 3, 7, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}, {2, 6, 5, 5, 4, 2, 2, 2, 2, 0, 0, 1, 1, 2, 0},
      {1, 5, 1, 1, 3, 4, 4, 2, 2, 1, 1, 1, 1, 1, 0}, {1, 5, 6, 7, 5, 3, 3, 3, 2, 2, 0, 2, 1, 5, 2},
      {1, 9, 4, 3, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0}, {1, 4, 5, 4, 6, 3, 2, 1, 3, 2, 1, 1, 2, 2, 1}};
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    const int n = cases[i].n, ic = cases[i].ic, oc = cases[i].oc, kk = cases[i].kh * cases[i].kw;
    const int oh = (cases[i].h - 1) * cases[i].sh - cases[i].pt + cases[i].dh * (cases[i].kh - 1) + 1 +
                   cases[i].extra;
    const int ow = (cases[i].w - 1) * cases[i].sw - cases[i].pl + cases[i].dw * (cases[i].kw - 1) + 1;
    const int in_count = n * ic * cases[i].h * cases[i].w, out_count = n * oc * oh * ow;
    const int w_count = ic * (oc / cases[i].groups) * kk;
    float *x = alloc_floats(in_count), *wt = alloc_floats(w_count), b[8];
    float *ref = alloc_floats(out_count), *fast = alloc_floats(out_count);
    uint32_t next = 0;
    sophon_local in_t = alloc_local(&chip, &next, n, ic, cases[i].h, cases[i].w, SOPHON_LAYOUT_ALIGNED);
    sophon_local w_t = alloc_local(&chip, &next, 1, ic, oc / cases[i].groups, kk, SOPHON_LAYOUT_COMPACT);
    sophon_local b_t = alloc_local(&chip, &next, 1, oc, 1, 1, SOPHON_LAYOUT_COMPACT);
    sophon_local out_t = alloc_local(&chip, &next, n, oc, oh, ow, SOPHON_LAYOUT_ALIGNED);
    sophon_conv_params p = deconv_params(cases[i].kh, cases[i].kw, cases[i].sh, cases[i].sw,
                                         cases[i].pt, cases[i].pl, cases[i].groups);
    p.dilation_h = cases[i].dh;
    p.dilation_w = cases[i].dw;
    p.act.kind = i % 2 ? SOPHON_ACT_RELU : SOPHON_ACT_NONE;
    fill(x, in_count, 71 + (unsigned)i);
    fill(wt, w_count, 72 + (unsigned)i);
    fill(b, oc, 73 + (unsigned)i);
    CHECK_OK(dev, load(dev, &in_t, x));
    CHECK_OK(dev, load(dev, &w_t, wt));
    CHECK_OK(dev, load(dev, &b_t, b));
    CHECK_OK(dev, sophon_device_set_reference(dev, 1));
    CHECK_OK(dev, sophon_tiu_conv2d_transpose(dev, &out_t, &in_t, &w_t, &b_t, &p));
    CHECK_OK(dev, store(dev, ref, &out_t));
    CHECK_OK(dev, sophon_device_set_reference(dev, 0));
    CHECK_OK(dev, sophon_tiu_conv2d_transpose(dev, &out_t, &in_t, &w_t, &b_t, &p));
    CHECK_OK(dev, store(dev, fast, &out_t));
    CHECK(memcmp(ref, fast, (size_t)out_count * sizeof(float)) == 0);
    free(x);
    free(wt);
    free(ref);
    free(fast);
  }
  sophon_device_destroy(dev);
}

/* The instruction table (isa/sophon_isa.c): a complete row for every TIU command
 * kind, named as the command, none for the GDMA and timestep commands. */
static void test_instruction_table(void) {
  static const struct {
    sophon_cmd_kind kind;
    const char* name;
  } tiu[] = {{SOPHON_CMD_CONV2D, "conv2d"},           {SOPHON_CMD_FC, "fc"},
             {SOPHON_CMD_POOL2D, "pool2d"},           {SOPHON_CMD_BINARY, "binary"},
             {SOPHON_CMD_ACTIVATION, "activation"},   {SOPHON_CMD_SOFTMAX, "softmax"},
             {SOPHON_CMD_CONV2D_INT8, "conv2d_int8"}, {SOPHON_CMD_FC_INT8, "fc_int8"},
             {SOPHON_CMD_ADD_INT8, "add_int8"},       {SOPHON_CMD_POOL2D_INT8, "pool2d_int8"},
             {SOPHON_CMD_RESIZE, "resize"},           {SOPHON_CMD_CONV2D_TRANSPOSE, "conv2d_transpose"},
             {SOPHON_CMD_REDUCE, "reduce"},           {SOPHON_CMD_NORM, "norm"},
             {SOPHON_CMD_LRN, "lrn"},                 {SOPHON_CMD_LUT_INT8, "lut_int8"},
             {SOPHON_CMD_BINARY_INT8, "binary_int8"},
             {SOPHON_CMD_CONV2D_TRANSPOSE_INT8, "conv2d_transpose_int8"},
             {SOPHON_CMD_RESIZE_INT8, "resize_int8"},
             {SOPHON_CMD_REDUCE_INT8, "reduce_int8"},
             {SOPHON_CMD_SOFTMAX_INT8, "softmax_int8"},
             {SOPHON_CMD_QUANTIZE_INT8, "quantize_int8"},
             {SOPHON_CMD_DEQUANTIZE_INT8, "dequantize_int8"}};
  sophon_chip chip = bm1680_chip();
  sophon_device* dev = make_device(&chip);
  sophon_operands o;
  size_t i;
  for (i = 0; i < sizeof(tiu) / sizeof(tiu[0]); ++i) {
    const sophon_instruction* ins = sophon_isa_find(tiu[i].kind);
    CHECK(ins != NULL);
    if (ins == NULL) continue;
    CHECK_EQ_INT(ins->kind, tiu[i].kind);
    CHECK(strcmp(ins->name, tiu[i].name) == 0);
    CHECK(strncmp(ins->op, "tiu_", 4) == 0 && strcmp(ins->op + 4, tiu[i].name) == 0);
    CHECK(ins->check != NULL && ins->cost != NULL && ins->reference != NULL);
  }
  CHECK(sophon_isa_find(SOPHON_CMD_LOAD) == NULL);
  CHECK(sophon_isa_find(SOPHON_CMD_STORE) == NULL);
  CHECK(sophon_isa_find(SOPHON_CMD_TIMESTEP) == NULL);
  memset(&o, 0, sizeof(o));
  CHECK_STATUS(dev, sophon_isa_execute(dev, SOPHON_CMD_TIMESTEP, &o), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "unknown instruction kind 8");
  sophon_device_destroy(dev);
}

/* ------------------------------------------------ activation kinds and special functions
 * Hand-worked values (float64, rounded): each kind applied by tiu_activation and
 * fused after a binary op and a conv, within a few float32 ulp (the C library's
 * expf/erff/tanhf/log1pf are within 1-2 ulp of the correctly rounded result). */

typedef struct {
  sophon_activation act;
  float x, want;
} act_point;

static sophon_activation act_ab(sophon_act_kind kind, float alpha, float beta) {
  sophon_activation a = act_of(kind, alpha, 0, 0);
  a.beta = beta;
  return a;
}

static int close_f32(float got, float want) {
  return fabsf(got - want) <= 4e-7f * fmaxf(1.0f, fabsf(want));
}

static void test_activation_kinds(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  const sophon_activation silu = act_of(SOPHON_ACT_SILU, 0, 0, 0);
  const sophon_activation hswish = act_of(SOPHON_ACT_HARD_SWISH, 0, 0, 0);
  const sophon_activation hsig = act_ab(SOPHON_ACT_HARD_SIGMOID, 1.0f / 6.0f, 0.5f);
  const sophon_activation hsig_onnx = act_ab(SOPHON_ACT_HARD_SIGMOID, 0.2f, 0.5f);
  const sophon_activation gelu = act_of(SOPHON_ACT_GELU, 0, 0, 0);
  const sophon_activation gelu_tanh = act_of(SOPHON_ACT_GELU_TANH, 0, 0, 0);
  const sophon_activation mish = act_of(SOPHON_ACT_MISH, 0, 0, 0);
  const sophon_activation elu = act_of(SOPHON_ACT_ELU, 1.0f, 0, 0);
  const sophon_activation elu_half = act_of(SOPHON_ACT_ELU, 0.5f, 0, 0);
  const sophon_activation softplus = act_of(SOPHON_ACT_SOFTPLUS, 0, 0, 0);
  const sophon_activation sqrt_ = act_of(SOPHON_ACT_SQRT, 0, 0, 0);
  const sophon_activation rsqrt = act_of(SOPHON_ACT_RSQRT, 0, 0, 0);
  const sophon_activation exp_ = act_of(SOPHON_ACT_EXP, 0, 0, 0);
  const sophon_activation log_ = act_of(SOPHON_ACT_LOG, 0, 0, 0);
  const sophon_activation recip = act_of(SOPHON_ACT_RECIPROCAL, 0, 0, 0);
  const sophon_activation abs_ = act_of(SOPHON_ACT_ABS, 0, 0, 0);
  const sophon_activation neg = act_of(SOPHON_ACT_NEG, 0, 0, 0);
  const sophon_activation erf_ = act_of(SOPHON_ACT_ERF, 0, 0, 0);
  const act_point points[] = {
      {silu, 0.0f, 0.0f}, {silu, 1.0f, 0.7310585786f}, {silu, -1.0f, -0.2689414214f},
      /* x * clip(x + 3, 0, 6) / 6 */
      {hswish, -4.0f, 0.0f}, {hswish, -1.5f, -0.375f}, {hswish, 1.0f, 0.6666666667f},
      {hswish, 3.0f, 3.0f}, {hswish, 10.0f, 10.0f},
      /* clip(alpha * x + beta, 0, 1) */
      {hsig, -4.0f, 0.0f}, {hsig, 0.0f, 0.5f}, {hsig, 4.0f, 1.0f}, {hsig_onnx, 1.0f, 0.7f},
      /* x * (1 + erf(x / sqrt 2)) / 2; the tanh form */
      {gelu, 0.0f, 0.0f}, {gelu, 1.0f, 0.8413447461f}, {gelu, -1.0f, -0.1586552539f},
      {gelu, 2.0f, 1.9544997361f}, {gelu_tanh, 1.0f, 0.8411919906f},
      {gelu_tanh, -1.0f, -0.1588080094f}, {gelu_tanh, 2.0f, 1.9545976941f},
      /* x * tanh(softplus(x)) */
      {mish, 0.0f, 0.0f}, {mish, 1.0f, 0.8650983883f}, {mish, -1.0f, -0.3034014614f},
      {mish, 30.0f, 30.0f},
      /* x > 0 ? x : alpha * (exp(x) - 1) */
      {elu, 2.0f, 2.0f}, {elu, -1.0f, -0.6321205588f}, {elu_half, -2.0f, -0.4323323584f},
      /* log(1 + exp(x)), stable: no overflow at 100, no underflow to 0 at -100 */
      {softplus, 0.0f, 0.6931471806f}, {softplus, 1.0f, 1.3132616875f},
      {softplus, 100.0f, 100.0f},
      {sqrt_, 4.0f, 2.0f}, {sqrt_, 2.0f, 1.4142135624f}, {rsqrt, 4.0f, 0.5f},
      {exp_, 1.0f, 2.7182818285f}, {log_, 2.7182818285f, 1.0f}, {recip, 4.0f, 0.25f},
      {recip, -0.5f, -2.0f}, {abs_, -3.0f, 3.0f}, {neg, 3.0f, -3.0f},
      {erf_, 0.5f, 0.5204998778f}, {erf_, 1.0f, 0.8427007929f},
  };
  const int count = (int)(sizeof(points) / sizeof(points[0]));
  sophon_local in_t = local4(0, 1, 1, 1, 1, SOPHON_LAYOUT_COMPACT);
  sophon_local out_t = local4(64, 1, 1, 1, 1, SOPHON_LAYOUT_COMPACT);
  int k;
  for (k = 0; k < count; ++k) {
    float x = points[k].x, got = 0.0f;
    CHECK_OK(dev, load(dev, &in_t, &x));
    CHECK_OK(dev, sophon_tiu_activation(dev, &out_t, &in_t, &points[k].act));
    CHECK_OK(dev, store(dev, &got, &out_t));
    if (!close_f32(got, points[k].want))
      printf("activation kind %d at %g: got %.9g, want %.9g\n", (int)points[k].act.kind,
             (double)x, (double)got, (double)points[k].want);
    CHECK(close_f32(got, points[k].want));
  }
  /* the edges: softplus(-100) is exp(-100) (a subnormal, not 0), abs(-0) is +0,
   * hard-swish(-3) is -0 (x * 0) */
  {
    float v[3] = {-100.0f, -0.0f, -3.0f}, r[3];
    sophon_local t = local4(128, 1, 1, 1, 3, SOPHON_LAYOUT_COMPACT);
    CHECK_OK(dev, load(dev, &t, v));
    CHECK_OK(dev, sophon_tiu_activation(dev, &t, &t, &softplus));
    CHECK_OK(dev, store(dev, r, &t));
    CHECK(r[0] > 0.0f && r[0] < 1e-43f);
    CHECK_OK(dev, load(dev, &t, v));
    CHECK_OK(dev, sophon_tiu_activation(dev, &t, &t, &abs_));
    CHECK_OK(dev, store(dev, r, &t));
    CHECK(r[1] == 0.0f && !signbit(r[1]));
    CHECK_OK(dev, load(dev, &t, v));
    CHECK_OK(dev, sophon_tiu_activation(dev, &t, &t, &hswish));
    CHECK_OK(dev, store(dev, r, &t));
    CHECK(r[2] == 0.0f && signbit(r[2]));
  }
  /* bad parameters name the kind */
  {
    sophon_activation bad = act_ab(SOPHON_ACT_HARD_SIGMOID, NAN, 0.5f);
    CHECK_STATUS(dev, sophon_tiu_activation(dev, &out_t, &in_t, &bad), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "hard-sigmoid alpha or beta is NaN");
    bad = act_of(SOPHON_ACT_ELU, NAN, 0, 0);
    CHECK_STATUS(dev, sophon_tiu_activation(dev, &out_t, &in_t, &bad), SOPHON_ERR_ARGUMENT);
    CHECK_ERROR_HAS(dev, "elu alpha is NaN");
  }
  sophon_device_destroy(dev);
}

/* Every kind fused after conv2d and binary equals the unfused op followed by
 * tiu_activation, bit for bit (the reference applies the same function after the
 * bias / the binary op). */
static void test_fused_activation_kinds(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  enum { N = 1, IC = 3, OC = 5, H = 4, W = 4, IN = N * IC * H * W, OUT = N * OC * H * W };
  float x[IN], wt[OC * IC * 9], bias[OC], fused[OUT], split[OUT];
  sophon_local in_t = local4(0, N, IC, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_local w_t = local4(256, 1, OC, IC, 9, SOPHON_LAYOUT_COMPACT);
  sophon_local b_t = local4(512, 1, OC, 1, 1, SOPHON_LAYOUT_COMPACT);
  sophon_local out_t = local4(768, N, OC, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_local tmp_t = local4(1024, N, OC, H, W, SOPHON_LAYOUT_ALIGNED);
  sophon_conv_params p = conv_params(3, 3, 1, 1, 1, 1);
  int kind;
  fill(x, IN, 61);
  fill(wt, OC * IC * 9, 62);
  fill(bias, OC, 63);
  for (kind = 0; kind < IN; ++kind) x[kind] *= 3.0f;
  CHECK_OK(dev, load(dev, &in_t, x));
  CHECK_OK(dev, load(dev, &w_t, wt));
  CHECK_OK(dev, load(dev, &b_t, bias));
  for (kind = SOPHON_ACT_SILU; kind <= SOPHON_ACT_ERF; ++kind) {
    const sophon_activation act = act_ab((sophon_act_kind)kind, 0.7f, 0.25f);
    p.act = act_of(SOPHON_ACT_NONE, 0, 0, 0);
    CHECK_OK(dev, sophon_tiu_conv2d(dev, &tmp_t, &in_t, &w_t, &b_t, &p));
    CHECK_OK(dev, sophon_tiu_activation(dev, &tmp_t, &tmp_t, &act));
    CHECK_OK(dev, store(dev, split, &tmp_t));
    p.act = act;
    CHECK_OK(dev, sophon_tiu_conv2d(dev, &out_t, &in_t, &w_t, &b_t, &p));
    CHECK_OK(dev, store(dev, fused, &out_t));
    CHECK(memcmp(fused, split, sizeof fused) == 0);
    /* binary: out = act(tmp * bias) */
    CHECK_OK(dev, sophon_tiu_binary(dev, &out_t, &tmp_t, &b_t, SOPHON_BINARY_MUL, &act));
    CHECK_OK(dev, store(dev, fused, &out_t));
    CHECK_OK(dev, sophon_tiu_binary(dev, &tmp_t, &tmp_t, &b_t, SOPHON_BINARY_MUL, NULL));
    CHECK_OK(dev, sophon_tiu_activation(dev, &tmp_t, &tmp_t, &act));
    CHECK_OK(dev, store(dev, split, &tmp_t));
    CHECK(memcmp(fused, split, sizeof fused) == 0);
  }
  sophon_device_destroy(dev);
}

/* DIV and PRELU (a > 0 ? a : a * slope, the slope per channel) by hand. */
static void test_binary_div_prelu(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float a[6] = {-2.0f, 3.0f, -0.0f, 1.0f, -4.0f, 0.5f}, slope[2] = {0.25f, 0.5f}, got[6];
  const float div_want[6] = {-8.0f, 12.0f, -0.0f, 2.0f, -8.0f, 1.0f};
  const float prelu_want[6] = {-0.5f, 3.0f, -0.0f, 1.0f, -2.0f, 0.5f};
  sophon_local a_t = local4(0, 1, 2, 1, 3, SOPHON_LAYOUT_ALIGNED);
  sophon_local s_t = local4(256, 1, 2, 1, 1, SOPHON_LAYOUT_COMPACT);
  sophon_local out_t = local4(512, 1, 2, 1, 3, SOPHON_LAYOUT_ALIGNED);
  int i;
  CHECK_OK(dev, load(dev, &a_t, a));
  CHECK_OK(dev, load(dev, &s_t, slope));
  CHECK_OK(dev, sophon_tiu_binary(dev, &out_t, &a_t, &s_t, SOPHON_BINARY_DIV, NULL));
  CHECK_OK(dev, store(dev, got, &out_t));
  for (i = 0; i < 6; ++i) CHECK(got[i] == div_want[i] && signbit(got[i]) == signbit(div_want[i]));
  CHECK_OK(dev, sophon_tiu_binary(dev, &out_t, &a_t, &s_t, SOPHON_BINARY_PRELU, NULL));
  CHECK_OK(dev, store(dev, got, &out_t));
  for (i = 0; i < 6; ++i) CHECK(got[i] == prelu_want[i]);
  CHECK_STATUS(dev, sophon_tiu_binary(dev, &out_t, &a_t, &s_t, (sophon_binary_op)99, NULL),
               SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

/* The cost model charges the special functions more than an add (sophon_cost.h). */
static void test_activation_costs(void) {
  sophon_chip chip = small_chip();
  sophon_local out = local4(0, 1, 64, 8, 8, SOPHON_LAYOUT_ALIGNED);
  sophon_activation relu = act_of(SOPHON_ACT_RELU, 0, 0, 0), exp_ = act_of(SOPHON_ACT_EXP, 0, 0, 0);
  sophon_activation mish = act_of(SOPHON_ACT_MISH, 0, 0, 0), hswish = act_of(SOPHON_ACT_HARD_SWISH, 0, 0, 0);
  CHECK(sophon_cost_activation(&chip, &out, &exp_) > sophon_cost_activation(&chip, &out, &relu));
  CHECK(sophon_cost_activation(&chip, &out, &mish) > sophon_cost_activation(&chip, &out, &exp_));
  CHECK(sophon_cost_activation(&chip, &out, &hswish) > sophon_cost_activation(&chip, &out, &relu));
  CHECK(sophon_cost_binary_op(&chip, &out, SOPHON_BINARY_DIV, NULL) >
        sophon_cost_binary_op(&chip, &out, SOPHON_BINARY_ADD, NULL));
}

/* The pool runs each task of a run exactly once, with the run's task count (at most
 * the pool's size), whichever thread claims it. */
typedef struct {
  int32_t runs[8];
  int32_t seen_tasks[8];
} pool_job;

static void pool_task(void* ctx, int32_t task, int32_t num_tasks) {
  pool_job* job = (pool_job*)ctx;
  __atomic_add_fetch(&job->runs[task], 1, __ATOMIC_RELAXED);
  job->seen_tasks[task] = num_tasks;
}

static void test_thread_pool(void) {
  int32_t threads, run, task;
  for (threads = 2; threads <= 3; ++threads) {
    int failed = 0, bad = 0;
    sophon_thread_pool* pool = sophon_thread_pool_create(threads, &failed);
    CHECK(pool != NULL && !failed);
    if (pool == NULL) continue;
    for (run = 0; run < 3000; ++run) {
      const int32_t asked = 1 + run % 5, tasks = asked < threads ? asked : threads;
      pool_job job;
      memset(&job, 0, sizeof job);
      sophon_parallel_run(pool, asked, pool_task, &job);
      for (task = 0; task < 8; ++task)
        bad += job.runs[task] != (task < tasks) || (task < tasks && job.seen_tasks[task] != tasks);
    }
    CHECK_EQ_INT(bad, 0);
    sophon_thread_pool_destroy(pool);
  }
}

int main(void) {
  test_names_and_sizes();
  test_thread_pool();
  test_device_create();
  test_layout_functions();
  test_lane_layout();
  test_gdma_roundtrip_nchw();
  test_gdma_roundtrip_nhwc();
  test_gdma_broadcast_load();
  test_gdma_int8();
  test_copy_transpose();
  test_copy_negative_and_broadcast();
  test_fill();
  test_copy_fill_argument_errors();
  test_bounds();
  test_conv_golden();
  test_conv_cases();
  test_fc();
  test_max_pool();
  test_avg_pool();
  test_binary();
  test_activations();
  test_activation_kinds();
  test_fused_activation_kinds();
  test_binary_div_prelu();
  test_activation_costs();
  test_softmax();
  test_argument_errors();
  test_counters();
  test_timesteps();
  test_row_window();
  test_cost_functions();
  test_cost_silicon_terms();
  test_cost_4n_and_eltwise_terms();
  test_bm1680_conv();
  test_resize();
  test_conv2d_transpose();
  test_conv2d_transpose_fast_matches_reference();
  test_reduce();
  test_norm();
  test_lrn();
  test_instruction_table();
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed > 0 ? 1 : 0;
}
