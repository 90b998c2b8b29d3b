"""Normalisation: ``layer_norm`` over any run of adjacent axes (ConvNeXt's over
channels in NHWC is axis -1), ``instance_norm`` and a ``group_norm`` with one
channel per group (an instance norm), each with its scale and shift: the chip's
``tiu_norm``, one instruction for mean, variance, normalise, scale and shift."""
from __future__ import annotations

from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .rules import base_rules, make_check, pattern_name, static_shape

NORM_OPS = {"layer_norm": "relax.nn.layer_norm", "instance_norm": "relax.nn.instance_norm",
            "group_norm": "relax.nn.group_norm"}


def norm_axes(call) -> tuple[list[int], Optional[int]]:
    """(normalised axes sorted and non-negative, channel axis or None for layer_norm)."""
    rank = len(static_shape(call.args[0]))
    axes = sorted({int(a) % rank for a in call.attrs.axes})
    channel = None if call.op.name == "relax.nn.layer_norm" else int(call.attrs.channel_axis) % rank
    return axes, channel


def rule_norm(ann: dict) -> Optional[str]:
    root = ann["root"]
    shape = static_shape(ann["input"])
    if shape is None:
        return "normalisation of a dynamic tensor"
    axes, channel = norm_axes(root)
    if not axes or axes != list(range(axes[0], axes[-1] + 1)):
        return f"normalisation over axes {axes}; the chip normalises one run of adjacent axes on h"
    if channel is None:
        return None
    if root.op.name == "relax.nn.group_norm" and int(root.attrs.num_groups) != shape[channel]:
        return (f"group_norm with {root.attrs.num_groups} groups of {shape[channel]} channels "
                "(the chip's norm takes one channel per group: an instance norm)")
    if channel in axes or not (channel == axes[0] - 1 or channel == axes[-1] + 1 == len(shape) - 1):
        return f"channel axis {channel} is not next to the normalised axes {axes}"
    return None


def patterns() -> list[FusionPattern]:
    table = []
    for name, op_name in NORM_OPS.items():
        data, gamma, beta = wildcard(), wildcard(), wildcard()
        root = is_op(op_name)(data, gamma, beta)
        table.append(FusionPattern(pattern_name(name), root, {"input": data, "root": root},
                                   make_check(*base_rules(), rule_norm)))
    return table
