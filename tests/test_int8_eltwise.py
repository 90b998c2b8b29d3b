"""INT8 element-wise ops on the chip (patterns/int8_eltwise.py; runtime lut_int8,
binary_int8, and add_int8 for SUB) bit-exact with the TFLite interpreter's
reference kernels (OpResolverType.BUILTIN_REF), the specification of TFLite's
integer arithmetic, on single-op full-integer models over odd shapes and
several scales and zero points.

Against the default interpreter (optimized kernels) the tolerance is 1 LSB:
its int8 LEAKY_RELU kernel is not the reference QuantizeLeakyRelu and rounds
the rescale 1 LSB apart on some inputs; the other ops here agree exactly.
ELU has no reference kernel in BUILTIN_REF (the resolver lacks the op), so it
is compared with the default interpreter only (its kernel is a float lookup
table, which the chip's table reproduces bit for bit).
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
from tvm_sophon import quant_eltwise  # noqa: E402
from tvm_sophon.frontend import load  # noqa: E402

from frontend_models import int8_inputs as _inputs, int8_tflite  # noqa: E402

L = tf.keras.layers
K = tf.keras.ops

UNARY = {
    "tanh": lambda x: L.Activation("tanh")(x),
    "logistic": lambda x: L.Activation("sigmoid")(x),
    "hard_swish": lambda x: L.Activation("hard_swish")(x),
    "leaky_relu": lambda x: L.LeakyReLU(0.2)(x),
    "elu": lambda x: L.ELU()(x),
    "relu": lambda x: L.ReLU()(x),
    "relu6": lambda x: L.ReLU(max_value=6.0)(x),
    "relu_n1_to_1": lambda x: L.Activation(lambda t: tf.clip_by_value(t, -1.0, 1.0))(x),
}
BINARY = {
    "mul": lambda a, b: a * b,
    "mul_relu": lambda a, b: L.ReLU()(a * b),
    "sub": lambda a, b: a - b,
    "maximum": lambda a, b: K.maximum(a, b),
    "minimum": lambda a, b: K.minimum(a, b),
}
# ops whose default (optimized) interpreter kernel is seen 1 LSB from the reference
ROUNDS_APART = {"leaky_relu", "mul", "mul_relu"}
# (op, input shapes, calibration magnitude): odd channel counts (3, 5, 17), odd
# spatial sizes (1, 7, 31), and data scales that give different quantizations
CASES = [
    ("tanh", [(7, 7, 17)], 0.5), ("tanh", [(31, 31, 3)], 4.0),
    ("logistic", [(7, 7, 5)], 6.0), ("logistic", [(1, 1, 17)], 1.0),
    ("hard_swish", [(31, 31, 5)], 2.0), ("hard_swish", [(7, 7, 3)], 8.0),
    ("leaky_relu", [(7, 7, 17)], 1.5), ("leaky_relu", [(1, 1, 3)], 5.0),
    ("elu", [(7, 31, 5)], 3.0),
    ("relu", [(7, 7, 17)], 2.0), ("relu", [(1, 31, 3)], 0.3),
    ("relu6", [(7, 7, 5)], 8.0), ("relu6", [(31, 7, 3)], 1.0), ("relu_n1_to_1", [(7, 7, 17)], 1.5),
    ("mul", [(7, 7, 5), (1, 1, 5)], 2.0), ("mul_relu", [(31, 31, 3), (31, 31, 3)], 0.7),
    ("sub", [(7, 7, 17), (7, 7, 17)], 3.0), ("sub", [(1, 1, 3), (1, 1, 3)], 0.4),
    ("sub", [(7, 7, 5), (1, 1, 5)], 1.0),
    ("maximum", [(7, 7, 17), (7, 7, 17)], 2.0), ("minimum", [(31, 31, 3), (31, 31, 3)], 1.0),
]


def _convert(op, shapes, magnitude, build=None) -> bytes:
    ins = [tf.keras.Input(s, batch_size=1) for s in shapes]
    build = build or UNARY.get(op) or BINARY[op]
    model = tf.keras.Model(ins, build(*ins))
    rng = np.random.default_rng(len(op) + len(shapes))
    # an offset per input so that zero points differ from 0 and from each other
    offsets = [0.3 * magnitude * (i + 1) for i in range(len(shapes))]

    def representative():
        for _ in range(16):
            yield [(rng.standard_normal((1, *s)) * magnitude + o).astype("float32") for s, o in zip(shapes, offsets)]

    return int8_tflite(model, representative)


def _const(v, dtype):
    return relax.const(np.array(v, dtype=dtype))


def _build_single(mod, composite):
    """A Relax module of one int8 op, partitioned for bm1684: it must be the one
    chip composite ``composite`` with nothing on the host; its VM."""
    partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert report.offloaded == [composite] and not report.host_ops, report.format()
    return relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())


def _interpreter(buf, resolver):
    interp = tf.lite.Interpreter(model_content=buf, experimental_op_resolver_type=getattr(
        tf.lite.experimental.OpResolverType, resolver))
    interp.allocate_tensors()
    return interp


def _tflite(buf, inputs, resolver):
    interp = _interpreter(buf, resolver)
    for detail, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _build(path):
    mod = load(path)
    partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    return mod, report, vm


@pytest.mark.parametrize("op, shapes, magnitude", CASES, ids=[f"{c[0]}-{'x'.join(map(str, c[1][0]))}-{c[2]}"
                                                              for c in CASES])
def test_int8_eltwise_bit_exact_with_tflite(tmp_path, op, shapes, magnitude):
    buf = _convert(op, shapes, magnitude)
    path = tmp_path / f"{op}.tflite"
    path.write_bytes(buf)
    mod, report, vm = _build(path)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    assert all(c.startswith("sophon.q") for c in report.offloaded), report.format()
    for seed in range(2):
        xs = _inputs(mod, seed)
        out = vm["main"](*map(tvm.runtime.tensor, xs)).numpy()
        optimized = _tflite(buf, xs, "BUILTIN")
        # the default interpreter: within 1 LSB (its leaky-relu kernel rounds differently)
        assert np.abs(out.astype(np.int32) - optimized).max() <= (1 if op in ROUNDS_APART else 0)
        if op != "elu":  # BUILTIN_REF has no ELU kernel
            np.testing.assert_array_equal(out, _tflite(buf, xs, "BUILTIN_REF"))  # exact: the spec


def test_int8_relu_after_residual_conv_is_one_region(tmp_path):
    """A conv whose int8 output feeds both a residual ADD and a lone RELU (the
    Xception / NASNet shape): the RELU (its own quantization, so ReluX requantizes)
    runs on the chip as a table, the model is one region, bit-exact with TFLite."""
    x = tf.keras.Input((7, 9, 5), batch_size=1)
    conv = L.Conv2D(5, 3, padding="same")(x)
    model = tf.keras.Model(x, [L.Add()([conv, x]), L.ReLU()(conv)])
    rng = np.random.default_rng(4)

    def representative():
        for _ in range(16):
            yield [(rng.standard_normal((1, 7, 9, 5)) * 1.5 + 0.4).astype("float32")]

    buf = int8_tflite(model, representative)
    path = tmp_path / "residual.tflite"
    path.write_bytes(buf)
    mod, report, vm = _build(path)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    assert "sophon.qrelu" in report.offloaded, report.format()
    interp = _interpreter(buf, "BUILTIN_REF")
    detail = interp.get_input_details()[0]
    names = [d["name"] for d in interp.get_output_details()]
    for seed in range(2):
        (data,) = _inputs(mod, seed)
        outs = vm["main"](tvm.runtime.tensor(data))
        interp.set_tensor(detail["index"], data)
        interp.invoke()
        want = {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}
        got = [o.numpy() for o in outs]
        # TVM's importer may order the two outputs unlike the interpreter: each
        # interpreter output must equal one of the chip's outputs exactly
        for name in names:
            assert any(g.shape == want[name].shape and np.array_equal(g, want[name]) for g in got), name


def _lut_from_interpreter(buf):
    """The interpreter's int8 results for every input -128..127, in table byte
    order, with the model's quantization (the model's input holds 256 values)."""
    interp = _interpreter(buf, "BUILTIN_REF")
    detail = interp.get_input_details()[0]
    x = np.arange(-128, 128, dtype=np.int8).reshape(detail["shape"])
    interp.set_tensor(detail["index"], x)
    interp.invoke()
    out = interp.get_output_details()[0]
    y = interp.get_tensor(out["index"]).reshape(-1)
    table = np.empty(256, dtype=np.int8)
    table[x.reshape(-1).view(np.uint8)] = y
    return table, detail["quantization"], out["quantization"]


@pytest.mark.parametrize("approximate", [False, True])
@pytest.mark.parametrize("magnitude", [1.0, 5.0])
def test_gelu_table_matches_tflite(approximate, magnitude):
    """GELU's table (the chip instruction's only input) against TFLite's GELU
    kernel on all 256 inputs. TVM's importer refuses quantized GELU, so the
    table is checked directly; the pattern is the float GELU chain between
    dequantize and quantize (patterns/int8_eltwise.py)."""
    buf = _convert("gelu", [(256,)], magnitude,
                   build=lambda x: L.Activation(lambda t: tf.nn.gelu(t, approximate=approximate))(x))
    want, (in_scale, in_zp), (out_scale, out_zp) = _lut_from_interpreter(buf)
    got = quant_eltwise.lut_table("gelu_tanh" if approximate else "gelu", in_scale, in_zp, out_scale, out_zp)
    np.testing.assert_array_equal(np.array(got, dtype=np.int8), want)


@pytest.mark.parametrize("shape", [(7, 7, 5), (1, 1, 17)])
def test_prelu_bit_exact_with_tflite(shape):
    """int8 PRELU (per-channel alpha) against TFLite's reference kernel, the Relax
    form written here as the importers write a float PReLU between dequantize and
    quantize: quantize(nn.prelu(dequantize(x), dequantize(alpha), axis=-1)) (the
    .tflite import is tested below)."""
    init = tf.keras.initializers.RandomUniform(-0.8, 0.8, seed=3)
    buf = _convert("prelu", [shape], 2.0, build=lambda x: L.PReLU(alpha_initializer=init, shared_axes=[1, 2])(x))
    interp = _interpreter(buf, "BUILTIN_REF")
    x_detail, out_detail = interp.get_input_details()[0], interp.get_output_details()[0]
    alpha_detail = next(d for d in interp.get_tensor_details()
                        if d["dtype"] == np.int8 and d["index"] not in (x_detail["index"], out_detail["index"])
                        and int(np.prod(d["shape"])) == shape[-1])
    alpha = interp.get_tensor(alpha_detail["index"]).reshape(shape[-1])
    (xs, xz), (as_, az), (os_, oz) = (d["quantization"] for d in (x_detail, alpha_detail, out_detail))

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, *shape), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            xf = bb.emit(relax.op.dequantize(x, _const(xs, "float32"), _const(xz, "int32")))
            af = bb.emit(relax.op.dequantize(_const(alpha, "int8"), _const(as_, "float32"), _const(az, "int32")))
            y = bb.emit(relax.op.nn.prelu(xf, af, axis=-1))
            out = bb.emit_output(relax.op.quantize(y, _const(os_, "float32"), _const(oz, "int32"), out_dtype="int8"))
        bb.emit_func_output(out)
    vm = _build_single(bb.get(), "sophon.qprelu")
    for seed in range(2):
        data = np.random.default_rng(seed).integers(-128, 128, size=(1, *shape), dtype=np.int8)
        interp.set_tensor(x_detail["index"], data)
        interp.invoke()
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(data)).numpy(),
                                      interp.get_tensor(out_detail["index"]))  # exact: the spec


# Keras PReLU's alpha shape follows shared_axes: one slope per channel ([1, 2]), one
# per (W, C) ([1]), one per element (None); on odd shapes, rank 4 and rank 2 (after a Dense)
PRELU_CASES = [((7, 5, 6), [1, 2]), ((7, 5, 6), None), ((3, 9, 5), [1]), ((1, 1, 17), None), ((13,), None)]


@pytest.mark.parametrize("shape, shared", PRELU_CASES, ids=[f"{'x'.join(map(str, c[0]))}-{c[1]}" for c in PRELU_CASES])
def test_prelu_tflite_import_bit_exact(tmp_path, shape, shared):
    """A full-integer Keras model with PReLU (TVM's importer refuses quantized PRELU;
    tvm_sophon.frontend imports it): conv (or dense) -> PReLU is one region with
    nothing on the host, bit-exact with TFLite's reference kernels."""
    rng = np.random.default_rng(len(shape))
    # slopes of both signs and above 1, so that both of TFLite's multipliers matter
    init = tf.keras.initializers.RandomUniform(-1.5, 1.5, seed=len(shape))

    def build(x):
        y = L.Conv2D(shape[-1], 3, padding="same")(x) if len(shape) == 3 else L.Dense(shape[-1])(x)
        return L.PReLU(alpha_initializer=init, shared_axes=shared)(y)

    buf = _convert("prelu", [shape], 2.0, build=build)
    path = tmp_path / "prelu.tflite"
    path.write_bytes(buf)
    mod, report, vm = _build(path)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    assert "sophon.qprelu" in report.offloaded, report.format()
    for seed in range(2):
        xs = [rng.integers(-128, 128, size=(1, *shape), dtype=np.int8)]
        np.testing.assert_array_equal(vm["main"](*map(tvm.runtime.tensor, xs)).numpy(),
                                      _tflite(buf, xs, "BUILTIN_REF"))  # exact: the spec


