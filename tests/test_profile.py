"""Profiles: the static estimate agrees with what the emulator counted, and the
profile renders as a table, JSON, a Chrome trace and a PNG."""
import json

import pytest

import tvm_sophon
from tvm_sophon.models import demo_cnn, resnet_tiny
from tvm_sophon.profile import profile_model

TINY = tvm_sophon.get_chip("bm1680").replace(name="bm1680-8k", lmem_bytes_per_lane=8192)


@pytest.mark.parametrize("chip", ["bm1680", TINY], ids=["bm1680", "8k"])
def test_profile_matches_the_emulator_counters(chip):
    mod, params, inputs = resnet_tiny("NCHW")
    prof = profile_model(mod, params, inputs, chip=chip)
    measured = prof.measured["total"]
    assert prof.total["cycles"] == measured["cycles"]
    assert prof.total["macs"] == measured["macs"]
    assert prof.total["ddr_bytes"] == measured["bytes_loaded"] + measured["bytes_stored"]
    assert sum(l.macs for l in prof.layers) == measured["macs"]
    assert sum(g.cycles for g in prof.groups) == measured["cycles"]
    assert prof.host_seconds > 0
    assert 0 < prof.total["utilisation"] <= 1
    assert prof.total["energy_joules"] == pytest.approx(prof.total["seconds"] * prof.chip.power_watts)


def test_int8_profile_on_bm1684_counts_macs_and_matches_the_emulator():
    """bm1684 exercises every term of the silicon cost model (two clocks, bursts,
    the depthwise unit, 4N int8, timestep synchronisation); the static profile of a
    quantized model must count its MACs and equal the run's counters."""
    import numpy as np

    mod, params, inputs = resnet_tiny("NCHW")
    rng = np.random.default_rng(0)
    calib = [{k: rng.standard_normal(v.shape).astype("float32") for k, v in inputs.items()}
             for _ in range(2)]
    qmod = tvm_sophon.quantize(mod, calib, params=params, progress=False)
    prof = profile_model(qmod, None, inputs, chip="bm1684")
    measured = prof.measured["total"]
    assert measured["macs"] > 0
    assert prof.total["macs"] == measured["macs"]
    assert sum(l.macs for l in prof.layers) == measured["macs"]
    assert prof.total["cycles"] == measured["cycles"]
    assert sum(g.cycles for g in prof.groups) == measured["cycles"]


def test_profile_renders_table_json_trace_and_plot(tmp_path):
    mod, params, inputs = demo_cnn()
    prof = profile_model(mod, params, inputs)
    table = prof.format()
    assert "sophon.conv2d_bias_relu" in table and "total:" in table and "host:" in table
    data = json.loads(prof.to_json())
    assert {"layers", "groups", "total", "measured", "chip"} <= set(data)
    assert all({"seconds", "utilisation", "energy_joules", "ddr_bytes", "lmem_peak"} <= set(row)
               for row in data["layers"])
    prof.write_trace(tmp_path / "trace.json")
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and all(e["dur"] >= 0 and isinstance(e["pid"], int) and e["tid"] in (0, 1) for e in spans)
    # every process and thread the spans use is named by a metadata event
    named = {(e["name"], e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and "name" in e["args"]}
    assert all(("process_name", e["pid"], 0) in named and ("thread_name", e["pid"], e["tid"]) in named for e in spans)
    assert named[("thread_name", 0, 0)].startswith("TIU") and named[("thread_name", 0, 1)].startswith("GDMA")
    assert named[("process_name", 0, 0)] == "sophon_0 on bm1680"
    prof.write_plot(tmp_path / "profile.png")
    assert (tmp_path / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_names_regions_groups_and_layers():
    """The table's region and group columns are real: with layer-by-layer planning
    every layer is its own group (numbered within its region); layers of
    a bundled model carry the model's layer names (conv1, fc, ...)."""
    mod, params, inputs = demo_cnn()
    prof = profile_model(mod, params, inputs, plan="layer_by_layer", run=False)
    for region in {l.region for l in prof.layers}:
        groups = [l.group for l in prof.layers if l.region == region]
        # one group per layer, in order (a reshape that is only a view of its input
        # is a group with no instruction, so no row: its number is skipped)
        assert groups == sorted(set(groups)) and groups[0] == 0
        assert max(groups) < len(groups) + 2
    assert {l.region for l in prof.layers} <= {f"sophon_{k}" for k in range(len(prof.layers))}
    names = [l.name for l in prof.layers]
    assert "conv1" in names and "fc" in names, names
    header = prof.format().splitlines()[1].split()
    assert header[:3] == ["region", "group", "layer"]


def test_profile_says_which_unit_and_term_bounds_each_layer():
    """Each layer names the engine taking longer (a TIU unit, or the GDMA) and that
    engine's largest cost term; the parts it is judged by add up to its cycles."""
    from tvm_sophon.models import mobilenet_v2
    from tvm_sophon.profile import BOUNDS, TIU_UNITS

    mod, params, inputs = mobilenet_v2(image=32)
    prof = profile_model(mod, params, inputs, chip="bm1684", run=False)
    units = set()
    for l in [l for l in prof.layers if l.cycles()]:
        assert sum(l.parts.get(u, 0) for u in TIU_UNITS) == l.tiu_cycles
        assert l.parts.get("compute", 0) + l.parts.get("issue", 0) == l.tiu_cycles
        assert sum(l.parts.get(t, 0) for t in ("bandwidth", "bursts", "latency")) == l.gdma_cycles
        assert (l.unit == "gdma") == (l.gdma_cycles > l.tiu_cycles), l
        assert l.bound in BOUNDS
        if l.unit != "gdma" and l.pattern.startswith("sophon.pool"):
            assert l.unit == "dwpool", l   # pooling runs on the depthwise/pooling unit
        units.add(l.unit)
        assert f"{l.unit} {l.bound}" in prof.format()
    assert "gdma" in units and units & set(TIU_UNITS), units


def test_fused_silu_is_priced_on_the_eltwise_datapath_and_profiled_there():
    """bm1684 prices a SiLU fused into a conv as passes of its element-wise datapath
    (runtime/chip/sophon_cost.h): every element in a 32-bit slot, eltwise_eu_bytes
    per lane per cycle, 5 ops per element. The expectation is that formula worked
    here from the profile's numbers; the run's counters equal the estimate."""
    import numpy as np
    from tvm import relax

    chip = tvm_sophon.get_chip("bm1684")
    assert chip.eltwise_eu_bytes > 0
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 16, 16), "float32"))
    w = relax.const(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype("float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.silu(relax.op.nn.conv2d(x, w, padding=1)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    prof = profile_model(bb.get(), None, {"x": np.ones((1, 3, 16, 16), "float32")}, chip=chip)
    [conv] = [l for l in prof.layers if l.macs]
    # 8 channels on one lane slot, batch 1, 16*16 elements of 4 bytes at eltwise_eu_bytes
    passes = 1 * 1 * -(-16 * 16 * 4 // chip.eltwise_eu_bytes)
    assert conv.parts["eltwise"] == 5 * passes
    assert conv.parts["conv"] + conv.parts["eltwise"] == conv.tiu_cycles
    assert prof.total["cycles"] == prof.measured["total"]["cycles"]
