"""Small bundled models for demos and tests.

Every builder returns ``(mod, params, inputs)``:

    mod     a Relax ``IRModule`` whose ``main`` takes the input(s) first, then one
            parameter per weight (``conv1_weight``, ``conv1_bias``, ``fc_weight``, ...)
    params  ``{name: np.ndarray}`` for those weights, to bind with
            ``partition_for_sophon(mod, params)`` / ``build(mod, params)``
    inputs  ``{name: np.ndarray}`` example inputs, in ``main``'s order

Weights and inputs are random but seeded (``seed=`` argument), so every call
returns the same arrays; the NHWC variant of a model holds the same numbers as
its NCHW variant, transposed (so both compute the same outputs). Weights are He-scaled so activations stay of order one
through the layers and the softmax outputs are not saturated.

:func:`reference_run` builds the same module with TVM's plain llvm pipeline and
runs it: the independent reference the chip's results are compared against.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import tvm
from tvm import relax

from .names import emit_named

LAYOUTS = ("NCHW", "NHWC")
#: kernel layout used for each data layout
KERNEL_LAYOUT = {"NCHW": "OIHW", "NHWC": "HWIO"}


class _Builder:
    """Collects weights while a model is emitted into a BlockBuilder dataflow block."""

    def __init__(self, seed: int, layout: str = "NCHW"):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.rng = np.random.default_rng(seed)
        self.layout = layout
        self.kernel_layout = KERNEL_LAYOUT[layout]
        self.bb = relax.BlockBuilder()
        self.params: dict[str, np.ndarray] = {}
        self.param_vars: list[relax.Var] = []

    # ---- tensors ---------------------------------------------------------
    def param(self, name: str, array: np.ndarray) -> relax.Var:
        array = np.ascontiguousarray(array, dtype="float32")
        var = relax.Var(name, relax.TensorType(list(array.shape), "float32"))
        self.params[name] = array
        self.param_vars.append(var)
        return var

    def emit(self, expr: relax.Expr, name: str = "") -> relax.Var:
        """Emit ``expr``; its ops carry ``name``, the layer's name in reports (names.py)."""
        return emit_named(self.bb, expr, name)

    # ---- layers ------------------------------------------------------------
    def conv(self, name: str, x: relax.Expr, cin: int, cout: int, kernel: int = 3, *,
             strides: int = 1, padding: Union[int, Sequence[int]] = 1, groups: int = 1,
             bias: bool = True, act: Optional[str] = None) -> relax.Var:
        """conv2d (+ bias through a reshape in NCHW, a (C,) broadcast in NHWC) (+ act)."""
        cin_g = cin // groups
        fan_in = cin_g * kernel * kernel
        oihw = self.rng.standard_normal((cout, cin_g, kernel, kernel)) * np.sqrt(2.0 / fan_in)
        w_np = oihw if self.kernel_layout == "OIHW" else oihw.transpose(2, 3, 1, 0)  # -> HWIO
        w = self.param(f"{name}_weight", w_np)
        y = self.emit(relax.op.nn.conv2d(x, w, strides=strides, padding=padding, groups=groups,
                                         data_layout=self.layout, kernel_layout=self.kernel_layout), name)
        if bias:
            b = self.param(f"{name}_bias", self.rng.standard_normal(cout) * 0.1)
            if self.layout == "NCHW":
                b = self.emit(relax.op.reshape(b, (1, cout, 1, 1)), name)
            y = self.emit(relax.op.add(y, b), name)
        return self.act(y, act, name)

    def act(self, y: relax.Expr, act: Optional[str], name: str = "") -> relax.Expr:
        if act is None:
            return y
        if act == "relu":
            return self.emit(relax.op.nn.relu(y), name)
        if act == "relu6":
            return self.emit(relax.op.clip(y, 0.0, 6.0), name)
        if act == "silu":  # x * sigmoid(x), as the PyTorch and ONNX importers emit it
            return self.emit(relax.op.multiply(y, self.emit(relax.op.sigmoid(y), name)), name)
        raise ValueError(f"unknown activation {act!r}")

    def dense(self, name: str, x: relax.Expr, k: int, n: int, act: Optional[str] = None) -> relax.Var:
        """permute_dims(weight (n, k)) + matmul + add bias (+ act)."""
        w = self.param(f"{name}_weight", self.rng.standard_normal((n, k)) * np.sqrt(2.0 / k))
        b = self.param(f"{name}_bias", self.rng.standard_normal(n) * 0.1)
        wt = self.emit(relax.op.permute_dims(w), name)
        y = self.emit(relax.op.matmul(x, wt), name)
        y = self.emit(relax.op.add(y, b), name)
        return self.act(y, act, name)

    def global_avg_pool(self, x: relax.Expr, channels: int, batch: int = 1) -> relax.Var:
        """Global average pool to (N, C): adaptive_avg_pool2d + reshape in NCHW,
        mean over H, W in NHWC."""
        if self.layout == "NCHW":
            g = self.emit(relax.op.nn.adaptive_avg_pool2d(x, output_size=(1, 1), layout="NCHW"), "avgpool")
            return self.emit(relax.op.reshape(g, (batch, channels)), "flatten")
        return self.emit(relax.op.mean(x, axis=[1, 2]), "avgpool")

    def max_pool(self, x: relax.Expr, size: int = 2, name: str = "maxpool") -> relax.Var:
        return self.emit(relax.op.nn.max_pool2d(x, pool_size=(size, size), strides=(size, size),
                                                layout=self.layout), name)


