"""How fast the emulated chip runs on the host against onnxruntime (issues #6, #14):

    python bench/host_speed.py                  # ~10 minutes on 2 cores
    python bench/host_speed.py --quick          # fewer repetitions
    python bench/host_speed.py --only resnet18 --precision fp32 --threads 1

Prints the host (CPU model, the instruction sets it has and which of them the
emulator's kernels use, load average), then:
  - per network (ResNet-18, MobileNetV2, EfficientNet-B0, a YOLOv5s-style detector
    at 320x320; random weights, batch 1), FP32 and INT8, 1 and 2 threads: the
    emulator against onnxruntime running the same ONNX file. INT8 is that file
    quantized by onnxruntime's own static quantizer (QDQ, int8 activations and
    per-channel int8 weights, calibrated on 8 random batches); tvm_sophon imports
    the QDQ file and runs it on the bm1684 profile, onnxruntime runs it with its
    int8 kernels. Both run in one process and are timed call by call in turn
    (emulator, onnxruntime, emulator, ...), so every ratio is of two calls made
    side by side (onnxruntime's workers do not spin between its calls, which would
    take the cores from the emulator's next call); min and median of the times and
    of the per-pair ratios;
  - the GFLOP/s of ResNet-18's biggest conv layers as single emulator instructions
    vs numpy's sgemm of the equivalent GEMM shape (M=OC, K=IC*KH*KW, N=OH*OW),
    called in turn; the best time of each (on a loaded host the best is the one
    least disturbed). The 3x3 stride-1 layers take Winograd's F(2x2, 3x3)
    (runtime/fast/sophon_fast_winograd.c; the table's "path" column), which does
    fewer multiplies: their GFLOP/s are the direct conv's FLOPs over the time
    (direct-equivalent). The weight is loaded into LMEM as a plain load, so
    Winograd transforms it at every call (a compiled network's constant weights
    are transformed once).
Each (network, precision, threads) runs in its own process, with
SOPHON_NUM_THREADS, TVM_NUM_THREADS, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set
to the thread count (onnxruntime: intra_op_num_threads). The exported ONNX files
are cached in --workdir.
"""
from __future__ import annotations

import argparse
import contextlib
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


# ------------------------------------------------------------------ the networks

NETWORKS = ["resnet18", "mobilenet_v2", "efficientnet_b0", "yolov5s_320"]
PRECISIONS = ["fp32", "int8"]
CALIBRATION_BATCHES = 8


def _zoo():
    sys.path.insert(0, str(ROOT / "tests"))
    import zoo_models

    return zoo_models


