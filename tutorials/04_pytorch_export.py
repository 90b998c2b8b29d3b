"""
4. A PyTorch model on the chip, through torch.export
====================================================

``torch.export`` captures a PyTorch model as a graph of ATen ops that TVM
imports directly, with no file format in between. This tutorial trains a small
CNN with batch norm on scikit-learn's digits, exports it, compiles it for the
(emulated) Sophon BM1680 and checks it against eager PyTorch.

Run it as a script: ``python tutorials/04_pytorch_export.py``.
"""

# %%
# Train a small CNN
# -----------------
# Every convolution is followed by a ``BatchNorm2d``; ``Conv2d`` has a bias by
# default, which is the case TVM's own ``FoldBatchnormToConv2D`` does not fold.
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

# keep PyTorch's chatter out: a deprecation notice from inside torch.export
warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)

digits = load_digits()
images = (digits.images / 16.0).astype("float32")[:, None]
labels = digits.target
train_x, test_x = torch.from_numpy(images[:1500]), images[1500:]
train_y, test_y = torch.from_numpy(labels[:1500]), labels[1500:]


class DigitNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU6(),  # depthwise
            nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


torch.manual_seed(0)
model = DigitNet()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
start = time.perf_counter()
for epoch in range(6):
    for batch in torch.randperm(len(train_x)).split(64):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(train_x[batch]), train_y[batch]).backward()
        optimizer.step()
model.eval()  # batch norm now uses its running statistics: a per-channel affine map
print(f"trained in {time.perf_counter() - start:.1f} s")

# %%
# Export and import
# -----------------
# ``torch.export.export`` traces the model for one example input (one image, so
# every shape is static). ``tvm_sophon.frontend.from_exported_program`` imports
# it with TVM's PyTorch frontend, binds the weights as constants and normalises.
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon.frontend import from_exported_program

example = torch.from_numpy(test_x[:1])
program = torch.export.export(model, (example,))
raw = from_exported_program(program, normalise=False)
mod = from_exported_program(program)


def count_ops(m):
    counts = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[expr.op.name] = counts.get(expr.op.name, 0) + 1

    relax.analysis.post_order_visit(m["main"].body, visit)
    return counts


# %%
# What the normalisation does
# ---------------------------
# Each ``batch_norm`` after a convolution is folded into it:
# ``bn(conv(x, W) + b) = conv(x, W * s) + (b - mean) * s + beta`` with
# ``s = gamma / sqrt(var + eps)``. The Linear layer's bias arrives as
# ``add(bias, matmul)``; it is turned around to ``add(matmul, bias)`` so that it
# fuses into the chip's fully connected instruction.
print("as imported:", count_ops(raw))
print("normalised: ", count_ops(mod))
print("without normalising:", tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(raw)).format())

# %%
# Compile and run on the chip
# ---------------------------
partitioned = tvm_sophon.partition_for_sophon(mod)
report = tvm_sophon.offload_report(partitioned)
print(report.format())
vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
# The exported program returns a tuple of outputs; this model has one.
chip_logits = np.concatenate([vm["main"](tvm.runtime.tensor(x[None]))[0].numpy() for x in test_x])
print(tvm_sophon.format_stats(tvm_sophon.last_run_stats(vm)))

# %%
# Compare with eager PyTorch
# --------------------------
# Folding batch norm changes the order of float32 operations (PyTorch
# normalises after the convolution, the chip scales the weights before), so the
# logits agree to float32 rounding of their magnitude, not bit for bit.
with torch.no_grad():
    ref_logits = model(torch.from_numpy(test_x)).numpy()
max_error = float(np.max(np.abs(chip_logits - ref_logits)))
print(f"max abs error vs eager PyTorch: {max_error:.3g} (logits up to {np.abs(ref_logits).max():.1f})")
print(f"accuracy on {len(test_y)} test digits: chip {np.mean(chip_logits.argmax(1) == test_y):.3f}, "
      f"PyTorch {np.mean(ref_logits.argmax(1) == test_y):.3f}")
print(f"RESULT tutorial=4 offloaded_mac_share={report.offloaded_mac_share:.4f} max_abs_error={max_error:.3g}")
