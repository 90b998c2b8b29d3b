"""Small models for the frontend, normalisation and CLI tests, built in code
(no downloads) and cached per process: building a TFLite file starts TensorFlow,
which takes seconds, so every test of a session shares one."""
from __future__ import annotations

import contextlib
import functools
import io
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@functools.lru_cache(maxsize=None)
def tflite_cnn() -> bytes:
    """An untrained Keras CNN as an FP32 .tflite flatbuffer: conv, depthwise conv
    with ReLU6, 1x1 conv, max pool, flatten, two dense layers. Input (1, 8, 8, 1)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), batch_size=1, name="image"),
        tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
        tf.keras.layers.Conv2D(16, 1, activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@functools.lru_cache(maxsize=None)
def tflite_lstm() -> bytes:
    """An untrained Keras LSTM(8) over 6 steps of 5 features, then Dense(3), as an
    FP32 .tflite: the LSTM converts to a TFLite While loop (loop, cond and body
    functions after import, the loop function calling itself)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((6, 5), batch_size=1, name="sequence"),
        tf.keras.layers.LSTM(8),
        tf.keras.layers.Dense(3),
    ])
    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@functools.lru_cache(maxsize=None)
def tflite_flatten_1x1() -> bytes:
    """An untrained Keras net whose Flatten meets a 1x1 feature map (as VGG19's
    does at 32x32): the converter folds Flatten into the FULLY_CONNECTED, which
    declares a (1, 3) output. Input (1, 6, 6, 3)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((6, 6, 3), batch_size=1, name="image"),
        tf.keras.layers.Conv2D(5, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(4),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(7, activation="relu", bias_initializer="random_normal"),
        tf.keras.layers.Dense(3, bias_initializer="random_normal"),
    ])
    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def tflite_reference(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """TensorFlow Lite's own interpreter on one input (resized to x's shape where the
    model's batch is dynamic)."""
    import warnings

    import tensorflow as tf

    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    interpreter = tf.lite.Interpreter(model_content=model_bytes)
    index = interpreter.get_input_details()[0]["index"]
    if list(interpreter.get_input_details()[0]["shape"]) != list(x.shape):  # a dynamic batch
        interpreter.resize_tensor_input(index, list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def tflite_input_name(model_bytes: bytes) -> str:
    import tflite

    graph = tflite.Model.GetRootAsModel(model_bytes, 0).Subgraphs(0)
    return graph.Tensors(graph.Inputs(0)).Name().decode()


def _onnx_const(name, array):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array), name)


@functools.lru_cache(maxsize=None)
def onnx_clip_cnn(batch="static") -> bytes:
    """An ONNX CNN written node by node: Conv -> Clip(0, 6) -> Conv -> Relu ->
    MaxPool -> Flatten -> Gemm. Input "image" (1, 1, 8, 8), or (N, 1, 8, 8) with
    batch="dynamic"."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    f32 = lambda *s: (rng.standard_normal(s) * 0.3).astype("float32")  # noqa: E731
    inits = [
        _onnx_const("w1", f32(8, 1, 3, 3)), _onnx_const("b1", f32(8)),
        _onnx_const("lo", np.float32(0.0)), _onnx_const("hi", np.float32(6.0)),
        _onnx_const("w2", f32(16, 8, 3, 3)), _onnx_const("b2", f32(16)),
        _onnx_const("fc_w", f32(10, 16 * 4 * 4)), _onnx_const("fc_b", f32(10)),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    n = 1 if batch == "static" else "N"
    graph = helper.make_graph(
        nodes, "clip_cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [n, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@functools.lru_cache(maxsize=None)
def onnx_sum_residual() -> bytes:
    """An ONNX residual block written as the exporters do: Conv -> Relu -> Conv,
    ``Sum`` with the block input, Relu, a Reshape to the same shape, Dropout,
    Flatten, MatMul. Input "x" (1, 5, 7, 7)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(2)
    f32 = lambda *s: (rng.standard_normal(s) * 0.3).astype("float32")  # noqa: E731
    inits = [_onnx_const("w1", f32(5, 5, 3, 3)), _onnx_const("b1", f32(5)), _onnx_const("w2", f32(5, 5, 3, 3)),
             _onnx_const("shape", np.array([1, 5, 7, 7], dtype=np.int64)), _onnx_const("fw", f32(245, 3))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Sum", ["c2", "x"], ["s"]),
             helper.make_node("Relu", ["s"], ["r2"]),
             helper.make_node("Reshape", ["r2", "shape"], ["r3"]),
             helper.make_node("Dropout", ["r3"], ["d"]),
             helper.make_node("Flatten", ["d"], ["f"]),
             helper.make_node("MatMul", ["f", "fw"], ["y"])]
    graph = helper.make_graph(nodes, "sum_residual",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@functools.lru_cache(maxsize=None)
def onnx_conv_and_nms() -> bytes:
    """A Conv beside a NonMaxSuppression (an op the chip has no pattern for).
    Inputs x (1, 1, 8, 8), boxes (1, 6, 4), scores (1, 1, 6)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    inits = [_onnx_const("w", rng.standard_normal((4, 1, 3, 3)).astype("float32")),
             _onnx_const("max_boxes", np.array([3], dtype=np.int64)),
             _onnx_const("iou", np.array([0.5], dtype=np.float32))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_boxes", "iou"], ["selected"])]
    graph = helper.make_graph(
        nodes, "conv_nms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 6, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8]),
         helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnxruntime_run(model_bytes: bytes, feeds: dict) -> list:
    import onnxruntime

    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def torch_bn_cnn():
    """A PyTorch CNN in eval mode with BatchNorm after biased, unbiased and
    depthwise convolutions, ReLU6 and a Linear layer. Input (1, 1, 8, 8)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    # non-trivial running statistics, so that folding them is visible in the numbers
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@functools.lru_cache(maxsize=None)
def tflite_dynamic_batch_cnn() -> bytes:
    """A Keras CNN exported as Keras does by default: batch dimension dynamic (-1),
    so Flatten's target shape is computed at run time (SHAPE, STRIDED_SLICE, PACK,
    RESHAPE). Input "pic" (N, 8, 8, 1)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), name="pic"),
        tf.keras.layers.Conv2D(4, 3, activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10),
    ])
    with contextlib.redirect_stdout(io.StringIO()):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def int8_tflite(model, representative) -> bytes:
    """A Keras model converted to full-integer TFLite (TFLITE_BUILTINS_INT8, int8
    input and output), calibrated on ``representative()``'s batches."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def int8_inputs(mod, seed) -> list:
    """Random int8 inputs for the parameters of ``mod["main"]``; the first holds every
    int8 value once per 256 elements (a unary op is then checked on its whole domain
    where the tensor is that big)."""
    rng = np.random.default_rng(seed)
    xs = []
    for i, p in enumerate(mod["main"].params):
        shape = [int(d) for d in p.ty.shape.values]
        x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        if i == 0:
            x = np.resize(rng.permutation(256) - 128, shape).astype(np.int8)
        xs.append(x)
    return xs
