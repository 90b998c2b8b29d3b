"""Single ONNX QDQ ops on the chip against onnxruntime, bit for bit.

Each model is int8 in, ``DequantizeLinear -> op -> QuantizeLinear``, int8 out, as
onnxruntime's quantizer writes an op, with the quantizations chosen by the test
(equal or not, odd zero points), so that the int8 outputs of the chip and of
onnxruntime's CPU provider compare exactly. What onnxruntime runs for each op
(its QDQ transformer's choice, read from SessionOptions.optimized_model_filepath):
- Resize: nearest with one quantization on the int8 values (the DQ/Q dropped);
  linear, or nearest that requantizes, in f32 between the DQ and the Q. (The
  source coordinate divides by out/in: a ``scales`` input other than that ratio,
  e.g. 1.7 on 5 pixels, which TVM's importer turns into sizes, would differ.)
- AveragePool: com.microsoft QLinearAveragePool (f32 sum of the dequantized taps).
- Pad: in f32 between the DQ and the Q: with one quantization an int8 pad of the
  zero point.
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
from tvm_sophon.cost import PoolParamsStruct, ResizeParamsStruct, runtime_library  # noqa: E402
from tvm_sophon.frontend import load  # noqa: E402
from test_int8_kernels import I8, OK, Device  # noqa: E402


def _qdq_op(path, nodes, inits, in_shape, out_shape, quant, opset=17):
    """x (int8) -> DequantizeLinear -> ``nodes`` (xf -> yf) -> QuantizeLinear -> y (int8);
    quant = (input scale, input zero point, output scale, output zero point)."""
    s_in, z_in, s_out, z_out = quant
    consts = {"x_scale": np.float32(s_in), "x_zp": np.int8(z_in), "y_scale": np.float32(s_out),
              "y_zp": np.int8(z_out), **inits}
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]), *nodes,
         helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zp"], ["y"])],
        "qdq_op", [helper.make_tensor_value_info("x", TensorProto.INT8, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT8, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _onnxruntime(path, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _chip(path, x, composites):
    """The chip's int8 output; the model must be one region of ``composites``."""
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1 and sorted(set(report.offloaded)) == sorted(composites), report.format()
    assert not report.host_ops, report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


@pytest.fixture(scope="module")
def dev():
    lib = runtime_library()
    lib.sophon_device_error.restype = ctypes.c_char_p
    lib.sophon_local_lane_bytes.restype = ctypes.c_int64
    device = Device(lib)
    yield device
    device.close()


def _inputs(shape, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(2)]


# ------------------------------------------------------------------ Resize


METHODS = {"nearest": 0, "linear": 1}
COORDS = {"half_pixel": 0, "align_corners": 1, "asymmetric": 2, "pytorch_half_pixel": 3, "tf_half_pixel_for_nn": 4}
NEAREST_MODES = {"round_prefer_floor": 1, "round_prefer_ceil": 2, "floor": 3, "ceil": 4}
ONNXRUNTIME = 1  # SOPHON_INT8_ONNXRUNTIME
SAME = (0.0247, -128, 0.0247, -128)
REQ = (0.031, 5, 0.0173, -17)


def _resize_model(path, shape, size, mode, coord, nearest, quant, scales=None):
    """A QDQ Resize to ``size`` (H, W), by a sizes input, or by ``scales`` when given."""
    out_shape = [shape[0], shape[1], *size]
    if scales is None:
        inputs, inits = ["xf", "", "", "sizes"], {"sizes": np.array(out_shape, np.int64)}
    else:
        inputs, inits = ["xf", "", "scales"], {"scales": np.array(scales, np.float32)}
    node = helper.make_node("Resize", inputs, ["yf"], mode=mode, coordinate_transformation_mode=coord,
                            nearest_mode=nearest)
    return _qdq_op(path, [node], inits, shape, out_shape, quant)


