"""The ONNX QDQ zoo of issue #11: the PyTorch families of tests/zoo_models.py
(their "small" sizes) quantized by onnxruntime's own static quantizer, as a user
quantizes an ONNX model for an INT8 accelerator:

    quantize_static(fp32, qdq, reader, quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True)            # reader: random unit-scale inputs

    model = zoo_qdq_models.build("resnet18_pt", workdir)
    expected = model.reference()                 # onnxruntime running the QDQ file

The reference is onnxruntime's CPU provider on the same QDQ file (its QDQ
graph transformer turns the DequantizeLinear -> op -> QuantizeLinear groups
into its int8 kernels); the distance is counted in LSB of each output's
DequantizeLinear scale.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import zoo_models

CALIBRATION_BATCHES = 4

#: the torch families of the FP32 zoo, at their small size
MODELS = ("resnet18_pt", "mobilenetv3_pt", "squeezenet_pt", "shufflenetv2_pt", "yolov5s_pt", "unet_pt",
          "googlenet_lrn_pt")


def quantize_qdq(fp32: Path, qdq: Path, input_name: str, shape, rng, batches: int = CALIBRATION_BATCHES) -> None:
    """onnxruntime's static QDQ quantization: int8 activations, per-channel int8
    weights, calibrated (MinMax) on ``batches`` random unit-scale inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{input_name: rng.standard_normal(shape).astype(np.float32)}
                                 for _ in range(batches)])

        def get_next(self):
            return next(self.batches, None)

    tmp = qdq.with_suffix(".tmp.onnx")
    quantize_static(str(fp32), str(tmp), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    tmp.replace(qdq)


def output_steps(path: Path) -> list:
    """The scale of the DequantizeLinear producing each graph output (1 LSB), or
    None where an output is not dequantized."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    steps = []
    for out in graph.output:
        node = producers.get(out.name)
        ok = node is not None and node.op_type == "DequantizeLinear" and node.input[1] in inits
        steps.append(float(inits[node.input[1]]) if ok else None)
    return steps


@dataclasses.dataclass
class QdqModel:
    name: str
    path: Path
    inputs: dict

    def load(self):
        from tvm_sophon.frontend import load

        return load(self.path)

    def reference(self) -> list:
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        return session.run(None, self.inputs)


def build(name: str, workdir) -> QdqModel:
    """The QDQ file of torch zoo model ``name`` (small size), quantized once and
    kept in ``workdir``."""
    if name not in zoo_models.MODELS or zoo_models.MODELS[name].family != "torch":
        raise KeyError(f"unknown QDQ zoo model {name!r} (known: {', '.join(MODELS)})")
    workdir = Path(workdir)
    fp32 = zoo_models.build(name, "small", workdir)
    qdq = workdir / f"{name}-small.qdq.onnx"
    (input_name, x), = fp32.inputs.items()
    if not qdq.exists():
        quantize_qdq(fp32.path, qdq, input_name, x.shape, np.random.default_rng(zoo_models._seed(name + "-qdq")))
    return QdqModel(name, qdq, {input_name: x})


def lsb_distance(actual: list, expected: list, steps: list) -> tuple[int, int, float]:
    """(elements within 0.5 LSB, all elements, max |difference| in LSB) over every output."""
    exact = total = 0
    worst = 0.0
    for a, e, step in zip(actual, expected, steps):
        d = np.abs(np.asarray(a, np.float64) - np.asarray(e, np.float64)) / (step or 1.0)
        exact += int(np.sum(d < 0.5))
        total += d.size
        worst = max(worst, float(d.max()) if d.size else 0.0)
    return exact, total, worst


def measure(name: str, workdir) -> dict:
    """One row of ``bench/zoo.py --qdq``: regions, host ops and the distance to
    onnxruntime in LSB; a failing stage ends the row with its one-line error."""
    import tvm
    from tvm import relax

    import tvm_sophon
    from tvm_sophon.frontend import _one_line

    row = {"model": name}
    stage = "quantize"
    try:
        model = build(name, workdir)
        row["input"] = list(next(iter(model.inputs.values())).shape)
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
        actual = zoo_models._outputs(vm["main"](*map(tvm.runtime.tensor, model.inputs.values())))
        stage = "compare"
        row["exact"], row["elements"], row["lsb"] = lsb_distance(actual, model.reference(), output_steps(model.path))
    except Exception as err:  # the row records the failure, the bench goes on
        row["error"] = f"{stage}: {_one_line(err)}"
    return row


def format_table(rows: list) -> str:
    header = ["model", "input", "within 0.5 LSB of onnxruntime", "max LSB", "regions", "host ops"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        shape = row.get("input") or []
        cells = [row["model"], "x".join(str(d) for d in shape[1:]) if shape else "-",
                 f"{row['exact']}/{row['elements']}" if "exact" in row else "-",
                 f"{row['lsb']:.2f}" if "lsb" in row else "-", str(row.get("regions", "-")),
                 ", ".join(row.get("host_ops", [])) or ("none" if "regions" in row else "-")]
        if "error" in row:
            cells[-1] += f"; **{row['error']}**"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
