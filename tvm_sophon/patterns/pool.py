"""Pooling: max / average pool2d, adaptive average pool and a spatial mean
(global average pooling)."""
from __future__ import annotations

from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .rules import CONV_DATA_LAYOUTS, pattern_name, base_rules, make_check, static_shape, window_attr_reason


def rule_pool(ann: dict) -> Optional[str]:
    attrs = ann["root"].attrs
    if str(attrs.layout) not in CONV_DATA_LAYOUTS:
        return f"pool layout {attrs.layout} (chip handles NCHW, NHWC)"
    if str(attrs.out_layout) != str(attrs.layout):
        return f"pool out layout {attrs.out_layout} differs from layout {attrs.layout}"
    reason = window_attr_reason("pool", pool_size=attrs.pool_size, strides=attrs.strides,
                                dilation=attrs.dilation, padding=attrs.padding)
    return reason or _pool_window_reason(ann, attrs)


def _pool_window_reason(ann: dict, attrs) -> Optional[str]:
    """The chip's pool (check_pool_axis in runtime/reference/sophon_tiu_pool.c): per
    axis, the dilated window fits the padded input, and the output size lies between
    the floor-mode size and the ceil-mode size whose last window starts inside the
    padded input."""
    in_shape, out_shape = static_shape(ann["input"]), static_shape(ann["root"])
    if in_shape is None or out_shape is None or len(in_shape) != 4:
        return None
    layout = str(attrs.layout)
    top, left, bottom, right = (int(v) for v in attrs.padding)
    for axis, k, s, d, pad_a, pad_b in (("H", *attrs.pool_size[:1], *attrs.strides[:1], *attrs.dilation[:1],
                                         top, bottom),
                                        ("W", attrs.pool_size[1], attrs.strides[1], attrs.dilation[1],
                                         left, right)):
        k, s, d = int(k), int(s), int(d)
        size, out = in_shape[layout.index(axis)], out_shape[layout.index(axis)]
        padded = size + pad_a + pad_b
        span = padded - d * (k - 1) - 1
        if span < 0:
            return (f"pool window {k} (dilation {d}) is wider than the padded input {padded} along {axis}; "
                    "the chip's pool windows lie inside the input")
        floor_size = span // s + 1
        ceil_size = -(-span // s) + 1
        if (ceil_size - 1) * s >= padded:
            ceil_size -= 1
        if not floor_size <= out <= ceil_size:
            return (f"pool output {out} along {axis} is outside [{floor_size}, {ceil_size}] for input {size}, "
                    f"window {k}, stride {s}, padding {pad_a}+{pad_b}: a window would start outside the input")
    return None


def rule_adaptive_pool(ann: dict) -> Optional[str]:
    attrs = ann["root"].attrs
    if str(attrs.layout) not in CONV_DATA_LAYOUTS or str(attrs.out_layout) != str(attrs.layout):
        return f"adaptive pool layout {attrs.layout} -> {attrs.out_layout} (chip handles NCHW, NHWC)"
    in_shape = static_shape(ann["input"])
    out_shape = static_shape(ann["root"])
    h_axis, w_axis = (2, 3) if str(attrs.layout) == "NCHW" else (1, 2)
    for axis in (h_axis, w_axis):
        if in_shape[axis] % out_shape[axis] != 0:
            return (f"adaptive pool {in_shape} -> {out_shape} has uneven windows; "
                    "the chip's pool needs a fixed kernel")
    return None


def rule_mean_spatial(ann: dict) -> Optional[str]:
    root = ann["root"]
    shape = static_shape(ann["input"])
    if len(shape) != 4:
        return "mean over a non 4-D tensor (the chip's mean is a global average pool)"
    axes = sorted(int(a) % 4 for a in (root.attrs.axis or []))
    if axes not in ([2, 3], [1, 2]):
        return f"mean over axes {axes}; the chip runs it only as a global pool over H, W"
    return None


def patterns() -> list[FusionPattern]:
    table = []
    for pool in ("max_pool2d", "avg_pool2d"):
        data = wildcard()
        root = is_op(f"relax.nn.{pool}")(data)
        table.append(FusionPattern(pattern_name(pool), root, {"input": data, "root": root},
                                   make_check(*base_rules(), rule_pool)))
    data = wildcard()
    root = is_op("relax.nn.adaptive_avg_pool2d")(data)
    table.append(FusionPattern(pattern_name("adaptive_avg_pool2d"), root, {"input": data, "root": root},
                               make_check(*base_rules(), rule_adaptive_pool)))
    data = wildcard()
    root = is_op("relax.mean")(data)
    table.append(FusionPattern(pattern_name("mean"), root, {"input": data, "root": root},
                               make_check(*base_rules(), rule_mean_spatial)))
    return table
