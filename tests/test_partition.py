"""Partition decisions: what is offloaded, what stays on the host, and why."""
import json
import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R
from tvm.script import tirx as T

import tvm_sophon
from tvm_sophon import offload_report, partition_for_sophon, patterns


def _regions(mod):
    return {g.name_hint: f for g, f in mod.functions.items()
            if isinstance(f, relax.Function) and (f.attrs or {}).get("Codegen") == "sophon"}


def _host_ops(mod):
    ops = []

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            ops.append(expr.op.name)

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return ops


@tvm.script.ir_module
class SortInTheMiddle:
    @R.function
    def main(x: R.Tensor((1, 3, 8, 8), "float32"), w: R.Tensor((8, 3, 3, 3), "float32"),
             b: R.Tensor((1, 8, 1, 1), "float32"), w2: R.Tensor((8, 8, 1, 1), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, padding=1)
            y1 = R.add(y, b)
            y2 = R.nn.relu(y1)
            p = R.nn.max_pool2d(y2, pool_size=(2, 2), strides=(2, 2))
            s = R.sort(p, axis=-1)
            z = R.nn.conv2d(s, w2)
            z1 = R.nn.relu(z)
            R.output(z1)
        return z1


def test_sort_splits_the_graph_and_stays_on_host():
    mod = partition_for_sophon(SortInTheMiddle)
    regions = _regions(mod)
    assert len(regions) == 2, list(regions)
    report = offload_report(mod)
    assert [r.composites for r in report.regions] == [
        ["sophon.conv2d_bias_relu", "sophon.max_pool2d"], ["sophon.conv2d_relu"]]
    assert [op.op for op in report.host_ops] == ["relax.sort"]
    assert report.host_ops[0].reason == "no sophon pattern covers relax.sort"
    # main keeps only the sort as a real op; the rest are calls to regions
    assert _host_ops(mod) == ["relax.sort"]
    assert report.offloaded_mac_share == 1.0


def test_adjacent_composites_merge_into_one_region():
    mod = partition_for_sophon(SortInTheMiddle)
    first = [f for f in _regions(mod).values() if "max_pool2d" in str(f)]
    assert len(first) == 1


def test_regions_carry_the_chip_profile():
    chip = tvm_sophon.get_chip("bm1680").replace(lmem_bytes_per_lane=65536)
    mod = partition_for_sophon(SortInTheMiddle, chip=chip)
    for func in _regions(mod).values():
        assert '"lmem_bytes_per_lane": 65536' in str(func.attrs["sophon.chip"])


@tvm.script.ir_module
class Int8Conv:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "int8"), w: R.Tensor((4, 4, 3, 3), "int8")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, out_dtype="int32")
            R.output(y)
        return y


def test_int8_conv_stays_on_host_with_reason():
    mod = partition_for_sophon(Int8Conv)
    assert not _regions(mod)
    report = offload_report(mod)
    assert len(report.host_ops) == 1
    assert "int8" in report.host_ops[0].reason and "float32" in report.host_ops[0].reason


@tvm.script.ir_module
class NotABias:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32"), w: R.Tensor((4, 4, 1, 1), "float32"),
             r: R.Tensor((1, 4, 8, 8), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w)
            z = R.add(y, r)
            R.output(z)
        return z


def test_residual_add_is_not_taken_for_a_bias():
    """add(conv, full tensor) is a residual add: conv2d and add composites, one region."""
    mod = partition_for_sophon(NotABias)
    report = offload_report(mod)
    assert report.offloaded == ["sophon.conv2d", "sophon.add"]
    assert not report.host_ops


@tvm.script.ir_module
class DynamicBatch:
    @R.function
    def main(x: R.Tensor(("n", 16), "float32"), w: R.Tensor((16, 4), "float32")):
        with R.dataflow():
            y = R.matmul(x, w)
            R.output(y)
        return y


