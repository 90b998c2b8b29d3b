"""conv2d (NCHW/NHWC, any kernel layout the importers emit, groups incl.
depthwise) with an optional per-channel bias and a fused activation."""
from __future__ import annotations

import itertools
from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .rules import (CONV_DATA_LAYOUTS, CONV_KERNEL_LAYOUTS, FUSED_ACTIVATIONS, activation_rules, with_activation,
                    pattern_name, with_bias_add, base_rules, make_check, rule_bias_per_channel, rule_clip_bounds,
                    static_shape, window_attr_reason)


def rule_conv2d(ann: dict) -> Optional[str]:
    attrs = ann["root"].attrs
    if str(attrs.data_layout) not in CONV_DATA_LAYOUTS:
        return f"conv2d data layout {attrs.data_layout} (chip handles NCHW, NHWC)"
    if str(attrs.out_layout) != str(attrs.data_layout):
        return f"conv2d out layout {attrs.out_layout} differs from data layout {attrs.data_layout}"
    if str(attrs.kernel_layout) not in CONV_KERNEL_LAYOUTS:
        return f"conv2d kernel layout {attrs.kernel_layout} not one of {', '.join(CONV_KERNEL_LAYOUTS)}"
    if attrs.out_dtype and str(attrs.out_dtype) not in ("", "float32"):
        return f"conv2d out_dtype {attrs.out_dtype}; the chip accumulates float32 here"
    reason = window_attr_reason("conv2d", strides=attrs.strides, dilation=attrs.dilation,
                                padding=attrs.padding, groups=[attrs.groups])
    if reason is None:
        shape = static_shape(ann["input"])
        channels = shape[str(attrs.data_layout).index("C")] if shape is not None else None
        if channels is not None and channels % int(attrs.groups):
            reason = f"conv2d groups {int(attrs.groups)} do not divide its {channels} input channels"
    return reason


def conv2d_pattern(with_bias: bool, act: Optional[str], op_name: str = "relax.nn.conv2d"):
    data, weight = wildcard(), wildcard()
    root = is_op(op_name)(data, weight)
    ann = {"input": data, "weight": weight, "root": root}
    out, _ = with_activation(with_bias_add(root, ann, with_bias), act, ann)
    return out, ann


def patterns() -> list[FusionPattern]:
    table = []
    for with_bias, act in itertools.product((False, True), (None, *FUSED_ACTIVATIONS)):
        pat, ann = conv2d_pattern(with_bias, act)
        table.append(FusionPattern(pattern_name("conv2d", "bias" if with_bias else None, act), pat, ann,
                                   make_check(*base_rules(), rule_conv2d, rule_bias_per_channel, rule_clip_bounds,
                                              *activation_rules(act))))
    return table