def test_hard_swish_fuses_with_int8_convs(tmp_path):
    """conv -> hard-swish -> conv, int8: one region, nothing on the host, bit-exact."""
    def build(x):
        y = L.Conv2D(8, 3, padding="same")(x)
        return L.Conv2D(5, 3)(L.Activation("hard_swish")(y))

    buf = _convert("conv_hswish_conv", [(9, 9, 3)], 2.0, build=build)
    path = tmp_path / "m.tflite"
    path.write_bytes(buf)
    mod, report, vm = _build(path)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    assert "sophon.qhardswish" in report.offloaded, report.format()
    xs = _inputs(mod, 0)
    np.testing.assert_array_equal(vm["main"](*map(tvm.runtime.tensor, xs)).numpy(),
                                  _tflite(buf, xs, "BUILTIN_REF"))


def test_squeeze_excitation_block_is_one_region(tmp_path):
    """An EfficientNet-style block, int8: conv -> swish (LOGISTIC, MUL) -> global mean
    -> 1x1 convs -> sigmoid -> MUL by channel, then SUB of a second conv, TANH,
    LEAKY_RELU: one region, nothing on the host, bit-exact."""
    def build(x):
        y = L.Activation("swish")(L.Conv2D(16, 3, padding="same")(x))
        s = L.GlobalAveragePooling2D(keepdims=True)(y)
        s = L.Conv2D(16, 1, activation="sigmoid")(L.Conv2D(4, 1, activation="relu")(s))
        y = L.Conv2D(8, 1)(y * s)
        return L.LeakyReLU(0.1)(L.Activation("tanh")(y - L.Conv2D(8, 3, padding="same")(x)))

    buf = _convert("se_block", [(9, 9, 3)], 2.0, build=build)
    path = tmp_path / "se.tflite"
    path.write_bytes(buf)
    mod, report, vm = _build(path)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    for seed in range(2):
        xs = _inputs(mod, seed)
        np.testing.assert_array_equal(vm["main"](*map(tvm.runtime.tensor, xs)).numpy(),
                                      _tflite(buf, xs, "BUILTIN_REF"))


