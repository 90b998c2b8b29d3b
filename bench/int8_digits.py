"""Benchmark for INT8 (issue #4): a small CNN trained on scikit-learn's bundled
digits (8x8 images, no download), FP32 against INT8 post-training quantization,
both run on the emulated chip (bm1684 profile), test accuracy of each, the
minimum per-layer cosine and the layers that fell back to FP32.

    python bench/int8_digits.py            # needs the tutorials extra (torch, scikit-learn)
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import tvm
from sklearn.datasets import load_digits
from tvm import relax

import tvm_sophon

BATCH = 60


class DigitsCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc = torch.nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def data(seed=0):
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[:, None]
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(0.7 * len(x))
    return (x[order[:split]], y[order[:split]]), (x[order[split:]], y[order[split:]])


def train(x, y, epochs=40, seed=0):
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for i in range(0, len(xt), 64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[i:i + 64]), yt[i:i + 64])
            loss.backward()
            opt.step()
    return model.eval()


def relax_model(model: DigitsCNN, batch: int):
    """The trained network as a Relax module (NCHW), weights as params."""
    p = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    bb = relax.BlockBuilder()
    x = relax.Var("image", relax.TensorType((batch, 1, 8, 8), "float32"))
    names = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]
    vars_ = {n: relax.Var(n.replace(".", "_"), relax.TensorType(p[n].shape, "float32")) for n in names}

    def conv(h, name, cout):
        y = bb.emit(relax.op.nn.conv2d(h, vars_[f"{name}.weight"], padding=1))
        y = bb.emit(relax.op.add(y, relax.op.reshape(vars_[f"{name}.bias"], (1, cout, 1, 1))))
        return bb.emit(relax.op.nn.relu(y))

    with bb.function("main", [x, *vars_.values()]):
        with bb.dataflow():
            h = conv(x, "conv1", 16)
            h = bb.emit(relax.op.nn.max_pool2d(conv(h, "conv2", 32), 2, 2))
            h = bb.emit(relax.op.reshape(h, (batch, 32 * 16)))
            h = bb.emit(relax.op.matmul(h, relax.op.permute_dims(vars_["fc.weight"])))
            out = bb.emit_output(bb.emit(relax.op.add(h, vars_["fc.bias"])))
        bb.emit_func_output(out)
    return bb.get(), {v.name: p[n] for n, v in vars_.items()}


def accuracy(ex, x, y) -> float:
    vm = relax.VirtualMachine(ex, tvm.cpu())
    correct = 0
    for i in range(0, len(x) - len(x) % BATCH, BATCH):
        logits = vm["main"](tvm.runtime.tensor(x[i:i + BATCH])).numpy()
        correct += int((logits.argmax(1) == y[i:i + BATCH]).sum())
    return correct / (len(x) - len(x) % BATCH)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="kl", choices=["kl", "max", "percentile"])
    parser.add_argument("--chip", default="bm1684")
    args = parser.parse_args(argv)
    (xtr, ytr), (xte, yte) = data()
    start = time.perf_counter()
    model = train(xtr, ytr)
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean())
    print(f"trained in {time.perf_counter() - start:.1f} s on {len(xtr)} images; PyTorch test accuracy "
          f"{100 * torch_acc:.2f}% on {len(xte)} images")
    mod, params = relax_model(model, BATCH)
    fp32 = accuracy(tvm_sophon.build(mod, params, chip=args.chip), xte, yte)
    calibration = [{"image": xtr[i:i + BATCH]} for i in range(0, 8 * BATCH, BATCH)]
    quantized = tvm_sophon.quantize(mod, calibration, params=params, method=args.method)
    report = tvm_sophon.quantize_report(quantized)
    int8 = accuracy(tvm_sophon.build(quantized, chip=args.chip), xte, yte)
    print(report.format())
    print()
    print(f"{'':<28} {'accuracy':>9}")
    print(f"{'FP32 on ' + args.chip:<28} {100 * fp32:>8.2f}%")
    print(f"{'INT8 on ' + args.chip + ' (' + args.method + ')':<28} {100 * int8:>8.2f}%")
    print(f"difference: {100 * (fp32 - int8):+.2f} points; minimum per-layer cosine {report.min_cosine:.5f}; "
          f"fell back to FP32: {', '.join(report.fallback) or 'none'}")
    return 0 if abs(fp32 - int8) <= 0.01 and report.min_cosine >= 0.99 else 1


if __name__ == "__main__":
    sys.exit(main())
