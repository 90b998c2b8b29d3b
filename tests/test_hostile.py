"""Hostile and broken inputs (issue #13): text that reaches generated C, chip
profiles, forked processes, huge shapes. Each test here failed before its fix."""
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R

import tvm_sophon
from tvm_sophon import SophonError, toolchain
from tvm_sophon.ctext import c_comment, c_escape, c_string

HOSTILE = [
    "x */ __attribute__((constructor)) static void pwn(void){abort();} /*",
    "??/", "a??/\nb", "??=??(??)??'??<??!??>??-",
    "\x01\x02\x7f", "emoji \U0001F600 and \u00e9", "back\\slash\\", "trailing\\",
    "new\nline\r\n", '"quoted"', "%s%n%d", "\\u00e9 \\x41", "tab\there", "0123", "\\0",
]


# ------------------------------------------------------------------ the escaping function


def test_c_escape_round_trips_hostile_strings_through_the_c_compiler(tmp_path):
    """Every hostile string, as a string literal and in a comment, compiles with the
    runtime's own flags (-std=c99: trigraphs on, -Wall -Werror) and the literal holds
    exactly the string's UTF-8 bytes."""
    lines = ["#include <stdio.h>", "int main(void) {"]
    for text in HOSTILE:
        lines.append(c_comment(text))
        lines.append(f"  {{ static const char s[] = {c_string(text)}; "
                     "for (size_t i = 0; i + 1 < sizeof s; ++i) printf(\"%02x\", (unsigned char)s[i]); "
                     "printf(\"\\n\"); }")
    lines.append("  return 0;\n}")
    src = tmp_path / "escape.c"
    src.write_text("\n".join(lines) + "\n")
    exe = toolchain.build_executable([src], tmp_path / "escape")
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30).stdout.split()
    assert out == [t.encode().hex() for t in HOSTILE]


@pytest.mark.parametrize("text", HOSTILE)
def test_c_escape_leaves_no_c_syntax(text):
    escaped = c_escape(text)
    assert escaped.isascii() and escaped.isprintable()
    for token in ("*/", "/*", "??", '"', "\n", "//"):
        assert token not in escaped


def _tiny_module():
    @tvm.script.ir_module
    class ConvRelu:
        @R.function
        def main(x: R.Tensor((1, 3, 6, 6), "float32"), w: R.Tensor((4, 3, 3, 3), "float32")):
            with R.dataflow():
                y = R.nn.relu(R.nn.conv2d(x, w, padding=1))
                R.output(y)
            return y

    rng = np.random.default_rng(0)
    return ConvRelu, [rng.standard_normal((1, 3, 6, 6)).astype("float32"),
                      rng.standard_normal((4, 3, 3, 3)).astype("float32")]


def _run(ex, arrays):
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm, vm["main"](*map(tvm.runtime.tensor, arrays)).numpy()


def test_hostile_chip_name_and_description_build_and_come_back_intact():
    """The chip name once injected a load-time constructor into the library; now
    the name and description reach the C only escaped, the library builds, runs
    right, and reports both strings back unchanged."""
    mod, arrays = _tiny_module()
    chip = tvm_sophon.get_chip("bm1680").replace(name=HOSTILE[0], description="".join(HOSTILE))
    source = tvm_sophon.codegen.generate_source(
        [f for f in tvm_sophon.partition_for_sophon(mod, chip=chip).functions.values()
         if (f.attrs or {}).get("Codegen") == "sophon"])
    code = re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', re.sub(r"/\*.*?\*/", " ", source, flags=re.S))
    assert "pwn" not in code and "??" not in source  # the name lives only in comments and literals
    vm, out = _run(tvm_sophon.build(mod, chip=chip), arrays)
    expected = _run(tvm.compile(mod, target="llvm"), arrays)[1]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)  # f32, summation order
    stats = tvm_sophon.last_run_stats(vm)
    assert stats["chip"]["name"] == HOSTILE[0]
    assert stats["chip"]["description"] == "".join(HOSTILE)


# ------------------------------------------------------------------ chip profiles


