"""The sophon pattern table: which Relax subgraphs run on the chip.

Every pattern is ``sophon.<ops>`` with fixed annotation keys that the checks,
the planner and the codegen all read:

    input   the activation entering the root op
    weight  conv / dense weight (for dense, the tensor *before* permute_dims)
    bias    the bias tensor (before an optional reshape)
    lhs/rhs operands of an element-wise binary op
    root    the op that names the pattern (conv2d, matmul, pool, add, ...)

Checks are pure predicates made of rules; each rule returns ``None`` (fine) or a
one-line hardware reason. The reasons of rejected matches are collected by the
partitioner so the offload report can say why an op stayed on the host.
Patterns registered later win, so plain ops come first and the most fused last.
"""
from __future__ import annotations

import contextvars
import itertools
from typing import Callable, Optional

import numpy as np
from tvm.ir.expr import Constant
from tvm.ir.prim.expr import FloatImm, IntImm
from tvm import relax
from tvm.relax.backend.pattern_registry import get_patterns_with_prefix, register_patterns
from tvm.relax.dpl import DFPattern, is_op, wildcard
from tvm.relax.transform import FusionPattern, PatternCheckContext

SUPPORTED_DTYPES = ("float32",)
CONV_DATA_LAYOUTS = ("NCHW", "NHWC")
CONV_KERNEL_LAYOUTS = ("OIHW", "HWIO", "OHWI", "HWOI", "IHWO")
ACTIVATIONS = {
    # pattern suffix -> (op name, extra args to wildcard)
    "relu": ("relax.nn.relu", 0),
    "clip": ("relax.clip", 2),
    "leakyrelu": ("relax.nn.leakyrelu", 0),
}

Rule = Callable[[dict], Optional[str]]

# ------------------------------------------------------------------ recording

# Rejection reasons of the current partition run: bound var name -> reasons.
_REJECTIONS: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar(
    "sophon_rejections", default=None
)


def record_rejections(store: dict):
    """Context token: collect rejection reasons into ``store`` during a partition."""
    return _REJECTIONS.set(store)


def stop_recording(token) -> None:
    _REJECTIONS.reset(token)


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


# ------------------------------------------------------------------ rules

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


def rule_rank_at_most_4(ann: dict) -> Optional[str]:
    for key, expr in ann.items():
        shape = static_shape(expr)
        if shape is not None and len(shape) > 4:
            return f"{key} has rank {len(shape)}; the chip's tensors are at most 4-D (N, C, H, W)"
    return None


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


def rule_pool(ann: dict) -> Optional[str]:
    attrs = ann["root"].attrs
    if str(attrs.layout) not in CONV_DATA_LAYOUTS:
        return f"pool layout {attrs.layout} (chip handles NCHW, NHWC)"
    if str(attrs.out_layout) != str(attrs.layout):
        return f"pool out layout {attrs.out_layout} differs from layout {attrs.layout}"
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
    act = ann.get("activation")
    if act is None or act.op.name != "relax.clip":
        return None
    for arg in act.args[1:]:
        if not isinstance(arg, (IntImm, FloatImm)):
            return "clip bounds are not constants"
    return None


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
                _record(ctx, reason)
                return False
        return True

    check.rules = rules
    return check


def _record(ctx: PatternCheckContext, reason: str) -> None:
    store = _REJECTIONS.get()
    if store is None:
        return
    for binding_var in ctx.matched_bindings.keys():
        store.setdefault(binding_var.name, []).append(reason)


# ------------------------------------------------------------------ builders

def _activation(inner: DFPattern, kind: Optional[str]) -> tuple[DFPattern, Optional[DFPattern]]:
    if kind is None:
        return inner, None
    op_name, n_extra = ACTIVATIONS[kind]
    act = is_op(op_name)(inner, *(wildcard() for _ in range(n_extra)))
    return act, act


def _with_bias(inner: DFPattern, ann: dict, with_bias: bool) -> DFPattern:
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


