"""The Winograd F(2x2, 3x3) conv (runtime/fast/sophon_fast_winograd.c) against the
reference kernel, driven one instruction at a time through ctypes (the driver of
test_fast_kernels.py).

It is not bit-identical to the reference: the bound, derived in the file's header, is

    |fast - ref| <= (K + 10) u S + 9 K u sum_k |a_k b_k|   (+ the rounding of bias/act)

with u = 2^-24, K the input channels, sum_k |a_k b_k| the direct conv of |input| and
|weight| (the reference kernel run on them) and S the same conv done Winograd's way
on absolute values: per 2x2 output tile |A^T| [sum_ic (|G||g||G^T|) . (|B^T||d||B|)] |A|
(computed in float64 with numpy, independently of the runtime: winograd_magnitude
in test_fast_kernels.py). Every device
that takes the Winograd path (AVX-512 where the host has it, and plain C) is held to
it, the AVX2 devices (which keep the direct kernel) to the direct kernel's bound of
test_fast_kernels.py; 1 and 2 threads must give the same bits. That the instruction
did take the Winograd path is checked by calling its entry point on the same operands:
it must accept them (return 0) and write the instruction's bits.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from test_fast_kernels import (COMPACT, EPS, ISAS, SIGMOID_FAMILY, SIGMOID_ULPS, GlobalStruct,
                               conv_args, conv_operands, conv_params, device_set, winograd_magnitude)
from tvm_sophon.cost import ConvParamsStruct, LocalStruct


@pytest.fixture(scope="module")
def devices():
    yield from device_set()


def winograd_entry(dev):
    fn = dev.lib.sophon_fast_winograd_f32
    P = ctypes.POINTER
    fn.argtypes = [ctypes.c_void_p, P(LocalStruct), P(LocalStruct), P(LocalStruct), P(LocalStruct),
                   P(ConvParamsStruct), ctypes.c_void_p]
    return fn


def run_case(dev, x, weight, bias, params, out_shape, windows, *, constant=False, entry=False):
    """The conv instruction on dev (weights by a deferred constant load when `constant`);
    with `entry`, also the Winograd entry point on the same operands: (instruction
    output, entry status, entry output)."""
    in_window, out_window = windows

    def load_constant(t_w, array):
        # the promise of a constant load: the DDR view does not change while the device
        # lives, so its array must not be freed (its address reused by the next case's
        # weight would find this one's packed U)
        array = np.ascontiguousarray(array, np.float32)
        dev.__dict__.setdefault("constants", []).append(array)
        dev.check(dev.lib.sophon_gdma_load_constant(dev.handle, ctypes.byref(t_w),
                                                    ctypes.byref(GlobalStruct.of(array))))

    operands = conv_operands(dev, x, weight, bias, out_shape, in_window=in_window,
                             out_window=out_window, load_weight=load_constant if constant else None)
    args = conv_args(dev, operands, params)
    dev.check(dev.lib.sophon_tiu_conv2d(*args))
    first = dev.store(operands[0])
    if constant:  # again: U from the device's packed copy
        dev.check(dev.lib.sophon_tiu_conv2d(*args))
        assert dev.store(operands[0]).tobytes() == first.tobytes(), "the packed U gave other bits"
    if not entry:
        return first
    status = winograd_entry(dev)(*args, None)
    return first, status, dev.store(operands[0])


CASES = [
    # (n, ic, oc, h, w, pad (top, left, bottom, right), act, bias, windows)
    (1, 64, 64, 14, 14, (1, 1, 1, 1), "relu", True, False),      # a ResNet layer
    (1, 17, 40, 9, 13, (1, 1, 1, 1), "none", False, False),      # odd output: partial tiles
    (2, 32, 36, 12, 11, (0, 0, 0, 0), "silu", True, False),      # batch 2, no padding
    (1, 24, 40, 11, 10, (2, 0, 1, 2), "sigmoid", True, True),    # asymmetric pads, row windows
    (1, 16, 32, 5, 20, (0, 1, 0, 1), "clip", True, True),
    (1, 40, 33, 12, 12, (1, 1, 1, 1), "tanh", True, False),      # act applied after the store
    (1, 96, 48, 40, 41, (1, 1, 1, 1), "leaky", True, False),     # several tile blocks
    (1, 300, 41, 7, 7, (1, 1, 1, 1), "relu", True, True),        # deep K, small plane: U per panel
]


def check_case(devices, case, always_winograd: bool):
    """The conv of `case` on every fast device against the reference: within Winograd's
    bound where the entry point takes it (it must where `always_winograd`, but at the
    AVX2 level), else within the direct kernel's; 1 and 2 threads the same bits; a
    deferred constant weight the bits of the LMEM weight."""
    n, ic, oc, h, w, pad, act, has_bias, windows, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, ic, h, w)).astype(np.float32)
    weight = rng.standard_normal((oc, ic, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(oc).astype(np.float32) if has_bias else None
    out_hw = (h + pad[0] + pad[2] - 2, w + pad[1] + pad[3] - 2)
    out_shape = (n, oc, *out_hw)
    win = ((2, 1), (1, 3)) if windows else ((0, 0), (0, 0))
    params = conv_params((3, 3), (1, 1), pad, (1, 1), 1, act)
    plain = conv_params((3, 3), (1, 1), pad, (1, 1), 1, "none")

    ref = run_case(devices["ref"], x, weight, bias, params, out_shape, win).astype(np.float64)
    direct_mag = run_case(devices["ref"], np.abs(x), np.abs(weight), None, plain, out_shape, win)
    s = winograd_magnitude(x, weight, pad, out_hw)
    assert np.all(direct_mag <= s * (1 + 1e-5) + 1e-30)  # sum |a b| <= S, as the header argues
    act_ulps = SIGMOID_ULPS if act in SIGMOID_FAMILY else 0
    rounding = (4 + 2 * act_ulps) * EPS * np.abs(ref) + 1e-30
    wino_tol = ((ic + 10) * EPS * s + 9 * ic * EPS * direct_mag) * 1.01 + rounding
    direct_tol = 2 * 9 * ic * EPS * direct_mag * 1.01 + rounding
    for isa in [None, *ISAS]:  # None: every instruction set the host has
        suffix = "" if isa is None else f"_isa{isa}"
        out1, status, entry_out = run_case(devices["fast1" + suffix], x, weight, bias, params,
                                           out_shape, win, entry=True)
        winograd = status == 0
        assert status in (0, 1), f"fast{suffix}: Winograd entry returned {status}"
        if isa == 1:  # AVX2 keeps the direct kernel
            assert not winograd, f"fast{suffix}: Winograd taken at the AVX2 level"
        elif always_winograd:
            assert winograd, f"fast{suffix}: Winograd declined the conv"
        if winograd:
            assert entry_out.tobytes() == out1.tobytes(), f"fast{suffix}: the instruction did not take Winograd"
        out2 = run_case(devices["fast2" + suffix], x, weight, bias, params, out_shape, win)
        assert out1.tobytes() == out2.tobytes(), f"fast{suffix}: result depends on the thread count"
        tol = wino_tol if winograd else direct_tol
        err = np.abs(out1.astype(np.float64) - ref)
        assert np.all(err <= tol), (f"fast{suffix}: max error {err.max()} over tolerance "
                                    f"{tol.flat[np.argmax(err - tol)]}")
        if winograd:  # the deferred constant weight (U packed once) gives the same bits
            for threads in (1, 2):
                const = run_case(devices[f"fast{threads}{suffix}"], x, weight, bias, params,
                                 out_shape, win, constant=True)
                assert const.tobytes() == out1.tobytes(), f"fast{threads}{suffix}: constant weight differs"


@pytest.mark.parametrize("case", CASES)
def test_winograd_within_its_bound(devices, case):
    check_case(devices, (*case, case[1] * case[2] + case[3]), always_winograd=True)


@st.composite
def random_cases(draw):
    """Any 3x3 stride-1 conv near the thresholds of the shapes Winograd takes."""
    h, w = draw(st.integers(2, 30)), draw(st.integers(2, 30))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
    if h + pad[0] + pad[2] < 3:
        h = 3
    if w + pad[1] + pad[3] < 3:
        w = 3
    return (draw(st.sampled_from([1, 1, 2])), draw(st.integers(14, 40)), draw(st.integers(30, 44)),
            h, w, pad, draw(st.sampled_from(["none", "relu", "silu", "hard_swish", "elu"])),
            draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2**16)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_cases())
def test_winograd_random_shapes(devices, case):
    check_case(devices, case, always_winograd=False)


@pytest.mark.parametrize("shape", [
    # (ic, oc, h, kernel, stride, dilation, groups): convs Winograd leaves to the direct kernel
    # (few channels, a small plane: slower there on the Zen 4 host; other kernels)
    (8, 64, 14, 3, 1, 1, 1), (64, 16, 14, 3, 1, 1, 1), (64, 64, 5, 3, 1, 1, 1),
    (64, 64, 14, 3, 2, 1, 1), (64, 64, 14, 3, 1, 2, 1), (64, 64, 14, 3, 1, 1, 2),
    (64, 64, 14, 1, 1, 1, 1)])
def test_winograd_declines(devices, shape):
    ic, oc, h, k, s, d, groups = shape
    dev = devices["fast1"]
    dev.next_addr = 0
    o = (h + 2 - d * (k - 1) - 1) // s + 1
    t_in = dev.alloc(1, ic, h, h)
    t_w = dev.alloc(1, oc, ic // groups, k * k, COMPACT)
    t_out = dev.alloc(1, oc, o, o)
    params = conv_params((k, k), (s, s), (1, 1, 1, 1), (d, d), groups, "none")
    status = winograd_entry(dev)(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                 ctypes.byref(t_w), None, ctypes.byref(params), None)
    assert status == 1
