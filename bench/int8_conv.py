"""The integer INT8 conv kernels one instruction at a time (issue #14): conv2d_int8 with
SOPHON_REQUANT_FLOAT32 (onnxruntime's QLinearConv arithmetic, the VNNI GEMM and the
depthwise kernel of runtime/fast/sophon_fast_int8.c) on the shapes of the 37 integer convs
of INT8 MobileNetV2 (the stem, the 17 depthwise convs, the 1x1 convs that onnxruntime runs
as QLinearConv), random int8 operands, one emulated bm1684 per runtime library.

The table and the options are bench/float_conv.py's (its "GFLOP/s" column is MACs x 2 per
second here); with --old LIB both libraries are called in turn in this process and the
median of the per-round new / old ratios is given, with whether their outputs are equal.

    python bench/int8_conv.py [--old LIB] [--new LIB] [--rounds 11] [--threads 1] [--only dw]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import float_conv  # noqa: E402

FLOAT32 = 2  # sophon_requant_rounding: SOPHON_REQUANT_FLOAT32

# name: (in channels, h, w, out channels, kernel, stride, pad, groups, instructions a network runs)
SHAPES = {
    "stem_3_32_s2": (3, 224, 224, 32, 3, 2, 1, 1, 1),
    "dw32_112": (32, 112, 112, 32, 3, 1, 1, 32, 1),
    "pw32_16_112": (32, 112, 112, 16, 1, 1, 0, 1, 1),
    "pw16_96_112": (16, 112, 112, 96, 1, 1, 0, 1, 1),
    "dw96_s2_112": (96, 112, 112, 96, 3, 2, 1, 96, 1),
    "pw24_144_56": (24, 56, 56, 144, 1, 1, 0, 1, 1),
    "dw144_56": (144, 56, 56, 144, 3, 1, 1, 144, 1),
    "pw144_24_56": (144, 56, 56, 24, 1, 1, 0, 1, 1),
    "dw144_s2_56": (144, 56, 56, 144, 3, 2, 1, 144, 1),
    "dw192_28": (192, 28, 28, 192, 3, 1, 1, 192, 2),
    "pw192_32_28": (192, 28, 28, 32, 1, 1, 0, 1, 2),
    "pw32_192_28": (32, 28, 28, 192, 1, 1, 0, 1, 1),
    "dw192_s2_28": (192, 28, 28, 192, 3, 2, 1, 192, 1),
    "dw384_14": (384, 14, 14, 384, 3, 1, 1, 384, 4),
    "pw384_64_14": (384, 14, 14, 64, 1, 1, 0, 1, 3),
    "pw64_384_14": (64, 14, 14, 384, 1, 1, 0, 1, 1),
    "dw576_14": (576, 14, 14, 576, 3, 1, 1, 576, 2),
    "pw576_96_14": (576, 14, 14, 96, 1, 1, 0, 1, 2),
    "pw96_576_14": (96, 14, 14, 576, 1, 1, 0, 1, 1),
    "dw576_s2_14": (576, 14, 14, 576, 3, 2, 1, 576, 1),
    "dw960_7": (960, 7, 7, 960, 3, 1, 1, 960, 3),
    "pw960_160_7": (960, 7, 7, 160, 1, 1, 0, 1, 2),
    "pw160_960_7": (160, 7, 7, 960, 1, 1, 0, 1, 1),
    "pw960_320_7": (960, 7, 7, 320, 1, 1, 0, 1, 1),
    "pw320_1280_7": (320, 7, 7, 1280, 1, 1, 0, 1, 1),
}

if __name__ == "__main__":
    float_conv.main(SHAPES, FLOAT32, __doc__)
