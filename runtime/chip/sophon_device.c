/*
 * sophon_device.c - the emulated device: status names, the LMEM lane
 * layout, device lifetime, error reporting, counters, raw LMEM access, and the
 * descriptor checks shared by all instructions.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chip/sophon_cost.h"
#include "chip/sophon_internal.h"

/* ------------------------------------------------------------- names */

const char* sophon_status_name(sophon_status status) {
  switch (status) {
    case SOPHON_OK: return "SOPHON_OK";
    case SOPHON_ERR_ARGUMENT: return "SOPHON_ERR_ARGUMENT";
    case SOPHON_ERR_BOUNDS: return "SOPHON_ERR_BOUNDS";
    case SOPHON_ERR_UNSUPPORTED: return "SOPHON_ERR_UNSUPPORTED";
    case SOPHON_ERR_NOMEM: return "SOPHON_ERR_NOMEM";
  }
  return "SOPHON_ERR_UNKNOWN";
}

/* ------------------------------------------------------------- layout */

/* a * b, or -1 if either is negative or the product exceeds INT64_MAX. */
static int64_t checked_mul(int64_t a, int64_t b) {
  if (a < 0 || b < 0) return -1;
  if (a != 0 && b > INT64_MAX / a) return -1;
  return a * b;
}

int64_t sophon_local_channel_stride(const sophon_chip* chip, const sophon_local* t) {
  int64_t hw, eu;
  if (chip == NULL || t == NULL || chip->npu_num <= 0) return 0;
  if (t->n <= 0 || t->c <= 0 || t->h <= 0 || t->w <= 0) return 0;
  if (sophon_dtype_size(t->dtype) == 0) return 0;
  hw = (int64_t)t->h * t->w;
  if (t->cstride != 0) return t->cstride >= hw ? t->cstride : 0;
  switch (t->layout) {
    case SOPHON_LAYOUT_COMPACT: return hw;
    case SOPHON_LAYOUT_ALIGNED:
      eu = sophon_eu_num(chip, t->dtype);
      if (eu <= 0) return 0;
      return sophon_ceil_div(hw, eu) * eu;
  }
  return 0;
}

int64_t sophon_local_batch_slots(const sophon_chip* chip, const sophon_local* t) {
  int64_t pack;
  if (chip == NULL || t == NULL || t->n <= 0) return 0;
  pack = chip->int8_batch_pack;
  if (t->dtype != SOPHON_I8 || t->layout != SOPHON_LAYOUT_ALIGNED || pack <= 1) return t->n;
  return sophon_ceil_div(t->n, pack) * pack;
}

int64_t sophon_local_lane_bytes(const sophon_chip* chip, const sophon_local* t) {
  int64_t cstride = sophon_local_channel_stride(chip, t);
  int64_t bytes;
  if (cstride <= 0) return 0;
  bytes = checked_mul(t->cstride != 0 ? t->n : sophon_local_batch_slots(chip, t),
                      sophon_channels_per_lane(chip, t->c));
  if (t->cstride != 0 && bytes > 0) {
    /* a window: its footprint ends at its last element, not at the buffer's end */
    bytes = checked_mul(bytes - 1, cstride);
    bytes = bytes < 0 ? -1 : bytes + (int64_t)t->h * t->w;
  } else {
    bytes = checked_mul(bytes, cstride);
  }
  bytes = checked_mul(bytes, sophon_dtype_size(t->dtype));
  return bytes > 0 ? bytes : 0;
}

void sophon_view_init(sophon_view* v, sophon_device* dev, const sophon_local* t) {
  const sophon_chip* chip = &dev->chip;
  int32_t elem = sophon_dtype_size(t->dtype);
  v->lane0 = dev->lmem + t->addr;
  v->lane_bytes = dev->lane_pitch;
  v->channel_bytes = sophon_local_channel_stride(chip, t) * elem;
  v->batch_bytes = sophon_channels_per_lane(chip, t->c) * v->channel_bytes;
  v->npu_num = chip->npu_num;
  v->n = t->n;
  v->c = t->c;
  v->h = t->h;
  v->w = t->w;
}

/* ------------------------------------------------------------- errors */

sophon_status sophon_set_error(sophon_device* dev, sophon_status status,
                               const char* fmt, ...) {
  va_list args;
  if (dev == NULL) return status;
  va_start(args, fmt);
  vsnprintf(dev->error, sizeof dev->error, fmt, args);
  va_end(args);
  return status;
}

