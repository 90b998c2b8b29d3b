"""The fast INT8 kernels (runtime/fast/sophon_fast_int8.c, sophon_fast_int8_eltwise.c,
sophon_fast_int8_binary.c) against the reference INT8 kernels of runtime/reference/
(sophon_tiu_conv_int8.c, sophon_tiu_add_pool_int8.c, sophon_tiu_eltwise_int8.c), driven one
instruction at a time through ctypes.

Every case runs on one bm1684 device in reference mode and on fast devices at every
instruction-set level the host has (sophon_device_set_isa: 0 plain C, 1 AVX2,
2 AVX-512 with VNNI), each with 1 and 2 threads. Integer arithmetic: the fast
results must be bit-identical to the reference (no tolerance). Levels the CPU lacks
are skipped (test_isa_level_is_exercised reports them).
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tvm_sophon import get_chip
from tvm_sophon.cost import (ActivationStruct, ChipStruct, ConvParamsStruct, LocalStruct,
                             PoolParamsStruct, runtime_library)
from int8_structs import AddParams, GlobalStruct, Requant

I8, I32 = 1, 2
ALIGNED, COMPACT = 0, 1
POOL_MAX, POOL_AVG = 0, 1
ISA_NAMES = {0: "c", 1: "avx2", 2: "avx512"}


def _cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _host_isa_levels() -> list[int]:
    """The levels whose kernels this CPU runs (1: AVX2; 2: AVX-512 with VNNI, which
    the INT8 kernels of level 2 use)."""
    flags = _cpu_flags()
    levels = [0]
    if "avx2" in flags:
        levels.append(1)
        if {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"} <= flags:
            levels.append(2)
    return levels


HOST_ISA_LEVELS = _host_isa_levels()


class BinaryInt8Params(ctypes.Structure):  # sophon_binary_int8_params
    _fields_ = [("op", ctypes.c_int)] + [(name, ctypes.c_int32) for name in (
        "input1_zero_point", "input2_zero_point", "output_zero_point", "multiplier1", "shift1",
        "multiplier2", "shift2", "act_min", "act_max", "multiplier3", "shift3")] + [
        (name, ctypes.c_float) for name in ("scale", "input1_scale", "input2_scale", "output_scale")] + [
        ("value_offset", ctypes.c_int32)]


class LutInt8Params(ctypes.Structure):  # sophon_lut_int8_params
    _fields_ = [("table", ctypes.c_int8 * 256)]


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
    lib.sophon_device_set_isa.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.sophon_device_error.argtypes = [ctypes.c_void_p]
    lib.sophon_device_error.restype = ctypes.c_char_p
    lib.sophon_gdma_load.argtypes = [ctypes.c_void_p, P(LocalStruct), P(GlobalStruct)]
    lib.sophon_gdma_store.argtypes = [ctypes.c_void_p, P(GlobalStruct), P(LocalStruct)]
    lib.sophon_tiu_conv2d_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                           P(LocalStruct), P(LocalStruct), P(ConvParamsStruct),
                                           P(Requant)]
    lib.sophon_tiu_conv2d_transpose_int8.argtypes = lib.sophon_tiu_conv2d_int8.argtypes
    lib.sophon_tiu_fc_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                       P(LocalStruct), P(LocalStruct), P(Requant)]
    lib.sophon_tiu_add_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                        P(LocalStruct), P(AddParams)]
    lib.sophon_tiu_pool2d_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                           P(PoolParamsStruct), ctypes.c_int32, ctypes.c_int32]
    lib.sophon_tiu_binary_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                           P(LocalStruct), P(BinaryInt8Params)]
    lib.sophon_tiu_reduce_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                           ctypes.c_int, P(Requant)]
    lib.sophon_tiu_lut_int8.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct),
                                        P(LutInt8Params)]
    return lib


class Device:
    """One emulated bm1684 and a bump allocator over its lanes."""

    def __init__(self, threads: int = 1, reference: bool = False, isa: int = 2):
        self.lib = _lib()
        self.chip = ChipStruct.of(get_chip("bm1684"))
        self.handle = ctypes.c_void_p()
        assert self.lib.sophon_device_create(ctypes.byref(self.chip), ctypes.byref(self.handle)) == 0
        self.check(self.lib.sophon_device_set_threads(self.handle, threads))
        self.check(self.lib.sophon_device_set_reference(self.handle, int(reference)))
        self.check(self.lib.sophon_device_set_isa(self.handle, isa))
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

    def put(self, array: np.ndarray, dtype=I8, layout=ALIGNED) -> LocalStruct:
        t = self.alloc(array.shape, dtype, layout)
        self.load(t, array)
        return t

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


FAST_DEVICES = [(isa, threads) for isa in HOST_ISA_LEVELS for threads in (1, 2)]


@pytest.fixture(scope="module")
def devices():
    devs = {"ref": Device(1, reference=True)}
    for isa, threads in FAST_DEVICES:
        devs[f"{ISA_NAMES[isa]} x{threads}"] = Device(threads, isa=isa)
    yield devs
    for dev in devs.values():
        dev.close()


def assert_identical(devices, run):
    """Runs `run(device)` on every device; the fast results equal the reference's."""
    ref = run(devices["ref"])
    for name, dev in devices.items():
        if name == "ref":
            continue
        fast = run(dev)
        diff = np.argwhere(fast != ref)
        assert diff.size == 0, f"{name}: {len(diff)} outputs differ, first at {diff[0]}"
    return ref


@pytest.mark.parametrize("isa", [0, 1, 2], ids=lambda isa: ISA_NAMES[isa])
def test_isa_level_is_exercised(isa):
    if isa not in HOST_ISA_LEVELS:
        pytest.skip(f"this CPU has no {ISA_NAMES[isa]} kernels (flags in /proc/cpuinfo)")
    dev = Device(1, isa=isa)
    try:
        assert dev.lib.sophon_device_set_isa(dev.handle, 3) != 0
        assert b"set_isa" in dev.lib.sophon_device_error(dev.handle)
    finally:
        dev.close()


# ----------------------------------------------------------------- conv2d

