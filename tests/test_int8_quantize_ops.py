"""float32 <-> int8 casts as chip instructions (issue #11): sophon_tiu_quantize_int8
and sophon_tiu_dequantize_int8 (runtime/reference/sophon_tiu_quantize.c), so that
a region holds int8 layers and the float layers a quantizer left between them.

- the instructions, called through ctypes on odd shapes (several lanes' slots,
  batch 3 in bm1684's 4N int8 layout beside the f32 one), against onnxruntime's
  QuantizeLinear / DequantizeLinear (CPU provider) and against numpy written from
  TFLite's reference AffineQuantize (x / scale in float32, TfLiteRound: half away
  from zero, then the zero point, saturated); ties at .5 and saturation included;
- an ONNX QDQ model with float ops between int8 ones is one region with nothing
  on the host, and equal to onnxruntime;
- a region's quantize rounds as its model's source: a Relax module with a float
  island whose every quotient is a tie, in TFLite's arithmetic (half away from
  zero) and in onnxruntime's (half to even).
"""
import ctypes

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import tvm  # noqa: E402
from tvm import relax  # noqa: E402

import tvm_sophon  # noqa: E402
from tvm_sophon.cost import runtime_library  # noqa: E402
from tvm_sophon.frontend import load  # noqa: E402
from test_int8_kernels import F32, I8, OK, ERR_ARGUMENT, Device  # noqa: E402

HALF_AWAY, HALF_TO_EVEN = 0, 1
SHAPE = (3, 67, 5, 7)      # 67 channels: two slots on 64 lanes; batch 3: a partial 4N group
#: (scale, zero point): fine and coarse steps, zero points at both ends of int8
QUANTIZATIONS = [(0.0078125, 0), (0.05, -3), (0.1, 17), (0.37, -128), (1.5, 127), (2.0 ** -9, 5)]


@pytest.fixture(scope="module")
def dev():
    lib = runtime_library()
    lib.sophon_device_error.restype = ctypes.c_char_p
    lib.sophon_local_lane_bytes.restype = ctypes.c_int64
    for name in ("sophon_tiu_quantize_int8", "sophon_tiu_dequantize_int8"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float,
                                       ctypes.c_int32, *([ctypes.c_int] if "_quantize" in name[10:] else [])]
    device = Device(lib)
    yield device
    device.close()


def _float_inputs(scale: float, zp: int, seed: int) -> np.ndarray:
    """Values over and past the int8 range of (scale, zp), a third of them exact
    ties (k + 0.5) * scale, and +-0, as float32."""
    rng = np.random.default_rng(seed)
    x = (rng.uniform(-300, 300, SHAPE) * scale).astype(np.float32)
    ties = ((rng.integers(-200, 200, SHAPE) + 0.5) * scale).astype(np.float32)
    x = np.where(rng.random(SHAPE) < 0.35, ties, x).astype(np.float32)
    x.flat[:4] = [0.0, -0.0, 0.5 * scale, -0.5 * scale]
    return x


def _run_cast(dev, x: np.ndarray, to_int8: bool, scale: float, zp: int, rounding: int = HALF_AWAY):
    dev.next_addr = 0
    src_dtype, dst_dtype = (F32, I8) if to_int8 else (I8, F32)
    data = x.view(np.int32) if to_int8 else x
    src = dev.put(data, src_dtype)
    dst = dev.local(x.shape, dst_dtype)
    if to_int8:
        status = dev.lib.sophon_tiu_quantize_int8(dev.handle, ctypes.byref(dst), ctypes.byref(src), scale, zp,
                                                  rounding)
    else:
        status = dev.lib.sophon_tiu_dequantize_int8(dev.handle, ctypes.byref(dst), ctypes.byref(src), scale, zp)
    assert status == OK, dev.error()
    out = dev.get(dst)
    return out if to_int8 else out.view(np.float32)


