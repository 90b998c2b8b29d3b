"""Data movement on the chip (codegen/movement.py): concat, split, strided_slice,
pad, reshape / flatten / squeeze / expand_dims, broadcast_to, tile, permute_dims,
channel shuffle, depth-to-space and space-to-depth, each against TVM's own llvm
build of the same module, and each a single region with nothing on the host.

Shapes hit the awkward cases: C = 3, 5, 17; H = W = 1, 7, 31; NCHW and NHWC;
negative and strided slices; concats of three or more inputs along C, H and W.
Most cases put the op between two ReLUs (``between``), so the chip computes its
input in LMEM, stores it (straight into a concat's slice, or once for a view) and
a compute layer loads the result; the rest move a region argument into a region
result (``alone``), which takes a DDR-to-DDR copy.

Tolerance: none. Data movement and ReLU do no arithmetic, so the chip's result
must equal TVM's bit for bit.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Callable

import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon import codegen, cost
from tvm_sophon.codegen import program as P
from conftest import host_ops, make_module, run_llvm, run_sophon, sophon_regions


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@dataclasses.dataclass
class Case:
    """Inputs of ``shapes`` -> relu -> op(bb, values) -> relu, or (``between=False``)
    the op on the region's arguments, its result returned as it is (and a ReLU of
    it, so that the region holds a chip op: movement alone stays with the host)."""

    id: str
    shapes: list
    op: Callable
    between: bool = True

    def inputs(self) -> dict:
        return {f"{self.id}:x{i}": _rand(s, zlib.crc32(f"{self.id}{i}".encode()))
                for i, s in enumerate(self.shapes)}

    def outputs(self, bb, v) -> list:
        xs = [v[f"{self.id}:x{i}"] for i in range(len(self.shapes))]
        if self.between:
            xs = [bb.emit(relax.op.nn.relu(x)) for x in xs]
        y = bb.emit(self.op(bb, xs))
        return [bb.emit(relax.op.nn.relu(y))] if self.between else [y, bb.emit(relax.op.nn.relu(y))]


def _module(cases: list) -> tuple:
    """One module holding every case as an independent subgraph (one build for
    all of them); ``main`` returns every case's outputs."""
    inputs = {k: v for case in cases for k, v in case.inputs().items()}

    def body(bb, v):
        return relax.Tuple([y for case in cases for y in case.outputs(bb, v)])

    return make_module(inputs, {}, body), inputs


def _case(id: str, shapes: list, op: Callable, *, between: bool = True) -> Case:
    return Case(id, shapes, op, between)


def _concat(axis):
    return lambda bb, xs: relax.op.concat(xs, axis=axis)


def _slice(axes, begin, end, strides=None):
    return lambda bb, xs: relax.op.strided_slice(xs[0], axes, begin, end, strides)


def _split(sections, axis, pick):
    return lambda bb, xs: relax.TupleGetItem(bb.emit(relax.op.split(xs[0], sections, axis=axis)), pick)


def _chain(*steps):
    def op(bb, xs):
        y = xs[0]
        for i, step in enumerate(steps):
            y = step(y) if i + 1 == len(steps) else bb.emit(step(y))
        return y
    return op