def test_normalize_keeps_dequantized_constants_unshared():
    """The MobileNetV3 failure in small: one dequantize of a constant used by two
    multiplies, and an add(constant, x) that ConstantOperandLast rewrites (its
    rewrite shares split dequantizes again); after normalize every dequantize of
    a constant has one consumer."""
    from tvm_sophon.normalize import normalize

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 4, 3), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            xf = bb.emit(relax.op.dequantize(x, _const(0.05, "float32"), _const(0, "int32")))
            sixth = bb.emit(relax.op.dequantize(_const(127, "int8"), _const(0.0013, "float32"), _const(-128, "int32")))
            a = bb.emit(relax.op.multiply(xf, sixth))
            b = bb.emit(relax.op.multiply(relax.op.add(_const(3.0, "float32"), xf), sixth))
            out = bb.emit_output(relax.op.quantize(relax.op.add(a, b), _const(0.05, "float32"), _const(0, "int32"),
                                                   out_dtype="int8"))
        bb.emit_func_output(out)
    bindings = normalize(bb.get())["main"].body.blocks[0].bindings
    dq_of_const = {b.var for b in bindings if isinstance(b.value, relax.Call) and b.value.op.name == "relax.dequantize"
                   and isinstance(b.value.args[0], tvm.ir.expr.Constant)}
    uses = [sum(1 for b in bindings if isinstance(b.value, relax.Call) and any(a.same_as(v) for a in b.value.args))
            for v in dq_of_const]
    assert uses and max(uses) == 1, uses


