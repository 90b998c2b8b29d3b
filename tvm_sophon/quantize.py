"""Post-training quantization of FP32 models to INT8, and layer-by-layer comparison.

``quantize(mod, calibration_data)`` runs the FP32 model on calibration batches
(TVM's llvm build, with a probe on every layer boundary), picks a threshold per
tensor (calibration.py: kl, max or percentile), and rewrites each layer the chip
runs in INT8 into the form a pre-quantized TFLite model has:

    quantize(conv2d(dequantize(x_q), dequantize(w_q, per-channel scales)) + dequantize(b_q)) -> clip

so the same int8 patterns and kernels serve both. Activations are symmetric int8
(zero point 0, scale = threshold / 127), weights symmetric per output channel
(or per tensor), biases int32 at scale s_x * s_w. Values stay int8 between
quantized layers; quantize/dequantize remain only where int8 meets float.

Then it compares every quantized layer's output with FP32 on the calibration
data; layers below ``cosine_threshold`` fall back to FP32 (TPU-MLIR's mixed
precision table), and the report (``quantize_report(mod)``) says which.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterable, Optional

import numpy as np
import tvm
from tvm import relax

from .calibration import METHODS, Histogram
from .errors import SophonCompileError, SophonError
from .names import model_name
from .patterns import constant_value

REPORT_ATTR = "sophon.quantize_report"
# Ops rewritten as dequantize -> float op -> quantize, the form TVM's TFLite importer
# gives an int8 TFLite op (kind in the report): reductions, softmax, activations with
# TFLite's int8 kernels, element-wise binary ops, concat and resize.
QDQ_OPS = {"relax.mean": "mean", "relax.sum": "sum", "relax.max": "reduce_max", "relax.min": "reduce_min",
           "relax.nn.softmax": "softmax", "relax.sigmoid": "sigmoid", "relax.tanh": "tanh",
           "relax.nn.leakyrelu": "leaky_relu", "relax.nn.gelu": "gelu", "relax.multiply": "mul",
           "relax.subtract": "sub", "relax.maximum": "maximum", "relax.minimum": "minimum",
           "relax.concat": "concat", "relax.image.resize2d": "resize2d",
           # a global average pool is TFLite's int8 MEAN over H, W (written out as a mean)
           "relax.nn.adaptive_avg_pool2d": "mean",
           # TFLite's LayerNorm: MEAN, SQUARED_DIFFERENCE / MUL, MEAN, ADD eps, RSQRT, NEG, MUL, ADD
           "relax.rsqrt": "rsqrt", "relax.negative": "negative"}
# element-wise ops that take a constant operand as an int8 constant (per tensor, symmetric),
# as TFLite's converter quantizes a MUL or SUB by a weight it cannot fold
CONST_OPERAND = ("relax.multiply", "relax.subtract")
# TFLite's int8 kernels fix these outputs' quantization (scale, zero point)
FIXED_OUTPUT = {"softmax": (1.0 / 256, -128), "sigmoid": (1.0 / 256, -128), "tanh": (1.0 / 128, 0)}
# and these keep their input's (TFLite's REDUCE_MAX / MIN and RESIZE)
KEEPS_SCALE = ("reduce_max", "reduce_min", "resize2d")
# and these take every input at the output's quantization (TFLite's converter gives a
# CONCATENATION, MAXIMUM or MINIMUM one scale): calibration widens them to the largest
SHARES_SCALE = ("concat", "maximum", "minimum")
# Activation chains TFLite runs as one int8 op (HARD_SWISH, GELU, ELU): the whole float
# chain between one dequantize and one quantize, as TVM's TFLite importer writes it
QDQ_CHAINS = {"hardswish": "hard_swish", "gelu": "gelu", "elu": "elu"}
# Data movement on an int8 value stays int8 (TFLite reshapes, transposes, slices and pads
# int8 tensors; a pad fills with the zero point, 0 here, so only a pad with 0 is a move)
INT8_MOVES = ("relax.reshape", "relax.permute_dims", "relax.strided_slice", "relax.nn.pad", "relax.squeeze",
              "relax.flatten", "relax.expand_dims")
QUANTIZABLE = ("relax.nn.conv2d", "relax.nn.conv2d_transpose", "relax.matmul", "relax.add",
               "relax.nn.max_pool2d", "relax.nn.avg_pool2d", *QDQ_OPS)


@dataclasses.dataclass
class LayerStats:
    name: str
    kind: str
    cosine: float
    sqnr_db: float
    max_error: float
    int8: bool


@dataclasses.dataclass
class QuantizeReport:
    method: str
    per_channel: bool
    cosine_threshold: float
    layers: list[LayerStats]

    @property
    def fallback(self) -> list[str]:
        return [l.name for l in self.layers if not l.int8]

    @property
    def min_cosine(self) -> float:
        return min((l.cosine for l in self.layers if l.int8), default=1.0)

    def format(self) -> str:
        lines = [f"quantization ({self.method}, {'per-channel' if self.per_channel else 'per-tensor'} weights): "
                 f"{sum(l.int8 for l in self.layers)} layer(s) int8, {len(self.fallback)} fell back to fp32 "
                 f"(cosine < {self.cosine_threshold})",
                 f"{'layer':<16} {'kind':<16} {'precision':<9} {'cosine':>9} {'SQNR dB':>8} {'max err':>9}"]
        for l in self.layers:
            lines.append(f"{l.name[:16]:<16} {l.kind:<16} {'int8' if l.int8 else 'fp32':<9} {l.cosine:>9.5f} "
                         f"{l.sqnr_db:>8.2f} {l.max_error:>9.4g}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def quantize_report(mod: tvm.IRModule) -> QuantizeReport:
    attrs = mod.attrs or {}
    if REPORT_ATTR not in attrs:
        raise ValueError("module was not produced by tvm_sophon.quantize")
    data = json.loads(str(attrs[REPORT_ATTR]))
    return QuantizeReport(data["method"], data["per_channel"], data["cosine_threshold"],
                          [LayerStats(**l) for l in data["layers"]])


# ------------------------------------------------------------------ the model as a chain of layers

@dataclasses.dataclass
class _Layer:
    name: str           # the model's name for the layer (names.py), else its output var's
    kind: str           # conv2d | conv2d_transpose | dense | add | max_pool2d | avg_pool2d | QDQ_OPS' kinds
    ops: list           # bindings (var, call) of the chain, in order
    inputs: list        # activation vars it reads
    out: relax.Var
    act: Optional[tuple] = None   # ("relu",) or ("clip", lo, hi)
    call: Optional[relax.Call] = None   # what runs in int8 in place of ops[0] (an affine's 1x1 conv)


def _main_bindings(mod: tvm.IRModule):
    func = mod["main"]
    blocks = func.body.blocks
    if len(blocks) != 1 or not isinstance(blocks[0], relax.DataflowBlock):
        raise SophonError("quantize expects main to be one dataflow block (as the frontends produce)")
    return func, [(b.var, b.value) for b in blocks[0].bindings]


def _is_var(expr) -> bool:
    return isinstance(expr, relax.Var)


def _find_layers(bindings) -> dict:
    """Quantizable chains, keyed by the var of their first op."""
    uses: dict = {}
    for var, value in bindings:
        if isinstance(value, relax.Call):
            for arg in value.args:
                if _is_var(arg):
                    uses.setdefault(arg, []).append((var, value))

    def only_use(var):
        u = uses.get(var, [])
        return u[0] if len(u) == 1 else None

    def follow_act(chain, var):
        nxt = only_use(var)
        if nxt is not None and isinstance(nxt[1].op, tvm.ir.Op):
            name = nxt[1].op.name
            if name == "relax.nn.relu":
                chain.append(nxt)
                return ("relu",), nxt[0]
            if name == "relax.clip" and constant_value(nxt[1].args[1]) is None:
                lo, hi = float(nxt[1].args[1].value), float(nxt[1].args[2].value)
                if lo == 0.0:
                    chain.append(nxt)
                    return ("clip", lo, hi), nxt[0]
        return None, var

    layers = _find_chains(bindings, uses)
    in_chains = {v for l in layers.values() for v, _ in l.ops}
    taken, counted = set(), []
    for var, value in bindings:
        if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op) or var in in_chains:
            continue
        for layer in list(layers.values())[len(counted):]:
            counted.append(layer)
            taken.update(v for v, _ in layer.ops[1:])
        if var in taken:
            continue  # a bias add or activation already taken by an earlier layer
        name = value.op.name
        if name not in QUANTIZABLE or str(value.ty.dtype) != "float32":
            continue
        chain = [(var, value)]
        affine = _affine_conv(value)
        if affine is not None:  # x * a (+ b) per channel, as TFLite writes a BatchNorm it cannot fold
            conv, x = affine
            last = var
            nxt = only_use(var) if name == "relax.multiply" else None
            if nxt is not None and nxt[1].op.name == "relax.add" and _channel_constant(nxt[1], var, conv) is not None:
                chain.append(nxt)
                last = nxt[0]
            act, last = follow_act(chain, last)
            layers[var] = _Layer(model_name(value) or last.name, "affine", chain, [x], last, act, conv)
            continue
        if name in QDQ_OPS:
            inputs = list(value.args[0].fields) if name == "relax.concat" and isinstance(
                value.args[0], relax.Tuple) else [a for a in value.args if isinstance(a, relax.Expr)
                                                  and not isinstance(a, relax.ShapeExpr)]
            if name == "relax.image.resize2d":
                inputs = inputs[:1]
            if name == "relax.nn.adaptive_avg_pool2d" and _global_pool_axes(value) is None:
                continue  # an adaptive pool to more than 1x1 stays fp32
            if name in CONST_OPERAND and len(inputs) == 2 and sum(constant_value(a) is not None for a in inputs) == 1:
                inputs = [a for a in inputs if constant_value(a) is None]
            if not inputs or not all(_is_var(a) and isinstance(a.ty, relax.TensorType)
                                     and str(a.ty.dtype) == "float32" for a in inputs):
                continue  # a constant operand (a scale, a bias) or a tuple var: stays fp32
            layers[var] = _Layer(model_name(value) or var.name, QDQ_OPS[name], chain, inputs, var)
        elif name in ("relax.nn.conv2d", "relax.nn.conv2d_transpose", "relax.matmul"):
            w = constant_value(value.args[1])
            if w is None or not _is_var(value.args[0]):
                continue
            last = var
            nxt = only_use(var)
            if nxt is not None and nxt[1].op.name == "relax.add":
                other = [a for a in nxt[1].args if not a.same_as(var)]
                b = constant_value(other[0]) if other else None
                channels = value.ty.shape.values[_channel_axis(value)]
                if b is not None and b.size == int(channels):
                    chain.append(nxt)
                    last = nxt[0]
            act, last = follow_act(chain, last)
            kind = name.split(".")[-1] if name != "relax.matmul" else "dense"
            layers[var] = _Layer(model_name(value) or last.name, kind, chain, [value.args[0]], last, act)
        elif name == "relax.add":
            inputs = [a for a in value.args if constant_value(a) is None]
            if not inputs or not all(_is_var(a) and str(a.ty.dtype) == "float32" for a in inputs):
                continue
            if any(_size(a) != _size(var) for a in inputs):
                continue  # broadcast over unit axes only: an operand is then reshaped to the result
            # a constant operand that is not per channel (YOLO's grid) is an int8 constant, as
            # TFLite's converter quantizes an ADD's constant tensor (it broadcasts as it is)
            act, last = follow_act(chain, var)
            layers[var] = _Layer(model_name(value) or last.name, "add", chain, inputs, last, act)
        else:
            if name == "relax.nn.avg_pool2d" and value.attrs.count_include_pad and any(
                    int(p) for p in value.attrs.padding):
                continue  # TFLite's int8 average divides by the in-bounds taps only
            if name == "relax.nn.avg_pool2d" and value.attrs.ceil_mode:
                continue  # (a max pool's ceil-mode windows take the max of what they cover, as the chip's)
            layers[var] = _Layer(model_name(value) or var.name, name.split(".")[-1], chain, [value.args[0]], var)
    order = {var: i for i, (var, _) in enumerate(bindings)}
    return dict(sorted(layers.items(), key=lambda item: order[item[0]]))   # in the model's order


def _find_chains(bindings, uses) -> dict:
    """Activation chains (QDQ_CHAINS) on a float32 var, keyed by their first op's var;
    only chains whose intermediates nothing else reads."""
    from tvm.relax.dpl import wildcard

    from .patterns import chains

    var2val = dict(bindings)
    var_of = {value: var for var, value in bindings}
    order = {var: i for i, (var, _) in enumerate(bindings)}
    found, taken = {}, set()
    for var, value in reversed(bindings):   # the longest chain ending at each op first
        if not isinstance(value, relax.Call) or var in taken:
            continue
        for name, kind in QDQ_CHAINS.items():
            x = wildcard()
            root, named = chains.CHAINS[name].pattern(x)
            matched = root.extract_matched_expr(value, var2val)
            source = None if matched is None else var_of.get(matched[x], matched[x])  # matched through var2val
            if source is None or not _is_var(source) or str(source.ty.dtype) != "float32":
                continue
            if isinstance(chains.activation_params(chains.CHAINS[name], {k: matched[p] for k, p in named.items()
                                                                        if p in matched}), str):
                continue
            ops = sorted({var_of[e] for p, e in matched.items()
                          if p is not x and isinstance(e, relax.Call) and e in var_of} - {source}, key=order.get)
            inner = set(ops) - {var}
            if any(user not in ops for v in inner for user, _ in uses.get(v, [])) or taken & set(ops):
                continue
            taken |= set(ops)
            label = next((model_name(var2val[v]) for v in reversed(ops) if model_name(var2val[v])), None)
            found[ops[0]] = _Layer(label or var.name, kind, [(v, var2val[v]) for v in ops],
                                   [source], var)
            break
    return found


def _size(expr) -> int:
    return int(np.prod([int(d) for d in expr.ty.shape.values]))


def _channel_constant(call, var, conv) -> Optional[np.ndarray]:
    """The constant operand of ``call`` (a multiply or add of ``var`` by a constant)
    as one value per channel of ``conv`` (a scalar broadcast), else None: a constant
    that varies along any other axis is not per channel."""
    if len(call.args) != 2 or not any(a.same_as(var) for a in call.args):
        return None
    c = constant_value([a for a in call.args if not a.same_as(var)][0])
    if c is None or c.dtype != np.float32:
        return None
    axis, rank = _channel_axis(conv), len(conv.ty.shape.values)
    channels = int(conv.ty.shape.values[axis])
    if c.size == 1:
        return np.full(channels, c.ravel()[0], "float32")
    shape = [1] * (rank - c.ndim) + list(c.shape)    # numpy broadcasting aligns on the right
    if c.ndim > rank or c.size != channels or shape[axis] != channels:
        return None
    return c.ravel()


def _affine_conv(call) -> Optional[tuple]:
    """``x * a`` or ``x + b`` (x a float32 var of rank 1 to 4, a / b constant per
    channel or scalar) as a depthwise 1x1 conv2d of x (weight a, or 1 for an add),
    with the channel axis the constant's (NHWC for a scalar or a vector), and x; else
    None. Below rank 4 the channel is the last axis and the conv reads x as the
    4-D view (1, 1, M, C), M the other axes' product (a pooled vector's LayerNorm)."""
    if not isinstance(call.op, tvm.ir.Op) or call.op.name not in ("relax.multiply", "relax.add"):
        return None
    xs = [a for a in call.args if _is_var(a) and isinstance(a.ty, relax.TensorType)]
    consts = [constant_value(a) for a in call.args]
    if len(xs) != 1 or sum(c is not None for c in consts) != 1 or str(xs[0].ty.dtype) != "float32":
        return None
    x = xs[0]
    if x.ty.shape is None or not 1 <= len(x.ty.shape.values) <= 4 or str(call.ty.dtype) != "float32" or \
            [int(d) for d in x.ty.shape.values] != [int(d) for d in call.ty.shape.values]:
        return None
    c = next(c for c in consts if c is not None)
    if c.ndim > len(x.ty.shape.values):
        return None
    dims = [int(d) for d in x.ty.shape.values]
    if len(dims) < 4:   # the conv's input: x viewed as (1, 1, M, C)
        x4 = relax.Var("view", relax.TensorType((1, 1, int(np.prod(dims[:-1])), dims[-1]), "float32"))
        c = c.reshape((1,) * (4 - c.ndim) + c.shape)
    else:
        x4 = x
    layout = "NCHW" if c.ndim == 4 and c.shape[1] > 1 and c.size == c.shape[1] else "NHWC"
    channels = int(x4.ty.shape.values[layout.index("C")])
    kernel_layout = "OIHW" if layout == "NCHW" else "HWOI"
    shape = (channels, 1, 1, 1) if layout == "NCHW" else (1, 1, channels, 1)
    ones = relax.const(np.ones(shape, "float32"))
    conv = relax.op.nn.conv2d(x4, ones, groups=channels, data_layout=layout, kernel_layout=kernel_layout)
    conv = relax.BlockBuilder().normalize(conv)
    a = _channel_constant(call, x, conv)
    if a is None:
        return None
    if call.op.name == "relax.multiply":
        conv = relax.BlockBuilder().normalize(relax.op.nn.conv2d(
            x4, relax.const(a.reshape(shape)), groups=channels, data_layout=layout, kernel_layout=kernel_layout))
    return conv, x


def _global_pool_axes(call) -> Optional[list[int]]:
    """The H and W axes of an adaptive average pool to 1x1 (a global pool), else None."""
    layout, out_layout = str(call.attrs.layout), str(call.attrs.out_layout or call.attrs.layout)
    shape = call.ty.shape
    if layout != out_layout or sorted(layout) != sorted("NCHW") or shape is None:
        return None
    axes = [layout.index("H"), layout.index("W")]
    return axes if all(int(shape.values[a]) == 1 for a in axes) else None


def _channel_axis(call) -> int:
    if call.op.name in ("relax.nn.conv2d", "relax.nn.conv2d_transpose"):
        return str(call.attrs.out_layout or call.attrs.data_layout).index("C")
    return len(call.ty.shape.values) - 1


# ------------------------------------------------------------------ calibration

def _probe_module(func, bindings, probes: list) -> tvm.IRModule:
    """main returning the values of ``probes`` (vars of the original main). A probe
    on a reshape reads its source instead: the same values, and TVM 0.27's VM
    codegen cannot return a rewritten dataflow reshape."""
    source = {var: value.args[0] for var, value in bindings
              if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
              and value.op.name == "relax.reshape" and _is_var(value.args[0])}

    def resolve(v):
        while v in source:
            v = source[v]
        return v

    probes = [resolve(v) for v in probes]
    bb = relax.BlockBuilder()
    params = list(func.params)
    with bb.function("main", params):
        with bb.dataflow():
            for var, value in bindings:
                bb.emit_normalized(relax.VarBinding(var, value))
            out = bb.emit_output(relax.Tuple(list(probes)))
        bb.emit_func_output(out)
    return bb.get()


def _numpy(value):
    """A VM result as numpy: a tensor, or a list for a tuple (a model's outputs)."""
    if hasattr(value, "numpy"):
        return value.numpy()
    return [_numpy(v) for v in value]


# The calibration and comparison modules are built for a few runs: LLVM's optimizer
# would cost more than it saves (DenseNet121: 110 s to build and load at the default
# level, 29 s at 0, the same outputs bit for bit), so they are built unoptimized.
CALIBRATION_TARGET = {"kind": "llvm", "opt-level": 0}


def _run_batches(mod, batches: list[list[np.ndarray]], progress: bool, what: str) -> list[list[np.ndarray]]:
    ex = tvm.compile(mod, target=tvm.target.Target(CALIBRATION_TARGET))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    iterator = batches
    if progress:
        try:
            from tqdm import tqdm
            iterator = tqdm(batches, desc=what, unit="batch")
        except ImportError:
            pass
    results = []
    for batch in iterator:
        out = vm["main"](*(tvm.runtime.tensor(np.ascontiguousarray(x)) for x in batch))
        results.append([_numpy(out[i]) for i in range(len(out))])
    return results


def _batches(func, calibration_data) -> list[list[np.ndarray]]:
    """Calibration data as a list of argument lists for main, checked."""
    names = [p.name for p in func.params]
    shapes = [[int(d) for d in p.ty.shape.values] for p in func.params]
    if isinstance(calibration_data, dict):
        calibration_data = [calibration_data]
    batches = []
    for i, item in enumerate(calibration_data):
        if isinstance(item, dict):
            missing = [n for n in names if n not in item]
            if missing:
                raise SophonError(f"calibration batch {i} has no input {missing[0]!r} (inputs: {', '.join(names)})")
            args = [np.asarray(item[n]) for n in names]
        else:
            args = [np.asarray(a) for a in (item if isinstance(item, (list, tuple)) else [item])]
            if len(args) != len(names):
                raise SophonError(f"calibration batch {i} has {len(args)} array(s); main takes {len(names)}")
        for name, shape, arr in zip(names, shapes, args):
            if list(arr.shape) != shape:
                raise SophonError(f"calibration batch {i}: input {name!r} has shape {list(arr.shape)}, "
                                  f"the model takes {shape}")
            if arr.dtype != np.float32:
                raise SophonError(f"calibration batch {i}: input {name!r} is {arr.dtype}, the model takes float32")
        batches.append(args)
    if not batches:
        raise SophonError("calibration data is empty: give at least one batch of model inputs")
    return batches


# ------------------------------------------------------------------ rewriting

class _Rewriter:
    def __init__(self, bb, scales: dict, per_channel: bool):
        self.bb = bb
        self.scales = scales        # var -> activation scale
        self.per_channel = per_channel
        self.f: dict = {}           # original var -> float expr in the new function
        self.q: dict = {}           # original var -> (int8 var, scale)
        self.zp: dict = {}          # original var -> its zero point, where not 0 (FIXED_OUTPUT)

    def const(self, array, dtype):
        return relax.const(np.asarray(array, dtype=dtype))

    def float_of(self, var):
        if var in self.f:
            return self.f[var]
        if var in self.q:
            qv, s = self.q[var]
            self.f[var] = self.dequantize(qv, s, self.zp.get(var, 0))
            return self.f[var]
        return var

    def float_expr(self, expr):
        """``expr`` (a var, a tuple of them as concat takes or main returns, or a
        constant) in the new function, in float."""
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self.float_expr(f) for f in expr.fields])
        if isinstance(expr, relax.TupleGetItem):
            return relax.TupleGetItem(self.float_expr(expr.tuple_value), expr.index)
        return self.float_of(expr) if _is_var(expr) else expr

    def int8_of(self, var, shape=None):
        """var in int8 with its scale; with ``shape``, reshaped to it (an int8 view)."""
        if var not in self.q:
            s = self.scales[var]
            qv = self.bb.emit(relax.op.quantize(self.float_of(var), self.const(s, "float32"), self.const(0, "int32"),
                                                axis=0, out_dtype="int8"))
            self.q[var] = (qv, s)
        qv, s = self.q[var]
        if shape is not None and [int(d) for d in var.ty.shape.values] != [int(d) for d in shape.values]:
            qv = self.bb.emit(relax.op.reshape(qv, shape))
        return qv, s

    def int8_of_scale(self, var, s):
        qv = self.bb.emit(relax.op.quantize(self.float_of(var), self.const(s, "float32"), self.const(0, "int32"),
                                            axis=0, out_dtype="int8"))
        return qv, s

    def int8_constant(self, expr):
        """dequantize(an int8 constant): ``expr`` quantized symmetric, one scale."""
        c = constant_value(expr)
        s = np.float32(np.abs(c).max() / 127.0) if np.abs(c).max() > 0 else np.float32(1.0)
        return self.dequantize(self.const(np.clip(np.round(c / s), -127, 127), "int8"), s)

    def dequantize(self, qv, s, zp=0):
        return self.bb.emit(relax.op.dequantize(qv, self.const(s, "float32"), self.const(zp, "int32"), axis=0))

    def dequantized(self, var):
        """dequantize(int8 of var), with var's zero point."""
        qv, s = self.int8_of(var)
        return self.dequantize(qv, s, self.zp.get(var, 0))

    def requantize(self, layer: _Layer, y, s=None, zp=0, shape=None):
        """The layer's int8 output (with ``shape``, reshaped to it: an int8 view)."""
        s = self.scales[layer.out] if s is None else s
        yq = self.bb.emit(relax.op.quantize(y, self.const(s, "float32"), self.const(zp, "int32"), axis=0,
                                            out_dtype="int8"))
        if zp:
            self.zp[layer.out] = zp
        if layer.act is not None:
            hi = 127 if layer.act[0] == "relu" else int(min(127, round(layer.act[2] / s)))
            yq = self.bb.emit(relax.op.clip(yq, 0, hi))
        if shape is not None and [int(d) for d in yq.ty.shape.values] != [int(d) for d in shape.values]:
            yq = self.bb.emit(relax.op.reshape(yq, shape))
        self.q[layer.out] = (yq, s)

    def weights(self, w: np.ndarray, axis: int):
        """Symmetric int8 weights and their scales along ``axis`` (or one scale)."""
        if self.per_channel:
            reduce = tuple(i for i in range(w.ndim) if i != axis)
            scale = np.abs(w).max(axis=reduce) / 127.0
        else:
            scale = np.array(np.abs(w).max() / 127.0)
        scale = np.where(scale > 0, scale, 1e-8).astype("float32")
        shape = [1] * w.ndim
        if scale.ndim:
            shape[axis] = -1
        wq = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype("int8")
        return wq, scale

    def layer(self, layer: _Layer) -> None:
        bb = self.bb
        var, call = layer.ops[0]
        call = layer.call if layer.call is not None else call
        if layer.kind in QDQ_CHAINS.values() and len(layer.ops) > 1:   # (nn.gelu is one op, a "gelu" too)
            self.qdq_chain(layer)
        elif layer.kind in QDQ_OPS.values():
            self.qdq_layer(layer)
        elif layer.kind in ("conv2d", "conv2d_transpose", "dense", "affine"):
            # (an affine below rank 4 reads its input as the conv's 4-D view)
            xq, sx = self.int8_of(layer.inputs[0], call.args[0].ty.shape)
            w = constant_value(call.args[1])
            if layer.kind != "dense":
                axis = str(call.attrs.kernel_layout).index("O")
                wq, sw = self.weights(w, axis)
                wdq = bb.emit(relax.op.dequantize(self.const(wq, "int8"), self.const(sw, "float32"),
                                                  self.const(0, "int32"), axis=axis))
            else:  # matmul(x, W (K, N)): int8 weights stored (N, K), as TFLite's FC
                wq, sw = self.weights(w.T, 0)
                perm = bb.emit(relax.op.permute_dims(self.const(wq, "int8")))
                wdq = bb.emit(relax.op.dequantize(perm, self.const(sw, "float32"), self.const(0, "int32"), axis=1))
            y = bb.emit(relax.Call(call.op, [self.dequantize(xq, sx), wdq], call.attrs, span=call.span))
            b = _bias(layer, call)
            if b is not None:
                bias_scale = (np.float32(sx) * np.broadcast_to(sw, b.shape)).astype("float32")
                bq = np.round(b / bias_scale).astype("int32")
                axis = _channel_axis(call)
                shape = [1] * len(call.ty.shape.values)
                shape[axis] = b.size
                bdq = bb.emit(relax.op.dequantize(self.const(bq.reshape(shape), "int32"),
                                                  self.const(bias_scale, "float32"), self.const(0, "int32"),
                                                  axis=axis))
                y = bb.emit(relax.op.add(y, bdq))
            self.requantize(layer, y, shape=layer.out.ty.shape)
        elif layer.kind == "add":
            operands = [self.dequantize(*self.int8_of(v, call.ty.shape), self.zp.get(v, 0)) if _is_var(v)
                        else self.int8_constant(v) for v in call.args]
            y = bb.emit(relax.Call(call.op, operands, call.attrs, span=call.span))
            self.requantize(layer, y)
        elif layer.kind == "max_pool2d":
            xq, sx = self.int8_of(layer.inputs[0])
            self.q[layer.out] = (bb.emit(relax.Call(call.op, [xq], call.attrs, span=call.span)), sx)
        else:  # avg_pool2d: integer sum and division (the chip rounds as TFLite does)
            xq, sx = self.int8_of(layer.inputs[0])
            wide = bb.emit(relax.op.astype(xq, "int32"))
            pooled = bb.emit(relax.Call(call.op, [wide], call.attrs, span=call.span))
            self.q[layer.out] = (bb.emit(relax.op.astype(pooled, "int8")), sx)

    def qdq_layer(self, layer: _Layer) -> None:
        """quantize(op(dequantize(x) ...)): the op in float between its int8 operands
        and its int8 result, as TVM's TFLite importer writes an int8 TFLite op."""
        var, call = layer.ops[0]
        operands = [self.dequantized(v) for v in layer.inputs]
        if call.op.name == "relax.concat":
            args = [relax.Tuple(operands)]
        elif call.op.name == "relax.nn.adaptive_avg_pool2d":  # the global pool as TFLite's MEAN
            mean = relax.op.mean(operands[0], axis=_global_pool_axes(call), keepdims=True)
            call = relax.Call(mean.op, mean.args, mean.attrs, span=call.span)
            args = mean.args
        else:
            it = iter(operands)
            args = [next(it) if _is_var(a) else self.int8_constant(a) if call.op.name in CONST_OPERAND else a
                    for a in call.args]
        y = self.bb.emit(relax.Call(call.op, args, call.attrs, call.ty_args, span=call.span))
        if layer.kind in FIXED_OUTPUT:
            self.requantize(layer, y, *FIXED_OUTPUT[layer.kind])
        elif layer.kind in KEEPS_SCALE:
            self.requantize(layer, y, self.q[layer.inputs[0]][1], self.zp.get(layer.inputs[0], 0))
        else:
            self.requantize(layer, y)

    def qdq_chain(self, layer: _Layer) -> None:
        """quantize(chain(dequantize(x))): the chain's ops, in order, on the dequantized input."""
        new = {layer.inputs[0]: self.dequantized(layer.inputs[0])}
        for var, call in layer.ops:
            args = [new.get(a, a) if _is_var(a) else a for a in call.args]
            new[var] = self.bb.emit(relax.Call(call.op, args, call.attrs, call.ty_args, span=call.span))
        self.requantize(layer, new[layer.out])

    def float_op(self, var, call) -> None:
        if call.op.name in INT8_MOVES and _is_var(call.args[0]) and call.args[0] not in self.q and \
                var in self.scales and _moves_zero(call):
            # a float value moved into an int8 layer: quantize first (at the layer's
            # scale: a move changes no value), so the move runs on int8
            self.q[call.args[0]] = self.int8_of_scale(call.args[0], self.scales[var])
        if call.op.name in INT8_MOVES and _is_var(call.args[0]) and call.args[0] in self.q and _moves_zero(call):
            # data movement of an int8 value: stays int8, with its scale
            qv, s = self.q[call.args[0]]
            self.q[var] = (self.bb.emit(relax.Call(call.op, [qv, *call.args[1:]], call.attrs, span=call.span)), s)
            if call.args[0] in self.zp:
                self.zp[var] = self.zp[call.args[0]]
            return
        args = [self.float_expr(a) for a in call.args]
        self.f[var] = self.bb.emit(relax.Call(call.op, args, call.attrs, call.ty_args, span=call.span))