/* ------------------------------------------------------------- device */

/* Host bytes from one lane's LMEM to the next: the lane size rounded up to 64
 * bytes, plus LANE_SKEW_LINES cache lines. Lanes are separate address spaces on the
 * chip, so the gap is invisible to programs; on the host it keeps channel c and
 * c+1 (neighbouring lanes, same LMEM address) out of the same cache sets, which a
 * power-of-two lane size would map them to. An odd number of lines spreads the 64
 * lanes over 64 different L1 sets. */
#define LANE_SKEW_LINES 17
static int64_t lane_pitch(const sophon_chip* chip) {
  return (chip->lmem_bytes_per_lane + 63) / 64 * 64 + 64 * LANE_SKEW_LINES;
}

static sophon_status check_chip(const sophon_chip* chip) {
  if (chip->npu_num <= 0) return SOPHON_ERR_ARGUMENT;
  /* lanes must keep 4-byte elements aligned */
  if (chip->lmem_bytes_per_lane <= 0 || chip->lmem_bytes_per_lane % 4 != 0)
    return SOPHON_ERR_ARGUMENT;
  /* addresses within a lane are uint32_t; this also keeps lane_pitch() from overflowing */
  if (chip->lmem_bytes_per_lane > (int64_t)UINT32_MAX) return SOPHON_ERR_ARGUMENT;
  if (chip->eu_bytes < 4) return SOPHON_ERR_ARGUMENT; /* EU_NUM(f32) >= 1 */
  if (!(chip->clock_hz > 0.0) || !(chip->ddr_bytes_per_second > 0.0))
    return SOPHON_ERR_ARGUMENT;
  if (chip->gdma_latency_cycles < 0 || chip->tiu_latency_cycles < 0)
    return SOPHON_ERR_ARGUMENT;
  if (!(chip->gdma_clock_hz >= 0.0) || chip->gdma_burst_bytes < 0 ||
      chip->timestep_sync_cycles < 0 || chip->dwpool_eu_bytes < 0 || chip->int8_batch_pack < 0 ||
      chip->eltwise_eu_bytes < 0)
    return SOPHON_ERR_ARGUMENT;
  if ((uint64_t)lane_pitch(chip) > ((uint64_t)SIZE_MAX - 64) / (uint64_t)chip->npu_num)
    return SOPHON_ERR_NOMEM;
  return SOPHON_OK;
}

struct sophon_packed {
  sophon_packed_key key;
  size_t floats;
  void* block;
  float* data; /* block, 64-byte aligned */
};

sophon_status sophon_device_create(const sophon_chip* chip, sophon_device** out) {
  sophon_device* dev;
  sophon_status status;
  if (out == NULL) return SOPHON_ERR_ARGUMENT;
  *out = NULL;
  if (chip == NULL) return SOPHON_ERR_ARGUMENT;
  status = check_chip(chip);
  if (status != SOPHON_OK) return status;

  dev = (sophon_device*)calloc(1, sizeof *dev);
  if (dev == NULL) return SOPHON_ERR_NOMEM;
  dev->lane_pitch = lane_pitch(chip);
  /* 64-byte aligned on the host (calloc gives 16 past a page): an LMEM address
     aligned for the chip's EUs is then a cache line, and the kernels' vector loads
     of aligned channels do not straddle two lines */
  dev->lmem_block = calloc(1, (size_t)chip->npu_num * (size_t)dev->lane_pitch + 64);
  if (dev->lmem_block == NULL) {
    free(dev);
    return SOPHON_ERR_NOMEM;
  }
  dev->lmem = (uint8_t*)dev->lmem_block + (64 - (uintptr_t)dev->lmem_block % 64) % 64;
  dev->chip = *chip;
  /* keep our own copy of the name: the caller's string may not outlive us */
  if (chip->name != NULL) {
    strncpy(dev->chip_name, chip->name, sizeof dev->chip_name - 1);
  }
  dev->chip.name = dev->chip_name;
  dev->error[0] = '\0';
  dev->num_threads = 1;
  dev->reference = 0;
  sophon_device_set_isa(dev, SOPHON_ISA_AVX512);
  *out = dev;
  return SOPHON_OK;
}

