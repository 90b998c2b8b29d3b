"""Data movement: ops that only move elements (reshape, transpose, slice, concat,
pad, broadcast, tile). The chip runs them as GDMA work or as views of DDR
buffers, with no compute (codegen/movement.py); the importers' depth-to-space,
space-to-depth and channel shuffle are reshape -> permute_dims -> reshape chains
of these.

``split`` never reaches these patterns: partitioning rewrites it into one
``strided_slice`` per output (normalize.SplitToSlices), and a ``pad`` in front
of a conv or pool becomes that layer's padding where it can
(normalize.FoldPadIntoWindow).

Movement ops take tensors of any rank (a channel shuffle goes through 5-D, a
depth-to-space through 6-D): the GDMA moves them as 4-D strided pieces.
"""
from __future__ import annotations

import math
from typing import Optional

from tvm import relax
from tvm.relax.dpl import is_op, is_tuple, wildcard
from tvm.relax.transform import FusionPattern

from .rules import dtype_of, make_check, pattern_name, static_shape

# op -> number of operands after the data (shape, axes, ...), matched as wildcards
UNARY_MOVES = {
    "reshape": ("relax.reshape", 1),
    "flatten": ("relax.flatten", 0),
    "squeeze": ("relax.squeeze", 0),
    "expand_dims": ("relax.expand_dims", 0),
    "permute_dims": ("relax.permute_dims", 0),
    "strided_slice": ("relax.strided_slice", 3),   # axes, begin, end (+ strides: below)
    "broadcast_to": ("relax.broadcast_to", 1),
    "tile": ("relax.tile", 0),
    "pad": ("relax.nn.pad", 0),
}
MOVEMENT_OPS = {op for op, _ in UNARY_MOVES.values()} | {"relax.concat"}
# concat's operands are a tuple of fixed arity in a pattern: concats of more
# inputs are nested by normalize.NestWideConcat, which the chip runs as one
MAX_CONCAT_INPUTS = 8


# moved as bytes: float32 models, and int8 ones (their quantization is unchanged
# by a move; the int8 patterns take a dequantize -> concat -> quantize whole)
MOVABLE_DTYPES = ("float32", "int8")


def rule_movable_dtype(ann: dict) -> Optional[str]:
    """Every operand and the result are float32, or every one is int8."""
    dtypes = {dtype_of(e) for e in ann.values() if isinstance(e.ty, relax.TensorType)}
    if not dtypes <= set(MOVABLE_DTYPES):
        other = sorted(dtypes - set(MOVABLE_DTYPES))[0]
        return f"moves {other} tensors; the chip moves float32 and int8 ones"
    if len(dtypes) > 1:
        return "mixes float32 and int8 tensors (a cast is compute)"
    return None


def rule_static_shapes(ann: dict) -> Optional[str]:
    """Every operand and the result have static shapes (the GDMA views are fixed)."""
    for key, expr in ann.items():
        if isinstance(expr.ty, relax.TensorType) and static_shape(expr) is None:
            return f"{key} has a dynamic shape; the chip's data movement is planned for static shapes"
    return None


def rule_strided_slice(ann: dict) -> Optional[str]:
    root = ann["root"]
    for arg in root.args[1:]:
        if not isinstance(arg, relax.Tuple) and not hasattr(arg, "values"):
            return "strided_slice bounds are not constants"
        for v in (arg.fields if isinstance(arg, relax.Tuple) else arg.values):
            if not hasattr(v, "value"):
                return "strided_slice bounds are not constants"
    return None


def rule_pad(ann: dict) -> Optional[str]:
    attrs = ann["root"].attrs
    if str(attrs.pad_mode) != "constant":
        return f"pad mode {attrs.pad_mode} (the chip's GDMA fills constants only)"
    if any(int(p) < 0 for p in attrs.pad_width):
        return "negative pad width (a crop: expected as strided_slice)"
    value = getattr(attrs.pad_value, "value", attrs.pad_value)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"pad value {value} (the GDMA fill takes a finite constant)"
    if dtype_of(ann["root"]) == "int8" and (value != int(value) or not -128 <= value <= 127):
        return f"pad value {value} is not an int8 value (an int8 pad fills with its zero point)"
    return None