def test_dynamic_shape_stays_on_host_with_reason():
    report = offload_report(partition_for_sophon(DynamicBatch))
    assert not report.regions
    assert "dynamic shape" in report.host_ops[0].reason


def test_report_requires_a_partitioned_module():
    with pytest.raises(ValueError, match="not partitioned"):
        offload_report(SortInTheMiddle)


def test_unknown_chip_is_a_clear_error():
    with pytest.raises(tvm_sophon.SophonError, match="unknown chip profile 'bm9999'"):
        partition_for_sophon(SortInTheMiddle, chip="bm9999")


@tvm.script.ir_module
class BiasFirst:
    @R.function
    def main(x: R.Tensor((1, 16), "float32"), w: R.Tensor((16, 8), "float32"), b: R.Tensor((8,), "float32"),
             xc: R.Tensor((1, 3, 6, 6), "float32"), wc: R.Tensor((4, 3, 3, 3), "float32"),
             bc: R.Tensor((1, 4, 1, 1), "float32")):
        with R.dataflow():
            y = R.add(b, R.matmul(x, w))
            z = R.add(bc, R.nn.conv2d(xc, wc))
            R.output(y, z)
        return (y, z)


def test_bias_added_on_the_left_is_still_the_bias():
    """add(bias, matmul) matches the bias pattern like add(matmul, bias)."""
    rng = np.random.default_rng(5)
    params = {"w": rng.standard_normal((16, 8)).astype("float32"), "b": rng.standard_normal(8).astype("float32"),
              "wc": rng.standard_normal((4, 3, 3, 3)).astype("float32"),
              "bc": rng.standard_normal((1, 4, 1, 1)).astype("float32")}
    x, xc = rng.standard_normal((1, 16)).astype("float32"), rng.standard_normal((1, 3, 6, 6)).astype("float32")
    mod = partition_for_sophon(BiasFirst, params)
    assert sorted(offload_report(mod).offloaded) == ["sophon.conv2d_bias", "sophon.matmul_bias"]
    vm = relax.VirtualMachine(tvm_sophon.build(mod), tvm.cpu())
    y, z = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(xc))
    np.testing.assert_allclose(y.numpy(), params["b"] + x @ params["w"], rtol=1e-5, atol=1e-5)
    bound = relax.transform.BindParams("main", {k: tvm.runtime.tensor(v) for k, v in params.items()})(BiasFirst)
    ref = relax.VirtualMachine(tvm.compile(bound, "llvm"), tvm.cpu())["main"](tvm.runtime.tensor(x),
                                                                              tvm.runtime.tensor(xc))
    np.testing.assert_allclose(z.numpy(), ref[1].numpy(), rtol=1e-5, atol=1e-5)


@tvm.script.ir_module
class HostMacs:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32"), w: R.Tensor((6, 4, 3, 3), "float32"),
             v: R.Tensor((1, 2, 4, 5, 5), "float32"), w3: R.Tensor((3, 2, 2, 3, 3), "float32"),
             a: R.Tensor((2, 5, 7), "float32"), b: R.Tensor((2, 7, 3), "float32"),
             t: R.Tensor((1, 4, 5, 5), "float32"), wt: R.Tensor((4, 3, 3, 3), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w)
            z = R.nn.conv3d(v, w3)
            m = R.matmul(a, b)
            u = R.nn.conv2d_transpose(t, wt, strides=2)
            R.output(y, z, m, u)
        return (y, z, m, u)


