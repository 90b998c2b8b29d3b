"""Normalisation: rewrite what each frontend emits into the Relax the sophon
pattern table matches.

Frontends spell the same layer in different ways. These passes turn the spellings
the chip could run, but the patterns do not recognise, into the canonical form:

    call_tir(maximum|minimum, x, c)     -> maximum(x, c) | minimum(x, c)    ONNX Clip
    minimum(maximum(x, lo), hi)         -> clip(x, lo, hi)                 lo, hi scalar constants
    add(c, x)                           -> add(x, c)                       c constant (PyTorch Linear bias)
    batch_norm(conv2d(x, W) [+ b])[0]   -> conv2d(x, W * s) + (b - mean) * s + beta
                                           s = gamma / sqrt(var + eps)      (PyTorch Conv + BatchNorm)
    batch_norm(x)[0]                    -> x * s + (beta - mean * s)       inference batch norm elsewhere
    split(x)[i]                         -> strided_slice(x, ...)           a view of x on the chip
    concat(> 8 inputs)                  -> concat of concats               the patterns' arity
    concat(x0..xk), c = concat(x0..xj)  -> concat(c, xj+1..xk)             DenseNet's growing concats
    quantize(move(dequantize(x)))       -> move(x)                         one quantization: int8 moves
    dequantize(pad(x, zp))              -> pad(dequantize(x), 0)           an int8 pad before a conv
    conv2d|pool(pad(x))                 -> conv2d|pool(x), padding + pad   explicit "same" padding
    avg_pool3d(call_tir(pad, x))        -> avg_pool3d(x), padding + pad    torch's LRN via ONNX Pad
    call_tir(pad, x)                    -> nn.pad(x)                       any other ONNX Pad
    quantize(avg_pool3d(pad(dq(x))))    -> reshape(quantize(avg_pool2d(    torch's LRN in an ONNX QDQ
                                             dq(reshape(x)))))             model: an int8 average
    dropout(x)[0], reshape(x, shape(x)) -> x                               identities
    take(x, c, axis)                    -> reshape(strided_slice(x, ...))  c a constant arithmetic
                                                                           progression (torch's as_strided)
    sum(stack([broadcast_to(a), ...]))  -> add(a, ...)                     ONNX Sum (Max, Min, Mean too)
    clip(clip(x, a, b), c, d)           -> clip(x, max(a, c), min(b, d))   torch's relu6 in hard-swish
    x * 1, x / 1                        -> x                               torch's softplus (beta 1)
    x / c                               -> x * (1 / c)                     c constant, 1/c a normal float32
    power(x, 2), power(x, 0.5)          -> x * x, sqrt(x)

and, for the host part only (after partitioning, ``HostTransposeConvLayout``), a
``conv2d_transpose`` in a layout TVM cannot legalise goes through NCHW / IOHW.

TFLite needs none of them: its depthwise kernels arrive as ``HWOI`` and its dense
layers as ``permute_dims`` + ``matmul``, which the pattern table takes as they are.

:func:`normalize` runs them all (plus constant folding and dead-code removal)
and is what :mod:`tvm_sophon.frontend` applies after every import. Each rewrite
is also a standalone pass, so a test or a researcher can run one in isolation.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import tvm
from tvm import relax
from tvm.ir.prim.expr import GE, GT, LE, LT, And, FloatImm, IntImm, Max, Min, Sub
from .quant import is_quantized
from tvm.relax.dpl import is_const, is_op, is_tuple_get_item, wildcard
from tvm.relax.dpl import rewrite_call as _tvm_rewrite_call
from tvm.ir.expr import TensorLoad
from tvm.tirx import BufferStore

# ------------------------------------------------------------------ helpers


def _constant(expr) -> Optional[np.ndarray]:
    """The value of a relax constant, or None."""
    value = getattr(expr, "value", None) if isinstance(expr, tvm.ir.expr.Constant) else None
    return value.numpy() if hasattr(value, "numpy") else None


def _scalar_constant(expr) -> Optional[float]:
    value = _constant(expr)
    if value is None or value.size != 1:
        return None
    return float(value.reshape(()))


def rewrite_call(pattern, rewriter, func: relax.Function) -> relax.Function:
    """TVM's ``rewrite_call`` without its alias matches: the matcher also matches a
    variable through its binding (``gv = lv4`` where ``lv4 = concat(...)``, as a
    module's output often is) and would hand ``rewriter`` the variable. Such an
    alias is left as it is; the binding of the call itself is rewritten."""
    def on_expr(expr, matches):
        return expr if isinstance(expr, relax.Var) else rewriter(expr, matches)

    return _tvm_rewrite_call(pattern, on_expr, func)


def _function_pass(name: str, rewrite_function):
    """A module pass applying ``rewrite_function(func, mod) -> func`` to every
    Relax function of the module."""

    @tvm.transform.module_pass(opt_level=0, name=name)
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gvar, func in mod.functions.items():
            if isinstance(func, relax.Function) and "Codegen" not in (func.attrs or {}):
                new = rewrite_function(func, mod)
                if not new.same_as(func):
                    updates[gvar] = new
        if not updates:
            return mod
        mod = mod.clone()
        for gvar, func in updates.items():
            mod.update_func(gvar, func)
        return mod

    return _pass


# ------------------------------------------------------------------ ONNX Clip


def _stores(stmt, found: list) -> bool:
    """Collect the BufferStores of a simple loop nest; False if the body holds
    anything but loops, blocks, sequences and stores."""
    if isinstance(stmt, BufferStore):
        found.append(stmt)
        return True
    if hasattr(stmt, "seq"):
        return all(_stores(s, found) for s in stmt.seq)
    for attr in ("block", "body"):
        child = getattr(stmt, attr, None)
        if child is not None:
            return _stores(child, found)
    return False


def elementwise_min_max(prim_func) -> Optional[tuple[str, object]]:
    """("maximum"|"minimum", bound) if ``prim_func`` computes
    ``out[i] = max|min(A[i], bound)``, where bound is a float literal or the
    function's second (0-d) buffer parameter ("param"); else None.

    This is what TVM's ONNX importer emits for ``Clip`` (topi.maximum/minimum)."""
    if not isinstance(prim_func, tvm.tirx.PrimFunc):
        return None
    found: list = []
    if not _stores(prim_func.body, found) or len(found) != 1:
        return None
    store = found[0]
    value = store.value
    if not isinstance(value, (Max, Min)):
        return None
    params = list(prim_func.params)
    if len(params) not in (2, 3) or not store.buffer.same_as(params[-1]):
        return None
    data, other = value.a, value.b
    if not _loads(data, params[0]):
        data, other = other, data
    if not _loads(data, params[0]):
        return None
    if len(data.indices) != len(store.indices) or any(
            not a.same_as(b) for a, b in zip(data.indices, store.indices)):
        return None
    kind = "maximum" if isinstance(value, Max) else "minimum"
    if len(params) == 2 and isinstance(other, (FloatImm, IntImm)):
        return kind, float(other.value)
    if len(params) == 3 and _loads(other, params[1]) and len(other.indices) == 0:
        return kind, "param"
    return None


def _loads(expr, param) -> bool:
    """``expr`` reads the tensor parameter ``param`` of a PrimFunc."""
    return isinstance(expr, TensorLoad) and expr.source.same_as(param)


def _rewrite_tir_min_max(func: relax.Function, mod: tvm.IRModule) -> relax.Function:
    pattern = is_op("relax.call_tir")(wildcard(), wildcard())

    def rewriter(call, matches):
        call = matches[pattern]
        callee, args = call.args[0], call.args[1]
        if not isinstance(callee, tvm.ir.GlobalVar) or callee not in mod.functions:
            return call
        kind_bound = elementwise_min_max(mod[callee])
        if kind_bound is None or not isinstance(args, relax.Tuple):
            return call
        kind, bound = kind_bound
        data = args.fields[0]
        dtype = str(data.ty.dtype)
        if bound == "param":
            if len(args.fields) != 2:
                return call
            other = args.fields[1]
        else:
            if len(args.fields) != 1:
                return call
            other = relax.const(bound, dtype)
        op = relax.op.maximum if kind == "maximum" else relax.op.minimum
        return op(data, other)

    return rewrite_call(pattern, rewriter, func)


def TirMinMaxToRelax() -> tvm.transform.Pass:  # noqa: N802 (TVM's pass naming)
    """``call_tir(max|min loop nest, x, c)`` -> ``maximum(x, c)`` / ``minimum(x, c)``.

    TVM's ONNX importer lowers ``Clip`` to TE right away; this lifts it back to
    Relax ops (the PrimFunc is recognised by its body, not by its name)."""
    return _function_pass("SophonTirMinMaxToRelax", _rewrite_tir_min_max)


def _rewrite_min_max_to_clip(func: relax.Function, _mod) -> relax.Function:
    x, lo, hi = wildcard(), is_const(), is_const()
    max_then_min = is_op("relax.minimum")(is_op("relax.maximum")(x, lo), hi)
    lo2, hi2 = is_const(), is_const()
    min_then_max = is_op("relax.maximum")(is_op("relax.minimum")(x, hi2), lo2)

    def rewriter(call, matches):
        if lo in matches:
            low, high = _scalar_constant(matches[lo]), _scalar_constant(matches[hi])
        else:
            low, high = _scalar_constant(matches[lo2]), _scalar_constant(matches[hi2])
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)) or low > high:
            return call
        data = matches[x]
        if str(data.ty.dtype) != str(call.ty.dtype) or data.ty.shape is None \
                or not _same_shape(data, call):
            return call  # the bound broadcast the data: not a clip
        return relax.op.clip(data, low, high)

    return rewrite_call(max_then_min | min_then_max, rewriter, func)


