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
    group: int
    name: str
    pattern: str
    macs: int = 0
    tiu_cycles: int = 0
    gdma_cycles: int = 0
    ddr_bytes: int = 0
    lmem_peak: int = 0

    def cycles(self) -> int:
        return max(self.tiu_cycles, self.gdma_cycles)


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
        head = (f"{'group':>5} {'layer':<22} {'pattern':<26} {'MACs':>12} {'DDR bytes':>11} "
                f"{'LMEM peak':>9} {'chip us':>9} {'util':>6} {'uJ':>8}")
        lines = [f"profile on {self.chip.name} ({self.strategy}): per layer (own work, perfect overlap)",
                 head, "-" * len(head)]
        for l in self.layers:
            s = self.seconds(l.cycles())
            lines.append(f"{l.group:>5} {l.name[:22]:<22} {l.pattern[:26]:<26} {l.macs:>12} {l.ddr_bytes:>11} "
                         f"{l.lmem_peak:>9} {s * 1e6:>9.2f} {100 * self.utilisation(l.macs, l.cycles()):>5.1f}% "
                         f"{s * self.chip.power_watts * 1e6:>8.2f}")
        lines += ["", "per layer group (engines overlapping)",
                  f"{'group':>5} {'layers':>6} {'slices':>8} {'MACs':>12} {'DDR bytes':>11} {'LMEM peak':>9} "
                  f"{'chip us':>9} {'util':>6}"]
        for g in self.groups:
            s = self.seconds(g.cycles)
            lines.append(f"{g.index:>5} {len(g.layers):>6} {g.slicing:>8} {g.macs:>12} "
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
        """Chrome trace (chrome://tracing, ui.perfetto.dev): one track per engine."""
        with open(path, "w") as f:
            json.dump({"traceEvents": self.trace_events, "displayTimeUnit": "ns"}, f)

    def write_plot(self, path) -> None:
        """Per-layer time (bars) and a roofline of every layer (PNG, needs matplotlib)."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise RuntimeError("the profile plot needs matplotlib: pip install 'tvm-sophon[plot]'") from err
        fig, (bars, roof) = plt.subplots(1, 2, figsize=(14, 5))
        us = [self.seconds(l.cycles()) * 1e6 for l in self.layers]
        colors = ["tab:blue" if l.tiu_cycles >= l.gdma_cycles else "tab:orange" for l in self.layers]
        bars.bar(range(len(us)), us, color=colors)
        bars.set_xlabel("layer (blue: compute-bound, orange: DMA-bound)")
        bars.set_ylabel("estimated time on chip (us)")
        bars.set_title(f"{self.chip.name}: per-layer time")
        peak = self.chip.peak_flops / 1e9
        bw = self.chip.ddr_bytes_per_second / 1e9
        xs = np.logspace(-2, 4, 200)
        roof.loglog(xs, np.minimum(peak, xs * bw), "k-", label=f"roofline ({peak:.0f} GFLOP/s, {bw:.1f} GB/s)")
        for l in self.layers:
            if l.macs and l.ddr_bytes:
                roof.loglog(2 * l.macs / l.ddr_bytes, 2 * l.macs / self.seconds(l.cycles()) / 1e9, "o",
                            color="tab:blue", alpha=0.6)
        roof.set_xlabel("arithmetic intensity (FLOP / DDR byte)")
        roof.set_ylabel("GFLOP/s")
        roof.set_title("layers against the roofline")
        roof.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _local_bytes(local: P.Local) -> int:
    n, c, h, w = local.dims
    return n * c * h * w * DTYPE_BYTES[local.tensor.dtype]


def profile_programs(programs: list[P.RegionProgram]) -> Profile:
    """The static profile of scheduled region programs (no run)."""
    chip = programs[0].chip
    layers, groups, events = [], [], []
    clock_us = 1e6 / chip.clock_hz
    t0 = 0.0
    for prog in programs:
        by_name: dict[str, LayerProfile] = {}
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
                else:
                    local, name, pattern, nbytes = step.out, step.out.tensor.name, step.pattern, 0
                lp = by_name.get(name)
                if lp is None:
                    lp = by_name[name] = LayerProfile(prog.symbol, gi, name, pattern)
                    layers.append(lp)
                    gp.layers.append(name)
                lp.pattern = lp.pattern or pattern
                lp.ddr_bytes += nbytes
                lp.lmem_peak = max(lp.lmem_peak, local.addr + local.lane_bytes(chip))
                gp.lmem_peak = max(gp.lmem_peak, local.addr + local.lane_bytes(chip))
                label = type(step).__name__.lower()
                if engine == "tiu":
                    lp.tiu_cycles += cycles
                    step_tiu += cycles
                    events.append({"name": f"{label} {name}", "cat": "tiu", "ph": "X", "pid": prog.symbol[:40],
                                   "tid": "TIU", "ts": tiu_at, "dur": cycles * clock_us})
                    tiu_at += cycles * clock_us
                else:
                    lp.gdma_cycles += cycles
                    step_gdma += cycles
                    events.append({"name": f"{label} {name}", "cat": "gdma", "ph": "X", "pid": prog.symbol[:40],
                                   "tid": "GDMA", "ts": gdma_at, "dur": cycles * clock_us,
                                   "args": {"bytes": nbytes}})
                    gdma_at += cycles * clock_us
            groups.append(gp)
        for step in prog.steps:
            if isinstance(step, (P.Conv2d, P.FullyConnected, P.QConv2d, P.QFullyConnected)):
                one = P.RegionProgram(prog.symbol, chip, [], [], [], [], [step])
                by_name[step.out.tensor.name].macs += one.macs()
        for gp in groups:
            if gp.region == prog.symbol:
                gp.macs = sum(by_name[n].macs for n in gp.layers if n in by_name)
    strategy = programs[0].plan.strategy if programs[0].plan else ""
    return Profile(chip, strategy, layers, groups, trace_events=events)


def profile_model(mod: tvm.IRModule, params: Optional[dict] = None, inputs: Optional[dict] = None, *,
                  chip="bm1680", plan="layer_group_dp", run: bool = True, repeat: int = 3) -> Profile:
    """Partition, plan and estimate ``mod``; with ``run``, also build it, run it on
    the emulator (random inputs unless given) and record host time and counters."""
    chip = get_chip(chip)
    partitioned = partition_for_sophon(mod, params, chip=chip)
    planned = PlanRegions(plan, overwrite=True)(partitioned)
    regions = [f for f in planned.functions.values() if (f.attrs or {}).get("Codegen") == "sophon"]
    if not regions:
        raise ValueError("nothing of this model runs on the chip (see offload_report)")
    prof = profile_programs(codegen.lower_functions(regions))
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