def test_mac_share_counts_every_multiply_accumulate_on_the_host():
    """conv3d (rank 5), batch matmul (3-D weight) stay on the host; their MACs,
    computed here from the shapes, count against the share; so does a transposed
    conv's if it stays on the host."""
    report = offload_report(partition_for_sophon(HostMacs))
    conv2d = 1 * 6 * 6 * 6 * (4 * 3 * 3)
    conv3d = 1 * 3 * (3 * 3 * 3) * (2 * 2 * 3 * 3)
    bmm = 2 * 5 * 3 * 7
    deconv = (1 * 4 * 5 * 5) * (3 * 3 * 3)   # every input pixel x (out channels x kernel)
    host = {op.op: op for op in report.host_ops}
    assert host["relax.nn.conv3d"].macs == conv3d
    assert host["relax.matmul"].macs == bmm
    assert "rank 3" in host["relax.matmul"].reason  # the dense rule's own reason
    on_host = conv3d + bmm + (deconv if "relax.nn.conv2d_transpose" in host else 0)
    assert report.host_macs == on_host
    assert report.offloaded_mac_share == pytest.approx((conv2d + deconv + bmm + conv3d - on_host)
                                                       / (conv2d + deconv + bmm + conv3d))
    assert report.offloaded_mac_share < 1.0


@tvm.script.ir_module
class RejectedConvWithBias:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32"), w: R.Tensor((6, 4, 3, 3), "float32"),
             b: R.Tensor((6,), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, out_layout="NHWC")
            bb = R.reshape(b, (1, 1, 1, 6))
            z = R.add(y, bb)
            R.output(z)
        return z


def test_host_reason_is_the_ops_own():
    """The conv's pattern is rejected for its out layout; the reshape of its bias,
    matched only inside the rejected conv+bias pattern, does not borrow that reason."""
    report = offload_report(partition_for_sophon(RejectedConvWithBias))
    host = {op.op: op.reason for op in report.host_ops}
    assert "out layout NHWC" in host["relax.nn.conv2d"]
    for op, reason in host.items():
        if op != "relax.nn.conv2d":
            assert "out layout" not in reason, (op, reason)


@tvm.script.ir_module
class DynamicConvWithReshapedBias:
    @R.function
    def main(x: R.Tensor(("n", 3, 8, 8), "float32"), w: R.Tensor((8, 3, 3, 3), "float32"),
             b: R.Tensor((8,), "float32")):
        n = T.int64()
        with R.dataflow():
            y = R.nn.conv2d(x, w, padding=1)
            b4 = R.reshape(b, R.shape([1, 8, 1, 1]))
            z = R.add(y, b4)
            R.output(z)
        return z


def test_host_ops_give_their_own_reason():
    """A host op's reason is about that op: the bias reshape does not borrow the
    conv pattern's "dynamic shape" (an INT8 pool check once said "input is
    float32" of a float reshape)."""
    report = offload_report(partition_for_sophon(DynamicConvWithReshapedBias))
    reasons = {op.op: op.reason for op in report.host_ops}
    assert "dynamic shape" in reasons["relax.nn.conv2d"]
    # the reshape's own reason: movement next to host ops stays with them
    assert reasons["relax.reshape"] == patterns.movement.HOST_REASON, reasons


def test_regions_have_short_stable_names():
    """Regions are sophon_0, sophon_1, ... in call order (not TVM's fused op lists),
    with their op lists in the report."""
    part = partition_for_sophon(SortInTheMiddle)
    assert sorted(_regions(part)) == ["sophon_0", "sophon_1"]
    report = offload_report(part)
    assert [r.symbol for r in report.regions] == ["sophon_0", "sophon_1"]
    assert report.regions[0].composites == ["sophon.conv2d_relu", "sophon.max_pool2d"] or \
        report.regions[0].composites[0].startswith("sophon.conv2d")
    assert all(len(line) < 200 for line in report.format().splitlines())