BAD_FIELDS = [
    ("npu_num", 0), ("npu_num", -1), ("npu_num", 2.0), ("npu_num", None), ("npu_num", True),
    ("npu_num", 1 << 20),
    ("eu_bytes", 0), ("eu_bytes", 1), ("eu_bytes", 3), ("eu_bytes", 6), ("eu_bytes", "256"),
    ("lmem_bytes_per_lane", 4094), ("lmem_bytes_per_lane", 0), ("lmem_bytes_per_lane", 1 << 40),
    ("lmem_banks", 0),
    ("clock_hz", 0.0), ("clock_hz", -1.0), ("clock_hz", math.nan), ("clock_hz", math.inf), ("clock_hz", "fast"),
    ("ddr_bytes_per_second", math.nan), ("ddr_bytes_per_second", -5), ("power_watts", None),
    ("gdma_latency_cycles", -1), ("tiu_latency_cycles", 1 << 40), ("int8_macs_per_eu", 0),
    ("has_int8", 1), ("name", ""), ("name", None), ("description", 3),
    ("gdma_clock_hz", -1.0), ("gdma_clock_hz", math.nan), ("gdma_burst_bytes", -1),
    ("timestep_sync_cycles", -1), ("dwpool_eu_bytes", 1 << 20), ("int8_batch_pack", 3),
    ("eltwise_eu_bytes", -1),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS, ids=lambda v: repr(v)[:20])
def test_invalid_chip_field_is_named_with_its_range(field, value):
    with pytest.raises(SophonError, match=f"chip profile: {field} must be"):
        tvm_sophon.get_chip("bm1680").replace(**{field: value})


def test_too_much_lmem_in_total_is_refused():
    with pytest.raises(SophonError, match="npu_num x lmem_bytes_per_lane"):
        tvm_sophon.get_chip("bm1680").replace(npu_num=1024, lmem_bytes_per_lane=1 << 30)


@pytest.mark.parametrize("name", ["../../../tmp/evil", "/etc/passwd", "bm1680.json", "chips/bm1680",
                                  "", "BM1680", None, 5])
def test_get_chip_takes_only_bundled_names(name):
    with pytest.raises(SophonError, match="unknown chip profile"):
        tvm_sophon.get_chip(name)


def test_load_chip_reads_and_validates_a_profile_file(tmp_path):
    data = dataclasses.asdict(tvm_sophon.get_chip("bm1684"))
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({**data, "name": "mine"}))
    assert tvm_sophon.load_chip(good) == tvm_sophon.get_chip("bm1684").replace(name="mine")
    cases = {"unknown chip profile field 'evil'": {**data, "evil": 1},
             "field 'npu_num' is missing": {k: v for k, v in data.items() if k != "npu_num"},
             "eu_bytes must be": {**data, "eu_bytes": 3},
             "must be a JSON object": [1, 2]}
    for message, content in cases.items():
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(content))
        with pytest.raises(SophonError, match=message):
            tvm_sophon.load_chip(path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SophonError, match="not valid JSON"):
        tvm_sophon.load_chip(tmp_path / "broken.json")
    with pytest.raises(SophonError, match="cannot read"):
        tvm_sophon.load_chip(tmp_path / "absent.json")


def test_device_creation_failure_reports_the_runtime_status(monkeypatch):
    """A profile the runtime refuses (let past the Python checks here, as a stale
    or hand-edited build could carry) names the status, not "out of host memory?"."""
    mod, arrays = _tiny_module()
    monkeypatch.setattr(tvm_sophon.Chip, "__post_init__", lambda self: None)
    chip = tvm_sophon.get_chip("bm1680").replace(name="bm1680-bad-latency", gdma_latency_cycles=-1)
    ex = tvm_sophon.build(mod, chip=chip)
    with pytest.raises(Exception, match="SOPHON_ERR_ARGUMENT") as info:
        _run(ex, arrays)
    assert "out of host memory" not in str(info.value)


# ------------------------------------------------------------------ fork


FORK_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    import numpy as np, tvm
    from tvm import relax
    import tvm_sophon
    from tvm_sophon.models import demo_cnn

    mod, params, inputs = demo_cnn()
    VM = relax.VirtualMachine(tvm_sophon.build(tvm_sophon.partition_for_sophon(mod, params)), tvm.cpu())
    X = [tvm.runtime.tensor(v) for v in inputs.values()]

    def infer(_=None):
        return VM["main"](*X).numpy()

    expected = infer()  # the parent's pool has started its worker threads
    pid = os.fork()
    if pid == 0:
        os._exit(0 if np.array_equal(infer(), expected) else 3)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            print("fork: hang")
            sys.exit(2)
        time.sleep(0.02)
    print("fork", os.waitstatus_to_exitcode(status))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        outs = pool.map_async(infer, range(4)).get(timeout=30)
    print("pool", all(np.array_equal(o, expected) for o in outs))
