"""INT8: compile-time requantization against the runtime, post-training
quantization end to end, per-layer comparison on the chip, and bad input."""
import ctypes

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax
from tvm.script import relax as R

import tvm_sophon
from tvm_sophon import cost, quant
from tvm_sophon.models import reference_run, resnet_tiny


# ---------------------------------------------------------------- requantization helpers

def _c_quantize_multiplier(real):
    lib = cost.runtime_library()
    m, s = ctypes.c_int32(), ctypes.c_int32()
    lib.sophon_quantize_multiplier(ctypes.c_double(real), ctypes.byref(m), ctypes.byref(s))
    return m.value, s.value


@settings(max_examples=300, deadline=None)
@given(real=st.floats(min_value=1e-12, max_value=1e9, allow_nan=False))
def test_compile_time_multiplier_equals_runtime_rule(real):
    """The compiler's QuantizeMultiplier (Python) and the runtime's (C) agree."""
    if real >= 2 ** 30:
        return  # outside the compiler's range: it refuses (below), the C rule saturates
    assert quant.quantize_multiplier(real) == _c_quantize_multiplier(real)


@settings(max_examples=300, deadline=None)
@given(x=st.integers(-(2 ** 31), 2 ** 31 - 1), real=st.floats(1e-6, 4.0), )
def test_multiply_by_quantized_multiplier_matches_runtime(x, real):
    lib = cost.runtime_library()
    lib.sophon_multiply_by_quantized_multiplier.restype = ctypes.c_int32
    m, s = quant.quantize_multiplier(real)
    assert quant.multiply_by_quantized_multiplier(x, m, s) == \
        lib.sophon_multiply_by_quantized_multiplier(ctypes.c_int32(x), ctypes.c_int32(m), ctypes.c_int32(s))


@pytest.mark.parametrize("x, real, expected", [
    (5, 0.5, 3),          # 2.5: the doubling high-mul rounds ties toward +infinity...
    (-5, 0.5, -2),        # ...so -2.5 -> -2 (TFLite's SaturatingRoundingDoublingHighMul)
    (5, 0.25, 2),         # 1.25: double rounding (2.5 -> 3 in the high-mul, then 1.5 -> 2)
    (-6, 0.25, -2),       # -1.5 -> -2 in the rounding shift (away from zero)
    (2 ** 30, 1.0, 2 ** 30),      # x * 2 saturates to 2^31 - 1 first, then halves back
    (1000, 0.0012, 1),
])
def test_requantization_edge_values(x, real, expected):
    assert quant.multiply_by_quantized_multiplier(x, *quant.quantize_multiplier(real)) == expected


def test_ratio_too_large_for_fixed_point_is_refused():
    with pytest.raises(ValueError, match="too large"):
        quant.quantize_multiplier(2.0 ** 31)


# ---------------------------------------------------------------- post-training quantization

def _host_ops(offload):
    return [(op.op, tuple(op.shape)) for op in offload.host_ops]


@pytest.fixture(scope="module")
def tiny():
    mod, params, inputs = resnet_tiny("NCHW")
    rng = np.random.default_rng(0)
    calibration = [{"data": rng.standard_normal(inputs["data"].shape).astype("float32")} for _ in range(6)]
    return mod, params, inputs, calibration


@pytest.mark.parametrize("method", ["kl", "max", "percentile"])
def test_ptq_end_to_end_stays_close_to_fp32(tiny, method):
    mod, params, inputs, calibration = tiny
    quantized = tvm_sophon.quantize(mod, calibration, params=params, method=method, progress=False)
    report = tvm_sophon.quantize_report(quantized)
    assert report.layers and all(l.int8 for l in report.layers), report.format()
    partitioned = tvm_sophon.partition_for_sophon(quantized, chip="bm1684")
    offloaded = tvm_sophon.offload_report(partitioned).offloaded
    convs = sum(l.kind == "conv2d" for l in report.layers)
    assert convs == 8 and sum(c.startswith("sophon.qconv2d") for c in offloaded) == convs
    # NCHW's global average pool (adaptive_avg_pool2d to 1x1, then a flatten reshape) is
    # TFLite's int8 MEAN over H, W and the reshape an int8 view: the model is one chip
    # region, only its own float input (quantize) and output (dequantize) on the host
    assert [(l.kind, l.int8) for l in report.layers if l.name == "avgpool"] == [("mean", True)], report.format()
    offload = tvm_sophon.offload_report(partitioned)
    assert len(offload.regions) == 1, offload.format()
    assert _host_ops(offload) == [("relax.quantize", (1, 3, 32, 32)), ("relax.dequantize", (1, 10))], \
        offload.format()
    assert {"sophon.qreduce_mean", "sophon.qdense_bias", "sophon.qsoftmax"} <= set(offloaded), offload.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(inputs["data"])).numpy()
    ref = reference_run(mod, params, inputs)
    # 8-bit activations through 12 layers: the stated bound is cosine >= 0.999 and a
    # max error within 5% of the output's range (measured: ~0.9999 and ~1.5%)
    cosine = float(out.ravel() @ ref.ravel() / np.linalg.norm(out) / np.linalg.norm(ref))
    assert cosine >= 0.999
    assert np.abs(out - ref).max() <= 0.05 * np.abs(ref).max()