void sophon_device_destroy(sophon_device* dev) {
  int32_t i;
  if (dev == NULL) return;
  sophon_thread_pool_destroy(dev->pool);
  for (i = 0; i < dev->num_packed; ++i) free(dev->packed[i].block);
  free(dev->packed);
  free(dev->scratch_block);
  free(dev->lmem_block);
  free(dev);
}

sophon_status sophon_device_set_threads(sophon_device* dev, int32_t n) {
  int failed = 0;
  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if (n < 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "set_threads: %d threads is negative",
                            (int)n);
  if (n == 0) n = sophon_online_cpus();
  if (n == dev->num_threads) return SOPHON_OK;
  sophon_thread_pool_destroy(dev->pool);
  dev->pool = sophon_thread_pool_create(n, &failed);
  if (failed) {
    dev->num_threads = 1;
    return sophon_set_error(dev, SOPHON_ERR_NOMEM, "set_threads: cannot start %d threads",
                            (int)n);
  }
  dev->num_threads = n;
  return SOPHON_OK;
}

sophon_status sophon_device_set_reference(sophon_device* dev, int32_t on) {
  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if (on != 0 && on != 1)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "set_reference: %d is not 0 or 1",
                            (int)on);
  dev->reference = on;
  return SOPHON_OK;
}

sophon_status sophon_device_set_isa(sophon_device* dev, int32_t max_isa) {
  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if (max_isa < SOPHON_ISA_C || max_isa > SOPHON_ISA_AVX512)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "set_isa: %d is not 0 (C), 1 (AVX2) or 2 (AVX-512)",
                            (int)max_isa);
  dev->cpu_avx2 = dev->cpu_fma = dev->cpu_avx512 = dev->cpu_avx512vnni = dev->cpu_avx512vbmi = 0;
#if SOPHON_X86_DISPATCH
  if (max_isa >= SOPHON_ISA_AVX2) {
    dev->cpu_avx2 = __builtin_cpu_supports("avx2");
    dev->cpu_fma = dev->cpu_avx2 && __builtin_cpu_supports("fma");
  }
  if (max_isa >= SOPHON_ISA_AVX512) {
    dev->cpu_avx512 = dev->cpu_fma && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
    dev->cpu_avx512vnni = dev->cpu_avx512 && __builtin_cpu_supports("avx512vnni");
    dev->cpu_avx512vbmi = dev->cpu_avx512 && __builtin_cpu_supports("avx512vbmi");
  }
#endif
  return SOPHON_OK;
}

float* sophon_device_scratch(sophon_device* dev, size_t floats) {
  const size_t align = 64 / sizeof(float);
  void* block;
  if (floats <= dev->scratch_floats) return dev->scratch;
  if (floats > (SIZE_MAX / sizeof(float)) - align) return NULL;
  /* grow by at least half, so a growing sequence of layers reallocates rarely */
  if (floats < dev->scratch_floats + dev->scratch_floats / 2)
    floats = dev->scratch_floats + dev->scratch_floats / 2;
  block = malloc((floats + align) * sizeof(float));
  if (block == NULL) return NULL;
  free(dev->scratch_block);
  dev->scratch_block = block;
  dev->scratch = (float*)(void*)((uint8_t*)block + (64 - (uintptr_t)block % 64) % 64);
  dev->scratch_floats = floats;
  return dev->scratch;
}

float* sophon_device_packed(sophon_device* dev, const sophon_packed_key* key, size_t floats,
                            int* fresh) {
  struct sophon_packed* entry;
  int32_t i;
  *fresh = 0;
  for (i = 0; i < dev->num_packed; ++i) {
    entry = &dev->packed[i];
    if (entry->key.data == key->data && entry->floats == floats &&
        memcmp(entry->key.shape, key->shape, sizeof(key->shape)) == 0)
      return entry->data;
  }
  if (dev->num_packed == SOPHON_MAX_PACKED || floats > SOPHON_MAX_PACKED_BYTES / sizeof(float) ||
      dev->packed_bytes + floats * sizeof(float) > SOPHON_MAX_PACKED_BYTES)
    return NULL;
  if (dev->packed == NULL) {
    dev->packed = (struct sophon_packed*)calloc(SOPHON_MAX_PACKED, sizeof(*dev->packed));
    if (dev->packed == NULL) return NULL;
  }
  entry = &dev->packed[dev->num_packed];
  entry->block = malloc(floats * sizeof(float) + 64);
  if (entry->block == NULL) return NULL;
  entry->key = *key;
  entry->floats = floats;
  entry->data = (float*)(void*)((uint8_t*)entry->block + (64 - (uintptr_t)entry->block % 64) % 64);
  dev->num_packed += 1;
  dev->packed_bytes += floats * sizeof(float);
  *fresh = 1;
  return entry->data;
}

