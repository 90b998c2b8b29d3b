"""Compile time of the zoo models against TVM's own llvm build (issue #14).

    python bench/compile_time.py                       # every zoo model, published sizes
    python bench/compile_time.py --small               # the tests' small sizes
    python bench/compile_time.py --only resnet50,vgg19 --json times.json
    python bench/compile_time.py --profile resnet50    # cProfile of one model's compile

For each model of bench/zoo.py (tests/zoo_models.py; converted files are kept in
$SOPHON_ZOO_DIR, default ~/.cache/tvm_sophon_zoo), in its own process:

  ours   import to ``.so``: ``frontend.load``, ``partition_for_sophon``,
         ``tvm_sophon.build``, ``export_library``
  llvm   ``tvm.compile(mod, "llvm")`` of the same imported module, and its
         ``export_library`` (both sides end with a loadable ``.so``)
  ratio  ours / llvm (the issue's target: at most 3)

with where our time goes: import, partition, analysis (regions into layers),
planning (layer groups and tiling), lowering (the chip programs: in the plan
check and again in code generation), C rendering, C compilation of the region
code, the host part (TVM's build of what stays on the host) and export.

Times are CPU seconds (this process and the C compilers it runs), which a
loaded machine inflates less than wall time; the wall-time ratio is printed
beside it. The region code is compiled for real: each model runs with a fresh
artifact cache holding only the emulator runtime's object, which is built once
per install (its time is not part of a model's compile).
"""
from __future__ import annotations

import argparse
import cProfile
import contextlib
import json
import os
import platform
import pstats
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import zoo_models  # noqa: E402
from zoo_args import add_zoo_arguments, selected_models  # noqa: E402

TIMEOUT_S = 1800
STAGES = ("import", "partition", "analysis", "planning", "lowering", "render", "cc", "host", "export")


