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
from tvm_sophon.normalize import HostTransposeConvLayout
from conftest import assert_close, host_ops, make_module, run_llvm, run_sophon, sophon_regions


def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype("float32")


def _rng(case_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def _check_offloaded(case_id, mod, params, inputs, composites, *, rtol, atol, reference_mod=None):
    result = run_sophon(mod, params, inputs)
    assert sophon_regions(result.partitioned), f"{case_id}: nothing was offloaded"
    assert not host_ops(result.partitioned), f"{case_id}: ops left on the host: {host_ops(result.partitioned)}"
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod, params))
    assert list(report.offloaded) == composites
    expected = run_llvm(reference_mod or mod, params, inputs)
    assert_close(result.output, expected, rtol=rtol, atol=atol, what=case_id)
    return result


# ------------------------------------------------------------------ resize2d

# (id, layout, c, (h, w) -> (oh, ow), method, coordinate mode, rounding ("" = TVM's default))
RESIZE_CASES = [
    ("nchw-c3-h7-nearest-2x-asymmetric", "NCHW", 3, (7, 7), (14, 14), "nearest_neighbor", "asymmetric", ""),
    ("nchw-c5-h31-nearest-down-half-pixel-prefer-floor", "NCHW", 5, (31, 31), (12, 9), "nearest_neighbor",
     "half_pixel", "round_prefer_floor"),
    ("nhwc-c5-h7-nearest-up-half-pixel-prefer-ceil", "NHWC", 5, (7, 7), (17, 10), "nearest_neighbor",
     "half_pixel", "round_prefer_ceil"),
    ("nchw-c3-h7-nearest-align-corners-round", "NCHW", 3, (7, 7), (10, 13), "nearest_neighbor",
     "align_corners", ""),
    ("nchw-c17-h7-nearest-tf-half-pixel-ceil", "NCHW", 17, (7, 7), (5, 11), "nearest_neighbor",
     "tf_half_pixel_for_nn", "ceil"),
    ("nhwc-c3-h1-nearest-up", "NHWC", 3, (1, 1), (7, 7), "nearest_neighbor", "asymmetric", ""),
    ("nhwc-c17-h7-bilinear-up-align-corners", "NHWC", 17, (7, 7), (15, 12), "linear", "align_corners", ""),
    ("nchw-c5-h31-bilinear-down-half-pixel", "NCHW", 5, (31, 31), (7, 9), "linear", "half_pixel", ""),
    ("nhwc-c5-h31-bilinear-down-asymmetric", "NHWC", 5, (31, 31), (13, 7), "linear", "asymmetric", ""),
    ("nchw-c3-h7-bilinear-pytorch-half-pixel-to-1", "NCHW", 3, (7, 7), (1, 5), "linear",
     "pytorch_half_pixel", ""),
    ("nhwc-c17-h1-bilinear-up-half-pixel", "NHWC", 17, (1, 1), (7, 7), "linear", "half_pixel", ""),
    ("nchw-c65-h7-bilinear-2x-across-lanes", "NCHW", 65, (7, 7), (14, 14), "linear", "half_pixel", ""),
]


