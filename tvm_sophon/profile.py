"""Profiles: what a model costs on the chip, per layer and per layer group.

``profile_model`` partitions and plans a model, estimates every region's program
with the cost model (the same functions the emulator counts with), runs it on
the emulator once to measure the host time and confirm the counters, and
returns a :class:`Profile` that renders as a terminal table, JSON, a
Chrome/Perfetto trace of the two engines, and a PNG of per-layer time with a
roofline.

Per group, time is the group's timesteps (engines overlapping). A layer has no
time of its own inside an overlapped group; its figure is the time its own work
would take with perfect overlap, max(its TIU cycles, its GDMA cycles).
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Optional

import numpy as np
import tvm
from tvm import relax

from . import codegen, cost
from .chip import DTYPE_BYTES, Chip, get_chip
from .codegen import program as P
from .partition import partition_for_sophon
from .passes import PlanRegions


@dataclasses.dataclass
class LayerProfile:
    region: str
    group: int           # the layer group (within its region) that computes the layer
    name: str            # the model's name for the layer where the frontend gave one
    pattern: str
    macs: int = 0
    tiu_cycles: int = 0
    gdma_cycles: int = 0
    ddr_bytes: int = 0
    lmem_peak: int = 0
    unit: str = ""       # what bounds it: the TIU unit doing most of its work, or "gdma"
    bound: str = ""      # and which term of that unit's cost (see BOUNDS)
    # the parts of its cycles by unit (conv, dwpool, fc, eltwise) and by term
    parts: dict = dataclasses.field(default_factory=dict)

    def cycles(self) -> int:
        return max(self.tiu_cycles, self.gdma_cycles)

    def classify(self) -> None:
        """Set ``unit`` and ``bound`` from ``parts``: the engine taking longer, its
        unit with the most cycles, and that engine's largest cost term."""
        def largest(keys):
            return max(keys, key=lambda k: self.parts.get(k, 0))
        if not self.tiu_cycles and not self.gdma_cycles:
            return
        if self.tiu_cycles >= self.gdma_cycles:
            self.unit = largest(TIU_UNITS)
            self.bound = largest(("compute", "issue"))
        else:
            self.unit = "gdma"
            self.bound = largest(("bandwidth", "bursts", "latency"))


@dataclasses.dataclass
class GroupProfile:
    region: str
    index: int
    layers: list[str]
    n_slices: int
    h_slices: int
    cycles: int = 0
    macs: int = 0
    ddr_bytes: int = 0
    lmem_peak: int = 0
    slicing: str = ""           # Group.describe(): NxH, with channel/reduction slices


