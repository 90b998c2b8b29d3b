/*
 * sophon_gdma.c - the GDMA engine: moves 4-D strided global (DDR) views into and
 * out of the LMEM lane layout. Any dtype works: it only copies elements by size.
 *
 * Each (batch item, channel) is one block of h rows of w elements: contiguous in
 * its lane (rows back to back), strided in DDR. Before copying, an instruction
 * picks the cheapest way to move a block, once:
 *   - the DDR rows are back to back too (stride_w 1, stride_h w, or one row):
 *     one memcpy per block (e.g. a whole weight filter or a feature-map plane);
 *   - the DDR rows are contiguous: one memcpy per row;
 *   - otherwise element by element with the DDR steps (a fixed-size copy per
 *     element; a zero step on a load broadcasts one element). A block of one
 *     column is copied as one strided row. When consecutive channels are
 *     consecutive in DDR (channels innermost, as in NHWC data or a transposed
 *     weight), CHANNEL_GROUP channels are copied together, element position by
 *     element position, so that DDR is read (or written) in runs of
 *     CHANNEL_GROUP elements rather than one element per cache line; with AVX2,
 *     8 channels x 8 positions of f32 at a time through an 8 x 8 transpose, with
 *     AVX-512 (loads) 16 x 16, a whole cache line of DDR per load.
 *     (Sweeping all channels per position instead reads DDR in order but
 *     scatters the lane writes over every channel: slower, warm or cold.)
 * Big transfers are split by blocks over the device's threads: a load's blocks
 * land in disjoint lane ranges; a store is split (or copied by channel groups)
 * only when no two elements of its DDR view share an address, otherwise it runs
 * in the reference's order, so that the last write wins as it does there. Checks,
 * counters and the cost are once per instruction and do not depend on the path.
 */
#include <string.h>

#include "chip/sophon_cost.h"
#include "chip/sophon_host.h"

/* Transfers of at least this many bytes are split over the device's threads. */
#define GDMA_PARALLEL_MIN_BYTES (1 << 17)

/* Channels copied together when channels are innermost in DDR (a 64-byte run of f32). */
#define CHANNEL_GROUP 16

/* How one block is copied (see the file comment). */
typedef enum { BLOCK_CONTIGUOUS, BLOCK_ROWS, BLOCK_ELEMENTS } block_kind;

typedef struct {
  sophon_view view;        /* the local tensor */
  uint8_t* ddr;            /* the global view's data */
  int64_t sn, sc;          /* DDR batch and channel strides, in bytes */
  int64_t ddr_row, ddr_step; /* DDR row and element steps of a block, in bytes */
  int32_t rows, cols;      /* a block is rows x cols elements ... */
  int32_t elem;            /* ... of elem bytes */
  block_kind kind;
  int channel_groups;      /* BLOCK_ELEMENTS with channels innermost: by groups */
  int is_load;
  int use_avx2;
  int use_avx512;
} gdma_copy;

/* Copies `count` elements of `elem` bytes from src (step src_step bytes) to dst
 * (step dst_step bytes); a fixed-size memcpy per element compiles to one move. */
static void copy_elements(uint8_t* dst, int64_t dst_step, const uint8_t* src,
                          int64_t src_step, int32_t count, int32_t elem) {
  int32_t i;
  switch (elem) {
    case 1:
      for (i = 0; i < count; ++i) dst[i * dst_step] = src[i * src_step];
      break;
    case 4:
      for (i = 0; i < count; ++i) memcpy(dst + i * dst_step, src + i * src_step, 4);
      break;
    default:
      for (i = 0; i < count; ++i)
        memcpy(dst + i * dst_step, src + i * src_step, (size_t)elem);
      break;
  }
}

/* Sets g->kind, rows, cols and the DDR steps of a block from the global view's h, w
 * strides (bytes). */
static void plan_blocks(gdma_copy* g, int32_t h, int32_t w, int64_t sh, int64_t sw) {
  g->rows = h;
  g->cols = w;
  g->ddr_row = sh;
  g->ddr_step = sw;
  if (w == 1 && h > 1) { /* one column: a single strided row */
    g->rows = 1;
    g->cols = h;
    g->ddr_step = sh;
  }
  if (g->ddr_step != g->elem || (g->rows == 1 && g->cols == 1))
    g->kind = BLOCK_ELEMENTS;
  else if (g->rows == 1 || g->ddr_row == (int64_t)g->cols * g->elem)
    g->kind = BLOCK_CONTIGUOUS;
  else
    g->kind = BLOCK_ROWS;
}

/* Copies one block between its lane address and its DDR address. */
static void copy_block(const gdma_copy* g, uint8_t* lane, uint8_t* ddr) {
  const int64_t lane_row = (int64_t)g->cols * g->elem;
  int32_t y;
  switch (g->kind) {
    case BLOCK_CONTIGUOUS:
      if (g->is_load)
        memcpy(lane, ddr, (size_t)g->rows * (size_t)lane_row);
      else
        memcpy(ddr, lane, (size_t)g->rows * (size_t)lane_row);
      break;
    case BLOCK_ROWS:
      for (y = 0; y < g->rows; ++y) {
        if (g->is_load)
          memcpy(lane + y * lane_row, ddr + y * g->ddr_row, (size_t)lane_row);
        else
          memcpy(ddr + y * g->ddr_row, lane + y * lane_row, (size_t)lane_row);
      }
      break;
    case BLOCK_ELEMENTS:
      for (y = 0; y < g->rows; ++y) {
        if (g->is_load)
          copy_elements(lane + y * lane_row, g->elem, ddr + y * g->ddr_row, g->ddr_step,
                        g->cols, g->elem);
        else
          copy_elements(ddr + y * g->ddr_row, g->ddr_step, lane + y * lane_row, g->elem,
                        g->cols, g->elem);
      }
      break;
  }
}

