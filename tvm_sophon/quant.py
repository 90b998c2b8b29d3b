"""TFLite's integer quantization arithmetic, computed at compile time.

The chip's INT8 instructions (runtime/sophon_quant.h) take fixed-point
multipliers and shifts; this module derives them from the float scales of a
quantized model exactly as TFLite's kernels do (QuantizeMultiplier, the
effective scale input_scale * filter_scale / output_scale in double precision,
the ADD kernel's common scale), so results are bit-exact with the TFLite
interpreter. ``multiply_by_quantized_multiplier`` is the Python statement of
the runtime's rule, used by tests as an independent reference.

The rounding is TFLite's per op: CONV_2D and DEPTHWISE_CONV_2D round twice in
fixed point (MultiplyByQuantizedMultiplier); the reference FULLY_CONNECTED
(TensorFlow 2.21's fully_connected.cc, kReference) rounds acc * scale once in
double, scale = input_scale * filter_scale / output_scale (``fc_requant``,
``multiply_by_double_scale``). The two differ by 1 LSB on about 1 output in 1000.
"""
from __future__ import annotations

import dataclasses
import decimal
import math

import numpy as np
import tvm
from tvm import relax

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) with real ~= multiplier * 2^(shift - 31) (TFLite's QuantizeMultiplier)."""
    if real == 0.0:
        return 0, 0
    if real < 0:
        raise ValueError(f"negative scale ratio {real}")
    q, shift = math.frexp(real)            # real = q * 2^shift, q in [0.5, 1)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"scale ratio {real} is too large for a 32-bit fixed-point multiplier")
    return q_fixed, shift


def _saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    q = abs(v) >> 31          # C's integer division truncates toward zero
    return q if v >= 0 else -q


def _rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier on Python ints (int32 semantics)."""
    left, right = max(shift, 0), max(-shift, 0)
    shifted = x * (1 << left)
    shifted = max(INT32_MIN, min(INT32_MAX, shifted))
    return _rounding_divide_by_pot(_saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_double_scale(x: int, scale: float) -> int:
    """round(x * scale) in double, halves away from zero (C's round; TFLite's
    reference FULLY_CONNECTED), saturated to int32 as the runtime does."""
    product = float(x) * scale          # one IEEE double product, as C's
    # Decimal(float) is exact, so the tie test is too (x + 0.5 in double is not)
    value = int(decimal.Decimal(product).to_integral_value(rounding=decimal.ROUND_HALF_UP))
    return max(INT32_MIN, min(INT32_MAX, value))


def f64(value) -> float:
    """A float32 scale widened to double, as TFLite does before dividing."""
    return float(np.float64(np.float32(value)))


@dataclasses.dataclass
class Requant:
    """sophon_requant: zero points, clamp, per-channel multipliers and shifts."""

    input_zero_point: int
    output_zero_point: int
    act_min: int
    act_max: int
    multipliers: list[int]
    shifts: list[int]
    # "fixed_point" (SOPHON_REQUANT_FIXED_POINT) or "double" (SOPHON_REQUANT_DOUBLE,
    # with the per-channel double scales): TFLite's rounding for the op; "float32"
    # (SOPHON_REQUANT_FLOAT32, float32 scales): onnxruntime's, for ONNX QDQ models
    rounding: str = "fixed_point"
    scales: list[float] = dataclasses.field(default_factory=list)
    # "float_conv" (SOPHON_REQUANT_FLOAT_CONV, onnxruntime's float Conv): scales are the
    # filter scales; these the input's and output's float32 scales and the K block
    input_scale: float = 0.0
    output_scale: float = 0.0
    k_block: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.multipliers) > 1


def conv_requant(input_scale, input_zp, weight_scales, output_scale, output_zp,
                 act_min=-128, act_max=127) -> Requant:
    """Per-channel (or per-tensor) requantization of a conv or dense (TFLite's
    PopulateConvolutionQuantizationParams)."""
    pairs = [quantize_multiplier(f64(input_scale) * f64(ws) / f64(output_scale))
             for ws in np.atleast_1d(np.asarray(weight_scales, dtype=np.float32))]
    return Requant(int(input_zp), int(output_zp), int(act_min), int(act_max),
                   [m for m, _ in pairs], [s for _, s in pairs])


def fc_requant(input_scale, input_zp, weight_scales, output_scale, output_zp,
               act_min=-128, act_max=127) -> Requant:
    """A FULLY_CONNECTED's requantization: TFLite's reference kernel rounds
    acc * (input_scale * filter_scale / output_scale) once, in double (the
    multipliers stay filled for the instruction's checks)."""
    q = conv_requant(input_scale, input_zp, weight_scales, output_scale, output_zp, act_min, act_max)
    q.rounding = "double"
    q.scales = [f64(input_scale) * f64(ws) / f64(output_scale)
                for ws in np.atleast_1d(np.asarray(weight_scales, dtype=np.float32))]
    return q


def onnxruntime_requant(q: Requant, input_scale, weight_scales, output_scale) -> Requant:
    """``q`` rounded as onnxruntime requantizes a QLinearConv / QLinearMatMul of an
    ONNX QDQ model (MLAS): acc * scale once in float32, halves to even, with
    scale = input_scale * weight_scale / output_scale computed in float32."""
    q.rounding = "float32"
    q.scales = [float(np.float32(np.float32(input_scale) * np.float32(ws)) / np.float32(output_scale))
                for ws in np.atleast_1d(np.asarray(weight_scales, dtype=np.float32))]
    return q


#: the K block of onnxruntime's float conv GEMM (MLAS_SGEMM_STRIDEK): measured on
#: onnxruntime 1.32 (x86, 1 and 2 threads), every conv of a YOLOv5s at 64 and 320 pixels
#: sums its taps in runs of 128, whatever its output size
MLAS_K_BLOCK = 128


def onnxruntime_float_conv_requant(q: Requant, input_scale, weight_scales, output_scale) -> Requant:
    """``q`` as onnxruntime runs an int8 QDQ Conv on x86 where its QDQ selector keeps it
    unfused (int8 activations): DequantizeLinear, MLAS's float32 Conv (chains of fused
    multiply-adds in K blocks of MLAS_K_BLOCK), QuantizeLinear (SOPHON_REQUANT_FLOAT_CONV)."""
    q.rounding = "float_conv"
    q.scales = [float(np.float32(ws)) for ws in np.atleast_1d(np.asarray(weight_scales, dtype=np.float32))]
    q.input_scale = float(np.float32(input_scale))
    q.output_scale = float(np.float32(output_scale))
    q.k_block = MLAS_K_BLOCK
    return q


def onnxruntime_mean_requant(q: Requant, input_scale, output_scale, count: int) -> Requant:
    """A MEAN (``count`` values; 1 for a SUM) of an ONNX QDQ model as onnxruntime's
    QLinearGlobalAveragePool scales it: the zero-point-corrected int32 sum times
    input_scale / (output_scale * count) in float32, rounded once, halves to even."""
    q.rounding = "float32"
    q.scales = [float(np.float32(input_scale) / (np.float32(output_scale) * np.float32(count)))]
    return q


@dataclasses.dataclass
class AddParams:
    """sophon_add_int8_params (TFLite's int8 ADD)."""

    left_shift: int
    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def add_params(scale1, zp1, scale2, zp2, out_scale, out_zp, act_min=-128, act_max=127) -> AddParams:
    left_shift = 20
    twice_max = 2 * max(f64(scale1), f64(scale2))
    m1, s1 = quantize_multiplier(f64(scale1) / twice_max)
    m2, s2 = quantize_multiplier(f64(scale2) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * f64(out_scale)))
    return AddParams(left_shift, int(zp1), int(zp2), int(out_zp), m1, s1, m2, s2, mo, so,
                     int(act_min), int(act_max))


def reduce_requant(input_scale, input_zp, output_scale, output_zp) -> Requant:
    """The per-tensor requantization of an int8 MEAN or SUM (TFLite's
    PrepareMeanOrSum: QuantizeMultiplier of input_scale / output_scale; the
    runtime folds a MEAN's 1 / count into it as TFLite's kernel does)."""
    m, s = quantize_multiplier(f64(input_scale) / f64(output_scale))
    return Requant(int(input_zp), int(output_zp), -128, 127, [m], [s])


def softmax_params(input_scale, beta: float = 1.0) -> tuple[int, int]:
    """(input_multiplier, input_left_shift) of TFLite's int8 softmax
    (PreprocessSoftmaxScaling with 5 integer bits, default double-rounding build:
    beta * input_scale * 2^26, at most 2^31 - 1, by QuantizeMultiplier)."""
    real = min(float(np.float64(np.float32(beta))) * f64(input_scale) * (1 << 26), (1 << 31) - 1.0)
    return quantize_multiplier(real)


def is_quantized(mod: tvm.IRModule) -> bool:
    """Whether the module holds quantize/dequantize ops (a pre-quantized model).
    Such a model must not be constant-folded before partitioning: folding
    dequantize(int8 weight) would turn its int8 layers back into float ones."""
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and \
                expr.op.name in ("relax.quantize", "relax.dequantize"):
            found.append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return bool(found)
