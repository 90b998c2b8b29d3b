"""The chip program of one offloaded region: what the lowering produces and the C
emitter renders. Plain data, printable, so tests and researchers can read it.

A region's values live in two places: DDR (the region's arguments and results, and
scratch buffers for a change of layout) and LMEM (local tensors). A *view* maps the
axes of a row-major tensor onto the chip's four dims (n, c, h, w): each of the four
is a run of adjacent tensor axes that are flattened together (possibly empty).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

from tvm_sophon.chip import DTYPE_BYTES, Chip

View = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def view_dims(shape: tuple[int, ...], view: View) -> tuple[int, int, int, int]:
    return tuple(_prod(shape[a] for a in axes) for axes in view)  # type: ignore[return-value]


def view_strides(shape: tuple[int, ...], view: View) -> tuple[int, int, int, int]:
    """Element strides of the four dims over a row-major tensor of ``shape``
    (memoised: the planner asks for the same few thousand, over and over)."""
    try:
        return _view_strides(shape, view)
    except TypeError:   # a shape or view given as a list: not hashable
        return _view_strides.__wrapped__(shape, view)


@functools.lru_cache(maxsize=4096)
def _view_strides(shape: tuple[int, ...], view: View) -> tuple[int, int, int, int]:
    row_major = [_prod(shape[i + 1:]) for i in range(len(shape))]
    strides = []
    for axes in view:
        if not axes:
            strides.append(0)
            continue
        for first, second in zip(axes, axes[1:]):
            if second != first + 1:
                raise ValueError(f"view {view} flattens non-adjacent axes {axes}")
        strides.append(row_major[axes[-1]])
    return tuple(strides)  # type: ignore[return-value]


def row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a compact row-major tensor."""
    return tuple(_prod(shape[i + 1:]) for i in range(len(shape)))


def tensor_view_strides(tensor: "Tensor", view: View) -> tuple[int, int, int, int]:
    """Element strides of the four dims of ``view`` over ``tensor`` where it sits in
    DDR (its own strides when it lives inside another buffer). Raises ValueError
    when a dim flattens axes that are not adjacent in memory."""
    if tensor.strides is None:
        return view_strides(tensor.shape, view)
    strides = []
    for axes in view:
        if not axes:
            strides.append(0)
            continue
        live = [a for a in axes if tensor.shape[a] != 1]
        if any(second != first + 1 for first, second in zip(axes, axes[1:])) or any(
                tensor.strides[first] != tensor.strides[second] * tensor.shape[second]
                for first, second in zip(live, live[1:])):
            raise ValueError(f"view {view} flattens axes {axes} that are not adjacent in memory "
                             f"(strides {tensor.strides})")
        strides.append(tensor.strides[(live or axes)[-1]])
    return tuple(strides)  # type: ignore[return-value]


def default_view(rank: int) -> View:
    """How a tensor with no layout of its own sits on the chip: the last axis of a
    matrix on the lanes; 4-D tensors as NCHW."""
    if rank == 4:
        return ((0,), (1,), (2,), (3,))
    if rank == 3:
        return ((0,), (1,), (), (2,))
    if rank == 2:
        return ((0,), (1,), (), ())
    if rank == 1:
        return ((), (0,), (), ())
    return ((), (), (), ())


def layout_view(layout: str) -> View:
    """View of a 4-D activation in an image layout (``NCHW``, ``NHWC``)."""
    return tuple((layout.index(d),) for d in "NCHW")  # type: ignore[return-value]


