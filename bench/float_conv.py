"""The float-conv kernel one instruction at a time (issue #14): conv2d_int8 with
SOPHON_REQUANT_FLOAT_CONV (onnxruntime's float Conv of an ONNX QDQ model) on the conv
shapes of INT8 ResNet-18, MobileNetV2, EfficientNet-B0 and YOLOv5s-320, random int8
operands, one emulated bm1684 per runtime library.

With two runtime libraries (a build of the runtime's sources, e.g. a copy of
~/.cache/tvm_sophon/libsophon_runtime_*.so from another commit) both are loaded in this
process and called in turn, and the table gives each one's GFLOP/s (useful MACs x 2) and
the median of the per-round new / old ratios, with whether their outputs are equal. One
thread: thread CPU time; more: wall time. The ceiling of one Zen 4 core is one 512-bit
FMA per cycle (117 GFLOP/s at 3.65 GHz).

    python bench/float_conv.py [--old LIB] [--new LIB] [--rounds 11] [--threads 1] [--only r18_]
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from int8_structs import GlobalStruct, Requant  # noqa: E402
from tvm_sophon import get_chip  # noqa: E402
from tvm_sophon.cost import ActivationStruct, ChipStruct, ConvParamsStruct, LocalStruct  # noqa: E402
from tvm_sophon.toolchain import runtime_shared_library  # noqa: E402

I8, I32, ALIGNED, COMPACT = 1, 2, 0, 1
FLOAT_CONV = 3  # sophon_requant_rounding

# name: (in channels, h, w, out channels, kernel, stride, pad, groups, instructions a network runs)
SHAPES = {
    "r18_64_3x3_56": (64, 56, 56, 64, 3, 1, 1, 1, 2),
    "r18_64_128_3x3s2": (64, 56, 56, 128, 3, 2, 1, 1, 1),
    "r18_64_128_1x1s2": (64, 56, 56, 128, 1, 2, 0, 1, 1),
    "r18_128_3x3_28": (128, 28, 28, 128, 3, 1, 1, 1, 1),
    "r18_128_256_3x3s2": (128, 28, 28, 256, 3, 2, 1, 1, 1),
    "r18_128_256_1x1s2": (128, 28, 28, 256, 1, 2, 0, 1, 1),
    "r18_256_3x3_14": (256, 14, 14, 256, 3, 1, 1, 1, 1),
    "r18_256_512_3x3s2": (256, 14, 14, 512, 3, 2, 1, 1, 1),
    "r18_256_512_1x1s2": (256, 14, 14, 512, 1, 2, 0, 1, 1),
    "r18_512_3x3_7": (512, 7, 7, 512, 3, 1, 1, 1, 1),
    "mv2_24_144_56": (24, 56, 56, 144, 1, 1, 0, 1, 1),
    "mv2_96_24_56": (96, 56, 56, 24, 1, 1, 0, 1, 1),
    "mv2_32_192_28": (32, 28, 28, 192, 1, 1, 0, 1, 2),
    "mv2_144_32_28": (144, 28, 28, 32, 1, 1, 0, 1, 1),
    "mv2_64_384_14": (64, 14, 14, 384, 1, 1, 0, 1, 3),
    "mv2_96_576_14": (96, 14, 14, 576, 1, 1, 0, 1, 2),
    "mv2_384_96_14": (384, 14, 14, 96, 1, 1, 0, 1, 1),
    "mv2_192_64_14": (192, 14, 14, 64, 1, 1, 0, 1, 1),
    "mv2_160_960_7": (160, 7, 7, 960, 1, 1, 0, 1, 2),
    "mv2_576_160_7": (576, 7, 7, 160, 1, 1, 0, 1, 1),
    "eff_192_1152_7": (192, 7, 7, 1152, 1, 1, 0, 1, 4),
    "eff_1152_48_1": (1152, 1, 1, 48, 1, 1, 0, 1, 4),
    "eff_480_112_14": (480, 14, 14, 112, 1, 1, 0, 1, 1),
    "eff_144_40_28": (144, 28, 28, 40, 1, 1, 0, 1, 1),
    "eff_dw_480_5x5_14": (480, 14, 14, 480, 5, 1, 2, 480, 1),
    "yolo_256_3x3_10": (256, 10, 10, 256, 3, 1, 1, 1, 2),
    "yolo_128_3x3_20": (128, 20, 20, 128, 3, 1, 1, 1, 5),
    "yolo_128_255_40": (128, 40, 40, 255, 1, 1, 0, 1, 1),
}


class Device:
    """One emulated bm1684 (or `chip`) of the runtime library at `path`, operands in its lanes."""

    def __init__(self, path: str, threads: int, chip: str = "bm1684"):
        lib = self.lib = ctypes.CDLL(path)
        P = ctypes.POINTER
        lib.sophon_local_lane_bytes.restype = ctypes.c_int64
        lib.sophon_device_create.argtypes = [P(ChipStruct), P(ctypes.c_void_p)]
        lib.sophon_device_set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int32]
        for name in ("sophon_gdma_load", "sophon_gdma_load_constant"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, P(LocalStruct), P(GlobalStruct)]
        lib.sophon_gdma_store.argtypes = [ctypes.c_void_p, P(GlobalStruct), P(LocalStruct)]
        lib.sophon_tiu_conv2d_int8.argtypes = [ctypes.c_void_p] + [P(LocalStruct)] * 4 + [
            P(ConvParamsStruct), P(Requant)]
        lib.sophon_tiu_conv2d.argtypes = [ctypes.c_void_p] + [P(LocalStruct)] * 4 + [P(ConvParamsStruct)]
        self.chip = ChipStruct.of(get_chip(chip))
        self.handle = ctypes.c_void_p()
        assert lib.sophon_device_create(ctypes.byref(self.chip), ctypes.byref(self.handle)) == 0
        assert lib.sophon_device_set_threads(self.handle, threads) == 0
        self.next_addr = 0

    def alloc(self, shape, dtype=I8, layout=ALIGNED) -> LocalStruct:
        t = LocalStruct(self.next_addr, *shape, dtype, layout, 0)
        size = self.lib.sophon_local_lane_bytes(ctypes.byref(self.chip), ctypes.byref(t))
        self.next_addr += (size + 63) // 64 * 64
        assert self.next_addr <= self.chip.lmem_bytes_per_lane, f"{shape} does not fit the lanes"
        return t

    def put(self, array, dtype=I8, layout=ALIGNED) -> LocalStruct:
        t = self.alloc(array.shape, dtype, layout)
        array = np.ascontiguousarray(array, dtype=np.int8 if dtype == I8 else np.int32)
        assert self.lib.sophon_gdma_load(self.handle, ctypes.byref(t),
                                         ctypes.byref(GlobalStruct.of(array, dtype))) == 0
        return t

    def store(self, t: LocalStruct) -> np.ndarray:
        out = np.empty((t.n, t.c, t.h, t.w), np.int8)
        assert self.lib.sophon_gdma_store(self.handle, ctypes.byref(GlobalStruct.of(out, I8)),
                                          ctypes.byref(t)) == 0
        return out

    def conv(self, shape, rounding=FLOAT_CONV):
        """The instruction's operands loaded (requantization `rounding`); returns (call,
        output local, MACs)."""
        ic, h, w, oc, k, stride, pad, groups, _ = shape
        rng = np.random.default_rng(ic * 1000 + oc)
        self.next_addr = 0
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        t_in = self.put(rng.integers(-128, 128, (1, ic, h, w), dtype=np.int8))
        t_w = self.put(rng.integers(-128, 128, (1, oc, ic // groups, k * k), dtype=np.int8), I8, COMPACT)
        t_b = self.put(rng.integers(-5000, 5000, (1, oc, 1, 1)).astype(np.int32), I32, COMPACT)
        t_out = self.alloc((1, oc, oh, ow))
        params = ConvParamsStruct(k, k, stride, stride, pad, pad, pad, pad, 1, 1, groups,
                                  ActivationStruct(0, 0.0, 0.0, 0.0))
        scales = (ctypes.c_double * oc)(*[float(np.float32(v)) for v in rng.uniform(0.002, 0.02, oc)])
        multipliers = (ctypes.c_int32 * oc)(*([1 << 30] * oc))  # checked, unused by FLOAT_CONV
        shifts = (ctypes.c_int32 * oc)(*([-8] * oc))
        q = Requant(7, -3, -128, 127, 1, ctypes.cast(multipliers, ctypes.POINTER(ctypes.c_int32)),
                    ctypes.cast(shifts, ctypes.POINTER(ctypes.c_int32)), rounding,
                    ctypes.cast(scales, ctypes.POINTER(ctypes.c_double)), 0.0371,
                    float(np.float32(0.03 * np.sqrt(ic // groups * k * k))), 128)
        keep = (scales, multipliers, shifts, params, q, t_in, t_w, t_b, t_out)
        args = [ctypes.byref(x) for x in (t_out, t_in, t_w, t_b, params, q)]

        def call():
            assert self.lib.sophon_tiu_conv2d_int8(self.handle, *args) == 0, keep

        return call, t_out, oc * oh * ow * (ic // groups) * k * k


def paired_table(devices, shapes: dict, make_run, rounds: int, threads: int, only: str) -> None:
    """Each shape's instruction (make_run(device, shape) -> (call, output local, MACs)) on
    every device in turn, `rounds` times: GFLOP/s per device and, with two, the median of
    the per-round new / old ratios and whether the outputs are equal; then the sum over
    the shapes, each weighted by the instructions a network runs (the shape's last field)."""
    clock = time.thread_time if threads == 1 else time.perf_counter
    totals = [0.0] * len(devices)
    print(f"{'conv':20s} {'MMAC':>7s} " + " ".join(f"{name + ' GFLOP/s':>14s}" for name in ("new", "old")[:len(devices)])
          + ("   new/old  equal" if len(devices) > 1 else ""))
    for name, shape in shapes.items():
        if only not in name:
            continue
        runs = [make_run(dev, shape) for dev in devices]
        outputs = []
        for dev, (call, t_out, _) in zip(devices, runs):
            call()
            outputs.append(dev.store(t_out))
        macs = runs[0][2]
        reps = max(1, min(200, int(2e8 / macs)))
        times = [[] for _ in devices]
        for _ in range(rounds):
            for i, (call, _, _) in enumerate(runs):
                start = clock()
                for _ in range(reps):
                    call()
                times[i].append((clock() - start) / reps)
        medians = [statistics.median(t) for t in times]
        for i, m in enumerate(medians):
            totals[i] += shape[-1] * m
        line = f"{name:20s} {macs / 1e6:7.1f} " + " ".join(f"{2 * macs / m / 1e9:14.1f}" for m in medians)
        if len(devices) > 1:
            ratio = statistics.median(a / b for a, b in zip(times[0], times[1]))
            line += f"   {ratio:7.3f}  {np.array_equal(outputs[0], outputs[1])}"
        print(line, flush=True)
    print("sum over the shapes, each x the instructions a network runs, ms: " + " / ".join(f"{t * 1e3:.2f}" for t in totals))


def bench_arguments(doc: str) -> argparse.ArgumentParser:
    """The options of this bench and of bench/pointwise.py."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--new", default=None, help="runtime library (default: this checkout's)")
    ap.add_argument("--old", default=None, help="a second runtime library to compare with")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="shapes whose name contains this")
    return ap


def libraries(args) -> list:
    return [args.new or str(runtime_shared_library())] + ([args.old] if args.old else [])


def main(shapes=SHAPES, rounding=FLOAT_CONV, doc=__doc__) -> None:
    """Times conv2d_int8 on `shapes` with requantization `rounding` (the table above)."""
    args = bench_arguments(doc).parse_args()
    devices = [Device(path, args.threads) for path in libraries(args)]
    paired_table(devices, shapes, lambda dev, shape: dev.conv(shape, rounding), args.rounds, args.threads,
                 args.only)


if __name__ == "__main__":
    main()