def _bias(layer: _Layer, call) -> Optional[np.ndarray]:
    """The per-channel bias of a conv / dense / affine layer (its add's constant), or None."""
    adds = [(i, c) for i, (v, c) in enumerate(layer.ops) if c.op.name == "relax.add"]
    if not adds:
        return None
    i, add = adds[0]
    if layer.kind == "affine":  # a lone add (i = 0) adds to the input, else to the multiply
        return _channel_constant(add, layer.inputs[0] if i == 0 else layer.ops[i - 1][0], call)
    var = layer.ops[0][0]
    return constant_value([a for a in add.args if not a.same_as(var)][0]).ravel()


def _moves_zero(call) -> bool:
    """A move that only moves values (a pad fills with 0, the int8 zero point)."""
    if call.op.name != "relax.nn.pad":
        return True
    value = getattr(call.attrs, "pad_value", 0.0)
    return str(getattr(call.attrs, "pad_mode", "constant")) == "constant" and float(getattr(value, "value", value)) == 0


def _rewrite(func, bindings, layers: dict, quantized: set, scales: dict, per_channel: bool,
             probes: list) -> tvm.IRModule:
    """The QDQ module: layers in ``quantized`` (first-op vars) in int8, the rest fp32.
    ``probes`` (layer output vars) are returned after the model's output."""
    bb = relax.BlockBuilder()
    rw = _Rewriter(bb, scales, per_channel)
    inside = {v for first, l in layers.items() if first in quantized for v, _ in l.ops}
    with bb.function("main", list(func.params)):
        with bb.dataflow():
            for var, value in bindings:
                if var in layers and var in quantized:
                    rw.layer(layers[var])
                elif var in inside:
                    continue  # bias add / activation, done inside the layer
                elif isinstance(value, relax.Call):
                    rw.float_op(var, value)
                elif _is_var(value):  # an alias (gv = lv): whatever lv became
                    rw.f[var] = rw.float_of(value)
                    if value in rw.q:
                        rw.q[var] = rw.q[value]
                else:
                    rw.f[var] = bb.emit(rw.float_expr(value))
            outputs = [rw.float_expr(func.body.body)] + [rw.float_of(p) for p in probes]
            out = bb.emit_output(relax.Tuple(outputs) if probes else outputs[0])
        bb.emit_func_output(out)
    return bb.get()