def make_requant(rng, channels, k, per_channel, in_zp, out_zp, act, mode="typical"):
    """Multipliers and shifts: "typical" spreads the outputs over the int8 range;
    "positive" has left shifts (x * 2^shift, saturating); "any" draws from the whole
    range the checks allow (mostly saturated outputs, every branch)."""
    count = channels if per_channel else 1
    if mode == "typical":
        multipliers = rng.integers(1 << 30, (1 << 31) - 1, count)
        # |acc| ~ sqrt(K) * 74 * 64 for random operands
        base = int(np.log2(np.sqrt(k) * 74 * 64 / 64.0)) + 1
        shifts = -base + rng.integers(-1, 2, count)
    elif mode == "positive":
        multipliers = rng.integers(1, 1 << 12, count)
        shifts = rng.integers(1, 31, count)
    else:
        multipliers = rng.integers(0, (1 << 31) - 1, count)
        shifts = rng.integers(-31, 31, count)
    m = (ctypes.c_int32 * count)(*[int(v) for v in multipliers])
    s = (ctypes.c_int32 * count)(*[int(v) for v in shifts])
    q = Requant(in_zp, out_zp, act[0], act[1], int(per_channel),
                ctypes.cast(m, ctypes.POINTER(ctypes.c_int32)),
                ctypes.cast(s, ctypes.POINTER(ctypes.c_int32)))
    q._keep = (m, s)  # the arrays must outlive the call
    return q


ROUNDINGS = {"fixed": 0, "double": 1, "float32": 2}  # sophon_requant_rounding


def with_rounding(q, rounding):
    """q rounding as `rounding` says, its scales the reals of its multipliers and shifts
    (float32 values for "float32", onnxruntime's requantization)."""
    if rounding == "fixed":
        return q
    multipliers, shifts = q._keep
    reals = [mul * 2.0 ** (sh - 31) for mul, sh in zip(multipliers, shifts)]
    if rounding == "float32":
        reals = [float(np.float32(r)) for r in reals]
    scales = (ctypes.c_double * len(reals))(*reals)
    q.rounding, q.scale = ROUNDINGS[rounding], ctypes.cast(scales, ctypes.POINTER(ctypes.c_double))
    q._keep += (scales,)
    return q


def run_conv(dev: Device, x, weight, bias, params, q, out_shape, in_window=(0, 0),
             out_window=(0, 0)):
    dev.next_addr = 0
    n, oc, oh, ow = out_shape
    if in_window == (0, 0):
        t_in = dev.put(x)
    else:
        t_in = dev.window(x.shape, *in_window, fill=x)
    t_w = dev.put(weight.reshape(1, oc, weight.shape[1], -1), I8, COMPACT)
    t_b = dev.put(bias.reshape(1, oc, 1, 1), I32, COMPACT) if bias is not None else None
    if out_window == (0, 0):
        t_out = dev.alloc(out_shape)
    else:
        t_out = dev.window(out_shape, *out_window)
    dev.check(dev.lib.sophon_tiu_conv2d_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                             ctypes.byref(t_w),
                                             ctypes.byref(t_b) if t_b is not None else None,
                                             ctypes.byref(params), ctypes.byref(q)))
    return dev.store(t_out)


