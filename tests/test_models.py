"""Whole models on the emulated chip against TVM's llvm build, the chip counters
of the run, and models that do not fit the chip's local memory."""
from __future__ import annotations

import re

import numpy as np
import pytest
from tvm import relax

import tvm_sophon
from tvm_sophon import models
from conftest import assert_close, count_macs, run_llvm, run_sophon, sophon_regions

# Many layers of float32 arithmetic whose summation order differs between TVM's
# llvm loops and the emulator's kernels: the rounding differences accumulate.
RTOL = 1e-4
ATOL = 1e-6   # for softmax probabilities close to 0

MODEL_CASES = [
    pytest.param(lambda: models.demo_cnn("NCHW"), id="demo_cnn-NCHW"),
    pytest.param(lambda: models.demo_cnn("NHWC"), id="demo_cnn-NHWC"),
    pytest.param(models.mlp, id="mlp"),
    pytest.param(lambda: models.resnet_tiny("NCHW"), id="resnet_tiny-NCHW"),
    pytest.param(lambda: models.resnet_tiny("NHWC"), id="resnet_tiny-NHWC"),
]


@pytest.mark.parametrize("make", MODEL_CASES)
def test_model_matches_llvm_and_counts_its_macs(make):
    mod, params, inputs = make()
    result = run_sophon(mod, params, inputs)
    expected = run_llvm(mod, params, inputs)
    assert_close(result.output, expected, rtol=RTOL, atol=ATOL, what="model output")
    np.testing.assert_allclose(result.output.sum(), 1.0, rtol=1e-5)  # a softmax came out

    stats = result.stats()
    regions = stats["regions"]
    assert regions, "no chip region ran"
    for region in regions:
        assert region["calls"] == 1, region["name"]
        for key in ("bytes_loaded", "bytes_stored", "tiu_cycles", "gdma_cycles"):
            assert region[key] > 0, (region["name"], key, region[key])
    # every conv and dense of these models is offloaded, so the chip did all their MACs
    assert sum(r["macs"] for r in regions) == count_macs(mod)


def test_demo_cnn_macs_by_hand():
    """The MAC count the model tests compare against, spelled out for the demo CNN."""
    mod, _, _ = models.demo_cnn("NCHW")
    conv1 = 32 * 32 * 16 * 3 * 3 * 3        # 3 -> 16, 3x3, 32x32 output
    dwconv = 32 * 32 * 16 * 1 * 3 * 3       # depthwise, 16 channels
    res = 2 * 16 * 16 * 16 * 16 * 3 * 3     # two 16 -> 16 3x3 convs at 16x16
    fc = 16 * 10
    assert count_macs(mod) == conv1 + dwconv + res + fc == 1769632
    assert count_macs(models.demo_cnn("NHWC")[0]) == 1769632


@pytest.mark.parametrize("name, published_gmacs", [
    ("resnet18", 1.814), ("resnet50", 4.089), ("mobilenet_v2", 0.301)])
def test_benchmark_networks_have_their_published_size(name, published_gmacs):
    """The benchmark networks are the real architectures: multiply-accumulates per
    224x224 image within 1% of the published figures (torchvision's model docs)."""
    mod, _, _ = models.MODELS[name]()
    assert count_macs(mod) / 1e9 == pytest.approx(published_gmacs, rel=0.01)


def test_bundled_models_registry():
    assert set(models.MODELS) == {"demo_cnn", "mlp", "resnet_tiny", "resnet18", "resnet50", "mobilenet_v2",
                                  "yolov5s"}
    for name, builder in models.MODELS.items():
        assert builder.__doc__, name
        mod, params, inputs = builder()
        names = [p.name for p in mod["main"].params]
        assert names == list(inputs) + list(params), name
        assert all(a.dtype == np.float32 for a in [*params.values(), *inputs.values()])


def test_models_are_seeded_and_layouts_agree():
    a = models.demo_cnn("NCHW")
    b = models.demo_cnn("NCHW")
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key])
    np.testing.assert_array_equal(a[2]["data"], b[2]["data"])
    # the NHWC model holds the same numbers, transposed: same outputs
    nhwc = models.demo_cnn("NHWC")
    np.testing.assert_allclose(run_llvm(*a), run_llvm(*nhwc), rtol=1e-5, atol=1e-6)


