/*
 * sophon_tiu_conv.c - TIU conv2d and fully-connected instructions.
 *
 * The reference kernels (f32) and each instruction's checks (descriptors, LMEM
 * bounds and operand overlap), which isa/sophon_isa.c runs first. Accumulation
 * order is fixed: conv sums in_channel, filter_y, filter_x in that order from 0,
 * then adds the bias, then the activation; fc sums k in order, then bias, then
 * activation. Padding taps are skipped (they
 * read as zero).
 */
#include "reference/sophon_tiu_activation.h"
#include "reference/sophon_reference.h"

/* ------------------------------------------------------------- conv2d */

void sophon_ref_conv2d_f32(sophon_device* dev, const sophon_local* out,
                           const sophon_local* in, const sophon_local* weight,
                           const sophon_local* bias, const sophon_conv_params* p) {
  sophon_view out_v, in_v, weight_v, bias_v;
  const int32_t in_c_per_group = in->c / p->groups;
  const int32_t out_c_per_group = out->c / p->groups;
  const int32_t kernel_h = p->kernel_h, kernel_w = p->kernel_w;
  const int32_t dilation_h = p->dilation_h, dilation_w = p->dilation_w;
  const int32_t in_h = in->h, in_w = in->w;
  const int64_t filter_bytes = (int64_t)kernel_h * kernel_w * (int64_t)sizeof(float);
  int32_t batch, out_channel, out_y, out_x, in_channel, filter_y, filter_x;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  sophon_view_init(&weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&bias_v, dev, bias);

  for (batch = 0; batch < out->n; ++batch) {
    for (out_channel = 0; out_channel < out->c; ++out_channel) {
      const int32_t group = out_channel / out_c_per_group;
      const sophon_channel_iter first_in =
          sophon_channel_begin(&in_v, batch, group * in_c_per_group);
      /* weight (1, OC, IC/groups, KH*KW): this output channel's filters, [ic][ky][kx] */
      const uint8_t* filters = sophon_view_channel(&weight_v, 0, out_channel);
      const float bias_value = bias != NULL ? *sophon_view_f32(&bias_v, 0, out_channel) : 0.0f;
      float* out_data = sophon_view_f32(&out_v, batch, out_channel);

      for (out_y = 0; out_y < out->h; ++out_y) {
        const int64_t in_y_origin = (int64_t)out_y * p->stride_h - p->pad_top;
        const int32_t filter_y_begin = sophon_first_tap(in_y_origin, dilation_h);
        const int32_t filter_y_end = sophon_end_tap(in_y_origin, dilation_h, in_h, kernel_h);

        for (out_x = 0; out_x < out->w; ++out_x) {
          const int64_t in_x_origin = (int64_t)out_x * p->stride_w - p->pad_left;
          const int32_t filter_x_begin = sophon_first_tap(in_x_origin, dilation_w);
          const int32_t filter_x_end = sophon_end_tap(in_x_origin, dilation_w, in_w, kernel_w);
          sophon_channel_iter in_channel_it = first_in;
          const uint8_t* filter = filters;
          float acc = 0.0f;

          for (in_channel = 0; in_channel < in_c_per_group; ++in_channel) {
            const float* in_data = (const float*)(const void*)in_channel_it.base;
            const float* filter_data = (const float*)(const void*)filter;
            for (filter_y = filter_y_begin; filter_y < filter_y_end; ++filter_y) {
              const float* in_row =
                  in_data + (in_y_origin + (int64_t)filter_y * dilation_h) * in_w;
              const float* filter_row = filter_data + (int64_t)filter_y * kernel_w;
              for (filter_x = filter_x_begin; filter_x < filter_x_end; ++filter_x) {
                acc += in_row[in_x_origin + (int64_t)filter_x * dilation_w] * filter_row[filter_x];
              }
            }
            sophon_channel_next(&in_v, &in_channel_it);
            filter += filter_bytes;
          }
          out_data[(int64_t)out_y * out->w + out_x] = sophon_activate_f32(&p->act, acc + bias_value);
        }
      }
    }
  }
}

/* OH (or OW) from the header formula, or -1 if the kernel exceeds the padded input. */
/* A per-channel bias: shape (1, channels, 1, 1), or NULL for none. */
sophon_status sophon_check_bias_shape(sophon_device* dev, const char* op, const sophon_local* bias,
                                      int32_t channels) {
  if (bias != NULL && (bias->n != 1 || bias->c != channels || bias->h != 1 || bias->w != 1))
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: bias shape (%d,%d,%d,%d) does not match (1,%d,1,1)", op,
                            (int)bias->n, (int)bias->c, (int)bias->h, (int)bias->w,
                            (int)channels);
  return SOPHON_OK;
}

