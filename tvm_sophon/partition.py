"""Partitioning: which parts of a Relax module run on the chip.

``partition_for_sophon`` fuses the sophon patterns into composites
(FuseOpsByPattern), merges adjacent composites into regions
(MergeCompositeFunctions), and tags each region with the chip profile it was
planned for. Everything else stays on the host; the offload report says which op
stayed and why (the first failing hardware rule, or that no pattern covers it).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Optional

import numpy as np
import tvm
from tvm import relax

from . import patterns
from .chip import Chip, get_chip
from .errors import SophonCompileError
from .quant import is_quantized

logger = logging.getLogger("tvm_sophon")

CHIP_ATTR = "sophon.chip"
REPORT_ATTR = "sophon.offload_report"


@dataclasses.dataclass
class HostOp:
    var: str
    op: str
    shape: Optional[tuple]
    reason: str
    macs: int = 0


@dataclasses.dataclass
class Region:
    symbol: str
    composites: list[str]
    macs: int


@dataclasses.dataclass
class OffloadReport:
    chip: str
    regions: list[Region]
    host_ops: list[HostOp]

    @property
    def offloaded(self) -> list[str]:
        return [name for r in self.regions for name in r.composites]

    @property
    def offloaded_macs(self) -> int:
        return sum(r.macs for r in self.regions)

    @property
    def host_macs(self) -> int:
        return sum(op.macs for op in self.host_ops)

    @property
    def offloaded_mac_share(self) -> float:
        total = self.offloaded_macs + self.host_macs
        return 1.0 if total == 0 else self.offloaded_macs / total

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "OffloadReport":
        data = json.loads(text)
        return cls(data["chip"], [Region(**r) for r in data["regions"]],
                   [HostOp(**{**h, "shape": tuple(h["shape"]) if h["shape"] is not None else None})
                    for h in data["host_ops"]])

    def format(self) -> str:
        lines = [f"offload report for {self.chip}: {len(self.regions)} region(s), "
                 f"{len(self.offloaded)} op(s) on the chip, {len(self.host_ops)} on the host, "
                 f"{100 * self.offloaded_mac_share:.1f}% of MACs offloaded"]
        for r in self.regions:
            lines.append(f"  chip  {r.symbol}: {', '.join(r.composites)}")
        for op in self.host_ops:
            lines.append(f"  host  {op.var} = {op.op}{list(op.shape) if op.shape else ''}: {op.reason}")
        return "\n".join(lines)


# ------------------------------------------------------------------ MACs

CONV_OPS = {f"relax.nn.conv{d}d": False for d in (1, 2, 3)}
CONV_OPS.update({f"relax.nn.conv{d}d_transpose": True for d in (1, 2)})


def call_macs(call: relax.Call) -> int:
    """Multiply-accumulates of one op call: every convolution (1-D, 2-D, 3-D,
    transposed), matmul (batched too); 0 for ops without multiply-accumulates."""
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
        return 0
    name = call.op.name
    if name in CONV_OPS:
        x, w = patterns.static_shape(call.args[0]), patterns.static_shape(call.args[1])
        out = patterns.static_shape(call)
        if x is None or w is None or out is None:
            return 0
        layout = str(call.attrs.kernel_layout)
        if CONV_OPS[name]:
            # transposed: every input element is scattered over (O / groups) x kernel outputs
            return int(np.prod(x)) * (int(np.prod(w)) // w[layout.index("I")])
        return int(np.prod(out)) * (int(np.prod(w)) // w[layout.index("O")])
    if name == "relax.matmul":
        x, out = patterns.static_shape(call.args[0]), patterns.static_shape(call)
        return int(np.prod(out)) * x[-1] if x and out is not None else 0
    return 0


def function_macs(func: relax.Function, mod: Optional[tvm.IRModule] = None) -> int:
    """MACs of one function's op calls; with ``mod``, also of the functions it
    calls (each counted once: a loop's body is counted for one iteration)."""
    total, seen = 0, set()

    def visit(expr):
        nonlocal total
        if isinstance(expr, relax.Call):
            total += call_macs(expr)
            if mod is not None and isinstance(expr.op, relax.GlobalVar) and expr.op.name_hint not in seen:
                seen.add(expr.op.name_hint)
                callee = mod[expr.op]
                if isinstance(callee, relax.Function):
                    relax.analysis.post_order_visit(callee.body, visit)

    relax.analysis.post_order_visit(func.body, visit)
    return total


# ------------------------------------------------------------------ partition

def _is_sophon_region(mod: tvm.IRModule, callee) -> bool:
    if not isinstance(callee, relax.GlobalVar):
        return False
    func = mod[callee]
    return isinstance(func, relax.Function) and (func.attrs or {}).get("Codegen") == "sophon"


def _composites(func: relax.Function) -> list[str]:
    """Pattern names of a region's composite calls, in order (one per call: identical
    composites may share one function)."""
    functions, names = {}, []
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Function):
                functions[binding.var] = value
            elif isinstance(value, relax.Call):
                fn = functions.get(value.op, value.op)
                if isinstance(fn, relax.Function) and "Composite" in (fn.attrs or {}):
                    names.append(str(fn.attrs["Composite"]))
    return names


