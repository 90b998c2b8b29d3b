"""A longer run of the fuzz test (tests/test_fuzz.py): mutated .onnx and .tflite
models, each imported and compiled in its own process with a timeout; prints the
counts of compiled, rejected (clear SophonError), escaped tracebacks, crashes and
hangs, and the log tail of every failure.

    python bench/fuzz.py [--cases 600] [--seed 1] [--timeout 60] [--no-tflite]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fuzzing  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--no-tflite", action="store_true", help="ONNX seeds only (no TensorFlow)")
    args = parser.parse_args()
    start = time.perf_counter()
    cases = fuzzing.make_cases(args.cases, args.seed, with_tflite=not args.no_tflite)
    result = fuzzing.run(cases, timeout=args.timeout)
    counts = result["counts"]
    print("rejections, most common first:")
    for reason, n in sorted(result["reasons"].items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {n:4d}  {reason}")
    for case, outcome, tail in result["failures"]:
        print(f"--- {case}: {outcome}\n{tail.strip()}\n")
    print(f"fuzz: {counts['cases']} cases (seed {args.seed}) in {time.perf_counter() - start:.0f} s: "
          f"{counts['compiled']} compiled, {counts['rejected']} rejected with a SophonError, "
          f"{counts['escaped']} escaped tracebacks, {counts['toolchain']} generated-C compile failures, "
          f"{counts['crash']} crashes, {counts['hang']} hangs")
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