static int64_t conv_out_size(int32_t in, int32_t pad_a, int32_t pad_b, int32_t dilation,
                             int32_t kernel, int32_t stride) {
  int64_t span = (int64_t)in + pad_a + pad_b - (int64_t)dilation * (kernel - 1) - 1;
  return span < 0 ? -1 : span / stride + 1;
}

/* The parameter and shape rules of conv2d (sophon.h), shared by the float and the
 * int8 instruction (dtypes, bounds and overlap are checked by each). */
sophon_status sophon_check_conv_shapes(sophon_device* dev, const char* op, const sophon_local* out,
                                       const sophon_local* in, const sophon_local* weight,
                                       const sophon_local* bias, const sophon_conv_params* p) {
  int64_t oh, ow;
  int32_t icg;
  sophon_status s;
  if (p == NULL) return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: params are NULL", op);
  if (p->kernel_h <= 0 || p->kernel_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
      p->dilation_h <= 0 || p->dilation_w <= 0 || p->groups <= 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: kernel %dx%d, stride %dx%d, dilation %dx%d and groups %d "
                            "must be positive",
                            op, (int)p->kernel_h, (int)p->kernel_w, (int)p->stride_h,
                            (int)p->stride_w, (int)p->dilation_h, (int)p->dilation_w,
                            (int)p->groups);
  if (p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: padding (top %d, left %d, bottom %d, right %d) is negative",
                            op, (int)p->pad_top, (int)p->pad_left, (int)p->pad_bottom,
                            (int)p->pad_right);
  if (in->c % p->groups != 0 || out->c % p->groups != 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: groups %d does not divide in.c %d and out.c %d", op,
                            (int)p->groups, (int)in->c, (int)out->c);
  icg = in->c / p->groups;
  if (weight->layout != SOPHON_LAYOUT_COMPACT)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: weight must be COMPACT", op);
  if (weight->n != 1 || weight->c != out->c || weight->h != icg ||
      (int64_t)weight->w != (int64_t)p->kernel_h * p->kernel_w)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: weight shape (%d,%d,%d,%d) does not match (1, out.c=%d, "
                            "in.c/groups=%d, kernel %dx%d=%lld)",
                            op, (int)weight->n, (int)weight->c, (int)weight->h,
                            (int)weight->w, (int)out->c, (int)icg, (int)p->kernel_h,
                            (int)p->kernel_w, (long long)p->kernel_h * p->kernel_w);
  if ((s = sophon_check_bias_shape(dev, op, bias, out->c)) != SOPHON_OK) return s;
  oh = conv_out_size(in->h, p->pad_top, p->pad_bottom, p->dilation_h, p->kernel_h, p->stride_h);
  ow = conv_out_size(in->w, p->pad_left, p->pad_right, p->dilation_w, p->kernel_w, p->stride_w);
  if (oh < 0 || ow < 0)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: dilated kernel %dx%d (dilation %dx%d) exceeds padded input "
                            "%dx%d",
                            op, (int)p->kernel_h, (int)p->kernel_w, (int)p->dilation_h,
                            (int)p->dilation_w,
                            (int)(in->h + p->pad_top + p->pad_bottom),
                            (int)(in->w + p->pad_left + p->pad_right));
  if (out->n != in->n || out->h != oh || out->w != ow)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out shape (%d,%d,%d,%d) does not match (%d,%d,%lld,%lld) "
                            "from in %dx%d, kernel %dx%d, stride %dx%d, pad (t%d,l%d,b%d,r%d), "
                            "dilation %dx%d",
                            op, (int)out->n, (int)out->c, (int)out->h, (int)out->w,
                            (int)in->n, (int)out->c, (long long)oh, (long long)ow, (int)in->h,
                            (int)in->w, (int)p->kernel_h, (int)p->kernel_w, (int)p->stride_h,
                            (int)p->stride_w, (int)p->pad_top, (int)p->pad_left,
                            (int)p->pad_bottom, (int)p->pad_right, (int)p->dilation_h,
                            (int)p->dilation_w);
  return SOPHON_OK;
}

/* tiu_conv2d's checks (operands: out, a = in, b = weight, c = bias (or NULL), conv); the
 * instruction table (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_conv2d(sophon_device* dev, const char* op,
                                      const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a, *weight = o->b, *bias = o->c;
  const sophon_conv_params* p = o->conv;
  sophon_status s;

  /* descriptors */
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "weight", weight)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_local(dev, op, "bias", bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_conv_shapes(dev, op, out, in, weight, bias, p)) != SOPHON_OK) return s;
  if ((s = sophon_check_activation(dev, op, &p->act)) != SOPHON_OK) return s;
  /* dtypes, bounds, overlap */
  return sophon_check_conv_operands(dev, op, out, in, weight, bias);
}

