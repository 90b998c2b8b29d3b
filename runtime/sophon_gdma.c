/*
 * sophon_gdma.c - the GDMA engine: moves 4-D strided global (DDR) views into and
 * out of the LMEM lane layout. Any dtype works: it only copies elements by size.
 */
#include <string.h>

#include "sophon_internal.h"

/* Copies `count` elements of `elem` bytes; steps are in bytes. */
static void copy_elements(uint8_t* dst, int64_t dst_step, const uint8_t* src,
                          int64_t src_step, int32_t count, int32_t elem) {
  int32_t i;
  if (dst_step == elem && src_step == elem) {
    memcpy(dst, src, (size_t)count * (size_t)elem);
    return;
  }
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

static void count_gdma(sophon_device* dev, const sophon_local* l, uint64_t bytes,
                       int is_load) {
  sophon_count_gdma(dev, sophon_cost_gdma(&dev->chip, bytes), bytes, is_load);
  sophon_touch(dev, l);
}

static uint64_t tensor_bytes(const sophon_local* l) {
  return (uint64_t)l->n * (uint64_t)l->c * (uint64_t)l->h * (uint64_t)l->w *
         (uint64_t)sophon_dtype_size(l->dtype);
}

sophon_status sophon_gdma_load(sophon_device* dev, const sophon_local* dst,
                               const sophon_global* src) {
  static const char* op = "gdma_load";
  sophon_view view;
  int32_t elem, batch, channel, y;
  int64_t sn, sc, sh, sw;
  sophon_status status;

  if (dev == NULL) return SOPHON_ERR_ARGUMENT;
  status = check_pair(dev, op, "src", src, "dst", dst);
  if (status != SOPHON_OK) return status;

  elem = sophon_dtype_size(dst->dtype);
  sn = src->stride_n * elem; /* strides in bytes */
  sc = src->stride_c * elem;
  sh = src->stride_h * elem;
  sw = src->stride_w * elem;
  sophon_view_init(&view, dev, dst);
  for (batch = 0; batch < dst->n; ++batch) {
    sophon_channel_iter lane_channel = sophon_channel_begin(&view, batch, 0);
    for (channel = 0; channel < dst->c; ++channel) {
      const uint8_t* src_channel = (const uint8_t*)src->data + batch * sn + channel * sc;
      for (y = 0; y < dst->h; ++y) {
        copy_elements(lane_channel.base + (int64_t)y * dst->w * elem, elem,
                      src_channel + y * sh, sw, dst->w, elem);
      }
      sophon_channel_next(&view, &lane_channel);
    }
  }
  count_gdma(dev, dst, tensor_bytes(dst), 1);
  return SOPHON_OK;
}

sophon_status sophon_gdma_store(sophon_device* dev, const sophon_global* dst,
                                const sophon_local* src) {
  static const char* op = "gdma_store";
  sophon_view view;
  int32_t elem, batch, channel, y;
  int64_t sn, sc, sh, sw;
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

  elem = sophon_dtype_size(src->dtype);
  sn = dst->stride_n * elem;
  sc = dst->stride_c * elem;
  sh = dst->stride_h * elem;
  sw = dst->stride_w * elem;
  sophon_view_init(&view, dev, src);
  for (batch = 0; batch < src->n; ++batch) {
    sophon_channel_iter lane_channel = sophon_channel_begin(&view, batch, 0);
    for (channel = 0; channel < src->c; ++channel) {
      uint8_t* dst_channel = (uint8_t*)dst->data + batch * sn + channel * sc;
      for (y = 0; y < src->h; ++y) {
        copy_elements(dst_channel + y * sh, sw,
                      lane_channel.base + (int64_t)y * src->w * elem, elem, src->w, elem);
      }
      sophon_channel_next(&view, &lane_channel);
    }
  }
  count_gdma(dev, src, tensor_bytes(src), 0);
  return SOPHON_OK;
}
