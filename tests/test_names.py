"""The model's own names reach reports: ONNX node names, TFLite tensor names and
torch module paths become the layer names of profiles (and so of plots, traces
and errors) instead of Relax's lv17/gv; regions are sophon_0, sophon_1, ..."""
import numpy as np
import pytest

import tvm_sophon
from tvm_sophon.frontend import from_exported_program, load
from tvm_sophon.models import resnet_tiny
from tvm_sophon.profile import profile_model

import frontend_models as fm


def _layers(mod) -> dict:
    """pattern -> layer names, in order, of a static profile."""
    prof = profile_model(mod, run=False)
    assert {l.region for l in prof.layers} <= {f"sophon_{k}" for k in range(8)}
    out: dict = {}
    for l in prof.layers:
        out.setdefault(l.pattern, []).append(l.name)
    return out


def test_onnx_node_names(tmp_path):
    """ONNX nodes go by their name, an unnamed node by its first output."""
    import onnx

    model = onnx.load_from_string(fm.onnx_clip_cnn())
    model.graph.node[0].name = "stem_conv"  # the first Conv named, the rest by their outputs
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    layers = _layers(load(tmp_path / "m.onnx"))
    assert layers == {"sophon.conv2d_bias_clip": ["stem_conv"], "sophon.conv2d_bias_relu": ["c2"],
                      "sophon.max_pool2d": ["p"], "sophon.matmul_bias": ["logits"]}


def test_tflite_tensor_names(tmp_path):
    """A TFLite op is named after its output tensor, a fused op's ``a/conv/Relu;a/conv/conv``
    after the path its parts share."""
    import tflite

    data = fm.tflite_cnn()
    (tmp_path / "m.tflite").write_bytes(data)
    graph = tflite.Model.GetRootAsModel(data, 0).Subgraphs(0)
    tensor_names = [graph.Tensors(i).Name().decode() for i in range(graph.TensorsLength())]
    names = [n for group in _layers(load(tmp_path / "m.tflite")).values() for n in group]
    assert len(names) == 6 and len(set(names)) == 6, names
    for name in names:
        assert any(t == name or t.startswith(name + "/") or (name + "/") in t for t in tensor_names), name
    assert not any(n.startswith(("lv", "gv")) for n in names)


def test_torch_module_paths():
    """Torch ops go by the module path they came from (Sequential indices here); the
    batch norm folded into a conv keeps the conv's name."""
    torch = pytest.importorskip("torch")
    model = fm.torch_bn_cnn()
    mod = from_exported_program(torch.export.export(model, (torch.randn(1, 1, 8, 8),)))
    layers = _layers(mod)
    convs = [n for p, group in layers.items() if p.startswith("sophon.conv2d") for n in group]
    assert convs == ["0", "3", "6"]
    assert layers["sophon.max_pool2d"] == ["9"] and [n for p, g in layers.items() if "matmul" in p for n in g] == ["11"]


def test_identical_layers_keep_their_own_names():
    """FuseOpsByPattern shares one function between structurally equal matches; each
    call site still reports its own layer (block2_conv2 and block3_conv2 are
    identical convolutions)."""
    mod, params, _ = resnet_tiny()
    prof = profile_model(mod, params, run=False)
    names = [l.name for l in prof.layers]
    assert len(names) == len(set(names)), names
    assert {"block2_conv2", "block3_conv2", "block2_add", "block3_add"} <= set(names)


def test_identical_layers_after_a_concat_keep_their_own_names():
    """Below a concat (whose inputs come in a tuple), two identical convs of one input
    (a C3 block's cv1 and cv2, as in YOLOv5) still report their own names."""
    from tvm import relax

    from tvm_sophon.models import _Builder, _finish, _input

    b = _Builder(0, "NCHW")
    x, x_np = _input(b, "data", (1, 4, 8, 8))

    def body():
        a = b.conv("left", x, 4, 4, act="relu")
        c = b.emit(relax.op.concat([a, x], axis=1), "join")
        y1 = b.conv("cv1", c, 8, 4, kernel=1, padding=0, act="relu")
        y2 = b.conv("cv2", c, 8, 4, kernel=1, padding=0, act="relu")
        return b.emit(relax.op.add(y1, y2), "sum")

    mod, params, _ = _finish(b, body, [x], {"data": x_np})
    names = [l.name for l in profile_model(mod, params, run=False).layers]
    assert sorted(names) == ["cv1", "cv2", "join", "left", "sum"], names


def test_errors_name_the_models_layer():
    """A layer that cannot be tiled is named by the model's name in the error."""
    from tvm import relax

    from tvm_sophon.names import emit_named

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 1, 4, 2048), "float32"))
    w = relax.const(np.ones((1, 1, 3, 3), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(emit_named(bb, relax.op.nn.conv2d(x, w, padding=1), "encoder/wide_conv"))
        bb.emit_func_output(y)
    tiny = tvm_sophon.get_chip("bm1680").replace(name="bm1680-4k", lmem_bytes_per_lane=4096)
    with pytest.raises(tvm_sophon.SophonCompileError, match="layer encoder/wide_conv .*cannot be tiled"):
        tvm_sophon.build(bb.get(), chip=tiny)
