"""The fast f32 kernels (runtime/sophon_fast_conv.c) against the reference kernels
they sit beside, driven one instruction at a time through ctypes.

Three devices run every case: one in reference mode, fast with 1 thread, fast
with 2 threads. Fast results must be bit-identical across thread counts (each
output element is computed by one thread in a fixed order) and within the FP32
tolerance stated in sophon_fast_conv.c of the reference:

    |fast - ref| <= 2 * K * 2^-24 * sum_k |a_k * b_k|   (+ the rounding of bias/act)

where K is the length of the dot product (IC/groups * KH * KW for a conv): both
sum the same products, fc in a different association. (The conv kernels keep the
reference's order and roundings, so with GCC they are in fact bit-identical; the
bound keeps the test honest for compilers that contract a*b + c into an FMA.)
sum_k |a_k * b_k| is computed by the reference kernel itself on |input| and |weight|.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tvm_sophon import get_chip
from tvm_sophon.cost import (ActivationStruct, ChipStruct, ConvParamsStruct, LocalStruct,
                             runtime_library)

F32, ALIGNED, COMPACT = 0, 0, 1
ACT = {"none": (0, 0.0, 0.0, 0.0), "relu": (1, 0.0, 0.0, 0.0), "clip": (2, 0.0, 0.0, 6.0),
       "leaky": (3, 0.1, 0.0, 0.0)}
EPS = 2.0 ** -24


class GlobalStruct(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("n", ctypes.c_int32), ("c", ctypes.c_int32),
                ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("stride_n", ctypes.c_int64),
                ("stride_c", ctypes.c_int64), ("stride_h", ctypes.c_int64),
                ("stride_w", ctypes.c_int64), ("dtype", ctypes.c_int)]

    @classmethod
    def of(cls, array: np.ndarray) -> "GlobalStruct":
        assert array.dtype == np.float32 and array.ndim == 4 and array.flags.c_contiguous
        strides = [s // 4 for s in array.strides]
        return cls(array.ctypes.data, *array.shape, *strides, F32)


def _lib():
    # a private handle: argtypes set here must not leak into other tests' use of the
    # shared runtime_library() object
    lib = ctypes.CDLL(runtime_library()._name)
    lib.sophon_local_lane_bytes.restype = ctypes.c_int64
    P = ctypes.POINTER
    lib.sophon_device_create.argtypes = [P(ChipStruct), P(ctypes.c_void_p)]
    lib.sophon_device_destroy.argtypes = [ctypes.c_void_p]
    lib.sophon_device_set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.sophon_device_set_reference.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.sophon_device_error.argtypes = [ctypes.c_void_p]
    lib.sophon_device_error.restype = ctypes.c_char_p
    lib.sophon_local_channel_stride.restype = ctypes.c_int64
    lib.sophon_gdma_load.argtypes = [ctypes.c_void_p, P(LocalStruct), P(GlobalStruct)]
    lib.sophon_gdma_store.argtypes = [ctypes.c_void_p, P(GlobalStruct), P(LocalStruct)]
    lib.sophon_tiu_conv2d.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                      P(LocalStruct), P(LocalStruct), P(ConvParamsStruct)]
    lib.sophon_tiu_fc.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                  P(LocalStruct), P(LocalStruct), P(ActivationStruct)]
    return lib


class Device:
    """One emulated device and a bump allocator over its lanes."""

    def __init__(self, threads: int = 1, reference: bool = False):
        self.lib = _lib()
        self.chip = ChipStruct.of(get_chip("bm1680"))
        self.handle = ctypes.c_void_p()
        assert self.lib.sophon_device_create(ctypes.byref(self.chip), ctypes.byref(self.handle)) == 0
        self.check(self.lib.sophon_device_set_threads(self.handle, threads))
        self.check(self.lib.sophon_device_set_reference(self.handle, int(reference)))
        self.next_addr = 0

    def close(self):
        self.lib.sophon_device_destroy(self.handle)

    def check(self, status):
        assert status == 0, self.lib.sophon_device_error(self.handle).decode()

    def alloc(self, n, c, h, w, layout=ALIGNED, cstride=0) -> LocalStruct:
        t = LocalStruct(self.next_addr, n, c, h, w, F32, layout, cstride)
        size = self.lib.sophon_local_lane_bytes(ctypes.byref(self.chip), ctypes.byref(t))
        assert size > 0
        self.next_addr += (size + 63) // 64 * 64
        assert self.next_addr <= self.chip.lmem_bytes_per_lane
        return t

    def load(self, t: LocalStruct, array: np.ndarray):
        array = np.ascontiguousarray(array, dtype=np.float32)
        self.check(self.lib.sophon_gdma_load(self.handle, ctypes.byref(t),
                                             ctypes.byref(GlobalStruct.of(array))))

    def store(self, t: LocalStruct) -> np.ndarray:
        out = np.empty((t.n, t.c, t.h, t.w), np.float32)
        self.check(self.lib.sophon_gdma_store(self.handle, ctypes.byref(GlobalStruct.of(out)),
                                              ctypes.byref(t)))
        return out

    def window(self, array: np.ndarray, rows_before: int, rows_after: int):
        """`array` loaded as rows [r, r+h) of a taller buffer: a local with an explicit
        channel stride (a row window), as the compiler hands a conv its band."""
        n, c, h, w = array.shape
        buf = self.alloc(n, c, rows_before + h + rows_after, w)
        full = np.random.default_rng(1).standard_normal((n, c, buf.h, w)).astype(np.float32)
        full[:, :, rows_before:rows_before + h] = array
        self.load(buf, full)
        stride = self.lib.sophon_local_channel_stride(ctypes.byref(self.chip), ctypes.byref(buf))
        return LocalStruct(buf.addr + rows_before * w * 4, n, c, h, w, F32, ALIGNED, stride), buf


@pytest.fixture(scope="module")
def devices():
    devs = {"ref": Device(1, reference=True), "fast1": Device(1), "fast2": Device(2)}
    yield devs
    for dev in devs.values():
        dev.close()


def run_conv(dev: Device, x, weight, bias, params: ConvParamsStruct, out_shape, *,
             in_window=(0, 0), out_window=(0, 0)):
    dev.next_addr = 0
    n, oc, oh, ow = out_shape
    if in_window == (0, 0):
        t_in = dev.alloc(*x.shape)
        dev.load(t_in, x)
    else:
        t_in, _ = dev.window(x, *in_window)
    t_w = dev.alloc(1, oc, weight.shape[1], weight.shape[2] * weight.shape[3], COMPACT)
    dev.load(t_w, weight.reshape(1, oc, weight.shape[1], -1))
    t_b = None
    if bias is not None:
        t_b = dev.alloc(1, oc, 1, 1, COMPACT)
        dev.load(t_b, bias.reshape(1, oc, 1, 1))
    if out_window == (0, 0):
        t_out = dev.alloc(n, oc, oh, ow)
    else:
        before, after = out_window
        buf = dev.alloc(n, oc, before + oh + after, ow)
        stride = dev.lib.sophon_local_channel_stride(ctypes.byref(dev.chip), ctypes.byref(buf))
        t_out = LocalStruct(buf.addr + before * ow * 4, n, oc, oh, ow, F32, ALIGNED, stride)
    dev.check(dev.lib.sophon_tiu_conv2d(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                        ctypes.byref(t_w),
                                        ctypes.byref(t_b) if t_b is not None else None,
                                        ctypes.byref(params)))
    return dev.store(t_out)


def conv_params(kernel, stride, pad, dilation, groups, act="none") -> ConvParamsStruct:
    return ConvParamsStruct(kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[1], pad[2],
                            pad[3], dilation[0], dilation[1], groups, ActivationStruct(*ACT[act]))


def assert_fast_matches(devices, k, run):
    """run(device, abs_operands) -> output; checks fast vs reference and 1 vs 2 threads."""
    ref = run(devices["ref"], False)
    fast1 = run(devices["fast1"], False)
    fast2 = run(devices["fast2"], False)
    magnitude = run(devices["ref"], True)  # sum_k |a_k * b_k| (no bias, no activation)
    assert fast1.tobytes() == fast2.tobytes(), "fast result depends on the thread count"
    tol = 2 * k * EPS * magnitude * 1.01 + 4 * EPS * np.abs(ref) + 1e-30
    err = np.abs(fast1.astype(np.float64) - ref)
    assert np.all(err <= tol), f"max error {err.max()} over tolerance {tol.flat[np.argmax(err - tol)]}"


SIZES_C = [1, 3, 17, 65, 130]
SIZES_HW = [1, 2, 7, 31]


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped", "pointwise"]))
    ic = draw(st.sampled_from(SIZES_C))
    if kind == "depthwise":
        oc, groups = ic, ic
    elif kind == "grouped":
        groups = draw(st.sampled_from([2, 3]))
        ic = draw(st.sampled_from([6, 12, 18]))
        oc = groups * draw(st.sampled_from([1, 5, 7]))
    else:
        oc, groups = draw(st.sampled_from(SIZES_C)), 1
    kh, kw = (1, 1) if kind == "pointwise" else (draw(st.sampled_from([1, 2, 3, 5])),
                                                 draw(st.sampled_from([1, 3, 7])))
    n = draw(st.sampled_from([1, 2]))
    h, w = draw(st.sampled_from(SIZES_HW)), draw(st.sampled_from(SIZES_HW))
    stride = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2, 3])))
    dilation = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))

    def spans():
        return (h + pad[0] + pad[2] - dilation[0] * (kh - 1) - 1,
                w + pad[1] + pad[3] - dilation[1] * (kw - 1) - 1)

    if n * oc * h * w * ic // groups * kh * kw > 4_000_000:
        h, w = min(h, 7), min(w, 7)   # keep the reference kernel's time modest
    oh, ow = spans()
    if oh < 0 or ow < 0:   # the dilated kernel does not fit: shrink it to 1x1
        kh = kw = 1
        oh, ow = spans()
    return dict(n=n, ic=ic, oc=oc, groups=groups, kernel=(kh, kw),
                h=h, w=w, stride=stride, pad=pad, dilation=dilation,
                out_hw=(oh // stride[0] + 1, ow // stride[1] + 1),
                bias=draw(st.booleans()), act=draw(st.sampled_from(list(ACT))),
                in_window=draw(st.sampled_from([(0, 0), (0, 0), (2, 1)])),
                out_window=draw(st.sampled_from([(0, 0), (0, 0), (1, 3)])),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_cases())
def test_fast_conv2d_matches_reference(devices, case):
    rng = np.random.default_rng(case["seed"])
    n, ic, oc, groups = case["n"], case["ic"], case["oc"], case["groups"]
    kh, kw = case["kernel"]
    x = rng.standard_normal((n, ic, case["h"], case["w"])).astype(np.float32)
    weight = rng.standard_normal((oc, ic // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(oc).astype(np.float32) if case["bias"] else None
    out_shape = (n, oc, *case["out_hw"])

    def run(dev, magnitude):
        params = conv_params(case["kernel"], case["stride"], case["pad"], case["dilation"], groups,
                             "none" if magnitude else case["act"])
        if magnitude:
            return run_conv(dev, np.abs(x), np.abs(weight), None, params, out_shape,
                            in_window=case["in_window"], out_window=case["out_window"])
        return run_conv(dev, x, weight, bias, params, out_shape,
                        in_window=case["in_window"], out_window=case["out_window"])

    assert_fast_matches(devices, ic // groups * kh * kw, run)


@pytest.mark.parametrize("shape", [
    # (ic, oc, h, w, kernel, stride, pad): ResNet/MobileNet layers, K above one K block
    (64, 64, 14, 14, 3, 1, 1), (256, 70, 7, 7, 3, 1, 1), (130, 20, 9, 9, 3, 2, 1),
    (3, 64, 31, 31, 7, 2, 3), (96, 576, 7, 7, 1, 1, 0)])
def test_fast_conv2d_network_layers(devices, shape):
    ic, oc, h, w, k, s, p = shape
    rng = np.random.default_rng(ic * oc)
    x = rng.standard_normal((1, ic, h, w)).astype(np.float32)
    weight = rng.standard_normal((oc, ic, k, k)).astype(np.float32)
    bias = rng.standard_normal(oc).astype(np.float32)
    o = (h + 2 * p - k) // s + 1

    def run(dev, magnitude):
        params = conv_params((k, k), (s, s), (p, p, p, p), (1, 1), 1, "none" if magnitude else "relu")
        if magnitude:
            return run_conv(dev, np.abs(x), np.abs(weight), None, params, (1, oc, o, o))
        return run_conv(dev, x, weight, bias, params, (1, oc, o, o))

    assert_fast_matches(devices, ic * k * k, run)


def run_fc(dev: Device, x, weight, bias, act):
    dev.next_addr = 0
    m, k = x.shape
    nf = weight.shape[0]
    t_in = dev.alloc(m, k, 1, 1)
    dev.load(t_in, x.reshape(m, k, 1, 1))
    t_w = dev.alloc(1, nf, k, 1, COMPACT)
    dev.load(t_w, weight.reshape(1, nf, k, 1))
    t_b = None
    if bias is not None:
        t_b = dev.alloc(1, nf, 1, 1, COMPACT)
        dev.load(t_b, bias.reshape(1, nf, 1, 1))
    t_out = dev.alloc(m, nf, 1, 1)
    act_struct = ActivationStruct(*ACT[act])
    dev.check(dev.lib.sophon_tiu_fc(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                    ctypes.byref(t_w),
                                    ctypes.byref(t_b) if t_b is not None else None,
                                    ctypes.byref(act_struct)))
    return dev.store(t_out).reshape(m, nf)


@settings(max_examples=30, deadline=None)
@given(m=st.sampled_from([1, 2, 5]), k=st.sampled_from([1, 3, 17, 65, 130, 512]),
       nf=st.sampled_from([1, 3, 17, 65, 130, 1000]), has_bias=st.booleans(),
       act=st.sampled_from(list(ACT)), seed=st.integers(0, 2**16))
def test_fast_fc_matches_reference(devices, m, k, nf, has_bias, act, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    weight = rng.standard_normal((nf, k)).astype(np.float32)
    bias = rng.standard_normal(nf).astype(np.float32) if has_bias else None

    def run(dev, magnitude):
        if magnitude:
            return run_fc(dev, np.abs(x), np.abs(weight), None, "none")
        return run_fc(dev, x, weight, bias, act)

    assert_fast_matches(devices, k, run)


def test_device_settings_are_checked():
    dev = Device(1)
    try:
        assert dev.lib.sophon_device_set_threads(dev.handle, -1) == 1  # SOPHON_ERR_ARGUMENT
        assert b"negative" in dev.lib.sophon_device_error(dev.handle)
        assert dev.lib.sophon_device_set_reference(dev.handle, 2) == 1
        assert dev.lib.sophon_device_set_threads(dev.handle, 0) == 0  # all online CPUs
        assert dev.lib.sophon_device_set_threads(dev.handle, 3) == 0  # more than the CPUs is fine
        assert dev.lib.sophon_device_set_threads(dev.handle, 1) == 0
    finally:
        dev.close()
