"""NaN and infinities through every f32 instruction (issue #13, case 4).

The chip's semantics (runtime/sophon.h, "NaN and infinities"): arithmetic is
IEEE 754 (a NaN operand gives NaN, inf - inf is NaN, ...), and the selections
(relu, clip, binary max / min, max pool) propagate NaN like IEEE 754-2019
maximum / minimum, numpy and onnxruntime. One module applies each instruction to
inputs holding NaN, +-inf and signed zeros; it runs on the reference kernels and
on the fast kernels capped at each instruction set (SOPHON_ISA 0, 1, 2: what the
host lacks is skipped by the runtime itself), with two threads.

Expected values: TVM's llvm build for the arithmetic instructions (the same NaN
and inf positions, finite values within f32 summation-order tolerance); numpy's
NaN-propagating maximum / minimum / clip for the selections, which must also
equal TVM's llvm build wherever numpy's result is not NaN (TVM's own selections
are plain compares whose NaN results depend on operand order: relu(NaN) = 0,
clip(NaN, 0, 6) = 6, max(NaN, 1) = 1 but max(1, NaN) = NaN, so they are no
reference for NaN).
"""
import os

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R

import tvm_sophon
from conftest import host_ops

SHAPE = (1, 16, 6, 6)  # 16 channels over lanes; rows of 6, pools of 2x2 and 3x3


@tvm.script.ir_module
class EveryF32:
    @R.function
    def main(x: R.Tensor((1, 16, 6, 6), "float32"), y: R.Tensor((1, 16, 6, 6), "float32"),
             w: R.Tensor((8, 16, 3, 3), "float32"), dw: R.Tensor((16, 1, 3, 3), "float32"),
             fw: R.Tensor((10, 16), "float32"), w2: R.Tensor((8, 16, 3, 3), "float32")):
        with R.dataflow():
            relu = R.nn.relu(x)
            clip = R.clip(x, R.prim_value(0.0), R.prim_value(6.0))
            leaky = R.nn.leakyrelu(x, 0.1)
            sig = R.sigmoid(x)
            tanh = R.tanh(x)
            add = R.add(x, y)
            sub = R.subtract(x, y)
            mul = R.multiply(x, y)
            mx = R.maximum(x, y)
            mn = R.minimum(x, y)
            maxpool = R.nn.max_pool2d(x, pool_size=(2, 2), strides=(2, 2))
            maxpool3 = R.nn.max_pool2d(x, pool_size=(3, 3), strides=(1, 1), padding=(1, 1, 1, 1))
            avgpool = R.nn.avg_pool2d(x, pool_size=(2, 2), strides=(2, 2))
            conv = R.nn.conv2d(x, w, padding=1)
            conv_relu = R.nn.relu(R.nn.conv2d(x, w2, padding=1))  # relu fused into the conv
            depthwise = R.nn.conv2d(x, dw, padding=1, groups=16)
            fc = R.nn.softmax(R.matmul(R.mean(x, axis=[2, 3]), R.permute_dims(fw)), axis=-1)
            out = (relu, clip, leaky, sig, tanh, add, sub, mul, mx, mn, maxpool, maxpool3, avgpool,
                   conv, conv_relu, depthwise, fc)
            R.output(out)
        return out


NAMES = ["relu", "clip", "leaky", "sigmoid", "tanh", "add", "sub", "mul", "max", "min", "maxpool",
         "maxpool3", "avgpool", "conv", "conv_relu", "depthwise", "fc_softmax"]


