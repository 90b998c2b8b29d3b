"""Post-training quantization of whole FP32 models on bm1684 (issue #11):
``tvm_sophon.quantize`` of MobileNetV2 and ResNet-50 (tvm_sophon.models, NCHW,
random weights, as bench/fidelity.py builds them), partitioned and run on the
emulated chip, against TVM's llvm build of the same quantized module.

Columns: regions and host ops of the partitioned module (the target: one region,
with only the model's own float edges, the input's quantize and the logits'
dequantize, on the host); "max LSB vs llvm" and "exact" over the int8 logits
(the difference in units of the output scale). The llvm build emulates each
int8 layer in float32 (dequantize, float conv, round once), where the chip
requantizes with TFLite's fixed-point multipliers (round twice): per layer the
two can be 1 LSB apart, and a deep net carries those differences forward.
"first layer" is the same measure on the first conv's int8 output alone, where
nothing has propagated yet.

    python bench/ptq_whole.py [--models mobilenet_v2,resnet50] [--image 224]

``--zoo`` measures PTQ over the FP32 model zoo of issue #10 (tests/zoo_models.py:
the Keras applications through FP32 TFLite, the torch nets through ONNX, at their
``small`` sizes): each model loaded with ``tvm_sophon.frontend.load``, quantized
with every layer int8 (``max`` thresholds from its example input and two random
batches), partitioned and run on bm1684, against the model's own framework
(TFLite interpreter / onnxruntime) on the FP32 example input. Columns: regions,
host ops counted by op (reasons under the table), int8 layers / layers found,
cosine of the chip's INT8 output with the framework's FP32 output, top-1 equal
(classifiers), PTQ and compile seconds. Each model runs in its own process.

    python bench/ptq_whole.py --zoo [--only resnet50,mobilenetv2] [--json ptq_zoo.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon import models
from tvm_sophon.quantize import _calibrate

BUILDERS = {"mobilenet_v2": lambda image: models.mobilenet_v2(image=image),
            "resnet50": lambda image: models.resnet(50, image=image)}


def _lsb(got: np.ndarray, want: np.ndarray, scale: float) -> tuple[int, float]:
    d = np.round(np.abs(got.astype(np.float64) - want) / scale)
    return int(d.max()), float(np.mean(d == 0))


def measure(name: str, image: int, runs: int = 2) -> dict:
    mod, params, inputs = BUILDERS[name](image)
    rng = np.random.default_rng(0)
    calib = [{k: rng.standard_normal(v.shape).astype("float32") for k, v in inputs.items()} for _ in range(2)]
    start = time.perf_counter()
    # every layer int8 (random weights drop some layers' cosine; the point is the int8 chain)
    q = _calibrate(mod, calib, params, "max", True, -1.0, False)
    first = next(iter(q.layers.values())).out
    row = {"model": name, "image": image, "quantize_s": time.perf_counter() - start}
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(q.module(), chip="bm1684"))
    row["regions"] = len(report.regions)
    row["host_ops"] = [f"{op.op.split('.')[-1]} {list(op.shape)}" for op in report.host_ops]
    # the same module returning the first layer's output too (one more dequantize on the host)
    quantized = q.module([first])
    partitioned = tvm_sophon.partition_for_sophon(quantized, chip="bm1684")
    start = time.perf_counter()
    chip = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
    row["build_s"] = time.perf_counter() - start
    llvm = relax.VirtualMachine(tvm.compile(quantized, target="llvm"), tvm.cpu())
    out_scale, first_scale = q.scales[q.layers[list(q.layers)[-1]].out], q.scales[first]
    worst = collections.defaultdict(list)
    for _ in range(runs):
        x = tvm.runtime.tensor(rng.standard_normal(inputs["data"].shape).astype("float32"))
        (got, got_first), (want, want_first) = ([o.numpy() for o in vm["main"](x)] for vm in (chip, llvm))
        worst["logits"].append(_lsb(got, want, out_scale))
        worst["first"].append(_lsb(got_first, want_first, first_scale))
        worst["top1"].append(int(got.argmax() == want.argmax()))
    row["lsb"], row["exact"] = max(w[0] for w in worst["logits"]), min(w[1] for w in worst["logits"])
    row["first_lsb"], row["first_exact"] = max(w[0] for w in worst["first"]), min(w[1] for w in worst["first"])
    row["top1_same"] = f"{sum(worst['top1'])}/{runs}"
    return row


# ------------------------------------------------------------------ the FP32 zoo


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))


def measure_zoo(name: str, workdir: Path) -> dict:
    """PTQ of one zoo model (small size), as the module docstring says; a failing
    stage ends the row with its one-line error."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import zoo_models

    from tvm_sophon.frontend import _one_line

    row, stage = {"model": name}, "export"
    try:
        model = zoo_models.build(name, "small", workdir)
        expected = model.reference()
        stage = "import"
        mod = model.load()
        (x,) = model.inputs.values()
        rng = np.random.default_rng(0)
        calib = [[x]] + [[rng.standard_normal(x.shape).astype("float32")] for _ in range(2)]
        stage = "quantize"
        start = time.perf_counter()
        q = _calibrate(mod, calib, None, "max", True, -1.0, False)  # every layer int8
        row["quantize_s"] = time.perf_counter() - start
        row["layers"] = len(q.layers)
        row["kinds"] = dict(collections.Counter(l.kind for l in q.layers.values()))
        stage = "partition"
        start = time.perf_counter()
        partitioned = tvm_sophon.partition_for_sophon(q.module(), chip="bm1684")
        report = tvm_sophon.offload_report(partitioned)
        row["regions"] = len(report.regions)
        row["host_ops"], row["host_reasons"] = zoo_models.host_op_summary(report)
        stage = "build"
        vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
        row["compile_s"] = time.perf_counter() - start
        stage = "run"
        out = vm["main"](tvm.runtime.tensor(x))
        got = [o.numpy() for o in out] if isinstance(out, (list, tuple)) or not hasattr(out, "numpy") \
            else [out.numpy()]
        row["cosine"] = min(_cosine(g, e) for g, e in zip(got, expected))
        if len(expected) == 1 and expected[0].ndim == 2:  # a classifier's logits
            row["top1"] = bool(got[0].argmax() == expected[0].argmax())
    except Exception as err:  # the row records the failure, the bench goes on
        row["error"] = f"{stage}: {_one_line(err)}"
    return row