def _same_shape(a, b) -> bool:
    sa, sb = a.ty.shape, b.ty.shape
    if sa is None or sb is None or len(sa.values) != len(sb.values):
        return False
    return all(isinstance(p, IntImm) and isinstance(q, IntImm) and int(p) == int(q)
               for p, q in zip(sa.values, sb.values))


def MinMaxToClip() -> tvm.transform.Pass:  # noqa: N802
    """``minimum(maximum(x, lo), hi)`` -> ``clip(x, lo, hi)`` for finite scalar constants lo <= hi."""
    return _function_pass("SophonMinMaxToClip", _rewrite_min_max_to_clip)


# ------------------------------------------------------------------ constant operand last


def _rewrite_constant_last(func: relax.Function, _mod) -> relax.Function:
    c, x = is_const(), wildcard()
    pattern = is_op("relax.add")(c, x) | is_op("relax.multiply")(c, x)

    def rewriter(call, matches):
        if isinstance(matches[x], tvm.ir.expr.Constant):
            return call
        op = relax.op.add if call.op.name == "relax.add" else relax.op.multiply
        return op(matches[x], matches[c])

    return rewrite_call(pattern, rewriter, func)


def ConstantOperandLast() -> tvm.transform.Pass:  # noqa: N802
    """``add(c, x)`` -> ``add(x, c)`` (and multiply) for a constant c: the bias of a
    PyTorch ``Linear`` comes first, the patterns expect it second."""
    return _function_pass("SophonConstantOperandLast", _rewrite_constant_last)


# ------------------------------------------------------------------ QDQ: one dequantize per consumer


def _split_shared_dequantize(func: relax.Function, _mod, constants_only: bool = False) -> relax.Function:
    """Give each consumer of a shared ``dequantize`` its own copy. ONNX QDQ models
    dequantize a tensor once for all its consumers (a residual add and the next
    conv); an int8 pattern takes the dequantize into its composite, and a binding
    can belong to one composite only. ``constants_only``: only dequantizes of
    constants (TFLite's importer shares one for every use of a constant). A use
    inside a tuple (``concat((dq_a, dq_b))``) counts and is rewritten like a
    direct argument."""
    blocks = func.body.blocks
    if len(blocks) != 1 or not isinstance(blocks[0], relax.DataflowBlock):
        return func
    bindings = blocks[0].bindings
    dequantized = {b.var: b.value for b in bindings if isinstance(b.value, relax.Call)
                   and isinstance(b.value.op, tvm.ir.Op) and b.value.op.name == "relax.dequantize"
                   and (not constants_only or isinstance(b.value.args[0], tvm.ir.expr.Constant))}

    def leaves(expr):
        if isinstance(expr, relax.Tuple):
            return [v for f in expr.fields for v in leaves(f)]
        return [expr]

    uses: dict = {}
    for b in bindings:
        if isinstance(b.value, relax.Call):
            for arg in (v for a in b.value.args for v in leaves(a)):
                if arg in dequantized:
                    uses[arg] = uses.get(arg, 0) + 1
    if all(n < 2 for n in uses.values()):
        return func
    bb = relax.BlockBuilder()
    remap: dict = {}
    seen: set = set()

    def operand(arg):
        if isinstance(arg, relax.Tuple):
            return relax.Tuple([operand(f) for f in arg.fields])
        if arg in dequantized:
            if arg in seen:  # a later consumer: its own dequantize
                dq = dequantized[arg]
                return bb.emit(relax.Call(dq.op, [remap.get(a, a) for a in dq.args], dq.attrs, span=dq.span))
            seen.add(arg)
        return remap.get(arg, arg)

    with bb.function("main", list(func.params)):
        with bb.dataflow():
            for b in bindings:
                value = b.value
                if isinstance(value, relax.Call):
                    value = relax.Call(value.op, [operand(a) for a in value.args], value.attrs, value.ty_args,
                                       span=value.span)
                else:  # a tuple, a tuple item or a var: renamed, not counted as a use
                    value = _substitute(value, remap)
                emit = bb.emit if isinstance(b.var, relax.DataflowVar) else bb.emit_output
                remap[b.var] = emit(value)
        bb.emit_func_output(_substitute(func.body.body, remap))
    new = bb.get()["main"]
    return new.with_attrs(func.attrs) if func.attrs else new


