"""C code generation for offloaded regions, registered as ``relax.ext.sophon``.

RunCodegen hands every function annotated ``Codegen="sophon"`` to
:func:`sophon_codegen`, which analyses each region into layers (layers.py),
takes its plan (the function's ``sophon.plan`` attribute, written by the
planning pass, or the default planner), schedules the plan into a chip program
(schedule.py), renders all programs as one C file of command buffers
(emit_c.py), compiles it with the system C compiler together with the runtime,
and returns the object as a static library module that ``export_library``
links into the final ``.so``.
"""
from __future__ import annotations

import json

import tvm
import tvm_ffi

from tvm_sophon import toolchain
from tvm_sophon.chip import Chip, get_chip
from tvm_sophon.errors import SophonCompileError

from .emit_c import STATS_SYMBOL, render_library
from .layers import Region, analyze_region
from .program import Plan, RegionProgram
from .schedule import PlanError, lower_plan

CHIP_ATTR = "sophon.chip"
PLAN_ATTR = "sophon.plan"
# JSON list of the parameter positions every call passes a constant (PlanRegions):
# their DDR buffers are marked constant in the program (sophon_gdma_load_constant)
CONSTANTS_ATTR = "sophon.constants"


def chip_of(func) -> Chip:
    """The chip profile a region was partitioned for (its ``sophon.chip`` attribute)."""
    attrs = func.attrs or {}
    if CHIP_ATTR in attrs:
        return Chip(**json.loads(str(attrs[CHIP_ATTR])))
    return get_chip("bm1680")


def region_of(func) -> Region:
    return analyze_region(func, str(func.attrs["global_symbol"]))


def plan_of(func, region: Region, chip: Chip) -> Plan:
    """The region's plan: its ``sophon.plan`` attribute, else the default planner's."""
    attrs = func.attrs or {}
    if PLAN_ATTR in attrs:
        return Plan.from_json(str(attrs[PLAN_ATTR]))
    from tvm_sophon.layer_groups import plan_region
    return plan_region(region, chip)


def lower_function(func) -> RegionProgram:
    chip = chip_of(func)
    region = region_of(func)
    plan = plan_of(func, region, chip)
    try:
        program = lower_plan(region, plan, chip)
    except PlanError as err:
        raise SophonCompileError(f"plan {plan.to_json()} cannot run: {err}") from None
    attrs = func.attrs or {}
    if CONSTANTS_ATTR in attrs:
        program.constant_inputs = frozenset(json.loads(str(attrs[CONSTANTS_ATTR])))
    return program


def lower_functions(functions) -> list[RegionProgram]:
    programs = [lower_function(func) for func in functions]
    chips = {p.chip for p in programs}
    if len(chips) > 1:
        raise SophonCompileError(f"one build targets several chip profiles: {sorted(c.name for c in chips)}")
    return programs


def generate_source(functions) -> str:
    return render_library(lower_functions(functions))


@tvm_ffi.register_global_func("relax.ext.sophon")
def sophon_codegen(functions, options, constant_names):
    """RunCodegen entry: Relax regions -> one static library module."""
    if len(functions) == 0:
        return []
    programs = lower_functions(functions)
    source = render_library(programs)
    obj = toolchain.generated_object(source, "sophon_regions")
    names = [p.symbol for p in programs] + [STATS_SYMBOL]
    return [tvm.runtime.load_static_library(str(obj), names)]
