"""Region analysis: a Relax region (``Codegen="sophon"``) as a list of layers,
one per composite, in topological order.

A layer knows its activation operands (which stream through the chip and can be
sliced), its parameters (weights and bias, resident), the view each operand and
its result take on the chip (program.View), and its instruction attributes. The
planner and the lowering both read layers; neither looks at Relax again.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from typing import Optional

import tvm
import numpy as np
from tvm import relax
from tvm.ir.prim.expr import FloatImm, IntImm

from tvm_sophon.chip import DTYPE_BYTES
from tvm_sophon.errors import SophonCompileError
from tvm_sophon.patterns import chains
from tvm_sophon.patterns.int8_cast import CASTS
from tvm_sophon.patterns.int8_eltwise import FLOAT_TABLE_ONLY, QBINARY, UNARY, relu_bounds
from tvm_sophon.names import model_name

from . import movement
from . import program as P

ROOT_OPS = {
    "relax.nn.conv2d", "relax.matmul", "relax.nn.max_pool2d", "relax.nn.avg_pool2d",
    "relax.nn.adaptive_avg_pool2d", "relax.mean", "relax.add", "relax.subtract",
    "relax.multiply", "relax.maximum", "relax.minimum", "relax.nn.relu", "relax.clip",
    "relax.nn.leakyrelu", "relax.sigmoid", "relax.tanh", "relax.nn.softmax",
    "relax.image.resize2d", "relax.nn.conv2d_transpose", "relax.sum", "relax.max", "relax.min",
    "relax.nn.layer_norm", "relax.nn.instance_norm", "relax.nn.group_norm",
}
BINARY = {"relax.add": "ADD", "relax.subtract": "SUB", "relax.multiply": "MUL",
          "relax.maximum": "MAX", "relax.minimum": "MIN", "relax.divide": "DIV"}
ROOT_OPS |= {"relax.divide"}
MOVEMENT_PATTERNS = {"sophon." + kind for kind in (
    "reshape", "flatten", "squeeze", "expand_dims", "permute_dims", "strided_slice", "broadcast_to",
    "tile", "pad", "concat", "qconcat")}
CAST_PATTERNS = {"sophon." + name for name in CASTS}
ACTIVATIONS = {"relax.nn.relu", "relax.clip", "relax.nn.leakyrelu", "relax.sigmoid", "relax.tanh"}


def shape_of(expr) -> tuple[int, ...]:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise SophonCompileError(f"sophon region value {expr} has no static tensor type")
    dims = []
    for d in ty.shape.values:
        if not isinstance(d, IntImm):
            raise SophonCompileError(f"sophon region value {expr} has a dynamic shape {ty.shape}")
        dims.append(int(d))
    _check_size(expr, tuple(dims), str(ty.dtype))
    return tuple(dims)


# The SC1 card's DDR (/work/shared/bm1680.md): no tensor of a region can be larger.
MAX_TENSOR_BYTES = 16 << 30
_INT32_MAX = (1 << 31) - 1


def _check_size(expr, dims: tuple[int, ...], dtype: str) -> None:
    """Refuse, at compile time, a tensor no chip could hold: the runtime's
    descriptors take int32 dimensions, and the whole tensor must fit in DDR."""
    name = getattr(expr, "name", None) or getattr(expr, "name_hint", None) or type(expr).__name__
    elements = 1
    for d in dims:
        elements *= d
    nbytes = elements * DTYPE_BYTES.get(dtype, 4)
    if any(d > _INT32_MAX for d in dims) or nbytes > MAX_TENSOR_BYTES:
        raise SophonCompileError(
            f"tensor {name} of shape {list(dims)} {dtype} ({nbytes / (1 << 30):.3g} GiB) is larger than "
            f"the chip can hold: at most {MAX_TENSOR_BYTES >> 30} GiB (its DDR) and 2^31-1 per dimension")


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _onnxruntime_quantization(x_scale, x_zp, out_scale, out_zp) -> tuple:
    """(input scale, input zero point, output scale, output zero point) of an int8
    op in onnxruntime's arithmetic, from per-tensor constants (its pattern checks)."""
    def first(v):
        return np.asarray(v).reshape(-1)[0]

    return (float(np.float32(first(x_scale))), int(first(x_zp)), float(np.float32(first(out_scale))),
            int(first(out_zp)))


def _scalar(expr) -> float:
    if isinstance(expr, (IntImm, FloatImm)):
        return float(expr.value)
    raise SophonCompileError(f"expected a constant scalar, got {expr}")


@functools.lru_cache(maxsize=4096)
def _sanitize(name: str) -> str:
    base = re.sub(r"[^0-9A-Za-z_]", "_", name) or "t"
    return "t" + base if base[0].isdigit() else base


def c_identifier(name: str, taken: set[str]) -> str:
    base = _sanitize(name)
    candidate, k = base, 1
    while candidate in taken:
        candidate, k = f"{base}_{k}", k + 1
    taken.add(candidate)
    return candidate


def activation_of(call: Optional[relax.Call]) -> P.Activation:
    if call is None:
        return P.Activation()
    name = call.op.name
    if name == "relax.nn.relu":
        return P.Activation("RELU")
    if name == "relax.clip":
        return P.Activation("CLIP", lo=_scalar(call.args[1]), hi=_scalar(call.args[2]))
    if name == "relax.nn.leakyrelu":
        return P.Activation("LEAKY_RELU", alpha=float(call.attrs.alpha))
    if name == "relax.sigmoid":
        return P.Activation("SIGMOID")
    if name == "relax.tanh":
        return P.Activation("TANH")
    raise SophonCompileError(f"{name} is not an activation the chip fuses")


@dataclasses.dataclass(eq=False)
class Operand:
    value: P.Tensor
    view: P.View
    layout: str = "ALIGNED"     # ALIGNED for activations, COMPACT for weights and bias

    @functools.cached_property
    def dims(self) -> tuple[int, int, int, int]:
        """(n, c, h, w) of the whole tensor under the view."""
        return P.view_dims(self.value.shape, self.view)

    @functools.cached_property
    def key(self) -> tuple:
        return (id(self.value), self.view, self.layout)


