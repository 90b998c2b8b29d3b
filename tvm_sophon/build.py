"""Building: the pipeline that turns a (partitioned) Relax module into a TVM
executable whose offloaded regions run on the emulated chip."""
from __future__ import annotations

import json
from typing import Callable, Optional, Sequence

import tvm
from tvm import relax

from . import codegen  # noqa: F401  (registers relax.ext.sophon)
from .chip import Chip, get_chip
from .errors import SophonCompileError, SophonError
from .partition import CHIP_ATTR, is_partitioned, partition_for_sophon
from .normalize import HostTransposeConvLayout
from .passes import PlanRegions


def _check_chip(mod: tvm.IRModule, chip: Chip) -> None:
    for gvar, func in mod.functions.items():
        attrs = getattr(func, "attrs", None) or {}
        if attrs.get("Codegen") == "sophon" and CHIP_ATTR in attrs:
            planned = json.loads(str(attrs[CHIP_ATTR]))["name"]
            if planned != chip.name:
                raise SophonCompileError(
                    f"region {gvar.name_hint} was partitioned for {planned}, but the build targets {chip.name}")


def _run_codegen(mod: tvm.IRModule) -> tvm.IRModule:
    """RunCodegen with the module's host-only functions hidden from it.

    TVM's RunCodegen follows calls into every function and never returns from a
    recursive one (a TFLite ``While`` imports as a function that calls itself),
    so the host functions other than ``main`` are swapped for extern stubs while
    it runs and put back unchanged afterwards; nothing in them is offloaded."""
    hidden = {gvar: func for gvar, func in mod.functions.items()
              if gvar.name_hint != "main" and isinstance(func, relax.Function)
              and not (func.attrs or {}).get("Codegen")}
    if not hidden:
        return relax.transform.RunCodegen()(mod)
    for gvar in hidden:
        mod[gvar] = relax.ExternFunc(gvar.name_hint)
    mod = relax.transform.RunCodegen()(mod)
    for gvar, func in hidden.items():
        mod[gvar] = func
    return mod


def pipeline(chip: "str | Chip" = "bm1680", *, plan="layer_group_dp",
             passes: Sequence[tvm.transform.Pass] = (),
             base: Optional[tvm.transform.Pass] = None, dump_ir: Optional[Callable] = None):
    """A Relax pipeline for ``tvm.compile(mod, target="llvm", relax_pipeline=...)``:
    partition (if the module is not partitioned yet), the researcher's ``passes``,
    ``PlanRegions(plan)`` (layer groups and tiling, written to each region's
    ``sophon.plan`` attribute), RunCodegen, then TVM's default build pipeline.

    ``plan`` is a strategy name (``layer_group_dp``, ``layer_by_layer``) or a
    callable ``(Region, Chip) -> Plan``. ``dump_ir(stage, mod)``, if given, sees
    the module after every stage (``partition``, each pass's name, ``plan``).
    """
    chip = get_chip(chip)
    base = base or relax.pipeline.default_build_pipeline()

    @tvm.transform.module_pass(opt_level=0, name="SophonPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        show = dump_ir or (lambda stage, m: None)
        if not is_partitioned(mod):
            mod = partition_for_sophon(mod, chip=chip)
        _check_chip(mod, chip)
        show("partition", mod)
        for extra in passes:
            mod = extra(mod)
            show(extra.info.name, mod)
        mod = PlanRegions(plan)(mod)
        show("plan", mod)
        mod = _run_codegen(mod)
        return base(HostTransposeConvLayout()(mod))

    return _pipeline


def build(mod: tvm.IRModule, params: Optional[dict] = None, *, chip: "str | Chip" = "bm1680",
          target="llvm", plan="layer_group_dp", quantize=None,
          quantize_method: str = "kl") -> tvm.runtime.Executable:
    """Partition (if needed), plan, generate and compile the chip's code, build the
    host part with TVM: a ``tvm.runtime.Executable`` for ``relax.VirtualMachine``.

    ``quantize``: calibration data (batches of inputs) to quantize an FP32 model to
    INT8 first (``tvm_sophon.quantize``; needs an INT8 chip such as ``bm1684``)."""
    chip = get_chip(chip)
    if quantize is not None:
        if not chip.has_int8:  # before calibrating, which takes a while
            raise SophonCompileError(f"quantize needs an INT8 chip, but {chip.name} is FP32 only; "
                              "build with chip=\"bm1684\"")
        if is_partitioned(mod):
            raise SophonError("quantize before partitioning: pass the FP32 model to build(..., quantize=...)")
        from .quantize import quantize as _quantize

        mod = _quantize(mod, quantize, params=params, method=quantize_method, progress=False)
        params = None
    if not is_partitioned(mod):
        mod = partition_for_sophon(mod, params, chip=chip)
    elif params:
        raise SophonError("the module is already partitioned: bind params with partition_for_sophon(mod, params)")
    return tvm.compile(mod, target=target, relax_pipeline=pipeline(chip, plan=plan))