@dataclasses.dataclass
class Profile:
    chip: Chip
    strategy: str
    layers: list[LayerProfile]
    groups: list[GroupProfile]
    host_seconds: Optional[float] = None
    measured: Optional[dict] = None      # last_run_stats of the emulated run
    trace_events: list = dataclasses.field(default_factory=list)

    # ---- derived figures -------------------------------------------------
    def seconds(self, cycles: int) -> float:
        return cycles / self.chip.clock_hz

    def utilisation(self, macs: int, cycles: int) -> float:
        return 0.0 if cycles == 0 else 2 * macs / self.seconds(cycles) / self.chip.peak_flops

    @property
    def total(self) -> dict:
        cycles = sum(g.cycles for g in self.groups)
        macs = sum(g.macs for g in self.groups)
        conv_cycles = sum(g.cycles for g in self.groups
                          if any(l.pattern.startswith("sophon.conv2d") for l in self.layers
                                 if l.group == g.index and l.region == g.region))
        conv_macs = sum(l.macs for l in self.layers if l.pattern.startswith("sophon.conv2d"))
        seconds = self.seconds(cycles)
        return {"cycles": cycles, "seconds": seconds, "macs": macs,
                "ddr_bytes": sum(g.ddr_bytes for g in self.groups),
                "lmem_peak": max([g.lmem_peak for g in self.groups] or [0]),
                "utilisation": self.utilisation(macs, cycles),
                "conv_utilisation": self.utilisation(conv_macs, conv_cycles),
                "energy_joules": seconds * self.chip.power_watts,
                "host_seconds": self.host_seconds}

    # ---- renderings --------------------------------------------------------
    def to_dict(self) -> dict:
        def row(item, cycles):
            d = dataclasses.asdict(item)
            d.update(seconds=self.seconds(cycles), utilisation=self.utilisation(item.macs, cycles),
                     energy_joules=self.seconds(cycles) * self.chip.power_watts)
            return d
        return {"chip": dataclasses.asdict(self.chip), "strategy": self.strategy,
                "layers": [row(l, l.cycles()) for l in self.layers],
                "groups": [row(g, g.cycles) for g in self.groups],
                "total": self.total, "measured": self.measured}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def format(self) -> str:
        rw = max([6] + [len(l.region) for l in self.layers])
        nw = min(40, max([5] + [len(l.name) for l in self.layers]))
        head = (f"{'region':<{rw}} {'group':>5} {'layer':<{nw}} {'pattern':<26} {'MACs':>12} {'DDR bytes':>11} "
                f"{'LMEM peak':>9} {'chip us':>9} {'util':>6} {'uJ':>8} {'bound by':<18}")
        lines = [f"profile on {self.chip.name} ({self.strategy}): per layer (own work, perfect overlap)",
                 head, "-" * len(head)]
        for l in self.layers:
            s = self.seconds(l.cycles())
            lines.append(f"{l.region:<{rw}} {l.group:>5} {_fit(l.name, nw):<{nw}} {l.pattern[:26]:<26} {l.macs:>12} "
                         f"{l.ddr_bytes:>11} "
                         f"{l.lmem_peak:>9} {s * 1e6:>9.2f} {100 * self.utilisation(l.macs, l.cycles()):>5.1f}% "
                         f"{s * self.chip.power_watts * 1e6:>8.2f} {l.unit + ' ' + l.bound if l.unit else '-':<18}")
        lines += ["bound by: the unit (conv, dwpool, fc, eltwise on the TIU; gdma) and its largest cost "
                  "term: " + "; ".join(f"{k}: {v}" for k, v in BOUNDS.items()),
                  "", "per layer group (engines overlapping)",
                  f"{'region':<{rw}} {'group':>5} {'layers':>6} {'slices':>8} {'MACs':>12} {'DDR bytes':>11} "
                  f"{'LMEM peak':>9} {'chip us':>9} {'util':>6}"]
        for g in self.groups:
            s = self.seconds(g.cycles)
            lines.append(f"{g.region:<{rw}} {g.index:>5} {len(g.layers):>6} {g.slicing:>8} {g.macs:>12} "
                         f"{g.ddr_bytes:>11} {g.lmem_peak:>9} {s * 1e6:>9.2f} "
                         f"{100 * self.utilisation(g.macs, g.cycles):>5.1f}%")
        t = self.total
        lines += ["", f"total: {t['seconds'] * 1e3:.3f} ms on chip, {t['macs']} MACs, "
                      f"{t['ddr_bytes'] / 1e6:.2f} MB DDR, LMEM peak {t['lmem_peak']} B/lane, "
                      f"{100 * t['utilisation']:.1f}% of peak FLOPS "
                      f"(convolutions {100 * t['conv_utilisation']:.1f}%), "
                      f"{t['energy_joules'] * 1e3:.3f} mJ at {self.chip.power_watts} W"]
        if self.host_seconds is not None:
            lines.append(f"host: {self.host_seconds * 1e3:.1f} ms for one emulated run")
        return "\n".join(lines)

    def write_trace(self, path) -> None:
        """Chrome trace (chrome://tracing, ui.perfetto.dev): one process per region,
        one thread per engine (TIU, GDMA), named by metadata events."""
        regions = list(dict.fromkeys(g.region for g in self.groups))
        meta = []
        for pid, region in enumerate(regions):
            meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                         "args": {"name": f"{region} on {self.chip.name}"}})
            meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                         "args": {"sort_index": pid}})
            for tid, engine in enumerate(ENGINES):
                meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                             "args": {"name": f"{engine} ({ENGINE_NAMES[engine]})"}})
        with open(path, "w") as f:
            json.dump({"traceEvents": meta + self.trace_events, "displayTimeUnit": "ns"}, f)

    def write_plot(self, path, title: str = "") -> None:
        """Per-layer time (bars, named) and a roofline of the layers that do MACs
        (PNG, needs matplotlib); ``title`` names the model."""
        plt = _pyplot()
        n = len(self.layers)
        fig, (bars, roof) = plt.subplots(1, 2, figsize=(max(14.0, 7 + 0.28 * n), 6.5),
                                         gridspec_kw={"width_ratios": [max(1.0, n / 20), 1]})
        us = [self.seconds(l.cycles()) * 1e6 for l in self.layers]
        compute = [l.tiu_cycles >= l.gdma_cycles for l in self.layers]
        bars.bar(range(n), us, color=[COLORS[c] for c in compute])
        bars.set_xticks(range(n), [f"{k} {_fit(l.name, 28)}" for k, l in enumerate(self.layers)],
                        rotation=90, fontsize=7 if n > 30 else 8)
        bars.set_xlim(-0.6, n - 0.4)
        bars.set_ylim(0, max(us + [1e-3]) * 1.2)  # headroom for the legend
        bars.set_xlabel("layer (number, name)")
        bars.set_ylabel("estimated time on the chip (µs)")
        bars.set_title(f"per-layer time ({self.strategy}; own work, perfect overlap)")
        from matplotlib.patches import Patch
        bars.legend(handles=[Patch(color=COLORS[True], label="compute-bound (TIU)"),
                             Patch(color=COLORS[False], label="DMA-bound (GDMA)")], loc="upper right")
        peak = self.chip.peak_flops / 1e9
        bw = self.chip.ddr_bytes_per_second / 1e9
        xs = np.logspace(-2, 4, 200)
        roof.loglog(xs, np.minimum(peak, xs * bw), "k-", label=f"roofline: {peak:.0f} GFLOP/s, {bw:.1f} GB/s DDR")
        shown = [(k, l) for k, l in enumerate(self.layers) if l.macs and l.ddr_bytes and l.cycles()]
        for compute_bound in (True, False):
            pts = [(k, l) for k, l in shown if (l.tiu_cycles >= l.gdma_cycles) == compute_bound]
            if pts:
                roof.loglog([2 * l.macs / l.ddr_bytes for _, l in pts],
                            [2 * l.macs / self.seconds(l.cycles()) / 1e9 for _, l in pts], "o",
                            color=COLORS[compute_bound], alpha=0.7,
                            label="compute-bound layer" if compute_bound else "DMA-bound layer")
        # one label per cluster: points within 40% of each other (on these log axes,
        # overlapping) share a label, so that no number hides another
        clusters: list = []
        for k, l in sorted(shown, key=lambda kl: 2 * kl[1].macs / kl[1].ddr_bytes):
            x, y = 2 * l.macs / l.ddr_bytes, 2 * l.macs / self.seconds(l.cycles()) / 1e9
            near = next((c for c in clusters if x / c[0] < 1.4 and max(y / c[1], c[1] / y) < 1.4), None)
            if near is None:
                clusters.append([x, y, [k]])
            else:
                near[2].append(k)
        for j, (x, y, ks) in enumerate(clusters):
            roof.annotate(",".join(map(str, sorted(ks))), (x, y), textcoords="offset points", fontsize=7,
                          xytext=(-4, 6) if j % 2 == 0 else (-4, -12))
        roof.set_ylim(top=peak * 3)  # room for the labels on the flat roof
        roof.set_xlabel("arithmetic intensity (FLOP per DDR byte)")
        roof.set_ylabel("achieved GFLOP/s")
        roof.set_title("layers against the roofline (numbers as in the bars)")
        left_off = n - len(shown)
        if left_off:
            roof.text(0.98, 0.03, f"{left_off} layer(s) without MACs (pooling, element-wise,\n"
                      "activations) have no FLOP rate and are left off", transform=roof.transAxes,
                      fontsize=8, va="bottom", ha="right")
        roof.legend(loc="upper left", fontsize=8)
        t = self.total
        fig.suptitle(f"{title + ' on ' if title else ''}{self.chip.name}: {t['seconds'] * 1e3:.3f} ms estimated "
                     f"on the chip, {100 * t['utilisation']:.1f}% of peak FLOPS")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


