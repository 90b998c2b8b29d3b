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
from .names import model_name, span_of
from tvm.relax.utils import copy_with_new_vars
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


def _calls_itself(mod: tvm.IRModule, gvar: relax.GlobalVar) -> bool:
    """``gvar``'s function calls itself, directly or through the functions it calls."""
    seen, todo = set(), [gvar]
    while todo:
        callees: list = []
        relax.analysis.post_order_visit(
            mod[todo.pop()].body,
            lambda e: callees.append(e.op) if isinstance(e, relax.Call) and isinstance(e.op, relax.GlobalVar) else None)
        for callee in callees:
            if callee.same_as(gvar):
                return True
            if callee.name_hint not in seen and isinstance(mod[callee], relax.Function):
                seen.add(callee.name_hint)
                todo.append(callee)
    return False


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
                what = (f"host function {callee} is a loop (it calls itself: a TFLite WHILE, an RNN's "
                        f"recurrence over time steps), control flow that stays on the host by design"
                        if _calls_itself(mod, value.op) else f"host function {callee} (control flow or a "
                        f"nested function) runs on the host")
                host_ops.append(HostOp(name, callee, None, what + ": only main is partitioned",
                                       function_macs(mod[value.op], mod)))
                continue
            if not isinstance(value.op, tvm.ir.Op):
                continue
            reasons = rejections.get(name)
            if reasons and value.op.name not in patterns.movement.MOVEMENT_OPS:
                # bound names repeat: a movement op's reason under this name was another op's
                reasons = [r for r in reasons if r[1] != patterns.movement.HOST_REASON]
            if reasons:
                # the smallest rejected match rooted at this op: its own pattern's reason
                reason = min(reasons, key=lambda r: r[0])[1]
            else:
                reason = f"no sophon pattern covers {value.op.name}"
            host_ops.append(HostOp(model_name(value) or name, value.op.name, patterns.static_shape(value)
                                   if isinstance(value.ty, relax.TensorType) else None,
                                   reason, call_macs(value)))
    return OffloadReport(chip.name, regions, host_ops)


# ------------------------------------------------------------------ layer names
#
# The frontends put the model's node names into the spans of the ops (names.py).
# FuseOpsByPattern shares one composite function among structurally equal
# matches (spans do not count), so two identical residual adds would both read
# the first one's name. Each accepted match is recorded with its inputs and its
# root's name; after fusion every call site whose shared function carries
# another layer's name gets a copy named after its own match.

LAYER_ATTR = "sophon.layer"


def _recording_matches(table, matches: list) -> list:
    def recorder(name, check):
        def run(ctx) -> bool:
            ok = check(ctx) if check is not None else True
            if ok:
                bound = set(ctx.matched_bindings.keys())
                inputs = []
                for value in ctx.matched_bindings.values():
                    for arg in getattr(value, "args", []):
                        # concat((a, b)): the tuple's fields are the inputs
                        for leaf in arg.fields if isinstance(arg, relax.Tuple) else [arg]:
                            if isinstance(leaf, (relax.Var, tvm.ir.expr.Constant)) and leaf not in bound:
                                inputs.append(leaf)
                out = ctx.value_to_bound_var.get(ctx.matched_expr)
                matches.append((name, inputs, out, _root_name(ctx)))
            return ok
        return run

    return [relax.transform.FusionPattern(p.name, p.pattern, p.annotation_patterns,
                                          recorder(p.name, p.check), p.attrs_getter) for p in table]


def _root_name(ctx) -> Optional[str]:
    """The name of the match's first op (the one whose inputs all come from outside)."""
    bound = set(ctx.matched_bindings.keys())
    firsts = [v for v in ctx.matched_bindings.values()
              if not any(isinstance(a, relax.Var) and a in bound for a in getattr(v, "args", []))]
    return next((model_name(v) for v in firsts if model_name(v)), None)


@relax.expr_functor.mutator
class _Rename(relax.PyExprMutator):
    def __init__(self, name: str):
        super().__init__()
        self.span = span_of(name)

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if isinstance(call.op, tvm.ir.Op):
            return relax.Call(call.op, call.args, call.attrs, call.ty_args, span=self.span)
        return call


def _function_name(func) -> Optional[str]:
    names = []
    relax.analysis.post_order_visit(func, lambda e: names.append(model_name(e)) if isinstance(e, relax.Call) else None)
    return next((n for n in names if n), None)


