"""What every sophon pattern shares: the annotation keys, the rejection
recording, shape/dtype helpers, the rules common to several op families, the
check builder and the small pattern builders (activation, bias).

A rule returns ``None`` (fine) or a one-line hardware reason; ``make_check``
turns rules into a FusionPattern check and records the first failing reason
against the matched bindings, so the offload report can say why an op stayed
on the host.
"""
from __future__ import annotations

import contextvars
import math
from typing import Callable, Optional

import numpy as np
import tvm
from tvm.ir.expr import Constant
from tvm.ir.prim.expr import FloatImm, IntImm
from tvm import relax
from tvm.relax.dpl import DFPattern, is_op, wildcard
from tvm.relax.transform import PatternCheckContext

from . import chains

SUPPORTED_DTYPES = ("float32",)
CONV_DATA_LAYOUTS = ("NCHW", "NHWC")
CONV_KERNEL_LAYOUTS = ("OIHW", "HWIO", "OHWI", "HWOI", "IHWO")
ACTIVATIONS = {
    # pattern suffix -> (op name, extra args to wildcard)
    "relu": ("relax.nn.relu", 0),
    "clip": ("relax.clip", 2),
    "leakyrelu": ("relax.nn.leakyrelu", 0),
}

# what conv2d, fc and the binary ops fuse: the single ops above, then the
# activations the importers spell as chains (patterns/chains.py)
FUSED_ACTIVATIONS = (*ACTIVATIONS, *chains.CHAINS)

Rule = Callable[[dict], Optional[str]]

# ------------------------------------------------------------------ recording

# Rejection reasons of the current partition run: root op's bound var name ->
# [(size of the rejected match, reason)].
_REJECTIONS: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar(
    "sophon_rejections", default=None
)


# Whose integer arithmetic the int8 ops of the current partition run follow
# (partition.INT8_ARITHMETIC_ATTR): "tflite" or "onnxruntime" (an ONNX QDQ file)
_INT8_ARITHMETIC: contextvars.ContextVar[str] = contextvars.ContextVar("sophon_int8_arithmetic", default="tflite")


def record_rejections(store: dict, arithmetic: Optional[str] = None):
    """Context token: collect rejection reasons into ``store`` during a partition
    whose int8 ops follow ``arithmetic`` (default "tflite")."""
    return _REJECTIONS.set(store), _INT8_ARITHMETIC.set(arithmetic or "tflite")


def stop_recording(token) -> None:
    _REJECTIONS.reset(token[0])
    _INT8_ARITHMETIC.reset(token[1])


def int8_arithmetic() -> str:
    """"tflite" or "onnxruntime": whose arithmetic the int8 patterns check for."""
    return _INT8_ARITHMETIC.get()


# ------------------------------------------------------------------ helpers

def static_shape(expr: relax.Expr) -> Optional[tuple[int, ...]]:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    dims = []
    for d in ty.shape.values:
        if not isinstance(d, IntImm):
            return None
        dims.append(int(d))
    return tuple(dims)


def dtype_of(expr: relax.Expr) -> Optional[str]:
    ty = expr.ty
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else None


def _annotated(ctx: PatternCheckContext) -> dict:
    return {str(k): v for k, v in ctx.annotated_expr.items()}

# ------------------------------------------------------------------ common rules

def rule_static_float32(ann: dict) -> Optional[str]:
    for key, expr in ann.items():
        if not isinstance(expr.ty, relax.TensorType):
            continue
        if static_shape(expr) is None:
            return f"{key} has a dynamic shape; the chip's programs are planned for static shapes"
        dt = dtype_of(expr)
        if dt not in SUPPORTED_DTYPES:
            return f"{key} is {dt}; the BM1680 datapath is float32 only"
    return None


def rule_not_empty(ann: dict) -> Optional[str]:
    """A zero-size tensor (a 0 in its shape) has nothing for the chip to compute,
    and the runtime's descriptors take only positive dimensions: the host runs it."""
    for key, expr in ann.items():
        shape = static_shape(expr)
        if shape is not None and 0 in shape:
            return f"{key} has the zero-size shape {list(shape)}; the host runs it (nothing for the chip)"
    return None


def window_attr_reason(op: str, **values) -> Optional[str]:
    """Window attributes the runtime refuses (sophon_check_conv_params and the pool
    check): kernel, strides, dilation and groups >= 1, padding >= 0. ``values``
    maps an attribute name to its ints (None when the op has no such attribute)."""
    least = {"padding": 0}
    for name, ints in values.items():
        if ints is None:
            continue
        ints = [int(v) for v in (ints if isinstance(ints, (list, tuple)) else list(ints))]
        low = least.get(name, 1)
        if any(v < low for v in ints):
            return f"{op} {name} {ints}: the chip needs every value >= {low}"
    return None


def rule_rank_at_most_4(ann: dict) -> Optional[str]:
    for key, expr in ann.items():
        shape = static_shape(expr)
        if shape is not None and len(shape) > 4:
            return f"{key} has rank {len(shape)}; the chip's tensors are at most 4-D (N, C, H, W)"
    return None