def test_requantize_table_is_tflite_requantize():
    """QUANTIZE int8 -> int8 imports as dequantize -> quantize; its table is
    TFLite's Requantize (quantize.cc: the ratio of the scales in double,
    MultiplyByQuantizedMultiplier), written out here in Python from quant.py's
    independent statement of the fixed-point rule."""
    from tvm_sophon import quant

    for in_scale, in_zp, out_scale, out_zp in [(0.05, -3, 0.11, 7), (0.3, 20, 0.07, -128), (0.02, 0, 0.02, 5)]:
        m, s = quant.quantize_multiplier(quant.f64(in_scale) / quant.f64(out_scale))
        want = [max(-128, min(127, quant.multiply_by_quantized_multiplier(v - in_zp, m, s) + out_zp))
                for v in list(range(0, 128)) + list(range(-128, 0))]
        assert list(quant_eltwise.lut_table("requantize", in_scale, in_zp, out_scale, out_zp)) == want


def test_requantize_chain_runs_on_the_chip():
    """dequantize -> quantize between two scales is one sophon.qrequantize."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 7, 7, 5), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            xf = bb.emit(relax.op.dequantize(x, relax.const(np.float32(0.05)), relax.const(np.int32(-3))))
            out = bb.emit_output(relax.op.quantize(xf, relax.const(np.float32(0.11)), relax.const(np.int32(7)),
                                                   out_dtype="int8"))
        bb.emit_func_output(out)
    partitioned = tvm_sophon.partition_for_sophon(bb.get(), chip="bm1684")
    assert tvm_sophon.offload_report(partitioned).offloaded == ["sophon.qrequantize"]
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    data = np.arange(-128, 117, dtype=np.int8).reshape(1, 7, 7, 5)
    table = np.array(quant_eltwise.lut_table("requantize", 0.05, -3, 0.11, 7), dtype=np.int8)
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(data)).numpy(), table[data.view(np.uint8)])


def test_max_with_different_scales_stays_on_host():
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((1, 4, 4, 3), "int8"))
    b = relax.Var("b", relax.TensorType((1, 4, 4, 3), "int8"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            af = bb.emit(relax.op.dequantize(a, relax.const(np.float32(0.05)), relax.const(np.int32(0))))
            bf = bb.emit(relax.op.dequantize(b, relax.const(np.float32(0.07)), relax.const(np.int32(0))))
            out = bb.emit_output(relax.op.quantize(relax.op.maximum(af, bf), relax.const(np.float32(0.05)),
                                                   relax.const(np.int32(0)), out_dtype="int8"))
        bb.emit_func_output(out)
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(bb.get(), chip="bm1684"))
    assert "sophon.qmaximum" not in report.offloaded
    assert any("raw values of one quantization" in op.reason for op in report.host_ops), report.format()


def test_onnx_qdq_chain_within_one_lsb_of_onnxruntime(tmp_path):
    """An ONNX QDQ chain (onnxruntime's static quantizer): x -> Sigmoid -> Mul(x, .)
    -> LeakyRelu, one region, within 1 LSB of onnxruntime, whose int8 kernels are
    not TFLite's (its QLinear ops round their own way)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    shape = [1, 5, 7, 7]
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["m"]),
             helper.make_node("LeakyRelu", ["m"], ["y"], alpha=0.1)]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.standard_normal(shape).astype("float32") * 2} for _ in range(8)])

        def get_next(self):
            return next(self.batches, None)

    path = tmp_path / "qdq.onnx"
    quantize_static(str(tmp_path / "fp32.onnx"), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert report.offloaded == ["sophon.qsigmoid", "sophon.qmultiply", "sophon.qleakyrelu"], report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    qmodel = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    step = float(inits[next(n for n in qmodel.graph.node if n.output[0] == "y").input[1]])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for _ in range(3):
        x = rng.standard_normal(shape).astype("float32") * 2
        diff = np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - session.run(None, {"x": x})[0])
        assert diff.max() <= step * 1.0001  # 1 LSB: onnxruntime's own int8 rounding


