/*
 * test_deferred.c - deferred constant loads (sophon_gdma_load_constant) against
 * plain loads: every test runs the same operations on two devices, one loading its
 * weights with sophon_gdma_load_constant, the other with sophon_gdma_load, and
 * requires the same statuses, outputs, counters and LMEM contents, bit for bit, at
 * every instruction-set level and at 1 and 2 threads. The cases are the ways a
 * deferred load could be observed stale: a conv reading the weight from DDR (the
 * packed copy), another instruction or a store reading the weight's LMEM, a later
 * load or instruction overwriting part of it (with gaps, on fewer lanes, in the
 * middle), sophon_lmem_read / _write, DDR writes to the weight's source, the table
 * of deferred loads overflowing, and a random sequence of all of these.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sophon.h"
#include "sophon_test.h"

/* 16 lanes x 64 KiB, EU_NUM(f32) = 16. */
static sophon_chip test_chip(void) { return sophon_test_chip("test-deferred", 16, 64 * 1024, 64); }

/* The two devices of a test: dev[0] defers constant loads, dev[1] copies them. */
typedef struct {
  sophon_device* dev[2];
} twins;

static twins make_twins(int32_t isa, int32_t threads) {
  const sophon_chip chip = test_chip();
  twins t;
  int i;
  for (i = 0; i < 2; ++i) {
    if (sophon_device_create(&chip, &t.dev[i]) != SOPHON_OK ||
        sophon_device_set_isa(t.dev[i], isa) != SOPHON_OK ||
        sophon_device_set_threads(t.dev[i], threads) != SOPHON_OK) {
      printf("%s:%d: device set-up failed\n", __FILE__, __LINE__);
      exit(2);
    }
  }
  return t;
}

/* The same counters and the same bytes in every lane of both devices (reading
 * dev[0]'s LMEM settles its deferred loads: call it last). */
static int same_state(twins* t) {
  const sophon_chip* chip = sophon_device_chip(t->dev[0]);
  const size_t lane = (size_t)chip->lmem_bytes_per_lane;
  uint8_t* a = (uint8_t*)malloc(lane);
  uint8_t* b = (uint8_t*)malloc(lane);
  int32_t l;
  int same = memcmp(sophon_device_counters(t->dev[0]), sophon_device_counters(t->dev[1]),
                    sizeof(sophon_counters)) == 0;
  if (!same) printf("counters differ\n");
  for (l = 0; l < chip->npu_num && same; ++l) {
    same = sophon_lmem_read(t->dev[0], l, 0, a, lane) == SOPHON_OK &&
           sophon_lmem_read(t->dev[1], l, 0, b, lane) == SOPHON_OK && memcmp(a, b, lane) == 0;
    if (!same) printf("lane %d differs\n", (int)l);
  }
  free(a);
  free(b);
  return same;
}

static void destroy_twins(twins* t) {
  sophon_device_destroy(t->dev[0]);
  sophon_device_destroy(t->dev[1]);
}

static sophon_local local4(uint32_t addr, int n, int c, int h, int w, sophon_layout layout) {
  return sophon_test_local(addr, n, c, h, w, SOPHON_F32, layout);
}

/* The NCHW-contiguous view of `data` with t's shape. */
static sophon_global view_of(float* data, const sophon_local* t) {
  return sophon_test_dense_view(data, t);
}

static uint32_t g_seed = 12345u;
static uint32_t next_random(void) {
  g_seed = g_seed * 1664525u + 1013904223u;
  return g_seed >> 8;
}
static float random_float(void) { return (float)(next_random() % 2001) / 1000.0f - 1.0f; }
static void fill_random(float* x, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) x[i] = random_float();
}

/* Loads `t` from `data` on both devices: a constant load on dev[0] when `constant`. */
static void load_both(twins* tw, const sophon_local* t, float* data, int constant) {
  const sophon_global g = view_of(data, t);
  const sophon_status a = constant ? sophon_gdma_load_constant(tw->dev[0], t, &g)
                                   : sophon_gdma_load(tw->dev[0], t, &g);
  const sophon_status b = sophon_gdma_load(tw->dev[1], t, &g);
  CHECK_EQ_INT(a, b);
}

