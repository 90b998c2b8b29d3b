"""
1. A TensorFlow model on the chip, through TFLite
=================================================

TensorFlow models reach deployment as ``.tflite`` files. This tutorial trains a
small Keras CNN on the handwritten digits that ship with scikit-learn, converts
it to an FP32 ``.tflite`` file, compiles that file for the (emulated) Sophon
BM1680 and checks the chip's answers against TensorFlow Lite's own interpreter.

Run it as a script: ``python tutorials/01_tensorflow_tflite.py``.
"""

# %%
# Train a small CNN
# -----------------
# ``load_digits`` gives 1797 grey 8x8 images (values 0..16) with their labels.
# Keras works in NHWC, so each image becomes (8, 8, 1), scaled to 0..1.
import contextlib
import io
import os
import tempfile
import time
import warnings

# keep TensorFlow's start-up chatter out: its log level, and its oneDNN notice
# (which TF_CPP_MIN_LOG_LEVEL does not reach)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

digits = load_digits()
images = (digits.images / 16.0).astype("float32")[..., None]
labels = digits.target
train_x, test_x = images[:1500], images[1500:]
train_y, test_y = labels[:1500], labels[1500:]

tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([
    tf.keras.Input((8, 8, 1)),
    tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
    tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
    tf.keras.layers.Conv2D(32, 1, activation="relu"),
    tf.keras.layers.MaxPooling2D(2),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(64, activation="relu"),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(train_x, train_y, epochs=8, batch_size=32, verbose=0)
_, keras_accuracy = model.evaluate(test_x, test_y, verbose=0)
print(f"trained in {time.perf_counter() - start:.1f} s, Keras test accuracy {keras_accuracy:.3f}")

# %%
# Convert to TFLite with a fixed batch size
# -----------------------------------------
# The chip runs programs planned for static shapes. Converted as trained, the
# model's batch dimension is unknown and ``Flatten`` becomes a reshape whose
# target shape is computed at run time. Rebuilding the model on an input with
# ``batch_size=1`` (the same layers, so the same weights) makes every shape static.
inp = tf.keras.Input((8, 8, 1), batch_size=1, name="image")
out = inp
for layer in model.layers:
    out = layer(out)
fixed = tf.keras.Model(inp, out)

with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its SavedModel summary
    tflite_bytes = tf.lite.TFLiteConverter.from_keras_model(fixed).convert()
workdir = tempfile.mkdtemp(prefix="tvm_sophon_tutorial1_")
tflite_path = os.path.join(workdir, "digits.tflite")
with open(tflite_path, "wb") as f:
    f.write(tflite_bytes)
print(f"wrote {tflite_path} ({len(tflite_bytes)} bytes)")

# %%
# Import, partition, read the report
# ----------------------------------
# ``tvm_sophon.frontend.load`` reads the file with TVM's TFLite importer and
# normalises the Relax for the chip. TFLite's depthwise kernels arrive in the
# HWOI layout and its dense layers as ``permute_dims`` + ``matmul``; the pattern
# table takes both as they are. The offload report says what runs where.
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon.frontend import inputs_of, load

mod = load(tflite_path)
print("model inputs:", inputs_of(mod))
partitioned = tvm_sophon.partition_for_sophon(mod)
report = tvm_sophon.offload_report(partitioned)
print(report.format())
print(f"offloaded share of MACs: {100 * report.offloaded_mac_share:.1f}%")

# %%
# Build and run on the chip
# -------------------------
# ``tvm_sophon.build`` generates the chip programs, compiles them with the
# emulated runtime, and builds the host part with TVM. We run every test image.
ex = tvm_sophon.build(partitioned)
vm = relax.VirtualMachine(ex, tvm.cpu())
chip_probs = np.concatenate([vm["main"](tvm.runtime.tensor(x[None])).numpy() for x in test_x])
print(tvm_sophon.format_stats(tvm_sophon.last_run_stats(vm)))

# %%
# Compare with the TFLite interpreter
# -----------------------------------
# The interpreter runs the same file on the CPU. Both sides compute in float32,
# summing in different orders, so the probabilities agree to a few float32 ulps.
warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
interpreter = tf.lite.Interpreter(model_content=tflite_bytes)
interpreter.allocate_tensors()
in_index = interpreter.get_input_details()[0]["index"]
out_index = interpreter.get_output_details()[0]["index"]
ref_probs = []
for x in test_x:
    interpreter.set_tensor(in_index, x[None])
    interpreter.invoke()
    ref_probs.append(interpreter.get_tensor(out_index).copy())
ref_probs = np.concatenate(ref_probs)

max_error = float(np.max(np.abs(chip_probs - ref_probs)))
chip_accuracy = float(np.mean(chip_probs.argmax(1) == test_y))
ref_accuracy = float(np.mean(ref_probs.argmax(1) == test_y))
print(f"max abs error vs TFLite interpreter: {max_error:.3g}")
print(f"accuracy on {len(test_y)} test digits: chip {chip_accuracy:.3f}, TFLite {ref_accuracy:.3f}")

# One summary line: the share of the work on the chip and the largest difference
# from TFLite's interpreter.
print(f"RESULT tutorial=1 offloaded_mac_share={report.offloaded_mac_share:.4f} max_abs_error={max_error:.3g}")