def _unshare_composites(mod: tvm.IRModule, matches: list) -> tvm.IRModule:
    main = mod["main"]
    blocks = main.body.blocks
    if not matches or len(blocks) != 1 or not isinstance(blocks[0], relax.DataflowBlock):
        return mod
    original: dict = {}     # var after fusion -> the var it replaced
    copies: dict = {}       # (function, name) -> its copy's GlobalVar
    bb = relax.BlockBuilder(mod)
    callee_of: dict = {}
    for binding in blocks[0].bindings:
        call = binding.value
        if not (isinstance(call, relax.Call) and isinstance(call.op, relax.GlobalVar)):
            continue
        func = mod[call.op]
        pattern = (func.attrs or {}).get("Composite")
        if pattern is None:
            continue
        # FuseOpsByPattern fuses one pattern at a time: a match records the vars it
        # saw, the originals (same pattern) or the vars of earlier patterns' calls
        reps = set(call.args) | {original[a] for a in call.args if a in original}
        found = [m for m in matches if m[0] == str(pattern) and len(set(m[1])) == len(set(call.args))
                 and all(i in reps for i in m[1])]
        if not found:
            continue
        _, _, out, name = found[0]
        matches.remove(found[0])
        if out is not None:
            original[binding.var] = out
        if not name:
            continue
        if _function_name(func) == name:
            # the name also as an attribute: MergeCompositeFunctions rebuilds a call
            # with a tuple argument (concat) without its span
            if (func.attrs or {}).get(LAYER_ATTR) is None:
                bb.update_func(call.op, func.with_attr(LAYER_ATTR, name))
            continue
        key = (call.op, name)
        if key not in copies:
            # the attribute keeps the copy apart: add_func shares structurally equal functions
            copy = _Rename(name).visit_expr(copy_with_new_vars(func)).with_attr(LAYER_ATTR, name)
            copies[key] = bb.add_func(copy, f"{call.op.name_hint}_{len(copies)}")
        callee_of[binding.var] = copies[key]
    if not callee_of:
        return bb.get()
    return _with_callees(bb.get(), main, callee_of)


def _with_callees(mod: tvm.IRModule, main: relax.Function, callee_of: dict) -> tvm.IRModule:
    """``mod`` with ``main`` (one dataflow block) rebuilt, the calls bound to the
    vars of ``callee_of`` calling their new callee."""
    def rewrite(bb, binding, call):
        op = callee_of.get(binding.var, call.op)
        return relax.Call(op, call.args, call.attrs, call.ty_args, span=call.span)

    mod["main"] = _rebuild_main(main, rewrite)
    return mod


def _rebuild_main(main: relax.Function, rewrite) -> relax.Function:
    """``main`` (one dataflow block) bound again binding by binding, each call
    (its arguments already substituted) replaced by ``rewrite(bb, binding, call)``."""
    remap: dict = {}

    def sub(e):
        if isinstance(e, relax.Var):
            return remap.get(e, e)
        if isinstance(e, relax.Tuple):  # an inline tuple argument: concat((a, b))
            return relax.Tuple([sub(f) for f in e.fields])
        if isinstance(e, relax.TupleGetItem):
            return relax.TupleGetItem(sub(e.tuple_value), e.index)
        return e

    bb = relax.BlockBuilder()
    with bb.function("main", list(main.params), attrs=dict(main.attrs or {})):
        with bb.dataflow():
            for binding in main.body.blocks[0].bindings:
                value = binding.value
                if isinstance(value, relax.Call):
                    value = rewrite(bb, binding, relax.Call(value.op, [sub(a) for a in value.args], value.attrs,
                                                            value.ty_args, span=value.span))
                else:
                    value = sub(value)
                emit = bb.emit if isinstance(binding.var, relax.DataflowVar) else bb.emit_output
                remap[binding.var] = emit(value, binding.var.name)
        body = main.body.body
        bb.emit_func_output(relax.Tuple([sub(f) for f in body.fields]) if isinstance(body, relax.Tuple) else sub(body))
    return bb.get()["main"]


def _operands(value) -> list:
    """The vars a binding's value reads, through inline tuples (``concat((a, b))``)."""
    if isinstance(value, relax.Call):
        return [v for a in value.args for v in _operands(a)]
    if isinstance(value, relax.Tuple):
        return [v for f in value.fields for v in _operands(f)]
    if isinstance(value, relax.TupleGetItem):
        return _operands(value.tuple_value)
    return [value] if isinstance(value, relax.Var) else []


