"""Benchmark for tiling and layer groups (issue #3).

For ResNet-18 (1x3x224x224) and ResNet-50 (8x3x224x224), FP32, random weights:
plans both ways (layer by layer, and layer groups by DP), reports DDR traffic
against the lower bound (every weight and the input read once, the output
written once), estimated time and utilisation of the chip's peak on the
convolutions, and planning time; then compiles the layer-group plan, runs it on
the emulator and checks it against TVM's llvm build (rtol 1e-4).

    python bench/layer_groups.py            # both models
    python bench/layer_groups.py --models resnet18 --no-run
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


import tvm  # noqa: E402
from tvm import relax  # noqa: E402

import tvm_sophon  # noqa: E402
from tvm_sophon import codegen  # noqa: E402
from tvm_sophon.codegen.schedule import lower_plan  # noqa: E402
from tvm_sophon.cost import estimate  # noqa: E402
from tvm_sophon.layer_groups import plan_region  # noqa: E402
from tvm_sophon.profile import profile_programs  # noqa: E402

from tvm_sophon.models import resnet  # noqa: E402

MODELS = {"resnet18": (18, 1), "resnet50": (50, 8)}


def lower_bound_bytes(params, inputs, out_elems) -> int:
    return 4 * (sum(v.size for v in params.values()) + sum(v.size for v in inputs.values()) + out_elems)


def plan_model(mod, params, strategy, chip):
    partitioned = tvm_sophon.partition_for_sophon(mod, params, chip=chip)
    regions = [f for f in partitioned.functions.values() if (f.attrs or {}).get("Codegen") == "sophon"]
    start = time.perf_counter()
    programs = []
    for func in regions:
        region = codegen.region_of(func)
        programs.append(lower_plan(region, plan_region(region, chip, strategy), chip))
    planning = time.perf_counter() - start
    ests = [estimate(p) for p in programs]
    prof = profile_programs(programs)
    return {"ddr": sum(e.ddr_bytes for e in ests), "cycles": sum(e.cycles for e in ests),
            "conv_util": prof.total["conv_utilisation"], "util": prof.total["utilisation"],
            "groups": sum(len(p.plan.groups) for p in programs), "planning_s": planning}


def run_and_check(mod, params, inputs, chip):
    ex = tvm_sophon.build(mod, params, chip=chip)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    args = [tvm.runtime.tensor(v) for v in inputs.values()]
    start = time.perf_counter()
    out = vm["main"](*args).numpy()
    emulated = time.perf_counter() - start
    bound = relax.transform.BindParams("main", {k: tvm.runtime.tensor(v) for k, v in params.items()})(mod)
    ref_vm = relax.VirtualMachine(tvm.compile(bound, target="llvm"), tvm.cpu())
    start = time.perf_counter()
    ref = ref_vm["main"](*args).numpy()
    llvm = time.perf_counter() - start
    ok = np.allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    return ok, float(np.abs(out - ref).max()), emulated, llvm


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-run", action="store_true", help="plan and estimate only")
    args = parser.parse_args(argv)
    chip = tvm_sophon.get_chip("bm1680")
    rows, status = [], 0
    for name in args.models:
        depth, batch = MODELS[name]
        mod, params, inputs = resnet(depth, batch)
        bound = lower_bound_bytes(params, inputs, batch * 1000)
        for strategy in ("layer_by_layer", "layer_group_dp"):
            r = plan_model(mod, params, strategy, chip)
            rows.append((f"{name} b{batch}", strategy, r["groups"], r["ddr"] / 1e6, r["ddr"] / bound,
                         r["cycles"] / chip.clock_hz * 1e3, 100 * r["conv_util"], r["planning_s"]))
        if not args.no_run:
            ok, err, emulated, llvm = run_and_check(mod, params, inputs, chip)
            print(f"{name} b{batch}: emulator vs llvm max abs error {err:.3g} -> {'OK' if ok else 'MISMATCH'} "
                  f"(host: emulator {emulated:.1f} s, TVM llvm {llvm:.1f} s)")
            status |= 0 if ok else 1
    print()
    head = (f"{'model':<14} {'plan':<15} {'groups':>6} {'DDR MB':>9} {'x bound':>8} {'chip ms':>8} "
            f"{'conv util':>9} {'plan s':>7}")
    print(head)
    print("-" * len(head))
    for model, strategy, groups, ddr, ratio, ms, util, plan_s in rows:
        print(f"{model:<14} {strategy:<15} {groups:>6} {ddr:>9.1f} {ratio:>8.2f} {ms:>8.2f} {util:>8.1f}% {plan_s:>7.2f}")
    return status


if __name__ == "__main__":
    sys.exit(main())
