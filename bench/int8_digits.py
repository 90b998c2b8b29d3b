"""Benchmark for INT8 (issues #4, #11): small networks trained on scikit-learn's
bundled digits (8x8 images, no download), each run four ways, test accuracy side
by side:
  FP32 on the chip       the trained network (imported from its float TFLite file)
  INT8 PTQ on the chip   tvm_sophon.quantize of that FP32 module (bm1684)
  TFLite INT8            TFLite's own full-integer conversion, TFLite interpreter
                         (reference kernels)
  TFLite INT8 on chip    that pre-quantized TFLite file imported and run on the chip
Architectures: a plain CNN (conv, conv, max pool, dense), a MobileNetV3-style net
(hard-swish, depthwise, squeeze-excite with hard-sigmoid, residual, global average
pool) and an EfficientNet-style one (swish, MBConv with squeeze-excite, residual,
global average pool), each ending in a softmax; and two PyTorch nets imported with
torch.export (NCHW, the global average pool an adaptive_avg_pool2d + flatten, as
tvm_sophon.models writes MobileNetV2 and ResNet): a MobileNetV2-style one (relu6
inverted residuals) and a ResNet-style one (basic blocks, a strided projection),
ending in logits. The PyTorch nets have no TFLite columns. "top-1 = FP32" is the
share of test images on which INT8 PTQ on the chip predicts the FP32 model's class.

    python bench/int8_digits.py [--arch cnn,mobilenetv3,efficientnet,mobilenetv2_pt,resnet_pt] [--method kl]
    (needs TensorFlow, PyTorch and scikit-learn)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402
import tvm  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from tvm import relax  # noqa: E402

import tvm_sophon  # noqa: E402
from tvm_sophon.frontend import load  # noqa: E402

BATCH = 60
L = tf.keras.layers


def _hard_sigmoid(x):
    return L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def cnn(x):
    h = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    h = L.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = L.MaxPooling2D(2)(h)
    return L.Dense(10, activation="softmax")(L.Flatten()(h))


def mobilenetv3(x):
    h = L.Activation("hard_swish")(L.Conv2D(16, 3, padding="same")(x))
    e = L.ReLU()(L.Conv2D(32, 1)(h))
    e = L.ReLU()(L.DepthwiseConv2D(3, padding="same")(e))
    s = L.GlobalAveragePooling2D(keepdims=True)(e)
    s = _hard_sigmoid(L.Conv2D(32, 1)(L.ReLU()(L.Conv2D(8, 1)(s))))
    h = L.Add()([h, L.Conv2D(16, 1)(L.Multiply()([e, s]))])
    h = L.Activation("hard_swish")(L.Conv2D(48, 1)(h))
    return L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(h))


def efficientnet(x):
    h = L.Activation("swish")(L.Conv2D(16, 3, padding="same")(x))
    e = L.Activation("swish")(L.Conv2D(48, 1)(h))
    e = L.Activation("swish")(L.DepthwiseConv2D(3, padding="same")(e))
    s = L.GlobalAveragePooling2D(keepdims=True)(e)
    s = L.Activation("sigmoid")(L.Conv2D(48, 1)(L.Activation("swish")(L.Conv2D(4, 1)(s))))
    h = L.Add()([h, L.Conv2D(16, 1)(L.Multiply()([e, s]))])
    h = L.Activation("swish")(L.Conv2D(64, 1)(h))
    return L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(h))


def _torch_archs():
    import torch
    from torch import nn

    def conv(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU6):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.body = nn.Sequential(conv(cin, hidden, 1), conv(hidden, hidden, 3, stride, hidden),
                                      conv(hidden, cout, 1, act=None))
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(conv(cin, cout, 3, stride, act=nn.ReLU), conv(cout, cout, 3, act=None))
            self.proj = conv(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.body(x) + self.proj(x))

    def head(channels):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))

    return {
        "mobilenetv2_pt": lambda: nn.Sequential(conv(1, 16), InvertedResidual(16, 16, 1, 1),
                                                InvertedResidual(16, 24, 2, 6), InvertedResidual(24, 24, 1, 6),
                                                conv(24, 64, 1), head(64)),
        "resnet_pt": lambda: nn.Sequential(conv(1, 16, act=nn.ReLU), BasicBlock(16, 16, 1), BasicBlock(16, 32, 2),
                                           head(32)),
    }


ARCHS = {"cnn": cnn, "mobilenetv3": mobilenetv3, "efficientnet": efficientnet,
         "mobilenetv2_pt": None, "resnet_pt": None}   # None: a PyTorch net (_torch_archs)


def data(seed=0):
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]   # NHWC
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(0.7 * len(x))
    return (x[order[:split]], y[order[:split]]), (x[order[split:]], y[order[split:]])


def train(arch: str, x, y, epochs=60, seed=0) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8, 8, 1))
    model = tf.keras.Model(inp, ARCHS[arch](inp))
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    fixed = tf.keras.Input((8, 8, 1), batch_size=BATCH)   # the chip's programs take a static batch
    export = tf.keras.Model(fixed, ARCHS[arch](fixed))
    export.set_weights(model.get_weights())
    return export


def train_torch(arch: str, x, y, epochs=60, seed=0):
    """The PyTorch net trained on NCHW digits, exported at the bench's static batch
    and imported (tvm_sophon.frontend.from_exported_program)."""
    import torch

    from tvm_sophon.frontend import from_exported_program

    torch.manual_seed(seed)
    model = _torch_archs()[arch]()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    xs, ys = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)
    order = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        for idx in np.array_split(order.permutation(len(xs)), max(1, len(xs) // 64)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        program = torch.export.export(model, (torch.zeros(BATCH, 1, 8, 8),))
    return from_exported_program(program)


def _nchw(run):
    return lambda batch: run(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


def predictions(run, x) -> np.ndarray:
    return np.concatenate([run(b).argmax(-1) for b in _batches(x)])


def tflite(model, calibration=None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([b] for b in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _batches(x):
    return [x[i:i + BATCH] for i in range(0, len(x) - len(x) % BATCH, BATCH)]


def accuracy(run, x, y) -> float:
    correct = sum(int((run(b).argmax(-1) == y[i * BATCH:(i + 1) * BATCH]).sum()) for i, b in enumerate(_batches(x)))
    return correct / (len(x) - len(x) % BATCH)


def on_chip(ex):
    vm = relax.VirtualMachine(ex, tvm.cpu())
    def run(batch):
        out = vm["main"](tvm.runtime.tensor(batch))
        return (out if hasattr(out, "numpy") else out[0]).numpy()   # torch.export returns a tuple
    return run


def quantized_input(buf: bytes):
    interp = tf.lite.Interpreter(model_content=buf)
    scale, zp = interp.get_input_details()[0]["quantization"]
    return lambda batch: np.clip(np.round(batch / scale) + zp, -128, 127).astype(np.int8)


def tflite_runner(buf: bytes):
    """TFLite's interpreter with its reference kernels (the specification the chip
    matches bit for bit; the default kernels round some ops 1 LSB apart)."""
    interp = tf.lite.Interpreter(model_content=buf, experimental_op_resolver_type=(
        tf.lite.experimental.OpResolverType.BUILTIN_REF))
    interp.allocate_tensors()
    to_int8 = quantized_input(buf)

    def run(batch):
        interp.set_tensor(interp.get_input_details()[0]["index"], to_int8(batch))
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])
    return run


def bench(arch: str, method: str, chip: str, train_set, test_set, tmp: Path) -> dict:
    (xtr, ytr), (xte, yte) = train_set, test_set
    start = time.perf_counter()
    is_torch = ARCHS[arch] is None
    if is_torch:
        mod = train_torch(arch, xtr, ytr)
    else:
        model = train(arch, xtr, ytr)
    trained = time.perf_counter() - start
    calibration = _batches(xtr)[:8]
    if is_torch:
        calibration = [np.ascontiguousarray(b.transpose(0, 3, 1, 2)) for b in calibration]
    else:
        fp32_file, int8_file = tmp / f"{arch}.tflite", tmp / f"{arch}_int8.tflite"
        fp32_file.write_bytes(tflite(model))
        int8_file.write_bytes(tflite(model, calibration))
        mod = load(fp32_file)
    layout = _nchw if is_torch else (lambda run: run)
    row = {"arch": arch, "trained_s": trained}
    fp32_run = layout(on_chip(tvm_sophon.build(mod, chip=chip)))
    row["fp32"] = accuracy(fp32_run, xte, yte)
    quantized = tvm_sophon.quantize(mod, [[b] for b in calibration], method=method, progress=False)
    report = tvm_sophon.quantize_report(quantized)
    partitioned = tvm_sophon.partition_for_sophon(quantized, chip=chip)
    offload = tvm_sophon.offload_report(partitioned)
    ptq_run = layout(on_chip(tvm_sophon.build(partitioned, chip=chip)))
    row["ptq"] = accuracy(ptq_run, xte, yte)
    row["agree"] = float(np.mean(predictions(ptq_run, xte) == predictions(fp32_run, xte)))
    row["ptq_layers"] = f"{sum(l.int8 for l in report.layers)}/{len(report.layers)}"
    row["ptq_regions"] = len(offload.regions)
    row["ptq_host_ops"] = len(offload.host_ops)
    row["min_cosine"] = report.min_cosine
    row["tflite_int8"] = row["tflite_int8_chip"] = None
    if not is_torch:
        buf = int8_file.read_bytes()
        row["tflite_int8"] = accuracy(tflite_runner(buf), xte, yte)
        try:
            to_int8, ex = quantized_input(buf), tvm_sophon.build(load(int8_file), chip=chip)
            run = on_chip(ex)
            row["tflite_int8_chip"] = accuracy(lambda b: run(to_int8(b)), xte, yte)
        except tvm_sophon.SophonError as err:   # an op the chip's import or INT8 path lacks
            row["tflite_int8_chip_error"] = str(err).splitlines()[0][:100]
    print(report.format())
    print(f"offload of the PTQ model: {len(offload.regions)} region(s), {len(offload.host_ops)} host op(s)\n")
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=",".join(ARCHS), help=f"comma-separated, from {', '.join(ARCHS)}")
    parser.add_argument("--method", default="kl", choices=["kl", "max", "percentile"])
    parser.add_argument("--chip", default="bm1684")
    args = parser.parse_args(argv)
    archs = args.arch.split(",")
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        parser.error(f"unknown architecture {unknown[0]!r}; choose from {', '.join(ARCHS)}")
    train_set, test_set = data()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            rows.append(bench(arch, args.method, args.chip, train_set, test_set, Path(tmp)))
    n = len(test_set[0]) - len(test_set[0]) % BATCH
    print(f"test accuracy on {n} digits images ({args.chip}, PTQ method {args.method})")
    print(f"{'architecture':<14} {'FP32 chip':>10} {'INT8 PTQ chip':>14} {'top-1 = FP32':>13} {'TFLite INT8':>12} "
          f"{'TFLite INT8 chip':>17} {'PTQ int8 layers':>16} {'regions':>8} {'host ops':>9} {'min cosine':>11}")
    ok = True
    pct = lambda v: f"{100 * v:.2f}%" if v is not None else "n/a"  # noqa: E731
    for r in rows:
        print(f"{r['arch']:<14} {pct(r['fp32']):>10} {pct(r['ptq']):>14} {pct(r['agree']):>13} "
              f"{pct(r['tflite_int8']):>12} {pct(r['tflite_int8_chip']):>17} {r['ptq_layers']:>16} "
              f"{r['ptq_regions']:>8} {r['ptq_host_ops']:>9} {r['min_cosine']:>11.5f}")
        if "tflite_int8_chip_error" in r:
            print(f"  TFLite INT8 on the chip: {r['tflite_int8_chip_error']}")
        ok &= abs(r["fp32"] - r["ptq"]) <= 0.02
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