def _dequantize_per_layer(mod: tvm.IRModule) -> tvm.IRModule:
    """Give each int8 layer reading a shared ``dequantize`` its own copy.

    The importers write one dequantize per consuming layer, and each int8 pattern
    takes its own (``dequantize -> op(s) -> quantize``); a rewrite that merges
    equal expressions (``rewrite_call`` does) leaves one dequantize feeding two
    layers, and the first composite to take it would have to export a float
    tensor. A layer is told by the quantize its float ops lead to: consumers
    that reach the same quantizes (the ops of one hard-swish chain) keep
    sharing one copy."""
    main = mod["main"]
    blocks = main.body.blocks
    if len(blocks) != 1 or not isinstance(blocks[0], relax.DataflowBlock):
        return mod
    bindings = blocks[0].bindings
    users: dict = {}
    for binding in bindings:
        for arg in _operands(binding.value):
            users.setdefault(arg, []).append(binding.var)

    def is_op(value, name):
        return isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == name

    reach: dict = {}    # var -> the quantizes its value flows into through float ops
    for binding in reversed(bindings):
        if is_op(binding.value, "relax.quantize"):
            reach[binding.var] = frozenset([binding.var])
        else:
            reach[binding.var] = frozenset().union(*(reach.get(u, frozenset()) for u in users.get(binding.var, [])))
    shared = {b.var for b in bindings if is_op(b.value, "relax.dequantize")
              and len({reach[u] for u in users.get(b.var, [])}) > 1}
    if not shared:
        return mod
    rebuilt: dict = {}   # shared dequantize's var -> its call, arguments substituted
    copies: dict = {}    # (shared var, the layer's quantizes) -> the layer's copy

    def rewrite(bb, binding, call):
        if binding.var in shared:
            rebuilt[binding.var] = call
            return call
        if not any(arg in shared for arg in _operands(binding.value)):
            return call

        def copy(old, new):
            if isinstance(old, relax.Tuple):
                return relax.Tuple([copy(o, n) for o, n in zip(old.fields, new.fields)])
            if old not in shared:
                return new
            key = (old, reach[binding.var])
            if key not in copies:
                dq = rebuilt[old]
                copies[key] = bb.emit(relax.Call(dq.op, dq.args, dq.attrs, dq.ty_args, span=dq.span))
            return copies[key]

        args = [copy(old, new) for old, new in zip(binding.value.args, call.args)]
        return relax.Call(call.op, args, call.attrs, call.ty_args, span=call.span)

    return relax.transform.DeadCodeElimination()(_with_main(mod, _rebuild_main(main, rewrite)))


def _activation_after_quantize(mod: tvm.IRModule) -> tvm.IRModule:
    """``quantize(relu(y))`` -> ``clip(quantize(y), zp, 127)``, and a float clip
    before an int8 quantize likewise: quantization is monotonic, so clamping the
    int8 result at the quantized bounds is the same function, and it is how
    TFLite computes a fused activation (the output clamped to the quantized
    activation range). TVM's TFLite importer writes an int8 ADD with a fused ReLU
    as a float relu between add and quantize; the int8 patterns take the clip
    after the quantize. A lone activation of a dequantized tensor (TFLite's int8
    RELU / RELU6 / RELU_N1_TO_1) stays as it is: ``sophon.qrelu`` takes it whole."""
    from tvm.relax.dpl import is_op, wildcard

    from .normalize import rewrite_call

    y, scale, zp = wildcard(), wildcard(), wildcard()
    act = is_op("relax.nn.relu")(y) | is_op("relax.clip")(y, wildcard(), wildcard())
    quantize = is_op("relax.quantize")(act, scale, zp)
    bound = {b.var: b.value for block in mod["main"].body.blocks for b in block.bindings}

    def rewriter(call, matches):
        s, z = patterns.constant_value(matches[scale]), patterns.constant_value(matches[zp])
        if s is None or z is None or s.size != 1 or z.size != 1 or str(call.attrs.out_dtype) != "int8":
            return call
        a = matches[act]
        data = bound.get(a.args[0], a.args[0])
        if isinstance(data, relax.Call) and getattr(data.op, "name", "") == "relax.dequantize":
            return call
        lo, hi = 0.0, float("inf")
        if a.op.name == "relax.clip":
            bounds = [getattr(b, "value", None) for b in a.args[1:]]
            if not all(isinstance(b, (tvm.ir.prim.expr.IntImm, tvm.ir.prim.expr.FloatImm)) for b in bounds):
                return call
            lo, hi = (float(b.value) for b in bounds)

        def q(v):  # as the importer quantizes activation bounds
            return min(127.0, max(-128.0, float(round(v / float(s.item())) + int(z.item())))) \
                if np.isfinite(v) else (127.0 if v > 0 else -128.0)

        inner = relax.Call(call.op, [matches[y], matches[scale], matches[zp]], call.attrs, call.ty_args,
                           span=call.span)
        return relax.op.clip(inner, q(lo), q(hi))

    return _with_main(mod, rewrite_call(quantize, rewriter, mod["main"]))


