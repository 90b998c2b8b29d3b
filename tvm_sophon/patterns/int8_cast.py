"""float32 <-> int8 casts between chip layers (issue #11).

A quantized model that leaves some ops float (onnxruntime's quantizer leaves ops
outside its list float; a TFLite converter can leave a float op between int8
ones) writes ``dequantize`` before them and ``quantize`` after. Alone, these casts
are chip instructions (runtime/reference/sophon_tiu_quantize.c), so that one
region holds the int8 layers and the float32 layers between them:

- ``sophon.cast_quantize``: ``quantize(x)``, float32 -> int8, per-tensor; rounds
  x / scale as the model's source does (TFLite's half away from zero,
  onnxruntime's half to even);
- ``sophon.cast_dequantize``: ``dequantize(q)``, int8 -> float32, per-tensor.

They are registered before every other pattern, so that an int8 chain takes
its own ``dequantize`` / ``quantize`` first. A cast with no chip layer on both
sides (the model's own float input and output, or a cast next to a host op) is
given back to the host before regions are merged
(:func:`keep_edge_casts_on_host`): on the chip it would be a region of its own.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .movement import call_operands, composite_calls, inline_composites
from .rules import constant_value, dtype_of, make_check, pattern_name, rule_not_empty, rule_rank_collapses, \
    static_shape

#: pattern -> (relax op, input dtype, output dtype)
CASTS = {"cast_quantize": ("relax.quantize", "float32", "int8"),
         "cast_dequantize": ("relax.dequantize", "int8", "float32")}

HOST_REASON = ("a float32 <-> int8 cast with no chip layer on one side (the model's own float input or "
               "output, or next to a host op) stays on the host")


def _rule_cast(name: str):
    op, src, dst = CASTS[name]

    def rule(ann: dict) -> Optional[str]:
        if dtype_of(ann["input"]) != src or dtype_of(ann["root"]) != dst:
            return f"{op} from {dtype_of(ann['input'])} to {dtype_of(ann['root'])}; the chip casts {src} to {dst}"
        if static_shape(ann["input"]) is None:
            return f"{op} of a dynamic shape; the chip's programs are planned for static shapes"
        for key in ("scale", "zp"):
            value = constant_value(ann[key])
            if value is None:
                return f"{op}'s {key} is not a constant"
            if value.size != 1:
                return f"{op} per axis ({value.size} {key}s); the chip's cast takes one scale and zero point"
        scale, zp = float(constant_value(ann["scale"]).reshape(())), float(constant_value(ann["zp"]).reshape(()))
        if not (np.isfinite(np.float32(scale)) and np.float32(scale) > 0):
            return f"{op} with scale {scale}; the chip's cast takes a finite positive scale"
        if not (-128 <= zp <= 127 and zp == int(zp)):
            return f"{op} with zero point {zp} outside int8"
        return None

    return rule


def patterns() -> list[FusionPattern]:
    table = []
    for name, (op, _, _) in CASTS.items():
        data, scale, zp = wildcard(), wildcard(), wildcard()
        root = is_op(op)(data, scale, zp)
        table.append(FusionPattern(pattern_name(name), root, {"input": data, "scale": scale, "zp": zp, "root": root},
                                   _not_of_constant(make_check(_rule_cast(name), rule_rank_collapses,
                                                               rule_not_empty))))
    return table


def _not_of_constant(check):
    """``check``, but a cast of a constant (an int8 weight's dequantize) is refused
    without a reason: the int8 layer reading it takes it, and if that layer is
    refused, its own reason is the one the report gives."""
    def checked(ctx) -> bool:
        data = {str(k): v for k, v in ctx.annotated_expr.items()}["input"]
        return not isinstance(data, Constant) and check(ctx)

    checked.rules = getattr(check, "rules", ())
    return checked


def keep_edge_casts_on_host(mod, has_int8: bool = True):
    """Give back to the host every cast composite whose input is not made by a
    chip composite or whose result no chip composite reads (repeated, since a
    cast given back can leave its neighbour cast alone), and every one on a chip
    without int8 (``has_int8`` False). Run between FuseOpsByPattern and
    MergeCompositeFunctions. Returns the module and the names of the bindings
    given back."""
    calls = composite_calls(mod)
    casts = {v for v, (name, _, _) in calls.items() if name.split(".", 1)[1] in CASTS}
    if not casts:
        return mod, []
    readers: dict = {}
    for var, (_, _, call) in calls.items():
        for arg in call_operands(call):
            if isinstance(arg, relax.Var):
                readers.setdefault(arg, set()).add(var)
    kept = set(casts) if has_int8 else set()

    def on_chip(var) -> bool:
        return var in calls and (var not in casts or var in kept)

    changed = True
    while changed:
        changed = False
        for var in sorted(kept, key=lambda v: v.name):
            source = calls[var][2].args[0]
            if not on_chip(source) or not any(on_chip(r) for r in readers.get(var, ())):
                kept.discard(var)
                changed = True
    edge = casts - kept
    if not edge:
        return mod, []
    return inline_composites(mod, calls, edge), sorted(v.name for v in edge)