def _stats(fp32: np.ndarray, int8: np.ndarray) -> tuple[float, float, float]:
    a, b = fp32.ravel().astype(np.float64), int8.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.allclose(a, b))
    noise = np.sum((a - b) ** 2)
    sqnr = float(10 * np.log10(np.sum(a ** 2) / noise)) if noise > 0 else float("inf")
    return cosine, sqnr, float(np.max(np.abs(a - b))) if a.size else 0.0


@dataclasses.dataclass
class _Quantization:
    """What calibration decided: the layers, their scales, which run in int8."""

    func: relax.Function
    bindings: list
    layers: dict
    scales: dict
    int8: set
    report: QuantizeReport

    def module(self, probes: list = ()) -> tvm.IRModule:
        return _rewrite(self.func, self.bindings, self.layers, self.int8, self.scales,
                        self.report.per_channel, list(probes))


def _prepare(mod, params):
    if params:
        mod = relax.transform.BindParams("main", {k: tvm.runtime.tensor(np.asarray(v))
                                                  for k, v in params.items()})(mod)
    func, bindings = _main_bindings(relax.transform.FoldConstant()(mod))
    if any(isinstance(v, relax.Call) and isinstance(v.op, tvm.ir.Op) and v.op.name == "relax.nn.layer_norm"
           for _, v in bindings):
        func, bindings = _main_bindings(_expand_layer_norms(func, bindings))
    return func, bindings