/* Runs a conv on both devices and requires the same status and output bits. */
static void conv_both(twins* tw, const sophon_local* out, const sophon_local* in,
                      const sophon_local* w, const sophon_local* bias,
                      const sophon_conv_params* p) {
  const size_t count = (size_t)out->n * out->c * out->h * out->w;
  float* got[2];
  int i;
  for (i = 0; i < 2; ++i) {
    sophon_global g;
    got[i] = (float*)calloc(count, sizeof(float));
    g = view_of(got[i], out);
    CHECK_OK(tw->dev[i], sophon_tiu_conv2d(tw->dev[i], out, in, w, bias, p));
    CHECK_OK(tw->dev[i], sophon_gdma_store(tw->dev[i], &g, out));
  }
  CHECK(memcmp(got[0], got[1], count * sizeof(float)) == 0);
  free(got[0]);
  free(got[1]);
}

static sophon_conv_params conv_params(int k, int s, int pad, int groups) {
  sophon_conv_params p;
  memset(&p, 0, sizeof p);
  p.kernel_h = p.kernel_w = k;
  p.stride_h = p.stride_w = s;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = pad;
  p.dilation_h = p.dilation_w = 1;
  p.groups = groups;
  p.act.kind = SOPHON_ACT_RELU;
  return p;
}

/* One conv whose weight and bias are constant loads: the fast conv reads the
 * weight from DDR (packed once), twice, then the weight's LMEM is read by
 * sophon_lmem_read (same_state). */
static void conv_case(int32_t isa, int32_t threads, int n, int ic, int hw, int oc, int k,
                      int s, int pad, int groups) {
  twins tw = make_twins(isa, threads);
  const int oh = (hw + 2 * pad - k) / s + 1;
  const sophon_local in = local4(0, n, ic, hw, hw, SOPHON_LAYOUT_ALIGNED);
  const sophon_local w = local4(16384, 1, oc, ic / groups, k * k, SOPHON_LAYOUT_COMPACT);
  const sophon_local bias = local4(40960, 1, oc, 1, 1, SOPHON_LAYOUT_COMPACT);
  const sophon_local out = local4(45056, n, oc, oh, oh, SOPHON_LAYOUT_ALIGNED);
  const size_t in_count = (size_t)n * ic * hw * hw, w_count = (size_t)oc * (ic / groups) * k * k;
  float* x = (float*)malloc(in_count * sizeof(float));
  float* wd = (float*)malloc(w_count * sizeof(float));
  float* bd = (float*)malloc((size_t)oc * sizeof(float));
  const sophon_conv_params p = conv_params(k, s, pad, groups);
  int round;
  fill_random(x, in_count);
  fill_random(wd, w_count);
  fill_random(bd, (size_t)oc);
  load_both(&tw, &in, x, 0);
  for (round = 0; round < 2; ++round) { /* the second finds the packed copy */
    load_both(&tw, &w, wd, 1);
    load_both(&tw, &bias, bd, 1);
    conv_both(&tw, &out, &in, &w, &bias, &p);
  }
  CHECK(same_state(&tw));
  destroy_twins(&tw);
  free(x);
  free(wd);
  free(bd);
}

static void test_conv_reads_deferred_weight(int32_t isa, int32_t threads) {
  conv_case(isa, threads, 1, 8, 8, 24, 3, 1, 1, 1);   /* padded 3x3: phase planes */
  conv_case(isa, threads, 1, 16, 6, 20, 1, 1, 0, 1);  /* 1x1 by rows; 20 = 16 + 4 lanes */
  conv_case(isa, threads, 2, 6, 9, 13, 3, 2, 1, 1);   /* stride 2, 13 rows: a part panel */
  conv_case(isa, threads, 1, 8, 6, 12, 3, 1, 1, 2);   /* groups: A packed per group */
  conv_case(isa, threads, 1, 32, 3, 64, 3, 1, 1, 1);  /* deep, small: tasks own A panels */
  conv_case(isa, threads, 1, 4, 5, 4, 3, 1, 1, 4);    /* depthwise: reads LMEM */
}

/* Something other than the conv reads the weight's LMEM: an activation over a view
 * of its bytes, a store of it, sophon_lmem_read of one lane. */