void sophon_packed_view_key(sophon_packed_key* key, const sophon_global* g) {
  memset(key, 0, sizeof(*key));
  key->data = g->data;
  key->data_end = (const float*)g->data + (int64_t)(g->c - 1) * g->stride_c +
                  (int64_t)(g->h - 1) * g->stride_h + (int64_t)(g->w - 1) * g->stride_w + 1;
  key->shape[0] = g->c;
  key->shape[1] = g->h;
  key->shape[2] = g->w;
  key->shape[3] = g->stride_c;
  key->shape[4] = g->stride_h;
  key->shape[5] = g->stride_w;
}

void sophon_device_packed_drop(sophon_device* dev, const void* first, const void* end) {
  int32_t i = 0;
  while (i < dev->num_packed) {
    struct sophon_packed* entry = &dev->packed[i];
    if ((uintptr_t)entry->key.data < (uintptr_t)end &&
        (uintptr_t)first < (uintptr_t)entry->key.data_end) {
      free(entry->block);
      dev->packed_bytes -= entry->floats * sizeof(float);
      memmove(entry, entry + 1, (size_t)(dev->num_packed - i - 1) * sizeof(*entry));
      dev->num_packed -= 1;
    } else {
      ++i;
    }
  }
}

const sophon_chip* sophon_device_chip(const sophon_device* dev) {
  return dev != NULL ? &dev->chip : NULL;
}

const char* sophon_device_error(const sophon_device* dev) {
  return dev != NULL ? dev->error : "no device";
}

const sophon_counters* sophon_device_counters(const sophon_device* dev) {
  return dev != NULL ? &dev->counters : NULL;
}

void sophon_device_reset_counters(sophon_device* dev) {
  if (dev == NULL) return;
  memset(&dev->counters, 0, sizeof dev->counters);
  dev->step_tiu_cycles = 0;
  dev->step_gdma_cycles = 0;
}

sophon_status sophon_timestep_end(sophon_device* dev) {
  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  dev->counters.cycles +=
      sophon_cost_timestep(&dev->chip, dev->step_tiu_cycles, dev->step_gdma_cycles);
  dev->counters.timesteps += 1;
  dev->step_tiu_cycles = 0;
  dev->step_gdma_cycles = 0;
  return SOPHON_OK;
}

void sophon_touch(sophon_device* dev, const sophon_local* t) {
  uint64_t end = (uint64_t)t->addr + (uint64_t)sophon_local_lane_bytes(&dev->chip, t);
  if (end > dev->counters.lmem_peak_bytes) dev->counters.lmem_peak_bytes = end;
}

void sophon_count_tiu(sophon_device* dev, uint64_t cycles, uint64_t macs) {
  dev->counters.tiu_instructions += 1;
  dev->counters.tiu_cycles += cycles;
  dev->step_tiu_cycles += cycles;
  dev->counters.macs += macs;
}

void sophon_count_gdma(sophon_device* dev, uint64_t cycles, uint64_t bytes, int is_load) {
  dev->counters.gdma_instructions += 1;
  dev->counters.gdma_cycles += cycles;
  dev->step_gdma_cycles += cycles;
  if (is_load)
    dev->counters.bytes_loaded += bytes;
  else
    dev->counters.bytes_stored += bytes;
}

/* ---------------------------------------------------------- raw LMEM */