def _onnxruntime_op(op: str, x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    src, dst = (TensorProto.FLOAT, TensorProto.INT8) if op == "QuantizeLinear" else (TensorProto.INT8, TensorProto.FLOAT)
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "s", "z"], ["y"])], "cast",
        [helper.make_tensor_value_info("x", src, list(x.shape))], [helper.make_tensor_value_info("y", dst, None)],
        [numpy_helper.from_array(np.float32(scale), "s"), numpy_helper.from_array(np.int8(zp), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _tflite_quantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """reference_ops::AffineQuantize: TfLiteRound(x / (float)scale) + zp, clamped;
    TfLiteRound is std::round (half away from zero), here as trunc plus a step
    where the float32 fraction is at least one half."""
    v = x / np.float32(scale)
    whole = np.trunc(v)
    rounded = whole + np.where(np.abs(v - whole) >= 0.5, np.sign(v), 0)
    return np.clip(rounded.astype(np.float64) + zp, -128, 127).astype(np.int8)


@pytest.mark.parametrize("scale,zp", QUANTIZATIONS)
def test_quantize_is_onnxruntime_quantize_linear(dev, scale, zp):
    x = _float_inputs(scale, zp, seed=zp & 0xff)
    expected = _onnxruntime_op("QuantizeLinear", x, scale, zp)
    assert np.array_equal(_run_cast(dev, x, True, scale, zp, HALF_TO_EVEN), expected)


@pytest.mark.parametrize("scale,zp", QUANTIZATIONS)
def test_quantize_is_tflite_affine_quantize(dev, scale, zp):
    x = _float_inputs(scale, zp, seed=1 + (zp & 0xff))
    got = _run_cast(dev, x, True, scale, zp, HALF_AWAY)
    assert np.array_equal(got, _tflite_quantize(x, scale, zp))
    # the two roundings part exactly on the ties with an even neighbour below / above
    assert not np.array_equal(got, _run_cast(dev, x, True, scale, zp, HALF_TO_EVEN))


def test_quantize_saturates_and_sends_nan_to_the_bottom(dev):
    x = np.zeros(SHAPE, np.float32)
    x.flat[:6] = [np.inf, -np.inf, 1e30, -1e30, np.nan, 127.49]
    got = _run_cast(dev, x, True, 1.0, 0, HALF_TO_EVEN).reshape(-1)[:6]
    # onnxruntime's MLAS clamps the quotient with MAXPS, which gives its bound for a NaN
    assert got.tolist() == [127, -128, 127, -128, -128, 127]


@pytest.mark.parametrize("scale,zp", QUANTIZATIONS)
def test_dequantize_is_onnxruntime_and_tflite(dev, scale, zp):
    q = np.random.default_rng(zp & 0xff).integers(-128, 128, SHAPE).astype(np.int8)
    got = _run_cast(dev, q, False, scale, zp)
    assert np.array_equal(got.view(np.int32), _onnxruntime_op("DequantizeLinear", q, scale, zp).view(np.int32))
    # TFLite's DEQUANTIZE: scale * (q - zp) in double, rounded to float once
    tflite = (np.float64(np.float32(scale)) * (q.astype(np.float64) - zp)).astype(np.float32)
    assert np.array_equal(got.view(np.int32), tflite.view(np.int32))


def test_cast_rejects_bad_operands(dev):
    dev.next_addr = 0
    f = dev.local((1, 3, 2, 2), F32)
    i = dev.local((1, 3, 2, 2), I8)
    q, d = dev.lib.sophon_tiu_quantize_int8, dev.lib.sophon_tiu_dequantize_int8
    assert q(dev.handle, ctypes.byref(i), ctypes.byref(f), 0.0, 0, HALF_AWAY) == ERR_ARGUMENT
    assert "scale" in dev.error()
    assert q(dev.handle, ctypes.byref(i), ctypes.byref(f), 1.0, 200, HALF_AWAY) == ERR_ARGUMENT
    assert "zero point" in dev.error()
    assert q(dev.handle, ctypes.byref(i), ctypes.byref(f), 1.0, 0, 7) == ERR_ARGUMENT
    assert q(dev.handle, ctypes.byref(f), ctypes.byref(i), 1.0, 0, HALF_AWAY) == ERR_ARGUMENT   # dtypes swapped
    assert d(dev.handle, ctypes.byref(i), ctypes.byref(f), 1.0, 0) == ERR_ARGUMENT


# ------------------------------------------------------------ a model with float ops between int8 ones

def _mixed_model(path):
    """int8 x -> DQ -> MaxPool -> Q (an int8 layer) -> DQ -> HardSwish -> ReduceMean (float,
    as onnxruntime's quantizer leaves ops outside its list) -> Q -> DQ -> MaxPool -> Q -> int8 y."""
    consts = {"s1": np.float32(0.043), "z1": np.int8(-7), "s2": np.float32(0.0191), "z2": np.int8(11)}
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s1", "z1"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["b", "s1", "z1"], ["bq"]),
        helper.make_node("DequantizeLinear", ["bq", "s1", "z1"], ["c"]),
        helper.make_node("HardSwish", ["c"], ["d"]),
        helper.make_node("ReduceMean", ["d"], ["e"], axes=[3], keepdims=1),
        helper.make_node("QuantizeLinear", ["e", "s2", "z2"], ["eq"]),
        helper.make_node("DequantizeLinear", ["eq", "s2", "z2"], ["f"]),
        helper.make_node("MaxPool", ["f"], ["g"], kernel_shape=[2, 1], strides=[1, 1]),
        helper.make_node("QuantizeLinear", ["g", "s2", "z2"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 5, 9, 11])],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 5, 8, 1])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_float_ops_between_int8_ops_are_one_region(tmp_path):
    path = _mixed_model(tmp_path / "mixed.onnx")
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    assert {"sophon.cast_quantize", "sophon.cast_dequantize"} <= set(report.offloaded), report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for seed in range(3):
        x = np.random.default_rng(seed).integers(-128, 128, (1, 5, 9, 11)).astype(np.int8)
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        expected = session.run(None, {"x": x})[0]
        # the float HardSwish and mean are f32 on both sides but not in one order of
        # operations: a quotient landing within an ulp of a .5 tie may round the other way
        assert np.abs(got.astype(np.int32) - expected).max() <= 1, (got, expected)


