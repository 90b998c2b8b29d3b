"""The model zoo of issue #10: today's CNN families built in code with random
weights, each with its own framework's interpreter as the reference.

    model = zoo_models.build("densenet121", "small", workdir)
    mod = tvm_sophon.frontend.load(model.path)        # the file as a user has it
    expected = model.reference()                      # TFLite interpreter / onnxruntime

Two families of builders:

- **Keras applications** (``tf.keras.applications.X(weights=None, ...)``),
  converted to FP32 TFLite with ``tf.lite.TFLiteConverter`` at batch 1; the
  reference is TFLite's interpreter. The classifier has no softmax
  (``classifier_activation=None``): logits show an error a saturated softmax hides.
- **PyTorch modules written here** (torchvision cannot be installed beside torch
  2.13), exported with ``torch.onnx.export(..., dynamo=True)`` (the exporter that
  goes through ``torch.export`` and onnxscript); the reference is onnxruntime.

Random weights and unit scale: BatchNorm statistics come from one training-mode
pass over a batch of random inputs with momentum 0 (Keras) / 1 (PyTorch), so every
BatchNorm's moving statistics are the batch's and activations keep unit scale;
its gamma/beta are drawn around 1/0 so that folding them shows in the numbers.
Nets without normalisation (VGG19, AlexNet, SqueezeNet, GoogLeNet) get He-scaled
weights; Keras ConvNeXt's layer scale (initialised to 1e-6, which would make
every block an identity) is drawn in [0.1, 1].

Sizes: ``"small"`` for the tests (each model's smallest input the architecture
takes, and fewer channels where a builder has a width), ``"full"`` for the bench
(the published input size and widths). Minimum inputs of the Keras apps: 32 for
most; InceptionV3 75, Xception 71 (Keras' own minimums); NASNetMobile 32 with
``weights=None`` (its fixed 224 is only required for ImageNet weights).

Files are written to a work directory and reused when they are already there
(``build`` is cheap the second time: no TensorFlow, no export).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from frontend_models import tflite_input_name

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZES = ("small", "full")


@dataclasses.dataclass
class ZooModel:
    """One built model: its file, example inputs and how to run its framework."""
    name: str
    framework: str                 # "tflite" or "onnx"
    path: Path
    inputs: dict                   # input name -> np.ndarray
    #: ops that stay on the host by design (NMS, dynamic shapes): not failures
    host_by_design: tuple = ()

    def load(self):
        """The model through the project's frontend (import + normalisation)."""
        from tvm_sophon.frontend import load

        return load(self.path)

    def source_outputs(self) -> list:
        """The outputs of the model in the framework it was written in (Keras or
        PyTorch, eager), saved when it was converted: a second implementation,
        whose distance to the reference measures FP32 noise on this model."""
        with np.load(self.path.with_suffix(".source.npz")) as saved:
            return [saved[f"out{i}"] for i in range(len(saved.files))]

    def reference(self) -> list:
        """The framework's outputs for ``inputs``, in the model's output order."""
        return self.reference_runner()()

    def reference_runner(self) -> Callable[[], list]:
        """A function that runs the framework on ``inputs`` (the interpreter or
        session is created once, so that timing it times the inference only)."""
        if self.framework == "tflite":
            return tflite_runner(self.path, self.inputs)
        return onnx_runner(self.path, self.inputs)


@dataclasses.dataclass(frozen=True)
class Spec:
    family: str                    # "keras" or "torch"
    make: Callable                 # make(size) -> (model, input shape)
    sizes: dict                    # size -> input shape, for the docs and the table
    note: str = ""
    host_by_design: tuple = ()


# ------------------------------------------------------------------ references


def tflite_runner(path, inputs: dict) -> Callable[[], list]:
    import tensorflow as tf

    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()

    def run():
        for detail, value in zip(interpreter.get_input_details(), inputs.values()):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]

    return run


def onnx_runner(path, inputs: dict) -> Callable[[], list]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda: session.run(None, inputs)