ENGINES = ("TIU", "GDMA")
# the TIU's units (runtime/chip/sophon_cost.h) and the cost terms a layer can be bound by
TIU_UNITS = ("conv", "dwpool", "fc", "eltwise")
BOUNDS = {"compute": "the unit's lane passes (MACs or element ops over its EUs)",
          "issue": "per-instruction issue latency (tiu_latency_cycles)",
          "bandwidth": "DDR bytes at ddr_bytes_per_second",
          "bursts": "whole-burst rounding of small, strided or channel-scattered transfers "
                    "(gdma_burst_bytes)",
          "latency": "per-transfer start-up (gdma_latency_cycles)"}


# activations a conv or element-wise instruction applies on the way out, for free
_FREE_ACTS = ("NONE", "RELU", "CLIP", "LEAKY_RELU")


def _unit_of(step) -> str:
    """The TIU unit a step runs on (sophon_cost.h: a depthwise conv and pooling on
    the depthwise/pooling unit, matrix work on the FC unit, the rest element-wise)."""
    if isinstance(step, (P.Conv2d, P.QConv2d, P.Conv2dTranspose)):
        n_in = step.input.dims[1]
        depthwise = step.groups > 1 and step.groups == n_in and step.out.dims[1] == n_in
        return "dwpool" if depthwise else "conv"
    if isinstance(step, (P.Pool2d, P.QPool2d)):
        return "dwpool"
    if isinstance(step, (P.FullyConnected, P.QFullyConnected)):
        return "fc"
    return "eltwise"


