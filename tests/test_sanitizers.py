"""The runtime under AddressSanitizer and UndefinedBehaviorSanitizer: its C unit
tests, and one model library (every kind of f32 instruction) built with
``CC="cc -fsanitize=address,undefined"`` and run from Python with the ASan
runtime preloaded. Any report aborts the program (-fno-sanitize-recover), so a
finding is a failed test. Skips only when the compiler has no sanitizer runtime.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from tvm_sophon import runtime as runtime_src
from tvm_sophon import toolchain

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]
# Leak checking stays on for the C tests; Python and TVM keep memory until exit by design.
ENV = {"ASAN_OPTIONS": "abort_on_error=1:detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


@pytest.fixture(scope="module")
def sanitizer_runtime(tmp_path_factory):
    """The compiler builds and runs a sanitized program; the LD_PRELOAD value to
    run a sanitized library in Python."""
    root = tmp_path_factory.mktemp("san")
    (root / "probe.c").write_text("#include <stdlib.h>\nint main(void) { char* p = malloc(4); p[0] = 1; "
                                  "free(p); return 0; }\n")
    cc = toolchain.compiler()
    try:
        proc = subprocess.run([*cc, *SANITIZE, str(root / "probe.c"), "-o", str(root / "probe")],
                              capture_output=True, text=True, timeout=120)
        ran = proc.returncode == 0 and subprocess.run([str(root / "probe")], timeout=60,
                                                      env={**os.environ, **ENV}).returncode == 0
    except OSError:
        ran = False
    if not ran:
        pytest.skip(f"{' '.join(cc)} has no AddressSanitizer/UBSan runtime")
    # LD_PRELOAD for a sanitized library inside Python: libasan first, and libstdc++
    # right after it so that ASan can intercept __cxa_throw (TVM throws C++ errors)
    found = [subprocess.run([*cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
             for name in ("libasan.so", "libstdc++.so.6")]
    return " ".join(path for path in found if os.path.isabs(path))


@pytest.mark.parametrize("source", runtime_src.test_sources(), ids=lambda p: p.stem)
def test_runtime_c_unit_tests_under_asan_and_ubsan(sanitizer_runtime, tmp_path, source):
    flags = [*toolchain.runtime_flags(), *SANITIZE, "-O1"]
    exe = toolchain.build_executable([source, *runtime_src.library_sources()], tmp_path / source.stem, flags)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **ENV, "SOPHON_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    passed, failed = (int(part.split()[0]) for part in proc.stdout.strip().splitlines()[-1].split(","))
    assert failed == 0 and passed > 0


BUILD = textwrap.dedent('''
    import sys
    import numpy as np, tvm
    from tvm.script import relax as R
    import tvm_sophon
    from tvm_sophon import toolchain

    @tvm.script.ir_module
    class Every:
        @R.function
        def main(x: R.Tensor((2, 17, 7, 7), "float32"), w: R.Tensor((17, 1, 3, 3), "float32"),
                 w2: R.Tensor((8, 17, 3, 3), "float32"), fw: R.Tensor((10, 8), "float32")):
            with R.dataflow():
                y = R.nn.conv2d(x, w, padding=1, groups=17)
                y1 = R.clip(y, R.prim_value(0.0), R.prim_value(6.0))
                y2 = R.add(y1, x)
                y3 = R.sigmoid(R.maximum(y2, x))
                z = R.nn.relu(R.nn.conv2d(y3, w2, strides=2, padding=1))
                p = R.nn.max_pool2d(z, pool_size=(2, 2), strides=(2, 2))
                g = R.mean(R.nn.avg_pool2d(p, pool_size=(2, 2)), axis=[2, 3])
                s = R.nn.softmax(R.matmul(g, R.permute_dims(fw)), axis=-1)
                R.output(s)
            return s

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in Every["main"].params]
    np.savez(sys.argv[2], *arrays)
    ex = tvm_sophon.build(Every)
    ex.export_library(sys.argv[1], fcompile=toolchain.create_shared)
    vm = tvm.relax.VirtualMachine(tvm.compile(Every, target="llvm"), tvm.cpu())
    np.save(sys.argv[3], vm["main"](*map(tvm.runtime.tensor, arrays)).numpy())
''')

RUN = textwrap.dedent('''
    import sys
    import numpy as np, tvm
    lib = tvm.runtime.load_module(sys.argv[1])
    vm = tvm.relax.VirtualMachine(lib, tvm.cpu())
    data = np.load(sys.argv[2])
    arrays = [data[f"arr_{k}"] for k in range(len(data.files))]
    for _ in range(3):
        out = vm["main"](*map(tvm.runtime.tensor, arrays)).numpy()
    # f32 on both sides, different summation orders
    np.testing.assert_allclose(out, np.load(sys.argv[3]), rtol=1e-4, atol=1e-6)
    print("ok")
''')


def test_model_library_built_with_sanitizers_runs_clean(sanitizer_runtime, tmp_path):
    """Runtime and generated C compiled and linked with ASan+UBSan through $CC
    (with flags: CC="cc -fsanitize=..." is split as documented), run by TVM in a
    Python with libasan preloaded, at two threads, checked against llvm."""
    cc = " ".join([*toolchain.compiler(), *SANITIZE])
    (tmp_path / "build.py").write_text(BUILD)
    (tmp_path / "run.py").write_text(RUN)
    lib, data, ref = (str(tmp_path / f) for f in ("every.so", "inputs.npz", "ref.npy"))
    # the build loads the sanitized runtime too (the cost model, through ctypes)
    env = {**os.environ, "CC": cc, "LD_PRELOAD": sanitizer_runtime, "SOPHON_NUM_THREADS": "2",
           "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=0", "UBSAN_OPTIONS": ENV["UBSAN_OPTIONS"]}
    proc = subprocess.run([sys.executable, str(tmp_path / "build.py"), lib, data, ref], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), lib, data, ref], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout[-2000:] + proc.stderr[-6000:]