sophon_status sophon_check_conv_operands(sophon_device* dev, const char* op,
                                         const sophon_local* out, const sophon_local* in,
                                         const sophon_local* weight, const sophon_local* bias) {
  sophon_status s;
  if ((s = sophon_check_same_dtype(dev, op, "in", in, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_same_dtype(dev, op, "weight", weight, "in", in)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_same_dtype(dev, op, "bias", bias, "in", in)) != SOPHON_OK)
    return s;
  if ((s = sophon_check_tiu_dtype(dev, op, in->dtype)) != SOPHON_OK) return s;
  /* bounds, then overlap */
  if ((s = sophon_check_bounds(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_bounds(dev, op, "weight", weight)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_bounds(dev, op, "bias", bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint(dev, op, out, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_disjoint(dev, op, out, "weight", weight)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_disjoint(dev, op, out, "bias", bias)) != SOPHON_OK)
    return s;
  return SOPHON_OK;
}

/* ----------------------------------------------------------------- fc */

void sophon_ref_fc_f32(sophon_device* dev, const sophon_local* out, const sophon_local* in,
                       const sophon_local* weight, const sophon_local* bias,
                       const sophon_activation* act) {
  sophon_view out_v, in_v, weight_v, bias_v;
  const int32_t batches = in->n, depth = in->c;
  int32_t batch, out_feature, k;

  sophon_view_init(&out_v, dev, out);
  sophon_view_init(&in_v, dev, in);
  sophon_view_init(&weight_v, dev, weight);
  if (bias != NULL) sophon_view_init(&bias_v, dev, bias);

  for (batch = 0; batch < batches; ++batch) {
    const sophon_channel_iter first_in = sophon_channel_begin(&in_v, batch, 0);
    for (out_feature = 0; out_feature < out->c; ++out_feature) {
      /* weight (1, N, K, 1): row out_feature is contiguous along h */
      const float* weight_row = sophon_view_f32(&weight_v, 0, out_feature);
      const float bias_value = bias != NULL ? *sophon_view_f32(&bias_v, 0, out_feature) : 0.0f;
      sophon_channel_iter in_it = first_in; /* in[batch, k] lives in lane k % npu */
      float acc = 0.0f;
      for (k = 0; k < depth; ++k) {
        acc += *(const float*)(const void*)in_it.base * weight_row[k];
        sophon_channel_next(&in_v, &in_it);
      }
      *sophon_view_f32(&out_v, batch, out_feature) = sophon_activate_f32(act, acc + bias_value);
    }
  }
}

/* The shape rules of fc (sophon.h), shared by the float and the int8 instruction. */
sophon_status sophon_check_fc_shapes(sophon_device* dev, const char* op, const sophon_local* out,
                                     const sophon_local* in, const sophon_local* weight,
                                     const sophon_local* bias) {
  if (in->h != 1 || in->w != 1)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: in shape (%d,%d,%d,%d) is not (M,K,1,1)", op, (int)in->n,
                            (int)in->c, (int)in->h, (int)in->w);
  if (weight->layout != SOPHON_LAYOUT_COMPACT)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT, "%s: weight must be COMPACT", op);
  if (weight->n != 1 || weight->h != in->c || weight->w != 1)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: weight shape (%d,%d,%d,%d) does not match (1,N,K=%d,1)", op,
                            (int)weight->n, (int)weight->c, (int)weight->h, (int)weight->w,
                            (int)in->c);
  if (out->n != in->n || out->c != weight->c || out->h != 1 || out->w != 1)
    return sophon_set_error(dev, SOPHON_ERR_ARGUMENT,
                            "%s: out shape (%d,%d,%d,%d) does not match (M=%d,N=%d,1,1)", op,
                            (int)out->n, (int)out->c, (int)out->h, (int)out->w, (int)in->n,
                            (int)weight->c);
  return sophon_check_bias_shape(dev, op, bias, weight->c);
}

/* tiu_fc's checks (operands: out, a = in, b = weight, c = bias (or NULL), act); the
 * instruction table (isa/sophon_isa.c) runs them before any kernel. */
sophon_status sophon_check_tiu_fc(sophon_device* dev, const char* op,
                                  const sophon_operands* o) {
  const sophon_local *out = o->out, *in = o->a, *weight = o->b, *bias = o->c;
  const sophon_activation* act = o->act;
  sophon_status s;

  /* descriptors */
  if ((s = sophon_check_local(dev, op, "out", out)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "in", in)) != SOPHON_OK) return s;
  if ((s = sophon_check_local(dev, op, "weight", weight)) != SOPHON_OK) return s;
  if (bias != NULL && (s = sophon_check_local(dev, op, "bias", bias)) != SOPHON_OK) return s;
  if ((s = sophon_check_activation(dev, op, act)) != SOPHON_OK) return s;
  if ((s = sophon_check_fc_shapes(dev, op, out, in, weight, bias)) != SOPHON_OK) return s;
  /* dtypes, bounds, overlap */
  return sophon_check_conv_operands(dev, op, out, in, weight, bias);
}
