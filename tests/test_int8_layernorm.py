"""INT8 layer normalization as TFLite's converter writes it (ConvNeXt's LayerNorm,
issue #11): MEAN, SQUARED_DIFFERENCE, MEAN, ADD epsilon, RSQRT, MUL by gamma, NEG
of the mean (the converter leaves it as DEQUANTIZE -> float NEG -> QUANTIZE),
MUL, MUL, ADD. The new chip ops, against TFLite's reference kernels
(OpResolverType.BUILTIN_REF, the specification of its integer arithmetic),
bit-exact, on single-op full-integer models over odd shapes and several scales:

  RSQRT               lut_int8 SOPHON_LUT_RSQRT (elementwise.cc's fixed-point
                      Newton iteration, a function of the 256 inputs)
  NEG                 lut_int8 SOPHON_LUT_NEG (float dequantize, negate, quantize)
  SQUARED_DIFFERENCE  binary_int8 SOPHON_BINARY_INT8_SQUARED_DIFFERENCE

and a Keras LayerNormalization block (conv -> LayerNorm -> dense -> GELU), a
transformer's LayerNorm over a sequence and one over H, W and C: one region,
nothing on the host, bit-exact. Against the default interpreter the
tolerance is stated per test where its optimized kernels round differently.
"""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tflite")

import tvm  # noqa: E402
from tvm import relax  # noqa: E402

import tvm_sophon  # noqa: E402
from tvm_sophon import quant, quant_eltwise  # noqa: E402
from tvm_sophon.frontend import load  # noqa: E402

from frontend_models import int8_inputs as _inputs, int8_tflite  # noqa: E402

L = tf.keras.layers


def _convert(build, shapes, magnitude, offset, seed) -> bytes:
    ins = [tf.keras.Input(s, batch_size=1) for s in shapes]
    model = tf.keras.Model(ins, build(*ins))
    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(16):
            yield [(rng.standard_normal((1, *s)) * magnitude + offset * (i + 1)).astype("float32")
                   for i, s in enumerate(shapes)]

    return int8_tflite(model, representative)


def _tflite(buf, inputs, resolver="BUILTIN_REF"):
    interp = tf.lite.Interpreter(model_content=buf, experimental_op_resolver_type=getattr(
        tf.lite.experimental.OpResolverType, resolver))
    interp.allocate_tensors()
    for detail, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def _ops(buf) -> set:
    import tflite

    model = tflite.Model.GetRootAsModel(buf, 0)
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    graph = model.Subgraphs(0)
    codes = [model.OperatorCodes(graph.Operators(i).OpcodeIndex()) for i in range(graph.OperatorsLength())]
    return {names[max(c.BuiltinCode(), c.DeprecatedBuiltinCode())] for c in codes}


def _compile(tmp_path, buf):
    path = tmp_path / "m.tflite"
    path.write_bytes(buf)
    mod = load(path)
    partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    return mod, report, relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())


def _run(vm, xs):
    out = vm["main"](*map(tvm.runtime.tensor, xs))
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]


# (op, TFLite op, builder, input shapes, magnitude, offset of the calibration data)
CASES = [
    # RSQRT of positive data: the converter gives the input zero point -128 (its range starts at 0)
    ("rsqrt", "RSQRT", lambda x: tf.math.rsqrt(x), [(7, 7, 17)], 0.2, 1.0),
    ("rsqrt", "RSQRT", lambda x: tf.math.rsqrt(x), [(1, 31, 3)], 3.0, 9.0),
    ("rsqrt", "RSQRT", lambda x: tf.math.rsqrt(x), [(5, 1, 1)], 0.01, 0.02),
    ("neg", "NEG", lambda x: -x, [(7, 7, 5)], 2.0, 0.6),
    ("neg", "NEG", lambda x: -x, [(31, 1, 17)], 0.05, -0.3),
    ("squared_difference", "SQUARED_DIFFERENCE", tf.math.squared_difference, [(7, 7, 17), (7, 7, 1)], 1.0, 0.3),
    ("squared_difference", "SQUARED_DIFFERENCE", tf.math.squared_difference, [(1, 31, 3), (1, 31, 3)], 4.0, -1.0),
    ("squared_difference", "SQUARED_DIFFERENCE", tf.math.squared_difference, [(5, 7, 5), (1, 1, 5)], 0.1, 0.05),
]