# ------------------------------------------------------------ the rounding follows the model's source

def _float_island(arithmetic):
    """int8 x -> max pool (an int8 layer) -> dequantize -> * 1 + 0.25 (float layers) ->
    quantize -> max pool -> int8 y. With scales 0.5 every quotient (q - zp) + 0.5 is
    a tie, so the two roundings part on every element."""
    x = relax.Var("x", relax.TensorType((2, 5, 3, 7), "int8"))

    def const(value, dtype):
        return relax.const(np.array(value, dtype))

    def int8_pool(t, scale, zp):
        f = relax.op.dequantize(t, const(scale, "float32"), const(zp, "int32"))
        return relax.op.quantize(relax.op.nn.max_pool2d(f, (1, 1)), const(scale, "float32"), const(zp, "int32"),
                                 out_dtype="int8")

    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(int8_pool(x, 0.5, 3))
            f = bb.emit(relax.op.dequantize(a, const(0.5, "float32"), const(3, "int32")))
            g = bb.emit(relax.op.add(relax.op.multiply(f, const(1.0, "float32")), const(0.25, "float32")))
            q = bb.emit(relax.op.quantize(g, const(0.5, "float32"), const(-5, "int32"), out_dtype="int8"))
            out = bb.emit_output(int8_pool(q, 0.5, -5))
        bb.emit_func_output(out)
    mod = bb.get()
    return mod.with_attr("sophon.int8_arithmetic", arithmetic) if arithmetic else mod


@pytest.mark.parametrize("arithmetic", [None, "onnxruntime"])
def test_a_region_quantizes_with_its_models_rounding(arithmetic):
    partitioned = tvm_sophon.partition_for_sophon(_float_island(arithmetic), chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    x = np.arange(-128, 82, dtype=np.int8).reshape(2, 5, 3, 7)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    # numpy: the value (q - 3) * 0.5 + 0.25 is exact in float32; over 0.5 it is (q - 3) + 0.5
    quotient = (x.astype(np.float32) - 3) * np.float32(0.5) + np.float32(0.25)
    half_to_even = _onnxruntime_op("QuantizeLinear", quotient, 0.5, -5)
    half_away = _tflite_quantize(quotient, 0.5, -5)
    assert np.count_nonzero(half_to_even != half_away) > x.size // 3
    assert np.array_equal(got, half_to_even if arithmetic == "onnxruntime" else half_away)