def _expand_layer_norms(func, bindings) -> tvm.IRModule:
    """main with each nn.layer_norm written out as the ops TFLite's int8 LayerNorm is
    made of, which quantize one by one: m = mean(x), d = x - m, v = mean(d * d),
    r = rsqrt(v + eps), (d * r) * gamma + beta (the last, per channel, an affine)."""
    bb = relax.BlockBuilder()
    with bb.function("main", list(func.params)):
        with bb.dataflow():
            for var, value in bindings:
                if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                        and value.op.name == "relax.nn.layer_norm"):
                    bb.emit_normalized(relax.VarBinding(var, value))
                    continue
                x, gamma, beta = value.args
                axes = [int(a) for a in value.attrs.axes]
                m = bb.emit(relax.op.mean(x, axis=axes, keepdims=True))
                d = bb.emit(relax.op.subtract(x, m))
                v = bb.emit(relax.op.mean(bb.emit(relax.op.multiply(d, d)), axis=axes, keepdims=True))
                r = bb.emit(relax.op.rsqrt(bb.emit(relax.op.add(v, relax.const(float(value.attrs.epsilon),
                                                                                    "float32")))))
                y = bb.emit(relax.op.add(bb.emit(relax.op.multiply(bb.emit(relax.op.multiply(d, r)), gamma)), beta))
                bb.emit_normalized(relax.VarBinding(var, y))
            out = bb.emit_output(func.body.body)
        bb.emit_func_output(out)
    return bb.get()