SIZES_C = [1, 3, 4, 17, 65, 130]
SIZES_HW = [1, 2, 7, 16, 31]


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped", "pointwise"]))
    ic = draw(st.sampled_from(SIZES_C))
    if kind == "depthwise":
        multiplier = draw(st.sampled_from([1, 1, 2]))
        oc, groups = ic * multiplier, ic
    elif kind == "grouped":
        groups = draw(st.sampled_from([2, 3]))
        ic = groups * draw(st.sampled_from([2, 3, 5, 6]))
        oc = groups * draw(st.sampled_from([1, 5, 7]))
    else:
        oc, groups = draw(st.sampled_from(SIZES_C)), 1
    kh, kw = (1, 1) if kind == "pointwise" else (draw(st.sampled_from([1, 2, 3, 5])),
                                                 draw(st.sampled_from([1, 3, 7])))
    n = draw(st.sampled_from([1, 2]))
    h, w = draw(st.sampled_from(SIZES_HW)), draw(st.sampled_from(SIZES_HW + [57]))
    stride = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2, 3])))
    dilation = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(4))

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
                requant=draw(st.sampled_from(["typical", "typical", "positive", "any"])),
                in_zp=draw(st.sampled_from([0, -128, 127, 5])),
                out_zp=draw(st.sampled_from([0, -128, 3])), act=act,
                rounding=draw(st.sampled_from(["fixed", "fixed", "float32"])),
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


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_cases())
def test_fast_conv2d_int8_is_bit_identical(devices, case):
    rng = np.random.default_rng(case["seed"])
    n, ic, oc, groups = case["n"], case["ic"], case["oc"], case["groups"]
    kh, kw = case["kernel"]
    x = rng.integers(-128, 128, (n, ic, case["h"], case["w"]), dtype=np.int8)
    weight = rng.integers(-128, 128, (oc, ic // groups, kh, kw), dtype=np.int8)
    bias = random_bias(rng, oc, case["bias"])
    k = ic // groups * kh * kw
    q = with_rounding(make_requant(rng, oc, k, case["per_channel"], case["in_zp"], case["out_zp"],
                                   case["act"], case["requant"]), case["rounding"])
    params = conv_params(case["kernel"], case["stride"], case["pad"], case["dilation"], groups)
    out_shape = (n, oc, *case["out_hw"])
    assert_identical(devices, lambda dev: run_conv(dev, x, weight, bias, params, q, out_shape,
                                                   case["in_window"], case["out_window"]))


@pytest.mark.parametrize("rounding", ["fixed", "float32"])
@pytest.mark.parametrize("shape", [
    # (ic, oc, h, w, kernel, stride, pad, groups): ResNet/MobileNet layers
    (64, 64, 14, 14, 3, 1, 1, 1), (256, 70, 7, 7, 3, 1, 1, 1), (130, 20, 9, 9, 3, 2, 1, 1),
    (3, 64, 31, 31, 7, 2, 3, 1), (96, 576, 7, 7, 1, 1, 0, 1), (64, 128, 20, 20, 1, 2, 0, 1),
    (128, 128, 15, 15, 3, 2, 1, 1), (32, 32, 28, 28, 3, 2, 1, 32), (48, 48, 13, 13, 3, 1, 1, 48),
    (16, 32, 10, 10, 5, 1, 2, 16),
    # 1x1 without padding: each quad plane gathered as one run (64 columns a step, then
    # a partial 16), and a last quad of 2 channels row by row
    (36, 20, 19, 23, 1, 1, 0, 1), (18, 8, 9, 9, 1, 1, 0, 1)])
def test_fast_conv2d_int8_network_layers(devices, shape, rounding):
    ic, oc, h, w, k, s, p, groups = shape
    rng = np.random.default_rng(ic * oc)
    x = rng.integers(-128, 128, (1, ic, h, w), dtype=np.int8)
    weight = rng.integers(-128, 128, (oc, ic // groups, k, k), dtype=np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, oc).astype(np.int32)
    q = with_rounding(make_requant(rng, oc, ic // groups * k * k, True, -3, 2, (-128, 127)),
                      rounding)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    params = conv_params((k, k), (s, s), (p, p, p, p), (1, 1), groups)
    ref = assert_identical(devices, lambda dev: run_conv(dev, x, weight, bias, params, q,
                                                         (1, oc, oh, ow)))
    assert len(np.unique(ref)) > 50, "requantization saturates: the case checks little"


def float_conv_expected(x, weight, bias, q, filter_scales, kernel, stride, pad, groups, out_hw):
    """onnxruntime's float Conv of an ONNX QDQ model (SOPHON_REQUANT_FLOAT_CONV) in numpy,
    written from its definition: float32 dequantized operands, the taps [ic][ky][kx] in
    runs of k_block, each run a chain of fused multiply-adds from 0 (x * w exact in
    float64, the sum rounded once to float32 through float128: a double rounding only
    within 2^-64 of a float32 half), the runs added in order, + the dequantized bias,
    / output scale rounded half to even, clamped."""
    f32, ld = np.float32, np.longdouble
    n, ic, h, w = x.shape
    oc, icg, kh, kw = weight.shape
    oh, ow = out_hw
    xf = (x.astype(np.int32) - q.input_zero_point).astype(f32) * f32(q.input_scale)
    xp = np.zeros((n, ic, h + pad[0] + pad[2], w + pad[1] + pad[3]), f32)
    xp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + w] = xf
    valid = np.zeros(xp.shape[2:], bool)
    valid[pad[0]:pad[0] + h, pad[1]:pad[1] + w] = True
    out = np.empty((n, oc, oh, ow), np.int8)
    for o in range(oc):
        fs = f32(filter_scales[o if q.per_channel else 0])
        wf = (weight[o].astype(f32) * fs).reshape(-1)
        g = o // (oc // groups)
        bias_f = f32(0) if bias is None else f32(f32(int(bias[o])) * f32(f32(q.input_scale) * fs))
        for b in range(n):
            for y in range(oh):
                for xx in range(ow):
                    win = xp[b, g * icg:(g + 1) * icg, y * stride[0]:y * stride[0] + kh, xx * stride[1]:xx * stride[1] + kw]
                    ok = np.broadcast_to(valid[y * stride[0]:y * stride[0] + kh, xx * stride[1]:xx * stride[1] + kw],
                                         win.shape).reshape(-1)
                    taps = win.reshape(-1)
                    total = None
                    for start in range(0, taps.size, q.k_block):
                        run = f32(0)
                        for i in range(start, min(taps.size, start + q.k_block)):
                            if ok[i]:
                                run = f32(ld(taps[i]) * ld(wf[i]) + ld(run))
                        total = run if total is None else f32(run + total)
                    v = np.rint(f32(f32(total + bias_f) / f32(q.output_scale)))
                    out[b, o, y, xx] = np.clip(v + q.output_zero_point, q.act_min, q.act_max)
    return out


@pytest.mark.parametrize("case", [
    # (ic, oc, h, w, kernel, stride, pad, groups, k_block, per_channel, act[, batch: 2])
    (5, 4, 6, 7, (3, 3), (1, 1), (1, 1, 1, 1), 1, 128, True, (-128, 127)),
    (40, 3, 4, 4, (3, 3), (1, 1), (1, 0, 1, 2), 1, 128, True, (-128, 127)),  # K 360: 3 runs
    (40, 3, 4, 4, (3, 3), (2, 1), (1, 1, 1, 1), 1, 100, False, (-20, 90)),  # runs of 100, clamp
    (6, 6, 7, 5, (3, 3), (1, 2), (1, 1, 1, 1), 6, 9, True, (-128, 127)),    # depthwise
    (6, 4, 5, 5, (1, 1), (1, 1), (0, 0, 0, 0), 2, 1024, True, (-128, 127)),  # grouped pointwise
    (16, 10, 11, 13, (3, 3), (1, 1), (1, 1, 1, 1), 1, 128, True, (-128, 127)),  # 3 pixel blocks, 4 + 4 + 2 channels
    (8, 10, 9, 9, (3, 3), (1, 1), (1, 1, 1, 1), 2, 16, False, (-128, 127)),    # 5 channels a group
    # pointwise read straight from the dequantized planes: 3 pixel blocks (64, 64, 7), runs of 32
    (70, 9, 9, 15, (1, 1), (1, 1), (0, 0, 0, 0), 1, 32, True, (-128, 127)),
    # output channels in lanes (few pixels, many channels): 40 channels = vectors 32 + 8,
    # K 360 in runs of 128, 128, 104 (a tap tail of 8), stride 2 over padding; one batch
    # item, so that two threads split the channels (32 + 8)
    (40, 40, 9, 9, (3, 3), (2, 2), (1, 1, 1, 1), 1, 128, True, (-128, 127), 1),
    # in lanes, pointwise from the planes: 3 x 5 pixels, 67 channels (vectors 32 + 32 + 3), runs of 16
    (48, 67, 3, 5, (1, 1), (1, 1), (0, 0, 0, 0), 1, 16, False, (-30, 100)),
    # in lanes, 340 pixels in two blocks of 170 (tiles of 11 and 12), 48 channels
    (24, 48, 17, 20, (3, 3), (1, 1), (1, 1, 1, 1), 1, 128, True, (-128, 127)),
    # padding rows only (a 3x1 kernel): each plane's rows dequantized as one run between zero rows
    (12, 20, 6, 9, (3, 1), (1, 1), (1, 0, 1, 0), 1, 128, True, (-128, 127)),
    # pixel blocks, batch 1: two threads split one block's channels (6 fours, the last of 2) ...
    (16, 22, 7, 7, (3, 3), (1, 1), (1, 1, 1, 1), 1, 128, True, (-128, 127), 1),
    # ... and 3 blocks x 3 fours of channels at the fourth: mid-block, past a partial four
    (12, 10, 12, 12, (3, 3), (1, 1), (1, 1, 1, 1), 1, 64, True, (-128, 127), 1),
    # in lanes, a tile of the plane: 18 pixels x K 36, so the gathered columns (648 floats)
    # end off a 64-byte boundary and the weight panels after them must be realigned
    (4, 6, 3, 6, (3, 3), (1, 1), (1, 1, 1, 1), 1, 128, True, (-128, 127), 1),
], ids=["dense", "runs_of_128", "runs_of_100", "depthwise", "grouped", "blocks", "groups_of_5", "pointwise_planes",
        "lanes", "lanes_pointwise", "lanes_blocks", "rows_padding", "one_block_split", "mid_block_split", "lanes_unaligned_columns"])
def test_conv2d_int8_float_conv_rounding(devices, case):
    """SOPHON_REQUANT_FLOAT_CONV (onnxruntime's float Conv between DequantizeLinear and
    QuantizeLinear): the reference equals the numpy statement of it, and every fast device
    (the float-conv kernel at each instruction-set level) equals the reference."""
    ic, oc, h, w, kernel, stride, pad, groups, k_block, per_channel, act = case[:11]
    batch = case[11] if len(case) > 11 else 2
    rng = np.random.default_rng(ic * 100 + oc)
    x = rng.integers(-128, 128, (batch, ic, h, w), dtype=np.int8)
    weight = rng.integers(-128, 128, (oc, ic // groups, *kernel), dtype=np.int8)
    bias = rng.integers(-5000, 5000, oc).astype(np.int32)
    q = make_requant(rng, oc, ic // groups * kernel[0] * kernel[1], per_channel, 7, -3, act)
    filter_scales = [float(np.float32(v)) for v in rng.uniform(0.002, 0.02, oc)]
    scales = (ctypes.c_double * oc)(*filter_scales)
    q.rounding, q.scale = 3, ctypes.cast(scales, ctypes.POINTER(ctypes.c_double))
    k = ic // groups * kernel[0] * kernel[1]  # outputs spread over int8: |sum| ~ sqrt(K) * 74 * 64 * scales
    q.input_scale, q.output_scale, q.k_block = 0.0371, float(np.float32(0.03 * np.sqrt(k))), k_block
    q._keep += (scales,)
    oh = (h + pad[0] + pad[2] - kernel[0]) // stride[0] + 1
    ow = (w + pad[1] + pad[3] - kernel[1]) // stride[1] + 1
    params = conv_params(kernel, stride, pad, (1, 1), groups)
    ref = assert_identical(devices, lambda dev: run_conv(dev, x, weight, bias, params, q, (batch, oc, oh, ow)))
    expected = float_conv_expected(x, weight, bias, q, filter_scales, kernel, stride, pad, groups, (oh, ow))
    np.testing.assert_array_equal(ref, expected)
    assert len(np.unique(ref)) > 20, "the outputs saturate: the case checks little"


@pytest.mark.parametrize("in_zp", [-128, 127])
def test_fast_conv2d_int8_extreme_operands(devices, in_zp):
    """All weights -128 and inputs at the far end from the zero point: the largest
    products (|in - zp| * |w| = 255 * 128), through padding taps and a K that is not a
    multiple of 4."""
    far = 127 if in_zp == -128 else -128
    x = np.full((1, 7, 9, 9), far, np.int8)
    weight = np.full((5, 7, 3, 3), -128, np.int8)
    rng = np.random.default_rng(7)
    q = make_requant(rng, 5, 63, False, in_zp, 0, (-128, 127), "any")
    params = conv_params((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert_identical(devices, lambda dev: run_conv(dev, x, weight, None, params, q, (1, 5, 9, 9)))


@pytest.mark.parametrize("rounding", ["fixed", "float32"])
@pytest.mark.parametrize("in_zp", [-128, 127, 0])
@pytest.mark.parametrize("geometry", [
    # (h, w, kernel, stride, pad): one output row per vector with a partial last vector
    # (w 37), two rows per vector (outputs 7 and 5 wide, an odd row count), a 5x5 kernel
    # (two quads of taps), stride 3, padding wider than the kernel reach on one side;
    # outputs of 8 or fewer columns go to dw_vnni_flat (16 consecutive outputs a vector):
    # 7x7 from 14x14 at stride 2 (windows over 64 bytes, two-table permutes) and a 5x5
    # kernel on a 6x8 plane (seven quads of taps, one-table permutes); 3x3 at stride 2
    # with one row per vector (the ring of permuted input rows kept between output rows
    # moves by two), 15 output rows (a partial group of four) and a last kernel row in
    # the bottom padding, or no top padding and an odd input height
    (9, 37, 3, 1, 1), (7, 7, 3, 1, 1), (10, 10, 3, 2, 1), (11, 13, 5, 1, 2), (8, 50, 3, 3, 0),
    (6, 20, 3, 1, (0, 2, 1, 0)), (14, 14, 3, 2, 1), (6, 8, 5, 1, 2), (29, 40, 3, 2, 1),
    (13, 36, 3, 2, (0, 1, 1, 0))])
@pytest.mark.parametrize("requant", ["typical", "any"])
def test_fast_depthwise_int8_extreme_operands(devices, geometry, in_zp, rounding, requant):
    """Depthwise convs with the largest products (weights -128, inputs at the far end from
    the zero point) in most channels and random values in the others, padding taps on
    every side; "typical" requantization spreads the random channels over the int8 range,
    "any" draws it and the bias over the whole checked range (mostly saturated outputs:
    each clamp branch)."""
    h, w, k, s, pad = geometry
    pad = pad if isinstance(pad, tuple) else (pad,) * 4
    far = 127 if in_zp <= 0 else -128
    rng = np.random.default_rng(h * w + k)
    c = 19
    x = rng.integers(-128, 128, (1, c, h, w), dtype=np.int8)
    x[:, :12] = far
    weight = rng.integers(-128, 128, (c, 1, k, k), dtype=np.int8)
    weight[:12] = -128
    bias = random_bias(rng, c, "extreme" if requant == "any" else "small")
    q = with_rounding(make_requant(rng, c, k * k, True, in_zp, 3, (-100, 120), requant), rounding)
    params = conv_params((k, k), (s, s), pad, (1, 1), c)
    oh = (h + pad[0] + pad[2] - k) // s + 1
    ow = (w + pad[1] + pad[3] - k) // s + 1
    ref = assert_identical(devices, lambda dev: run_conv(dev, x, weight, bias, params, q,
                                                         (1, c, oh, ow)))
    if requant == "typical":  # the random channels' outputs spread over the range
        assert len(np.unique(ref[:, 12:])) > 30, "requantization saturates: the case checks little"


# ---------------------------------------------------- conv2d_transpose

def run_deconv(dev: Device, x, weight, bias, params, q, out_shape):
    dev.next_addr = 0
    t_in = dev.put(x)
    t_w = dev.put(weight, I8, COMPACT)  # (1, IC, OC/groups, KH*KW)
    t_b = dev.put(bias.reshape(1, -1, 1, 1), I32, COMPACT) if bias is not None else None
    t_out = dev.alloc(out_shape)
    dev.check(dev.lib.sophon_tiu_conv2d_transpose_int8(
        dev.handle, ctypes.byref(t_out), ctypes.byref(t_in), ctypes.byref(t_w),
        ctypes.byref(t_b) if t_b is not None else None, ctypes.byref(params), ctypes.byref(q)))
    return dev.store(t_out)


@settings(max_examples=60, deadline=None)
@given(n=st.sampled_from([1, 2]), groups=st.sampled_from([1, 1, 2]),
       icg=st.sampled_from([1, 3, 8]), ocg=st.sampled_from([1, 4, 7]),
       h=st.sampled_from([1, 3, 6]), w=st.sampled_from([1, 5, 17]),
       kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)), extra=st.tuples(st.integers(-1, 2), st.integers(-1, 2)),
       bias=st.sampled_from(["none", "small", "extreme"]), per_channel=st.booleans(),
       requant=st.sampled_from(["typical", "typical", "any"]), in_zp=st.sampled_from([0, -128, 127, 5]),
       rounding=st.sampled_from(["fixed", "float32"]), seed=st.integers(0, 2**16))
def test_fast_conv2d_transpose_int8_is_bit_identical(devices, n, groups, icg, ocg, h, w, kernel,
                                                     stride, dilation, pad, extra, bias, per_channel,
                                                     requant, in_zp, rounding, seed):
    """Transposed convs with groups, strides, dilations, top/left padding and outputs a
    little shorter or longer than the full transposed size (taps that land outside and
    output columns no tap reaches); the largest products in the first input channel."""
    rng = np.random.default_rng(seed)
    ic, oc = groups * icg, groups * ocg
    kh, kw = kernel
    x = rng.integers(-128, 128, (n, ic, h, w), dtype=np.int8)
    x[:, 0] = 127 if in_zp <= 0 else -128
    weight = rng.integers(-128, 128, (1, ic, ocg, kh * kw), dtype=np.int8)
    weight[:, 0] = -128
    oh = max(1, (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1 - pad[0] + extra[0])
    ow = max(1, (w - 1) * stride[1] + dilation[1] * (kw - 1) + 1 - pad[1] + extra[1])
    q = with_rounding(make_requant(rng, oc, icg * kh * kw, per_channel, in_zp, -2, (-128, 127),
                                   requant), rounding)
    params = ConvParamsStruct(kh, kw, stride[0], stride[1], pad[0], pad[1], 0, 0, dilation[0],
                              dilation[1], groups, ActivationStruct(0, 0.0, 0.0, 0.0))
    b = random_bias(rng, oc, bias)
    assert_identical(devices, lambda dev: run_deconv(dev, x, weight, b, params, q, (n, oc, oh, ow)))


# --------------------------------------------------------------------- fc

def run_fc(dev: Device, x, weight, bias, q):
    dev.next_addr = 0
    m, k = x.shape
    nf = weight.shape[0]
    t_in = dev.put(x.reshape(m, k, 1, 1))
    t_w = dev.put(weight.reshape(1, nf, k, 1), I8, COMPACT)
    t_b = dev.put(bias.reshape(1, nf, 1, 1), I32, COMPACT) if bias is not None else None
    t_out = dev.alloc((m, nf, 1, 1))
    dev.check(dev.lib.sophon_tiu_fc_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                         ctypes.byref(t_w),
                                         ctypes.byref(t_b) if t_b is not None else None,
                                         ctypes.byref(q)))
    return dev.store(t_out).reshape(m, nf)


@settings(max_examples=80, deadline=None)
@given(m=st.sampled_from([1, 2, 5]), k=st.sampled_from([1, 3, 17, 64, 65, 130, 512]),
       nf=st.sampled_from([1, 3, 17, 65, 130, 1000]),
       bias_kind=st.sampled_from(["none", "small", "extreme"]), per_channel=st.booleans(),
       requant=st.sampled_from(["typical", "typical", "positive", "any"]),
       in_zp=st.sampled_from([0, -128, 127, 5]), out_zp=st.sampled_from([0, -128, 3]),
       rounding=st.sampled_from(["fixed", "double", "float32"]), seed=st.integers(0, 2**16))
def test_fast_fc_int8_is_bit_identical(devices, m, k, nf, bias_kind, per_channel, requant, in_zp,
                                       out_zp, rounding, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    weight = rng.integers(-128, 128, (nf, k), dtype=np.int8)
    bias = random_bias(rng, nf, bias_kind)
    # DOUBLE: TFLite's FULLY_CONNECTED; FLOAT32: onnxruntime's (ONNX QDQ models)
    q = with_rounding(make_requant(rng, nf, k, per_channel, in_zp, out_zp, (-128, 127), requant),
                      rounding)
    assert_identical(devices, lambda dev: run_fc(dev, x, weight, bias, q))


# -------------------------------------------------------------------- add

def run_add(dev: Device, a, b, p, inplace):
    dev.next_addr = 0
    t_a, t_b = dev.put(a), dev.put(b)
    t_out = t_a if inplace else dev.alloc(a.shape)
    dev.check(dev.lib.sophon_tiu_add_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_a),
                                          ctypes.byref(t_b), ctypes.byref(p)))
    return dev.store(t_out)


@st.composite
def add_params(draw):
    def multiplier():
        return draw(st.sampled_from([0, 1, 1 << 30, (1 << 31) - 1])
                    | st.integers(1 << 30, (1 << 31) - 1))

    zps = [draw(st.integers(-128, 127)) for _ in range(3)]
    lo = draw(st.integers(-128, 127))
    hi = draw(st.sampled_from([127, lo, min(127, lo + 40)]))
    sign2 = draw(st.sampled_from([1, -1]))  # -1: TFLite's SUB (input 2's multiplier negated)
    return AddParams(draw(st.sampled_from([20, 20, 0, 22])), *zps,
                     multiplier(), draw(st.integers(-31, 0)),
                     sign2 * multiplier(), draw(st.integers(-31, 0)),
                     multiplier(), draw(st.integers(-31, 0)), lo, hi)


@settings(max_examples=100, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.sampled_from([1, 3, 17, 70]),
                       st.sampled_from([1, 3, 8, 14]), st.sampled_from([1, 5, 14, 17])),
       broadcast=st.booleans(), p=add_params(), inplace=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fast_add_int8_is_bit_identical(devices, shape, broadcast, p, inplace, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, shape, dtype=np.int8)
    # a broadcast b is the reference's path; it must still come out the same
    b_shape = (shape[0], shape[1], 1, 1) if broadcast else shape
    b = rng.integers(-128, 128, b_shape, dtype=np.int8)
    assert_identical(devices, lambda dev: run_add(dev, a, b, p, inplace))


def test_fast_add_int8_every_pair(devices):
    """Every int8 pair, with TFLite-like scales."""
    grid = np.arange(-128, 128, dtype=np.int8)
    a = np.repeat(grid, 256).reshape(1, 64, 32, 32)
    b = np.tile(grid, 256).reshape(1, 64, 32, 32)
    for sign in (1, -1):  # ADD, and SUB (input 2's multiplier negated, as TFLite's sub.cc)
        p = AddParams(20, -3, 7, 1, 1518500250, -1, sign * 1832780120, -2, 1431655765, -17, -128, 127)
        ref = assert_identical(devices, lambda dev: run_add(dev, a, b, p, False))
        assert len(np.unique(ref)) > 200


# ------------------------------------------------------------ binary_int8

def run_binary_int8(dev: Device, a, b, p, inplace):
    dev.next_addr = 0
    t_a, t_b = dev.put(a), dev.put(b)
    t_out = t_a if inplace else dev.alloc(a.shape)
    dev.check(dev.lib.sophon_tiu_binary_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_a),
                                             ctypes.byref(t_b), ctypes.byref(p)))
    return dev.store(t_out)


@st.composite
def binary_int8_params(draw):
    def pair():
        return (draw(st.sampled_from([0, 1 << 30, (1 << 31) - 1]) | st.integers(1 << 30, (1 << 31) - 1)),
                draw(st.integers(-31, 30)))

    def positive_scale():
        return draw(st.sampled_from([1.0 / 256, 0.0217, 1.0]) | st.floats(0.0009765625, 4, width=32))

    lo = draw(st.integers(-128, 127))
    hi = draw(st.sampled_from([127, lo, min(127, lo + 40)]))
    # MUL, MAX, MIN, PRELU, MUL_FLOAT32 (onnxruntime's QLinearMul: a float32 scale),
    # ADD_FLOAT, SUB_FLOAT, MUL_FLOAT (onnxruntime's float ops: three float32 scales),
    # ADD_QLINEAR(_BROADCAST) (its QLinearAdd: two ratios, a constant, an offset)
    op = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7, 8, 9, 10]))
    third = positive_scale() if op in (6, 7, 8) else draw(  # QLinearAdd: its constant, any sign
        st.sampled_from([0.0, 0.5, -37.25]) | st.floats(-300, 300, width=32))
    return BinaryInt8Params(op, *(draw(st.integers(-128, 127)) for _ in range(3)),
                            *pair(), *pair(), lo, hi, 0, 0,
                            draw(st.sampled_from([0.0, 1.0 / 256, 1.0]) | st.floats(0, 8, width=32)),
                            positive_scale(), positive_scale(), third, draw(st.sampled_from([0, 128])))


@settings(max_examples=100, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.sampled_from([1, 3, 17, 70]),
                       st.sampled_from([1, 7, 31]), st.sampled_from([1, 5, 31])),
       b_kind=st.sampled_from(["full", "per_channel", "scalar", "batch_1", "rows"]),
       p=binary_int8_params(), inplace=st.booleans(), seed=st.integers(0, 2**16))
