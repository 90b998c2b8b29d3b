"""The fast f32 kernels (runtime/fast/sophon_fast_*.c) against the reference kernels
they sit beside, and the GDMA engine against numpy, driven one instruction at a
time through ctypes.

Every case runs on a device in reference mode and on fast devices: 1 and 2
threads with every instruction set the host has, and 1 and 2 threads with the
instruction sets capped (sophon_device_set_isa) at 0 (plain C) and at 1 (AVX2, when
the host has it). For conv2d and fc, fast results must be bit-identical across
thread counts (each output element is computed by one thread in a fixed order)
and within the FP32 tolerance stated in sophon_fast_conv.c of the reference:

    |fast - ref| <= 2 * K * 2^-24 * sum_k |a_k * b_k|   (+ the rounding of bias/act)

where K is the length of the dot product (IC/groups * KH * KW for a conv): both
sum the same products, conv in the reference's order but with fused multiply-adds
on x86 (one rounding per step instead of two), fc in a different association.
sum_k |a_k * b_k| is computed by the reference kernel itself on |input| and |weight|.
3x3 stride-1 convs (dilation 1, one group) may take Winograd's F(2x2, 3x3) instead
(sophon_fast_winograd.c), held to the bound stated there on top of the one above
(winograd_magnitude; test_fast_winograd.py checks that path alone, bound by bound).

The kernels that claim bit-identical results (depthwise conv2d in
sophon_fast_depthwise.c; binary element-wise and pool2d in sophon_fast_eltwise.c)
are checked for exact equality, bit for bit (any NaN matching any NaN), against the
reference on every fast device; their inputs may hold signed zeros, infinities
and NaNs. GDMA loads and stores of permuted, strided, broadcast and overlapping DDR
views must equal numpy's view of the same memory on every device.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tvm_sophon import get_chip
from tvm_sophon.cost import (ActivationStruct, ChipStruct, ConvParamsStruct, LocalStruct,
                             PoolParamsStruct, runtime_library)

F32, ALIGNED, COMPACT = 0, 0, 1
ACT = {"none": (0, 0.0, 0.0, 0.0), "relu": (1, 0.0, 0.0, 0.0), "clip": (2, 0.0, 0.0, 6.0),
       "leaky": (3, 0.1, 0.0, 0.0)}
# every activation the instructions fuse (the tolerance tests above keep to ACT)
ACT_ALL = {**ACT, "relu6": (2, 0.0, -0.0, 6.0), "sigmoid": (4, 0.0, 0.0, 0.0),
           "tanh": (5, 0.0, 0.0, 0.0), "silu": (6, 0.0, 0.0, 0.0),
           "hard_sigmoid": (7, 0.2, 0.0, 0.0, 0.5), "hard_swish": (8, 0.0, 0.0, 0.0),
           "gelu": (9, 0.0, 0.0, 0.0), "gelu_tanh": (10, 0.0, 0.0, 0.0), "mish": (11, 0.0, 0.0, 0.0),
           "elu": (12, 0.7, 0.0, 0.0), "softplus": (13, 0.0, 0.0, 0.0), "sqrt": (14, 0.0, 0.0, 0.0),
           "rsqrt": (15, 0.0, 0.0, 0.0), "exp": (16, 0.0, 0.0, 0.0), "log": (17, 0.0, 0.0, 0.0),
           "reciprocal": (18, 0.0, 0.0, 0.0), "abs": (19, 0.0, 0.0, 0.0), "neg": (20, 0.0, 0.0, 0.0),
           "erf": (21, 0.0, 0.0, 0.0)}
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
    lib.sophon_device_set_isa.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.sophon_device_error.argtypes = [ctypes.c_void_p]
    lib.sophon_device_error.restype = ctypes.c_char_p
    lib.sophon_local_channel_stride.restype = ctypes.c_int64
    lib.sophon_gdma_load.argtypes = [ctypes.c_void_p, P(LocalStruct), P(GlobalStruct)]
    lib.sophon_gdma_load_constant.argtypes = [ctypes.c_void_p, P(LocalStruct), P(GlobalStruct)]
    lib.sophon_gdma_store.argtypes = [ctypes.c_void_p, P(GlobalStruct), P(LocalStruct)]
    lib.sophon_tiu_conv2d.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                      P(LocalStruct), P(LocalStruct), P(ConvParamsStruct)]
    lib.sophon_tiu_fc.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                  P(LocalStruct), P(LocalStruct), P(ActivationStruct)]
    lib.sophon_tiu_binary.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                      P(LocalStruct), ctypes.c_int, P(ActivationStruct)]
    lib.sophon_tiu_pool2d.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                      P(PoolParamsStruct)]
    lib.sophon_tiu_activation.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                          P(ActivationStruct)]
    lib.sophon_tiu_resize.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                      ctypes.c_void_p]
    return lib


def _host_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


# instruction-set caps of the fast devices (sophon_device_set_isa): plain C, and AVX2
# where the host has it
ISAS = [0, 1] if _host_has_avx2() else [0]


class Device:
    """One emulated device and a bump allocator over its lanes."""

    def __init__(self, threads: int = 1, reference: bool = False, isa: int = 2):
        self.lib = _lib()
        self.chip = ChipStruct.of(get_chip("bm1680"))
        self.handle = ctypes.c_void_p()
        assert self.lib.sophon_device_create(ctypes.byref(self.chip), ctypes.byref(self.handle)) == 0
        self.check(self.lib.sophon_device_set_threads(self.handle, threads))
        self.check(self.lib.sophon_device_set_reference(self.handle, int(reference)))
        self.check(self.lib.sophon_device_set_isa(self.handle, isa))
        self.next_addr = 0
        self.constants = []  # arrays loaded as constants: the device may read them later

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

    def load_constant(self, t: LocalStruct, array: np.ndarray):
        """sophon_gdma_load_constant: the copy deferred, a fast conv reading `array`
        packed once. The array is kept alive (and so its address not reused) as long as
        the device, as the promise of a constant asks."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        self.constants.append(array)
        self.check(self.lib.sophon_gdma_load_constant(self.handle, ctypes.byref(t),
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


def device_set():
    """The reference device and the fast ones (1 and 2 threads at every instruction-set
    cap), yielded as a dict, then closed."""
    devs = {"ref": Device(1, reference=True), "fast1": Device(1), "fast2": Device(2)}
    for isa in ISAS:
        for threads in (1, 2):
            devs[f"fast{threads}_isa{isa}"] = Device(threads, isa=isa)
    yield devs
    for dev in devs.values():
        dev.close()


@pytest.fixture(scope="module")
def devices():
    yield from device_set()


def fast_devices(devices) -> dict:
    """The fast devices: every thread count and instruction-set cap."""
    return {name: dev for name, dev in devices.items() if name != "ref"}


def assert_bit_identical(devices, run):
    """run(device) -> output; every fast device must reproduce the reference bit for bit
    (a NaN may carry another payload: C fixes neither the operand order of a
    commutative operation nor which NaN operand propagates)."""
    ref = run(devices["ref"])
    for name, dev in fast_devices(devices).items():
        out = run(dev)
        same = (out.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(out) & np.isnan(ref))
        if not same.all():
            diff = np.flatnonzero(~same)
            i = diff[0]
            raise AssertionError(f"{name}: {diff.size} of {ref.size} outputs differ from the "
                                 f"reference, first at flat index {i}: {out.flat[i]!r} vs "
                                 f"{ref.flat[i]!r}")


# Sigmoid and SiLU: with AVX-512 (the devices without an instruction-set cap, where
# the host has it) the fast kernels compute them in registers, within
# SOPHON_SIGMOID_ULPS (runtime/fast/sophon_fast.h) ulp of the reference's expf-based
# value; at every other level, and for every other kind, bit for bit.
SIGMOID_FAMILY = ("sigmoid", "silu")
SIGMOID_ULPS = 6  # the runtime's SOPHON_SIGMOID_ULPS


def assert_within_ulps(name, out, ref, ulps):
    """out within `ulps` ulp of ref (np.spacing of |ref|, plus 2^-140 for results that
    round to subnormals on either side), NaN where ref is NaN, the same infinities."""
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(out), nan), f"{name}: NaN where the reference has none, or not"
    exact = ~nan & np.isinf(ref)
    assert np.array_equal(out[exact], ref[exact]), f"{name}: infinities differ from the reference"
    finite = ~nan & ~exact
    err = np.abs(out[finite].astype(np.float64) - ref[finite])
    tol = ulps * np.spacing(np.abs(ref[finite])).astype(np.float64) + 2.0 ** -140
    if not (err <= tol).all():
        i = int(np.argmax(err / tol))
        raise AssertionError(f"{name}: {out[finite][i]!r} vs reference {ref[finite][i]!r}: more than "
                             f"{ulps} ulp apart")


def assert_matches_reference(devices, run, act):
    """assert_bit_identical, but for the sigmoid family on the uncapped devices: within
    SIGMOID_ULPS ulp."""
    if act not in SIGMOID_FAMILY:
        assert_bit_identical(devices, run)
        return
    ref = run(devices["ref"])
    capped = {name: dev for name, dev in devices.items() if "_isa" in name}
    assert_bit_identical({"ref": devices["ref"], **capped}, run)
    for name, dev in fast_devices(devices).items():
        if name not in capped:
            assert_within_ulps(name, run(dev), ref, SIGMOID_ULPS)


def with_specials(rng, array: np.ndarray, fraction: float) -> np.ndarray:
    """`array` with a `fraction` of its elements replaced by signed zeros, infinities
    and NaN (the values where reassociated or re-ordered arithmetic would show)."""
    if fraction <= 0:
        return array
    out = array.copy()
    mask = rng.random(out.shape) < fraction
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    out[mask] = rng.choice(specials, size=int(mask.sum()))
    return out


def conv_operands(dev: Device, x, weight, bias, out_shape, *, in_window=(0, 0), out_window=(0, 0),
                  load_weight=None):
    """Loads a conv's operands on dev: (out, in, weight, bias or None) locals. The
    weight (1, OC, IC, KH*KW) goes in by dev.load, or by load_weight(local, array)."""
    dev.next_addr = 0
    n, oc, oh, ow = out_shape
    if in_window == (0, 0):
        t_in = dev.alloc(*x.shape)
        dev.load(t_in, x)
    else:
        t_in, _ = dev.window(x, *in_window)
    t_w = dev.alloc(1, oc, weight.shape[1], weight.shape[2] * weight.shape[3], COMPACT)
    (load_weight or dev.load)(t_w, weight.reshape(1, oc, weight.shape[1], -1))
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
    return t_out, t_in, t_w, t_b


def conv_args(dev: Device, operands, params: ConvParamsStruct) -> list:
    """sophon_tiu_conv2d's arguments for conv_operands' locals."""
    t_out, t_in, t_w, t_b = operands
    return [dev.handle, ctypes.byref(t_out), ctypes.byref(t_in), ctypes.byref(t_w),
            ctypes.byref(t_b) if t_b is not None else None, ctypes.byref(params)]


def run_conv(dev: Device, x, weight, bias, params: ConvParamsStruct, out_shape, *,
             in_window=(0, 0), out_window=(0, 0), constant_weight=False):
    operands = conv_operands(dev, x, weight, bias, out_shape, in_window=in_window,
                             out_window=out_window,
                             load_weight=dev.load_constant if constant_weight else None)
    dev.check(dev.lib.sophon_tiu_conv2d(*conv_args(dev, operands, params)))
    return dev.store(operands[0])


def conv_params(kernel, stride, pad, dilation, groups, act="none") -> ConvParamsStruct:
    return ConvParamsStruct(kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[1], pad[2],
                            pad[3], dilation[0], dilation[1], groups,
                            ActivationStruct(*ACT_ALL[act]))


B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_magnitude(x, weight, pad, out_hw) -> np.ndarray:
    """S of Winograd F(2x2, 3x3)'s bound (sophon_fast_winograd.c) for every output
    (n, oc, oh, ow): per 2x2 output tile, |A^T| [sum_ic (|G||g||G^T|) . (|B^T||d||B|)] |A|
    over the tile's 4x4 input patches d (pad = top, left, bottom, right), in float64."""
    n, ic, h, w = x.shape
    oh, ow = out_hw
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    top, left = pad[0], pad[1]
    plane = np.zeros((n, ic, 2 * th + 2, 2 * tw + 2))
    plane[:, :, top:top + h, left:left + w] = np.abs(x)
    rows = 2 * np.arange(th)[:, None] + np.arange(4)[None, :]      # (th, 4)
    cols = 2 * np.arange(tw)[:, None] + np.arange(4)[None, :]      # (tw, 4)
    patches = plane[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # n, ic, th, tw, 4, 4
    v = np.einsum("ai,nctsij,bj->nctsab", np.abs(B_T), patches, np.abs(B_T))
    u = np.einsum("ai,ocij,bj->ocab", np.abs(G), np.abs(weight.astype(np.float64)), np.abs(G))
    m = np.einsum("nctsab,ocab->notsab", v, u)
    s = np.einsum("ia,notsab,jb->notsij", np.abs(A_T), m, np.abs(A_T))
    return s.transpose(0, 1, 2, 4, 3, 5).reshape(n, -1, 2 * th, 2 * tw)[:, :, :oh, :ow]


def winograd_tolerance(x, weight, kernel, stride, pad, dilation, groups, out_hw, magnitude):
    """Winograd's |fast - ref| bound, (K + 10) u S + 9 K u sum |a b| with K = in channels,
    for a conv that may take that path; 0 for the others."""
    if tuple(kernel) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1) or groups != 1:
        return 0.0
    ic = x.shape[1]
    return ((ic + 10) * EPS * winograd_magnitude(x, weight, pad, out_hw) + 9 * ic * EPS * magnitude) * 1.01


def assert_fast_matches(devices, k, run, act_ulps=0, winograd=None):
    """run(device, abs_operands) -> output; checks fast vs reference and 1 vs 2 threads
    (act_ulps: ulps more for an activation the fast kernel computes its own way;
    winograd(magnitude): the Winograd bound where that path may be taken)."""
    ref = run(devices["ref"], False)
    magnitude = run(devices["ref"], True)  # sum_k |a_k * b_k| (no bias, no activation)
    tol = 2 * k * EPS * magnitude * 1.01 + (4 + 2 * act_ulps) * EPS * np.abs(ref) + 1e-30
    if winograd is not None:
        tol = tol + winograd(magnitude)
    for isa in [None, *ISAS]:  # None: every instruction set the host has
        suffix = "" if isa is None else f"_isa{isa}"
        fast1 = run(devices["fast1" + suffix], False)
        fast2 = run(devices["fast2" + suffix], False)
        assert fast1.tobytes() == fast2.tobytes(), f"fast{suffix} result depends on the thread count"
        err = np.abs(fast1.astype(np.float64) - ref)
        assert np.all(err <= tol), (f"fast{suffix}: max error {err.max()} over tolerance "
                                    f"{tol.flat[np.argmax(err - tol)]}")


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

    assert_fast_matches(devices, ic // groups * kh * kw, run, winograd=lambda mag: winograd_tolerance(
        x, weight, case["kernel"], case["stride"], case["pad"], case["dilation"], groups, case["out_hw"], mag))