def collapsed_groups(out_shape, operand_shapes, rank: int = 4) -> Optional[list]:
    """Adjacent axes of an element-wise op's result merged into at most ``rank``
    groups (tuples of axes), so that every operand (right-aligned, numpy
    broadcasting) is on each group either whole or broadcast (size 1): the op
    then runs on the merged 4-D tensor (YOLO's detect heads compute on
    (1, 3, H, W, 85)). Axes of extent 1 merge first, then from the last axis
    backwards (trailing axes share w). None when the broadcasts forbid it."""
    out = tuple(out_shape)
    padded = [(1,) * (len(out) - len(s)) + tuple(s) for s in operand_shapes]

    def consistent(group) -> bool:
        return all(len({s[i] == out[i] for i in group if out[i] != 1}) <= 1 for s in padded)

    groups = [(i,) for i in range(len(out))]
    while len(groups) > rank:
        ones = [j for j, g in enumerate(groups) if all(out[i] == 1 for i in g)]
        pairs = [min(j, len(groups) - 2) for j in ones] + \
            [j for j in range(len(groups) - 2, -1, -1) if consistent(groups[j] + groups[j + 1])]
        if not pairs:
            return None
        j = pairs[0]
        groups[j:j + 2] = [groups[j] + groups[j + 1]]
    return groups


def rule_rank_collapses(ann: dict) -> Optional[str]:
    """An element-wise op of rank > 4 is fine when its axes merge to 4-D
    (collapsed_groups); the rest of rule_rank_at_most_4 stays."""
    out = static_shape(ann["root"])
    if out is None or len(out) <= 4:
        return rule_rank_at_most_4(ann)
    shapes = [s for e in ann.values() if isinstance(e.ty, relax.TensorType) and (s := static_shape(e)) is not None]
    if any(len(s) > len(out) for s in shapes):
        return rule_rank_at_most_4(ann)
    if collapsed_groups(out, shapes) is None:
        return (f"root has rank {len(out)} and its operands' broadcasts {[list(s) for s in shapes]} do not merge "
                f"to 4-D; the chip's tensors are at most 4-D (N, C, H, W)")
    return None


def rule_bias_per_channel(ann: dict) -> Optional[str]:
    """The added operand must broadcast as one value per output channel."""
    if "bias_add" not in ann:
        return None
    root = ann["root"]
    out_shape = static_shape(root)
    # add(root, bias) and add(bias, root) both match: the bias is the operand that is
    # not shaped like the root's output (or either, when they look alike)
    lhs, rhs = ann["bias_add"].args
    operand = lhs if static_shape(rhs) == out_shape and static_shape(lhs) != out_shape else rhs
    shape = static_shape(operand)
    if shape is None or len(shape) > len(out_shape):
        return f"bias operand of shape {shape} does not broadcast to {out_shape}"
    padded = (1,) * (len(out_shape) - len(shape)) + shape
    axis = _channel_axis(root)
    if any(d != 1 for i, d in enumerate(padded) if i != axis) or padded[axis] not in (1, out_shape[axis]):
        return f"added operand of shape {shape} is not one value per output channel of {out_shape}"
    return None


def rule_broadcastable(ann: dict) -> Optional[str]:
    out = static_shape(ann["root"])
    for key in ("lhs", "rhs"):
        shape = static_shape(ann[key])
        if shape is None:
            return f"{key} is not a tensor"
        padded = (1,) * (len(out) - len(shape)) + shape
        if any(d not in (1, o) for d, o in zip(padded, out)):
            return f"{key} shape {shape} does not broadcast to {out}"
    return None


def rule_clip_bounds(ann: dict) -> Optional[str]:
    """Clip bounds are constants the runtime takes (lo <= hi, no NaN), and a leaky
    relu's alpha is not NaN (sophon_check_activation refuses both)."""
    for act in (ann.get("activation"), ann.get("root")):
        if not isinstance(act, relax.Call) or not isinstance(act.op, tvm.ir.Op):
            continue
        if act.op.name == "relax.nn.leakyrelu" and math.isnan(float(act.attrs.alpha)):
            return "leaky relu alpha is NaN"
        if act.op.name != "relax.clip":
            continue
        for arg in act.args[1:]:
            if not isinstance(arg, (IntImm, FloatImm)):
                return "clip bounds are not constants"
        lo, hi = (float(arg.value) for arg in act.args[1:3])
        if not lo <= hi:
            return f"clip bounds lo={lo} > hi={hi} (or NaN)"
    return None


def rule_activation_chain(chain: "chains.Chain") -> Rule:
    """The chain's constants make its chip activation (hard-swish adds 3, ...)."""

    def rule(ann: dict) -> Optional[str]:
        params = chains.activation_params(chain, ann)
        return params if isinstance(params, str) else None

    return rule


