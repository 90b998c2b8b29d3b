"""The activation kinds and binary ops of issue 10 in the fast kernels, against
the reference kernels, on every device of test_fast_kernels.py (reference mode;
1 and 2 threads at every instruction set the host has).

- tiu_activation (fast/sophon_fast_activation.c) claims bit-identical results for
  every kind (the cheap ones in AVX2 registers, the special functions through the
  reference's own function): compared bit for bit, NaN matching NaN, with signed
  zeros, infinities and NaN among the inputs. The exception: sigmoid and SiLU with
  AVX-512, computed in registers within SIGMOID_ULPS ulp (runtime/fast/sophon_fast.h),
  also over their whole range (exp's overflow, underflow and subnormal results).
- conv2d and fc fuse only relu/clip/leaky relu in registers; every other kind is
  applied in a second pass over the fast kernel's outputs. The fast conv's result
  differs from the reference's by its summation order (tolerance in
  test_fast_kernels.py), so the check here is exact on the same device: the fused
  result equals the reference activation of the same device's unfused result, bit
  for bit.
- depthwise conv2d and binary (incl. DIV and PRELU) draw the new kinds in
  test_fast_kernels.py's own bit-identity tests (ACT_ALL, BINARY_OPS).
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from test_fast_kernels import (ACT_ALL, ALIGNED, COMPACT, SIGMOID_FAMILY, SIGMOID_ULPS,  # noqa: F401
                               ActivationStruct, Device, assert_bit_identical, assert_matches_reference,
                               assert_within_ulps, conv_params, devices, fast_devices, run_conv, run_fc,
                               with_specials)

NEW_KINDS = ["silu", "hard_sigmoid", "hard_swish", "gelu", "gelu_tanh", "mish", "elu", "softplus", "sqrt",
             "rsqrt", "exp", "log", "reciprocal", "abs", "neg", "erf"]


def run_activation(dev: Device, x, act, layouts, in_place):
    dev.next_addr = 0
    t_in = dev.alloc(*x.shape, layout=layouts[0])
    dev.load(t_in, x)
    t_out = t_in if in_place else dev.alloc(*x.shape, layout=layouts[1])
    act_struct = ActivationStruct(*ACT_ALL[act])
    dev.check(dev.lib.sophon_tiu_activation(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                            ctypes.byref(act_struct)))
    return dev.store(t_out)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.tuples(st.sampled_from([1, 2]), st.sampled_from([1, 3, 17, 65, 130]),
                       st.sampled_from([1, 2, 7, 31]), st.sampled_from([1, 7, 8, 9, 33])),
       act=st.sampled_from(list(ACT_ALL)), layouts=st.tuples(*[st.sampled_from([ALIGNED, COMPACT])] * 2),
       in_place=st.booleans(), specials=st.sampled_from([0.0, 0.0, 0.05]), seed=st.integers(0, 2**16))
def test_fast_activation_is_bit_identical(devices, shape, act, layouts, in_place, specials, seed):
    rng = np.random.default_rng(seed)
    # scale 4: both sides of the hard-swish/hard-sigmoid knees, exp over- and
    # underflow at the specials; negative inputs give sqrt/log/rsqrt their NaN
    x = with_specials(rng, (rng.standard_normal(shape) * 4).astype(np.float32), specials)
    assert_matches_reference(devices, lambda dev: run_activation(dev, x, act, layouts, in_place), act)


@pytest.mark.parametrize("act", SIGMOID_FAMILY)
def test_fast_sigmoid_family_over_its_whole_range(devices, act):
    # every f32 exponent from 2^-149 to 2^7 on both signs, a dense sweep of
    # [-110, 110] (exp(-x) overflows past 88.72 and underflows below -87.3, where
    # sigmoid turns subnormal or exactly 1) and the specials
    tiny = np.ldexp(np.float32(1.5), np.arange(-149, 8)).astype(np.float32)
    x = np.concatenate([tiny, -tiny, np.linspace(-110, 110, 4001, dtype=np.float32),
                        np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, -88.72, 87.33, -87.33])])
    x = np.pad(x, (0, -x.size % 64)).reshape(1, 64, 1, -1)
    assert_matches_reference(devices, lambda dev: run_activation(dev, x, act, (ALIGNED, ALIGNED), False), act)


@pytest.mark.parametrize("act", [*NEW_KINDS, "sigmoid"])
def test_fast_conv_and_fc_apply_every_kind_after_the_sum(devices, act):
    rng = np.random.default_rng(len(act))
    x = rng.standard_normal((1, 17, 9, 9)).astype(np.float32)
    weight = (rng.standard_normal((20, 17, 3, 3)) * 0.2).astype(np.float32)
    bias = rng.standard_normal(20).astype(np.float32)
    fc_x = rng.standard_normal((3, 65)).astype(np.float32)
    fc_w = (rng.standard_normal((17, 65)) * 0.2).astype(np.float32)
    ref = devices["ref"]
    for name, dev in fast_devices(devices).items():
        plain = run_conv(dev, x, weight, bias, conv_params((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), (1, 20, 9, 9))
        fused = run_conv(dev, x, weight, bias, conv_params((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, act),
                         (1, 20, 9, 9))
        want = run_activation(ref, plain, act, (ALIGNED, ALIGNED), False)
        same = (fused.view(np.uint32) == want.view(np.uint32)) | (np.isnan(fused) & np.isnan(want))
        if act in SIGMOID_FAMILY and "_isa" not in name:  # in AVX-512 registers
            assert_within_ulps(f"{name}: conv2d with {act}", fused, want, SIGMOID_ULPS)
        else:
            assert same.all(), f"{name}: conv2d with {act} is not {act} of its unfused result"
        plain = run_fc(dev, fc_x, fc_w, bias[:17], "none")
        fused = run_fc(dev, fc_x, fc_w, bias[:17], act)
        want = run_activation(ref, plain.reshape(3, 17, 1, 1), act, (ALIGNED, ALIGNED), False).reshape(3, 17)
        same = (fused.view(np.uint32) == want.view(np.uint32)) | (np.isnan(fused) & np.isnan(want))
        assert same.all(), f"{name}: fc with {act} is not {act} of its unfused result"


@pytest.mark.parametrize("act", ["sigmoid", "silu", "relu", "hard_swish", "gelu", "neg"])
@pytest.mark.parametrize("shape", [(2, 1200, 3, 5), (1, 1152, 1, 1), (2, 70, 2, 7)])
def test_fast_activation_small_planes_by_lanes(devices, act, shape):
    # planes under 16 floats run gathered lane by lane (19 planes of 15 floats per
    # lane for 1200 channels: two gathers a lane); each element must get the bits the
    # same device gives it in one long plane, and the reference's within the kinds'
    # tolerance
    rng = np.random.default_rng(shape[1])
    x = with_specials(rng, (rng.standard_normal(shape) * 4).astype(np.float32), 0.02)
    for name, dev in fast_devices(devices).items():
        small = run_activation(dev, x, act, (ALIGNED, COMPACT), False)
        long = run_activation(dev, x.reshape(1, 1, 1, -1), act, (ALIGNED, ALIGNED), False).reshape(shape)
        same = (small.view(np.uint32) == long.view(np.uint32)) | (np.isnan(small) & np.isnan(long))
        assert same.all(), f"{name}: {act} on {shape} differs from the same values in one plane"
    assert_matches_reference(devices, lambda dev: run_activation(dev, x, act, (COMPACT, ALIGNED), True), act)