def test_layers_below_the_cosine_threshold_fall_back_to_fp32(tiny):
    mod, params, _, calibration = tiny
    strict = tvm_sophon.quantize(mod, calibration, params=params, cosine_threshold=0.99999, progress=False)
    report = tvm_sophon.quantize_report(strict)
    assert report.fallback, report.format()
    assert all(l.cosine >= 0.99999 for l in report.layers if l.int8)
    # the fallen-back layers are float on the chip; the model still builds and runs
    partitioned = tvm_sophon.partition_for_sophon(strict, chip="bm1684")
    names = tvm_sophon.offload_report(partitioned).offloaded
    assert any(not n.startswith("sophon.q") and n.startswith("sophon.conv2d") for n in names)


def test_compare_runs_int8_on_the_chip_per_layer(tiny, tmp_path):
    mod, params, _, calibration = tiny
    result = tvm_sophon.compare(mod, calibration[:2], params=params, calibration_data=calibration,
                                chip=tvm_sophon.get_chip("bm1684"))  # a Chip object: reports say its name
    assert result.chip == "bm1684" and result.format().startswith("INT8 on bm1684 against FP32")
    # 8 convs, 3 adds, the global pool (NCHW adaptive_avg_pool2d: an int8 mean), the dense, the softmax
    kinds = [l.kind for l in result.layers]
    assert kinds.count("softmax") == 1 and kinds.count("mean") == 1 and len(result.layers) == 14
    assert all(l.int8 for l in result.layers), result.format()
    assert min(l.cosine for l in result.layers) >= 0.99
    assert all(l.sqnr_db > 20 for l in result.layers)
    assert "minimum cosine" in result.format()
    result.write_plot(tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_build_with_quantize_and_int8_on_bm1680_is_an_error(tiny):
    mod, params, inputs, calibration = tiny
    with pytest.raises(tvm_sophon.SophonCompileError, match="bm1684"):
        tvm_sophon.build(mod, params, quantize=calibration)
    ex = tvm_sophon.build(mod, params, chip="bm1684", quantize=calibration)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(inputs["data"])).numpy()
    assert out.shape == (1, 10)


@tvm.script.ir_module
class ConcatTwoOutputs:
    """A residual add read by a concat (a tuple argument) and two outputs (a
    tuple result), as YOLOv5's C3 blocks and detection heads have."""
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32"), w1: R.Tensor((8, 4, 3, 3), "float32"),
             w2: R.Tensor((8, 8, 1, 1), "float32"), w3: R.Tensor((4, 16, 1, 1), "float32")):
        with R.dataflow():
            a = R.nn.relu(R.nn.conv2d(x, w1, padding=1))
            b = R.nn.relu(R.nn.conv2d(a, w2))
            s = R.add(a, b)
            c = R.concat((s, b), axis=1)
            y = R.nn.conv2d(c, w3)
            out = (y, s)
            R.output(out)
        return out