def resize_module(case_id, layout, c, hw, ohw, method, coord, rounding):
    shape = (1, c, *hw) if layout == "NCHW" else (1, *hw, c)
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
def test_unet_block_is_one_region_and_slices_by_rows(layout):
    """A U-Net-style decoder block: conv -> conv2d_transpose 2x -> concat with the
    skip connection -> conv -> nearest 2x -> conv -> bilinear down. On the bm1680 it is one chip region with nothing on
    the host; on a chip with 4 KiB lanes the planner slices groups holding the
    transposed conv and the resizes by rows (each output band computed from the
    input band it reaches), and the result equals the unsliced run bit for bit."""
    import tvm

    from tvm_sophon import codegen

    chip = tvm_sophon.get_chip("bm1680")
    tiny = chip.replace(name="bm1680-4k", lmem_bytes_per_lane=4096)
    rng = _rng("unet-block-" + layout)
    c = 5
    shape = (1, c, 12, 12) if layout == "NCHW" else (1, 12, 12, c)
    klayout = "OIHW" if layout == "NCHW" else "OHWI"
    wshape = (c, c, 3, 3) if layout == "NCHW" else (c, 3, 3, c)
    skip_shape = (1, 3, 24, 24) if layout == "NCHW" else (1, 24, 24, 3)
    w2shape = (c, c + 3, 3, 3) if layout == "NCHW" else (c, 3, 3, c + 3)
    inputs = {"x": _rand(rng, shape), "skip": _rand(rng, skip_shape)}
    params = {"w1": _rand(rng, wshape, 0.3), "up": _rand(rng, (c, c, 2, 2), 0.3),
              "w2": _rand(rng, w2shape, 0.3), "w3": _rand(rng, wshape, 0.3)}

    def body(bb, v):
        conv = dict(padding=1, data_layout=layout, kernel_layout=klayout)
        y = bb.emit(relax.op.nn.conv2d(v["x"], v["w1"], **conv))
        y = bb.emit(relax.op.nn.conv2d_transpose(y, v["up"], strides=2, data_layout=layout, kernel_layout="IOHW"))
        y = bb.emit(relax.op.concat([y, v["skip"]], axis=layout.index("C")))
        y = bb.emit(relax.op.nn.conv2d(y, v["w2"], **conv))
        y = bb.emit(relax.op.image.resize2d(y, (48, 48), layout=layout, method="nearest_neighbor",
                                            coordinate_transformation_mode="asymmetric", rounding_method=""))
        y = bb.emit(relax.op.nn.conv2d(y, v["w3"], **conv))
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

    whole, _, partitioned = run(chip)
    assert len(sophon_regions(partitioned)) == 1 and not host_ops(partitioned)
    report = tvm_sophon.offload_report(partitioned)
    assert "sophon.conv2d_transpose" in report.offloaded and report.offloaded_mac_share == 1.0
    sliced, programs, _ = run(tiny)
    sliced_kinds = {type(s).__name__ for p in programs for g, (first, end) in zip(p.plan.groups, p.group_steps)
                    if g.h_slices > 1 for s in p.steps[first:end]}
    assert {"Resize", "Conv2dTranspose"} <= sliced_kinds, [p.plan.to_json() for p in programs]
    np.testing.assert_array_equal(sliced, whole)
    # fp32 convs summed in another order than TVM's loops: a few ulp of the sums
    expected = run_llvm(HostTransposeConvLayout()(mod), params, inputs)
    assert_close(sliced, expected, rtol=1e-5, atol=1e-5, what=layout)


# ------------------------------------------------------------------ conv2d_transpose

# (id, layout, kernel layout, in (h, w, c), out channels, kernel, stride, padding, output padding,
#  dilation, groups, bias, activation)
DECONV_CASES = [
    ("nchw-iohw-c3-h7-k2-s2", "NCHW", "IOHW", (7, 7, 3), 5, (2, 2), 2, 0, 0, 1, 1, False, None),
    ("nhwc-iohw-c5-h7-k3-s2-pad1-outpad1-bias-relu", "NHWC", "IOHW", (7, 7, 5), 17, (3, 3), 2, 1, 1, 1, 1,
     True, "relu"),
    ("nchw-iohw-c17-h1-k4-s2-pad1-bias", "NCHW", "IOHW", (1, 1, 17), 3, (4, 4), 2, 1, 0, 1, 1, True, None),
    ("nchw-iohw-c6-h7-k3-groups2-asympad", "NCHW", "IOHW", (7, 7, 6), 4, (3, 3), 1, (0, 1, 1, 2), 0, 1, 2,
     False, "clip"),
    ("nhwc-ohwi-c5-h31-k3-s2-dilation2", "NHWC", "OHWI", (31, 31, 5), 3, (3, 3), 2, 2, 1, 2, 1, True, None),
    ("nchw-oihw-c65-h5-k3-s1-pad1-bias", "NCHW", "OIHW", (5, 5, 65), 67, (3, 3), 1, 1, 0, 1, 1, True, None),
    ("nhwc-hwoi-depthwise-c17-k3-s2", "NHWC", "HWOI", (7, 7, 17), 17, (3, 3), 2, 1, 1, 1, 17, False, None),
]