def relative_max_error(actual, expected) -> float:
    """max |actual - expected| / max |expected|, over every output (float64)."""
    worst = 0.0
    for a, e in zip(actual, expected):
        a, e = np.asarray(a, "float64"), np.asarray(e, "float64")
        if a.shape != e.shape:
            raise ValueError(f"output shape {a.shape} != reference {e.shape}")
        scale = float(np.max(np.abs(e))) if e.size else 0.0
        diff = float(np.max(np.abs(a - e))) if e.size else 0.0
        worst = max(worst, diff / scale if scale else diff)
    return worst


def _seed(name: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 2**31


def example_input(name: str, shape) -> np.ndarray:
    return np.random.default_rng(_seed(name)).standard_normal(shape).astype("float32")


# ------------------------------------------------------------------ Keras applications


def _keras_app(app: str, small: int, full: int, *, small_kwargs=None, full_kwargs=None, **kwargs):
    """A Spec for tf.keras.applications.<app> at input small x small / full x full."""
    def make(size):
        import tensorflow as tf

        image = small if size == "small" else full
        extra = dict(kwargs, **((small_kwargs if size == "small" else full_kwargs) or {}))
        classes = 10 if size == "small" else 1000
        model = getattr(tf.keras.applications, app)(
            weights=None, input_shape=(image, image, 3), classes=classes,
            classifier_activation=None, **extra)
        return model, (1, image, image, 3)

    return make, {"small": (1, small, small, 3), "full": (1, full, full, 3)}


def _keras_lstm(size):
    import tensorflow as tf

    steps, features, units = (8, 16, 32) if size == "small" else (64, 64, 256)
    model = tf.keras.Sequential([
        tf.keras.Input((steps, features)),
        tf.keras.layers.LSTM(units),
        tf.keras.layers.Dense(10),
    ])
    return model, (1, steps, features)


def _calibrate_keras(model, shape, rng) -> None:
    """Unit-scale activations for a randomly initialised Keras model: BatchNorm
    gamma/beta drawn around 1/0, then one training-mode pass with momentum 0
    makes each BatchNorm's moving statistics those of that batch; ConvNeXt's
    layer scale drawn in [0.1, 1]; He-scaled weights where nothing normalises."""
    import tensorflow as tf

    for layer in _all_layers(model):
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.0
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
            if layer.beta is not None:
                layer.beta.assign(rng.uniform(-0.2, 0.2, layer.beta.shape).astype("float32"))
        elif type(layer).__name__ == "LayerScale":
            for weight in layer.weights:
                weight.assign(rng.uniform(0.1, 1.0, weight.shape).astype("float32"))
    layers = list(_all_layers(model))
    if any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in layers):
        batch = rng.standard_normal((8, *shape[1:])).astype("float32")
        model(batch, training=True)
    elif not any(isinstance(layer, tf.keras.layers.LayerNormalization) for layer in layers):
        # no normalisation at all (VGG19): He-scaled weights, or Glorot's shrink
        # by about 1/sqrt(2) per ReLU layer leaves 1e-4 at the logits
        for layer in layers:
            if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)):
                fan_in = int(np.prod(layer.kernel.shape[:-1]))
                layer.kernel.assign(rng.normal(0, np.sqrt(2 / fan_in), layer.kernel.shape).astype("float32"))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _write_tflite(model, shape, path: Path) -> None:
    """FP32 TFLite at batch 1: the model called on an input of batch size 1 (the
    same layers, so the same weights) makes every shape static."""
    import tensorflow as tf

    inp = tf.keras.Input(shape[1:], batch_size=1, name="input")
    fixed = tf.keras.Model(inp, model(inp))
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its SavedModel summary
        data = tf.lite.TFLiteConverter.from_keras_model(fixed).convert()
    _atomic_write(path, data)


# ------------------------------------------------------------------ PyTorch modules


def _torch():
    import torch
    from torch import nn

    return torch, nn


def conv_bn(cin, cout, k=3, s=1, act="relu", groups=1, padding=None):
    """conv (no bias) + BatchNorm + activation, padding k // 2 by default."""
    torch, nn = _torch()
    acts = {"relu": nn.ReLU, "silu": nn.SiLU, "hswish": nn.Hardswish, None: nn.Identity}
    padding = k // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), acts[act]())


