"""Lower one offloaded Relax region (a function with ``Codegen="sophon"``) to a
chip program: which tensors go to LMEM under which view, the GDMA loads and
stores, the compute instructions, and where in LMEM each tensor lives.

Each composite call becomes one compute instruction. Region arguments are loaded
right before their first use, results are stored right after they are computed,
and an intermediate consumed under a different view goes through a DDR scratch
buffer (a store and a load), as a compiler for the real chip must do.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

import tvm
from tvm import relax
from tvm.ir.prim.expr import FloatImm, IntImm

from tvm_sophon.chip import Chip
from tvm_sophon.errors import SophonCompileError

from . import program as P

ROOT_OPS = {
    "relax.nn.conv2d", "relax.matmul", "relax.nn.max_pool2d", "relax.nn.avg_pool2d",
    "relax.nn.adaptive_avg_pool2d", "relax.mean", "relax.add", "relax.subtract",
    "relax.multiply", "relax.maximum", "relax.minimum", "relax.nn.relu", "relax.clip",
    "relax.nn.leakyrelu", "relax.sigmoid", "relax.tanh", "relax.nn.softmax",
}
BINARY = {"relax.add": "ADD", "relax.subtract": "SUB", "relax.multiply": "MUL",
          "relax.maximum": "MAX", "relax.minimum": "MIN"}
ACTIVATIONS = {"relax.nn.relu", "relax.clip", "relax.nn.leakyrelu", "relax.sigmoid", "relax.tanh"}


# ------------------------------------------------------------------ helpers

def _shape(expr) -> tuple[int, ...]:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise SophonCompileError(f"sophon region value {expr} has no static tensor type")
    dims = []
    for d in ty.shape.values:
        if not isinstance(d, IntImm):
            raise SophonCompileError(f"sophon region value {expr} has a dynamic shape {ty.shape}")
        dims.append(int(d))
    return tuple(dims)


def _dtype(expr) -> str:
    return str(expr.ty.dtype)


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _scalar(expr) -> float:
    if isinstance(expr, (IntImm, FloatImm)):
        return float(expr.value)
    raise SophonCompileError(f"expected a constant scalar, got {expr}")


def c_identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^0-9A-Za-z_]", "_", name) or "t"
    if base[0].isdigit():
        base = "t" + base
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


# ------------------------------------------------------------------ composites

class Composite:
    """One composite call, resolved to region-level operands."""

    def __init__(self, pattern: str, fn: relax.Function, args, out_var: relax.Var):
        self.pattern = pattern
        self.out_var = out_var
        env = {p: a for p, a in zip(fn.params, args)}
        self.calls: list[relax.Call] = []
        self.producer: dict = {}
        for block in fn.body.blocks:
            for binding in block.bindings:
                self.producer[binding.var] = binding.value
                self.calls.append(binding.value)
        self.env = env
        roots = [c for c in self.calls if isinstance(c, relax.Call) and c.op.name in ROOT_OPS]
        if not roots:
            raise SophonCompileError(f"composite {pattern} has no op the chip runs")
        self.root: relax.Call = roots[0]
        later = roots[1:]
        self.bias: Optional[relax.Expr] = None
        self.act: Optional[relax.Call] = None
        for call in later:
            if call.op.name == "relax.add" and self.root.op.name in ("relax.nn.conv2d", "relax.matmul"):
                self.bias = self.region_value(call.args[1])
            elif call.op.name in ACTIVATIONS:
                self.act = call

    def region_value(self, expr):
        """The region-level value behind a composite-local expression, looking
        through a reshape or permute_dims of a parameter."""
        if isinstance(expr, relax.Var) and expr in self.env:
            return self.env[expr]
        value = self.producer.get(expr)
        if isinstance(value, relax.Call) and value.op.name in ("relax.reshape", "relax.permute_dims"):
            return self.region_value(value.args[0])
        if isinstance(expr, tvm.ir.expr.Constant):
            return expr
        raise SophonCompileError(f"composite {self.pattern}: cannot trace operand {expr}")

    def weight_is_transposed(self) -> bool:
        rhs = self.root.args[1]
        value = self.producer.get(rhs)
        return isinstance(value, relax.Call) and value.op.name == "relax.permute_dims"


# ------------------------------------------------------------------ lowering

class _Lowering:
    def __init__(self, func: relax.Function, symbol: str, chip: Chip):
        self.func = func
        self.symbol = symbol
        self.chip = chip
        self.names: set[str] = set()
        self.tensors: dict = {}        # relax Var -> program Tensor
        self.in_lmem: dict = {}        # relax Var -> list[Local]
        self.in_ddr: dict = {}         # relax Var -> Tensor holding it in DDR
        self.steps: list = []
        self.locals: list[P.Local] = []
        self.scratch: list[P.Tensor] = []
        self.last_use: dict[int, int] = {}   # id(Local) -> step index
        self.first_def: dict[int, int] = {}

    # -- values ------------------------------------------------------------
    def tensor(self, var, role="intermediate") -> P.Tensor:
        if var not in self.tensors:
            self.tensors[var] = P.Tensor(c_identifier(var.name, self.names), _shape(var), _dtype(var), role)
        return self.tensors[var]

    def new_local(self, var, view: P.View, layout: str) -> P.Local:
        t = self.tensor(var)
        local = P.Local(c_identifier("l_" + t.name, self.names), t, view, P.view_dims(t.shape, view), layout)
        self.locals.append(local)
        self.first_def[id(local)] = len(self.steps)
        self.last_use[id(local)] = len(self.steps)
        self.in_lmem.setdefault(var, []).append(local)
        return local

    def use(self, local: P.Local) -> P.Local:
        self.last_use[id(local)] = len(self.steps)
        return local

    def operand(self, var, view: P.View, layout: str = "ALIGNED") -> P.Local:
        """``var`` in LMEM under ``view``: already there, or loaded from DDR."""
        if isinstance(var, tvm.ir.expr.Constant):
            raise SophonCompileError(f"region {self.symbol}: constant operand {var} was not lifted to an argument")
        for local in self.in_lmem.get(var, []):
            if local.view == view and local.layout == layout:
                return self.use(local)
        source = self.in_ddr.get(var)
        if source is None:
            # An intermediate needed under another view: spill it to DDR scratch.
            held = self.in_lmem[var][0]
            source = P.Tensor(c_identifier("scratch_" + held.tensor.name, self.names),
                              held.tensor.shape, held.tensor.dtype, "scratch")
            self.scratch.append(source)
            self.use(held)
            self.steps.append(P.Store(self.global_ref(source, held.view), held))
            self.in_ddr[var] = source
        local = self.new_local(var, view, layout)
        self.steps.append(P.Load(local, self.global_ref(source, view)))
        return local

    def global_ref(self, tensor: P.Tensor, view: P.View) -> P.GlobalRef:
        return P.GlobalRef(tensor, view, P.view_dims(tensor.shape, view),
                           P.view_strides(tensor.shape, view), scratch=tensor.role == "scratch")

    def existing_view(self, var) -> Optional[P.View]:
        held = self.in_lmem.get(var)
        return held[0].view if held else None

    # -- ops ---------------------------------------------------------------
    def lower_composite(self, comp: Composite) -> None:
        self.lower_op(comp)
        step = self.steps[-1]
        for field in dataclasses.fields(step):
            value = getattr(step, field.name)
            if isinstance(value, P.Local):
                self.use(value)

    def lower_op(self, comp: Composite) -> None:
        root = comp.root
        name = root.op.name
        out_var = comp.out_var
        if name == "relax.nn.conv2d":
            self.lower_conv2d(comp)
        elif name == "relax.matmul":
            self.lower_fc(comp)
        elif name in ("relax.nn.max_pool2d", "relax.nn.avg_pool2d"):
            self.lower_pool(comp)
        elif name in ("relax.nn.adaptive_avg_pool2d", "relax.mean"):
            self.lower_global_pool(comp)
        elif name in BINARY:
            self.lower_binary(comp)
        elif name == "relax.nn.softmax":
            self.lower_softmax(comp)
        elif name in ACTIVATIONS:
            x = comp.region_value(root.args[0])
            view = self.existing_view(x) or P.default_view(len(_shape(x)))
            inp = self.operand(x, view)
            out = self.new_local(out_var, view, "ALIGNED")
            self.steps.append(P.Unary(out, inp, activation_of(root), comp.pattern))
        else:  # pragma: no cover - ROOT_OPS and this dispatch are kept in step
            raise SophonCompileError(f"no lowering for {name}")

    def lower_conv2d(self, comp: Composite) -> None:
        root, attrs = comp.root, comp.root.attrs
        layout, klayout = str(attrs.data_layout), str(attrs.kernel_layout)
        x, w = comp.region_value(root.args[0]), comp.region_value(root.args[1])
        wshape = _shape(w)
        kh, kw = wshape[klayout.index("H")], wshape[klayout.index("W")]
        view = P.layout_view(layout)
        wview = ((), (klayout.index("O"),), (klayout.index("I"),), (klayout.index("H"), klayout.index("W")))
        inp = self.operand(x, view)
        weight = self.operand(w, wview, "COMPACT")
        bias = self.bias_operand(comp)
        out = self.new_local(comp.out_var, view, "ALIGNED")
        self.steps.append(P.Conv2d(
            out, inp, weight, bias, (kh, kw), _ints(attrs.strides), _ints(attrs.padding),
            _ints(attrs.dilation), int(attrs.groups), activation_of(comp.act), comp.pattern))

    def bias_operand(self, comp: Composite) -> Optional[P.Local]:
        if comp.bias is None:
            return None
        shape = _shape(comp.bias)
        axes = [i for i, d in enumerate(shape) if d != 1] or [len(shape) - 1] if shape else []
        view = ((), tuple(axes[-1:]), (), ())
        return self.operand(comp.bias, view, "COMPACT")

    def lower_fc(self, comp: Composite) -> None:
        root = comp.root
        x, w = comp.region_value(root.args[0]), comp.region_value(root.args[1])
        rank = len(_shape(x))
        view = (tuple(range(rank - 1)), (rank - 1,), (), ())
        wview = ((), (0,), (1,), ()) if comp.weight_is_transposed() else ((), (1,), (0,), ())
        inp = self.operand(x, view)
        weight = self.operand(w, wview, "COMPACT")
        bias = self.bias_operand(comp)
        out = self.new_local(comp.out_var, view, "ALIGNED")
        self.steps.append(P.FullyConnected(out, inp, weight, bias, activation_of(comp.act), comp.pattern))

    def lower_pool(self, comp: Composite) -> None:
        root, attrs = comp.root, comp.root.attrs
        view = P.layout_view(str(attrs.layout))
        inp = self.operand(comp.region_value(root.args[0]), view)
        out = self.new_local(comp.out_var, view, "ALIGNED")
        kind = "MAX" if root.op.name == "relax.nn.max_pool2d" else "AVG"
        include_pad = bool(getattr(attrs, "count_include_pad", False))
        self.steps.append(P.Pool2d(out, inp, kind, _ints(attrs.pool_size), _ints(attrs.strides),
                                   _ints(attrs.padding), _ints(attrs.dilation), include_pad, comp.pattern))

    def lower_global_pool(self, comp: Composite) -> None:
        root = comp.root
        x = comp.region_value(root.args[0])
        xshape, oshape = _shape(x), _shape(comp.out_var)
        if root.op.name == "relax.mean":
            axes = sorted(int(a) % 4 for a in root.attrs.axis)
            layout = "NCHW" if axes == [2, 3] else "NHWC"
        else:
            layout = str(root.attrs.layout)
        view = P.layout_view(layout)
        h_axis, w_axis = layout.index("H"), layout.index("W")
        inp = self.operand(x, view)
        if len(oshape) == 4:
            oh, ow = oshape[h_axis], oshape[w_axis]
            out_view = view
        else:  # mean without keepdims: (N, C)
            oh = ow = 1
            out_view = ((0,), (1,), (), ())
        kernel = (xshape[h_axis] // oh, xshape[w_axis] // ow)
        out = self.new_local(comp.out_var, out_view, "ALIGNED")
        self.steps.append(P.Pool2d(out, inp, "AVG", kernel, kernel, (0, 0, 0, 0), (1, 1), True, comp.pattern))

    def lower_binary(self, comp: Composite) -> None:
        root = comp.root
        lhs, rhs = comp.region_value(root.args[0]), comp.region_value(root.args[1])
        oshape = _shape(comp.out_var)
        view = None
        for operand in (lhs, rhs):
            if _shape(operand) == oshape:
                view = self.existing_view(operand)
                if view is not None:
                    break
        view = view or P.default_view(len(oshape))
        a = self.operand(lhs, self.broadcast_view(view, len(oshape), _shape(lhs)))
        b = self.operand(rhs, self.broadcast_view(view, len(oshape), _shape(rhs)))
        out = self.new_local(comp.out_var, view, "ALIGNED")
        self.steps.append(P.Binary(out, a, b, BINARY[root.op.name], activation_of(comp.act), comp.pattern))

    @staticmethod
    def broadcast_view(view: P.View, out_rank: int, shape: tuple[int, ...]) -> P.View:
        """The out view applied to an operand right-aligned to the out rank; axes the
        operand lacks are dropped (they are broadcast, size 1)."""
        offset = out_rank - len(shape)
        return tuple(tuple(a - offset for a in axes if a >= offset) for axes in view)  # type: ignore

    def lower_softmax(self, comp: Composite) -> None:
        root = comp.root
        x = comp.region_value(root.args[0])
        rank = len(_shape(x))
        axis = int(root.attrs.axis) % rank
        view = ((), tuple(range(axis)), (axis,), tuple(range(axis + 1, rank)))
        inp = self.operand(x, view)
        out = self.new_local(comp.out_var, view, "ALIGNED")
        self.steps.append(P.Softmax(out, inp, comp.pattern))

    # -- region ------------------------------------------------------------
    def run(self) -> P.RegionProgram:
        inputs = []
        for i, param in enumerate(self.func.params):
            t = self.tensor(param, "input")
            t.arg_index = i
            inputs.append(t)
            self.in_ddr[param] = t

        functions = {}
        outputs_expr = self.func.body.body
        out_vars = list(outputs_expr.fields) if isinstance(outputs_expr, relax.Tuple) else [outputs_expr]
        comps = []
        for block in self.func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Function):
                    functions[binding.var] = value
                    continue
                if not isinstance(value, relax.Call):
                    raise SophonCompileError(f"region {self.symbol}: unexpected binding {binding.var.name}")
                fn = functions.get(value.op, value.op)
                if not isinstance(fn, relax.Function) or "Composite" not in (fn.attrs or {}):
                    raise SophonCompileError(f"region {self.symbol}: {binding.var.name} is not a sophon composite")
                comps.append(Composite(str(fn.attrs["Composite"]), fn, value.args, binding.var))

        outputs = []
        for k, var in enumerate(out_vars):
            if var in self.in_ddr:
                raise SophonCompileError(f"region {self.symbol}: returns its argument {var.name} unchanged")
            t = self.tensor(var, "output")
            t.role = "output"
            t.arg_index = len(inputs) + k
            outputs.append(t)

        out_set = {id(self.tensors[v]) for v in out_vars}
        for comp in comps:
            self.lower_composite(comp)
            produced = self.tensors[comp.out_var]
            if id(produced) in out_set:
                local = self.in_lmem[comp.out_var][-1]
                self.steps.append(P.Store(self.global_ref(produced, local.view), self.use(local)))
                self.in_ddr[comp.out_var] = produced

        peak = self.allocate()
        return P.RegionProgram(self.symbol, self.chip, inputs, outputs, self.locals,
                               self.scratch, self.steps, peak)

    def allocate(self) -> int:
        """First-fit LMEM allocation over live ranges (per-lane byte addresses)."""
        align = self.chip.eu_bytes
        capacity = self.chip.lmem_bytes_per_lane
        live: list[P.Local] = []
        peak = 0
        order = sorted(self.locals, key=lambda l: self.first_def[id(l)])
        for local in order:
            start = self.first_def[id(local)]
            live = [l for l in live if self.last_use[id(l)] >= start]
            size = local.lane_bytes(self.chip)
            addr = 0
            for other in sorted(live, key=lambda l: l.addr):
                if addr + size <= other.addr:
                    break
                addr = max(addr, -(-(other.addr + other.lane_bytes(self.chip)) // align) * align)
            if addr + size > capacity:
                in_use = ", ".join(f"{l.tensor.name} {l.lane_bytes(self.chip)}" for l in live) or "nothing"
                t = local.tensor
                raise SophonCompileError(
                    f"region {self.symbol}: tensor '{t.name}' of shape {t.shape} {t.dtype} "
                    f"(on chip as n,c,h,w={local.dims}) needs {size} bytes per lane of local memory "
                    f"at offset {addr}, but {self.chip.name} has {capacity} bytes per lane "
                    f"(in use: {in_use}); the region does not fit the chip's local memory untiled")
            local.addr = addr
            live.append(local)
            peak = max(peak, addr + size)
        return peak


def lower_region(func: relax.Function, symbol: str, chip: Chip) -> P.RegionProgram:
    return _Lowering(func, symbol, chip).run()