def test_concat_of_a_quantized_layer_and_tuple_outputs_quantize_and_run():
    rng = np.random.default_rng(3)
    params = {name: (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype("float32")
              for name, shape in [("w1", (8, 4, 3, 3)), ("w2", (8, 8, 1, 1)), ("w3", (4, 16, 1, 1))]}
    calibration = [{"x": rng.standard_normal((1, 4, 8, 8)).astype("float32")} for _ in range(4)]
    quantized = tvm_sophon.quantize(ConcatTwoOutputs, calibration, params=params, method="max", progress=False)
    report = tvm_sophon.quantize_report(quantized)
    # the concat is an int8 layer too (one scale for its inputs and output, as TFLite's converter gives it)
    assert [l.kind for l in report.layers if l.int8] == ["conv2d", "conv2d", "add", "concat", "conv2d"], \
        report.format()
    ex = tvm_sophon.build(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"), chip="bm1684")
    got = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(calibration[0]["x"]))
    ref = reference_run(ConcatTwoOutputs, params, calibration[0])
    for out, expected in zip(got, ref):
        out = out.numpy()
        # 8-bit activations through five layers: cosine >= 0.99 (the quantizer's own
        # per-layer threshold) and a max error within 5% of the output's range
        cosine = float(out.ravel() @ expected.ravel() / np.linalg.norm(out) / np.linalg.norm(expected))
        assert cosine >= 0.99
        assert np.abs(out - expected).max() <= 0.05 * np.abs(expected).max()


# ---------------------------------------------------------------- bad input

def test_empty_calibration_data_is_a_clear_error(tiny):
    mod, params, _, _ = tiny
    with pytest.raises(tvm_sophon.SophonError, match="calibration data is empty"):
        tvm_sophon.quantize(mod, [], params=params)


def test_calibration_batch_of_the_wrong_shape_is_a_clear_error(tiny):
    mod, params, _, _ = tiny
    with pytest.raises(tvm_sophon.SophonError, match=r"input 'data' has shape \[1, 3, 16, 16\]"):
        tvm_sophon.quantize(mod, [{"data": np.zeros((1, 3, 16, 16), "float32")}], params=params)
    with pytest.raises(tvm_sophon.SophonError, match="no input 'data'"):
        tvm_sophon.quantize(mod, [{"image": np.zeros((1, 3, 32, 32), "float32")}], params=params)


def test_unknown_method_is_a_clear_error(tiny):
    mod, params, _, calibration = tiny
    with pytest.raises(tvm_sophon.SophonError, match="unknown calibration method 'mse'"):
        tvm_sophon.quantize(mod, calibration, params=params, method="mse")


@tvm.script.ir_module
class AsymmetricWeights:
    @R.function
    def main(x: R.Tensor((1, 4, 6, 6), "int8"), w: R.Tensor((8, 4, 3, 3), "int8")):
        with R.dataflow():
            xf = R.dequantize(x, R.const(0.05, "float32"), R.const(3, "int32"), axis=1)
            wf = R.dequantize(w, R.const(0.01, "float32"), R.const(5, "int32"), axis=0)
            y = R.nn.conv2d(xf, wf, padding=1)
            q = R.quantize(y, R.const(0.1, "float32"), R.const(0, "int32"), axis=1, out_dtype="int8")
            R.output(q)
        return q


def test_per_tensor_asymmetric_weights_stay_on_host_saying_why():
    w = np.random.default_rng(1).integers(-100, 100, (8, 4, 3, 3)).astype("int8")
    partitioned = tvm_sophon.partition_for_sophon(AsymmetricWeights, {"w": w}, chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert not any(c.startswith("sophon.qconv2d") for c in report.offloaded)
    assert any("asymmetric int8 weights" in op.reason for op in report.host_ops), report.format()


# ---------------------------------------------------------------- PTQ of reductions, softmax, activations

def _reduce_head():
    """NHWC: conv + relu; tanh * sigmoid; a squeeze-excite (mean, sigmoid, broadcast
    multiply); concat; global max and mean pools, their difference; dense; softmax."""
    from tvm_sophon.models import _Builder, _finish, _input

    b = _Builder(3, "NHWC")
    x, x_np = _input(b, "data", (1, 4, 8, 8))
    R_ = relax.op

    def body():
        c = b.conv("conv", x, 4, 8, act="relu")
        m = b.emit(R_.multiply(b.emit(R_.tanh(c), "tanh"), b.emit(R_.sigmoid(c), "gate")), "mix")
        g = b.emit(R_.mean(m, axis=[1, 2], keepdims=True), "squeeze")
        se = b.emit(R_.multiply(m, b.emit(R_.sigmoid(g), "excite")), "se")
        cat = b.emit(R_.concat([se, c], axis=3), "cat")
        top = b.emit(R_.max(cat, axis=[1, 2]), "gmax")
        avg = b.emit(R_.mean(cat, axis=[1, 2]), "gap")
        d = b.dense("fc", b.emit(R_.subtract(top, avg), "diff"), 16, 10)
        return R_.nn.softmax(d, axis=-1)

    return _finish(b, body, [x], {"data": x_np})


def test_ptq_quantizes_reductions_softmax_and_activations_in_tflite_form():
    mod, params, inputs = _reduce_head()
    rng = np.random.default_rng(1)
    calibration = [{"data": rng.standard_normal(inputs["data"].shape).astype("float32")} for _ in range(6)]
    quantized = tvm_sophon.quantize(mod, calibration, params=params, method="max", cosine_threshold=0.9,
                                    progress=False)
    report = tvm_sophon.quantize_report(quantized)
    kinds = {l.kind for l in report.layers if l.int8}
    assert {"mean", "reduce_max", "softmax", "sigmoid", "tanh", "mul", "sub", "concat"} <= kinds, report.format()
    # TFLite's fixed output quantization: softmax and sigmoid 1/256 with zero point -128
    text = quantized.script()
    assert "R.nn.softmax" in text and 'R.const(-128, "int32")' in text
    partitioned = tvm_sophon.partition_for_sophon(quantized, chip="bm1684")
    offload = tvm_sophon.offload_report(partitioned)
    for pattern in ("sophon.qreduce_mean", "sophon.qreduce_max", "sophon.qsoftmax", "sophon.qconv2d_bias_clip",
                    "sophon.qconcat", "sophon.qsigmoid", "sophon.qtanh", "sophon.qmultiply", "sophon.qsubtract"):
        assert pattern in offload.offloaded, offload.format()
    # the whole model is one int8 region: only the model's own float edges stay on the host
    assert len(offload.regions) == 1, offload.format()
    assert all(op.op in ("relax.quantize", "relax.dequantize") for op in offload.host_ops), offload.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(inputs["data"])).numpy()
    ref = reference_run(mod, params, inputs)
    # 8-bit probabilities (steps of 1/256) after thirteen int8 layers: within 4 steps
    # of FP32 (measured 0.5 step)
    assert np.abs(out - ref).max() <= 4 / 256


def test_ptq_takes_hard_swish_and_gelu_chains_whole():
    """x * clip(x + 3, 0, 6) / 6 and x * (erf(x / sqrt 2) / 2 + 1/2), as TVM's TFLite
    importer writes HARD_SWISH and GELU: each one int8 op between one dequantize and
    one quantize (TFLite's int8 kernels), on the chip with the convs in one region."""
    from tvm_sophon.models import _Builder, _finish, _input

    b = _Builder(4, "NHWC")
    x, x_np = _input(b, "data", (1, 3, 8, 8))
    R_ = relax.op
    f32 = lambda v: relax.const(v, "float32")  # noqa: E731

    def body():
        c = b.conv("conv1", x, 3, 8)
        relu6 = b.emit(R_.clip(b.emit(R_.add(c, f32(3.0))), 0.0, 6.0))
        hs = b.emit(R_.multiply(b.emit(R_.multiply(c, relu6)), f32(1.0 / 6.0)), "hswish")
        d = b.conv("conv2", hs, 8, 8, kernel=1, padding=0)
        erf = b.emit(R_.erf(b.emit(R_.multiply(d, f32(0.70710677)))))
        gelu = b.emit(R_.multiply(d, b.emit(R_.add(b.emit(R_.multiply(erf, f32(0.5))), f32(0.5)))), "gelu")
        return R_.mean(gelu, axis=[1, 2])

    mod, params, inputs = _finish(b, body, [x], {"data": x_np})
    rng = np.random.default_rng(2)
    calibration = [{"data": rng.standard_normal(inputs["data"].shape).astype("float32")} for _ in range(4)]
    quantized = tvm_sophon.quantize(mod, calibration, params=params, method="max", progress=False)
    report = tvm_sophon.quantize_report(quantized)
    assert [l.kind for l in report.layers] == ["conv2d", "hard_swish", "conv2d", "gelu", "mean"], report.format()
    assert all(l.int8 for l in report.layers), report.format()
    offload = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"))
    assert len(offload.regions) == 1 and {"sophon.qhardswish", "sophon.qgelu"} <= set(offload.offloaded), \
        offload.format()


# ---------------------------------------------------------------- PTQ of the global average pool


@tvm.script.ir_module
class GlobalPool:
    @R.function
    def main(x: R.Tensor((1, 24, 7, 9), "float32")):
        with R.dataflow():
            p = R.nn.adaptive_avg_pool2d(x, output_size=(1, 1))
            y = R.reshape(p, (1, 24))
            R.output(y)
        return y


def _tflite_mean(xq: np.ndarray, in_scale: float, out_scale: float) -> np.ndarray:
    """TFLite's reference int8 MEAN over axes 2, 3 (NCHW), zero points 0
    (reference_ops::QuantizedMeanOrSum): the multiplier of in_scale / out_scale with
    1 / count folded in (shifted left by floor(log2(count)), divided by count), then
    MultiplyByQuantizedMultiplier of the int32 sum."""
    multiplier, shift = quant.quantize_multiplier(quant.f64(in_scale) / quant.f64(out_scale))
    count = xq.shape[2] * xq.shape[3]
    k = min(int(np.floor(np.log2(count))), 32, 31 + shift)
    multiplier, shift = (multiplier << k) // count, shift - k
    sums = xq.astype(np.int64).sum(axis=(2, 3)).ravel()
    return np.array([min(127, max(-128, quant.multiply_by_quantized_multiplier(int(v), multiplier, shift)))
                     for v in sums])


def test_ptq_global_pool_on_the_chip_against_tflite_formula_and_llvm():
    """The quantized global pool alone: the chip is TFLite's integer MEAN exactly, and
    within 1 LSB of TVM's llvm build of the same quantized module, which takes the
    mean of the dequantized input in float32 and rounds once: TFLite rounds twice
    (the doubling high multiply, then the rounding shift by the folded log2(count)),
    so a mean such as 62.46 LSB comes out 63 (249.84 -> 250, 250 / 4 = 62.5 -> 63)."""
    from tvm_sophon.patterns import constant_value

    rng = np.random.default_rng(5)
    calibration = [{"x": (rng.standard_normal((1, 24, 7, 9)) + 0.5).astype("float32")} for _ in range(3)]
    quantized = tvm_sophon.quantize(GlobalPool, calibration, method="max", progress=False)
    partitioned = tvm_sophon.partition_for_sophon(quantized, chip="bm1684")
    offload = tvm_sophon.offload_report(partitioned)
    assert offload.offloaded == ["sophon.qreduce_mean", "sophon.reshape"], offload.format()
    assert _host_ops(offload) == [("relax.quantize", (1, 24, 7, 9)), ("relax.dequantize", (1, 24))]
    quantizes = [b.value for b in quantized["main"].body.blocks[0].bindings if isinstance(b.value, relax.Call)
                 and b.value.op.name == "relax.quantize"]
    in_scale, out_scale = (float(constant_value(q.args[1])) for q in quantizes)
    chip = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    llvm = relax.VirtualMachine(tvm.compile(quantized, target="llvm"), tvm.cpu())
    for _ in range(4):
        x = (rng.standard_normal((1, 24, 7, 9)) + 0.5).astype("float32")
        got = np.round(chip["main"](tvm.runtime.tensor(x)).numpy().ravel() / np.float32(out_scale))
        xq = np.clip(np.round(x / np.float32(in_scale)), -128, 127)  # the host's quantize of the input
        np.testing.assert_array_equal(got, _tflite_mean(xq, in_scale, out_scale))  # exact: TFLite's arithmetic
        want = np.round(llvm["main"](tvm.runtime.tensor(x)).numpy().ravel() / np.float32(out_scale))
        assert np.abs(got - want).max() <= 1  # TFLite's double rounding (docstring)


# ---------------------------------------------------------------- an int8 dense bigger than local memory

def test_int8_dense_too_big_for_local_memory_is_sliced_by_output_channels():
    """VGG's fc1 in int8 (per lane, (4096 / 64) x 25088 weight bytes, three times a
    lane's 512 KiB): the int8 fc is cut into output-channel slices, each requantized
    with its own channels' multipliers, and matches TFLite's reference
    FULLY_CONNECTED formula written out here (int32 accumulation of (x - zp) * w
    plus bias, one rounding of acc * scale in double, halves away from zero)."""
    K, N = 8448, 4096   # 64 x 8448 = 540672 bytes per lane > 524288
    rng = np.random.default_rng(7)
    wq = rng.integers(-127, 128, (N, K), dtype=np.int8)
    bias = rng.integers(-20000, 20000, N).astype(np.int32)
    x_scale, x_zp, out_scale = 0.02, 3, 0.5
    w_scales = rng.uniform(0.0005, 0.002, N).astype(np.float32)   # per output channel, as PTQ writes
    c = lambda v, dtype: relax.const(np.asarray(v, dtype=dtype))  # noqa: E731
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, K), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            xf = bb.emit(relax.op.dequantize(x, c(x_scale, "float32"), c(x_zp, "int32")))
            wf = bb.emit(relax.op.dequantize(bb.emit(relax.op.permute_dims(c(wq, "int8"))), c(w_scales, "float32"),
                                             c(0, "int32"), axis=1))
            y = bb.emit(relax.op.matmul(xf, wf))
            bias_scales = (np.float32(x_scale) * w_scales).astype("float32")
            y = bb.emit(relax.op.add(y, bb.emit(relax.op.dequantize(c(bias, "int32"), c(bias_scales, "float32"),
                                                                      c(0, "int32"), axis=0))))
            out = bb.emit_output(relax.op.clip(relax.op.quantize(y, c(out_scale, "float32"), c(0, "int32"),
                                                                 out_dtype="int8"), 0, 127))
        bb.emit_func_output(out)
    partitioned = tvm_sophon.partition_for_sophon(bb.get(), chip="bm1684")
    assert tvm_sophon.offload_report(partitioned).offloaded == ["sophon.qdense_bias_clip"]
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    data = rng.integers(-128, 128, (1, K), dtype=np.int8)
    acc = (data.astype(np.int64) - x_zp) @ wq.T.astype(np.int64) + bias
    scaled = acc * (np.float64(np.float32(x_scale)) * w_scales.astype(np.float64) / np.float64(np.float32(out_scale)))
    want = np.clip(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5), 0, 127).astype(np.int8)
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(data)).numpy(), want)  # exact: TFLite's formula


