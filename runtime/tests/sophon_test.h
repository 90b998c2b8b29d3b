/*
 * sophon_test.h - the tiny harness of the runtime's C test programs: each failing
 * CHECK prints file:line, a program ends with "N passed, M failed" and exits
 * nonzero iff a check failed (one translation unit per program).
 */
#ifndef SOPHON_TEST_H_
#define SOPHON_TEST_H_

#include <stdio.h>
#include <string.h>

#include "sophon.h"

static int g_passed = 0;
static int g_failed = 0;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (cond) {                                                       \
      ++g_passed;                                                     \
    } else {                                                          \
      ++g_failed;                                                     \
      printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                 \
  } while (0)

#define CHECK_EQ_INT(got, want)                                                          \
  do {                                                                                   \
    long long check_got_ = (long long)(got), check_want_ = (long long)(want);            \
    if (check_got_ == check_want_) {                                                     \
      ++g_passed;                                                                        \
    } else {                                                                             \
      ++g_failed;                                                                        \
      printf("%s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, #got, check_got_, \
             check_want_);                                                               \
    }                                                                                    \
  } while (0)

/* The test programs' small chips: `npu_num` lanes of `lmem_bytes_per_lane`, 4 banks,
 * `eu_bytes` per lane, int8, a 1 GHz clock, 4 DDR bytes per cycle, 10 and 5 cycles of
 * GDMA and TIU latency. */
static inline sophon_chip sophon_test_chip(const char* name, int32_t npu_num, uint32_t lmem_bytes_per_lane,
                                    int32_t eu_bytes) {
  sophon_chip chip;
  memset(&chip, 0, sizeof chip);
  chip.name = name;
  chip.npu_num = npu_num;
  chip.lmem_bytes_per_lane = lmem_bytes_per_lane;
  chip.lmem_banks = 4;
  chip.eu_bytes = eu_bytes;
  chip.has_int8 = 1;
  chip.clock_hz = 1e9;
  chip.ddr_bytes_per_second = 4e9;
  chip.power_watts = 1.0;
  chip.gdma_latency_cycles = 10;
  chip.tiu_latency_cycles = 5;
  return chip;
}

/* Checks a status; on a mismatch also prints the device's message. */
#define CHECK_STATUS(dev, expr, expected)                                            \
  do {                                                                               \
    sophon_status check_status_ = (expr);                                            \
    if (check_status_ == (expected)) {                                               \
      ++g_passed;                                                                    \
    } else {                                                                         \
      ++g_failed;                                                                    \
      printf("%s:%d: %s returned %s, expected %s (error: %s)\n", __FILE__, __LINE__, \
             #expr, sophon_status_name(check_status_), sophon_status_name(expected), \
             sophon_device_error(dev));                                              \
    }                                                                                \
  } while (0)

#define CHECK_OK(dev, expr) CHECK_STATUS(dev, expr, SOPHON_OK)

/* The device's message contains `needle`. */
#define CHECK_ERROR_HAS(dev, needle)                                             \
  do {                                                                           \
    if (strstr(sophon_device_error(dev), (needle)) != NULL) {                    \
      ++g_passed;                                                                \
    } else {                                                                     \
      ++g_failed;                                                                \
      printf("%s:%d: error \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
             sophon_device_error(dev), (needle));                                \
    }                                                                            \
  } while (0)

/* A local tensor at `addr` of shape (n, c, h, w), its channel stride the layout's own. */
static inline sophon_local sophon_test_local(uint32_t addr, int32_t n, int32_t c, int32_t h, int32_t w,
                                             sophon_dtype dtype, sophon_layout layout) {
  sophon_local t;
  memset(&t, 0, sizeof t);
  t.addr = addr;
  t.n = n;
  t.c = c;
  t.h = h;
  t.w = w;
  t.dtype = dtype;
  t.layout = layout;
  return t;
}

/* The dense NCHW host view of `data` with t's shape. */
static inline sophon_global sophon_test_dense_view(void* data, const sophon_local* t) {
  sophon_global g;
  g.data = data;
  g.n = t->n;
  g.c = t->c;
  g.h = t->h;
  g.w = t->w;
  g.stride_w = 1;
  g.stride_h = t->w;
  g.stride_c = (int64_t)t->h * t->w;
  g.stride_n = (int64_t)t->c * t->h * t->w;
  g.dtype = t->dtype;
  return g;
}

#endif /* SOPHON_TEST_H_ */
