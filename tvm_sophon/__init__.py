"""tvm_sophon: an Apache TVM (Relax BYOC) backend for the Sophon BM1680, whose chip
is emulated by a C reference runtime.

    mod = tvm_sophon.partition_for_sophon(mod, params)      # what runs on the chip
    ex = tvm_sophon.build(mod)                               # or tvm.compile(..., relax_pipeline=tvm_sophon.pipeline())
    vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](x)
    tvm_sophon.last_run_stats(vm)                            # chip counters per region
"""
from . import patterns  # noqa: F401  (registers the sophon pattern table)
from .build import build, pipeline
from .chip import Chip, available_chips, get_chip, load_chip
from .errors import SophonCompileError, SophonError, SophonToolchainError
from .partition import OffloadReport, offload_report, partition_for_sophon
from .passes import PlanRegions
from .quantize import compare, quantize, quantize_report
from .stats import format_stats, last_run_stats
from .vm import ThreadLocalVM

__version__ = "0.1.0"

__all__ = [
    "Chip", "OffloadReport", "ThreadLocalVM", "SophonCompileError", "SophonError", "SophonToolchainError",
    "available_chips", "build", "format_stats", "get_chip", "last_run_stats", "load_chip",
    "offload_report", "partition_for_sophon", "pipeline", "PlanRegions", "compare", "quantize",
    "quantize_report",
]
