"""Sweeps and data-set evaluation on Ray (issue #15), on a local Ray of 2 CPUs.

The sweep is checked against planning every point serially in this process with
``profile_model`` (no Ray, no sweep code); ``evaluate`` against a plain loop over
the test set with both libraries loaded here. Both comparisons are exact: the
same deterministic planner and cost model, and the same library on the same
inputs, must give the same numbers wherever they run.
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from tvm_sophon import get_chip  # noqa: E402
from tvm_sophon.cli import main as cli_main  # noqa: E402
from tvm_sophon.models import MODELS  # noqa: E402
from tvm_sophon.profile import profile_model  # noqa: E402
from tvm_sophon.sweep import SweepError, pareto_front, sweep, write_pareto_plot  # noqa: E402

TESTS = Path(__file__).resolve().parent
METRICS = ("cycles", "seconds", "energy_joules", "ddr_bytes", "lmem_peak", "macs", "utilisation")


@pytest.fixture(scope="module", autouse=True)
def count_file(tmp_path_factory):
    """One local Ray of 2 CPUs for the module. Its workers inherit this
    environment: tests/ on PYTHONPATH (for the strategy named by import path) and
    SWEEP_COUNT_FILE, the file that strategy counts its calls in."""
    count = tmp_path_factory.mktemp("count") / "planned.txt"
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "SWEEP_COUNT_FILE")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), saved["PYTHONPATH"]]))
    os.environ["SWEEP_COUNT_FILE"] = str(count)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             object_store_memory=1 << 29)
    yield count
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_sweep_gives_exactly_the_points_of_serial_planning(tmp_path):
    lmems = [16384, 65536, 524288]
    plans = ["layer_group_dp", "layer_by_layer"]
    result = sweep(["mlp", "demo_cnn"], overrides={"lmem_bytes_per_lane": [str(m) for m in lmems]},
                   plans=plans, out=tmp_path, progress=False)
    assert result.computed == 12 and result.skipped == 0
    got = {(r["model"], r["lmem_bytes_per_lane"], r["plan"]): r for r in result.rows}
    expected = {}
    for model in ("mlp", "demo_cnn"):
        mod, params, inputs = MODELS[model]()
        for lmem in lmems:
            chip = get_chip("bm1680").replace(lmem_bytes_per_lane=lmem)
            for plan in plans:
                expected[model, lmem, plan] = profile_model(mod, params, inputs, chip=chip, plan=plan,
                                                            run=False).total
    assert set(got) == set(expected)
    for point, total in expected.items():
        assert got[point]["status"] == "ok", got[point]["error"]
        assert {m: got[point][m] for m in METRICS} == {m: total[m] for m in METRICS}, point
    # the table on disk holds the same rows, in both formats
    lines = (tmp_path / "points.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == sorted(r["key"] for r in result.rows)
    assert len((tmp_path / "points.csv").read_text().splitlines()) == 13
    # the default configuration: bm1680 as shipped (512 KiB per lane), layer_group_dp, FP32
    assert sorted((r["model"], r["lmem_bytes_per_lane"], r["plan"]) for r in result.rows if r["is_default"]) == [
        ("demo_cnn", 524288, "layer_group_dp"), ("mlp", 524288, "layer_group_dp")]
    png = write_pareto_plot(result.rows, tmp_path / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_point_is_recorded_and_the_rest_complete(tmp_path):
    result = sweep(["demo_cnn"], overrides={"lmem_bytes_per_lane": ["256", "65536", "524288"]},
                   out=tmp_path, progress=False)
    rows = {r["lmem_bytes_per_lane"]: r for r in result.rows}
    assert rows[256]["status"] == "error"
    assert rows[256]["error"].startswith("SophonCompileError: ") and "local memory" in rows[256]["error"]
    assert "\n" not in rows[256]["error"]
    assert [rows[m]["status"] for m in (65536, 524288)] == ["ok", "ok"]
    assert rows[256]["cycles"] is None and rows[65536]["cycles"] > 0


def _wait_idle(cpus: float = 2, timeout: float = 60) -> None:
    """Until every CPU of the local cluster is free (cancelled tasks have ended)."""
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0) < cpus and time.monotonic() < deadline:
        time.sleep(0.2)


def test_an_interrupted_sweep_resumes_without_recomputing(tmp_path, count_file):
    counts = count_file
    lmems = ["4096", "8192", "16384", "65536", "524288"]
    kwargs = dict(overrides={"lmem_bytes_per_lane": lmems}, plans=["sweep_counting:counting_dp"],
                  out=tmp_path / "table", progress=False)
    seen = []

    def interrupt(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(["mlp"], on_row=interrupt, **kwargs)
    _wait_idle()
    done = {r["lmem_bytes_per_lane"] for r in seen}
    assert len(done) == 2
    counts.write_text("")
    result = sweep(["mlp"], **kwargs)
    assert (result.skipped, result.computed) == (2, 3)
    planned = set(map(int, counts.read_text().split()))
    assert planned == {int(m) for m in lmems} - done   # only the unfinished points were planned again
    assert sorted(r["lmem_bytes_per_lane"] for r in result.rows) == sorted(map(int, lmems))
    assert all(r["status"] == "ok" for r in result.rows)
    counts.write_text("")
    again = sweep(["mlp"], **kwargs)                      # all done: nothing runs, nothing is planned
    assert (again.skipped, again.computed) == (5, 0) and counts.read_text() == ""


def test_pareto_front_by_hand():
    rows = [{"status": "ok", "seconds": s, "energy_joules": e, "lmem_bytes_per_lane": m, "id": i}
            for i, (s, e, m) in enumerate([(1, 1, 4), (2, 2, 1), (2, 2, 4), (3, 1, 4), (1, 1, 8)])]
    rows.append({"status": "error", "seconds": None})
    front = pareto_front(rows, ["seconds", "energy_joules", "lmem_bytes_per_lane"])
    assert sorted(r["id"] for r in front) == [0, 1]   # 2 is beaten by 0, 3 by 0, 4 by 0 (more LMEM)


def test_cli_sweep_bad_input_and_missing_ray(tmp_path, capsys, monkeypatch):
    assert cli_main(["sweep", "mlp", "--override", "lmem_bytes_per_lanes=4096", "--out", str(tmp_path)]) == 1
    assert "is not a chip field" in capsys.readouterr().err
    assert cli_main(["sweep", "no_such_model", "--out", str(tmp_path)]) == 1
    assert "neither a bundled model" in capsys.readouterr().err
    assert cli_main(["sweep", "mlp", "--plan", "no_such_plan", "--out", str(tmp_path)]) == 1
    assert "plan strategy 'no_such_plan'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert cli_main(["sweep", "mlp", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "tvm-sophon[sweep]"' in err
    with pytest.raises(SweepError, match="needs Ray"):
        sweep(["mlp"], out=tmp_path)


def test_cli_sweep_runs_on_the_emulator_and_resumes(tmp_path, capsys):
    args = ["sweep", "mlp", "--override", "lmem_bytes_per_lane=65536,524288", "--run", "--out", str(tmp_path),
            "--no-progress"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "2 computed now, 0 already done, 0 failed" in out and (tmp_path / "pareto.png").is_file()
    rows = [json.loads(line) for line in (tmp_path / "points.jsonl").read_text().splitlines()]
    # float32 on the emulator against TVM's llvm build of the same model: summation order differs
    assert all(r["status"] == "ok" and r["max_abs_error"] < 1e-5 for r in rows)
    assert cli_main(args) == 0
    assert "0 computed now, 2 already done" in capsys.readouterr().out


# ------------------------------------------------------------------ evaluate


def _digits_libraries(tmp_path: Path, batch: int):
    """FP32 and INT8 libraries of a small digits CNN (as in tutorial 3 and
    bench/int8_digits.py), trained briefly, exported to ONNX, compiled by the CLI."""
    torch = pytest.importorskip("torch")
    sklearn = pytest.importorskip("sklearn.datasets")
    digits = sklearn.load_digits()
    images = (digits.images / 16.0).astype("float32")[:, None]
    labels = digits.target.astype("int64")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(images[:1500]), torch.from_numpy(labels[:1500])
    for _ in range(2):
        for idx in torch.randperm(1500).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    onnx_path = tmp_path / "digits.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter: deprecated, but 10x faster here
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x[:batch],), str(onnx_path), input_names=["image"], output_names=["logits"],
                          dynamo=False)
    np.savez(tmp_path / "calibration.npz", image=images[:4 * batch].reshape(4, batch, 1, 8, 8))
    fp32, int8 = tmp_path / "fp32.so", tmp_path / "int8.so"
    assert cli_main(["compile", str(onnx_path), "-o", str(fp32), "--chip", "bm1684"]) == 0
    assert cli_main(["compile", str(onnx_path), "-o", str(int8), "--chip", "bm1684", "--quantize", "int8",
                     "--calibration", str(tmp_path / "calibration.npz")]) == 0
    return fp32, int8, images[1500:], labels[1500:]


def _serial_logits(library: Path, images: np.ndarray, batch: int) -> np.ndarray:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    padded = np.concatenate([images, np.zeros((-len(images) % batch, 1, 8, 8), "float32")])
    out = [vm["main"](tvm.runtime.tensor(padded[i:i + batch])).numpy() for i in range(0, len(padded), batch)]
    return np.concatenate(out)[:len(images)]


def test_evaluate_matches_a_serial_loop_on_digits(tmp_path, capsys):
    batch = 16
    fp32, int8, images, labels = _digits_libraries(tmp_path, batch)
    data = tmp_path / "shards"
    data.mkdir()
    for k, start in enumerate(range(0, len(images), 100)):  # 297 images: 100, 100, 97 (not a multiple of 16)
        np.savez(data / f"shard{k}.npz", image=images[start:start + 100], labels=labels[start:start + 100])
    assert cli_main(["evaluate", str(int8), "--data", str(data), "--reference", str(fp32),
                     "--json", str(tmp_path / "eval.json"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    capsys.readouterr()

    q, f = _serial_logits(int8, images, batch), _serial_logits(fp32, images, batch)

    def in_top5(logits, classes):
        """Fewer than 5 classes ahead: scoring higher, or equal with a lower index
        (argmax's order; INT8 logits do tie)."""
        hits = []
        for row, c in zip(logits, classes):
            ahead = sum(1 for j, v in enumerate(row) if v > row[c] or (v == row[c] and j < c))
            hits.append(ahead < 5)
        return np.mean(hits)

    expected = {"top1_rate": np.mean(q.argmax(1) == labels), "top5_rate": in_top5(q, labels),
                "ref_top1_rate": np.mean(f.argmax(1) == labels), "ref_top5_rate": in_top5(f, labels),
                "agree_top1_rate": np.mean(q.argmax(1) == f.argmax(1)),
                "agree_top5_rate": in_top5(q, f.argmax(1))}
    assert result["samples"] == len(images) == 297
    assert {k: result[k] for k in expected} == {k: float(v) for k, v in expected.items()}
    assert result["ref_top1_rate"] > 0.8   # the model did learn: a check that the data reached it


def test_evaluate_errors(tmp_path, capsys):
    assert cli_main(["evaluate", str(tmp_path / "missing.so"), "--data", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
