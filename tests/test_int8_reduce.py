"""INT8 MEAN, SUM, REDUCE_MAX and SOFTMAX of pre-quantized TFLite models on the
chip (tiu_reduce_int8, tiu_softmax_int8), against the TFLite interpreter.

The specification is TFLite's reference kernels (OpResolverType.BUILTIN_REF):
bit-exact there (tolerance 0). TFLite's default (optimized) kernels round some
results differently, so against them the tolerance is 1 LSB:
  MEAN     optimized_integer_ops::Mean / optimized QuantizedMeanOrSum rescale in
           their own order (the reference folds 1 / count into the multiplier);
  SUM      the optimized QuantizedMeanOrSum rescales the sum in float;
  SOFTMAX  the optimized kernel reads exp from a float-built lookup table, where
           the reference computes gemmlowp's fixed-point exp.
REDUCE_MAX is exact against both.

TFLite 2.21's reference SUM for int8 is not a specification: reduce.cc's
QuantizedMeanOrSum<T, kReference> hands the int8 tensors to the kernel as uint8
(GetTensorData<uint8_t>), so it sums 0..255 instead of -128..127. The chip's SUM
is the same integer formula on int8 (reference_ops::QuantizedMeanOrSum with
compute_sum): it is checked bit-exact against that formula written out here
with numpy, and within 1 LSB of the default interpreter; the test also states
the reference kernel's reading (so that a TFLite that fixes it is noticed).
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
from tvm_sophon import quant  # noqa: E402
from tvm_sophon.frontend import load  # noqa: E402
from frontend_models import int8_tflite  # noqa: E402

# (H = W, C, spread of the representative data: different scales and zero points)
CASES = [(1, 3, 0.5), (7, 5, 2.0), (31, 17, 20.0)]


def _model(h: int, c: int, spread: float) -> bytes:
    """One full-integer model with every reduction CNNs use on one NHWC input:
    global average pool (keepdims both ways), global max pool, a spatial sum, a
    softmax over the channels, and a classifier head (mean -> dense -> softmax)."""
    layers = tf.keras.layers
    x = tf.keras.Input((h, h, c), batch_size=1)
    head = layers.Dense(10)(layers.GlobalAveragePooling2D()(x))
    outs = [layers.GlobalAveragePooling2D()(x), layers.GlobalAveragePooling2D(keepdims=True)(x),
            layers.GlobalMaxPooling2D()(x), tf.keras.ops.sum(x, axis=[1, 2], keepdims=True),
            layers.Softmax()(x), layers.Softmax()(head)]
    model = tf.keras.Model(x, outs)
    rng = np.random.default_rng(h * 100 + c)

    def representative():
        for _ in range(8):
            yield [(rng.standard_normal((1, h, h, c)) * spread + spread / 4).astype("float32")]

    return int8_tflite(model, representative)


def _tflite(buf: bytes, x: np.ndarray, resolver: str):
    interp = tf.lite.Interpreter(model_content=buf, experimental_op_resolver_type=getattr(
        tf.lite.experimental.OpResolverType, resolver))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    details = interp.get_output_details()
    return [interp.get_tensor(d["index"]) for d in details], details


def _output_ops(mod) -> list[str]:
    """The float op between dequantize and quantize behind each output of main."""
    func = mod["main"]
    bindings = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    body = func.body.body
    fields = bindings.get(body, body)
    fields = list(fields.fields) if isinstance(fields, relax.Tuple) else [body]
    ops = []
    for var in fields:
        if var not in bindings:   # the converter dropped a reduction over 1x1: the input itself
            ops.append("identity")
            continue
        quantize = bindings[var]
        ops.append(bindings[quantize.args[0]].op.name)
    return ops


def _sum_formula(x: np.ndarray, in_q, out_q, out_dtype) -> np.ndarray:
    """TFLite's integer QuantizedMeanOrSum with compute_sum over axes 1, 2 of an
    NHWC tensor: MultiplyByQuantizedMultiplier(sum - zp_in * count) + zp_out,
    clamped to out_dtype."""
    (in_scale, in_zp), (out_scale, out_zp) = in_q, out_q
    multiplier, shift = quant.quantize_multiplier(quant.f64(in_scale) / quant.f64(out_scale))
    count = x.shape[1] * x.shape[2]
    info = np.iinfo(out_dtype)
    sums = x.astype(np.int64).sum(axis=(1, 2))
    out = [min(info.max, max(info.min, quant.multiply_by_quantized_multiplier(int(s) - in_zp * count, multiplier,
                                                                              shift) + out_zp))
           for s in sums.ravel()]
    return np.array(out, dtype=np.int64).reshape(sums.shape)


@pytest.mark.parametrize("h,c,spread", CASES, ids=[f"h{h}_c{c}" for h, c, _ in CASES])
def test_reductions_and_softmax_bit_exact_with_tflite_reference(tmp_path, h, c, spread):
    buf = _model(h, c, spread)
    path = tmp_path / "reduce.tflite"
    path.write_bytes(buf)
    mod = load(path)
    partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert not report.host_ops, report.format()
    # over a 1x1 image TFLite's converter drops the sum and the pools (their outputs are the input)
    for pattern in ("sophon.qreduce_mean", "sophon.qsoftmax") + (("sophon.qreduce_max", "sophon.qreduce_sum")
                                                                 if h > 1 else ()):
        assert pattern in report.offloaded, report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    ops = _output_ops(mod)
    rng = np.random.default_rng(h + c)
    for _ in range(3):
        x = rng.integers(-128, 128, size=(1, h, h, c), dtype=np.int8)
        ref, details = _tflite(buf, x, "BUILTIN_REF")
        default, _ = _tflite(buf, x, "BUILTIN")
        outs = vm["main"](tvm.runtime.tensor(x))
        outs = [outs] if len(ops) == 1 else outs
        in_q = _tflite_input_quantization(buf)
        for i, op in enumerate(ops):
            got = x.astype(np.int64) if op == "identity" else outs[i].numpy().astype(np.int64)
            assert got.shape == ref[i].shape, (op, got.shape, ref[i].shape)
            # 1 LSB: the default kernels' rounding (module docstring)
            assert np.abs(got - default[i]).max() <= 1, op
            if op == "relax.sum":
                want = _sum_formula(x, in_q, details[i]["quantization"], np.int8).reshape(got.shape)
                np.testing.assert_array_equal(got, want)  # exact: TFLite's integer formula
                as_uint8 = _sum_formula(x.view(np.uint8), in_q, details[i]["quantization"], np.uint8)
                assert np.array_equal(ref[i], as_uint8.astype(np.uint8).view(np.int8).reshape(got.shape)) or \
                    np.array_equal(ref[i], got), "TFLite's reference SUM changed: compare with it directly"
            else:
                np.testing.assert_array_equal(got, ref[i], err_msg=op)  # exact: TFLite's reference kernels


def _tflite_input_quantization(buf: bytes):
    interp = tf.lite.Interpreter(model_content=buf)
    return interp.get_input_details()[0]["quantization"]


def _chain(op, x_shape, in_q, out_q, **attrs):
    """main(x int8) = quantize(op(dequantize(x)))."""
    x = relax.Var("x", relax.TensorType(x_shape, "int8"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            f = bb.emit(relax.op.dequantize(x, relax.const(in_q[0], "float32"), relax.const(in_q[1], "int32")))
            y = bb.emit(op(f, **attrs))
            out = bb.emit_output(relax.op.quantize(y, relax.const(out_q[0], "float32"),
                                                   relax.const(out_q[1], "int32"), out_dtype="int8"))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("op,attrs,out_q,reason", [
    (relax.op.max, {"axis": [1, 2]}, (0.5, 0), "re-quantizes"),
    (relax.op.nn.softmax, {"axis": -1}, (0.01, 0), "scale 1/256"),
    (relax.op.mean, {"axis": [1, 3]}, (0.1, 0), "non-adjacent"),
])
def test_chain_the_chip_cannot_take_stays_on_the_host_with_its_reason(op, attrs, out_q, reason):
    mod = _chain(op, (1, 4, 4, 3), (0.1, 2), out_q, **attrs)
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod, chip="bm1684"))
    assert not any(p.startswith(("sophon.qreduce", "sophon.qsoftmax")) for p in report.offloaded)
    assert reason in report.format(), report.format()


def test_separable_conv_tanh_global_pool_net_is_one_region_bit_exact(tmp_path):
    """Issue #11's example: a separable-conv net with tanh and a global average pool
    was 1 LSB off TFLite, its mean (and tanh) run as float on the host."""
    layers = tf.keras.layers
    x = tf.keras.Input((9, 9, 3), batch_size=1)
    h = layers.SeparableConv2D(8, 3, padding="same", activation="tanh")(x)
    model = tf.keras.Model(x, layers.Dense(5)(layers.GlobalAveragePooling2D()(h)))
    rng = np.random.default_rng(11)

    def representative():
        for _ in range(8):
            yield [rng.standard_normal((1, 9, 9, 3)).astype("float32")]

    buf = int8_tflite(model, representative)
    path = tmp_path / "separable.tflite"
    path.write_bytes(buf)
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    for _ in range(4):
        xs = rng.integers(-128, 128, size=(1, 9, 9, 3), dtype=np.int8)
        ref, _ = _tflite(buf, xs, "BUILTIN_REF")
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(xs)).numpy(), ref[0])  # exact
