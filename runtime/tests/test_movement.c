/*
 * test_movement.c - the GDMA's DDR-to-DDR instructions: sophon_gdma_copy (S2S,
 * 4-D strided views on both sides) and sophon_gdma_fill (constant fill), their
 * results element by element against plain index arithmetic, their counters and
 * cost, and their argument checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sophon.h"
#include "sophon_cost.h"

#include "sophon_test.h"

/* 4 lanes, 4 DDR bytes per cycle, 10 cycles of GDMA latency. */
static sophon_chip small_chip(void) {
  sophon_chip chip;
  memset(&chip, 0, sizeof chip);
  chip.name = "test-small";
  chip.npu_num = 4;
  chip.lmem_bytes_per_lane = 4096;
  chip.lmem_banks = 4;
  chip.eu_bytes = 16;
  chip.has_int8 = 1;
  chip.clock_hz = 1e9;
  chip.ddr_bytes_per_second = 4e9;
  chip.power_watts = 1.0;
  chip.gdma_latency_cycles = 10;
  chip.tiu_latency_cycles = 5;
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

static sophon_global view(void* data, int n, int c, int h, int w, int64_t sn, int64_t sc,
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
  sophon_global s = view(src, N, C, H, W, C * H * W, H * W, W, 1);
  sophon_global d = view(dst, N, C, H, W, H * W * C, 1, W * C, C);
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
  CHECK_EQ_INT(sophon_cost_gdma_copy(&chip, COUNT * 4), 10 + 420);
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
  sophon_global s = view(src + 8, 1, 4, 5, 1, 36, 9, -2, 1);
  sophon_global d = view(dst, 1, 4, 5, 1, 20, 5, 1, 1);
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
  s = view(vec, 2, 3, 1, 4, 0, 1, 0, 0);
  d = view(wide, 2, 3, 1, 4, 12, 4, 4, 1);
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
  sophon_global d = view(plane, 1, 1, 2, 6, 30, 30, 24, 1);
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
  d = view(bytes, 1, 1, 1, 8, 8, 8, 8, 1);
  d.dtype = SOPHON_I8;
  CHECK_OK(dev, sophon_gdma_fill(dev, &d, -128.0));
  CHECK(bytes[0] == -128 && bytes[7] == -128);
  CHECK_STATUS(dev, sophon_gdma_fill(dev, &d, 0.5), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "not an int8 value");
  d = view(words, 1, 1, 1, 3, 3, 3, 3, 1);
  d.dtype = SOPHON_I32;
  CHECK_OK(dev, sophon_gdma_fill(dev, &d, 123456.0));
  CHECK(words[0] == 123456 && words[2] == 123456);
  CHECK_STATUS(dev, sophon_gdma_fill(dev, &d, 3e10), SOPHON_ERR_ARGUMENT);
  sophon_device_destroy(dev);
}

static void test_argument_errors(void) {
  sophon_chip chip = small_chip();
  sophon_device* dev = make_device(&chip);
  float a[64], b[64];
  sophon_global s = view(a, 1, 2, 4, 4, 32, 16, 4, 1);
  sophon_global d = view(b, 1, 2, 4, 4, 32, 16, 4, 1);
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
  bad = view(a + 8, 1, 2, 4, 4, 32, 16, 4, 1);
  CHECK_STATUS(dev, sophon_gdma_copy(dev, &bad, &s), SOPHON_ERR_ARGUMENT);
  CHECK_ERROR_HAS(dev, "overlap");
  /* disjoint halves of one buffer are fine */
  bad = view(a + 32, 1, 2, 4, 2, 32, 8, 2, 1);
  s = view(a, 1, 2, 4, 2, 32, 8, 2, 1);
  CHECK_OK(dev, sophon_gdma_copy(dev, &bad, &s));
  CHECK(sophon_gdma_copy(NULL, &d, &s) == SOPHON_ERR_ARGUMENT);
  CHECK_EQ_INT(sophon_device_counters(dev)->gdma_instructions, 1);
  sophon_device_destroy(dev);
}

int main(void) {
  test_copy_transpose();
  test_copy_negative_and_broadcast();
  test_fill();
  test_argument_errors();
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
