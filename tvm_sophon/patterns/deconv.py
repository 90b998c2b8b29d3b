"""conv2d_transpose (NCHW/NHWC, any kernel layout with H and W adjacent, which is
every layout the TFLite, ONNX and torch importers emit: IOHW; stride, padding,
output padding, dilation, groups) with an optional per-channel bias and a fused
activation: the chip's ``tiu_conv2d_transpose``."""
from __future__ import annotations

import itertools
from typing import Optional

from tvm.relax.transform import FusionPattern

from .conv import conv2d_pattern
from .rules import (ACTIVATIONS, CONV_DATA_LAYOUTS, base_rules, make_check, pattern_name, rule_bias_per_channel,
                    rule_clip_bounds)


def kernel_layout_ok(layout: str) -> bool:
    """A kernel layout the chip loads as (I, O, H*W) views: a permutation of
    O, I, H, W with H and W adjacent, H first."""
    return sorted(layout) == sorted("OIHW") and "HW" in layout


def rule_conv2d_transpose(ann: dict) -> Optional[str]:
    attrs = ann["root"].attrs
    if str(attrs.data_layout) not in CONV_DATA_LAYOUTS:
        return f"conv2d_transpose data layout {attrs.data_layout} (chip handles NCHW, NHWC)"
    if str(attrs.out_layout) != str(attrs.data_layout):
        return f"conv2d_transpose out layout {attrs.out_layout} differs from data layout {attrs.data_layout}"
    if not kernel_layout_ok(str(attrs.kernel_layout)):
        return f"conv2d_transpose kernel layout {attrs.kernel_layout} splits H and W"
    if attrs.out_dtype and str(attrs.out_dtype) not in ("", "float32"):
        return f"conv2d_transpose out_dtype {attrs.out_dtype}; the chip accumulates float32 here"
    return None


def axis_taps(out_size: int, in_size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """(output index, filter tap) pairs of a transposed conv that land along one
    axis: runtime/reference/sophon_tiu_deconv.c's deconv_axis_taps."""
    taps = 0
    for x in range(out_size):
        for k in range(kernel):
            t = x + pad - k * dilation
            taps += t >= 0 and t % stride == 0 and t // stride < in_size
    return taps


def transpose_macs(n: int, in_c: int, out_c: int, groups: int, in_hw, out_hw, kernel, strides, pad_tl,
                   dilation) -> int:
    """Multiply-accumulates of a transposed conv: the taps that land on the output
    (taps that fall into the cropped padding do no work), as the chip counts them."""
    rows = axis_taps(out_hw[0], in_hw[0], kernel[0], strides[0], pad_tl[0], dilation[0])
    cols = axis_taps(out_hw[1], in_hw[1], kernel[1], strides[1], pad_tl[1], dilation[1])
    return n * out_c * (in_c // groups) * rows * cols


def patterns() -> list[FusionPattern]:
    table = []
    for with_bias, act in itertools.product((False, True), (None, *ACTIVATIONS)):
        pat, ann = conv2d_pattern(with_bias, act, "relax.nn.conv2d_transpose")
        table.append(FusionPattern(pattern_name("conv2d_transpose", "bias" if with_bias else None, act), pat, ann,
                                   make_check(*base_rules(), rule_conv2d_transpose, rule_bias_per_channel,
                                              rule_clip_bounds)))
    return table
