"""A seeded mutation fuzzer for the model importers and the compiler (issue #13).

Seeds are small valid .onnx and .tflite files made in code (frontend_models.py).
Each case mutates one seed, with byte-level edits of the file (flips, special
bytes, truncation, deletion, duplication, insertion) or, for ONNX, structural
edits (input dimensions, node attributes, constant values, op types). Every case
is imported and compiled (``tvm_sophon.frontend.load``, ``partition_for_sophon``,
``build``: C generated and compiled) in its own process, forked from a worker
that imported TVM once, with a timeout. An outcome is one of

    compiled   the model compiled
    rejected   a SophonError (a clear one-line error: what we want for bad input)
    escaped    any other exception (a traceback a user would see: a bug)
    toolchain  the C compiler failed on generated code (a codegen bug, though a
               SophonError)
    crash      the process died on a signal
    hang       the case ran past the timeout (killed)

``run(cases, seed, timeout)`` returns the counts and the failing cases. The test
suite runs a few dozen cases (tests/test_fuzz.py); ``bench/fuzz.py`` runs more.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUTCOMES = ("compiled", "rejected", "escaped", "toolchain", "crash", "hang")
FAILURES = ("escaped", "toolchain", "crash", "hang")
_EXIT = {0: "compiled", 10: "rejected", 20: "escaped", 30: "toolchain"}


# ------------------------------------------------------------------ seeds


def onnx_small_ops() -> bytes:
    """Conv (stride 2, dilation) -> LeakyRelu -> AveragePool -> Add -> Max ->
    Sigmoid -> GlobalAveragePool -> Flatten -> MatMul -> Softmax; input (1, 3, 12, 12)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    const = lambda name, a: numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)  # noqa: E731
    inits = [const("w", rng.standard_normal((6, 3, 3, 3)) * 0.3), const("b", rng.standard_normal(6) * 0.1),
             const("k", rng.standard_normal((6, 5)) * 0.3)]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[2, 2, 2, 2], strides=[2, 2], dilations=[2, 2]),
        helper.make_node("LeakyRelu", ["c"], ["l"], alpha=0.1),
        helper.make_node("AveragePool", ["l"], ["a"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "l"], ["s"]),
        helper.make_node("Max", ["s", "c"], ["m"]),
        helper.make_node("Sigmoid", ["m"], ["g"]),
        helper.make_node("GlobalAveragePool", ["g"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "k"], ["d"]),
        helper.make_node("Softmax", ["d"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "small_ops",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def seeds(with_tflite: bool = True) -> dict:
    """name -> bytes of the valid seed models."""
    import frontend_models as fm

    out = {"clip_cnn.onnx": fm.onnx_clip_cnn(), "small_ops.onnx": onnx_small_ops()}
    if with_tflite:
        out["cnn.tflite"] = fm.tflite_cnn()
    return out


# ------------------------------------------------------------------ mutations

SPECIAL_BYTES = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x3F, 0x40]
SPECIAL_DIMS = [0, -1, 1, 2, 3, 7, 64, 1 << 20, 1 << 31, (1 << 63) - 1]
SPECIAL_INTS = [0, -1, 1, 2, 3, 5, 100, 1 << 31]
SPECIAL_FLOATS = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e38, -1.0]
OPS = ["Relu", "MaxPool", "Conv", "Add", "Clip", "Softmax", "Sigmoid", "Gemm", "Flatten", "Identity"]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 4])):
        kind = rng.randrange(6)
        pos = rng.randrange(len(b)) if b else 0
        if kind == 0 and b:
            b[pos] ^= 1 << rng.randrange(8)
        elif kind == 1 and b:
            b[pos] = rng.choice(SPECIAL_BYTES)
        elif kind == 2:
            del b[rng.randrange(len(b) + 1):]
        elif kind == 3:
            del b[pos:pos + rng.randrange(1, 16)]
        elif kind == 4:
            chunk = b[pos:pos + rng.randrange(1, 32)]
            at = rng.randrange(len(b) + 1)
            b[at:at] = chunk
        else:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(b)


