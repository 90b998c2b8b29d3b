"""Activations as the importers emit them: each importer's op chain is taken
whole by one pattern (one region, nothing on the host), for a tiny TFLite, ONNX
and torch.export model each; and the result matches the framework's own run.

The chains these tests import are the ones TVM 0.27's frontends write (they
are listed in tvm_sophon/patterns/chains.py). Tolerance against the frameworks:
rtol = atol = 1e-5, float32 on both sides (different summation order in the
convs, a few ulp between the runtime's expf/erff/tanhf/log1pf and each
framework's own vectorised versions), except where a test states otherwise.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
import zlib
from typing import Callable

import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_sophon
import tvm_sophon.frontend
from conftest import assert_close, host_ops, make_module, run_llvm, run_sophon, sophon_regions

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RTOL = ATOL = 1e-5


def _offloaded(mod) -> list[str]:
    report = tvm_sophon.offload_report(mod)
    return sorted(c for r in report.regions for c in r.composites)


def _assert_one_region(mod, expected: set[str]) -> None:
    report = tvm_sophon.offload_report(mod)
    assert not host_ops(mod), report.format()
    assert len(sophon_regions(mod)) == 1, report.format()
    assert expected <= set(_offloaded(mod)), report.format()


def _partition_file(model: bytes, suffix: str):
    """Import a model file's bytes with tvm_sophon.frontend, then partition it."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(model)
        f.flush()
        return tvm_sophon.partition_for_sophon(tvm_sophon.frontend.load(f.name))


def _run(mod, inputs: dict):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm_sophon.build(mod), tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(v) for v in inputs.values()])
    return out.numpy() if hasattr(out, "numpy") else out[0].numpy()


# ------------------------------------------------------------------ TFLite


TFLITE_ACTIVATIONS = {
    # Keras spelling -> the composite TVM's TFLite import becomes
    "hard_silu": "sophon.conv2d_bias_hardswish",     # TFLite HARD_SWISH
    "silu": "sophon.conv2d_bias_silu",               # LOGISTIC + MUL
    "gelu": "sophon.conv2d_bias_gelu",               # TFLite GELU (erf form)
    "elu": "sophon.conv2d_bias_elu",                 # TFLite ELU
    "softplus": "sophon.conv2d_bias_softplus",       # EXP + ADD + LOG
    "mish": "sophon.conv2d_bias_mish",               # EXP + ADD + LOG + TANH + MUL
}