@dataclasses.dataclass
class Tensor:
    """A region value: an argument, a result, or an intermediate."""

    name: str            # C identifier, deterministic
    shape: tuple[int, ...]
    dtype: str
    role: str            # "input" | "output" | "intermediate"
    arg_index: Optional[int] = None  # position in the packed call (inputs, then outputs)
    base: Optional["Tensor"] = None  # a reshape of this tensor's memory (same DDR buffer)
    label: str = ""      # the model's name for the layer producing it (reports only, never C)
    # where it sits inside ``base`` (codegen/movement.py): element offset, and the
    # element stride of each axis (None: row-major from ``offset``)
    offset: int = 0
    strides: Optional[tuple[int, ...]] = None

    @property
    def nbytes(self) -> int:
        return _prod(self.shape) * DTYPE_BYTES[self.dtype]


@dataclasses.dataclass
class Local:
    """A tensor in LMEM: (n, c, h, w) under a layout, at a per-lane byte address."""

    name: str
    tensor: Tensor
    view: View
    dims: tuple[int, int, int, int]
    layout: str                       # "ALIGNED" | "COMPACT"
    addr: int = -1                    # set by the allocator
    cstride: int = 0                  # explicit channel stride: a row window of a buffer

    def lane_bytes(self, chip: Chip) -> int:
        return local_lane_bytes(chip, self.dims, self.tensor.dtype, self.layout, self.cstride)

    def channel_stride(self, chip: Chip) -> int:
        return channel_stride(chip, self.dims, self.tensor.dtype, self.layout, self.cstride)