def cpu_now() -> float:
    """CPU seconds of this process and of its finished children (the C compilers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Clock:
    """CPU and wall seconds per stage; nested stages are charged to the innermost."""

    def __init__(self):
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.stack: list[str] = []

    @contextlib.contextmanager
    def stage(self, name: str):
        start_cpu, start_wall = cpu_now(), time.perf_counter()
        outer = self.stack[-1] if self.stack else None
        self.stack.append(name)
        try:
            yield
        finally:
            self.stack.pop()
            cpu, wall = cpu_now() - start_cpu, time.perf_counter() - start_wall
            self.cpu[name] += cpu
            self.wall[name] += wall
            if outer is not None:  # the outer stage's time excludes this one
                self.cpu[outer] -= cpu
                self.wall[outer] -= wall

    def wrap(self, module, attr: str, name: str) -> None:
        original = getattr(module, attr)

        def timed(*args, **kwargs):
            with self.stage(name):
                return original(*args, **kwargs)

        setattr(module, attr, timed)


def instrument(clock: Clock) -> None:
    """Charge the pipeline's steps to their stages (module attributes the build
    looks up at call time)."""
    import tvm_sophon
    from tvm_sophon import codegen, passes, toolchain

    clock.wrap(tvm_sophon.partition, "partition_for_sophon", "partition")
    clock.wrap(tvm_sophon, "partition_for_sophon", "partition")
    for module in (passes, codegen):
        clock.wrap(module, "region_of", "analysis")
    clock.wrap(passes, "plan_region", "planning")
    clock.wrap(passes, "lower_plan", "lowering")
    clock.wrap(codegen, "lower_plan", "lowering")
    clock.wrap(codegen, "render_library", "render")
    clock.wrap(toolchain, "generated_object", "cc")


def fresh_cache() -> Path:
    """A temporary artifact cache holding only the runtime (the object linked into
    models, the library of the cost model), so that the region code is compiled
    and the runtime is not."""
    from tvm_sophon import toolchain

    tmp = Path(tempfile.mkdtemp(prefix="sophon_compile_time_"))
    for runtime in (toolchain.runtime_object(), toolchain.runtime_shared_library()):
        shutil.copy2(runtime, tmp / runtime.name)   # built here (once per install) if absent
    os.environ["TVM_SOPHON_CACHE"] = str(tmp)
    return tmp


def measure(name: str, size: str, workdir: Path) -> dict:
    import tvm

    import tvm_sophon
    from tvm_sophon.frontend import _one_line

    row = {"model": name, "size": size, "input": list(zoo_models.MODELS[name].sizes[size])}
    stage = "export"
    try:
        model = zoo_models.build(name, size, workdir)
        cache = fresh_cache()
        with tempfile.TemporaryDirectory() as out:
            clock = Clock()
            instrument(clock)
            stage = "import"
            start_cpu, start_wall = cpu_now(), time.perf_counter()
            with clock.stage("import"):
                mod = model.load()
            stage = "build"
            with clock.stage("host"):   # what the stages inside do not claim
                ex = tvm_sophon.build(tvm_sophon.partition_for_sophon(mod))
            with clock.stage("export"):
                ex.export_library(str(Path(out) / "ours.so"))
            row["ours_cpu"], row["ours_wall"] = cpu_now() - start_cpu, time.perf_counter() - start_wall
            row["stages_cpu"], row["stages_wall"] = clock.cpu, clock.wall

            stage = "llvm"
            start_cpu, start_wall = cpu_now(), time.perf_counter()
            llvm = tvm.compile(mod, "llvm")
            llvm.export_library(str(Path(out) / "llvm.so"))
            row["llvm_cpu"], row["llvm_wall"] = cpu_now() - start_cpu, time.perf_counter() - start_wall
        shutil.rmtree(cache, ignore_errors=True)
    except Exception as err:  # the row records the failure, the bench goes on
        row["error"] = f"{stage}: {_one_line(err)}"
    return row


def profile(name: str, size: str, workdir: Path, top: int) -> None:
    import tvm_sophon

    model = zoo_models.build(name, size, workdir)
    fresh_cache()
    mod = model.load()
    prof = cProfile.Profile()
    prof.enable()
    tvm_sophon.build(tvm_sophon.partition_for_sophon(mod))
    prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def _worker(conn, name: str, size: str, workdir: str) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)   # the frameworks' and compilers' chatter
    os.dup2(devnull, 2)
    conn.send(measure(name, size, Path(workdir)))
    conn.close()


def run_isolated(name: str, size: str, workdir: Path) -> dict:
    """``measure`` in a fresh process: a crash, hang or out-of-memory is this
    model's row, and every model starts from the same cold state."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(sender, name, size, str(workdir)))
    proc.start()
    sender.close()
    try:
        if receiver.poll(TIMEOUT_S):
            return receiver.recv()
        return {"model": name, "size": size, "error": f"timed out after {TIMEOUT_S} s"}
    except EOFError:   # the process died without sending its row
        proc.join(10)
        return {"model": name, "size": size, "error": f"crashed (exit code {proc.exitcode})"}
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def format_table(rows: list) -> str:
    header = ["model", "ours s", "llvm s", "ratio", "wall ratio", *(f"{s} s" for s in STAGES)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | **{row['error']}** |" + " |" * (len(header) - 2))
            continue
        stages = row["stages_cpu"]
        cells = [row["model"], f"{row['ours_cpu']:.2f}", f"{row['llvm_cpu']:.2f}",
                 f"{row['ours_cpu'] / row['llvm_cpu']:.2f}", f"{row['ours_wall'] / row['llvm_wall']:.2f}",
                 *(f"{max(stages[s], 0.0):.2f}" for s in STAGES)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_zoo_arguments(parser)
    parser.add_argument("--profile", metavar="MODEL", help="cProfile one model's partition and build")
    parser.add_argument("--top", type=int, default=30, help="rows of the profile (default %(default)s)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    size = "small" if args.small else "full"

    if args.table:
        print(format_table(json.loads(Path(args.table).read_text())))
        return 0
    if args.profile:
        profile(args.profile, size, workdir, args.top)
        return 0

    names = selected_models(parser, args.only, zoo_models.MODELS)
    load = os.getloadavg()[0]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {load:.1f}, size={size}; CPU seconds", flush=True)
    rows = []
    for name in names:
        row = run_isolated(name, size, workdir)
        rows.append(row)
        ratio = f"{row['ours_cpu'] / row['llvm_cpu']:.2f}x" if "error" not in row else row["error"]
        print(f"# {name}: {ratio}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    print()
    print(format_table(rows))
    worst = max((r["ours_cpu"] / r["llvm_cpu"] for r in rows if "error" not in r), default=float("nan"))
    print(f"\n{sum('error' not in r for r in rows)} of {len(rows)} models compiled; "
          f"worst ratio ours / llvm {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
