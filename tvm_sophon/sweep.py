"""Design-space sweeps on Ray: many (model, chip, plan, precision, batch) points,
each planned and estimated (optionally run on the emulator), as Ray tasks.

    from tvm_sophon.sweep import sweep
    result = sweep(["resnet18", "mobilenet_v2"], overrides={"lmem_bytes_per_lane": [131072, 524288]},
                   plans=["layer_group_dp", "layer_by_layer"], out="sweep_out")
    result.rows                     # one dict per point; also sweep_out/points.{jsonl,csv}

A point partitions and plans its model for its chip variant and reads the static
profile :func:`tvm_sophon.profile.plan_and_profile` computes (the cost model the
emulator counts with): cycles, seconds, DDR bytes, LMEM peak, energy,
utilisation. With ``run`` it also builds the planned module, runs it on the
emulator and records the output's error against the FP32 model run by TVM's llvm
build. A point that fails records its one-line error; the others go on.

Ray does the scheduling: without an ``address`` a new embedded local cluster is
started (``ray.init(address="local")``), unless this process has already called
``ray.init`` (then that connection is used). Every model (its Relax text
and weights, or a model file's bytes) and the calibration data are put in the
object store once; every point is one task with its CPUs and memory stated.
Rows are appended to ``points.jsonl`` and ``points.csv`` as they arrive (and
written to ``points.parquet`` at the end when pyarrow is installed); a rerun
into the same directory skips every point whose key (a hash of model, batch,
chip, plan, precision, calibration and whether it runs) is already there.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib
import io
import itertools
import json
import os
import sys
import resource
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np

from .chip import Chip, get_chip
from .errors import SophonError

INSTALL_HINT = 'this needs Ray: pip install "tvm-sophon[sweep]"'
DEFAULT_PLAN = "layer_group_dp"
PRECISIONS = ("fp32", "int8")

#: the table's columns, in order (CSV header; JSON rows carry the same keys)
COLUMNS = [
    "key", "model", "batch", "chip", "overrides", "lmem_bytes_per_lane", "plan", "precision",
    "status", "error", "cycles", "seconds", "energy_joules", "ddr_bytes", "lmem_peak", "macs",
    "utilisation", "conv_utilisation", "groups", "max_abs_error", "rel_error", "point_seconds",
    "worker_rss_mb", "node", "pid", "is_default",
]


class SweepError(SophonError):
    """A sweep cannot start (bad model, chip field, strategy, precision, or no Ray)."""


# Ray picks the machine's network address for its processes unless it is told it
# runs one node only; this environment variable (read when ray is imported, and
# inherited by its workers) keeps a local cluster on the loopback interface.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def require_ray(local: bool = True):
    """Import Ray, or fail with one line saying how to install it. With ``local``
    (no --address) Ray's local cluster listens on the loopback interface only."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")
    try:
        import ray
    except ImportError:
        raise SweepError(INSTALL_HINT) from None
    return ray


