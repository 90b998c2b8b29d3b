"""INT8 chains of pre-quantized models.

TVM's TFLite and ONNX (QDQ) importers express an int8 layer as
  dequantize(x) -> float op (+ dequantize(bias)) -> quantize (-> clip);
these patterns take the whole chain, which the chip runs with TFLite's integer
arithmetic (runtime/sophon_quant.h). Scales and zero points must be constants.
"""
from __future__ import annotations

import itertools
from typing import Optional

import numpy as np
from tvm.relax.dpl import DFPattern, is_op, wildcard
from tvm.relax.transform import FusionPattern

from .conv import rule_conv2d
from .dense import rule_dense
from .pool import rule_pool
from .rules import (pattern_name, constant_value, dtype_of, int8_arithmetic, make_check, rule_not_empty,
                    rule_rank_at_most_4, rule_rank_collapses, static_shape)


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


def qdq_pool_pattern(op: str):
    """quantize(pool(dequantize(x))), as an ONNX QDQ model writes a pool."""
    data = wildcard()
    ann = {"input": data}
    root = is_op(op)(_dq(ann, "input", data))
    ann["root"] = root
    return _q(ann, root, False), ann


def rule_same_quantization(ann: dict) -> Optional[str]:
    for key in ("scale", "zp"):
        a, b = constant_value(ann[f"input_{key}"]), constant_value(ann[f"output_{key}"])
        if a is None or b is None or a.shape != b.shape or not np.all(a == b):
            return f"max pool re-quantizes (input and output {key} differ); the int8 max pool keeps them"
    return None


def rule_onnxruntime(ann: dict) -> Optional[str]:
    if int8_arithmetic() != "onnxruntime":
        return "an average pool between dequantize and quantize is onnxruntime's QLinearAveragePool (ONNX QDQ only)"
    return None


def rule_per_tensor_scales(ann: dict) -> Optional[str]:
    for key in ("input_scale", "input_zp", "output_scale", "output_zp"):
        value = constant_value(ann[key])
        if value is None or value.size != 1:
            return f"{key} is not one constant; the int8 average takes one quantization per tensor"
    return None


def rule_no_dilation(ann: dict) -> Optional[str]:
    dilation = [int(d) for d in ann["root"].attrs.dilation]
    return f"dilation {dilation}: onnxruntime's int8 average pool has none" if any(d != 1 for d in dilation) else None


def rule_int8_pool(ann: dict) -> Optional[str]:
    # the window first: a float32 pool the chip refuses is reported for its window
    return rule_pool(ann) or (f"input is {dtype_of(ann['input'])}" if dtype_of(ann["input"]) != "int8" else None)


def patterns() -> list[FusionPattern]:
    table = []
    int8 = (rule_int8_operands, rule_rank_at_most_4, rule_not_empty)
    data = wildcard()
    root = is_op("relax.nn.max_pool2d")(data)
    table.append(FusionPattern("sophon.qmax_pool2d", root, {"input": data, "root": root},
                               make_check(rule_int8_pool, rule_not_empty)))
    # ONNX QDQ: quantize(max_pool2d(dequantize(x))) with one scale: an int8 max pool
    pat, ann = qdq_pool_pattern("relax.nn.max_pool2d")
    table.append(FusionPattern("sophon.qmax_pool2d_qdq", pat, ann,
                               make_check(rule_int8_operands, rule_same_quantization, rule_pool, rule_not_empty)))
    data = wildcard()
    root = is_op("relax.nn.avg_pool2d")(is_op("relax.astype")(data))
    out = is_op("relax.astype")(root)
    table.append(FusionPattern("sophon.qavg_pool2d", out, {"input": data, "root": root},
                               make_check(rule_int8_pool, rule_not_empty)))
    # ONNX QDQ: quantize(avg_pool2d(dequantize(x))), onnxruntime's QLinearAveragePool
    pat, ann = qdq_pool_pattern("relax.nn.avg_pool2d")
    table.append(FusionPattern("sophon.qavg_pool2d_qdq", pat, ann,
                               make_check(rule_onnxruntime, rule_int8_operands, rule_per_tensor_scales, rule_pool,
                                          rule_no_dilation, rule_not_empty)))
    for clip in (False, True):
        pat, ann = qadd_pattern(clip)
        # element-wise: above 4-D where the axes merge (YOLO's (1, 3, H, W, 85) heads)
        table.append(FusionPattern(pattern_name("qadd", "clip" if clip else None), pat, ann,
                                   make_check(rule_int8_operands, rule_rank_collapses, rule_not_empty)))
    for with_bias, clip in itertools.product((False, True), (False, True)):
        pat, ann = qdense_pattern(with_bias, clip)
        table.append(FusionPattern(pattern_name("qdense", "bias" if with_bias else None, "clip" if clip else None),
                                   pat, ann, make_check(*int8, rule_symmetric_weights, rule_dense)))
        pat, ann = qconv2d_pattern(with_bias, clip)
        table.append(FusionPattern(pattern_name("qconv2d", "bias" if with_bias else None, "clip" if clip else None),
                                   pat, ann, make_check(*int8, rule_symmetric_weights, rule_conv2d)))
    return table
