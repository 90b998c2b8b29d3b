"""Data movement on the chip: reshape, transpose, slice, broadcast, tile, concat
and pad as GDMA work or as views of DDR buffers, with no compute.

Every region value has a *placement* in DDR: the buffer it lives in (its own,
or another value's), an element offset and an element stride per axis. Moving
data is mostly arithmetic on placements:

- a view: ``reshape`` (and flatten, squeeze, expand_dims) where the memory order
  allows it, ``permute_dims``, ``strided_slice`` (any steps, negative too) and
  ``broadcast_to`` (stride 0) place their result on their input's buffer: no
  instruction at all; the consumer's GDMA load reads the strided view;
- written in place: each input of a ``concat``, and the input of a ``pad``, is
  placed inside the result's buffer (at its offset along the axis, or inside the
  border), so its producer's GDMA store writes it there: no copy. Nested concats
  nest their placements;
- otherwise a copy: GDMA DDR -> DDR (``Copy``, 4-D strided pieces after merging
  what is contiguous on both sides), and for ``pad`` a constant ``Fill`` of the
  border. That is the case for a region output (it must be compact), an input
  of two concats (only one can hold it), a region argument, a reshape of a
  non-contiguous view (a channel shuffle's last reshape: one strided copy), a
  view whose consumer flattens axes that are no longer adjacent, and ``tile``.

Movement layers run DDR to DDR, each alone in its layer group: they are neither
row nor batch sliceable (``Layer.rows_sliceable``), and their cost (GDMA bytes,
read and written) is what the planner and the profile see.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Optional

import numpy as np
from tvm import relax

from tvm_sophon.errors import SophonCompileError

from . import program as P

MOVES = {
    "relax.reshape": "reshape", "relax.flatten": "reshape", "relax.squeeze": "reshape",
    "relax.expand_dims": "reshape", "relax.permute_dims": "permute", "relax.strided_slice": "slice",
    "relax.broadcast_to": "broadcast", "relax.tile": "tile", "relax.concat": "concat", "relax.nn.pad": "pad",
}
VIEW_KINDS = ("reshape", "permute", "slice", "broadcast")   # a view where the placement allows
WRITTEN_KINDS = ("tile", "concat", "pad")                 # always written to their own place


def flat_view(rank: int) -> P.View:
    """How a movement layer's operands are described: they never enter LMEM, so
    only their (n, c, h, w) extents matter."""
    return P.default_view(rank) if rank <= 4 else ((), (), (), tuple(range(rank)))


# ------------------------------------------------------------------ analysis

def slice_params(call: relax.Call, in_shape, out_shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Start and step per axis of a strided_slice (numpy's clamping)."""
    def values(expr):
        return [int(v.value) for v in expr.fields]

    axes, begin, end = (values(a) for a in call.args[1:4])
    steps = values(call.args[4]) if len(call.args) > 4 and call.args[4] is not None else [1] * len(axes)
    starts, strides = [0] * len(in_shape), [1] * len(in_shape)
    for axis, b, e, s in zip(axes, begin, end, steps):
        axis %= len(in_shape)
        if s == 0:
            raise SophonCompileError(f"strided_slice with step 0 on axis {axis}")
        start, stop, step = slice(b, e, s).indices(in_shape[axis])
        if len(range(start, stop, step)) != out_shape[axis]:
            raise SophonCompileError(f"strided_slice on axis {axis}: {len(range(start, stop, step))} elements "
                                     f"from begin {b}, end {e}, step {s}, but the result has {out_shape[axis]}")
        starts[axis], strides[axis] = start, step
    return tuple(starts), tuple(strides)