def test_fast_binary_int8_is_bit_identical(devices, shape, b_kind, p, inplace, seed):
    """MUL, MAX, MIN, PRELU, MUL_FLOAT32; b of a's shape, one value per channel (PRELU's slope,
    an SE block's scale), one value, batch 1, or broadcast along w (the reference's
    path: the fast kernel declines)."""
    n, c, h, w = shape
    b_shape = {"full": shape, "per_channel": (n, c, 1, 1), "scalar": (1, 1, 1, 1),
               "batch_1": (1, c, h, w), "rows": (n, c, h, 1)}[b_kind]
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, shape, dtype=np.int8)
    b = rng.integers(-128, 128, b_shape, dtype=np.int8)
    assert_identical(devices, lambda dev: run_binary_int8(dev, a, b, p, inplace))


def float_op_expected(a, b, p):
    """onnxruntime's DequantizeLinear, float32 op, QuantizeLinear in numpy (every float32
    operation one IEEE rounding, the quotient rounded half to even): ADD_FLOAT, SUB_FLOAT,
    MUL_FLOAT written independently of the C."""
    f32 = np.float32
    x = (a.astype(np.int32) - p.input1_zero_point).astype(f32) * f32(p.input1_scale)
    y = (b.astype(np.int32) - p.input2_zero_point).astype(f32) * f32(p.input2_scale)
    value = {6: np.add, 7: np.subtract, 8: np.multiply}[p.op](x, y)
    q = np.rint(value / f32(p.output_scale)).astype(np.int64) + p.output_zero_point
    return np.clip(q, p.act_min, p.act_max).astype(np.int8)


