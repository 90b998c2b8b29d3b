"""Layers whose weights exceed a lane: a fully-connected layer sliced over its
output channels (N) and its reduction (K, partial sums added in local memory),
and a matmul with many rows sliced over its rows (M). Each plan is recorded in
the region's plan JSON, fits the chip, matches TVM's llvm build, and its
estimate equals what the emulator counts.

Tolerance: rtol = atol = 1e-5 unless stated. Both sides compute in float32 from
the same inputs; only the summation order differs (K slices add partial sums of
up to a few hundred products), a few ulp of the accumulated magnitude (inputs
scaled to keep results of order 1).
"""
import json

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R

import tvm_sophon
from tvm_sophon import codegen
from tvm_sophon.codegen.program import Group, Plan
from tvm_sophon.profile import profile_model

from conftest import assert_close, make_module, run_llvm, to_tensors

RTOL = ATOL = 1e-5  # float32 both sides, different summation order
BM1680 = tvm_sophon.get_chip("bm1680")


def _chip(lmem):
    return BM1680.replace(name=f"bm1680-{lmem}", lmem_bytes_per_lane=lmem)


def _dense(m, k, n, act=True, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((m, k)).astype("float32")}
    params = {"w": (rng.standard_normal((n, k)) / np.sqrt(k)).astype("float32"),
              "b": rng.standard_normal((n,)).astype("float32")}

    def body(bb, v):
        y = bb.emit(relax.op.matmul(v["x"], relax.op.permute_dims(v["w"])))
        y = bb.emit(relax.op.add(y, v["b"]))
        return relax.op.nn.relu(y) if act else y

    return make_module(inputs, params, body), params, inputs


def _plans(partitioned, chip, plan):
    planned = tvm_sophon.PlanRegions(plan)(partitioned)
    return [Plan.from_json(str(f.attrs["sophon.plan"])) for f in planned.functions.values()
            if (f.attrs or {}).get("Codegen") == "sophon"]


def _build_and_run(mod, params, inputs, chip, plan):
    partitioned = tvm_sophon.partition_for_sophon(mod, params, chip=chip)
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip=chip, plan=plan), tvm.cpu())
    out = vm["main"](*to_tensors(inputs)).numpy()
    stats = tvm_sophon.last_run_stats(vm)
    assert all(r["lmem_peak_bytes"] <= chip.lmem_bytes_per_lane for r in stats["regions"])
    return out, _plans(partitioned, chip, plan)


@pytest.mark.parametrize("plan", ["layer_group_dp", "layer_by_layer"])
@pytest.mark.parametrize("m, k, n, lmem, sliced", [
    (3, 1000, 300, 16384, "k_slices"),     # input and weight exceed a lane: K slices
    (1, 200, 2000, 16384, "c_slices"),      # weight exceeds a lane, input is small: N slices
    (2, 517, 131, 8192, None),             # odd sizes: whatever fits
])
def test_fc_sliced_over_channels_and_reduction_matches_llvm(m, k, n, lmem, sliced, plan):
    mod, params, inputs = _dense(m, k, n, seed=m * k + n)
    chip = _chip(lmem)
    out, plans = _build_and_run(mod, params, inputs, chip, plan)
    assert_close(out, run_llvm(mod, params, inputs), rtol=RTOL, atol=ATOL, what="dense")
    (group,) = plans[0].groups
    assert group.c_slices * group.k_slices > 1
    if sliced:
        assert getattr(group, sliced) > 1, plans[0].to_json()
    recorded = json.loads(plans[0].to_json())["groups"][0]   # the plan JSON says how it is sliced
    assert recorded.get("c_slices", 1) * recorded.get("k_slices", 1) == group.c_slices * group.k_slices