def _calibrate(mod, calibration_data, params, method, per_channel, cosine_threshold, progress) -> _Quantization:
    if method not in METHODS:
        raise SophonError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    func, bindings = _prepare(mod, params)
    batches = _batches(func, calibration_data)
    layers = _find_layers(bindings)
    if not layers:
        raise SophonError("no layer of this model can be quantized (conv2d, dense, add, pools, reductions, "
                          "softmax, activations, element-wise ops, concat, resize)")
    tensors = list(dict.fromkeys(v for l in layers.values() for v in [*l.inputs, l.out]))
    observed = _run_batches(_probe_module(func, bindings, tensors), batches, progress, "calibrating")
    hists = {v: Histogram() for v in tensors}
    for outputs in observed:
        for v, value in zip(tensors, outputs):
            hists[v].add(value)
    scales = {v: float(np.float32(h.threshold(method) / 127.0)) for v, h in hists.items()}
    for layer in layers.values():
        if layer.act is not None and layer.act[0] == "clip":
            # a clamped output (relu6) piles up at its bound: a threshold below the largest
            # value would clip that pile (KL picks one), so take the largest value
            scales[layer.out] = max(scales[layer.out], float(np.float32(hists[layer.out].threshold("max") / 127.0)))
        if layer.kind in SHARES_SCALE:
            common = max(scales[v] for v in [*layer.inputs, layer.out])
            scales.update({v: common for v in [*layer.inputs, layer.out]})

    outs = [l.out for l in layers.values()]
    reference = {v: np.concatenate([o[tensors.index(v)] for o in observed]) for v in outs}
    int8 = set(layers)
    for _ in range(3):  # fall back, re-measure (errors propagate), until every int8 layer passes
        qdq = _rewrite(func, bindings, layers, int8, scales, per_channel, outs)
        measured = _run_batches(qdq, batches, progress, "comparing")
        stats = {v: _stats(reference[v], np.concatenate([m[1 + i] for m in measured]))
                 for i, v in enumerate(outs)}
        failing = {first for first, l in layers.items() if first in int8 and stats[l.out][0] < cosine_threshold}
        if not failing:
            break
        int8 -= failing
    report = QuantizeReport(method, per_channel, cosine_threshold, [
        LayerStats(l.name, l.kind, *stats[l.out], first in int8) for first, l in layers.items()])
    return _Quantization(func, bindings, layers, scales, int8, report)


