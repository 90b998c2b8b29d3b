"""Resize: ``image.resize2d`` nearest and bilinear, in the coordinate modes and
rounding methods the TFLite, ONNX and torch importers emit, up and down, NCHW and
NHWC (the chip's ``tiu_resize``, runtime/reference/sophon_tiu_resize.c)."""
from __future__ import annotations

from typing import Optional

from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from .rules import CONV_DATA_LAYOUTS, base_rules, make_check, pattern_name, static_shape

METHODS = {"nearest_neighbor": "NEAREST", "linear": "BILINEAR"}
COORDS = {"half_pixel": "HALF_PIXEL", "align_corners": "ALIGN_CORNERS", "asymmetric": "ASYMMETRIC",
          "pytorch_half_pixel": "PYTORCH_HALF_PIXEL", "tf_half_pixel_for_nn": "TF_HALF_PIXEL_FOR_NN"}
ROUNDINGS = {"round": "HALF_EVEN", "round_prefer_floor": "PREFER_FLOOR",
             "round_prefer_ceil": "PREFER_CEIL", "floor": "FLOOR", "ceil": "CEIL"}


def resize_modes(attrs) -> tuple[str, str, str]:
    """(method, coordinate mode, rounding) of a resize2d call as the chip names
    them; an empty rounding is TVM's default (round for align_corners, else floor)."""
    coord = str(attrs.coordinate_transformation_mode)
    rounding = str(attrs.rounding_method) or ("round" if coord == "align_corners" else "floor")
    return METHODS[str(attrs.method)], COORDS[coord], ROUNDINGS[rounding]


def rule_resize(ann: dict) -> Optional[str]:
    root = ann["root"]
    attrs = root.attrs
    layout = str(attrs.layout)
    if layout not in CONV_DATA_LAYOUTS:
        return f"resize layout {layout} (chip handles NCHW, NHWC)"
    if str(attrs.method) not in METHODS:
        return f"resize method {attrs.method} (chip has nearest and bilinear)"
    coord = str(attrs.coordinate_transformation_mode)
    if coord not in COORDS:
        return f"resize coordinate mode {coord} (chip has {', '.join(COORDS)})"
    rounding = str(attrs.rounding_method)
    if str(attrs.method) == "nearest_neighbor" and rounding and rounding not in ROUNDINGS:
        return f"resize rounding {rounding} (chip has {', '.join(ROUNDINGS)})"
    if attrs.out_dtype is not None and str(attrs.out_dtype) not in ("", "float32"):
        return f"resize out dtype {attrs.out_dtype} differs from its float32 input"
    in_shape, out_shape = static_shape(ann["input"]), static_shape(root)
    if in_shape is None or out_shape is None or len(in_shape) != 4:
        return "resize of a tensor that is not a static 4-D image"
    if coord == "align_corners":
        for axis in (layout.index("H"), layout.index("W")):
            if out_shape[axis] == 1 and in_shape[axis] > 1:
                return "align_corners resize to one pixel divides by zero (out - 1)"
    return None


def patterns() -> list[FusionPattern]:
    data = wildcard()
    root = is_op("relax.image.resize2d")(data, wildcard())
    return [FusionPattern(pattern_name("resize2d"), root, {"input": data, "root": root},
                          make_check(*base_rules(), rule_resize))]