# ---------------------------------------------------------------- PTQ of the zoo's float glue (bench/ptq_whole.py --zoo)


def _chip_and_llvm(quantized, shape, rng, runs=3):
    """(input, chip output, llvm output, output scale) of ``quantized`` on ``runs`` random inputs."""
    from tvm_sophon.patterns import constant_value

    out_scale = [float(constant_value(b.value.args[1])) for b in quantized["main"].body.blocks[0].bindings
                 if isinstance(b.value, relax.Call) and b.value.op.name == "relax.quantize"][-1]
    chip = relax.VirtualMachine(tvm_sophon.build(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"),
                                                 chip="bm1684"), tvm.cpu())
    llvm = relax.VirtualMachine(tvm.compile(quantized, target="llvm"), tvm.cpu())
    for _ in range(runs):
        x = rng.standard_normal(shape).astype("float32")
        yield x, chip["main"](tvm.runtime.tensor(x)).numpy(), llvm["main"](tvm.runtime.tensor(x)).numpy(), out_scale


@tvm.script.ir_module
class BatchNormGlue:
    """What FP32 TFLite keeps of Keras models' unfoldable float glue: a zero pad, a
    BatchNorm written as MUL + ADD by per-channel constants and a ReLU (ResNet50V2's
    pre-activations, DenseNet121), a channel slice, and a hard sigmoid (ADD 3, clip
    0..6, MUL 1/6: MobileNetV3's squeeze-excite)."""
    @R.function
    def main(x: R.Tensor((1, 6, 5, 8), "float32")):
        with R.dataflow():
            p = R.nn.pad(x, pad_width=[0, 0, 1, 1, 1, 1, 0, 0])
            a = R.multiply(p, R.const(np.linspace(0.5, 1.5, 8).astype("float32")))
            b = R.add(a, R.const(np.linspace(-0.2, 0.3, 8).astype("float32")))
            r = R.nn.relu(b)
            s = R.strided_slice(r, axes=[3], begin=[0], end=[4])
            h = R.add(s, R.const(3.0, "float32"))
            c = R.clip(h, R.prim_value(0.0), R.prim_value(6.0))
            y = R.multiply(c, R.const(1.0 / 6, "float32"))
            R.output(y)
        return y


