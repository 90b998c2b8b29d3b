"""Compile-time parameters of the chip's INT8 element-wise instructions
(runtime/sophon_quant.h: lut_int8, binary_int8 (MUL, MAX, MIN, PRELU,
SQUARED_DIFFERENCE); SUB as add_int8), derived from
a quantized model's scales as TFLite's kernels derive them in Prepare.

The 256-entry table of a unary op is built by the runtime's C statement of
TFLite's arithmetic (``sophon_int8_lut_build``, reference/sophon_tiu_eltwise_int8.c),
called here through ctypes: the table arithmetic exists once, in C.
The binary multipliers follow TFLite's Prepare functions, including the
precision they compute in (MUL and PRELU take float32 products of the float32
scales; SUB is ADD's double-precision rescale with input 2 negated, sub.cc).
"""
from __future__ import annotations

import ctypes
import dataclasses

import numpy as np

from . import quant
from .errors import SophonCompileError

# sophon_lut_kind
LUT_KINDS = {"requantize": 0, "logistic": 1, "tanh": 2, "hardswish": 3, "leakyrelu": 4,
             "elu": 5, "gelu": 6, "gelu_tanh": 7, "concat_rescale": 8, "relu": 9, "rsqrt": 10, "neg": 11}
# sophon_binary_int8_op
BINARY_OPS = {"MUL": 0, "MAX": 1, "MIN": 2, "PRELU": 3, "SQUARED_DIFFERENCE": 4, "MUL_FLOAT32": 5,
              "ADD_FLOAT": 6, "SUB_FLOAT": 7, "MUL_FLOAT": 8, "ADD_QLINEAR": 9, "ADD_QLINEAR_BROADCAST": 10}


class _Unary(ctypes.Structure):  # sophon_int8_unary
    _fields_ = [("kind", ctypes.c_int), ("input_scale", ctypes.c_float),
                ("input_zero_point", ctypes.c_int32), ("output_scale", ctypes.c_float),
                ("output_zero_point", ctypes.c_int32), ("alpha", ctypes.c_float),
                ("act_min", ctypes.c_float), ("act_max", ctypes.c_float)]


def _scalar(value) -> float:
    return float(np.asarray(value, dtype=np.float32).reshape(()))


def _int(value) -> int:
    return int(np.asarray(value).reshape(()))


def lut_table(kind: str, input_scale, input_zp, output_scale, output_zp, alpha: float = 0.0,
              act_min: float = 0.0, act_max: float = 0.0) -> tuple[int, ...]:
    """The int8 results of op ``kind`` for the inputs 0..127, -128..-1 (the table's
    byte order, ``table[(uint8_t)x]``), computed by the runtime (TFLite's arithmetic).
    ``act_min`` / ``act_max`` are RELU's float bounds (``inf`` for no upper bound)."""
    from .cost import runtime_library

    lib = runtime_library()
    unary = _Unary(LUT_KINDS[kind], _scalar(input_scale), _int(input_zp), _scalar(output_scale),
                   _int(output_zp), float(np.float32(alpha)), float(np.float32(act_min)),
                   float(np.float32(act_max)))
    table = (ctypes.c_int8 * 256)()
    status = lib.sophon_int8_lut_build(ctypes.byref(unary), table)
    if status != 0:
        raise SophonCompileError(
            f"int8 {kind}: no table for input scale {unary.input_scale:g} zero point {unary.input_zero_point}, "
            f"output scale {unary.output_scale:g} zero point {unary.output_zero_point}"
            + (" (TFLite refuses an output multiplier outside [2^-16, 1])" if kind == "hardswish" else ""))
    return tuple(int(v) for v in table)


def _float_unary(kind: str, x: np.ndarray, alpha: float, beta: float, act_min: float, act_max: float) -> np.ndarray:
    """The float32 function behind a table kind (what onnxruntime runs between a
    DequantizeLinear and a QuantizeLinear, or builds its QLinear* tables from)."""
    f = np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "logistic":
            return f(1) / (f(1) + np.exp(-x))
        if kind == "tanh":
            return np.tanh(x)
        if kind == "leakyrelu":
            return np.where(x >= 0, x, x * f(alpha))
        if kind == "hardswish":
            return x * np.clip(x + f(3), f(0), f(6)) / f(6)
        if kind == "hardsigmoid":
            return np.clip(x * f(alpha) + f(beta), f(0), f(1))
        if kind == "elu":
            return np.where(x > 0, x, f(alpha) * (np.exp(x) - f(1)))
        if kind == "relu":
            return np.clip(x, f(act_min), f(act_max))
        if kind == "requantize":
            return x
        if kind == "square":
            return x * x
        if kind == "rsqrt":
            return f(1) / np.sqrt(x)
        if kind == "neg":
            return -x
    raise SophonCompileError(f"int8 {kind}: no float32 table for onnxruntime's arithmetic")