/* Copies the blocks of `count` (<= CHANNEL_GROUP) consecutive channels, whose lane
 * addresses are lanes[0 .. count), between the lanes and DDR (channel k at ddr + k
 * elements), element position by element position. */
static void copy_channel_group(const gdma_copy* g, uint8_t* const* lanes, int32_t count,
                               uint8_t* ddr) {
  int32_t y, x, k;
  for (y = 0; y < g->rows; ++y) {
    for (x = 0; x < g->cols; ++x) {
      const int64_t at = ((int64_t)y * g->cols + x) * g->elem; /* in each lane */
      uint8_t* run = ddr + y * g->ddr_row + x * g->ddr_step;
      if (g->elem == 4 && g->is_load) {
        for (k = 0; k < count; ++k) memcpy(lanes[k] + at, run + 4 * k, 4);
      } else if (g->elem == 4) {
        for (k = 0; k < count; ++k) memcpy(run + 4 * k, lanes[k] + at, 4);
      } else {
        for (k = 0; k < count; ++k) {
          if (g->is_load)
            memcpy(lanes[k] + at, run + k * g->elem, (size_t)g->elem);
          else
            memcpy(run + k * g->elem, lanes[k] + at, (size_t)g->elem);
        }
      }
    }
  }
}

#if SOPHON_X86_DISPATCH
/* Transposes the 8 x 8 floats r[0..8) in place (r[i][j] <-> r[j][i]). */
SOPHON_AVX2 SOPHON_ALWAYS_INLINE static inline void transpose8_avx2(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* copy_channel_group for 4-byte elements with AVX2: for each 8 channels and 8
 * element positions of a block row, 8 loads, a transpose and 8 stores; the rest
 * (fewer than 8 channels or positions) element by element. */
SOPHON_AVX2 static void copy_channel_group_avx2(const gdma_copy* g, uint8_t* const* lanes,
                                                int32_t count, uint8_t* ddr) {
  __m256 r[8];
  int32_t y, x, k0, i;
  for (k0 = 0; k0 + 8 <= count; k0 += 8) {
    for (y = 0; y < g->rows; ++y) {
      const int64_t lane_row = (int64_t)y * g->cols * 4;
      uint8_t* ddr_row = ddr + y * g->ddr_row + 4 * k0;
      for (x = 0; x + 8 <= g->cols; x += 8) {
        if (g->is_load) { /* r[i]: channels k0.. at position x + i; then channel k0 + i */
          for (i = 0; i < 8; ++i)
            r[i] = _mm256_loadu_ps((const float*)(const void*)(ddr_row + (x + i) * g->ddr_step));
          transpose8_avx2(r);
          for (i = 0; i < 8; ++i)
            _mm256_storeu_ps((float*)(void*)(lanes[k0 + i] + lane_row + 4 * x), r[i]);
        } else {
          for (i = 0; i < 8; ++i)
            r[i] = _mm256_loadu_ps((const float*)(const void*)(lanes[k0 + i] + lane_row + 4 * x));
          transpose8_avx2(r);
          for (i = 0; i < 8; ++i)
            _mm256_storeu_ps((float*)(void*)(ddr_row + (x + i) * g->ddr_step), r[i]);
        }
      }
      for (; x < g->cols; ++x) {
        uint8_t* run = ddr_row + x * g->ddr_step;
        for (i = 0; i < 8; ++i) {
          if (g->is_load)
            memcpy(lanes[k0 + i] + lane_row + 4 * x, run + 4 * i, 4);
          else
            memcpy(run + 4 * i, lanes[k0 + i] + lane_row + 4 * x, 4);
        }
      }
    }
  }
  if (k0 < count) copy_channel_group(g, lanes + k0, count - k0, ddr + 4 * k0);
}

/* Loads one full group (CHANNEL_GROUP channels, lanes[0 .. 16)) of 4-byte elements
 * from DDR (channel k at ddr + 4 k) with AVX-512: for each 16 element positions of
 * a block row, 16 loads of a 64-byte run, a transpose and 16 stores; the positions
 * past the last 16 element by element. (Reading DDR in row order instead, 16 rows
 * at a time across every group, ran 1.8-1.9x slower: the stores then scatter over
 * all the channels' lanes.) */
SOPHON_AVX512 static void load_channel_group_avx512(const gdma_copy* g, uint8_t* const* lanes,
                                                    const uint8_t* ddr) {
  __m512 r[16];
  int32_t y, x, k, i;
  for (y = 0; y < g->rows; ++y) {
    const int64_t lane_row = (int64_t)y * g->cols * 4;
    const uint8_t* ddr_row = ddr + y * g->ddr_row;
    for (x = 0; x + 16 <= g->cols; x += 16) {
      const uint8_t* run = ddr_row + x * g->ddr_step;
      for (i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps((const void*)(run + i * g->ddr_step));
      sophon_transpose16_avx512(r);
      for (i = 0; i < 16; ++i) _mm512_storeu_ps((void*)(lanes[i] + lane_row + 4 * x), r[i]);
    }
    for (; x < g->cols; ++x)
      for (k = 0; k < CHANNEL_GROUP; ++k)
        memcpy(lanes[k] + lane_row + 4 * x, ddr_row + x * g->ddr_step + 4 * k, 4);
  }
}
#endif

/* One task of a channel-group transfer: groups [begin, end) in (batch, group) order. */
static void gdma_group_task(void* ctx, int32_t task, int32_t tasks) {
  const gdma_copy* g = (const gdma_copy*)ctx;
  const int32_t groups = (int32_t)sophon_ceil_div(g->view.c, CHANNEL_GROUP);
  uint8_t* lanes[CHANNEL_GROUP];
  int64_t begin, end, item;
  sophon_task_range((int64_t)g->view.n * groups, task, tasks, &begin, &end);
  for (item = begin; item < end; ++item) {
    const int32_t batch = (int32_t)(item / groups);
    const int32_t c0 = (int32_t)(item % groups) * CHANNEL_GROUP;
    const int32_t count = g->view.c - c0 < CHANNEL_GROUP ? g->view.c - c0 : CHANNEL_GROUP;
    sophon_channel_iter it = sophon_channel_begin(&g->view, batch, c0);
    int32_t k;
    for (k = 0; k < count; ++k) {
      lanes[k] = it.base;
      sophon_channel_next(&g->view, &it);
    }
#if SOPHON_X86_DISPATCH
    if (g->use_avx512 && g->is_load && g->elem == 4 && count == CHANNEL_GROUP) {
      load_channel_group_avx512(g, lanes, g->ddr + batch * g->sn + c0 * g->sc);
      continue;
    }
    if (g->use_avx2 && g->elem == 4) {
      copy_channel_group_avx2(g, lanes, count, g->ddr + batch * g->sn + c0 * g->sc);
      continue;
    }
#endif
    copy_channel_group(g, lanes, count, g->ddr + batch * g->sn + c0 * g->sc);
  }
}

/* One task: blocks [begin, end) in (batch, channel) order. */
static void gdma_task(void* ctx, int32_t task, int32_t tasks) {
  const gdma_copy* g = (const gdma_copy*)ctx;
  const int32_t channels = g->view.c;
  int64_t begin, end, block;
  sophon_channel_iter it;
  int32_t batch, channel;
  sophon_task_range((int64_t)g->view.n * channels, task, tasks, &begin, &end);
  if (begin >= end) return;
  batch = (int32_t)(begin / channels);
  channel = (int32_t)(begin % channels);
  it = sophon_channel_begin(&g->view, batch, channel);
  for (block = begin; block < end; ++block) {
    copy_block(g, it.base, g->ddr + batch * g->sn + channel * g->sc);
    if (++channel == channels) {
      channel = 0;
      ++batch;
      if (block + 1 < end) it = sophon_channel_begin(&g->view, batch, 0);
    } else {
      sophon_channel_next(&g->view, &it);
    }
  }
}

/* 1 if no two elements of the view share an address: with the dims sorted by
 * |stride|, each stride exceeds the largest offset the smaller dims reach. */
static int view_is_injective(const sophon_global* gv) {
  int64_t size[4], stride[4], reach = 0;
  int32_t dims = 0, i, j;
  const int64_t sizes[4] = {gv->n, gv->c, gv->h, gv->w};
  const int64_t strides[4] = {gv->stride_n, gv->stride_c, gv->stride_h, gv->stride_w};
  for (i = 0; i < 4; ++i) {
    if (sizes[i] == 1) continue;
    size[dims] = sizes[i];
    stride[dims] = strides[i] < 0 ? -strides[i] : strides[i];
    for (j = dims; j > 0 && stride[j - 1] > stride[j]; --j) { /* insertion sort */
      const int64_t s = stride[j], n = size[j];
      stride[j] = stride[j - 1];
      size[j] = size[j - 1];
      stride[j - 1] = s;
      size[j - 1] = n;
    }
    ++dims;
  }
  for (i = 0; i < dims; ++i) {
    if (stride[i] <= reach) return 0;
    reach += (size[i] - 1) * stride[i];
  }
  return 1;
}

static void view_span(const sophon_global* g, const uint8_t** first, const uint8_t** end);
static void ddr_writing(sophon_device* dev, const uint8_t* first, const uint8_t* end);
static void ddr_view_writing(sophon_device* dev, const sophon_global* g);

/* Runs a checked transfer between `l` and `gv`. */
static void gdma_run(sophon_device* dev, const sophon_local* l, const sophon_global* gv,
                     int is_load, uint64_t bytes) {
  gdma_copy g;
  int32_t tasks = 1;
  int any_order; /* blocks may be copied in any order, and concurrently */
  g.elem = sophon_dtype_size(l->dtype);
  g.is_load = is_load;
  g.use_avx2 = dev->cpu_avx2;
  g.use_avx512 = dev->cpu_avx512;
  g.ddr = (uint8_t*)gv->data;
  g.sn = gv->stride_n * g.elem; /* strides in bytes */
  g.sc = gv->stride_c * g.elem;
  sophon_view_init(&g.view, dev, l);
  plan_blocks(&g, l->h, l->w, gv->stride_h * g.elem, gv->stride_w * g.elem);
  any_order = is_load || view_is_injective(gv);
  g.channel_groups = any_order && g.kind == BLOCK_ELEMENTS && g.sc == g.elem && l->c > 1;
  if (any_order && !dev->reference && bytes >= GDMA_PARALLEL_MIN_BYTES)
    tasks = sophon_tasks_for(dev, bytes, (int64_t)l->n * l->c);
  sophon_parallel_run(dev->pool, tasks, g.channel_groups ? gdma_group_task : gdma_task, &g);
}

/* The global view is non-NULL with positive dims; shapes and dtypes match. */
static sophon_status check_pair(sophon_device* dev, const char* op, const char* gname,
                                const sophon_global* g, const char* lname,
                                const sophon_local* l) {
  sophon_status status = sophon_check_local(dev, op, lname, l);
  if (status != SOPHON_OK) return status;
  if (g == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s is NULL", op, gname);
  if (g->data == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s data is NULL", op, gname);
  if (g->n != l->n || g->c != l->c || g->h != l->h || g->w != l->w)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: %s shape (%d,%d,%d,%d) differs from %s shape (%d,%d,%d,%d)",
                            op, gname, (int)g->n, (int)g->c, (int)g->h, (int)g->w, lname,
                            (int)l->n, (int)l->c, (int)l->h, (int)l->w);
  if (g->dtype != l->dtype)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s dtype %s differs from %s dtype %s",
                            op, gname, sophon_dtype_name(g->dtype), lname,
                            sophon_dtype_name(l->dtype));
  return sophon_check_bounds(dev, op, lname, l);
}

static void count_gdma(sophon_device* dev, const sophon_local* l, const sophon_global* g,
                       uint64_t bytes, int is_load) {
  const int64_t strides[4] = {g->stride_n, g->stride_c, g->stride_h, g->stride_w};
  sophon_count_gdma(dev, sophon_cost_gdma_transfer(&dev->chip, l, strides), bytes, is_load);
  sophon_touch(dev, l);
}

static uint64_t tensor_bytes(const sophon_local* l) {
  return (uint64_t)l->n * (uint64_t)l->c * (uint64_t)l->h * (uint64_t)l->w *
         (uint64_t)sophon_dtype_size(l->dtype);
}

sophon_status sophon_gdma_load(sophon_device* dev, const sophon_local* dst,
                               const sophon_global* src) {
  static const char* op = "gdma_load";
  sophon_status status;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  status = check_pair(dev, op, "src", src, "dst", dst);
  if (status != SOPHON_OK) return status;

  sophon_lmem_writing(dev, dst);
  gdma_run(dev, dst, src, 1, tensor_bytes(dst));
  count_gdma(dev, dst, src, tensor_bytes(dst), 1);
  return SOPHON_OK;
}

sophon_status sophon_gdma_store(sophon_device* dev, const sophon_global* dst,
                                const sophon_local* src) {
  static const char* op = "gdma_store";
  sophon_status status;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  status = check_pair(dev, op, "dst", dst, "src", src);
  if (status != SOPHON_OK) return status;
  /* a zero stride would make several elements land on one address */
  if ((dst->n > 1 && dst->stride_n == 0) || (dst->c > 1 && dst->stride_c == 0) ||
      (dst->h > 1 && dst->stride_h == 0) || (dst->w > 1 && dst->stride_w == 0))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "gdma_store: dst strides (%lld,%lld,%lld,%lld) for shape "
                            "(%d,%d,%d,%d) have a zero stride on a dim > 1 (broadcast is "
                            "for loads only)",
                            (long long)dst->stride_n, (long long)dst->stride_c,
                            (long long)dst->stride_h, (long long)dst->stride_w, (int)dst->n,
                            (int)dst->c, (int)dst->h, (int)dst->w);

  sophon_lmem_reading(dev, src);
  ddr_view_writing(dev, dst);
  gdma_run(dev, src, dst, 0, tensor_bytes(src));
  count_gdma(dev, src, dst, tensor_bytes(src), 0);
  return SOPHON_OK;
}

/* ---------------------------------------------------------- deferred loads
 * A load of a constant f32 view (sophon_gdma_load_constant: a compiled model's
 * weights) is checked and counted as it is issued, but its host copy waits in
 * dev->deferred: a model loads every weight at every inference, into LMEM that the
 * next weights or activations overwrite before anything but its conv reads it, and
 * the conv reads the same values from DDR (sophon_deferred_source). What LMEM holds,
 * as far as anything can observe, stays what the chip would hold:
 *   - an entry is a deferred load and its pending part, lanes [l0, l1) x per-lane
 *     byte offsets [wb, we): the load's bytes there (those of its channel blocks)
 *     are not in LMEM yet. Pending parts of different entries never meet (a write
 *     takes its range out of every pending part first, below);
 *   - whatever reads LMEM (an instruction's inputs, a store, sophon_lmem_read)
 *     first copies the pending bytes of every entry whose part its range meets
 *     (settles the entry);
 *   - whatever writes LMEM (an instruction's output, a load, sophon_lmem_write)
 *     first takes what it writes out of every pending part: where it writes every
 *     byte of its range in a lane (channel blocks back to back), that rectangle
 *     comes out as it is; where it leaves bytes (the gaps of an aligned layout),
 *     the pending bytes it leaves are copied first. The rest of a part stays
 *     pending, split into up to four entries (left and right of the range, the
 *     lanes below and above it).
 * Every TIU instruction computes every element of its output from its inputs
 * (none reads its output first), so its output is a write, after its inputs were
 * read. An entry's bytes come from a view whose DDR blocks are contiguous (each
 * channel's h*w elements back to back), so any part of a block is one memcpy away:
 * the load's own view, or for any other view (a transposed fc weight, channels
 * innermost) a packed copy of it in that order, made once for the device's life
 * (sophon_device_packed, sophon_packed_view_key: the arrangement the fast fc reads
 * its weight in, so the fc finds it made). Copying the parts of a
 * transposed load that a write leaves element by element instead cost more than
 * the deferral saved (MobileNetV2 FP32 1.11x slower). DDR writes (stores, copies,
 * fills) first settle the entries whose view they meet (while a packed copy of it
 * still exists), then drop the packed copies. */

/* 1 if each of the view's (n, c) blocks is h*w contiguous elements. */
static int blocks_contiguous(const sophon_global* g) {
  return (g->w == 1 || g->stride_w == 1) && (g->h == 1 || g->stride_h == g->w);
}

static int32_t lanes_of(const sophon_chip* chip, const sophon_local* t) {
  return t->c < chip->npu_num ? t->c : chip->npu_num;
}

static int same_local(const sophon_local* a, const sophon_local* b) {
  return a->addr == b->addr && a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w &&
         a->dtype == b->dtype && a->layout == b->layout && a->cstride == b->cstride;
}

/* Where t's channels sit in one lane: `slots` channel slots per batch item, the
 * first `count` of them used in this lane, each a block of `block` bytes at
 * `pitch` apart (the layout of sophon_view_init). */
typedef struct {
  int64_t slots, pitch, block;
  int32_t count;
} lane_blocks;

static lane_blocks blocks_in_lane(const sophon_chip* chip, const sophon_local* t, int32_t lane) {
  const int64_t elem = sophon_dtype_size(t->dtype);
  lane_blocks b;
  b.slots = sophon_channels_per_lane(chip, t->c);
  b.pitch = sophon_local_channel_stride(chip, t) * elem;
  b.block = (int64_t)t->h * t->w * elem;
  b.count = lane >= t->c ? 0 : (int32_t)((t->c - 1 - lane) / chip->npu_num + 1);
  return b;
}

/* Copies the bytes of deferred load d in lanes [l0, l1) at per-lane offsets
 * [lo, hi) that w (NULL: nothing) does not write, from DDR into LMEM. */
static void copy_unwritten(sophon_device* dev, const sophon_deferred_load* d, int32_t l0,
                           int32_t l1, int64_t lo, int64_t hi, const sophon_local* w) {
  const sophon_local* p = &d->dst;
  const int64_t elem = sophon_dtype_size(p->dtype);
  int32_t lane, batch, slot;
  for (lane = l0; lane < l1; ++lane) {
    const lane_blocks pb = blocks_in_lane(&dev->chip, p, lane);
    uint8_t* lmem = dev->lmem + (int64_t)lane * dev->lane_pitch;
    lane_blocks wb = {1, 1, 0, 0};
    int64_t w_blocks = 0;
    if (w != NULL) {
      wb = blocks_in_lane(&dev->chip, w, lane);
      w_blocks = (int64_t)w->n * wb.slots;
    }
    for (batch = 0; batch < p->n; ++batch) {
      for (slot = 0; slot < pb.count; ++slot) {
        const int64_t x0 = p->addr + ((int64_t)batch * pb.slots + slot) * pb.pitch;
        const int64_t x1 = x0 + pb.block < hi ? x0 + pb.block : hi;
        const uint8_t* src = (const uint8_t*)d->src.data +
                             ((int64_t)batch * d->src.stride_n +
                              ((int64_t)slot * dev->chip.npu_num + lane) * d->src.stride_c) * elem;
        int64_t at = x0 > lo ? x0 : lo, k;
        if (at >= x1) continue;
        k = w != NULL && at > w->addr ? (at - w->addr) / wb.pitch : 0;
        for (; k < w_blocks && at < x1; ++k) { /* w's blocks that may meet [at, x1) */
          const int64_t begin = w->addr + k * wb.pitch, end = begin + wb.block;
          if (begin >= x1) break;
          if (k % wb.slots >= wb.count || end <= at) continue; /* not written in this lane */
          if (begin > at) memcpy(lmem + at, src + (at - x0), (size_t)(begin - at));
          at = end;
        }
        if (at < x1) memcpy(lmem + at, src + (at - x0), (size_t)(x1 - at));
      }
    }
  }
}

/* Drops entry i from the table. */
static void forget(sophon_device* dev, int32_t i) {
  memmove(&dev->deferred[i], &dev->deferred[i + 1],
          (size_t)(dev->num_deferred - i - 1) * sizeof(dev->deferred[0]));
  dev->num_deferred -= 1;
}

static int is_whole(const sophon_deferred_load* d) {
  return d->l0 == 0 && d->l1 == d->lanes && d->wb == d->begin && d->we == d->end;
}

/* Copies entry i's pending bytes into LMEM and drops it. */
static void settle(sophon_device* dev, int32_t i) {
  const sophon_deferred_load d = dev->deferred[i];
  forget(dev, i);
  if (is_whole(&d))
    gdma_run(dev, &d.dst, &d.src, 1, tensor_bytes(&d.dst));
  else
    copy_unwritten(dev, &d, d.l0, d.l1, d.wb, d.we, NULL);
}

static void remove_rect(sophon_device* dev, int32_t a0, int32_t a1, int64_t b0, int64_t b1);

/* Lanes [l0, l1) x bytes [begin, end) are about to be read: the pending bytes there
 * are copied. An entry inside the range is settled whole; of one that reaches past
 * it only the part inside is copied and taken out, the rest stays pending (a reader
 * whose footprint meets a piece of a big load that later writes left, say over the
 * gaps of an aligned layout, copied all of that piece before). */
static void reading_rect(sophon_device* dev, int32_t l0, int32_t l1, int64_t begin, int64_t end) {
  int32_t i = 0, partial = 0;
  while (i < dev->num_deferred) {
    const sophon_deferred_load* d = &dev->deferred[i];
    if (d->wb >= end || begin >= d->we || d->l0 >= l1 || l0 >= d->l1) {
      ++i;
    } else if (d->wb >= begin && d->we <= end && d->l0 >= l0 && d->l1 <= l1) {
      settle(dev, i);
    } else {
      copy_unwritten(dev, d, d->l0 > l0 ? d->l0 : l0, d->l1 < l1 ? d->l1 : l1,
                     d->wb > begin ? d->wb : begin, d->we < end ? d->we : end, NULL);
      partial = 1;
      ++i;
    }
  }
  if (partial) remove_rect(dev, l0, l1, begin, end); /* copied: no longer pending */
}

void sophon_lmem_reading_lane(sophon_device* dev, int32_t lane, int64_t begin, int64_t end) {
  reading_rect(dev, lane, lane + 1, begin, end);
}

void sophon_lmem_reading(sophon_device* dev, const sophon_local* t) {
  const int32_t npu = dev->chip.npu_num, lanes = lanes_of(&dev->chip, t);
  const int64_t begin = t->addr, end = begin + sophon_local_lane_bytes(&dev->chip, t);
  if (dev->num_deferred == 0) return;
  if (t->n == 1 && t->c > npu && t->c % npu != 0) {
    /* the lanes past channel c - 1 hold one channel fewer: they do not read the
       footprint's last slot */
    const lane_blocks b = blocks_in_lane(&dev->chip, t, 0);
    const int32_t full = (int32_t)((t->c - 1) % npu) + 1;
    reading_rect(dev, 0, full, begin, end);
    reading_rect(dev, full, lanes, begin, begin + (b.slots - 1) * b.pitch);
    return;
  }
  reading_rect(dev, 0, lanes, begin, end);
}

/* Takes lanes [a0, a1) x bytes [b0, b1), written or copied, out of every pending
 * part: what is left of a part is up to four entries (an entry past the table's
 * room is settled instead). */
static void remove_rect(sophon_device* dev, int32_t a0, int32_t a1, int64_t b0, int64_t b1) {
  int32_t i = 0, j, count;
  while (i < dev->num_deferred) {
    const sophon_deferred_load d = dev->deferred[i];
    const int32_t i0 = d.l0 > a0 ? d.l0 : a0, i1 = d.l1 < a1 ? d.l1 : a1;
    const int64_t lo = d.wb > b0 ? d.wb : b0, hi = d.we < b1 ? d.we : b1;
    sophon_deferred_load piece[4];
    if (i0 >= i1 || lo >= hi) {
      ++i;
      continue;
    }
    count = 0;
    if (d.wb < lo) { piece[count] = d; piece[count].we = lo; ++count; }
    if (hi < d.we) { piece[count] = d; piece[count].wb = hi; ++count; }
    if (d.l0 < i0) { piece[count] = d; piece[count].wb = lo; piece[count].we = hi; piece[count].l1 = i0; ++count; }
    if (i1 < d.l1) { piece[count] = d; piece[count].wb = lo; piece[count].we = hi; piece[count].l0 = i1; ++count; }
    forget(dev, i);
    for (j = 0; j < count; ++j) { /* after i: they do not meet the rectangle */
      if (dev->num_deferred < SOPHON_MAX_DEFERRED)
        dev->deferred[dev->num_deferred++] = piece[j];
      else
        copy_unwritten(dev, &piece[j], piece[j].l0, piece[j].l1, piece[j].wb, piece[j].we, NULL);
    }
  }
}

void sophon_lmem_writing(sophon_device* dev, const sophon_local* t) {
  const int32_t npu = dev->chip.npu_num, lanes = lanes_of(&dev->chip, t);
  const int64_t begin = t->addr, end = begin + sophon_local_lane_bytes(&dev->chip, t);
  const lane_blocks b = blocks_in_lane(&dev->chip, t, 0);
  int32_t i;
  if (dev->num_deferred == 0) return;
  if (b.pitch == b.block && (t->n == 1 || t->c % npu == 0 || t->c < npu)) {
    /* channel blocks back to back: lane l < lanes writes [begin, begin + its blocks) */
    const int32_t full = (int32_t)((t->c - 1) % npu) + 1; /* lanes with all slots used */
    remove_rect(dev, 0, full, begin, begin + (int64_t)t->n * b.slots * b.pitch);
    if (full < lanes) remove_rect(dev, full, lanes, begin, begin + (b.slots - 1) * b.pitch);
    /* a footprint past the blocks (aligned batch slots) is not written: stays pending */
    return;
  }
  for (i = 0; i < dev->num_deferred; ++i) { /* gaps: copy the pending bytes t leaves */
    const sophon_deferred_load* d = &dev->deferred[i];
    const int32_t l1 = d->l1 < lanes ? d->l1 : lanes;
    const int64_t lo = d->wb > begin ? d->wb : begin, hi = d->we < end ? d->we : end;
    if (d->l0 < l1 && lo < hi) copy_unwritten(dev, d, d->l0, l1, lo, hi, t);
  }
  remove_rect(dev, 0, lanes, begin, end);
}

const sophon_global* sophon_deferred_source(const sophon_device* dev, const sophon_local* t) {
  int32_t i;
  for (i = 0; i < dev->num_deferred; ++i) {
    const sophon_deferred_load* d = &dev->deferred[i];
    if (same_local(&d->dst, t) && is_whole(d)) return &d->view;
  }
  return NULL;
}

/* DDR bytes [first, end) are about to be written: settles the deferred loads that
 * read them and drops the packed copies made from them (a constant view is not
 * written by a correct program; this keeps a wrong one from changing what LMEM
 * held or what a kernel reads). */
static void ddr_writing(sophon_device* dev, const uint8_t* first, const uint8_t* end) {
  int32_t i = 0;
  while (i < dev->num_deferred) {
    const uint8_t *src_first, *src_end;
    view_span(&dev->deferred[i].view, &src_first, &src_end);
    if (src_first < end && first < src_end)
      settle(dev, i);
    else
      ++i;
  }
  sophon_device_packed_drop(dev, first, end);
}

/* ddr_writing over the bytes the view `g` spans (nothing to do while no load is
 * deferred and no packed copy is kept). */
static void ddr_view_writing(sophon_device* dev, const sophon_global* g) {
  const uint8_t *first, *end;
  if (dev->num_deferred == 0 && dev->num_packed == 0) return;
  view_span(g, &first, &end);
  ddr_writing(dev, first, end);
}

/* A contiguous view of a host copy of the f32 view g (one batch item, no negative
 * stride) with channel j's h*w elements at j*h*w in (h, w) order, made once for the
 * device's life; 0 (nothing made) for other views or without room or memory. */
static int packed_contiguous(sophon_device* dev, const sophon_global* g, sophon_global* out) {
  const int64_t plane = (int64_t)g->h * g->w;
  const float* data = (const float*)g->data;
  sophon_packed_key key;
  float* packed;
  int64_t j, y, x;
  int fresh;
  if (g->n != 1 || g->stride_c < 0 || g->stride_h < 0 || g->stride_w < 0) return 0;
  sophon_packed_view_key(&key, g);
  packed = sophon_device_packed(dev, &key, (size_t)(g->c * plane), &fresh);
  if (packed == NULL) return 0;
  if (fresh)
    for (j = 0; j < g->c; ++j)
      for (y = 0; y < g->h; ++y)
        for (x = 0; x < g->w; ++x)
          packed[j * plane + y * g->w + x] = data[j * g->stride_c + y * g->stride_h + x * g->stride_w];
  *out = *g;
  out->data = packed;
  out->stride_n = g->c * plane;
  out->stride_c = plane;
  out->stride_h = g->w;
  out->stride_w = 1;
  return 1;
}

sophon_status sophon_gdma_load_constant(sophon_device* dev, const sophon_local* dst,
                                        const sophon_global* src) {
  static const char* op = "gdma_load";
  sophon_deferred_load* d;
  sophon_global from;
  sophon_status status;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if (dev->reference || dst == NULL || src == NULL || dst->dtype != SOPHON_F32 ||
      src->dtype != SOPHON_F32)
    return sophon_gdma_load(dev, dst, src);
  status = check_pair(dev, op, "src", src, "dst", dst);
  if (status != SOPHON_OK) return status;
  from = *src;
  if (!blocks_contiguous(src) && !packed_contiguous(dev, src, &from))
    return sophon_gdma_load(dev, dst, src);

  sophon_lmem_writing(dev, dst);
  if (dev->num_deferred == SOPHON_MAX_DEFERRED) settle(dev, 0); /* the oldest */
  d = &dev->deferred[dev->num_deferred++];
  d->dst = *dst;
  d->view = *src;
  d->src = from;
  d->begin = d->wb = dst->addr;
  d->end = d->we = d->begin + sophon_local_lane_bytes(&dev->chip, dst);
  d->lanes = d->l1 = lanes_of(&dev->chip, dst);
  d->l0 = 0;
  count_gdma(dev, dst, src, tensor_bytes(dst), 1);
  return SOPHON_OK;
}

/* ------------------------------------------------------------ DDR to DDR */

/* The first byte a view touches and one past its last (negative strides too). */
static void view_span(const sophon_global* g, const uint8_t** first, const uint8_t** end) {
  const int64_t sizes[4] = {g->n, g->c, g->h, g->w};
  const int64_t strides[4] = {g->stride_n, g->stride_c, g->stride_h, g->stride_w};
  const int64_t elem = sophon_dtype_size(g->dtype);
  int64_t lo = 0, hi = 0;
  int i;
  for (i = 0; i < 4; ++i) {
    if (strides[i] < 0)
      lo += (sizes[i] - 1) * strides[i];
    else
      hi += (sizes[i] - 1) * strides[i];
  }
  *first = (const uint8_t*)g->data + lo * elem;
  *end = (const uint8_t*)g->data + (hi + 1) * elem;
}

/* The view is non-NULL, has data, positive dims and a known dtype. */
static sophon_status check_global(sophon_device* dev, const char* op, const char* name,
                                  const sophon_global* g) {
  if (g == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s is NULL", op, name);
  if (g->data == NULL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s data is NULL", op, name);
  if (g->n <= 0 || g->c <= 0 || g->h <= 0 || g->w <= 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s shape (%d,%d,%d,%d) is not positive",
                            op, name, (int)g->n, (int)g->c, (int)g->h, (int)g->w);
  if (sophon_dtype_size(g->dtype) == 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %s has an unknown dtype", op, name);
  return SOPHON_OK;
}

/* A written view: no two elements on one address. */
static sophon_status check_written(sophon_device* dev, const char* op, const sophon_global* g) {
  if (!view_is_injective(g))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: dst strides (%lld,%lld,%lld,%lld) for shape (%d,%d,%d,%d) write "
                            "some element twice",
                            op, (long long)g->stride_n, (long long)g->stride_c,
                            (long long)g->stride_h, (long long)g->stride_w, (int)g->n, (int)g->c,
                            (int)g->h, (int)g->w);
  return SOPHON_OK;
}

/* The dims and strides of a view, as the cost model takes them. */
static void dims_strides(const sophon_global* g, int32_t dims[4], int64_t strides[4]) {
  dims[0] = g->n;
  dims[1] = g->c;
  dims[2] = g->h;
  dims[3] = g->w;
  strides[0] = g->stride_n;
  strides[1] = g->stride_c;
  strides[2] = g->stride_h;
  strides[3] = g->stride_w;
}

static uint64_t global_bytes(const sophon_global* g) {
  return (uint64_t)g->n * (uint64_t)g->c * (uint64_t)g->h * (uint64_t)g->w *
         (uint64_t)sophon_dtype_size(g->dtype);
}

/* A DDR-to-DDR copy split by rows: task t copies rows [begin, end) of the (n, c, h)
 * rows in order. */
typedef struct {
  const sophon_global *dst, *src;
} ddr_copy;

static void ddr_copy_task(void* ctx, int32_t task, int32_t tasks) {
  const ddr_copy* job = (const ddr_copy*)ctx;
  const sophon_global *dst = job->dst, *src = job->src;
  const int64_t elem = sophon_dtype_size(src->dtype);
  int64_t begin, end, row;
  sophon_task_range((int64_t)src->n * src->c * src->h, task, tasks, &begin, &end);
  for (row = begin; row < end; ++row) {
    const int64_t n = row / ((int64_t)src->c * src->h), c = row / src->h % src->c, h = row % src->h;
    const uint8_t* from = (const uint8_t*)src->data +
                          (n * src->stride_n + c * src->stride_c + h * src->stride_h) * elem;
    uint8_t* to = (uint8_t*)dst->data + (n * dst->stride_n + c * dst->stride_c + h * dst->stride_h) * elem;
    if (src->stride_w == 1 && dst->stride_w == 1)
      memcpy(to, from, (size_t)(src->w * elem));
    else
      copy_elements(to, dst->stride_w * elem, from, src->stride_w * elem, src->w, (int32_t)elem);
  }
}

sophon_status sophon_gdma_copy(sophon_device* dev, const sophon_global* dst,
                               const sophon_global* src) {
  static const char* op = "gdma_copy";
  const uint8_t *src_first, *src_end, *dst_first, *dst_end;
  sophon_status status;
  uint64_t bytes;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if ((status = check_global(dev, op, "dst", dst)) != SOPHON_OK) return status;
  if ((status = check_global(dev, op, "src", src)) != SOPHON_OK) return status;
  if (dst->n != src->n || dst->c != src->c || dst->h != src->h || dst->w != src->w)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: dst shape (%d,%d,%d,%d) differs from src shape (%d,%d,%d,%d)", op,
                            (int)dst->n, (int)dst->c, (int)dst->h, (int)dst->w, (int)src->n,
                            (int)src->c, (int)src->h, (int)src->w);
  if (dst->dtype != src->dtype)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: dst dtype %s differs from src dtype %s",
                            op, sophon_dtype_name(dst->dtype), sophon_dtype_name(src->dtype));
  if ((status = check_written(dev, op, dst)) != SOPHON_OK) return status;
  view_span(src, &src_first, &src_end);
  view_span(dst, &dst_first, &dst_end);
  if (src_first < dst_end && dst_first < src_end)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: dst and src overlap in DDR (a copy must not read what it writes)",
                            op);

  ddr_writing(dev, dst_first, dst_end);
  bytes = global_bytes(dst);
  {
    /* the rows are disjoint in dst and dst does not meet src: any order, any thread */
    ddr_copy job;
    job.dst = dst;
    job.src = src;
    sophon_parallel_run(dev->pool,
                        !dev->reference && bytes >= GDMA_PARALLEL_MIN_BYTES
                            ? sophon_tasks_for(dev, bytes, (int64_t)src->n * src->c * src->h)
                            : 1,
                        ddr_copy_task, &job);
  }
  {
    int32_t dims[4];
    int64_t dst_strides[4], src_strides[4];
    dims_strides(dst, dims, dst_strides);
    dims_strides(src, dims, src_strides);
    sophon_count_gdma(dev, sophon_cost_gdma_copy(&dev->chip, dims, dst->dtype, dst_strides, src_strides),
                      bytes, 0);
  }
  dev->counters.bytes_loaded += bytes; /* DDR read as well as written */
  return SOPHON_OK;
}

