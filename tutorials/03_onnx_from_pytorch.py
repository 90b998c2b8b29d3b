"""
3. An ONNX model on the chip
============================

ONNX is the exchange format most training frameworks export to. This tutorial
trains a small PyTorch CNN (convolutions with batch norm and ReLU6) on
scikit-learn's digits, exports it to ONNX, compiles the ``.onnx`` file for the
(emulated) Sophon BM1680 and checks the result against onnxruntime.

Run it as a script: ``python tutorials/03_onnx_from_pytorch.py``.
"""

# %%
# Train a small CNN in PyTorch
# ----------------------------
# NCHW images of 1x8x8, values scaled to 0..1. ``ReLU6`` is there on purpose:
# ONNX spells it ``Clip(x, 0, 6)``, which TVM's ONNX importer turns into two
# TIR loops the chip's patterns would not recognise (see below).
import logging
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

# keep PyTorch's chatter out: a deprecation notice from inside torch.export and
# the ONNX exporter's note that torchvision (which this model does not use) is missing
warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
logging.getLogger("torch.onnx").setLevel(logging.ERROR)

digits = load_digits()
images = (digits.images / 16.0).astype("float32")[:, None]
labels = digits.target
train_x, test_x = torch.from_numpy(images[:1500]), images[1500:]
train_y, test_y = torch.from_numpy(labels[:1500]), labels[1500:]

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    nn.Linear(32, 10),
)
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
start = time.perf_counter()
for epoch in range(6):
    for batch in torch.randperm(len(train_x)).split(64):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
        loss.backward()
        optimizer.step()
model.eval()
print(f"trained in {time.perf_counter() - start:.1f} s")

# %%
# Export to ONNX
# --------------
# One image per call, so every shape in the file is static. The exporter folds
# each BatchNorm into the convolution before it.
workdir = tempfile.mkdtemp(prefix="tvm_sophon_tutorial3_")
onnx_path = os.path.join(workdir, "digits.onnx")
example = torch.from_numpy(test_x[:1])
torch.onnx.export(model, (example,), onnx_path, input_names=["image"], output_names=["logits"],
                  dynamo=True, external_data=False, verbose=False)

import onnx

print("ONNX ops:", [node.op_type for node in onnx.load(onnx_path).graph.node])

# %%
# What the normalisation does
# ---------------------------
# TVM's importer emits ``Clip`` as ``call_tir`` to a maximum and a minimum loop
# nest. ``tvm_sophon.normalize`` recognises those loops by their body, lifts them
# back to ``relax.maximum``/``relax.minimum``, and merges the pair into
# ``relax.clip``, which fuses into the convolution before it on the chip.
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

import tvm_sophon
from tvm_sophon.frontend import load
from tvm_sophon.normalize import normalize


def count_ops(mod):
    counts = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[expr.op.name] = counts.get(expr.op.name, 0) + 1

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return counts


raw = from_onnx(onnx.load(onnx_path))
print("as imported:  ", count_ops(raw))
print("normalised:   ", count_ops(normalize(raw)))
# Without the normalisation the clip stays on the host, and splits the chip's
# work into two regions with a round trip through host memory between them.
print("without normalising:", tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(raw)).format())

# %%
# Compile for the chip
# --------------------
# ``tvm_sophon.frontend.load`` does the import and the normalisation in one call.
mod = load(onnx_path)
partitioned = tvm_sophon.partition_for_sophon(mod)
report = tvm_sophon.offload_report(partitioned)
print(report.format())
vm = relax.VirtualMachine(tvm_sophon.build(partitioned), tvm.cpu())
chip_logits = np.concatenate([vm["main"](tvm.runtime.tensor(x[None])).numpy() for x in test_x])
print(tvm_sophon.format_stats(tvm_sophon.last_run_stats(vm)))

# %%
# Compare with onnxruntime
# ------------------------
# Both compute in float32 and differ only in summation order; the logits are of
# order 10, so the differences are a few float32 ulps of that.
import onnxruntime

session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
ref_logits = np.concatenate([session.run(None, {"image": x[None]})[0] for x in test_x])
max_error = float(np.max(np.abs(chip_logits - ref_logits)))
print(f"max abs error vs onnxruntime: {max_error:.3g} (logits up to {np.abs(ref_logits).max():.1f})")
print(f"accuracy on {len(test_y)} test digits: chip {np.mean(chip_logits.argmax(1) == test_y):.3f}, "
      f"onnxruntime {np.mean(ref_logits.argmax(1) == test_y):.3f}")
print(f"RESULT tutorial=3 offloaded_mac_share={report.offloaded_mac_share:.4f} max_abs_error={max_error:.3g}")