def _finish(builder: _Builder, build_body, input_vars: list[relax.Var],
            inputs: dict[str, np.ndarray]):
    bb = builder.bb
    with bb.function("main"):
        with bb.dataflow():
            out = build_body()
            out = bb.emit_output(out)
        bb.emit_func_output(out, params=input_vars + builder.param_vars)
    mod = bb.get()
    relax.analysis.well_formed(mod)
    return mod, builder.params, inputs


def _input(builder: _Builder, name: str, nchw) -> tuple[relax.Var, np.ndarray]:
    """An input var and its example value; 4-D shapes are given as NCHW and the
    value is drawn in NCHW, then transposed for NHWC, so both layouts of a model
    compute the same numbers."""
    value = builder.rng.standard_normal(nchw).astype("float32")
    if len(nchw) == 4 and builder.layout == "NHWC":
        value = np.ascontiguousarray(value.transpose(0, 2, 3, 1))
    var = relax.Var(name, relax.TensorType(list(value.shape), "float32"))
    return var, value


# ------------------------------------------------------------------ models


def demo_cnn(layout: str = "NCHW", seed: int = 0):
    """The demo CNN: 1x3x32x32 image (1x32x32x3 in NHWC) -> 10 class probabilities.

    conv 3x3 3->16 + bias + relu; depthwise conv 3x3 (groups=16) + bias + relu6
    (clip 0..6); max pool 2x2; residual block (conv 3x3 + bias + relu, conv 3x3 +
    bias, add the block input, relu); global average pool (adaptive_avg_pool2d to
    1x1 + reshape in NCHW, mean over axes [1, 2] in NHWC); dense 16->10 as
    permute_dims(w) + matmul + bias; softmax. NHWC uses HWIO kernels.
    """
    b = _Builder(seed, layout)
    x, x_np = _input(b, "data", (1, 3, 32, 32))

    def body():
        y = b.conv("conv1", x, 3, 16, act="relu")
        y = b.conv("dwconv", y, 16, 16, groups=16, act="relu6")
        y = b.max_pool(y, 2)
        r = b.conv("res_conv1", y, 16, 16, act="relu")
        r = b.conv("res_conv2", r, 16, 16)
        y = b.emit(relax.op.add(r, y), "res_add")
        y = b.emit(relax.op.nn.relu(y), "res_relu")
        y = b.global_avg_pool(y, 16)
        y = b.dense("fc", y, 16, 10)
        return relax.op.nn.softmax(y, axis=-1)

    return _finish(b, body, [x], {"data": x_np})