def test_ptq_per_channel_affine_pad_and_slice_are_one_int8_region():
    """x * a + b (+ relu) by per-channel or scalar constants is an int8 depthwise 1x1
    conv (weight a, bias b: TFLite's converter writes the same), a zero pad and a
    slice are int8 moves: the whole module is one region with the model's own float
    edges on the host. Before, every op of it stayed float on the host."""
    rng = np.random.default_rng(7)
    calibration = [{"x": rng.standard_normal((1, 6, 5, 8)).astype("float32")} for _ in range(3)]
    quantized = tvm_sophon.quantize(BatchNormGlue, calibration, method="max", progress=False)
    report = tvm_sophon.quantize_report(quantized)
    assert [(l.kind, l.int8) for l in report.layers] == [("affine", True)] * 3, report.format()
    offload = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"))
    assert len(offload.regions) == 1, offload.format()
    assert _host_ops(offload) == [("relax.quantize", (1, 6, 5, 8)), ("relax.dequantize", (1, 8, 7, 4))]
    for _, got, want, scale in _chip_and_llvm(quantized, (1, 6, 5, 8), rng):
        # llvm computes each int8 layer in float32 and rounds once, the chip requantizes
        # in TFLite's fixed point (rounds twice): 1 LSB per layer apart at most; three
        # layers (the later ones multiply an input difference by <= 1.5 s_in / s_out)
        # stay within 2 LSB (measured 1)
        assert np.abs(np.round((got - want) / scale)).max() <= 2
        assert np.mean(got == want) > 0.95


