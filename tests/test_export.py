"""An exported model is self-contained: a fresh Python process with nothing but
``tvm`` and ``numpy`` loads the ``.so``, runs it, profiles it, and gets Python
exceptions (not a crash) for wrong inputs."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon import models
from conftest import run_sophon, sophon_regions

# The fresh process: tvm_sophon is made unimportable, so the library must carry
# everything it needs (the emulated chip included).
CHILD = textwrap.dedent(r'''
    import json, sys
    sys.modules["tvm_sophon"] = None          # any import of tvm_sophon now fails
    import numpy as np
    import tvm
    from tvm import relax

    lib_path, spec_path, report_path = sys.argv[1:4]
    spec = json.load(open(spec_path))
    report = {}

    lib = tvm.runtime.load_module(lib_path)
    vm = relax.VirtualMachine(lib, tvm.cpu())
    x = np.load(spec["input"])
    out = vm["main"](tvm.runtime.tensor(x))
    np.save(spec["output"], out.numpy())

    stats = lib.get_function("sophon_last_run_stats", query_imports=True)
    report["stats"] = json.loads(str(stats())) if stats is not None else None

    def attempt(name, call):
        try:
            call()
        except Exception as err:      # a Python exception is what we want
            report[name] = {"raised": type(err).__name__, "message": str(err)}
        else:
            report[name] = {"raised": None, "message": ""}

    wrong_shape = np.zeros([d + 1 for d in x.shape], "float32")
    attempt("wrong_shape", lambda: vm["main"](tvm.runtime.tensor(wrong_shape)))
    attempt("wrong_dtype", lambda: vm["main"](tvm.runtime.tensor(x.astype("float64"))))
    attempt("wrong_rank", lambda: vm["main"](tvm.runtime.tensor(x.reshape(-1))))

    region = lib.get_function(spec["region"], query_imports=True)
    report["region_found"] = region is not None
    if region is not None:
        args = [np.zeros(shape, "float32") for shape in spec["region_args"]]
        bad = list(args)
        bad[0] = np.zeros([d + 1 for d in spec["region_args"][0]], "float32")
        attempt("region_wrong_shape", lambda: region(*map(tvm.runtime.tensor, bad)))
        bad = list(args)
        bad[0] = args[0].astype("float64")
        attempt("region_wrong_dtype", lambda: region(*map(tvm.runtime.tensor, bad)))
        attempt("region_ok", lambda: region(*map(tvm.runtime.tensor, args)))

    # the interpreter survived everything above
    report["tvm_sophon_imported"] = sys.modules.get("tvm_sophon") is not None
    json.dump(report, open(report_path, "w"))
''')


def _shape(ty) -> list[int]:
    return [int(d) for d in ty.shape.values]


def _region_signature(partitioned):
    """(symbol, argument shapes incl. the output) of the first sophon region.

    The region's C entry point takes its inputs then its output (destination
    passing), in the order of the Relax function's parameters."""
    name, func = next(iter(sophon_regions(partitioned).items()))
    symbol = str(func.attrs["global_symbol"]) if "global_symbol" in func.attrs else name
    arg_shapes = [_shape(p.ty) for p in func.params]
    ret = func.body.ty
    outs = [_shape(f) for f in ret.fields] if isinstance(ret, relax.TupleType) else [_shape(ret)]
    return symbol, [p.name for p in func.params], arg_shapes + outs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo CNN built, run in this process, exported, and run in a fresh process."""
    tmp = tmp_path_factory.mktemp("export")
    mod, params, inputs = models.demo_cnn("NCHW")
    result = run_sophon(mod, params, inputs)
    lib_path = tmp / "m.so"
    result.executable.export_library(str(lib_path))

    symbol, param_names, arg_shapes = _region_signature(result.partitioned)
    np.save(tmp / "input.npy", inputs["data"])
    spec = {"input": str(tmp / "input.npy"), "output": str(tmp / "output.npy"),
            "region": symbol, "region_args": arg_shapes}
    (tmp / "spec.json").write_text(json.dumps(spec))
    (tmp / "child.py").write_text(CHILD)
    proc = subprocess.run([sys.executable, str(tmp / "child.py"), str(lib_path), str(tmp / "spec.json"),
                           str(tmp / "report.json")], cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"fresh process failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = json.loads((tmp / "report.json").read_text())
    return {"result": result, "report": report, "output": np.load(tmp / "output.npy"),
            "lib_path": lib_path, "symbol": symbol, "param_names": param_names, "arg_shapes": arg_shapes}


def test_exported_library_runs_in_a_fresh_process_with_only_tvm(exported):
    assert not exported["report"]["tvm_sophon_imported"]
    # the same code on the same input: bit-identical
    np.testing.assert_array_equal(exported["output"], exported["result"].output)


def test_exported_library_reports_its_chip_counters(exported):
    stats = exported["report"]["stats"]
    assert stats is not None, "sophon_last_run_stats is not exported"
    assert stats["regions"] and all(r["calls"] >= 1 and r["macs"] >= 0 for r in stats["regions"])
    assert sum(r["macs"] for r in stats["regions"]) == \
        sum(r["macs"] for r in tvm_sophon.last_run_stats(exported["result"].vm)["regions"])


@pytest.mark.parametrize("case", ["wrong_shape", "wrong_dtype", "wrong_rank"])
def test_wrong_model_input_raises_in_the_fresh_process(exported, case):
    outcome = exported["report"][case]
    assert outcome["raised"], f"{case}: no exception"
    assert outcome["message"]


def test_region_called_with_a_wrong_shape_names_the_argument(exported):
    report = exported["report"]
    assert report["region_found"], f"region {exported['symbol']} not found in the exported library"
    assert report["region_ok"]["raised"] is None, report["region_ok"]
    outcome = report["region_wrong_shape"]
    assert outcome["raised"], "wrong shape accepted by the region function"
    message = outcome["message"]
    wrong = ", ".join(str(d + 1) for d in exported["arg_shapes"][0])
    expected = ", ".join(str(d) for d in exported["arg_shapes"][0])
    assert wrong in message and expected in message, message
    # the argument is named: by its Relax parameter name (made a C identifier)
    name = exported["param_names"][0]
    c_name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    assert f"'{name}'" in message or f"'{c_name}'" in message, (name, message)


def test_region_called_with_a_wrong_dtype_names_the_argument(exported):
    outcome = exported["report"]["region_wrong_dtype"]
    assert outcome["raised"], "float64 accepted by the region function"
    name = exported["param_names"][0]
    c_name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    assert f"'{name}'" in outcome["message"] or f"'{c_name}'" in outcome["message"], outcome["message"]


def test_region_called_in_process_with_a_wrong_shape_raises(exported):
    """The same check in this process, through the loaded library."""
    lib = tvm.runtime.load_module(str(exported["lib_path"]))
    region = lib.get_function(exported["symbol"], query_imports=True)
    assert region is not None
    shapes = exported["arg_shapes"]
    args = [np.zeros(s, "float32") for s in shapes]
    args[0] = np.zeros([d + 1 for d in shapes[0]], "float32")
    with pytest.raises(Exception, match="argument"):
        region(*map(tvm.runtime.tensor, args))