def patterns() -> list[FusionPattern]:
    table = []
    for name, (op_name, n_extra) in UNARY_MOVES.items():
        data = wildcard()
        root = is_op(op_name)(data, *(wildcard() for _ in range(n_extra)))
        if name == "strided_slice":
            root = root | is_op(op_name)(data, *(wildcard() for _ in range(n_extra + 1)))
        rules = [rule_movable_dtype, rule_static_shapes]
        if name == "strided_slice":
            rules.append(rule_strided_slice)
        if name == "pad":
            rules.append(rule_pad)
        table.append(FusionPattern(pattern_name(name), root, {"input": data, "root": root},
                                   make_check(*rules)))
    for arity in range(1, MAX_CONCAT_INPUTS + 1):
        fields = [wildcard() for _ in range(arity)]
        root = is_op("relax.concat")(is_tuple(fields))
        ann = {f"input{i}": f for i, f in enumerate(fields)}
        ann["root"] = root
        table.append(FusionPattern(pattern_name("concat"), root, ann,
                                   make_check(rule_movable_dtype, rule_static_shapes)))
    return table


HOST_REASON = "data movement with no chip op before or after it stays with its neighbours on the host"


def composite_calls(mod) -> dict:
    """The sophon composite calls of ``main`` after FuseOpsByPattern: bound var ->
    (pattern, composite function, call)."""
    calls = {}
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
                func = mod[value.op]
                name = (func.attrs or {}).get("Composite")
                if name is not None and str(name).startswith("sophon."):
                    calls[binding.var] = (str(name), func, value)
    return calls


def call_operands(call) -> list:
    """A composite call's arguments, a tuple argument's fields as well."""
    fields = call.args[0].fields if call.args and isinstance(call.args[0], relax.Tuple) else []
    return [*call.args, *fields]


def inline_composites(mod, calls: dict, chosen: set):
    """``mod`` with the single-op composite calls bound to the vars in ``chosen``
    (keys of :func:`composite_calls`) put back as plain ops: they run on the host."""
    @relax.expr_functor.mutator
    class _Inline(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            if binding.var not in chosen:
                return super().visit_var_binding_(binding)
            _, func, call = calls[binding.var]
            env = {p: self.visit_expr(a) for p, a in zip(func.params, call.args)}
            root = func.body.blocks[0].bindings[0].value

            def arg(expr):
                if isinstance(expr, relax.Tuple):
                    return relax.Tuple([arg(f) for f in expr.fields])
                return env.get(expr, expr)

            new = relax.Call(root.op, [arg(a) for a in root.args], root.attrs, root.ty_args)
            self.builder_.emit_normalized(relax.VarBinding(binding.var, self.builder_.normalize(new)))

    main = _Inline(mod).visit_expr(mod["main"])
    mod = mod.clone() if hasattr(mod, "clone") else mod
    mod["main"] = main
    return relax.transform.DeadCodeElimination()(mod)


def keep_lonely_moves_on_host(mod):
    """Undo the fusion of movement composites that touch no compute composite
    (through other movement composites or directly): a reshape between two host
    ops would be a chip region of its own that only moves data there and back.
    Run between FuseOpsByPattern and MergeCompositeFunctions. Returns the module
    and the names of the bindings given back to the host."""
    calls = composite_calls(mod)
    moving = {v for v, (name, _, _) in calls.items() if name.split(".", 1)[1] in MOVEMENT_NAMES}
    parent = {v: v for v in calls}

    def find(v):
        while parent[v] is not v:
            v = parent[v]
        return v

    for var, (_, _, call) in calls.items():
        for arg in call_operands(call):
            if isinstance(arg, relax.Var) and arg in calls and (var in moving or arg in moving):
                parent[find(arg)] = find(var)
    with_compute = {find(v) for v in calls if v not in moving}
    lonely = {v for v in moving if find(v) not in with_compute}
    if not lonely:
        return mod, []
    return inline_composites(mod, calls, lonely), sorted(v.name for v in lonely)


MOVEMENT_NAMES = set(UNARY_MOVES) | {"concat"}
