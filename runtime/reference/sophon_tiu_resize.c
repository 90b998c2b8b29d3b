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

int32_t sophon_resize_nearest_index(const sophon_resize_params* p, int32_t x, int32_t in_size,
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
    *first = *last = sophon_resize_nearest_index(p, y, p->in_h, p->out_h);
  } else {
    float weight;
    linear_taps(p, y, p->in_h, p->out_h, first, last, &weight);
  }
}

void sophon_ref_resize_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                           const sophon_resize_params* p) {
  sophon_plane_walk walk;
  const int32_t in_w = in->w, out_w = out->w;
  int32_t out_y, out_x;

  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    const float* plane = (const float*)(const void*)walk.in.base;
    float* out_row = (float*)(void*)walk.out.base;
    for (out_y = 0; out_y < out->h; ++out_y, out_row += out_w) {
      const int32_t image_y = p->out_row0 + out_y;
      if (p->method == SOPHON_RESIZE_NEAREST) {
        const int32_t in_y = sophon_resize_nearest_index(p, image_y, p->in_h, p->out_h);
        const float* in_row = plane + (int64_t)(in_y - p->in_row0) * in_w;
        for (out_x = 0; out_x < out_w; ++out_x)
          out_row[out_x] = in_row[sophon_resize_nearest_index(p, out_x, in_w, out_w)];
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
  }
}

/* The image rows output image row y reads: [first, last]. */
typedef void (*source_rows_fn)(const sophon_resize_params* p, int32_t y, int32_t* first,
                               int32_t* last);

/* The bands sit inside their images, every out row reads rows in holds, then LMEM
 * bounds and overlap: the checks f32 and int8 resizes share. */
static sophon_status check_bands(sophon_device* dev, const char* op, const sophon_local* out,
                                 const sophon_local* in, const sophon_resize_params* p,
                                 source_rows_fn rows) {
  int32_t y;
  sophon_status s;
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
    rows(p, y, &first, &last);
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

/* tiu_resize's checks (operands: out, a = in, resize); the instruction table
 * (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_resize(sophon_device* dev, const char* op,
                                      const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  const sophon_resize_params* p = o->resize;
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
  return check_bands(dev, op, out, in, p, source_rows);
}

/* ------------------------------------------------------------------ int8 */

/*
 * TFLite's int8 resizes, which keep the input's quantization: NEAREST is
 * reference_ops::ResizeNearestNeighbor (GetNearestNeighbor: the source index in
 * f32), BILINEAR is the int8 reference_ops::ResizeBilinear (ResizeBilinearInteger
 * in newer TFLite): coordinates in 10 fractional bits, the four taps weighted in
 * int64 with 20 fractional bits, rounded half away from zero. TFLite's two flags
 * are the coordinate modes: align_corners is ALIGN_CORNERS, half_pixel_centers is
 * HALF_PIXEL (or TF_HALF_PIXEL_FOR_NN for nearest), neither is ASYMMETRIC; the
 * rounding field is not read (TFLite's own rounding is part of each mode).
 */
static int int8_half_pixel(const sophon_resize_params* p) {
  return p->coord == SOPHON_COORD_HALF_PIXEL || p->coord == SOPHON_COORD_TF_HALF_PIXEL_FOR_NN;
}

/* GetNearestNeighbor: the source index of output index x. */
static int32_t int8_nearest_index(const sophon_resize_params* p, int32_t x, int32_t in_size,
                                  int32_t out_size) {
  const int align_corners = p->coord == SOPHON_COORD_ALIGN_CORNERS;
  const float scale = (align_corners && out_size > 1)
                          ? (float)(in_size - 1) / (float)(out_size - 1)
                          : (float)in_size / (float)out_size;
  const float offset = int8_half_pixel(p) ? 0.5f : 0.0f;
  const float v = ((float)x + offset) * scale;
  int32_t i = align_corners ? (int32_t)roundf(v) : (int32_t)floorf(v);
  if (i > in_size - 1) i = in_size - 1;
  if (int8_half_pixel(p) && i < 0) i = 0;
  return i;
}

/* The source scale in 10 fractional bits, rounded to nearest. */
static int32_t int8_scale_10(const sophon_resize_params* p, int32_t in_size, int32_t out_size) {
  if (p->coord == SOPHON_COORD_ALIGN_CORNERS && out_size > 1)
    return ((1 << 10) * (in_size - 1) + (out_size - 1) / 2) / (out_size - 1);
  return ((1 << 10) * in_size + out_size / 2) / out_size;
}

/* ComputeInterpolationValues (integer): the source coordinate of output index x in
 * 10 fractional bits, and the two taps (C division truncates towards zero). */
static void int8_linear_taps(const sophon_resize_params* p, int32_t x, int32_t scale_10,
                             int32_t in_size, int32_t* scaled, int32_t* i0, int32_t* i1) {
  *scaled = int8_half_pixel(p) ? x * scale_10 + scale_10 / 2 - (1 << 9) : x * scale_10;
  *i0 = *scaled / (1 << 10) > 0 ? *scaled / (1 << 10) : 0;
  *i1 = (*scaled + (1 << 10) - 1) / (1 << 10);
  if (*i1 > in_size - 1) *i1 = in_size - 1;
}

static void int8_source_rows(const sophon_resize_params* p, int32_t y, int32_t* first,
                             int32_t* last) {
  if (p->method == SOPHON_RESIZE_NEAREST) {
    *first = *last = int8_nearest_index(p, y, p->in_h, p->out_h);
  } else {
    int32_t scaled;
    int8_linear_taps(p, y, int8_scale_10(p, p->in_h, p->out_h), p->in_h, &scaled, first, last);
  }
}

/* One int8 output row: image row image_y of the output, from a plane whose first
 * row is image row p->in_row0. */
typedef void (*int8_row_fn)(const sophon_resize_params* p, const int8_t* plane, int32_t in_w,
                            int8_t* out_row, int32_t out_w, int32_t image_y);

static void tflite_row(const sophon_resize_params* p, const int8_t* plane, int32_t in_w,
                       int8_t* out_row, int32_t out_w, int32_t image_y) {
  int32_t out_x;
  if (p->method == SOPHON_RESIZE_NEAREST) {
    const int8_t* in_row =
        plane + (int64_t)(int8_nearest_index(p, image_y, p->in_h, p->out_h) - p->in_row0) * in_w;
    for (out_x = 0; out_x < out_w; ++out_x)
      out_row[out_x] = in_row[int8_nearest_index(p, out_x, in_w, out_w)];
  } else {
    const int32_t width_scale_10 = int8_scale_10(p, in_w, out_w);
    int32_t input_y, y0, y1;
    const int8_t *top_row, *bottom_row;
    int8_linear_taps(p, image_y, int8_scale_10(p, p->in_h, p->out_h), p->in_h, &input_y, &y0, &y1);
    top_row = plane + (int64_t)(y0 - p->in_row0) * in_w;
    bottom_row = plane + (int64_t)(y1 - p->in_row0) * in_w;
    for (out_x = 0; out_x < out_w; ++out_x) {
      int32_t input_x, x0, x1;
      int64_t dy, dx, sum, round;
      int8_linear_taps(p, out_x, width_scale_10, in_w, &input_x, &x0, &x1);
      /* the weights of y1 and x1 in 10 fractional bits (those of y0, x0: 1024 - them) */
      dy = input_y - (1 << 10) * y0;
      dx = input_x - (1 << 10) * x0;
      sum = (int64_t)top_row[x0] * ((1 << 10) - dy) * ((1 << 10) - dx) +
            (int64_t)bottom_row[x0] * dy * ((1 << 10) - dx) +
            (int64_t)top_row[x1] * ((1 << 10) - dy) * dx + (int64_t)bottom_row[x1] * dy * dx;
      /* 20 fractional bits, rounded half away from zero (C division truncates) */
      round = sum > 0 ? (1 << 19) : -(1 << 19);
      out_row[out_x] = (int8_t)((sum + round) / (1 << 20));
    }
  }
}

/* ------------------------------------------------------- int8, onnxruntime */

/*
 * What onnxruntime's CPU provider runs for an ONNX QDQ Resize (sophon_quant.h
 * states the formulas). Its QDQ transformer drops the DequantizeLinear and
 * QuantizeLinear around a nearest Resize of one quantization (the int8 values are
 * picked as they are) but keeps them around a linear one, so bilinear runs in f32
 * on the dequantized taps and is quantized again. Every f32 operation here is
 * onnxruntime's, in its order, so the results agree bit for bit.
 */

/* The f32 source coordinate of output index x (onnxruntime's, scale out / in). */
static float ort_coordinate(sophon_resize_coord coord, int32_t x, int32_t in_size,
                            int32_t out_size) {
  const float scale = (float)out_size / (float)in_size;
  const float v = (float)x;
  if (scale == 1.0f) return v;
  switch (coord) {
    case SOPHON_COORD_ASYMMETRIC: return v / scale;
    case SOPHON_COORD_PYTORCH_HALF_PIXEL: return out_size > 1 ? (v + 0.5f) / scale - 0.5f : 0.0f;
    case SOPHON_COORD_TF_HALF_PIXEL_FOR_NN: return (v + 0.5f) / scale;
    case SOPHON_COORD_ALIGN_CORNERS:
      return out_size == 1 ? 0.0f : v * (float)(in_size - 1) / (float)(out_size - 1);
    case SOPHON_COORD_HALF_PIXEL: break;
  }
  return (v + 0.5f) / scale - 0.5f;
}

static int32_t ort_nearest_index(const sophon_resize_params* p, int32_t x, int32_t in_size,
                                 int32_t out_size) {
  const float v = ort_coordinate(p->coord, x, in_size, out_size);
  int32_t i;
  switch (p->rounding) {
    case SOPHON_ROUND_FLOOR: i = (int32_t)floorf(v); break;
    case SOPHON_ROUND_CEIL: i = (int32_t)ceilf(v); break;
    case SOPHON_ROUND_PREFER_FLOOR: /* halves down, else half away from zero */
      i = v == (float)(int64_t)v + 0.5f ? (int32_t)floorf(v) : (int32_t)roundf(v);
      break;
    default: i = (int32_t)roundf(v); break; /* SOPHON_ROUND_PREFER_CEIL */
  }
  return clamp_index(i, in_size);
}

/* One axis of onnxruntime's bilinear taps: indices i1, i2 and their weights d2
 * (of i1) and d1 (of i2). */
static void ort_linear_taps(const sophon_resize_params* p, int32_t x, int32_t in_size,
                            int32_t out_size, int32_t* i1, int32_t* i2, float* d1, float* d2) {
  float v = ort_coordinate(p->coord, x, in_size, out_size);
  const float last = (float)(in_size - 1);
  v = v < 0.0f ? 0.0f : (v > last ? last : v);
  *i1 = (int32_t)v < in_size - 1 ? (int32_t)v : in_size - 1;
  *i2 = *i1 + 1 < in_size - 1 ? *i1 + 1 : in_size - 1;
  *d1 = fabsf(v - (float)*i1);
  *d2 = fabsf(v - (float)*i2);
  if (*i1 == *i2) *d1 = *d2 = 0.5f;
}

static void ort_source_rows(const sophon_resize_params* p, int32_t y, int32_t* first,
                            int32_t* last) {
  if (p->method == SOPHON_RESIZE_NEAREST) {
    *first = *last = ort_nearest_index(p, y, p->in_h, p->out_h);
  } else {
    float d1, d2;
    ort_linear_taps(p, y, p->in_h, p->out_h, first, last, &d1, &d2);
  }
}

/* DequantizeLinear: (q - zero point) * scale. */
static float ort_dequantize(const sophon_resize_params* p, int8_t q) {
  return (float)((int32_t)q - p->input_zero_point) * p->input_scale;
}

/* QuantizeLinear: r / scale rounded half to even, plus the zero point, saturated. */
static int8_t ort_quantize(const sophon_resize_params* p, float r) {
  const float q = nearbyintf(r / p->output_scale) + (float)p->output_zero_point;
  return (int8_t)(q < -128.0f ? -128 : (q > 127.0f ? 127 : (int32_t)q));
}

static void onnxruntime_row(const sophon_resize_params* p, const int8_t* plane, int32_t in_w,
                            int8_t* out_row, int32_t out_w, int32_t image_y) {
  int32_t out_x;
  if (p->method == SOPHON_RESIZE_NEAREST) {
    const int same = p->input_scale == p->output_scale &&
                     p->input_zero_point == p->output_zero_point;
    const int8_t* in_row =
        plane + (int64_t)(ort_nearest_index(p, image_y, p->in_h, p->out_h) - p->in_row0) * in_w;
    for (out_x = 0; out_x < out_w; ++out_x) {
      const int8_t v = in_row[ort_nearest_index(p, out_x, in_w, out_w)];
      out_row[out_x] = same ? v : ort_quantize(p, ort_dequantize(p, v));
    }
  } else {
    int32_t y1, y2;
    float dy1, dy2;
    const int8_t *top_row, *bottom_row;
    ort_linear_taps(p, image_y, p->in_h, p->out_h, &y1, &y2, &dy1, &dy2);
    top_row = plane + (int64_t)(y1 - p->in_row0) * in_w;
    bottom_row = plane + (int64_t)(y2 - p->in_row0) * in_w;
    for (out_x = 0; out_x < out_w; ++out_x) {
      int32_t x1, x2;
      float dx1, dx2, r;
      ort_linear_taps(p, out_x, in_w, out_w, &x1, &x2, &dx1, &dx2);
      r = dx2 * dy2 * ort_dequantize(p, top_row[x1]) + dx1 * dy2 * ort_dequantize(p, top_row[x2]) +
          dx2 * dy1 * ort_dequantize(p, bottom_row[x1]) +
          dx1 * dy1 * ort_dequantize(p, bottom_row[x2]);
      out_row[out_x] = ort_quantize(p, r);
    }
  }
}

void sophon_ref_resize_int8(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                            const sophon_resize_params* p) {
  const int8_row_fn row =
      p->arithmetic == SOPHON_INT8_ONNXRUNTIME ? onnxruntime_row : tflite_row;
  sophon_plane_walk walk;
  int32_t out_y;
  for (sophon_plane_walk_begin(&walk, dev, out, in); sophon_plane_walk_more(&walk);
       sophon_plane_walk_next(&walk)) {
    int8_t* out_row = (int8_t*)walk.out.base;
    for (out_y = 0; out_y < out->h; ++out_y, out_row += out->w)
      row(p, (const int8_t*)walk.in.base, in->w, out_row, out->w, p->out_row0 + out_y);
  }
}

/* The onnxruntime arithmetic's own checks: its modes, finite positive scales, zero
 * points in int8, then the bands as every resize. */
static sophon_status check_onnxruntime(sophon_device* dev, const char* op, const sophon_local* out,
                                       const sophon_local* in, const sophon_resize_params* p) {
  sophon_status s;
  if ((int)p->coord < 0 || p->coord > SOPHON_COORD_TF_HALF_PIXEL_FOR_NN)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown coordinate mode %d", op,
                            (int)p->coord);
  if (p->method == SOPHON_RESIZE_NEAREST &&
      (p->rounding < SOPHON_ROUND_PREFER_FLOOR || p->rounding > SOPHON_ROUND_CEIL))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: rounding %d is no ONNX nearest_mode (round_prefer_floor, "
                            "round_prefer_ceil, floor, ceil)",
                            op, (int)p->rounding);
  s = sophon_check_onnxruntime_quantization(dev, op, p->input_scale, p->input_zero_point,
                                             p->output_scale, p->output_zero_point);
  return s != SOPHON_OK ? s : check_bands(dev, op, out, in, p, ort_source_rows);
}

/* tiu_resize_int8's checks (operands: out, a = in, resize). */
sophon_status sophon_check_tiu_resize_int8(sophon_device* dev, const char* op,
                                           const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a;
  const sophon_resize_params* p = o->resize;
  sophon_status s;

  if ((s = sophon_check_int8_chip(dev, op)) != SOPHON_OK) return s;
  if (p == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params is NULL", op);
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "out", out, SOPHON_I8)) != SOPHON_OK) return s;
  if ((s = sophon_check_dtype(dev, op, "in", in, SOPHON_I8)) != SOPHON_OK) return s;
  if (out->n != in->n || out->c != in->c)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out (n=%d, c=%d) and in (n=%d, c=%d) differ in batch or channels",
                            op, (int)out->n, (int)out->c, (int)in->n, (int)in->c);
  if (p->method != SOPHON_RESIZE_NEAREST && p->method != SOPHON_RESIZE_BILINEAR)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown method %d", op, (int)p->method);
  if (p->arithmetic == SOPHON_INT8_ONNXRUNTIME) return check_onnxruntime(dev, op, out, in, p);
  if (p->arithmetic != SOPHON_INT8_TFLITE)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: unknown arithmetic %d", op,
                            (int)p->arithmetic);
  if (p->coord != SOPHON_COORD_ASYMMETRIC && p->coord != SOPHON_COORD_ALIGN_CORNERS &&
      p->coord != SOPHON_COORD_HALF_PIXEL &&
      !(p->method == SOPHON_RESIZE_NEAREST && p->coord == SOPHON_COORD_TF_HALF_PIXEL_FOR_NN))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: coordinate mode %d is none of TFLite's (asymmetric, "
                            "align_corners, half_pixel_centers)",
                            op, (int)p->coord);
  /* (1 << 10) * size + size / 2 stays within int32 */
  if (p->in_h > (1 << 20) || in->w > (1 << 20) || p->out_h > (1 << 20) || out->w > (1 << 20))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: an image side exceeds 2^20", op);
  return check_bands(dev, op, out, in, p, int8_source_rows);
}