static void test_other_readers(int32_t isa, int32_t threads) {
  twins tw = make_twins(isa, threads);
  const sophon_local w = local4(4096, 1, 24, 8, 9, SOPHON_LAYOUT_COMPACT);
  const sophon_local view = local4(4096 + 64, 1, 16, 4, 4, SOPHON_LAYOUT_COMPACT);
  const sophon_local out = local4(32768, 1, 16, 4, 4, SOPHON_LAYOUT_COMPACT);
  sophon_activation relu;
  float wd[24 * 72], stored[2][24 * 72], lane[2][256];
  int i;
  memset(&relu, 0, sizeof relu);
  relu.kind = SOPHON_ACT_RELU;
  fill_random(wd, 24 * 72);
  load_both(&tw, &w, wd, 1);
  for (i = 0; i < 2; ++i) {
    sophon_global g = view_of(stored[i], &w);
    CHECK_OK(tw.dev[i], sophon_lmem_read(tw.dev[i], 5, 4096 + 128, lane[i], sizeof lane[i]));
    CHECK_OK(tw.dev[i], sophon_tiu_activation(tw.dev[i], &out, &view, &relu));
    CHECK_OK(tw.dev[i], sophon_gdma_store(tw.dev[i], &g, &w));
  }
  CHECK(memcmp(lane[0], lane[1], sizeof lane[0]) == 0);
  CHECK(memcmp(stored[0], stored[1], sizeof stored[0]) == 0);
  CHECK(memcmp(stored[0], wd, sizeof wd) == 0);
  CHECK(same_state(&tw));
  destroy_twins(&tw);
}

/* Writes over part of a deferred weight, then reads all of it: a load into its
 * middle, an instruction whose output has gaps (aligned 3x3 planes), one on fewer
 * lanes than the weight, one with a part last slot, a raw lmem_write; each followed
 * by a conv over the weight (no longer whole: it reads LMEM) and a full compare. */
static void test_partial_overwrites(int32_t isa, int32_t threads) {
  const sophon_local in = local4(0, 1, 8, 6, 6, SOPHON_LAYOUT_ALIGNED);
  const sophon_local w = local4(8192, 1, 32, 8, 9, SOPHON_LAYOUT_COMPACT);
  const sophon_local out = local4(49152, 1, 32, 6, 6, SOPHON_LAYOUT_ALIGNED);
  const sophon_conv_params p = conv_params(3, 1, 1, 1);
  const sophon_local writers[5] = {
      local4(8192 + 200, 1, 16, 1, 10, SOPHON_LAYOUT_COMPACT), /* a load into the middle */
      local4(8192 + 64, 1, 16, 3, 3, SOPHON_LAYOUT_ALIGNED),   /* gaps of 7 floats */
      local4(8192 + 128, 1, 3, 4, 4, SOPHON_LAYOUT_COMPACT),   /* lanes 0-2 only */
      local4(8192, 1, 20, 4, 4, SOPHON_LAYOUT_COMPACT),        /* lanes 0-3 two slots */
      local4(8192 + 256, 2, 16, 2, 2, SOPHON_LAYOUT_COMPACT),  /* two batch items */
  };
  float x[8 * 36], wd[32 * 72], src[2 * 20 * 16];
  sophon_activation neg;
  int k, i;
  memset(&neg, 0, sizeof neg);
  neg.kind = SOPHON_ACT_LEAKY_RELU;
  neg.alpha = 0.5f;
  fill_random(x, 8 * 36);
  fill_random(wd, 32 * 72);
  fill_random(src, 2 * 20 * 16);
  for (k = 0; k < 6; ++k) {
    twins tw = make_twins(isa, threads);
    load_both(&tw, &in, x, 0);
    load_both(&tw, &w, wd, 1);
    if (k == 0) {
      load_both(&tw, &writers[0], src, 0);
    } else if (k < 5) { /* an instruction writes: out = act(in), in elsewhere */
      sophon_local from = writers[k];
      from.addr = 40960;
      load_both(&tw, &from, src, 0);
      for (i = 0; i < 2; ++i)
        CHECK_OK(tw.dev[i], sophon_tiu_activation(tw.dev[i], &writers[k], &from, &neg));
    } else { /* a raw write of 12 bytes into lane 7 */
      for (i = 0; i < 2; ++i)
        CHECK_OK(tw.dev[i], sophon_lmem_write(tw.dev[i], 7, 8192 + 100, src, 12));
    }
    conv_both(&tw, &out, &in, &w, NULL, &p);
    CHECK(same_state(&tw));
    destroy_twins(&tw);
  }
}

/* DDR writes to a weight's source after its deferred load: LMEM keeps the old
 * values (the conv reads them), and a later load of the new values is not served
 * by the old packed copy. */