def _build_report(mod: tvm.IRModule, chip: Chip, rejections: dict) -> OffloadReport:
    regions, host_ops = [], []
    main = mod["main"]
    for block in main.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if not isinstance(value, relax.Call):
                continue
            if _is_sophon_region(mod, value.op):
                region = mod[value.op]
                regions.append(Region(value.op.name_hint, _composites(region), function_macs(region)))
                continue
            name = binding.var.name
            if isinstance(value.op, relax.GlobalVar) and isinstance(mod[value.op], relax.Function):
                callee = value.op.name_hint
                host_ops.append(HostOp(name, callee, None,
                                       f"host function {callee} (control flow or a nested function: "
                                       f"only main is partitioned) runs on the host",
                                       function_macs(mod[value.op], mod)))
                continue
            if not isinstance(value.op, tvm.ir.Op):
                continue
            reasons = rejections.get(name)
            if reasons:
                # the smallest rejected match rooted at this op: its own pattern's reason
                reason = min(reasons, key=lambda r: r[0])[1]
            else:
                reason = f"no sophon pattern covers {value.op.name}"
            host_ops.append(HostOp(name, value.op.name, patterns.static_shape(value)
                                   if isinstance(value.ty, relax.TensorType) else None,
                                   reason, call_macs(value)))
    return OffloadReport(chip.name, regions, host_ops)


def _tag_regions(mod: tvm.IRModule, chip: Chip) -> tvm.IRModule:
    for gvar, func in list(mod.functions.items()):
        if isinstance(func, relax.Function) and (func.attrs or {}).get("Codegen") == "sophon":
            mod[gvar] = func.with_attr(CHIP_ATTR, chip.to_json())
    return mod


CONST_ARGS_ATTR = "sophon.const_args"
MAX_CONST_ARG_ELEMENTS = 4096


def _record_constant_args(mod: tvm.IRModule) -> tvm.IRModule:
    """Write the small float32/int32/int8 constant arguments of each int8 region
    (quantization scales, zero points) and the scalar constants of each float
    region (an activation chain's parameters) into its ``sophon.const_args``
    attribute, so the codegen computes requantization and activation parameters
    at compile time. Weights stay runtime arguments."""
    main = mod["main"]
    for block in main.body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not (isinstance(call, relax.Call) and _is_sophon_region(mod, call.op)):
                continue
            func = mod[call.op]
            # int8 regions need their scales and zero points; float regions the
            # scalar constants of activation chains (ELU's alpha, ...)
            int8 = any(name.startswith("sophon.q") for name in _composites(func))
            limit = MAX_CONST_ARG_ELEMENTS if int8 else 1
            consts = {}
            for param, arg in zip(func.params, call.args):
                value = patterns.constant_value(arg)
                if value is not None and value.dtype in (np.float32, np.int32, np.int8) \
                        and value.size <= limit:
                    consts[param.name] = {"dtype": str(value.dtype), "shape": list(value.shape),
                                          "values": value.ravel().tolist()}
            if consts:
                mod[call.op] = func.with_attr(CONST_ARGS_ATTR, json.dumps(consts))
    return mod


