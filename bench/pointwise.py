"""The FP32 dense conv instruction one at a time (issue #14) on the 1x1 shapes of
MobileNetV2, EfficientNet-B0 and YOLOv5s-320 (and a few others), random operands, ReLU6
(SiLU for EfficientNet and YOLO, sigmoid for the squeeze-excite expand), one emulated bm1680 per runtime library.

The weight is loaded as the compiled networks load it, as a constant
(sophon_gdma_load_constant, so the conv reads a copy packed once per device), or with
--lmem by a plain load (the conv reads it in LMEM). With two runtime libraries (a build
of the runtime's sources, e.g. a copy of ~/.cache/tvm_sophon/libsophon_runtime_*.so from
another commit) both are loaded in this process and called in turn, and the table gives
each one's GFLOP/s (useful MACs x 2), the median of the per-round new / old ratios and
whether the outputs are bit-identical. One thread: thread CPU time; more: wall time. The
ceiling of one Zen 4 core is one 512-bit FMA per cycle (117 GFLOP/s at 3.65 GHz).

    python bench/pointwise.py [--old LIB] [--new LIB] [--rounds 11] [--threads 1] [--lmem] [--only mv2_]
"""
from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import float_conv  # noqa: E402
from int8_structs import GlobalStruct  # noqa: E402
from tvm_sophon.cost import ActivationStruct, ConvParamsStruct, LocalStruct  # noqa: E402

F32, ALIGNED, COMPACT = 0, 0, 1
RELU6, SIGMOID, SILU = (2, 0.0, -0.0, 6.0), (4, 0.0, 0.0, 0.0), (6, 0.0, 0.0, 0.0)

# name: (in channels, h, w, out channels, activation, instructions a network runs)
SHAPES = {
    "mv2_16_96_112": (16, 112, 112, 96, RELU6, 1),
    "mv2_24_144_56": (24, 56, 56, 144, RELU6, 1),
    "mv2_144_24_56": (144, 56, 56, 24, None, 1),
    "mv2_32_192_28": (32, 28, 28, 192, RELU6, 2),
    "mv2_192_32_28": (192, 28, 28, 32, None, 2),
    "mv2_64_384_14": (64, 14, 14, 384, RELU6, 4),
    "mv2_384_64_14": (384, 14, 14, 64, None, 3),
    "mv2_96_576_14": (96, 14, 14, 576, RELU6, 3),
    "mv2_576_96_14": (576, 14, 14, 96, None, 2),
    "mv2_160_960_7": (160, 7, 7, 960, RELU6, 3),
    "mv2_960_160_7": (960, 7, 7, 160, None, 2),
    "mv2_960_320_7": (960, 7, 7, 320, None, 1),
    "mv2_320_1280_7": (320, 7, 7, 1280, RELU6, 1),
    "eff_80_480_14": (80, 14, 14, 480, SILU, 3),
    "eff_112_672_14": (112, 14, 14, 672, SILU, 3),
    "eff_480_112_14": (480, 14, 14, 112, None, 1),
    "eff_672_112_14": (672, 14, 14, 112, None, 2),
    "eff_192_1152_7": (192, 7, 7, 1152, SILU, 4),
    "eff_1152_192_7": (1152, 7, 7, 192, None, 3),
    "eff_1152_320_7": (1152, 7, 7, 320, None, 1),
    "eff_se_1152_48_1": (1152, 1, 1, 48, SILU, 4),
    "eff_se_48_1152_1": (48, 1, 1, 1152, SIGMOID, 4),
    "yolo_64_32_80": (64, 80, 80, 32, SILU, 3),
    "yolo_32_32_80": (32, 80, 80, 32, SILU, 2),
    "yolo_128_64_40": (128, 40, 40, 64, SILU, 6),
    "yolo_64_64_20": (64, 20, 20, 64, SILU, 0),
    "yolo_128_128_20": (128, 20, 20, 128, SILU, 3),
    "yolo_256_128_20": (256, 20, 20, 128, SILU, 6),
    "yolo_512_256_10": (512, 10, 10, 256, SILU, 2),
    "yolo_256_255_10": (256, 10, 10, 255, None, 1),
    "odd_130_70_11": (130, 11, 11, 70, RELU6, 0),
}


class Device(float_conv.Device):
    """One emulated bm1680 of the runtime library at `path`, operands in its lanes."""

    def __init__(self, path: str, threads: int):
        super().__init__(path, threads, "bm1680")
        self.keep = []

    def put(self, array, layout=ALIGNED, constant=False) -> LocalStruct:
        t = LocalStruct(self.next_addr, *array.shape, F32, layout, 0)
        size = self.lib.sophon_local_lane_bytes(ctypes.byref(self.chip), ctypes.byref(t))
        self.next_addr += (size + 63) // 64 * 64
        assert self.next_addr <= self.chip.lmem_bytes_per_lane, f"{array.shape} does not fit the lanes"
        self.keep.append(array)  # a constant load reads it later
        load = self.lib.sophon_gdma_load_constant if constant else self.lib.sophon_gdma_load
        assert load(self.handle, ctypes.byref(t), ctypes.byref(GlobalStruct.of(array, F32))) == 0
        return t

    def store(self, t: LocalStruct) -> np.ndarray:
        out = np.empty((t.n, t.c, t.h, t.w), np.float32)
        assert self.lib.sophon_gdma_store(self.handle, ctypes.byref(GlobalStruct.of(out, F32)),
                                          ctypes.byref(t)) == 0
        return out

    def conv(self, shape, lmem: bool):
        """The instruction's operands loaded; returns (call, output local, MACs)."""
        ic, h, w, oc, act, _ = shape
        rng = np.random.default_rng(ic * 1000 + oc)
        self.next_addr = 0
        t_in = self.put(rng.standard_normal((1, ic, h, w), dtype=np.float32))
        t_w = self.put((rng.standard_normal((1, oc, ic, 1)) / np.sqrt(ic)).astype(np.float32), COMPACT,
                       constant=not lmem)
        t_b = self.put(rng.standard_normal((1, oc, 1, 1), dtype=np.float32), COMPACT)
        t_out = LocalStruct(self.next_addr, 1, oc, h, w, F32, ALIGNED, 0)
        params = ConvParamsStruct(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1,
                                  ActivationStruct(*(act or (0, 0.0, 0.0, 0.0))))
        keep = (params, t_in, t_w, t_b, t_out)
        args = [ctypes.byref(x) for x in (t_out, t_in, t_w, t_b, params)]

        def call():
            assert self.lib.sophon_tiu_conv2d(self.handle, *args) == 0, keep

        return call, t_out, oc * h * w * ic


def main() -> None:
    ap = float_conv.bench_arguments(__doc__)
    ap.add_argument("--lmem", action="store_true", help="weights loaded plainly, read in LMEM")
    args = ap.parse_args()
    devices = [Device(path, args.threads) for path in float_conv.libraries(args)]
    float_conv.paired_table(devices, SHAPES, lambda dev, shape: dev.conv(shape, args.lmem), args.rounds,
                            args.threads, args.only)


if __name__ == "__main__":
    main()
