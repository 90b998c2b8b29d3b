"""INT8 data movement, resize and transposed convolution.

Pure int8 moves (reshape, transpose, slices, pad, tile, concat of int8 tensors)
are the float32 movement patterns themselves (patterns/movement.py moves bytes).
What TVM's importers write as a float op between ``dequantize`` and
``quantize`` is taken here whole:

- ``quantize(concat(dequantize(x_i)))``: TFLite's int8 CONCATENATION keeps one
  scale for every input and the output (its Prepare refuses any other), so the
  chip moves bytes, with no compute; ONNX QDQ graphs may mix scales: each input
  whose quantization differs from the output's is first rescaled by a table
  lookup (lut_int8) with reference_ops::ConcatenationWithScaling's arithmetic
  (codegen/movement.analyze_qconcat);
- ``quantize(resize2d(dequantize(x)))``, and a nearest ``resize2d`` of the int8
  tensor itself (the importer's quantized RESIZE_NEAREST_NEIGHBOR): nearest
  moves values, RESIZE_BILINEAR interpolates in TFLite's integer arithmetic
  (reference_ops::ResizeBilinearInteger); both keep the input's quantization.
  In an ONNX QDQ model they follow onnxruntime instead: nearest picks values
  (requantized if the quantizations differ), bilinear runs in f32 between the
  dequantize and the quantize (runtime/sophon_quant.h);
- ``quantize(conv2d_transpose(dequantize(x), dequantize(w)) (+ bias))``: TFLite's
  reference_integer_ops::TransposeConv (per-channel weights, int32 accumulation,
  int64 with an int16 input), requantized like a conv.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from tvm.relax.dpl import is_op, is_tuple, wildcard
from tvm.relax.transform import FusionPattern

from .deconv import rule_conv2d_transpose
from .int8 import _dq, _q, _with_qbias, rule_int8_operands, rule_symmetric_weights
from .movement import MAX_CONCAT_INPUTS
from .resize import rule_resize
from .rules import (constant_value, dtype_of, int8_arithmetic, make_check, pattern_name, rule_not_empty,
                    rule_rank_at_most_4)


def rule_int8_inputs(ann: dict) -> Optional[str]:
    for key, expr in ann.items():
        if key.startswith("input") and not key.endswith(("_scale", "_zp")) and dtype_of(expr) != "int8":
            return f"{key} is {dtype_of(expr)}; the int8 path takes int8 tensors"
    if dtype_of(ann["quantize"]) != "int8":
        return f"the result is {dtype_of(ann['quantize'])}; the int8 path makes int8 tensors"
    return None


def rule_per_tensor(ann: dict) -> Optional[str]:
    for key, expr in ann.items():
        if key.startswith(("input", "output")) and key.endswith(("_scale", "_zp")):
            value = constant_value(expr)
            if value is not None and value.size != 1:
                return f"{key} is per-channel; moved int8 values keep one quantization per tensor"
    return None


def rule_same_as_input(ann: dict) -> Optional[str]:
    """A resize keeps the input's quantization (TFLite's int8 resize does;
    onnxruntime's QDQ Resize quantizes its f32 result again, so may requantize)."""
    if int8_arithmetic() == "onnxruntime":
        return None
    for key in ("scale", "zp"):
        a, b = constant_value(ann[f"input_{key}"]), constant_value(ann[f"output_{key}"])
        if a is None or b is None or a.shape != b.shape or not np.all(a == b):
            return f"the int8 resize re-quantizes (input and output {key} differ); TFLite's keeps them"
    return None


# The (method, coordinate mode, rounding) TVM's TFLite importer writes for TFLite's
# resizes, as resize_modes names them: the chip computes them as TFLite does
# (align_corners nearest rounds half away from zero, as TfLiteRound does)
TFLITE_RESIZE_MODES = {
    ("NEAREST", "ASYMMETRIC", "FLOOR"), ("NEAREST", "HALF_PIXEL", "PREFER_CEIL"),
    ("NEAREST", "ALIGN_CORNERS", "HALF_EVEN"),
    ("BILINEAR", "ASYMMETRIC", "FLOOR"), ("BILINEAR", "HALF_PIXEL", "FLOOR"), ("BILINEAR", "ALIGN_CORNERS", "HALF_EVEN"),
}


