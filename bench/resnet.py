"""ResNet-18 / ResNet-50 (and a MobileNetV2-style network) as Relax modules with
random weights, for benchmarks: conv + bias (batch norm folded) + relu, residual
adds, max pool, global average pool, dense."""
from __future__ import annotations

import numpy as np
from tvm import relax

F32 = "float32"


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        self.vars: list[relax.Var] = []

    def weight(self, name: str, shape) -> relax.Var:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        self.params[name] = (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(F32)
        var = relax.Var(name, relax.TensorType(shape, F32))
        self.vars.append(var)
        return var

    def conv(self, bb, x, name, cin, cout, k, stride=1, relu=True, groups=1):
        w = self.weight(f"{name}_w", (cout, cin // groups, k, k))
        b = self.weight(f"{name}_b", (cout,))
        y = bb.emit(relax.op.nn.conv2d(x, w, strides=stride, padding=k // 2, groups=groups))
        y = bb.emit(relax.op.add(y, relax.op.reshape(b, (1, cout, 1, 1))))
        return bb.emit(relax.op.nn.relu(y)) if relu else y


def _head(builder, bb, x, channels, classes=1000):
    g = bb.emit(relax.op.nn.adaptive_avg_pool2d(x, (1, 1)))
    f = bb.emit(relax.op.reshape(g, (-1, channels)))
    w = builder.weight("fc_w", (classes, channels))
    b = builder.weight("fc_b", (classes,))
    return bb.emit(relax.op.add(relax.op.matmul(f, relax.op.permute_dims(w)), b))


def resnet(depth: int = 18, batch: int = 1, image: int = 224, seed: int = 0):
    """ResNet-18/34 (basic blocks) or ResNet-50 (bottlenecks). Returns (mod, params, inputs)."""
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}[depth]
    bottleneck = depth >= 50
    builder = _Builder(seed)
    x = relax.Var("data", relax.TensorType((batch, 3, image, image), F32))
    bb = relax.BlockBuilder()
    with bb.function("main"):
        with bb.dataflow():
            y = builder.conv(bb, x, "stem", 3, 64, 7, stride=2)
            y = bb.emit(relax.op.nn.max_pool2d(y, 3, 2, 1))
            cin = 64
            for stage, count in enumerate(blocks):
                width = 64 * 2 ** stage
                cout = width * 4 if bottleneck else width
                for i in range(count):
                    stride = 2 if stage > 0 and i == 0 else 1
                    name = f"s{stage}b{i}"
                    if bottleneck:
                        h = builder.conv(bb, y, f"{name}_a", cin, width, 1)
                        h = builder.conv(bb, h, f"{name}_b", width, width, 3, stride)
                        h = builder.conv(bb, h, f"{name}_c", width, cout, 1, relu=False)
                    else:
                        h = builder.conv(bb, y, f"{name}_a", cin, width, 3, stride)
                        h = builder.conv(bb, h, f"{name}_b", width, width, 3, relu=False)
                    short = y
                    if stride != 1 or cin != cout:
                        short = builder.conv(bb, y, f"{name}_proj", cin, cout, 1, stride, relu=False)
                    y = bb.emit(relax.op.nn.relu(relax.op.add(h, short)))
                    cin = cout
            out = bb.emit_output(_head(builder, bb, y, cin))
        bb.emit_func_output(out, params=[x, *builder.vars])
    inputs = {"data": np.random.default_rng(seed + 1).standard_normal((batch, 3, image, image)).astype(F32)}
    return bb.get(), builder.params, inputs


def mobilenet_v2(batch: int = 1, image: int = 224, seed: int = 0):
    """MobileNetV2-style: inverted residuals (1x1 expand, 3x3 depthwise, 1x1 project), relu6."""
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
    builder = _Builder(seed)
    x = relax.Var("data", relax.TensorType((batch, 3, image, image), F32))
    bb = relax.BlockBuilder()

    def relu6(v):
        return bb.emit(relax.op.clip(v, relax.prim_value(0.0), relax.prim_value(6.0)))

    with bb.function("main"):
        with bb.dataflow():
            y = relu6(builder.conv(bb, x, "stem", 3, 32, 3, 2, relu=False))
            cin = 32
            for k, (t, c, n, s) in enumerate(settings):
                for i in range(n):
                    stride = s if i == 0 else 1
                    hidden = cin * t
                    h = y
                    if t != 1:
                        h = relu6(builder.conv(bb, h, f"b{k}_{i}_exp", cin, hidden, 1, relu=False))
                    h = relu6(builder.conv(bb, h, f"b{k}_{i}_dw", hidden, hidden, 3, stride, relu=False,
                                           groups=hidden))
                    h = builder.conv(bb, h, f"b{k}_{i}_proj", hidden, c, 1, relu=False)
                    y = bb.emit(relax.op.add(h, y)) if stride == 1 and cin == c else h
                    cin = c
            y = relu6(builder.conv(bb, y, "last", cin, 1280, 1, relu=False))
            out = bb.emit_output(_head(builder, bb, y, 1280))
        bb.emit_func_output(out, params=[x, *builder.vars])
    inputs = {"data": np.random.default_rng(seed + 1).standard_normal((batch, 3, image, image)).astype(F32)}
    return bb.get(), builder.params, inputs