def activation_rules(kind: Optional[str]) -> tuple[Rule, ...]:
    """The rules a fused activation adds to its pattern's check."""
    if kind in chains.ALL:
        return (rule_activation_chain(chains.ALL[kind]),)
    return ()


def _channel_axis(root: relax.Call) -> int:
    attrs = root.attrs
    layout = None
    for name in ("data_layout", "layout"):
        if hasattr(attrs, name):
            layout = str(getattr(attrs, name))
    if layout is None:
        return len(static_shape(root)) - 1  # matmul: features are last
    return layout.index("C")


def make_check(*rules: Rule):
    """A check function for FusionPattern: all rules must pass. The first failing
    rule's reason is recorded against the root op's bound variable."""

    def check(ctx: PatternCheckContext) -> bool:
        ann = _annotated(ctx)
        for rule in rules:
            reason = rule(ann)
            if reason is not None:
                _record(ctx, ann, reason)
                return False
        reason = _escaping_int8_intermediate(ctx)
        if reason is not None:
            _record(ctx, ann, reason)
            return False
        return True

    check.rules = rules
    return check


def _record(ctx: PatternCheckContext, ann: dict, reason: str) -> None:
    """Record ``reason`` against the rejected pattern's root op only (a bias add or
    an activation fused behind it has its own patterns and reasons), with the size
    of the match: the report prefers the smallest rejected match, the op's own
    pattern, over a fused one that failed on a neighbour."""
    store = _REJECTIONS.get()
    root = ann.get("root")
    if store is None or root is None:
        return
    for binding_var, value in ctx.matched_bindings.items():
        # besides the root, the quantize/dequantize glue of an int8 chain, which no
        # pattern takes alone: it stays on the host because the chain was rejected
        glue = isinstance(value, relax.Call) and getattr(value.op, "name", "") in QDQ_OPS
        if value.same_as(root) or glue:
            store.setdefault(binding_var.name, []).append((len(ctx.matched_bindings), reason))


QDQ_OPS = ("relax.quantize", "relax.dequantize")


def _escaping_int8_intermediate(ctx: PatternCheckContext) -> Optional[str]:
    """An int8 chain (a match with quantize/dequantize glue) is one chip instruction
    that yields only its int8 result: a float value inside it (say the add of a
    dequantize -> add -> quantize) that is also used outside would have no producer, so
    such a match is refused and its ops are taken apart."""
    bindings = ctx.matched_bindings
    if not any(isinstance(v, relax.Call) and getattr(v.op, "name", "") in QDQ_OPS
               for v in bindings.values()):
        return None   # float patterns: a fused activation's input is handled by the codegen
    for var, value in bindings.items():
        if value.same_as(ctx.matched_expr):
            continue
        for user in ctx.var_usages.get(var, []):
            if user not in bindings:
                return (f"{var.name}, a value inside the int8 chain, is also used by "
                        f"{user.name} outside it; the chip instruction yields only its int8 result")
    return None

# ------------------------------------------------------------------ builders

def with_activation(inner: DFPattern, kind: Optional[str],
                    ann: Optional[dict] = None) -> tuple[DFPattern, Optional[DFPattern]]:
    """``inner`` followed by the activation ``kind`` (a single op or a chain), and
    that activation (None for none). Into ``ann`` go the activation as
    ``activation`` and a chain's constants and ops as ``act.*``."""
    if kind is None:
        return inner, None
    if kind in chains.CHAINS:
        act, named = chains.CHAINS[kind].pattern(inner)
        if ann is not None:
            ann.update(named)
    else:
        op_name, n_extra = ACTIVATIONS[kind]
        act = is_op(op_name)(inner, *(wildcard() for _ in range(n_extra)))
    if ann is not None:
        ann["activation"] = act
    return act, act


def with_bias_add(inner: DFPattern, ann: dict, with_bias: bool) -> DFPattern:
    """inner + bias, where the bias may arrive through a reshape (frontends reshape
    a (C,) bias to (1, C, 1, 1) before the add)."""
    if not with_bias:
        return inner
    bias = wildcard()
    ann["bias"] = bias
    operand = is_op("relax.reshape")(bias, wildcard()) | bias
    add = is_op("relax.add")(inner, operand)
    ann["bias_add"] = add
    return add


def constant_value(expr) -> Optional[np.ndarray]:
    """The value of a relax constant, else None."""
    if isinstance(expr, Constant) and hasattr(expr, "value") and hasattr(expr.value, "numpy"):
        return expr.value.numpy()
    return None


def pattern_name(*parts: Optional[str]) -> str:
    return "sophon." + "_".join(p for p in parts if p)


def base_rules() -> tuple[Rule, ...]:
    """The rules every float32 pattern starts with."""
    return (rule_static_float32, rule_rank_at_most_4, rule_not_empty)


def elementwise_rules() -> tuple[Rule, ...]:
    """base_rules for element-wise ops, which take any rank that merges to 4-D."""
    return (rule_static_float32, rule_rank_collapses, rule_not_empty)