def deconv_module(case_id, layout, klayout, hwc, oc, kernel, stride, padding, out_pad, dilation, groups, bias, act):
    rng = _rng(case_id)
    h, w, c = hwc
    x_shape = (1, c, h, w) if layout == "NCHW" else (1, h, w, c)
    dims = {"I": c, "O": oc // groups, "H": kernel[0], "W": kernel[1]}
    inputs = {"x": _rand(rng, x_shape)}
    params = {"w": _rand(rng, tuple(dims[d] for d in klayout), np.sqrt(1.0 / (c * kernel[0] * kernel[1])))}
    if bias:
        params["b"] = _rand(rng, (oc,))

    def body(bb, v):
        y = relax.op.nn.conv2d_transpose(v["x"], v["w"], strides=stride, padding=padding, output_padding=out_pad,
                                         dilation=dilation, groups=groups, data_layout=layout, kernel_layout=klayout)
        if bias:
            y = relax.op.add(bb.emit(y), bb.emit(relax.op.reshape(
                v["b"], (1, oc, 1, 1) if layout == "NCHW" else (1, 1, 1, oc))))
        if act == "relu":
            y = relax.op.nn.relu(bb.emit(y))
        elif act == "clip":
            y = relax.op.clip(bb.emit(y), 0.0, 6.0)
        return y

    name = "sophon.conv2d_transpose" + ("_bias" if bias else "") + (f"_{act}" if act else "")
    return make_module(inputs, params, body), params, inputs, name


@pytest.mark.parametrize("case", DECONV_CASES, ids=[c[0] for c in DECONV_CASES])
def test_conv2d_transpose_matches_llvm(case):
    mod, params, inputs, name = deconv_module(*case)
    # fp32 sums of at most 65 * 9 products, in another order than TVM's (which
    # runs a dilated, padded conv with the flipped kernel): a few ulp of the sums.
    # TVM builds conv2d_transpose only as NCHW / IOHW: its reference goes through
    # HostTransposeConvLayout (transposes around the op, exact).
    _check_offloaded(case[0], mod, params, inputs, [name], rtol=1e-5, atol=1e-5,
                     reference_mod=HostTransposeConvLayout()(mod))


def test_conv2d_transpose_host_fallback_builds_and_counts_macs():
    """A conv2d_transpose the chip rejects (NHWC in, NCHW out) stays on the host and
    still builds, through NCHW / IOHW (TVM 0.27 legalises no other layout, so its
    own llvm build of this module fails), and matches numpy; its MACs count in the
    offload report beside the chip's conv."""
    rng = _rng("deconv-host")
    inputs = {"x": _rand(rng, (1, 7, 7, 5))}
    params = {"w": _rand(rng, (5, 3, 3, 3), 0.3), "w2": _rand(rng, (4, 3, 3, 3), 0.3)}

    def body(bb, v):
        y = bb.emit(relax.op.nn.conv2d_transpose(v["x"], v["w"], strides=2, padding=1, output_padding=1,
                                                 data_layout="NHWC", kernel_layout="IOHW", out_layout="NCHW"))
        return relax.op.nn.conv2d(y, v["w2"], padding=1)

    mod = make_module(inputs, params, body)
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod, params))
    assert [op.op for op in report.host_ops] == ["relax.nn.conv2d_transpose"]
    # the op's MACs: every input element times (O / groups) x 3 x 3 filter taps
    assert report.host_macs == (7 * 7 * 5) * (3 * 3 * 3)
    assert report.offloaded_macs == 14 * 14 * 4 * 3 * 9
    assert report.offloaded_mac_share < 1.0

    result = run_sophon(mod, params, inputs)
    deconv = _numpy_deconv_nhwc_to_nchw(inputs["x"], params["w"])
    padded = np.pad(deconv, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = sum(np.einsum("nchw,oc->nohw", padded[:, :, ky:ky + 14, kx:kx + 14], params["w2"][:, :, ky, kx])
                   for ky in range(3) for kx in range(3))
    # fp32 sums of at most 5 * 4 + 3 * 9 products against a float64 numpy reference
    assert_close(result.output, expected, rtol=1e-5, atol=1e-5, what="host conv2d_transpose")


def _numpy_deconv_nhwc_to_nchw(x, w):
    """Scatter form (stride 2, padding 1, output padding 1, 3x3 IOHW kernel):
    out[oc, 2*iy - 1 + ky, 2*ix - 1 + kx] += x[iy, ix, ic] * w[ic, oc, ky, kx]."""
    _, h, wd, _ = x.shape
    out = np.zeros((1, w.shape[1], 2 * h + 2, 2 * wd + 2))
    for ky in range(3):
        for kx in range(3):
            out[0, :, ky:ky + 2 * h:2, kx:kx + 2 * wd:2] += np.einsum(
                "hwc,co->ohw", x[0].astype(np.float64), w[:, :, ky, kx].astype(np.float64))
    return out[:, :, 1:1 + 2 * h, 1:1 + 2 * wd]


# ------------------------------------------------------------------ reductions

# (id, input shape, op, axes, keepdims)
REDUCE_CASES = [
    ("sum-nchw-c17-h7-channels-keepdims", (1, 17, 7, 7), "sum", [1], True),
    ("mean-nhwc-c17-h7-last-axis", (1, 7, 7, 17), "mean", [-1], False),
    ("max-nhwc-c5-h31-spatial-keepdims", (1, 31, 31, 5), "max", [1, 2], True),
    ("min-nchw-c3-h7-all-axes", (2, 3, 7, 7), "min", None, False),
    ("sum-rank3-c5-middle-axis", (3, 5, 7), "sum", [1], False),
    ("mean-n2-c3-h1-batch-and-channels", (2, 3, 1, 5), "mean", [0, 1], True),
]


@pytest.mark.parametrize("case", REDUCE_CASES, ids=[c[0] for c in REDUCE_CASES])
def test_reduce_matches_llvm(case):
    case_id, shape, op, axes, keepdims = case
    inputs = {"x": _rand(_rng(case_id), shape)}

    def body(bb, v):
        return getattr(relax.op, op)(v["x"], axis=axes, keepdims=keepdims)

    mod = make_module(inputs, {}, body)
    # max and min pick an input: exact. sum and mean add at most 2 * 3 * 49 values of
    # magnitude ~1 in f32 in another order than TVM's loops: a few ulp of the sum.
    tol = 0.0 if op in ("max", "min") else 1e-5
    _check_offloaded(case_id, mod, {}, inputs, [f"sophon.reduce_{op}"], rtol=tol, atol=tol)


def test_reduce_over_non_adjacent_axes_stays_on_host_with_reason():
    inputs = {"x": _rand(_rng("reduce-host"), (1, 3, 5, 7))}
    mod = make_module(inputs, {}, lambda bb, v: relax.op.sum(v["x"], axis=[1, 3]))
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod))
    assert [op.op for op in report.host_ops] == ["relax.sum"]
    assert "non-adjacent axes [1, 3]" in report.host_ops[0].reason