def conv2d_pattern(with_bias: bool, act: Optional[str]):
    data, weight = wildcard(), wildcard()
    root = is_op("relax.nn.conv2d")(data, weight)
    ann = {"input": data, "weight": weight, "root": root}
    out, act_pat = _activation(_with_bias(root, ann, with_bias), act)
    if act_pat is not None:
        ann["activation"] = act_pat
    return out, ann


def dense_pattern(transposed: bool, with_bias: bool, act: Optional[str]):
    data, weight = wildcard(), wildcard()
    ann = {"input": data, "weight": weight}
    rhs = weight
    if transposed:
        rhs = is_op("relax.permute_dims")(weight)
        ann["transposed_weight"] = rhs
    root = is_op("relax.matmul")(data, rhs)
    ann["root"] = root
    out, act_pat = _activation(_with_bias(root, ann, with_bias), act)
    if act_pat is not None:
        ann["activation"] = act_pat
    return out, ann


def binary_pattern(op_name: str, act: Optional[str]):
    lhs, rhs = wildcard(), wildcard()
    root = is_op(op_name)(lhs, rhs)
    ann = {"lhs": lhs, "rhs": rhs, "root": root}
    out, act_pat = _activation(root, act)
    if act_pat is not None:
        ann["activation"] = act_pat
    return out, ann


def unary_pattern(op_name: str, n_extra: int = 0):
    data = wildcard()
    root = is_op(op_name)(data, *(wildcard() for _ in range(n_extra)))
    ann = {"input": data, "root": root}
    if op_name == "relax.clip":
        ann["activation"] = root
    return root, ann


# ------------------------------------------------------------------ int8 (pre-quantized models)
#
# TVM's TFLite and ONNX (QDQ) importers express an int8 layer as
#   dequantize(x) -> float op (+ dequantize(bias)) -> quantize (-> clip);
# these patterns take the whole chain, which the chip runs with TFLite's integer
# arithmetic (runtime/sophon_quant.h). Scales and zero points must be constants.

def constant_value(expr) -> Optional[np.ndarray]:
    """The value of a relax constant, else None."""
    if isinstance(expr, Constant) and hasattr(expr, "value") and hasattr(expr.value, "numpy"):
        return expr.value.numpy()
    return None


def rule_int8_operands(ann: dict) -> Optional[str]:
    for key in ("input", "lhs", "rhs", "weight"):
        if key in ann and dtype_of(ann[key]) != "int8":
            return f"{key} is {dtype_of(ann[key])}; the int8 path takes int8 tensors"
    if "bias" in ann and dtype_of(ann["bias"]) != "int32":
        return f"bias is {dtype_of(ann['bias'])}; int8 layers take an int32 bias"
    for key, expr in ann.items():
        if key.endswith("_scale") or key.endswith("_zp"):
            value = constant_value(expr)
            if value is None:
                return f"{key} is not a constant: the chip's requantization is computed at compile time"
            if key.endswith("_scale") and not np.all(value > 0):
                return f"{key} has a non-positive scale"
    for key in ("input", "lhs", "rhs", "root"):
        if key in ann and static_shape(ann[key]) is None:
            return f"{key} has a dynamic shape; the chip's programs are planned for static shapes"
    return None


def rule_symmetric_weights(ann: dict) -> Optional[str]:
    zp = constant_value(ann["weight_zp"]) if "weight_zp" in ann else None
    if zp is not None and np.any(zp != 0):
        return ("asymmetric int8 weights (zero point "
                f"{zp.tolist()}) are not supported: the chip takes symmetric weights (zero point 0)")
    return None


def _dq(ann: dict, prefix: str, tensor: DFPattern) -> DFPattern:
    scale, zp = wildcard(), wildcard()
    ann[f"{prefix}_scale"], ann[f"{prefix}_zp"] = scale, zp
    return is_op("relax.dequantize")(tensor, scale, zp)


def _q(ann: dict, inner: DFPattern, clip: bool) -> DFPattern:
    scale, zp = wildcard(), wildcard()
    ann["output_scale"], ann["output_zp"] = scale, zp
    out = is_op("relax.quantize")(inner, scale, zp)
    ann["quantize"] = out
    if clip:
        out = is_op("relax.clip")(out, wildcard(), wildcard())
        ann["activation"] = out
    return out