def channel_shuffle(layout, groups, c):
    """The reshape -> transpose -> reshape every ShuffleNet unit ends with."""
    def op(bb, xs):
        n, *rest = [int(d) for d in xs[0].ty.shape.values]
        if layout == "NCHW":
            h, w = rest[1:]
            y = bb.emit(relax.op.reshape(xs[0], (n, groups, c // groups, h, w)))
            y = bb.emit(relax.op.permute_dims(y, [0, 2, 1, 3, 4]))
            return relax.op.reshape(y, (n, c, h, w))
        h, w = rest[:2]
        y = bb.emit(relax.op.reshape(xs[0], (n, h, w, groups, c // groups)))
        y = bb.emit(relax.op.permute_dims(y, [0, 1, 2, 4, 3]))
        return relax.op.reshape(y, (n, h, w, c))
    return op


def depth_to_space_onnx(block, mode):
    """What TVM's ONNX importer emits for DepthToSpace (NCHW)."""
    def op(bb, xs):
        b, c, h, w = [int(d) for d in xs[0].ty.shape.values]
        if mode == "DCR":
            y = bb.emit(relax.op.reshape(xs[0], (b, block, block, c // block**2, h, w)))
            y = bb.emit(relax.op.permute_dims(y, [0, 3, 4, 1, 5, 2]))
        else:
            y = bb.emit(relax.op.reshape(xs[0], (b, c // block**2, block, block, h, w)))
            y = bb.emit(relax.op.permute_dims(y, [0, 1, 4, 2, 5, 3]))
        return relax.op.reshape(y, (b, c // block**2, h * block, w * block))
    return op


def space_to_depth_tflite(block):
    """What TVM's TFLite importer emits for SPACE_TO_DEPTH (NHWC)."""
    def op(bb, xs):
        n, h, w, c = [int(d) for d in xs[0].ty.shape.values]
        y = bb.emit(relax.op.reshape(xs[0], (n, h // block, block, w // block, block, c)))
        y = bb.emit(relax.op.permute_dims(y, [0, 1, 3, 2, 4, 5]))
        return relax.op.reshape(y, (n, h // block, w // block, c * block * block))
    return op


def depth_to_space_tflite(block):
    def op(bb, xs):
        n, h, w, c = [int(d) for d in xs[0].ty.shape.values]
        y = bb.emit(relax.op.reshape(xs[0], (n, h, w, block, block, c // block**2)))
        y = bb.emit(relax.op.permute_dims(y, [0, 1, 3, 2, 4, 5]))
        return relax.op.reshape(y, (n, h * block, w * block, c // block**2))
    return op


CASES = [
    # concat of 3+ inputs along C, H and W, NCHW and NHWC
    _case("concat-nchw-c3-c5-c17-h7", [(1, 3, 7, 7), (1, 5, 7, 7), (1, 17, 7, 7)], _concat(1)),
    _case("concat-nhwc-c3-c5-c17-h7", [(1, 7, 7, 3), (1, 7, 7, 5), (1, 7, 7, 17)], _concat(3)),
    _case("concat-nchw-h-axis-h1-h7-h31", [(2, 5, 1, 7), (2, 5, 7, 7), (2, 5, 31, 7)], _concat(2)),
    _case("concat-nhwc-w-axis", [(1, 7, 1, 3), (1, 7, 7, 3), (1, 7, 31, 3), (1, 7, 2, 3)], _concat(2)),
    _case("concat-nchw-w-axis-h31", [(1, 3, 31, 5), (1, 3, 31, 17), (1, 3, 31, 1)], _concat(3)),
    _case("concat-batch-axis", [(1, 5, 7, 7), (2, 5, 7, 7), (1, 5, 7, 7)], _concat(0)),
    _case("concat-same-input-twice", [(1, 5, 7, 7), (1, 3, 7, 7)],
          lambda bb, xs: relax.op.concat([xs[0], xs[1], xs[0]], axis=1)),
    _case("concat-nested", [(1, 3, 7, 7), (1, 5, 7, 7), (1, 17, 7, 7)],
          lambda bb, xs: relax.op.concat([bb.emit(relax.op.concat(xs[:2], axis=1)), xs[2]], axis=1)),
    _case("concat-wide-12-inputs", [(1, 3, 1, 1)] * 12, _concat(1)),
    _case("concat-region-arguments", [(1, 3, 7, 7), (1, 17, 7, 7), (1, 5, 7, 7)], _concat(1), between=False),
    # strided_slice: any axis, steps, negative steps, NHWC
    _case("slice-nchw-c17-channels", [(1, 17, 7, 7)], _slice([1], [2], [13])),
    _case("slice-nchw-h31-step2-w-step3", [(1, 5, 31, 31)], _slice([2, 3], [1, 0], [30, 31], [2, 3])),
    _case("slice-nhwc-negative-steps", [(1, 7, 7, 17)], _slice([1, 3], [-1, 16], [-8, 0], [-1, -2])),
    _case("slice-negative-begin-end", [(2, 5, 7, 7)], _slice([0, 2], [-1, -5], [2, -1])),
    _case("slice-h1-w1", [(1, 17, 1, 1)], _slice([1], [0], [17], [4])),
    _case("slice-alone-output", [(1, 5, 31, 31)], _slice([2], [3], [20], [2]), between=False),
    # split -> one slice per part
    _case("split-sections-c", [(1, 15, 7, 7)], _split(3, 1, 1)),
    _case("split-indices-nhwc", [(1, 7, 7, 17)], _split([5, 9], 3, 2)),
    # pad: constant border by GDMA fill; the interior written in place
    _case("pad-nchw-hw-value", [(1, 5, 7, 7)],
          lambda bb, xs: relax.op.nn.pad(xs[0], [0, 0, 0, 0, 1, 2, 3, 0], pad_value=0.5)),
    _case("pad-nhwc-all-axes", [(1, 7, 7, 3)],
          lambda bb, xs: relax.op.nn.pad(xs[0], [1, 0, 0, 1, 2, 2, 0, 3])),
    _case("pad-alone", [(1, 17, 1, 1)],
          lambda bb, xs: relax.op.nn.pad(xs[0], [0, 0, 0, 0, 1, 1, 1, 1], pad_value=-2.0), between=False),
    # reshape family: views
    _case("reshape-flatten-nchw", [(2, 5, 7, 7)], lambda bb, xs: relax.op.reshape(xs[0], (2, 245))),
    _case("flatten", [(1, 17, 1, 1)], lambda bb, xs: relax.op.flatten(xs[0])),
    _case("squeeze-expand-dims", [(1, 17, 1, 7)],
          _chain(lambda y: relax.op.squeeze(y, [2]), lambda y: relax.op.expand_dims(y, [1]))),
    _case("reshape-alone", [(1, 3, 31, 31)], lambda bb, xs: relax.op.reshape(xs[0], (3, 31, 31)), between=False),
    # broadcast and tile
    _case("broadcast-to-nchw", [(1, 17, 1, 1)], lambda bb, xs: relax.op.broadcast_to(xs[0], (2, 17, 7, 7))),
    _case("broadcast-to-lower-rank", [(5,)], lambda bb, xs: relax.op.broadcast_to(xs[0], (1, 7, 7, 5))),
    _case("tile-nchw", [(1, 3, 7, 5)], lambda bb, xs: relax.op.tile(xs[0], (2, 1, 3, 2))),
    _case("tile-adds-axes", [(5, 7)], lambda bb, xs: relax.op.tile(xs[0], (3, 1, 2))),
    # transposes, channel shuffle, depth-to-space / space-to-depth
    _case("permute-nchw-to-nhwc", [(1, 17, 7, 5)], lambda bb, xs: relax.op.permute_dims(xs[0], [0, 2, 3, 1])),
    _case("permute-alone", [(2, 3, 31, 7)], lambda bb, xs: relax.op.permute_dims(xs[0], [3, 1, 0, 2]),
          between=False),
    _case("channel-shuffle-nchw-g2", [(1, 16, 7, 7)], channel_shuffle("NCHW", 2, 16)),
    _case("channel-shuffle-nhwc-g3", [(1, 7, 7, 15)], channel_shuffle("NHWC", 3, 15)),
    _case("depth-to-space-onnx-dcr", [(1, 12, 7, 5)], depth_to_space_onnx(2, "DCR")),
    _case("depth-to-space-onnx-crd", [(1, 27, 5, 7)], depth_to_space_onnx(3, "CRD")),
    _case("depth-to-space-tflite", [(1, 7, 5, 20)], depth_to_space_tflite(2)),
    _case("space-to-depth-tflite", [(1, 14, 10, 3)], space_to_depth_tflite(2)),
]


# cases by the start of their id, one module (one build) per group
GROUPS = ["concat", "slice|split", "pad|reshape|flatten|squeeze", "broadcast|tile|permute",
          "channel-shuffle|depth-to-space|space-to-depth"]


@pytest.mark.parametrize("family", GROUPS)
def test_movement_matches_llvm_exactly(family):
    """Each case an independent subgraph of one module: every output bit for bit,
    every case one region, nothing on the host, and the compiler's estimate of
    every region what the emulator counted (copies and fills included)."""
    cases = [c for c in CASES if c.id.startswith(tuple(family.split("|")))]
    mod, inputs = _module(cases)
    run = run_sophon(mod, None, inputs)
    expected = run_llvm(mod, None, inputs)
    assert len(run.output) == len(expected) == sum(1 if c.between else 2 for c in cases)
    for got, want in zip(run.output, expected):
        np.testing.assert_array_equal(got, want)  # no arithmetic: bit for bit
    assert host_ops(run.partitioned) == [], tvm_sophon.offload_report(run.partitioned).format()
    assert len(sophon_regions(run.partitioned)) == len(cases)
    planned = tvm_sophon.PlanRegions()(run.partitioned)
    counted = {r["name"]: r for r in run.stats()["regions"]}
    for program in codegen.lower_functions(list(sophon_regions(planned).values())):
        est, got = cost.estimate(program), counted[program.symbol]
        assert (est.gdma_instructions, est.bytes_loaded, est.bytes_stored, est.gdma_cycles, est.cycles) == \
            (got["gdma_instructions"], got["bytes_loaded"], got["bytes_stored"], got["gdma_cycles"],
             got["cycles"]), program.symbol


def test_every_case_is_in_a_family():
    prefixes = tuple(p for group in GROUPS for p in group.split("|"))
    assert all(c.id.startswith(prefixes) for c in CASES)


def _built(id: str):
    """The module of case ``id`` alone."""
    return _module([next(c for c in CASES if c.id == id)])[0]


def _program(mod):
    partitioned = tvm_sophon.PlanRegions()(tvm_sophon.partition_for_sophon(mod))
    (program,) = codegen.lower_functions(list(sophon_regions(partitioned).values()))
    return program


def _kinds(program) -> list[str]:
    return [type(s).__name__ for s in program.steps if not isinstance(s, P.Timestep)]


def test_views_and_in_place_writes_move_nothing():
    """A slice, a transpose and a broadcast are views (the consumer's load reads
    them strided); the inputs of a concat are stored straight into their slices:
    not one DDR-to-DDR copy."""
    for id in ("concat-nchw-c3-c5-c17-h7", "concat-nested", "slice-nchw-h31-step2-w-step3",
               "slice-nhwc-negative-steps", "permute-nchw-to-nhwc", "broadcast-to-nchw", "split-indices-nhwc"):
        assert "Copy" not in _kinds(_program(_built(id))), id


def test_channel_shuffle_is_one_strided_copy():
    kinds = _kinds(_program(_built("channel-shuffle-nchw-g2")))
    assert kinds.count("Copy") == 1 and "Fill" not in kinds


def test_pad_in_front_of_a_conv_becomes_its_padding():
    x = _rand((1, 5, 7, 7), 1)
    w = _rand((3, 5, 3, 3), 2)

    def body(bb, v):
        y = bb.emit(relax.op.nn.pad(v["x"], [0, 0, 0, 0, 1, 2, 0, 1]))
        return relax.op.nn.conv2d(y, v["w"])

    mod = make_module({"x": x}, {"w": w}, body)
    run = run_sophon(mod, {"w": w}, {"x": x})
    # the same float32 conv on both sides, summed in another order: a few ulp
    np.testing.assert_allclose(run.output, run_llvm(mod, {"w": w}, {"x": x}), rtol=1e-5, atol=1e-5)
    report = tvm_sophon.offload_report(run.partitioned)
    assert report.offloaded == ["sophon.conv2d"] and not report.host_ops


def test_a_flatten_between_pool_and_dense_stays_in_local_memory():
    """The reshape between a global pool and a dense layer aliases the pool's local
    tensor: one layer group, no DDR round trip, no copy."""
    x = _rand((2, 17, 7, 7), 3)
    w = _rand((5, 17), 4)

    def body(bb, v):
        p = bb.emit(relax.op.nn.adaptive_avg_pool2d(bb.emit(relax.op.nn.relu(v["x"])), (1, 1)))
        return relax.op.matmul(bb.emit(relax.op.reshape(p, (2, 17))), relax.op.permute_dims(v["w"]))

    mod = make_module({"x": x}, {"w": w}, body)
    run = run_sophon(mod, {"w": w}, {"x": x})
    # float32 pool and dense, summed in another order on each side: a few ulp
    np.testing.assert_allclose(run.output, run_llvm(mod, {"w": w}, {"x": x}), rtol=1e-5, atol=1e-5)
    partitioned = tvm_sophon.PlanRegions()(tvm_sophon.partition_for_sophon(mod, {"w": w}))
    (program,) = codegen.lower_functions(list(sophon_regions(partitioned).values()))
    assert len(program.plan.groups) == 1
    assert [type(s).__name__ for s in program.steps if isinstance(s, (P.Store, P.Copy))] == ["Store"]


def test_movement_layers_are_not_sliced():
    mod = _built("concat-nchw-c3-c5-c17-h7")
    region = codegen.region_of(next(iter(sophon_regions(tvm_sophon.partition_for_sophon(mod)).values())))
    concat = next(l for l in region.layers if l.kind == "movement")
    assert not concat.rows_sliceable() and not concat.batch_sliceable()


# ------------------------------------------------------------------ whole blocks, one region


def _torch_blocks():
    import torch
    from torch import nn

    def conv_bn(cin, cout, k, groups=1, relu=True):
        layers = [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))

    class ShuffleUnit(nn.Module):
        """ShuffleNetV2's stride-1 unit: split the channels, convolve one half,
        concat, shuffle the two groups of channels."""

        def __init__(self, c=16, h=7):
            super().__init__()
            self.c, self.h = c, h
            half = c // 2
            self.branch = nn.Sequential(conv_bn(half, half, 1), conv_bn(half, half, 3, groups=half, relu=False),
                                        conv_bn(half, half, 1))

        def forward(self, x):
            c, h, half = self.c, self.h, self.c // 2
            y = torch.cat([x[:, :half], self.branch(x[:, half:])], 1)
            return y.view(-1, 2, half, h, h).transpose(1, 2).reshape(-1, c, h, h)

    class DenseBlock(nn.Module):
        """DenseNet's block: each layer (BN-ReLU-1x1 conv-BN-ReLU-3x3 conv) reads
        the concat of every feature map before it."""

        def __init__(self, c=8, growth=5, layers=3):
            super().__init__()
            self.layers = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(c + i * growth), nn.ReLU(),
                              nn.Conv2d(c + i * growth, 4 * growth, 1, bias=False),
                              nn.BatchNorm2d(4 * growth), nn.ReLU(),
                              nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))
                for i in range(layers))

        def forward(self, x):
            features = [x]
            for layer in self.layers:
                features.append(layer(torch.cat(features, 1)))
            return torch.cat(features, 1)

    class Fire(nn.Module):
        """SqueezeNet's fire module: squeeze 1x1, expand 1x1 and 3x3, concat."""

        def __init__(self, c=17, squeeze=6, expand=9):
            super().__init__()
            self.squeeze = nn.Sequential(nn.Conv2d(c, squeeze, 1), nn.ReLU())
            self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
            self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

        def forward(self, x):
            s = self.squeeze(x)
            return torch.cat([self.e1(s), self.e3(s)], 1)

    return {"shuffle_unit": (ShuffleUnit(), (1, 16, 7, 7)), "dense_block": (DenseBlock(), (1, 8, 7, 7)),
            "fire": (Fire(), (1, 17, 7, 7))}


# DDR-to-DDR copies each block needs: the shuffle unit copies its untouched half
# (a view of its input) into the concat and shuffles once; the dense block copies
# its input (a region argument) into the block's buffer, and every feature map
# is stored in place (each concat reuses the one before it); the fire module's
# two expand convs store straight into their halves of the concat
COPIES = {"shuffle_unit": 2, "dense_block": 1, "fire": 0}


@pytest.mark.parametrize("name", ["shuffle_unit", "dense_block", "fire"])
def test_block_is_one_region_with_nothing_on_the_host(name, tmp_path):
    import io

    import torch

    import frontend_models as fm
    from tvm_sophon.frontend import load

    torch.manual_seed(0)
    model, shape = _torch_blocks()[name]
    x = torch.randn(shape)
    model.train()
    model(torch.randn(4, *shape[1:]))   # BatchNorm statistics from one training-mode pass
    model.eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, input_names=["x"], dynamo=False)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(buffer.getvalue())
    partitioned = tvm_sophon.partition_for_sophon(load(path))
    report = tvm_sophon.offload_report(partitioned)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    assert "sophon.concat" in report.offloaded
    (program,) = codegen.lower_functions(list(sophon_regions(tvm_sophon.PlanRegions()(partitioned)).values()))
    assert _kinds(program).count("Copy") == COPIES[name]
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy())).numpy()
    (expected,) = fm.onnxruntime_run(buffer.getvalue(), {"x": x.numpy()})
    # float32 convs on both sides, summed in other orders: a few ulp of values O(1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_movement_between_host_ops_stays_on_the_host():
    """A reshape whose producer and consumer both run on the host would be a chip
    region that only moves data there and back: it stays, and the report says why."""
    from tvm_sophon.patterns.movement import HOST_REASON

    x = _rand((2, 6), 5)

    def body(bb, v):
        y = bb.emit(relax.op.cumsum(v["x"], axis=1))          # no sophon pattern
        y = bb.emit(relax.op.reshape(y, (3, 4)))
        return relax.op.cumsum(y, axis=0)

    mod = make_module({"x": x}, {}, body)
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod))
    assert not report.regions
    assert [(op.op, op.reason) for op in report.host_ops if op.op == "relax.reshape"] == \
        [("relax.reshape", HOST_REASON)]


def test_pad_with_an_infinite_value_stays_on_the_host():
    x = _rand((1, 3, 5, 5), 6)

    def body(bb, v):
        y = bb.emit(relax.op.nn.pad(bb.emit(relax.op.nn.relu(v["x"])), [0, 0, 0, 0, 1, 1, 1, 1],
                                    pad_value=float("-inf")))
        return relax.op.nn.relu(y)

    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(make_module({"x": x}, {}, body)))
    assert [(op.op, op.reason) for op in report.host_ops] == \
        [("relax.nn.pad", "pad value -inf (the GDMA fill takes a finite constant)")]
