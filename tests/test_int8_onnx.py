"""ONNX QDQ models (quantized by onnxruntime's own static quantizer) on the chip,
against onnxruntime: within 1 LSB of the output's quantization step."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: E402

import tvm  # noqa: E402
from tvm import relax  # noqa: E402

import tvm_sophon  # noqa: E402
from tvm_sophon.frontend import load  # noqa: E402


def _fp32_model(path, rng):
    """conv+relu, depthwise conv+relu, residual add, max pool, flatten, Gemm."""
    def init(name, arr):
        return numpy_helper.from_array(arr.astype("float32"), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    inits = [init("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3), init("b1", rng.standard_normal(8) * 0.1),
             init("w2", rng.standard_normal((8, 1, 3, 3)) * 0.3), init("b2", rng.standard_normal(8) * 0.1),
             init("wf", rng.standard_normal((10, 128)) * 0.1), init("bf", rng.standard_normal(10) * 0.1)]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


class _Reader(CalibrationDataReader):
    def __init__(self, rng):
        self.batches = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype("float32")} for _ in range(16)])

    def get_next(self):
        return next(self.batches, None)


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("qdq")
    rng = np.random.default_rng(0)
    _fp32_model(str(root / "fp32.onnx"), rng)
    quantize_static(str(root / "fp32.onnx"), str(root / "qdq.onnx"), _Reader(rng), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
    return root / "qdq.onnx"


def _output_step(path) -> float:
    """The scale of the DequantizeLinear producing the graph output: 1 LSB."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    assert node.op_type == "DequantizeLinear"
    return float(inits[node.input[1]])


def test_onnx_qdq_model_runs_int8_on_the_chip_within_one_lsb(qdq_model):
    mod = load(qdq_model)
    partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    offloaded = report.offloaded
    for name in ("sophon.qconv2d_bias", "sophon.qadd", "sophon.qmax_pool2d_qdq", "sophon.qdense_bias"):
        assert any(c.startswith(name) for c in offloaded), report.format()
    # int8 throughout: the Flatten between its DequantizeLinear and QuantizeLinear is an int8 reshape
    assert all(c.startswith("sophon.q") or c == "sophon.reshape" for c in offloaded), report.format()
    assert len(report.regions) == 1, report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    session = ort.InferenceSession(str(qdq_model), providers=["CPUExecutionProvider"])
    step = _output_step(qdq_model)
    rng = np.random.default_rng(9)
    for _ in range(5):
        x = rng.standard_normal((1, 3, 8, 8)).astype("float32")
        expected = session.run(None, {"x": x})[0]
        out = vm["main"](tvm.runtime.tensor(x)).numpy()
        # onnxruntime's int8 kernels use the same integer scheme; the bound is 1 LSB
        assert np.abs(out - expected).max() <= step * 1.0001


# ------------------------------------------------------------------ single-op QDQ models


def _qdq_file(root, nodes, inits, in_shape, out_shape, seed=0, opset=17, batches=8):
    """An FP32 ONNX graph x -> nodes -> y, quantized by onnxruntime's quantize_static
    (QDQ, int8 activations, per-channel int8 weights) on ``batches`` random inputs.
    Every op of the graph is named in op_types_to_quantize: by default the quantizer
    leaves Sub, Max, Min, Tanh, HardSwish, ReduceMean, ... float."""
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f" else None), k)
         for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(root / "fp32.onnx"))
    rng = np.random.default_rng(seed)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.standard_normal(in_shape).astype("float32")} for _ in range(batches)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(root / "fp32.onnx"), str(root / "qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=sorted({n.op_type for n in nodes}))
    return root / "qdq.onnx"


def _chip_against_onnxruntime(path, in_shape, runs=3, seed=9):
    """(offload report, max |chip - onnxruntime| in LSB of the output) over ``runs`` random inputs."""
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    step, rng, worst = _output_step(path), np.random.default_rng(seed), 0.0
    for _ in range(runs):
        x = rng.standard_normal(in_shape).astype("float32")
        expected = session.run(None, {"x": x})[0]
        worst = max(worst, float(np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - expected).max()) / step)
    return tvm_sophon.offload_report(partitioned), worst


