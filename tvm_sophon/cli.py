"""The ``tvm-sophon`` command line."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _demo(args) -> int:
    import tvm
    from tvm import relax

    from . import build, format_stats, last_run_stats, offload_report, partition_for_sophon
    from .models import demo_cnn, reference_run

    mod, params, inputs = demo_cnn(layout=args.layout)
    print(f"demo CNN ({args.layout}): input {', '.join(f'{k}{list(v.shape)}' for k, v in inputs.items())}, "
          f"chip {args.chip}")
    start = time.perf_counter()
    partitioned = partition_for_sophon(mod, params, chip=args.chip)
    ex = build(partitioned, chip=args.chip)
    print(f"compiled in {time.perf_counter() - start:.2f} s\n")
    print(offload_report(partitioned).format(), "\n")

    vm = relax.VirtualMachine(ex, tvm.cpu())
    start = time.perf_counter()
    out = vm["main"](*(tvm.runtime.tensor(v) for v in inputs.values())).numpy()
    host_seconds = time.perf_counter() - start
    expected = reference_run(mod, params, inputs)
    expected = expected[0] if isinstance(expected, (list, tuple)) else expected
    err = float(np.max(np.abs(out - expected)))
    # float32 throughout; the emulator and TVM's llvm loops sum in different orders.
    ok = np.allclose(out, expected, rtol=1e-4, atol=1e-5)
    print(f"result: class {int(np.argmax(out))}, probabilities {np.array2string(out.ravel(), precision=4)}")
    print(f"check against TVM's llvm build: max abs error {err:.3g} -> {'OK' if ok else 'MISMATCH'}")
    print(f"host time of the emulated run: {host_seconds * 1e3:.1f} ms\n")
    print(format_stats(last_run_stats(vm)))
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="tvm-sophon",
        description="Compile and run models on the (emulated) Sophon BM1680 through Apache TVM.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="compile a bundled CNN for the chip, run it, check it, print the profile")
    demo.add_argument("--chip", default="bm1680", help="chip profile (default: bm1680)")
    demo.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"], help="data layout of the model")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .errors import SophonError
    try:
        return args.func(args)
    except SophonError as err:
        print(f"tvm-sophon: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