def _tflite_branches() -> bytes:
    """One conv per activation on a shared (1, 7, 7, 3) input, the branches summed."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((7, 7, 3), batch_size=1, name="image")
    outs = [tf.keras.layers.Conv2D(5, 3, padding="same", activation=act)(inp) for act in TFLITE_ACTIVATIONS]
    model = tf.keras.Model(inp, tf.keras.layers.Add()(outs))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_tflite_activations_one_region():
    from frontend_models import tflite_reference

    model = _tflite_branches()
    part = _partition_file(model, ".tflite")
    _assert_one_region(part, set(TFLITE_ACTIVATIONS.values()))
    x = np.random.default_rng(0).standard_normal((1, 7, 7, 3)).astype("float32") * 2
    assert_close(_run(part, {"image": x}), tflite_reference(model, x), rtol=RTOL, atol=ATOL, what="tflite")


# ------------------------------------------------------------------ ONNX


ONNX_OPS = {
    # ONNX node (attributes) -> the composite TVM's ONNX import becomes
    ("HardSwish", ()): "sophon.conv2d_bias_hardswish",
    ("HardSigmoid", (("alpha", 0.3), ("beta", 0.4))): "sophon.conv2d_bias_hardsigmoid",
    ("Gelu", ()): "sophon.conv2d_bias_gelu",
    ("Gelu", (("approximate", "tanh"),)): "sophon.conv2d_bias_gelu_tanh",
    ("Mish", ()): "sophon.conv2d_bias_mish",
    ("Elu", (("alpha", 0.7),)): "sophon.conv2d_bias_elu",
    ("Softplus", ()): "sophon.conv2d_bias_softplus",
    ("PRelu", ()): "sophon.prelu",
    ("Sigmoid+Mul", ()): "sophon.conv2d_bias_silu",
    ("Abs", ()): "sophon.abs",
    ("Neg", ()): "sophon.negative",
    ("Exp", ()): "sophon.exp",
    ("Erf", ()): "sophon.erf",
}


def _onnx_branches() -> bytes:
    """One Conv per activation on a shared (1, 3, 7, 7) input, the branches summed;
    then Sqrt, Log and Reciprocal of a positive value, Div and Pow by constants."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, branches = [], [], []
    for k, (op, attrs) in enumerate(ONNX_OPS):
        inits += [numpy_helper.from_array((rng.standard_normal((5, 3, 3, 3)) * 0.4).astype("float32"), f"w{k}"),
                  numpy_helper.from_array((rng.standard_normal(5) * 0.1).astype("float32"), f"b{k}")]
        nodes.append(helper.make_node("Conv", ["image", f"w{k}", f"b{k}"], [f"c{k}"], pads=[1, 1, 1, 1]))
        if op == "PRelu":
            inits.append(numpy_helper.from_array(rng.uniform(0.05, 0.3, (5, 1, 1)).astype("float32"), "slope"))
            nodes.append(helper.make_node("PRelu", [f"c{k}", "slope"], [f"a{k}"]))
        elif op == "Sigmoid+Mul":
            nodes += [helper.make_node("Sigmoid", [f"c{k}"], [f"s{k}"]),
                      helper.make_node("Mul", [f"c{k}", f"s{k}"], [f"a{k}"])]
        else:
            nodes.append(helper.make_node(op, [f"c{k}"], [f"a{k}"], **dict(attrs)))
        branches.append(f"a{k}")
    total = branches[0]
    for k, b in enumerate(branches[1:]):
        nodes.append(helper.make_node("Add", [total, b], [f"sum{k}"]))
        total = f"sum{k}"
    inits += [numpy_helper.from_array(np.float32(v), n) for n, v in
              (("one", 1.0), ("three", 3.0), ("two", 2.0), ("half", 0.5))]
    nodes += [
        helper.make_node("Abs", [total], ["pos0"]),
        helper.make_node("Add", ["pos0", "one"], ["pos"]),
        helper.make_node("Sqrt", ["pos"], ["sq"]),
        helper.make_node("Log", ["pos"], ["lg"]),
        helper.make_node("Reciprocal", ["pos"], ["rc"]),
        helper.make_node("Div", ["pos", "three"], ["dv"]),
        helper.make_node("Pow", ["pos", "two"], ["p2"]),
        helper.make_node("Pow", ["pos", "half"], ["p05"]),
        helper.make_node("Add", ["sq", "lg"], ["t0"]),
        helper.make_node("Add", ["t0", "rc"], ["t1"]),
        helper.make_node("Add", ["t1", "dv"], ["t2"]),
        helper.make_node("Add", ["t2", "p2"], ["t3"]),
        helper.make_node("Add", ["t3", "p05"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "activations",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 7, 7])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 5, 7, 7])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_onnx_activations_one_region():
    from frontend_models import onnxruntime_run

    model = _onnx_branches()
    part = _partition_file(model, ".onnx")
    _assert_one_region(part, set(ONNX_OPS.values()) | {"sophon.sqrt", "sophon.log", "sophon.reciprocal"})
    x = np.random.default_rng(1).standard_normal((1, 3, 7, 7)).astype("float32")
    expected = onnxruntime_run(model, {"image": x})[0]
    assert_close(_run(part, {"image": x}), expected, rtol=RTOL, atol=ATOL, what="onnx")


# ------------------------------------------------------------------ torch.export