@tvm.script.ir_module
class SqueezedResidual:
    """A residual add at 1x1 spatial size whose one operand the TFLite converter
    squeezed to (C,) (Keras MobileNetV2 and ResNet50 at 32x32)."""
    @R.function
    def main(x: R.Tensor((1, 1, 1, 8), "float32")):
        with R.dataflow():
            a = R.sigmoid(x)
            b = R.reshape(R.tanh(x), (8,))
            y = R.add(a, b)
            R.output(y)
        return y


def test_ptq_add_of_a_squeezed_operand_is_int8_and_builds():
    """Before, the add stayed float (its operands' shapes differ), and its quantize
    for the next layer fused with it into a qadd composite whose float result was
    also returned, which the build refused."""
    rng = np.random.default_rng(8)
    calibration = [{"x": rng.standard_normal((1, 1, 1, 8)).astype("float32")} for _ in range(4)]
    quantized = tvm_sophon.quantize(SqueezedResidual, calibration, method="max", progress=False)
    assert [l.kind for l in tvm_sophon.quantize_report(quantized).layers] == ["sigmoid", "tanh", "add"]
    offload = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"))
    assert len(offload.regions) == 1 and "sophon.qadd" in offload.offloaded, offload.format()
    for _, got, want, scale in _chip_and_llvm(quantized, (1, 1, 1, 8), rng):
        # sigmoid and tanh run as TFLite's int8 lookup tables, llvm in float: each 1 LSB
        # of its output scale at most; the add sums two such inputs at a scale at least
        # as large, then rounds once more: within 2 LSB (measured 1)
        assert np.abs(np.round((got - want) / scale)).max() <= 2


_GAMMA = np.linspace(0.5, 1.5, 16).astype("float32")
_BETA = np.linspace(-0.3, 0.3, 16).astype("float32")


@tvm.script.ir_module
class LayerNorms:
    """ConvNeXt's two LayerNorms over channels: Relax's nn.layer_norm (the ONNX
    import), then the ops TFLite's converter writes for Keras' (mean, negative,
    squared difference as sub * sub, mean, add eps, rsqrt, multiply by gamma, ...)."""
    @R.function
    def main(x: R.Tensor((1, 4, 5, 16), "float32")):
        with R.dataflow():
            y = R.nn.layer_norm(x, R.const(_GAMMA), R.const(_BETA), axes=[-1], epsilon=1e-6)
            m = R.mean(y, axis=[-1], keepdims=True)
            n = R.negative(m)
            d = R.subtract(y, m)
            v = R.mean(R.multiply(d, d), axis=[-1], keepdims=True)
            r = R.multiply(R.rsqrt(R.add(v, R.const(1e-6, "float32"))), R.const(_GAMMA))
            z = R.add(R.add(R.multiply(y, r), R.multiply(n, r)), R.const(_BETA))
            R.output(z)
        return z


