"""Activations and element-wise math on their own: the chains of ``chains.CHAINS`` (hard-swish, SiLU, GELU, ...),
the special functions of ``chains.MATH`` (sqrt, exp, erf, ...), and PReLU, whose
per-channel slope is a second operand (a binary op on the chip); and the
chains fused after a binary op. conv2d and fc fuse them in their own families
(``rules.FUSED_ACTIVATIONS``).

Every pattern here is ``sophon.<name>`` with the keys ``input`` (the activation
entering the chain) and ``root`` (the chain's result); a chain's constants are
``act.*`` (see chains.py); PReLU's slope is ``rhs``.
"""
from __future__ import annotations

from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from . import chains, eltwise
from .rules import (activation_rules, base_rules, elementwise_rules, make_check, pattern_name, rule_broadcastable, rule_clip_bounds,
                    static_shape)

# binary ops an activation chain fuses after (a residual add, say); registered
# here, after the standalone chains, so that the fused pattern wins
FUSING_BINARY_OPS = ("add", "subtract", "multiply")


def chain_pattern(chain: chains.Chain):
    x = wildcard()
    out, named = chain.pattern(x)
    return out, {"input": x, "root": out, **named}


def prelu_pattern():
    """nn.prelu(x, slope) (ONNX, TFLite), where(x > 0, x, x * slope) (torch.export)."""
    x, slope, zero = wildcard(), wildcard(), wildcard()
    op = is_op("relax.nn.prelu")(x, slope)
    where = is_op("relax.where")(is_op("relax.greater")(x, zero), x, is_op("relax.multiply")(x, slope))
    root = op | where
    return root, {"input": x, "rhs": slope, "root": root, "act.c_zero": zero}


def rule_prelu(ann: dict) -> Optional[str]:
    root, x_shape, slope_shape = ann["root"], static_shape(ann["input"]), static_shape(ann["rhs"])
    if root.op.name == "relax.nn.prelu":
        axis = int(root.attrs.axis) % len(x_shape)
        if len(slope_shape) != 1 or slope_shape[0] not in (1, x_shape[axis]):
            return f"prelu slope of shape {slope_shape} is not one value per channel of axis {axis} of {x_shape}"
        return None
    if chains.scalar(ann["act.c_zero"]) != 0.0:
        return "where(x > c, x, x * slope) with c != 0 is not PReLU"
    padded = (1,) * (len(x_shape) - len(slope_shape)) + slope_shape
    if len(slope_shape) > len(x_shape) or any(d not in (1, o) for d, o in zip(padded, x_shape)):
        return f"prelu slope of shape {slope_shape} does not broadcast to {x_shape}"
    return None


def patterns() -> list[FusionPattern]:
    table = []
    for name, chain in chains.ALL.items():
        pat, ann = chain_pattern(chain)
        table.append(FusionPattern(pattern_name(name), pat, ann,
                                   make_check(*elementwise_rules(), rule_clip_bounds, *activation_rules(name))))
    pat, ann = prelu_pattern()
    table.append(FusionPattern(pattern_name("prelu"), pat, ann, make_check(*base_rules(), rule_prelu)))
    for op in FUSING_BINARY_OPS:
        for name in chains.CHAINS:
            pat, ann = eltwise.binary_pattern(eltwise.BINARY_OPS[op], name)
            table.append(FusionPattern(pattern_name(op, name), pat, ann,
                                       make_check(*elementwise_rules(), rule_broadcastable, *activation_rules(name))))
    return table