def _resnet18(size):
    """ResNet-18: 7x7 stem, max pool, 4 stages of 2 basic blocks, global pool, FC."""
    torch, nn = _torch()
    width, image, classes = (16, 32, 10) if size == "small" else (64, 224, 1000)

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, 1, None))
            self.skip = conv_bn(cin, cout, 1, stride, None) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    layers, cin = [conv_bn(3, width, 7, 2), nn.MaxPool2d(3, 2, 1)], width
    for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
        layers += [Basic(cin, cout, 1 if i == 0 else 2), Basic(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers), (1, 3, image, image)


def _squeezenet(size):
    """SqueezeNet 1.1: fire modules (1x1 squeeze, 1x1 and 3x3 expand, concat)."""
    torch, nn = _torch()
    image, classes = (32, 10) if size == "small" else (224, 1000)

    class Fire(nn.Module):
        def __init__(self, cin, squeeze, expand):
            super().__init__()
            self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
            self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
            self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

        def forward(self, x):
            x = self.squeeze(x)
            return torch.cat([self.e1(x), self.e3(x)], 1)

    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(),
        Fire(64, 16, 64), Fire(128, 16, 64), pool(),
        Fire(128, 32, 128), Fire(256, 32, 128), pool(),
        Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256),
        nn.Dropout(0.5), nn.Conv2d(512, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return model, (1, 3, image, image)


def _shufflenet_v2(size):
    """ShuffleNetV2: channel split, branch, concat, channel shuffle
    (reshape-transpose-reshape); 1.0x widths for full, 0.5x for small."""
    torch, nn = _torch()
    image, classes = (32, 10) if size == "small" else (224, 1000)
    widths = [24, 48, 96, 192, 1024] if size == "small" else [24, 116, 232, 464, 1024]

    def shuffle(x):
        n, c, h, w = x.shape
        return x.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)

    class Unit(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.stride, half = stride, cout // 2
            if stride == 2:
                self.left = nn.Sequential(conv_bn(cin, cin, 3, 2, None, groups=cin), conv_bn(cin, half, 1))
            right_in = cin if stride == 2 else half
            self.right = nn.Sequential(conv_bn(right_in, half, 1), conv_bn(half, half, 3, stride, None, groups=half),
                                       conv_bn(half, half, 1))

        def forward(self, x):
            if self.stride == 1:
                a, b = x.chunk(2, dim=1)
                out = torch.cat([a, self.right(b)], 1)
            else:
                out = torch.cat([self.left(x), self.right(x)], 1)
            return shuffle(out)

    layers, cin = [conv_bn(3, widths[0], 3, 2), nn.MaxPool2d(3, 2, 1)], widths[0]
    for repeats, cout in zip([4, 8, 4], widths[1:4]):
        layers += [Unit(cin, cout, 2)] + [Unit(cout, cout, 1) for _ in range(repeats - 1)]
        cin = cout
    layers += [conv_bn(cin, widths[4], 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[4], classes)]
    return nn.Sequential(*layers), (1, 3, image, image)


def _googlenet(size):
    """GoogLeNet (Inception v1, the 2014 paper's layout): 7x7 stem, LRN, 3x3,
    LRN, nine inception blocks (1x1 | 1x1-3x3 | 1x1-5x5 | pool-1x1, concat),
    global pool, FC. No BatchNorm; small is the same graph at a quarter width."""
    torch, nn = _torch()
    image, classes, div = (64, 10, 4) if size == "small" else (224, 1000, 1)
    c = lambda n: max(n // div, 4)  # noqa: E731

    def conv(cin, cout, k, s=1):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2), nn.ReLU())

    class Inception(nn.Module):
        def __init__(self, cin, b1, b3r, b3, b5r, b5, bp):
            super().__init__()
            self.b1 = conv(cin, c(b1), 1)
            self.b3 = nn.Sequential(conv(cin, c(b3r), 1), conv(c(b3r), c(b3), 3))
            self.b5 = nn.Sequential(conv(cin, c(b5r), 1), conv(c(b5r), c(b5), 5))
            self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv(cin, c(bp), 1))
            self.cout = c(b1) + c(b3) + c(b5) + c(bp)

        def forward(self, x):
            return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)

    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # noqa: E731
    layers = [conv(3, c(64), 7, 2), pool(), lrn(), conv(c(64), c(64), 1), conv(c(64), c(192), 3), lrn(), pool()]
    cin = c(192)
    table = [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "pool",
             (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
             (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "pool",
             (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)]
    for row in table:
        if row == "pool":
            layers.append(pool())
            continue
        block = Inception(cin, *row)
        layers.append(block)
        cin = block.cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(cin, classes)]
    return nn.Sequential(*layers), (1, 3, image, image)


def _alexnet(size):
    """AlexNet: five convs with max pools and big fully-connected layers (full:
    9216 x 4096, 4096 x 4096; small: 2304 x 4096, 4096 x 1024, the first one, 37 MB,
    larger than a lane's share of the chip's local memory). No BatchNorm."""
    torch, nn = _torch()
    image, hidden, hidden2, classes = (127, 4096, 1024, 10) if size == "small" else (224, 4096, 4096, 1000)
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    side = 3 if size == "small" else 6
    model = nn.Sequential(
        features, nn.Flatten(), nn.Dropout(0.5), nn.Linear(256 * side * side, hidden), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(hidden, hidden2), nn.ReLU(), nn.Linear(hidden2, classes))
    return model, (1, 3, image, image)


def _unet(size):
    """A U-Net-style segmentation net: conv-BN-ReLU pairs, max-pool encoder; the
    decoder upsamples with conv2d_transpose (stride 2) at two levels and with a
    bilinear resize (half-pixel) + 1x1 conv at the other two, concatenating the
    skip connection each time; 1x1 conv to the class maps."""
    torch, nn = _torch()
    F = torch.nn.functional
    base, image, classes = (8, 32, 3) if size == "small" else (32, 256, 21)

    def double(cin, cout):
        return nn.Sequential(conv_bn(cin, cout), conv_bn(cout, cout))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [base, 2 * base, 4 * base, 8 * base, 16 * base]
            self.down = nn.ModuleList([double(3, ch[0])] + [double(ch[i], ch[i + 1]) for i in range(4)])
            self.up = nn.ModuleList()
            self.merge = nn.ModuleList()
            for i in reversed(range(4)):
                if i % 2:  # transpose conv at levels 3 and 1
                    self.up.append(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, 2))
                else:      # bilinear resize + 1x1 conv at levels 2 and 0
                    self.up.append(nn.Conv2d(ch[i + 1], ch[i], 1))
                self.merge.append(double(2 * ch[i], ch[i]))
            self.head = nn.Conv2d(base, classes, 1)

        def forward(self, x):
            skips = []
            for i, block in enumerate(self.down):
                x = block(x if i == 0 else F.max_pool2d(x, 2))
                skips.append(x)
            x = skips.pop()
            for up, merge in zip(self.up, self.merge):
                if isinstance(up, nn.ConvTranspose2d):
                    x = up(x)
                else:
                    x = up(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
                x = merge(torch.cat([skips.pop(), x], 1))
            return self.head(x)

    return UNet(), (1, 3, image, image)


def _yolov5s(size, image=None):
    """A YOLOv5s-style detector (yolov5s.yaml v6: width 0.5, depth 0.33): Conv-BN-SiLU,
    C3 blocks, SPPF, a PAN neck with nearest upsampling and concats, and three
    Detect heads decoded to (1, boxes, 85) boxes (sigmoid, grid and anchor
    arithmetic). NMS is left to the host application, outside the model. Small:
    quarter width at 64x64; `image` (a multiple of 32) overrides the input size."""
    torch, nn = _torch()
    width, default_image = (0.25, 64) if size == "small" else (0.5, 640)
    image = image or default_image
    ch = lambda n: int(n * width)  # noqa: E731
    nc, anchors = 80, [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]

    def conv(cin, cout, k=1, s=1, p=None):
        return conv_bn(cin, cout, k, s, "silu", padding=p)

    class Bottleneck(nn.Module):
        def __init__(self, c, shortcut=True):
            super().__init__()
            self.cv1, self.cv2, self.add = conv(c, c, 1), conv(c, c, 3), shortcut

        def forward(self, x):
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C3(nn.Module):
        def __init__(self, cin, cout, n, shortcut=True):
            super().__init__()
            h = cout // 2
            self.cv1, self.cv2, self.cv3 = conv(cin, h), conv(cin, h), conv(2 * h, cout)
            self.m = nn.Sequential(*[Bottleneck(h, shortcut) for _ in range(n)])

        def forward(self, x):
            return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))

    class SPPF(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.cv1, self.cv2, self.pool = conv(cin, cin // 2), conv(cin * 2, cout), nn.MaxPool2d(5, 1, 2)

        def forward(self, x):
            x = self.cv1(x)
            y1 = self.pool(x)
            y2 = self.pool(y1)
            return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))

    class Yolo(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv(3, ch(64), 6, 2, 2), conv(ch(64), ch(128), 3, 2), C3(ch(128), ch(128), 1))
            self.p3 = nn.Sequential(conv(ch(128), ch(256), 3, 2), C3(ch(256), ch(256), 2))
            self.p4 = nn.Sequential(conv(ch(256), ch(512), 3, 2), C3(ch(512), ch(512), 3))
            self.p5 = nn.Sequential(conv(ch(512), ch(1024), 3, 2), C3(ch(1024), ch(1024), 1),
                                    SPPF(ch(1024), ch(1024)))
            self.cv10, self.c13 = conv(ch(1024), ch(512)), C3(ch(1024), ch(512), 1, False)
            self.cv14, self.c17 = conv(ch(512), ch(256)), C3(ch(512), ch(256), 1, False)
            self.cv18, self.c20 = conv(ch(256), ch(256), 3, 2), C3(ch(512), ch(512), 1, False)
            self.cv21, self.c23 = conv(ch(512), ch(512), 3, 2), C3(ch(1024), ch(1024), 1, False)
            self.heads = nn.ModuleList(nn.Conv2d(c, 3 * (nc + 5), 1) for c in (ch(256), ch(512), ch(1024)))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            for i, stride in enumerate((8, 16, 32)):
                side = image // stride
                gy, gx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
                self.register_buffer(f"grid{i}", torch.stack((gx, gy), 2).view(1, 1, side, side, 2).float() - 0.5)
                self.register_buffer(f"anchor{i}", torch.tensor(anchors[i], dtype=torch.float32).view(1, 3, 1, 1, 2))

        def forward(self, x):
            x = self.stem(x)
            p3 = self.p3(x)
            p4 = self.p4(p3)
            p5 = self.p5(p4)
            h10 = self.cv10(p5)
            h14 = self.cv14(self.c13(torch.cat([self.up(h10), p4], 1)))
            out3 = self.c17(torch.cat([self.up(h14), p3], 1))
            out4 = self.c20(torch.cat([self.cv18(out3), h14], 1))
            out5 = self.c23(torch.cat([self.cv21(out4), h10], 1))
            boxes = []
            for i, (head, feat, stride) in enumerate(zip(self.heads, (out3, out4, out5), (8, 16, 32))):
                y = head(feat)
                n, _, h, w = y.shape
                y = y.view(n, 3, nc + 5, h, w).permute(0, 1, 3, 4, 2).sigmoid()
                xy, wh, conf = y.split((2, 2, nc + 1), 4)
                xy = (xy * 2 + getattr(self, f"grid{i}")) * stride
                wh = (wh * 2) ** 2 * getattr(self, f"anchor{i}")
                boxes.append(torch.cat((xy, wh, conf), 4).view(n, 3 * h * w, nc + 5))
            return torch.cat(boxes, 1)

    return Yolo(), (1, 3, image, image)


