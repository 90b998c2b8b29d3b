"""ONNX frontend: Clip normalised into relax.clip, numbers against onnxruntime,
dynamic batch fixed by input_shapes, an op no pattern covers (NonMaxSuppression)
falling back to the host, and malformed files."""
import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon.frontend import SophonFrontendError, inputs_of, load, load_onnx

import frontend_models as fm
from conftest import host_ops


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name, data in (("clip", fm.onnx_clip_cnn()), ("dynamic", fm.onnx_clip_cnn("dynamic")),
                       ("nms", fm.onnx_conv_and_nms())):
        paths[name] = root / f"{name}.onnx"
        paths[name].write_bytes(data)
    return paths


def test_clip_becomes_relax_clip_fused_into_conv(files):
    mod = load(files["clip"])
    names = host_ops(mod)
    assert "relax.call_tir" not in names and "relax.isnan" not in names
    assert names.count("relax.clip") == 1
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod))
    assert report.offloaded_mac_share == 1.0
    assert report.offloaded[0] == "sophon.conv2d_bias_clip"
    # without the rewrite, the clip's two call_tir loops would stay on the host
    assert report.host_ops == [] and "sophon.reshape" in report.offloaded  # Flatten too, as a view


def test_sum_dropout_and_noop_reshape_are_normalised_onto_the_chip(tmp_path):
    """ONNX Sum (imported as broadcast_to + stack + sum) becomes add and fuses with
    its ReLU; Dropout and a Reshape to the same shape are gone; one region before
    the flatten, and the result matches onnxruntime."""
    path = tmp_path / "sum.onnx"
    path.write_bytes(fm.onnx_sum_residual())
    mod = load(path)
    names = host_ops(mod)
    assert not {"relax.stack", "relax.sum", "relax.broadcast_to", "relax.nn.dropout"} & set(names)
    assert names.count("relax.reshape") == 1  # only Flatten
    partitioned = tvm_sophon.partition_for_sophon(mod)
    report = tvm_sophon.offload_report(partitioned)
    # the Flatten runs on the chip too (a view), and so the dense layer after it
    assert report.regions[0].composites == ["sophon.conv2d_bias_relu", "sophon.conv2d", "sophon.add_relu",
                                            "sophon.reshape", "sophon.matmul"]
    x = np.random.default_rng(5).standard_normal((1, 5, 7, 7)).astype("float32")
    out = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    # float32 both sides, different summation order over at most 245 products
    np.testing.assert_allclose(out, fm.onnxruntime_run(fm.onnx_sum_residual(), {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_chip_matches_onnxruntime(files):
    vm = relax.VirtualMachine(tvm_sophon.build(load(files["clip"])), tvm.cpu())
    # scaled so that some values exceed the clip's upper bound of 6
    x = (np.random.default_rng(0).standard_normal((1, 1, 8, 8)) * 20).astype("float32")
    out = vm["main"](tvm.runtime.tensor(x)).numpy()
    (ref,) = fm.onnxruntime_run(fm.onnx_clip_cnn(), {"image": x})
    # float32 both sides; outputs are O(10), summation order differs
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


def test_dynamic_batch_is_fixed_by_input_shapes(files):
    assert inputs_of(load(files["dynamic"]))[0].is_static is False
    mod = load_onnx(files["dynamic"], {"image": (2, 1, 8, 8)})
    assert inputs_of(mod)[0].shape == (2, 1, 8, 8)
    vm = relax.VirtualMachine(tvm_sophon.build(mod), tvm.cpu())
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype("float32")
    (ref,) = fm.onnxruntime_run(fm.onnx_clip_cnn("dynamic"), {"image": x})
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), ref, rtol=1e-5, atol=1e-4)


def test_non_max_suppression_runs_on_the_host(files):
    mod = load(files["nms"])
    partitioned = tvm_sophon.partition_for_sophon(mod)
    report = tvm_sophon.offload_report(partitioned)
    assert report.offloaded == ["sophon.conv2d"]
    (nms,) = [op for op in report.host_ops if "non_max_suppression" in op.op]
    assert "no sophon pattern covers" in nms.reason
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
    rng = np.random.default_rng(2)
    corners = np.sort(rng.random((1, 6, 2, 2)).astype("float32"), axis=2)  # y1 <= y2, x1 <= x2
    feeds = {"x": rng.standard_normal((1, 1, 8, 8)).astype("float32"),
             "boxes": corners.transpose(0, 1, 3, 2).reshape(1, 6, 4)[..., [0, 2, 1, 3]].copy(),
             "scores": rng.random((1, 1, 6)).astype("float32")}
    y, selected = vm["main"](*(tvm.runtime.tensor(v) for v in feeds.values()))
    ref_y, ref_selected = fm.onnxruntime_run(fm.onnx_conv_and_nms(), feeds)
    np.testing.assert_allclose(y.numpy(), ref_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(selected.numpy(), ref_selected)


def test_random_bytes_named_onnx(tmp_path):
    bad = tmp_path / "random.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SophonFrontendError, match=r"random\.onnx is not a valid ONNX model"):
        load(bad)


def test_truncated_onnx(files, tmp_path):
    data = files["clip"].read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SophonFrontendError, match=r"truncated\.onnx is not a valid ONNX model"):
        load(bad)


def test_unknown_suffix_and_unknown_input(files, tmp_path):
    with pytest.raises(SophonFrontendError, match="unknown model format '.pb'"):
        load(tmp_path / "model.pb")
    with pytest.raises(SophonFrontendError, match=r"no input named 'img' \(its inputs: image\)"):
        load(files["clip"], {"img": (1, 1, 8, 8)})