def _efficientnet_b0():
    """EfficientNet-B0 (Tan & Le, table 1): MBConv blocks with SiLU and
    squeeze-excite (ratio 0.25 of the block input), 3x3/2 stem, 1x1 1280 head."""
    zoo = _zoo()
    torch, nn = zoo._torch()
    conv_bn = zoo.conv_bn

    class SqueezeExcite(nn.Module):
        def __init__(self, c, squeeze):
            super().__init__()
            self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, squeeze, 1), nn.SiLU(),
                                    nn.Conv2d(squeeze, c, 1), nn.Sigmoid())

        def forward(self, x):
            return x * self.fc(x)

    class MBConv(nn.Module):
        def __init__(self, cin, cout, expand, k, stride):
            super().__init__()
            hidden = cin * expand
            layers = [] if expand == 1 else [conv_bn(cin, hidden, 1, 1, "silu")]
            layers += [conv_bn(hidden, hidden, k, stride, "silu", groups=hidden),
                       SqueezeExcite(hidden, max(1, cin // 4)), conv_bn(hidden, cout, 1, 1, None)]
            self.body, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    table = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    layers, cin = [conv_bn(3, 32, 3, 2, "silu")], 32
    for expand, k, stride, cout, repeats in table:
        for i in range(repeats):
            layers.append(MBConv(cin, cout, expand, k, stride if i == 0 else 1))
            cin = cout
    layers += [conv_bn(cin, 1280, 1, 1, "silu"), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(1280, 1000)]
    return nn.Sequential(*layers), (1, 3, 224, 224)


def _torch_onnx(make, name: str, path: Path) -> None:
    zoo = _zoo()
    torch, _ = zoo._torch()
    torch.manual_seed(zoo._seed(name))
    rng = np.random.default_rng(zoo._seed(name))
    model, shape = make()
    model = zoo._calibrate_torch(model, shape, rng)
    zoo._write_onnx(model, rng.standard_normal(shape).astype(np.float32), path)


def _tvm_sophon_onnx(name: str, path: Path) -> None:
    """tvm_sophon.models' ResNet-18 / MobileNetV2 as ONNX, layer by layer."""
    from tvm_sophon import models

    _, params, _ = getattr(models, name)()
    path.write_bytes({"resnet18": onnx_resnet18, "mobilenet_v2": onnx_mobilenet_v2}[name](params))


def network_file(name: str, precision: str, workdir: Path) -> Path:
    """The ONNX file of `name` (exported once, then reused), quantized to QDQ for int8."""
    workdir.mkdir(parents=True, exist_ok=True)
    fp32 = workdir / f"{name}.onnx"
    if not fp32.exists():
        tmp = workdir / f"{name}.tmp.onnx"
        if name in ("resnet18", "mobilenet_v2"):
            _tvm_sophon_onnx(name, tmp)
        elif name == "efficientnet_b0":
            _torch_onnx(_efficientnet_b0, name, tmp)
        elif name == "yolov5s_320":
            _torch_onnx(lambda: _zoo()._yolov5s("full", image=320), name, tmp)
        else:
            raise SystemExit(f"unknown network {name!r} (known: {', '.join(NETWORKS)})")
        os.replace(tmp, fp32)
    if precision == "fp32":
        return fp32
    qdq = workdir / f"{name}.qdq.onnx"
    if not qdq.exists():
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                              quantize_static)

        input_name, shape = _onnx_input(fp32)
        rng = np.random.default_rng(1)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter([{input_name: rng.standard_normal(shape).astype(np.float32)}
                                     for _ in range(CALIBRATION_BATCHES)])

            def get_next(self):
                return next(self.batches, None)

        tmp = workdir / f"{name}.qdq.tmp.onnx"
        quantize_static(str(fp32), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=True)
        os.replace(tmp, qdq)
    return qdq


def _onnx_input(path: Path):
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    value = next(v for v in graph.input if v.name not in inits)
    return value.name, tuple(d.dim_value for d in value.type.tensor_type.shape.dim)


# ------------------------------------------------------------- one configuration

def interleaved(fns: dict, repeat: int) -> dict:
    """Each fn called once to warm up, then `repeat` rounds calling them in turn;
    Python's cyclic garbage collector off while timing (as timeit does)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    finally:
        if was_enabled:
            gc.enable()
    return times


def run_worker(name: str, precision: str, threads: int, repeat: int, workdir: Path) -> dict:
    """One network at one precision and thread count (env already set by the parent)."""
    import onnxruntime as ort
    import tvm
    from tvm import relax

    import tvm_sophon
    from tvm_sophon.frontend import load

    path = network_file(name, precision, workdir)
    input_name, shape = _onnx_input(path)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)

    chip = "bm1680" if precision == "fp32" else "bm1684"
    partitioned = tvm_sophon.partition_for_sophon(load(path), chip=chip)
    report = tvm_sophon.offload_report(partitioned)
    ex = tvm_sophon.build(partitioned, chip=chip)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    arg = tvm.runtime.tensor(x)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # onnxruntime's workers spin after a run by default, and the calls alternate: at 2
    # threads on 2 cores they took the core the emulator's next call needed (ResNet-18
    # FP32, 2 threads: emulator median 48.6 ms beside spinning workers, 31.3 ms without;
    # onnxruntime's own 17.9 / 18.0 ms). Without spinning neither side waits on the other.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def outputs(value):
        value = value if isinstance(value, (list, tuple)) or not hasattr(value, "numpy") else [value]
        return [np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float64).ravel() for v in value]

    emu = np.concatenate(outputs(vm["main"](arg)))
    ref = np.concatenate(outputs(sess.run(None, {input_name: x})))
    times = interleaved({"emulator": lambda: vm["main"](arg),
                         "onnxruntime": lambda: sess.run(None, {input_name: x})}, repeat)
    ratios = [a / b for a, b in zip(times["emulator"], times["onnxruntime"])]
    result = {"emulator": times["emulator"], "onnxruntime": times["onnxruntime"], "ratio": ratios,
              "rel_err": float(np.abs(emu - ref).max() / max(np.abs(ref).max(), 1e-30)),
              "cosine": float(emu @ ref / max(np.linalg.norm(emu) * np.linalg.norm(ref), 1e-30)),
              "mac_share": float(report.offloaded_mac_share), "regions": len(report.regions)}
    if precision == "fp32" and result["rel_err"] > 1e-3:
        raise SystemExit(f"{name}: the emulator and onnxruntime disagree: {result}")
    return result


def _worker_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("SOPHON_NUM_THREADS", "TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.pop("SOPHON_REFERENCE", None)
    env.pop("SOPHON_ISA", None)
    return env


def end_to_end(names, precisions, threads_list, repeat, workdir: Path) -> dict:
    rows = {}
    for name in names:
        for precision in precisions:
            network_file(name, precision, workdir)  # export and quantize once, outside the timing
            for threads in threads_list:
                proc = subprocess.run([sys.executable, __file__, "--worker", name, precision, str(threads),
                                       str(repeat), "--workdir", str(workdir)],
                                      capture_output=True, text=True, env=_worker_env(threads), cwd=ROOT)
                key = (name, precision, threads)
                if proc.returncode != 0:
                    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
                    rows[key] = {"error": " / ".join(tail)}
                    print(f"{name} {precision} x{threads} failed: {rows[key]['error']}", file=sys.stderr)
                    continue
                rows[key] = json.loads(proc.stdout.strip().splitlines()[-1])
                r = rows[key]
                print(f"{name} {precision} x{threads}: emulator {statistics.median(r['emulator']) * 1e3:.1f} ms, "
                      f"onnxruntime {statistics.median(r['onnxruntime']) * 1e3:.1f} ms, "
                      f"ratio median {statistics.median(r['ratio']):.2f}", file=sys.stderr, flush=True)
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
            a = rng.standard_normal((oc, ic * k * k)).astype(np.float32)
            b = rng.standard_normal((ic * k * k, o * o)).astype(np.float32)
            limit = (threadpool_limits(limits=threads, user_api="blas") if threadpool_limits is not None
                     else contextlib.nullcontext())
            with limit:  # the instruction and the sgemm in turn; the best of each
                times = interleaved({"emu": lambda: dev.check(dev.lib.sophon_tiu_conv2d(*args)),
                                     "blas": lambda: a @ b}, repeat * 3)
            # which kernel ran: Winograd's entry point accepts the operands (0) or not (1)
            # (an internal symbol of the runtime library, called as the instruction calls it)
            row["path"] = ("Winograd F(2x2,3x3)" if dev.lib.sophon_fast_winograd_f32(*args, None) == 0
                           else "direct GEMM")
            dev.close()
            row[f"emu{threads}"] = flops / min(times["emu"]) / 1e9
            row[f"blas{threads}"] = flops / min(times["blas"]) / 1e9 if threadpool_limits else float("nan")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------- report

ISA_FLAGS = ["avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512vbmi", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]


def host_isa() -> tuple[list, str]:
    """The instruction sets of ISA_FLAGS the CPU reports, and what the emulator's fast
    kernels pick from them (runtime/chip/sophon_device.c checks the same at run time)."""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    have = [f for f in ISA_FLAGS if f in flags]
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl", "fma"} <= flags:
        used = ("AVX-512" + (" + VNNI (int8)" if "avx512_vnni" in flags else "")
                + (" + VBMI (int8 tables)" if "avx512vbmi" in flags else ""))
    elif {"avx2", "fma"} <= flags:
        used = "AVX2 + FMA"
    else:
        used = "portable C"
    return have, used


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
    have, used = host_isa()
    load = os.getloadavg()
    return (f"machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
            f"instruction sets: {' '.join(have) or 'none of ' + ' '.join(ISA_FLAGS)}; "
            f"emulator kernels use: {used}\n"
            f"python {platform.python_version()}, numpy {np.__version__} ({blas}), tvm {tvm.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, CC={os.environ.get('CC', 'cc')}")


def _ms(values) -> str:
    return f"{min(values) * 1e3:.1f} / {statistics.median(values) * 1e3:.1f} ms"


def network_table(e2e: dict) -> list:
    lines = ["| network (batch 1) | precision | threads | emulator min / median | "
             "onnxruntime min / median | emulator / ort min / median | MACs on chip | output vs ort |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, precision, threads), r in e2e.items():
        if "error" in r:
            lines.append(f"| {name} | {precision} | {threads} | failed: {r['error'][:120]} | | | | |")
            continue
        err = (f"rel err {r['rel_err']:.1e}" if precision == "fp32"
               else f"cosine {r['cosine']:.4f}")
        lines.append(f"| {name} | {precision.upper()} | {threads} | {_ms(r['emulator'])} | "
                     f"{_ms(r['onnxruntime'])} | {min(r['ratio']):.2f}x / {statistics.median(r['ratio']):.2f}x | "
                     f"{r['mac_share']:.0%} | {err} |")
    return lines


def kernel_table(kernels: list, threads_list) -> list:
    lines = ["| ResNet-18 conv layer (one instruction) | GEMM M x K x N | path | threads | "
             "emulator GFLOP/s (best; direct conv's FLOPs / time) | numpy sgemm GFLOP/s (best) | "
             "emulator / sgemm |", "|---|---|---|---|---|---|---|"]
    for row in kernels:
        m, k, n = row["gemm"]
        for threads in threads_list:
            emu, blas = row[f"emu{threads}"], row[f"blas{threads}"]
            lines.append(f"| {row['name']} | {m} x {k} x {n} | {row['path']} | {threads} | {emu:.1f} | "
                         f"{blas:.1f} | {emu / blas:.0%} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", default=",".join(NETWORKS), help="networks, comma-separated")
    parser.add_argument("--precision", default=",".join(PRECISIONS), help="fp32,int8")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=None, help="timed rounds per configuration")
    parser.add_argument("--no-kernels", action="store_true", help="skip the conv-layer table")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get(
        "TVM_SOPHON_CACHE", Path.home() / ".cache" / "tvm_sophon")) / "host_speed")
    parser.add_argument("--worker", nargs=4, metavar=("NETWORK", "PRECISION", "THREADS", "REPEAT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        name, precision, threads, repeat = args.worker
        print(json.dumps(run_worker(name, precision, int(threads), int(repeat), args.workdir)))
        return 0

    repeat = args.repeat or (5 if args.quick else 15)
    threads_list = [int(t) for t in args.threads.split(",")]
    print(machine_info(), flush=True)
    e2e = end_to_end(args.only.split(","), args.precision.split(","), threads_list, repeat, args.workdir)
    lines = network_table(e2e)
    if not args.no_kernels:
        lines += ["", *kernel_table(conv_kernels(threads_list, repeat), threads_list)]
    load = os.getloadavg()
    print("\n".join(lines))
    print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