def mutate_onnx(data: bytes, rng: random.Random) -> bytes:
    """One to three structural edits of a parsed ONNX model."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    for _ in range(rng.choice([1, 1, 1, 2])):
        kind = rng.randrange(5)
        if kind == 0:  # an input dimension
            dims = graph.input[0].type.tensor_type.shape.dim
            d = dims[rng.randrange(len(dims))]
            value = rng.choice(SPECIAL_DIMS)
            if value < 0 or rng.random() < 0.1:
                d.dim_param = "N"
            else:
                d.dim_value = value
        elif kind == 1:  # an attribute of a node
            node = graph.node[rng.randrange(len(graph.node))]
            if node.attribute:
                attr = node.attribute[rng.randrange(len(node.attribute))]
                if attr.ints:
                    attr.ints[rng.randrange(len(attr.ints))] = rng.choice(SPECIAL_INTS)
                elif attr.type == onnx.AttributeProto.FLOAT:
                    attr.f = rng.choice(SPECIAL_FLOATS)
                elif attr.type == onnx.AttributeProto.INT:
                    attr.i = rng.choice(SPECIAL_INTS)
        elif kind == 2:  # constant values or shape
            init = graph.initializer[rng.randrange(len(graph.initializer))]
            array = numpy_helper.to_array(init).copy()
            if rng.random() < 0.5 and array.size:
                array.reshape(-1)[rng.randrange(array.size)] = rng.choice(SPECIAL_FLOATS)
            else:
                array = array.reshape(-1)[:max(0, array.size - rng.randrange(0, 3))]
            init.CopyFrom(numpy_helper.from_array(array.astype(array.dtype), init.name))
        elif kind == 3:  # an op type
            node = graph.node[rng.randrange(len(graph.node))]
            node.op_type = rng.choice(OPS)
        else:  # an output dimension
            dims = graph.output[0].type.tensor_type.shape.dim
            if dims:
                dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 3, 1 << 31])
    return model.SerializeToString()


def make_cases(count: int, seed: int, with_tflite: bool = True) -> list:
    """[(name, bytes)] of ``count`` mutated models, the same for the same seed."""
    rng = random.Random(seed)
    pool = seeds(with_tflite)
    names = sorted(pool)
    cases = []
    for k in range(count):
        base = names[k % len(names)]
        data = pool[base]
        if base.endswith(".onnx") and rng.random() < 0.6:
            try:
                data = mutate_onnx(data, rng)
            except Exception:  # a structural edit onnx itself refuses: fall back to bytes
                data = mutate_bytes(data, rng)
        else:
            data = mutate_bytes(data, rng)
        cases.append((f"{k:04d}_{base}", data))
    return cases


# ------------------------------------------------------------------ running


def _compile_case(path: str) -> int:
    """In the forked child: import and compile; the exit code is the outcome."""
    import traceback

    import tvm_sophon
    from tvm_sophon.frontend import inputs_of, load

    try:
        mod = load(path)
        if not all(i.is_static for i in inputs_of(mod)):
            return 10  # the CLI asks for --input-shape: a clear rejection
        tvm_sophon.build(tvm_sophon.partition_for_sophon(mod))
        return 0
    except tvm_sophon.SophonToolchainError:
        traceback.print_exc()
        return 30
    except tvm_sophon.SophonError as err:
        print(f"rejected: {err}", file=sys.stderr)
        return 10
    except BaseException:
        traceback.print_exc()
        return 20


def _worker(case_dir: str, timeout: float) -> None:
    """Fork one child per case file; print one JSON line per case."""
    import onnx  # noqa: F401  (imported once here, inherited by every child)
    import tflite  # noqa: F401

    import tvm_sophon  # noqa: F401
    from tvm_sophon import frontend  # noqa: F401

    for path in sorted(Path(case_dir).glob("*.case")):
        log = path.with_suffix(".log")
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)  # its compilers die with it on a timeout
            fd = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            suffix = ".onnx" if "onnx" in path.stem else ".tflite"
            model = path.with_suffix(suffix)
            model.write_bytes(path.read_bytes())
            code = 20
            try:
                code = _compile_case(str(model))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        outcome = None
        while outcome is None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if os.WIFSIGNALED(status):
                    outcome = "crash"
                else:
                    outcome = _EXIT.get(os.WEXITSTATUS(status), "escaped")
            elif time.monotonic() - start > timeout:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                outcome = "hang"
            else:
                time.sleep(0.01)
        print(json.dumps({"case": path.stem, "outcome": outcome,
                          "seconds": round(time.monotonic() - start, 2)}), flush=True)


def run(cases: list, timeout: float = 60.0, workdir: "str | None" = None) -> dict:
    """Run every case; {"counts": {outcome: n}, "failures": [(case, outcome, log tail)]}."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for name, data in cases:
            (Path(tmp) / f"{name}.case").write_bytes(data)
        env = {**os.environ, "SOPHON_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, __file__, "--worker", tmp, str(timeout)], capture_output=True,
                              text=True, env=env, timeout=timeout * len(cases) + 300)
        if proc.returncode != 0:
            raise RuntimeError(f"fuzz worker failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
        counts = {o: 0 for o in OUTCOMES}
        failures, reasons = [], {}
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            counts[row["outcome"]] += 1
            log = Path(tmp) / f"{row['case']}.log"
            if row["outcome"] == "rejected" and log.exists():
                reason = (log.read_text(errors="replace").strip().splitlines() or [""])[-1]
                reason = reason.replace(f"{Path(tmp)}/", "").replace(row["case"], "<case>")[:100]
                reasons[reason] = reasons.get(reason, 0) + 1
            if row["outcome"] in FAILURES:
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                failures.append((row["case"], row["outcome"], tail))
        counts["cases"] = sum(counts[o] for o in OUTCOMES)
    return {"counts": counts, "failures": failures, "reasons": reasons}


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _worker(sys.argv[2], float(sys.argv[3]))
