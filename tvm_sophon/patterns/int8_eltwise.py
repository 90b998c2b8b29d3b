"""INT8 element-wise chains of pre-quantized models.

TVM's TFLite importer writes each int8 element-wise op as
  dequantize(x) [, dequantize(y)] -> float op(s) -> quantize (-> clip);
these patterns take the chain, and the chip runs it in TFLite's integer
arithmetic (runtime/sophon_quant.h):

- a unary op (LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, ELU, GELU, RELU / RELU6 /
  RELU_N1_TO_1 (a lone relu or float clip between dequantize and quantize), RSQRT, NEG
  and QUANTIZE int8 -> int8, which imports as dequantize -> quantize) is a function of 256
  int8 inputs: one table lookup, the table computed at compile time by the
  runtime's C statement of TFLite's kernel (tvm_sophon/quant_eltwise.py);
- MUL, SUB, MAXIMUM, MINIMUM, PRELU and SQUARED_DIFFERENCE (``(a - b) * (a - b)``
  between the dequantizes and the quantize) with broadcast, with TFLite's
  multipliers (SUB runs on the int8 ADD instruction with input 2 negated).

Activation chains (hard-swish, ELU, GELU) are matched in every spelling
``chains.py`` knows. Scales and zero points must be per-tensor constants.
"""
from __future__ import annotations

import itertools
from typing import Optional

import numpy as np
from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from . import chains
from .int8 import _dq, _q, rule_int8_operands
from .rules import pattern_name, constant_value, dtype_of, make_check, rule_not_empty, rule_rank_collapses, static_shape

# sophon.q<name> -> the sophon_lut_kind of quant_eltwise.LUT_KINDS
UNARY = {"qsigmoid": "logistic", "qtanh": "tanh", "qleakyrelu": "leakyrelu", "qhardswish": "hardswish",
         "qelu": "elu", "qgelu": "gelu", "qgelu_tanh": "gelu_tanh", "qrequantize": "requantize", "qrelu": "relu",
         "qrsqrt": "rsqrt", "qnegative": "neg", "qhardsigmoid": "hardsigmoid", "qsquare": "square"}
# TFLite has no int8 op for these: their table is always the float32 one (quant_eltwise.float_lut_table)
FLOAT_TABLE_ONLY = {"qhardsigmoid", "qsquare"}
# sophon.q<name> -> the chip's binary_int8 op (SUB runs on the int8 add)
QBINARY = {"qmultiply": "MUL", "qmaximum": "MAX", "qminimum": "MIN", "qprelu": "PRELU",
           "qsquared_difference": "SQUARED_DIFFERENCE"}
# sophon.q<name> -> the float op between the dequantizes and the quantize
BINARY = {"qmultiply": "relax.multiply", "qsubtract": "relax.subtract",
          "qmaximum": "relax.maximum", "qminimum": "relax.minimum"}


def rule_int8_result(ann: dict) -> Optional[str]:
    dtype = dtype_of(ann["quantize"])
    return None if dtype == "int8" else f"quantizes to {dtype}; the int8 element-wise path gives int8"


def rule_per_tensor(ann: dict) -> Optional[str]:
    for key, expr in ann.items():
        if key.endswith("_scale") or key.endswith("_zp"):
            value = constant_value(expr)
            if value is not None and value.size != 1:
                return f"{key} is per-channel ({value.size} values); the int8 element-wise ops take one per tensor"
    return None


def rule_same_quantization(ann: dict) -> Optional[str]:
    """MAXIMUM / MINIMUM compare raw int8 values: TFLite's kernel assumes one
    quantization for both inputs and the output (its converter ensures it)."""
    for key in ("scale", "zp"):
        values = [constant_value(ann[f"{side}_{key}"]) for side in ("lhs", "rhs", "output")]
        if any(v is None for v in values) or not all(np.array_equal(values[0], v) for v in values[1:]):
            return f"inputs and output have different {key}s; the int8 max/min compares raw values of one quantization"
    return None


def rule_prelu_last_axis(ann: dict) -> Optional[str]:
    """The slope broadcasts right-aligned (NHWC: per channel on the last axis);
    nn.prelu along another axis with more than one slope is left to the host."""
    root = ann["root"]
    op = getattr(root, "op", None)
    if getattr(op, "name", "") == "relax.nn.prelu":
        shape = static_shape(ann["rhs"])
        rank = len(static_shape(ann["input"]) or ())
        if shape is not None and int(np.prod(shape)) > 1 and int(root.attrs.axis) % max(rank, 1) != rank - 1:
            return f"int8 prelu along axis {int(root.attrs.axis)}: the chip's int8 prelu takes the slope on the last axis"
    return None