def analyze(an, comp) -> None:
    """The movement layer of composite ``comp`` (an: codegen.layers._Analysis)."""
    from .layers import shape_of

    root = comp.root
    kind = MOVES[root.op.name]
    out_shape = shape_of(comp.out_var)
    fields = root.args[0].fields if kind == "concat" else [root.args[0]]
    inputs = [comp.region_value(f) for f in fields]
    in_shape = shape_of(inputs[0])
    attrs: dict = {"op": kind}
    if kind == "permute":
        axes = root.attrs.axes
        attrs["axes"] = (tuple(int(a) for a in axes) if axes is not None
                         else tuple(reversed(range(len(in_shape)))))
    elif kind == "slice":
        attrs["starts"], attrs["steps"] = slice_params(root, in_shape, out_shape)
    elif kind == "concat":
        attrs["axis"] = int(root.attrs.axis) % len(out_shape)
    elif kind == "pad":
        width = [int(v) for v in root.attrs.pad_width]
        value = root.attrs.pad_value
        attrs["before"] = tuple(width[0::2])
        attrs["value"] = float(getattr(value, "value", value))
    acts = [an.operand(v, flat_view(len(shape_of(v)))) for v in inputs]
    an.add(comp, "movement", flat_view(len(out_shape)), acts, [], **attrs)


def analyze_qconcat(an, comp, out_scale, out_zp) -> None:
    """``quantize(concat(dequantize(x_i)))``: a concat of int8 bytes, after a table
    lookup (lut_int8) for each input quantized unlike the output, with the
    arithmetic of TFLite's reference_ops::ConcatenationWithScaling. The lookup's
    result is a value of its own, which the placer writes straight into its slice
    of the concat."""
    from tvm_sophon import quant_eltwise

    from .layers import Layer, Operand, c_identifier, shape_of

    fields = comp.root.args[0].fields
    rescaled = {}
    for field in fields:
        x, scale, zp, _ = an.dequantized(comp, field)
        if np.array_equal(scale, out_scale) and np.array_equal(zp, out_zp):
            continue
        shape = shape_of(x)
        t = P.Tensor(c_identifier(f"{x.name}_rescaled", an.names), shape, "int8", "intermediate")
        # an element-wise lookup: its producer's view, above 4-D the merged axes (a flat view
        # puts everything on one lane's w, and YOLO's (1, 3, 40, 40, 81) slices fit no tiling)
        view = an.elementwise_view(shape, [x])
        # an ONNX QDQ concat is float32 DequantizeLinear -> Concat -> QuantizeLinear (onnxruntime)
        table = quant_eltwise.float_lut_table("requantize", scale, zp, out_scale, out_zp) \
            if an.int8_arithmetic == "onnxruntime" else quant_eltwise.lut_table("concat_rescale", scale, zp, out_scale,
                                                                                 out_zp)
        an.layers.append(Layer(len(an.layers), comp.pattern, "qlut", Operand(t, view), [an.operand(x, view)], [],
                               {"table": table}))
        rescaled[field] = t
    acts = [Operand(rescaled[f], flat_view(len(rescaled[f].shape))) if f in rescaled
            else an.operand(an.dequantized(comp, f)[0], flat_view(len(shape_of(f)))) for f in fields]
    an.add(comp, "movement", flat_view(len(shape_of(comp.out_var))), acts, [], op="concat",
           axis=int(comp.root.attrs.axis) % len(shape_of(comp.out_var)))


# ------------------------------------------------------------------ placements