def step_parts(chip: Chip, step, engine: str, cycles: int, nbytes: int = 0) -> dict:
    """A step's cycles by TIU unit (conv, dwpool, fc, eltwise) and by cost term
    (compute and issue on the TIU; bandwidth, bursts and latency on the GDMA)."""
    if engine == "tiu":
        own = cycles
        parts = {}
        # a fused activation that is not free (SiLU, GELU, ...) is a pass of the
        # element-wise datapath over the conv's output (sophon_cost.h): its share
        # goes to that unit
        if isinstance(step, (P.Conv2d, P.Conv2dTranspose)) and step.act.kind not in _FREE_ACTS:
            own = cost.step_cycles(chip, dataclasses.replace(step, act=P.Activation()))[1]
            parts["eltwise"] = cycles - own
        unit = _unit_of(step)
        parts[unit] = parts.get(unit, 0) + own
        issue = min(cycles, chip.tiu_latency_cycles)
        parts.update(issue=issue, compute=cycles - issue)
        return parts
    ratio = chip.clock_hz / (chip.gdma_clock_hz or chip.clock_hz)
    latency = min(cycles, round(chip.gdma_latency_cycles * ratio))
    bandwidth = min(cycles - latency, round(nbytes / chip.ddr_bytes_per_second * chip.clock_hz))
    return {"latency": latency, "bandwidth": bandwidth, "bursts": cycles - latency - bandwidth}


def _add_parts(lp: "LayerProfile", chip: Chip, step, engine: str, cycles: int, nbytes: int) -> None:
    """Add a step's cycles, by unit and by term, to its layer's parts."""
    for key, value in step_parts(chip, step, engine, cycles, nbytes).items():
        lp.parts[key] = lp.parts.get(key, 0) + value


ENGINE_NAMES = {"TIU": "compute engine", "GDMA": "DMA engine"}
COLORS = {True: "tab:blue", False: "tab:orange"}


def _fit(name: str, width: int) -> str:
    """``name`` cut to ``width`` characters, keeping its end (the distinctive part of
    a path such as ``model/block3/conv2``)."""
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .errors import SophonError
        raise SophonError("plots need matplotlib: pip install 'tvm-sophon[plot]'") from None
    return plt


def _local_bytes(local: P.Local) -> int:
    n, c, h, w = local.dims
    return n * c * h * w * DTYPE_BYTES[local.tensor.dtype]