static void test_source_written(int32_t isa, int32_t threads) {
  twins tw = make_twins(isa, threads);
  const sophon_local in = local4(0, 1, 8, 6, 6, SOPHON_LAYOUT_ALIGNED);
  const sophon_local w = local4(8192, 1, 16, 8, 9, SOPHON_LAYOUT_COMPACT);
  const sophon_local out = local4(32768, 1, 16, 6, 6, SOPHON_LAYOUT_ALIGNED);
  const sophon_conv_params p = conv_params(3, 1, 1, 1);
  float x[8 * 36], wd[16 * 72], other[16 * 72];
  sophon_global g;
  int i;
  fill_random(x, 8 * 36);
  fill_random(wd, 16 * 72);
  fill_random(other, 16 * 72);
  load_both(&tw, &in, x, 0);
  load_both(&tw, &w, wd, 1);
  conv_both(&tw, &out, &in, &w, NULL, &p); /* packs the weight */
  load_both(&tw, &w, wd, 1);
  g = view_of(wd, &w);
  for (i = 0; i < 2; ++i) CHECK_OK(tw.dev[i], sophon_gdma_fill(tw.dev[i], &g, 0.25));
  conv_both(&tw, &out, &in, &w, NULL, &p); /* the values loaded before the fill */
  load_both(&tw, &w, wd, 1);               /* now all 0.25 */
  conv_both(&tw, &out, &in, &w, NULL, &p);
  {
    sophon_global from = view_of(other, &w);
    for (i = 0; i < 2; ++i) CHECK_OK(tw.dev[i], sophon_gdma_copy(tw.dev[i], &g, &from));
  }
  conv_both(&tw, &out, &in, &w, NULL, &p); /* still 0.25 in LMEM */
  load_both(&tw, &w, wd, 1);
  conv_both(&tw, &out, &in, &w, NULL, &p); /* `other` */
  CHECK(same_state(&tw));
  destroy_twins(&tw);
}

/* An fc whose weight is a constant load: read from its packed copy, twice; then a
 * load overwrites a strip of it and the fc reads LMEM, the rest of the weight
 * copied from DDR. With `transposed` the view has the features innermost (as the
 * compiler loads some fc weights): deferred from a packed contiguous copy of the
 * view, which the strip's gaps are copied from; then the source is written (LMEM
 * keeps the old values) and loaded again (the new ones). */
static void test_fc_weight(int32_t isa, int32_t threads, int transposed) {
  twins tw = make_twins(isa, threads);
  enum { M = 2, K = 40, N = 24 };
  const sophon_local in = local4(0, M, K, 1, 1, SOPHON_LAYOUT_COMPACT);
  const sophon_local w = local4(8192, 1, N, K, 1, SOPHON_LAYOUT_COMPACT);
  const sophon_local strip = local4(8192 + 40, 1, 16, 2, 2, SOPHON_LAYOUT_COMPACT);
  const sophon_local out = local4(32768, M, N, 1, 1, SOPHON_LAYOUT_COMPACT);
  float x[M * K], wt[K * N], got[2][M * N], zeros[64], before[M * N];
  sophon_global g = view_of(wt, &w);
  sophon_activation none;
  int round, i;
  memset(&none, 0, sizeof none);
  memset(zeros, 0, sizeof zeros);
  fill_random(x, M * K);
  fill_random(wt, K * N);
  if (transposed) { /* weight[j][k] at wt[k * N + j] */
    g.stride_c = 1;
    g.stride_h = N;
  }
  load_both(&tw, &in, x, 0);
  for (round = 0; round < 3; ++round) {
    for (i = 0; i < 2; ++i) {
      sophon_global o = view_of(got[i], &out);
      CHECK_OK(tw.dev[i], i == 0 ? sophon_gdma_load_constant(tw.dev[i], &w, &g)
                                 : sophon_gdma_load(tw.dev[i], &w, &g));
      if (round == 2) {
        sophon_global z = view_of(zeros, &strip);
        CHECK_OK(tw.dev[i], sophon_gdma_load(tw.dev[i], &strip, &z));
      }
      CHECK_OK(tw.dev[i], sophon_tiu_fc(tw.dev[i], &out, &in, &w, NULL, &none));
      CHECK_OK(tw.dev[i], sophon_gdma_store(tw.dev[i], &o, &out));
    }
    CHECK(memcmp(got[0], got[1], sizeof got[0]) == 0);
  }
  for (round = 0; round < 3 && transposed; ++round) {
    sophon_global all = view_of(wt, &w);
    for (i = 0; i < 2 && round != 1; ++i)
      CHECK_OK(tw.dev[i], i == 0 ? sophon_gdma_load_constant(tw.dev[i], &w, &g)
                                 : sophon_gdma_load(tw.dev[i], &w, &g));
    for (i = 0; i < 2 && round == 0; ++i) /* both write the one DDR array */
      CHECK_OK(tw.dev[i], sophon_gdma_fill(tw.dev[i], &all, 0.25));
    for (i = 0; i < 2; ++i) {
      sophon_global o = view_of(got[i], &out);
      CHECK_OK(tw.dev[i], sophon_tiu_fc(tw.dev[i], &out, &in, &w, NULL, &none));
      CHECK_OK(tw.dev[i], sophon_gdma_store(tw.dev[i], &o, &out));
    }
    CHECK(memcmp(got[0], got[1], sizeof got[0]) == 0);
    /* rounds 0 and 1: the values loaded before the fill; round 2: the fill's */
    if (round == 0) memcpy(before, got[0], sizeof before);
    CHECK((memcmp(got[0], before, sizeof before) == 0) == (round < 2));
  }
  CHECK(same_state(&tw));
  destroy_twins(&tw);
}