def mlp(seed: int = 0):
    """A multi-layer perceptron: 1x64 -> dense 128 + relu -> dense 64 + relu ->
    dense 10 -> softmax. Every dense is permute_dims(w (out, in)) + matmul + bias."""
    b = _Builder(seed)
    x, x_np = _input(b, "data", (1, 64))

    def body():
        y = b.dense("fc1", x, 64, 128, act="relu")
        y = b.dense("fc2", y, 128, 64, act="relu")
        y = b.dense("fc3", y, 64, 10)
        return relax.op.nn.softmax(y, axis=-1)

    return _finish(b, body, [x], {"data": x_np})


def resnet_tiny(layout: str = "NCHW", seed: int = 0):
    """A tiny ResNet: 1x3x32x32 image (1x32x32x3 in NHWC) -> 10 class probabilities.

    stem conv 3x3 3->8 + bias + relu (32x32);
    block1: identity residual, 8 channels at 32x32
            (conv 3x3 + bias + relu, conv 3x3 + bias, add, relu);
    block2: stride 2, 8->16 channels, 32x32 -> 16x16, with a 1x1 stride-2
            projection conv (+ bias) on the shortcut;
    block3: identity residual, 16 channels at 16x16;
    global average pool; dense 16->10 (permute_dims + matmul + bias); softmax.
    """
    b = _Builder(seed, layout)
    x, x_np = _input(b, "data", (1, 3, 32, 32))

    def block(name, y, cin, cout, stride):
        r = b.conv(f"{name}_conv1", y, cin, cout, strides=stride, act="relu")
        r = b.conv(f"{name}_conv2", r, cout, cout)
        if stride != 1 or cin != cout:
            y = b.conv(f"{name}_proj", y, cin, cout, kernel=1, strides=stride, padding=0)
        y = b.emit(relax.op.add(r, y), f"{name}_add")
        return b.emit(relax.op.nn.relu(y), f"{name}_relu")

    def body():
        y = b.conv("stem", x, 3, 8, act="relu")
        y = block("block1", y, 8, 8, 1)
        y = block("block2", y, 8, 16, 2)
        y = block("block3", y, 16, 16, 1)
        y = b.global_avg_pool(y, 16)
        y = b.dense("fc", y, 16, 10)
        return relax.op.nn.softmax(y, axis=-1)

    return _finish(b, body, [x], {"data": x_np})


def resnet(depth: int = 18, batch: int = 1, image: int = 224, layout: str = "NCHW", seed: int = 0):
    """ResNet-18/34 (basic blocks) or ResNet-50 (bottlenecks), batch norm folded into
    conv + bias, random He-initialised weights; 1000 classes, logits out."""
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}[depth]
    bottleneck = depth >= 50
    builder = _Builder(seed, layout)
    x, x_value = _input(builder, "data", (batch, 3, image, image))

    def body():
        y = builder.conv("stem", x, 3, 64, 7, strides=2, padding=3, act="relu")
        y = builder.emit(relax.op.nn.max_pool2d(y, 3, 2, 1, layout=layout), "maxpool")
        cin = 64
        for stage, count in enumerate(blocks):
            width = 64 * 2 ** stage
            cout = width * 4 if bottleneck else width
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                name = f"s{stage}b{i}"
                if bottleneck:
                    h = builder.conv(f"{name}_a", y, cin, width, 1, padding=0, act="relu")
                    h = builder.conv(f"{name}_b", h, width, width, 3, strides=stride, act="relu")
                    h = builder.conv(f"{name}_c", h, width, cout, 1, padding=0)
                else:
                    h = builder.conv(f"{name}_a", y, cin, width, 3, strides=stride, act="relu")
                    h = builder.conv(f"{name}_b", h, width, width, 3)
                short = y
                if stride != 1 or cin != cout:
                    short = builder.conv(f"{name}_proj", y, cin, cout, 1, strides=stride, padding=0)
                y = builder.emit(relax.op.nn.relu(relax.op.add(h, short)), f"{name}_add")
                cin = cout
        pooled = builder.global_avg_pool(y, cin, batch)
        return builder.dense("fc", pooled, cin, 1000)

    return _finish(builder, body, [x], {"data": x_value})