static sophon_status check_raw(sophon_device* dev, const char* op, int32_t lane,
                               uint32_t addr, const void* buf, size_t bytes) {
  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if (buf == NULL && bytes > 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: buffer is NULL", op);
  if (lane < 0 || lane >= dev->chip.npu_num)
    return sophon_set_error(dev, SOPHON_ERR_BOUNDS, "%s: lane %d outside 0..%d", op,
                            (int)lane, (int)dev->chip.npu_num - 1);
  if ((uint64_t)addr > (uint64_t)dev->chip.lmem_bytes_per_lane ||
      (uint64_t)bytes > (uint64_t)dev->chip.lmem_bytes_per_lane - addr)
    return sophon_set_error(dev, SOPHON_ERR_BOUNDS,
                            "%s: %llu bytes at addr %lu exceed lane of %lld bytes", op,
                            (unsigned long long)bytes, (unsigned long)addr,
                            (long long)dev->chip.lmem_bytes_per_lane);
  return SOPHON_OK;
}

sophon_status sophon_lmem_read(sophon_device* dev, int32_t lane, uint32_t addr,
                               void* dst, size_t bytes) {
  sophon_status status = check_raw(dev, "lmem_read", lane, addr, dst, bytes);
  if (status != SOPHON_OK) return status;
  sophon_lmem_reading_lane(dev, lane, addr, (int64_t)addr + (int64_t)bytes);
  if (bytes > 0)
    memcpy(dst, dev->lmem + (int64_t)lane * dev->lane_pitch + addr, bytes);
  return SOPHON_OK;
}

sophon_status sophon_lmem_write(sophon_device* dev, int32_t lane, uint32_t addr,
                                const void* src, size_t bytes) {
  sophon_status status = check_raw(dev, "lmem_write", lane, addr, src, bytes);
  if (status != SOPHON_OK) return status;
  /* copies what it overwrites too: the pending bytes around it stay exact */
  sophon_lmem_reading_lane(dev, lane, addr, (int64_t)addr + (int64_t)bytes);
  if (bytes > 0)
    memcpy(dev->lmem + (int64_t)lane * dev->lane_pitch + addr, src, bytes);
  return SOPHON_OK;
}

/* ------------------------------------------------------------- checks */

sophon_status sophon_check_local(sophon_device* dev, const char* op, const char* name,
                                 const sophon_local* t) {
  int32_t elem;
  if (t == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s is NULL", op, name);
  if (t->n <= 0 || t->c <= 0 || t->h <= 0 || t->w <= 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s shape (%d,%d,%d,%d) has a non-positive dim", op, name,
                            (int)t->n, (int)t->c, (int)t->h, (int)t->w);
  elem = sophon_dtype_size(t->dtype);
  if (elem == 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s has unknown dtype %d", op,
                            name, (int)t->dtype);
  if (t->layout != SOPHON_LAYOUT_ALIGNED && t->layout != SOPHON_LAYOUT_COMPACT)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s has unknown layout %d", op,
                            name, (int)t->layout);
  if (t->cstride != 0 && t->cstride < (int64_t)t->h * t->w)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s channel stride %d is below h*w = %d", op, name,
                            (int)t->cstride, (int)(t->h * t->w));
  if (t->addr % (uint32_t)elem != 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s addr %lu is not a multiple of its element size %d", op,
                            name, (unsigned long)t->addr, (int)elem);
  if (sophon_local_lane_bytes(&dev->chip, t) <= 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s shape (%d,%d,%d,%d) is too large to address", op, name,
                            (int)t->n, (int)t->c, (int)t->h, (int)t->w);
  return SOPHON_OK;
}

sophon_status sophon_check_bounds(sophon_device* dev, const char* op, const char* name,
                                  const sophon_local* t) {
  int64_t bytes = sophon_local_lane_bytes(&dev->chip, t);
  int64_t lane = dev->chip.lmem_bytes_per_lane;
  if ((int64_t)t->addr > lane || bytes > lane - (int64_t)t->addr)
    return sophon_set_error(dev, SOPHON_ERR_BOUNDS,
                            "%s: %s needs %lld bytes per lane at addr %lu, lane holds %lld",
                            op, name, (long long)bytes, (unsigned long)t->addr,
                            (long long)lane);
  return SOPHON_OK;
}

sophon_status sophon_check_tiu_dtype(sophon_device* dev, const char* op,
                                     sophon_dtype dtype) {
  if (dtype != SOPHON_F32)
    return sophon_set_error(dev, SOPHON_ERR_UNSUPPORTED,
                            "%s: dtype %s is not supported by the TIU (only F32 for now)",
                            op, sophon_dtype_name(dtype));
  return SOPHON_OK;
}

sophon_status sophon_check_same_dtype(sophon_device* dev, const char* op,
                                      const char* name_a, const sophon_local* a,
                                      const char* name_b, const sophon_local* b) {
  if (a->dtype != b->dtype)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s dtype %s differs from %s dtype %s",
                            op, name_a, sophon_dtype_name(a->dtype), name_b,
                            sophon_dtype_name(b->dtype));
  return SOPHON_OK;
}