# ------------------------------------------------------------------ normalisation

# (id, op, input shape, axes, channel axis)
NORM_CASES = [
    ("layer-norm-nhwc-c17-h7-channels", "layer_norm", (1, 7, 7, 17), [-1], None),
    ("layer-norm-nchw-c5-h7-chw", "layer_norm", (2, 5, 7, 7), [1, 2, 3], None),
    ("layer-norm-rank3-c3-h1", "layer_norm", (4, 1, 3), [2], None),
    ("instance-norm-nchw-c5-h31", "instance_norm", (1, 5, 31, 31), [2, 3], 1),
    ("instance-norm-nhwc-c17-h7", "instance_norm", (2, 7, 7, 17), [1, 2], 3),
    ("group-norm-per-channel-nchw-c3-h7", "group_norm", (1, 3, 7, 7), [2, 3], 1),
]


def norm_module(case_id, op, shape, axes, channel):
    rng = _rng(case_id)
    affine_shape = tuple(shape[a] for a in axes) if channel is None else (shape[channel],)
    inputs = {"x": _rand(rng, shape, 2.0) + 1.0}
    params = {"g": _rand(rng, affine_shape), "b": _rand(rng, affine_shape)}

    def body(bb, v):
        if op == "layer_norm":
            return relax.op.nn.layer_norm(v["x"], v["g"], v["b"], axes=axes, epsilon=1e-6)
        if op == "instance_norm":
            return relax.op.nn.instance_norm(v["x"], v["g"], v["b"], channel_axis=channel, axes=axes)
        return relax.op.nn.group_norm(v["x"], v["g"], v["b"], num_groups=shape[channel], channel_axis=channel,
                                      axes=axes)

    return make_module(inputs, params, body), params, inputs


@pytest.mark.parametrize("case", NORM_CASES, ids=[c[0] for c in NORM_CASES])
def test_norm_matches_llvm(case):
    mod, params, inputs = norm_module(*case)
    # f32 on both sides; TVM's layer_norm takes the variance as E[x^2] - mean^2 in
    # one pass, the chip in two passes (sophon_tiu_norm.c): the normalised values
    # (magnitude ~3 after gamma) differ by a few ulp of the squares' sum
    _check_offloaded(case[0], mod, params, inputs, [f"sophon.{case[1]}"], rtol=1e-4, atol=1e-5)