""")


def test_forked_children_run_the_model_after_the_parent_used_threads(tmp_path):
    """The child of a process that ran with two worker threads has none of them;
    it used to wait for them forever. os.fork and a fork-based Pool, each bounded
    by a timeout (a healthy child answers in well under a second)."""
    script = tmp_path / "fork_child.py"
    script.write_text(FORK_SCRIPT)
    env = {**os.environ, "SOPHON_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.split() == ["fork", "0", "pool", "True"]


# ------------------------------------------------------------------ huge shapes


def test_huge_declared_batch_is_refused_at_compile_time(tmp_path):
    """A conv on a [2^31, 1, 8, 8] input used to plan for over 300 s (a loop over
    every batch number); now it is refused at once with the tensor named."""
    script = textwrap.dedent("""
        import sys
        from tvm.script import relax as R
        import tvm, tvm_sophon
        from tvm_sophon import SophonError

        @tvm.script.ir_module
        class Huge:
            @R.function
            def main(x: R.Tensor((2147483648, 1, 8, 8), "float32"), w: R.Tensor((4, 1, 3, 3), "float32")):
                with R.dataflow():
                    y = R.nn.conv2d(x, w, padding=1)
                    R.output(y)
                return y

        try:
            tvm_sophon.build(Huge)
        except SophonError as err:
            print(err)
            sys.exit(0)
        sys.exit(1)
    """)
    (tmp_path / "huge.py").write_text(script)  # TVMScript reads its source from a file
    proc = subprocess.run([sys.executable, str(tmp_path / "huge.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "larger than the chip can hold" in proc.stdout and "2147483648" in proc.stdout


def test_slicing_candidates_are_divisors_and_quotients():
    from tvm_sophon.layer_groups import _divisors, _quotients

    for n in [*range(1, 200), 4096, 9973, 65536]:
        assert _divisors(n) == [d for d in range(1, n + 1) if n % d == 0]
        assert _quotients(n) == {n // k for k in range(1, n + 1)}
    assert _divisors(1 << 30) == [1 << k for k in range(31)]  # 2^15 steps, not 2^30


# ------------------------------------------------------------------ the command line


def _onnx_awkward_names() -> bytes:
    """Inputs named 'a.b', 'a_b' (TVM's importer renames them a_b and a_b_1) and
    'k=v'; outputs named 'allow_pickle' and 'file' (np.savez's own parameters)."""
    import onnx
    from onnx import TensorProto, helper

    vi = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4, 2, 2])  # noqa: E731
    graph = helper.make_graph(
        [helper.make_node("Sub", ["a.b", "a_b"], ["allow_pickle"]),
         helper.make_node("Mul", ["a_b", "k=v"], ["file"])],
        "awkward", [vi("a.b"), vi("a_b"), vi("k=v")], [vi("allow_pickle"), vi("file")])
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    from tvm_sophon.cli import main

    root = tmp_path_factory.mktemp("awkward")
    model, library = root / "awkward.onnx", root / "awkward.so"
    model.write_bytes(_onnx_awkward_names())
    assert main(["compile", str(model), "-o", str(library)]) == 0
    return model, library


def test_run_takes_the_models_own_input_names_and_keeps_every_output(awkward, tmp_path, capsys):
    """--input a_b goes to the model's own a_b (not to a.b, which TVM also calls
    a_b); 'k=v' is given with the last '=' splitting; outputs named allow_pickle
    and file both reach the .npz (np.savez swallowed the one, crashed on the other)."""
    import onnxruntime

    from tvm_sophon.cli import main

    model, library = awkward
    rng = np.random.default_rng(3)
    feeds = {name: rng.standard_normal((1, 4, 2, 2)).astype("float32") for name in ("a.b", "a_b", "k=v")}
    args = ["run", str(library), "--output", str(tmp_path / "out.npz")]
    for k, (name, value) in enumerate(feeds.items()):
        np.save(tmp_path / f"in{k}.npy", value)
        args += ["--input", f"{name}={tmp_path / f'in{k}.npy'}"]
    assert main(args) == 0
    saved = np.load(tmp_path / "out.npz")
    assert sorted(saved.files) == ["allow_pickle", "file"]
    session = onnxruntime.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"])
    for name, ref in zip(["allow_pickle", "file"], session.run(None, feeds)):
        np.testing.assert_allclose(saved[name], ref, rtol=1e-6, atol=1e-6)  # one f32 op each
    capsys.readouterr()
    assert main(["run", str(library), "--input", f"a_b_1={tmp_path / 'in0.npy'}"]) == 1
    err = capsys.readouterr().err
    assert "no input named 'a_b_1'" in err and "TVM's name for the input 'a_b'" in err
    assert main(["run", str(library), "--input", f"a_b={tmp_path / 'in0.npy'}",
                 "--input", f"a_b={tmp_path / 'in1.npy'}"]) == 1
    assert "--input gives 'a_b' twice" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped", "plain_elf"])
