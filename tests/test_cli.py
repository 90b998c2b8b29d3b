"""`tvm-sophon compile` and `run`: round trips on a .tflite and an .onnx file
against the frameworks' own runtimes, and every user error as one line on
stderr with a non-zero exit status."""
import subprocess
import sys

import numpy as np
import pytest

from tvm_sophon.cli import main

import frontend_models as fm


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Both models written and compiled once for the module: name -> (model, library)."""
    root = tmp_path_factory.mktemp("cli")
    out = {}
    for name, data in (("cnn.tflite", fm.tflite_cnn()), ("cnn.onnx", fm.onnx_clip_cnn())):
        model = root / name
        model.write_bytes(data)
        library = root / (name.replace(".", "_") + ".so")
        assert main(["compile", str(model), "-o", str(library)]) == 0
        out[name] = (model, library)
    return out


def test_tflite_round_trip(built, tmp_path, capsys):
    model, library = built["cnn.tflite"]
    x = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    name = fm.tflite_input_name(fm.tflite_cnn())
    status = main(["run", str(library), "--input", f"{name}={tmp_path / 'x.npy'}",
                   "--output", str(tmp_path / "out.npz"), "--profile"])
    assert status == 0
    stdout = capsys.readouterr().out
    assert "chip counters (bm1680, last run)" in stdout  # --profile
    (out,) = np.load(tmp_path / "out.npz").values()
    # float32 both sides, different summation order
    np.testing.assert_allclose(out, fm.tflite_reference(fm.tflite_cnn(), x), rtol=1e-5, atol=1e-5)


def test_onnx_round_trip_with_float64_input(built, tmp_path, capsys):
    _, library = built["cnn.onnx"]
    x = np.random.default_rng(1).standard_normal((1, 1, 8, 8)) * 10  # float64 .npy: cast to float32
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(library), "--input", f"image={tmp_path / 'x.npy'}", "--output", str(tmp_path / "o.npz")]) == 0
    assert "is float64; cast to float32" in capsys.readouterr().err  # the cast is said
    outputs = np.load(tmp_path / "o.npz")
    assert list(outputs) == ["logits"]  # keyed by the ONNX output name
    (ref,) = fm.onnxruntime_run(fm.onnx_clip_cnn(), {"image": x.astype("float32")})
    np.testing.assert_allclose(outputs["logits"], ref, rtol=1e-5, atol=1e-4)


def _usage_error(argv, capsys) -> str:
    """argparse's errors: exit status 2, one line, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    assert exc.value.code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def _error(argv, capsys) -> str:
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err  # one line, no traceback
    assert "Traceback" not in captured.err
    return lines[0]


def test_compile_errors(built, tmp_path, capsys):
    onnx_model, _ = built["cnn.onnx"]
    tflite_model, _ = built["cnn.tflite"]
    out = str(tmp_path / "x.so")
    assert "does not exist" in _error(["compile", str(tmp_path / "missing.onnx"), "-o", out], capsys)
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(1000))
    assert "not a valid ONNX model" in _error(["compile", str(tmp_path / "random.onnx"), "-o", out], capsys)
    (tmp_path / "cut.tflite").write_bytes(tflite_model.read_bytes()[:3000])
    assert "truncated or corrupt" in _error(["compile", str(tmp_path / "cut.tflite"), "-o", out], capsys)
    line = _error(["compile", str(onnx_model), "-o", out, "--input-shape", "img=1,1,8,8"], capsys)
    assert "no input named 'img'" in line and "image" in line
    assert "NAME=D1,D2" in _error(["compile", str(onnx_model), "-o", out, "--input-shape", "image=1,x"], capsys)
    assert "needs --calibration" in _error(["compile", str(onnx_model), "-o", out, "--quantize", "int8"], capsys)
    assert "cannot read calibration data" in _error(
        ["compile", str(onnx_model), "-o", out, "--quantize", "int8", "--calibration", str(tmp_path / "none.npz"),
         "--chip", "bm1684"], capsys)
    np.savez(tmp_path / "wrong.npz", img=np.zeros((1, 1, 8, 8), "float32"))
    assert "no array for input 'image'" in _error(
        ["compile", str(onnx_model), "-o", out, "--quantize", "int8", "--calibration", str(tmp_path / "wrong.npz"),
         "--chip", "bm1684"], capsys)