sophon_status sophon_check_same_shape(sophon_device* dev, const char* op,
                                      const char* name_a, const sophon_local* a,
                                      const char* name_b, const sophon_local* b) {
  if (a->n != b->n || a->c != b->c || a->h != b->h || a->w != b->w)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s shape (%d,%d,%d,%d) differs from %s shape (%d,%d,%d,%d)",
                            op, name_a, (int)a->n, (int)a->c, (int)a->h, (int)a->w, name_b,
                            (int)b->n, (int)b->c, (int)b->h, (int)b->w);
  return SOPHON_OK;
}

sophon_status sophon_check_activation(sophon_device* dev, const char* op,
                                      const sophon_activation* act) {
  if (act == NULL) return SOPHON_OK;
  switch (act->kind) {
    case SOPHON_ACT_NONE:
    case SOPHON_ACT_RELU:
    case SOPHON_ACT_SIGMOID:
    case SOPHON_ACT_TANH:
    case SOPHON_ACT_SILU:
    case SOPHON_ACT_HARD_SWISH:
    case SOPHON_ACT_GELU:
    case SOPHON_ACT_GELU_TANH:
    case SOPHON_ACT_MISH:
    case SOPHON_ACT_SOFTPLUS:
    case SOPHON_ACT_SQRT:
    case SOPHON_ACT_RSQRT:
    case SOPHON_ACT_EXP:
    case SOPHON_ACT_LOG:
    case SOPHON_ACT_RECIPROCAL:
    case SOPHON_ACT_ABS:
    case SOPHON_ACT_NEG:
    case SOPHON_ACT_ERF:
      return SOPHON_OK;
    case SOPHON_ACT_LEAKY_RELU:
      if (isnan(act->alpha))
        return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: leaky relu alpha is NaN", op);
      return SOPHON_OK;
    case SOPHON_ACT_ELU:
      if (isnan(act->alpha))
        return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: elu alpha is NaN", op);
      return SOPHON_OK;
    case SOPHON_ACT_HARD_SIGMOID:
      if (isnan(act->alpha) || isnan(act->beta))
        return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: hard-sigmoid alpha or beta is NaN",
                                op);
      return SOPHON_OK;
    case SOPHON_ACT_CLIP:
      if (!(act->lo <= act->hi))
        return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                                "%s: clip bounds lo=%g > hi=%g", op, (double)act->lo,
                                (double)act->hi);
      return SOPHON_OK;
  }
  return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown activation kind %d", op,
                          (int)act->kind);
}

static int lane_ranges_overlap(const sophon_chip* chip, const sophon_local* a,
                               const sophon_local* b) {
  int64_t a_begin = a->addr, a_end = a_begin + sophon_local_lane_bytes(chip, a);
  int64_t b_begin = b->addr, b_end = b_begin + sophon_local_lane_bytes(chip, b);
  return a_begin < b_end && b_begin < a_end;
}

sophon_status sophon_check_disjoint(sophon_device* dev, const char* op,
                                    const sophon_local* out, const char* name,
                                    const sophon_local* in) {
  if (lane_ranges_overlap(&dev->chip, out, in))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out overlaps %s (out bytes [%lu, %lld), %s bytes [%lu, %lld))",
                            op, name, (unsigned long)out->addr,
                            (long long)(out->addr + sophon_local_lane_bytes(&dev->chip, out)),
                            name, (unsigned long)in->addr,
                            (long long)(in->addr + sophon_local_lane_bytes(&dev->chip, in)));
  return SOPHON_OK;
}

sophon_status sophon_check_disjoint_or_same(sophon_device* dev, const char* op,
                                            const sophon_local* out, const char* name,
                                            const sophon_local* in) {
  int same = out->addr == in->addr && out->n == in->n && out->c == in->c &&
             out->h == in->h && out->w == in->w && out->dtype == in->dtype &&
             out->layout == in->layout && out->cstride == in->cstride;
  if (same || !lane_ranges_overlap(&dev->chip, out, in)) return SOPHON_OK;
  return sophon_set_error(
      dev, SOPHON_ERR_ARGUMENT,
      "%s: out overlaps %s (out bytes [%lu, %lld), %s bytes [%lu, %lld)); in place needs "
      "the same addr, shape, dtype and layout",
      op, name, (unsigned long)out->addr,
      (long long)(out->addr + sophon_local_lane_bytes(&dev->chip, out)), name,
      (unsigned long)in->addr,
      (long long)(in->addr + sophon_local_lane_bytes(&dev->chip, in)));
}