def quantize(mod: tvm.IRModule, calibration_data: Iterable, *, params: Optional[dict] = None,
             method: str = "kl", per_channel: bool = True, cosine_threshold: float = 0.99,
             progress: bool = True) -> tvm.IRModule:
    """INT8 post-training quantization (see the module docstring).

    ``calibration_data``: batches of model inputs, each a dict name -> array or a
    list of arrays in main's order. Returns the quantized module (partition and
    build it for an INT8 chip, e.g. ``chip="bm1684"``); ``quantize_report(mod)``
    gives per-layer cosine, SQNR and max error and the layers that fell back."""
    q = _calibrate(mod, calibration_data, params, method, per_channel, cosine_threshold, progress)
    return q.module().with_attr(REPORT_ATTR, q.report.to_json())


# ------------------------------------------------------------------ comparing on the chip

@dataclasses.dataclass
class Comparison:
    """Per layer: INT8 on the chip against FP32 (TVM's llvm build) on the same inputs."""

    chip: str
    layers: list[LayerStats]

    def format(self) -> str:
        from .profile import _fit

        w = min(40, max([5] + [len(l.name) for l in self.layers]))
        lines = [f"INT8 on {self.chip} against FP32, per layer (TPU-MLIR's npz compare)",
                 f"{'layer':<{w}} {'kind':<16} {'precision':<9} {'cosine':>9} {'SQNR dB':>8} {'max err':>9}"]
        for l in self.layers:
            lines.append(f"{_fit(l.name, w):<{w}} {l.kind:<16} {'int8' if l.int8 else 'fp32':<9} {l.cosine:>9.5f} "
                         f"{l.sqnr_db:>8.2f} {l.max_error:>9.4g}")
        worst = min((l.cosine for l in self.layers), default=1.0)
        lines.append(f"minimum cosine {worst:.5f}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    def write_plot(self, path, title: str = "") -> None:
        """Cosine and SQNR per layer (PNG, needs matplotlib); ``title`` names the model."""
        from matplotlib.patches import Patch

        from .profile import _fit, _pyplot

        plt = _pyplot()
        n = len(self.layers)
        fig, (cos_ax, sqnr_ax) = plt.subplots(2, 1, figsize=(max(10.0, 4 + 0.3 * n), 7.5), sharex=True)
        xs = range(n)
        cos_ax.plot(xs, [l.cosine for l in self.layers], "o-", label="cosine(INT8 on the chip, FP32)")
        cos_ax.axhline(0.99, color="r", linestyle="--", label="fallback threshold 0.99")
        cos_ax.set_ylabel("cosine similarity")
        cos_ax.legend(loc="center left", fontsize=8)  # between the cosines (near 1) and the threshold
        sqnrs = [min(l.sqnr_db, 100) for l in self.layers]
        sqnr_ax.set_ylim(0, max(sqnrs + [1.0]) * 1.25)  # headroom for the legend
        sqnr_ax.bar(xs, sqnrs,
                    color=["tab:blue" if l.int8 else "tab:gray" for l in self.layers])
        sqnr_ax.set_ylabel("SQNR (dB, capped at 100)")
        sqnr_ax.set_xticks(list(xs), [_fit(l.name, 28) for l in self.layers], rotation=90,
                           fontsize=7 if n > 30 else 8)
        sqnr_ax.set_xlabel("layer")
        sqnr_ax.legend(handles=[Patch(color="tab:blue", label="runs in INT8"),
                                Patch(color="tab:gray", label="fell back to FP32")], loc="upper right",
                       ncol=2, fontsize=8)
        fig.suptitle(f"{title + ': ' if title else ''}INT8 on {self.chip} against FP32, per layer")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def compare(mod: tvm.IRModule, inputs: Iterable, *, params: Optional[dict] = None, chip="bm1684",
            method: str = "kl", per_channel: bool = True, calibration_data: Optional[Iterable] = None,
            cosine_threshold: float = 0.99, progress: bool = False) -> Comparison:
    """Quantize ``mod`` (calibrating on ``calibration_data``, default ``inputs``), run
    it on the chip with every layer's output brought out, and compare each with
    the FP32 model's (cosine, SQNR, max error)."""
    from .build import build
    from .chip import get_chip
    from .partition import partition_for_sophon

    chip = get_chip(chip)
    if not chip.has_int8:
        raise SophonCompileError(f"compare runs INT8 on the chip, but {chip.name} is FP32 only; use an INT8 "
                          "profile such as bm1684")
    q = _calibrate(mod, calibration_data if calibration_data is not None else inputs, params, method,
                   per_channel, cosine_threshold, progress)
    batches = _batches(q.func, inputs)
    outs = [l.out for l in q.layers.values()]
    fp32 = _run_batches(_probe_module(q.func, q.bindings, outs), batches, progress, "fp32")
    probe = q.module(outs)
    vm = relax.VirtualMachine(build(partition_for_sophon(probe, chip=chip), chip=chip), tvm.cpu())
    chip_runs = [vm["main"](*map(tvm.runtime.tensor, b)) for b in batches]
    stats = []
    for i, (first, layer) in enumerate(q.layers.items()):
        ref = np.concatenate([f[i] for f in fp32])
        got = np.concatenate([run[1 + i].numpy() for run in chip_runs])
        stats.append(LayerStats(layer.name, layer.kind, *_stats(ref, got), first in q.int8))
    return Comparison(chip.name, stats)