def _with_qbias(ann: dict, inner: DFPattern, with_bias: bool) -> DFPattern:
    """inner + dequantize(int32 bias); ONNX QDQ reshapes the dequantized (C,) bias
    to (1, C, 1, 1) first."""
    if not with_bias:
        return inner
    bias = wildcard()
    ann["bias"] = bias
    bias_dq = _dq(ann, "bias", bias)
    add = is_op("relax.add")(inner, is_op("relax.reshape")(bias_dq, wildcard()) | bias_dq)
    ann["bias_add"] = add
    return add


def qconv2d_pattern(with_bias: bool, clip: bool):
    data, weight = wildcard(), wildcard()
    ann = {"input": data, "weight": weight}
    w = _dq(ann, "weight", weight)
    w = is_op("relax.reshape")(w, wildcard()) | w    # TFLite reshapes depthwise kernels
    root = is_op("relax.nn.conv2d")(_dq(ann, "input", data), w)
    ann["root"] = root
    return _q(ann, _with_qbias(ann, root, with_bias), clip), ann


def qdense_pattern(with_bias: bool, clip: bool):
    data, weight = wildcard(), wildcard()
    ann = {"input": data, "weight": weight}
    scale, zp = wildcard(), wildcard()
    ann["weight_scale"], ann["weight_zp"] = scale, zp
    # TFLite transposes the int8 weight, then dequantizes; ONNX (Gemm transB) the reverse
    rhs = (is_op("relax.dequantize")(is_op("relax.permute_dims")(weight), scale, zp)
           | is_op("relax.permute_dims")(is_op("relax.dequantize")(weight, scale, zp)))
    root = is_op("relax.matmul")(_dq(ann, "input", data), rhs)
    ann["root"] = root
    return _q(ann, _with_qbias(ann, root, with_bias), clip), ann


def qadd_pattern(clip: bool):
    lhs, rhs = wildcard(), wildcard()
    ann = {"lhs": lhs, "rhs": rhs}
    root = is_op("relax.add")(_dq(ann, "lhs", lhs), _dq(ann, "rhs", rhs))
    ann["root"] = root
    return _q(ann, root, clip), ann


def rule_same_quantization(ann: dict) -> Optional[str]:
    for key in ("scale", "zp"):
        a, b = constant_value(ann[f"input_{key}"]), constant_value(ann[f"output_{key}"])
        if a is None or b is None or a.shape != b.shape or not np.all(a == b):
            return f"max pool re-quantizes (input and output {key} differ); the int8 max pool keeps them"
    return None


def rule_int8_pool(ann: dict) -> Optional[str]:
    if dtype_of(ann["input"]) != "int8":
        return f"input is {dtype_of(ann['input'])}"
    return rule_pool(ann)


def _name(*parts: Optional[str]) -> str:
    return "sophon." + "_".join(p for p in parts if p)


BINARY_OPS = {
    "add": "relax.add",
    "subtract": "relax.subtract",
    "multiply": "relax.multiply",
    "maximum": "relax.maximum",
    "minimum": "relax.minimum",
}
UNARY_OPS = {
    "relu": ("relax.nn.relu", 0),
    "clip": ("relax.clip", 2),
    "leakyrelu": ("relax.nn.leakyrelu", 0),
    "sigmoid": ("relax.sigmoid", 0),
    "tanh": ("relax.tanh", 0),
    "softmax": ("relax.nn.softmax", 0),
}