/* More deferred loads than the table holds, split by writes. */
static void test_many_loads(int32_t isa, int32_t threads) {
  twins tw = make_twins(isa, threads);
  float* data = (float*)malloc(16 * 64 * sizeof(float));
  int i, d;
  fill_random(data, 16 * 64);
  for (i = 0; i < 300; ++i) {
    const sophon_local t = local4((uint32_t)(i % 200) * 256, 1, 16, 8, 8, SOPHON_LAYOUT_COMPACT);
    const sophon_local hole = local4(t.addr + 64, 1, 16, 1, 4, SOPHON_LAYOUT_COMPACT);
    load_both(&tw, &t, data, 1);
    if (i % 3 == 0) { /* splits the load in two */
      for (d = 0; d < 2; ++d) {
        sophon_global g = view_of(data, &hole);
        CHECK_OK(tw.dev[d], sophon_gdma_load(tw.dev[d], &hole, &g));
      }
    }
  }
  CHECK(same_state(&tw));
  destroy_twins(&tw);
  free(data);
}

/* A random local: n 1-2, c 1-40, h, w 1-6, either layout, sometimes a window. */
static sophon_local random_local(const sophon_chip* chip) {
  sophon_local t = local4(0, 1 + (int)(next_random() % 2), 1 + (int)(next_random() % 40),
                          1 + (int)(next_random() % 6), 1 + (int)(next_random() % 6),
                          next_random() % 2 ? SOPHON_LAYOUT_ALIGNED : SOPHON_LAYOUT_COMPACT);
  if (next_random() % 5 == 0) t.cstride = t.h * t.w + (int32_t)(next_random() % 3);
  t.addr = (uint32_t)(next_random() % (uint32_t)(chip->lmem_bytes_per_lane / 2)) & ~3u;
  if (next_random() % 2) t.addr &= ~63u;
  return t;
}

/* Random loads (constant or not, contiguous or strided sources), activations,
 * stores, raw reads and writes over one region of LMEM, then a full compare. */