def _torch_branches():
    import torch
    from torch import nn

    acts = {"silu": nn.SiLU(), "hardswish": nn.Hardswish(), "hardsigmoid": nn.Hardsigmoid(),
            "gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"), "mish": nn.Mish(),
            "elu": nn.ELU(0.7), "softplus": nn.Softplus()}

    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(3, 5, 3, padding=1) for _ in acts)
            self.acts = nn.ModuleList(acts.values())
            self.prelu_conv = nn.Conv2d(3, 5, 3, padding=1)
            self.prelu = nn.PReLU(5)

        def forward(self, x):
            total = self.prelu(self.prelu_conv(x))
            for conv, act in zip(self.convs, self.acts):
                total = total + act(conv(x))
            return total

    torch.manual_seed(0)
    model = Branches().eval()
    with torch.no_grad():
        model.prelu.weight.uniform_(0.05, 0.3)
    return model, {f"sophon.conv2d_bias_{name}" for name in acts}


def test_torch_activations_one_region():
    import torch

    model, expected = _torch_branches()
    x = torch.randn(1, 3, 7, 7)
    mod = tvm_sophon.frontend.from_exported_program(torch.export.export(model, (x,)))
    part = tvm_sophon.partition_for_sophon(mod)
    _assert_one_region(part, expected | {"sophon.prelu"})
    with torch.no_grad():
        want = model(x).numpy()
    assert_close(_run(part, {"x": x.numpy()}), want, rtol=RTOL, atol=ATOL, what="torch")


# ------------------------------------------------------------------ each pattern against TVM's llvm build
#
# One small module per case, the chain spelled as one of the importers writes it
# (no normalisation in between), run on the chip and by TVM's own llvm build.
# Shapes hit C = 3, 5, 17 (and 65 across the lanes), H = W = 1, 7, 31, NCHW and
# NHWC. Tolerance (CHAIN_RTOL, CHAIN_ATOL): float32 on both sides. The runtime
# calls the C library's expf/logf/erff/tanhf/log1pf; TVM's llvm build calls the
# same expf/logf/erff (0 ulp apart, test_special_functions_against_llvm) but
# lowers tanh to a rational approximation: up to 497 ulp apart near 0 (relative
# 3e-5, absolute at most 1.2e-7), and GELU-tanh up to 4.8e-7 absolute where it
# is near 0. The stable softplus (max(x, 0) + log1p(exp(-|x|))) differs from the
# naive log(exp(x) + 1) only where exp(x) < 2^-24 (absolute < 6e-8). So 1e-5
# relative plus 1e-6 absolute.

CHAIN_RTOL, CHAIN_ATOL = 1e-5, 1e-6
R = relax.op


def _c(value):
    return relax.const(np.float32(value), "float32")


def _e(bb, expr):
    return bb.emit(expr)


def _relu6_x3(bb, x):
    return _e(bb, R.clip(_e(bb, R.add(x, _c(3.0))), 0.0, 6.0))


def _softplus_naive(bb, x):
    return _e(bb, R.log(_e(bb, R.add(_e(bb, R.exp(x)), _c(1.0)))))


