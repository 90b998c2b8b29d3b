/*
 * sophon_tiu_resize.c - TIU 2-D resize (nearest, bilinear) of every (n, c) plane,
 * with the coordinate modes ONNX Resize and TVM's image.resize2d define
 * (sophon.h states the formulas).
 *
 * The coordinates are computed in f32 in the order TVM's topi.image.resize2d
 * writes them, so the chip and TVM's own build pick the same source pixels and
 * the same interpolation weights. The operands may be bands of rows of a larger
 * image (in_row0, out_row0): the compiler slices a resize by rows like a conv,
 * and the checks reject a band that reads a row its input band does not hold.
 */
#include <math.h>

#include "reference/sophon_reference.h"

/* The f32 source coordinate of output index x along an axis of in_size -> out_size. */
static float source_coordinate(sophon_resize_coord coord, int32_t x, int32_t in_size,
                               int32_t out_size) {
  const float scale = (float)in_size / (float)out_size;
  switch (coord) {
    case SOPHON_COORD_HALF_PIXEL: return ((float)x + 0.5f) * scale - 0.5f;
    case SOPHON_COORD_ALIGN_CORNERS:
      return out_size > 1 ? (float)(in_size - 1) / (float)(out_size - 1) * (float)x : 0.0f;
    case SOPHON_COORD_ASYMMETRIC: return scale * (float)x;
    case SOPHON_COORD_PYTORCH_HALF_PIXEL:
      return out_size > 1 ? ((float)x + 0.5f) * scale - 0.5f : 0.0f;
    case SOPHON_COORD_TF_HALF_PIXEL_FOR_NN: return ((float)x + 0.5f) * scale;
  }
  return 0.0f;
}

static int32_t clamp_index(int32_t i, int32_t size) {
  return i < 0 ? 0 : (i >= size ? size - 1 : i);
}

/* The nearest source index (clamped to the image) of output index x. */
static int32_t nearest_index(const sophon_resize_params* p, int32_t x, int32_t in_size,
                             int32_t out_size) {
  float v;
  int32_t i;
  /* an integer upsampling ratio with asymmetric floor is an integer division (as
   * TVM lowers it), so no f32 rounding can move an index */
  if (p->coord == SOPHON_COORD_ASYMMETRIC && p->rounding == SOPHON_ROUND_FLOOR &&
      out_size % in_size == 0 &&
      (double)(out_size / in_size) <= 1.0 / (1e-5 * in_size + 1e-5))
    return clamp_index(x / (out_size / in_size), in_size);
  v = source_coordinate(p->coord, x, in_size, out_size);
  switch (p->rounding) {
    case SOPHON_ROUND_HALF_EVEN: i = (int32_t)nearbyintf(v); break;
    case SOPHON_ROUND_PREFER_FLOOR: i = (int32_t)ceilf(v - 0.5f); break;
    case SOPHON_ROUND_PREFER_CEIL: i = (int32_t)floorf(v + 0.5f); break;
    case SOPHON_ROUND_FLOOR: i = (int32_t)floorf(v + 1e-5f); break;
    default: i = (int32_t)ceilf(v - 1e-5f); break; /* SOPHON_ROUND_CEIL */
  }
  return clamp_index(i, in_size);
}

/* Bilinear taps of output index x: indices i0, i1 (clamped) and the weight of i1. */
static void linear_taps(const sophon_resize_params* p, int32_t x, int32_t in_size,
                        int32_t out_size, int32_t* i0, int32_t* i1, float* weight) {
  const float v = source_coordinate(p->coord, x, in_size, out_size);
  const int32_t base = (int32_t)floorf(v);
  *weight = v - (float)base;
  *i0 = clamp_index(base, in_size);
  *i1 = clamp_index(base + 1, in_size);
}

/* The image rows output image row y reads: [first, last]. */
static void source_rows(const sophon_resize_params* p, int32_t y, int32_t* first, int32_t* last) {
  if (p->method == SOPHON_RESIZE_NEAREST) {
    *first = *last = nearest_index(p, y, p->in_h, p->out_h);
  } else {
    float weight;
    linear_taps(p, y, p->in_h, p->out_h, first, last, &weight);
  }
}

