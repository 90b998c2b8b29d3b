"""The build entry points: tvm_sophon.build, tvm.compile with tvm_sophon.pipeline(),
the stats API, and the generated C itself."""
import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R

import tvm_sophon
from tvm_sophon import codegen


@tvm.script.ir_module
class ConvSortConv:
    @R.function
    def main(x: R.Tensor((1, 5, 9, 9), "float32"), w: R.Tensor((6, 5, 3, 3), "float32"),
             w2: R.Tensor((4, 6, 1, 1), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, strides=2, padding=1)
            y1 = R.nn.relu(y)
            s = R.sort(y1, axis=-1)
            z = R.nn.conv2d(s, w2)
            R.output(z)
        return z


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype("float32") for shape in ((1, 5, 9, 9), (6, 5, 3, 3), (4, 6, 1, 1))]


def _llvm(mod, arrays):
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return vm["main"](*map(tvm.runtime.tensor, arrays)).numpy()


def test_tvm_compile_with_sophon_pipeline_matches_llvm():
    arrays = _inputs()
    ex = tvm.compile(ConvSortConv, target="llvm", relax_pipeline=tvm_sophon.pipeline())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*map(tvm.runtime.tensor, arrays)).numpy()
    # fp32 on both sides; only the summation order of the conv differs
    np.testing.assert_allclose(out, _llvm(ConvSortConv, arrays), rtol=1e-5, atol=1e-5)


def test_partition_then_pipeline_keeps_the_partition():
    mod = tvm_sophon.partition_for_sophon(ConvSortConv)
    ex = tvm.compile(mod, target="llvm", relax_pipeline=tvm_sophon.pipeline())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    arrays = _inputs(1)
    out = vm["main"](*map(tvm.runtime.tensor, arrays)).numpy()
    np.testing.assert_allclose(out, _llvm(ConvSortConv, arrays), rtol=1e-5, atol=1e-5)


def test_chip_mismatch_between_partition_and_build_is_an_error():
    small = tvm_sophon.get_chip("bm1680").replace(name="bm1680-small", lmem_bytes_per_lane=65536)
    mod = tvm_sophon.partition_for_sophon(ConvSortConv, chip=small)
    with pytest.raises(tvm_sophon.SophonCompileError, match="partitioned for bm1680-small"):
        tvm_sophon.build(mod, chip="bm1680")


def test_last_run_stats_counts_the_chip_work():
    arrays = _inputs(2)
    ex = tvm_sophon.build(ConvSortConv)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    vm["main"](*map(tvm.runtime.tensor, arrays))
    stats = tvm_sophon.last_run_stats(vm)
    assert stats["chip"]["name"] == "bm1680"
    assert len(stats["regions"]) == 2
    first, second = stats["regions"]
    # conv 5->6, 3x3, stride 2 on 9x9 -> 5x5; then 1x1 conv 6->4 on 5x5
    assert first["macs"] == 6 * 5 * 5 * 5 * 3 * 3
    assert second["macs"] == 4 * 5 * 5 * 6
    # every region argument is loaded once and its result stored once
    assert first["bytes_loaded"] == 4 * (5 * 9 * 9 + 6 * 5 * 3 * 3)
    assert first["bytes_stored"] == 4 * (6 * 5 * 5)
    assert all(r["calls"] == 1 and r["tiu_cycles"] > 0 and r["gdma_cycles"] > 0 for r in stats["regions"])
    assert stats["total"]["seconds"] > 0 and 0 < stats["total"]["utilisation"] <= 1
    assert "total" in tvm_sophon.format_stats(stats)


def test_generated_c_is_deterministic_and_readable():
    mod = tvm_sophon.partition_for_sophon(ConvSortConv)
    regions = [f for f in mod.functions.values() if (f.attrs or {}).get("Codegen") == "sophon"]
    first = codegen.generate_source(regions)
    assert first == codegen.generate_source(regions)
    # a command buffer per region: loads, compute, stores, timesteps
    for command in ("SOPHON_CMD_LOAD", "SOPHON_CMD_CONV2D", "SOPHON_CMD_STORE", "SOPHON_CMD_TIMESTEP"):
        assert command in first
    assert first.count("sophon_run_region(region_name") == 2
    assert "__tvm_ffi_sophon_last_run_stats" in first


@tvm.script.ir_module
class EveryInstruction:
    @R.function
    def main(x: R.Tensor((2, 17, 7, 7), "float32"), w: R.Tensor((17, 1, 3, 3), "float32"),
             b: R.Tensor((17,), "float32"), fw: R.Tensor((10, 17), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, padding=1, groups=17)
            y1 = R.add(y, R.reshape(b, (1, 17, 1, 1)))
            y2 = R.clip(y1, R.prim_value(0.0), R.prim_value(6.0))
            y3 = R.add(y2, x)
            y4 = R.sigmoid(y3)
            p = R.nn.avg_pool2d(y4, pool_size=(3, 3), strides=(2, 2), padding=(1, 1, 1, 1))
            g = R.mean(p, axis=[2, 3])
            d = R.matmul(g, R.permute_dims(fw))
            s = R.nn.softmax(d, axis=-1)
            R.output(s)
        return s


def test_plan_estimate_equals_run_counters():
    """One cost model: the compiler's estimate of each region (tvm_sophon.cost,
    calling runtime/chip/sophon_cost.c) equals the counters the emulator reports."""
    from tvm_sophon import cost

    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(shape).astype("float32")
              for shape in ((2, 17, 7, 7), (17, 1, 3, 3), (17,), (10, 17))]
    mod = tvm_sophon.partition_for_sophon(EveryInstruction)
    regions = [f for f in mod.functions.values() if (f.attrs or {}).get("Codegen") == "sophon"]
    programs = codegen.lower_functions(regions)
    ex = tvm_sophon.build(mod)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*map(tvm.runtime.tensor, arrays)).numpy()
    # sigmoid/exp in the emulator (expf) and TVM's llvm lowering differ by a few ulp
    np.testing.assert_allclose(out, _llvm(EveryInstruction, arrays), rtol=1e-5, atol=1e-6)
    stats = {r["name"]: r for r in tvm_sophon.last_run_stats(vm)["regions"]}
    assert set(stats) == {p.symbol for p in programs}
    for program in programs:
        est, run = cost.estimate(program), stats[program.symbol]
        for key in ("macs", "tiu_instructions", "gdma_instructions", "bytes_loaded",
                    "bytes_stored", "tiu_cycles", "gdma_cycles", "timesteps", "cycles"):
            assert getattr(est, key) == run[key], (program.symbol, key)
        assert run["lmem_peak_bytes"] <= program.lmem_peak_bytes


def test_last_run_stats_of_a_vm_not_built_by_the_plugin_is_a_clear_error():
    from tvm_sophon.models import bind_params, mlp

    mod, params, _ = mlp()
    vm = relax.VirtualMachine(tvm.compile(bind_params(mod, params), target="llvm"), tvm.cpu())
    with pytest.raises(tvm_sophon.SophonError, match="not built by tvm_sophon"):
        tvm_sophon.last_run_stats(vm)
