"""Element-wise ops: binary ops with broadcast (and a fused activation), and
unary activations."""
from __future__ import annotations

from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .rules import (with_activation, pattern_name, base_rules, elementwise_rules, make_check, rule_broadcastable,
                    rule_clip_bounds)


BINARY_OPS = {
    "add": "relax.add",
    "subtract": "relax.subtract",
    "multiply": "relax.multiply",
    "maximum": "relax.maximum",
    "minimum": "relax.minimum",
    "divide": "relax.divide",
}
UNARY_OPS = {
    "relu": ("relax.nn.relu", 0),
    "clip": ("relax.clip", 2),
    "leakyrelu": ("relax.nn.leakyrelu", 0),
    "sigmoid": ("relax.sigmoid", 0),
    "tanh": ("relax.tanh", 0),
    "softmax": ("relax.nn.softmax", 0),
}


def binary_pattern(op_name: str, act: Optional[str]):
    lhs, rhs = wildcard(), wildcard()
    root = is_op(op_name)(lhs, rhs)
    ann = {"lhs": lhs, "rhs": rhs, "root": root}
    out, _ = with_activation(root, act, ann)
    return out, ann


def unary_pattern(op_name: str, n_extra: int = 0):
    data = wildcard()
    root = is_op(op_name)(data, *(wildcard() for _ in range(n_extra)))
    ann = {"input": data, "root": root}
    if op_name == "relax.clip":
        ann["activation"] = root
    return root, ann


def patterns() -> list[FusionPattern]:
    table = []
    for name, (op_name, n_extra) in UNARY_OPS.items():
        pat, ann = unary_pattern(op_name, n_extra)
        # softmax's view follows its axis (codegen/layers.py): at most 4-D
        rules = base_rules() if name == "softmax" else elementwise_rules()
        table.append(FusionPattern(pattern_name(name), pat, ann, make_check(*rules, rule_clip_bounds)))
    for name, op_name in BINARY_OPS.items():
        for act in (None, "relu", "clip"):
            pat, ann = binary_pattern(op_name, act)
            table.append(FusionPattern(pattern_name(name, act), pat, ann,
                                       make_check(*elementwise_rules(), rule_broadcastable, rule_clip_bounds)))
    return table