# the chains as the importers write them (tvm_sophon/patterns/chains.py)
SPELLINGS: dict[str, Callable] = {
    "sqrt": lambda bb, x: R.sqrt(x),
    "rsqrt": lambda bb, x: R.rsqrt(x),
    "exp": lambda bb, x: R.exp(x),
    "log": lambda bb, x: R.log(x),
    "reciprocal": lambda bb, x: R.divide(_c(1.0), x),
    "abs": lambda bb, x: R.abs(x),
    "negative": lambda bb, x: R.negative(x),
    "erf": lambda bb, x: R.erf(x),
    "silu": lambda bb, x: R.multiply(x, _e(bb, R.sigmoid(x))),
    "silu-op": lambda bb, x: R.nn.silu(x),
    "hardswish-tflite": lambda bb, x: R.divide(_e(bb, R.multiply(x, _relu6_x3(bb, x))), _c(6.0)),
    "hardswish-onnx": lambda bb, x: R.multiply(x, _e(bb, R.divide(_relu6_x3(bb, x), _c(6.0)))),
    "hardswish-normalized": lambda bb, x: R.multiply(_e(bb, R.multiply(x, _relu6_x3(bb, x))), _c(1 / 6)),
    "hardsigmoid-torch": lambda bb, x: R.divide(_relu6_x3(bb, x), _c(6.0)),
    "hardsigmoid-onnx": lambda bb, x: R.clip(_e(bb, R.add(_e(bb, R.multiply(x, _c(0.3))), _c(0.4))), 0.0, 1.0),
    "gelu-tflite": lambda bb, x: R.multiply(x, _e(bb, R.add(_e(bb, R.multiply(
        _e(bb, R.erf(_e(bb, R.multiply(x, _c(0.5 ** 0.5))))), _c(0.5))), _c(0.5)))),
    "gelu-op": lambda bb, x: R.nn.gelu(x),
    "gelu_tanh": lambda bb, x: R.nn.gelu_tanh(x),
    "mish-onnx": lambda bb, x: R.multiply(x, _e(bb, R.tanh(_softplus_naive(bb, x)))),
    "mish-torch": lambda bb, x: R.multiply(x, _e(bb, R.tanh(_e(bb, R.where(
        _e(bb, R.greater(x, _c(20.0))), x, _softplus_naive(bb, x)))))),
    "elu": lambda bb, x: R.add(_e(bb, R.multiply(_e(bb, R.nn.relu(_e(bb, R.subtract(_c(1.0), _e(bb, R.exp(x)))))),
                                                 _c(-0.7))), _e(bb, R.nn.relu(x))),
    "softplus-keras": lambda bb, x: R.log(_e(bb, R.add(_e(bb, R.exp(x)), _c(1.0)))),
    "softplus-onnx": lambda bb, x: R.add(_e(bb, R.maximum(x, _c(0.0))), _e(bb, R.log(_e(bb, R.add(
        _e(bb, R.exp(_e(bb, R.negative(_e(bb, R.abs(x)))))), _c(1.0)))))),
    "softplus-op": lambda bb, x: R.nn.softplus(x),
}


def _composite(spelling: str) -> str:
    return spelling.split("-")[0]


@dataclasses.dataclass
class Case:
    id: str
    build: Callable   # rng -> (mod, params, inputs)
    composite: str

    def make(self):
        return self.build(np.random.default_rng(zlib.crc32(self.id.encode())))


def _input(rng, shape, spelling):
    x = (rng.standard_normal(shape) * 3).astype("float32")
    if spelling in ("sqrt", "rsqrt", "log"):
        return np.abs(x) + np.float32(0.05)      # their domain
    if spelling == "reciprocal":
        return np.where(x < 0, x - 0.25, x + 0.25).astype("float32")  # away from 0
    return x


def standalone(spelling, shape) -> Case:
    def build(rng):
        inputs = {"x": _input(rng, shape, spelling)}
        return make_module(inputs, {}, lambda bb, v: SPELLINGS[spelling](bb, v["x"])), {}, inputs

    return Case(f"{spelling}-{'x'.join(map(str, shape))}", build, f"sophon.{_composite(spelling)}")


def conv_chain(spelling, cout, hw, layout) -> Case:
    """conv2d (3x3, pad 1) + bias + the chain, NCHW/OIHW or NHWC/HWIO."""
    def build(rng):
        x_shape = (1, 3, hw, hw) if layout == "NCHW" else (1, hw, hw, 3)
        w_shape = (cout, 3, 3, 3) if layout == "NCHW" else (3, 3, 3, cout)
        b_shape = (1, cout, 1, 1) if layout == "NCHW" else (1, 1, 1, cout)
        inputs = {"x": rng.standard_normal(x_shape).astype("float32")}
        params = {"w": (rng.standard_normal(w_shape) * 0.6).astype("float32"),
                  "b": (rng.standard_normal(b_shape) * 0.3).astype("float32")}

        def body(bb, v):
            y = _e(bb, R.nn.conv2d(v["x"], v["w"], padding=1, data_layout=layout,
                                   kernel_layout="OIHW" if layout == "NCHW" else "HWIO"))
            return SPELLINGS[spelling](bb, _e(bb, R.add(y, v["b"])))

        return make_module(inputs, params, body), params, inputs

    return Case(f"conv-{spelling}-c{cout}-h{hw}-{layout}", build, f"sophon.conv2d_bias_{_composite(spelling)}")


