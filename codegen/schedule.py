"""Lower a region under a plan: layer groups, their slices, the GDMA loads and
stores, the compute instructions, and the timesteps in which the two engines
overlap; then place every local tensor in LMEM.

For a group with several slices (bands of batch and rows of its one output),
each layer's input band is derived backwards from its output band (a conv or a
pool needs the overlapping rows its window reaches, with the padding that falls
inside the band); a value used by several layers is computed once per slice
over the union of their bands, and each consumer reads its band as a row window
of it. Weights are loaded once and stay resident while slices stream through.

Emission is a software pipeline: slice i+1's loads are issued in the timestep
that computes slice i, and slice i's results are stored in the next one, so the
allocator (live ranges over the step list) gives streamed tensors two buffers:
double buffering. A group of one slice pipelines over its layers instead: the
next layer's weights load while the current one computes, or up to two layers
earlier where that layer's compute leaves the GDMA idle (the cost model says
where), so a run of weight-heavy layers (ResNet-50's last stage) overlaps the
compute-heavy ones before it.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from tvm_sophon.chip import DTYPE_BYTES, Chip
from tvm_sophon.errors import SophonCompileError

from . import movement
from . import program as P
from .layers import Layer, Operand, Region, _sanitize

Band = tuple[int, int, int, int]   # n0, n1, r0, r1 (rows meaningful when the view has h)

# how far ahead an unsliced group's loads may be issued (Lowering.emit_balanced):
# the timestep before their layer's and up to two more
PREFETCH_TIMESTEPS = 3


class PlanError(SophonCompileError):
    """A plan that cannot be carried out (the message says which layer and why)."""


def full_dims(op: Operand) -> tuple[int, int, int, int]:
    return op.dims


def _union(a: Optional[Band], b: Band) -> Band:
    if a is None:
        return b
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


@dataclasses.dataclass
class _Geometry:
    """One layer in one slice: its output band, its operands' bands, its padding."""

    out: Band
    acts: list[Band]
    padding: Optional[tuple[int, int, int, int]] = None


def _operand_band(op: Operand, out_band: Band, out_full) -> Band:
    """Element-wise operands follow the output band; broadcast dims stay whole."""
    n, _, h, _ = full_dims(op)
    n0, n1 = (out_band[0], out_band[1]) if n == out_full[0] else (0, n)
    r0, r1 = (out_band[2], out_band[3]) if h == out_full[2] else (0, h)
    return (n0, n1, r0, r1)


def layer_geometry(layer: Layer, out_band: Band) -> _Geometry:
    """Which bands of its operands a layer needs for ``out_band`` of its output."""
    out_full = full_dims(layer.out)
    if layer.kind in ("conv2d", "pool2d", "qconv2d", "qpool2d") and layer.rows_sliceable():
        x = layer.acts[0]
        H = full_dims(x)[2]
        kh, sh, dh = layer.attrs["kernel"][0], layer.attrs["strides"][0], layer.attrs["dilation"][0]
        t, l, b, r = layer.attrs["padding"]
        n0, n1, o0, o1 = out_band
        i0u = o0 * sh - t
        i1u = (o1 - 1) * sh - t + (kh - 1) * dh + 1
        i0, i1 = max(0, i0u), min(H, i1u)
        if i1 <= i0:
            raise PlanError(f"layer {layer.label}: output rows [{o0}, {o1}) read no input row")
        return _Geometry(out_band, [(n0, n1, i0, i1)], (i0 - i0u, l, i1u - i1, r))
    if layer.kind == "conv2d_transpose":
        return _Geometry(out_band, *transpose_band(layer, out_band))
    if layer.kind == "resize":
        n0, n1, o0, o1 = out_band
        i0, i1 = resize_source_rows(layer.attrs, full_dims(layer.acts[0])[2], out_full[2], o0, o1)
        return _Geometry(out_band, [(n0, n1, i0, i1)])
    if layer.kind in ("binary", "unary", "qadd", "qlut", "qbinary", "cast"):
        return _Geometry(out_band, [_operand_band(op, out_band, out_full) for op in layer.acts])
    # fc, softmax, global or ceil-mode pools: whole rows of the operand
    bands = []
    for op in layer.acts:
        n, _, h, _ = full_dims(op)
        bands.append((out_band[0], out_band[1], 0, h) if n == out_full[0] else (0, n, 0, h))
    return _Geometry(out_band, bands, layer.attrs.get("padding"))