def qlinear_add_expected(a, b, p):
    """onnxruntime's QLinearAdd (ADD_QLINEAR, ADD_QLINEAR_BROADCAST) in numpy from its
    statement in sophon_quant.h: fused multiply-adds as exact float128 sums rounded once
    to float32 (exact: each is a float32 times a 9-bit integer plus a float32)."""
    f32, ld, o = np.float32, np.longdouble, p.value_offset
    x = (a.astype(np.int32) + o).astype(ld)
    y = (b.astype(np.int32) + o).astype(ld)
    if p.op == 9:
        partial = (y * ld(f32(p.input2_scale)) + ld(f32(p.output_scale))).astype(f32)
    else:
        partial = f32(p.output_scale) + (y.astype(f32) * f32(p.input2_scale)).astype(f32)
    v = (x * ld(f32(p.input1_scale)) + partial.astype(ld)).astype(f32)
    return np.clip(np.rint(v).astype(np.int64) - o, p.act_min, p.act_max).astype(np.int8)


@pytest.mark.parametrize("op", [9, 10], ids=["add_qlinear", "add_qlinear_broadcast"])
@pytest.mark.parametrize("offset", [0, 128])
def test_binary_int8_qlinear_add_every_pair(devices, op, offset):
    """onnxruntime's QLinearAdd on every int8 pair, int8 and uint8 (offset 128), with the
    constants a real model gives (quant_eltwise.onnxruntime_qlinear_add_params) and with a
    constant on a half: the reference equals numpy's statement, the fast kernels the reference."""
    from tvm_sophon import quant_eltwise as qe

    grid = np.arange(-128, 128, dtype=np.int8)
    a = np.repeat(grid, 256).reshape(1, 64, 32, 32)
    b = np.tile(grid, 256).reshape(1, 64, 32, 32)
    real = qe.onnxruntime_qlinear_add_params(0.0213, -3, 0.0187, 9, 0.0311, 4, offset == 128, op == 10)
    for p in (BinaryInt8Params(op, real.input1_zero_point, real.input2_zero_point, real.output_zero_point,
                               0, 0, 0, 0, -128, 127, 0, 0, 0.0, real.input1_scale, real.input2_scale,
                               real.output_scale, real.value_offset),
              BinaryInt8Params(op, 0, 0, 0, 0, 0, 0, 0, -100, 90, 0, 0, 0.0, 0.5, 0.25, 0.5 - offset * 0.75, offset)):
        ref = assert_identical(devices, lambda dev: run_binary_int8(dev, a, b, p, False))
        np.testing.assert_array_equal(ref, qlinear_add_expected(a, b, p))