def channel_stride(chip: Chip, dims, dtype: str, layout: str, cstride: int = 0) -> int:
    """Elements between channels in a lane: mirrors sophon_local_channel_stride()."""
    _, _, h, w = dims
    if cstride:
        return cstride
    eu = chip.eu_num(dtype)
    return h * w if layout == "COMPACT" else -(-(h * w) // eu) * eu


def local_lane_bytes(chip: Chip, dims, dtype: str, layout: str, cstride: int = 0) -> int:
    """Bytes one lane holds for a local tensor: mirrors sophon_local_lane_bytes()."""
    n, c, h, w = dims
    stride = channel_stride(chip, dims, dtype, layout, cstride)
    pack = chip.int8_batch_pack
    if dtype == "int8" and layout == "ALIGNED" and pack > 1 and not cstride:
        n = -(-n // pack) * pack   # the "4N" layout: batch slots in whole 32-bit words
    slots = n * -(-c // chip.npu_num)
    if cstride:
        return ((slots - 1) * stride + h * w) * DTYPE_BYTES[dtype]
    return slots * stride * DTYPE_BYTES[dtype]


@dataclasses.dataclass
class GlobalRef:
    """A view of (a slice of) a tensor in DDR: a region argument or result, or a
    scratch buffer. ``offset`` is in elements from the tensor's start."""

    tensor: Tensor
    view: View
    dims: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]
    offset: int = 0


# ---------------------------------------------------------------- instructions

@dataclasses.dataclass
class Load:
    dst: Local
    src: GlobalRef
    layer: str = ""      # the layer it feeds (for profiles)


@dataclasses.dataclass
class Store:
    dst: GlobalRef
    src: Local
    layer: str = ""      # the layer whose result it writes


@dataclasses.dataclass
class Copy:
    """GDMA DDR -> DDR (S2S): a 4-D strided view copied onto another of the same dims."""
    dst: GlobalRef
    src: GlobalRef
    layer: str = ""
    pattern: str = ""
    label: str = ""      # the model's name for the layer (reports only, never C)


@dataclasses.dataclass
class Fill:
    """GDMA constant fill of a 4-D strided DDR view (the border of a pad)."""
    dst: GlobalRef
    value: float
    layer: str = ""
    pattern: str = ""
    label: str = ""      # the model's name for the layer (reports only, never C)


@dataclasses.dataclass
class Activation:
    kind: str = "NONE"   # sophon_act_kind without SOPHON_ACT_: NONE RELU CLIP LEAKY_RELU SIGMOID TANH
                         # SILU HARD_SIGMOID HARD_SWISH GELU GELU_TANH MISH ELU SOFTPLUS, and the
                         # special functions SQRT RSQRT EXP LOG RECIPROCAL ABS NEG ERF
    alpha: float = 0.0   # leaky relu and ELU slope, hard-sigmoid slope
    lo: float = 0.0      # clip bounds
    hi: float = 0.0
    beta: float = 0.0    # hard-sigmoid offset


@dataclasses.dataclass
class Conv2d:
    out: Local
    input: Local
    weight: Local
    bias: Optional[Local]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]   # top, left, bottom, right
    dilation: tuple[int, int]
    groups: int
    act: Activation
    pattern: str = ""


@dataclasses.dataclass
class FullyConnected:
    out: Local
    input: Local
    weight: Local
    bias: Optional[Local]
    act: Activation
    pattern: str = ""


@dataclasses.dataclass
class Pool2d:
    out: Local
    input: Local
    kind: str                             # MAX | AVG
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    count_include_pad: bool
    pattern: str = ""


@dataclasses.dataclass
class Binary:
    out: Local
    lhs: Local
    rhs: Local
    op: str                               # ADD SUB MUL MAX MIN DIV PRELU
    act: Activation
    pattern: str = ""


@dataclasses.dataclass
class Unary:
    out: Local
    input: Local
    act: Activation
    pattern: str = ""


@dataclasses.dataclass
class Softmax:
    out: Local
    input: Local
    pattern: str = ""


@dataclasses.dataclass
class Conv2dTranspose:
    """tiu_conv2d_transpose: padding is (top, left, 0, 0); out's size sets the end."""
    out: Local
    input: Local
    weight: Local
    bias: Optional[Local]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    act: Activation
    pattern: str = ""
    requant: object = None   # int8 (tvm_sophon.quant.Requant): TFLite's TRANSPOSE_CONV, act unused


@dataclasses.dataclass
class Reduce:
    """tiu_reduce: out (n, c, 1, w) = in (n, c, h, w) reduced over h."""
    out: Local
    input: Local
    kind: str                             # SUM MEAN MAX MIN
    pattern: str = ""


@dataclasses.dataclass
class Norm:
    """tiu_norm: normalise over h, then scale (gamma) and shift (beta)."""
    out: Local
    input: Local
    gamma: Optional[Local]
    beta: Optional[Local]
    epsilon: float
    pattern: str = ""


@dataclasses.dataclass
class Lrn:
    """tiu_lrn: local response normalisation across channels."""
    out: Local
    input: Local
    size: int
    alpha: float
    beta: float
    bias: float
    pattern: str = ""


@dataclasses.dataclass
class Resize:
    """tiu_resize of a band of rows: out holds image rows [out_row0, ...) of an
    out_h-row image, input rows [in_row0, ...) of an in_h-row one."""
    out: Local
    input: Local
    method: str                           # NEAREST | BILINEAR
    coord: str                            # HALF_PIXEL ALIGN_CORNERS ASYMMETRIC ...
    rounding: str                         # HALF_EVEN PREFER_FLOOR PREFER_CEIL FLOOR CEIL
    in_h: int
    out_h: int
    in_row0: int = 0
    out_row0: int = 0
    pattern: str = ""
    # an int8 resize in onnxruntime's arithmetic: (input scale, input zero point,
    # output scale, output zero point); None: TFLite's (or a float resize)
    onnxruntime: Optional[tuple] = None


@dataclasses.dataclass
class QConv2d:
    """INT8 conv2d (incl. depthwise) with TFLite requantization (sophon_quant.h)."""
    out: Local
    input: Local
    weight: Local
    bias: Optional[Local]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    requant: object          # tvm_sophon.quant.Requant
    pattern: str = ""


@dataclasses.dataclass
class QFullyConnected:
    out: Local
    input: Local
    weight: Local
    bias: Optional[Local]
    requant: object
    pattern: str = ""


@dataclasses.dataclass
class QAdd:
    out: Local
    lhs: Local
    rhs: Local
    params: object           # tvm_sophon.quant.AddParams
    pattern: str = ""


@dataclasses.dataclass
class QPool2d:
    out: Local
    input: Local
    kind: str
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    act_min: int = -128
    act_max: int = 127
    pattern: str = ""
    count_include_pad: bool = False
    # an average in onnxruntime's arithmetic (QLinearAveragePool): (input scale, input
    # zero point, output scale, output zero point); None: TFLite's
    onnxruntime: Optional[tuple] = None


@dataclasses.dataclass
class QLut:
    """INT8 table lookup: every int8 unary op (sophon_tiu_lut_int8)."""
    out: Local
    input: Local
    table: tuple[int, ...]   # 256 int8 values, indexed by the input's byte
    pattern: str = ""


@dataclasses.dataclass
class QReduce:
    """INT8 reduce over h (TFLite's MEAN / SUM / REDUCE_MAX / REDUCE_MIN)."""
    out: Local
    input: Local
    kind: str                # SUM MEAN MAX MIN
    requant: object          # tvm_sophon.quant.Requant, None for MAX and MIN
    pattern: str = ""


@dataclasses.dataclass
class QBinary:
    """INT8 MUL / MAX / MIN / PRELU with broadcast (sophon_tiu_binary_int8)."""
    out: Local
    lhs: Local
    rhs: Local
    params: object           # tvm_sophon.quant_eltwise.BinaryParams
    pattern: str = ""


@dataclasses.dataclass
class QSoftmax:
    """INT8 softmax over h (TFLite's SOFTMAX, output scale 1/256, zero point -128),
    or onnxruntime's QLinearSoftmax when ``onnxruntime`` holds (input scale, output
    scale, output zero point)."""
    out: Local
    input: Local
    input_multiplier: int
    input_left_shift: int
    pattern: str = ""
    onnxruntime: Optional[tuple] = None


@dataclasses.dataclass
class Cast:
    """float32 <-> int8 with one scale and zero point (sophon_tiu_quantize_int8 when
    ``out`` is int8, sophon_tiu_dequantize_int8 when it is float32); ``rounding`` is
    the quantize's: "HALF_AWAY" (TFLite's QUANTIZE) or "HALF_TO_EVEN" (onnxruntime's
    QuantizeLinear)."""
    out: Local
    input: Local
    scale: float
    zero_point: int
    rounding: str = "HALF_AWAY"
    pattern: str = ""


@dataclasses.dataclass
class Timestep:
    """End of a timestep: the TIU and GDMA work issued since the last one overlaps."""


COMPUTE = (Conv2d, FullyConnected, Pool2d, Binary, Unary, Softmax, Resize, Conv2dTranspose, Reduce, Norm, Lrn,
           QConv2d, QFullyConnected, QAdd, QPool2d, QLut, QBinary, QReduce, QSoftmax)


# ---------------------------------------------------------------- plans

@dataclasses.dataclass
class Group:
    """Consecutive layers whose intermediates stay in LMEM. With more than one
    slice, the group's single output is cut into n_slices x h_slices bands (batch
    and rows); each band is computed through every layer, the input rows each
    layer needs derived backwards; weights stay resident.

    A group of one fully-connected layer whose weight does not fit a lane may also
    be cut over its output channels (``c_slices``, N) and its reduction
    (``k_slices``, K): each channel slice loads its weight slice; the K slices'
    partial sums stay in local memory and are added up there (n_slices cuts the
    rows, M, of such a layer)."""

    layers: list[int]
    n_slices: int = 1
    h_slices: int = 1
    c_slices: int = 1
    k_slices: int = 1

    @property
    def slices(self) -> int:
        return self.n_slices * self.h_slices * self.c_slices * self.k_slices

    def describe(self) -> str:
        """``NxH`` (batch x rows), with ``xCcxKk`` when sliced over channels or K."""
        text = f"{self.n_slices}x{self.h_slices}"
        if self.c_slices > 1 or self.k_slices > 1:
            text += f"x{self.c_slices}cx{self.k_slices}k"
        return text


@dataclasses.dataclass
class Plan:
    groups: list[Group]
    strategy: str = ""

    def to_json(self) -> str:
        import json
        # the channel/reduction slicing is written only where used: plans of
        # other layers read as before
        groups = [{k: v for k, v in dataclasses.asdict(g).items()
                   if k not in ("c_slices", "k_slices") or v != 1} for g in self.groups]
        return json.dumps({"strategy": self.strategy, "groups": groups})

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        import json
        data = json.loads(text)
        return cls([Group(**g) for g in data["groups"]], data.get("strategy", ""))

    @classmethod
    def layer_by_layer(cls, num_layers: int) -> "Plan":
        return cls([Group([i]) for i in range(num_layers)], "layer_by_layer")


@dataclasses.dataclass
class RegionProgram:
    """Straight-line program of one region: GDMA loads, compute, GDMA stores."""

    symbol: str
    chip: Chip
    inputs: list[Tensor]
    outputs: list[Tensor]
    locals: list[Local]
    scratch: list[Tensor]
    steps: list
    lmem_peak_bytes: int = 0
    plan: Optional["Plan"] = None
    group_steps: list = dataclasses.field(default_factory=list)  # (first, end) step index per group
    constant_inputs: frozenset = frozenset()  # positions in inputs of constant tensors (weights)

    def macs(self) -> int:
        total = 0
        for step in self.steps:
            if isinstance(step, (Conv2d, QConv2d)):
                n, oc, oh, ow = step.out.dims
                ic = step.input.dims[1] // step.groups
                total += n * oc * oh * ow * ic * step.kernel[0] * step.kernel[1]
            elif isinstance(step, (FullyConnected, QFullyConnected)):
                m, nf = step.out.dims[:2]
                total += m * nf * step.input.dims[1]
            elif isinstance(step, Conv2dTranspose):
                from tvm_sophon.patterns.deconv import transpose_macs

                n, oc, oh, ow = step.out.dims
                _, ic, h, w = step.input.dims
                total += transpose_macs(n, ic, oc, step.groups, (h, w), (oh, ow), step.kernel, step.strides,
                                        step.padding[:2], step.dilation)
        return total

    def describe(self) -> str:
        """Human-readable listing (one line per step)."""
        lines = [f"region {self.symbol} on {self.chip.name}: "
                 f"LMEM peak {self.lmem_peak_bytes} of {self.chip.lmem_bytes_per_lane} bytes per lane"]
        for step in self.steps:
            if isinstance(step, Load):
                lines.append(f"  gdma.load  {step.dst.name}@{step.dst.addr} <- {step.src.tensor.name}{list(step.dst.dims)}")
            elif isinstance(step, Store):
                lines.append(f"  gdma.store {step.dst.tensor.name} <- {step.src.name}@{step.src.addr}{list(step.src.dims)}")
            elif isinstance(step, Copy):
                lines.append(f"  gdma.copy  {step.dst.tensor.name}+{step.dst.offset} <- "
                             f"{step.src.tensor.name}+{step.src.offset}{list(step.dst.dims)}")
            elif isinstance(step, Fill):
                lines.append(f"  gdma.fill  {step.dst.tensor.name}+{step.dst.offset}{list(step.dst.dims)} = {step.value}")
            elif isinstance(step, Timestep):
                lines.append("  ---- timestep")
            else:
                operands = [f"{f.name}={getattr(step, f.name).name}@{getattr(step, f.name).addr}"
                            for f in dataclasses.fields(step)
                            if isinstance(getattr(step, f.name), Local)]
                lines.append(f"  tiu.{type(step).__name__.lower():<10} {' '.join(operands)}  ({step.pattern})")
        return "\n".join(lines)