def float_lut_table(kind: str, input_scale, input_zp, output_scale, output_zp, alpha: float = 0.0,
                    beta: float = 0.0, act_min: float = 0.0, act_max: float = 0.0) -> tuple[int, ...]:
    """The table of a unary op as onnxruntime computes it for an ONNX QDQ model:
    DequantizeLinear ((q - zp) * scale in float32), the op in float32, QuantizeLinear
    (x / scale rounded half to even, plus the zero point, saturated), for the inputs
    0..127, -128..-1 (the table's byte order, as ``lut_table``)."""
    q = np.concatenate([np.arange(0, 128), np.arange(-128, 0)]).astype(np.int32)
    x = (q - np.int32(_int(input_zp))).astype(np.float32) * np.float32(_scalar(input_scale))
    y = _float_unary(kind, x.astype(np.float32), alpha, beta, act_min, act_max).astype(np.float32)
    r = np.rint(y / np.float32(_scalar(output_scale))) + _int(output_zp)
    return tuple(int(v) for v in np.clip(np.nan_to_num(r, nan=_int(output_zp)), -128, 127))


def hardswish_refusal(input_scale, output_scale) -> str | None:
    """Why TFLite's int8 hard-swish (and so the chip's table) refuses these scales, or None."""
    ratio = np.float32(np.float32(1.0 / 128.0) * np.float32(_scalar(input_scale))) / np.float32(_scalar(output_scale))
    if not (2.0 ** -16 <= float(ratio) < 1.0):
        return (f"hard-swish with input scale / (128 * output scale) = {float(ratio):g}: TFLite's int8 kernel "
                "takes an output multiplier in [2^-16, 1)")
    return None


@dataclasses.dataclass
class BinaryParams:
    """sophon_binary_int8_params."""

    op: str
    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    multiplier1: int = 0
    shift1: int = 0
    multiplier2: int = 0
    shift2: int = 0
    act_min: int = -128
    act_max: int = 127
    multiplier3: int = 0
    shift3: int = 0
    scale: float = 0.0   # MUL_FLOAT32 (onnxruntime's QLinearMul): a float32 value
    # ADD_FLOAT, SUB_FLOAT, MUL_FLOAT (onnxruntime's float op between DequantizeLinear and
    # QuantizeLinear): the float32 scales of the inputs and the output
    input1_scale: float = 0.0
    input2_scale: float = 0.0
    output_scale: float = 0.0
    value_offset: int = 0  # ADD_QLINEAR*: 128 where onnxruntime runs the add in uint8


def _f32_ratio(*factors, divisor) -> float:
    """A product of float32 scales over a float32 scale, in float32 as TFLite's
    Prepare computes it, widened to double for QuantizeMultiplier."""
    product = np.float32(1.0)
    for f in factors:
        product = np.float32(product * np.float32(_scalar(f)))
    return float(np.float32(product / np.float32(_scalar(divisor))))


def mul_params(scale1, zp1, scale2, zp2, out_scale, out_zp, act_min=-128, act_max=127) -> BinaryParams:
    """TFLite's int8 MUL: one multiplier for scale1 * scale2 / out_scale (mul.cc)."""
    m, s = quant.quantize_multiplier(_f32_ratio(scale1, scale2, divisor=out_scale))
    return BinaryParams("MUL", _int(zp1), _int(zp2), _int(out_zp), m, s, 0, 0, int(act_min), int(act_max))


def onnxruntime_mul_params(scale1, zp1, scale2, zp2, out_scale, out_zp, act_min=-128, act_max=127) -> BinaryParams:
    """onnxruntime's QLinearMul (MLAS, the ONNX QDQ Mul): (a - zp1) * (b - zp2) times
    scale1 * scale2 / out_scale in float32, rounded once, halves to even."""
    scale = np.float32(np.float32(_scalar(scale1)) * np.float32(_scalar(scale2))) / np.float32(_scalar(out_scale))
    return BinaryParams("MUL_FLOAT32", _int(zp1), _int(zp2), _int(out_zp), act_min=int(act_min),
                        act_max=int(act_max), scale=float(np.float32(scale)))


def onnxruntime_float_params(op: str, scale1, zp1, scale2, zp2, out_scale, out_zp, act_min=-128,
                              act_max=127) -> BinaryParams:
    """onnxruntime's Add / Sub / Mul of an ONNX QDQ model as it runs them on x86 (``op``
    ADD_FLOAT, SUB_FLOAT or MUL_FLOAT): DequantizeLinear, the float32 op, QuantizeLinear."""
    return BinaryParams(op, _int(zp1), _int(zp2), _int(out_zp), act_min=int(act_min), act_max=int(act_max),
                        input1_scale=float(np.float32(_scalar(scale1))),
                        input2_scale=float(np.float32(_scalar(scale2))),
                        output_scale=float(np.float32(_scalar(out_scale))))