@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a value's elements are: in the buffer of ``root`` (a region value
    that owns one), from ``offset``, with one element stride per axis."""

    root: P.Tensor
    offset: int
    strides: tuple[int, ...]


def _reshape_strides(old_shape, old_strides, new_shape) -> Optional[tuple[int, ...]]:
    """Strides that give ``new_shape`` the same elements in the same row-major
    order as the strided old view, or None when the memory order does not allow
    it (numpy's no-copy reshape)."""
    old = [(d, s) for d, s in zip(old_shape, old_strides) if d != 1]
    new_strides = [0] * len(new_shape)
    new_live = [i for i, d in enumerate(new_shape) if d != 1]
    oi = ni = 0
    while oi < len(old) and ni < len(new_live):
        oj, nj = oi + 1, ni + 1
        op, np_ = old[oi][0], new_shape[new_live[ni]]
        while op != np_:
            if op < np_:
                op *= old[oj][0]
                oj += 1
            else:
                np_ *= new_shape[new_live[nj]]
                nj += 1
        for k in range(oi, oj - 1):   # the old axes merged must be contiguous
            if old[k][1] != old[k + 1][1] * old[k + 1][0]:
                return None
        stride = old[oj - 1][1]
        for k in range(nj - 1, ni - 1, -1):
            new_strides[new_live[k]] = stride
            stride *= new_shape[new_live[k]]
        oi, ni = oj, nj
    return tuple(new_strides)


def _mergeable(shape, strides, view) -> bool:
    try:
        P.tensor_view_strides(P.Tensor("", tuple(shape), "float32", "", strides=tuple(strides)), view)
    except ValueError:
        return False
    return True


class Placer:
    """Placements of every value of a region (computed once per region)."""

    def __init__(self, region):
        self.region = region
        self.producer = {id(l.out.value): l for l in region.layers}
        self.consumers: dict[int, list] = {}
        for layer in region.layers:
            for op in layer.acts:
                self.consumers.setdefault(id(op.value), []).append(layer)
        self.outputs = {id(t) for t in region.outputs}
        self.inside: dict[int, tuple[P.Tensor, tuple[int, ...]]] = {}   # value -> (container, starts)
        self.views: dict[int, Placement] = {}
        self.memo: dict[int, Placement] = {}
        movement = [l for l in region.layers if l.kind == "movement"]
        for layer in reversed(movement):          # containers before what they contain
            if layer.attrs["op"] in ("concat", "pad"):
                self.place_inside(layer)
        for layer in movement:                    # sources before their views
            if layer.attrs["op"] in VIEW_KINDS:
                self.try_view(layer)

    # -- phase 1: inputs written straight into their slice of a concat or pad
    def place_inside(self, layer) -> None:
        container = layer.out.value
        outer = self.resolve(container)
        offset = 0
        seen = set()
        for op in layer.acts:
            value = op.value
            if layer.attrs["op"] == "concat":
                starts = tuple(offset if a == layer.attrs["axis"] else 0 for a in range(len(value.shape)))
                offset += value.shape[layer.attrs["axis"]]
            else:
                starts = layer.attrs["before"]
            if id(value) in seen or not self.can_hold(value, outer.strides):
                continue
            seen.add(id(value))
            self.inside[id(value)] = (container, starts)
            self.memo.clear()

    def can_hold(self, value: P.Tensor, strides) -> bool:
        """Whether ``value`` may live inside another buffer with ``strides``."""
        producer = self.producer.get(id(value))
        if producer is None or id(value) in self.outputs or id(value) in self.inside:
            return False
        if producer.kind == "movement" and producer.attrs["op"] not in WRITTEN_KINDS:
            return False
        users = [op for l in self.consumers.get(id(value), []) if l.kind != "movement"
                 for op in l.acts if op.value is value]
        views = [producer.out.view] if producer.kind != "movement" else []
        return all(_mergeable(value.shape, strides, v) for v in views + [op.view for op in users])

    # -- phase 2: views
    def try_view(self, layer) -> None:
        out = layer.out.value
        if id(out) in self.outputs:
            return
        src = self.resolve(layer.acts[0].value)
        placed = view_placement(layer, src)
        if placed is None:
            return
        users = [op for l in self.consumers.get(id(out), []) if l.kind != "movement"
                 for op in l.acts if op.value is out]
        if all(_mergeable(out.shape, placed.strides, op.view) for op in users):
            self.views[id(out)] = placed

    def is_view(self, value: P.Tensor) -> bool:
        return id(value) in self.views

    def resolve(self, value: P.Tensor) -> Placement:
        key = id(value)
        if key in self.views:
            return self.views[key]
        if key not in self.memo:
            if key in self.inside:
                container, starts = self.inside[key]
                outer = self.resolve(container)
                self.memo[key] = Placement(outer.root, outer.offset + sum(s * t for s, t in zip(starts, outer.strides)),
                                           outer.strides)
            else:
                self.memo[key] = Placement(value, 0, P.row_major(value.shape))
        return self.memo[key]


def view_placement(layer, src: Placement) -> Optional[Placement]:
    """The placement of a view layer's result on its input's placement, or None
    (a reshape the memory order does not allow)."""
    a = layer.attrs
    in_shape, out_shape = layer.acts[0].value.shape, layer.out.value.shape
    if a["op"] == "reshape":
        strides = _reshape_strides(in_shape, src.strides, out_shape)
        return None if strides is None else Placement(src.root, src.offset, strides)
    if a["op"] == "permute":
        return Placement(src.root, src.offset, tuple(src.strides[i] for i in a["axes"]))
    if a["op"] == "slice":
        offset = src.offset + sum(b * s for b, s in zip(a["starts"], src.strides))
        return Placement(src.root, offset, tuple(s * k for s, k in zip(src.strides, a["steps"])))
    # broadcast: right-aligned, stride 0 where the input has size 1
    lead = len(out_shape) - len(in_shape)
    strides = [0] * lead + [0 if d == 1 and o != 1 else s
                            for d, o, s in zip(in_shape, out_shape[lead:], src.strides)]
    return Placement(src.root, src.offset, tuple(strides))


# ------------------------------------------------------------------ lowering

def pieces(shape, offsets, strides):
    """Split a copy over ``shape`` (several sides: one offset and stride tuple each)
    into 4-D GDMA pieces: axes of size 1 dropped, axes contiguous on every side
    merged; beyond four axes, the innermost and the three largest others stay in
    a piece and the rest are looped over. Yields (dims, offsets, strides)."""
    axes = [[d, *(s[i] for s in strides)] for i, d in enumerate(shape) if d != 1]
    merged: list = []
    for axis in axes:
        if merged and all(prev == cur * axis[0] for prev, cur in zip(merged[-1][1:], axis[1:])):
            merged[-1] = [merged[-1][0] * axis[0], *axis[1:]]
        else:
            merged.append(axis)
    if len(merged) <= 4:
        inner, outer = merged, []
    else:
        keep = set(sorted(range(len(merged) - 1), key=lambda i: -merged[i][0])[:3]) | {len(merged) - 1}
        inner = [m for i, m in enumerate(merged) if i in keep]
        outer = [m for i, m in enumerate(merged) if i not in keep]
    inner = [[1] + [0] * len(strides)] * (4 - len(inner)) + inner
    dims = tuple(m[0] for m in inner)
    piece_strides = [tuple(m[1 + k] for m in inner) for k in range(len(strides))]
    for index in itertools.product(*(range(m[0]) for m in outer)):
        yield dims, [o + sum(i * m[1 + k] for i, m in zip(index, outer)) for k, o in enumerate(offsets)], \
            piece_strides


def _check_inside(home: P.Tensor, offset: int, shape, strides, what: str) -> None:
    """A view must stay inside its buffer (a compile-time bounds check)."""
    lo = offset + sum((d - 1) * s for d, s in zip(shape, strides) if s < 0)
    hi = offset + sum((d - 1) * s for d, s in zip(shape, strides) if s > 0)
    size = P._prod(home.shape)
    if min(shape, default=1) > 0 and (lo < 0 or hi >= size):
        raise SophonCompileError(f"{what}: elements [{lo}, {hi}] outside {home.name} of {size} elements")


def emit_copy(low, shape, src: Placement, dst: Placement, layer) -> None:
    src_home, dst_home = low.buffer_of(src.root), low.buffer_of(dst.root)
    _check_inside(src_home, src.offset, shape, src.strides, f"layer {layer.label} reads")
    _check_inside(dst_home, dst.offset, shape, dst.strides, f"layer {layer.label} writes")
    for dims, (so, do), (ss, ds) in pieces(shape, [src.offset, dst.offset], [src.strides, dst.strides]):
        low.emit(P.Copy(P.GlobalRef(dst_home, None, dims, ds, do), P.GlobalRef(src_home, None, dims, ss, so),
                        layer.name, layer.pattern, layer.label))


def emit_fill(low, shape, dst: Placement, value: float, layer) -> None:
    home = low.buffer_of(dst.root)
    _check_inside(home, dst.offset, shape, dst.strides, f"layer {layer.label} fills")
    for dims, (do,), (ds,) in pieces(shape, [dst.offset], [dst.strides]):
        low.emit(P.Fill(P.GlobalRef(home, None, dims, ds, do), value, layer.name, layer.pattern, layer.label))


def lower(low, layer) -> None:
    """The GDMA work of one movement layer (nothing for a view)."""
    placer: Placer = low.placer
    a = layer.attrs
    out = layer.out.value
    low.ddr_home(out)                 # consumers in later groups load it from there
    if placer.is_view(out):
        return
    dst = placer.resolve(out)
    sources = [placer.resolve(op.value) for op in layer.acts]
    if a["op"] == "reshape":          # same row-major order: copy over the input's shape
        in_shape = layer.acts[0].value.shape
        emit_copy(low, in_shape, sources[0], Placement(dst.root, dst.offset,
                                                       _reshape_strides(out.shape, dst.strides, in_shape)), layer)
    elif a["op"] in VIEW_KINDS:
        emit_copy(low, out.shape, view_placement(layer, sources[0]), dst, layer)
    elif a["op"] == "tile":
        # out axis a of size r*d as (r, d): the input repeats with stride 0 over r
        in_shape = (1,) * (len(out.shape) - len(layer.acts[0].value.shape)) + layer.acts[0].value.shape
        in_strides = (0,) * (len(out.shape) - len(sources[0].strides)) + sources[0].strides
        shape, src_strides, dst_strides = [], [], []
        for d, o, s, t in zip(in_shape, out.shape, in_strides, dst.strides):
            shape += [o // d, d]
            src_strides += [0, s]
            dst_strides += [d * t, t]
        emit_copy(low, shape, Placement(sources[0].root, sources[0].offset, tuple(src_strides)),
                  Placement(dst.root, dst.offset, tuple(dst_strides)), layer)
    elif a["op"] == "concat":
        offset = 0
        for op, src in zip(layer.acts, sources):
            starts = [offset if i == a["axis"] else 0 for i in range(len(out.shape))]
            offset += op.value.shape[a["axis"]]
            place = Placement(dst.root, dst.offset + sum(b * s for b, s in zip(starts, dst.strides)), dst.strides)
            if place != src:          # not written in place by its producer
                emit_copy(low, op.value.shape, src, place, layer)
    else:  # pad: fill the border slab by slab, then the interior unless written in place
        in_shape = layer.acts[0].value.shape
        before = a["before"]
        for axis in range(len(out.shape)):
            for lo, hi in ((0, before[axis]), (before[axis] + in_shape[axis], out.shape[axis])):
                if hi <= lo:
                    continue
                shape = [in_shape[i] if i < axis else (hi - lo if i == axis else out.shape[i])
                         for i in range(len(out.shape))]
                starts = [before[i] if i < axis else (lo if i == axis else 0) for i in range(len(out.shape))]
                emit_fill(low, shape, Placement(dst.root, dst.offset + sum(b * s for b, s in zip(starts, dst.strides)),
                                                dst.strides), a["value"], layer)
        place = Placement(dst.root, dst.offset + sum(b * s for b, s in zip(before, dst.strides)), dst.strides)
        if place != sources[0]:
            emit_copy(low, in_shape, sources[0], place, layer)
    low.emit(P.Timestep())


def _ordered(view: P.View) -> bool:
    """The view walks the tensor in row-major order: (n, c, h, w) runs of increasing axes."""
    axes = [a for run in view for a in run]
    return axes == sorted(axes)


def lmem_views(layers, group, outputs, consumers) -> dict:
    """Reshapes of an unsliced group that need no work at all in LMEM: the input is
    computed in the group, every consumer is in the group and reads the result with
    the same (n, c, h, w) dims and layout as the input's local, and both walk their
    tensor in row-major order, so the local already holds the result (a flatten
    between a global pool and a fully-connected layer). value id -> layer."""
    if group.slices != 1:
        return {}
    members = {l.index for l in layers}
    produced = {id(l.out.value): l for l in layers if l.kind != "movement"}
    found = {}
    for layer in layers:
        out = layer.out.value
        if layer.kind != "movement" or layer.attrs["op"] != "reshape" or id(out) in outputs:
            continue
        producer = produced.get(id(layer.acts[0].value))
        users = consumers.get(id(out), [])
        if producer is None or not users or not _ordered(producer.out.view):
            continue
        ops = [op for l in users for op in l.acts if op.value is out]
        if all(l.index in members and l.kind != "movement" for l in users) and all(
                _ordered(op.view) and op.dims == producer.out.dims and op.layout == producer.out.layout
                for op in ops):
            found[id(out)] = layer
    return found
