"""TFLite frontend: a Keras CNN converted to .tflite, imported, partitioned and
run on the emulated chip against TensorFlow Lite's interpreter; bad files."""
import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon.frontend import SophonFrontendError, inputs_of, load, load_tflite

import frontend_models as fm


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tflite") / "cnn.tflite"
    path.write_bytes(fm.tflite_cnn())
    return path


def _ops(mod):
    calls = []
    relax.analysis.post_order_visit(
        mod["main"].body,
        lambda e: calls.append(e) if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None)
    return calls


def test_import_keeps_depthwise_hwoi_and_offloads_every_mac(tflite_file):
    mod = load(tflite_file)
    convs = [c for c in _ops(mod) if c.op.name == "relax.nn.conv2d"]
    layouts = sorted((str(c.attrs.kernel_layout), int(c.attrs.groups)) for c in convs)
    # TFLite stores depthwise kernels as HWOI (1, 3, 3, C); the pattern table takes it as is
    assert layouts == [("HWIO", 1), ("HWIO", 1), ("HWOI", 8)]
    assert inputs_of(mod)[0].shape == (1, 8, 8, 1)
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod))
    assert report.offloaded_mac_share == 1.0
    assert "sophon.conv2d_bias_clip" in report.offloaded  # depthwise conv + ReLU6 fused
    # dense layers arrive as permute_dims + matmul (untrained Keras biases are zero and dropped)
    assert sum(name.startswith("sophon.matmul") for name in report.offloaded) == 2
    # nothing stays on the host: the flatten reshape runs on the chip
    assert report.host_ops == [] and "sophon.reshape" in report.offloaded  # Flatten too, as a view


def test_chip_matches_tflite_interpreter(tflite_file):
    mod = load(tflite_file)
    vm = relax.VirtualMachine(tvm_sophon.build(mod), tvm.cpu())
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.random((1, 8, 8, 1), dtype=np.float32)
        out = vm["main"](tvm.runtime.tensor(x)).numpy()
        ref = fm.tflite_reference(fm.tflite_cnn(), x)
        # float32 on both sides, different summation order over at most 144 terms
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_lstm_loop_stays_on_the_host_and_the_rest_runs(tmp_path):
    """A Keras LSTM imports as a While loop (functions besides main, one calling
    itself): partitioning must not fail inside TVM, the loop runs on the host, the
    dense layer after it on the chip, and the result matches TFLite."""
    path = tmp_path / "lstm.tflite"
    path.write_bytes(fm.tflite_lstm())
    mod = load(path)
    partitioned = tvm_sophon.partition_for_sophon(mod)
    report = tvm_sophon.offload_report(partitioned)
    # the last step's slice and reshape of the loop's result go with the dense layer
    assert report.offloaded == ["sophon.strided_slice", "sophon.reshape", "sophon.matmul"]
    loop = [op for op in report.host_ops if op.op.startswith("tflite_while")]
    assert len(loop) == 1 and "is a loop" in loop[0].reason and "by design" in loop[0].reason
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
    x = np.random.default_rng(0).standard_normal((1, 6, 5)).astype("float32")
    out = vm["main"](tvm.runtime.tensor(x)).numpy()
    # float32 on both sides; the LSTM's gates run on TVM's host kernels (expf, tanhf)
    # and the interpreter's, a few ulp apart, through 6 steps
    np.testing.assert_allclose(out, fm.tflite_reference(fm.tflite_lstm(), x), rtol=1e-5, atol=1e-5)


def test_output_takes_the_declared_shape_when_flatten_folds_into_the_dense(tmp_path):
    """TFLite's FULLY_CONNECTED flattens its input; TVM's importer keeps the 1x1
    feature map's rank, so the logits would come out (1, 1, 1, 3) where the
    interpreter gives (1, 3). The loader reshapes main's output to the declared
    shape, inside main's one dataflow block, and the whole net is one region."""
    path = tmp_path / "flatten_1x1.tflite"
    path.write_bytes(fm.tflite_flatten_1x1())
    mod = load(path)
    assert len(mod["main"].body.blocks) == 1  # tvm_sophon.quantize needs main as one dataflow block
    partitioned = tvm_sophon.partition_for_sophon(mod)
    report = tvm_sophon.offload_report(partitioned)
    assert report.host_ops == [] and report.offloaded_mac_share == 1.0
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
    x = np.random.default_rng(1).standard_normal((1, 6, 6, 3)).astype("float32")
    out = vm["main"](tvm.runtime.tensor(x)).numpy()
    ref = fm.tflite_reference(fm.tflite_flatten_1x1(), x)
    assert out.shape == ref.shape == (1, 3)
    # float32 on both sides, different summation order over at most 27 terms
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("keep", [20, 600, 0.5, 0.95])
def test_truncated_file_is_a_clear_error(tflite_file, tmp_path, keep):
    data = tflite_file.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(data[:n])
    with pytest.raises(SophonFrontendError, match=r"truncated\.tflite"):
        load(bad)


def test_random_bytes_and_missing_file(tmp_path):
    bad = tmp_path / "random.tflite"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SophonFrontendError, match="not a TFLite model"):
        load(bad)
    with pytest.raises(SophonFrontendError, match="does not exist"):
        load(tmp_path / "missing.tflite")
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(SophonFrontendError, match="is empty"):
        load(tmp_path / "empty.tflite")


def test_unknown_input_name_in_shapes(tflite_file):
    with pytest.raises(SophonFrontendError, match=r"no input named 'nope' \(its inputs: serving_default_image:0\)"):
        load_tflite(tflite_file, {"nope": (1, 8, 8, 1)})