@dataclasses.dataclass(eq=False)
class Layer:
    """One chip instruction over whole tensors, before any slicing."""

    index: int
    pattern: str
    kind: str                   # conv2d | conv2d_transpose | fc | pool2d | binary | unary | softmax | resize | reduce | norm | lrn | movement
    out: Operand
    acts: list[Operand]         # activation operands, streamed (conv: [in]; binary: [lhs, rhs])
    params: list[Optional[Operand]]  # resident: conv/fc [weight, bias or None]
    attrs: dict

    @property
    def name(self) -> str:
        return self.out.value.name

    @property
    def label(self) -> str:
        """The model's name for the layer (from the frontend) for reports and errors,
        else its tensor's name."""
        return self.out.value.label or self.name

    def macs(self) -> int:
        if self.kind in ("conv2d", "qconv2d"):
            n, oc, oh, ow = P.view_dims(self.out.value.shape, self.out.view)
            ic = P.view_dims(self.acts[0].value.shape, self.acts[0].view)[1] // self.attrs["groups"]
            kh, kw = self.attrs["kernel"]
            return n * oc * oh * ow * ic * kh * kw
        if self.kind == "conv2d_transpose":
            from tvm_sophon.patterns.deconv import transpose_macs

            n, oc, oh, ow = P.view_dims(self.out.value.shape, self.out.view)
            _, ic, h, w = P.view_dims(self.acts[0].value.shape, self.acts[0].view)
            a = self.attrs
            return transpose_macs(n, ic, oc, a["groups"], (h, w), (oh, ow), a["kernel"], a["strides"],
                                  a["padding"][:2], a["dilation"])
        if self.kind in ("fc", "qfc"):
            m, nf = P.view_dims(self.out.value.shape, self.out.view)[:2]
            return m * nf * P.view_dims(self.acts[0].value.shape, self.acts[0].view)[1]
        return 0

    def rows_sliceable(self) -> bool:
        """Whether the layer can compute a band of output rows from a band of input
        rows: image ops whose views put a tensor axis on h. Movement layers run DDR
        to DDR, alone in their group (codegen/movement.py): neither rows nor batch."""
        if self.kind in ("fc", "qfc", "softmax", "movement", "reduce", "norm", "lrn", "qreduce", "qsoftmax"):
            return False
        if self.kind in ("pool2d", "qpool2d") and self.attrs.get("global"):
            return False
        if not self.out.view[2]:
            return False
        if self.kind in ("pool2d", "qpool2d"):
            # ceil mode: the last window reaches past the padded input; keep whole
            h = P.view_dims(self.acts[0].value.shape, self.acts[0].view)[2]
            oh = P.view_dims(self.out.value.shape, self.out.view)[2]
            kh, sh = self.attrs["kernel"][0], self.attrs["strides"][0]
            t, _, b, _ = self.attrs["padding"]
            if (oh - 1) * sh + (kh - 1) * self.attrs["dilation"][0] + 1 > h + t + b:
                return False
        return all(op.view[2] == self.out.view[2] or P.view_dims(op.value.shape, op.view)[2] == 1
                   for op in self.acts)

    def batch_sliceable(self) -> bool:
        """Whether bands of the n dim can be computed apart: every operand puts
        the same axes of the same sizes on n as the result (the batch axis, or the
        rows, M, of an fc and the element-wise ops after it), or has n = 1.
        Movement layers run DDR to DDR, alone in their group: never."""
        if self.kind == "movement":
            return False
        out_axes = self.out.view[0]
        return all(P.view_dims(op.value.shape, op.view)[0] == 1
                   or (op.view[0] == out_axes and len(op.value.shape) == len(self.out.value.shape)
                       and all(op.value.shape[a] == self.out.value.shape[a] for a in out_axes))
                   for op in self.acts)


def _rematch(pattern: str, fn: relax.Function) -> dict:
    """The annotated expressions of a composite: its registered pattern matched
    again against the composite's body (keys as in the pattern table)."""
    from tvm.relax.backend.pattern_registry import get_patterns_with_prefix

    var2val = relax.analysis.get_var2val(fn)
    body = fn.body.body
    # several patterns can share a name (sophon.qconcat, one per arity): the one that matches.
    # A composite returning a tuple (an intermediate is used outside it): the
    # pattern matches the one field that is its result
    for fusion in (f for f in get_patterns_with_prefix(pattern) if f.name == pattern):
        for out in list(body.fields) if isinstance(body, relax.Tuple) else [body]:
            matched = fusion.pattern.extract_matched_expr(var2val.get(out, out), var2val)
            if matched is not None:
                return {str(k): matched[p] for k, p in fusion.annotation_patterns.items() if p in matched}
    raise SophonCompileError(f"composite {pattern} does not match its own pattern")


class _Composite:
    """One composite call, resolved to region-level operands."""

    def __init__(self, pattern: str, fn: relax.Function, args, out_var):
        self.pattern = pattern
        self.out_var = out_var
        self.layer_name = str((fn.attrs or {}).get("sophon.layer", "")) or None  # partition.LAYER_ATTR
        self.env = {p: a for p, a in zip(fn.params, args)}
        self.producer: dict = {}
        calls = []
        for block in fn.body.blocks:
            for binding in block.bindings:
                self.producer[binding.var] = binding.value
                calls.append(binding.value)
        # values the composite returns: one, or a tuple when an intermediate of the
        # matched chain is also used outside it (a pre-activation sum feeding a skip)
        ret = fn.body.body
        self.returns = list(ret.fields) if isinstance(ret, relax.Tuple) else [ret]
        # an activation chain (hard-swish, SiLU, ...) or PReLU: its parts as annotated
        # an int8 chain (sophon.q*) is read through its pattern's annotations, never as a float chain
        int8 = pattern.startswith("sophon.q")
        self.chain = None if int8 else chains.chain_of(pattern)
        self.matched = _rematch(pattern, fn) if self.chain or int8 or pattern == "sophon.prelu" else {}
        # values the composite returns: one, or a tuple when an intermediate of the
        # matched chain is also used outside it (a pre-activation sum feeding a skip)
        ret = fn.body.body
        self.returns = list(ret.fields) if isinstance(ret, relax.Tuple) else [ret]
        self.standalone = pattern in ("sophon.prelu", f"sophon.{self.chain.name if self.chain else ''}")
        self.bias_call = None
        if self.standalone:
            self.root, self.bias, self.act = self.matched["root"], None, None
            return
        root_ops = movement.MOVES if pattern in MOVEMENT_PATTERNS else ROOT_OPS
        roots = [c for c in calls if isinstance(c, relax.Call) and c.op.name in root_ops]
        if not roots and (int8 or pattern in CAST_PATTERNS):  # dequantize -> quantize, an op only the int8
            roots = [calls[-1]]                                  # table runs, or a lone cast
        if not roots:
            raise SophonCompileError(f"composite {pattern} has no op the chip runs")
        self.root: relax.Call = roots[0]
        self.bias = None
        self.act: Optional[relax.Call] = None
        root_var = next(v for v, value in self.producer.items() if value.same_as(self.root))
        self.root_var = root_var
        for call in roots[1:] if not pattern.startswith("sophon.q") and root_ops is ROOT_OPS else []:
            if call.op.name == "relax.add" and self.root.op.name in (
                    "relax.nn.conv2d", "relax.nn.conv2d_transpose", "relax.matmul") \
                    and any(arg.same_as(root_var) for arg in call.args):
                # the pattern matches add(root, bias) and add(bias, root) alike
                lhs, rhs = call.args
                self.bias = self.region_value(rhs if lhs.same_as(root_var) else lhs)
                self.bias_call = call
            elif call.op.name in ACTIVATIONS and self.chain is None:
                self.act = call

    def region_value(self, expr):
        """The region-level value behind a composite-local expression, looking
        through a reshape or permute_dims of a parameter."""
        if isinstance(expr, relax.Var) and expr in self.env:
            return self.env[expr]
        value = self.producer.get(expr)
        if isinstance(value, relax.Call) and value.op.name in (
                "relax.reshape", "relax.permute_dims", "relax.dequantize", "relax.astype"):
            return self.region_value(value.args[0])
        raise SophonCompileError(f"composite {self.pattern}: operand {expr} is not a region value")

    def var_of(self, call) -> relax.Var:
        return next(v for v, value in self.producer.items() if value.same_as(call))

    def calls_of(self, op_name: str) -> list:
        return [c for c in self.producer.values() if isinstance(c, relax.Call) and c.op.name == op_name]

    def weight_is_transposed(self) -> bool:
        value = self.producer.get(self.root.args[1])
        return isinstance(value, relax.Call) and value.op.name == "relax.permute_dims"


