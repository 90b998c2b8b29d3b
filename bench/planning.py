"""Planning time against region size (issue #10).

The default planner scores every candidate group of a region (up to 16
consecutive layers, each with its first fitting slicings) by lowering it; the
analysis every lowering shares (names, producers, consumers, argument homes) is
built once per region, so planning time should grow with the layer count, not
its square. This plans chains of 1x8x8x8 element-wise layers (ReLU and sigmoid
alternating, one region) of growing length and prints the time per layer.

    python bench/planning.py                   # 125, 250, 500, 1000 layers
    python bench/planning.py --layers 100 200
"""
from __future__ import annotations

import argparse
import time

import tvm_sophon
from tvm import relax
from tvm_sophon import codegen
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[125, 250, 500, 1000])
    args = parser.parse_args()
    print(f"{'layers':>7} {'groups':>7} {'plan s':>8} {'ms/layer':>9}")
    for length in args.layers:
        partitioned = tvm_sophon.partition_for_sophon(chain(length))
        (func,) = [f for f in partitioned.functions.values() if (f.attrs or {}).get("Codegen") == "sophon"]
        region, chip = codegen.region_of(func), codegen.chip_of(func)
        start = time.perf_counter()
        plan = plan_region(region, chip)
        seconds = time.perf_counter() - start
        print(f"{len(region.layers):>7} {len(plan.groups):>7} {seconds:>8.2f} {1e3 * seconds / length:>9.1f}")


if __name__ == "__main__":
    main()