# ------------------------------------------------------------------ models


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model of the sweep: a bundled name, a .tflite/.onnx file, or a callable
    (given as an object or as ``package.module:function``) returning
    ``(mod, params, inputs)`` like the builders of :mod:`tvm_sophon.models`."""
    label: str
    kind: str                 # "bundled" | "file" | "callable"
    source: object
    digest: str

    @classmethod
    def of(cls, model) -> "ModelSpec":
        from .models import MODELS

        if isinstance(model, ModelSpec):
            return model
        if callable(model):
            label = f"{model.__module__}:{model.__qualname__}"
            return cls(label, "callable", model, _digest("callable", label))
        text = str(model)
        if text in MODELS:
            return cls(text, "bundled", text, _digest("bundled", text))
        path = Path(text)
        if path.suffix.lower() in (".tflite", ".onnx"):
            if not path.is_file():
                raise SweepError(f"model file {text} does not exist")
            return cls(str(path), "file", str(path), _digest("file", path.read_bytes()))
        if ":" in text:
            return cls(text, "callable", _import(text, "model"), _digest("callable", text))
        raise SweepError(f"model {text!r}: neither a bundled model ({', '.join(MODELS)}), "
                         "a .tflite/.onnx file, nor package.module:function")

    def payload(self, batch: Optional[int]) -> dict:
        """What the object store holds for this model at this batch size."""
        if self.kind == "file":
            return {"kind": "file", "name": Path(self.source).name,
                    "bytes": Path(self.source).read_bytes(), "batch": batch}
        from .models import MODELS

        build = MODELS[self.source] if self.kind == "bundled" else self.source
        try:
            mod, params, inputs = build(batch=batch) if batch is not None else build()
        except TypeError as err:
            if batch is not None and "batch" in str(err):
                raise SweepError(f"model {self.label} has no batch option") from None
            raise
        script = mod.script()
        try:  # what the workers will do: fail here, once, if it cannot be done
            import tvm

            tvm.script.from_source(script)
        except Exception as err:
            raise SweepError(f"model {self.label}: its Relax text does not parse back ({_one_line(err)}); "
                             "return the weights as params, not bound constants") from None
        return {"kind": "relax", "script": script, "params": params, "inputs": inputs}


def _import(path: str, what: str):
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise SweepError(f"{what} {path!r} cannot be imported ({type(err).__name__}: {err})") from None
    if not callable(obj):
        raise SweepError(f"{what} {path!r} is not callable")
    return obj


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ points


@dataclasses.dataclass(frozen=True)
class Point:
    model: str                          # ModelSpec label
    chip: str                           # base profile name
    overrides: tuple = ()               # ((field, value), ...) sorted
    plan: str = DEFAULT_PLAN            # strategy name or package.module:function
    precision: str = "fp32"
    batch: Optional[int] = None

    def chip_profile(self) -> Chip:
        return get_chip(self.chip).replace(**dict(self.overrides))

    def is_default(self) -> bool:
        """The chip as shipped (overrides, if any, equal to its own values), the
        default plan, FP32, the model's own batch."""
        return (self.chip_profile() == get_chip(self.chip) and self.plan == DEFAULT_PLAN
                and self.precision == "fp32" and self.batch is None)


def point_key(point: Point, model_digest: str, calibration_digest: str, run: bool) -> str:
    """The resume key: a hash of model, batch, chip (every field), plan, precision
    (and its calibration data) and whether the point runs."""
    chip = dataclasses.asdict(point.chip_profile())
    calibration = calibration_digest if point.precision == "int8" else ""
    return _digest(model_digest, point.batch, json.dumps(chip, sort_keys=True), point.plan,
                   point.precision, calibration, run)


def parse_overrides(specs: Iterable[str]) -> dict[str, list]:
    """``["lmem_bytes_per_lane=131072,262144", "clock_hz=5e8"]`` -> {field: [values]},
    each value converted to the chip field's type."""
    result = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values:
            raise SweepError(f"chip override {spec!r}: expected FIELD=V1,V2,...")
        result[name.strip()] = [v.strip() for v in values.split(",")]
    return result


def _chip_variants(chip: str, overrides: dict) -> list[tuple]:
    fields = {f.name: f for f in dataclasses.fields(Chip)}
    base = get_chip(chip)
    axes = []
    for name, values in overrides.items():
        if name not in fields or name in ("name", "description"):
            raise SweepError(f"chip override {name!r} is not a chip field "
                             f"(fields: {', '.join(f for f in fields if f not in ('name', 'description'))})")
        kind = type(getattr(base, name))
        axes.append([(name, _convert(name, kind, v)) for v in values])
    return [tuple(sorted(combo)) for combo in itertools.product(*axes)]