def dense_chain(spelling, m, k, n) -> Case:
    def build(rng):
        inputs = {"x": rng.standard_normal((m, k)).astype("float32")}
        params = {"w": (rng.standard_normal((n, k)) / np.sqrt(k) * 2).astype("float32"),
                  "b": (rng.standard_normal(n) * 0.3).astype("float32")}
        return make_module(inputs, params, lambda bb, v: SPELLINGS[spelling](bb, _e(bb, R.add(
            _e(bb, R.matmul(v["x"], _e(bb, R.permute_dims(v["w"])))), v["b"])))), params, inputs

    # the transposed weight is constant-folded: a matmul with a (K, N) weight
    return Case(f"dense-{spelling}-{m}x{k}x{n}", build, f"sophon.matmul_bias_{_composite(spelling)}")


def binary_chain(op, spelling, lhs, rhs) -> Case:
    def build(rng):
        inputs = {"a": rng.standard_normal(lhs).astype("float32"), "b": rng.standard_normal(rhs).astype("float32")}
        return make_module(inputs, {}, lambda bb, v: SPELLINGS[spelling](
            bb, _e(bb, getattr(R, op)(v["a"], v["b"])))), {}, inputs

    return Case(f"{op}-{spelling}-{'x'.join(map(str, lhs))}", build, f"sophon.{op}_{_composite(spelling)}")


def prelu(shape, axis, form) -> Case:
    """nn.prelu(x, slope, axis) (ONNX, TFLite) or where(x > 0, x, x * slope) (torch.export),
    with a (C,) slope along ``axis``."""
    def build(rng):
        inputs = {"x": rng.standard_normal(shape).astype("float32")}
        slope = rng.uniform(0.05, 0.5, shape[axis]).astype("float32")
        if form == "where":
            slope = slope.reshape([shape[axis] if i == axis else 1 for i in range(len(shape))][1:])
        params = {"slope": slope}

        def body(bb, v):
            if form == "op":
                return R.nn.prelu(v["x"], v["slope"], axis=axis)
            return R.where(_e(bb, R.greater(v["x"], _c(0.0))), v["x"], _e(bb, R.multiply(v["x"], v["slope"])))

        return make_module(inputs, params, body), params, inputs

    return Case(f"prelu-{form}-{'x'.join(map(str, shape))}-axis{axis}", build, "sophon.prelu")


def divide(lhs, rhs, act=None) -> Case:
    """A tensor by a tensor (no constant: DivideByConstant does not apply)."""
    def build(rng):
        inputs = {"a": rng.standard_normal(lhs).astype("float32"),
                  "b": _input(rng, rhs, "reciprocal")}
        return make_module(inputs, {}, lambda bb, v: (lambda y: R.nn.relu(_e(bb, y)) if act else y)(
            R.divide(v["a"], v["b"]))), {}, inputs

    return Case(f"divide-{'x'.join(map(str, lhs))}-by-{'x'.join(map(str, rhs))}{'-relu' if act else ''}",
                build, "sophon.divide" + ("_relu" if act else ""))


_SHAPES = [(1, 3, 1, 1), (1, 5, 7, 7), (1, 17, 31, 31), (2, 65, 7, 7), (3, 17)]
STANDALONE_CASES = [standalone(s, _SHAPES[i % len(_SHAPES)]) for i, s in enumerate(SPELLINGS)]
_CHAINS = ["silu", "hardswish-tflite", "hardsigmoid-onnx", "gelu-tflite", "gelu_tanh", "mish-torch", "elu",
           "softplus-onnx", "hardswish-onnx", "silu-op"]