@pytest.mark.parametrize("case", [
    # (n, ic, oc, h, w, act, windows): unpadded 1x1 stride-1 convs with K in one block,
    # which conv_gemm_rows_task runs A panel by A panel: oc not a multiple of the
    # tile; 96 x 96 at K 16 is two chunks of B (B_L2_BYTES); a batch of 2; windows
    (1, 16, 13, 96, 96, "clip", False), (2, 128, 24, 9, 17, "relu", True),
    (1, 3, 70, 31, 31, "silu", False), (1, 64, 8, 1, 1, "none", True)])
def test_fast_pointwise_conv2d_by_output_rows(devices, case):
    n, ic, oc, h, w, act, windows = case
    rng = np.random.default_rng(ic * oc)
    x = rng.standard_normal((n, ic, h, w)).astype(np.float32)
    weight = rng.standard_normal((oc, ic, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(oc).astype(np.float32)
    in_window, out_window = ((2, 1), (1, 3)) if windows else ((0, 0), (0, 0))

    def run(dev, magnitude):
        params = conv_params((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "none" if magnitude else act)
        if magnitude:
            return run_conv(dev, np.abs(x), np.abs(weight), None, params, (n, oc, h, w),
                            in_window=in_window, out_window=out_window)
        return run_conv(dev, x, weight, bias, params, (n, oc, h, w), in_window=in_window,
                        out_window=out_window)

    # silu: within SIGMOID_ULPS of the reference's on top of the sum's tolerance
    assert_fast_matches(devices, ic, run, act_ulps=SIGMOID_ULPS if act in SIGMOID_FAMILY else 0)


@pytest.mark.parametrize("shape", [
    # (ic, oc, h, w, kernel, stride, pad): ResNet/MobileNet layers, K above one K block;
    # with AVX-512, 256 -> 70 @7, 96 -> 576 @7 and 130 -> 40 @6 take the 24-wide
    # panels (56, 49 and 36 columns: last panels of 8, 1 and 12)
    (64, 64, 14, 14, 3, 1, 1), (256, 70, 7, 7, 3, 1, 1), (130, 20, 9, 9, 3, 2, 1),
    (3, 64, 31, 31, 7, 2, 3), (96, 576, 7, 7, 1, 1, 0), (130, 40, 6, 6, 1, 1, 0)])
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

    assert_fast_matches(devices, ic * k * k, run, winograd=lambda mag: winograd_tolerance(
        x, weight, (k, k), (s, s), (p, p, p, p), (1, 1), 1, (o, o), mag))


@pytest.mark.parametrize("case", [
    # (n, ic, oc, h, w, act, bias, constant weight): unpadded 1x1 stride-1 convs on small
    # planes, which the AVX-512 devices run with output channels in lanes
    # (sophon_fast_pointwise.c): 7x7 and 14x14 (49, 196 pixels; 14x14 with K >= 128), odd
    # pixel counts (15, 117, 1: squeeze-excite convs), K from 4 to 960, oc not a multiple
    # of 32 (a last panel of 16 lanes, of 4 channels of 16), a batch of 2, the weight in
    # LMEM or a deferred constant (packed once per device); "window": the input and output
    # as row windows of taller buffers (explicit channel strides)
    (1, 160, 96, 7, 7, "relu6", True, True), (2, 256, 48, 7, 7, "relu6", True, "window"), (1, 8, 32, 7, 7, "none", False, False),
    (2, 960, 100, 7, 7, "relu6", True, True), (1, 200, 112, 14, 14, "clip", True, False),
    (2, 576, 96, 14, 14, "none", True, True), (1, 130, 48, 3, 5, "leaky", True, True),
    (1, 140, 64, 9, 13, "relu", False, False), (1, 4, 96, 1, 1, "sigmoid", True, True),
    (2, 96, 4, 1, 1, "silu", True, False), (1, 320, 64, 7, 7, "silu", True, True),
    (1, 960, 160, 7, 7, "none", True, False),
    # what the lanes decline on 14x14 and 20x20 planes: the GEMM in 48-wide panels of
    # 512-bit vectors (micro_kernel_zmm_body: one block of K by output rows, K = 96 by B
    # panels, K = 300 in two blocks with partial sums; 70 channels in 80 lanes at 14x14)
    (1, 64, 40, 14, 14, "relu6", True, True), (2, 96, 24, 14, 14, "clip", True, False),
    (1, 16, 20, 20, 20, "silu", True, True), (1, 120, 9, 2, 7, "leaky", False, False),
    (1, 300, 24, 20, 20, "none", False, False), (1, 200, 70, 14, 14, "clip", True, True),
    # larger planes, 48-wide panels too: 56x56 with K 16 (by output rows), 28x28 with K 100
    (1, 16, 24, 56, 56, "relu6", True, True), (1, 100, 20, 28, 28, "none", True, False)])
def test_fast_pointwise_conv2d_paths(devices, case):
    n, ic, oc, h, w, act, has_bias, constant = case
    rng = np.random.default_rng(ic * 1000 + oc)
    x = rng.standard_normal((n, ic, h, w)).astype(np.float32)
    weight = rng.standard_normal((oc, ic, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(oc).astype(np.float32) if has_bias else None

    def run(dev, magnitude):
        params = conv_params((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "none" if magnitude else act)
        if magnitude:
            return run_conv(dev, np.abs(x), np.abs(weight), None, params, (n, oc, h, w))
        windows = ((2, 1), (1, 3)) if constant == "window" else ((0, 0), (0, 0))
        return run_conv(dev, x, weight, bias, params, (n, oc, h, w), in_window=windows[0],
                        out_window=windows[1], constant_weight=constant is True)

    # silu, sigmoid: within SIGMOID_ULPS of the reference's on top of the sum's tolerance
    assert_fast_matches(devices, ic, run, act_ulps=SIGMOID_ULPS if act in SIGMOID_FAMILY else 0)
    if act not in SIGMOID_FAMILY and 1 in ISAS:
        # every output is the AVX2 GEMM's chain (from 0, one fused multiply-add per k in
        # k order, then the bias, then the activation): the same bits
        for threads in (1, 2):
            assert (run(devices[f"fast{threads}"], False).tobytes() ==
                    run(devices[f"fast{threads}_isa1"], False).tobytes()), \
                f"{threads} thread(s): not the AVX2 GEMM's bits"


# ----------------------------------------------------------- depthwise conv2d


@st.composite
def depthwise_cases(draw):
    c = draw(st.sampled_from([1, 3, 17, 65, 130]))
    kh, kw = draw(st.sampled_from([(3, 3), (3, 3), (5, 5), (7, 7), (1, 1), (1, 3), (3, 1),
                                   (2, 4)]))
    h, w = (draw(st.sampled_from([1, 2, 5, 7, 9, 16, 31, 70, 113])) for _ in range(2))
    stride = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 1, 2, 2, 3])))
    dilation = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
    if c * h * w > 200_000:
        c = 17
    spans = (h + pad[0] + pad[2] - dilation[0] * (kh - 1) - 1,
             w + pad[1] + pad[3] - dilation[1] * (kw - 1) - 1)
    if min(spans) < 0:  # the dilated kernel does not fit: no padding, 1x1
        kh = kw = 1
        spans = (h + pad[0] + pad[2] - 1, w + pad[1] + pad[3] - 1)
    return dict(n=draw(st.sampled_from([1, 1, 2])), c=c, kernel=(kh, kw), h=h, w=w,
                stride=stride, pad=pad, dilation=dilation,
                out_hw=(spans[0] // stride[0] + 1, spans[1] // stride[1] + 1),
                bias=draw(st.booleans()), act=draw(st.sampled_from(list(ACT_ALL))),
                in_window=draw(st.sampled_from([(0, 0), (0, 0), (2, 1)])),
                out_window=draw(st.sampled_from([(0, 0), (0, 0), (1, 3)])),
                specials=draw(st.sampled_from([0.0, 0.0, 0.02])),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=depthwise_cases())
def test_fast_depthwise_is_bit_identical(devices, case):
    rng = np.random.default_rng(case["seed"])
    n, c = case["n"], case["c"]
    kh, kw = case["kernel"]
    x = with_specials(rng, rng.standard_normal((n, c, case["h"], case["w"])).astype(np.float32),
                      case["specials"])
    weight = with_specials(rng, rng.standard_normal((c, 1, kh, kw)).astype(np.float32),
                           case["specials"] / 4)
    bias = rng.standard_normal(c).astype(np.float32) if case["bias"] else None
    params = conv_params(case["kernel"], case["stride"], case["pad"], case["dilation"], c,
                         case["act"])

    def run(dev):
        return run_conv(dev, x, weight, bias, params, (n, c, *case["out_hw"]),
                        in_window=case["in_window"], out_window=case["out_window"])

    assert_matches_reference(devices, run, case["act"])


@pytest.mark.parametrize("shape", [
    # (c, h, w, kernel, stride, act): MobileNetV2's depthwise layers (pad 1), a 5x5 one,
    # and EfficientNet-B0's SiLU ones at 14 and 7, whose rows the AVX-512 SiLU pass
    # takes back to back as one span
    (32, 112, 112, 3, 1, "relu6"), (96, 112, 112, 3, 2, "relu6"), (144, 56, 56, 3, 2, "relu6"),
    (192, 28, 28, 3, 1, "relu6"), (576, 14, 14, 3, 2, "relu6"), (960, 7, 7, 3, 1, "relu6"),
    (40, 27, 27, 5, 2, "relu6"), (72, 14, 14, 5, 1, "silu"), (96, 7, 7, 3, 1, "silu"),
    (1152, 7, 7, 5, 1, "silu"), (240, 28, 28, 5, 1, "silu"), (672, 14, 14, 5, 2, "silu"),
    (17, 9, 9, 3, 2, "silu")])
def test_fast_depthwise_network_layers(devices, shape):
    c, h, w, k, s, act = shape
    rng = np.random.default_rng(c * h)
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    p = k // 2
    o = (h + 2 * p - k) // s + 1
    params = conv_params((k, k), (s, s), (p, p, p, p), (1, 1), c, act)
    assert_matches_reference(devices, lambda dev: run_conv(dev, x, weight, bias, params,
                                                           (1, c, o, o)), act)


@pytest.mark.parametrize("case", [
    # (c, h, w, kernel, stride, pad (t, l, b, r), dilation): input columns past the
    # last window, odd widths at stride 2, padding wider than the kernel, a window
    # that only ever sees padding on some columns, wide strides and dilations
    (3, 5, 17, (1, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
    (5, 9, 15, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    (4, 6, 6, (1, 1), (1, 1), (3, 3, 3, 3), (1, 1)),
    (2, 7, 9, (3, 3), (3, 3), (0, 2, 0, 2), (1, 1)),
    (6, 8, 70, (3, 5), (1, 3), (2, 4, 2, 4), (2, 2)),
    (3, 3, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    # planes of up to 1024 outputs run as one flat row with AVX-512: uneven "same"
    # padding, dilation, more vectors than accumulators; even and odd left padding at
    # stride 2, strides that differ between the axes, a 7 x 7 plane
    (5, 6, 9, (3, 5), (1, 1), (0, 1, 2, 3), (1, 1)),
    (4, 7, 7, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    (3, 21, 30, (5, 3), (1, 1), (1, 1, 3, 1), (1, 1)),
    (5, 7, 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (5, 14, 13, (3, 3), (2, 2), (2, 2, 1, 2), (1, 1)),
    (3, 9, 11, (5, 3), (2, 1), (2, 1, 2, 1), (1, 1)),
    (3, 9, 11, (3, 5), (1, 2), (1, 2, 1, 3), (1, 2))])
def test_fast_depthwise_edge_cases(devices, case):
    c, h, w, kernel, stride, pad, dilation = case
    rng = np.random.default_rng(h * w)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((c, 1, *kernel)).astype(np.float32)
    weight[0, 0, 0, 0] = np.inf  # channel 0 takes the per-output path at the borders
    bias = rng.standard_normal(c).astype(np.float32)
    oh = (h + pad[0] + pad[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (w + pad[1] + pad[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    params = conv_params(kernel, stride, pad, dilation, c, "leaky")
    assert_bit_identical(devices, lambda dev: run_conv(dev, x, weight, bias, params,
                                                       (2, c, oh, ow)))


@pytest.mark.parametrize("act", ["relu6", "silu", "gelu"])
@pytest.mark.parametrize("c, hw, kernel, bad", [
    # planes of at most 64 outputs run two channels at a time with AVX-512: an odd
    # channel count (a last channel alone, and odd task ranges at 2 threads), a
    # non-finite weight in the first or the second channel of a pair (that pair runs
    # one by one), 8 x 8 and 3 x 5 planes
    (7, (7, 7), (3, 3), (1, 4)), (9, (7, 7), (5, 5), (0, 5)), (6, (8, 8), (3, 3), (3,)),
    (5, (3, 5), (3, 3), ())])
def test_fast_depthwise_small_planes_in_pairs(devices, act, c, hw, kernel, bad):
    rng = np.random.default_rng(c)
    x = with_specials(rng, rng.standard_normal((2, c, *hw)).astype(np.float32), 0.02)
    weight = rng.standard_normal((c, 1, *kernel)).astype(np.float32)
    for i, channel in enumerate(bad):
        weight[channel, 0, i % kernel[0], 1] = (np.inf, np.nan)[i % 2]
    bias = rng.standard_normal(c).astype(np.float32)
    pad = (kernel[0] // 2, kernel[1] // 2) * 2
    params = conv_params(kernel, (1, 1), pad, (1, 1), c, act)
    assert_matches_reference(devices, lambda dev: run_conv(dev, x, weight, bias, params, (2, c, *hw)), act)


@pytest.mark.parametrize("act", ["relu6", "silu", "gelu"])
@pytest.mark.parametrize("h, w, kernel, stride, pad, dilation", [
    # stride-2 rows of at most 8 outputs run two output rows per vector with AVX-512:
    # odd and even output heights (a last vector of one row), 1 to 8 outputs a row,
    # 5 x 5 kernels, stride 1 down the rows, dilation, padding on one side only
    (14, 14, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)), (14, 14, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),
    (16, 15, (3, 3), (2, 2), (0, 1, 1, 0), (1, 1)), (9, 5, (3, 3), (1, 2), (1, 1, 1, 1), (1, 1)),
    (20, 2, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)), (11, 13, (3, 3), (2, 2), (2, 2, 2, 2), (2, 2)),
    (3, 3, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1))])
def test_fast_depthwise_stride2_row_pairs(devices, act, h, w, kernel, stride, pad, dilation):
    c = 7
    rng = np.random.default_rng(h * w)
    x = with_specials(rng, rng.standard_normal((2, c, h, w)).astype(np.float32), 0.02)
    weight = rng.standard_normal((c, 1, *kernel)).astype(np.float32)
    weight[3, 0, 0, 0] = np.nan  # this channel takes the per-output path at the borders
    bias = rng.standard_normal(c).astype(np.float32)
    oh = (h + pad[0] + pad[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (w + pad[1] + pad[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    params = conv_params(kernel, stride, pad, dilation, c, act)
    assert_matches_reference(devices, lambda dev: run_conv(dev, x, weight, bias, params, (2, c, oh, ow)), act)


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
    act_struct = ActivationStruct(*ACT_ALL[act])
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


# ------------------------------------------------------- binary element-wise

BINARY_OPS = {"add": 0, "sub": 1, "mul": 2, "max": 3, "min": 4, "div": 5, "prelu": 6}


@st.composite
def binary_cases(draw):
    out = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3, 17, 65, 130])),
           draw(st.sampled_from([1, 2, 7, 9, 31])), draw(st.sampled_from([1, 2, 7, 8, 9, 33])))

    def operand():  # each dim is out's or 1 (broadcast)
        full = draw(st.sampled_from(["full", "full", "channel", "scalar", "dims"]))
        if full == "full":
            return out
        if full == "channel":
            return (draw(st.sampled_from([1, out[0]])), out[1], 1, 1)
        if full == "scalar":
            return (1, 1, 1, 1)
        return tuple(d if draw(st.booleans()) else 1 for d in out)

    a, b = operand(), operand()
    return dict(out=out, a=a, b=b, op=draw(st.sampled_from(list(BINARY_OPS))),
                act=draw(st.sampled_from([None, *ACT_ALL])),
                layouts=[draw(st.sampled_from([ALIGNED, COMPACT])) for _ in range(3)],
                in_place=draw(st.sampled_from([None, None, "a", "b"])),
                specials=draw(st.sampled_from([0.0, 0.0, 0.05])),
                seed=draw(st.integers(0, 2**16)))


def run_binary(dev: Device, a, b, out_shape, op, act, layouts, in_place=None):
    dev.next_addr = 0
    t_a = dev.alloc(*a.shape, layout=layouts[0])
    dev.load(t_a, a)
    t_b = dev.alloc(*b.shape, layout=layouts[1])
    dev.load(t_b, b)
    if in_place == "a":
        t_out = t_a
    elif in_place == "b":
        t_out = t_b
    else:
        t_out = dev.alloc(*out_shape, layout=layouts[2])
    act_struct = ActivationStruct(*ACT_ALL[act]) if act is not None else None
    dev.check(dev.lib.sophon_tiu_binary(dev.handle, ctypes.byref(t_out), ctypes.byref(t_a),
                                        ctypes.byref(t_b), BINARY_OPS[op],
                                        ctypes.byref(act_struct) if act_struct else None))
    return dev.store(t_out)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=binary_cases())
def test_fast_binary_is_bit_identical(devices, case):
    rng = np.random.default_rng(case["seed"])
    a = with_specials(rng, rng.standard_normal(case["a"]).astype(np.float32), case["specials"])
    b = with_specials(rng, rng.standard_normal(case["b"]).astype(np.float32), case["specials"])
    if case["op"] in ("max", "min"):  # ties and signed zeros: compare some equal values
        b.flat[::3] = np.resize(a.ravel(), b.size)[::3]
    in_place = case["in_place"]
    if in_place is not None and case[in_place] != case["out"]:
        in_place = None  # only an operand of out's shape can be overwritten

    def run(dev):
        return run_binary(dev, a, b, case["out"], case["op"], case["act"], case["layouts"],
                          in_place)

    assert_matches_reference(devices, run, case["act"])


def test_fast_binary_residual_add(devices):
    """ResNet's residual add with relu, big enough to run on both threads."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((1, 64, 56, 56)).astype(np.float32)
    b = rng.standard_normal((1, 64, 56, 56)).astype(np.float32)
    assert_bit_identical(devices, lambda dev: run_binary(dev, a, b, a.shape, "add", "relu",
                                                         [ALIGNED] * 3))


# ------------------------------------------------------------------- pool2d


def pool_params(kind, kernel, stride, pad, dilation, count_include_pad) -> PoolParamsStruct:
    return PoolParamsStruct({"max": 0, "avg": 1}[kind], kernel[0], kernel[1], stride[0], stride[1],
                            pad[0], pad[1], pad[2], pad[3], dilation[0], dilation[1],
                            int(count_include_pad))


def pool_out_size(size, pad_a, pad_b, kernel, stride, dilation, ceil_mode):
    """The floor-formula output size, or the ceil-mode one (None if the kernel does not fit)."""
    padded = size + pad_a + pad_b
    span = padded - dilation * (kernel - 1) - 1
    if span < 0:
        return None
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= padded else out


@st.composite
def pool_cases(draw):
    n, c = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3, 9, 17, 65, 130]))
    h, w = (draw(st.sampled_from([1, 2, 5, 7, 9, 16, 31, 70, 113])) for _ in range(2))
    if draw(st.integers(0, 4)) == 0:  # global pooling
        kernel, stride, pad, dilation = (h, w), (1, 1), (0, 0, 0, 0), (1, 1)
    else:
        kernel = (draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 2, 3, 4, 7])))
        stride = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 2, 3])))
        pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
        dilation = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    ceil_mode = draw(st.booleans())
    oh = pool_out_size(h, pad[0], pad[2], kernel[0], stride[0], dilation[0], ceil_mode)
    ow = pool_out_size(w, pad[1], pad[3], kernel[1], stride[1], dilation[1], ceil_mode)
    if oh is None or ow is None:  # the dilated kernel does not fit: a 1x1 window
        kernel, dilation = (1, 1), (1, 1)
        oh = pool_out_size(h, pad[0], pad[2], 1, stride[0], 1, ceil_mode)
        ow = pool_out_size(w, pad[1], pad[3], 1, stride[1], 1, ceil_mode)
    if c * h * w > 200_000:
        c = 9
    return dict(n=n, c=c, h=h, w=w, out_hw=(oh, ow), kind=draw(st.sampled_from(["max", "avg"])),
                kernel=kernel, stride=stride, pad=pad, dilation=dilation,
                count_include_pad=draw(st.booleans()),
                specials=draw(st.sampled_from([0.0, 0.0, 0.03])),
                seed=draw(st.integers(0, 2**16)))


def run_pool(dev: Device, x, params: PoolParamsStruct, out_hw):
    dev.next_addr = 0
    t_in = dev.alloc(*x.shape)
    dev.load(t_in, x)
    t_out = dev.alloc(x.shape[0], x.shape[1], *out_hw)
    dev.check(dev.lib.sophon_tiu_pool2d(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                        ctypes.byref(params)))
    return dev.store(t_out)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=pool_cases())
def test_fast_pool2d_is_bit_identical(devices, case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(np.float32)
    x = with_specials(rng, x, case["specials"])
    params = pool_params(case["kind"], case["kernel"], case["stride"], case["pad"],
                         case["dilation"], case["count_include_pad"])
    assert_bit_identical(devices, lambda dev: run_pool(dev, x, params, case["out_hw"]))


@pytest.mark.parametrize("layer", [
    # (kind, c, h, w, kernel, stride, pad): ResNet's stem max pool, global average
    # pools of ResNet-18 and MobileNetV2, an average pool of odd width; global pools
    # as EfficientNet-B0's squeeze-excite blocks take them (16 channels per AVX-512
    # vector: a partial last group, planes not a multiple of 16), a global max, and the
    # YOLOv5 SPPF's 5x5 max pools at stride 1 (their padding read as -inf)
    ("max", 64, 112, 112, 3, 2, 1), ("avg", 512, 7, 7, 7, 1, 0), ("avg", 1280, 7, 7, 7, 1, 0),
    ("avg", 17, 31, 37, 3, 1, 1), ("avg", 40, 28, 28, 28, 1, 0), ("avg", 24, 56, 56, 56, 1, 0),
    ("max", 35, 9, 9, 9, 1, 0), ("max", 256, 10, 10, 5, 1, 2), ("max", 19, 20, 23, 5, 1, 2)])
def test_fast_pool2d_network_layers(devices, layer):
    kind, c, h, w, k, s, p = layer
    x = np.random.default_rng(c).standard_normal((1, c, h, w)).astype(np.float32)
    params = pool_params(kind, (k, k), (s, s), (p, p, p, p), (1, 1), True)
    out_hw = ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
    assert_bit_identical(devices, lambda dev: run_pool(dev, x, params, out_hw))


def test_fast_pool2d_ceil_mode_window_in_padding(devices):
    # A ceil-mode max pool at stride (2, 1) whose last output row's window lies wholly in
    # the bottom padding (input rows 0-1, padded rows 2-3): the reference gives -FLT_MAX
    # there (no real tap); the stride-1 path that reads padding as -inf must not take it.
    x = np.random.default_rng(5).standard_normal((1, 3, 2, 40)).astype(np.float32)
    pad = (0, 1, 2, 1)  # top, left, bottom, right
    out_hw = (pool_out_size(2, 0, 2, 3, 2, 1, True), pool_out_size(40, 1, 1, 3, 1, 1, True))
    assert out_hw == (2, 40)
    params = pool_params("max", (3, 3), (2, 1), pad, (1, 1), True)
    assert_bit_identical(devices, lambda dev: run_pool(dev, x, params, out_hw))
    out = run_pool(devices["ref"], x, params, out_hw)
    assert (out[:, :, 1] == -np.finfo(np.float32).max).all()


# ------------------------------------------------------------------- resize


class ResizeParamsStruct(ctypes.Structure):  # sophon_resize_params (runtime/sophon.h)
    _fields_ = [("method", ctypes.c_int), ("coord", ctypes.c_int), ("rounding", ctypes.c_int),
                ("in_h", ctypes.c_int32), ("out_h", ctypes.c_int32),
                ("in_row0", ctypes.c_int32), ("out_row0", ctypes.c_int32)]


@st.composite
def resize_cases(draw):
    n, c = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3, 64, 70]))
    h, w = draw(st.sampled_from([1, 2, 5, 10, 20])), draw(st.sampled_from([1, 3, 10, 40]))
    oh = draw(st.sampled_from([1, 2 * h, 3 * h, h + 3, max(1, h // 2)]))
    ow = draw(st.sampled_from([1, 2 * w, w + 5, max(1, w // 3)]))
    # a band of output rows, and the input rows it reads (whole image when band is False)
    band = draw(st.booleans()) and oh > 2
    return dict(n=n, c=c, h=h, w=w, oh=oh, ow=ow, band=band,
                coord=draw(st.integers(0, 4)), rounding=draw(st.integers(0, 4)),
                specials=draw(st.sampled_from([0.0, 0.05])), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=resize_cases())
def test_fast_resize_nearest_is_bit_identical(devices, case):
    """sophon_fast_resize.c against the reference: every coordinate mode and rounding,
    up and down, non-integer ratios, bands of rows, NaN and signed zeros (copied)."""
    rng = np.random.default_rng(case["seed"])
    n, c, h, w, oh, ow = case["n"], case["c"], case["h"], case["w"], case["oh"], case["ow"]
    x = with_specials(rng, rng.standard_normal((n, c, h, w)).astype(np.float32), case["specials"])
    out_row0, out_rows = (1, oh - 2) if case["band"] else (0, oh)
    params = ResizeParamsStruct(0, case["coord"], case["rounding"], h, oh, 0, out_row0)

    def run(dev):
        dev.next_addr = 0
        t_in = dev.alloc(n, c, h, w)
        dev.load(t_in, x)
        t_out = dev.alloc(n, c, out_rows, ow)
        dev.check(dev.lib.sophon_tiu_resize(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                            ctypes.byref(params)))
        return dev.store(t_out)

    assert_bit_identical(devices, run)


# --------------------------------------------------------------------- GDMA


def global_view(array: np.ndarray) -> GlobalStruct:
    """A DDR view of any float32 numpy view (strides may be zero or permuted)."""
    assert array.dtype == np.float32 and array.ndim == 4
    strides = [s // 4 for s in array.strides]
    return GlobalStruct(array.ctypes.data, *array.shape, *strides, F32)


@st.composite
def gdma_cases(draw):
    shape = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 5, 64, 70, 130])),
             draw(st.sampled_from([1, 2, 7, 33])), draw(st.sampled_from([1, 3, 8, 31])))
    return dict(shape=shape, order=draw(st.permutations(range(4))),
                step=draw(st.sampled_from([1, 1, 2])),
                broadcast=[draw(st.sampled_from([False, False, False, True])) for _ in range(4)],
                layout=draw(st.sampled_from([ALIGNED, COMPACT])),
                window=draw(st.sampled_from([(0, 0), (0, 0), (1, 2)])),
                seed=draw(st.integers(0, 2**16)))


def strided_view(rng, shape, order, step, broadcast=(False,) * 4):
    """A float32 view of `shape` whose dims are laid out in `order` in memory, every
    other element when step is 2, with zero strides on the broadcast dims; and the
    buffer it lives in."""
    base_shape = [1 if broadcast[d] else shape[d] * (step if d == 3 else 1) for d in order]
    buf = rng.standard_normal(base_shape).astype(np.float32)
    view = np.transpose(buf, np.argsort(order))
    if step > 1:
        view = view[:, :, :, ::step]
    return np.broadcast_to(view, shape), buf


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=gdma_cases())
def test_gdma_strided_load_and_store(devices, case):
    """Loads from and stores to permuted, strided and (for loads) broadcast DDR views
    equal numpy's view of the same memory, on every device."""
    rng = np.random.default_rng(case["seed"])
    shape = case["shape"]
    src, _ = strided_view(rng, shape, case["order"], case["step"], case["broadcast"])
    for name, dev in devices.items():
        dev.next_addr = 0
        before, after = case["window"]
        buf = dev.alloc(shape[0], shape[1], before + shape[2] + after, shape[3], case["layout"])
        stride = dev.lib.sophon_local_channel_stride(ctypes.byref(dev.chip), ctypes.byref(buf))
        t = LocalStruct(buf.addr + before * shape[3] * 4, *shape, F32, case["layout"],
                        stride if case["window"] != (0, 0) else 0)
        dev.check(dev.lib.sophon_gdma_load(dev.handle, ctypes.byref(t),
                                           ctypes.byref(global_view(src))))
        dst, dst_buf = strided_view(rng, shape, case["order"][::-1], case["step"])
        untouched = dst_buf.copy()
        dev.check(dev.lib.sophon_gdma_store(dev.handle, ctypes.byref(global_view(dst)),
                                            ctypes.byref(t)))
        assert np.array_equal(dst, src), name
        if case["step"] > 1:  # the elements between the strided ones are untouched
            assert np.array_equal(np.transpose(dst_buf, np.argsort(case["order"][::-1]))[..., 1::2],
                                  np.transpose(untouched, np.argsort(case["order"][::-1]))[..., 1::2]), name


@pytest.mark.parametrize("order, step, broadcast", [
    # big enough (over 128 KiB) to be split by rows over the threads: a concat's copy
    # into a channel slice, a permuted strided source, a broadcast one
    ((0, 1, 2, 3), 1, (False,) * 4), ((0, 3, 1, 2), 2, (False,) * 4),
    ((0, 1, 2, 3), 1, (False, False, True, False))])
def test_gdma_big_ddr_copy_is_split_exactly(devices, order, step, broadcast):
    """DDR-to-DDR copies over 128 KiB equal numpy's copy of the views on every device,
    the elements of the destination's buffer outside the view untouched."""
    rng = np.random.default_rng(step)
    shape = (2, 70, 23, 31)
    src, _ = strided_view(rng, shape, order, step, broadcast)
    for name, dev in devices.items():
        concat = rng.standard_normal((2, 150, 23, 31)).astype(np.float32)
        want = concat.copy()
        want[:, 40:110] = src
        dev.lib.sophon_gdma_copy.argtypes = [ctypes.c_void_p, ctypes.POINTER(GlobalStruct),
                                             ctypes.POINTER(GlobalStruct)]
        dev.check(dev.lib.sophon_gdma_copy(dev.handle, ctypes.byref(global_view(concat[:, 40:110])),
                                           ctypes.byref(global_view(src))))
        assert np.array_equal(concat, want), name


@pytest.mark.parametrize("case", [
    # (array shape, its (n, c, h, w) view as axes of the array): channels innermost in
    # DDR, copied 16 channels by 16 positions through a transpose with AVX-512, with a
    # partial last group and positions past the last 16
    ((37, 40), "fc"),             # an fc weight (K, N) loaded as (1, N, K, 1)
    ((2, 5, 19, 35), (0, 3, 1, 2)),  # NHWC data loaded as NCHW
    ((1, 3, 48, 32), (0, 3, 1, 2))])
def test_gdma_channels_innermost_load(devices, case):
    """Loads whose consecutive channels are consecutive in DDR equal numpy's view."""
    shape, axes = case
    rng = np.random.default_rng(len(shape))
    buf = rng.standard_normal(shape).astype(np.float32)
    src = buf.T[None, :, :, None] if axes == "fc" else np.transpose(buf, axes)
    for name, dev in devices.items():
        dev.next_addr = 0
        t = dev.alloc(*src.shape, COMPACT)
        dev.check(dev.lib.sophon_gdma_load(dev.handle, ctypes.byref(t),
                                           ctypes.byref(global_view(src))))
        assert np.array_equal(dev.store(t), src), name


def test_gdma_big_load_is_split_exactly(devices):
    """A transfer above the threading threshold (1 MiB) lands exactly, with exact counters."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 70, 48, 40)).astype(np.float32)  # 1.07 MB
    for name, dev in devices.items():
        dev.next_addr = 0
        t = dev.alloc(*x.shape)
        dev.load(t, x)
        assert np.array_equal(dev.store(t), x), name


def test_gdma_overlapping_store_keeps_the_reference_order(devices):
    """A store whose DDR view overlaps itself lands in (n, c, h, w) order: the last
    write wins, as in the reference, whatever the device's threads."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 70, 40, 50)).astype(np.float32)  # 1.1 MB: above the split size
    strides = (7, 3, 5, 1)  # elements; many (n, c, h, w) share an address
    size = sum((d - 1) * s for d, s in zip(x.shape, strides)) + 1
    expected = np.zeros(size, np.float32)
    idx = sum(np.arange(d).reshape([-1 if i == a else 1 for i in range(4)]) * s
              for a, (d, s) in enumerate(zip(x.shape, strides)))
    flat = idx.ravel()
    addresses, first_from_end = np.unique(flat[::-1], return_index=True)
    expected[addresses] = x.ravel()[flat.size - 1 - first_from_end]  # the last write wins
    for name, dev in devices.items():
        dev.next_addr = 0
        t = dev.alloc(*x.shape)
        dev.load(t, x)
        out = np.zeros(size, np.float32)
        view = GlobalStruct(out.ctypes.data, *x.shape, *strides, F32)
        dev.check(dev.lib.sophon_gdma_store(dev.handle, ctypes.byref(view), ctypes.byref(t)))
        assert np.array_equal(out, expected), name