def test_ptq_layer_norm_is_tflites_int8_chain_in_one_region():
    """nn.layer_norm is written out as TFLite's LayerNorm ops and each runs int8
    (mean, sub, mul, mean, the eps add and gamma/beta as affines, rsqrt and neg as
    TFLite's int8 lookup tables, gamma of the broadcast multiply an int8 constant):
    one region. Before, the layer norm and the rsqrt, negative and constant
    multiplies stayed float on the host."""
    rng = np.random.default_rng(9)
    draw = lambda: (rng.standard_normal((1, 4, 5, 16)) * 2 + 1).astype("float32")  # noqa: E731
    quantized = tvm_sophon.quantize(LayerNorms, [{"x": draw()} for _ in range(3)], method="max", progress=False)
    report = tvm_sophon.quantize_report(quantized)
    assert {"rsqrt", "negative", "affine", "mean", "mul", "sub"} <= {l.kind for l in report.layers}
    assert all(l.int8 for l in report.layers), report.format()
    offload = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"))
    assert len(offload.regions) == 1, offload.format()
    assert _host_ops(offload) == [("relax.quantize", (1, 4, 5, 16)), ("relax.dequantize", (1, 4, 5, 16))]
    assert {"sophon.qrsqrt", "sophon.qnegative"} <= set(offload.offloaded), offload.format()
    fp32 = relax.VirtualMachine(tvm.compile(LayerNorms, target="llvm"), tvm.cpu())
    for x, got, want, scale in _chip_and_llvm(quantized, (1, 4, 5, 16), rng):
        # each of the ~16 int8 layers rounds twice on the chip (TFLite's fixed point)
        # and once in llvm's float emulation; a 1 LSB difference in the variance moves
        # rsqrt's lookup by a few LSB where the variance is small: within 6 LSB of the
        # output scale (measured 2-4 over five inputs)
        assert np.abs(np.round((got - want) / scale)).max() <= 6
        # and the int8 chain still is a layer norm (measured correlation 0.9999 with FP32)
        ref = fp32["main"](tvm.runtime.tensor(x)).numpy()
        assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99


@tvm.script.ir_module
class PooledLayerNorm:
    """ConvNeXt's head: the global pool's (1, C) vector through a LayerNorm over
    its channels (rank 2, nn.layer_norm as the ONNX import writes it), then the
    classifier."""
    @R.function
    def main(x: R.Tensor((1, 16), "float32")):
        with R.dataflow():
            y = R.nn.layer_norm(x, R.const(_GAMMA), R.const(_BETA), axes=[-1], epsilon=1e-6)
            R.output(y)
        return y


def test_ptq_rank2_layer_norm_is_int8_in_one_region():
    """The eps add and the gamma / beta affine of a rank-2 LayerNorm are int8
    depthwise 1x1 convs on a 4-D view (1, 1, 1, C) of the vector: one region with
    the model's own edges on the host. Before, they stayed float (the affine took
    rank 4 only): convnext_pt's 5 regions, convnext_tiny's 3."""
    rng = np.random.default_rng(10)
    draw = lambda: (rng.standard_normal((1, 16)) * 2 + 1).astype("float32")  # noqa: E731
    quantized = tvm_sophon.quantize(PooledLayerNorm, [{"x": draw()} for _ in range(3)], method="max",
                                    progress=False)
    report = tvm_sophon.quantize_report(quantized)
    assert [l.kind for l in report.layers if l.kind == "affine"] == ["affine"] * 2, report.format()
    assert all(l.int8 for l in report.layers), report.format()
    offload = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"))
    assert len(offload.regions) == 1, offload.format()
    assert _host_ops(offload) == [("relax.quantize", (1, 16)), ("relax.dequantize", (1, 16))], offload.format()
    assert "sophon.qconv2d_bias" in offload.offloaded, offload.format()
    fp32 = relax.VirtualMachine(tvm.compile(PooledLayerNorm, target="llvm"), tvm.cpu())
    for x, got, want, scale in _chip_and_llvm(quantized, (1, 16), rng):
        # as the rank-4 LayerNorm above: ~8 int8 layers, each rounding twice on the chip
        # and once in llvm, rsqrt's table amplifying a 1 LSB difference of a small
        # variance: within 6 LSB of the output scale
        assert np.abs(np.round((got - want) / scale)).max() <= 6
        ref = fp32["main"](tvm.runtime.tensor(x)).numpy()
        assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99


_GRID = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(1, 1, 4, 4, 2).astype("float32")


@tvm.script.ir_module
class DetectDecode:
    """A YOLOv5 Detect head's box centres on its rank-5 tensor: sigmoid, x 2,
    - 0.5, + grid (a constant varying along H and W, not per channel), x stride."""
    @R.function
    def main(x: R.Tensor((1, 3, 4, 4, 2), "float32")):
        with R.dataflow():
            s = R.multiply(R.sigmoid(x), R.const(2.0, "float32"))
            c = R.add(R.subtract(s, R.const(0.5, "float32")), R.const(_GRID))
            y = R.multiply(c, R.const(8.0, "float32"))
            R.output(y)
        return y