def _convnext(size):
    """A ConvNeXt (Tiny for full: depths 3-3-9-3, dims 96..768): 4x4 stride-4 stem,
    blocks of depthwise 7x7 -> LayerNorm over channels (NHWC) -> Linear 4x ->
    GELU (erf) -> Linear -> layer scale, residual; LayerNorm + 2x2 stride-2
    downsampling. Small: depths 1-1-2-1, dims 24..192 at 32x32."""
    torch, nn = _torch()
    if size == "small":
        depths, dims, image, classes = (1, 1, 2, 1), (24, 48, 96, 192), 32, 10
    else:
        depths, dims, image, classes = (3, 3, 9, 3), (96, 192, 384, 768), 224, 1000

    class ChannelsFirstNorm(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
            self.gamma = nn.Parameter(torch.empty(dim).uniform_(0.1, 1.0))

        def forward(self, x):
            y = self.norm(self.dw(x).permute(0, 2, 3, 1))
            return x + (self.gamma * self.mlp(y)).permute(0, 3, 1, 2)

    layers = [nn.Conv2d(3, dims[0], 4, 4), ChannelsFirstNorm(dims[0], eps=1e-6)]
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i:
            layers += [ChannelsFirstNorm(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
        layers += [Block(dim) for _ in range(depth)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(dims[-1], eps=1e-6), nn.Linear(dims[-1], classes)]
    return nn.Sequential(*layers), (1, 3, image, image)


def _mobilenet_v3(size):
    """MobileNetV3-Large (the paper's table): inverted residuals with hard-swish,
    squeeze-excite (global pool, 1x1 ReLU, 1x1 hard-sigmoid, multiply), BatchNorm;
    head 960 -> 1280 -> classes. Small: the same table at 32x32."""
    torch, nn = _torch()
    image, classes = (32, 10) if size == "small" else (224, 1000)

    class SqueezeExcite(nn.Module):
        def __init__(self, c):
            super().__init__()
            squeeze = max(8, (c // 4 + 4) // 8 * 8)
            self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, squeeze, 1), nn.ReLU(),
                                    nn.Conv2d(squeeze, c, 1), nn.Hardsigmoid())

        def forward(self, x):
            return x * self.fc(x)

    class Block(nn.Module):
        def __init__(self, cin, k, exp, cout, se, act, stride):
            super().__init__()
            layers = [] if exp == cin else [conv_bn(cin, exp, 1, 1, act)]
            layers.append(conv_bn(exp, exp, k, stride, act, groups=exp))
            if se:
                layers.append(SqueezeExcite(exp))
            layers.append(conv_bn(exp, cout, 1, 1, None))
            self.body, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    RE, HS = "relu", "hswish"
    table = [(3, 16, 16, False, RE, 1), (3, 64, 24, False, RE, 2), (3, 72, 24, False, RE, 1),
             (5, 72, 40, True, RE, 2), (5, 120, 40, True, RE, 1), (5, 120, 40, True, RE, 1),
             (3, 240, 80, False, HS, 2), (3, 200, 80, False, HS, 1), (3, 184, 80, False, HS, 1),
             (3, 184, 80, False, HS, 1), (3, 480, 112, True, HS, 1), (3, 672, 112, True, HS, 1),
             (5, 672, 160, True, HS, 2), (5, 960, 160, True, HS, 1), (5, 960, 160, True, HS, 1)]
    layers, cin = [conv_bn(3, 16, 3, 2, HS)], 16
    for k, exp, cout, se, act, stride in table:
        layers.append(Block(cin, k, exp, cout, se, act, stride))
        cin = cout
    layers += [conv_bn(cin, 960, 1, 1, HS), nn.AdaptiveAvgPool2d(1), nn.Conv2d(960, 1280, 1), nn.Hardswish(),
               nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, classes)]
    return nn.Sequential(*layers), (1, 3, image, image)


def _calibrate_torch(model, shape, rng):
    """Unit-scale activations for a random PyTorch net: He-scaled conv/linear
    weights where no BatchNorm follows; BatchNorm gamma/beta drawn around 1/0 and
    running statistics from one training-mode pass (momentum 1) over a batch."""
    torch, nn = _torch()
    has_bn = False
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.uniform_(module.bias, -0.1, 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            has_bn = True
            module.momentum = 1.0
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    if has_bn:
        batch = torch.from_numpy(rng.standard_normal((8, *shape[1:])).astype("float32"))
        model.train()
        with torch.no_grad():
            model(batch)
    return model.eval()


def _write_onnx(model, x: np.ndarray, path: Path) -> None:
    torch, _ = _torch()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"
    x = torch.from_numpy(x)
    tmp = path.with_suffix(".tmp.onnx")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(tmp), input_names=["input"], dynamo=True,
                          external_data=False, verbose=False)
    os.replace(tmp, path)


# ------------------------------------------------------------------ registry


def _keras(app, small, full, note="", **kwargs):
    make, sizes = _keras_app(app, small, full, **kwargs)
    return Spec("keras", make, sizes, note)


def _torch_spec(make, small, full, note="", host_by_design=()):
    return Spec("torch", make, {"small": small, "full": full}, note, host_by_design)


MODELS: dict[str, Spec] = {
    "resnet50": _keras("ResNet50", 32, 224),
    "resnet50v2": _keras("ResNet50V2", 32, 224),
    "mobilenet": _keras("MobileNet", 32, 224, small_kwargs={"alpha": 0.25}),
    "mobilenetv2": _keras("MobileNetV2", 32, 224, small_kwargs={"alpha": 0.35}),
    "mobilenetv3small": _keras("MobileNetV3Small", 32, 224, include_preprocessing=False),
    "mobilenetv3large": _keras("MobileNetV3Large", 32, 224, include_preprocessing=False),
    "efficientnetb0": _keras("EfficientNetB0", 32, 224),
    "densenet121": _keras("DenseNet121", 32, 224),
    "inceptionv3": _keras("InceptionV3", 75, 299, note="Keras' minimum input 75"),
    "xception": _keras("Xception", 71, 299, note="Keras' minimum input 71"),
    "nasnetmobile": _keras("NASNetMobile", 32, 224),
    "vgg19": _keras("VGG19", 32, 224),
    "convnext_tiny": _keras("ConvNeXtTiny", 32, 224, include_preprocessing=False),
    "keras_lstm": Spec("keras", _keras_lstm, {"small": (1, 8, 16), "full": (1, 64, 64)},
                       "LSTM(32|256) + Dense, the issue's partition crash"),
    "resnet18_pt": _torch_spec(_resnet18, (1, 3, 32, 32), (1, 3, 224, 224), "width 16 for small"),
    "squeezenet_pt": _torch_spec(_squeezenet, (1, 3, 32, 32), (1, 3, 224, 224)),
    "shufflenetv2_pt": _torch_spec(_shufflenet_v2, (1, 3, 32, 32), (1, 3, 224, 224), "0.5x for small"),
    "googlenet_lrn_pt": _torch_spec(_googlenet, (1, 3, 64, 64), (1, 3, 224, 224), "quarter width for small"),
    "alexnet_pt": _torch_spec(_alexnet, (1, 3, 127, 127), (1, 3, 224, 224), "FC 2304x4096 for small"),
    "unet_pt": _torch_spec(_unet, (1, 3, 32, 32), (1, 3, 256, 256), "base 8 | 32"),
    "yolov5s_pt": _torch_spec(_yolov5s, (1, 3, 64, 64), (1, 3, 640, 640), "quarter width for small"),
    "convnext_pt": _torch_spec(_convnext, (1, 3, 32, 32), (1, 3, 224, 224), "depths 1-1-2-1 for small"),
    "mobilenetv3_pt": _torch_spec(_mobilenet_v3, (1, 3, 32, 32), (1, 3, 224, 224)),
}


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build(name: str, size: str, workdir) -> ZooModel:
    """Model ``name`` at ``size`` ("small" or "full"): written to ``workdir``
    unless it is already there, with a seeded example input."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r} (known: {', '.join(MODELS)})")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    spec = MODELS[name]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    framework = "tflite" if spec.family == "keras" else "onnx"
    path = workdir / f"{name}-{size}.{framework}"
    shape = spec.sizes[size]
    x = example_input(name, shape)
    source = path.with_suffix(".source.npz")
    if not (path.exists() and source.exists()):
        rng = np.random.default_rng(_seed(name))
        _seed_framework(spec.family, _seed(name))
        model, shape = spec.make(size)
        if spec.family == "keras":
            _calibrate_keras(model, shape, rng)
            outputs = model(x, training=False)
            _write_tflite(model, shape, path)
        else:
            model = _calibrate_torch(model, shape, rng)
            torch, _ = _torch()
            with torch.no_grad():
                outputs = model(torch.from_numpy(x))
            _write_onnx(model, x, path)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        np.savez(source, **{f"out{i}": np.asarray(o) for i, o in enumerate(outputs)})
    input_name = "input" if framework == "onnx" else tflite_input_name(path.read_bytes())
    return ZooModel(name, framework, path, {input_name: x}, spec.host_by_design)


def _seed_framework(family: str, seed: int) -> None:
    if family == "keras":
        import tensorflow as tf

        tf.keras.utils.set_random_seed(seed)
    else:
        torch, _ = _torch()
        torch.manual_seed(seed)


# ------------------------------------------------------------------ measuring


def _timed(fn, budget_s: float = 10.0, repeat: int = 3):
    """(result of the first call, median time of up to ``repeat`` timed calls
    after it); stops early once ``budget_s`` is spent."""
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    times, spent = [], first
    while len(times) < repeat and spent + (times[-1] if times else first) < budget_s:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return result, statistics.median(times) if times else first


def _outputs(value) -> list:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [o for v in value for o in _outputs(v)]


def host_op_summary(report) -> tuple[list, dict]:
    """``(["concat x12", ...], {reason: [ops]})`` of an offload report's host ops."""
    counts = collections.Counter(op.op.removeprefix("relax.") for op in report.host_ops)
    reasons = collections.defaultdict(set)
    for op in report.host_ops:
        reasons[op.reason].add(op.op.removeprefix("relax."))
    ops = [f"{name} x{n}" if n > 1 else name for name, n in counts.most_common()]
    return ops, {reason: sorted(names) for reason, names in reasons.items()}


def measure(name: str, size: str, workdir: Path) -> dict:
    """Everything the table shows for one model; a failing stage ends the
    measurement with its one-line error in ``row["error"]``."""
    import tvm
    from tvm import relax

    import tvm_sophon
    from tvm_sophon.frontend import _one_line

    row = {"model": name, "size": size, "input": list(MODELS[name].sizes[size])}
    stage = "export"
    try:
        model = build(name, size, workdir)
        row["framework"] = model.framework
        stage = "framework"
        expected, row["framework_s"] = _timed(model.reference_runner())
        row["fw_noise"] = relative_max_error(model.source_outputs(), expected)
        stage = "import"
        mod = model.load()
        stage = "partition"
        start = time.perf_counter()
        partitioned = tvm_sophon.partition_for_sophon(mod)
        report = tvm_sophon.offload_report(partitioned)
        row["regions"] = len(report.regions)
        row["host_ops"], row["host_reasons"] = host_op_summary(report)
        row["unexpected_host_ops"] = sorted({op.op.removeprefix("relax.") for op in report.host_ops}
                                            - set(model.host_by_design))
        row["mac_share"] = report.offloaded_mac_share
        row["macs"] = report.offloaded_macs + report.host_macs
        stage = "build"
        ex = tvm_sophon.build(partitioned)
        row["compile_s"] = time.perf_counter() - start
        stage = "run"
        vm = relax.VirtualMachine(ex, tvm.cpu())
        args = [tvm.runtime.tensor(np.asarray(x)) for x in model.inputs.values()]
        actual, row["emulator_s"] = _timed(lambda: _outputs(vm["main"](*args)))
        stage = "compare"
        row["rel_err"] = relative_max_error(actual, expected)
    except Exception as err:  # the row records the failure, the bench goes on
        row["error"] = f"{stage}: {_one_line(err)}"
    return row


def default_workdir() -> Path:
    """Where the bench keeps converted models between runs."""
    return Path(os.environ.get("SOPHON_ZOO_DIR", Path.home() / ".cache" / "tvm_sophon_zoo"))