def pattern_table() -> list[FusionPattern]:
    """All sophon patterns, plain ops first, most fused last."""
    table: list[FusionPattern] = []
    base = (rule_static_float32, rule_rank_at_most_4)

    for name, (op_name, n_extra) in UNARY_OPS.items():
        pat, ann = unary_pattern(op_name, n_extra)
        table.append(FusionPattern(_name(name), pat, ann, make_check(*base, rule_clip_bounds)))

    for name, op_name in BINARY_OPS.items():
        for act in (None, "relu", "clip"):
            pat, ann = binary_pattern(op_name, act)
            table.append(FusionPattern(_name(name, act), pat, ann,
                                       make_check(*base, rule_broadcastable, rule_clip_bounds)))

    for pool in ("max_pool2d", "avg_pool2d"):
        data = wildcard()
        root = is_op(f"relax.nn.{pool}")(data)
        table.append(FusionPattern(_name(pool), root, {"input": data, "root": root},
                                   make_check(*base, rule_pool)))
    data = wildcard()
    root = is_op("relax.nn.adaptive_avg_pool2d")(data)
    table.append(FusionPattern(_name("adaptive_avg_pool2d"), root, {"input": data, "root": root},
                               make_check(*base, rule_adaptive_pool)))
    data = wildcard()
    root = is_op("relax.mean")(data)
    table.append(FusionPattern(_name("mean"), root, {"input": data, "root": root},
                               make_check(*base, rule_mean_spatial)))

    for transposed, with_bias, act in itertools.product((False, True), (False, True), (None, *ACTIVATIONS)):
        pat, ann = dense_pattern(transposed, with_bias, act)
        label = "dense" if transposed else "matmul"
        table.append(FusionPattern(_name(label, "bias" if with_bias else None, act), pat, ann,
                                   make_check(*base, rule_dense, rule_bias_per_channel, rule_clip_bounds)))

    for with_bias, act in itertools.product((False, True), (None, *ACTIVATIONS)):
        pat, ann = conv2d_pattern(with_bias, act)
        table.append(FusionPattern(_name("conv2d", "bias" if with_bias else None, act), pat, ann,
                                   make_check(*base, rule_conv2d, rule_bias_per_channel, rule_clip_bounds)))
    # int8 chains last: they are larger than any float pattern inside them
    int8 = (rule_int8_operands, rule_rank_at_most_4)
    data = wildcard()
    root = is_op("relax.nn.max_pool2d")(data)
    table.append(FusionPattern("sophon.qmax_pool2d", root, {"input": data, "root": root},
                               make_check(rule_int8_pool)))
    # ONNX QDQ: quantize(max_pool2d(dequantize(x))) with one scale: an int8 max pool
    ann = {}
    data = wildcard()
    ann["input"] = data
    root = is_op("relax.nn.max_pool2d")(_dq(ann, "input", data))
    ann["root"] = root
    table.append(FusionPattern("sophon.qmax_pool2d_qdq", _q(ann, root, False), ann,
                               make_check(rule_int8_operands, rule_same_quantization, rule_pool)))
    data = wildcard()
    root = is_op("relax.nn.avg_pool2d")(is_op("relax.astype")(data))
    out = is_op("relax.astype")(root)
    table.append(FusionPattern("sophon.qavg_pool2d", out, {"input": data, "root": root},
                               make_check(rule_int8_pool)))
    for clip in (False, True):
        pat, ann = qadd_pattern(clip)
        table.append(FusionPattern(_name("qadd", "clip" if clip else None), pat, ann, make_check(*int8)))
    for with_bias, clip in itertools.product((False, True), (False, True)):
        pat, ann = qdense_pattern(with_bias, clip)
        table.append(FusionPattern(_name("qdense", "bias" if with_bias else None, "clip" if clip else None),
                                   pat, ann, make_check(*int8, rule_symmetric_weights, rule_dense)))
        pat, ann = qconv2d_pattern(with_bias, clip)
        table.append(FusionPattern(_name("qconv2d", "bias" if with_bias else None, "clip" if clip else None),
                                   pat, ann, make_check(*int8, rule_symmetric_weights, rule_conv2d)))
    return table


# Registered as tuples: TVM 0.27's register_patterns schedules the exit-time
# cleanup only for tuple entries; FusionPattern objects with a Python check
# would be freed after the interpreter and crash it at exit.
register_patterns([(p.name, p.pattern, dict(p.annotation_patterns), p.check) for p in pattern_table()])


def sophon_patterns() -> list[FusionPattern]:
    """The registered sophon patterns, highest priority first (what FuseOpsByPattern takes)."""
    return list(get_patterns_with_prefix("sophon"))
