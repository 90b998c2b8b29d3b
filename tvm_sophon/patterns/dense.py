"""Fully connected: ``matmul`` with a 2-D weight, transposed (``dense``) or not,
with an optional bias and a fused activation."""
from __future__ import annotations

import itertools
from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .rules import (FUSED_ACTIVATIONS, activation_rules, with_activation, pattern_name, with_bias_add, base_rules,
                    make_check, rule_bias_per_channel, rule_clip_bounds, static_shape)


def rule_dense(ann: dict) -> Optional[str]:
    x_shape = static_shape(ann["input"])
    w_shape = static_shape(ann["weight"])
    if len(w_shape) != 2:
        return f"matmul weight of rank {len(w_shape)}; the chip's FC takes a 2-D weight"
    if len(x_shape) < 2:
        return "matmul input of rank 1"
    if "transposed_weight" in ann:
        perm = ann["transposed_weight"].attrs.axes
        if perm is not None and [int(a) for a in perm] != [1, 0]:
            return f"permute_dims axes {list(perm)} before matmul is not a transpose"
    return None


def dense_pattern(transposed: bool, with_bias: bool, act: Optional[str]):
    data, weight = wildcard(), wildcard()
    ann = {"input": data, "weight": weight}
    rhs = weight
    if transposed:
        rhs = is_op("relax.permute_dims")(weight)
        ann["transposed_weight"] = rhs
    root = is_op("relax.matmul")(data, rhs)
    ann["root"] = root
    out, _ = with_activation(with_bias_add(root, ann, with_bias), act, ann)
    return out, ann


def patterns() -> list[FusionPattern]:
    table = []
    for transposed, with_bias, act in itertools.product((False, True), (False, True), (None, *FUSED_ACTIVATIONS)):
        pat, ann = dense_pattern(transposed, with_bias, act)
        label = "dense" if transposed else "matmul"
        table.append(FusionPattern(pattern_name(label, "bias" if with_bias else None, act), pat, ann,
                                   make_check(*base_rules(), rule_dense, rule_bias_per_channel, rule_clip_bounds,
                                              *activation_rules(act))))
    return table
