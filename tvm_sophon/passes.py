"""Relax passes of the plugin, run between partitioning and code generation.

``PlanRegions`` writes each offloaded region's plan (its layer groups and their
slicing) into the region's ``sophon.plan`` attribute (and which of its parameters
every call passes a constant, the weights, into ``sophon.constants``), so the plan shows in the
printed IR, and a researcher can read it, change it, or plan with a strategy of
their own; the codegen carries out whatever plan the attribute holds.
"""
from __future__ import annotations

import json
from typing import Callable

import tvm
from tvm import relax

from .codegen import CONSTANTS_ATTR, PLAN_ATTR, chip_of, region_of
from .codegen.program import Plan
from .codegen.schedule import PlanError, lower_plan
from .errors import SophonCompileError
from .layer_groups import plan_region

def sophon_regions(mod: tvm.IRModule):
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function) and (func.attrs or {}).get("Codegen") == "sophon":
            yield gvar, func


def constant_params(mod: tvm.IRModule) -> dict:
    """For each region, the positions of its parameters that every call passes a
    ``Constant`` (the model's weights): ``{region GlobalVar name: [index, ...]}``."""
    regions = {gvar.name_hint for gvar, _ in sophon_regions(mod)}
    found: dict = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.GlobalVar) \
                and expr.op.name_hint in regions:
            const = {i for i, arg in enumerate(expr.args) if isinstance(arg, tvm.ir.expr.Constant)}
            name = expr.op.name_hint
            found[name] = const if name not in found else found[name] & const

    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function) and gvar.name_hint not in regions:
            relax.analysis.post_order_visit(func.body, visit)
    return {name: sorted(indices) for name, indices in found.items()}


def PlanRegions(strategy: "str | Callable" = "layer_group_dp", *,
                overwrite: bool = False) -> tvm.transform.Pass:
    """Plan every sophon region with ``strategy`` (a name from
    ``tvm_sophon.layer_groups.STRATEGIES`` or a callable ``(Region, Chip) -> Plan``).
    Regions that already carry a plan keep it unless ``overwrite``; a given plan
    is checked by scheduling it, so an impossible plan fails here, naming why."""

    @tvm.transform.module_pass(opt_level=0, name="sophon.PlanRegions")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        constants = constant_params(mod)
        for gvar, func in list(sophon_regions(mod)):
            chip = chip_of(func)
            region = region_of(func)
            if PLAN_ATTR in (func.attrs or {}) and not overwrite:
                plan = Plan.from_json(str(func.attrs[PLAN_ATTR]))
            else:
                plan = plan_region(region, chip, strategy)
            try:
                lower_plan(region, plan, chip)
            except PlanError as err:
                raise SophonCompileError(f"plan {plan.to_json()} cannot run: {err}") from None
            func = func.with_attr(PLAN_ATTR, plan.to_json())
            mod[gvar] = func.with_attr(CONSTANTS_ATTR, json.dumps(constants.get(gvar.name_hint, [])))
        return mod

    return _pass