@tvm.script.ir_module
class ConvOnly:  # TVM's llvm conv, for the expected conv + relu (relu by numpy)
    @R.function
    def main(x: R.Tensor((1, 16, 6, 6), "float32"), w2: R.Tensor((8, 16, 3, 3), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w2, padding=1)
            R.output(y)
        return y


def _special(rng, shape, density):
    """Standard normal values with NaN, +inf, -inf, -0.0 and +0.0 scattered in."""
    a = rng.standard_normal(shape).astype("float32")
    for value in (np.nan, np.inf, -np.inf, -0.0, 0.0):
        a[rng.random(shape) < density] = value
    return a


def _windows_max(x, k, stride, pad):
    """Max pool with numpy, NaN propagating (np.max); padding never wins."""
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    oh = (padded.shape[2] - k) // stride + 1
    ow = (padded.shape[3] - k) // stride + 1
    out = np.empty(x.shape[:2] + (oh, ow), "float32")
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = padded[:, :, i * stride:i * stride + k, j * stride:j * stride + k].max(axis=(2, 3))
    return out


def _selections(x, y) -> dict:
    return {"relu": np.maximum(x, np.float32(0)), "clip": np.clip(x, np.float32(0), np.float32(6)),
            "max": np.maximum(x, y), "min": np.minimum(x, y),
            "maxpool": _windows_max(x, 2, 2, 0), "maxpool3": _windows_max(x, 3, 1, 1)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("naninf")
    partitioned = tvm_sophon.partition_for_sophon(EveryF32)
    chip_ops = {"relax.nn.relu", "relax.clip", "relax.nn.leakyrelu", "relax.sigmoid", "relax.tanh",
                "relax.add", "relax.subtract", "relax.multiply", "relax.maximum", "relax.minimum",
                "relax.nn.max_pool2d", "relax.nn.avg_pool2d", "relax.nn.conv2d", "relax.matmul",
                "relax.nn.softmax", "relax.mean"}
    assert not chip_ops & set(host_ops(partitioned)), host_ops(partitioned)  # all on the chip
    ex = tvm_sophon.build(partitioned)
    llvm = relax.VirtualMachine(tvm.compile(EveryF32, target="llvm"), tvm.cpu())
    conv_only = relax.VirtualMachine(tvm.compile(ConvOnly, target="llvm"), tvm.cpu())
    return root, ex, llvm, conv_only


DEVICES = {"reference": {"SOPHON_REFERENCE": "1", "SOPHON_NUM_THREADS": "1"},
           **{f"fast_isa{isa}": {"SOPHON_REFERENCE": "0", "SOPHON_ISA": str(isa), "SOPHON_NUM_THREADS": "2"}
              for isa in (0, 1, 2)}}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("density", [0.05, 0.3])
def test_nan_and_inf_through_every_f32_instruction(built, device, density, monkeypatch):
    root, ex, llvm, conv_only = built
    rng = np.random.default_rng(int(density * 100))
    x, y = _special(rng, SHAPE, density), _special(rng, SHAPE, density)
    w = (rng.standard_normal((8, 16, 3, 3)) * 0.2).astype("float32")
    dw = (rng.standard_normal((16, 1, 3, 3)) * 0.2).astype("float32")
    fw = (rng.standard_normal((10, 16)) * 0.2).astype("float32")
    w2 = (rng.standard_normal((8, 16, 3, 3)) * 0.2).astype("float32")
    args = [tvm.runtime.tensor(a) for a in (x, y, w, dw, fw, w2)]
    # The library reads these when its device is created, at its first call: one
    # library file per device configuration, loaded and called once here.
    for key, value in DEVICES[device].items():
        monkeypatch.setenv(key, value)
    path = root / f"every_{device}_{density}.so"
    ex.export_library(str(path))
    got = [o.numpy() for o in relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())["main"](*args)]
    want = [o.numpy() for o in llvm["main"](*args)]
    selections = _selections(x, y)
    conv = conv_only["main"](args[0], args[5]).numpy()
    want[NAMES.index("conv_relu")] = np.maximum(conv, np.float32(0))  # NaN propagating relu
    for name, g, t in zip(NAMES, got, want):
        if name in selections:
            s = selections[name]
            np.testing.assert_array_equal(g, s, err_msg=f"{name} on {device} vs numpy")
            defined = ~np.isnan(s)
            np.testing.assert_array_equal(t[defined], s[defined], err_msg=f"{name}: llvm vs numpy")
        else:
            # f32 on both sides: the same NaN and inf positions, finite values within
            # summation-order rounding (conv sums 144 products, fc 16 after a mean of 36)
            np.testing.assert_allclose(g, t, rtol=1e-4, atol=1e-5, equal_nan=True,
                                       err_msg=f"{name} on {device} vs TVM's llvm build")


@tvm.script.ir_module
class ElementwiseMath:
    @R.function
    def main(x: R.Tensor((1, 16, 6, 6), "float32")):
        with R.dataflow():
            out = (R.nn.silu(x), R.nn.gelu(x), R.nn.gelu_tanh(x), R.nn.softplus(x), R.sqrt(x), R.rsqrt(x),
                   R.exp(x), R.log(x), R.abs(x), R.negative(x), R.erf(x))
            R.output(out)
        return out


MATH = ["silu", "gelu", "gelu_tanh", "softplus", "sqrt", "rsqrt", "exp", "log", "abs", "negative", "erf"]


@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf_through_the_elementwise_math(device, tmp_path, monkeypatch):
    """The element-wise math activations: IEEE arithmetic, so TVM's llvm build is
    the reference for NaN and infinities too."""
    partitioned = tvm_sophon.partition_for_sophon(ElementwiseMath)
    assert not {"relax.sqrt", "relax.exp", "relax.log", "relax.erf", "relax.nn.gelu"} & set(host_ops(partitioned))
    x = _special(np.random.default_rng(7), SHAPE, 0.2)
    for key, value in DEVICES[device].items():
        monkeypatch.setenv(key, value)
    path = tmp_path / f"math_{device}.so"
    tvm_sophon.build(partitioned).export_library(str(path))
    got = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())["main"](tvm.runtime.tensor(x))
    want = relax.VirtualMachine(tvm.compile(ElementwiseMath, target="llvm"), tvm.cpu())["main"](tvm.runtime.tensor(x))
    for name, g, t in zip(MATH, got, want):
        # f32 libm-style approximations on both sides (erf, tanh, exp, log1p)
        np.testing.assert_allclose(g.numpy(), t.numpy(), rtol=2e-5, atol=2e-6, equal_nan=True,
                                   err_msg=f"{name} on {device} vs TVM's llvm build")