def _with_main(mod: tvm.IRModule, main: relax.Function) -> tvm.IRModule:
    """A copy of ``mod`` with another ``main`` (the caller's module unchanged)."""
    new = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    new["main"] = main
    return new


@relax.expr_functor.mutator
class _RenameCallees(relax.PyExprMutator):
    def __init__(self, mapping: dict):
        super().__init__()
        self.mapping = mapping

    def visit_global_var_(self, op: relax.GlobalVar) -> relax.Expr:
        return self.mapping.get(op, op)


REGION_PREFIX = "sophon_"


def _name_regions(mod: tvm.IRModule) -> tvm.IRModule:
    """Give the regions short stable names, ``sophon_0``, ``sophon_1``, ... in the
    order ``main`` calls them, instead of TVM's fused op lists (up to ~1,500
    characters). The op list stays in the offload report beside each name."""
    order = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and _is_sophon_region(mod, value.op) and value.op not in order:
                order.append(value.op)
    if not order:
        return mod
    taken = {g.name_hint for g in mod.get_global_vars()}
    others = tvm.IRModule({g: f for g, f in mod.functions.items() if g not in order}, attrs=mod.attrs)
    bb = relax.BlockBuilder(others)
    mapping, k = {}, 0
    for old in order:
        while f"{REGION_PREFIX}{k}" in taken:
            k += 1
        name = f"{REGION_PREFIX}{k}"
        taken.add(name)
        mapping[old] = bb.add_func(mod[old].with_attr("global_symbol", name), name)  # a typed GlobalVar
    renamer = _RenameCallees(mapping)
    for gvar, func in others.functions.items():
        if isinstance(func, relax.Function):
            bb.update_func(gvar, renamer.visit_expr(func))
    return bb.get()


# A module attribute the frontend sets: whose integer arithmetic the int8 layers
# follow, "tflite" (TFLite's reference kernels, the default) or "onnxruntime" (an ONNX
# QDQ file: unary ops as float32 tables); copied onto each region
INT8_ARITHMETIC_ATTR = "sophon.int8_arithmetic"


def _tag_regions(mod: tvm.IRModule, chip: Chip, int8_arithmetic: Optional[str] = None) -> tvm.IRModule:
    for gvar, func in list(mod.functions.items()):
        if isinstance(func, relax.Function) and (func.attrs or {}).get("Codegen") == "sophon":
            func = func.with_attr(CHIP_ATTR, chip.to_json())
            mod[gvar] = func.with_attr(INT8_ARITHMETIC_ATTR, int8_arithmetic) if int8_arithmetic else func
    return mod


CONST_ARGS_ATTR = "sophon.const_args"
MAX_CONST_ARG_ELEMENTS = 4096


def _region_constants(func: relax.Function, call: relax.Call) -> dict:
    """The constant arguments of one call of a region that its code is compiled
    with: for an int8 region its small float32/int32/int8 constants (scales, zero
    points), for a float region its scalar constants (an activation chain's
    parameters, ELU's alpha, ...). Weights stay runtime arguments."""
    int8 = any(name.startswith("sophon.q") for name in _composites(func))
    limit = MAX_CONST_ARG_ELEMENTS if int8 else 1
    consts = {}
    for param, arg in zip(func.params, call.args):
        value = patterns.constant_value(arg)
        if value is not None and value.dtype in (np.float32, np.int32, np.int8) and value.size <= limit:
            consts[param.name] = {"dtype": str(value.dtype), "shape": list(value.shape),
                                  "values": value.ravel().tolist()}
    return consts