def test_ptq_add_of_a_constant_tensor_is_int8_at_rank_5():
    """An add of a constant that is not per channel (YOLO's grid) takes it as an
    int8 constant, as TFLite's converter quantizes an ADD's constant tensor; on the
    rank-5 head tensor the whole decode is one region. Before, the add stayed
    float (yolov5s_pt's 5 regions)."""
    rng = np.random.default_rng(11)
    draw = lambda: rng.standard_normal((1, 3, 4, 4, 2)).astype("float32")  # noqa: E731
    quantized = tvm_sophon.quantize(DetectDecode, [{"x": draw()} for _ in range(3)], method="max", progress=False)
    report = tvm_sophon.quantize_report(quantized)
    assert [l.kind for l in report.layers] == ["sigmoid", "mul", "sub", "add", "mul"], report.format()
    offload = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"))
    assert len(offload.regions) == 1, offload.format()
    assert _host_ops(offload) == [("relax.quantize", (1, 3, 4, 4, 2)), ("relax.dequantize", (1, 3, 4, 4, 2))]
    assert "sophon.qadd" in offload.offloaded, offload.format()
    for _, got, want, scale in _chip_and_llvm(quantized, (1, 3, 4, 4, 2), rng):
        # five int8 layers, each 1 LSB apart at most between the chip's fixed point
        # (two roundings) and llvm's float emulation (one); the x 2 and x 8 multiplies
        # carry an earlier layer's 1 LSB difference into at most 1 LSB of a scale as
        # much coarser: within 3 LSB of the output scale
        assert np.abs(np.round((got - want) / scale)).max() <= 3
        assert np.mean(got == want) > 0.8


@tvm.script.ir_module
class CeilMaxPool:
    """GoogLeNet's max pools as torchvision writes them: ceil mode, whose last
    window reaches past the input."""
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32")):
        with R.dataflow():
            y = R.nn.max_pool2d(x, pool_size=[3, 3], strides=[2, 2], ceil_mode=True)
            R.output(y)
        return y


def test_ptq_ceil_mode_max_pool_is_int8():
    """A ceil-mode max pool runs int8 (the max of the values its window covers).
    Before, it stayed float between a dequantize and a quantize on the host."""
    rng = np.random.default_rng(12)
    quantized = tvm_sophon.quantize(CeilMaxPool, [{"x": rng.standard_normal((1, 4, 8, 8)).astype("float32")}],
                                    method="max", progress=False)
    assert [(l.kind, l.int8) for l in tvm_sophon.quantize_report(quantized).layers] == [("max_pool2d", True)]
    offload = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(quantized, chip="bm1684"))
    assert offload.offloaded == ["sophon.qmax_pool2d"], offload.format()
    assert _host_ops(offload) == [("relax.quantize", (1, 4, 8, 8)), ("relax.dequantize", (1, 4, 4, 4))]
    for _, got, want, _ in _chip_and_llvm(quantized, (1, 4, 8, 8), rng):
        np.testing.assert_array_equal(got, want)   # a max of int8 values: exact


@pytest.mark.parametrize("module, shape, kinds", [
    (PooledLayerNorm, (1, 16), {"affine", "rsqrt", "mean", "mul", "sub"}),
    (DetectDecode, (1, 3, 4, 4, 2), {"sigmoid", "mul", "sub", "add"})])
def test_compare_lists_the_new_int8_chains_per_layer(module, shape, kinds):
    """``compare`` runs these chains int8 on the chip and lists each layer against
    FP32 (TVM's llvm build of the float module)."""
    rng = np.random.default_rng(13)
    inputs = [{"x": rng.standard_normal(shape).astype("float32")} for _ in range(3)]
    result = tvm_sophon.compare(module, inputs, method="max")
    assert kinds <= {l.kind for l in result.layers}, result.format()
    assert all(l.int8 for l in result.layers), result.format()
    # 8-bit activations through at most ~8 layers of these chains: each layer's output
    # stays within cosine 0.99 of FP32 (the fallback threshold; measured >= 0.9998)
    assert min(l.cosine for l in result.layers) >= 0.99, result.format()



def test_kl_calibration_does_not_clip_most_values():
    """MobileNetV3's squeeze-excite gate, relu6(x + 3) / 6, as a trained digits net
    gave it: most values exactly 1.0, the lowest at 0.078 (bin 159 of 2048). The
    KL candidate at that bin holds that one occupied bin, into which everything
    above is clipped: a point mass against a point mass, divergence 0, so KL took
    0.078 as the threshold (clipping 99.9% of the values; the gate's int8 cosine
    to FP32 was 0.94). A kl threshold clips at most 1% of the values."""
    from tvm_sophon.calibration import Histogram

    rng = np.random.default_rng(14)
    gate = np.concatenate([np.ones(8000), [0.0779], rng.uniform(0.3, 1.0, 6000)]).astype("float32")
    h = Histogram()
    h.add(gate)
    assert h.threshold("kl") >= 0.99        # not 0.078; every value below 1 is spread up to 1
    # a tail of outliers is still clipped (the standard normal's max 4.8 here)
    tail = Histogram()
    tail.add(rng.standard_normal(100000).astype("float32"))
    threshold = tail.threshold("kl")
    assert threshold < tail.max and np.mean(np.abs(rng.standard_normal(100000)) > threshold) <= 0.01