def _resize_cases():
    """Odd sizes up and down, every coordinate mode PyTorch exports (and TF's
    tf_half_pixel_for_nn), every nearest mode, one quantization and two."""
    rng = np.random.default_rng(11)
    cases = []
    for k in range(48):
        mode = ("linear", "nearest")[k % 2]
        coord = list(COORDS)[(k // 2) % 5]
        nearest = list(NEAREST_MODES)[(k // 10) % 4]
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        oh, ow = (int(v) for v in rng.integers(1, 15, 2))
        if coord == "align_corners":  # to one pixel divides by zero (out - 1): the pattern refuses it
            oh, ow = max(oh, 2), max(ow, 2)
        quant = (SAME, REQ, (0.0123, 37, 0.05, 90))[k % 3]
        cases.append(((int(rng.integers(1, 3)), int(rng.integers(1, 5)), h, w), (oh, ow), mode, coord, nearest,
                      quant))
    return cases


@pytest.mark.parametrize("case", _resize_cases())
def test_resize_int8_onnxruntime_matches_onnxruntime(dev, tmp_path, case):
    """tiu_resize_int8 in onnxruntime's arithmetic against onnxruntime on the QDQ model,
    for the whole image and for a band of output rows (the rows its input band holds)."""
    shape, (oh, ow), mode, coord, nearest, quant = case
    x = np.random.default_rng(oh * 31 + ow).integers(-128, 128, shape).astype(np.int8)
    expected = _onnxruntime(_resize_model(tmp_path / "r.onnx", shape, (oh, ow), mode, coord, nearest, quant), x)
    s_in, z_in, s_out, z_out = quant
    for out_row0, rows in ((0, oh), (oh // 2, oh - oh // 2)):
        params = ResizeParamsStruct(METHODS[mode], COORDS[coord], NEAREST_MODES[nearest], shape[2], oh, 0, out_row0,
                              ONNXRUNTIME, s_in, s_out, z_in, z_out)
        dev.next_addr = 0
        t_in = dev.put(x, I8)
        t_out = dev.local((shape[0], shape[1], rows, ow), I8)
        status = dev.lib.sophon_tiu_resize_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                                ctypes.byref(params))
        assert status == OK, dev.error()
        np.testing.assert_array_equal(dev.get(t_out), expected[:, :, out_row0:out_row0 + rows])


def test_resize_int8_onnxruntime_rejects_bad_params(dev):
    x = np.zeros((1, 1, 2, 2), np.int8)
    for params, message in [
            (ResizeParamsStruct(0, 0, 0, 2, 4, 0, 0, ONNXRUNTIME, 0.1, 0.1, 0, 0), "no ONNX nearest_mode"),
            (ResizeParamsStruct(1, 0, 0, 2, 4, 0, 0, ONNXRUNTIME, 0.0, 0.1, 0, 0), "finite and positive"),
            (ResizeParamsStruct(1, 0, 0, 2, 4, 0, 0, ONNXRUNTIME, 0.1, 0.1, 0, 200), "outside int8"),
            (ResizeParamsStruct(1, 0, 0, 2, 4, 0, 0, 7, 0.1, 0.1, 0, 0), "unknown arithmetic")]:
        dev.next_addr = 0
        t_in = dev.put(x, I8)
        t_out = dev.local((1, 1, 4, 4), I8)
        assert dev.lib.sophon_tiu_resize_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                              ctypes.byref(params)) != OK
        assert message in dev.error()


# The compiler's path: import, partition (one region of the int8 resize), build, run
MODEL_RESIZES = [
    # unet_pt's upsampling: F.interpolate(scale_factor=2, mode="bilinear") exports scales (1, 1, 2, 2)
    ("linear_half_pixel_scales_2", (1, 4, 6, 5), (12, 10), "linear", "half_pixel", "floor", SAME, [1, 1, 2, 2]),
    ("linear_align_corners_requantize", (1, 2, 6, 5), (11, 12), "linear", "align_corners", "floor", REQ, None),
    ("nearest_half_pixel_requantize", (1, 2, 5, 6), (10, 13), "nearest", "half_pixel", "round_prefer_floor", REQ,
     None),
    ("nearest_asymmetric_floor", (1, 3, 5, 7), (10, 14), "nearest", "asymmetric", "floor", SAME, None),
]


@pytest.mark.parametrize("case", MODEL_RESIZES, ids=[c[0] for c in MODEL_RESIZES])
def test_qdq_resize_model_is_onnxruntimes_bit_for_bit(tmp_path, case):
    _, shape, size, mode, coord, nearest, quant, scales = case
    path = _resize_model(tmp_path / "resize.onnx", shape, size, mode, coord, nearest, quant, scales)
    for x in _inputs(shape, size[0]):
        np.testing.assert_array_equal(_chip(path, x, ["sophon.qresize2d"]), _onnxruntime(path, x))


# ------------------------------------------------------------------ AveragePool

# (name, input shape, kernel, strides, pads (top, left, bottom, right), count_include_pad, ceil_mode, quantization)
AVG_POOLS = [
    ("3x3_pad_exclude", (1, 3, 7, 9), (3, 3), (1, 1), (1, 1, 1, 1), 0, 0, REQ),
    ("3x3_pad_include", (1, 3, 7, 9), (3, 3), (1, 1), (1, 1, 1, 1), 1, 0, REQ),
    ("2x2_stride_2_same", (2, 4, 8, 6), (2, 2), (2, 2), (0, 0, 0, 0), 0, 0, SAME),
    ("3x2_stride_2_asym_pad_include", (1, 2, 9, 7), (3, 2), (2, 2), (1, 0, 0, 1), 1, 0, (0.0123, 37, 0.05, 90)),
    ("5x1_lrn_window", (1, 1, 20, 35), (5, 1), (1, 1), (0, 0, 0, 0), 1, 0, SAME),
]


@pytest.mark.parametrize("case", AVG_POOLS, ids=[c[0] for c in AVG_POOLS])
def test_qdq_average_pool_is_onnxruntimes_bit_for_bit(tmp_path, case):
    _, shape, kernel, strides, pads, include, ceil, quant = case
    t, left, b, r = pads
    out_hw = [(shape[2] + t + b - kernel[0]) // strides[0] + 1, (shape[3] + left + r - kernel[1]) // strides[1] + 1]
    node = helper.make_node("AveragePool", ["xf"], ["yf"], kernel_shape=list(kernel), strides=list(strides),
                            pads=[t, left, b, r], count_include_pad=include, ceil_mode=ceil)
    path = _qdq_op(tmp_path / "avg.onnx", [node], {}, shape, [shape[0], shape[1], *out_hw], quant)
    for x in _inputs(shape, 5):
        np.testing.assert_array_equal(_chip(path, x, ["sophon.qavg_pool2d_qdq"]), _onnxruntime(path, x))


def test_pool2d_int8_onnxruntime_ties_round_half_to_even(dev):
    """2 + 3 over two taps is 2.5, which onnxruntime (nearbyintf) rounds to 2 and
    TFLite's int8 average (half away from zero) to 3; 3.5 rounds to 4 in both."""
    x = np.array([[[[2, 3, 3, 4]]]], np.int8)
    params = PoolParamsStruct(1, 1, 2, 1, 2, 0, 0, 0, 0, 1, 1, 0, ONNXRUNTIME, 1.0, 1.0, 0, 0)
    dev.next_addr = 0
    t_in = dev.put(x, I8)
    t_out = dev.local((1, 1, 1, 2), I8)
    assert dev.lib.sophon_tiu_pool2d_int8(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in),
                                          ctypes.byref(params), -128, 127) == OK, dev.error()
    np.testing.assert_array_equal(dev.get(t_out), [[[[2, 4]]]])


# ------------------------------------------------------------------ Pad


def test_qdq_lrn_window_is_int8_on_the_chip(tmp_path):
    """PyTorch's local_response_norm in a QDQ model: Reshape to 5-D, Pad (constant 0)
    of the channels, AveragePool (5, 1, 1), Reshape back, each between a
    DequantizeLinear and a QuantizeLinear of one quantization. TVM's importer lowers
    the Pad to TIR (the frontend lifts it back, normalize.TirPadToRelax); partitioning
    takes the pad as the pool's padding over (N, C, D, H*W) (QdqAvgPool3dTo2d): one
    int8 average pool in onnxruntime's arithmetic."""
    shape, quant = (1, 8, 5, 6), (0.02, -3, 0.02, -3)

    def qdq(src, dst):
        return [helper.make_node("QuantizeLinear", [src, "y_scale", "y_zp"], [dst + "_q"]),
                helper.make_node("DequantizeLinear", [dst + "_q", "y_scale", "y_zp"], [dst])]

    nodes = [helper.make_node("Reshape", ["xf", "shape5"], ["r"]), *qdq("r", "rd"),
             helper.make_node("Pad", ["rd", "pads"], ["p"], mode="constant"), *qdq("p", "pd"),
             helper.make_node("AveragePool", ["pd"], ["a"], kernel_shape=[5, 1, 1], count_include_pad=1),
             *qdq("a", "ad"), helper.make_node("Reshape", ["ad", "shape4"], ["yf"])]
    inits = {"shape5": np.array([1, 1, 8, 5, 6], np.int64), "shape4": np.array(shape, np.int64),
             "pads": np.array([0, 0, 2, 0, 0, 0, 0, 2, 0, 0], np.int64)}
    path = _qdq_op(tmp_path / "lrn.onnx", nodes, inits, shape, shape, quant)
    for x in _inputs(shape, 7):
        np.testing.assert_array_equal(_chip(path, x, ["sophon.qavg_pool2d_qdq", "sophon.reshape"]), _onnxruntime(path, x))


# ------------------------------------------------------------------ Softmax

# (name, input shape, axis, quantization): onnxruntime's quantizer writes 1/255 and
# -128 for a Softmax output; 1/256 makes a certain 1.0 the 128 that onnxruntime
# saturates to 127
SOFTMAXES = [
    ("last_axis_quantizer_scale", (1, 4, 10), -1, (0.0867, -4, 1 / 255, -128)),
    ("channels_axis", (1, 6, 3, 5), 1, (0.05, 3, 1 / 255, -128)),
    ("wide_input_scale_256_steps", (2, 3, 17), 2, (0.3, 0, 1 / 256, -128)),
    ("other_zero_point", (1, 5, 7), -1, (0.02, -20, 0.004, -100)),
]


@pytest.mark.parametrize("case", SOFTMAXES, ids=[c[0] for c in SOFTMAXES])
def test_qdq_softmax_is_onnxruntimes_qlinear_softmax(tmp_path, case):
    _, shape, axis, quant = case
    path = _qdq_op(tmp_path / "softmax.onnx", [helper.make_node("Softmax", ["xf"], ["yf"], axis=axis)], {}, shape,
                   shape, quant)
    for x in _inputs(shape, 11):
        np.testing.assert_array_equal(_chip(path, x, ["sophon.qsoftmax"]), _onnxruntime(path, x))


def test_softmax_int8_onnxruntime_rejects_bad_params(dev):
    fn = dev.lib.sophon_tiu_softmax_int8_onnxruntime
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float, ctypes.c_float,
                   ctypes.c_int32]
    for scales, zero_point, message in [((0.1, 2.0), -128, "no output step in 1"),
                                        ((0.0, 1 / 255), -128, "finite and positive"),
                                        ((0.1, 1 / 255), 300, "outside int8")]:
        dev.next_addr = 0
        t_in = dev.put(np.zeros((1, 1, 4, 3), np.int8), I8)
        t_out = dev.local((1, 1, 4, 3), I8)
        assert fn(dev.handle, ctypes.byref(t_out), ctypes.byref(t_in), *scales, zero_point) != OK
        assert message in dev.error()