static void test_random_sequence(int32_t isa, int32_t threads) {
  twins tw = make_twins(isa, threads);
  const sophon_chip* chip = sophon_device_chip(tw.dev[0]);
  const size_t ddr_count = 2 * 40 * 36;
  float* ddr = (float*)malloc(ddr_count * sizeof(float));
  float* stored[2];
  sophon_activation relu;
  int step, i;
  memset(&relu, 0, sizeof relu);
  relu.kind = SOPHON_ACT_RELU;
  stored[0] = (float*)malloc(ddr_count * sizeof(float));
  stored[1] = (float*)malloc(ddr_count * sizeof(float));
  fill_random(ddr, ddr_count);
  for (step = 0; step < 400; ++step) {
    const uint32_t op = next_random() % 10;
    sophon_local t = random_local(chip);
    sophon_status s[2];
    if (op < 5) { /* a load, constant on dev[0] 4 times in 5 */
      sophon_global g;
      if (op == 3 && next_random() % 2) { /* int8 bytes at an odd address: cuts f32 elements */
        t.dtype = SOPHON_I8;
        t.addr |= 1;
      }
      g = view_of(ddr, &t);
      if (op >= 3) { /* channels innermost: a strided source */
        g.stride_c = 1;
        g.stride_w = t.c;
        g.stride_h = (int64_t)t.w * t.c;
      }
      s[0] = op != 3 ? sophon_gdma_load_constant(tw.dev[0], &t, &g)
                     : sophon_gdma_load(tw.dev[0], &t, &g);
      s[1] = sophon_gdma_load(tw.dev[1], &t, &g);
    } else if (op < 7) { /* an instruction: relu from one random local to another */
      sophon_local from = random_local(chip);
      from.n = t.n;
      from.c = t.c;
      from.h = t.h;
      from.w = t.w;
      for (i = 0; i < 2; ++i) s[i] = sophon_tiu_activation(tw.dev[i], &t, &from, &relu);
    } else if (op == 7) { /* a store */
      for (i = 0; i < 2; ++i) {
        sophon_global g = view_of(stored[i], &t);
        memset(stored[i], 0, ddr_count * sizeof(float));
        s[i] = sophon_gdma_store(tw.dev[i], &g, &t);
      }
      CHECK(memcmp(stored[0], stored[1], ddr_count * sizeof(float)) == 0);
    } else { /* a raw read or write of one lane */
      const int32_t lane = (int32_t)(next_random() % (uint32_t)chip->npu_num);
      const size_t bytes = 1 + next_random() % 300;
      uint8_t got[2][300];
      for (i = 0; i < 2; ++i)
        s[i] = op == 8 ? sophon_lmem_read(tw.dev[i], lane, t.addr, got[i], bytes)
                       : sophon_lmem_write(tw.dev[i], lane, t.addr + 1, ddr, bytes);
      if (op == 8) CHECK(memcmp(got[0], got[1], bytes) == 0);
    }
    CHECK_EQ_INT(s[0], s[1]);
    if (s[0] != SOPHON_OK) CHECK(strcmp(sophon_device_error(tw.dev[0]), sophon_device_error(tw.dev[1])) == 0);
  }
  CHECK(same_state(&tw));
  destroy_twins(&tw);
  free(ddr);
  free(stored[0]);
  free(stored[1]);
}

/* Bad arguments fail as sophon_gdma_load fails; reference mode copies at once. */
static void test_errors_and_reference(void) {
  twins tw = make_twins(SOPHON_ISA_AVX512, 1);
  const sophon_local w = local4(0, 1, 16, 4, 4, SOPHON_LAYOUT_COMPACT);
  const sophon_local past_end = local4(65536 - 64, 1, 16, 4, 4, SOPHON_LAYOUT_COMPACT);
  float wd[256];
  sophon_global g = view_of(wd, &w);
  fill_random(wd, 256);
  g.c = 8; /* shape mismatch */
  CHECK_EQ_INT(sophon_gdma_load_constant(tw.dev[0], &w, &g), SOPHON_ERR_ARGUMENT);
  CHECK_EQ_INT(sophon_gdma_load(tw.dev[1], &w, &g), SOPHON_ERR_ARGUMENT);
  CHECK(strcmp(sophon_device_error(tw.dev[0]), sophon_device_error(tw.dev[1])) == 0);
  g = view_of(wd, &past_end);
  CHECK_EQ_INT(sophon_gdma_load_constant(tw.dev[0], &past_end, &g),
               sophon_gdma_load(tw.dev[1], &past_end, &g));
  CHECK(strcmp(sophon_device_error(tw.dev[0]), sophon_device_error(tw.dev[1])) == 0);
  CHECK_EQ_INT(sophon_gdma_load_constant(NULL, &w, &g), SOPHON_ERR_ARGUMENT);
  CHECK_OK(tw.dev[0], sophon_device_set_reference(tw.dev[0], 1));
  CHECK_OK(tw.dev[1], sophon_device_set_reference(tw.dev[1], 1));
  load_both(&tw, &w, wd, 1);
  CHECK(same_state(&tw));
  destroy_twins(&tw);
}

int main(void) {
  static const int32_t isas[3] = {SOPHON_ISA_C, SOPHON_ISA_AVX2, SOPHON_ISA_AVX512};
  int i, threads;
  for (i = 0; i < 3; ++i) {
    for (threads = 1; threads <= 2; ++threads) {
      test_conv_reads_deferred_weight(isas[i], threads);
      test_other_readers(isas[i], threads);
      test_partial_overwrites(isas[i], threads);
      test_source_written(isas[i], threads);
      test_many_loads(isas[i], threads);
      test_fc_weight(isas[i], threads, 0);
      test_fc_weight(isas[i], threads, 1);
      test_random_sequence(isas[i], threads);
    }
  }
  test_errors_and_reference();
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
