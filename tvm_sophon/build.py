"""Building: the pipeline that turns a (partitioned) Relax module into a TVM
executable whose offloaded regions run on the emulated chip."""
from __future__ import annotations

import json
from typing import Optional

import tvm
from tvm import relax

from . import codegen  # noqa: F401  (registers relax.ext.sophon)
from .chip import Chip, get_chip
from .errors import SophonCompileError, SophonError
from .partition import CHIP_ATTR, is_partitioned, partition_for_sophon


def _check_chip(mod: tvm.IRModule, chip: Chip) -> None:
    for gvar, func in mod.functions.items():
        attrs = getattr(func, "attrs", None) or {}
        if attrs.get("Codegen") == "sophon" and CHIP_ATTR in attrs:
            planned = json.loads(str(attrs[CHIP_ATTR]))["name"]
            if planned != chip.name:
                raise SophonCompileError(
                    f"region {gvar.name_hint} was partitioned for {planned}, but the build targets {chip.name}")


def pipeline(chip: "str | Chip" = "bm1680", *, base: Optional[tvm.transform.Pass] = None):
    """A Relax pipeline for ``tvm.compile(mod, target="llvm", relax_pipeline=...)``:
    partitions the module if it is not partitioned yet, runs the sophon codegen
    (RunCodegen), then TVM's default build pipeline for the host part."""
    chip = get_chip(chip)
    base = base or relax.pipeline.default_build_pipeline()

    @tvm.transform.module_pass(opt_level=0, name="SophonPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        if not is_partitioned(mod):
            mod = partition_for_sophon(mod, chip=chip)
        _check_chip(mod, chip)
        mod = relax.transform.RunCodegen()(mod)
        return base(mod)

    return _pipeline


def build(mod: tvm.IRModule, params: Optional[dict] = None, *, chip: "str | Chip" = "bm1680",
          target="llvm") -> tvm.runtime.Executable:
    """Partition (if needed), generate and compile the chip's code, build the host
    part with TVM: a ``tvm.runtime.Executable`` for ``relax.VirtualMachine``."""
    chip = get_chip(chip)
    if not is_partitioned(mod):
        mod = partition_for_sophon(mod, params, chip=chip)
    elif params:
        raise SophonError("the module is already partitioned: bind params with partition_for_sophon(mod, params)")
    return tvm.compile(mod, target=target, relax_pipeline=pipeline(chip))