def _region_calls(mod: tvm.IRModule) -> list:
    return [binding for block in mod["main"].body.blocks for binding in block.bindings
            if isinstance(binding.value, relax.Call) and _is_sophon_region(mod, binding.value.op)]


def _unshare_regions(mod: tvm.IRModule) -> tvm.IRModule:
    """One region function per set of compile-time constants.

    Structurally equal regions share one function (MergeCompositeFunctions adds
    them through a BlockBuilder, which deduplicates), but their calls may pass
    different constants, e.g. two identical int8 layers with their own scales.
    The codegen compiles a region's constants in (``sophon.const_args``), so each
    call whose constants differ from an earlier call's gets a copy of its own;
    calls with equal constants keep sharing one function."""
    first: dict = {}         # region GlobalVar -> the constants its first call passes
    callee_of: dict = {}     # (region GlobalVar, constants) -> the function for them
    main = mod["main"]
    if len(main.body.blocks) != 1 or not isinstance(main.body.blocks[0], relax.DataflowBlock):
        return mod
    bb = relax.BlockBuilder(mod)
    rebind: dict = {}
    for binding in _region_calls(mod):
        call = binding.value
        func = mod[call.op]
        key = json.dumps(_region_constants(func, call), sort_keys=True)
        first.setdefault(call.op, key)
        if key == first[call.op]:
            continue
        if (call.op, key) not in callee_of:
            # the attribute keeps the copy apart: add_func shares structurally equal functions
            copy = copy_with_new_vars(func).with_attr("sophon.copy", len(callee_of) + 1)
            callee_of[(call.op, key)] = bb.add_func(copy, f"{call.op.name_hint}_copy{len(callee_of)}")
        rebind[binding.var] = callee_of[(call.op, key)]
    return _with_callees(bb.get(), main, rebind) if rebind else mod


def _record_constant_args(mod: tvm.IRModule) -> tvm.IRModule:
    """Write the compile-time constant arguments of each region
    (:func:`_region_constants`) into its ``sophon.const_args`` attribute, so the
    codegen computes requantization and activation parameters at compile time.
    Every call of one function passes the same constants (``_unshare_regions``)."""
    recorded: dict = {}
    for binding in _region_calls(mod):
        call = binding.value
        func = mod[call.op]
        consts = _region_constants(func, call)
        name = call.op.name_hint
        if name in recorded:
            if recorded[name] != consts:
                raise SophonCompileError(f"region {name} is called with different compile-time constants")
            continue
        recorded[name] = consts
        if consts:
            mod[call.op] = func.with_attr(CONST_ARGS_ATTR, json.dumps(consts))
    return mod


OUTSIDE_READERS_ATTR = "sophon.outside_readers"


def _record_outside_readers(mod: tvm.IRModule) -> tvm.IRModule:
    """Write into each region how many readers outside it each of its arguments and
    outputs has in ``main`` (``sophon.outside_readers``: JSON with "params" and
    "outputs"; the most over the calls of a shared function). The codegen of an ONNX
    QDQ model needs the readers of each int8 value (layers.onnxruntime_type)."""
    main = mod["main"]
    uses: dict = {}
    items: dict = {}  # a region call's var -> {tuple index: the var bound to that item}

    def count(expr) -> None:
        if isinstance(expr, relax.Var):
            uses[expr] = uses.get(expr, 0) + 1
        elif isinstance(expr, relax.Tuple):
            for field in expr.fields:
                count(field)
        elif isinstance(expr, relax.Call):
            for arg in expr.args:
                count(arg)
        elif isinstance(expr, relax.TupleGetItem):
            count(expr.tuple_value)

    for block in main.body.blocks:
        for binding in block.bindings:
            count(binding.value)
            if isinstance(binding.value, relax.TupleGetItem):
                items.setdefault(binding.value.tuple_value, {})[int(binding.value.index)] = binding.var
    count(main.body.body)
    recorded: dict = {}
    for binding in _region_calls(mod):
        call = binding.value
        params = [max(0, uses.get(arg, 0) - 1) if isinstance(arg, relax.Var) else 0 for arg in call.args]
        got = items.get(binding.var)
        outputs = ([uses.get(got[i], 0) for i in range(max(got) + 1)] if got else [uses.get(binding.var, 0)])
        old = recorded.get(call.op.name_hint)
        if old is not None:
            params = [max(a, b) for a, b in zip(params, old[1]["params"])]
            outputs = [max(a, b) for a, b in zip(outputs, old[1]["outputs"])]
        recorded[call.op.name_hint] = (call.op, {"params": params, "outputs": outputs})
    for gvar, readers in recorded.values():
        mod[gvar] = mod[gvar].with_attr(OUTSIDE_READERS_ATTR, json.dumps(readers))
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


