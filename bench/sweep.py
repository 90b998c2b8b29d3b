"""Benchmark for sweeps on Ray (issue #15): the same grid of points planned and
estimated by a serial loop in this process and by `tvm_sophon.sweep` on a local
Ray cluster, side by side in one run; the two tables must agree point for point.

    python bench/sweep.py                       # resnet18, mobilenet_v2 x 7 LMEM sizes x 2 plans
    python bench/sweep.py --per-model           # one point of every bundled model, each in a
                                                # fresh process: seconds and peak memory
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tvm_sophon.sweep import (ModelSpec, _digest, format_rows, grid, point_key, run_point, sweep,
                              write_pareto_plot)

METRICS = ("status", "cycles", "seconds", "energy_joules", "ddr_bytes", "lmem_peak", "macs", "groups")

# Two points of one model in a fresh process: the first pays the worker's one-time
# start (importing TVM, loading the cost model's library), the second (another LMEM
# size, so no cost of the first is reused) is what every further point costs.
ONE_POINT = """
import json, resource, sys, time
start = time.perf_counter()
from tvm_sophon.sweep import ModelSpec, Point, run_point, _digest
spec = ModelSpec.of(sys.argv[1])
payload = spec.payload(None)
rows = [run_point(Point(spec.label, "bm1680", lmem), payload, spec.digest, None, _digest("calibration", b""), False)
        for lmem in [(), (("lmem_bytes_per_lane", 262144),)]]
print(json.dumps({"model": spec.label, "status": [r["status"] for r in rows],
                  "first": rows[0]["point_seconds"], "next": rows[1]["point_seconds"],
                  "process_seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def per_model() -> int:
    from tvm_sophon.models import MODELS

    print(f"{'model':<14} {'first point s':>13} {'next point s':>12} {'process s':>10} {'peak RSS MB':>12}")
    for name in MODELS:
        out = subprocess.run([sys.executable, "-c", ONE_POINT, name], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['model']:<14} {r['first']:>13.2f} {r['next']:>12.2f} {r['process_seconds']:>10.2f} "
              f"{r['peak_rss_mb']:>12.0f}" + ("" if r["status"] == ["ok", "ok"] else f"  ({r['status']})"),
              flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--lmem", default="65536,131072,196608,262144,393216,524288,1048576",
                        help="LMEM bytes per lane")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--out", default=None, help="directory for the tables and the plot")
    parser.add_argument("--per-model", action="store_true")
    args = parser.parse_args(argv)
    if args.per_model:
        return per_model()
    out = Path(args.out or tempfile.mkdtemp(prefix="tvm_sophon_sweep_"))
    shutil.rmtree(out / "ray", ignore_errors=True)
    models = args.models.split(",")
    overrides = {"lmem_bytes_per_lane": args.lmem.split(",")}
    plans = ["layer_group_dp", "layer_by_layer"]
    points = grid(models, overrides=overrides, plans=plans)
    specs = {s.label: s for s in map(ModelSpec.of, models)}
    calib = _digest("calibration", b"")

    load_at_start = os.getloadavg()[0]
    start = time.perf_counter()
    payloads = {m: specs[m].payload(None) for m in specs}
    serial = [run_point(p, payloads[p.model], specs[p.model].digest, None, calib, False) for p in points]
    serial_seconds = time.perf_counter() - start
    print(f"serial loop: {len(points)} points in {serial_seconds:.1f} s", flush=True)

    from tvm_sophon.sweep import require_ray

    ray = require_ray()  # a local cluster on the loopback interface

    start = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING",
             object_store_memory=1 << 30)
    init_seconds = time.perf_counter() - start
    result = sweep(models, overrides=overrides, plans=plans, out=out / "ray", progress=False)
    ray_seconds = time.perf_counter() - start
    print(f"Ray, {args.cpus} CPUs: {len(points)} points in {ray_seconds:.1f} s "
          f"(of which ray.init {init_seconds:.1f} s); speed-up {serial_seconds / ray_seconds:.2f}x, "
          f"{serial_seconds / (ray_seconds - init_seconds):.2f}x without the start-up", flush=True)

    by_key = {r["key"]: r for r in result.rows}
    mismatches = 0
    for p, row in zip(points, serial):
        other = by_key[point_key(p, specs[p.model].digest, calib, False)]
        if any(row.get(m) != other.get(m) for m in METRICS):
            mismatches += 1
            print(f"MISMATCH at {p}: serial {[row.get(m) for m in METRICS]} ray {[other.get(m) for m in METRICS]}")
    print(f"serial and Ray tables agree on {len(points) - mismatches} of {len(points)} points\n")
    rows = sorted(result.rows, key=lambda r: (r["model"], r["plan"], r["lmem_bytes_per_lane"]))
    print(format_rows(rows))
    secs = [r["point_seconds"] for r in serial]
    print(f"\nper point (serial): mean {sum(secs) / len(secs):.2f} s, min {min(secs):.2f} s, max {max(secs):.2f} s")
    plot = write_pareto_plot(result.rows, out / "pareto.png")
    print(f"table {result.out}/points.csv, plot {plot}")
    print(f"machine: {os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.1f} "
          f"(at the start {load_at_start:.1f})")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