def _convert(name: str, kind: type, value):
    try:
        if kind is bool:
            if str(value).lower() in ("1", "true", "yes"):
                return True
            if str(value).lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        converted = kind(float(value)) if kind is int and isinstance(value, str) else kind(value)
    except (TypeError, ValueError):
        raise SweepError(f"chip override {name}={value!r}: not a {kind.__name__}") from None
    if kind in (int, float) and converted <= 0:
        raise SweepError(f"chip override {name}={value!r}: must be positive")
    return converted


def grid(models: Sequence, chips: Sequence[str] = ("bm1680",), overrides: Optional[dict] = None,
         plans: Sequence[str] = (DEFAULT_PLAN,), precisions: Sequence[str] = ("fp32",),
         batches: Sequence[Optional[int]] = (None,)) -> list[Point]:
    """Every combination of the axes, models outermost. ``overrides``:
    ``{chip field: [values]}`` applied to every chip profile."""
    specs = [ModelSpec.of(m) for m in models]
    for plan in plans:
        resolve_plan(plan)
    for precision in precisions:
        if precision not in PRECISIONS:
            raise SweepError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    variants = [(chip, combo) for chip in chips for combo in _chip_variants(chip, overrides or {})]
    return [Point(spec.label, chip, combo, plan, precision, batch)
            for spec in specs for batch in batches for chip, combo in variants
            for plan in plans for precision in precisions]


def resolve_plan(plan: str) -> "str | Callable":
    """A built-in strategy name as is; anything else imported (``pkg.mod:func``)."""
    from .layer_groups import STRATEGIES

    if plan in STRATEGIES:
        return plan
    if "." not in plan and ":" not in plan:
        raise SweepError(f"plan strategy {plan!r}: not built in ({', '.join(STRATEGIES)}) "
                         "and not an import path (package.module:function)")
    return _import(plan, "plan strategy")


# ------------------------------------------------------------------ one point (runs in a worker)

_CACHE: dict = {}
CACHE_ENTRIES = 8   # models, quantized models and reference outputs a worker keeps


def _cached(key, make):
    """``make()`` once per worker process for the most recent keys."""
    if key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)  # most recently used last
    else:
        while len(_CACHE) >= CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make()
    return _CACHE[key]


def _materialise(payload: dict, digest: str):
    """(mod, params, inputs) of a model payload, once per worker process."""

    def make():
        import tvm

        if payload["kind"] == "relax":
            return tvm.script.from_source(payload["script"]), payload["params"], payload["inputs"]
        import tempfile

        from .frontend import inputs_of, load

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / payload["name"]
            path.write_bytes(payload["bytes"])
            mod = load(path)
            if payload["batch"] is not None:
                mod = load(path, {i.name: (payload["batch"], *i.shape[1:]) for i in inputs_of(mod)})
        rng = np.random.default_rng(0)
        inputs = {i.name: rng.standard_normal(i.shape).astype(i.dtype) for i in inputs_of(mod)}
        return mod, None, inputs

    return _cached(("model", digest, payload.get("batch")), make)


def _quantised(mod, params, inputs, calibration: Optional[bytes], key):
    def make():
        from .cli import _calibration_batches
        from .frontend import inputs_of
        from .models import bind_params
        from .quantize import quantize

        if calibration is None:
            batches = [inputs]
        else:
            batches = _calibration_batches(io.BytesIO(calibration), inputs_of(bind_params(mod, params)))
        return quantize(mod, batches, params=params, progress=False)

    return _cached(("int8", key), make)


def _one_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    if isinstance(err, SophonError) and lines:
        text = lines[0]
    return f"{type(err).__name__}: {text}"[:500]


