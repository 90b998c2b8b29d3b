"""Single ONNX QDQ ops on the chip against onnxruntime, bit for bit.

Each model is int8 in, ``DequantizeLinear -> op -> QuantizeLinear``, int8 out, as
onnxruntime's quantizer writes an op, with the quantizations chosen by the test
(equal or not, odd zero points), so that the int8 outputs of the chip and of
onnxruntime's CPU provider compare exactly. What onnxruntime runs for each op
(its QDQ transformer's choice, read from SessionOptions.optimized_model_filepath):
- Resize: nearest with one quantization on the int8 values (the DQ/Q dropped);
  linear, or nearest that requantizes, in f32 between the DQ and the Q.
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


class ResizeParams(ctypes.Structure):  # sophon_resize_params (runtime/sophon.h)
    _fields_ = [("method", ctypes.c_int), ("coord", ctypes.c_int), ("rounding", ctypes.c_int),
                ("in_h", ctypes.c_int32), ("out_h", ctypes.c_int32), ("in_row0", ctypes.c_int32),
                ("out_row0", ctypes.c_int32), ("arithmetic", ctypes.c_int), ("input_scale", ctypes.c_float),
                ("output_scale", ctypes.c_float), ("input_zero_point", ctypes.c_int32),
                ("output_zero_point", ctypes.c_int32)]


METHODS = {"nearest": 0, "linear": 1}
COORDS = {"half_pixel": 0, "align_corners": 1, "asymmetric": 2, "pytorch_half_pixel": 3, "tf_half_pixel_for_nn": 4}
NEAREST_MODES = {"round_prefer_floor": 1, "round_prefer_ceil": 2, "floor": 3, "ceil": 4}
ONNXRUNTIME = 1
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
        params = ResizeParams(METHODS[mode], COORDS[coord], NEAREST_MODES[nearest], shape[2], oh, 0, out_row0,
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
            (ResizeParams(0, 0, 0, 2, 4, 0, 0, ONNXRUNTIME, 0.1, 0.1, 0, 0), "no ONNX nearest_mode"),
            (ResizeParams(1, 0, 0, 2, 4, 0, 0, ONNXRUNTIME, 0.0, 0.1, 0, 0), "finite and positive"),
            (ResizeParams(1, 0, 0, 2, 4, 0, 0, ONNXRUNTIME, 0.1, 0.1, 0, 200), "outside int8"),
            (ResizeParams(1, 0, 0, 2, 4, 0, 0, 7, 0.1, 0.1, 0, 0), "unknown arithmetic")]:
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