def test_group_norm_with_several_channels_per_group_stays_on_host_with_reason():
    inputs = {"x": _rand(_rng("gn-host"), (1, 6, 5, 5))}
    params = {"g": np.ones(6, "float32"), "b": np.zeros(6, "float32")}
    mod = make_module(inputs, params, lambda bb, v: relax.op.nn.group_norm(
        v["x"], v["g"], v["b"], num_groups=2, channel_axis=1, axes=[2, 3]))
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod, params))
    assert [op.op for op in report.host_ops] == ["relax.nn.group_norm"]
    assert "2 groups of 6 channels" in report.host_ops[0].reason


def test_convnext_block_is_one_chip_region():
    """A ConvNeXt block in NHWC: depthwise 7x7 -> layer_norm over channels -> 4x
    pointwise (matmul) -> GELU -> pointwise back -> residual add: one chip region
    with nothing on the host, matching TVM's build."""
    rng = _rng("convnext-block")
    c = 17
    inputs = {"x": _rand(rng, (1, 7, 7, c))}
    params = {"dw": _rand(rng, (7, 7, 1, c), 1 / 7), "dwb": _rand(rng, (c,), 0.1),
              "g": _rand(rng, (c,)) * 0.1 + 1, "b": _rand(rng, (c,), 0.1),
              "w1": _rand(rng, (c, 4 * c), c ** -0.5), "b1": _rand(rng, (4 * c,), 0.1),
              "w2": _rand(rng, (4 * c, c), (4 * c) ** -0.5), "b2": _rand(rng, (c,), 0.1)}

    def body(bb, v):
        y = bb.emit(relax.op.nn.conv2d(v["x"], v["dw"], padding=3, groups=c, data_layout="NHWC",
                                       kernel_layout="HWIO"))
        y = bb.emit(relax.op.add(y, v["dwb"]))
        y = bb.emit(relax.op.nn.layer_norm(y, v["g"], v["b"], axes=[-1], epsilon=1e-6))
        y = bb.emit(relax.op.add(bb.emit(relax.op.matmul(y, v["w1"])), v["b1"]))
        y = bb.emit(relax.op.nn.gelu(y))
        y = bb.emit(relax.op.add(bb.emit(relax.op.matmul(y, v["w2"])), v["b2"]))
        return relax.op.add(v["x"], y)

    mod = make_module(inputs, params, body)
    result = run_sophon(mod, params, inputs)
    assert len(sophon_regions(result.partitioned)) == 1 and not host_ops(result.partitioned)
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod, params))
    assert "sophon.layer_norm" in report.offloaded and report.offloaded_mac_share == 1.0
    # fp32 sums of at most 68 products and erf/expf in another order than TVM's: the
    # layer norm's two-pass variance vs TVM's one pass adds a few ulp (see test_norm)
    assert_close(result.output, run_llvm(mod, params, inputs), rtol=1e-4, atol=1e-5, what="convnext block")


# ------------------------------------------------------------------ LRN