def run_point(point: Point, payload: dict, model_digest: str, calibration: Optional[bytes],
              calibration_digest: str, run: bool) -> dict:
    """Plan and estimate one point (and run it with ``run``): one table row. Never
    raises for a failing point; its row has status "error" and the one-line error."""
    import socket

    start = time.perf_counter()
    row = _row_of(point, point_key(point, model_digest, calibration_digest, run))
    row.update(node=socket.gethostname(), pid=os.getpid())
    try:
        row.update(_evaluate(point, payload, model_digest, calibration, calibration_digest, run))
    except Exception as err:  # a failing point is a result, not the end of the sweep
        row.update(status="error", error=_one_line(err))
    row["point_seconds"] = time.perf_counter() - start
    row["worker_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _row_of(point: Point, key: str) -> dict:
    """The row's columns that say which point it is."""
    return {"key": key, "model": point.model, "batch": point.batch, "chip": point.chip,
            "overrides": json.dumps(dict(point.overrides), sort_keys=True),
            "lmem_bytes_per_lane": point.chip_profile().lmem_bytes_per_lane, "plan": point.plan,
            "precision": point.precision, "status": "ok", "error": "", "is_default": point.is_default()}


def _evaluate(point, payload, model_digest, calibration, calibration_digest, run) -> dict:
    from .profile import plan_and_profile

    chip = point.chip_profile()
    row = {}
    mod, params, inputs = _materialise(payload, model_digest)
    fp32_mod, fp32_params = mod, params
    if point.precision == "int8":
        if not chip.has_int8:
            raise SweepError(f"int8 needs a chip with an INT8 datapath (e.g. bm1684); {chip.name} has none")
        mod = _quantised(mod, params, inputs, calibration, (model_digest, point.batch, calibration_digest))
        params = None
    planned, prof = plan_and_profile(mod, params, chip=chip, plan=resolve_plan(point.plan))
    total = prof.total
    row.update({k: total[k] for k in ("cycles", "seconds", "energy_joules", "ddr_bytes", "lmem_peak",
                                      "macs", "utilisation", "conv_utilisation")})
    row["groups"] = len(prof.groups)
    if run:
        row.update(_run_and_compare(planned, chip, point, fp32_mod, fp32_params, inputs, model_digest))
    return row


def _run_and_compare(planned, chip, point, fp32_mod, fp32_params, inputs, model_digest) -> dict:
    import tvm
    from tvm import relax

    from .build import build
    from .models import main_input_names, reference_run

    ex = build(planned, chip=chip, plan=resolve_plan(point.plan))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    names = [n for n in main_input_names(planned) if n in inputs]
    out = vm["main"](*(tvm.runtime.tensor(np.asarray(inputs[n])) for n in names)).numpy()
    expected = _cached(("reference", model_digest, point.batch),
                       lambda: reference_run(fp32_mod, fp32_params, inputs))
    err = float(np.max(np.abs(out.astype("float64") - expected)))
    scale = float(np.max(np.abs(expected))) or 1.0
    return {"max_abs_error": err, "rel_error": err / scale}


# ------------------------------------------------------------------ the table


def _csv_value(value):
    return "" if value is None else value


class Table:
    """The sweep's table in ``out``: points.jsonl (one JSON row per line, the
    record resumes read) and points.csv, both appended as rows arrive."""

    def __init__(self, out: "str | os.PathLike"):
        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.dir / "points.jsonl"
        self.csv = self.dir / "points.csv"
        self.rows = self._read()

    def _read(self) -> list[dict]:
        if not self.jsonl.is_file():
            return []
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by an interruption
                continue
        return rows

    def keys(self) -> set:
        return {r["key"] for r in self.rows}

    def append(self, row: dict) -> None:
        row = {c: row.get(c) for c in COLUMNS}
        self.rows.append(row)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        new = not self.csv.is_file()
        with open(self.csv, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(COLUMNS)
            writer.writerow([_csv_value(row[c]) for c in COLUMNS])

    def write_parquet(self) -> Optional[Path]:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return None
        path = self.dir / "points.parquet"
        pq.write_table(pa.Table.from_pylist(self.rows), path)
        return path


@dataclasses.dataclass
class SweepResult:
    rows: list[dict]           # every row of the table (earlier runs' too), in arrival order
    computed: int              # points evaluated by this call
    skipped: int               # points found done in the table
    wall_seconds: float
    out: Path

    def row(self, point_key_: str) -> dict:
        return next(r for r in self.rows if r["key"] == point_key_)

    def format(self) -> str:
        return format_rows(self.rows)


def format_rows(rows: list[dict]) -> str:
    head = (f"{'model':<14} {'batch':>5} {'chip':<7} {'LMEM/lane':>9} {'plan':<15} {'prec':<4} {'chip ms':>8} "
            f"{'mJ':>8} {'DDR MB':>8} {'LMEM peak':>9} {'util':>6} {'host s':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lead = (f"{r['model'][-14:]:<14} {r['batch'] or '':>5} {r['chip']:<7} {r['lmem_bytes_per_lane'] or '':>9} "
                f"{r['plan'][:15]:<15} {r['precision']:<4} ")
        if r["status"] != "ok":
            lines.append(lead + f"error: {r['error'][:120]}")
            continue
        lines.append(lead + f"{r['seconds'] * 1e3:>8.3f} {r['energy_joules'] * 1e3:>8.3f} "
                            f"{r['ddr_bytes'] / 1e6:>8.2f} {r['lmem_peak']:>9} "
                            f"{100 * r['utilisation']:>5.1f}% {r['point_seconds']:>6.1f}"
                            + (f"  max err {r['max_abs_error']:.3g}" if r.get("max_abs_error") is not None else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------ the sweep


def sweep(models: Sequence = (), *, chips: Sequence[str] = ("bm1680",), overrides: Optional[dict] = None,
          plans: Sequence[str] = (DEFAULT_PLAN,), precisions: Sequence[str] = ("fp32",),
          batches: Sequence[Optional[int]] = (None,), points: Optional[Sequence[Point]] = None,
          calibration: "str | os.PathLike | None" = None, run: bool = False,
          out: "str | os.PathLike" = "sweep_out", address: Optional[str] = None,
          num_cpus: Optional[int] = None, cpus_per_point: float = 1, memory_per_point: int = 1 << 30,
          runtime_env: Optional[dict] = None, progress: bool = True, on_row: Optional[Callable[[dict], None]] = None) -> SweepResult:
    """Run a sweep on Ray (see the module docstring). ``points`` (a list of
    :class:`Point`, their models among ``models``) replaces the grid. ``on_row``
    sees each new row as it is written. A point reserves ``cpus_per_point`` CPUs
    and ``memory_per_point`` bytes of Ray's memory resource (a planning worker
    peaks below 1 GiB for the bundled models; see docs/scaling.md)."""
    ray = require_ray(local=not address)
    specs = {s.label: s for s in map(ModelSpec.of, models)}
    if points is None:
        points = grid(list(specs.values()), chips, overrides, plans, precisions, batches)
    else:  # a given list: check each point as the grid checks its axes
        points = [_checked(p, specs) for p in points]
    calibration_bytes = Path(calibration).read_bytes() if calibration else None
    calibration_digest = _digest("calibration", calibration_bytes or b"")
    table = Table(out)
    done = table.keys()
    keyed = [(point_key(p, specs[p.model].digest, calibration_digest, run), p) for p in points]
    todo = [(k, p) for k, p in keyed if k not in done]
    skipped = len(keyed) - len(todo)
    start = time.perf_counter()
    if todo:
        _init_ray(ray, address, num_cpus, runtime_env)
        payloads = {}
        for k, p in todo:  # every model (at every batch size) in the object store once
            if (p.model, p.batch) not in payloads:
                payloads[p.model, p.batch] = ray.put(specs[p.model].payload(p.batch))
        calibration_ref = ray.put(calibration_bytes)
        task = ray.remote(run_point).options(num_cpus=cpus_per_point, memory=memory_per_point,
                                             max_retries=0)
        pending = {task.remote(p, payloads[p.model, p.batch], specs[p.model].digest, calibration_ref,
                               calibration_digest, run): (k, p) for k, p in todo}
        try:
            _collect(ray, pending, table, on_row, progress, len(keyed), skipped)
        finally:
            for ref in pending:  # interrupted: stop what has not finished
                ray.cancel(ref)
    table.write_parquet()
    return SweepResult(table.rows, len(todo), skipped, time.perf_counter() - start, table.dir)


def _checked(point: Point, specs: dict) -> Point:
    if point.model not in specs:
        raise SweepError(f"point {point}: model {point.model!r} is not among the sweep's models")
    resolve_plan(point.plan)
    if point.precision not in PRECISIONS:
        raise SweepError(f"point {point}: precision {point.precision!r}: expected one of {', '.join(PRECISIONS)}")
    overrides = _chip_variants(point.chip, {k: [v] for k, v in point.overrides})[0]
    return dataclasses.replace(point, overrides=overrides)


def _init_ray(ray, address: Optional[str], num_cpus: Optional[int], runtime_env: Optional[dict] = None) -> None:
    """Connect to ``address``, or start an embedded local cluster (no setup, gone
    when this process ends); nothing if Ray is already initialised here.
    ``runtime_env`` (e.g. ``{"working_dir": "."}``) ships code the workers need,
    such as a user plan strategy, to every node."""
    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, logging_level="WARNING", runtime_env=runtime_env)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SweepError(f"cannot connect to the Ray cluster at {address}: {_one_line(err)}") from None
    else:  # "local": a new cluster of our own, never one that happens to run on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING",
                 object_store_memory=1 << 30, runtime_env=runtime_env)


def _collect(ray, pending: dict, table: Table, on_row, progress: bool, total: int, skipped: int) -> None:
    from tqdm import tqdm

    with tqdm(total=total, initial=skipped, desc="sweep", unit="point", disable=not progress) as bar:
        while pending:
            refs = list(pending)
            ready, _ = ray.wait(refs, num_returns=1)
            if len(refs) > 1:  # and whatever else has finished meanwhile
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                key, point = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as err:  # the worker died (out of memory, killed)
                    row = _row_of(point, key)
                    row.update(status="error", error=_one_line(err))
                table.append(row)
                bar.update(1)
                if on_row is not None:
                    on_row(row)


# ------------------------------------------------------------------ the Pareto plot


def pareto_front(rows: list[dict], axes: Sequence[str]) -> list[dict]:
    """The rows no other row beats on every axis (all minimised) and strictly on one."""
    ok = [r for r in rows if r.get("status") == "ok"]

    def dominates(a, b):
        return all(a[x] <= b[x] for x in axes) and any(a[x] < b[x] for x in axes)

    return [r for r in ok if not any(dominates(o, r) for o in ok)]


def write_pareto_plot(rows: list[dict], path: "str | os.PathLike") -> Path:
    """Per model: estimated time against energy, coloured by LMEM size per lane;
    where LMEM varies a second panel of LMEM size against time. Points on the
    Pareto front (time, energy and LMEM size where it varies) are ringed and
    joined, the default configuration (base chip, layer_group_dp, FP32) starred."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SweepError("the Pareto plot needs matplotlib: pip install 'tvm-sophon[plot]'") from None
    models = list(dict.fromkeys((r["model"], r["batch"]) for r in rows if r.get("status") == "ok"))
    if not models:
        raise SweepError("no successful point to plot")
    fig, axes = plt.subplots(len(models), 2, figsize=(12, 4.2 * len(models)), squeeze=False)
    markers = {}
    for (left, right), (model, batch) in zip(axes, models):
        every = [r for r in rows if (r["model"], r["batch"]) == (model, batch)]
        mine = [r for r in every if r.get("status") == "ok"]
        title = model if batch is None else f"{model} (batch {batch})"
        lmems = sorted({r["lmem_bytes_per_lane"] for r in mine})
        varies = len({r.get("lmem_bytes_per_lane") for r in every}) > 1
        front = pareto_front(mine, ["seconds", "energy_joules"] + (["lmem_bytes_per_lane"] if varies else []))
        cmap = plt.get_cmap("viridis", max(len(lmems), 2))
        colour = {m: cmap(i) for i, m in enumerate(lmems)}
        several_chips = len({r["chip"] for r in mine}) > 1
        for r in mine:
            kind = f"{r['chip']} " * several_chips + f"{r['plan']} {r['precision']}"
            style = markers.setdefault(kind, "osD^vPX<>"[len(markers) % 9])
            kw = dict(marker=style, color=colour[r["lmem_bytes_per_lane"]], s=45, alpha=0.85)
            left.scatter(r["seconds"] * 1e3, r["energy_joules"] * 1e3, **kw)
            if varies:
                right.scatter(r["lmem_bytes_per_lane"] / 1024, r["seconds"] * 1e3, **kw)
        front.sort(key=lambda r: r["seconds"])
        ring = dict(s=160, facecolors="none", edgecolors="red", linewidths=1.5)
        left.scatter([r["seconds"] * 1e3 for r in front], [r["energy_joules"] * 1e3 for r in front], **ring,
                     label="Pareto front")
        left.plot([r["seconds"] * 1e3 for r in front], [r["energy_joules"] * 1e3 for r in front], "r--", lw=0.8)
        if varies:
            by_lmem = sorted(front, key=lambda r: r["lmem_bytes_per_lane"])
            right.scatter([r["lmem_bytes_per_lane"] / 1024 for r in by_lmem],
                          [r["seconds"] * 1e3 for r in by_lmem], **ring)
            right.plot([r["lmem_bytes_per_lane"] / 1024 for r in by_lmem],
                       [r["seconds"] * 1e3 for r in by_lmem], "r--", lw=0.8)
        failed = sorted({r["lmem_bytes_per_lane"] for r in every
                         if r.get("status") != "ok" and r.get("lmem_bytes_per_lane")} - set(lmems))
        if varies and failed:
            low = min(r["seconds"] for r in mine) * 1e3
            right.scatter([m / 1024 for m in failed], [low] * len(failed), marker="x", color="black", s=60,
                          label="no plan fits (error recorded)")
            right.legend(fontsize=7, loc="center right")
        defaults = [r for r in mine if r.get("is_default")]
        for k, r in enumerate(defaults):
            left.scatter(r["seconds"] * 1e3, r["energy_joules"] * 1e3, marker="*", s=260, color="gold",
                         edgecolors="black", zorder=5, label=None if k else "default configuration")
            if several_chips:
                left.annotate(r["chip"], (r["seconds"] * 1e3, r["energy_joules"] * 1e3), fontsize=7,
                              xytext=(8, -10), textcoords="offset points")
            if varies:
                right.scatter(r["lmem_bytes_per_lane"] / 1024, r["seconds"] * 1e3, marker="*", s=260,
                              color="gold", edgecolors="black", zorder=5)
        for m in lmems:
            left.scatter([], [], marker="s", color=colour[m], label=f"LMEM {m // 1024} KiB/lane")
        for name, style in markers.items():
            left.scatter([], [], marker=style, color="gray", label=name)
        left.set_xlabel("estimated time on chip (ms)")
        left.set_ylabel("estimated energy (mJ)")
        left.set_title(f"{title}: time against energy (front over time, energy"
                       + (", LMEM size)" if varies else ")"), fontsize=10)
        left.legend(fontsize=7, loc="upper left")
        left.grid(alpha=0.3)
        if varies:
            right.set_xscale("log", base=2)
            right.set_xlabel("LMEM per lane (KiB)")
            right.set_ylabel("estimated time on chip (ms)")
            right.set_title(f"{title}: local memory against time")
            right.grid(alpha=0.3)
        else:
            right.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
