"""The cost model against real silicon (issue #12).

Sophgo publishes measured BM1684 inference times (``bmrt_test`` "calculate
time", sophon-demo sample READMEs and tpu-perf runs in Sophgo's model-zoo).
This script builds each of those models in code (random weights: time does not
depend on them), compiles it for the ``bm1684`` profile with the default
planner, and prints the estimate beside the measured time, their ratio, and
where the estimated time goes:

    compute   timesteps in which the TIU takes longer than the GDMA
    dma       timesteps in which the GDMA takes longer
    fixed     the part of both that is per-instruction issue latency and
              per-timestep synchronisation (included in the two above)
    eltwise   element-wise work within the TIU's share (binary ops, table
              lookups, an activation fused into a conv that is not free)
    lbl/lg    the layer-by-layer plan's estimate over the layer-group plan's:
              above 1 where the planner's groups beat one layer per group
    host      ops left on the host (they are not in the estimate: a model with
              host ops is estimated only in part, and the row says so)

INT8 rows quantize the FP32 model with ``tvm_sophon.quantize`` (max
calibration on two random batches, every layer kept in INT8; the values do not
change the time).

    python bench/fidelity.py                       # every row
    python bench/fidelity.py --models resnet50 --precision fp32
    python bench/fidelity.py --fit                 # search the fitted chip terms

``--fit`` plans every row once with today's profile, then scores a grid of the
fitted terms (GDMA burst, GDMA and TIU issue latencies, timestep
synchronisation, depthwise/pooling unit and element-wise datapath widths) on
those fixed plans by the
largest |log(estimate / measured)|, and prints the best; the chosen values live
in ``tvm_sophon/chips/bm1684.json``, so a re-run without ``--fit`` replans with
them and shows the final table.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time

import numpy as np

import tvm_sophon
import tvm_sophon.profile
from tvm_sophon import codegen, cost, models
from tvm_sophon.chip import get_chip
from tvm_sophon.codegen import program as P
from tvm_sophon.codegen.schedule import lower_plan
from tvm_sophon.layer_groups import plan_region

# ms per image on a BM1684 (batch 1 unless noted); source: the module docstring
MEASURED = {
    ("resnet50", "fp32", 1): 6.36, ("resnet50", "int8", 1): 3.93, ("resnet50", "int8", 4): 1.24,
    ("mobilenet_v2", "fp32", 1): 1.778, ("mobilenet_v2", "int8", 1): 1.237,
    ("yolov5s", "fp32", 1): 22.41, ("yolov5s", "int8", 1): 11.26, ("yolov5s", "int8", 4): 6.04,
}
BUILDERS = {"resnet50": models.resnet50, "mobilenet_v2": models.mobilenet_v2, "yolov5s": models.yolov5s}

# the fitted terms and the values --fit tries (each has a physical meaning:
# runtime/chip/sophon_cost.h and the "sources" of tvm_sophon/chips/bm1684.json)
FIT_GRID = {
    "gdma_burst_bytes": [256, 512, 1024],
    "gdma_latency_cycles": [100, 300, 1000],
    "tiu_latency_cycles": [32, 100, 300],
    "timestep_sync_cycles": [300, 600, 1200],
    "dwpool_eu_bytes": [16, 8, 4],
    "eltwise_eu_bytes": [1, 2, 3, 4],
}


def build_row(name: str, precision: str, batch: int, chip):
    """The partitioned module of one row (quantized for int8)."""
    mod, params, inputs = BUILDERS[name](batch=batch)
    if precision == "int8":
        rng = np.random.default_rng(0)
        calib = [{k: rng.standard_normal(v.shape).astype("float32") for k, v in inputs.items()}
                 for _ in range(2)]
        # every layer INT8 (no fallback: random weights make some layers' cosine
        # low, and the measured bmodels run INT8 throughout)
        mod = tvm_sophon.quantize(mod, calib, params=params, method="max", progress=False,
                                  cosine_threshold=-1.0)
        params = None
    return tvm_sophon.partition_for_sophon(mod, params, chip=chip)


def plan_programs(partitioned, chip, strategy: str = "layer_group_dp") -> list:
    programs = []
    for func in partitioned.functions.values():
        if (func.attrs or {}).get("Codegen") == "sophon":
            region = codegen.region_of(func)
            programs.append(lower_plan(region, plan_region(region, chip, strategy), chip))
    return programs


def breakdown(chip, programs) -> dict:
    """Cycles of the programs by what bounds each timestep, and the fixed costs."""
    compute = dma = fixed = eltwise = 0
    for prog in programs:
        tiu = gdma = tiu_fixed = gdma_fixed = 0
        for step in prog.steps:
            if isinstance(step, P.Timestep):
                if tiu or gdma:
                    sync = chip.timestep_sync_cycles
                    if tiu >= gdma:
                        compute += tiu + sync
                        fixed += tiu_fixed + sync
                    else:
                        dma += gdma + sync
                        fixed += gdma_fixed + sync
                tiu = gdma = tiu_fixed = gdma_fixed = 0
                continue
            engine, cycles = cost.step_cycles(chip, step)
            if engine == "tiu":
                tiu += cycles
                tiu_fixed += min(cycles, chip.tiu_latency_cycles)
                eltwise += eltwise_cycles(chip, step, cycles)
            else:
                gdma += cycles
                gdma_fixed += min(cycles, round(chip.gdma_latency_cycles * chip.clock_hz
                                                / (chip.gdma_clock_hz or chip.clock_hz)))
    return {"compute": compute, "dma": dma, "fixed": fixed, "eltwise": eltwise}


def eltwise_cycles(chip, step, cycles: int) -> int:
    """TIU cycles of a step spent on the element-wise datapath (the profile's split:
    a conv's activation epilogue that is not free, every element-wise step)."""
    parts = tvm_sophon.profile.step_parts(chip, step, "tiu", cycles)
    return parts.get("eltwise", 0)


def estimate_ms(chip, programs, batch: int) -> float:
    cycles = sum(cost.estimate_steps(chip, p.steps).cycles for p in programs)
    return cycles / chip.clock_hz * 1e3 / batch


def rows(args) -> list[tuple]:
    selected = []
    for (name, precision, batch), measured in MEASURED.items():
        if name in args.models and precision in args.precision:
            selected.append((name, precision, batch, measured))
    return selected


def run_table(args) -> list[dict]:
    chip = get_chip("bm1684")
    results = []
    header = (f"{'model':<13} {'prec':<5} {'b':>2} {'measured':>9} {'estimate':>9} {'ratio':>6} "
              f"{'compute':>8} {'dma':>6} {'fixed':>6} {'eltwise':>7} {'lbl/lg':>6} {'regions':>7} {'host ops':>8}")
    print(f"chip bm1684: {chip.description}\n{header}\n{'-' * len(header)}", flush=True)
    for name, precision, batch, measured in rows(args):
        start = time.perf_counter()
        try:
            partitioned = build_row(name, precision, batch, chip)
            programs = plan_programs(partitioned, chip)
        except Exception as err:  # one row failing does not end the table
            print(f"{name:<13} {precision:<5} {batch:>2} {measured:>9.3f}  error: {type(err).__name__}: "
                  f"{str(err).splitlines()[0][:120]}", flush=True)
            results.append({"model": name, "precision": precision, "batch": batch, "error": str(err)})
            continue
        report = tvm_sophon.offload_report(partitioned)
        est = estimate_ms(chip, programs, batch)
        # the planner's choice against the baseline it must beat: every layer alone
        lbl = estimate_ms(chip, plan_programs(partitioned, chip, "layer_by_layer"), batch)
        parts = breakdown(chip, programs)
        total = max(parts["compute"] + parts["dma"], 1)
        row = {"model": name, "precision": precision, "batch": batch, "measured_ms": measured,
               "estimate_ms": est, "ratio": est / measured,
               "compute_share": parts["compute"] / total, "dma_share": parts["dma"] / total,
               "fixed_share": parts["fixed"] / total, "eltwise_share": parts["eltwise"] / total,
               "layer_by_layer_ms": lbl, "regions": len(report.regions),
               "host_ops": len(report.host_ops), "seconds": time.perf_counter() - start}
        results.append(row)
        print(f"{name:<13} {precision:<5} {batch:>2} {measured:>9.3f} {est:>9.3f} {row['ratio']:>6.2f} "
              f"{row['compute_share']:>8.0%} {row['dma_share']:>6.0%} {row['fixed_share']:>6.0%} "
              f"{row['eltwise_share']:>7.0%} {lbl / est:>6.2f} {row['regions']:>7} {row['host_ops']:>8}",
              flush=True)
    print("\nms per image; ratio = estimate / measured (target 0.85-1.15); compute/dma: share of the "
          "estimated time in timesteps bound by the TIU / the GDMA; fixed: issue latencies and "
          "synchronisation within them; eltwise: element-wise work (its datapath, eltwise_eu_bytes) "
          "within the TIU's share; lbl/lg: the layer-by-layer plan's estimate over the layer-group "
          "plan's (above 1: the planner's groups win, as they must); host ops are not estimated")
    return results


def fit(args) -> None:
    chip = get_chip("bm1684")
    planned = []
    for name, precision, batch, measured in rows(args):
        try:
            planned.append((name, precision, batch, measured,
                            plan_programs(build_row(name, precision, batch, chip), chip)))
        except Exception as err:
            print(f"skipping {name} {precision} b{batch}: {str(err).splitlines()[0][:120]}")
    scored = []
    keys = list(FIT_GRID)
    for values in itertools.product(*FIT_GRID.values()):
        candidate = chip.replace(**dict(zip(keys, values)))
        ratios = [estimate_ms(candidate, progs, batch) / measured for _, _, batch, measured, progs in planned]
        scored.append((max(abs(math.log(r)) for r in ratios), values, ratios))
    scored.sort(key=lambda item: item[0])
    labels = [f"{n}/{p}/b{b}" for n, p, b, _, _ in planned]
    for worst, values, ratios in scored[:8]:
        print(f"max |log ratio| {worst:.3f}  " + ", ".join(f"{k}={v}" for k, v in zip(keys, values)) + "  "
              + ", ".join(f"{l} {r:.2f}" for l, r in zip(labels, ratios)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(BUILDERS), type=lambda s: s.split(","))
    parser.add_argument("--precision", default="fp32,int8", type=lambda s: s.split(","))
    parser.add_argument("--fit", action="store_true", help="search the fitted terms on fixed plans")
    parser.add_argument("--json", help="write the table as JSON")
    args = parser.parse_args(argv)
    if args.fit:
        fit(args)
        return 0
    results = run_table(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