def rule_int8_resize_mode(ann: dict) -> Optional[str]:
    """TFLite's modes for a TFLite model; for an ONNX QDQ model every coordinate
    mode rule_resize takes and ONNX's nearest_modes (onnxruntime's arithmetic)."""
    from .resize import resize_modes

    modes = resize_modes(ann["root"].attrs)
    if int8_arithmetic() == "onnxruntime":
        if modes[0] == "NEAREST" and modes[2] == "HALF_EVEN":
            return "int8 nearest resize rounding half to even is no ONNX nearest_mode"
        return None
    if modes not in TFLITE_RESIZE_MODES:
        return (f"int8 resize {modes[0].lower()} with coordinates {modes[1].lower()} and rounding {modes[2].lower()} "
                "is none of TFLite's (asymmetric, align_corners, half_pixel_centers), whose integer kernels the "
                "chip runs")
    return None


def qconcat_pattern(arity: int):
    ann: dict = {}
    fields = []
    for i in range(arity):
        data = wildcard()
        ann[f"input{i}"] = data
        fields.append(_dq(ann, f"input{i}", data))
    root = is_op("relax.concat")(is_tuple(fields))
    ann["root"] = root
    return _q(ann, root, False), ann


def qresize_pattern():
    data = wildcard()
    ann = {"input": data}
    root = is_op("relax.image.resize2d")(_dq(ann, "input", data), wildcard())
    ann["root"] = root
    return _q(ann, root, False), ann


def rule_int8_nearest(ann: dict) -> Optional[str]:
    """A resize on the int8 tensor itself (the TFLite importer's quantized
    RESIZE_NEAREST_NEIGHBOR): nearest picks values, so it keeps the quantization."""
    for key in ("input", "root"):
        if dtype_of(ann[key]) != "int8":
            return f"{key} is {dtype_of(ann[key])}; the int8 path takes int8 tensors"
    if str(ann["root"].attrs.method) != "nearest_neighbor":
        return f"an int8 {ann['root'].attrs.method} resize outside dequantize/quantize (not TFLite's arithmetic)"
    return None


def qconv2d_transpose_pattern(with_bias: bool, clip: bool):
    data, weight = wildcard(), wildcard()
    ann = {"input": data, "weight": weight}
    root = is_op("relax.nn.conv2d_transpose")(_dq(ann, "input", data), _dq(ann, "weight", weight))
    ann["root"] = root
    return _q(ann, _with_qbias(ann, root, with_bias), clip), ann


def patterns() -> list[FusionPattern]:
    table = []
    for arity in range(1, MAX_CONCAT_INPUTS + 1):
        pat, ann = qconcat_pattern(arity)
        table.append(FusionPattern(pattern_name("qconcat"), pat, ann,
                                   make_check(rule_int8_operands, rule_int8_inputs, rule_per_tensor, rule_not_empty)))
    pat, ann = qresize_pattern()
    table.append(FusionPattern(pattern_name("qresize2d"), pat, ann,
                               make_check(rule_int8_operands, rule_int8_inputs, rule_per_tensor, rule_same_as_input,
                                          rule_resize, rule_int8_resize_mode, rule_rank_at_most_4, rule_not_empty)))
    data = wildcard()
    root = is_op("relax.image.resize2d")(data, wildcard())
    table.append(FusionPattern(pattern_name("qresize2d"), root, {"input": data, "root": root},
                               make_check(rule_int8_nearest, rule_resize, rule_int8_resize_mode, rule_rank_at_most_4,
                                          rule_not_empty)))
    for with_bias in (False, True):
        for clip in (False, True):
            pat, ann = qconv2d_transpose_pattern(with_bias, clip)
            table.append(FusionPattern(
                pattern_name("qconv2d_transpose", "bias" if with_bias else None, "clip" if clip else None), pat, ann,
                make_check(rule_int8_operands, rule_symmetric_weights, rule_conv2d_transpose, rule_rank_at_most_4,
                           rule_not_empty)))
    return table