def _merge_composites(mod: tvm.IRModule) -> tvm.IRModule:
    """MergeCompositeFunctions, over ``main`` only.

    The pass groups the composite calls of ``main`` but rewrites every function of
    the module with that grouping, so a module with other functions (a TFLite
    ``While`` imports as loop, cond and body functions) fails inside TVM
    ("Variable lv could not be found in any group"). Patterns are fused in
    ``main`` only; the other functions are hidden from the rewrite as primitive
    ones and restored unchanged afterwards: they run on the host."""
    others = {gvar: func for gvar, func in mod.functions.items()
              if gvar.name_hint != "main" and isinstance(func, relax.Function)
              and "Composite" not in (func.attrs or {})}
    for gvar, func in others.items():
        mod[gvar] = func.with_attr("Primitive", 1)
    mod = relax.transform.MergeCompositeFunctions()(mod)
    for gvar, func in others.items():
        if any(g.same_as(gvar) for g in mod.get_global_vars()):
            mod[gvar] = func
    return mod


def is_partitioned(mod: tvm.IRModule) -> bool:
    return any(isinstance(f, relax.Function) and (f.attrs or {}).get("Codegen") == "sophon"
               for f in mod.functions.values())


def partition_for_sophon(mod: tvm.IRModule, params: Optional[dict] = None, *,
                         chip: "str | Chip" = "bm1680") -> tvm.IRModule:
    """Offload what the chip runs to functions with ``Codegen="sophon"``.

    ``params`` (name -> array) are bound into ``main`` first, so weights become
    constants the regions receive as arguments. The report of what stayed on the
    host and why is logged (logger ``tvm_sophon``) and kept on the module; read it
    with :func:`offload_report`.
    """
    chip = get_chip(chip)
    if params:
        mod = relax.transform.BindParams("main", {k: tvm.runtime.tensor(np.asarray(v)) for k, v in params.items()})(mod)
    if not is_quantized(mod):
        # folds reshapes/transposes of weights; a quantized model keeps its
        # dequantize(weight) chains, which the int8 patterns take whole
        mod = relax.transform.FoldConstant()(mod)
    rejections: dict = {}
    token = patterns.record_rejections(rejections)
    try:
        mod = relax.transform.FuseOpsByPattern(
            patterns.sophon_patterns(), bind_constants=False, annotate_codegen=False,
            entry_functions=["main"])(mod)
    finally:
        patterns.stop_recording(token)
    mod = _merge_composites(mod)
    mod = _tag_regions(mod, chip)
    mod = _record_constant_args(mod)
    report = _build_report(mod, chip, rejections)
    int8 = sorted({c for r in report.regions for c in r.composites if c.startswith("sophon.q")})
    if int8 and not chip.has_int8:
        raise SophonCompileError(
            f"the model is quantized to int8 ({', '.join(int8)}), but {chip.name} has no INT8 datapath "
            f"(FP32 only); compile it for an INT8 chip profile: chip=\"bm1684\"")
    for line in report.format().splitlines():
        logger.info(line)
    return mod.with_attr(REPORT_ATTR, report.to_json())


def offload_report(mod: tvm.IRModule) -> OffloadReport:
    """The offload report of a module returned by :func:`partition_for_sophon`."""
    attrs = mod.attrs or {}
    if REPORT_ATTR not in attrs:
        raise ValueError("module was not partitioned by tvm_sophon.partition_for_sophon")
    return OffloadReport.from_json(str(attrs[REPORT_ATTR]))