def onnxruntime_qlinear_add_params(scale1, zp1, scale2, zp2, out_scale, out_zp, uint8: bool, broadcast: bool,
                                   act_min=-128, act_max=127) -> BinaryParams:
    """onnxruntime's QLinearAdd (MLAS's AVX2 kernel), for an ONNX QDQ Add whose group it
    fuses; ``uint8`` where its int8 -> uint8 rewrite made the values uint8 (values and
    zero points + 128), ``broadcast`` where input 2 is one value per run of input 1. Its
    constants in float32 as MLAS forms them: the ratios of the scales and out_zp -
    (ratio1 * zp1 + ratio2 * zp2), whose first product fuses with the sum (of the seven
    ways to round it, the one that matched onnxruntime 1.32 on every int8 pair of 41
    random scale sets, 2.7 million sums)."""
    f32, offset = np.float32, 128 if uint8 else 0
    ratio1 = f32(f32(_scalar(scale1)) / f32(_scalar(out_scale)))
    ratio2 = f32(f32(_scalar(scale2)) / f32(_scalar(out_scale)))
    product2 = f32(ratio2 * f32(_int(zp2) + offset))
    # fma(ratio1, zp1 + offset, product2): exact in float128 (a float32 times a 9-bit
    # integer plus a float32), then rounded once to float32
    fused = f32(np.longdouble(ratio1) * np.longdouble(_int(zp1) + offset) + np.longdouble(product2))
    constant = f32(f32(_int(out_zp) + offset) - fused)
    return BinaryParams("ADD_QLINEAR_BROADCAST" if broadcast else "ADD_QLINEAR", _int(zp1), _int(zp2), _int(out_zp),
                        act_min=int(act_min), act_max=int(act_max), input1_scale=float(ratio1),
                        input2_scale=float(ratio2), output_scale=float(constant), value_offset=offset)


def prelu_params(scale, zp, alpha_scale, alpha_zp, out_scale, out_zp) -> BinaryParams:
    """TFLite's int8 PRELU: x >= 0 rescaled by scale / out_scale, x * alpha by
    scale * alpha_scale / out_scale (activations.cc PreluPrepare)."""
    m1, s1 = quant.quantize_multiplier(_f32_ratio(scale, divisor=out_scale))
    m2, s2 = quant.quantize_multiplier(_f32_ratio(scale, alpha_scale, divisor=out_scale))
    return BinaryParams("PRELU", _int(zp), _int(alpha_zp), _int(out_zp), m1, s1, m2, s2)


def minmax_params(op: str, zp, act_min=-128, act_max=127) -> BinaryParams:
    """TFLite's int8 MAXIMUM / MINIMUM compare the raw values (one quantization)."""
    return BinaryParams(op, _int(zp), _int(zp), _int(zp), act_min=int(act_min), act_max=int(act_max))


def squared_difference_multipliers(scale1, scale2, out_scale) -> tuple[float, float, float]:
    """The real multipliers of TFLite's int8 SQUARED_DIFFERENCE (squared_difference.cc
    Prepare, in double from the float32 scales): each input over twice the larger
    input scale, and (twice the larger)^2 / (2^14 * output scale) for the squared
    difference of the inputs shifted left by 7."""
    twice_max = 2.0 * max(quant.f64(scale1), quant.f64(scale2))
    return (quant.f64(scale1) / twice_max, quant.f64(scale2) / twice_max,
            twice_max * twice_max / ((1 << 14) * quant.f64(out_scale)))


def squared_difference_refusal(scale1, scale2, out_scale) -> str | None:
    """Why TFLite's int8 SQUARED_DIFFERENCE cannot run with these scales, or None:
    its output multiplier is taken by QuantizeMultiplierSmallerThanOneExp (below 1)."""
    real = squared_difference_multipliers(scale1, scale2, out_scale)[2]
    if not real < 1.0:
        return (f"int8 squared difference with output multiplier {real:g}: TFLite's kernel takes one "
                "below 1 (the output scale is too small for the inputs' scales)")
    return None


def squared_difference_params(scale1, zp1, scale2, zp2, out_scale, out_zp) -> BinaryParams:
    """TFLite's int8 SQUARED_DIFFERENCE (squared_difference.cc): three
    QuantizeMultiplierSmallerThanOneExp pairs, no fused activation."""
    (m1, s1), (m2, s2), (m3, s3) = (quant.quantize_multiplier(r)
                                    for r in squared_difference_multipliers(scale1, scale2, out_scale))
    return BinaryParams("SQUARED_DIFFERENCE", _int(zp1), _int(zp2), _int(out_zp), m1, s1, m2, s2,
                        multiplier3=m3, shift3=s3)


def sub_params(scale1, zp1, scale2, zp2, out_scale, out_zp, act_min=-128, act_max=127) -> quant.AddParams:
    """TFLite's int8 SUB: ADD's parameters with input 2's multiplier negated (sub.cc)."""
    p = quant.add_params(scale1, zp1, scale2, zp2, out_scale, out_zp, act_min, act_max)
    p.input2_multiplier = -p.input2_multiplier
    return p
