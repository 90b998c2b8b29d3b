"""The emulated chip's INT8 instructions (runtime/sophon_quant.h), called through
ctypes, against an independent numpy statement of TFLite's integer arithmetic
(reference/integer_ops conv.h, depthwise_conv.h, fully_connected.h, add.h,
pooling.h; common.h's fixed-point helpers; quantization_util.cc's
QuantizeMultiplier).

The numpy side is written from the TFLite rules, not from the C: it pads with the
input zero point instead of skipping taps, uses numpy's two's-complement ``&`` and
arithmetic ``>>`` for RoundingDivideByPOT, and vectorises over whole tensors.
Where TFLite's int32 arithmetic would overflow (undefined behaviour there) both
sides saturate to int32, as runtime/reference/sophon_tiu_conv_int8.c documents.
"""
from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_sophon import get_chip
from tvm_sophon.cost import ChipStruct, ConvParamsStruct, LocalStruct, PoolParamsStruct, runtime_library
from int8_structs import AddParams, GlobalStruct, Requant

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
F32, I8, I32 = 0, 1, 2
ALIGNED, COMPACT = 0, 1
OK, ERR_ARGUMENT, ERR_BOUNDS, ERR_UNSUPPORTED = 0, 1, 2, 3
POOL_MAX, POOL_AVG = 0, 1

# ------------------------------------------------------------ ctypes mirrors


class CountersStruct(ctypes.Structure):  # sophon_counters
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "macs", "tiu_instructions", "gdma_instructions", "bytes_loaded", "bytes_stored",
        "tiu_cycles", "gdma_cycles", "lmem_peak_bytes", "timesteps", "cycles")]


@pytest.fixture(scope="module")
def lib():
    lib = runtime_library()
    lib.sophon_device_error.restype = ctypes.c_char_p
    lib.sophon_device_counters.restype = ctypes.POINTER(CountersStruct)
    lib.sophon_local_lane_bytes.restype = ctypes.c_int64
    for name in ("sophon_cost_conv2d", "sophon_cost_fc", "sophon_cost_pool2d",
                 "sophon_cost_binary"):
        getattr(lib, name).restype = ctypes.c_uint64
    return lib


class Device:
    """A device of one chip profile; tensors are placed one after the other."""

    def __init__(self, lib, chip_name: str = "bm1684"):
        self.lib = lib
        self.chip = ChipStruct.of(get_chip(chip_name))
        handle = ctypes.c_void_p()
        assert lib.sophon_device_create(ctypes.byref(self.chip), ctypes.byref(handle)) == OK
        self.handle = handle
        self.next_addr = 0

    def close(self):
        self.lib.sophon_device_destroy(self.handle)

    def error(self) -> str:
        return self.lib.sophon_device_error(self.handle).decode()

    def counters(self) -> CountersStruct:
        return self.lib.sophon_device_counters(self.handle).contents

    def local(self, shape, dtype, layout=ALIGNED) -> LocalStruct:
        n, c, h, w = shape
        t = LocalStruct(self.next_addr, n, c, h, w, dtype, layout, 0)
        size = self.lib.sophon_local_lane_bytes(ctypes.byref(self.chip), ctypes.byref(t))
        assert size > 0
        self.next_addr += (size + 63) // 64 * 64
        assert self.next_addr <= self.chip.lmem_bytes_per_lane
        return t

    def _global(self, array: np.ndarray, dtype: int) -> GlobalStruct:
        return GlobalStruct.of(array, dtype)

    def put(self, array: np.ndarray, dtype: int, layout=ALIGNED) -> LocalStruct:
        array = np.ascontiguousarray(array, dtype=np.int8 if dtype == I8 else np.int32)
        t = self.local(array.shape, dtype, layout)
        g = self._global(array, dtype)
        assert self.lib.sophon_gdma_load(self.handle, ctypes.byref(t), ctypes.byref(g)) == OK, self.error()
        return t

    def get(self, t: LocalStruct) -> np.ndarray:
        out = np.zeros((t.n, t.c, t.h, t.w), dtype=np.int8 if t.dtype == I8 else np.int32)
        g = self._global(out, t.dtype)
        assert self.lib.sophon_gdma_store(self.handle, ctypes.byref(g), ctypes.byref(t)) == OK, self.error()
        return out


