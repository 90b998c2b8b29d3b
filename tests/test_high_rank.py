"""Element-wise ops above 4-D on the chip (issue #10): a YOLO detect head decodes
its boxes on (1, 3, H, W, 5 + classes) tensors. The chip's tensors are 4-D, so
such an op runs with adjacent axes merged (patterns.rules.collapsed_groups),
where every operand is whole or broadcast on each merged group; where the
broadcasts forbid a merge, the op stays on the host with that reason.

Reference: TVM's llvm build of the same module. Tolerance: the chip's sigmoid
and SiLU evaluate expf in their own kernels, a few float32 ulps from TVM's;
the arithmetic after them (x2, +grid, x stride, square, x anchor) scales values
up to ~50, so 1e-5 relative and 1e-4 absolute bound the rounding while a wrong
broadcast (a grid or anchor value on the wrong element) errs by >= 0.1.
"""
from __future__ import annotations

import numpy as np
import pytest
from tvm import relax

import tvm_sophon
from conftest import host_ops, make_module, run_llvm, run_sophon

RTOL, ATOL = 1e-5, 1e-4


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _detect_head(side: int, classes: int, stride: float):
    """A YOLOv5 Detect head's decode, as torch.onnx.export writes it: view to 5-D,
    permute, sigmoid, split, (xy * 2 + grid) * stride, (wh * 2) ** 2 * anchor,
    concat, flatten to (1, boxes, 5 + classes)."""
    width = 5 + classes
    grid = _rand((1, 1, side, side, 2), 1)
    anchor = np.abs(_rand((1, 3, 1, 1, 2), 2)) * 10

    def body(bb, v):
        y = bb.emit(relax.op.reshape(v["x"], (1, 3, width, side, side)))
        y = bb.emit(relax.op.sigmoid(bb.emit(relax.op.permute_dims(y, [0, 1, 3, 4, 2]))))
        xy = bb.emit(relax.op.strided_slice(y, [4], [0], [2]))
        wh = bb.emit(relax.op.strided_slice(y, [4], [2], [4]))
        rest = bb.emit(relax.op.strided_slice(y, [4], [4], [width]))
        xy = bb.emit(relax.op.add(bb.emit(relax.op.multiply(xy, relax.const(2.0))), relax.const(grid)))
        xy = bb.emit(relax.op.multiply(xy, relax.const(stride)))
        wh = bb.emit(relax.op.multiply(wh, relax.const(2.0)))
        wh = bb.emit(relax.op.multiply(bb.emit(relax.op.multiply(wh, wh)), relax.const(anchor)))
        out = bb.emit(relax.op.concat([xy, wh, rest], 4))
        return relax.op.reshape(out, (1, 3 * side * side, width))

    return {"x": _rand((1, 3 * width, side, side), 0)}, body


@pytest.mark.parametrize("side,classes,stride", [(5, 2, 8.0), (1, 6, 32.0), (7, 11, 16.0)])
def test_detect_head_decode_runs_whole_on_the_chip(side, classes, stride):
    inputs, body = _detect_head(side, classes, stride)
    mod = make_module(inputs, {}, body)
    run = run_sophon(mod, None, inputs)
    assert host_ops(run.partitioned) == []
    report = tvm_sophon.offload_report(run.partitioned)
    assert {"sophon.sigmoid", "sophon.add", "sophon.multiply"} <= set(report.offloaded)
    np.testing.assert_allclose(run.output, run_llvm(mod, None, inputs), rtol=RTOL, atol=ATOL)


def test_rank6_silu_and_broadcast_add():
    """SiLU (x * sigmoid(x), the chain) and an add whose operand is broadcast on
    axes 1 and 4 of a 6-D tensor with odd extents."""
    shape = (2, 3, 1, 5, 7, 3)
    inputs = {"x": _rand(shape, 3), "b": _rand((1, 3, 1, 1, 1, 3), 4)}

    def body(bb, v):
        s = bb.emit(relax.op.multiply(v["x"], bb.emit(relax.op.sigmoid(v["x"]))))
        return relax.op.add(s, v["b"])

    mod = make_module(inputs, {}, body)
    run = run_sophon(mod, None, inputs)
    assert host_ops(run.partitioned) == []
    np.testing.assert_allclose(run.output, run_llvm(mod, None, inputs), rtol=RTOL, atol=ATOL)


def test_broadcast_that_does_not_merge_stays_on_the_host():
    """(2, 3, 4, 5, 6, 7) + (3, 1, 5, 1, 7): whole and broadcast axes alternate,
    so no two adjacent axes merge and the add cannot be 4-D; it stays on the host
    with that reason, and the result is still right."""
    inputs = {"x": _rand((2, 3, 4, 5, 6, 7), 5), "b": _rand((3, 1, 5, 1, 7), 6)}
    mod = make_module(inputs, {}, lambda bb, v: relax.op.add(bb.emit(relax.op.nn.relu(v["x"])), v["b"]))
    run = run_sophon(mod, None, inputs)
    (add,) = [op for op in tvm_sophon.offload_report(run.partitioned).host_ops if op.op == "relax.add"]
    assert "do not merge to 4-D" in add.reason
    np.testing.assert_allclose(run.output, run_llvm(mod, None, inputs), rtol=RTOL, atol=ATOL)