def test_damaged_library_is_one_line_not_a_crash(awkward, tmp_path, damage):
    """A truncated library used to kill `tvm-sophon run` with SIGBUS (exit 135)."""
    _, library = awkward
    data = library.read_bytes()
    bad = tmp_path / f"{damage}.so"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "flipped":
        bad.write_bytes(data[:4096] + bytes([data[4096] ^ 0xFF]) + data[4097:])
    else:  # a valid ELF library from elsewhere: the runtime's own shared library
        bad.write_bytes(toolchain.runtime_shared_library().read_bytes())
    np.save(tmp_path / "x.npy", np.zeros((1, 4, 2, 2), "float32"))
    proc = subprocess.run([sys.executable, "-m", "tvm_sophon.cli", "run", str(bad), "--input",
                           f"a_b={tmp_path / 'x.npy'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], proc.stderr


def test_chip_profile_file_through_the_cli(awkward, tmp_path, capsys):
    """--chip takes a bundled name or an explicit FILE.json (validated); a path
    without .json is not a profile name."""
    from tvm_sophon.cli import main

    model, _ = awkward
    profile = tmp_path / "mine.json"
    profile.write_text(json.dumps({**dataclasses.asdict(tvm_sophon.get_chip("bm1680")), "name": "mine */ x"}))
    assert main(["compile", str(model), "-o", str(tmp_path / "m.so"), "--chip", str(profile)]) == 0
    assert "for mine */ x" in capsys.readouterr().out
    profile.write_text(json.dumps({**dataclasses.asdict(tvm_sophon.get_chip("bm1680")), "eu_bytes": 6}))
    assert main(["compile", str(model), "-o", str(tmp_path / "m.so"), "--chip", str(profile)]) == 1
    assert "eu_bytes must be" in capsys.readouterr().err
    assert main(["compile", str(model), "-o", str(tmp_path / "m.so"), "--chip", str(tmp_path / "mine")]) == 1
    assert "unknown chip profile" in capsys.readouterr().err


# ------------------------------------------------------------------ $CC with flags


def test_cc_with_flags_exports_a_library(tmp_path, monkeypatch):
    """CC="cc -O2" (documented: $CC may carry flags) used to fail in export_library
    with FileNotFoundError: TVM runs $CC as one program name."""
    mod, arrays = _tiny_module()
    ex = tvm_sophon.build(mod)
    monkeypatch.setenv("CC", " ".join([*toolchain.compiler(), "-O2"]))
    monkeypatch.setenv("CXX", " ".join([*toolchain.compiler(), "-O2"]))
    ex.export_library(str(tmp_path / "m.so"), fcompile=toolchain.create_shared)
    out = _run(tvm.runtime.load_module(str(tmp_path / "m.so")), arrays)[1]
    expected = _run(tvm.compile(mod, target="llvm"), arrays)[1]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)  # f32, summation order


# ------------------------------------------------------------------ threads


def test_thread_local_vm_gives_each_thread_its_own_vm_and_exact_results():
    """One VirtualMachine shared by threads crashes inside TVM; ThreadLocalVM hands
    each thread its own over the same executable: every run equals the
    single-threaded result bit for bit, and last_run_stats reads through it."""
    import threading

    mod, arrays = _tiny_module()
    ex = tvm_sophon.build(mod)
    expected = _run(ex, arrays)[1]
    shared = tvm_sophon.ThreadLocalVM(ex)
    main = shared["main"]
    results, vms = [], []  # the VMs themselves: kept alive, compared by identity

    def worker():
        vms.append(shared.vm)
        for _ in range(20):
            results.append(main(*map(tvm.runtime.tensor, arrays)).numpy())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len({id(v) for v in vms}) == 4 and len(results) == 80
    assert all(np.array_equal(r, expected) for r in results)
    shared["main"](*map(tvm.runtime.tensor, arrays))
    assert tvm_sophon.last_run_stats(shared)["total"]["macs"] > 0


# ------------------------------------------------------------------ layers the runtime refuses


def _module_of(shapes, body):
    bb = relax.BlockBuilder()
    params = [relax.Var(f"v{i}", relax.TensorType(list(s), "float32")) for i, s in enumerate(shapes)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(*params))
        bb.emit_func_output(out)
    return bb.get()


REFUSED = {
    "conv_dilation_0": ([(1, 2, 8, 8), (4, 2, 3, 3)], lambda x, w: relax.op.nn.conv2d(x, w, dilation=0),
                        "relax.nn.conv2d", "conv2d dilation [0, 0]"),
    "max_pool_kernel_0": ([(1, 2, 8, 8)], lambda x: relax.op.nn.max_pool2d(x, (0, 0)),
                          "relax.nn.max_pool2d", "pool pool_size [0, 0]"),
    "dense_k_0": ([(1, 0), (4, 0)], lambda x, w: relax.op.matmul(x, relax.op.permute_dims(w)),
                  "relax.matmul", "zero-size shape [1, 0]"),
    "conv_batch_0": ([(0, 2, 8, 8), (4, 2, 3, 3)], lambda x, w: relax.op.nn.conv2d(x, w, padding=1),
                     "relax.nn.conv2d", "zero-size shape [0, 2, 8, 8]"),
    "relu_h_0": ([(1, 2, 0, 8)], relax.op.nn.relu, "relax.nn.relu", "zero-size shape [1, 2, 0, 8]"),
    # found by the model zoo (GoogLeNet at 32x32): a ceil-mode window wider than its input
    "max_pool_ceil_wider_than_input": ([(1, 8, 2, 2)],
                                       lambda x: relax.op.nn.max_pool2d(x, 3, 2, 0, ceil_mode=True),
                                       "relax.nn.max_pool2d", "pool window 3 (dilation 1) is wider than the padded input 2"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_layers_the_runtime_refuses_stay_on_the_host_with_a_reason(case):
    """They used to be offloaded, then failed at every run (or with "no plan fits")."""
    shapes, body, op, reason = REFUSED[case]
    mod = _module_of(shapes, body)
    partitioned = tvm_sophon.partition_for_sophon(mod)
    report = tvm_sophon.offload_report(partitioned)
    assert any(h.op == op and reason in h.reason for h in report.host_ops), report.format()
    ex = tvm_sophon.build(partitioned)
    if case.startswith(("dense", "conv_batch", "relu", "max_pool_ceil")):  # run it, as llvm does
        arrays = [np.ones(s, "float32") for s in shapes]
        out = _run(ex, arrays)[1]
        expected = _run(tvm.compile(mod, target="llvm"), arrays)[1]
        assert out.shape == expected.shape
        np.testing.assert_array_equal(out, expected)  # both on the host


@pytest.mark.parametrize("alpha", [math.inf, -math.inf, math.nan])
def test_non_finite_activation_parameters(alpha):
    """Found by the fuzzer: a LeakyRelu alpha of inf or NaN rendered as `inff` /
    `nanf` in the generated C, which did not compile. Infinite alpha compiles and
    matches TVM's llvm build; NaN (which the runtime refuses) stays on the host."""
    shapes = [(1, 2, 4, 4)]
    mod = _module_of(shapes, lambda x: relax.op.nn.leakyrelu(x, alpha))
    partitioned = tvm_sophon.partition_for_sophon(mod)
    report = tvm_sophon.offload_report(partitioned)
    if math.isnan(alpha):
        assert any("alpha is NaN" in h.reason for h in report.host_ops), report.format()
    else:
        assert not report.host_ops, report.format()
    x = np.random.default_rng(0).standard_normal(shapes[0]).astype("float32")
    out = _run(tvm_sophon.build(partitioned), [x])[1]
    np.testing.assert_array_equal(out, _run(tvm.compile(mod, target="llvm"), [x])[1])  # one multiply or none


def test_clip_bounds_the_runtime_refuses_stay_on_the_host():
    mod = _module_of([(1, 2, 4, 4)], lambda x: relax.op.clip(x, relax.prim_value(6.0), relax.prim_value(0.0)))
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(mod))
    assert any("clip bounds lo=6.0 > hi=0.0" in h.reason for h in report.host_ops), report.format()
