"""
2. A TensorFlow INT8 model on the chip
======================================

The same digits CNN as tutorial 1, converted with TFLite's full-integer
post-training quantization: int8 weights and activations, int32 biases. The
BM1680 is FP32 only, so this model runs on the ``bm1684`` profile, whose INT8
datapath computes exactly as TFLite's integer kernels do. We check every output
against the TFLite interpreter, bit for bit, and compare accuracies.

Run it as a script: ``python tutorials/02_tensorflow_int8.py``.
"""

# %%
# Train the model
# ---------------
import contextlib
import io
import os
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's log messages out

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

# the converter warns that the int8 input has no range statistics: it takes them
# from the representative samples
warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")

digits = load_digits()
images = (digits.images / 16.0).astype("float32")[..., None]
labels = digits.target
train_x, test_x = images[:1500], images[1500:]
train_y, test_y = labels[:1500], labels[1500:]

tf.keras.utils.set_random_seed(0)
inp = tf.keras.Input((8, 8, 1), batch_size=1, name="image")
x = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
x = tf.keras.layers.Conv2D(32, 1, activation="relu")(x)
x = tf.keras.layers.MaxPooling2D(2)(x)
x = tf.keras.layers.Flatten()(x)
x = tf.keras.layers.Dense(64, activation="relu")(x)
out = tf.keras.layers.Dense(10)(x)
model = tf.keras.Model(inp, out)
model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
# One sample per step (batch_size=1) trains slowly but well: about 40 s here.
# A line per epoch shows how it goes.
print(f"training on {len(train_x)} digits, 8 epochs ...", flush=True)
progress = tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(
    f"  epoch {epoch + 1}/8: loss {logs['loss']:.3f}, accuracy {logs['accuracy']:.3f}", flush=True))
model.fit(train_x, train_y, epochs=8, batch_size=1, verbose=0, callbacks=[progress])

# %%
# Full-integer quantization
# -------------------------
# The converter calibrates activation ranges on representative samples and
# writes an int8 model: inputs and outputs are int8 too.
def representative():
    for x in train_x[:200]:
        yield [x[None]]


converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
with contextlib.redirect_stdout(io.StringIO()):
    tflite_bytes = converter.convert()
path = os.path.join(tempfile.mkdtemp(prefix="tvm_sophon_tutorial2_"), "digits_int8.tflite")
with open(path, "wb") as f:
    f.write(tflite_bytes)

# %%
# Import and compile for the bm1684
# ---------------------------------
# TVM's importer expresses each int8 layer as ``dequantize -> float op ->
# quantize``; the ``sophon.q*`` patterns take those chains whole, and the
# codegen computes TFLite's per-channel multipliers and shifts at compile time.
# (Asking for the bm1680 instead raises an error that names the bm1684.)
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon.frontend import load

mod = load(path)
partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
report = tvm_sophon.offload_report(partitioned)
print(report.format())
vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())

# %%
# Run both and compare
# --------------------
# The input is quantized as TFLite asks (scale and zero point of the input tensor).
warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
interpreter = tf.lite.Interpreter(
    model_content=tflite_bytes,
    # the reference kernels are TFLite's specification of its integer arithmetic
    experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
interpreter.allocate_tensors()
in_detail = interpreter.get_input_details()[0]
out_index = interpreter.get_output_details()[0]["index"]
scale, zero_point = in_detail["quantization"]

chip_out, ref_out = [], []
for x in test_x:
    q = np.clip(np.round(x / scale) + zero_point, -128, 127).astype("int8")[None]
    interpreter.set_tensor(in_detail["index"], q)
    interpreter.invoke()
    ref_out.append(interpreter.get_tensor(out_index).copy())
    chip_out.append(vm["main"](tvm.runtime.tensor(q)).numpy())
chip_out, ref_out = np.concatenate(chip_out), np.concatenate(ref_out)
max_error = int(np.abs(chip_out.astype(np.int32) - ref_out.astype(np.int32)).max())
print(f"outputs equal to the TFLite interpreter's: {np.array_equal(chip_out, ref_out)} "
      f"(max difference {max_error})")
_, keras_accuracy = model.evaluate(test_x, test_y, verbose=0)
print(f"accuracy on {len(test_y)} digits: Keras FP32 {keras_accuracy:.3f}, "
      f"chip INT8 {np.mean(chip_out.argmax(1) == test_y):.3f}, TFLite INT8 {np.mean(ref_out.argmax(1) == test_y):.3f}")
print(tvm_sophon.format_stats(tvm_sophon.last_run_stats(vm)))
print(f"RESULT tutorial=2 offloaded_mac_share={report.offloaded_mac_share:.4f} max_abs_error={max_error}")