@dataclasses.dataclass
class Region:
    symbol: str
    inputs: list[P.Tensor]
    outputs: list[P.Tensor]
    layers: list[Layer]
    aliases: list[P.Tensor] = dataclasses.field(default_factory=list)  # reshaped arguments
    _placer: object = dataclasses.field(default=None, repr=False, compare=False)

    def placer(self) -> "movement.Placer":
        """Where every value sits in DDR (views, values written in place), computed once."""
        if self._placer is None:
            self._placer = movement.Placer(self)
        return self._placer

    def consumers(self, tensor: P.Tensor) -> list[Layer]:
        return [l for l in self.layers if any(op.value is tensor for op in [*l.acts, *filter(None, l.params)])]


class _Analysis:
    def __init__(self, func: relax.Function, symbol: str):
        self.func = func
        self.symbol = symbol
        self.names: set[str] = set()
        self.tensors: dict = {}
        self.views: dict = {}          # relax var -> view it is produced under
        self.layers: list[Layer] = []
        self.aliases: list[P.Tensor] = []
        attrs = func.attrs or {}
        # whose integer arithmetic the int8 layers follow (partition.INT8_ARITHMETIC_ATTR)
        self.int8_arithmetic = str(attrs.get("sophon.int8_arithmetic", "tflite"))
        self.readers: dict = {}        # region value -> ops reading it (onnxruntime_type)
        self.const_args = {}
        if "sophon.const_args" in attrs:
            for name, c in json.loads(str(attrs["sophon.const_args"])).items():
                self.const_args[name] = np.array(c["values"], dtype=c["dtype"]).reshape(c["shape"])

    def tensor(self, var, role="intermediate") -> P.Tensor:
        if isinstance(var, tvm.ir.expr.Constant):
            raise SophonCompileError(f"region {self.symbol}: constant operand {var} was not lifted to an argument")
        if var not in self.tensors:
            self.tensors[var] = P.Tensor(c_identifier(var.name, self.names), shape_of(var), str(var.ty.dtype), role)
        return self.tensors[var]

    def operand(self, var, view, layout="ALIGNED") -> Operand:
        return Operand(self.tensor(var), view, layout)

    def add(self, comp: _Composite, layer_kind: str, out_view, acts, resident, **attrs) -> None:
        self.views[comp.out_var] = out_view
        out = self.tensor(comp.out_var)
        out.label = out.label or model_name(comp.root) or comp.layer_name or ""
        self.layers.append(Layer(len(self.layers), comp.pattern, layer_kind,
                                 self.operand(comp.out_var, out_view), acts, resident, attrs))

    def activation(self, comp: _Composite) -> P.Activation:
        """The fused activation: a single op, or a chain whose constants the
        region receives as arguments (recorded in ``sophon.const_args``)."""
        if comp.chain is None:
            return activation_of(comp.act)

        def lookup(expr):
            value = comp.region_value(expr) if isinstance(expr, relax.Var) and expr in comp.env else None
            return self.const_args.get(value.name) if value is not None else None

        params = chains.activation_params(comp.chain, comp.matched, lookup)
        if isinstance(params, str):
            raise SophonCompileError(f"region {self.symbol}: {comp.pattern}: {params}")
        return P.Activation(**params)

    def prelu(self, comp: _Composite) -> None:
        """PReLU as the binary op x > 0 ? x : x * slope, the slope broadcast per channel."""
        x, slope = comp.region_value(comp.matched["input"]), comp.region_value(comp.matched["rhs"])
        oshape = shape_of(comp.out_var)
        view = self.views.get(x) or P.default_view(len(oshape))
        root = comp.matched["root"]
        if root.op.name == "relax.nn.prelu":  # a 1-D slope along `axis`
            axis = int(root.attrs.axis) % len(oshape)
            group = next(dims for dims in view if axis in dims)
            if group != (axis,) and shape_of(slope)[0] != 1:
                raise SophonCompileError(f"region {self.symbol}: prelu over axis {axis} of {oshape}, which "
                                         f"the chip view {view} flattens with other axes")
            slope_view = tuple((0,) if axis in dims else () for dims in view)
        else:
            slope_view = broadcast_view(view, len(oshape), shape_of(slope))
        self.add(comp, "binary", view, [self.operand(x, view), self.operand(slope, slope_view)], [],
                 op="PRELU", act=P.Activation())

    def bias(self, comp: _Composite) -> Optional[Operand]:
        if comp.bias is None:
            return None
        shape = shape_of(comp.bias)
        axes = ([i for i, d in enumerate(shape) if d != 1] or [len(shape) - 1]) if shape else []
        return self.operand(comp.bias, ((), tuple(axes[-1:]), (), ()), "COMPACT")

    def composite(self, comp: _Composite) -> list:
        """The layers of one composite call; returns the region-level values of what
        the composite returns, in order (one, or a tuple's fields).

        A composite whose fused activation's input is also returned (used outside
        the composite) becomes two layers: the op without the activation, whose
        result is that intermediate, then the activation as a unary layer."""
        if len(comp.returns) == 1:
            self.layer(comp)
            return [comp.out_var]
        # the fused activation: a single op (its input is the op's result), or a
        # chain (its input is the op's result after the bias)
        act = comp.act if comp.chain is None or comp.standalone else comp.matched.get("activation")
        act_var = comp.var_of(act) if act is not None else None
        final = act_var if act_var is not None else comp.var_of(comp.root) if comp.bias is None else None
        inner = [v for v in comp.returns if not v.same_as(final)] if final is not None else comp.returns
        if act is not None and comp.chain is not None:
            act_input = comp.var_of(comp.bias_call) if comp.bias_call is not None else comp.root_var
        else:
            act_input = act.args[0] if act is not None else None
        if comp.pattern.startswith("sophon.q") or act is None or \
                any(not v.same_as(act_input) for v in inner):
            names = ", ".join(v.name for v in comp.returns)
            raise SophonCompileError(
                f"region {self.symbol}: composite {comp.pattern} returns {names}; only the input of its "
                f"fused activation can be used outside it besides its result")
        # identical composites share one function, so its local vars stand for a
        # value of this call only under fresh names
        pre, post = (relax.Var(v.name, v.ty) for v in (act_input, act_var))
        activation = self.activation(comp)
        comp.out_var, comp.act, comp.chain = pre, None, None
        self.layer(comp)
        view = self.views[post] = self.views[pre]
        self.layers.append(Layer(len(self.layers), comp.pattern, "unary", self.operand(post, view),
                                 [self.operand(pre, view)], [], {"act": activation}))
        return [pre if v.same_as(act_input) else post for v in comp.returns]

    def layer(self, comp: _Composite) -> None:
        if comp.pattern.startswith("sophon.q"):
            return self.qlayer(comp)
        if comp.pattern in CAST_PATTERNS:
            return self.cast_layer(comp)
        if comp.pattern.startswith("sophon.reduce_"):
            return self.reduce_layer(comp)
        if comp.pattern == "sophon.lrn":
            return self.lrn_layer(comp)
        if comp.root.op.name in ("relax.nn.layer_norm", "relax.nn.instance_norm", "relax.nn.group_norm"):
            return self.norm_layer(comp)
        if comp.pattern == "sophon.prelu":
            return self.prelu(comp)
        if comp.standalone:  # an activation chain or special function on its own
            x = comp.region_value(comp.matched["input"])
            view = self.elementwise_view(shape_of(x), [x])
            return self.add(comp, "unary", view, [self.operand(x, view)], [], act=self.activation(comp))
        root = comp.root
        name = root.op.name
        if comp.pattern in MOVEMENT_PATTERNS:
            return movement.analyze(self, comp)
        if name == "relax.nn.conv2d":
            # weight (1, OC, IC/groups, KH*KW)
            self.conv_layer(comp, "conv2d", "OI")
        elif name == "relax.matmul":
            x, w = comp.region_value(root.args[0]), comp.region_value(root.args[1])
            rank = len(shape_of(x))
            view = (tuple(range(rank - 1)), (rank - 1,), (), ())
            wview = ((), (0,), (1,), ()) if comp.weight_is_transposed() else ((), (1,), (0,), ())
            self.add(comp, "fc", view, [self.operand(x, view)],
                     [self.operand(w, wview, "COMPACT"), self.bias(comp)], act=self.activation(comp))
        elif name in ("relax.nn.max_pool2d", "relax.nn.avg_pool2d"):
            attrs = root.attrs
            view = P.layout_view(str(attrs.layout))
            self.add(comp, "pool2d", view, [self.operand(comp.region_value(root.args[0]), view)], [],
                     kind="MAX" if name == "relax.nn.max_pool2d" else "AVG",
                     kernel=_ints(attrs.pool_size), strides=_ints(attrs.strides),
                     padding=_ints(attrs.padding), dilation=_ints(attrs.dilation),
                     count_include_pad=bool(getattr(attrs, "count_include_pad", False)))
        elif name in ("relax.nn.adaptive_avg_pool2d", "relax.mean"):
            self.global_pool(comp)
        elif name in BINARY:
            lhs, rhs = comp.region_value(root.args[0]), comp.region_value(root.args[1])
            oshape = shape_of(comp.out_var)
            view = self.elementwise_view(oshape, [lhs, rhs])
            acts = [self.operand(v, broadcast_view(view, len(oshape), shape_of(v))) for v in (lhs, rhs)]
            self.add(comp, "binary", view, acts, [], op=BINARY[name], act=self.activation(comp))
        elif name == "relax.nn.softmax":
            x = comp.region_value(root.args[0])
            rank = len(shape_of(x))
            axis = int(root.attrs.axis) % rank
            view = ((), tuple(range(axis)), (axis,), tuple(range(axis + 1, rank)))
            self.add(comp, "softmax", view, [self.operand(x, view)], [])
        elif name == "relax.nn.conv2d_transpose":
            # weight (1, IC, OC/groups, KH*KW): TVM's I axis on the lanes
            self.conv_layer(comp, "conv2d_transpose", "IO")
        elif name == "relax.image.resize2d":
            from tvm_sophon.patterns.resize import resize_modes

            layout = str(root.attrs.layout)
            view = P.layout_view(layout)
            x = comp.region_value(root.args[0])
            method, coord, rounding = resize_modes(root.attrs)
            self.add(comp, "resize", view, [self.operand(x, view)], [], method=method, coord=coord,
                     rounding=rounding)
        elif name in ACTIVATIONS:
            x = comp.region_value(root.args[0])
            view = self.elementwise_view(shape_of(x), [x])
            self.add(comp, "unary", view, [self.operand(x, view)], [], act=activation_of(root))
        else:  # pragma: no cover - ROOT_OPS and this dispatch are kept in step
            raise SophonCompileError(f"no lowering for {name}")

    def elementwise_view(self, out_shape: tuple, operands: list) -> P.View:
        """The view of an element-wise layer: an operand's of the result's shape
        (so that a chain of them shares one), else the default; above 4-D the
        result's axes merged to 4-D where every operand is whole or broadcast
        (patterns.rules.collapsed_groups, which the pattern checked)."""
        if len(out_shape) > 4:
            from tvm_sophon.patterns.rules import collapsed_groups

            groups = collapsed_groups(out_shape, [shape_of(v) for v in operands])
            if groups is None:
                raise SophonCompileError(f"region {self.symbol}: an element-wise op of shape {out_shape} "
                                         f"does not merge to 4-D")
            return tuple([()] * (4 - len(groups)) + groups)
        return next((self.views[v] for v in operands if shape_of(v) == out_shape and v in self.views),
                    P.default_view(len(out_shape)))

    def reduce_layer(self, comp: _Composite) -> None:
        """sum / mean / max / min over the adjacent axes [a, b]: those on h, the axes
        before on c (the lanes), the axes after on w."""
        from tvm_sophon.patterns.reduce import REDUCTIONS, reduced_axes

        x = comp.region_value(comp.root.args[0])
        rank = len(shape_of(x))
        axes = reduced_axes(comp.root)
        a, b = axes[0], axes[-1] + 1
        view = ((), tuple(range(a)), tuple(range(a, b)), tuple(range(b, rank)))
        if comp.root.attrs.keepdims:
            out_view = view
        else:
            out_view = ((), tuple(range(a)), (), tuple(range(a, rank - (b - a))))
        self.add(comp, "reduce", out_view, [self.operand(x, view)], [],
                 kind=REDUCTIONS[comp.root.op.name.split(".")[-1]])

    def lrn_layer(self, comp: _Composite) -> None:
        """LRN across the channels of an NCHW tensor (patterns/lrn.py's chain)."""
        from tvm_sophon.patterns.lrn import lrn_size

        x = comp.region_value(comp.calls_of("relax.divide")[0].args[0])
        scalars = {name: float(self.const(comp, comp.calls_of(op)[-1].args[1]).reshape(()))
                   for name, op in (("alpha", "relax.multiply"), ("bias", "relax.add"), ("beta", "relax.power"))}
        view = P.layout_view("NCHW")
        self.add(comp, "lrn", view, [self.operand(x, view)], [],
                 size=lrn_size(comp.calls_of("relax.nn.avg_pool3d")[0]), **scalars)

    def norm_layer(self, comp: _Composite) -> None:
        """layer / instance norm: the normalised axes [a, b] on h; a layer norm's
        gamma and beta run along h, an instance norm's along its channel axis (on
        c when it comes just before the run, on w when it is the last axis after it)."""
        from tvm_sophon.patterns.norm import norm_axes

        root = comp.root
        x = comp.region_value(root.args[0])
        rank = len(shape_of(x))
        axes, channel = norm_axes(root)
        a, b = axes[0], axes[-1] + 1
        if channel is None:
            view = ((), tuple(range(a)), tuple(range(a, b)), tuple(range(b, rank)))
            affine_view = ((), (), tuple(range(b - a)), ())
        elif channel == a - 1:
            view = (tuple(range(channel)), (channel,), tuple(range(a, b)), tuple(range(b, rank)))
            affine_view = ((), (0,), (), ())
        else:  # the last axis, right after the run
            view = ((), tuple(range(a)), tuple(range(a, b)), (channel,))
            affine_view = ((), (), (), (0,))
        affine = [self.operand(comp.region_value(arg), affine_view, "COMPACT") if enabled else None
                  for arg, enabled in ((root.args[1], root.attrs.scale), (root.args[2], root.attrs.center))]
        self.add(comp, "norm", view, [self.operand(x, view)], affine, epsilon=float(root.attrs.epsilon))

    def conv_layer(self, comp: _Composite, kind: str, lanes_rows: str) -> None:
        """A conv2d or conv2d_transpose layer; its weight goes on the chip with kernel
        axis lanes_rows[0] on the lanes (c), lanes_rows[1] on h and H, W along w."""
        attrs = comp.root.attrs
        layout, klayout = str(attrs.data_layout), str(attrs.kernel_layout)
        x, w = comp.region_value(comp.root.args[0]), comp.region_value(comp.root.args[1])
        wshape = shape_of(w)
        view = P.layout_view(layout)
        wview = ((), (klayout.index(lanes_rows[0]),), (klayout.index(lanes_rows[1]),),
                 (klayout.index("H"), klayout.index("W")))
        self.add(comp, kind, view, [self.operand(x, view)],
                 [self.operand(w, wview, "COMPACT"), self.bias(comp)],
                 kernel=(wshape[klayout.index("H")], wshape[klayout.index("W")]),
                 strides=_ints(attrs.strides), padding=_ints(attrs.padding),
                 dilation=_ints(attrs.dilation), groups=int(attrs.groups), act=self.activation(comp))

    def cast_layer(self, comp: _Composite) -> None:
        """A lone quantize (float32 -> int8) or dequantize (int8 -> float32),
        per-tensor (patterns/int8_cast.py); a quantize rounds as the model's
        source: onnxruntime's QuantizeLinear half to even, TFLite's half away."""
        root = comp.root
        x = comp.region_value(root.args[0])
        scale = float(np.float32(np.asarray(self.const(comp, root.args[1])).reshape(())))
        zero_point = int(np.asarray(self.const(comp, root.args[2])).reshape(()))
        rounding = "HALF_TO_EVEN" if self.int8_arithmetic == "onnxruntime" else "HALF_AWAY"
        view = self.elementwise_view(shape_of(x), [x])
        self.add(comp, "cast", view, [self.operand(x, view)], [], scale=scale, zero_point=zero_point,
                 rounding=rounding)

    # ---- int8 composites: dequantize -> op -> quantize (-> clip) -------------------
    def const(self, comp: _Composite, expr) -> np.ndarray:
        """The compile-time value of a scale or zero point operand."""
        value = comp.region_value(expr)
        if value.name not in self.const_args:
            raise SophonCompileError(f"region {self.symbol}: {comp.pattern} needs {value.name} as a constant")
        return self.const_args[value.name]

    def dequantized(self, comp: _Composite, expr):
        """(region value, scale, zero point) behind a dequantize call, and the shape
        a reshape in between gives it (or None)."""
        call = comp.producer[expr]
        reshaped = None
        if call.op.name == "relax.reshape":
            reshaped = shape_of(expr)
            call = comp.producer[call.args[0]]
        if call.op.name == "relax.permute_dims":
            call = comp.producer[call.args[0]]
        assert call.op.name == "relax.dequantize", call.op.name
        return comp.region_value(call.args[0]), self.const(comp, call.args[1]), \
            self.const(comp, call.args[2]), reshaped

    def alias(self, var, shape) -> P.Tensor:
        base = self.tensor(var)
        t = P.Tensor(c_identifier(base.name + "_reshaped", self.names), tuple(shape), base.dtype, "input",
                     base=base)
        self.aliases.append(t)
        return t

    def clamp(self, comp: _Composite) -> tuple[int, int]:
        clips = comp.calls_of("relax.clip")
        if not clips:
            return -128, 127
        return int(_scalar(clips[0].args[1])), int(_scalar(clips[0].args[2]))

    def requant(self, q, x_scale, w_scale, out_scale):
        """A conv's or fc's requantization in its model's arithmetic: TFLite's as
        given, onnxruntime's (one float32 rounding) for an ONNX QDQ model."""
        from tvm_sophon import quant

        return quant.onnxruntime_requant(q, x_scale, w_scale, out_scale) \
            if self.int8_arithmetic == "onnxruntime" else q

    def onnxruntime_type(self, value) -> str:
        """The type onnxruntime (x86) gives the int8 value ``value`` of an ONNX QDQ model:
        "u8" or "s8". Whether it fuses a DequantizeLinear -> op -> QuantizeLinear group into
        its QLinear kernel (QLinearConv, QLinearAdd, QLinearMul, with their own arithmetic)
        or runs the float op between them depends on these types, through two of its graph
        transformers (onnxruntime 1.32's source, checked against its optimized-model dumps
        of the QDQ zoo and bench/host_speed.py's networks):
        - QDQS8ToU8Transformer (x86) makes a QuantizeLinear uint8 when its one consumer is
          one DequantizeLinear read by one op (EnsureUniqueDQForNodeUnit gives each reader
          its own DequantizeLinear first): a value read by one op is "u8", by two "s8".
          Constant weights keep their type ("s8").
        - the QDQ selectors fuse Conv when input and output are uint8 (int8 activations
          fuse on ARM only), Add and Mul when both inputs and the output have one type.
        Readers are counted in the region and, for its arguments and outputs, outside
        it (count_readers); a model output's DequantizeLinear is one reader."""
        if isinstance(value, tvm.ir.expr.Constant) or (isinstance(value, relax.Var) and value.name in self.const_args):
            return "s8"
        return "u8" if self.readers.get(value, 0) == 1 else "s8"

    def count_readers(self) -> None:
        """self.readers: how many ops read each value of the region: its composites (each
        DequantizeLinear reader inside them), and the readers outside the region of its
        arguments and outputs that partitioning recorded."""
        functions, alias = {}, {}
        body = self.func.body.body

        def source(var):
            while var in alias:
                var = alias[var]
            return var

        def bump(var, count=1):
            var = source(var)
            self.readers[var] = self.readers.get(var, 0) + count

        # readers outside the region (partition._record_outside_readers)
        outside = json.loads(str((self.func.attrs or {}).get("sophon.outside_readers", "{}")))
        for param, count in zip(self.func.params, outside.get("params", [])):
            self.readers[param] = count
        for block in self.func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Function):
                    functions[binding.var] = value
                elif isinstance(value, relax.Var):
                    alias[binding.var] = value
                elif isinstance(value, relax.Call):
                    fn = functions.get(value.op)
                    for k, arg in enumerate(value.args):
                        if isinstance(arg, relax.Var):
                            bump(arg, _param_reads(fn, k) if isinstance(fn, relax.Function) else 1)
                elif isinstance(value, relax.TupleGetItem) and isinstance(value.tuple_value, relax.Var):
                    bump(value.tuple_value)
        out_vars = list(body.fields) if isinstance(body, relax.Tuple) else [body]
        counts = outside.get("outputs", [1] * len(out_vars))
        for var, count in zip(out_vars, counts):
            if isinstance(var, relax.Var):
                bump(var, count)

    def qresize_layer(self, comp: _Composite, out_scale=None, out_zp=None) -> None:
        """An int8 resize: TFLite's keeps the input's quantization
        (int8_movement.rule_same_as_input); onnxruntime's dequantizes, resizes in
        f32 and quantizes (a resize of the int8 tensor itself keeps it)."""
        from tvm_sophon.patterns.resize import resize_modes

        root = comp.calls_of("relax.image.resize2d")[0]
        view = P.layout_view(str(root.attrs.layout))
        method, coord, rounding = resize_modes(root.attrs)
        x, ort = comp.region_value(root.args[0]), None
        if self.int8_arithmetic == "onnxruntime":
            ort = (1.0, 0, 1.0, 0)
            if out_scale is not None:  # per-tensor (int8_movement.rule_per_tensor)
                x, x_scale, x_zp, _ = self.dequantized(comp, root.args[0])
                ort = _onnxruntime_quantization(x_scale, x_zp, out_scale, out_zp)
        return self.add(comp, "resize", view, [self.operand(x, view)], [], method=method, coord=coord,
                        rounding=rounding, onnxruntime=ort)

    def qlayer(self, comp: _Composite) -> None:
        from tvm_sophon import quant

        if comp.pattern.startswith(("sophon.qreduce_", "sophon.qsoftmax")):
            return self.qreduce_layer(comp)
        act_min, act_max = self.clamp(comp)
        quantize = comp.calls_of("relax.quantize")
        if quantize:
            out_scale, out_zp = self.const(comp, quantize[0].args[1]), self.const(comp, quantize[0].args[2])
        if comp.pattern == "sophon.qconcat":  # bytes; an input quantized otherwise is rescaled first
            return movement.analyze_qconcat(self, comp, out_scale, out_zp)
        if comp.pattern == "sophon.qresize2d":
            return self.qresize_layer(comp, out_scale, out_zp) if quantize else self.qresize_layer(comp)
        if comp.pattern.startswith("sophon.qconv2d_transpose"):
            root = comp.calls_of("relax.nn.conv2d_transpose")[0]
            attrs = root.attrs
            klayout = str(attrs.kernel_layout)
            x, x_scale, x_zp, _ = self.dequantized(comp, root.args[0])
            w, w_scale, _, _ = self.dequantized(comp, root.args[1])
            wshape = shape_of(w)
            view = P.layout_view(str(attrs.data_layout))
            # weight (1, IC, OC/groups, KH*KW), as the f32 transposed conv
            wview = ((), (klayout.index("I"),), (klayout.index("O"),), (klayout.index("H"), klayout.index("W")))
            return self.add(comp, "conv2d_transpose", view, [self.operand(x, view)],
                            [self.operand(w, wview, "COMPACT"), self.qbias(comp)],
                            kernel=(wshape[klayout.index("H")], wshape[klayout.index("W")]),
                            strides=_ints(attrs.strides), padding=_ints(attrs.padding),
                            dilation=_ints(attrs.dilation), groups=int(attrs.groups), act=P.Activation(),
                            requant=self.requant(quant.conv_requant(x_scale, x_zp, w_scale, out_scale, out_zp, act_min,
                                                                  act_max), x_scale, w_scale, out_scale))
        if comp.pattern.startswith("sophon.qconv2d"):
            root = comp.calls_of("relax.nn.conv2d")[0]
            attrs = root.attrs
            layout, klayout = str(attrs.data_layout), str(attrs.kernel_layout)
            x, x_scale, x_zp, _ = self.dequantized(comp, root.args[0])
            w, w_scale, _, reshaped = self.dequantized(comp, root.args[1])
            wtensor = self.alias(w, reshaped) if reshaped else self.tensor(w)
            wshape = wtensor.shape
            view = P.layout_view(layout)
            wview = ((), (klayout.index("O"),), (klayout.index("I"),), (klayout.index("H"), klayout.index("W")))
            bias = self.qbias(comp)
            kernel = (wshape[klayout.index("H")], wshape[klayout.index("W")])
            requant = quant.conv_requant(x_scale, x_zp, w_scale, out_scale, out_zp, act_min, act_max)
            if self.int8_arithmetic == "onnxruntime" and self.onnxruntime_type(x) == "u8" \
                    and self.onnxruntime_type(comp.out_var) == "u8":
                requant = quant.onnxruntime_requant(requant, x_scale, w_scale, out_scale)  # QLinearConv
            elif self.int8_arithmetic == "onnxruntime":  # its float Conv
                requant = quant.onnxruntime_float_conv_requant(requant, x_scale, w_scale, out_scale)
            self.add(comp, "qconv2d", view, [self.operand(x, view)],
                     [Operand(wtensor, wview, "COMPACT"), bias], kernel=kernel,
                     strides=_ints(attrs.strides), padding=_ints(attrs.padding),
                     dilation=_ints(attrs.dilation), groups=int(attrs.groups), requant=requant)
        elif comp.pattern.startswith("sophon.qdense"):
            root = comp.calls_of("relax.matmul")[0]
            x, x_scale, x_zp, _ = self.dequantized(comp, root.args[0])
            w, w_scale, _, _ = self.dequantized(comp, root.args[1])
            rank = len(shape_of(x))
            view = (tuple(range(rank - 1)), (rank - 1,), (), ())
            self.add(comp, "qfc", view, [self.operand(x, view)],
                     [self.operand(w, ((), (0,), (1,), ()), "COMPACT"), self.qbias(comp)],
                     requant=self.requant(quant.fc_requant(x_scale, x_zp, w_scale, out_scale, out_zp, act_min,
                                                           act_max), x_scale, w_scale, out_scale))
        elif comp.pattern.startswith("sophon.qadd"):
            root = comp.calls_of("relax.add")[0]
            a, a_scale, a_zp, _ = self.dequantized(comp, root.args[0])
            b, b_scale, b_zp, _ = self.dequantized(comp, root.args[1])
            oshape = shape_of(comp.out_var)
            view = self.elementwise_view(oshape, [a, b])
            if self.int8_arithmetic == "onnxruntime":
                return self.onnxruntime_add(comp, view, oshape, (a, a_scale, a_zp), (b, b_scale, b_zp),
                                            out_scale, out_zp, act_min, act_max)
            acts = [self.operand(v, broadcast_view(view, len(oshape), shape_of(v))) for v in (a, b)]
            self.add(comp, "qadd", view, acts, [],
                     params=quant.add_params(a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, act_min, act_max))
        elif _qeltwise_name(comp.pattern) in ("qsubtract", *UNARY, *QBINARY):
            self.qeltwise_layer(comp, out_scale, out_zp)
        else:  # sophon.qmax_pool2d(_qdq), sophon.qavg_pool2d(_qdq)
            kind = "MAX" if comp.pattern.startswith("sophon.qmax_pool2d") else "AVG"
            root = comp.calls_of("relax.nn.max_pool2d" if kind == "MAX" else "relax.nn.avg_pool2d")[0]
            attrs = root.attrs
            view = P.layout_view(str(attrs.layout))
            x, ort, count_include_pad = comp.region_value(root.args[0]), None, False
            if comp.pattern == "sophon.qavg_pool2d_qdq":  # onnxruntime's QLinearAveragePool
                x, x_scale, x_zp, _ = self.dequantized(comp, root.args[0])
                ort = _onnxruntime_quantization(x_scale, x_zp, out_scale, out_zp)
                count_include_pad = bool(attrs.count_include_pad)
            self.add(comp, "qpool2d", view, [self.operand(x, view)], [],
                     kind=kind, kernel=_ints(attrs.pool_size), strides=_ints(attrs.strides),
                     padding=_ints(attrs.padding), dilation=_ints(attrs.dilation),
                     count_include_pad=count_include_pad, act_min=act_min, act_max=act_max, onnxruntime=ort)

    def onnxruntime_add(self, comp: _Composite, view, oshape, lhs, rhs, out_scale, out_zp, act_min, act_max):
        """An ONNX QDQ Add as onnxruntime runs it: QLinearAdd where it fuses the group
        (onnxruntime_type), else the float Add between DequantizeLinear and QuantizeLinear."""
        from tvm_sophon import quant_eltwise as qe

        kinds = {self.onnxruntime_type(lhs[0]), self.onnxruntime_type(rhs[0]), self.onnxruntime_type(comp.out_var)}
        broadcast = tuple(shape_of(rhs[0])) != tuple(oshape)
        if len(kinds) == 1 and broadcast and tuple(shape_of(lhs[0])) != tuple(oshape):
            kinds = set()  # both inputs broadcast: MLAS's kernel per run is not modelled; the float Add
        elif len(kinds) == 1 and tuple(shape_of(lhs[0])) != tuple(oshape):
            lhs, rhs, broadcast = rhs, lhs, True  # the broadcast operand second (QLinearAdd is symmetric)
        acts = [self.operand(v, broadcast_view(view, len(oshape), shape_of(v))) for v in (lhs[0], rhs[0])]
        if len(kinds) == 1:
            params = qe.onnxruntime_qlinear_add_params(lhs[1], lhs[2], rhs[1], rhs[2], out_scale, out_zp,
                                                       kinds == {"u8"}, broadcast, act_min, act_max)
        else:
            params = qe.onnxruntime_float_params("ADD_FLOAT", lhs[1], lhs[2], rhs[1], rhs[2], out_scale, out_zp,
                                                 act_min, act_max)
        return self.add(comp, "qbinary", view, acts, [], params=params)

    def qeltwise_layer(self, comp: _Composite, out_scale, out_zp) -> None:
        """An int8 element-wise chain (patterns/int8_eltwise.py): a unary op as a
        table lookup, SUB as the int8 add, MUL / MAX / MIN / PRELU / SQUARED_DIFFERENCE as binary_int8."""
        from tvm_sophon import quant_eltwise as qe

        name = _qeltwise_name(comp.pattern)
        m = comp.matched
        act_min, act_max = self.qeltwise_clamp(comp, out_scale, out_zp)
        if name in UNARY:
            x, scale, zp = self._dequantize_of(comp, m["input"])
            alpha = beta = 0.0
            if name == "qleakyrelu":
                alpha = float(comp.calls_of("relax.nn.leakyrelu")[0].attrs.alpha)
            elif name in ("qelu", "qhardsigmoid"):
                params = chains.activation_params(chains.CHAINS[name[1:]], m, self._lookup(comp))
                alpha, beta = float(params["alpha"]), float(params.get("beta", 0.0))
            bounds = (0.0, 0.0)
            if name == "qrelu":
                bounds = relu_bounds((comp.calls_of("relax.nn.relu") + comp.calls_of("relax.clip"))[0])
            if self.int8_arithmetic == "onnxruntime" or name in FLOAT_TABLE_ONLY:
                # an ONNX QDQ model's unary op is a float32 op between DequantizeLinear and
                # QuantizeLinear (onnxruntime builds its QLinear* tables so)
                table = qe.float_lut_table(UNARY[name], scale, zp, out_scale, out_zp, alpha, beta, *bounds)
            else:
                table = qe.lut_table(UNARY[name], scale, zp, out_scale, out_zp, alpha, *bounds)
            view = self.elementwise_view(shape_of(x), [x])
            return self.add(comp, "qlut", view, [self.operand(x, view)], [], table=table)
        lhs, l_scale, l_zp = self._dequantize_of(comp, m["lhs"] if "lhs" in m else m["input"])
        rhs, r_scale, r_zp = self._dequantize_of(comp, m["rhs"])
        oshape = shape_of(comp.out_var)
        if name == "qprelu":
            view = self.views.get(lhs) or P.default_view(len(oshape))
            params = qe.prelu_params(l_scale, l_zp, r_scale, r_zp, out_scale, out_zp)
        else:
            view = self.elementwise_view(oshape, [lhs, rhs])
        acts = [self.operand(v, broadcast_view(view, len(oshape), shape_of(v))) for v in (lhs, rhs)]
        if name == "qmultiply" and self.int8_arithmetic == "onnxruntime" and len(
                {self.onnxruntime_type(lhs), self.onnxruntime_type(rhs), self.onnxruntime_type(comp.out_var)}) == 1:
            # a group onnxruntime fuses into QLinearMul (onnxruntime_type)
            params = qe.onnxruntime_mul_params(l_scale, l_zp, r_scale, r_zp, out_scale, out_zp, act_min, act_max)
            return self.add(comp, "qbinary", view, acts, [], params=params)
        if name in ("qsubtract", "qmultiply") and self.int8_arithmetic == "onnxruntime":
            # onnxruntime's float Sub / Mul between DequantizeLinear and QuantizeLinear
            op = "SUB_FLOAT" if name == "qsubtract" else "MUL_FLOAT"
            return self.add(comp, "qbinary", view, acts, [], params=qe.onnxruntime_float_params(
                op, l_scale, l_zp, r_scale, r_zp, out_scale, out_zp, act_min, act_max))
        if name == "qsubtract":
            return self.add(comp, "qadd", view, acts, [], params=qe.sub_params(
                l_scale, l_zp, r_scale, r_zp, out_scale, out_zp, act_min, act_max))
        if name == "qmultiply":
            params = qe.mul_params(l_scale, l_zp, r_scale, r_zp, out_scale, out_zp, act_min, act_max)
        elif name in ("qmaximum", "qminimum"):
            params = qe.minmax_params(QBINARY[name], out_zp, act_min, act_max)
        elif name == "qsquared_difference":
            params = qe.squared_difference_params(l_scale, l_zp, r_scale, r_zp, out_scale, out_zp)
        self.add(comp, "qbinary", view, acts, [], params=params)

    def qeltwise_clamp(self, comp: _Composite, out_scale, out_zp) -> tuple[int, int]:
        """The int8 clamp of a binary chain: its int8 clip after the quantize, and
        its float relu / clip before it as TFLite's CalculateActivationRangeQuantized
        turns a fused activation into bounds (zero point + round(bound / scale))."""
        lo, hi = -128, 127
        scale, zp = np.float32(np.asarray(out_scale).reshape(())), int(np.asarray(out_zp).reshape(()))

        def quantized(bound: float) -> int:
            v = float(np.float32(bound) / scale)
            return zp + int(np.sign(v) * np.floor(abs(v) + 0.5))   # TfLiteRound: half away from zero

        for call in comp.calls_of("relax.nn.relu") + comp.calls_of("relax.clip"):
            if str(call.args[0].ty.dtype) == "int8":     # the int8 clip after the quantize
                lo, hi = max(lo, int(_scalar(call.args[1]))), min(hi, int(_scalar(call.args[2])))
                continue
            f_lo, f_hi = (0.0, float("inf")) if call.op.name == "relax.nn.relu" else \
                (_scalar(call.args[1]), _scalar(call.args[2]))
            lo = max(lo, quantized(f_lo)) if np.isfinite(f_lo) else lo
            hi = min(hi, quantized(f_hi)) if np.isfinite(f_hi) else hi
        return lo, hi

    def _dequantize_of(self, comp: _Composite, data):
        """(region value, scale, zero point) of the dequantize whose input is ``data``."""
        call = next(c for c in comp.calls_of("relax.dequantize") if c.args[0].same_as(data))
        return comp.region_value(call.args[0]), self.const(comp, call.args[1]), self.const(comp, call.args[2])

    def _lookup(self, comp: _Composite):
        def lookup(expr):
            value = comp.region_value(expr) if isinstance(expr, relax.Var) and expr in comp.env else None
            return self.const_args.get(value.name) if value is not None else None
        return lookup

    def qreduce_layer(self, comp: _Composite) -> None:
        """INT8 reduce or softmax (patterns/int8_reduce.py): the reduced axes (the
        softmax axis) on h, the axes before on c, those after on w, as the float ops."""
        from tvm_sophon import quant
        from tvm_sophon.patterns.reduce import REDUCTIONS, reduced_axes

        root = comp.root
        x, x_scale, x_zp, _ = self.dequantized(comp, root.args[0])
        quantize = comp.calls_of("relax.quantize")[0]
        out_scale, out_zp = self.const(comp, quantize.args[1]), self.const(comp, quantize.args[2])
        rank = len(shape_of(x))
        if root.op.name == "relax.nn.softmax":
            axis = int(root.attrs.axis) % rank
            view = ((), tuple(range(axis)), (axis,), tuple(range(axis + 1, rank)))
            if self.int8_arithmetic == "onnxruntime":  # QLinearSoftmax, any output quantization
                s_in, _, s_out, z_out = _onnxruntime_quantization(x_scale, x_zp, out_scale, out_zp)
                self.add(comp, "qsoftmax", view, [self.operand(x, view)], [], input_multiplier=0,
                         input_left_shift=0, onnxruntime=(s_in, s_out, z_out))
                return
            multiplier, left_shift = quant.softmax_params(float(np.asarray(x_scale).reshape(())))
            self.add(comp, "qsoftmax", view, [self.operand(x, view)], [],
                     input_multiplier=multiplier, input_left_shift=left_shift)
            return
        axes = reduced_axes(root)
        a, b = axes[0], axes[-1] + 1
        view = ((), tuple(range(a)), tuple(range(a, b)), tuple(range(b, rank)))
        out_view = view if root.attrs.keepdims else ((), tuple(range(a)), (), tuple(range(a, rank - (b - a))))
        kind = REDUCTIONS[root.op.name.split(".")[-1]]
        requant = None
        if kind in ("SUM", "MEAN"):
            requant = quant.reduce_requant(*(float(np.asarray(v).reshape(())) for v in (x_scale, x_zp, out_scale, out_zp)))
            if self.int8_arithmetic == "onnxruntime":
                count = int(np.prod([shape_of(x)[a] for a in axes])) if kind == "MEAN" else 1
                requant = quant.onnxruntime_mean_requant(requant, x_scale, out_scale, count)
        self.add(comp, "qreduce", out_view, [self.operand(x, view)], [], kind=kind, requant=requant)

    def qbias(self, comp: _Composite) -> Optional[Operand]:
        adds = comp.calls_of("relax.add")
        if not adds:
            return None
        for arg in adds[0].args:
            call = comp.producer.get(arg)
            if isinstance(call, relax.Call) and call.op.name == "relax.reshape":  # ONNX QDQ
                call = comp.producer.get(call.args[0])
            if isinstance(call, relax.Call) and call.op.name == "relax.dequantize":
                bias = comp.region_value(call.args[0])
                shape = shape_of(bias)
                axes = ([i for i, d in enumerate(shape) if d != 1] or [len(shape) - 1]) if shape else []
                return self.operand(bias, ((), tuple(axes[-1:]), (), ()), "COMPACT")
        raise SophonCompileError(f"{comp.pattern}: bias is not dequantized")

    def global_pool(self, comp: _Composite) -> None:
        root = comp.root
        x = comp.region_value(root.args[0])
        xshape, oshape = shape_of(x), shape_of(comp.out_var)
        if root.op.name == "relax.mean":
            axes = sorted(int(a) % 4 for a in root.attrs.axis)
            layout = "NCHW" if axes == [2, 3] else "NHWC"
        else:
            layout = str(root.attrs.layout)
        view = P.layout_view(layout)
        h_axis, w_axis = layout.index("H"), layout.index("W")
        if len(oshape) == 4:
            oh, ow = oshape[h_axis], oshape[w_axis]
            out_view = view
        else:  # mean without keepdims: (N, C)
            oh = ow = 1
            out_view = ((0,), (1,), (), ())
        kernel = (xshape[h_axis] // oh, xshape[w_axis] // ow)
        self.add(comp, "pool2d", out_view, [self.operand(x, view)], [], kind="AVG", kernel=kernel,
                 strides=kernel, padding=(0, 0, 0, 0), dilation=(1, 1), count_include_pad=True,
                 **{"global": (oh, ow) == (1, 1)})

    def run(self) -> Region:
        if self.int8_arithmetic == "onnxruntime":
            self.count_readers()
        inputs = []
        for i, param in enumerate(self.func.params):
            t = self.tensor(param, "input")
            t.arg_index = i
            inputs.append(t)
        functions = {}
        tuples: dict = {}              # tuple-valued composite call -> its fields' values
        body = self.func.body.body
        out_vars = list(body.fields) if isinstance(body, relax.Tuple) else [body]
        for block in self.func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Function):
                    functions[binding.var] = value
                    continue
                if isinstance(value, relax.Var):  # an alias: gv = lv
                    self.tensors[binding.var] = self.tensor(value)
                    self.views[binding.var] = self.views.get(value)
                    continue
                if isinstance(value, relax.TupleGetItem) and value.tuple_value in tuples:
                    field = tuples[value.tuple_value][int(value.index)]
                    self.tensors[binding.var] = self.tensor(field)
                    self.views[binding.var] = self.views.get(field)
                    continue
                fn = functions.get(value.op, value.op) if isinstance(value, relax.Call) else None
                if not isinstance(fn, relax.Function) or "Composite" not in (fn.attrs or {}):
                    raise SophonCompileError(f"region {self.symbol}: {binding.var.name} is not a sophon composite")
                fields = self.composite(_Composite(str(fn.attrs["Composite"]), fn, value.args, binding.var))
                if isinstance(binding.var.ty, relax.TupleType):
                    tuples[binding.var] = fields
        outputs = []
        for k, var in enumerate(out_vars):
            t = self.tensor(var)
            if t.role == "input":
                raise SophonCompileError(f"region {self.symbol}: returns its argument {var.name} unchanged")
            t.role = "output"
            t.arg_index = len(inputs) + k
            outputs.append(t)
        return Region(self.symbol, inputs, outputs, self.layers, self.aliases)