def resnet18(batch: int = 1, layout: str = "NCHW", seed: int = 0):
    """ResNet-18 at 224x224 (1.8 GMACs per image)."""
    return resnet(18, batch, layout=layout, seed=seed)


def resnet50(batch: int = 1, layout: str = "NCHW", seed: int = 0):
    """ResNet-50 at 224x224 (4.1 GMACs per image)."""
    return resnet(50, batch, layout=layout, seed=seed)


def mobilenet_v2(batch: int = 1, image: int = 224, layout: str = "NCHW", seed: int = 0):
    """MobileNetV2-style: inverted residuals (1x1 expand, 3x3 depthwise, 1x1 project)
    with relu6, random weights, 1000 classes."""
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
    builder = _Builder(seed, layout)
    x, x_value = _input(builder, "data", (batch, 3, image, image))

    def body():
        y = builder.conv("stem", x, 3, 32, 3, strides=2, act="relu6")
        cin = 32
        for k, (t, c, n, s) in enumerate(settings):
            for i in range(n):
                stride = s if i == 0 else 1
                hidden = cin * t
                h = y
                if t != 1:
                    h = builder.conv(f"b{k}_{i}_expand", h, cin, hidden, 1, padding=0, act="relu6")
                h = builder.conv(f"b{k}_{i}_dw", h, hidden, hidden, 3, strides=stride, groups=hidden,
                                 act="relu6")
                h = builder.conv(f"b{k}_{i}_project", h, hidden, c, 1, padding=0)
                y = builder.emit(relax.op.add(h, y), f"b{k}_{i}_add") if stride == 1 and cin == c else h
                cin = c
        y = builder.conv("last", y, cin, 1280, 1, padding=0, act="relu6")
        return builder.dense("fc", builder.global_avg_pool(y, 1280, batch), 1280, 1000)

    return _finish(builder, body, [x], {"data": x_value})


