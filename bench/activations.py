"""The activation instruction on the host: reference kernel vs fast kernel, per
kind, one instruction over a MobileNetV3-sized tensor (1 x 96 x 56 x 56, FP32,
standard normal values x 3):

    python bench/activations.py            # ~20 s
    python bench/activations.py --threads 2

Prints one table: kind, reference ms, fast ms (1 thread, or --threads), and the
ratio. The cheap kinds (relu ... hard-swish, abs, neg, sqrt, rsqrt, reciprocal)
run in AVX2 registers in the fast kernel; the special functions call the C
library per element in both, so their ratio is about the thread count.
Each number is the median of 9 runs after a warm-up.
"""
from __future__ import annotations

import argparse
import ctypes
import platform
import statistics
import time

import numpy as np

from tvm_sophon import get_chip
from tvm_sophon.cost import ACTS, ActivationStruct, ChipStruct, LocalStruct, runtime_library

SHAPE = (1, 96, 56, 56)
PARAMS = {"CLIP": (0.0, 0.0, 6.0, 0.0), "LEAKY_RELU": (0.1, 0.0, 0.0, 0.0),
          "HARD_SIGMOID": (0.2, 0.0, 0.0, 0.5), "ELU": (1.0, 0.0, 0.0, 0.0)}


def device(threads: int, reference: bool):
    lib = runtime_library()
    handle = ctypes.c_void_p()
    chip = ChipStruct.of(get_chip("bm1680"))
    assert lib.sophon_device_create(ctypes.byref(chip), ctypes.byref(handle)) == 0
    assert lib.sophon_device_set_threads(handle, threads) == 0
    assert lib.sophon_device_set_reference(handle, int(reference)) == 0
    return lib, handle


class GlobalStruct(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("n", ctypes.c_int32), ("c", ctypes.c_int32),
                ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("stride_n", ctypes.c_int64),
                ("stride_c", ctypes.c_int64), ("stride_h", ctypes.c_int64),
                ("stride_w", ctypes.c_int64), ("dtype", ctypes.c_int)]


def load_input(lib, handle) -> LocalStruct:
    """in: standard normal values x 3 (both sides of every knee), at LMEM address 0."""
    x = (np.random.default_rng(0).standard_normal(SHAPE) * 3).astype(np.float32)
    n, c, h, w = SHAPE
    src = GlobalStruct(x.ctypes.data, n, c, h, w, c * h * w, h * w, w, 1, 0)
    t = LocalStruct(0, *SHAPE, 0, 0, 0)
    assert lib.sophon_gdma_load(handle, ctypes.byref(t), ctypes.byref(src)) == 0
    return t


def time_kind(lib, handle, kind: str) -> float:
    t = load_input(lib, handle)
    out = LocalStruct(lib.sophon_local_lane_bytes(ctypes.byref(ChipStruct.of(get_chip("bm1680"))), ctypes.byref(t)),
                      *SHAPE, 0, 0, 0)
    act = ActivationStruct(ACTS[kind], *PARAMS.get(kind, (0.0, 0.0, 0.0, 0.0)))
    return median_time(lambda: lib.sophon_tiu_activation(handle, ctypes.byref(out), ctypes.byref(t),
                                                         ctypes.byref(act)))


def median_time(run) -> float:
    """The median of 9 timed calls of ``run`` after a warm-up call (which must return 0)."""
    assert run() == 0
    times = []
    for _ in range(9):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    lib, ref = device(1, True)
    _, fast = device(args.threads, False)
    print(f"{platform.processor() or platform.machine()}, tensor {SHAPE}, fast kernel on "
          f"{args.threads} thread(s)")
    print(f"{'kind':<14}{'reference ms':>14}{'fast ms':>10}{'ratio':>8}")
    for kind in ACTS:
        if kind == "NONE":
            continue
        r, f = time_kind(lib, ref, kind), time_kind(lib, fast, kind)
        print(f"{kind:<14}{r * 1e3:>14.3f}{f * 1e3:>10.3f}{r / f:>8.1f}")
    lib.sophon_device_destroy(ref)
    lib.sophon_device_destroy(fast)


if __name__ == "__main__":
    main()
