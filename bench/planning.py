"""Planning time against region size (issue #10).

The default planner scores every candidate group of a region (up to 16
consecutive layers, each with its first fitting slicings) by lowering it; the
analysis every lowering shares (names, producers, consumers, argument homes) is
built once per region, so planning time should grow with the layer count, not
its square. This plans chains of 1x8x8x8 element-wise layers (ReLU and sigmoid
alternating, one region) of growing length and prints the time per layer
(CPU seconds of the planner, which a loaded machine inflates less than wall
time; wall beside it).

    python bench/planning.py                   # 125, 250, 500, 1000 layers
    python bench/planning.py --layers 100 200
    python bench/planning.py --plot planning.png   # and plot time against depth
                                                   # (matplotlib: the [plot] extra)
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import tvm_sophon
from tvm import relax
from tvm_sophon import codegen
from tvm_sophon.cost import runtime_library
from tvm_sophon.layer_groups import plan_region


def chain(length: int):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 8, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            for i in range(length):
                y = bb.emit(relax.op.nn.relu(y) if i % 2 == 0 else relax.op.sigmoid(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def plot(rows: list, path: str, title: str) -> None:
    """Planning CPU time against depth, with the least-squares line through the
    origin (wall time is in the printed table: on a loaded machine it is mostly
    waiting for a core)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [r[0] for r in rows]
    cpu = [r[2] for r in rows]
    slope = sum(x * y for x, y in zip(layers, cpu)) / sum(x * x for x in layers)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(layers, cpu, "o-", label="planning (layer_group_dp), CPU time")
    ax.plot([0, max(layers)], [0, slope * max(layers)], "--",
            label=f"linear fit: {1e3 * slope:.1f} ms per layer")
    ax.set_xlabel("region depth (layers in one chain)")
    ax.set_ylabel("planning time (s)")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[125, 250, 500, 1000])
    parser.add_argument("--plot", metavar="PNG", help="plot planning time against depth to this file")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f}")
    print(f"{'layers':>7} {'groups':>7} {'cpu s':>8} {'wall s':>8} {'ms/layer':>9}")
    runtime_library()   # the cost model's library, loaded (built once per install) before timing
    rows = []
    for length in args.layers:
        partitioned = tvm_sophon.partition_for_sophon(chain(length))
        (func,) = [f for f in partitioned.functions.values() if (f.attrs or {}).get("Codegen") == "sophon"]
        region, chip = codegen.region_of(func), codegen.chip_of(func)
        start, start_cpu = time.perf_counter(), time.process_time()
        plan = plan_region(region, chip)
        cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start
        rows.append((len(region.layers), len(plan.groups), cpu, wall))
        print(f"{len(region.layers):>7} {len(plan.groups):>7} {cpu:>8.2f} {wall:>8.2f} {1e3 * cpu / length:>9.1f}",
              flush=True)
    if args.plot:
        plot(rows, args.plot, f"Planning a chain of element-wise layers (bm1680)\n"
                              f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.0f}")


if __name__ == "__main__":
    main()