def yolov5s(batch: int = 1, image: int = 640, layout: str = "NCHW", seed: int = 0, classes: int = 80):
    """YOLOv5s (v6.1): CSP backbone (C3 blocks), SPPF, PAN neck with nearest 2x
    upsampling and concatenation, and the three 1x1 detection convs (3 anchors x
    (5 + classes) channels at strides 8, 16 and 32). Batch norm folded into conv +
    bias, SiLU activations, random weights; the box decoding and NMS that follow
    the three outputs are left out, as in Sophgo's published BM1684 timings
    (8.2 GMACs and 7.2 M weights per image at 640x640)."""
    builder = _Builder(seed, layout)
    x, x_value = _input(builder, "data", (batch, 3, image, image))
    channel_axis = layout.index("C")

    def conv(name, y, cin, cout, kernel=1, stride=1, padding=None):
        padding = kernel // 2 if padding is None else padding
        return builder.conv(name, y, cin, cout, kernel, strides=stride, padding=padding, act="silu")

    def concat(*values):
        return builder.emit(relax.op.concat(list(values), axis=channel_axis))

    def c3(name, y, cin, cout, n, shortcut=True):
        hidden = cout // 2
        a = conv(f"{name}_cv1", y, cin, hidden)
        for i in range(n):
            h = conv(f"{name}_m{i}_cv1", a, hidden, hidden)
            h = conv(f"{name}_m{i}_cv2", h, hidden, hidden, 3)
            a = builder.emit(relax.op.add(a, h), f"{name}_m{i}_add") if shortcut else h
        b = conv(f"{name}_cv2", y, cin, hidden)
        return conv(f"{name}_cv3", concat(a, b), 2 * hidden, cout)

    def sppf(name, y, cin, cout):
        hidden = cin // 2
        y = conv(f"{name}_cv1", y, cin, hidden)
        pools = [y]
        for k in range(3):
            pools.append(builder.emit(relax.op.nn.max_pool2d(pools[-1], 5, 1, 2, layout=layout), f"{name}_pool{k}"))
        return conv(f"{name}_cv2", concat(*pools), 4 * hidden, cout)

    def upsample(y):
        size = [int(d) * 2 for d in (y.ty.shape[layout.index("H")], y.ty.shape[layout.index("W")])]
        return builder.emit(relax.op.image.resize2d(y, size, layout=layout, method="nearest_neighbor",
                                                    coordinate_transformation_mode="asymmetric",
                                                    rounding_method="floor"))

    def body():
        y = conv("b0", x, 3, 32, 6, 2, padding=2)           # the v6.1 stem: 6x6/2, padding 2
        y = conv("b1", y, 32, 64, 3, 2)
        y = c3("b2", y, 64, 64, 1)
        y = conv("b3", y, 64, 128, 3, 2)
        p3 = c3("b4", y, 128, 128, 2)
        y = conv("b5", p3, 128, 256, 3, 2)
        p4 = c3("b6", y, 256, 256, 3)
        y = conv("b7", p4, 256, 512, 3, 2)
        y = c3("b8", y, 512, 512, 1)
        y = sppf("b9", y, 512, 512)
        h10 = conv("h10", y, 512, 256)
        y = c3("h13", concat(upsample(h10), p4), 512, 256, 1, shortcut=False)
        h14 = conv("h14", y, 256, 128)
        out3 = c3("h17", concat(upsample(h14), p3), 256, 128, 1, shortcut=False)
        y = conv("h18", out3, 128, 128, 3, 2)
        out4 = c3("h20", concat(y, h14), 256, 256, 1, shortcut=False)
        y = conv("h21", out4, 256, 256, 3, 2)
        out5 = c3("h23", concat(y, h10), 512, 512, 1, shortcut=False)
        heads = [builder.conv(f"detect{i}", o, c, 3 * (5 + classes), 1, padding=0)
                 for i, (o, c) in enumerate(((out3, 128), (out4, 256), (out5, 512)))]
        return relax.Tuple(heads)

    return _finish(builder, body, [x], {"data": x_value})


MODELS = {
    "demo_cnn": demo_cnn,
    "mlp": mlp,
    "resnet_tiny": resnet_tiny,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "yolov5s": yolov5s,
}


# ------------------------------------------------------------------ reference


def bind_params(mod: tvm.IRModule, params: Optional[dict]) -> tvm.IRModule:
    """``main`` with ``params`` bound as constants (BindParams)."""
    if not params:
        return mod
    return relax.transform.BindParams(
        "main", {k: tvm.runtime.tensor(np.asarray(v)) for k, v in params.items()})(mod)


def main_input_names(mod: tvm.IRModule) -> list[str]:
    """Names of ``main``'s parameters, in order."""
    return [p.name for p in mod["main"].params]


def _to_numpy(value):
    """A VM result as numpy: a tensor -> array, a tuple (ffi Array) -> list of arrays."""
    if hasattr(value, "numpy"):
        return value.numpy()
    return [_to_numpy(v) for v in value]


def reference_run(mod: tvm.IRModule, params: Optional[dict], inputs: dict):
    """Run ``mod`` with TVM's plain llvm build, nothing of tvm_sophon involved.

    ``params`` are bound first (BindParams), the module is built with
    ``tvm.compile(mod, target="llvm")`` and run on the CPU with ``inputs``
    (matched to ``main``'s remaining parameters by name). Returns a numpy array,
    or a list of arrays if ``main`` returns a tuple.
    """
    bound = bind_params(mod, params)
    ex = tvm.compile(bound, target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    args = [tvm.runtime.tensor(np.asarray(inputs[name])) for name in main_input_names(bound)]
    return _to_numpy(vm["main"](*args))