def _check_well_formed(mod: tvm.IRModule, stage: str) -> None:
    """A one-line error instead of TVM's InternalError deep inside pattern fusion
    (FuseOpsByPattern / MergeCompositeFunctions fail on a variable used but never
    bound, and say only ``memo_.count(...) is false``)."""
    try:
        relax.analysis.well_formed(mod)
    except Exception as err:  # well_formed raises ValueError naming the variable
        text = str(err).strip().splitlines()
        raise SophonCompileError(f"{stage}: the Relax module is not well-formed, so it cannot be partitioned: "
                                 f"{text[-1] if text else type(err).__name__}") from None


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
    _check_well_formed(mod, "the module given")
    int8_arithmetic = (mod.attrs or {}).get(INT8_ARITHMETIC_ATTR)
    if params:
        mod = relax.transform.BindParams("main", {k: tvm.runtime.tensor(np.asarray(v)) for k, v in params.items()})(mod)
    if not is_quantized(mod):
        # folds reshapes/transposes of weights; a quantized model keeps its
        # dequantize(weight) chains, which the int8 patterns take whole
        mod = relax.transform.FoldConstant()(mod)
    from .normalize import movement_passes  # split -> slices, pads folded into windows
    mod = tvm.transform.Sequential(movement_passes())(mod)
    if is_quantized(mod):
        mod = _activation_after_quantize(mod)
        mod = _dequantize_per_layer(mod)
    _check_well_formed(mod, "after tvm_sophon's movement and int8 rewrites")
    rejections: dict = {}
    matches: list = []
    token = patterns.record_rejections(rejections, str(int8_arithmetic) if int8_arithmetic else None)
    try:
        mod = relax.transform.FuseOpsByPattern(
            _recording_matches(patterns.sophon_patterns(), matches), bind_constants=False,
            annotate_codegen=False, entry_functions=["main"])(mod)
    finally:
        patterns.stop_recording(token)
    mod = _unshare_composites(mod, matches)
    mod, lonely = patterns.movement.keep_lonely_moves_on_host(mod)
    for name in lonely:
        rejections.setdefault(name, []).append((0, patterns.movement.HOST_REASON))
    mod, edge = patterns.int8_cast.keep_edge_casts_on_host(mod, chip.has_int8)
    for name in edge:   # a cast that was the glue of a refused int8 chain keeps that reason
        rejections.setdefault(name, [(0, patterns.int8_cast.HOST_REASON)])
    mod = _merge_composites(mod)
    mod = _unshare_regions(mod)
    mod = _name_regions(mod)
    mod = _tag_regions(mod, chip, str(int8_arithmetic) if int8_arithmetic else None)
    mod = _record_constant_args(mod)
    if int8_arithmetic == "onnxruntime":
        mod = _record_outside_readers(mod)
    report = _build_report(mod, chip, rejections)
    int8 = sorted({c for r in report.regions for c in r.composites if c.startswith("sophon.q")})
    if int8 and not chip.has_int8:
        raise SophonCompileError(
            f"the model is quantized to int8 ({', '.join(int8)}), but {chip.name} has no INT8 datapath "
            f"(FP32 only); compile it for an INT8 chip profile: chip=\"bm1684\" (--chip bm1684 on the command line)")
    for line in report.format().splitlines():
        logger.info(line)
    return mod.with_attr(REPORT_ATTR, report.to_json())


def offload_report(mod: tvm.IRModule) -> OffloadReport:
    """The offload report of a module returned by :func:`partition_for_sophon`."""
    attrs = mod.attrs or {}
    if REPORT_ATTR not in attrs:
        raise ValueError("module was not partitioned by tvm_sophon.partition_for_sophon")
    return OffloadReport.from_json(str(attrs[REPORT_ATTR]))
