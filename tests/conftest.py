"""Shared helpers for the tvm_sophon test suite.

Every numerical test compares the chip's result (``run_sophon``: tvm_sophon.build
+ relax.VirtualMachine) against TVM's own llvm build of the *same* module
(``run_llvm``: tvm_sophon.models.reference_run, which never touches tvm_sophon's
partitioning or codegen). Nothing here uses the network.

The helpers are plain functions (``from conftest import run_sophon``; pytest's
``pythonpath`` includes tests/) and are also available as fixtures.
"""
from __future__ import annotations

import dataclasses
import os
import random
from typing import Callable, Optional, Sequence

import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon.models import bind_params, main_input_names, reference_run
from tvm_sophon.sweep import LOCAL_ONLY_ENV

# Ray, wherever a test imports it, runs local clusters on the loopback interface
os.environ.setdefault(LOCAL_ONLY_ENV, "0")

SEED = 0


# ------------------------------------------------------------------ seeds


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same global random state."""
    np.random.seed(SEED)
    random.seed(SEED)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


# ------------------------------------------------------------------ IR inspection


def sophon_regions(mod: tvm.IRModule) -> dict:
    """``{name: function}`` of the functions annotated ``Codegen="sophon"``."""
    return {gvar.name_hint: func for gvar, func in mod.functions.items()
            if isinstance(func, relax.Function) and (func.attrs or {}).get("Codegen") == "sophon"}


def host_ops(mod: tvm.IRModule, func_name: str = "main") -> list[str]:
    """Names of the Relax ops (``relax.nn.conv2d``, ...) still called in ``main``;
    calls to offloaded regions are calls to GlobalVars, not ops, and are not listed."""
    ops: list[str] = []

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            ops.append(str(expr.op.name))

    relax.analysis.post_order_visit(mod[func_name].body, visit)
    return ops


# ------------------------------------------------------------------ building modules


def make_module(inputs: dict, params: dict, body: Callable) -> tvm.IRModule:
    """A one-function module built with a BlockBuilder dataflow block.

    ``inputs`` and ``params`` map names to numpy arrays; ``main`` takes the inputs
    first, then the params (to be bound by ``partition_for_sophon(mod, params)``).
    ``body(bb, vars)`` receives the BlockBuilder and ``{name: relax.Var}`` and
    returns the output expression (it may ``bb.emit`` intermediate values).
    """
    bb = relax.BlockBuilder()
    variables = {name: relax.Var(name, relax.TensorType(list(np.shape(value)), str(np.asarray(value).dtype)))
                 for name, value in {**inputs, **params}.items()}
    with bb.function("main", list(variables.values())):
        with bb.dataflow():
            out = body(bb, variables)
            out = bb.emit_output(out)
        bb.emit_func_output(out)
    return bb.get()


def to_tensors(inputs: dict, mod: Optional[tvm.IRModule] = None) -> list:
    """``inputs`` as tvm tensors, in the order of ``main``'s parameters if ``mod`` is given."""
    names = list(inputs) if mod is None else [n for n in main_input_names(mod) if n in inputs]
    return [tvm.runtime.tensor(np.asarray(inputs[n])) for n in names]


# ------------------------------------------------------------------ running


@dataclasses.dataclass
class SophonRun:
    """What ``run_sophon`` produced: the output(s) and everything behind them."""
    output: object                  # np.ndarray, or a list of them for a tuple output
    partitioned: tvm.IRModule
    executable: tvm.runtime.Executable
    vm: relax.VirtualMachine

    def stats(self) -> dict:
        return tvm_sophon.last_run_stats(self.vm)


def _numpy(value):
    if hasattr(value, "numpy"):
        return value.numpy()
    return [_numpy(v) for v in value]


def run_sophon(mod: tvm.IRModule, params: Optional[dict], inputs: dict, *, chip="bm1680") -> SophonRun:
    """Partition for the chip, build with tvm_sophon.build, run on the VirtualMachine."""
    partitioned = tvm_sophon.partition_for_sophon(mod, params, chip=chip)
    ex = tvm_sophon.build(partitioned, chip=chip)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    bound = bind_params(mod, params)
    out = vm["main"](*to_tensors(inputs, bound))
    return SophonRun(_numpy(out), partitioned, ex, vm)


def run_llvm(mod: tvm.IRModule, params: Optional[dict], inputs: dict):
    """The independent reference: TVM's plain llvm build of the same module."""
    return reference_run(mod, params, inputs)


@pytest.fixture(name="run_sophon")
def _run_sophon_fixture():
    return run_sophon


@pytest.fixture(name="run_llvm")
def _run_llvm_fixture():
    return run_llvm


# ------------------------------------------------------------------ MACs, from shapes only


def _static_shape(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape.values)


def count_macs(mod: tvm.IRModule) -> int:
    """Multiply-accumulates of every conv2d and matmul in ``main``, computed here
    from the tensor shapes and conv attributes (independently of tvm_sophon):
    conv: N * Hout * Wout * Cout * (Cin / groups) * KH * KW; matmul: prod(out) * K."""
    total = 0

    def visit(expr):
        nonlocal total
        if not (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)):
            return
        name = str(expr.op.name)
        if name == "relax.nn.conv2d":
            out = _static_shape(expr)
            w = _static_shape(expr.args[1])
            attrs = expr.attrs
            dl, kl = str(attrs.data_layout), str(attrs.kernel_layout)
            x = _static_shape(expr.args[0])
            n, cout = out[dl.index("N")], out[dl.index("C")]
            hout, wout = out[dl.index("H")], out[dl.index("W")]
            cin = x[dl.index("C")]
            kh, kw = w[kl.index("H")], w[kl.index("W")]
            total += n * hout * wout * cout * (cin // int(attrs.groups)) * kh * kw
        elif name == "relax.matmul":
            out = _static_shape(expr)
            k = _static_shape(expr.args[0])[-1]
            total += int(np.prod(out)) * k

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return total


def assert_close(actual, expected, *, rtol: float, atol: float, what: str = "") -> None:
    """np.testing.assert_allclose with the max abs difference in the message."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = float(np.max(np.abs(actual.astype("float64") - expected))) if actual.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"{what}: max abs diff {diff:.3g}")


__all__: Sequence[str] = [
    "SEED", "SophonRun", "assert_close", "count_macs", "host_ops", "make_module", "run_llvm",
    "run_sophon", "sophon_regions", "to_tensors",
]