def format_zoo(rows: list) -> str:
    lines = ["| model | regions | host ops | int8 layers | cosine INT8 chip vs FP32 framework | top-1 same | "
             "PTQ s | compile s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        host = ", ".join(r.get("host_ops", [])) or ("none" if "regions" in r else "-")
        if "error" in r:
            host += f"; **{r['error'][:160]}**"
        lines.append(" | ".join([
            f"| {r['model']}", str(r.get("regions", "-")), host.replace("|", "\\|"),
            str(r.get("layers", "-")), f"{r['cosine']:.4f}" if "cosine" in r else "-",
            {True: "yes", False: "no"}.get(r.get("top1"), "-"),
            f"{r['quantize_s']:.0f}" if "quantize_s" in r else "-",
            f"{r['compile_s']:.0f}" if "compile_s" in r else "-"]) + " |")
    reasons = [f"- {r['model']}: {', '.join(ops)}: {reason}" for r in rows
               for reason, ops in sorted(r.get("host_reasons", {}).items())]
    return "\n".join(lines + (["", "Why the host ops stayed on the host:", *reasons] if reasons else []))


def run_zoo(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import zoo_models

    names = args.only.split(",") if args.only else [n for n in zoo_models.MODELS if n != "keras_lstm"]
    workdir = Path(args.workdir or zoo_models.default_workdir())
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--zoo-worker", name, "--workdir", str(workdir)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            found = [ln for ln in proc.stdout.splitlines() if ln.startswith("PTQ_ROW ")]
            row = json.loads(found[-1][8:]) if found else \
                {"model": name, "error": f"crashed (exit {proc.returncode}): "
                                         f"{(proc.stderr.strip().splitlines() or ['(no output)'])[-1][:200]}"}
        except subprocess.TimeoutExpired:
            row = {"model": name, "error": f"timed out after {args.timeout} s"}
        rows.append(row)
        print(f"# {name}: {row.get('error') or 'ok'}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    print(format_zoo(rows))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BUILDERS))
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--zoo", action="store_true", help="PTQ of the FP32 zoo (small sizes), see above")
    parser.add_argument("--only", help="with --zoo: these zoo models (comma-separated)")
    parser.add_argument("--workdir", help="with --zoo: where converted models are kept ($SOPHON_ZOO_DIR)")
    parser.add_argument("--json", help="with --zoo: write the rows here after every model")
    parser.add_argument("--table", help="with --zoo: print the table of a --json file and exit")
    parser.add_argument("--timeout", type=int, default=1200, help="with --zoo: seconds per model")
    parser.add_argument("--zoo-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.zoo_worker:
        print("PTQ_ROW " + json.dumps(measure_zoo(args.zoo_worker, Path(args.workdir))), flush=True)
        return 0
    if args.table:
        print(format_zoo(json.loads(Path(args.table).read_text())))
        return 0
    if args.zoo:
        return run_zoo(args)
    print("| model | input | regions | host ops | max LSB vs llvm (logits) | exact (logits) | "
          "first layer: max LSB, exact | top-1 chip = llvm | quantize s | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        r = measure(name, args.image, args.runs)
        print(f"| {name} | {args.image}x{args.image} | {r['regions']} | {', '.join(r['host_ops'])} | {r['lsb']} | "
              f"{100 * r['exact']:.1f}% | {r['first_lsb']}, {100 * r['first_exact']:.1f}% | {r['top1_same']} | "
              f"{r['quantize_s']:.0f} | {r['build_s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