@pytest.mark.parametrize("op, tfl_op, build, shapes, magnitude, offset", CASES,
                         ids=[f"{c[0]}-{'x'.join(map(str, c[3][0]))}-{c[4]}" for c in CASES])
def test_layernorm_op_bit_exact_with_tflite(tmp_path, op, tfl_op, build, shapes, magnitude, offset):
    def model(*xs):
        return L.Activation(build)(xs[0]) if len(xs) == 1 else L.Lambda(lambda t: build(*t))(list(xs))

    buf = _convert(model, shapes, magnitude, offset, seed=len(shapes) * 10 + int(magnitude * 7))
    assert tfl_op in _ops(buf)   # the model holds the op under test
    mod, report, vm = _compile(tmp_path, buf)
    composite = {"rsqrt": "sophon.qrsqrt", "neg": "sophon.qnegative",
                 "squared_difference": "sophon.qsquared_difference"}[op]
    assert composite in report.offloaded, report.format()
    for seed in range(2):
        xs = _inputs(mod, seed)
        if op == "rsqrt":   # TFLite refuses inputs below the zero point (negative values)
            zp = tf.lite.Interpreter(model_content=buf).get_input_details()[0]["quantization"][1]
            xs[0] = np.maximum(xs[0], np.int8(zp))
        got = _run(vm, xs)
        np.testing.assert_array_equal(got[0], _tflite(buf, xs)[0])   # exact: the spec
        # the default interpreter's kernels for these three ops are the reference ones
        np.testing.assert_array_equal(got[0], _tflite(buf, xs, "BUILTIN")[0])


def _squared_difference_numpy(a, b, p):
    """squared_difference.cc's integer formula written out on Python ints with
    quant.py's independent statement of the fixed-point helpers."""
    def smaller_than_one(x, m, s):
        return quant._rounding_divide_by_pot(quant._saturating_rounding_doubling_high_mul(x, m), -s)

    out = np.empty(np.broadcast(a, b).shape, dtype=np.int8)
    for idx, (x, y) in zip(np.ndindex(out.shape), np.broadcast(a, b)):
        d = smaller_than_one((int(x) - p.input1_zero_point) * 128, p.multiplier1, p.shift1) - \
            smaller_than_one((int(y) - p.input2_zero_point) * 128, p.multiplier2, p.shift2)
        out[idx] = max(-128, min(127, smaller_than_one(d * d, p.multiplier3, p.shift3) + p.output_zero_point))
    return out


def test_squared_difference_params_follow_tflite_prepare():
    """The multipliers from the scales as squared_difference.cc's Prepare computes
    them, and the chip's result on a hand-built Relax chain equal to the formula
    (with zero points at both ends of int8)."""
    s1, z1, s2, z2, so, zo = 0.02, 127, 0.05, -128, 0.003, -128
    p = quant_eltwise.squared_difference_params(s1, z1, s2, z2, so, zo)
    twice = 2 * float(np.float32(s2))
    assert (p.multiplier1, p.shift1) == quant.quantize_multiplier(float(np.float32(s1)) / twice)
    assert (p.multiplier2, p.shift2) == (1 << 30, 0)            # s2 / (2 * s2) = 1/2
    assert (p.multiplier3, p.shift3) == quant.quantize_multiplier(twice * twice / (16384 * float(np.float32(so))))
    assert p.shift1 <= 0 and p.shift3 <= 0

    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((1, 5, 7, 3), "int8"))
    b = relax.Var("b", relax.TensorType((1, 5, 7, 1), "int8"))

    def c(v, dtype):
        return relax.const(np.array(v, dtype=dtype))

    with bb.function("main", [a, b]):
        with bb.dataflow():
            af = bb.emit(relax.op.dequantize(a, c(s1, "float32"), c(z1, "int32")))
            bf = bb.emit(relax.op.dequantize(b, c(s2, "float32"), c(z2, "int32")))
            d = bb.emit(relax.op.subtract(af, bf))
            out = bb.emit_output(relax.op.quantize(relax.op.multiply(d, d), c(so, "float32"), c(zo, "int32"),
                                                   out_dtype="int8"))
        bb.emit_func_output(out)
    partitioned = tvm_sophon.partition_for_sophon(bb.get(), chip="bm1684")
    assert tvm_sophon.offload_report(partitioned).offloaded == ["sophon.qsquared_difference"]
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    rng = np.random.default_rng(3)
    xa = rng.integers(-128, 128, size=(1, 5, 7, 3), dtype=np.int8)
    xb = rng.integers(-128, 128, size=(1, 5, 7, 1), dtype=np.int8)
    np.testing.assert_array_equal(_run(vm, [xa, xb])[0], _squared_difference_numpy(xa, xb, p))


