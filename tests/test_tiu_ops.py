"""The compute instructions of issue 10 end to end (image.resize2d, ...): each
pattern's chip result against TVM's own llvm build of the same module, and a
check that the op really left the host. Shapes in the style of test_ops.py: odd
channel counts (3, 5, 17), H = W = 1, 7, 31, NCHW and NHWC, up and down.

Tolerances are stated per op family beside its test.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from tvm import relax

import tvm_sophon
from conftest import assert_close, host_ops, make_module, run_llvm, run_sophon, sophon_regions


def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype("float32")


def _rng(case_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def _check_offloaded(case_id, mod, params, inputs, composites, *, rtol, atol):
    result = run_sophon(mod, params, inputs)
    assert sophon_regions(result.partitioned), f"{case_id}: nothing was offloaded"
    assert not host_ops(result.partitioned), f"{case_id}: ops left on the host: {host_ops(result.partitioned)}"
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod, params))
    assert list(report.offloaded) == composites
    assert_close(result.output, run_llvm(mod, params, inputs), rtol=rtol, atol=atol, what=case_id)
    return result


# ------------------------------------------------------------------ resize2d

# (id, layout, c, (h, w) -> (oh, ow), method, coordinate mode, rounding ("" = TVM's default))
RESIZE_CASES = [
    ("nchw-c3-h7-nearest-2x-asymmetric", "NCHW", 3, (7, 7), (14, 14), "nearest_neighbor", "asymmetric", ""),
    ("nhwc-c17-h7-nearest-2x-asymmetric-floor", "NHWC", 17, (7, 7), (14, 14), "nearest_neighbor",
     "asymmetric", "floor"),
    ("nchw-c5-h31-nearest-down-half-pixel-prefer-floor", "NCHW", 5, (31, 31), (12, 9), "nearest_neighbor",
     "half_pixel", "round_prefer_floor"),
    ("nhwc-c5-h7-nearest-up-half-pixel-prefer-ceil", "NHWC", 5, (7, 7), (17, 10), "nearest_neighbor",
     "half_pixel", "round_prefer_ceil"),
    ("nchw-c3-h7-nearest-align-corners-round", "NCHW", 3, (7, 7), (10, 13), "nearest_neighbor",
     "align_corners", ""),
    ("nchw-c17-h7-nearest-tf-half-pixel-ceil", "NCHW", 17, (7, 7), (5, 11), "nearest_neighbor",
     "tf_half_pixel_for_nn", "ceil"),
    ("nhwc-c3-h1-nearest-up", "NHWC", 3, (1, 1), (7, 7), "nearest_neighbor", "asymmetric", ""),
    ("nchw-c3-h7-bilinear-2x-half-pixel", "NCHW", 3, (7, 7), (14, 14), "linear", "half_pixel", ""),
    ("nhwc-c17-h7-bilinear-up-align-corners", "NHWC", 17, (7, 7), (15, 12), "linear", "align_corners", ""),
    ("nchw-c5-h31-bilinear-down-half-pixel", "NCHW", 5, (31, 31), (7, 9), "linear", "half_pixel", ""),
    ("nhwc-c5-h31-bilinear-down-asymmetric", "NHWC", 5, (31, 31), (13, 7), "linear", "asymmetric", ""),
    ("nchw-c3-h7-bilinear-pytorch-half-pixel-to-1", "NCHW", 3, (7, 7), (1, 5), "linear",
     "pytorch_half_pixel", ""),
    ("nhwc-c17-h1-bilinear-up-half-pixel", "NHWC", 17, (1, 1), (7, 7), "linear", "half_pixel", ""),
    ("nchw-n2-c65-h31-bilinear-2x", "NCHW", 65, (31, 31), (62, 62), "linear", "half_pixel", ""),
]


def resize_module(case_id, layout, c, hw, ohw, method, coord, rounding):
    shape = (1, c, *hw) if layout == "NCHW" else (1, *hw, c)
    if case_id.startswith("nchw-n2"):
        shape = (2, *shape[1:])
    inputs = {"x": _rand(_rng(case_id), shape)}

    def body(bb, v):
        return relax.op.image.resize2d(v["x"], ohw, layout=layout, method=method,
                                       coordinate_transformation_mode=coord, rounding_method=rounding)

    return make_module(inputs, {}, body), {}, inputs


@pytest.mark.parametrize("case", RESIZE_CASES, ids=[c[0] for c in RESIZE_CASES])
def test_resize2d_matches_llvm(case):
    mod, params, inputs = resize_module(*case)
    # Nearest copies input values: exact. Bilinear computes the same f32 coordinates
    # and weights as TVM's topi in the same order (runtime/reference/sophon_tiu_resize.c),
    # so only LLVM's instruction selection can differ: a few ulp of values of magnitude ~4.
    tol = 0.0 if case[5] == "nearest_neighbor" else 1e-6
    _check_offloaded(case[0], mod, params, inputs, ["sophon.resize2d"], rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_resize_in_row_sliced_layer_groups(layout):
    """conv -> nearest 2x -> conv -> bilinear down on a chip with 4 KiB lanes: the
    planner slices groups holding the resizes by rows (each output band computed
    from the input band its coordinates reach), and the result equals the
    unsliced run bit for bit."""
    import tvm

    from tvm_sophon import codegen
    from tvm_sophon.codegen import program as P

    chip = tvm_sophon.get_chip("bm1680")
    tiny = chip.replace(name="bm1680-4k", lmem_bytes_per_lane=4096)
    rng = _rng("sliced-resize-" + layout)
    c = 5
    shape = (1, c, 23, 23) if layout == "NCHW" else (1, 23, 23, c)
    klayout = "OIHW" if layout == "NCHW" else "OHWI"
    wshape = (c, c, 3, 3) if layout == "NCHW" else (c, 3, 3, c)
    inputs = {"x": _rand(rng, shape)}
    params = {"w1": _rand(rng, wshape, 0.3), "w2": _rand(rng, wshape, 0.3)}

    def body(bb, v):
        conv = dict(padding=1, data_layout=layout, kernel_layout=klayout)
        y = bb.emit(relax.op.nn.conv2d(v["x"], v["w1"], **conv))
        y = bb.emit(relax.op.image.resize2d(y, (46, 46), layout=layout, method="nearest_neighbor",
                                            coordinate_transformation_mode="asymmetric", rounding_method=""))
        y = bb.emit(relax.op.nn.conv2d(y, v["w2"], **conv))
        return relax.op.image.resize2d(y, (33, 29), layout=layout, method="linear",
                                       coordinate_transformation_mode="half_pixel")

    mod = make_module(inputs, params, body)

    def run(target_chip):
        partitioned = tvm_sophon.partition_for_sophon(mod, params, chip=target_chip)
        ex = tvm_sophon.build(partitioned, chip=target_chip)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        out = vm["main"](*(tvm.runtime.tensor(v) for v in inputs.values())).numpy()
        planned = tvm_sophon.PlanRegions("layer_group_dp")(partitioned)
        regions = [f for f in planned.functions.values() if (f.attrs or {}).get("Codegen") == "sophon"]
        return out, codegen.lower_functions(regions), partitioned

    whole, _, _ = run(chip)
    sliced, programs, partitioned = run(tiny)
    assert not host_ops(partitioned)
    resize_groups = [g for p in programs for g, (first, end) in zip(p.plan.groups, p.group_steps)
                     if g.h_slices > 1 and any(isinstance(s, P.Resize) for s in p.steps[first:end])]
    assert resize_groups, [p.plan.to_json() for p in programs]
    np.testing.assert_array_equal(sliced, whole)
    # fp32 convs summed in another order than TVM's loops: a few ulp of the sums
    assert_close(sliced, run_llvm(mod, params, inputs), rtol=1e-5, atol=1e-5, what=layout)

