"""INT8 reductions and softmax of pre-quantized models.

TVM's TFLite importer writes TFLite's int8 ``MEAN``, ``SUM``, ``REDUCE_MAX``,
``REDUCE_MIN`` and ``SOFTMAX`` as ``dequantize -> float op -> quantize``; these
patterns take the whole chain, which the chip runs with TFLite's reference
integer arithmetic (``tiu_reduce_int8`` and ``tiu_softmax_int8``,
runtime/sophon_quant.h): a global average pool of an int8 model stays in int8
instead of running as float on the host.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .int8 import _dq, _q, rule_int8_operands
from .reduce import REDUCTIONS, rule_reduce
from .rules import constant_value, int8_arithmetic, make_check, pattern_name, rule_not_empty

# TFLite's int8 softmax writes probabilities with scale 1/256 and zero point -128
SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZP = 1.0 / 256, -128


def _scalar(ann: dict, key: str) -> Optional[float]:
    value = constant_value(ann[key])
    return None if value is None or value.size != 1 else float(value.reshape(()))


def rule_per_tensor(ann: dict) -> Optional[str]:
    for key in ("input_scale", "input_zp", "output_scale", "output_zp"):
        value = constant_value(ann[key])
        if value is not None and value.size != 1:
            return f"{key} has {value.size} values; int8 reductions and softmax take per-tensor quantization"
    return None


def rule_same_quantization(ann: dict) -> Optional[str]:
    """TFLite's int8 REDUCE_MAX / REDUCE_MIN keep the input's scale and zero point."""
    for key in ("scale", "zp"):
        a, b = _scalar(ann, f"input_{key}"), _scalar(ann, f"output_{key}")
        if a is None or b is None or np.float32(a) != np.float32(b):
            return f"int8 max / min re-quantizes (input and output {key} differ); TFLite keeps them"
    return None


def rule_softmax(ann: dict) -> Optional[str]:
    scale, zp = _scalar(ann, "output_scale"), _scalar(ann, "output_zp")
    if int8_arithmetic() == "onnxruntime":  # QLinearSoftmax takes any output quantization with a step in 1
        if scale is None or zp is None or not 0 < scale <= 1:
            return f"int8 softmax output scale {scale}: onnxruntime's QLinearSoftmax needs one in (0, 1]"
        return None
    if scale is None or zp is None or abs(scale - SOFTMAX_OUTPUT_SCALE) > 1e-3 * SOFTMAX_OUTPUT_SCALE \
            or int(zp) != SOFTMAX_OUTPUT_ZP:
        return (f"int8 softmax output quantized with scale {scale}, zero point {zp}; TFLite's int8 softmax "
                f"writes scale 1/256, zero point -128")
    return None


def patterns() -> list[FusionPattern]:
    table = []
    int8 = (rule_int8_operands, rule_per_tensor, rule_not_empty)
    for name in REDUCTIONS:
        ann = {}
        data = wildcard()
        ann["input"] = data
        root = is_op(f"relax.{name}")(_dq(ann, "input", data))
        ann["root"] = root
        rules = int8 + (rule_reduce,) + ((rule_same_quantization,) if name in ("max", "min") else ())
        table.append(FusionPattern(pattern_name("qreduce", name), _q(ann, root, False), ann, make_check(*rules)))
    ann = {}
    data = wildcard()
    ann["input"] = data
    root = is_op("relax.nn.softmax")(_dq(ann, "input", data))
    ann["root"] = root
    table.append(FusionPattern("sophon.qsoftmax", _q(ann, root, False), ann, make_check(*int8, rule_softmax)))
    return table