def profile_programs(programs: list[P.RegionProgram]) -> Profile:
    """The static profile of scheduled region programs (no run)."""
    chip = programs[0].chip
    layers, groups, events = [], [], []
    clock_us = 1e6 / chip.clock_hz
    t0 = 0.0
    for pid, prog in enumerate(programs):
        by_name: dict[str, LayerProfile] = {}
        labels = {s.out.tensor.name: s.out.tensor.label or s.out.tensor.name
                  for s in prog.steps if not isinstance(s, (P.Load, P.Store, P.Timestep)) and hasattr(s, "out")}
        # a concat or pad made of DDR copies only: its steps carry the layer's name
        labels.update({s.layer: s.label or s.layer for s in prog.steps if isinstance(s, (P.Copy, P.Fill))})
        for gi, ((first, end), group) in enumerate(zip(prog.group_steps, prog.plan.groups)):
            gp = GroupProfile(prog.symbol, gi, [], group.n_slices, group.h_slices, slicing=group.describe())
            step_tiu = step_gdma = 0
            tiu_at = gdma_at = t0
            for step in prog.steps[first:end]:
                if isinstance(step, P.Timestep):
                    length = cost.timestep_cycles(chip, step_tiu, step_gdma)
                    gp.cycles += length
                    t0 += length * clock_us
                    tiu_at = gdma_at = t0
                    step_tiu = step_gdma = 0
                    continue
                engine, cycles = cost.step_cycles(chip, step)
                if isinstance(step, (P.Load, P.Store)):
                    local = step.dst if isinstance(step, P.Load) else step.src
                    name, pattern = step.layer, ""
                    nbytes = _local_bytes(local)
                    gp.ddr_bytes += nbytes
                elif isinstance(step, (P.Copy, P.Fill)):   # DDR to DDR: read and written
                    local, name, pattern = None, step.layer, step.pattern
                    nbytes = cost.ddr_step_bytes(step) * (2 if isinstance(step, P.Copy) else 1)
                    gp.ddr_bytes += nbytes
                else:
                    local, name, pattern, nbytes = step.out, step.out.tensor.name, step.pattern, 0
                lp = by_name.get(name)
                if lp is None:
                    lp = by_name[name] = LayerProfile(prog.symbol, gi, labels.get(name, name), pattern)
                    layers.append(lp)
                if not isinstance(step, (P.Load, P.Store)) and name not in gp.layers:  # the group computing it
                    lp.group = gi
                    gp.layers.append(name)
                lp.pattern = lp.pattern or pattern
                lp.ddr_bytes += nbytes
                if local is not None:
                    lp.lmem_peak = max(lp.lmem_peak, local.addr + local.lane_bytes(chip))
                    gp.lmem_peak = max(gp.lmem_peak, local.addr + local.lane_bytes(chip))
                label = type(step).__name__.lower()
                _add_parts(lp, chip, step, engine, cycles, nbytes)
                if engine == "tiu":
                    lp.tiu_cycles += cycles
                    step_tiu += cycles
                    events.append({"name": f"{label} {lp.name}", "cat": "tiu", "ph": "X", "pid": pid,
                                   "tid": 0, "ts": tiu_at, "dur": cycles * clock_us})
                    tiu_at += cycles * clock_us
                else:
                    lp.gdma_cycles += cycles
                    step_gdma += cycles
                    events.append({"name": f"{label} {lp.name}", "cat": "gdma", "ph": "X", "pid": pid,
                                   "tid": 1, "ts": gdma_at, "dur": cycles * clock_us,
                                   "args": {"bytes": nbytes}})
                    gdma_at += cycles * clock_us
            groups.append(gp)
        for step in prog.steps:
            if isinstance(step, (P.Conv2d, P.FullyConnected, P.QConv2d, P.QFullyConnected, P.Conv2dTranspose)):
                one = P.RegionProgram(prog.symbol, chip, [], [], [], [], [step])
                by_name[step.out.tensor.name].macs += one.macs()
        for gp in groups:
            if gp.region == prog.symbol:
                gp.macs = sum(by_name[n].macs for n in gp.layers if n in by_name)
    for lp in layers:
        lp.classify()
    strategy = programs[0].plan.strategy if programs[0].plan else ""
    return Profile(chip, strategy, layers, groups, trace_events=events)


def plan_and_profile(mod: tvm.IRModule, params: Optional[dict] = None, *, chip="bm1680",
                     plan="layer_group_dp") -> tuple[tvm.IRModule, Profile]:
    """Partition and plan ``mod``; the planned module (ready for ``build``) and its
    static profile (no run)."""
    chip = get_chip(chip)
    partitioned = partition_for_sophon(mod, params, chip=chip)
    planned = PlanRegions(plan, overwrite=True)(partitioned)
    regions = [f for f in planned.functions.values() if (f.attrs or {}).get("Codegen") == "sophon"]
    if not regions:
        raise ValueError("nothing of this model runs on the chip (see offload_report)")
    return planned, profile_programs(codegen.lower_functions(regions))


def profile_model(mod: tvm.IRModule, params: Optional[dict] = None, inputs: Optional[dict] = None, *,
                  chip="bm1680", plan="layer_group_dp", run: bool = True, repeat: int = 3) -> Profile:
    """Partition, plan and estimate ``mod``; with ``run``, also build it, run it on
    the emulator (random inputs unless given) and record host time and counters."""
    chip = get_chip(chip)
    planned, prof = plan_and_profile(mod, params, chip=chip, plan=plan)
    if run:
        from .build import build
        from .stats import last_run_stats

        ex = build(planned, chip=chip, plan=plan)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        args = _inputs_for(planned, inputs)
        vm["main"](*args)  # warm-up (first call creates the device)
        start = time.perf_counter()
        for _ in range(repeat):
            vm["main"](*args)
        prof.host_seconds = (time.perf_counter() - start) / repeat
        prof.measured = last_run_stats(vm)
    return prof


def _inputs_for(mod: tvm.IRModule, inputs: Optional[dict]):
    rng = np.random.default_rng(0)
    args = []
    for param in mod["main"].params:
        if inputs and param.name in inputs:
            args.append(tvm.runtime.tensor(np.asarray(inputs[param.name])))
        else:
            shape = [int(d) for d in param.ty.shape.values]
            args.append(tvm.runtime.tensor(rng.standard_normal(shape).astype(str(param.ty.dtype))))
    return args
