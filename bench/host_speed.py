"""How fast the emulated chip runs on the host (issue #6), in one command:

    python bench/host_speed.py            # ~3-4 minutes on 2 cores
    python bench/host_speed.py --quick    # fewer repetitions

Prints machine info, then one table:
  - ResNet-18 and MobileNetV2-style (1x3x224x224, FP32, random weights) at 1 and 2
    threads: tvm_sophon on the emulator vs TVM's default llvm build vs onnxruntime
    (the same network and weights as an ONNX graph, outputs checked first);
  - the GFLOP/s of ResNet-18's biggest conv layers as single emulator instructions
    vs numpy's sgemm of the equivalent GEMM shape (M=OC, K=IC*KH*KW, N=OH*OW);
  - INT8 vs FP32: ResNet-18 on the bm1684 profile, FP32 vs quantized with
    tvm_sophon.quantize (calibrated on 4 random batches), both on the emulator.
Every number is the median of several runs after a warm-up. Each end-to-end
configuration runs in its own process, with SOPHON_NUM_THREADS, TVM_NUM_THREADS,
OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set to the thread count.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAMES = ["resnet18", "mobilenet_v2"]


def median_time(fn, repeat: int, warmup: int = 1) -> float:
    """Median wall time of fn() after `warmup` calls, with Python's cyclic garbage
    collector off while timing (as timeit does), for every contender alike."""
    for _ in range(warmup):
        fn()
    times = []
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        if was_enabled:
            gc.enable()
    return statistics.median(times)


# ------------------------------------------------------------------ onnx graphs

def _onnx_builder():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    class Graph:
        def __init__(self, params):
            self.params, self.nodes, self.inits, self.count = params, [], [], 0

        def name(self, prefix):
            self.count += 1
            return f"{prefix}_{self.count}"

        def const(self, name, array):
            self.inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
            return name

        def conv(self, x, layer, stride=1, pad=1, groups=1, act=None):
            w = self.params[f"{layer}_weight"]
            k = w.shape[2]
            y = self.name(layer)
            self.nodes.append(helper.make_node(
                "Conv", [x, self.const(f"{layer}_weight", w), self.const(f"{layer}_bias",
                                                                       self.params[f"{layer}_bias"])],
                [y], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=groups))
            return self.act(y, act)

        def act(self, y, act):
            if act is None:
                return y
            out = self.name(act)
            if act == "relu":
                self.nodes.append(helper.make_node("Relu", [y], [out]))
            else:  # relu6
                lo, hi = self.const(self.name("lo"), 0.0), self.const(self.name("hi"), 6.0)
                self.nodes.append(helper.make_node("Clip", [y, lo, hi], [out]))
            return out

        def op(self, kind, inputs, **attrs):
            out = self.name(kind)
            self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
            return out

        def head(self, y):
            y = self.op("Flatten", [self.op("GlobalAveragePool", [y])])
            return self.op("Gemm", [y, self.const("fc_weight", self.params["fc_weight"]),
                                    self.const("fc_bias", self.params["fc_bias"])], transB=1)

        def model(self, out):
            graph = helper.make_graph(
                self.nodes, "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 224, 224])],
                [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 1000])], self.inits)
            return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()

    return Graph


def onnx_resnet18(params) -> bytes:
    """tvm_sophon.models.resnet(18) as ONNX, layer by layer."""
    g = _onnx_builder()(params)
    y = g.conv("data", "stem", stride=2, pad=3, act="relu")
    y = g.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage in range(4):
        width = 64 * 2 ** stage
        for i in range(2):
            stride = 2 if stage > 0 and i == 0 else 1
            name = f"s{stage}b{i}"
            h = g.conv(y, f"{name}_a", stride=stride, act="relu")
            h = g.conv(h, f"{name}_b")
            short = y
            if stride != 1 or cin != width:
                short = g.conv(y, f"{name}_proj", stride=stride, pad=0)
            y = g.op("Relu", [g.op("Add", [h, short])])
            cin = width
    return g.model(g.head(y))


def onnx_mobilenet_v2(params) -> bytes:
    """tvm_sophon.models.mobilenet_v2 as ONNX, layer by layer."""
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
    g = _onnx_builder()(params)
    y = g.conv("data", "stem", stride=2, act="relu6")
    cin = 32
    for k, (t, c, n, s) in enumerate(settings):
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            h = y
            if t != 1:
                h = g.conv(h, f"b{k}_{i}_expand", pad=0, act="relu6")
            h = g.conv(h, f"b{k}_{i}_dw", stride=stride, groups=hidden, act="relu6")
            h = g.conv(h, f"b{k}_{i}_project", pad=0)
            y = g.op("Add", [h, y]) if stride == 1 and cin == c else h
            cin = c
    y = g.conv(y, "last", pad=0, act="relu6")
    return g.model(g.head(y))


# ------------------------------------------------------------- one configuration

def run_worker(model: str, threads: int, repeat: int) -> dict:
    """Times one model at one thread count (env already set by the parent)."""
    import onnxruntime as ort
    import tvm
    from tvm import relax

    import tvm_sophon
    from tvm_sophon import models

    mod, params, inputs = getattr(models, model)()
    x = inputs["data"]
    result = {}

    ex = tvm_sophon.build(mod, params)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    arg = tvm.runtime.tensor(x)
    sophon_out = vm["main"](arg).numpy()
    result["sophon"] = median_time(lambda: vm["main"](arg), repeat)

    bound = models.bind_params(mod, params)
    ref_vm = relax.VirtualMachine(tvm.compile(bound, target="llvm"), tvm.cpu())
    ref_out = ref_vm["main"](arg).numpy()
    result["llvm"] = median_time(lambda: ref_vm["main"](arg), max(2, repeat // 4), warmup=0)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    graph = {"resnet18": onnx_resnet18, "mobilenet_v2": onnx_mobilenet_v2}[model](params)
    sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    ort_out = sess.run(None, {"data": x})[0]
    result["onnxruntime"] = median_time(lambda: sess.run(None, {"data": x}), repeat * 2)

    scale = float(np.abs(ref_out).max())
    result["max_err_sophon"] = float(np.abs(sophon_out - ref_out).max()) / scale
    result["max_err_onnx"] = float(np.abs(ort_out - ref_out).max()) / scale
    if result["max_err_onnx"] > 1e-3 or result["max_err_sophon"] > 1e-3:
        raise SystemExit(f"{model}: outputs disagree: {result}")
    return result


def run_int8_worker(threads: int, repeat: int) -> dict:
    """ResNet-18 on the bm1684 profile: FP32 vs INT8 (tvm_sophon.quantize, calibrated
    on a few random batches), both on the emulator (env already set by the parent)."""
    import tvm
    from tvm import relax

    import tvm_sophon
    from tvm_sophon import models

    mod, params, inputs = models.resnet18()
    x = inputs["data"]
    arg = tvm.runtime.tensor(x)
    rng = np.random.default_rng(1)
    batches = [{"data": rng.standard_normal(x.shape).astype(np.float32)} for _ in range(4)]
    qmod = tvm_sophon.quantize(mod, batches, params=params, progress=False)
    report = tvm_sophon.quantize_report(qmod)
    result = {"layers": len(report.layers),
              "fallback": sum(1 for layer in report.layers if not layer.int8)}
    for name, module, prm in (("fp32", mod, params), ("int8", qmod, None)):
        vm = relax.VirtualMachine(tvm_sophon.build(module, prm, chip="bm1684"), tvm.cpu())
        out = vm["main"](arg).numpy()
        result[name] = median_time(lambda: vm["main"](arg), repeat)
        result[f"{name}_out"] = out.ravel().tolist()
    a, b = np.asarray(result.pop("fp32_out")), np.asarray(result.pop("int8_out"))
    result["cosine"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return result


def _worker_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("SOPHON_NUM_THREADS", "TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.pop("SOPHON_REFERENCE", None)
    return env


def int8_vs_fp32(threads_list, repeat) -> dict:
    rows = {}
    for threads in threads_list:
        proc = subprocess.run([sys.executable, __file__, "--int8-worker", str(threads), str(repeat)],
                              capture_output=True, text=True, env=_worker_env(threads), cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"int8 worker x{threads} failed:\n{proc.stdout}\n{proc.stderr}")
        rows[threads] = json.loads(proc.stdout.strip().splitlines()[-1])
    return rows


def end_to_end(threads_list, repeat) -> dict:
    rows = {}
    for model in MODEL_NAMES:
        for threads in threads_list:
            env = _worker_env(threads)
            proc = subprocess.run([sys.executable, __file__, "--worker", model, str(threads), str(repeat)],
                                  capture_output=True, text=True, env=env, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"worker {model} x{threads} failed:\n{proc.stdout}\n{proc.stderr}")
            rows[(model, threads)] = json.loads(proc.stdout.strip().splitlines()[-1])
    return rows


# ------------------------------------------------------------------ conv kernels

RESNET18_CONVS = [  # (name, ic, oc, h, kernel, stride, pad): the layers with the most MACs
    ("stem 7x7/2 3->64 @224", 3, 64, 224, 7, 2, 3),
    ("3x3 64->64 @56", 64, 64, 56, 3, 1, 1),
    ("3x3 128->128 @28", 128, 128, 28, 3, 1, 1),
    ("3x3 256->256 @14", 256, 256, 14, 3, 1, 1),
    ("3x3 512->512 @7", 512, 512, 7, 3, 1, 1),
]


def conv_kernels(threads_list, repeat) -> list:
    import ctypes

    sys.path.insert(0, str(ROOT / "tests"))
    from test_fast_kernels import COMPACT, Device, conv_params  # the tests' ctypes driver

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    rows = []
    rng = np.random.default_rng(0)
    for name, ic, oc, h, k, s, p in RESNET18_CONVS:
        o = (h + 2 * p - k) // s + 1
        flops = 2.0 * oc * o * o * ic * k * k
        row = {"name": name, "gemm": (oc, ic * k * k, o * o)}
        for threads in threads_list:
            dev = Device(threads)
            t_in = dev.alloc(1, ic, h, h)
            dev.load(t_in, rng.standard_normal((1, ic, h, h)))
            t_w = dev.alloc(1, oc, ic, k * k, COMPACT)
            dev.load(t_w, rng.standard_normal((1, oc, ic, k * k)))
            t_b = dev.alloc(1, oc, 1, 1, COMPACT)
            dev.load(t_b, rng.standard_normal((1, oc, 1, 1)))
            t_o = dev.alloc(1, oc, o, o)
            prm = conv_params((k, k), (s, s), (p, p, p, p), (1, 1), 1, "relu")
            args = [dev.handle, *(ctypes.byref(t) for t in (t_o, t_in, t_w, t_b, prm))]
            row[f"emu{threads}"] = flops / median_time(lambda: dev.check(dev.lib.sophon_tiu_conv2d(*args)),
                                                       repeat * 3) / 1e9
            dev.close()
            a = rng.standard_normal((oc, ic * k * k)).astype(np.float32)
            b = rng.standard_normal((ic * k * k, o * o)).astype(np.float32)
            if threadpool_limits is not None:
                with threadpool_limits(limits=threads, user_api="blas"):
                    row[f"blas{threads}"] = flops / median_time(lambda: a @ b, repeat * 3) / 1e9
            else:
                row[f"blas{threads}"] = float("nan")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------- report

def machine_info() -> str:
    import onnxruntime
    import tvm

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "?"
    try:
        from threadpoolctl import threadpool_info
        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if info:
            blas = f"{info[0].get('internal_api')} {info[0].get('version')} ({info[0].get('architecture')})"
    except ImportError:
        blas = "threadpoolctl missing: BLAS threads not limited"
    load = os.getloadavg()
    return (f"machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
            f"python {platform.python_version()}, numpy {np.__version__} ({blas}), tvm {tvm.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, CC={os.environ.get('CC', 'cc')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "THREADS", "REPEAT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--int8-worker", nargs=2, metavar=("THREADS", "REPEAT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        model, threads, repeat = args.worker
        print(json.dumps(run_worker(model, int(threads), int(repeat))))
        return 0
    if args.int8_worker:
        threads, repeat = args.int8_worker
        print(json.dumps(run_int8_worker(int(threads), int(repeat))))
        return 0

    repeat = 5 if args.quick else 15
    threads_list = [1, 2]
    print(machine_info())
    e2e = end_to_end(threads_list, repeat)
    kernels = conv_kernels(threads_list, repeat)
    int8 = int8_vs_fp32(threads_list, repeat)
    load = os.getloadavg()

    lines = ["| network (1x3x224x224 FP32) | threads | tvm_sophon emulator | TVM llvm (default) | onnxruntime | emulator / onnxruntime |",
             "|---|---|---|---|---|---|"]
    for (model, threads), r in e2e.items():
        lines.append(f"| {model} | {threads} | {r['sophon'] * 1e3:.1f} ms | {r['llvm'] * 1e3:.0f} ms | "
                     f"{r['onnxruntime'] * 1e3:.1f} ms | {r['sophon'] / r['onnxruntime']:.2f}x |")
    lines += ["", "| ResNet-18 conv layer (one instruction) | GEMM M x K x N | threads | emulator GFLOP/s | numpy sgemm GFLOP/s | emulator / sgemm |",
              "|---|---|---|---|---|---|"]
    for row in kernels:
        m, k, n = row["gemm"]
        for threads in threads_list:
            emu, blas = row[f"emu{threads}"], row[f"blas{threads}"]
            lines.append(f"| {row['name']} | {m} x {k} x {n} | {threads} | {emu:.1f} | {blas:.1f} | {emu / blas:.0%} |")
    lines += ["", "| ResNet-18 on bm1684 (emulator) | threads | FP32 | INT8 | FP32 / INT8 | INT8 layers | cosine(INT8, FP32) |",
              "|---|---|---|---|---|---|---|"]
    for threads, r in int8.items():
        lines.append(f"| resnet18 | {threads} | {r['fp32'] * 1e3:.1f} ms | {r['int8'] * 1e3:.1f} ms | "
                     f"{r['fp32'] / r['int8']:.2f}x | {r['layers'] - r['fallback']}/{r['layers']} | {r['cosine']:.4f} |")
    print("\n".join(lines))
    errs = ", ".join(f"{m} x{t}: emulator {r['max_err_sophon']:.1e}, onnxruntime {r['max_err_onnx']:.1e}"
                     for (m, t), r in e2e.items())
    print(f"max |output - llvm| / max|llvm|: {errs}")
    print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