def _chain_rule(chain: chains.Chain):
    def rule(ann: dict) -> Optional[str]:
        params = chains.activation_params(chain, ann)
        return params if isinstance(params, str) else None
    return rule


def relu_bounds(root) -> tuple[float, float] | None:
    """The float bounds of a relu (0, inf) or of a clip with constant bounds, else None."""
    if root.op.name == "relax.nn.relu":
        return 0.0, float("inf")
    bounds = []
    for b in root.args[1:]:
        while b is not None and not isinstance(b, (int, float)):   # FloatImm, IntImm, PrimValue(Imm)
            b = getattr(b, "value", None)
        if b is None:
            return None
        bounds.append(float(b))
    return bounds[0], bounds[1]


def rule_relu_bounds(ann: dict) -> Optional[str]:
    bounds = relu_bounds(ann["root"])
    if bounds is None:
        return "int8 clip with bounds that are not constants"
    if not (np.isfinite(bounds[0]) and bounds[0] <= bounds[1]):
        return f"int8 clip to [{bounds[0]:g}, {bounds[1]:g}]: the chip's int8 relu takes a finite lower bound"
    return None


def rule_hardswish_scales(ann: dict) -> Optional[str]:
    from tvm_sophon.quant_eltwise import hardswish_refusal

    return hardswish_refusal(constant_value(ann["input_scale"]), constant_value(ann["output_scale"]))


def exponent_value(expr) -> Optional[float]:
    """A power's exponent: a scalar constant, or the dequantize of one (ONNX QDQ
    quantizes Pow's exponent like any input: (q - zero point) * scale in float32)."""
    if getattr(getattr(expr, "op", None), "name", "") == "relax.dequantize":
        q, scale, zp = (constant_value(a) for a in expr.args)
        if q is None or scale is None or zp is None or q.size != 1 or scale.size != 1 or zp.size != 1:
            return None
        return float(np.float32(float(q.reshape(())) - float(zp.reshape(()))) * np.float32(scale.reshape(())))
    value = constant_value(expr)
    return float(value.reshape(())) if value is not None and value.size == 1 else None


def rule_square(ann: dict) -> Optional[str]:
    value = exponent_value(ann["exponent"])
    return None if value == 2.0 else f"int8 power with exponent {value}: the chip's int8 power is the square"


def qunary_pattern(inner):
    """quantize(inner(dequantize(x))); ``inner`` maps the dequantized pattern to
    (the op's pattern, its named sub-patterns)."""
    data = wildcard()
    ann = {"input": data}
    x = _dq(ann, "input", data)
    root, named = inner(x)
    ann.update(named)
    ann["root"] = root
    return _q(ann, root, False), ann


def qbinary_pattern(op: str, act: bool, clip: bool):
    """quantize(op(dequantize(a), dequantize(b))) (-> clip); with ``act``, TFLite's
    fused activation as the importer writes it, a float relu or clip before the
    quantize (the chip clamps the int8 result instead: quantization is monotonic)."""
    lhs, rhs = wildcard(), wildcard()
    ann = {"lhs": lhs, "rhs": rhs}
    root = is_op(op)(_dq(ann, "lhs", lhs), _dq(ann, "rhs", rhs))
    ann["root"] = root
    out = root
    if act:
        out = is_op("relax.nn.relu")(root) | is_op("relax.clip")(root, wildcard(), wildcard())
        ann["float_activation"] = out
    return _q(ann, out, clip), ann


def qprelu_pattern():
    """quantize(prelu(dequantize(x), dequantize(alpha))): Relax's nn.prelu, or
    where(x > 0, x, x * alpha) as the importers also write it."""
    data, alpha = wildcard(), wildcard()
    ann = {"input": data, "rhs": alpha}
    x, a = _dq(ann, "input", data), _dq(ann, "rhs", alpha)
    a = is_op("relax.reshape")(a, wildcard()) | a
    where = is_op("relax.where")(is_op("relax.greater")(x, wildcard()), x, chains._commuted("relax.multiply", x, a))
    root = is_op("relax.nn.prelu")(x, a) | where
    ann["root"] = root
    return _q(ann, root, False), ann