@pytest.mark.parametrize("op", [6, 7, 8], ids=["add_float", "sub_float", "mul_float"])
def test_binary_int8_float_ops_every_pair(devices, op):
    """onnxruntime's float Add / Sub / Mul of an ONNX QDQ model on every int8 pair, with
    scales whose quotients land on halves (0.5 / 0.25: ties to even) and scales of a real
    model: the reference equals numpy's float32 emulation, the fast kernels the reference."""
    grid = np.arange(-128, 128, dtype=np.int8)
    a = np.repeat(grid, 256).reshape(1, 64, 32, 32)
    b = np.tile(grid, 256).reshape(1, 64, 32, 32)
    for scales, zps, act in (((0.5, 0.25, 1.0), (-3, 7, 1), (-128, 127)),
                             ((0.0213, 0.0187, 0.0402), (5, -9, -2), (-128, 127)),
                             ((0.0213, 0.0187, 0.0131), (0, 0, -128), (-128, 100))):
        p = BinaryInt8Params(op, *zps, 0, 0, 0, 0, *act, 0, 0, 0.0, *scales, 0)
        ref = assert_identical(devices, lambda dev: run_binary_int8(dev, a, b, p, False))
        np.testing.assert_array_equal(ref, float_op_expected(a, b, p))


@pytest.mark.parametrize("op", [0, 1, 2, 3, 5, 6, 7, 8, 9, 10],
                         ids=["mul", "max", "min", "prelu", "mul_float32", "add_float", "sub_float", "mul_float",
                              "add_qlinear", "add_qlinear_broadcast"])
