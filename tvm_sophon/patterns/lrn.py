"""Local response normalisation (AlexNet, GoogLeNet) as TVM's ONNX importer
writes it, one chain of eight ops:

    divide(x, power(add(multiply(squeeze(avg_pool3d(expand_dims(x * x, 1))), alpha), bias), beta))

the average pool running a window of ``size`` channels (padding size/2 before,
counting the padding) -> the chip's ``tiu_lrn``. PyTorch's
``local_response_norm`` exported to ONNX (no ``LRN`` node: Unsqueeze, Pad,
AveragePool 3-D, Squeeze, Mul, Add, Pow, Div) arrives as the same chain once
normalize.FoldPadIntoPool3d has made the pad the pool's padding, with the
unsqueeze as ``reshape(x * x, (N, 1, C, H, W))``."""
from __future__ import annotations

from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .rules import base_rules, constant_value, make_check, pattern_name, static_shape


def lrn_pattern():
    x = wildcard()
    square = is_op("relax.multiply")(x, x)
    unsqueeze = is_op("relax.expand_dims")(square) | is_op("relax.reshape")(square, wildcard())
    pool = is_op("relax.nn.avg_pool3d")(unsqueeze)
    alpha, bias, beta = wildcard(), wildcard(), wildcard()
    scaled = is_op("relax.multiply")(is_op("relax.squeeze")(pool), alpha)
    denominator = is_op("relax.power")(is_op("relax.add")(scaled, bias), beta)
    root = is_op("relax.divide")(x, denominator)
    return root, {"input": x, "unsqueeze": unsqueeze, "pool": pool, "alpha": alpha, "bias": bias, "beta": beta,
                  "root": root}


def lrn_size(pool_call) -> int:
    return int(pool_call.attrs.pool_size[0])


def rule_base_outside_pool(ann: dict) -> Optional[str]:
    """The float32 rules for the chain's 4-D values (the 5-D unsqueeze and pool
    inside it are the importer's way to write a window over channels, not chip
    tensors)."""
    outside = {k: v for k, v in ann.items() if k not in ("unsqueeze", "pool")}
    return next((reason for rule in base_rules() if (reason := rule(outside)) is not None), None)


def rule_lrn(ann: dict) -> Optional[str]:
    shape = static_shape(ann["input"])
    if shape is None or len(shape) != 4:
        return "LRN of a tensor that is not 4-D NCHW"
    for key in ("alpha", "bias", "beta"):
        value = constant_value(ann[key])
        if value is None or value.size != 1:
            return f"LRN {key} is not a scalar constant"
    n, c, h, w = shape
    if static_shape(ann["unsqueeze"]) != (n, 1, c, h, w):
        return f"the pool's input {static_shape(ann['unsqueeze'])} is not x * x with a unit axis 1 inserted"
    attrs = ann["pool"].attrs
    size = lrn_size(ann["pool"])
    if (str(attrs.layout) != "NCDHW" or [int(k) for k in attrs.pool_size] != [size, 1, 1]
            or [int(s) for s in attrs.strides] != [1, 1, 1] or [int(d) for d in attrs.dilation] != [1, 1, 1]
            or [int(p) for p in attrs.padding] != [size // 2, 0, 0, size // 2, 0, 0]
            or not attrs.count_include_pad or attrs.ceil_mode):
        return "avg_pool3d is not an LRN window over channels (size x 1 x 1, stride 1, padding size/2)"
    if static_shape(ann["root"]) != shape:
        return "LRN window changes the channel count (an even size)"
    return None


def patterns() -> list[FusionPattern]:
    pat, ann = lrn_pattern()
    return [FusionPattern(pattern_name("lrn"), pat, ann, make_check(rule_base_outside_pool, rule_lrn))]
