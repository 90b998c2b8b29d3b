"""The INT8 model zoo of issue #11: the Keras families of tests/zoo_models.py (and
two small nets written here) converted to full-integer TFLite, as a user
converts them for an INT8 accelerator:

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = ...     # random inputs, unit scale
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8

    model = zoo_int8_models.build("efficientnetb0", workdir)
    expected = model.reference()               # TFLite's reference kernels (BUILTIN_REF)

The models are built by tests/zoo_models.py's builders at their "small" size
(random weights, BatchNorm statistics from one training-mode pass), so the
FP32 and INT8 zoos are the same networks. The example input is the model's
seeded float input quantized with the model's own input scale and zero point.
Files are cached in the work directory like the FP32 zoo's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from pathlib import Path
from typing import Callable

import numpy as np

import zoo_models

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CALIBRATION_BATCHES = 8


def _unet_keras(size):
    """A U-Net-style segmentation net in Keras: conv-BN-ReLU pairs, a max-pool
    encoder, a decoder that upsamples with Conv2DTranspose (stride 2) at one
    level and a bilinear UpSampling2D + 1x1 conv at the other, concatenating the
    skip connection each time; a 1x1 conv to the class maps."""
    import tensorflow as tf

    L = tf.keras.layers
    base, image = 8, 32

    def double(x, ch):
        for _ in range(2):
            x = L.ReLU()(L.BatchNormalization()(L.Conv2D(ch, 3, padding="same", use_bias=False)(x)))
        return x

    inp = tf.keras.Input((image, image, 3))
    s0 = double(inp, base)
    s1 = double(L.MaxPooling2D(2)(s0), 2 * base)
    x = double(L.MaxPooling2D(2)(s1), 4 * base)
    x = L.Conv2DTranspose(2 * base, 2, strides=2)(x)
    x = double(L.Concatenate()([s1, x]), 2 * base)
    x = L.Conv2D(base, 1)(L.UpSampling2D(2, interpolation="bilinear")(x))
    x = double(L.Concatenate()([s0, x]), base)
    return tf.keras.Model(inp, L.Conv2D(3, 1)(x)), (1, image, image, 3)


def _sepconv_tanh(size):
    """A small separable-conv net: SeparableConv2D + BN + tanh twice, a global
    average pool and a dense classifier (issue #11's 'tanh and mean on the host')."""
    import tensorflow as tf

    L = tf.keras.layers
    inp = tf.keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same")(inp)
    for ch in (16, 24):
        x = L.Activation("tanh")(L.BatchNormalization()(L.SeparableConv2D(ch, 3, padding="same")(x)))
    x = L.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inp, L.Dense(5)(x)), (1, 16, 16, 3)


#: name -> builder(size) of (Keras model, input shape). The Keras apps are the FP32
#: zoo's specs ("small" by default, "full" their published size); the two nets
#: written here have one size.
def _from_zoo(name):
    spec = zoo_models.MODELS[name]
    return lambda size="small": spec.make(size)


MODELS: dict[str, Callable] = {
    "efficientnetb0": _from_zoo("efficientnetb0"),
    "inceptionv3": _from_zoo("inceptionv3"),
    "xception": _from_zoo("xception"),
    "resnet50": _from_zoo("resnet50"),
    "densenet121": _from_zoo("densenet121"),
    "nasnetmobile": _from_zoo("nasnetmobile"),
    "convnext_tiny": _from_zoo("convnext_tiny"),
    "mobilenetv3small": _from_zoo("mobilenetv3small"),
    "mobilenet": _from_zoo("mobilenet"),
    "mobilenetv2": _from_zoo("mobilenetv2"),
    "mobilenetv3large": _from_zoo("mobilenetv3large"),
    "resnet50v2": _from_zoo("resnet50v2"),
    "vgg19": _from_zoo("vgg19"),
    "unet_keras": lambda size="small": _unet_keras(size),
    "sepconv_tanh": lambda size="small": _sepconv_tanh(size),
}


@dataclasses.dataclass
class Int8Model:
    name: str
    path: Path
    inputs: list                    # int8 arrays, in the model's input order

    def load(self):
        from tvm_sophon.frontend import load

        return load(self.path)

    def reference(self, resolver: str = "BUILTIN_REF") -> list:
        """The TFLite interpreter's outputs: by default its reference kernels (the
        specification of TFLite's integer arithmetic); "AUTO" for the default,
        optimized kernels."""
        return run_tflite(self.path.read_bytes(), self.inputs, resolver)