def test_squared_difference_with_too_small_output_scale_stays_on_host():
    """An output multiplier of 1 or more is outside TFLite's kernel (it takes it with
    QuantizeMultiplierSmallerThanOneExp): the chain stays on the host, with the reason."""
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((1, 4, 4, 3), "int8"))
    with bb.function("main", [a]):
        with bb.dataflow():
            af = bb.emit(relax.op.dequantize(a, relax.const(np.float32(0.5)), relax.const(np.int32(0))))
            bf = bb.emit(relax.op.dequantize(a, relax.const(np.float32(0.5)), relax.const(np.int32(3))))
            d = bb.emit(relax.op.subtract(af, bf))
            out = bb.emit_output(relax.op.quantize(relax.op.multiply(d, d), relax.const(np.float32(1e-6)),
                                                   relax.const(np.int32(0)), out_dtype="int8"))
        bb.emit_func_output(out)
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(bb.get(), chip="bm1684"))
    assert "sophon.qsquared_difference" not in report.offloaded
    assert any("output multiplier" in op.reason for op in report.host_ops), report.format()


@pytest.mark.parametrize("shape, channels", [((7, 7, 5), 24), ((3, 5, 3), 17)])
def test_layernorm_block_is_one_region_bit_exact(tmp_path, shape, channels):
    """ConvNeXt's block in small: conv -> LayerNormalization (epsilon 1e-6, as
    ConvNeXt's) -> dense -> GELU -> dense, plus the residual; int8, one region,
    nothing on the host, bit-exact with TFLite's reference kernels."""
    def build(x):
        y = L.Conv2D(channels, 3, padding="same")(x)
        z = L.LayerNormalization(epsilon=1e-6, gamma_initializer=tf.keras.initializers.RandomUniform(0.5, 1.5, seed=1),
                                 beta_initializer=tf.keras.initializers.RandomUniform(-0.3, 0.3, seed=2))(y)
        z = L.Dense(channels)(L.Activation("gelu")(L.Dense(2 * channels)(z)))
        return L.Add()([y, z])

    buf = _convert(build, [shape], 1.0, 0.2, seed=channels)
    assert {"MEAN", "SQUARED_DIFFERENCE", "RSQRT", "NEG", "GELU"} <= _ops(buf)
    mod, report, vm = _compile(tmp_path, buf)
    for name in ("sophon.qrsqrt", "sophon.qnegative", "sophon.qsquared_difference", "sophon.qreduce_mean"):
        assert name in report.offloaded, report.format()
    for seed in range(2):
        xs = _inputs(mod, seed)
        np.testing.assert_array_equal(_run(vm, xs)[0], _tflite(buf, xs)[0])   # exact: the spec


@pytest.mark.parametrize("shape, kwargs", [((10, 16), {"epsilon": 1e-5}),
                                           ((5, 5, 8), {"axis": [1, 2, 3], "center": False})],
                         ids=["sequence", "over-hwc-no-center"])
def test_layernorm_variants_bit_exact(tmp_path, shape, kwargs):
    """A transformer's LayerNorm over the features of a (1, T, C) sequence, and one over
    H, W and C without beta: the same int8 ops, one region, bit-exact."""
    buf = _convert(lambda x: L.LayerNormalization(**kwargs)(x), [shape], 2.0, 0.5, seed=len(shape))
    assert {"SQUARED_DIFFERENCE", "RSQRT"} <= _ops(buf)
    mod, report, vm = _compile(tmp_path, buf)
    xs = _inputs(mod, 0)
    np.testing.assert_array_equal(_run(vm, xs)[0], _tflite(buf, xs)[0])   # exact: the spec