def test_shared_dequantize_feeding_a_concat_partitions(tmp_path):
    """onnxruntime's QDQ writes one DequantizeLinear of x for both convs and a Concat of
    two dequantized branches (SqueezeNet's fire module, YOLO's C3): SplitSharedDequantize
    used to rebuild the graph without renaming the vars inside the Concat's tuple, and
    TVM's MergeCompositeFunctions failed with an InternalError (memo_.count(...))."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"]),
             helper.make_node("Conv", ["x", "w2", "b2"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
    inits = {"w1": rng.standard_normal((4, 3, 1, 1)) * 0.5, "b1": rng.standard_normal(4) * 0.1,
             "w2": rng.standard_normal((5, 3, 3, 3)) * 0.3, "b2": rng.standard_normal(5) * 0.1}
    path = _qdq_file(tmp_path, nodes, inits, [1, 3, 6, 6], [1, 9, 6, 6])
    report, lsb = _chip_against_onnxruntime(path, [1, 3, 6, 6])
    assert len(report.regions) == 1, report.format()
    assert {op.op for op in report.host_ops} == {"relax.quantize", "relax.dequantize"}, report.format()
    # convs requantized as onnxruntime does (once in float32), a concat of one scale: exact
    assert lsb <= 1e-3


def test_ill_formed_module_is_a_one_line_error():
    """A variable used and never bound is a SophonCompileError naming it, not TVM's
    InternalError from inside pattern fusion."""
    x = relax.Var("x", relax.TensorType((1, 4), "float32"))
    ghost = relax.Var("ghost", relax.TensorType((1, 4), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.add(x, ghost))
        bb.emit_func_output(y)
    with pytest.raises(tvm_sophon.SophonError, match="not well-formed.*ghost"):
        tvm_sophon.partition_for_sophon(bb.get(), chip="bm1684")


def _n(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


_R = np.random.default_rng(11)
_CONV = {"wc": _R.standard_normal((6, 4, 3, 3)) * 0.3, "bc": _R.standard_normal(6) * 0.1}
# x (1, 4, 6, 6) -> conv 6 channels -> c, then the op under test: each case is int8 on both sides
# (onnxruntime's quantizer only quantizes an op between quantized tensors)
SINGLE_OPS = {
    # torch's nn.Upsample(mode="nearest") as torch.onnx writes it (YOLO's neck)
    "resize_nearest": ([_n("Resize", ["c", "", "sc"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric",
                           nearest_mode="floor")], {"sc": np.array([1, 1, 2, 2], "f")}, [1, 6, 12, 12]),
    "global_average_pool": ([_n("GlobalAveragePool", ["c"], ["y"])], {}, [1, 6, 1, 1]),
    "reduce_mean": ([_n("ReduceMean", ["c"], ["y"], axes=[2, 3], keepdims=1)], {}, [1, 6, 1, 1]),
    "max_pool": ([_n("MaxPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {},
                 [1, 6, 3, 3]),
    "mul": ([_n("Mul", ["c", "k6"], ["y"])], {"k6": _R.standard_normal((1, 6, 1, 1))}, [1, 6, 6, 6]),
    "add": ([_n("Add", ["c", "c2"], ["y"]), _n("Conv", ["x", "wc", "bc"], ["c2"], pads=[1, 1, 1, 1])], {},
            [1, 6, 6, 6]),
    "sub": ([_n("Sub", ["c", "c2"], ["y"]), _n("Conv", ["x", "wc", "bc"], ["c2"], pads=[1, 1, 1, 1])], {},
            [1, 6, 6, 6]),
    "max": ([_n("Max", ["c", "c2"], ["y"]), _n("Conv", ["x", "wc", "bc"], ["c2"], pads=[1, 1, 1, 1])], {},
            [1, 6, 6, 6]),
    "min": ([_n("Min", ["c", "c2"], ["y"]), _n("Conv", ["x", "wc", "bc"], ["c2"], pads=[1, 1, 1, 1])], {},
            [1, 6, 6, 6]),
    "hard_swish": ([_n("HardSwish", ["c"], ["y"])], {}, [1, 6, 6, 6]),
    "hard_sigmoid": ([_n("HardSigmoid", ["c"], ["y"], alpha=1 / 6, beta=0.5)], {}, [1, 6, 6, 6]),
    "sigmoid": ([_n("Sigmoid", ["c"], ["y"])], {}, [1, 6, 6, 6]),
    "silu": ([_n("Sigmoid", ["c"], ["s"]), _n("Mul", ["c", "s"], ["y"])], {}, [1, 6, 6, 6]),
    "tanh": ([_n("Tanh", ["c"], ["y"])], {}, [1, 6, 6, 6]),
    "leaky_relu": ([_n("LeakyRelu", ["c"], ["y"], alpha=0.1)], {}, [1, 6, 6, 6]),
    "reshape_transpose": ([_n("Reshape", ["c", "shp"], ["r"]), _n("Transpose", ["r"], ["y"], perm=[0, 2, 1])],
                          {"shp": np.array([1, 6, 36], "int64")}, [1, 36, 6]),
    "flatten": ([_n("Flatten", ["c"], ["y"])], {}, [1, 216]),
    "split_concat": ([_n("Split", ["c", "sp"], ["s1", "s2"], axis=1), _n("Concat", ["s2", "s1"], ["y"], axis=1)],
                     {"sp": np.array([2, 4], "int64")}, [1, 6, 6, 6]),
    "slice": ([_n("Slice", ["c", "st", "en", "ax"], ["y"])], {"st": np.array([1], "int64"),
                                                          "en": np.array([5], "int64"), "ax": np.array([2], "int64")},
              [1, 6, 4, 6]),
    "conv_transpose": ([_n("ConvTranspose", ["c", "wt", "bt"], ["y"], strides=[2, 2])],
                       {"wt": _R.standard_normal((6, 3, 2, 2)) * 0.3, "bt": _R.standard_normal(3) * 0.1},
                       [1, 3, 12, 12]),
    # the two inputs come out of the quantizer with their own scales: the chip rescales one
    "concat_scales": ([_n("Mul", ["x", "k"], ["x3"]), _n("Concat", ["c", "x3"], ["y"], axis=1)],
                      {"k": np.array(3.0, "f")}, [1, 10, 6, 6]),
}


# ops with one input read the model's quantized input itself, so that the op's own
# difference shows (a conv in front, 1 LSB apart where the roundings part, would be
# magnified by the op's slope: a sigmoid with a finer output scale turns it into 3)
DIRECT = {"global_average_pool", "reduce_mean", "mul", "hard_swish", "hard_sigmoid", "sigmoid", "silu", "tanh",
          "leaky_relu"}


@pytest.mark.parametrize("case", sorted(SINGLE_OPS))
def test_qdq_single_op_on_the_chip_against_onnxruntime(case, tmp_path):
    nodes, inits, out_shape = SINGLE_OPS[case]
    if case in DIRECT:
        nodes = [_n(n.op_type, ["x" if i == "c" else i for i in n.input], n.output,
                    **{a.name: helper.get_attribute_value(a) for a in n.attribute}) for n in nodes]
    else:
        nodes = [_n("Conv", ["x", "wc", "bc"], ["c"], pads=[1, 1, 1, 1])] + nodes
    in_shape = [1, 6, 6, 6] if case in DIRECT else [1, 4, 6, 6]
    path = _qdq_file(tmp_path, nodes, {**_CONV, **inits}, in_shape, out_shape)
    report, lsb = _chip_against_onnxruntime(path, in_shape)
    assert len(report.regions) == 1, report.format()
    assert {op.op for op in report.host_ops} <= {"relax.quantize", "relax.dequantize"}, report.format()
    assert all(c.startswith("sophon.q") or c in MOVES for c in report.offloaded), report.format()
    # onnxruntime's arithmetic, which the chip follows (convs, adds and muls as it fuses
    # them or not, unary ops as float32 tables): bit-exact
    assert lsb <= 1e-3, (lsb, report.format())


MOVES = {"sophon.reshape", "sophon.permute_dims", "sophon.strided_slice", "sophon.pad", "sophon.concat"}


@pytest.mark.parametrize("size, per_anchor", [(4, 6), (40, 85)])
def test_qdq_yolo_head_is_one_int8_region(tmp_path, size, per_anchor):
    """YOLOv5's detect head on (1, 3, H, W, 6) tensors: sigmoid, slices, xy * 2 - 0.5 + grid,
    (wh * 2) ** 2 * anchor, concat, reshape. Element-wise int8 ops above 4-D run on merged
    axes, Pow(x, 2) is an int8 table; the whole head is one region (it was 20). YOLOv5s's
    stride-8 head at 320 x 320 (40 x 40, 85 values per anchor): the concat rescales its
    (1, 3, 40, 40, 81) slice over the lanes (a flat view put 388800 bytes on one lane,
    which no tiling fits)."""
    rng = np.random.default_rng(5)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(1, 1, size, size, 2) - 0.5
    k = per_anchor - 4
    nodes = [_n("Conv", ["x", "w", "b"], ["c"]),
             _n("Reshape", ["c", "s5"], ["r"]), _n("Transpose", ["r"], ["t"], perm=[0, 1, 3, 4, 2]),
             _n("Sigmoid", ["t"], ["sg"]), _n("Split", ["sg", "parts"], ["xy", "wh", "conf"], axis=4),
             _n("Mul", ["xy", "two"], ["xy2"]), _n("Add", ["xy2", "grid"], ["xyg"]),
             _n("Mul", ["xyg", "stride"], ["box_xy"]),
             _n("Mul", ["wh", "two"], ["wh2"]), _n("Pow", ["wh2", "two"], ["wh4"]),
             _n("Mul", ["wh4", "anchor"], ["box_wh"]),
             _n("Concat", ["box_xy", "box_wh", "conf"], ["det"], axis=4), _n("Reshape", ["det", "s3"], ["y"])]
    inits = {"w": rng.standard_normal((3 * per_anchor, 8, 1, 1)) * 0.4,
             "b": rng.standard_normal(3 * per_anchor) * 0.1,
             "s5": np.array([1, 3, per_anchor, size, size], "int64"),
             "s3": np.array([1, 3 * size * size, per_anchor], "int64"), "parts": np.array([2, 2, k], "int64"), "two": np.array(2.0, "f"), "grid": grid.astype("f"),
             "stride": np.array(8.0, "f"), "anchor": rng.uniform(1, 4, (1, 3, 1, 1, 2)).astype("f")}
    path = _qdq_file(tmp_path, nodes, inits, [1, 8, size, size], [1, 3 * size * size, per_anchor])
    report, lsb = _chip_against_onnxruntime(path, [1, 8, size, size])
    assert len(report.regions) == 1, report.format()
    assert {op.op for op in report.host_ops} == {"relax.quantize", "relax.dequantize"}, report.format()
    # onnxruntime's arithmetic throughout: bit-exact
    assert lsb <= 1e-3


def test_qdq_torch_model_is_one_int8_region(tmp_path):
    """A small PyTorch net exported by torch.onnx (dynamo) and quantized by onnxruntime:
    conv-BN-ReLU, a residual add, SiLU, max pool, nearest upsampling, a concat of two
    scales, a global mean that the quantizer leaves float (ReduceMean -> Flatten ->
    QuantizeLinear: quantized before the flatten) and a linear layer: one int8 region."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU())
            self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 1))
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            x = self.stem(x)
            x = x + self.body(x)
            up = nn.functional.interpolate(self.down(x), scale_factor=2.0, mode="nearest")
            y = torch.cat([x, up], 1)
            return self.head(torch.flatten(y.mean((2, 3), keepdim=True), 1))

    torch.manual_seed(0)
    model = Net()
    model.train()
    with torch.no_grad():  # BatchNorm statistics from one training-mode pass: unit scale
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 1.0
        model(torch.randn(8, 3, 8, 8))
    model.eval()
    fp32 = tmp_path / "net.onnx"
    import contextlib
    import io
    import warnings
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(fp32), input_names=["x"], dynamo=True,
                          external_data=False, verbose=False)
    rng = np.random.default_rng(1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype("float32")} for _ in range(8)])

        def get_next(self):
            return next(self.batches, None)

    path = tmp_path / "net.qdq.onnx"
    quantize_static(str(fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    report, lsb = _chip_against_onnxruntime(path, [1, 3, 8, 8])
    assert len(report.regions) == 1, report.format()
    assert {op.op for op in report.host_ops} == {"relax.quantize", "relax.dequantize"}, report.format()
    # onnxruntime's arithmetic throughout: bit-exact
    assert lsb <= 1e-3


def _hand_qdq_conv(path, rng, in_scale, w_scales, out_scale, shape, oc, pads, group=1, read_twice=True):
    """A QDQ conv written out (as quantize_static writes one): x -> QuantizeLinear ->
    DequantizeLinear -> Conv(DequantizeLinear(int8 weight, per channel),
    DequantizeLinear(int32 bias, input scale * weight scale)) -> QuantizeLinear, read by one
    DequantizeLinear (y), or with ``read_twice`` by two (y and y2: a conv output read twice,
    as YOLO's SiLU reads it, which keeps onnxruntime from fusing the group, see the test)."""
    f32 = np.float32
    ic, k = shape[1], 3
    w = rng.integers(-3, 4, (oc, ic // group, k, k)).astype(np.int8)  # small sums: outputs in range
    bias_scales = (f32(in_scale) * np.asarray(w_scales, f32)).astype(f32)
    b = rng.integers(-40, 40, oc).astype(np.int32)
    inits = [numpy_helper.from_array(np.array(v, dt), name) for name, v, dt in (
        ("xs", in_scale, f32), ("xz", 3, np.int8), ("ws", w_scales, f32), ("wz", [0] * oc, np.int8),
        ("bs", bias_scales, f32), ("bz", [0] * oc, np.int32), ("ys", out_scale, f32), ("yz", -5, np.int8))]
    inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    oh, ow = shape[2] + pads[0] + pads[2] - 2, shape[3] + pads[1] + pads[3] - 2
    nodes = [_n("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), _n("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             _n("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             _n("DequantizeLinear", ["b", "bs", "bz"], ["bd"], axis=0),
             _n("Conv", ["xd", "wd", "bd"], ["c"], pads=pads, group=group),
             _n("QuantizeLinear", ["c", "ys", "yz"], ["cq"]), _n("DequantizeLinear", ["cq", "ys", "yz"], ["y"])]
    if read_twice:
        nodes.append(_n("DequantizeLinear", ["cq", "ys", "yz"], ["y2"]))
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, oc, oh, ow])
               for name in (("y", "y2") if read_twice else ("y",))]
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("read_twice", [True, False], ids=["float_conv", "qlinearconv"])
def test_qdq_conv_near_halves_is_onnxruntime_float_conv(tmp_path, group, read_twice):
    """onnxruntime (x86) runs an int8 QDQ conv as DequantizeLinear, a float32 Conv and
    QuantizeLinear: its QDQ selector fuses a QLinearConv with int8 activations on ARM only.
    With the output scale twice the bias scale every output whose integer sum is odd lies
    on a half in exact arithmetic; the float32 sums land just above or below it. So any
    integer requantization (one float32 rounding of the exact sum, as the chip did,
    YOLOv5s's first difference) is 1 LSB off on about half of them, and only the float
    conv's own arithmetic (SOPHON_REQUANT_FLOAT_CONV) is bit-exact. The same conv with its
    output read once (and its input, the model's, once) is uint8 on both sides after
    onnxruntime's int8 -> uint8 rewrite, which fuses it into QLinearConv: the integer sum
    rounded once, which the chip then computes (layers.onnxruntime_type)."""
    rng = np.random.default_rng(group)
    in_scale, shape, oc = 0.0371, [1, 8, 9, 9], 8
    w_scales = rng.uniform(0.008, 0.02, oc).astype(np.float32)
    w_scales[:] = w_scales[0]  # one weight scale: every channel's odd sums at halves
    out_scale = float(np.float32(2 * np.float32(in_scale) * w_scales[0]))
    path = _hand_qdq_conv(tmp_path / "conv.onnx", rng, in_scale, w_scales, out_scale, shape, oc,
                          [1, 1, 1, 1], group, read_twice)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (rng.standard_normal(shape) * 0.3).astype("float32")
    expected = session.run(None, {"x": x})[0]
    # the case is a hard one: the exact integer sum rounded once (onnxruntime's QLinearConv
    # requantization, numpy here) is 1 LSB off onnxruntime's output on many elements
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    xq = np.clip(np.rint(x / np.float32(in_scale)) + 3, -128, 127).astype(np.int64) - 3
    xp = np.pad(xq[0], ((0, 0), (1, 1), (1, 1)))
    icg, ocg = shape[1] // group, oc // group
    integer = np.empty(expected.shape, np.int64)
    for o in range(oc):
        g = o // ocg
        ratio = np.float32(np.float32(in_scale) * w_scales[o]) / np.float32(out_scale)
        for y in range(shape[2]):
            for xx in range(shape[3]):
                acc = int(np.sum(xp[g * icg:(g + 1) * icg, y:y + 3, xx:xx + 3] * inits["w"][o].astype(np.int64)))
                integer[0, o, y, xx] = np.rint(np.float32(acc + int(inits["b"][o])) * ratio)
    ort_q = np.rint(expected / np.float32(out_scale)).astype(np.int64)  # q - zero point
    integer_q = np.clip(integer - 5, -128, 127) + 5
    if read_twice:
        assert np.sum(ort_q != integer_q) > 10, np.sum(ort_q != integer_q)
    else:  # QLinearConv: the integer rounding itself
        np.testing.assert_array_equal(ort_q, integer_q)
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1, report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    outs = vm["main"](tvm.runtime.tensor(x))
    for out in (outs if read_twice else [outs]):
        np.testing.assert_array_equal(np.rint(out.numpy() / np.float32(out_scale)), ort_q)


def _qdq_add_file(path, scales, zps, b_shape, a_read_twice):
    """y = QDQ Add of two quantized inputs a (1, 64, 32, 32) and b (``b_shape``); with
    ``a_read_twice`` a's quantized value also feeds a second output (as a skip connection
    reads it), which keeps it int8 in onnxruntime and so the group unfused."""
    f32 = np.float32
    inits = [numpy_helper.from_array(np.array(v, dt), name) for name, v, dt in (
        ("sa", scales[0], f32), ("za", zps[0], np.int8), ("sb", scales[1], f32), ("zb", zps[1], np.int8),
        ("sc", scales[2], f32), ("zc", zps[2], np.int8))]
    nodes = [_n("QuantizeLinear", ["a", "sa", "za"], ["aq"]), _n("DequantizeLinear", ["aq", "sa", "za"], ["ad"]),
             _n("QuantizeLinear", ["b", "sb", "zb"], ["bq"]), _n("DequantizeLinear", ["bq", "sb", "zb"], ["bd"]),
             _n("Add", ["ad", "bd"], ["c"]), _n("QuantizeLinear", ["c", "sc", "zc"], ["cq"]),
             _n("DequantizeLinear", ["cq", "sc", "zc"], ["y"])]
    shape = [1, 64, 32, 32]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]
    if a_read_twice:
        nodes.append(_n("DequantizeLinear", ["aq", "sa", "za"], ["a2"]))
        outputs.append(helper.make_tensor_value_info("a2", TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, "qdq_add", [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape),
                                                 helper.make_tensor_value_info("b", TensorProto.FLOAT, b_shape)],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("case", ["qlinear_add", "float_add", "qlinear_add_broadcast"])
def test_qdq_add_every_pair_is_onnxruntime_bit_exact(tmp_path, case):
    """A QDQ Add over every int8 pair (a broadcast b: every a against 64 b values). Where
    onnxruntime fuses the group (both inputs and the output read once: uint8 after its
    rewrite) it runs QLinearAdd, MLAS's fused multiply-adds of the scale ratios; where a
    second reader keeps a int8 it runs the float Add between DequantizeLinear and
    QuantizeLinear. The chip picks the same one (layers.onnxruntime_type): bit-exact both
    ways (it was 1 LSB apart with TFLite's ADD)."""
    # scales where QLinearAdd and the float Add part on 2 of the 65536 pairs (found by search)
    scales, zps = (0.016049852025942994, 0.039583264950331445, 0.014525363417337973), (14, 13, -8)
    b_shape = [1, 64, 1, 1] if case.endswith("broadcast") else [1, 64, 32, 32]
    path = _qdq_add_file(tmp_path / "add.onnx", scales, zps, b_shape, case == "float_add")
    grid = np.arange(-128, 128)
    a = ((np.repeat(grid, 256).reshape(1, 64, 32, 32) - zps[0]) * np.float32(scales[0])).astype("float32")
    if case.endswith("broadcast"):
        b = ((np.arange(-128, 128, 4).reshape(b_shape) - zps[1]) * np.float32(scales[1])).astype("float32")
    else:
        b = ((np.tile(grid, 256).reshape(1, 64, 32, 32) - zps[1]) * np.float32(scales[1])).astype("float32")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"a": a, "b": b})[0]
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip="bm1684")
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1, report.format()
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b))
    out = (out[0] if case == "float_add" else out).numpy()  # float_add: (y, a2)
    step = np.float32(scales[2])
    np.testing.assert_array_equal(np.rint(out / step), np.rint(expected / step))