def _param_reads(fn: relax.Function, k: int) -> int:
    """How many ops of composite ``fn`` read its parameter ``k``: the readers of each
    dequantize of it (at least 1)."""
    param = fn.params[k]
    uses: dict = {}
    dequantized = set()

    def visit(expr):
        if isinstance(expr, relax.Call):
            for arg in expr.args:
                if isinstance(arg, relax.Var):
                    uses[arg] = uses.get(arg, 0) + 1
    for block in fn.body.blocks:
        for binding in block.bindings:
            visit(binding.value)
            value = binding.value
            if isinstance(value, relax.Call) and getattr(value.op, "name", "") == "relax.dequantize" \
                    and value.args[0].same_as(param):
                dequantized.add(binding.var)
    if not dequantized:
        return 1
    return max(1, sum(uses.get(v, 0) for v in dequantized))


def _qeltwise_name(pattern: str) -> str:
    """sophon.qmultiply_act_clip -> qmultiply."""
    return re.sub(r"(_act)?(_clip)?$", "", pattern)[len("sophon."):]


def broadcast_view(view: P.View, out_rank: int, shape: tuple[int, ...]) -> P.View:
    """The out view applied to an operand right-aligned to the out rank; axes the
    operand lacks are dropped (they are broadcast, size 1)."""
    offset = out_rank - len(shape)
    return tuple(tuple(a - offset for a in axes if a >= offset) for axes in view)  # type: ignore


def analyze_region(func: relax.Function, symbol: str) -> Region:
    return _Analysis(func, symbol).run()