@tvm.script.ir_module
class TwoInt8ConvsSortedBetween:
    """Two int8 convs of one shape with their own output scales, a host op
    between them: their regions are structurally equal, their constants not."""
    @R.function
    def main(x: R.Tensor((1, 6, 6, 4), "int8"), w: R.Tensor((3, 3, 4, 4), "int8")):
        with R.dataflow():
            a = R.dequantize(x, R.const(0.05, "float32"), R.const(3, "int32"))
            wa = R.dequantize(w, R.const(0.01, "float32"), R.const(0, "int32"))
            ya = R.nn.conv2d(a, wa, padding=1, data_layout="NHWC", kernel_layout="HWIO")
            qa = R.quantize(ya, R.const(0.2, "float32"), R.const(-5, "int32"), out_dtype="int8")
            fa = R.dequantize(qa, R.const(0.2, "float32"), R.const(-5, "int32"))
            s = R.quantize(R.sort(fa, axis=-1), R.const(0.2, "float32"), R.const(-5, "int32"), out_dtype="int8")
            b = R.dequantize(s, R.const(0.2, "float32"), R.const(-5, "int32"))
            wb = R.dequantize(w, R.const(0.01, "float32"), R.const(0, "int32"))
            yb = R.nn.conv2d(b, wb, padding=1, data_layout="NHWC", kernel_layout="HWIO")
            qb = R.quantize(yb, R.const(0.7, "float32"), R.const(9, "int32"), out_dtype="int8")
            R.output(qb)
        return qb