def transpose_band(layer: Layer, out_band: Band):
    """The input band a transposed conv's output rows [o0, o1) read, and the
    padding that places that band: out row oy takes input row iy through filter
    row ky when iy*sh - pt + ky*dh == oy, so the band starts at the first row
    reaching o0 (never past floor((o0 + pt) / sh), so that the band's own top
    padding pt + o0 - i0*sh stays >= 0) and ends after the last row reaching o1 - 1."""
    H = full_dims(layer.acts[0])[2]
    kh, sh, dh = layer.attrs["kernel"][0], layer.attrs["strides"][0], layer.attrs["dilation"][0]
    t, l = layer.attrs["padding"][:2]
    n0, n1, o0, o1 = out_band
    first = -(-(o0 + t - (kh - 1) * dh) // sh)
    i0 = min(max(0, min(first, (o0 + t) // sh)), H - 1)
    i1 = max(min(H, (o1 - 1 + t) // sh + 1), i0 + 1)
    return [(n0, n1, i0, i1)], (t + o0 - i0 * sh, l, 0, 0)


def resize_source_rows(attrs: dict, in_h: int, out_h: int, o0: int, o1: int) -> tuple[int, int]:
    """The input rows [i0, i1) that output rows [o0, o1) of a resize read: the
    source coordinate as runtime/reference/sophon_tiu_resize.c computes it (f32),
    widened by one row each way (clamped to the image) so that an f32 rounding
    difference between numpy and C can never leave a row out."""
    y = np.arange(o0, o1, dtype=np.float32)
    scale = np.float32(in_h) / np.float32(out_h)
    coord = attrs["coord"]
    if coord in ("HALF_PIXEL", "PYTORCH_HALF_PIXEL"):
        v = (y + np.float32(0.5)) * scale - np.float32(0.5)
        if coord == "PYTORCH_HALF_PIXEL" and out_h == 1:
            v = np.zeros_like(y)
    elif coord == "ALIGN_CORNERS":
        v = y * (np.float32(in_h - 1) / np.float32(max(out_h - 1, 1))) if out_h > 1 else np.zeros_like(y)
    elif coord == "ASYMMETRIC":
        v = scale * y
    else:  # TF_HALF_PIXEL_FOR_NN
        v = (y + np.float32(0.5)) * scale
    lo = np.floor(v).astype(np.int64) - 1
    hi = np.ceil(v).astype(np.int64) + 2     # bilinear reads floor(v) + 1
    return int(np.clip(lo.min(), 0, in_h - 1)), int(np.clip(hi.max(), 1, in_h))


def _key(op: Operand) -> tuple:
    return op.key


_LOCAL_FIELDS: dict[type, tuple[str, ...]] = {}


def _local_fields(step) -> tuple[str, ...]:
    """Names of a step's fields that may hold a Local (computed once per class)."""
    cls = type(step)
    if cls not in _LOCAL_FIELDS:
        _LOCAL_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls)
                                   if f.name in ("dst", "src", "out", "input", "weight", "bias", "lhs", "rhs",
                                                "gamma", "beta"))
    return _LOCAL_FIELDS[cls]


@dataclasses.dataclass
class _Stage:
    loads: list = dataclasses.field(default_factory=list)        # prefetched one stage ahead
    late_loads: list = dataclasses.field(default_factory=list)   # after the previous stores
    compute: list = dataclasses.field(default_factory=list)
    stores: list = dataclasses.field(default_factory=list)


# layer kinds whose compute step reads params[0] and params[1] (Lowering.compute)
_COMPUTES_WITH_PARAMS = frozenset({"conv2d", "fc", "conv2d_transpose", "norm", "qconv2d", "qfc"})


class _RegionIndex:
    """What every lowering of a region reads and none changes, built once per
    region: the planner lowers thousands of candidate groups of one region, and
    rebuilding this per candidate made planning quadratic in the layer count."""

    def __init__(self, region: Region):
        self.names = frozenset({t.name for t in region.inputs + region.outputs}
                               | {l.out.value.name for l in region.layers})
        self.ddr: dict[int, P.Tensor] = {id(t): t for t in region.inputs + region.aliases}
        self.outputs = frozenset(id(t) for t in region.outputs)
        self.consumers: dict[int, list[Layer]] = {}
        self.producer: dict[int, Layer] = {id(l.out.value): l for l in region.layers}
        for layer in region.layers:
            for op in layer.acts:
                self.consumers.setdefault(id(op.value), []).append(layer)


def region_index(region: Region) -> _RegionIndex:
    """The region's index, built on first use and kept on the region."""
    index = region.__dict__.get("_lowering_index")
    if index is None:
        index = region.__dict__["_lowering_index"] = _RegionIndex(region)
    return index


class _Overlay(dict):
    """A dict over a shared read-only base: lookups fall through to the base,
    writes stay here (a lowering's DDR homes over the region's arguments)."""

    def __init__(self, base: dict):
        super().__init__()
        self.base = base

    def __missing__(self, key):
        return self.base[key]

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or key in self.base

    def get(self, key, default=None):
        return self[key] if key in self else default


class Lowering:
    """The chip program of a region's groups, step by step. ``c_names=False`` is
    for the planner's candidate groups, which are estimated and thrown away: their
    locals keep their base names, without the C identifiers' uniqueness work.
    ``prune=True`` rejects a sliced group before emitting it when what is surely
    live together passes LMEM (check_resident, check_stage_memory): the
    allocator would reject it anyway, after the work."""

    def __init__(self, region: Region, chip: Chip, *, c_names: bool = True, prune: bool = False):
        self.region = region
        self.chip = chip
        self.c_names = c_names
        self.prune = prune
        index = region_index(region)
        self.taken = index.names                      # identifiers of region values
        self.names: set[str] = set()                  # identifiers this lowering made
        self.name_counts: dict[str, int] = {}
        self.steps: list = []
        self.locals: list[P.Local] = []
        self.parent: dict[int, tuple[P.Local, int]] = {}   # window -> (buffer, byte offset)
        self.first_def: dict[int, int] = {}
        self.last_use: dict[int, int] = {}
        self.scratch: list[P.Tensor] = []
        self.ddr: dict[int, P.Tensor] = _Overlay(index.ddr)
        self.buffers: dict[int, P.Tensor] = _Overlay(index.ddr)   # value -> the DDR buffer it owns
        self.placer = region.placer()
        self.lmem_views: dict[int, Layer] = {}   # reshapes that alias their input's local
        self.outputs = index.outputs
        self.consumers: dict[int, list[Layer]] = index.consumers
        self.producer: dict[int, Layer] = index.producer

    # ---------------------------------------------------------------- locals
    def _name(self, base: str) -> str:
        """A fresh C identifier: ``base``, else ``base_k`` with a per-base counter."""
        if not self.c_names:
            return base
        base = _sanitize(base)
        k = self.name_counts.get(base, 0)
        candidate = base if k == 0 else f"{base}_{k}"
        while candidate in self.names or candidate in self.taken:
            k += 1
            candidate = f"{base}_{k}"
        self.name_counts[base] = k + 1
        self.names.add(candidate)
        return candidate

    def new_local(self, op: Operand, band: Band, label: str) -> P.Local:
        n, c, h, w = full_dims(op)
        dims = (band[1] - band[0] if op.view[0] else n, c, band[3] - band[2] if op.view[2] else h, w)
        local = P.Local(self._name(f"l_{label}"), op.value, op.view, dims, op.layout)
        self.locals.append(local)
        return local

    def window(self, buffer: P.Local, buffer_band: Band, band: Band) -> P.Local:
        """``band`` of a local holding ``buffer_band``: the buffer itself or a row window."""
        if band == buffer_band:
            return buffer
        n, c, h, w = buffer.dims
        dn = band[0] - buffer_band[0] if buffer.view[0] else 0
        dr = band[2] - buffer_band[2] if buffer.view[2] else 0
        dims = (band[1] - band[0] if buffer.view[0] else n, c,
                band[3] - band[2] if buffer.view[2] else h, w)
        if dims == buffer.dims and (dn, dr) == (0, 0):
            return buffer
        cstride = buffer.channel_stride(self.chip)
        per_lane = -(-c // self.chip.npu_num)
        offset = (dn * per_lane * cstride + dr * w) * DTYPE_BYTES[buffer.tensor.dtype]
        win = P.Local(self._name(buffer.name + "_w"), buffer.tensor, buffer.view, dims,
                      buffer.layout, cstride=cstride)
        self.parent[id(win)] = (buffer, offset)
        self.locals.append(win)
        return win

    def _root(self, local: P.Local) -> P.Local:
        return self.parent[id(local)][0] if id(local) in self.parent else local

    def _mark(self, step) -> None:
        index = len(self.steps)
        parent, first_def, last_use = self.parent, self.first_def, self.last_use
        for name in _local_fields(step):
            value = getattr(step, name)
            if isinstance(value, P.Local):
                key = id(value)
                if key in parent:   # a window: its buffer's live range
                    key = id(parent[key][0])
                if key not in first_def:
                    first_def[key] = index
                last_use[key] = index

    def emit(self, step) -> None:
        self._mark(step)
        self.steps.append(step)

    # ------------------------------------------------------------------ DDR
    def global_ref(self, tensor: P.Tensor, op_view: P.View, local: P.Local, band: Band) -> P.GlobalRef:
        try:
            strides = P.tensor_view_strides(tensor, op_view)
        except ValueError as err:
            raise PlanError(f"{tensor.name}: {err}") from None
        offset = tensor.offset + (band[0] * strides[0] if op_view[0] else 0) + \
            (band[2] * strides[2] if op_view[2] else 0)
        return P.GlobalRef(tensor, op_view, local.dims, strides, offset)

    def buffer_of(self, value: P.Tensor) -> P.Tensor:
        """The DDR buffer a value owns: itself for region arguments and results,
        else a scratch buffer."""
        if id(value) not in self.buffers:
            if id(value) in self.outputs:
                self.buffers[id(value)] = value
            else:
                home = P.Tensor(self._name("scratch_" + value.name), value.shape, value.dtype, "scratch")
                self.scratch.append(home)
                self.buffers[id(value)] = home
        return self.buffers[id(value)]

    def ddr_home(self, value: P.Tensor) -> P.Tensor:
        """Where a value lives in DDR: its own buffer (buffer_of), or, placed by
        codegen/movement.py, a view of another value's buffer (a slice of a concat,
        a transposed or sliced view)."""
        if id(value) in self.ddr:
            return self.ddr[id(value)]
        place = self.placer.resolve(value)
        root = self.buffer_of(place.root)
        if place.root is value:
            home = root
        else:
            home = P.Tensor(self._name(value.name + "_in_" + root.name), value.shape, value.dtype, "alias",
                            base=root.base if root.base is not None else root, offset=root.offset + place.offset,
                            strides=place.strides)
        self.ddr[id(value)] = home
        return home

    # ---------------------------------------------------------------- groups
    def lower_group(self, group: P.Group) -> None:
        layers = [self.region.layers[i] for i in group.layers]
        if sorted(group.layers) != list(group.layers) or not layers:
            raise PlanError(f"group {group.layers}: layers must be a non-empty ascending list")
        self.lmem_views.update(movement.lmem_views(layers, group, self.outputs, self.consumers))
        moving = [l for l in layers if l.kind == "movement" and id(l.out.value) not in self.lmem_views]
        if moving and (len(layers) > 1 or group.slices > 1):
            raise PlanError(f"layer {moving[0].name} ({moving[0].pattern}) cannot be sliced or grouped: "
                            "data movement runs DDR to DDR, alone in its group")
        if moving:
            for op in moving[0].acts:
                self.ddr_home(op.value)
            return movement.lower(self, moving[0])
        if group.c_slices > 1 or group.k_slices > 1:
            return self.lower_sliced_fc(group)
        members = set(group.layers)
        produced = {id(l.out.value): l for l in layers}
        leaving = [l for l in layers
                   if id(l.out.value) in self.outputs
                   or any(c.index not in members for c in self.consumers.get(id(l.out.value), []))]
        # operands consumed under another view than produced go through DDR
        relayout = {(id(op.value), op.view) for l in layers for op in l.acts
                    if id(op.value) in produced and op.view != produced[id(op.value)].out.view
                    and id(op.value) not in self.lmem_views and id(l.out.value) not in self.lmem_views}
        if group.slices > 1:
            self.check_sliceable(group, layers, leaving, relayout)
        bands = self.slice_bands(group, layers, leaving)
        if self.prune and group.slices > 1:
            self.check_resident(layers)
        geometry = [self.backward(layers, leaving, band, produced) for band in bands]

        resident = {}
        stages: list[_Stage] = []
        loaded_whole: dict = {}
        for s, (geo, need) in enumerate(geometry):
            if group.slices > 1:
                stage = _Stage()
                held: dict = {}
                self.load_inputs(layers, need, produced, relayout, stage.loads, stage.late_loads, held,
                                 with_params=False)
                for layer in layers:
                    stage.compute.append((layer, geo[layer.index], held))
                stage.stores.extend((l, geo[l.index].out, held) for l in leaving)
                stages.append(stage)
            else:
                for layer in layers:
                    stage = _Stage()
                    self.load_inputs([layer], need, produced, relayout, stage.loads, stage.late_loads,
                                     loaded_whole, with_params=True)
                    stage.compute.append((layer, geo[layer.index], loaded_whole))
                    if any(layer is l for l in leaving) or any(k[0] == id(layer.out.value) for k in relayout):
                        stage.stores.append((layer, geo[layer.index].out, loaded_whole))
                    stages.append(stage)
        if group.slices > 1:
            for layer in layers:
                for param in filter(None, layer.params):
                    if _key(param) not in resident:
                        resident[_key(param)] = self.load_whole(param, stages[0].loads, layer.name)
        else:
            resident = None

        if self.prune and group.slices > 1:
            self.check_stage_memory(layers, stages, resident)

        def params_of(layer, held):
            table = resident if resident is not None else held
            return [None if p is None else table[_key(p)][0] for p in layer.params]

        self.emit_pipeline(stages, lambda item: self.compute(*item, params_of(item[0], item[2])),
                           lambda item: self.store(*item), balance=group.slices == 1)

    def emit_pipeline(self, stages: list, compute, store, balance: bool = False) -> None:
        """Emit stages as a software pipeline: stage i+1's loads beside stage i's
        compute, stage i's stores in the next timestep. ``compute(item)`` and
        ``store(item)`` emit one entry of a stage's compute and stores lists.
        With ``balance``, a load may go up to PREFETCH_TIMESTEPS - 1 timesteps
        earlier (emit_balanced)."""
        if balance and len(stages) > 2:
            return self.emit_balanced(stages, compute, store)
        for load in stages[0].loads:
            self.emit(load)
        self.emit(P.Timestep())
        for i, stage in enumerate(stages):
            if i + 1 < len(stages):
                for load in stages[i + 1].loads:
                    self.emit(load)
            for load in stage.late_loads:
                self.emit(load)
            for item in stage.compute:
                compute(item)
            self.emit(P.Timestep())
            for item in stage.stores:
                store(item)
        self.emit(P.Timestep())

    def emit_balanced(self, stages: list, compute, store) -> None:
        """The pipeline of emit_pipeline, each load of stage k (k >= 1) placed in
        the earliest of the PREFETCH_TIMESTEPS timesteps up to the one computing
        stage k-1 whose GDMA work, with it, stays within its TIU work (the cost
        model's own cycles), else where emit_pipeline puts it: a layer's weights
        load during earlier layers' compute when that has slack, instead of
        stalling the next timestep. A load of what a store of this pipeline writes
        stays where it was, behind that store; the allocator's live ranges follow
        the emitted order, so a plan that no longer fits LMEM is a PlanError."""
        from tvm_sophon import cost

        n = len(stages)
        marks = dict(self.first_def), dict(self.last_use)
        work: list = [[] for _ in range(n + 1)]     # timestep t computes stage t - 1
        stores: list = [[] for _ in range(n + 2)]   # and first stores stage t - 2's results
        for i, stage in enumerate(stages):
            start = len(self.steps)
            for item in stage.compute:
                compute(item)
            middle = len(self.steps)
            for item in stage.stores:
                store(item)
            work[i + 1], stores[i + 2] = self.steps[start:middle], self.steps[middle:]
            del self.steps[start:]
        # steps emitted above are emitted again below in their final order
        for table, saved in zip((self.first_def, self.last_use), marks):
            table.clear()
            table.update(saved)
        stored = {id(s.dst.tensor) for group in stores for s in group if isinstance(s, P.Store)}
        tiu = [sum(cost.step_cycles(self.chip, s)[1] for s in steps) for steps in work]
        gdma = [0] * (n + 1)
        loads: list = [list(stages[0].loads)] + [[] for _ in range(n)]
        for k in range(1, n):
            for load in stages[k].loads:
                home = k
                source = self.load_source(load)
                if source is not None and id(source) not in stored:
                    cycles = cost.step_cycles(self.chip, load)[1]
                    home = next((t for t in range(max(1, k - PREFETCH_TIMESTEPS + 1), k + 1)
                                 if gdma[t] + cycles <= tiu[t]), k)
                    gdma[home] += cycles
                loads[home].append(load)
        for t in range(n + 1):
            for step in stores[t] + loads[t] + (stages[t - 1].late_loads if t else []) + work[t]:
                self.emit(step)
            self.emit(P.Timestep())
        for step in stores[n + 1]:
            self.emit(step)
        self.emit(P.Timestep())

    def load_source(self, load: P.Load) -> Optional[P.Tensor]:
        """The DDR tensor a load reads, None while it has no DDR home yet."""
        if isinstance(load, _PendingLoad):
            return self.ddr.get(id(load._op.value))
        return load.src.tensor

    # ------------------------------------------------- fc over channels and K
    def lower_sliced_fc(self, group: P.Group) -> None:
        """One fc layer cut into row bands (n_slices, M), output channel slices
        (c_slices, N) and reduction slices (k_slices, K). For each row band and
        channel slice, the K slices run in turn: the first writes the partial sum
        (with the bias), each next one computes its part into a scratch local and
        adds it in place (the activation rides on the last add). The weight slice
        of step i+1 loads while step i computes."""
        layer = self.region.layers[group.layers[0]]
        if len(group.layers) != 1 or layer.kind not in ("fc", "qfc") or group.h_slices != 1:
            raise PlanError(f"group {group.layers}: slicing over output channels or the reduction "
                            f"takes a group of one fc layer (and no row slices)")
        if layer.kind == "qfc" and group.k_slices != 1:
            raise PlanError(f"layer {layer.name}: an int8 fc is sliced over output channels only")
        x, (w, b) = layer.acts[0], layer.params
        M, N = layer.out.dims[:2]
        K = x.dims[1]
        lanes = self.chip.npu_num
        if group.n_slices > M or group.c_slices > N or group.k_slices > K:
            raise PlanError(f"layer {layer.name}: {group.n_slices} row, {group.c_slices} channel and "
                            f"{group.k_slices} reduction slices of an fc with M={M}, N={N}, K={K}")
        rows = split_range(M, group.n_slices, 1)
        cols = split_range(N, group.c_slices, lanes)
        ks = split_range(K, group.k_slices, lanes)
        act = layer.attrs.get("act")
        stages: list[_Stage] = []
        resident: dict = {}
        for m0, m1 in rows:
            x_rows = None
            for c0, c1 in cols:
                acc = None
                for ki, (k0, k1) in enumerate(ks):
                    stage = _Stage()
                    if len(ks) > 1 or x_rows is None:
                        x_rows = self.slice_load(x, (m0, k0, 0, 0), (m1 - m0, k1 - k0, 1, 1), stage.loads, layer)
                    w_loc = self.slice_load(w, (0, c0, k0, 0), (1, c1 - c0, k1 - k0, 1), stage.loads, layer)
                    b_loc = None
                    if b is not None and ki == 0:
                        if len(cols) == 1 and "b" in resident:
                            b_loc = resident["b"]
                        else:
                            b_loc = self.slice_load(b, (0, c0, 0, 0), (1, c1 - c0, 1, 1), stage.loads, layer)
                            resident["b"] = b_loc
                    last = ki == len(ks) - 1
                    dims = (m1 - m0, c1 - c0, 1, 1)
                    if layer.kind == "qfc":   # one reduction slice: requantized in the instruction
                        acc = self.slice_local(layer.out, dims, layer.out.value.name)
                        stage.compute.append(P.QFullyConnected(acc, x_rows, w_loc, b_loc,
                                                               _requant_columns(layer.attrs["requant"], c0, c1),
                                                               layer.pattern))
                    elif acc is None:
                        acc = self.slice_local(layer.out, dims, layer.out.value.name)
                        stage.compute.append(P.FullyConnected(acc, x_rows, w_loc, b_loc,
                                                              act if last else P.Activation(), layer.pattern))
                    else:
                        part = self.slice_local(layer.out, dims, layer.out.value.name + "_part")
                        stage.compute.append(P.FullyConnected(part, x_rows, w_loc, None, P.Activation(),
                                                              layer.pattern))
                        stage.compute.append(P.Binary(acc, acc, part, "ADD", act if last else P.Activation(),
                                                      layer.pattern))
                    if last:
                        home = self.ddr_home(layer.out.value)
                        stage.stores.append(P.Store(self.slice_ref(home, layer.out.view, acc.dims, (m0, c0, 0, 0)),
                                                    acc, layer.name))
                    stages.append(stage)
        self.emit_pipeline(stages, self.emit, self.emit)

    def slice_local(self, op: Operand, dims, label: str) -> P.Local:
        local = P.Local(self._name(f"l_{label}"), op.value, op.view, tuple(dims), op.layout)
        self.locals.append(local)
        return local

    def slice_ref(self, tensor: P.Tensor, view: P.View, dims, start) -> P.GlobalRef:
        """The part of a DDR tensor (under ``view``) of ``dims`` from (n, c, h, w) ``start``."""
        strides = P.view_strides(tensor.shape, view)
        offset = sum(a * s for a, s, axes in zip(start, strides, view) if axes)
        return P.GlobalRef(tensor, view, tuple(dims), strides, offset)

    def slice_load(self, op: Operand, start, dims, into: list, layer: Layer) -> P.Local:
        home = self.ddr.get(id(op.value))
        if home is None:
            raise PlanError(f"{op.value.name} is needed before it is in DDR")
        local = self.slice_local(op, dims, op.value.name)
        into.append(P.Load(local, self.slice_ref(home, op.view, dims, start), layer.name))
        return local

    def check_sliceable(self, group, layers, leaving, relayout) -> None:
        if len(leaving) != 1:
            raise PlanError(f"group {group.layers}: a sliced group needs exactly one result leaving it, "
                            f"has {len(leaving)}")
        if relayout:
            raise PlanError(f"group {group.layers}: a value changes layout inside a sliced group")
        for layer in layers:
            if group.h_slices > 1 and not layer.rows_sliceable():
                raise PlanError(f"layer {layer.label} ({layer.kind}) cannot be sliced by rows")
            if group.n_slices > 1 and not layer.batch_sliceable():
                raise PlanError(f"layer {layer.label} ({layer.kind}) cannot be sliced by batch")

    def check_resident(self, layers) -> None:
        """A sliced group keeps every weight its layers compute with resident from
        the first load to the last slice, so all of them are live together in the
        last slice: if their sizes alone pass a lane's LMEM, the first-fit
        allocator cannot place them (live locals never overlap)."""
        sizes = {}
        for layer in layers:
            if layer.kind in _COMPUTES_WITH_PARAMS and id(layer.out.value) not in self.lmem_views:
                for param in filter(None, layer.params[:2]):
                    sizes[_key(param)] = P.local_lane_bytes(self.chip, param.dims, param.value.dtype,
                                                            param.layout)
        if sum(sizes.values()) > self.chip.lmem_bytes_per_lane:
            raise PlanError(f"{len(sizes)} resident weights need {sum(sizes.values())} bytes per lane, "
                            f"{self.chip.name} has {self.chip.lmem_bytes_per_lane}")

    def check_stage_memory(self, layers, stages: list, resident: dict) -> None:
        """Reject a sliced group before emitting it when, at the first compute of
        some slice, what is surely live then passes a lane's LMEM: the resident
        weights (live from the first load to the last slice), the slice's own
        loads (consumed by its computes) and the next slice's prefetched loads
        (issued before this slice computes). Live locals never overlap, so the
        allocator would reject the group too; only locals that a compute step
        reads are counted (a reshape kept in LMEM computes nothing)."""
        computing = [l for l in layers if id(l.out.value) not in self.lmem_views]
        if not computing:
            return
        read = {_key(op) for l in computing for op in l.acts}
        used = {_key(p) for l in computing if l.kind in _COMPUTES_WITH_PARAMS for p in filter(None, l.params[:2])}
        weights = sum(local.lane_bytes(self.chip) for key, (local, _) in resident.items() if key in used)

        def loaded(loads) -> int:
            return sum(load.dst.lane_bytes(self.chip) for load in loads
                       if isinstance(load, _PendingLoad) and _key(load._op) in read)

        capacity = self.chip.lmem_bytes_per_lane
        for s, stage in enumerate(stages):
            need = weights + loaded(stage.loads) + loaded(stage.late_loads)
            if s + 1 < len(stages):
                need += loaded(stages[s + 1].loads)
            if need > capacity:
                raise PlanError(f"slice {s}: its loads, the next slice's and the resident weights need "
                                f"{need} bytes per lane, {self.chip.name} has {capacity}")

    def slice_bands(self, group, layers, leaving) -> list[Band]:
        if group.slices == 1:
            return [None]  # whole tensors
        n, _, h, _ = full_dims(leaving[0].out)
        if group.n_slices > n or group.h_slices > h:
            raise PlanError(f"group {group.layers}: {group.n_slices}x{group.h_slices} slices of an output "
                            f"with batch {n} and {h} rows")
        bands = []
        for i in range(group.n_slices):
            n0, n1 = i * n // group.n_slices, (i + 1) * n // group.n_slices
            for j in range(group.h_slices):
                bands.append((n0, n1, j * h // group.h_slices, (j + 1) * h // group.h_slices))
        return bands

    def backward(self, layers, leaving, band, produced):
        """Per layer geometry and per operand (value, view) needed band for one slice."""
        need: dict = {}
        if band is not None:
            need[_key(leaving[0].out)] = band
        geo = {}
        for layer in reversed(layers):
            out_full = full_dims(layer.out)
            ob = need.get(_key(layer.out), (0, out_full[0], 0, out_full[2]))
            if band is None:
                ob = (0, out_full[0], 0, out_full[2])
            g = layer_geometry(layer, ob)
            if band is None and layer.kind in ("conv2d", "pool2d", "qconv2d", "qpool2d"):
                g.acts = [(0, full_dims(layer.acts[0])[0], 0, full_dims(layer.acts[0])[2])]
                g.padding = layer.attrs["padding"]
            geo[layer.index] = g
            for op, b in zip(layer.acts, g.acts):
                need[_key(op)] = _union(need.get(_key(op)), b)
        return geo, need

    def load_whole(self, op: Operand, into: list, layer: str) -> tuple[P.Local, Band]:
        n, _, h, _ = full_dims(op)
        band = (0, n, 0, h)
        local = self.new_local(op, band, op.value.name)
        home = self.ddr_home(op.value) if id(op.value) in self.ddr else None
        if home is None:
            raise PlanError(f"{op.value.name} is needed before it is in DDR")
        into.append(P.Load(local, self.global_ref(home, op.view, local, band), layer))
        return local, band

    def load_inputs(self, layers, need, produced, relayout, loads, late_loads, held,
                    with_params: bool) -> None:
        """Loads of what ``layers`` read from outside the group: their act operands
        (the band ``need`` asks for) and, when ``with_params``, their weights and
        bias. Entries go into ``held`` (key -> (local, band)); loads of values that
        reach DDR only within this group (a change of layout) come late."""
        for layer in layers:
            ops = list(layer.acts)
            if with_params:
                ops += [p for p in layer.params if p is not None]
            for op in ops:
                key = _key(op)
                if key in held:
                    continue
                if id(op.value) in produced and (id(op.value), op.view) not in relayout:
                    continue  # computed inside the group, stays in LMEM
                n, _, h, _ = full_dims(op)
                band = need.get(key, (0, n, 0, h))
                local = self.new_local(op, band, op.value.name)
                held[key] = (local, band)
                late = (id(op.value), op.view) in relayout or id(op.value) not in self.ddr
                (late_loads if late else loads).append(_PendingLoad(self, op, local, band, layer.name))

    def compute(self, layer: Layer, geo: _Geometry, held: dict, params) -> None:
        if id(layer.out.value) in self.lmem_views:   # same local, seen through the consumers' views
            for consumer in self.consumers.get(id(layer.out.value), []):
                for op in consumer.acts:
                    if op.value is layer.out.value:
                        held[_key(op)] = held[_key(self.producer[id(layer.acts[0].value)].out)]
            return
        acts = []
        for op, band in zip(layer.acts, geo.acts):
            buffer, buffer_band = held[_key(op)]
            acts.append(self.window(buffer, buffer_band, band))
        out = self.new_local(layer.out, geo.out, layer.out.value.name)
        held[_key(layer.out)] = (out, geo.out)
        a = layer.attrs
        if layer.kind == "conv2d":
            step = P.Conv2d(out, acts[0], params[0], params[1], a["kernel"], a["strides"], geo.padding,
                            a["dilation"], a["groups"], a["act"], layer.pattern)
        elif layer.kind == "fc":
            step = P.FullyConnected(out, acts[0], params[0], params[1], a["act"], layer.pattern)
        elif layer.kind == "pool2d":
            step = P.Pool2d(out, acts[0], a["kind"], a["kernel"], a["strides"], geo.padding,
                            a["dilation"], a["count_include_pad"], layer.pattern)
        elif layer.kind == "binary":
            step = P.Binary(out, acts[0], acts[1], a["op"], a["act"], layer.pattern)
        elif layer.kind == "unary":
            step = P.Unary(out, acts[0], a["act"], layer.pattern)
        elif layer.kind == "conv2d_transpose":
            step = P.Conv2dTranspose(out, acts[0], params[0], params[1], a["kernel"], a["strides"], geo.padding,
                                     a["dilation"], a["groups"], a["act"], layer.pattern, a.get("requant"))
        elif layer.kind == "lrn":
            step = P.Lrn(out, acts[0], a["size"], a["alpha"], a["beta"], a["bias"], layer.pattern)
        elif layer.kind == "norm":
            step = P.Norm(out, acts[0], params[0], params[1], a["epsilon"], layer.pattern)
        elif layer.kind == "reduce":
            step = P.Reduce(out, acts[0], a["kind"], layer.pattern)
        elif layer.kind == "resize":
            step = P.Resize(out, acts[0], a["method"], a["coord"], a["rounding"],
                            full_dims(layer.acts[0])[2], full_dims(layer.out)[2],
                            geo.acts[0][2], geo.out[2], layer.pattern, a.get("onnxruntime"))
        elif layer.kind == "qconv2d":
            step = P.QConv2d(out, acts[0], params[0], params[1], a["kernel"], a["strides"], geo.padding,
                             a["dilation"], a["groups"], a["requant"], layer.pattern)
        elif layer.kind == "qfc":
            step = P.QFullyConnected(out, acts[0], params[0], params[1], a["requant"], layer.pattern)
        elif layer.kind == "qadd":
            step = P.QAdd(out, acts[0], acts[1], a["params"], layer.pattern)
        elif layer.kind == "qlut":
            step = P.QLut(out, acts[0], a["table"], layer.pattern)
        elif layer.kind == "qbinary":
            step = P.QBinary(out, acts[0], acts[1], a["params"], layer.pattern)
        elif layer.kind == "cast":
            step = P.Cast(out, acts[0], a["scale"], a["zero_point"], a["rounding"], layer.pattern)
        elif layer.kind == "qpool2d":
            step = P.QPool2d(out, acts[0], a["kind"], a["kernel"], a["strides"], geo.padding,
                             a["dilation"], a["act_min"], a["act_max"], layer.pattern,
                             a.get("count_include_pad", False), a.get("onnxruntime"))
        elif layer.kind == "qreduce":
            step = P.QReduce(out, acts[0], a["kind"], a["requant"], layer.pattern)
        elif layer.kind == "qsoftmax":
            step = P.QSoftmax(out, acts[0], a["input_multiplier"], a["input_left_shift"], layer.pattern,
                              a.get("onnxruntime"))
        else:
            step = P.Softmax(out, acts[0], layer.pattern)
        self.emit(step)

    def store(self, layer: Layer, band: Band, held: dict) -> None:
        local, local_band = held[_key(layer.out)]
        home = self.ddr_home(layer.out.value)
        self.emit(P.Store(self.global_ref(home, layer.out.view, local, local_band), local, layer.name))

    # ------------------------------------------------------------ allocation
    def allocate(self) -> int:
        """First-fit over live ranges (per-lane byte addresses); windows follow
        their buffer."""
        align = self.chip.eu_bytes
        capacity = self.chip.lmem_bytes_per_lane
        roots = [l for l in self.locals if id(l) not in self.parent and id(l) in self.first_def]
        roots.sort(key=lambda l: self.first_def[id(l)])
        sizes = {id(l): l.lane_bytes(self.chip) for l in roots}
        live: list[P.Local] = []
        peak = 0
        for local in roots:
            start = self.first_def[id(local)]
            live = [l for l in live if self.last_use[id(l)] >= start]
            size = sizes[id(local)]
            addr = 0
            for other in sorted(live, key=lambda l: l.addr):
                if addr + size <= other.addr:
                    break
                addr = max(addr, -(-(other.addr + sizes[id(other)]) // align) * align)
            if addr + size > capacity:
                in_use = ", ".join(f"{l.name} {l.lane_bytes(self.chip)}" for l in live) or "nothing"
                t = local.tensor
                raise PlanError(
                    f"region {self.region.symbol}: tensor '{t.label or t.name}' of shape {t.shape} {t.dtype} "
                    f"(on chip as n,c,h,w={local.dims}) needs {size} bytes per lane of local memory "
                    f"at offset {addr}, but {self.chip.name} has {capacity} bytes per lane "
                    f"(in use: {in_use})")
            local.addr = addr
            live.append(local)
            peak = max(peak, addr + size)
        for local in self.locals:
            if id(local) in self.parent:
                buffer, offset = self.parent[id(local)]
                local.addr = buffer.addr + offset
        return peak


def _requant_columns(requant, c0: int, c1: int):
    """An int8 fc's requantization for its output channels [c0, c1) (per-channel
    multipliers sliced, a per-tensor one kept)."""
    if not requant.per_channel:
        return requant
    return dataclasses.replace(requant, multipliers=requant.multipliers[c0:c1], shifts=requant.shifts[c0:c1],
                               scales=requant.scales[c0:c1] if requant.scales else requant.scales)


def split_range(total: int, parts: int, align: int) -> list[tuple[int, int]]:
    """``[0, total)`` in ``parts`` consecutive ranges as even as can be whose
    bounds are multiples of ``align`` (but the end): channel slices keep whole
    lanes. Raises PlanError if there are fewer than ``parts`` chunks of ``align``."""
    chunks = -(-total // align)
    if parts > chunks:
        raise PlanError(f"{parts} slices of {total} in whole runs of {align}")
    bounds = [min(total, chunks * i // parts * align) for i in range(parts + 1)]
    return list(zip(bounds, bounds[1:]))


class _PendingLoad(P.Load):
    """A load whose DDR source is resolved when it is emitted (a value stored by
    an earlier stage of the same group has a DDR home only then)."""

    def __init__(self, lowering: Lowering, op: Operand, local: P.Local, band: Band, layer: str):
        self._lowering, self._op, self._band = lowering, op, band
        self.dst = local
        self.layer = layer

    @property
    def src(self) -> P.GlobalRef:
        home = self._lowering.ddr.get(id(self._op.value))
        if home is None:
            raise PlanError(f"{self._op.value.name} is loaded before any store put it in DDR")
        return self._lowering.global_ref(home, self._op.view, self.dst, self._band)


def lower_plan(region: Region, plan: P.Plan, chip: Chip) -> P.RegionProgram:
    """The chip program of ``region`` under ``plan`` (raises PlanError if the plan
    is malformed or does not fit the chip's local memory)."""
    covered = sorted(i for g in plan.groups for i in g.layers)
    if covered != list(range(len(region.layers))):
        raise PlanError(f"region {region.symbol}: plan covers layers {covered}, "
                        f"region has {len(region.layers)}")
    low = Lowering(region, chip)
    group_steps = []
    for group in plan.groups:
        first = len(low.steps)
        low.lower_group(group)
        group_steps.append((first, len(low.steps)))
    steps = [P.Load(s.dst, s.src, s.layer) if isinstance(s, _PendingLoad) else s for s in low.steps]
    peak = low.allocate()
    locals_ = [l for l in low.locals if id(l) in low.first_def or id(l) in low.parent]
    return P.RegionProgram(region.symbol, chip, region.inputs, region.outputs, locals_,
                           low.scratch, steps, peak, plan, group_steps)