SMALL_CHIP_CASES = [
    pytest.param(lambda: models.demo_cnn("NCHW"), id="demo_cnn-NCHW"),
    pytest.param(lambda: models.resnet_tiny("NCHW"), id="resnet_tiny-NCHW"),
    pytest.param(lambda: models.resnet_tiny("NHWC"), id="resnet_tiny-NHWC"),
    pytest.param(models.mlp, id="mlp"),
]


@pytest.mark.parametrize("lmem_bytes_per_lane", [4096, 8192])
@pytest.mark.parametrize("make", SMALL_CHIP_CASES)
def test_model_on_a_smaller_chip_still_matches_llvm(make, lmem_bytes_per_lane):
    """A chip variant with 4 or 8 KiB per lane: the 32x32 activations (4 KiB per lane
    each) no longer fit whole, so regions are split into smaller pieces; the result
    must not change. (MACs may exceed the model's: overlapping rows are recomputed.)"""
    mod, params, inputs = make()
    chip = tvm_sophon.get_chip("bm1680").replace(lmem_bytes_per_lane=lmem_bytes_per_lane)
    result = run_sophon(mod, params, inputs, chip=chip)
    assert_close(result.output, run_llvm(mod, params, inputs), rtol=RTOL, atol=ATOL, what="model output")
    assert sum(r["macs"] for r in result.stats()["regions"]) >= count_macs(mod)


# ------------------------------------------------------------------ local memory


def _single_conv(shape, cout=None, kernel=3, padding=1):
    """A one-conv module; only built, never run (the weight is the only array)."""
    cin = shape[1]
    cout = cout or cin
    bb = relax.BlockBuilder()
    x = relax.Var("data", relax.TensorType(list(shape), "float32"))
    w = relax.Var("conv_weight", relax.TensorType([cout, cin, kernel, kernel], "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.nn.conv2d(x, w, padding=padding))
        bb.emit_func_output(y)
    params = {"conv_weight": np.zeros((cout, cin, kernel, kernel), "float32")}
    return bb.get(), params


def _shape_pattern(shape) -> str:
    """The shape as "(1, 64, 512, 512)", "[1, 64, 512, 512]" or "1x64x512x512"."""
    return "|".join([re.escape(", ".join(map(str, shape))), re.escape("x".join(map(str, shape)))])


def test_activation_larger_than_local_memory_is_tiled_to_fit():
    # 64 channels -> one per lane; each lane would hold 512 x 512 floats = 1 MiB > 512 KiB,
    # so the plan must cut the rows into bands (planned and scheduled here, not run:
    # the conv is 9.7 GMACs)
    from tvm_sophon import codegen

    shape = (1, 64, 512, 512)
    mod, params = _single_conv(shape)
    planned = tvm_sophon.PlanRegions()(tvm_sophon.partition_for_sophon(mod, params))
    (program,) = codegen.lower_functions(list(sophon_regions(planned).values()))
    assert max(g.h_slices for g in program.plan.groups) > 1
    assert program.lmem_peak_bytes <= tvm_sophon.get_chip("bm1680").lmem_bytes_per_lane


def test_unsliceable_row_larger_than_local_memory_is_a_compile_error():
    # N = H = 1, so no batch or row slicing can help: one lane's single row is
    # 140000 floats = 560000 bytes > 524288
    shape = (1, 64, 1, 140000)
    mod, params = _single_conv(shape, kernel=1, padding=0)
    with pytest.raises(tvm_sophon.SophonCompileError, match=_shape_pattern(shape)):
        tvm_sophon.build(mod, params)


def test_small_chip_variant_rejects_a_model_that_fits_the_default():
    mod, params, inputs = models.demo_cnn("NCHW")
    # the default chip runs it (test_model_matches_llvm_and_counts_its_macs); a chip
    # with 256 bytes per lane cannot even hold one 32-float row of a 3x3 conv window
    tiny = tvm_sophon.get_chip("bm1680").replace(lmem_bytes_per_lane=256)
    with pytest.raises(tvm_sophon.SophonCompileError):
        tvm_sophon.build(mod, params, chip=tiny)
    # and the default still builds the same model
    tvm_sophon.build(mod, params)
