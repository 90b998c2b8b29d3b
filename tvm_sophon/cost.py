"""The compiler's view of the cost model: a ctypes binding to the runtime's own
``sophon_cost_*`` functions (runtime/chip/sophon_cost.h, where the model is written
down), so a plan is estimated by exactly the formulas the emulator counts with.

``estimate(program)`` gives, before anything runs, the counters a run of a
region program will report: MACs, bytes each way, TIU and GDMA cycles.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools

from . import toolchain
from .chip import DTYPE_BYTES, Chip

DTYPES = {"float32": 0, "int8": 1, "int32": 2}
LAYOUTS = {"ALIGNED": 0, "COMPACT": 1}
# sophon_act_kind, in the order of runtime/sophon.h
ACTS = {kind: i for i, kind in enumerate((
    "NONE", "RELU", "CLIP", "LEAKY_RELU", "SIGMOID", "TANH", "SILU", "HARD_SIGMOID", "HARD_SWISH", "GELU",
    "GELU_TANH", "MISH", "ELU", "SOFTPLUS", "SQRT", "RSQRT", "EXP", "LOG", "RECIPROCAL", "ABS", "NEG", "ERF"))}
# sophon_binary_op
BINARY_OPS = {op: i for i, op in enumerate(("ADD", "SUB", "MUL", "MAX", "MIN", "DIV", "PRELU"))}


class ChipStruct(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("npu_num", ctypes.c_int32),
                ("lmem_bytes_per_lane", ctypes.c_int64), ("lmem_banks", ctypes.c_int32),
                ("eu_bytes", ctypes.c_int32), ("has_int8", ctypes.c_int32),
                ("clock_hz", ctypes.c_double), ("ddr_bytes_per_second", ctypes.c_double),
                ("power_watts", ctypes.c_double), ("gdma_latency_cycles", ctypes.c_int32),
                ("tiu_latency_cycles", ctypes.c_int32), ("int8_macs_per_eu", ctypes.c_int32),
                ("gdma_clock_hz", ctypes.c_double), ("gdma_burst_bytes", ctypes.c_int32),
                ("timestep_sync_cycles", ctypes.c_int32), ("dwpool_eu_bytes", ctypes.c_int32),
                ("int8_batch_pack", ctypes.c_int32), ("eltwise_eu_bytes", ctypes.c_int32)]

    @classmethod
    def of(cls, chip: Chip) -> "ChipStruct":
        return cls(chip.name.encode(), chip.npu_num, chip.lmem_bytes_per_lane, chip.lmem_banks,
                   chip.eu_bytes, int(chip.has_int8), chip.clock_hz, chip.ddr_bytes_per_second,
                   chip.power_watts, chip.gdma_latency_cycles, chip.tiu_latency_cycles,
                   chip.int8_macs_per_eu, chip.gdma_clock_hz, chip.gdma_burst_bytes,
                   chip.timestep_sync_cycles, chip.dwpool_eu_bytes, chip.int8_batch_pack,
                   chip.eltwise_eu_bytes)


class LocalStruct(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint32), ("n", ctypes.c_int32), ("c", ctypes.c_int32),
                ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("dtype", ctypes.c_int),
                ("layout", ctypes.c_int), ("cstride", ctypes.c_int32)]

    @classmethod
    def of(cls, local) -> "LocalStruct":
        return cls(max(local.addr, 0), *local.dims, DTYPES[local.tensor.dtype], LAYOUTS[local.layout],
                   local.cstride)


class ActivationStruct(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("alpha", ctypes.c_float), ("lo", ctypes.c_float),
                ("hi", ctypes.c_float), ("beta", ctypes.c_float)]

    @classmethod
    def of(cls, act) -> "ActivationStruct":
        return cls(ACTS[act.kind], act.alpha, act.lo, act.hi, act.beta)


class ConvParamsStruct(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in (
        "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom",
        "pad_right", "dilation_h", "dilation_w", "groups")] + [("act", ActivationStruct)]


class PoolParamsStruct(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int)] + [(name, ctypes.c_int32) for name in (
        "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom",
        "pad_right", "dilation_h", "dilation_w", "count_include_pad")] + [
        ("arithmetic", ctypes.c_int), ("input_scale", ctypes.c_float), ("output_scale", ctypes.c_float),
        ("input_zero_point", ctypes.c_int32), ("output_zero_point", ctypes.c_int32)]


class ResizeParamsStruct(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("method", "coord", "rounding")] + [
        (name, ctypes.c_int32) for name in ("in_h", "out_h", "in_row0", "out_row0")] + [
        ("arithmetic", ctypes.c_int), ("input_scale", ctypes.c_float), ("output_scale", ctypes.c_float),
        ("input_zero_point", ctypes.c_int32), ("output_zero_point", ctypes.c_int32)]

    METHODS = ("NEAREST", "BILINEAR")
    COORDS = ("HALF_PIXEL", "ALIGN_CORNERS", "ASYMMETRIC", "PYTORCH_HALF_PIXEL", "TF_HALF_PIXEL_FOR_NN")
    ROUNDINGS = ("HALF_EVEN", "PREFER_FLOOR", "PREFER_CEIL", "FLOOR", "CEIL")

    @classmethod
    def of(cls, step) -> "ResizeParamsStruct":
        return cls(cls.METHODS.index(step.method), cls.COORDS.index(step.coord),
                   cls.ROUNDINGS.index(step.rounding), step.in_h, step.out_h, step.in_row0, step.out_row0)


class LrnParamsStruct(ctypes.Structure):
    _fields_ = [("size", ctypes.c_int32), ("alpha", ctypes.c_float), ("beta", ctypes.c_float),
                ("bias", ctypes.c_float)]


@functools.lru_cache(maxsize=None)
def runtime_library() -> ctypes.CDLL:
    """The runtime as a shared library (built once, cached)."""
    lib = ctypes.CDLL(str(toolchain.runtime_shared_library()))
    for name in ("sophon_cost_gdma", "sophon_cost_gdma_transfer", "sophon_cost_timestep",
                 "sophon_cost_conv2d", "sophon_cost_fc", "sophon_cost_pool2d",
                 "sophon_cost_eltwise", "sophon_cost_binary", "sophon_cost_binary_op",
                 "sophon_cost_activation", "sophon_cost_softmax", "sophon_cost_gdma_copy",
                 "sophon_cost_gdma_fill", "sophon_cost_resize", "sophon_cost_conv2d_transpose",
                 "sophon_cost_reduce", "sophon_cost_norm", "sophon_cost_lrn", "sophon_cost_softmax_int8",
                 "sophon_cost_quantize"):
        getattr(lib, name).restype = ctypes.c_uint64
    lib.sophon_cost_gdma.argtypes = [ctypes.POINTER(ChipStruct), ctypes.c_uint64]
    lib.sophon_cost_gdma_transfer.argtypes = [ctypes.POINTER(ChipStruct), ctypes.POINTER(LocalStruct),
                                              ctypes.POINTER(ctypes.c_int64 * 4)]
    lib.sophon_cost_timestep.argtypes = [ctypes.POINTER(ChipStruct), ctypes.c_uint64, ctypes.c_uint64]
    dims, strides = ctypes.POINTER(ctypes.c_int32 * 4), ctypes.POINTER(ctypes.c_int64 * 4)
    lib.sophon_cost_gdma_copy.argtypes = [ctypes.POINTER(ChipStruct), dims, ctypes.c_int, strides, strides]
    lib.sophon_cost_gdma_fill.argtypes = [ctypes.POINTER(ChipStruct), dims, ctypes.c_int, strides]
    lib.sophon_local_lane_bytes.restype = ctypes.c_int64
    return lib


@dataclasses.dataclass
class Estimate:
    macs: int = 0
    tiu_instructions: int = 0
    gdma_instructions: int = 0
    bytes_loaded: int = 0
    bytes_stored: int = 0
    tiu_cycles: int = 0
    gdma_cycles: int = 0
    timesteps: int = 0
    cycles: int = 0          # sum over timesteps of max(TIU, GDMA): the estimated time

    def seconds(self, chip: Chip) -> float:
        return self.cycles / chip.clock_hz

    @property
    def ddr_bytes(self) -> int:
        return self.bytes_loaded + self.bytes_stored


def _conv_params(step) -> ConvParamsStruct:
    act = ActivationStruct.of(step.act) if hasattr(step, "act") else ActivationStruct(0, 0, 0, 0, 0)
    return ConvParamsStruct(step.kernel[0], step.kernel[1], step.strides[0], step.strides[1],
                            *step.padding, step.dilation[0], step.dilation[1], step.groups, act)


def _pool_params(step) -> PoolParamsStruct:
    return PoolParamsStruct(0 if step.kind == "MAX" else 1, step.kernel[0], step.kernel[1],
                            step.strides[0], step.strides[1], *step.padding,
                            step.dilation[0], step.dilation[1], int(getattr(step, "count_include_pad", 0)))


_MEMO: dict = {}


def _signature(chip: Chip, step) -> tuple:
    """What a step's cost depends on: its kind, operand shapes and parameters
    (not LMEM addresses), so equal steps are priced once."""
    from tvm_sophon.codegen import program as P

    if isinstance(step, (P.Load, P.Store)):
        local, ref = (step.dst, step.src) if isinstance(step, P.Load) else (step.src, step.dst)
        return (chip, "gdma", local.dims, local.tensor.dtype, tuple(ref.strides))
    if isinstance(step, P.Copy):
        return (chip, "copy", step.dst.dims, step.dst.tensor.dtype, tuple(step.dst.strides), tuple(step.src.strides))
    if isinstance(step, P.Fill):
        return (chip, "fill", step.dst.dims, step.dst.tensor.dtype, tuple(step.dst.strides))
    parts = [chip, type(step).__name__]
    for field in dataclasses.fields(step):
        value = getattr(step, field.name)
        if isinstance(value, P.Local):
            parts.append((value.dims, value.tensor.dtype, value.layout, value.cstride))
        elif field.name != "pattern":
            parts.append(repr(value))
    return tuple(parts)


def step_cycles(chip: Chip, step) -> tuple[str, int]:
    """(engine, cycles) of one program step: engine is "tiu" or "gdma"."""
    key = _signature(chip, step)
    if key not in _MEMO:
        _MEMO[key] = _step_cycles(chip, step)
    return _MEMO[key]


def _step_cycles(chip: Chip, step) -> tuple[str, int]:
    from tvm_sophon.codegen import program as P

    lib, c_chip = runtime_library(), ctypes.byref(ChipStruct.of(chip))
    ref = lambda local: ctypes.byref(LocalStruct.of(local))  # noqa: E731
    if isinstance(step, (P.Load, P.Store)):
        local, ref_ = (step.dst, step.src) if isinstance(step, P.Load) else (step.src, step.dst)
        strides = (ctypes.c_int64 * 4)(*ref_.strides)
        return "gdma", lib.sophon_cost_gdma_transfer(c_chip, ref(local), ctypes.byref(strides))
    if isinstance(step, (P.Copy, P.Fill)):   # DDR to DDR: the DDR side of each view, in bursts
        dims = ctypes.byref((ctypes.c_int32 * 4)(*step.dst.dims))
        dst = ctypes.byref((ctypes.c_int64 * 4)(*step.dst.strides))
        dtype = DTYPES[step.dst.tensor.dtype]
        if isinstance(step, P.Fill):
            return "gdma", lib.sophon_cost_gdma_fill(c_chip, dims, dtype, dst)
        src = ctypes.byref((ctypes.c_int64 * 4)(*step.src.strides))
        return "gdma", lib.sophon_cost_gdma_copy(c_chip, dims, dtype, dst, src)
    if isinstance(step, (P.Conv2d, P.QConv2d)):
        return "tiu", lib.sophon_cost_conv2d(c_chip, ref(step.out), ref(step.input),
                                             ctypes.byref(_conv_params(step)))
    if isinstance(step, (P.FullyConnected, P.QFullyConnected)):
        return "tiu", lib.sophon_cost_fc(c_chip, ref(step.out), ref(step.input))
    if isinstance(step, (P.Pool2d, P.QPool2d)):
        return "tiu", lib.sophon_cost_pool2d(c_chip, ref(step.out), ctypes.byref(_pool_params(step)))
    if isinstance(step, (P.QAdd, P.QLut, P.QBinary)):
        return "tiu", lib.sophon_cost_binary(c_chip, ref(step.out), None)
    if isinstance(step, P.Binary):
        return "tiu", lib.sophon_cost_binary_op(c_chip, ref(step.out), BINARY_OPS[step.op],
                                                ctypes.byref(ActivationStruct.of(step.act)))
    if isinstance(step, P.Unary):
        return "tiu", lib.sophon_cost_activation(c_chip, ref(step.out), ctypes.byref(ActivationStruct.of(step.act)))
    if isinstance(step, P.Softmax):
        return "tiu", lib.sophon_cost_softmax(c_chip, ref(step.out))
    if isinstance(step, P.Conv2dTranspose):
        return "tiu", lib.sophon_cost_conv2d_transpose(c_chip, ref(step.out), ref(step.input),
                                                       ctypes.byref(_conv_params(step)))
    if isinstance(step, P.Lrn):
        params = LrnParamsStruct(step.size, step.alpha, step.beta, step.bias)
        return "tiu", lib.sophon_cost_lrn(c_chip, ref(step.out), ctypes.byref(params))
    if isinstance(step, P.Norm):
        return "tiu", lib.sophon_cost_norm(c_chip, ref(step.out))
    if isinstance(step, P.QSoftmax):
        return "tiu", lib.sophon_cost_softmax_int8(c_chip, ref(step.out))
    if isinstance(step, P.Cast):
        return "tiu", lib.sophon_cost_quantize(c_chip, ref(step.out), ref(step.input))
    if isinstance(step, (P.Reduce, P.QReduce)):
        kind = ("SUM", "MEAN", "MAX", "MIN").index(step.kind)
        return "tiu", lib.sophon_cost_reduce(c_chip, ref(step.input), kind)
    if isinstance(step, P.Resize):
        return "tiu", lib.sophon_cost_resize(c_chip, ref(step.out), ctypes.byref(ResizeParamsStruct.of(step)))
    raise TypeError(f"no cost for {type(step).__name__}")


def ddr_step_bytes(step) -> int:
    """Bytes a DDR -> DDR copy or a fill moves (one way)."""
    return _elements(step.dst.dims) * DTYPE_BYTES[step.dst.tensor.dtype]


def timestep_cycles(chip: Chip, tiu: int, gdma: int) -> int:
    """What a timestep holding ``tiu`` and ``gdma`` cycles of work takes
    (sophon_cost_timestep: the longer engine, plus the synchronisation)."""
    return runtime_library().sophon_cost_timestep(ctypes.byref(ChipStruct.of(chip)), tiu, gdma)


def _elements(dims) -> int:
    n, c, h, w = dims
    return n * c * h * w


def estimate(program) -> Estimate:
    """The counters a run of ``program`` (a codegen RegionProgram) will report."""
    est = estimate_steps(program.chip, program.steps)
    est.macs = program.macs()
    return est


def estimate_steps(chip: Chip, steps) -> Estimate:
    """Counters of a list of program steps (MACs not included)."""
    from tvm_sophon.codegen import program as P

    est = Estimate()
    step_tiu = step_gdma = 0
    for step in steps:
        if isinstance(step, P.Timestep):
            est.cycles += timestep_cycles(chip, step_tiu, step_gdma)
            est.timesteps += 1
            step_tiu = step_gdma = 0
            continue
        engine, cycles = step_cycles(chip, step)
        if engine == "gdma":
            est.gdma_instructions += 1
            est.gdma_cycles += cycles
            step_gdma += cycles
            if isinstance(step, (P.Copy, P.Fill)):   # a copy reads and writes DDR, a fill writes
                nbytes = ddr_step_bytes(step)
                est.bytes_loaded += nbytes if isinstance(step, P.Copy) else 0
                est.bytes_stored += nbytes
                continue
            local = step.dst if isinstance(step, P.Load) else step.src
            nbytes = _elements(local.dims) * DTYPE_BYTES[local.tensor.dtype]
            if isinstance(step, P.Load):
                est.bytes_loaded += nbytes
            else:
                est.bytes_stored += nbytes
        else:
            est.tiu_instructions += 1
            est.tiu_cycles += cycles
            step_tiu += cycles
    return est
