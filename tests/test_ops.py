"""Every sophon pattern, one small module per parameter set: the chip's result
against TVM's own llvm build of the same module, and a check that the op really
left the host.

Shapes are chosen to hit the awkward cases: odd channel counts (3, 5, 17) and
channel counts crossing the 64 lanes (65, 67, 70), H = W = 1, 7, 31, stride 2,
asymmetric padding (top, left, bottom, right) = (0, 1, 1, 2), dilation 2,
grouped and depthwise convs, NCHW and NHWC (kernels OIHW, HWIO, OHWI).

Tolerance, everywhere in this file: rtol = atol = 1e-5. Both sides compute in
float32 from the same inputs; only the summation order differs (TVM's llvm loops
vs the emulator's reference kernels), plus a few ulp between expf/tanhf and
TVM's lowering of exp/tanh/sigmoid, so results agree to a few float32 ulp of the
accumulated magnitude.

The exact composite names per case are asserted separately, in
``test_offload_report_names``, so an intended change of naming or of the report's
fields touches one test.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Optional

import numpy as np
import pytest
from tvm import relax

import tvm_sophon
from conftest import assert_close, host_ops, make_module, run_llvm, run_sophon, sophon_regions

RTOL = 1e-5  # float32 on both sides, different summation order (see module docstring)
ATOL = 1e-5


@dataclasses.dataclass
class OpCase:
    id: str
    build: Callable[[np.random.Generator], tuple]   # rng -> (mod, params, inputs)
    composites: list[str]                           # expected offloaded composite names

    def make(self):
        return self.build(np.random.default_rng(zlib.crc32(self.id.encode())))


def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype("float32")


def _act(y, act: Optional[str], bb):
    if act is None:
        return y
    y = bb.emit(y)
    if act == "relu":
        return relax.op.nn.relu(y)
    if act == "clip":
        return relax.op.clip(y, 0.0, 6.0)
    if act == "leakyrelu":
        return relax.op.nn.leakyrelu(y, 0.1)
    raise ValueError(act)


def _name(*parts):
    return "sophon." + "_".join(p for p in parts if p)


# ------------------------------------------------------------------ conv2d


def conv(id, x, w, *, layout="NCHW", kernel_layout="OIHW", strides=1, padding=0, dilation=1,
         groups=1, bias=None, act=None) -> OpCase:
    """conv2d [+ bias] [+ act]. bias: "reshape" ((C,) param reshaped to (1,C,1,1)),
    "4d" (param already (1,C,1,1) / (1,1,1,C)), "vector" ((C,) param, NHWC only),
    "input" ((C,) runtime input reshaped in the graph)."""

    def build(rng):
        cout = w[kernel_layout.index("O")]
        fan_in = int(np.prod(w)) // cout
        inputs = {"x": _rand(rng, x)}
        params = {"w": _rand(rng, w, np.sqrt(2.0 / fan_in))}
        if bias == "input":
            inputs["b"] = _rand(rng, (cout,))
        elif bias == "4d":
            params["b"] = _rand(rng, (1, cout, 1, 1) if layout == "NCHW" else (1, 1, 1, cout))
        elif bias in ("reshape", "vector"):
            params["b"] = _rand(rng, (cout,))

        def body(bb, v):
            y = relax.op.nn.conv2d(v["x"], v["w"], strides=strides, padding=padding, dilation=dilation,
                                   groups=groups, data_layout=layout, kernel_layout=kernel_layout)
            if bias is not None:
                b = v["b"]
                if bias in ("reshape", "input"):
                    b = bb.emit(relax.op.reshape(b, (1, cout, 1, 1) if layout == "NCHW" else (1, 1, 1, cout)))
                y = relax.op.add(bb.emit(y), b)
            return _act(y, act, bb)

        return make_module(inputs, params, body), params, inputs

    return OpCase(id, build, [_name("conv2d", "bias" if bias else None, act)])


CONV_CASES = [
    conv("nchw-c3-h7-pad1", (1, 3, 7, 7), (8, 3, 3, 3), padding=1),
    conv("nchw-c5-h31-stride2-bias-relu", (1, 5, 31, 31), (4, 5, 3, 3), strides=2, padding=1,
         bias="reshape", act="relu"),
    conv("nchw-c17-h7-asympad-bias-clip", (1, 17, 7, 7), (6, 17, 3, 3), padding=(0, 1, 1, 2),
         bias="reshape", act="clip"),
    conv("nchw-c5-h7-dilation2-bias4d-leakyrelu", (1, 5, 7, 7), (3, 5, 3, 3), padding=2, dilation=2,
         bias="4d", act="leakyrelu"),
    conv("nchw-c17-h1-pad1-inputbias-relu", (1, 17, 1, 1), (5, 17, 3, 3), padding=1,
         bias="input", act="relu"),
    conv("nchw-n2-c3-1x1-relu", (2, 3, 7, 7), (5, 3, 1, 1), act="relu"),
    conv("nchw-c5-clip", (1, 5, 7, 7), (5, 5, 3, 3), padding=1, act="clip"),
    conv("nchw-c3-h31-k5-stride2-leakyrelu", (1, 3, 31, 31), (17, 3, 5, 5), strides=2, padding=2,
         act="leakyrelu"),
    conv("nchw-groups2-bias", (1, 6, 7, 7), (4, 3, 3, 3), padding=1, groups=2, bias="reshape"),
    conv("nchw-c65-o67-bias-relu", (1, 65, 5, 5), (67, 65, 3, 3), padding=1, bias="reshape", act="relu"),
    conv("nchw-depthwise-c17-bias-relu", (1, 17, 7, 7), (17, 1, 3, 3), padding=1, groups=17,
         bias="reshape", act="relu"),
    conv("nchw-depthwise-c5-h31-stride2-asympad-bias-clip", (1, 5, 31, 31), (5, 1, 3, 3), strides=2,
         padding=(0, 1, 1, 2), groups=5, bias="reshape", act="clip"),
    conv("nchw-depthwise-c5-h1-pad1", (1, 5, 1, 1), (5, 1, 3, 3), padding=1, groups=5),
    conv("nhwc-hwio-c3-h7-bias-relu", (1, 7, 7, 3), (3, 3, 3, 5), layout="NHWC", kernel_layout="HWIO",
         padding=1, bias="vector", act="relu"),
    conv("nhwc-ohwi-c5-h31-stride2-asympad-bias4d-clip", (1, 31, 31, 5), (4, 3, 3, 5), layout="NHWC",
         kernel_layout="OHWI", strides=2, padding=(0, 1, 1, 2), bias="4d", act="clip"),
    conv("nhwc-hwio-depthwise-c17-bias-relu", (1, 7, 7, 17), (3, 3, 1, 17), layout="NHWC",
         kernel_layout="HWIO", padding=1, groups=17, bias="vector", act="relu"),
    conv("nhwc-hwio-dilation2-leakyrelu", (1, 7, 7, 5), (3, 3, 5, 3), layout="NHWC", kernel_layout="HWIO",
         padding=2, dilation=2, act="leakyrelu"),
    conv("nhwc-hwio-h1-1x1-bias", (1, 1, 1, 17), (1, 1, 17, 5), layout="NHWC", kernel_layout="HWIO",
         bias="vector"),
    conv("nhwc-ohwi-depthwise-c5-stride2", (1, 7, 7, 5), (5, 3, 3, 1), layout="NHWC", kernel_layout="OHWI",
         strides=2, padding=1, groups=5),
]


# ------------------------------------------------------------------ dense / matmul


def dense(id, x, w, *, weight="param", bias=True, act=None, composite) -> OpCase:
    """permute_dims(w (N, K)) + matmul [+ bias] [+ act]. With weight="param" the weight
    is bound, so partitioning folds the transpose into the constant (a matmul with a
    (K, N) weight); with weight="input" the permute_dims stays in the graph."""

    def build(rng):
        n, k = w
        inputs = {"x": _rand(rng, x)}
        params = {}
        (params if weight == "param" else inputs)["w"] = _rand(rng, w, np.sqrt(2.0 / k))
        if bias:
            params["b"] = _rand(rng, (n,))

        def body(bb, v):
            y = relax.op.matmul(v["x"], bb.emit(relax.op.permute_dims(v["w"])))
            if bias:
                y = relax.op.add(bb.emit(y), v["b"])
            return _act(y, act, bb)

        return make_module(inputs, params, body), params, inputs

    return OpCase(id, build, [composite])


def matmul(id, x, w, *, bias=False, act=None) -> OpCase:
    """matmul with a (K, N) weight [+ bias] [+ act]."""

    def build(rng):
        k, n = w
        inputs = {"x": _rand(rng, x)}
        params = {"w": _rand(rng, w, np.sqrt(2.0 / k))}
        if bias:
            params["b"] = _rand(rng, (n,))

        def body(bb, v):
            y = relax.op.matmul(v["x"], v["w"])
            if bias:
                y = relax.op.add(bb.emit(y), v["b"])
            return _act(y, act, bb)

        return make_module(inputs, params, body), params, inputs

    return OpCase(id, build, [_name("matmul", "bias" if bias else None, act)])


DENSE_CASES = [
    dense("dense-k17-n5-bias", (1, 17), (5, 17), composite="sophon.matmul_bias"),
    dense("dense-batch3-k64-n10-bias-relu", (3, 64), (10, 64), act="relu", composite="sophon.matmul_bias_relu"),
    dense("dense-weightinput-k31-n7-bias-clip", (1, 31), (7, 31), weight="input", act="clip",
          composite="sophon.dense_bias_clip"),
    dense("dense-weightinput-k5-n3-leakyrelu", (2, 5), (3, 5), weight="input", bias=False, act="leakyrelu",
          composite="sophon.dense_leakyrelu"),
    matmul("matmul-k17-n5", (2, 17), (17, 5)),
    matmul("matmul-k31-n7-bias-relu", (1, 31), (31, 7), bias=True, act="relu"),
    matmul("matmul-3d-input", (2, 3, 17), (17, 5)),
    matmul("matmul-k65-n70-bias", (1, 65), (65, 70), bias=True),
]


# ------------------------------------------------------------------ pooling


def pool(id, kind, x, *, layout="NCHW", size=2, strides=None, padding=0, dilation=1, ceil_mode=False,
         count_include_pad=False) -> OpCase:
    def build(rng):
        inputs = {"x": _rand(rng, x)}
        op = relax.op.nn.max_pool2d if kind == "max" else relax.op.nn.avg_pool2d

        def body(bb, v):
            return op(v["x"], pool_size=size, strides=strides if strides is not None else size,
                      padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                      count_include_pad=count_include_pad, layout=layout)

        return make_module(inputs, {}, body), {}, inputs

    return OpCase(id, build, [f"sophon.{kind}_pool2d"])


POOL_CASES = [
    pool("max-nchw-c3-h7-2x2s2", "max", (1, 3, 7, 7)),
    pool("max-nchw-c17-h31-3x3s2-pad1-ceil", "max", (1, 17, 31, 31), size=3, strides=2, padding=1,
         ceil_mode=True),
    pool("max-nhwc-c5-h7-3x3s1-asympad", "max", (1, 7, 7, 5), layout="NHWC", size=3, strides=1,
         padding=(0, 1, 1, 2)),
    pool("max-nchw-c5-h7-3x3-dilation2", "max", (1, 5, 7, 7), size=3, strides=1, dilation=2),
    pool("max-nhwc-c17-h1-3x3-pad1", "max", (1, 1, 1, 17), layout="NHWC", size=3, strides=1, padding=1),
    pool("avg-nchw-c5-h7-3x3s2-pad1-excludepad", "avg", (1, 5, 7, 7), size=3, strides=2, padding=1),
    pool("avg-nchw-c5-h7-3x3s2-pad1-includepad", "avg", (1, 5, 7, 7), size=3, strides=2, padding=1,
         count_include_pad=True),
    pool("avg-nhwc-c3-h7-2x2s2-ceil-excludepad", "avg", (1, 7, 7, 3), layout="NHWC", ceil_mode=True),
    pool("avg-nhwc-c17-h31-3x3s1-asympad-includepad", "avg", (1, 31, 31, 17), layout="NHWC", size=3,
         strides=1, padding=(1, 0, 2, 1), count_include_pad=True),
    pool("avg-nchw-c3-h7-2x2s2-pad1-ceil-includepad", "avg", (1, 3, 7, 7), padding=1, ceil_mode=True,
         count_include_pad=True),
    pool("avg-nchw-c17-h1-3x3-pad1-excludepad", "avg", (1, 17, 1, 1), size=3, strides=1, padding=1),
    pool("avg-nhwc-c5-h7-3x3s2-asympad-ceil-includepad", "avg", (1, 7, 7, 5), layout="NHWC", size=3,
         strides=2, padding=(0, 1, 1, 2), ceil_mode=True, count_include_pad=True),
]


# ------------------------------------------------------------------ global pooling


def adaptive(id, x, *, layout="NCHW", output_size=1) -> OpCase:
    def build(rng):
        inputs = {"x": _rand(rng, x)}

        def body(bb, v):
            return relax.op.nn.adaptive_avg_pool2d(v["x"], output_size=output_size, layout=layout)

        return make_module(inputs, {}, body), {}, inputs

    return OpCase(id, build, ["sophon.adaptive_avg_pool2d"])


def mean(id, x, axis, keepdims=False) -> OpCase:
    def build(rng):
        inputs = {"x": _rand(rng, x)}

        def body(bb, v):
            return relax.op.mean(v["x"], axis=axis, keepdims=keepdims)

        return make_module(inputs, {}, body), {}, inputs

    return OpCase(id, build, ["sophon.mean"])


GLOBAL_POOL_CASES = [
    adaptive("adaptive-nchw-c17-h7", (1, 17, 7, 7)),
    adaptive("adaptive-nhwc-c5-h7", (1, 7, 7, 5), layout="NHWC"),
    adaptive("adaptive-nchw-n2-c3-h31", (2, 3, 31, 31)),
    adaptive("adaptive-nchw-c17-h1", (1, 17, 1, 1)),
    adaptive("adaptive-nchw-c5-h8-to-2x2", (1, 5, 8, 8), output_size=2),
    mean("mean-nchw-c17-h7-axes23", (1, 17, 7, 7), [2, 3]),
    mean("mean-nhwc-c5-h7-axes12-keepdims", (1, 7, 7, 5), [1, 2], keepdims=True),
    mean("mean-nchw-n2-c3-h31-negaxes-keepdims", (2, 3, 31, 31), [-2, -1], keepdims=True),
    mean("mean-nhwc-c17-h1", (1, 1, 1, 17), [1, 2]),
]


# ------------------------------------------------------------------ element-wise binary


BINARY_OPS = {
    "add": relax.op.add,
    "subtract": relax.op.subtract,
    "multiply": relax.op.multiply,
    "maximum": relax.op.maximum,
    "minimum": relax.op.minimum,
}


def binary(id, op, lhs, rhs, *, const=None, act=None) -> OpCase:
    """op(lhs, rhs) [+ relu | clip]; const="lhs"/"rhs" makes that operand a bound param."""

    def build(rng):
        inputs, params = {}, {}
        (params if const == "lhs" else inputs)["a"] = _rand(rng, lhs)
        (params if const == "rhs" else inputs)["b"] = _rand(rng, rhs)

        def body(bb, v):
            return _act(BINARY_OPS[op](v["a"], v["b"]), act, bb)

        return make_module(inputs, params, body), params, inputs

    return OpCase(id, build, [_name(op, act)])


BINARY_CASES = [
    binary("add-c17-h7", "add", (1, 17, 7, 7), (1, 17, 7, 7)),
    binary("subtract-n2-c3-bcast-channel-relu", "subtract", (2, 3, 7, 7), (1, 1, 7, 7), act="relu"),
    binary("multiply-constlhs-bcast-c17-h31-clip", "multiply", (1, 17, 1, 1), (1, 17, 31, 31),
           const="lhs", act="clip"),
    binary("maximum-bcast-lastaxis", "maximum", (1, 5, 7, 7), (7,), const="rhs"),
    binary("minimum-2d-bcast-row", "minimum", (3, 17), (17,)),
    binary("add-nhwc-c17-bias-clip", "add", (1, 7, 7, 17), (17,), const="rhs", act="clip"),
    binary("add-h1-relu", "add", (1, 5, 1, 1), (1, 5, 1, 1), act="relu"),
    binary("subtract-c65-bcast-const", "subtract", (1, 65, 5, 5), (1, 65, 1, 1), const="rhs"),
    binary("multiply-c3-h7-relu", "multiply", (1, 3, 7, 7), (1, 3, 7, 7), act="relu"),
    binary("minimum-bcast-h-w-clip", "minimum", (1, 3, 31, 31), (1, 1, 31, 1), act="clip"),
]


# ------------------------------------------------------------------ activations


UNARY = {
    "relu": lambda x: relax.op.nn.relu(x),
    "relu6": lambda x: relax.op.clip(x, 0.0, 6.0),
    "clip-1-1": lambda x: relax.op.clip(x, -1.0, 1.0),
    "leakyrelu0.1": lambda x: relax.op.nn.leakyrelu(x, 0.1),
    "leakyrelu0.2": lambda x: relax.op.nn.leakyrelu(x, 0.2),
    "sigmoid": lambda x: relax.op.sigmoid(x),
    "tanh": lambda x: relax.op.tanh(x),
}
UNARY_COMPOSITE = {"relu": "relu", "relu6": "clip", "clip-1-1": "clip", "leakyrelu0.1": "leakyrelu",
                   "leakyrelu0.2": "leakyrelu", "sigmoid": "sigmoid", "tanh": "tanh"}


def unary(kind, x, scale=1.0) -> OpCase:
    def build(rng):
        inputs = {"x": _rand(rng, x, scale)}
        return make_module(inputs, {}, lambda bb, v: UNARY[kind](v["x"])), {}, inputs

    shape = "x".join(map(str, x))
    return OpCase(f"{kind}-{shape}", build, [_name(UNARY_COMPOSITE[kind])])


def softmax(x, axis) -> OpCase:
    def build(rng):
        inputs = {"x": _rand(rng, x, 3.0)}
        return make_module(inputs, {}, lambda bb, v: relax.op.nn.softmax(v["x"], axis=axis)), {}, inputs

    shape = "x".join(map(str, x))
    return OpCase(f"softmax-{shape}-axis{axis}", build, ["sophon.softmax"])


ACTIVATION_CASES = [
    unary("relu", (1, 17, 7, 7)),
    unary("relu", (2, 5)),
    unary("relu6", (1, 5, 31, 31), 4.0),
    unary("clip-1-1", (1, 3, 7, 7), 2.0),
    unary("leakyrelu0.1", (1, 3, 7, 7)),
    unary("leakyrelu0.2", (1, 65, 3, 3)),
    unary("sigmoid", (1, 17, 7, 7), 3.0),
    unary("sigmoid", (2, 5), 3.0),
    unary("tanh", (1, 5, 31, 31), 3.0),
    unary("tanh", (1, 3, 1, 1), 3.0),
    softmax((1, 10), -1),
    softmax((1, 17, 7, 7), 1),
    softmax((2, 3, 5, 7), 2),
    softmax((5, 17), 0),
    softmax((1, 3, 7, 31), -1),
]


ALL_CASES = CONV_CASES + DENSE_CASES + POOL_CASES + GLOBAL_POOL_CASES + BINARY_CASES + ACTIVATION_CASES
PARAMS = [pytest.param(case, id=case.id) for case in ALL_CASES]


def test_case_ids_are_unique():
    ids = [case.id for case in ALL_CASES]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("case", PARAMS)
def test_op_matches_llvm_and_is_offloaded(case: OpCase):
    mod, params, inputs = case.make()
    result = run_sophon(mod, params, inputs)

    # really offloaded: a sophon region exists and main calls no op any more
    assert sophon_regions(result.partitioned), f"{case.id}: nothing was offloaded"
    left = host_ops(result.partitioned)
    assert not left, f"{case.id}: ops left on the host: {left}"

    expected = run_llvm(mod, params, inputs)
    # float32 on both sides; only the summation order differs (module docstring)
    assert_close(result.output, expected, rtol=RTOL, atol=ATOL, what=case.id)


# Naming and report fields: kept apart so an intended change touches this test only.
@pytest.mark.parametrize("case", PARAMS)
def test_offload_report_names(case: OpCase):
    mod, params, _ = case.make()
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod, params))
    assert list(report.offloaded) == case.composites
    assert [op.op for op in report.host_ops] == []