void sophon_ref_resize_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_resize_params* p) {
  sophon_view out_v, in_v;
  const int32_t in_w = in->w, out_w = out->w;
  int32_t batch, channel, out_y, out_x;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  for (batch = 0; batch < out->n; ++batch) {
    sophon_channel_iter in_it = sophon_channel_begin(&in_v, batch, 0);
    sophon_channel_iter out_it = sophon_channel_begin(&out_v, batch, 0);
    for (channel = 0; channel < out->c; ++channel) {
      const float* plane = (const float*)(const void*)in_it.base;
      float* out_row = (float*)(void*)out_it.base;
      for (out_y = 0; out_y < out->h; ++out_y, out_row += out_w) {
        const int32_t image_y = p->out_row0 + out_y;
        if (p->method == SOPHON_RESIZE_NEAREST) {
          const float* in_row =
              plane + (int64_t)(nearest_index(p, image_y, p->in_h, p->out_h) - p->in_row0) * in_w;
          for (out_x = 0; out_x < out_w; ++out_x)
            out_row[out_x] = in_row[nearest_index(p, out_x, in_w, out_w)];
        } else {
          int32_t y0, y1;
          float ly;
          const float *top_row, *bottom_row;
          linear_taps(p, image_y, p->in_h, p->out_h, &y0, &y1, &ly);
          top_row = plane + (int64_t)(y0 - p->in_row0) * in_w;
          bottom_row = plane + (int64_t)(y1 - p->in_row0) * in_w;
          for (out_x = 0; out_x < out_w; ++out_x) {
            int32_t x0, x1;
            float lx, top, bottom;
            linear_taps(p, out_x, in_w, out_w, &x0, &x1, &lx);
            top = top_row[x0] * (1.0f - lx) + top_row[x1] * lx;
            bottom = bottom_row[x0] * (1.0f - lx) + bottom_row[x1] * lx;
            out_row[out_x] = top * (1.0f - ly) + bottom * ly;
          }
        }
      }
      sophon_channel_next(&in_v, &in_it);
      sophon_channel_next(&out_v, &out_it);
    }
  }
}

/* tiu_resize's checks (operands: out, a = in, resize); the instruction table
 * (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_resize(sophon_device* dev, const char* op,
                                      const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  const sophon_resize_params* p = o->resize;
  int32_t y;
  sophon_status s;

  if (p == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params is NULL", op);
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, "in", in, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_tiu_dtype(dev, op, out->dtype)) != SOPHON_OK) return s;
  if (out->n != in->n || out->c != in->c)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out (n=%d, c=%d) and in (n=%d, c=%d) differ in batch or channels",
                            op, (int)out->n, (int)out->c, (int)in->n, (int)in->c);
  if (p->method != SOPHON_RESIZE_NEAREST && p->method != SOPHON_RESIZE_BILINEAR)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown method %d", op, (int)p->method);
  if ((int)p->coord < 0 || p->coord > SOPHON_COORD_TF_HALF_PIXEL_FOR_NN)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown coordinate mode %d", op,
                            (int)p->coord);
  if ((int)p->rounding < 0 || p->rounding > SOPHON_ROUND_CEIL)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown rounding %d", op,
                            (int)p->rounding);
  if (p->in_row0 < 0 || p->in_h < in->h || p->in_row0 > p->in_h - in->h)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: in rows [%d, %d) are outside the %d-row input image", op,
                            (int)p->in_row0, (int)p->in_row0 + (int)in->h, (int)p->in_h);
  if (p->out_row0 < 0 || p->out_h < out->h || p->out_row0 > p->out_h - out->h)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out rows [%d, %d) are outside the %d-row output image", op,
                            (int)p->out_row0, (int)p->out_row0 + (int)out->h, (int)p->out_h);
  for (y = p->out_row0; y < p->out_row0 + out->h; ++y) {
    int32_t first, last;
    source_rows(p, y, &first, &last);
    if (first < p->in_row0 || last >= p->in_row0 + in->h)
      return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                              "%s: out row %d reads input rows [%d, %d], in holds [%d, %d)", op,
                              (int)y, (int)first, (int)last, (int)p->in_row0,
                              (int)p->in_row0 + (int)in->h);
  }
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  return sophon_check_disjoint(dev, op, out, "in", in);
}