@pytest.mark.parametrize("inplace", [False, True])
def test_fast_binary_int8_per_channel_table(devices, op, inplace):
    """b one value per channel on planes of at least 1024 elements (an SE block's
    scale at 56x56): the fast kernel looks up a per-channel table of the 256 results;
    every byte value of a appears in every channel."""
    rng = np.random.default_rng(op)
    shape = (2, 5, 33, 40)
    a = rng.integers(-128, 128, shape, dtype=np.int8)
    a.reshape(2, 5, -1)[:, :, 40:296] = np.arange(-128, 128).astype(np.int8)
    b = rng.integers(-128, 128, (2, 5, 1, 1), dtype=np.int8)
    p = BinaryInt8Params(op, -3, 7, 5, 1 << 30, -6, 3 << 29, 1, -100, 120, 0, 0, 0.0123, 0.031, 0.017, 0.045, 128)
    assert_identical(devices, lambda dev: run_binary_int8(dev, a, b, p, inplace))


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.sampled_from([1, 3, 17]),
                       st.sampled_from([1, 7, 33]), st.sampled_from([1, 5, 40])),
       b_kind=st.sampled_from(["full", "full", "per_channel", "scalar", "rows"]),
       zps=st.tuples(*(st.integers(-128, 127) for _ in range(3))),
       multipliers=st.tuples(*(st.integers(1 << 30, (1 << 31) - 1) | st.sampled_from([0, (1 << 31) - 1])
                               for _ in range(3))),
       shifts=st.tuples(st.integers(-10, 0), st.integers(-10, 0), st.integers(-31, 0)),
       act=st.sampled_from([(-128, 127), (-20, 90)]), inplace=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fast_binary_int8_squared_difference(devices, shape, b_kind, zps, multipliers, shifts, act,
                                             inplace, seed):
    """SQUARED_DIFFERENCE (TFLite's squared_difference.cc, ConvNeXt's LayerNorm): planes
    shorter and longer than the 256 elements from which the fast kernel tabulates the
    input rescales, b of a's shape, one per channel (the per-channel table on planes of
    1024 and more), one value and along w (the reference's path); multipliers up to
    2^31 - 1 (squares that saturate) and output shifts over the whole checked range."""
    n, c, h, w = shape
    b_shape = {"full": shape, "per_channel": (n, c, 1, 1), "scalar": (1, 1, 1, 1),
               "rows": (n, c, h, 1)}[b_kind]
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, shape, dtype=np.int8)
    b = rng.integers(-128, 128, b_shape, dtype=np.int8)
    p = BinaryInt8Params(4, *zps, multipliers[0], shifts[0], multipliers[1], shifts[1], *act,
                         multipliers[2], shifts[2], 0.0)
    assert_identical(devices, lambda dev: run_binary_int8(dev, a, b, p, inplace))


# --------------------------------------------------------------- lut_int8

def run_lut_int8(dev: Device, x, table, inplace, window=(0, 0)):
    dev.next_addr = 0
    t_in = dev.put(x) if window == (0, 0) else dev.window(x.shape, *window, fill=x)
    t_out = t_in if inplace else dev.alloc(x.shape)
    params = LutInt8Params((ctypes.c_int8 * 256)(*table.tolist()))
    dev.check(dev.lib.sophon_tiu_lut_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                          ctypes.byref(params)))
    return dev.store(t_out)


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.sampled_from([1, 3, 70]),
                       st.sampled_from([1, 7, 31]), st.sampled_from([1, 5, 63, 64, 65])),
       inplace=st.booleans(), window=st.sampled_from([(0, 0), (1, 2)]), seed=st.integers(0, 2**16))
