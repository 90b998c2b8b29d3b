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
"""
from __future__ import annotations

import argparse
import collections
import sys
import time

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BUILDERS))
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
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