def _onnx_lrn_module(shape, size, alpha, beta, bias):
    import onnx
    from onnx import TensorProto, helper
    from tvm.relax.frontend.onnx import from_onnx

    from tvm_sophon.normalize import normalize

    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=bias)
    graph = helper.make_graph([node], "lrn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model, normalize(from_onnx(model))


@pytest.mark.parametrize("shape,size", [((1, 17, 7, 7), 5), ((2, 3, 1, 1), 3), ((1, 70, 5, 5), 5)],
                         ids=["c17-h7-size5", "n2-c3-h1-size3", "c70-across-lanes-size5"])
def test_onnx_lrn_is_one_chip_instruction(shape, size):
    """TVM imports ONNX LRN as an eight-op chain around avg_pool3d; the chip runs the
    chain as one tiu_lrn, matching TVM's build and onnxruntime."""
    import onnxruntime as ort

    model, mod = _onnx_lrn_module(shape, size, alpha=1e-2, beta=0.75, bias=2.0)
    inputs = {"x": _rand(_rng(f"lrn-{shape}"), shape, 3.0)}
    # f32 power and a window sum of at most 5 squares in another order: a few ulp
    result = _check_offloaded(f"lrn-{shape}", mod, None, inputs, ["sophon.lrn"], rtol=1e-5, atol=1e-6)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert_close(result.output, session.run(None, inputs)[0], rtol=1e-5, atol=1e-6, what="onnxruntime")


def _torch_lrn_onnx(shape, size, alpha, beta, bias):
    """LRN as torch.onnx.export(dynamo=True) writes F.local_response_norm (no LRN
    node): Unsqueeze, Pad of the channels (size // 2 before, (size - 1) // 2
    after), AveragePool 3-D (size, 1, 1), Squeeze, Mul, Add, Pow, Div."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value, dtype="float32"):
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    pads = [0, 0, size // 2, 0, 0, 0, 0, (size - 1) // 2, 0, 0]
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("Unsqueeze", ["sq", "one"], ["sq5"]),
        helper.make_node("Pad", ["sq5", "pads"], ["padded"]),
        helper.make_node("AveragePool", ["padded"], ["avg5"], kernel_shape=[size, 1, 1], strides=[1, 1, 1],
                         count_include_pad=1),
        helper.make_node("Squeeze", ["avg5", "one"], ["avg"]),
        helper.make_node("Mul", ["avg", "alpha"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["shifted"]),
        helper.make_node("Pow", ["shifted", "beta"], ["den"]),
        helper.make_node("Div", ["x", "den"], ["y"]),
    ]
    inits = [const("one", [1], "int64"), const("pads", pads, "int64"), const("alpha", alpha),
             const("bias", bias), const("beta", beta)]
    graph = helper.make_graph(nodes, "torch_lrn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("shape,size", [((1, 13, 5, 3), 5), ((2, 3, 1, 1), 3), ((1, 9, 3, 3), 4)],
                         ids=["c13-size5", "n2-c3-h1-size3", "size4-asymmetric"])
def test_torch_exported_lrn_is_the_chip_lrn(tmp_path, shape, size):
    """GoogLeNet's LRN through PyTorch's ONNX exporter: TVM lowers its Pad to TIR,
    normalize.FoldPadIntoPool3d makes it the pool's padding and sophon.lrn takes
    the chain. An even size pads asymmetrically, which the chip's LRN window is
    not: that pool stays on the host and the result is still onnxruntime's."""
    import onnxruntime as ort

    from tvm_sophon import frontend

    model = _torch_lrn_onnx(shape, size, alpha=1e-2, beta=0.75, bias=2.0)
    path = tmp_path / "lrn.onnx"
    path.write_bytes(model.SerializeToString())
    mod = frontend.load(path)
    inputs = {"x": _rand(_rng(f"torch-lrn-{shape}"), shape, 3.0)}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, inputs)[0]
    if size % 2:
        # f32 power and a window sum of at most 5 squares in another order: a few ulp
        result = _check_offloaded(f"torch-lrn-{shape}", mod, None, inputs, ["sophon.lrn"], rtol=1e-5, atol=1e-6)
    else:
        result = run_sophon(mod, None, inputs)
        assert "relax.nn.avg_pool3d" in host_ops(result.partitioned)
    assert_close(result.output, expected, rtol=1e-5, atol=1e-6, what="onnxruntime")


def test_tflite_unet_decoder_runs_transpose_conv_and_bilinear_resize_on_the_chip(tmp_path):
    """Keras -> TFLite: TRANSPOSE_CONV arrives as an NHWC / IOHW conv2d_transpose (which
    TVM alone cannot build) and a bilinear UpSampling2D as resize2d; both run on the
    chip, and the model matches TFLite's interpreter. (Keras writes a nearest
    UpSampling2D as reshape + tile, data movement outside this test's ops.)"""
    import contextlib
    import io

    import tensorflow as tf
    import tvm

    from frontend_models import tflite_reference
    from tvm_sophon import frontend

    tf.keras.utils.set_random_seed(0)
    image = tf.keras.Input((9, 9, 5), batch_size=1, name="image")
    y = tf.keras.layers.Conv2D(6, 3, padding="same", activation="relu")(image)
    y = tf.keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(y)
    y = tf.keras.layers.UpSampling2D(2, interpolation="bilinear")(y)
    y = tf.keras.layers.Conv2D(3, 3, padding="same")(y)
    with contextlib.redirect_stdout(io.StringIO()):
        data = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(image, y)).convert()
    path = tmp_path / "decoder.tflite"
    path.write_bytes(data)

    partitioned = tvm_sophon.partition_for_sophon(frontend.load_tflite(path))
    report = tvm_sophon.offload_report(partitioned)
    assert {"sophon.conv2d_transpose", "sophon.resize2d"} <= {n.split("_bias")[0] for n in report.offloaded}
    assert not report.host_ops and report.offloaded_mac_share == 1.0
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
    x = _rand(_rng("tflite-decoder"), (1, 9, 9, 5))
    # fp32 on both sides, sums of at most 6 * 9 products in another order: a few ulp
    assert_close(vm["main"](tvm.runtime.tensor(x)).numpy(), tflite_reference(data, x), rtol=1e-5, atol=1e-5,
                 what="tflite decoder")