sophon_status sophon_gdma_fill(sophon_device* dev, const sophon_global* dst, double value) {
  static const char* op = "gdma_fill";
  uint8_t pattern[8];
  sophon_status status;
  int32_t n, c, h, w;
  int64_t elem;
  uint64_t bytes;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  if ((status = check_global(dev, op, "dst", dst)) != SOPHON_OK) return status;
  if ((status = check_written(dev, op, dst)) != SOPHON_OK) return status;
  switch (dst->dtype) {
    case SOPHON_F32: {
      const float v = (float)value;
      memcpy(pattern, &v, 4);
      break;
    }
    case SOPHON_I8: {
      const int8_t v = (int8_t)value;
      if ((double)v != value)
        return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %g is not an int8 value", op, value);
      memcpy(pattern, &v, 1);
      break;
    }
    default: {
      const int32_t v = (int32_t)value;
      if (!(value >= -2147483648.0 && value <= 2147483647.0) || (double)v != value)
        return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: %g is not an int32 value", op, value);
      memcpy(pattern, &v, 4);
      break;
    }
  }
  ddr_view_writing(dev, dst);
  elem = sophon_dtype_size(dst->dtype);
  for (n = 0; n < dst->n; ++n)
    for (c = 0; c < dst->c; ++c)
      for (h = 0; h < dst->h; ++h)
        for (w = 0; w < dst->w; ++w)
          memcpy((uint8_t*)dst->data + (n * dst->stride_n + c * dst->stride_c +
                                        h * dst->stride_h + w * dst->stride_w) * elem,
                 pattern, (size_t)elem);
  bytes = global_bytes(dst);
  {
    int32_t dims[4];
    int64_t strides[4];
    dims_strides(dst, dims, strides);
    sophon_count_gdma(dev, sophon_cost_gdma_fill(&dev->chip, dims, dst->dtype, strides), bytes, 0);
  }
  return SOPHON_OK;
}