def test_each_region_call_compiles_its_own_constants():
    """Issue #11: structurally equal int8 regions were one function whose
    compiled-in scales were one call's; each call now has its own."""
    w = np.random.default_rng(0).integers(-127, 128, (3, 3, 4, 4), dtype=np.int8)
    mod = partition_for_sophon(TwoInt8ConvsSortedBetween, {"w": w}, chip="bm1684")
    calls = [b.value for block in mod["main"].body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call) and isinstance(b.value.op, relax.GlobalVar)
             and b.value.op.name_hint in _regions(mod)]
    assert len(calls) == 2 and not calls[0].op.same_as(calls[1].op)
    out_scales = []
    for call in calls:
        consts = json.loads(str(mod[call.op].attrs["sophon.const_args"]))
        recorded = {tuple(c["values"]) for c in consts.values()}
        passed = {tuple(np.atleast_1d(a.value.numpy()).tolist()) for a in call.args
                  if isinstance(a, tvm.ir.expr.Constant) and a.value.numpy().size == 1}
        assert passed <= recorded, (passed, recorded)   # the call's own scales, not the other's
        out_scales.append(passed)
    assert out_scales[0] != out_scales[1]
    # the chip's answer is the llvm build's, region by region (both compute the
    # same int8 conv; llvm in float emulation, so within 1 LSB of rounding)
    ex = tvm_sophon.build(mod, chip="bm1684")
    x = np.random.default_rng(1).integers(-128, 128, (1, 6, 6, 4), dtype=np.int8)
    chip = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    llvm_ex = tvm.compile(TwoInt8ConvsSortedBetween, target="llvm")
    want = relax.VirtualMachine(llvm_ex, tvm.cpu())["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
    assert np.abs(chip.astype(int) - want.astype(int)).max() <= 1


@tvm.script.ir_module
class OneDequantizeTwoInt8Convs:
    """One dequantize read by two int8 convs (what a rewrite merging equal
    expressions leaves of the importer's two), then an int8 add of the two."""
    @R.function
    def main(x: R.Tensor((1, 5, 5, 4), "int8"), w: R.Tensor((1, 1, 4, 4), "int8"),
             v: R.Tensor((1, 1, 4, 4), "int8")):
        with R.dataflow():
            d = R.dequantize(x, R.const(0.05, "float32"), R.const(3, "int32"))
            wd = R.dequantize(w, R.const(0.01, "float32"), R.const(0, "int32"))
            vd = R.dequantize(v, R.const(0.01, "float32"), R.const(0, "int32"))
            a = R.quantize(R.nn.conv2d(d, wd, data_layout="NHWC", kernel_layout="HWIO"),
                           R.const(0.02, "float32"), R.const(-5, "int32"), out_dtype="int8")
            b = R.quantize(R.nn.conv2d(d, vd, data_layout="NHWC", kernel_layout="HWIO"),
                           R.const(0.03, "float32"), R.const(2, "int32"), out_dtype="int8")
            s = R.add(R.dequantize(a, R.const(0.02, "float32"), R.const(-5, "int32")),
                      R.dequantize(b, R.const(0.03, "float32"), R.const(2, "int32")))
            out = R.quantize(R.nn.relu(s), R.const(0.04, "float32"), R.const(-128, "int32"), out_dtype="int8")
            R.output(out)
        return out


def test_int8_layers_sharing_a_dequantize_are_one_region():
    w, v = np.random.default_rng(0).integers(-127, 128, (2, 1, 1, 4, 4), dtype=np.int8)
    mod = partition_for_sophon(OneDequantizeTwoInt8Convs, {"w": w, "v": v}, chip="bm1684")
    report = offload_report(mod)
    assert len(report.regions) == 1 and not report.host_ops, report.format()
    # the add's float relu became the int8 clamp after its quantize
    assert report.regions[0].composites.count("sophon.qadd_clip") == 1, report.format()
    x = np.random.default_rng(1).integers(-128, 128, (1, 5, 5, 4), dtype=np.int8)
    chip = relax.VirtualMachine(tvm_sophon.build(mod, chip="bm1684"), tvm.cpu())["main"](tvm.runtime.tensor(x))
    llvm_ex = tvm.compile(OneDequantizeTwoInt8Convs, target="llvm")
    want = relax.VirtualMachine(llvm_ex, tvm.cpu())["main"](*map(tvm.runtime.tensor, (x, w, v))).numpy()
    # llvm emulates the int8 layers in float: its rounding of each requantization
    # may differ from the chip's integer arithmetic by 1 LSB per layer (2 layers deep)
    assert np.abs(chip.numpy().astype(int) - want.astype(int)).max() <= 2


def _int8_add_with_float_use():
    """dequantize -> add -> quantize (an int8 add) whose float sum is also read by a
    relu outside the chain (what PTQ used to write before a float op)."""
    x = relax.Var("x", relax.TensorType((1, 8, 4, 4), "int8"))
    y = relax.Var("y", relax.TensorType((1, 8, 4, 4), "int8"))

    def const(value, dtype):
        return relax.const(np.array(value, dtype))

    bb = relax.BlockBuilder()
    with bb.function("main", [x, y]):
        with bb.dataflow():
            a = bb.emit(relax.op.dequantize(x, const(0.05, "float32"), const(0, "int32")))
            b = bb.emit(relax.op.dequantize(y, const(0.04, "float32"), const(3, "int32")))
            total = bb.emit(relax.op.add(a, b))
            q = bb.emit(relax.op.quantize(total, const(0.1, "float32"), const(-2, "int32"),
                                          out_dtype="int8"))
            f = bb.emit(relax.op.nn.relu(total))
            out = bb.emit_output(relax.Tuple([q, f]))
        bb.emit_func_output(out)
    return bb.get()


def test_int8_chain_whose_float_value_is_used_outside_is_not_fused(run_sophon, run_llvm):
    """Before: the add and its quantize became one sophon.qadd whose float sum had no
    producer, and the build stopped ("composite sophon.qadd returns gv, gv1"). Now the
    chain is refused with the reason, and the model builds and runs."""
    mod = _int8_add_with_float_use()
    rng = np.random.default_rng(3)
    inputs = {"x": rng.integers(-128, 128, (1, 8, 4, 4), dtype=np.int8),
              "y": rng.integers(-128, 128, (1, 8, 4, 4), dtype=np.int8)}
    run = run_sophon(mod, None, inputs, chip="bm1684")
    assert "relax.quantize" in _host_ops(run.partitioned)
    reasons = " ".join(op.reason for op in offload_report(run.partitioned).host_ops)
    assert "inside the int8 chain" in reasons
    want = run_llvm(mod, None, inputs)
    # exact: the float32 add and relu round alike on the chip and in llvm (one rounding
    # each), and the dequantize / quantize run on the host as in llvm
    np.testing.assert_array_equal(run.output[0], want[0])
    np.testing.assert_array_equal(run.output[1], want[1])