def test_compile_quantized_int8_and_run(built, tmp_path, capsys):
    onnx_model, _ = built["cnn.onnx"]
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "calib.npz", image=rng.random((6, 1, 1, 8, 8)).astype("float32"))
    lib = tmp_path / "int8.so"
    assert main(["compile", str(onnx_model), "-o", str(lib), "--chip", "bm1684", "--quantize", "int8",
                 "--calibration", str(tmp_path / "calib.npz")]) == 0
    out = capsys.readouterr().out
    assert "sophon.qconv2d" in out and "int8" in out
    np.save(tmp_path / "x.npy", rng.random((1, 1, 8, 8)).astype("float32"))
    assert main(["run", str(lib), "--input", f"image={tmp_path / 'x.npy'}", "--output", str(tmp_path / "y.npz")]) == 0
    assert np.load(tmp_path / "y.npz")[np.load(tmp_path / "y.npz").files[0]].shape[-1] == 10


def test_compile_asks_for_shapes_of_dynamic_inputs(tmp_path, capsys):
    model = tmp_path / "dynamic.onnx"
    model.write_bytes(fm.onnx_clip_cnn("dynamic"))
    line = _error(["compile", str(model), "-o", str(tmp_path / "d.so")], capsys)
    assert "dynamic shape [?,1,8,8]" in line and "--input-shape image=" in line
    assert main(["compile", str(model), "-o", str(tmp_path / "d.so"), "--input-shape", "image=3,1,8,8"]) == 0


def test_run_errors(built, tmp_path, capsys):
    onnx_model, library = built["cnn.onnx"]
    np.save(tmp_path / "good.npy", np.zeros((1, 1, 8, 8), "float32"))
    np.save(tmp_path / "flat.npy", np.zeros((1, 64), "float32"))
    np.save(tmp_path / "ints.npy", np.zeros((1, 1, 8, 8), "int32"))
    good, flat, ints = (str(tmp_path / f) for f in ("good.npy", "flat.npy", "ints.npy"))
    assert "does not exist" in _error(["run", str(tmp_path / "none.so"), "--input", f"image={good}"], capsys)
    assert "not a library built by" in _error(["run", str(onnx_model), "--input", f"image={good}"], capsys)
    line = _error(["run", str(library), "--input", f"img={good}"], capsys)
    assert "no input named 'img'" in line and "(its inputs: image)" in line
    line = _error(["run", str(library), "--input", f"image={flat}"], capsys)
    assert "has shape [1, 64], but the model takes [1, 1, 8, 8]" in line
    assert "is int32, but the model takes float32" in _error(["run", str(library), "--input", f"image={ints}"], capsys)
    assert "does not exist" in _error(["run", str(library), "--input", f"image={tmp_path / 'no.npy'}"], capsys)
    assert "required: --input" in _usage_error(["run", str(library)], capsys)
    (tmp_path / "text.npy").write_text("1 2 3\n")
    assert "is not a .npy file (no NumPy header)" in _error(
        ["run", str(library), "--input", f"image={tmp_path / 'text.npy'}"], capsys)
    assert "--input gives 'image' twice" in _error(
        ["run", str(library), "--input", f"image={good}", "--input", f"image={good}"], capsys)
    assert "--output" in _error(["run", str(library), "--input", f"image={good}", "--output",
                                 str(tmp_path / "no" / "o.npz")], capsys)


def test_console_script_exit_status_and_verbose(tmp_path):
    """The installed entry point: exit status 1 and one line; --verbose adds the traceback."""
    cmd = [sys.executable, "-m", "tvm_sophon.cli", "compile", str(tmp_path / "missing.tflite"), "-o", "x.so"]
    quiet = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1
    assert quiet.stderr.strip().splitlines() == [
        f"tvm-sophon compile: error: model file {tmp_path / 'missing.tflite'} does not exist"]
    verbose = subprocess.run(cmd + ["--verbose"], capture_output=True, text=True, timeout=120)
    assert verbose.returncode != 0
    assert "Traceback" in verbose.stderr and "SophonFrontendError" in verbose.stderr