def test_fast_lut_int8_is_bit_identical(devices, shape, inplace, window, seed):
    """A random table (every entry distinct from its index's neighbours), planes that
    are not multiples of 64 (the masked tail), in place, and a row window (a channel
    stride that is not the plane's). Level 2 runs the AVX-512 lookup where the CPU has
    avx512vbmi, else the C one."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    table = rng.permutation(256).astype(np.uint8).view(np.int8)
    ref = assert_identical(devices, lambda dev: run_lut_int8(dev, x, table, inplace, window))
    np.testing.assert_array_equal(ref, table[x.view(np.uint8)])  # the definition, independently


# ------------------------------------------------------------ reduce_int8

def run_reduce_int8(dev: Device, x, kind, q):
    dev.next_addr = 0
    t_in = dev.put(x)
    t_out = dev.alloc((x.shape[0], x.shape[1], 1, x.shape[3]))
    dev.check(dev.lib.sophon_tiu_reduce_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                             kind, ctypes.byref(q) if q is not None else None))
    return dev.store(t_out)


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.sampled_from([1, 5, 33]),
                       st.sampled_from([1, 49, 400]), st.sampled_from([1, 3, 300])),
       kind=st.integers(0, 3), in_zp=st.sampled_from([-128, -3, 127]),
       act=st.sampled_from([(-128, 127), (-20, 60)]), rounding=st.sampled_from(["fixed", "float32"]),
       seed=st.integers(0, 2**16))
def test_fast_reduce_int8_is_bit_identical(devices, shape, kind, in_zp, act, rounding, seed):
    """SUM, MEAN, MAX, MIN over h: one column (a global pool laid out as (N, C, HW, 1)),
    a few, and more than the kernel's 256-column chunk; all inputs at the far end
    from the zero point in one channel (the largest sums). "float32" is onnxruntime's
    QLinearGlobalAveragePool rounding: one float32 scale, 1 / H folded in for a MEAN."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    x[:, 0] = 127 if in_zp < 0 else -128
    q = None if kind >= 2 else make_requant(rng, 1, shape[2], False, in_zp, 5, act)
    if q is not None and rounding == "float32":
        (multiplier,), (shift,) = q._keep
        # not the fixed-point multiplier's value: a kernel that took that one would differ
        real = 0.77 * multiplier * 2.0 ** (shift - 31) / (shape[2] if kind == 1 else 1)
        scale = (ctypes.c_double * 1)(float(np.float32(real)))
        q.rounding, q.scale = ROUNDINGS["float32"], ctypes.cast(scale, ctypes.POINTER(ctypes.c_double))
        q._keep += (scale,)
    assert_identical(devices, lambda dev: run_reduce_int8(dev, x, kind, q))


# ------------------------------------------------------------------- pool

def run_pool(dev: Device, x, params, out_hw, act):
    dev.next_addr = 0
    t_in = dev.put(x)
    t_out = dev.alloc((x.shape[0], x.shape[1], *out_hw))
    dev.check(dev.lib.sophon_tiu_pool2d_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                             ctypes.byref(params), *act))
    return dev.store(t_out)


@st.composite
def pool_cases(draw):
    kind = draw(st.sampled_from([POOL_MAX, POOL_AVG]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    # padding below the dilated kernel, so every window holds an input tap (AVG)
    pad = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)),
           draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pad[0] - pad[2]), 20))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pad[1] - pad[3]), 40))
    span_h = h + pad[0] + pad[2] - dh * (kh - 1) - 1
    span_w = w + pad[1] + pad[3] - dw * (kw - 1) - 1
    # ceil mode: one more window when it starts inside the padded input
    ceil = draw(st.booleans())
    oh, ow = span_h // sh + 1, span_w // sw + 1
    if ceil and span_h % sh and oh * sh < h + pad[0] + pad[2]:
        oh += 1
    if ceil and span_w % sw and ow * sw < w + pad[1] + pad[3]:
        ow += 1
    return dict(kind=kind, params=PoolParamsStruct(kind, kh, kw, sh, sw, *pad, dh, dw, 0),
                shape=(draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 17, 70])), h, w),
                out_hw=(oh, ow), act=draw(st.sampled_from([(-128, 127), (0, 127), (-10, 10)])),
                seed=draw(st.integers(0, 2**16)))


def _windows_have_taps(case) -> bool:
    p = case["params"]
    _, _, h, w = case["shape"]
    oh, ow = case["out_hw"]
    rows = all(any(0 <= oy * p.stride_h - p.pad_top + ky * p.dilation_h < h
                   for ky in range(p.kernel_h)) for oy in range(oh))
    cols = all(any(0 <= ox * p.stride_w - p.pad_left + kx * p.dilation_w < w
                   for kx in range(p.kernel_w)) for ox in range(ow))
    return rows and cols


@settings(max_examples=100, deadline=None)
@given(case=pool_cases())
def test_fast_pool2d_int8_is_bit_identical(devices, case):
    if case["kind"] == POOL_AVG and not _windows_have_taps(case):
        return  # rejected by the instruction (tests/test_int8_kernels.py)
    x = np.random.default_rng(case["seed"]).integers(-128, 128, case["shape"], dtype=np.int8)
    assert_identical(devices, lambda dev: run_pool(dev, x, case["params"], case["out_hw"],
                                                   case["act"]))


def test_fast_pool2d_int8_resnet_stem(devices):
    """ResNet's 3x3/2 max pool (pad 1) and a global average pool."""
    x = np.random.default_rng(3).integers(-128, 128, (1, 64, 112, 112), dtype=np.int8)
    params = PoolParamsStruct(POOL_MAX, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0)
    assert_identical(devices, lambda dev: run_pool(dev, x, params, (56, 56), (-128, 127)))
    x = np.random.default_rng(4).integers(-128, 128, (1, 512, 7, 7), dtype=np.int8)
    params = PoolParamsStruct(POOL_AVG, 7, 7, 1, 1, 0, 0, 0, 0, 1, 1, 0)
    assert_identical(devices, lambda dev: run_pool(dev, x, params, (1, 1), (-128, 127)))