CONV_CASES = [conv_chain(s, (3, 5, 17)[i % 3], (1, 7, 31)[(i // 3) % 3], ("NCHW", "NHWC")[i % 2])
              for i, s in enumerate(_CHAINS)]
FUSED_CASES = [
    dense_chain("gelu-op", 4, 17, 5),
    dense_chain("hardswish-onnx", 3, 65, 17),
    binary_chain("add", "silu", (1, 17, 7, 7), (1, 17, 7, 7)),
    binary_chain("multiply", "hardswish-normalized", (1, 5, 7, 7), (1, 5, 1, 1)),
    binary_chain("subtract", "elu", (2, 3, 31, 31), (31,)),
    prelu((1, 17, 7, 7), 1, "op"),
    prelu((1, 7, 7, 5), 3, "op"),
    prelu((2, 31, 31, 3), 3, "where"),
    prelu((1, 65, 1, 1), 1, "where"),
    prelu((100,), 0, "op"),                      # TFLite's flattened PReLU
    divide((1, 5, 7, 7), (1, 5, 7, 7)),
    divide((2, 17, 31, 31), (1, 17, 1, 1), act="relu"),
    divide((3, 17), (17,)),
]
CASES = STANDALONE_CASES + CONV_CASES + FUSED_CASES


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_chain_matches_llvm_and_is_offloaded(case: Case):
    mod, params, inputs = case.make()
    result = run_sophon(mod, params, inputs)
    report = tvm_sophon.offload_report(result.partitioned)
    assert list(report.offloaded) == [case.composite], report.format()
    assert not host_ops(result.partitioned), report.format()
    # special functions on both sides (module section comment)
    assert_close(result.output, run_llvm(mod, params, inputs), rtol=CHAIN_RTOL, atol=CHAIN_ATOL, what=case.id)


def test_standalone_batch_norm_is_a_per_channel_scale_and_shift():
    """batch_norm after an add (nothing to fold it into): normalize makes it
    x * s + t with per-channel constants, two binary ops of the same region."""
    from tvm_sophon.normalize import normalize

    rng = np.random.default_rng(7)
    c = 17
    inputs = {"a": rng.standard_normal((1, 7, 7, c)).astype("float32"),
              "b": rng.standard_normal((1, 7, 7, c)).astype("float32")}
    params = {"gamma": rng.uniform(0.5, 1.5, c).astype("float32"), "beta": rng.standard_normal(c).astype("float32"),
              "mean": rng.standard_normal(c).astype("float32"), "var": rng.uniform(0.5, 2, c).astype("float32")}

    def body(bb, v):
        y = _e(bb, R.add(v["a"], v["b"]))
        bn = _e(bb, R.nn.batch_norm(y, v["gamma"], v["beta"], v["mean"], v["var"], axis=3, epsilon=1e-3,
                                         training=False))
        return R.nn.relu(_e(bb, relax.TupleGetItem(bn, 0)))

    mod = make_module(inputs, params, body)
    bound = relax.transform.BindParams("main", {k: tvm.runtime.tensor(v) for k, v in params.items()})(mod)
    result = run_sophon(normalize(bound), None, inputs)
    assert not host_ops(result.partitioned)
    assert tvm_sophon.offload_report(result.partitioned).offloaded == ["sophon.add", "sophon.multiply",
                                                                        "sophon.add_relu"]
    # float32 on both sides; the scale s = gamma / sqrt(var + eps) is rounded once
    # to float32 (a few ulp against batch_norm's own arithmetic)
    assert_close(result.output, run_llvm(mod, params, inputs), rtol=1e-5, atol=1e-5, what="batch_norm")


# ------------------------------------------------------------------ special functions against llvm
#
# Measured on this host (x86-64, glibc) over 64,000 points of [-10, 10] (and of
# (0, 100] for log, sqrt, rsqrt): (max ulp, max absolute difference) allowed.
# 0 ulp measured for all but tanh; the bound of 2 ulp leaves room for another C
# library. tanh: TVM's llvm lowering is a rational approximation, 497 ulp near 0
# measured, 1.2e-7 absolute at most.
SPECIAL_BOUNDS = {"exp": (2, None), "log": (2, None), "erf": (2, None), "sigmoid": (2, None),
                  "sqrt": (0, None), "rsqrt": (2, None), "tanh": (None, 2e-7)}


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 steps (signed magnitudes mapped onto one integer line)."""
    ia, ib = (v.astype(np.float32).view(np.int32).astype(np.int64) for v in (a, b))
    ia, ib = (np.where(i < 0, -(i & 0x7FFFFFFF), i) for i in (ia, ib))
    return np.abs(ia - ib)


@pytest.mark.parametrize("name", list(SPECIAL_BOUNDS))
def test_special_functions_against_llvm(name):
    grid = np.linspace(-10, 10, 64_000, dtype=np.float32).reshape(1, 64, 40, 25)
    x = (np.abs(grid) * 10 + 1e-3).astype(np.float32) if name in ("log", "sqrt", "rsqrt") else grid
    op = {"sigmoid": R.sigmoid}.get(name, getattr(R, name))
    mod = make_module({"x": x}, {}, lambda bb, v: op(v["x"]))
    got, want = run_sophon(mod, None, {"x": x}).output, run_llvm(mod, None, {"x": x})
    max_ulp, max_abs = SPECIAL_BOUNDS[name]
    if max_ulp is not None:
        assert _ulps(got, want).max() <= max_ulp, f"{name}: {_ulps(got, want).max()} ulp"
    if max_abs is not None:
        assert np.abs(got.astype(np.float64) - want).max() <= max_abs


@pytest.mark.parametrize("spelling", ["silu", "hardswish-tflite", "elu"])
def test_chain_whose_input_is_also_used_outside(spelling):
    """conv + bias + chain where the pre-activation also feeds a skip add: the
    composite returns both, and the chip computes both (the conv, then the chain
    as a unary layer)."""
    rng = np.random.default_rng(3)
    inputs = {"x": rng.standard_normal((1, 5, 7, 7)).astype("float32")}
    params = {"w": (rng.standard_normal((5, 5, 3, 3)) * 0.4).astype("float32"),
              "b": (rng.standard_normal((1, 5, 1, 1)) * 0.3).astype("float32")}

    def body(bb, v):
        y = _e(bb, R.add(_e(bb, R.nn.conv2d(v["x"], v["w"], padding=1)), v["b"]))
        return R.add(_e(bb, SPELLINGS[spelling](bb, y)), y)

    mod = make_module(inputs, params, body)
    result = run_sophon(mod, params, inputs)
    assert not host_ops(result.partitioned)
    assert_close(result.output, run_llvm(mod, params, inputs), rtol=CHAIN_RTOL, atol=CHAIN_ATOL, what=spelling)


def test_near_chain_with_other_constants_is_not_taken_as_the_activation():
    """x * clip(x + 2, 0, 6) / 6 is not hard-swish: the chain's check rejects it,
    and the ops run one by one, still on the chip."""
    rng = np.random.default_rng(5)
    inputs = {"x": (rng.standard_normal((1, 5, 7, 7)) * 3).astype("float32")}

    def body(bb, v):
        r = _e(bb, R.clip(_e(bb, R.add(v["x"], _c(2.0))), 0.0, 6.0))
        return R.divide(_e(bb, R.multiply(v["x"], r)), _c(6.0))

    mod = make_module(inputs, {}, body)
    result = run_sophon(mod, None, inputs)
    assert _offloaded(result.partitioned) == ["sophon.add_clip", "sophon.divide", "sophon.multiply"]
    assert_close(result.output, run_llvm(mod, None, inputs), rtol=CHAIN_RTOL, atol=CHAIN_ATOL, what="near chain")