def test_profile_writes_table_json_trace_and_plot(tmp_path, capsys):
    paths = {k: tmp_path / f"p.{ext}" for k, ext in (("json", "json"), ("trace", "trace.json"), ("plot", "png"))}
    code = main(["profile", "demo_cnn", "--chip", "bm1680", "--json", str(paths["json"]),
                 "--trace", str(paths["trace"]), "--plot", str(paths["plot"])])
    out = capsys.readouterr().out
    assert code == 0
    assert "per layer group" in out and "host:" in out and "% of peak FLOPS" in out
    import json
    profile = json.loads(paths["json"].read_text())
    assert profile["total"]["cycles"] == profile["measured"]["total"]["cycles"]
    assert json.loads(paths["trace"].read_text())["traceEvents"]
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_profile_of_an_unknown_model_is_one_clear_line(capsys):
    assert main(["profile", "no_such_model"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a bundled model" in err[0]


def test_arguments_and_output_paths_are_checked_before_compiling(built, tmp_path, capsys):
    """Each of these used to fail only after the whole compile (or with raw TVM text)."""
    onnx_model, library = built["cnn.onnx"]
    line = _error(["compile", str(onnx_model), "-o", str(tmp_path / "missing" / "m.so")], capsys)
    assert line == f"tvm-sophon compile: error: -o {tmp_path / 'missing' / 'm.so'}: directory " \
                   f"{tmp_path / 'missing'} does not exist"
    assert "expected a .so file name, e.g. mymodel.so" in _error(
        ["compile", str(onnx_model), "-o", str(tmp_path / "mymodel")], capsys)
    assert "available: bm1680, bm1684" in _error(["compile", str(onnx_model), "-o", str(tmp_path / "m.so"),
                                                  "--chip", "bm9"], capsys)
    assert "add --chip bm1684" in _error(["compile", str(onnx_model), "-o", str(tmp_path / "m.so"),
                                          "--quantize", "int8", "--calibration", "c.npz"], capsys)
    for batch in ("0", "-1"):
        assert "expected a positive integer" in _usage_error(["profile", "resnet18", "--batch", batch], capsys)
    assert "directory" in _error(["profile", "mlp", "--no-run", "--plot", str(tmp_path / "no" / "p.png")], capsys)
    assert "FP32 only; use --chip bm1684" in _error(["compare", "mlp", "--chip", "bm1680"], capsys)


def test_input_shape_is_checked_against_the_model(built, tmp_path, capsys):
    onnx_model, _ = built["cnn.onnx"]
    out = str(tmp_path / "m.so")
    line = _error(["compile", str(onnx_model), "-o", out, "--input-shape", "image=1,3,8,8"], capsys)
    assert "input 'image' is [1,1,8,8]: dimension 1 is fixed at 1 in the model, the shape given has 3" in line
    line = _error(["compile", str(onnx_model), "-o", out, "--input-shape", "image=1,8,8"], capsys)
    assert "input 'image' has rank 4 [1,1,8,8]; the shape given has 3 dimensions [1, 8, 8]" in line


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("tvm-sophon 0.1.0 (Apache TVM 0.27")
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "kl (KL divergence" in text and "required for a model file" in text and "bm1680, bm1684" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "print the offload report and the chip counters" in text  # what demo prints, not "the profile"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--verbose" in capsys.readouterr().out


def test_compare_plot_without_matplotlib_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    line = _error(["compare", "mlp", "--plot", str(tmp_path / "c.png")], capsys)
    assert line == "tvm-sophon compare: error: --plot needs matplotlib: pip install 'tvm-sophon[plot]'"


def test_keras_dynamic_batch_tflite_compiles_at_batch_1_or_the_given_batch(tmp_path, capsys, caplog):
    """Keras' default export has a dynamic batch; it imports with batch 1 (said in one
    line) or the batch --input-shape gives, and matches TFLite's interpreter."""
    data = fm.tflite_dynamic_batch_cnn()
    model = tmp_path / "dyn.tflite"
    model.write_bytes(data)
    name = fm.tflite_input_name(data)
    rng = np.random.default_rng(5)
    for batch, extra in ((1, []), (3, ["--input-shape", f"{name}=3,8,8,1"])):
        lib = tmp_path / f"dyn{batch}.so"
        caplog.clear()
        assert main(["compile", str(model), "-o", str(lib), *extra]) == 0
        said = [r.getMessage() for r in caplog.records]  # a warning: stderr on the command line
        if batch == 1:
            assert len(said) == 1 and said[0].startswith(f"{name}: the model's batch is dynamic; compiling for batch 1")
        else:
            assert not said
        x = rng.standard_normal((batch, 8, 8, 1)).astype("float32")
        np.save(tmp_path / "x.npy", x)
        assert main(["run", str(lib), "--input", f"{name}={tmp_path / 'x.npy'}", "--output", str(tmp_path / "y.npz")]) == 0
        (out,) = np.load(tmp_path / "y.npz").values()
        # float32 both sides, different summation order
        np.testing.assert_allclose(out, fm.tflite_reference(data, x), rtol=1e-5, atol=1e-5)


def test_import_error_is_one_line_without_tvm_warning(tmp_path):
    """TVM's "BlockBuilder destroyed with remaining blocks!" (printed by C++ when the
    importer's builder is freed) no longer follows an import error."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
        initializer=[numpy_helper.from_array(np.array([3, 5], dtype=np.int64), "s")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "bad.onnx"))
    cmd = [sys.executable, "-m", "tvm_sophon.cli", "compile", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "b.so")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TVM's ONNX importer failed" in lines[0] and "Reshape" in lines[0], proc.stderr
    assert proc.stdout == ""
