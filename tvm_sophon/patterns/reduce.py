"""Reductions: ``sum``, ``mean``, ``max``, ``min`` over any run of adjacent axes,
with or without keepdims: the chip's ``tiu_reduce``, which reduces over h while
the axes before the run go on the lanes. (A spatial mean is a global average
pool: ``sophon.mean`` in pool.py, registered later, takes it first.)"""
from __future__ import annotations

from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .rules import base_rules, make_check, pattern_name, static_shape

REDUCTIONS = {"sum": "SUM", "mean": "MEAN", "max": "MAX", "min": "MIN"}


def reduced_axes(call) -> list[int]:
    """The axes a reduction call reduces, sorted and non-negative (None: all)."""
    rank = len(static_shape(call.args[0]))
    axes = call.attrs.axis
    return list(range(rank)) if axes is None else sorted({int(a) % rank for a in axes})


def rule_reduce(ann: dict) -> Optional[str]:
    root = ann["root"]
    shape = static_shape(ann["input"])
    if shape is None or not shape:
        return "reduction of a scalar or dynamic tensor"
    axes = reduced_axes(root)
    if not axes:
        return "reduction over no axis (an identity)"
    if axes != list(range(axes[0], axes[-1] + 1)):
        return f"reduction over non-adjacent axes {axes}; the chip reduces one run of axes on h"
    return None


def patterns() -> list[FusionPattern]:
    table = []
    for name in REDUCTIONS:
        data = wildcard()
        root = is_op(f"relax.{name}")(data)
        table.append(FusionPattern(pattern_name("reduce", name), root, {"input": data, "root": root},
                                   make_check(*base_rules(), rule_reduce)))
    return table