def test_hand_written_channel_and_reduction_plan_is_followed():
    """A plan given by hand with N, K and M slices at once runs as written."""
    mod, params, inputs = _dense(5, 300, 200, act=True, seed=7)
    partitioned = tvm_sophon.partition_for_sophon(mod, params)
    gvar, func = next((g, f) for g, f in partitioned.functions.items()
                      if (f.attrs or {}).get("Codegen") == "sophon")
    plan = Plan([Group([0], n_slices=2, c_slices=3, k_slices=4)], "mine")
    partitioned[gvar] = func.with_attr("sophon.plan", plan.to_json())
    (prog,) = codegen.lower_functions([partitioned[gvar]])
    fcs = [s for s in prog.steps if isinstance(s, codegen.program.FullyConnected)]
    adds = [s for s in prog.steps if isinstance(s, codegen.program.Binary)]
    assert len(fcs) == 2 * 3 * 4 and len(adds) == 2 * 3 * 3  # one add per K slice after the first
    vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
    out = vm["main"](*to_tensors(inputs)).numpy()
    assert_close(out, run_llvm(mod, params, inputs), rtol=RTOL, atol=ATOL, what="dense")


def test_estimate_of_a_sliced_fc_equals_the_emulator():
    mod, params, inputs = _dense(3, 1000, 300, seed=3)
    prof = profile_model(mod, params, inputs, chip=_chip(16384))
    assert prof.total["cycles"] == prof.measured["total"]["cycles"]
    assert prof.total["macs"] == prof.measured["total"]["macs"] == 3 * 1000 * 300
    assert any("k" in g.slicing for g in prof.groups)


def test_wide_mlp_is_sliced_by_rows_and_runs_as_one_region():
    """ConvNeXt's channel MLP: (1, 24, 24, 96) @ (96, 384) -> relu -> @ (384, 96)
    + residual: 576 rows do not fit a lane whole; they are sliced."""
    rng = np.random.default_rng(4)
    inputs = {"x": rng.standard_normal((1, 24, 24, 96)).astype("float32")}
    params = {"w1": (rng.standard_normal((96, 384)) / 10).astype("float32"),
              "b1": rng.standard_normal((384,)).astype("float32"),
              "w2": (rng.standard_normal((384, 96)) / 20).astype("float32")}

    def body(bb, v):
        y = bb.emit(relax.op.matmul(v["x"], v["w1"]))
        y = bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(y, v["b1"]))))
        y = bb.emit(relax.op.matmul(y, v["w2"]))
        return relax.op.add(y, v["x"])

    mod = make_module(inputs, params, body)
    for plan in ("layer_group_dp", "layer_by_layer"):
        out, plans = _build_and_run(mod, params, inputs, BM1680, plan)
        assert len(plans) == 1
        assert any(g.n_slices > 1 for g in plans[0].groups), plans[0].to_json()
        assert_close(out, run_llvm(mod, params, inputs), rtol=RTOL, atol=ATOL, what=plan)


@tvm.script.ir_module
class VggClassifier:
    @R.function
    def main(x: R.Tensor((1, 25088), "float32"), w: R.Tensor((4096, 25088), "float32"),
             b: R.Tensor((4096,), "float32")):
        with R.dataflow():
            y = R.nn.relu(R.add(R.matmul(x, R.permute_dims(w)), b))
            R.output(y)
        return y


def test_vgg_classifier_weight_plans_within_a_lane():
    """VGG's first FC weight (25088 x 4096, 392 KiB per lane per 64 channels x 64
    lanes) is planned (not run: 411 MB of weights) within 512 KiB per lane."""
    partitioned = tvm_sophon.partition_for_sophon(VggClassifier)
    (plan,) = _plans(partitioned, BM1680, "layer_group_dp")
    (group,) = plan.groups
    assert group.c_slices * group.k_slices > 1
    region = next(f for f in partitioned.functions.values() if (f.attrs or {}).get("Codegen") == "sophon")
    (prog,) = codegen.lower_functions([region.with_attr("sophon.plan", plan.to_json())])
    assert prog.lmem_peak_bytes <= BM1680.lmem_bytes_per_lane
    assert prog.macs() == 25088 * 4096


def test_fc_that_fits_no_slicing_names_the_layer_and_sizes():
    mod, params, _ = _dense(4, 100, 10)
    with pytest.raises(tvm_sophon.SophonCompileError) as err:
        tvm_sophon.build(mod, params, chip=_chip(512), plan="layer_by_layer")
    message = str(err.value)
    assert "cannot be tiled" in message and "layer gv (sophon.matmul_bias_relu)" in message
    assert "512 bytes per lane" in message and "no plan fits" not in message