@pytest.fixture
def dev(lib):
    d = Device(lib)
    yield d
    d.close()


def int32_array(values) -> ctypes.Array:
    values = [int(v) for v in np.atleast_1d(values)]
    return (ctypes.c_int32 * len(values))(*values)


def make_requant(in_zp, out_zp, multipliers, shifts, act=(-128, 127), per_channel=True):
    m, s = int32_array(multipliers), int32_array(shifts)
    q = Requant(in_zp, out_zp, act[0], act[1], int(per_channel),
                ctypes.cast(m, ctypes.POINTER(ctypes.c_int32)),
                ctypes.cast(s, ctypes.POINTER(ctypes.c_int32)))
    q._keep = (m, s)  # the arrays must outlive the call
    return q


# ------------------------------------------------------ numpy reference (TFLite)


def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul, elementwise, int64 in and out."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    high = np.where(total >= 0, total // (1 << 31), -((-total) // (1 << 31)))  # truncate
    return np.where((a == I32_MIN) & (b == I32_MIN), I32_MAX, high).astype(np.int64)


def rdbp(x, exponent):
    """RoundingDivideByPOT with two's-complement & and arithmetic >>."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def mbqm(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier (double rounding); x * 2^left_shift saturates."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = np.clip(np.asarray(x, dtype=np.int64) * (np.int64(1) << left), I32_MIN, I32_MAX)
    return rdbp(srdhm(shifted, multiplier), right)


def quantize_multiplier(real: float) -> tuple[int, int]:
    if real == 0.0:
        return 0, 0
    fraction, exponent = math.frexp(real)
    q = int(math.floor(abs(fraction) * (1 << 31) + 0.5)) * (1 if fraction > 0 else -1)  # half away
    if q == 1 << 31:
        q //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    if exponent > 30:
        return I32_MAX, 30
    return q, exponent


def requantize(acc, multipliers, shifts, out_zp, act):
    """acc (N, OC, ...) int64 with bias already added; per-channel arrays over OC."""
    extra = (1,) * (acc.ndim - 2)
    m = np.asarray(multipliers, dtype=np.int64).reshape((1, -1) + extra)
    s = np.asarray(shifts, dtype=np.int64).reshape((1, -1) + extra)
    acc = np.clip(acc, I32_MIN, I32_MAX)  # bias add saturates (TFLite: UB)
    return np.clip(mbqm(acc, m, s) + out_zp, act[0], act[1]).astype(np.int8)


def conv_reference(x, weight, bias, stride, pad, dilation, groups, in_zp, mult, shift, out_zp,
                   act=(-128, 127)):
    """x (N, IC, H, W) int8; weight (OC, IC/groups, KH, KW); pad (t, l, b, r)."""
    n, ic, h, w = x.shape
    oc, icg, kh, kw = weight.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dilation, pad
    padded = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pt, pb), (pl, pr)),
                    constant_values=in_zp) - in_zp  # padding reads the zero point
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    ocg = oc // groups
    wg = weight.astype(np.int64).reshape(groups, ocg, icg, kh, kw)
    acc = np.zeros((n, groups, ocg, oh, ow), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            patch = padded[:, :, ky * dh: ky * dh + sh * (oh - 1) + 1: sh,
                           kx * dw: kx * dw + sw * (ow - 1) + 1: sw]
            patch = patch.reshape(n, groups, icg, oh, ow)
            acc += np.einsum("ngiyx,goi->ngoyx", patch, wg[:, :, :, ky, kx])
    acc = acc.reshape(n, oc, oh, ow)
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64).reshape(1, oc, 1, 1)
    return requantize(acc, mult, shift, out_zp, act)


def fc_reference(x, weight, bias, in_zp, mult, shift, out_zp, act=(-128, 127)):
    acc = (x.astype(np.int64) - in_zp) @ weight.astype(np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)[None, :]
    return requantize(acc, mult, shift, out_zp, act)


def add_reference(a, b, p: AddParams):
    def scaled(v, zp, m, s):
        return rdbp(srdhm((v.astype(np.int64) - zp) * (1 << p.left_shift), m), -s)

    total = (scaled(a, p.input1_zero_point, p.input1_multiplier, p.input1_shift) +
             scaled(b, p.input2_zero_point, p.input2_multiplier, p.input2_shift))
    out = rdbp(srdhm(total, p.output_multiplier), -p.output_shift) + p.output_zero_point
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)


def pool_reference(x, kind, kernel, stride, pad, dilation, out_hw, act=(-128, 127)):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = kernel, stride, pad, dilation
    oh, ow = out_hw
    out = np.zeros((n, c, oh, ow), dtype=np.int64)
    for oy in range(oh):
        ys = [oy * sh - pt + ky * dh for ky in range(kh)]
        ys = [y for y in ys if 0 <= y < h]
        for ox in range(ow):
            xs = [ox * sw - pl + kx * dw for kx in range(kw)]
            xs = [xx for xx in xs if 0 <= xx < w]
            taps = x[:, :, ys][:, :, :, xs].astype(np.int64).reshape(n, c, -1)
            if kind == POOL_MAX:
                out[:, :, oy, ox] = np.max(taps, axis=2, initial=-128)
            else:
                total, count = taps.sum(axis=2), taps.shape[2]
                assert count > 0
                out[:, :, oy, ox] = np.where(total > 0, (total + count // 2) // count,
                                             -((-total + count // 2) // count))
    return np.clip(out, act[0], act[1]).astype(np.int8)


# ------------------------------------------------------------ helpers


def random_multipliers(rng, count, shift_center):
    mult = rng.integers(1 << 30, (1 << 31) - 1, size=count, dtype=np.int64)
    shift = np.clip(shift_center + rng.integers(-1, 2, size=count), -31, 30)
    return mult, shift


def run_conv(dev, x, weight, bias, stride, pad, dilation, groups, q, bias_layout=COMPACT):
    n, ic, h, w = x.shape
    oc, icg, kh, kw = weight.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dilation, pad
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    t_in = dev.put(x, I8)
    t_w = dev.put(weight.reshape(1, oc, icg, kh * kw), I8, COMPACT)
    t_b = dev.put(np.asarray(bias).reshape(1, oc, 1, 1), I32, bias_layout) if bias is not None else None
    t_out = dev.local((n, oc, oh, ow), I8)
    p = ConvParamsStruct(kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, groups)
    status = dev.lib.sophon_tiu_conv2d_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                            ctypes.byref(t_w),
                                            ctypes.byref(t_b) if t_b is not None else None,
                                            ctypes.byref(p), ctypes.byref(q))
    assert status == OK, dev.error()
    return dev.get(t_out), (t_out, t_in, p)


def int8s(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)


# ------------------------------------------------------------ fixed point


def test_fixed_point_helpers_match_tflite_rules(lib):
    rng = np.random.default_rng(1)
    edges = [0, 1, -1, 2, -2, 3, -3, I32_MAX, I32_MIN, I32_MAX - 1, I32_MIN + 1, 1 << 30, -(1 << 30)]
    xs = edges + [int(v) for v in rng.integers(I32_MIN, I32_MAX, size=300, dtype=np.int64)] + \
        [int(v) for v in rng.integers(-70000, 70000, size=300)]
    mults = [0, 1 << 30, (1 << 31) - 1, 1610612736, I32_MIN] + \
        [int(v) for v in rng.integers(1 << 30, 1 << 31, size=20, dtype=np.int64)]
    for shift in (-31, -20, -8, -1, 0, 1, 5, 30):
        for m in mults:
            want = mbqm(xs, m, shift)
            got = [lib.sophon_multiply_by_quantized_multiplier(x, m, shift) for x in xs]
            assert got == [int(v) for v in want], (m, shift)


def test_double_scale_matches_python_statement(lib):
    # TFLite's reference FULLY_CONNECTED: round(acc * scale) in double, halves away from
    # zero; the C function against tvm_sophon.quant's (exact, via Decimal) statement
    from tvm_sophon.quant import multiply_by_double_scale
    fn = lib.sophon_multiply_by_double_scale
    fn.argtypes, fn.restype = [ctypes.c_int32, ctypes.c_double], ctypes.c_int32
    rng = np.random.default_rng(3)
    xs = [0, 1, -1, 3, -3, 6, -6, I32_MAX, I32_MIN] + [int(v) for v in rng.integers(-70000, 70000, size=200)]
    scales = [0.0, 0.5, 0.375, 1.0, 4.0, 2.0 ** -31] + [float(v) for v in rng.uniform(1e-4, 0.1, size=20)]
    for scale in scales:
        assert [fn(x, scale) for x in xs] == [multiply_by_double_scale(x, scale) for x in xs], scale
    assert [multiply_by_double_scale(x, 0.5) for x in (3, -3, 5, -5)] == [2, -2, 3, -3]


def test_rounding_ties():
    # the high mul rounds ties up, the final shift away from zero (TFLite, gemmlowp)
    assert srdhm(3, 1 << 30) == 2 and srdhm(-3, 1 << 30) == -1
    assert rdbp(3, 1) == 2 and rdbp(-3, 1) == -2 and rdbp(-5, 2) == -1 and rdbp(-6, 2) == -2


def test_quantize_multiplier(lib):
    rng = np.random.default_rng(2)
    reals = [0.0, 0.5, 1.0, 0.75, 0.1, 1e-3, 2.0 ** -31, 2.0 ** -32, 2.0 ** -33, 1e-11,
             1.0 - 1e-12, 3.0, 2.0 ** 29, 2.0 ** 30, 2.0 ** 31, 1e12,
             # ties in fraction * 2^31: 32 significant bits ending in .5
             ((1 << 31) + 1) / 2.0 ** 32, ((1 << 31) + 3) / 2.0 ** 40]
    reals += list(np.exp(rng.uniform(-25, 5, size=200)))
    for real in reals:
        m, s = ctypes.c_int32(), ctypes.c_int32()
        lib.sophon_quantize_multiplier(ctypes.c_double(real), ctypes.byref(m), ctypes.byref(s))
        assert (m.value, s.value) == quantize_multiplier(real), real


# ------------------------------------------------------------------ conv


CHANNELS = st.sampled_from([1, 3, 17, 64, 70])


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    ic = draw(CHANNELS)
    if kind == "dense":
        groups, oc = 1, draw(CHANNELS)
    elif kind == "depthwise":
        groups, oc = ic, ic * draw(st.sampled_from([1, 2]))
    else:
        ic = draw(st.sampled_from([6, 34]))
        groups, oc = 2, draw(st.sampled_from([2, 6, 70]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pad[0] - pad[2]), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pad[1] - pad[3]), 7))
    return dict(n=draw(st.integers(1, 2)), ic=ic, oc=oc, groups=groups, kernel=(kh, kw),
                stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), dilation=(dh, dw),
                pad=pad, hw=(h, w), in_zp=draw(st.integers(-128, 127)),
                out_zp=draw(st.integers(-128, 127)), per_channel=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 32 - 1)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases())
def test_conv2d_int8_matches_reference(lib, case):
    rng = np.random.default_rng(case["seed"])
    kh, kw = case["kernel"]
    ic, oc, groups = case["ic"], case["oc"], case["groups"]
    x = int8s(rng, (case["n"], ic, *case["hw"]))
    weight = int8s(rng, (oc, ic // groups, kh, kw))
    bias = rng.integers(-30000, 30000, size=oc)
    k = ic // groups * kh * kw
    mult, shift = random_multipliers(rng, oc, -8 - int(math.log2(k) / 2))
    if not case["per_channel"]:
        mult, shift = mult[:1], shift[:1]
    q = make_requant(case["in_zp"], case["out_zp"], mult, shift, per_channel=case["per_channel"])
    dev = Device(lib)
    try:
        got, (t_out, t_in, p) = run_conv(dev, x, weight, bias, case["stride"], case["pad"],
                                         case["dilation"], groups, q)
        counters = dev.counters()
        assert counters.tiu_cycles == lib.sophon_cost_conv2d(ctypes.byref(dev.chip), ctypes.byref(t_out),
                                                             ctypes.byref(t_in), ctypes.byref(p))
        assert counters.macs == int(np.prod(got.shape)) * k
    finally:
        dev.close()
    mult_all = np.broadcast_to(mult, (oc,))
    shift_all = np.broadcast_to(shift, (oc,))
    want = conv_reference(x, weight, bias, case["stride"], case["pad"], case["dilation"], groups,
                          case["in_zp"], mult_all, shift_all, case["out_zp"])
    np.testing.assert_array_equal(got, want)


def test_conv2d_int8_saturation_and_positive_shifts(dev):
    """Extreme inputs and weights, positive shifts, huge biases: everything clamps the
    same way on both sides (and relu6-like act bounds)."""
    rng = np.random.default_rng(3)
    x = np.where(rng.random((1, 17, 5, 5)) < 0.5, -128, 127).astype(np.int8)
    weight = np.where(rng.random((70, 17, 3, 3)) < 0.5, -128, 127).astype(np.int8)
    bias = np.array([I32_MAX, I32_MIN, 0, 1, -1] * 14)
    mult = np.full(70, (1 << 31) - 1)
    shift = np.array([30, 1, 0, -1, -31, -20, -10] * 10)
    for in_zp, act in ((-128, (-128, 127)), (127, (0, 6)), (0, (-128, -128))):
        q = make_requant(in_zp, -5, mult, shift, act=act)
        got, _ = run_conv(dev, x, weight, bias, (1, 1), (1, 1, 1, 1), (1, 1), 1, q)
        want = conv_reference(x, weight, bias, (1, 1), (1, 1, 1, 1), (1, 1), 1, in_zp, mult, shift,
                              -5, act)
        np.testing.assert_array_equal(got, want)


def test_conv2d_int8_rounding_ties(dev):
    """acc * 0.5 lands on .5 exactly: the high mul rounds up, the shift away from zero."""
    x = np.arange(-4, 5, dtype=np.int8).reshape(1, 9, 1, 1)
    weight = np.eye(9, dtype=np.int8).reshape(9, 9, 1, 1) * 3
    for shift in (0, -1, -2):
        q = make_requant(0, 0, [1 << 30] * 9, [shift] * 9)
        got, _ = run_conv(dev, x, weight, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, q)
        want = conv_reference(x, weight, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, 0, [1 << 30] * 9,
                              [shift] * 9, 0)
        np.testing.assert_array_equal(got, want)
    # by hand for shift 0: 3x * 0.5 for x = -4..4: -6, -4.5 -> -4, -3, -1.5 -> -1, 0, 2 (1.5), 3, 5 (4.5), 6
    q = make_requant(0, 0, [1 << 30] * 9, [0] * 9)
    got, _ = run_conv(dev, x, weight, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, q)
    assert got.ravel().tolist() == [-6, -4, -3, -1, 0, 2, 3, 5, 6]


# -------------------------------------------------------------------- fc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 3), k=st.sampled_from([1, 3, 17, 64, 70, 200]),
       n=st.sampled_from([1, 3, 17, 70]), in_zp=st.integers(-128, 127),
       out_zp=st.integers(-128, 127), per_channel=st.booleans(), with_bias=st.booleans(),
       seed=st.integers(0, 2 ** 32 - 1))
def test_fc_int8_matches_reference(lib, m, k, n, in_zp, out_zp, per_channel, with_bias, seed):
    rng = np.random.default_rng(seed)
    x = int8s(rng, (m, k))
    weight = int8s(rng, (n, k))
    bias = rng.integers(-100000, 100000, size=n) if with_bias else None
    mult, shift = random_multipliers(rng, n if per_channel else 1, -8 - int(math.log2(k) / 2))
    q = make_requant(in_zp, out_zp, mult, shift, per_channel=per_channel)
    dev = Device(lib)
    try:
        t_in = dev.put(x.reshape(m, k, 1, 1), I8, COMPACT)
        t_w = dev.put(weight.reshape(1, n, k, 1), I8, COMPACT)
        t_b = dev.put(bias.reshape(1, n, 1, 1), I32, COMPACT) if with_bias else None
        t_out = dev.local((m, n, 1, 1), I8, COMPACT)
        status = lib.sophon_tiu_fc_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                        ctypes.byref(t_w), ctypes.byref(t_b) if with_bias else None,
                                        ctypes.byref(q))
        assert status == OK, dev.error()
        got = dev.get(t_out).reshape(m, n)
        assert dev.counters().macs == m * n * k
        assert dev.counters().tiu_cycles == lib.sophon_cost_fc(ctypes.byref(dev.chip),
                                                               ctypes.byref(t_out), ctypes.byref(t_in))
    finally:
        dev.close()
    want = fc_reference(x, weight, bias, in_zp, np.broadcast_to(mult, (n,)),
                        np.broadcast_to(shift, (n,)), out_zp)
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------- add


def tflite_add_params(scale1, scale2, scale_out, zp1, zp2, zp_out, act=(-128, 127)) -> AddParams:
    """The parameters TFLite's add.cc derives from the tensors' scales."""
    left_shift = 20
    twice_max = 2 * max(scale1, scale2)
    m1, s1 = quantize_multiplier(scale1 / twice_max)
    m2, s2 = quantize_multiplier(scale2 / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * scale_out))
    return AddParams(left_shift, zp1, zp2, zp_out, m1, s1, m2, s2, mo, so, act[0], act[1])


@st.composite
def add_cases(draw):
    shape = (draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 17, 70])),
             draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    b_shape = tuple(d if draw(st.booleans()) else 1 for d in shape)
    return dict(shape=shape, b_shape=b_shape,
                scales=[draw(st.floats(1e-3, 1.0)) for _ in range(3)],
                zps=[draw(st.integers(-128, 127)) for _ in range(3)],
                act=draw(st.sampled_from([(-128, 127), (-20, 127), (-128, -128), (0, 50)])),
                inplace=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 32 - 1)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=add_cases())
def test_add_int8_matches_reference(lib, case):
    rng = np.random.default_rng(case["seed"])
    a = int8s(rng, case["shape"])
    b = int8s(rng, case["b_shape"])
    p = tflite_add_params(*case["scales"], *case["zps"], act=case["act"])
    dev = Device(lib)
    try:
        t_a = dev.put(a, I8)
        t_b = dev.put(b, I8)
        t_out = t_a if case["inplace"] else dev.local(case["shape"], I8)
        status = lib.sophon_tiu_add_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_a),
                                         ctypes.byref(t_b), ctypes.byref(p))
        assert status == OK, dev.error()
        got = dev.get(t_out)
        assert dev.counters().tiu_cycles == lib.sophon_cost_binary(ctypes.byref(dev.chip),
                                                                   ctypes.byref(t_out), None)
    finally:
        dev.close()
    np.testing.assert_array_equal(got, add_reference(a, b, p))


def test_add_int8_extreme_params(dev):
    """Every int8 pair, with the largest left shift and multipliers the checks allow;
    the last two are TFLite's SUB (input 2's multiplier negated, as its sub.cc does)."""
    grid = np.arange(-128, 128, dtype=np.int8)
    a = np.repeat(grid, 256).reshape(1, 64, 32, 32)
    b = np.tile(grid, 256).reshape(1, 64, 32, 32)
    for p in (AddParams(22, -128, 127, -128, I32_MAX, 0, I32_MAX, 0, I32_MAX, 0, -128, 127),
              AddParams(20, 127, -128, 127, 1 << 30, -31, I32_MAX, -1, 1 << 30, -5, -128, 127),
              AddParams(0, 3, -3, 0, 1 << 30, 0, 1 << 30, 0, 1 << 30, 0, -128, 127),
              AddParams(22, -128, 127, -128, I32_MAX, 0, -I32_MAX, 0, I32_MAX, 0, -128, 127),
              AddParams(20, -3, 7, 1, 1518500250, -1, -1832780120, -2, 1431655765, -17, -128, 127)):
        t_a, t_b, t_out = dev.put(a, I8), dev.put(b, I8), dev.local(a.shape, I8)
        assert dev.lib.sophon_tiu_add_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_a),
                                           ctypes.byref(t_b), ctypes.byref(p)) == OK, dev.error()
        np.testing.assert_array_equal(dev.get(t_out), add_reference(a, b, p))
        dev.next_addr = 0


# ------------------------------------------------------------------ pool


@st.composite
def pool_cases(draw):
    kind = draw(st.sampled_from([POOL_MAX, POOL_AVG]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    # padding below the dilated kernel so every window holds an input tap
    pad = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)),
           draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pad[0] - pad[2]), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pad[1] - pad[3]), 7))
    oh = (h + pad[0] + pad[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pad[1] + pad[3] - dw * (kw - 1) - 1) // sw + 1
    return dict(kind=kind, kernel=(kh, kw), stride=(sh, sw), dilation=(dh, dw), pad=pad,
                shape=(draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 17, 70])), h, w),
                out_hw=(oh, ow), act=draw(st.sampled_from([(-128, 127), (0, 127), (-10, 10)])),
                seed=draw(st.integers(0, 2 ** 32 - 1)))


def _windows_have_taps(case) -> bool:
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, _, _) = case["kernel"], case["stride"], case["dilation"], case["pad"]
    _, _, h, w = case["shape"]
    oh, ow = case["out_hw"]
    rows = all(any(0 <= oy * sh - pt + ky * dh < h for ky in range(kh)) for oy in range(oh))
    cols = all(any(0 <= ox * sw - pl + kx * dw < w for kx in range(kw)) for ox in range(ow))
    return rows and cols


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=pool_cases())
def test_pool2d_int8_matches_reference(lib, case):
    rng = np.random.default_rng(case["seed"])
    x = int8s(rng, case["shape"])
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = case["kernel"], case["stride"], case["dilation"], case["pad"]
    p = PoolParamsStruct(case["kind"], kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, 0)
    dev = Device(lib)
    try:
        t_in = dev.put(x, I8)
        t_out = dev.local((x.shape[0], x.shape[1], *case["out_hw"]), I8)
        status = lib.sophon_tiu_pool2d_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                            ctypes.byref(p), *case["act"])
        if case["kind"] == POOL_AVG and not _windows_have_taps(case):
            assert status == ERR_ARGUMENT and "padding only" in dev.error()
            return
        assert status == OK, dev.error()
        got = dev.get(t_out)
        assert dev.counters().tiu_cycles == lib.sophon_cost_pool2d(ctypes.byref(dev.chip),
                                                                   ctypes.byref(t_out), ctypes.byref(p))
    finally:
        dev.close()
    want = pool_reference(x, case["kind"], case["kernel"], case["stride"], case["pad"],
                          case["dilation"], case["out_hw"], case["act"])
    np.testing.assert_array_equal(got, want)


def test_avg_pool_rounds_half_away_from_zero(dev):
    # pairs summing to odd numbers: +-0.5, +-1.5, +-63.5
    x = np.array([[0, 1], [0, -1], [1, 2], [-1, -2], [127, 0], [-128, 1]], dtype=np.int8)
    x = x.reshape(1, 6, 1, 2)
    p = PoolParamsStruct(POOL_AVG, 1, 2, 1, 1, 0, 0, 0, 0, 1, 1, 0)
    t_in, t_out = dev.put(x, I8), dev.local((1, 6, 1, 1), I8)
    assert dev.lib.sophon_tiu_pool2d_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                          ctypes.byref(p), -128, 127) == OK, dev.error()
    assert dev.get(t_out).ravel().tolist() == [1, -1, 2, -2, 64, -64]


# ---------------------------------------------------------------- errors


def test_chip_without_int8_is_rejected(lib):
    dev = Device(lib, "bm1680")
    try:
        x = dev.put(np.zeros((1, 3, 4, 4), np.int8), I8)
        out = dev.local((1, 3, 4, 4), I8)
        p = PoolParamsStruct(POOL_MAX, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0)
        status = lib.sophon_tiu_pool2d_int8(dev.handle, ctypes.byref(out), ctypes.byref(x),
                                            ctypes.byref(p), -128, 127)
        assert status == ERR_UNSUPPORTED
        assert "bm1680" in dev.error() and "bm1684" in dev.error()
        add = AddParams(20, 0, 0, 0, 1 << 30, 0, 1 << 30, 0, 1 << 30, 0, -128, 127)
        assert lib.sophon_tiu_add_int8(dev.handle, ctypes.byref(out), ctypes.byref(x),
                                       ctypes.byref(x), ctypes.byref(add)) == ERR_UNSUPPORTED
    finally:
        dev.close()


def test_invalid_requant_is_rejected(dev):
    x = np.zeros((1, 3, 3, 3), np.int8)
    weight = np.zeros((3, 3, 1, 1), np.int8)
    for mult, shift, per_channel, act, message in (
            ([1 << 30] * 3, [0, 31, 0], True, (-128, 127), "shift[1] 31 is outside [-31, 30]"),
            ([1 << 30] * 3, [-32, 0, 0], True, (-128, 127), "shift[0] -32"),
            ([-1, 0, 0], [0] * 3, True, (-128, 127), "negative"),
            ([1 << 30], [0], False, (10, 5), "act_min 10 > act_max 5"),
            ([1 << 30], [0], False, (-129, 5), "act_min -129")):
        q = make_requant(0, 0, mult, shift, act=act, per_channel=per_channel)
        with pytest.raises(AssertionError):
            run_conv(dev, x, weight, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, q)
        assert message in dev.error()
        dev.next_addr = 0


def test_wrong_dtypes_are_rejected(dev):
    x = dev.put(np.zeros((1, 3, 2, 2), np.int32), I32)
    w = dev.put(np.zeros((1, 3, 3, 1), np.int8), I8, COMPACT)
    out = dev.local((1, 3, 1, 1), I8, COMPACT)
    q = make_requant(0, 0, [1 << 30], [0], per_channel=False)
    x_fc = LocalStruct(x.addr, 1, 3, 1, 1, I32, COMPACT, 0)
    assert dev.lib.sophon_tiu_fc_int8(dev.handle, ctypes.byref(out), ctypes.byref(x_fc),
                                      ctypes.byref(w), None, ctypes.byref(q)) == ERR_ARGUMENT
    assert "in dtype I32 is not I8" in dev.error()