@pytest.mark.parametrize("lo, hi", [(0.0, None), (0.0, 6.0), (-1.0, 1.0)])
def test_int8_relu_one_quantization_is_a_clamp(lo, hi):
    """A relu / clip between dequantize and quantize of one quantization (scale
    0.05, zero point -3) is TFLite's ReluX with multiplier 1: a clamp of the raw
    int8 values to [zp + round(lo / scale), zp + round(hi / scale)] = [-3, 117] for
    relu6, [-23, 17] for relu_n1_to_1, [-3, 127] for relu, on every int8 value."""
    scale, zp = np.float32(0.05), -3

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 16, 1), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            xf = bb.emit(relax.op.dequantize(x, _const(scale, "float32"), _const(zp, "int32")))
            y = bb.emit(relax.op.nn.relu(xf) if hi is None else relax.op.clip(xf, lo, hi))
            out = bb.emit_output(relax.op.quantize(y, _const(scale, "float32"), _const(zp, "int32"), out_dtype="int8"))
        bb.emit_func_output(out)
    vm = _build_single(bb.get(), "sophon.qrelu")
    data = (np.arange(256) - 128).astype(np.int8).reshape(1, 16, 16, 1)
    bounds = {(0.0, None): (-3, 127), (0.0, 6.0): (-3, 117), (-1.0, 1.0): (-23, 17)}[(lo, hi)]
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(data)).numpy(), np.clip(data, *bounds))