def _substitute(expr, remap: dict):
    """``expr`` (a var, a tuple of them or a tuple item) with vars renamed by ``remap``."""
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([_substitute(f, remap) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(_substitute(expr.tuple_value, remap), expr.index)
    return remap.get(expr, expr)


def SplitSharedDequantize(constants_only: bool = False) -> tvm.transform.Pass:  # noqa: N802
    return _function_pass("SophonSplitSharedDequantize",
                          lambda func, mod: _split_shared_dequantize(func, mod, constants_only))


# ------------------------------------------------------------------ batch norm


def _bn_scale_shift(bn: relax.Call) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(s, t) with batch_norm(x) == x * s + t along the channel axis, or None when
    the statistics are not constants or the op normalises over the batch."""
    attrs = bn.attrs
    if bool(getattr(attrs, "training", False)):
        return None
    gamma, beta, mean, var = (_constant(a) for a in bn.args[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        return None
    if not bool(attrs.scale):
        gamma = np.ones_like(gamma)
    if not bool(attrs.center):
        beta = np.zeros_like(beta)
    scale = gamma / np.sqrt(var.astype("float64") + float(attrs.epsilon))
    shift = beta - mean * scale
    return scale, shift


def _per_channel(vector: np.ndarray, rank: int, axis: int, dtype: str) -> relax.Expr:
    shape = [1] * rank
    shape[axis] = vector.size
    return relax.const(vector.reshape(shape).astype(dtype), dtype)


def _rewrite_batch_norm(func: relax.Function, _mod) -> relax.Function:
    data, weight, bias = wildcard(), is_const(), is_const()
    conv = is_op("relax.nn.conv2d")(data, weight)
    conv_bias = is_op("relax.add")(conv, bias)
    gamma, beta, mean, var = is_const(), is_const(), is_const(), is_const()
    anything = wildcard()
    bn_conv_call = is_op("relax.nn.batch_norm")(conv_bias | conv, gamma, beta, mean, var)
    bn_alone_call = is_op("relax.nn.batch_norm")(anything, gamma, beta, mean, var)

    def rewriter(bn, matches):
        scale_shift = _bn_scale_shift(bn)
        if scale_shift is None:
            return bn
        scale, shift = scale_shift
        out_ty = bn.args[0].ty
        rank, dtype = len(out_ty.shape.values), str(out_ty.dtype)
        axis = int(bn.attrs.axis) % rank
        folded = None
        if conv in matches:
            folded = _fold_into_conv(matches[conv], matches.get(bias), scale, shift, axis)
        if folded is None:
            # x * s + t, both per channel: element-wise ops the chip runs
            scaled = relax.op.multiply(bn.args[0], _per_channel(scale, rank, axis, dtype))
            folded = relax.op.add(scaled, _per_channel(shift, rank, axis, dtype))
        # batch_norm returns (out, moving mean, moving var); keep the tuple so
        # the frontend's out[0] still reads it (CanonicalizeBindings removes it)
        return relax.Tuple([folded, bn.args[3], bn.args[4]])

    return rewrite_call(bn_conv_call | bn_alone_call, rewriter, func)


def _fold_into_conv(conv: relax.Call, bias_const, scale, shift, axis) -> Optional[relax.Expr]:
    attrs = conv.attrs
    out_layout = str(attrs.out_layout or attrs.data_layout)
    if out_layout.index("C") != axis:
        return None
    w = _constant(conv.args[1])
    klayout = str(attrs.kernel_layout)
    o_axis = klayout.index("O")
    if w.shape[o_axis] != scale.size:
        return None  # e.g. a depthwise kernel stored with the multiplier elsewhere
    w_shape = [1] * w.ndim
    w_shape[o_axis] = scale.size
    dtype = str(conv.ty.dtype)
    new_w = (w * scale.reshape(w_shape)).astype(w.dtype)
    rank = len(conv.ty.shape.values)
    if bias_const is not None:
        b = _constant(bias_const)
        if b.size != scale.size:
            if b.size != 1:
                return None
            b = np.full(scale.size, float(b.reshape(())))
        b = b.reshape(-1)
    else:
        b = np.zeros(scale.size)
    new_b = b * scale + shift
    new_conv = relax.op.nn.conv2d(
        conv.args[0], relax.const(new_w, str(w.dtype)), strides=attrs.strides, padding=attrs.padding,
        dilation=attrs.dilation, groups=attrs.groups, data_layout=attrs.data_layout,
        kernel_layout=attrs.kernel_layout, out_layout=attrs.out_layout, out_dtype=attrs.out_dtype)
    new_conv = relax.Call(new_conv.op, new_conv.args, new_conv.attrs, new_conv.ty_args, span=conv.span)
    return relax.op.add(new_conv, _per_channel(new_b, rank, axis, dtype))


def FoldBatchNorm() -> tvm.transform.Pass:  # noqa: N802
    """Inference ``batch_norm`` with constant statistics, s = gamma / sqrt(var + eps):

        batch_norm(conv2d(x, W) + b)[0] -> conv2d(x, W * s) + ((b - mean) * s + beta)
        batch_norm(x)[0]                -> x * s + (beta - mean * s)

    TVM's FoldBatchnormToConv2D handles only a conv without bias; PyTorch's Conv2d
    has one by default."""
    return _function_pass("SophonFoldBatchNorm", _rewrite_batch_norm)


# ------------------------------------------------------------------ data movement


def _rewrite_split(func: relax.Function, _mod) -> relax.Function:
    x = wildcard()
    split = is_op("relax.split")(x)
    pattern = is_tuple_get_item(split)

    def rewriter(item, matches):
        call = matches[split]
        fields = call.ty.fields if isinstance(call.ty, relax.TupleType) else None
        axis = int(call.attrs.axis)
        if fields is None or any(f.shape is None for f in fields):
            return item
        sizes = [f.shape.values[axis] for f in fields]
        if not all(isinstance(v, IntImm) for v in sizes):
            return item
        begin = sum(int(v) for v in sizes[:item.index])
        return relax.op.strided_slice(matches[x], [axis], [begin], [begin + int(sizes[item.index])],
                                      assume_inbound=True)

    return rewrite_call(pattern, rewriter, func)


def SplitToSlices() -> tvm.transform.Pass:  # noqa: N802
    """``split(x)[i]`` -> ``strided_slice(x, [axis], [begin_i], [end_i])``: each part
    of a split becomes a view of ``x`` on the chip (the split itself is left for
    dead-code removal)."""
    return _function_pass("SophonSplitToSlices", _rewrite_split)


def _rewrite_wide_concat(func: relax.Function, _mod) -> relax.Function:
    from .patterns.movement import MAX_CONCAT_INPUTS

    pattern = is_op("relax.concat")(wildcard())

    def rewriter(call, _matches):
        parts = call.args[0]
        if not isinstance(parts, relax.Tuple) or len(parts.fields) <= MAX_CONCAT_INPUTS:
            return call
        axis = int(call.attrs.axis)
        fields = list(parts.fields)
        while len(fields) > MAX_CONCAT_INPUTS:
            fields = [relax.op.concat(fields[i:i + MAX_CONCAT_INPUTS], axis)
                      if len(fields[i:i + MAX_CONCAT_INPUTS]) > 1 else fields[i]
                      for i in range(0, len(fields), MAX_CONCAT_INPUTS)]
        return relax.op.concat(fields, axis)

    return rewrite_call(pattern, rewriter, func)


def NestWideConcat() -> tvm.transform.Pass:  # noqa: N802
    """A concat of more inputs than a pattern takes (``MAX_CONCAT_INPUTS``) -> a
    concat of concats. On the chip each inner concat is written straight into its
    slice of the outer one, so nesting costs no copy."""
    return _function_pass("SophonNestWideConcat", _rewrite_wide_concat)


def _reuse_concat_prefix(func: relax.Function, _mod) -> relax.Function:
    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def __init__(self):
            super().__init__()
            self.seen: list = []      # (var, fields, axis) of the concats so far

        def visit_var_binding_(self, binding):
            value = binding.value
            if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                    and value.op.name == "relax.concat" and isinstance(value.args[0], relax.Tuple)):
                return super().visit_var_binding_(binding)
            fields = [self.visit_expr(f) for f in value.args[0].fields]
            axis = int(value.attrs.axis)
            prefix = max((s for s in self.seen if s[2] == axis and 0 < len(s[1]) < len(fields)
                          and all(a.same_as(b) for a, b in zip(s[1], fields))),
                         key=lambda s: len(s[1]), default=None)
            if prefix is not None:
                new = relax.op.concat([prefix[0], *fields[len(prefix[1]):]], axis)
                self.builder_.emit_normalized(relax.VarBinding(binding.var, self.builder_.normalize(new)))
            else:
                super().visit_var_binding_(binding)
            self.seen.append((binding.var, fields, axis))

    return Rewriter().visit_expr(func)


def ReuseConcatPrefix() -> tvm.transform.Pass:  # noqa: N802
    """``concat(x0, .., xk)`` -> ``concat(c, x_j, .., xk)`` when an earlier ``c =
    concat(x0, .., x_j-1)`` exists (DenseNet concatenates every earlier feature map
    again in each layer). On the chip the earlier concat is then written straight
    into the later one, and each feature map is stored once, into the block's
    final buffer, instead of copied into every concat."""
    return _function_pass("SophonReuseConcatPrefix", _reuse_concat_prefix)


def _window_pads(pad: relax.Call, layout: str) -> Optional[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of a pad that pads only H and W of ``layout``."""
    width = [int(v) for v in pad.attrs.pad_width]
    if str(pad.attrs.pad_mode) != "constant" or len(width) != 8 or any(v < 0 for v in width):
        return None
    h, w = layout.index("H"), layout.index("W")
    if any(width[2 * a] or width[2 * a + 1] for a in range(4) if a not in (h, w)):
        return None
    return width[2 * h], width[2 * w], width[2 * h + 1], width[2 * w + 1]


def _pad_value(pad: relax.Call) -> Optional[float]:
    value = pad.attrs.pad_value
    value = getattr(value, "value", value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rewrite_pad_into_window(func: relax.Function, _mod) -> relax.Function:
    x, w = wildcard(), wildcard()
    pad = is_op("relax.nn.pad")(x)
    conv = is_op("relax.nn.conv2d")(pad, w)
    max_pool = is_op("relax.nn.max_pool2d")(pad)
    avg_pool = is_op("relax.nn.avg_pool2d")(pad)

    def rewriter(call, matches):
        if not isinstance(call, relax.Call):
            return call
        attrs = call.attrs
        layout = str(attrs.data_layout if call.op.name == "relax.nn.conv2d" else attrs.layout)
        if layout not in ("NCHW", "NHWC"):
            return call
        extra = _window_pads(matches[pad], layout)
        value = _pad_value(matches[pad])
        if extra is None or value is None:
            return call
        padding = tuple(int(p) + e for p, e in zip(attrs.padding, extra))
        if call.op.name == "relax.nn.conv2d":
            if value != 0.0:
                return call
            return relax.op.nn.conv2d(matches[x], matches[w], attrs.strides, padding, attrs.dilation,
                                      int(attrs.groups), layout, str(attrs.kernel_layout),
                                      str(attrs.out_layout), attrs.out_dtype or None)
        if call.op.name == "relax.nn.max_pool2d":
            # the pool's own padding never wins a max, as a pad of -inf (or the lowest float) would
            if not value <= -3.4028234663852886e38:
                return call
            return relax.op.nn.max_pool2d(matches[x], attrs.pool_size, attrs.strides, padding,
                                          attrs.dilation, bool(attrs.ceil_mode),
                                          bool(attrs.count_include_pad), layout, str(attrs.out_layout))
        if value != 0.0 or not bool(attrs.count_include_pad) or any(int(p) for p in attrs.padding) \
                or bool(attrs.ceil_mode):
            return call  # only zeros counted in the average fold
        return relax.op.nn.avg_pool2d(matches[x], attrs.pool_size, attrs.strides, padding, attrs.dilation,
                                      False, True, layout, str(attrs.out_layout))

    return rewrite_call(conv | max_pool | avg_pool, rewriter, func)


def FoldPadIntoWindow() -> tvm.transform.Pass:  # noqa: N802
    """``conv2d(pad(x))`` -> ``conv2d(x)`` with the pad added to its padding, when
    the pad is constant 0 over H and W only (ONNX and TFLite emit explicit pads
    for "same" padding); likewise a max pool behind a pad of -inf and an average
    pool that counts padding behind a pad of 0."""
    return _function_pass("SophonFoldPadIntoWindow", _rewrite_pad_into_window)


def _rewrite_dequantize_pad(func: relax.Function, _mod) -> relax.Function:
    x, scale, zp = wildcard(), wildcard(), wildcard()
    pad = is_op("relax.nn.pad")(x)
    dq = is_op("relax.dequantize")(pad, scale, zp)

    def rewriter(call, matches):
        if not isinstance(call, relax.Call):
            return call
        p = matches[pad]
        zero, value = _scalar_constant(matches[zp]), _pad_value(p)
        if zero is None or value is None or value != zero or _constant(matches[scale]) is None \
                or _constant(matches[scale]).size != 1 or str(p.attrs.pad_mode) != "constant":
            return call
        inner = relax.op.dequantize(matches[x], matches[scale], matches[zp], int(call.attrs.axis),
                                    str(call.attrs.out_dtype))
        return relax.op.nn.pad(inner, [int(v) for v in p.attrs.pad_width], "constant", 0.0)

    return rewrite_call(dq, rewriter, func)


def DequantizePadToPad() -> tvm.transform.Pass:  # noqa: N802
    """``dequantize(pad(x, zp))`` -> ``pad(dequantize(x), 0)``: the int8 pad of a
    quantized model fills with the zero point, which dequantizes to 0, so a conv
    behind it takes the pad as padding (FoldPadIntoWindow; the int8 conv pads
    with its input's zero point)."""
    return _function_pass("SophonDequantizePadToPad", _rewrite_dequantize_pad)


def _rewrite_qdq_pool3d(func: relax.Function, _mod) -> relax.Function:
    x, s_in, z_in, s_out, z_out = wildcard(), wildcard(), wildcard(), wildcard(), wildcard()
    dq = is_op("relax.dequantize")(x, s_in, z_in)
    padded = is_op("relax.nn.pad")(dq)
    pool = is_op("relax.nn.avg_pool3d")(dq | padded)
    q = is_op("relax.quantize")(pool, s_out, z_out)

    def rewriter(call, matches):
        p, data = matches[pool].attrs, matches[x]
        shape, out_shape = _static_shape(data), _static_shape(call)
        if shape is None or out_shape is None or len(shape) != 5 or str(p.layout) != "NCDHW" \
                or any(_scalar_constant(matches[v]) is None for v in (s_in, z_in, s_out, z_out)) \
                or [int(v) for v in p.pool_size[1:]] != [1, 1] or [int(v) for v in p.strides[1:]] != [1, 1] \
                or [int(v) for v in p.dilation[1:]] != [1, 1]:
            return call
        front, back = int(p.padding[0]), int(p.padding[3])
        include = bool(p.count_include_pad)
        if any(int(v) for v in (*p.padding[1:3], *p.padding[4:])):
            return call
        if padded in matches:  # an explicit pad of 0 on D only: taps of 0 that count
            width = [int(v) for v in matches[padded].attrs.pad_width]
            if str(matches[padded].attrs.pad_mode) != "constant" or _pad_value(matches[padded]) != 0.0 \
                    or any(width[:4]) or any(width[6:]) or front or back:
                return call
            front, back, include = width[4], width[5], True
        n, c, d, h, w = shape
        flat = relax.op.reshape(data, (n, c, d, h * w))
        inner = relax.op.dequantize(flat, matches[s_in], matches[z_in], -1, str(matches[dq].attrs.out_dtype))
        pooled = relax.op.nn.avg_pool2d(inner, (int(p.pool_size[0]), 1), (int(p.strides[0]), 1), (front, 0, back, 0),
                                        (int(p.dilation[0]), 1), bool(p.ceil_mode), include, "NCHW")
        out = relax.op.quantize(pooled, matches[s_out], matches[z_out], -1, str(call.attrs.out_dtype))
        return relax.op.reshape(out, out_shape)

    return rewrite_call(q, rewriter, func)


def QdqAvgPool3dTo2d() -> tvm.transform.Pass:  # noqa: N802
    """``quantize(avg_pool3d(pad?(dequantize(x))))`` with a window over D only ->
    ``reshape(quantize(avg_pool2d(dequantize(reshape(x, (N, C, D, H*W))))))``, the
    pad of 0 taken as the pool's counted padding: PyTorch's LRN in an ONNX QDQ model
    (Pad, then AveragePool (5, 1, 1), each between a DequantizeLinear and a
    QuantizeLinear), an int8 average pool of the chip (onnxruntime's
    QLinearAveragePool adds the pad's zeros and counts them alike)."""
    return _function_pass("SophonQdqAvgPool3dTo2d", _rewrite_qdq_pool3d)


# op -> operands after the data (shape, axes, ...): the moves that only reorder values
_QUANTIZED_MOVES = {"relax.reshape": 1, "relax.permute_dims": 0, "relax.strided_slice": 3, "relax.squeeze": 0,
                    "relax.expand_dims": 0, "relax.flatten": 0, "relax.broadcast_to": 1, "relax.tile": 0,
                    "relax.nn.pad": 0}


def _rewrite_quantized_moves(func: relax.Function, _mod) -> relax.Function:
    # a mutator over the bindings rather than rewrite_call, which would also merge
    # equal dequantize calls that the int8 patterns need apart
    var2val = relax.analysis.get_var2val(func)

    def value(expr):
        return var2val.get(expr, expr) if isinstance(expr, relax.Var) else expr

    def is_call(expr, names) -> bool:
        return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name in names

    def folded(call: relax.Call) -> Optional[relax.Expr]:
        """The int8 moves a quantize(moves(dequantize(x))) stands for, or None."""
        chain, expr = [], value(call.args[0])
        while is_call(expr, _QUANTIZED_MOVES):
            chain.append(expr)
            expr = value(expr.args[0])
        if not chain or not is_call(expr, ("relax.dequantize",)):
            return None
        inner, s_in, z_in = expr.args
        scale, zero = _scalar_constant(s_in), _scalar_constant(z_in)
        if scale is None or zero is None or scale != _scalar_constant(call.args[1]) \
                or zero != _scalar_constant(call.args[2]) or not isinstance(inner.ty, relax.TensorType) \
                or str(inner.ty.dtype) != str(call.ty.dtype):
            return None
        for m in reversed(chain):
            if m.op.name == "relax.nn.pad":
                if str(m.attrs.pad_mode) != "constant" or _pad_value(m) != 0.0:
                    return None
                inner = relax.op.nn.pad(inner, [int(v) for v in m.attrs.pad_width], "constant", zero)
            else:
                inner = relax.Call(m.op, [inner, *m.args[1:]], m.attrs)
        return inner

    changed = []

    @relax.expr_functor.mutator
    class _Fold(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            call = binding.value
            new = folded(call) if is_call(call, ("relax.quantize",)) else None
            if new is None:
                return super().visit_var_binding_(binding)
            changed.append(binding.var)
            self.builder_.emit_normalized(relax.VarBinding(binding.var, self.builder_.normalize(self.visit_expr(new))))

    result = _Fold().visit_expr(func)
    return result if changed else func


def FoldQuantizedMoves() -> tvm.transform.Pass:  # noqa: N802
    """``quantize(move(dequantize(x, s, z)), s, z)`` -> ``move(x)``: a reshape,
    transpose, slice, tile or broadcast between a dequantize and a quantize of one
    quantization moves int8 values unchanged (``quantize(dequantize(v)) == v``), and
    a pad of 0 is an int8 pad of the zero point. QDQ importers write moves so."""
    return _function_pass("SophonFoldQuantizedMoves", _rewrite_quantized_moves)


_CMP = {LE: lambda a, b: a <= b, LT: lambda a, b: a < b, GE: lambda a, b: a >= b, GT: lambda a, b: a > b}


def _evaluate(expr, env: dict) -> Optional[int]:
    """An integer condition of ands and comparisons of loop variables and
    literals, at the variables' values in ``env`` (None: another form)."""
    if isinstance(expr, IntImm):
        return int(expr.value)
    if isinstance(expr, And):
        a, b = _evaluate(expr.a, env), _evaluate(expr.b, env)
        return None if a is None or b is None else int(bool(a) and bool(b))
    if type(expr) in _CMP:
        a, b = _evaluate(expr.a, env), _evaluate(expr.b, env)
        return None if a is None or b is None else int(_CMP[type(expr)](a, b))
    return next((v for k, v in env.items() if k.same_as(expr)), None)  # a loop variable


def constant_pad(prim_func) -> Optional[tuple[list, list, float]]:
    """(before, after, value) if ``prim_func`` computes a constant pad of its first
    buffer into its second, ``out[i] = in[i - before] if inside else value`` (what
    TVM's ONNX importer emits for ``Pad``: topi.nn.pad), else None. The condition
    is checked at every index of each padded axis."""
    if not isinstance(prim_func, tvm.tirx.PrimFunc) or len(prim_func.params) != 2:
        return None
    found: list = []
    if not _stores(prim_func.body, found) or len(found) != 1:
        return None
    store, (data, out) = found[0], prim_func.params
    value = store.value
    if not store.buffer.same_as(out) or not isinstance(value, tvm.ir.expr.Call) \
            or getattr(value.op, "name", "") not in ("prim.if_then_else", "tir.if_then_else"):
        return None
    cond, load, fill = value.args
    if not _loads(load, data) or not isinstance(fill, FloatImm) or len(load.indices) != len(store.indices):
        return None
    try:
        in_shape = [int(d) for d in data.shape]
        out_shape = [int(d) for d in out.shape]
    except TypeError:  # a symbolic extent
        return None
    before = []
    for index, var in zip(load.indices, store.indices):
        if index.same_as(var):
            before.append(0)
        elif isinstance(index, Sub) and index.a.same_as(var) and isinstance(index.b, IntImm):
            before.append(int(index.b.value))
        else:
            return None
    after = [o - i - b for o, i, b in zip(out_shape, in_shape, before)]
    if any(v < 0 for v in before + after):
        return None
    inside = {var: b for var, b in zip(store.indices, before)}
    for axis, var in enumerate(store.indices):
        if before[axis] == 0 and after[axis] == 0:
            continue
        for i in range(out_shape[axis]):
            expected = before[axis] <= i < before[axis] + in_shape[axis]
            if _evaluate(cond, {**inside, var: i}) != int(expected):
                return None
    return before, after, float(fill.value)


def _rewrite_pad_into_pool3d(func: relax.Function, mod: tvm.IRModule) -> relax.Function:
    padded = is_op("relax.call_tir")(wildcard(), wildcard())
    pool = is_op("relax.nn.avg_pool3d")(padded)

    def rewriter(call, matches):
        tir_call = matches[padded]
        callee, args = tir_call.args[0], tir_call.args[1]
        if not isinstance(callee, tvm.ir.GlobalVar) or callee not in mod.functions \
                or not isinstance(args, relax.Tuple) or len(args.fields) != 1:
            return call
        pad = constant_pad(mod[callee])
        attrs = call.attrs
        # with no padding of its own, whether the pool counts padding does not matter
        if pad is None or str(attrs.layout) != "NCDHW" or bool(attrs.ceil_mode) or any(int(p) for p in attrs.padding):
            return call
        before, after, value = pad
        if value != 0.0 or before[:2] != [0, 0] or after[:2] != [0, 0]:
            return call  # only zeros over D, H, W fold into an average that counts padding
        return relax.op.nn.avg_pool3d(args.fields[0], attrs.pool_size, attrs.strides, before[2:] + after[2:],
                                      attrs.dilation, False, True, "NCDHW", str(attrs.out_layout))

    return rewrite_call(pool, rewriter, func)


def FoldPadIntoPool3d() -> tvm.transform.Pass:  # noqa: N802
    """``avg_pool3d(call_tir(pad, x))`` -> ``avg_pool3d(x)`` with the pad as its
    padding (counted), when the pad puts zeros on D, H, W of a pool without padding:
    PyTorch's ``local_response_norm`` pads the channels (the pool's D axis) before
    averaging, and TVM's ONNX importer lowers that ``Pad`` to TIR at once. The
    result is the chain ``patterns.lrn`` takes as the chip's LRN."""
    return _function_pass("SophonFoldPadIntoPool3d", _rewrite_pad_into_pool3d)


def _rewrite_tir_pad(func: relax.Function, mod: tvm.IRModule) -> relax.Function:
    pattern = is_op("relax.call_tir")(wildcard(), wildcard())

    def rewriter(call, matches):
        callee, args = call.args[0], call.args[1]
        if not isinstance(callee, tvm.ir.GlobalVar) or callee not in mod.functions \
                or not isinstance(args, relax.Tuple) or len(args.fields) != 1:
            return call
        pad = constant_pad(mod[callee])
        data = args.fields[0]
        if pad is None or not isinstance(data.ty, relax.TensorType) or str(data.ty.dtype) != "float32":
            return call
        before, after, value = pad
        return relax.op.nn.pad(data, [v for b, a in zip(before, after) for v in (b, a)], "constant", value)

    return rewrite_call(pattern, rewriter, func)


def TirPadToRelax() -> tvm.transform.Pass:  # noqa: N802
    """``call_tir(constant pad, x)`` -> ``nn.pad(x)``: TVM's ONNX importer lowers
    ``Pad`` to TE right away; as a Relax pad it is a chip move, and in an ONNX QDQ
    model (``DequantizeLinear -> Pad -> QuantizeLinear``) an int8 pad of the zero
    point (FoldQuantizedMoves), and a pad of 0 before a conv its padding
    (FoldPadIntoWindow, after it). Runs after FoldPadIntoPool3d, which folds the
    pads of PyTorch's LRN into their pool."""
    return _function_pass("SophonTirPadToRelax", _rewrite_tir_pad)


def _rewrite_quantize_before_moves(func: relax.Function, _mod) -> relax.Function:
    x, scale, zp = wildcard(), wildcard(), wildcard()
    move = is_op("relax.reshape")(x, wildcard()) | is_op("relax.permute_dims")(x) | is_op("relax.squeeze")(x) \
        | is_op("relax.flatten")(x) | is_op("relax.expand_dims")(x)
    quantize = is_op("relax.quantize")(move, scale, zp)

    def rewriter(call, matches):
        m, data = matches[move], matches[x]
        if _scalar_constant(matches[scale]) is None or _scalar_constant(matches[zp]) is None \
                or not isinstance(data.ty, relax.TensorType) or str(data.ty.dtype) != "float32":
            return call
        inner = relax.op.quantize(data, matches[scale], matches[zp], -1, str(call.attrs.out_dtype))
        return relax.Call(m.op, [inner, *m.args[1:]], m.attrs, span=m.span)

    return rewrite_call(quantize, rewriter, func)


def QuantizeBeforeMoves() -> tvm.transform.Pass:  # noqa: N802
    """``quantize(move(y), s, z)`` -> ``move(quantize(y, s, z))`` for a per-tensor
    quantization of a float ``y`` and a reshape, transpose, squeeze, expand_dims or
    flatten: quantizing every element alike commutes with moving them. An ONNX QDQ
    ``ReduceMean -> Reshape -> QuantizeLinear`` (a global pool and a flatten the
    quantizer left float) becomes an int8 mean and an int8 reshape."""
    return _function_pass("SophonQuantizeBeforeMoves", _rewrite_quantize_before_moves)


def movement_passes() -> list:
    """The data movement rewrites partitioning runs, with dead-code removal."""
    return [SplitToSlices(), ReuseConcatPrefix(), NestWideConcat(), FoldQuantizedMoves(), QuantizeBeforeMoves(),
            DequantizePadToPad(), QdqAvgPool3dTo2d(), FoldPadIntoWindow(), relax.transform.DeadCodeElimination()]


# ------------------------------------------------------------------ identities and importer idioms


def _static_shape(expr) -> Optional[tuple]:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    values = ty.shape.values
    return tuple(int(d) for d in values) if all(isinstance(d, IntImm) for d in values) else None


def _rewrite_identities(func: relax.Function, _mod) -> relax.Function:
    x, y = wildcard(), wildcard()
    dropout = is_tuple_get_item(is_op("relax.nn.dropout")(x), 0)
    reshape = is_op("relax.reshape")(y, wildcard())

    def rewriter(call, matches):
        if dropout in matches:
            return matches[x]  # inference: dropout passes its input through
        data = matches[y]
        shape = _static_shape(data)
        if shape is not None and shape == _static_shape(call) and str(data.ty.dtype) == str(call.ty.dtype):
            return data
        return call

    return rewrite_call(dropout | reshape, rewriter, func)


def RemoveIdentities() -> tvm.transform.Pass:  # noqa: N802
    """``dropout(x)[0]`` -> ``x`` (inference) and ``reshape(x, s)`` -> ``x`` where s
    is x's own static shape (importers emit both around layers)."""
    return _function_pass("SophonRemoveIdentities", _rewrite_identities)


def _rewrite_take_progression(func: relax.Function, _mod) -> relax.Function:
    x, indices = wildcard(), is_const()
    pattern = is_op("relax.take")(x, indices)

    def rewriter(call, matches):
        data, index = matches[x], _constant(matches[indices])
        shape = _static_shape(data)
        if shape is None or index is None or index.dtype.kind not in "iu" or index.size == 0 \
                or _static_shape(call) is None:
            return call
        axis = int(call.attrs.axis) % len(shape) if call.attrs.axis is not None else 0  # None: 1-D data
        flat = index.reshape(-1).astype(np.int64)
        step = int(flat[1] - flat[0]) if flat.size > 1 else 1
        if step == 0 or not np.array_equal(flat, flat[0] + step * np.arange(flat.size)) \
                or flat.min() < 0 or flat.max() >= shape[axis]:
            return call  # a gather the chip has no view for (or an index out of range)
        start, stop = int(flat[0]), int(flat[0]) + step * flat.size
        if (start, step, flat.size) != (0, 1, shape[axis]):
            # a negative step ends before the axis: numpy's "to the start" is an end of -len - 1
            data = relax.op.strided_slice(data, [axis], [start], [stop if stop >= 0 else -shape[axis] - 1], [step])
        return relax.op.reshape(data, _static_shape(call))

    return rewrite_call(pattern, rewriter, func)


def TakeProgressionToSlice() -> tvm.transform.Pass:  # noqa: N802
    """``take(x, c, axis)`` with constant indices c in arithmetic progression ->
    ``reshape(strided_slice(x, axis, start, stop, step), result shape)``: data
    movement the chip runs as a view. PyTorch's exporter writes some
    ``aten.as_strided`` views as a Gather of such indices (ConvNeXt's pooled
    features: take(flatten(x), arange(192).reshape(1, 192, 1, 1)))."""
    return _function_pass("SophonTakeProgressionToSlice", _rewrite_take_progression)


_STACK_REDUCTIONS = {"relax.sum": relax.op.add, "relax.max": relax.op.maximum,
                     "relax.min": relax.op.minimum, "relax.mean": relax.op.add}


def _rewrite_stack_reduce(func: relax.Function, _mod) -> relax.Function:
    stacked = is_op("relax.stack")(wildcard())
    pattern = is_op("relax.sum")(stacked) | is_op("relax.max")(stacked) | is_op("relax.min")(stacked) \
        | is_op("relax.mean")(stacked)
    bindings = {b.var: b.value for block in func.body.blocks for b in block.bindings}

    def operand(expr):
        """The tensor behind ``broadcast_to(t, shape)`` (the binary op broadcasts it)."""
        value = bindings.get(expr, expr)
        if isinstance(value, relax.Call) and value.op.name == "relax.broadcast_to":
            return value.args[0]
        return expr

    def rewriter(call, matches):
        stack = matches[stacked]
        axes = call.attrs.axis
        if int(stack.attrs.axis) != 0 or axes is None or [int(a) for a in axes] != [0] or call.attrs.keepdims:
            return call
        items = bindings.get(stack.args[0], stack.args[0])
        if not isinstance(items, relax.Tuple) or len(items.fields) < 2:
            return call
        tensors = [operand(f) for f in items.fields]
        out = _STACK_REDUCTIONS[call.op.name](tensors[0], tensors[1])
        for t in tensors[2:]:
            out = _STACK_REDUCTIONS[call.op.name](out, t)
        if call.op.name == "relax.mean":
            out = relax.op.multiply(out, relax.const(1.0 / len(tensors), str(call.ty.dtype)))
        return out

    return rewrite_call(pattern, rewriter, func)


def StackReduceToBinary() -> tvm.transform.Pass:  # noqa: N802
    """``sum(stack([broadcast_to(a, s), broadcast_to(b, s), ...]), axis=0)`` ->
    ``add(add(a, b), ...)`` (likewise max, min, and mean as the sum times 1/n): TVM
    imports ONNX ``Sum``/``Max``/``Min``/``Mean`` so, and a residual add written as
    ``Sum`` would otherwise stay on the host."""
    return _function_pass("SophonStackReduceToBinary", _rewrite_stack_reduce)


# ------------------------------------------------------------------ element-wise arithmetic


def _float_bound(expr) -> Optional[float]:
    return float(expr.value) if isinstance(expr, (IntImm, FloatImm)) else None


def _rewrite_clip_clip(func: relax.Function, _mod) -> relax.Function:
    x = wildcard()
    inner = is_op("relax.clip")(x, wildcard(), wildcard())
    pattern = is_op("relax.clip")(inner, wildcard(), wildcard())

    def rewriter(call, matches):
        first = matches[inner]
        bounds = [_float_bound(b) for b in (*first.args[1:], *call.args[1:])]
        if any(b is None for b in bounds):
            return call
        lo, hi = max(bounds[0], bounds[2]), min(bounds[1], bounds[3])
        if lo > hi:
            return call  # the two ranges do not meet: the result is a constant, leave it
        return relax.op.clip(matches[x], lo, hi)

    return rewrite_call(pattern, rewriter, func)


def MergeClips() -> tvm.transform.Pass:  # noqa: N802
    """``clip(clip(x, a, b), c, d)`` -> ``clip(x, max(a, c), min(b, d))`` when the
    ranges meet: exact, clamping is monotone. torch.export writes relu6 (in
    ``nn.Hardswish``, ``nn.Hardsigmoid``) as ``clip(clip(x, 0, inf), -inf, 6)``."""
    return _function_pass("SophonMergeClips", _rewrite_clip_clip)


def _float32_tensor(expr) -> bool:
    ty = expr.ty
    return isinstance(ty, relax.TensorType) and str(ty.dtype) == "float32"


def _rewrite_scale_by_one(func: relax.Function, _mod) -> relax.Function:
    x, one = wildcard(), is_const()
    pattern = is_op("relax.multiply")(x, one) | is_op("relax.divide")(x, one)

    def rewriter(call, matches):
        data = matches[x]
        if _scalar_constant(matches[one]) != 1.0 or not _float32_tensor(data) or not _same_shape(data, call):
            return call
        return data

    return rewrite_call(pattern, rewriter, func)


def RemoveScaleByOne() -> tvm.transform.Pass:  # noqa: N802
    """``x * 1`` and ``x / 1`` -> ``x`` (float32, no broadcast): exact in IEEE
    arithmetic. torch.export writes ``nn.Softplus(beta=1)`` with both."""
    return _function_pass("SophonRemoveScaleByOne", _rewrite_scale_by_one)


def _normal_float32(values: np.ndarray) -> bool:
    tiny = np.finfo(np.float32).tiny
    magnitude = np.abs(values.astype(np.float64))
    return bool(np.all(np.isfinite(magnitude)) and np.all(magnitude >= tiny)
                and np.all(magnitude <= 1.0 / tiny))


def _rewrite_divide_by_constant(func: relax.Function, _mod) -> relax.Function:
    x, c = wildcard(), is_const()
    pattern = is_op("relax.divide")(x, c)

    def rewriter(call, matches):
        value = _constant(matches[c])
        if value is None or value.dtype != np.float32 or not _float32_tensor(matches[x]) \
                or not _normal_float32(value):
            return call
        return relax.op.multiply(matches[x], relax.const((1.0 / value.astype(np.float64)).astype(np.float32)))

    return rewrite_call(pattern, rewriter, func)


def DivideByConstant() -> tvm.transform.Pass:  # noqa: N802
    """``x / c`` -> ``x * r``, r = float32(1 / c), for a float32 constant c (scalar
    or per channel) whose elements and reciprocals are normal float32 numbers.

    Exact when c is a power of two. Otherwise r carries at most half an ulp of
    relative error and the product rounds once more, so x * r is within 2^-23
    relative of x / c (at most 2 ulp; tests/test_normalize.py measures 1 ulp on
    the constants the importers write): far below the 1e-4 a model is checked
    to, and it lets the chip run the division as the multiply it has (TFLite's
    and torch's hard-swish end with ``/ 6``). Zero, infinite, NaN and subnormal
    divisors, or ones whose reciprocal would be subnormal, stay divisions."""
    return _function_pass("SophonDivideByConstant", _rewrite_divide_by_constant)


def _rewrite_power(func: relax.Function, _mod) -> relax.Function:
    x, c = wildcard(), is_const()
    pattern = is_op("relax.power")(x, c)

    def rewriter(call, matches):
        data, exponent = matches[x], _scalar_constant(matches[c])
        if not _float32_tensor(data) or not _same_shape(data, call):
            return call
        if exponent == 2.0:
            return relax.op.multiply(data, data)
        if exponent == 0.5:
            return relax.op.sqrt(data)
        return call

    return rewrite_call(pattern, rewriter, func)


def PowerToMultiply() -> tvm.transform.Pass:  # noqa: N802
    """``power(x, 2)`` -> ``x * x`` and ``power(x, 0.5)`` -> ``sqrt(x)`` (float32).

    x * x and sqrt are correctly rounded, as is the host's powf on these
    exponents, so the results are the same except at two edges of
    ``power(x, 0.5)``: -0 gives -0 (powf: +0) and -inf gives NaN (powf: +inf)."""
    return _function_pass("SophonPowerToMultiply", _rewrite_power)


# ------------------------------------------------------------------ host legalisation

def _rewrite_transpose_conv_layout(func: relax.Function, _mod) -> relax.Function:
    data, weight = wildcard(), wildcard()
    pattern = is_op("relax.nn.conv2d_transpose")(data, weight)

    def rewriter(call, matches):
        attrs = call.attrs
        layout, klayout = str(attrs.data_layout), str(attrs.kernel_layout)
        out_layout = str(attrs.out_layout) or layout
        if (layout, klayout, out_layout) == ("NCHW", "IOHW", "NCHW") or sorted(layout) != sorted("NCHW") \
                or sorted(klayout) != sorted("OIHW") or sorted(out_layout) != sorted("NCHW"):
            return call
        x = matches[data] if layout == "NCHW" else relax.op.permute_dims(
            matches[data], [layout.index(d) for d in "NCHW"])
        w = matches[weight] if klayout == "IOHW" else relax.op.permute_dims(
            matches[weight], [klayout.index(d) for d in "IOHW"])
        y = relax.op.nn.conv2d_transpose(
            x, w, strides=attrs.strides, padding=attrs.padding, output_padding=attrs.output_padding,
            dilation=attrs.dilation, groups=attrs.groups, data_layout="NCHW", kernel_layout="IOHW",
            out_dtype=attrs.out_dtype or None)
        return y if out_layout == "NCHW" else relax.op.permute_dims(y, ["NCHW".index(d) for d in out_layout])

    return rewrite_call(pattern, rewriter, func)


def HostTransposeConvLayout() -> tvm.transform.Pass:  # noqa: N802
    """conv2d_transpose(x: L, w: K) -> permute(conv2d_transpose(permute(x): NCHW, permute(w): IOHW))

    TVM 0.27 legalises conv2d_transpose only as NCHW data with an IOHW kernel, so
    TFLite's TRANSPOSE_CONV (NHWC) would leave the VM an op it cannot emit
    ("CodeGenVM cannot emit this Relax operator"). Run on what stays on the host,
    after partitioning, so the chip still sees the op in its own layout."""
    return _function_pass("SophonHostTransposeConvLayout", _rewrite_transpose_conv_layout)


# ------------------------------------------------------------------ all


def normalize(mod: tvm.IRModule, params: Optional[dict] = None) -> tvm.IRModule:
    """Bind ``params`` (name -> array) into ``main`` and run every rewrite above,
    with constant folding before (so frontend-computed bounds and reshaped biases
    are constants) and dead-code removal after."""
    if params:
        mod = relax.transform.BindParams(
            "main", {k: tvm.runtime.tensor(np.asarray(v)) for k, v in params.items()})(mod)
    entries = [str(gv.name_hint) for gv, f in mod.functions.items()
               if isinstance(f, relax.Function) and "global_symbol" in (f.attrs or {})]
    # a pre-quantized model keeps its dequantize(weight) chains unfolded: the int8
    # patterns take them whole (folding would make its layers float again)
    quantized = is_quantized(mod)
    fold = [] if quantized else [relax.transform.FoldConstant()]
    seq = tvm.transform.Sequential([
        *fold,
        *([SplitSharedDequantize()] if quantized else []),
        TirMinMaxToRelax(),
        TakeProgressionToSlice(),
        RemoveIdentities(),
        StackReduceToBinary(),
        MinMaxToClip(),
        ConstantOperandLast(),
        FoldBatchNorm(),
        SplitToSlices(), ReuseConcatPrefix(), NestWideConcat(), FoldPadIntoPool3d(), TirPadToRelax(),
        FoldPadIntoWindow(),
        MergeClips(),
        RemoveScaleByOne(),
        DivideByConstant(),
        PowerToMultiply(),
        *fold,
        # again for constants: a rewrite above rebuilds the bindings and shares one
        # dequantize of a constant between its consumers again (the 1/6 of every
        # hard-sigmoid in MobileNetV3), which no two composites can both take
        *([SplitSharedDequantize(constants_only=True)] if quantized else []),
        relax.transform.CanonicalizeBindings(),
        relax.transform.DeadCodeElimination(entries or None),
    ], name="SophonNormalize")
    return seq(mod)