def qsquared_difference_pattern():
    """quantize(d * d), d = dequantize(a) - dequantize(b): TFLite's SQUARED_DIFFERENCE
    as TVM's importer writes it: one subtract multiplied by itself, or (when a and b
    are the graph's inputs, which it dequantizes at each use) two subtracts of the
    same a and b."""
    lhs, rhs = wildcard(), wildcard()
    ann = {"lhs": lhs, "rhs": rhs}
    diff = is_op("relax.subtract")(_dq(ann, "lhs", lhs), _dq(ann, "rhs", rhs))
    again = is_op("relax.subtract")(_dq(ann, "lhs_again", lhs), _dq(ann, "rhs_again", rhs))
    root = is_op("relax.multiply")(diff, diff) | is_op("relax.multiply")(diff, again)
    ann["root"] = root
    return _q(ann, root, False), ann


def rule_squared_difference_scales(ann: dict) -> Optional[str]:
    from tvm_sophon.quant_eltwise import squared_difference_refusal

    for side in ("lhs", "rhs"):
        for key in ("scale", "zp"):
            again = ann.get(f"{side}_again_{key}")
            if again is not None and not np.array_equal(constant_value(again), constant_value(ann[f"{side}_{key}"])):
                return f"the two subtracts dequantize {side} with different {key}s: not a squared difference"
    return squared_difference_refusal(*(constant_value(ann[k]) for k in ("lhs_scale", "rhs_scale", "output_scale")))


def patterns() -> list[FusionPattern]:
    table = []
    # element-wise: above 4-D where the axes merge (YOLO's (1, 3, H, W, 85) heads)
    int8 = (rule_int8_operands, rule_per_tensor, rule_int8_result, rule_rank_collapses, rule_not_empty)
    single = {"qsigmoid": "relax.sigmoid", "qtanh": "relax.tanh", "qleakyrelu": "relax.nn.leakyrelu",
              "qgelu_tanh": "relax.nn.gelu_tanh", "qrsqrt": "relax.rsqrt", "qnegative": "relax.negative"}
    pat, ann = qunary_pattern(lambda x: (x, {}))
    table.append(FusionPattern("sophon.qrequantize", pat, ann, make_check(*int8)))
    # TFLite's int8 RELU / RELU6 / RELU_N1_TO_1 (ReluX): the importer's float relu or clip
    pat, ann = qunary_pattern(lambda x: (is_op("relax.nn.relu")(x) | is_op("relax.clip")(x, wildcard(), wildcard()), {}))
    table.append(FusionPattern("sophon.qrelu", pat, ann, make_check(*int8, rule_relu_bounds)))
    for name, op in single.items():
        pat, ann = qunary_pattern(lambda x, op=op: (is_op(op)(x), {}))
        table.append(FusionPattern(f"sophon.{name}", pat, ann, make_check(*int8)))
    for name in ("hardswish", "elu", "gelu", "hardsigmoid"):
        chain = chains.CHAINS[name]
        pat, ann = qunary_pattern(chain.pattern)
        extra = (rule_hardswish_scales,) if name == "hardswish" else ()
        table.append(FusionPattern(f"sophon.q{name}", pat, ann, make_check(*int8, _chain_rule(chain), *extra)))
    # x ** 2 (YOLO's box sizes): a float32 table of the int8 input
    # (wildcards: inside the composite its constants are parameters; rule_square reads them)
    exponent = is_op("relax.dequantize")(wildcard(), wildcard(), wildcard()) | wildcard()
    pat, ann = qunary_pattern(lambda x: (is_op("relax.power")(x, exponent), {"exponent": exponent}))
    table.append(FusionPattern("sophon.qsquare", pat, ann, make_check(*int8, rule_square)))
    for name, op in BINARY.items():
        minmax = op in ("relax.maximum", "relax.minimum")   # TFLite fuses no activation into these
        for act, clip in itertools.product((False, True), (False, True)):
            if minmax and act:
                continue
            pat, ann = qbinary_pattern(op, act, clip)
            rules = int8 + ((rule_same_quantization,) if minmax else ())
            table.append(FusionPattern(pattern_name(name, "act" if act else None, "clip" if clip else None),
                                       pat, ann, make_check(*rules)))
    pat, ann = qprelu_pattern()
    table.append(FusionPattern("sophon.qprelu", pat, ann, make_check(*int8, rule_prelu_last_axis)))
    pat, ann = qsquared_difference_pattern()
    table.append(FusionPattern("sophon.qsquared_difference", pat, ann,
                               make_check(*int8, rule_squared_difference_scales)))
    return table
