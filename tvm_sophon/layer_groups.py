"""Layer groups: choosing how a region runs within the chip's local memory.

A plan splits a region's layers into consecutive groups (intermediates inside a
group never leave LMEM) and gives each group its slicing (batch x rows). The
default strategy searches over groups by dynamic programming on the chain of
layers, scoring every candidate group by the cost model (the estimated cycles
of the program the scheduler would emit for it, engines overlapping per
timestep); for each candidate it looks for the fewest slices that fit.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

from tvm_sophon.chip import Chip
from tvm_sophon.codegen.layers import Region
from tvm_sophon.codegen.program import Group, Plan
from tvm_sophon.codegen.schedule import Lowering, PlanError, full_dims
from tvm_sophon.errors import SophonCompileError

MAX_GROUP_LAYERS = 16


@dataclasses.dataclass
class GroupCost:
    group: Group
    cycles: int
    ddr_bytes: int
    lmem_peak: int


def evaluate_group(region: Region, chip: Chip, group: Group, shortcuts: Optional[bool] = None) -> GroupCost:
    """Schedule ``group`` alone (its inputs taken as already in DDR) and estimate it.

    ``shortcuts`` (default: for a group of several layers, which is only ever
    priced) lowers without C names and rejects, before lowering it, a sliced
    group that surely overflows LMEM: the same outcome, a PlanError that
    best_slicing skips, sooner. A lone layer keeps the full path, whose failure
    message (naming its tensors) may become the user's error."""
    from tvm_sophon.cost import estimate_steps

    if shortcuts is None:
        shortcuts = len(group.layers) > 1
    low = Lowering(region, chip, c_names=not shortcuts, prune=shortcuts)
    members = set(group.layers)
    for index in group.layers:  # what the group reads from earlier groups is in DDR
        for op in region.layers[index].acts:
            producer = low.producer.get(id(op.value))
            if producer is not None and producer.index not in members:
                low.ddr_home(op.value)
    low.lower_group(group)
    peak = low.allocate()
    est = estimate_steps(chip, low.steps)
    return GroupCost(group, est.cycles, est.ddr_bytes, peak)


def _divisors(n: int) -> list[int]:
    """Divisors of n in O(sqrt(n)) steps."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def _quotients(h: int) -> set[int]:
    """The distinct values of h // k for k = 1..h, in O(sqrt(h)) steps: h // k for
    k <= sqrt(h), and every q <= sqrt(h) that some k gives (h // (h // q) == q)."""
    root = math.isqrt(h)
    return {h // k for k in range(1, root + 1)} | {q for q in range(1, root + 1) if h // (h // q) == q}


def _slicings(region: Region, layers: list[int]):
    """Candidate (n_slices, h_slices), fewest slices first: batch slicings that
    divide the batch, row slicings 1..8 and the row counts h // k above 8. Both
    sets are computed in O(sqrt) steps, never by walking up to the dimension."""
    last = region.layers[layers[-1]]
    n, _, h, _ = full_dims(last.out)
    ns = _divisors(n)
    hs = sorted({1, *range(2, min(h, 8) + 1), *(q for q in _quotients(h) if q > 8)})
    options = sorted(((a, b) for a in ns for b in hs if b <= h), key=lambda ab: (ab[0] * ab[1], ab[1]))
    return options


def _lane_slicings(total: int, lanes: int) -> list[int]:
    """Slice counts of a dim over whole lanes (each count giving another slice size)."""
    chunks = -(-total // lanes)
    return sorted({-(-chunks // -(-chunks // p)) for p in range(1, chunks + 1)})


def _candidates(region: Region, chip: Chip, layers: list[int]):
    """Groups to try, fewest slices first: batch x rows, then for a lone fc layer
    its output channels x reduction (x rows); an int8 fc by output channels only
    (its int32 sums are requantized inside the one instruction)."""
    for n_slices, h_slices in _slicings(region, layers):
        yield Group(list(layers), n_slices, h_slices)
    layer = region.layers[layers[0]]
    if len(layers) != 1 or layer.kind not in ("fc", "qfc"):
        return
    m, n = full_dims(layer.out)[:2]
    k = full_dims(layer.acts[0])[1]
    rows = [r for r in (1, 2, 4, 8, 16, 32, 64) if r <= m]
    reductions = _lane_slicings(k, chip.npu_num) if layer.kind == "fc" else [1]
    options = [(r, c, q) for r in rows for c in _lane_slicings(n, chip.npu_num)
               for q in reductions if c * q > 1]
    for r, c, q in sorted(options, key=lambda o: (o[0] * o[1] * o[2], o[2], o[0])):
        yield Group(list(layers), r, 1, c, q)


_STRUCTURAL = ("cannot be sliced", "exactly one result", "changes layout")


def best_slicing(region: Region, chip: Chip, layers: list[int]) -> Optional[GroupCost]:
    """The cheapest feasible slicing of a group among the first ones that fit.
    A group of one layer that fits no slicing is an error naming the layer and
    the sizes of the least sliced attempt."""
    best, fits = None, 0
    reason = structural = None
    for group in _candidates(region, chip, layers):
        try:
            cost = evaluate_group(region, chip, group)
        except PlanError as err:
            if any(text in str(err) for text in _STRUCTURAL):
                structural = structural or err
                if len(layers) > 1 and group.slices > 1:
                    return best  # a group that cannot be sliced: no finer slicing helps
                continue
            reason = reason or err
            continue
        fits += 1
        if best is None or cost.cycles < best.cycles:
            best = cost
        if fits >= 2:
            break
    if best is None and len(layers) == 1:
        layer = region.layers[layers[0]]
        raise SophonCompileError(f"layer {layer.label} ({layer.pattern}) cannot be tiled to fit "
                                 f"{chip.name}'s local memory: {reason or structural}")
    return best


def plan_layer_by_layer(region: Region, chip: Chip) -> Plan:
    """Every layer its own group (intermediates through DDR), each with the
    cheapest slicing that fits: the baseline layer groups are measured against."""
    groups = []
    for layer in region.layers:
        cost = best_slicing(region, chip, [layer.index])
        groups.append(cost.group)
    return Plan(groups, "layer_by_layer")


def plan_dp(region: Region, chip: Chip) -> Plan:
    """Dynamic programming over the chain: best[j] = min_i best[i] + cost(layers i..j-1)."""
    n = len(region.layers)
    best: list[tuple[int, list[Group]]] = [(0, [])] + [None] * n  # type: ignore
    for j in range(1, n + 1):
        for i in range(max(0, j - MAX_GROUP_LAYERS), j):
            if best[i] is None:
                continue
            cost = best_slicing(region, chip, list(range(i, j)))
            if cost is None:
                continue
            total = best[i][0] + cost.cycles
            if best[j] is None or total < best[j][0]:
                best[j] = (total, best[i][1] + [cost.group])
        if best[j] is None:
            raise SophonCompileError(f"region {region.symbol}: no plan fits layers up to {region.layers[j - 1].label}")
    return Plan(best[n][1], "layer_group_dp")


STRATEGIES: dict[str, Callable[[Region, Chip], Plan]] = {
    "layer_group_dp": plan_dp,
    "layer_by_layer": plan_layer_by_layer,
}


def plan_region(region: Region, chip: Chip, strategy: "str | Callable" = "layer_group_dp") -> Plan:
    planner = STRATEGIES[strategy] if isinstance(strategy, str) else strategy
    return planner(region, chip)
