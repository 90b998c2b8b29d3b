"""The INT8 element-wise instructions on the host: reference kernel vs fast
kernel, one instruction over an EfficientNet-sized int8 tensor (1 x 96 x 56 x 56):

    python bench/int8_eltwise.py            # a few seconds
    python bench/int8_eltwise.py --threads 2

Cases: binary_int8 MUL with b of a's shape and with one value per channel (a
squeeze-and-excitation scale), MAX, PRELU with a per-channel slope, and add_int8
as SUB. (lut_int8, every int8 unary op, has no fast twin: its reference kernel is
one byte lookup per element.) Prints reference ms,
fast ms and their ratio; each number is the median of 9 runs after a warm-up.
"""
from __future__ import annotations

import argparse
import ctypes
import platform

import numpy as np
from activations import GlobalStruct, median_time

from tvm_sophon import get_chip
from tvm_sophon.cost import ChipStruct, LocalStruct, runtime_library

SHAPE = (1, 96, 56, 56)
I8 = 1


class BinaryInt8Params(ctypes.Structure):  # sophon_binary_int8_params
    _fields_ = [("op", ctypes.c_int)] + [(name, ctypes.c_int32) for name in (
        "input1_zero_point", "input2_zero_point", "output_zero_point", "multiplier1", "shift1",
        "multiplier2", "shift2", "act_min", "act_max", "multiplier3", "shift3")]


class AddParams(ctypes.Structure):  # sophon_add_int8_params
    _fields_ = [(name, ctypes.c_int32) for name in (
        "left_shift", "input1_zero_point", "input2_zero_point", "output_zero_point",
        "input1_multiplier", "input1_shift", "input2_multiplier", "input2_shift",
        "output_multiplier", "output_shift", "act_min", "act_max")]


class Device:
    def __init__(self, threads: int, reference: bool):
        self.lib = runtime_library()
        self.chip = ChipStruct.of(get_chip("bm1684"))
        self.handle = ctypes.c_void_p()
        assert self.lib.sophon_device_create(ctypes.byref(self.chip), ctypes.byref(self.handle)) == 0
        assert self.lib.sophon_device_set_threads(self.handle, threads) == 0
        assert self.lib.sophon_device_set_reference(self.handle, int(reference)) == 0
        self.addr = 0

    def put(self, x: np.ndarray) -> LocalStruct:
        n, c, h, w = x.shape
        t = LocalStruct(self.addr, n, c, h, w, I8, 0, 0)
        self.addr += (self.lib.sophon_local_lane_bytes(ctypes.byref(self.chip), ctypes.byref(t)) + 63) // 64 * 64
        src = GlobalStruct(x.ctypes.data, n, c, h, w, c * h * w, h * w, w, 1, I8)
        assert self.lib.sophon_gdma_load(self.handle, ctypes.byref(t), ctypes.byref(src)) == 0
        return t


def cases(dev: Device):
    rng = np.random.default_rng(0)
    a = dev.put(rng.integers(-128, 128, SHAPE, dtype=np.int8))
    b = dev.put(rng.integers(-128, 128, SHAPE, dtype=np.int8))
    per_channel = dev.put(rng.integers(-128, 128, (1, SHAPE[1], 1, 1), dtype=np.int8))
    out = dev.put(np.zeros(SHAPE, dtype=np.int8))
    lib, h, ref = dev.lib, dev.handle, ctypes.byref

    def binary(op, rhs):
        p = BinaryInt8Params(op, -3, 5, 2, 1518500250, -8, 1832780120, -9, -128, 127)
        return lambda: lib.sophon_tiu_binary_int8(h, ref(out), ref(a), ref(rhs), ref(p))

    sub = AddParams(20, -3, 7, 1, 1518500250, -1, -1832780120, -2, 1431655765, -17, -128, 127)
    return {
        "mul": binary(0, b),
        "mul per-channel": binary(0, per_channel),
        "max": binary(1, b),
        "prelu per-channel": binary(3, per_channel),
        "sub (add_int8)": lambda: lib.sophon_tiu_add_int8(h, ref(out), ref(a), ref(b), ref(sub)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    ref_dev, fast_dev = Device(1, True), Device(args.threads, False)
    ref_cases, fast_cases = cases(ref_dev), cases(fast_dev)
    print(f"{platform.processor() or platform.machine()}, int8 tensor {SHAPE}, fast kernel on "
          f"{args.threads} thread(s)")
    print(f"{'case':<20}{'reference ms':>14}{'fast ms':>10}{'ratio':>8}")
    for name in ref_cases:
        r, f = median_time(ref_cases[name]), median_time(fast_cases[name])
        print(f"{name:<20}{r * 1e3:>14.3f}{f * 1e3:>10.3f}{r / f:>8.1f}")
    for dev in (ref_dev, fast_dev):
        dev.lib.sophon_device_destroy(dev.handle)


if __name__ == "__main__":
    main()
