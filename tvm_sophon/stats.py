"""Reading the emulated chip's counters after a run.

Every library built by tvm_sophon exports ``sophon_last_run_stats``, which returns
the counters of each region's last run as JSON; :func:`last_run_stats` finds it
behind a VirtualMachine, an Executable or a loaded module, and adds the derived
figures (seconds, energy, share of peak FLOPS) from the chip description.
"""
from __future__ import annotations

import json

import tvm
from tvm import relax

from .chip import Chip
from .errors import SophonError
from .codegen.emit_c import STATS_SYMBOL


def _modules(obj):
    from .vm import ThreadLocalVM

    if isinstance(obj, ThreadLocalVM):
        obj = obj.vm
    if isinstance(obj, relax.VirtualMachine):
        yield obj.module
    if isinstance(obj, tvm.runtime.Executable):
        yield obj.mod
        obj = obj.jit() if not obj.mod.is_runnable() else obj.mod
    if isinstance(obj, tvm.runtime.Module):
        yield obj


def _stats_function(obj):
    for module in _modules(obj):
        try:
            func = module.get_function(STATS_SYMBOL, query_imports=True)
        except AttributeError:  # tvm_ffi raises where older TVM returned None
            func = None
        if func is not None:
            return func
    return None


def region_seconds(region: dict, chip: Chip) -> float:
    """Estimated chip time of one region's run: the sum over its timesteps of the
    longer engine (the cost model of runtime/chip/sophon_cost.h)."""
    return region["cycles"] / chip.clock_hz


def last_run_stats(obj) -> dict:
    """Chip counters of the last run of every offloaded region.

    ``obj`` is the ``relax.VirtualMachine`` that ran the model (or its Executable,
    or the loaded library). Returns ``{"chip": {...}, "regions": [...], "total": {...}}``
    where each region has the runtime's counters (macs, tiu/gdma instructions and
    cycles, bytes loaded/stored, lmem_peak_bytes) plus ``seconds``, ``energy_joules``
    and ``utilisation`` (achieved share of the chip's peak FLOPS).
    """
    func = _stats_function(obj)
    if func is None:
        raise SophonError(f"this {type(obj).__name__} was not built by tvm_sophon (its library has no "
                          f"{STATS_SYMBOL}): build the model with tvm_sophon.build or pipeline()")
    data = json.loads(str(func()))
    chip = Chip(**data["chip"])
    total = {k: 0 for k in ("macs", "tiu_instructions", "gdma_instructions", "bytes_loaded",
                            "bytes_stored", "tiu_cycles", "gdma_cycles", "timesteps", "cycles")}
    for region in data["regions"]:
        seconds = region_seconds(region, chip)
        region["seconds"] = seconds
        region["energy_joules"] = seconds * chip.power_watts
        region["utilisation"] = (2 * region["macs"] / seconds / chip.peak_flops) if seconds else 0.0
        for key in total:
            total[key] += region[key]
    seconds = sum(r["seconds"] for r in data["regions"])
    total["seconds"] = seconds
    total["energy_joules"] = seconds * chip.power_watts
    total["utilisation"] = (2 * total["macs"] / seconds / chip.peak_flops) if seconds else 0.0
    data["total"] = total
    return data


def format_stats(stats: dict) -> str:
    """The counters as a table for the terminal."""
    w = max([6] + [len(r["name"]) for r in stats["regions"]])  # regions are sophon_0, sophon_1, ...
    head = f"{'region':<{w}} {'calls':>5} {'MACs':>12} {'loaded B':>10} {'stored B':>10} " \
           f"{'TIU cyc':>10} {'GDMA cyc':>10} {'LMEM peak':>10} {'chip us':>9} {'util':>6}"
    lines = [f"chip counters ({stats['chip']['name']}, last run)", head, "-" * len(head)]
    rows = stats["regions"] + [{"name": "total", "calls": "", "lmem_peak_bytes":
                                max([r["lmem_peak_bytes"] for r in stats["regions"]] or [0]),
                                **stats["total"]}]
    for r in rows:
        lines.append(f"{r['name']:<{w}} {r['calls']!s:>5} {r['macs']:>12} {r['bytes_loaded']:>10} "
                     f"{r['bytes_stored']:>10} {r['tiu_cycles']:>10} {r['gdma_cycles']:>10} "
                     f"{r['lmem_peak_bytes']:>10} {r['seconds'] * 1e6:>9.2f} {100 * r['utilisation']:>5.1f}%")
    t = stats["total"]
    lines.append(f"energy on chip: {t['energy_joules'] * 1e6:.2f} uJ at {stats['chip']['power_watts']} W")
    return "\n".join(lines)
