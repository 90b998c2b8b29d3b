"""The fast INT8 kernels (runtime/sophon_fast_int8.c) against the reference INT8
kernels of runtime/sophon_tiu_int8.c, driven one instruction at a time through ctypes.

Three bm1684 devices run every case: one in reference mode, fast with 1 thread,
fast with 2 threads. Integer arithmetic: the fast results must be bit-identical to
the reference (no tolerance), whatever the thread count.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tvm_sophon import get_chip
from tvm_sophon.cost import (ActivationStruct, ChipStruct, ConvParamsStruct, LocalStruct,
                             runtime_library)

I8, I32 = 1, 2
ALIGNED, COMPACT = 0, 1


class Requant(ctypes.Structure):  # sophon_requant
    _fields_ = [("input_zero_point", ctypes.c_int32), ("output_zero_point", ctypes.c_int32),
                ("act_min", ctypes.c_int32), ("act_max", ctypes.c_int32),
                ("per_channel", ctypes.c_int32),
                ("multiplier", ctypes.POINTER(ctypes.c_int32)),
                ("shift", ctypes.POINTER(ctypes.c_int32))]


class GlobalStruct(ctypes.Structure):  # sophon_global
    _fields_ = [("data", ctypes.c_void_p), ("n", ctypes.c_int32), ("c", ctypes.c_int32),
                ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("stride_n", ctypes.c_int64),
                ("stride_c", ctypes.c_int64), ("stride_h", ctypes.c_int64),
                ("stride_w", ctypes.c_int64), ("dtype", ctypes.c_int)]

    @classmethod
    def of(cls, array: np.ndarray, dtype: int) -> "GlobalStruct":
        assert array.ndim == 4 and array.flags.c_contiguous
        strides = [s // array.itemsize for s in array.strides]
        return cls(array.ctypes.data, *array.shape, *strides, dtype)


def _lib():
    # a private handle: argtypes set here must not leak into other tests' use of the
    # shared runtime_library() object
    lib = ctypes.CDLL(runtime_library()._name)
    P = ctypes.POINTER
    lib.sophon_local_lane_bytes.restype = ctypes.c_int64
    lib.sophon_local_channel_stride.restype = ctypes.c_int64
    lib.sophon_device_create.argtypes = [P(ChipStruct), P(ctypes.c_void_p)]
    lib.sophon_device_destroy.argtypes = [ctypes.c_void_p]
    lib.sophon_device_set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.sophon_device_set_reference.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.sophon_device_error.argtypes = [ctypes.c_void_p]
    lib.sophon_device_error.restype = ctypes.c_char_p
    lib.sophon_gdma_load.argtypes = [ctypes.c_void_p, P(LocalStruct), P(GlobalStruct)]
    lib.sophon_gdma_store.argtypes = [ctypes.c_void_p, P(GlobalStruct), P(LocalStruct)]
    lib.sophon_tiu_conv2d_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                           P(LocalStruct), P(LocalStruct), P(ConvParamsStruct),
                                           P(Requant)]
    lib.sophon_tiu_fc_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                       P(LocalStruct), P(LocalStruct), P(Requant)]
    return lib


class Device:
    """One emulated bm1684 and a bump allocator over its lanes."""

    def __init__(self, threads: int = 1, reference: bool = False):
        self.lib = _lib()
        self.chip = ChipStruct.of(get_chip("bm1684"))
        self.handle = ctypes.c_void_p()
        assert self.lib.sophon_device_create(ctypes.byref(self.chip), ctypes.byref(self.handle)) == 0
        self.check(self.lib.sophon_device_set_threads(self.handle, threads))
        self.check(self.lib.sophon_device_set_reference(self.handle, int(reference)))
        self.next_addr = 0

    def close(self):
        self.lib.sophon_device_destroy(self.handle)

    def check(self, status):
        assert status == 0, self.lib.sophon_device_error(self.handle).decode()

    def alloc(self, shape, dtype=I8, layout=ALIGNED) -> LocalStruct:
        t = LocalStruct(self.next_addr, *shape, dtype, layout, 0)
        size = self.lib.sophon_local_lane_bytes(ctypes.byref(self.chip), ctypes.byref(t))
        assert size > 0
        self.next_addr += (size + 63) // 64 * 64
        assert self.next_addr <= self.chip.lmem_bytes_per_lane
        return t

    def load(self, t: LocalStruct, array: np.ndarray):
        array = np.ascontiguousarray(array, dtype=np.int8 if t.dtype == I8 else np.int32)
        self.check(self.lib.sophon_gdma_load(self.handle, ctypes.byref(t),
                                             ctypes.byref(GlobalStruct.of(array, t.dtype))))

    def store(self, t: LocalStruct) -> np.ndarray:
        out = np.empty((t.n, t.c, t.h, t.w), np.int8)
        self.check(self.lib.sophon_gdma_store(self.handle, ctypes.byref(GlobalStruct.of(out, I8)),
                                              ctypes.byref(t)))
        return out

    def window(self, shape, rows_before: int, rows_after: int, fill=None):
        """A local of `shape` that is rows [r, r+h) of a taller buffer (explicit channel
        stride), as the compiler hands a conv its band; `fill` is loaded into the band."""
        n, c, h, w = shape
        buf = self.alloc((n, c, rows_before + h + rows_after, w))
        full = np.random.default_rng(1).integers(-128, 128, (n, c, buf.h, w), dtype=np.int8)
        if fill is not None:
            full[:, :, rows_before:rows_before + h] = fill
        self.load(buf, full)
        stride = self.lib.sophon_local_channel_stride(ctypes.byref(self.chip), ctypes.byref(buf))
        return LocalStruct(buf.addr + rows_before * w, n, c, h, w, I8, ALIGNED, stride)


@pytest.fixture(scope="module")
def devices():
    devs = {"ref": Device(1, reference=True), "fast1": Device(1), "fast2": Device(2)}
    yield devs
    for dev in devs.values():
        dev.close()


def make_requant(rng, channels, k, per_channel, in_zp, out_zp, act):
    count = channels if per_channel else 1
    multipliers = rng.integers(1 << 30, (1 << 31) - 1, count)
    # outputs spread over the int8 range: |acc| ~ sqrt(K) * 74 * 64 for random operands
    base = int(np.log2(np.sqrt(k) * 74 * 64 / 64.0)) + 1
    shifts = -base + rng.integers(-1, 2, count)
    m = (ctypes.c_int32 * count)(*[int(v) for v in multipliers])
    s = (ctypes.c_int32 * count)(*[int(v) for v in shifts])
    q = Requant(in_zp, out_zp, act[0], act[1], int(per_channel),
                ctypes.cast(m, ctypes.POINTER(ctypes.c_int32)),
                ctypes.cast(s, ctypes.POINTER(ctypes.c_int32)))
    q._keep = (m, s)  # the arrays must outlive the call
    return q


def run_conv(dev: Device, x, weight, bias, params, q, out_shape, in_window, out_window):
    dev.next_addr = 0
    n, oc, oh, ow = out_shape
    if in_window == (0, 0):
        t_in = dev.alloc(x.shape)
        dev.load(t_in, x)
    else:
        t_in = dev.window(x.shape, *in_window, fill=x)
    t_w = dev.alloc((1, oc, weight.shape[1], weight.shape[2] * weight.shape[3]), I8, COMPACT)
    dev.load(t_w, weight.reshape(1, oc, weight.shape[1], -1))
    t_b = None
    if bias is not None:
        t_b = dev.alloc((1, oc, 1, 1), I32, COMPACT)
        dev.load(t_b, bias.reshape(1, oc, 1, 1))
    if out_window == (0, 0):
        t_out = dev.alloc(out_shape)
    else:
        t_out = dev.window(out_shape, *out_window)
    dev.check(dev.lib.sophon_tiu_conv2d_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                             ctypes.byref(t_w),
                                             ctypes.byref(t_b) if t_b is not None else None,
                                             ctypes.byref(params), ctypes.byref(q)))
    return dev.store(t_out)


def assert_identical(devices, run):
    ref = run(devices["ref"])
    for name in ("fast1", "fast2"):
        fast = run(devices[name])
        diff = np.argwhere(fast != ref)
        assert diff.size == 0, f"{name}: {len(diff)} outputs differ, first at {diff[0]}"
    return ref


SIZES_C = [1, 3, 17, 65, 130]
SIZES_HW = [1, 2, 7, 31]


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped", "pointwise"]))
    ic = draw(st.sampled_from(SIZES_C))
    if kind == "depthwise":
        multiplier = draw(st.sampled_from([1, 1, 2]))
        oc, groups = ic * multiplier, ic
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
    act = draw(st.sampled_from([(-128, 127), (-128, 127), (-20, 127), (-5, 40)]))
    return dict(n=n, ic=ic, oc=oc, groups=groups, kernel=(kh, kw),
                h=h, w=w, stride=stride, pad=pad, dilation=dilation,
                out_hw=(oh // stride[0] + 1, ow // stride[1] + 1),
                bias=draw(st.sampled_from(["none", "small", "extreme"])),
                per_channel=draw(st.booleans()),
                in_zp=draw(st.sampled_from([0, -128, 127, 5])),
                out_zp=draw(st.sampled_from([0, -128, 3])), act=act,
                in_window=draw(st.sampled_from([(0, 0), (0, 0), (2, 1)])),
                out_window=draw(st.sampled_from([(0, 0), (0, 0), (1, 3)])),
                seed=draw(st.integers(0, 2**16)))


def conv_params(kernel, stride, pad, dilation, groups) -> ConvParamsStruct:
    return ConvParamsStruct(kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[1], pad[2],
                            pad[3], dilation[0], dilation[1], groups,
                            ActivationStruct(0, 0.0, 0.0, 0.0))


def random_bias(rng, oc, kind):
    if kind == "none":
        return None
    if kind == "small":
        return rng.integers(-(1 << 16), 1 << 16, oc).astype(np.int32)
    # near the int32 limits: the saturating acc + bias
    return rng.choice(np.array([-(1 << 31), (1 << 31) - 1, -(1 << 31) + 5, (1 << 31) - 7],
                               dtype=np.int64), oc).astype(np.int32)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_cases())
def test_fast_conv2d_int8_is_bit_identical(devices, case):
    rng = np.random.default_rng(case["seed"])
    n, ic, oc, groups = case["n"], case["ic"], case["oc"], case["groups"]
    kh, kw = case["kernel"]
    x = rng.integers(-128, 128, (n, ic, case["h"], case["w"]), dtype=np.int8)
    weight = rng.integers(-128, 128, (oc, ic // groups, kh, kw), dtype=np.int8)
    bias = random_bias(rng, oc, case["bias"])
    k = ic // groups * kh * kw
    q = make_requant(rng, oc, k, case["per_channel"], case["in_zp"], case["out_zp"], case["act"])
    params = conv_params(case["kernel"], case["stride"], case["pad"], case["dilation"], groups)
    out_shape = (n, oc, *case["out_hw"])
    assert_identical(devices, lambda dev: run_conv(dev, x, weight, bias, params, q, out_shape,
                                                   case["in_window"], case["out_window"]))


@pytest.mark.parametrize("shape", [
    # (ic, oc, h, w, kernel, stride, pad, groups): ResNet/MobileNet layers
    (64, 64, 14, 14, 3, 1, 1, 1), (256, 70, 7, 7, 3, 1, 1, 1), (130, 20, 9, 9, 3, 2, 1, 1),
    (3, 64, 31, 31, 7, 2, 3, 1), (96, 576, 7, 7, 1, 1, 0, 1), (32, 32, 28, 28, 3, 2, 1, 32)])
def test_fast_conv2d_int8_network_layers(devices, shape):
    ic, oc, h, w, k, s, p, groups = shape
    rng = np.random.default_rng(ic * oc)
    x = rng.integers(-128, 128, (1, ic, h, w), dtype=np.int8)
    weight = rng.integers(-128, 128, (oc, ic // groups, k, k), dtype=np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, oc).astype(np.int32)
    q = make_requant(rng, oc, ic // groups * k * k, True, -3, 2, (-128, 127))
    o = (h + 2 * p - k) // s + 1
    params = conv_params((k, k), (s, s), (p, p, p, p), (1, 1), groups)
    ref = assert_identical(devices, lambda dev: run_conv(dev, x, weight, bias, params, q,
                                                         (1, oc, o, o), (0, 0), (0, 0)))
    assert len(np.unique(ref)) > 50, "requantization saturates: the case checks little"


def run_fc(dev: Device, x, weight, bias, q):
    dev.next_addr = 0
    m, k = x.shape
    nf = weight.shape[0]
    t_in = dev.alloc((m, k, 1, 1))
    dev.load(t_in, x.reshape(m, k, 1, 1))
    t_w = dev.alloc((1, nf, k, 1), I8, COMPACT)
    dev.load(t_w, weight.reshape(1, nf, k, 1))
    t_b = None
    if bias is not None:
        t_b = dev.alloc((1, nf, 1, 1), I32, COMPACT)
        dev.load(t_b, bias.reshape(1, nf, 1, 1))
    t_out = dev.alloc((m, nf, 1, 1))
    dev.check(dev.lib.sophon_tiu_fc_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                         ctypes.byref(t_w),
                                         ctypes.byref(t_b) if t_b is not None else None,
                                         ctypes.byref(q)))
    return dev.store(t_out).reshape(m, nf)


@settings(max_examples=40, deadline=None)
@given(m=st.sampled_from([1, 2, 5]), k=st.sampled_from([1, 3, 17, 65, 130, 512]),
       nf=st.sampled_from([1, 3, 17, 65, 130, 1000]),
       bias_kind=st.sampled_from(["none", "small", "extreme"]), per_channel=st.booleans(),
       in_zp=st.sampled_from([0, -128, 127, 5]), out_zp=st.sampled_from([0, -128, 3]),
       seed=st.integers(0, 2**16))
def test_fast_fc_int8_is_bit_identical(devices, m, k, nf, bias_kind, per_channel, in_zp, out_zp,
                                       seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    weight = rng.integers(-128, 128, (nf, k), dtype=np.int8)
    bias = random_bias(rng, nf, bias_kind)
    q = make_requant(rng, nf, k, per_channel, in_zp, out_zp, (-128, 127))
    assert_identical(devices, lambda dev: run_fc(dev, x, weight, bias, q))
