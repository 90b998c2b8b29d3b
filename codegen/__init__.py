"""C code generation for offloaded regions, registered as ``relax.ext.sophon``.

RunCodegen hands every function annotated ``Codegen="sophon"`` to
:func:`sophon_codegen`, which lowers each to a chip program (lower.py), renders
all of them as one C file that drives the runtime (emit_c.py), compiles it with
the system C compiler together with the runtime, and returns the object as a
static library module that ``export_library`` links into the final ``.so``.
"""
from __future__ import annotations

import json

import tvm
import tvm_ffi

from tvm_sophon import toolchain
from tvm_sophon.chip import Chip, get_chip

from .emit_c import STATS_SYMBOL, render_library
from .lower import lower_region
from .program import RegionProgram

CHIP_ATTR = "sophon.chip"


def chip_of(func) -> Chip:
    """The chip profile a region was partitioned for (its ``sophon.chip`` attribute)."""
    attrs = func.attrs or {}
    if CHIP_ATTR in attrs:
        return Chip(**json.loads(str(attrs[CHIP_ATTR])))
    return get_chip("bm1680")


def lower_functions(functions) -> list[RegionProgram]:
    programs = []
    for func in functions:
        symbol = str(func.attrs["global_symbol"])
        programs.append(lower_region(func, symbol, chip_of(func)))
    chips = {p.chip for p in programs}
    if len(chips) > 1:
        from tvm_sophon.errors import SophonCompileError
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
