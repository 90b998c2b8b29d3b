"""The model zoo of issue #10 on the emulated chip, in one table:

    python bench/zoo.py                      # every model at its published input size
    python bench/zoo.py --small              # the test sizes (tests/zoo_models.py)
    python bench/zoo.py --only densenet121,yolov5s_pt --json zoo.json

For each model (tests/zoo_models.py builds it with random weights, converted
files are kept in $SOPHON_ZOO_DIR, default ~/.cache/tvm_sophon_zoo): import with
``tvm_sophon.frontend.load``, ``partition_for_sophon``, ``build``, run on the
emulator, and compare with the model's own framework (TFLite interpreter or
onnxruntime) on the same seeded input. Columns:

  regions      chip regions after partitioning (the issue's target: 1)
  host ops     ops left on the host, counted by op (reasons listed under the table)
  MACs chip    offload_report's share of MACs on the chip
  rel err      max |chip - framework| / max |framework| over the outputs
  fw noise     the same measure between the framework's interpreter and the model's
               source framework (Keras / PyTorch eager): FP32 noise on this model
  compile      partition_for_sophon + build (s)    emulator / framework: one run (s),
               the median of up to 3 after a warm-up

Each model runs in its own process (a crash, a hang or an out-of-memory in one
model is that model's row, and the bench goes on); a failing stage puts its
one-line error in the row. Run it with ``nice`` and SOPHON_NUM_THREADS=1 on a
shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import zoo_int8_models  # noqa: E402
import zoo_models  # noqa: E402
import zoo_qdq_models  # noqa: E402
from zoo_args import add_zoo_arguments, selected_models  # noqa: E402

TIMEOUT_S = 1800


def run_in_subprocess(name: str, size: str, workdir: Path, extra: tuple = ()) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--size", size, "--workdir", str(workdir), *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"model": name, "size": size, "error": f"timed out after {TIMEOUT_S} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ZOO_ROW ")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1][len("ZOO_ROW "):])
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
    how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    return {"model": name, "size": size, "error": f"crashed ({how}): {tail[0][:200]}"}


# ------------------------------------------------------------------ table


def _fmt_s(row, key):
    return f"{row[key]:.3g}" if key in row else "-"


def short_error(error: str) -> str:
    """The error with region names (``fused_<every op of the region>_sophon``)
    cut to their first ops; the JSON keeps the whole message."""
    return re.sub(r"\b(fused_\w{0,40}?)\w{20,}(_sophon)\b", r"\1...\2", error)


def format_table(rows: list) -> str:
    header = ["model", "input", "regions", "host ops", "MACs chip", "rel err", "fw noise", "compile s",
              "emulator s", "framework s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        shape = row.get("input") or []
        cells = [
            row["model"], "x".join(str(d) for d in shape[1:]) if shape else "-",
            str(row.get("regions", "-")),
            ", ".join(row.get("host_ops", [])) or ("none" if "regions" in row else "-"),
            f"{100 * row['mac_share']:.1f}%" if "mac_share" in row else "-",
            f"{row['rel_err']:.1e}" if "rel_err" in row else "-",
            f"{row['fw_noise']:.1e}" if "fw_noise" in row else "-",
            _fmt_s(row, "compile_s"), _fmt_s(row, "emulator_s"), _fmt_s(row, "framework_s"),
        ]
        if "error" in row:
            cells[3] = (cells[3] + "; " if cells[3] not in ("-", "none") else "") + "**" + short_error(row["error"]) + "**"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def format_reasons(rows: list) -> str:
    """Why each model's host ops stayed on the host, grouped by reason."""
    lines = []
    for row in rows:
        for reason, ops in sorted(row.get("host_reasons", {}).items()):
            lines.append(f"- {row['model']}: {', '.join(ops)}: {reason}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_zoo_arguments(parser)
    parser.add_argument("--int8", action="store_true",
                        help="the INT8 zoo of issue #11 (tests/zoo_int8_models.py: full-integer TFLite on bm1684, "
                             "bit-exact count and max LSB against TFLite's kernels)")
    parser.add_argument("--int8-size", choices=("small", "full"), default="small",
                        help="with --int8: the Keras apps' input size (default small; full: the published size)")
    parser.add_argument("--qdq", action="store_true",
                        help="the ONNX QDQ zoo of issue #11 (tests/zoo_qdq_models.py: the torch models quantized by "
                             "onnxruntime's quantize_static on bm1684, max LSB against onnxruntime)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)

    if args.worker:  # one model, in this process; the parent reads the ZOO_ROW line
        row = zoo_int8_models.measure(args.worker, workdir, args.size) if args.int8 else \
            zoo_qdq_models.measure(args.worker, workdir) if args.qdq else \
            zoo_models.measure(args.worker, args.size, workdir)
        print("ZOO_ROW " + json.dumps(row), flush=True)
        return 0

    if args.table:
        print_report(json.loads(Path(args.table).read_text()), args.int8, args.qdq)
        return 0

    known = zoo_int8_models.MODELS if args.int8 else zoo_qdq_models.MODELS if args.qdq else zoo_models.MODELS
    names = selected_models(parser, args.only, known)
    size = args.int8_size if args.int8 else "small" if args.small else "full"
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"SOPHON_NUM_THREADS={os.environ.get('SOPHON_NUM_THREADS', 'unset')}, "
          f"size={f'int8 ({size} inputs)' if args.int8 else 'qdq (small inputs)' if args.qdq else size}", flush=True)
    rows = []
    for name in names:
        start = time.perf_counter()
        row = run_in_subprocess(name, size, workdir, ("--int8",) if args.int8 else ("--qdq",) if args.qdq else ())
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
        print(f"# {name}: {row.get('error') or 'ok'} ({row['wall_s']:.0f} s)", flush=True)
        if args.json:  # written after every model, so a long run leaves its rows behind
            Path(args.json).write_text(json.dumps(rows, indent=1))
    print()
    print_report(rows, args.int8, args.qdq)
    return 0


def print_report(rows: list, int8: bool = False, qdq: bool = False) -> None:
    print(zoo_int8_models.format_table(rows) if int8 else zoo_qdq_models.format_table(rows) if qdq
          else format_table(rows))
    reasons = format_reasons(rows)
    if reasons:
        print("\nWhy the host ops stayed on the host:\n" + reasons)
    ok = sum(1 for r in rows if "error" not in r)
    whole = sum(1 for r in rows if r.get("regions") == 1 and not r.get("host_ops") and "error" not in r)
    print(f"\n{ok} of {len(rows)} models compiled and ran; {whole} as one region with nothing on the host.")


if __name__ == "__main__":
    sys.exit(main())