def run_tflite(buf: bytes, inputs: list, resolver: str = "BUILTIN_REF") -> list:
    import tensorflow as tf

    kind = getattr(tf.lite.experimental.OpResolverType, resolver)
    interp = tf.lite.Interpreter(model_content=buf, experimental_op_resolver_type=kind)
    interp.allocate_tensors()
    for detail, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def convert_int8(model, shape, rng, batches: int = CALIBRATION_BATCHES) -> bytes:
    """Full-integer TFLite (int8 in and out) of a Keras model at batch 1,
    calibrated on ``batches`` random unit-scale inputs."""
    import tensorflow as tf

    inp = tf.keras.Input(shape[1:], batch_size=1, name="input")
    fixed = tf.keras.Model(inp, model(inp))
    samples = [rng.standard_normal(shape).astype("float32") for _ in range(batches)]
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def quantized_input(buf: bytes, x: np.ndarray) -> np.ndarray:
    """``x`` quantized with the model's first input's scale and zero point."""
    import tflite

    graph = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    q = graph.Tensors(graph.Inputs(0)).Quantization()
    scale, zp = float(q.ScaleAsNumpy()[0]), int(q.ZeroPointAsNumpy()[0])
    return np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)


def build(name: str, workdir, size: str = "small") -> Int8Model:
    """INT8 model ``name`` ("small" inputs, or "full": the published size), written
    to ``workdir`` unless it is already there."""
    if name not in MODELS:
        raise KeyError(f"unknown INT8 zoo model {name!r} (known: {', '.join(MODELS)})")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}-int8{'' if size == 'small' else '-' + size}.tflite"
    seed = zoo_models._seed(name + "-int8")
    if not path.exists():
        rng = np.random.default_rng(seed)
        zoo_models._seed_framework("keras", seed)
        model, shape = MODELS[name](size)
        zoo_models._calibrate_keras(model, shape, rng)
        zoo_models._atomic_write(path, convert_int8(model, shape, rng))
    buf = path.read_bytes()
    import tflite

    graph = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    shape = tuple(int(d) for d in graph.Tensors(graph.Inputs(0)).ShapeAsNumpy())
    x = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    return Int8Model(name, path, [quantized_input(buf, x)])


def lsb_distance(actual: list, expected: list) -> tuple[int, int, int]:
    """(bit-exact elements, all elements, max |difference| in LSB) over every output."""
    exact = total = worst = 0
    for a, e in zip(actual, expected):
        d = np.abs(np.asarray(a).astype(np.int32) - np.asarray(e).astype(np.int32))
        exact += int(np.sum(d == 0))
        total += d.size
        worst = max(worst, int(d.max()) if d.size else 0)
    return exact, total, worst


# ------------------------------------------------------------------ the bench's rows


def measure(name: str, workdir, size: str = "small") -> dict:
    """One row of ``bench/zoo.py --int8``: the chip against TFLite's reference
    kernels (BUILTIN_REF), its default interpreter (AUTO: optimized kernels and
    the XNNPACK delegate) and its optimized kernels without delegates (BUILTIN),
    regions and host ops with their reasons. A failing stage ends the row with
    its one-line error."""
    import tvm
    from tvm import relax

    import tvm_sophon
    from tvm_sophon.frontend import _one_line

    row = {"model": name}
    stage = "convert"
    try:
        model = build(name, workdir, size)
        row["input"] = list(model.inputs[0].shape)
        stage = "import"
        mod = model.load()
        stage = "partition"
        partitioned = tvm_sophon.partition_for_sophon(mod, chip="bm1684")
        report = tvm_sophon.offload_report(partitioned)
        row["regions"] = len(report.regions)
        row["host_ops"], row["host_reasons"] = zoo_models.host_op_summary(report)
        stage = "build"
        vm = relax.VirtualMachine(tvm_sophon.build(partitioned, chip="bm1684"), tvm.cpu())
        stage = "run"
        out = vm["main"](*map(tvm.runtime.tensor, model.inputs))
        actual = [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
        stage = "compare"
        for key, resolver in (("ref", "BUILTIN_REF"), ("auto", "AUTO"), ("builtin", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")):
            row[f"exact_{key}"], row["elements"], row[f"lsb_{key}"] = lsb_distance(actual, model.reference(resolver))
    except Exception as err:  # the row records the failure, the bench goes on
        row["error"] = f"{stage}: {_one_line(err)}"
    return row


def format_table(rows: list) -> str:
    header = ["model", "input", "bit-exact vs BUILTIN_REF", "max LSB vs REF", "max LSB vs default",
              "max LSB vs BUILTIN", "regions", "host ops"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        shape = row.get("input") or []
        cells = [row["model"], "x".join(str(d) for d in shape[1:]) if shape else "-",
                 f"{row['exact_ref']}/{row['elements']}" if "exact_ref" in row else "-",
                 str(row.get("lsb_ref", "-")), str(row.get("lsb_auto", "-")), str(row.get("lsb_builtin", "-")),
                 str(row.get("regions", "-")),
                 ", ".join(row.get("host_ops", [])) or ("none" if "regions" in row else "-")]
        if "error" in row:
            cells[-1] += f"; **{row['error']}**"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
