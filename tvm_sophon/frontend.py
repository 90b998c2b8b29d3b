"""Frontends: models from TensorFlow (as .tflite), ONNX and PyTorch into Relax
that the sophon pattern table matches.

    mod = tvm_sophon.frontend.load("model.tflite")              # or .onnx
    mod = tvm_sophon.frontend.from_exported_program(torch.export.export(model, (x,)))
    partitioned = tvm_sophon.partition_for_sophon(mod)

Each loader imports with TVM's own frontend (``tvm.relax.frontend.tflite``,
``.onnx``, ``.torch``), binds the weights as constants, and runs
:func:`tvm_sophon.normalize.normalize`, which rewrites what the frontend emits
into the forms the chip's patterns take (ONNX Clip, PyTorch BatchNorm, ...).

A file that is missing, truncated or not a model of its format, an input name
the model does not have, or an op TVM's importer does not know raises
:class:`SophonFrontendError` with one line saying what and where. The frontend
packages (tflite, onnx, torch) are imported only when their format is loaded.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tvm
from tvm import relax

from .errors import SophonError
from .names import NamingBuilder, emit_named
from .normalize import normalize
from .quant import is_quantized

FORMATS = {".tflite": "tflite", ".onnx": "onnx"}


class SophonFrontendError(SophonError):
    """A model file cannot be read or imported (the message says which and why)."""


@dataclasses.dataclass(frozen=True)
class Input:
    """One input of an imported model's ``main``: name, static shape (None where a
    dimension is dynamic) and dtype."""
    name: str
    shape: Optional[tuple]
    dtype: str

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(d is not None for d in self.shape)


def inputs_of(mod: tvm.IRModule) -> list[Input]:
    """The inputs of ``mod["main"]`` in call order."""
    result = []
    for param in mod["main"].params:
        ty = param.ty
        if not isinstance(ty, relax.TensorType):
            result.append(Input(param.name, None, "object"))
            continue
        shape = None
        if ty.shape is not None:
            shape = tuple(int(d) if isinstance(d, tvm.ir.prim.expr.IntImm) else None
                          for d in ty.shape.values)
        result.append(Input(param.name, shape, str(ty.dtype)))
    return result


# ------------------------------------------------------------------ helpers


def _read(path: "str | os.PathLike") -> bytes:
    path = Path(path)
    if not path.exists():
        raise SophonFrontendError(f"model file {path} does not exist")
    if not path.is_file():
        raise SophonFrontendError(f"model path {path} is not a file")
    data = path.read_bytes()
    if not data:
        raise SophonFrontendError(f"model file {path} is empty")
    return data


INSTALL = {"tflite": "pip install 'tvm-sophon[tflite]'", "onnx": "pip install 'tvm-sophon[onnx]'",
           "torch": "pip install torch (the CPU build: --index-url https://download.pytorch.org/whl/cpu)"}


def _require(module: str, fmt: str):
    try:
        return __import__(module)
    except ImportError:
        raise SophonFrontendError(
            f"loading {fmt} models needs the '{module}' package: {INSTALL[module]}") from None


def _one_line(err: BaseException) -> str:
    """The first meaningful line of an exception's message, with its type."""
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # TVM errors put the message last, after a traceback of C++ frames
    line = next((ln for ln in reversed(lines) if not ln.startswith(("File ", "at ", "Traceback"))), "")
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def _check_shape_names(input_shapes: Optional[dict], names: Sequence[str], path) -> None:
    unknown = sorted(set(input_shapes or {}) - set(names))
    if unknown:
        raise SophonFrontendError(
            f"{path}: the model has no input named {', '.join(repr(u) for u in unknown)} "
            f"(its inputs: {', '.join(names) or 'none'})")


def _dynamic_error(path, name: str, dims) -> SophonFrontendError:
    shown = "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"
    hint = f"--input-shape {name}=" + ",".join("N" if d is None else str(d) for d in dims)
    return SophonFrontendError(f"{path}: input '{name}' has a dynamic shape {shown}; the chip needs static "
                               f"shapes: give it with {hint} (input_shapes= in Python)")


def _fix_shapes(path, input_shapes: Optional[dict], declared: dict, *, batch_default: bool,
                require_static: bool = True) -> dict:
    """Shapes to import with: the user's (checked against the model's rank and fixed
    dimensions), and for a dynamic batch not given, batch 1 if ``batch_default``
    (said in one line on the ``tvm_sophon`` logger). Any other dynamic dimension
    not given is an error naming the input."""
    shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()}
    for name, dims in declared.items():
        shown = "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"
        if name in shapes:
            given = shapes[name]
            if len(given) != len(dims):
                raise SophonFrontendError(
                    f"{path}: input '{name}' has rank {len(dims)} {shown}; the shape given has "
                    f"{len(given)} dimensions {list(given)}")
            wrong = [i for i, (d, g) in enumerate(zip(dims, given)) if d is not None and d != g]
            if wrong:
                i = wrong[0]
                raise SophonFrontendError(
                    f"{path}: input '{name}' is {shown}: dimension {i} is fixed at {dims[i]} in the model, "
                    f"the shape given has {given[i]}")
            continue
        if all(d is not None for d in dims):
            continue
        hint = f"--input-shape {name}=" + ",".join("N" if d is None else str(d) for d in dims)
        if batch_default and dims and dims[0] is None and all(d is not None for d in dims[1:]):
            shapes[name] = (1, *dims[1:])
            logging.getLogger("tvm_sophon").warning(
                f"{name}: the model's batch is dynamic; compiling for batch 1 (another: {hint})")
            continue
        if require_static:
            raise _dynamic_error(path, name, dims)
    return shapes


def _close_blocks(bb) -> None:
    """End the blocks an importer left open when it failed, so that TVM does not
    print "BlockBuilder destroyed with remaining blocks!" after our one-line error."""
    bb = getattr(bb, "_bb", bb)  # a NamingBuilder
    if not isinstance(bb, relax.BlockBuilder):
        return
    for _ in range(16):
        try:
            bb._end_block()
        except Exception:  # no block left
            return


def _finish(mod: tvm.IRModule, what: str) -> tvm.IRModule:
    try:
        return normalize(mod)
    except SophonError:
        raise
    except Exception as err:  # a TVM pass failed on the imported IR
        raise SophonFrontendError(f"{what}: normalising the imported Relax failed: {_one_line(err)}") from err


# ------------------------------------------------------------------ TFLite


def load_tflite(path: "str | os.PathLike", input_shapes: Optional[dict] = None) -> tvm.IRModule:
    """A ``.tflite`` file (TensorFlow's deployment format) as normalised Relax.

    ``input_shapes`` (name -> shape) overrides the shapes stored in the file, e.g.
    to fix a batch dimension the converter left at -1."""
    data = _read(path)
    tflite = _require("tflite", "TFLite")
    # A TFLite file is a FlatBuffer whose identifier, at bytes 4..8, is "TFL3".
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise SophonFrontendError(f"{path} is not a TFLite model (no 'TFL3' FlatBuffer identifier)")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        names = _tflite_input_names(model)
    except Exception as err:  # FlatBuffer offsets past the end of a truncated file
        raise SophonFrontendError(f"{path} is truncated or corrupt: {_one_line(err)}") from None
    _check_shape_names(input_shapes, names, path)
    shapes = _fix_shapes(path, input_shapes, _tflite_declared(model), batch_default=True)
    from tvm.relax.frontend.tflite import from_tflite

    converters: list = []
    try:
        mod = from_tflite(model, shape_dict=shapes or None,
                          op_converter=_tflite_naming_converter(converters))
    except Exception as err:
        for converter in converters:
            _close_blocks(converter.bb)
        if isinstance(err, tvm.error.OpNotImplemented):
            raise SophonFrontendError(f"{path}: TVM's TFLite importer does not support it: {_one_line(err)}") from None
        raise SophonFrontendError(f"{path}: TVM's TFLite importer failed (truncated or unsupported "
                                  f"model?): {_one_line(err)}") from None
    mod["main"] = _reshape_outputs(mod["main"].without_attr("params"),  # weights are constants in main
                                   _tflite_output_dims(model))
    return _finish(mod, str(path))


def _tflite_layer_name(tensor_name: str) -> str:
    """A fused op's tensor is named after every op in it, ``a/conv/Relu;a/conv/convolution``:
    the path they share (``a/conv``), else the first name."""
    parts = [p.split("/") for p in tensor_name.split(";")]
    common = []
    for pieces in zip(*parts):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    return "/".join(common) if common and len(parts) > 1 else parts[0] and "/".join(parts[0])


# Quantized ops TVM 0.27's TFLite importer refuses ("not supported in frontend
# TFLite yet") that this frontend imports:
# - data movement: TFLite's int8 kernels copy the int8 values (the converter gives
#   input and output one quantization; PAD fills with the zero point), and the
#   importer's own converters already write exactly that on the int8 tensor (as it
#   does for the quantized RESHAPE it accepts), so they are only let through;
# - GELU, RESIZE_NEAREST_NEIGHBOR and PRELU: in the importer's float-emulation form,
#   dequantize -> nn.gelu (nn.gelu_tanh when approximate) / the importer's
#   resize2d / nn.prelu (where(x > 0, x, x * alpha) for a slope that is not one
#   per channel) -> quantize, the chains the int8 patterns take.
QUANTIZED_MOVES = frozenset({
    "PAD", "PADV2", "STRIDED_SLICE", "SLICE", "SPLIT", "SPLIT_V", "TRANSPOSE", "TILE", "SQUEEZE",
    "EXPAND_DIMS", "PACK", "UNPACK", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND"})
QUANTIZED_FLOAT_EMULATED = frozenset({"GELU", "RESIZE_NEAREST_NEIGHBOR", "PRELU"})


def _tflite_naming_converter(instances: list):
    """TVM's TFLite OperatorConverter, with each op's Relax named after the op's
    first output tensor (see names.py), and the quantized ops above imported."""
    from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter, get_tensor_name

    class NamingConverter(OperatorConverter):
        _SUPPORTED_QUANTIZED_OPS = OperatorConverter._SUPPORTED_QUANTIZED_OPS | QUANTIZED_MOVES \
            | QUANTIZED_FLOAT_EMULATED

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            instances.append(self)
            self.convert_map["SHAPE"] = self._static_shape
            self.convert_map["RESHAPE"] = self._reshape
            self.convert_map["GELU"] = self._gelu
            self.convert_map["RESIZE_NEAREST_NEIGHBOR"] = self._resize_nearest
            self.convert_map["PRELU"] = self._prelu
            self.convert_map = {k: self._named(f) for k, f in self.convert_map.items()}

        def _named(self, convert):
            def run(op):
                outputs = self.get_output_tensors(op)
                name = _tflite_layer_name(get_tensor_name(self.subgraph, outputs[0].tensor_idx)) if outputs else ""
                bb, self.bb = self.bb, NamingBuilder(self.bb, name, fold=_fold_constant)
                try:
                    result = convert(op=op)
                    folded = _fold_constant(result)
                    return folded if folded is not None else emit_named(bb, result, name)
                finally:
                    self.bb = bb
            return run

        # A Keras model with a dynamic batch computes Flatten's target shape at run
        # time (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE), which TVM's importer
        # cannot take. Once the batch is fixed every shape is static: SHAPE is a
        # constant, the slicing folds, and RESHAPE gets a constant target.
        def _static_shape(self, op):
            (tensor,) = self.get_input_tensors(op)
            ty = self.get_tensor_expr(tensor).ty
            dims = [d.value if isinstance(d, tvm.ir.prim.expr.IntImm) else None for d in ty.shape.values] \
                if isinstance(ty, relax.TensorType) and ty.shape is not None else [None]
            if None in dims:
                return self.convert_shape(op)
            dtype = self.get_tensor_type_str(self.get_output_tensors(op)[0].tensor.Type())
            return relax.const(np.array(dims, dtype=dtype))

        def _gelu(self, op):
            if not self.is_quantized(op):
                return self.convert_gelu(op)
            from tflite.GeluOptions import GeluOptions

            options = GeluOptions()
            table = op.BuiltinOptions()
            approximate = False
            if table is not None:
                options.Init(table.Bytes, table.Pos)
                approximate = bool(options.Approximate())
            (tensor,) = self.get_input_tensors(op)
            (out,) = self.get_output_tensors(op)
            x = self.dequantize(self.get_expr(tensor.tensor_idx), tensor)
            y = relax.op.nn.gelu_tanh(x) if approximate else relax.op.nn.gelu(x)
            return self.quantize(y, out)

        def _resize_nearest(self, op):
            out = self.convert_resize_nearest_neighbor(op)
            if not self.is_quantized(op):
                return out
            # the importer resizes the int8 tensor itself: the same call between
            # dequantize and quantize
            tensor, out_tensor = self.get_input_tensors(op)[0], self.get_output_tensors(op)[0]
            x = self.dequantize(out.args[0], tensor)
            return self.quantize(relax.Call(out.op, [x, *out.args[1:]], out.attrs, out.ty_args), out_tensor)

        def _prelu(self, op):
            if not self.is_quantized(op):
                return self.convert_prelu(op)
            # TFLite's int8 PRELU: alpha is a constant int8 tensor with its own scale
            # and zero point, broadcast against the input. One slope per channel
            # (Keras' shared_axes=[1, 2]) is nn.prelu on the last axis; any other
            # slope is broadcast here to one per element and the input flattened to
            # (N, elements), so that it is again a slope on the last axis
            tensor, alpha_tensor = self.get_input_tensors(op)
            (out,) = self.get_output_tensors(op)
            if self.has_expr(alpha_tensor.tensor_idx):
                raise tvm.error.OpNotImplemented("quantized PRELU with a computed (not constant) alpha")
            shape = [int(d) for d in self.get_tensor_shape(tensor)]
            alpha = np.asarray(self.get_tensor_value(alpha_tensor))
            while alpha.ndim >= len(shape) and alpha.shape[0] == 1:
                alpha = alpha.reshape(alpha.shape[1:])
            x = self.get_tensor_expr(tensor)
            per_channel = all(d == 1 for d in alpha.shape[:-1])
            if per_channel:
                alpha = np.broadcast_to(alpha.reshape(-1), shape[-1:])
            else:
                alpha = np.broadcast_to(alpha, shape[1:]).reshape(-1)
                x = relax.op.reshape(x, [shape[0], alpha.size])
            y = relax.op.nn.prelu(self.dequantize(x, tensor),
                                  self.dequantize(relax.const(np.ascontiguousarray(alpha)), alpha_tensor), axis=-1)
            y = self.quantize(y, out)
            return y if per_channel else relax.op.reshape(y, shape)

        def _reshape(self, op):
            tensors = self.get_input_tensors(op)
            if len(tensors) == 2 and self.has_expr(tensors[1].tensor_idx):
                target = _fold_constant(self.get_expr(tensors[1].tensor_idx))
                if target is not None:
                    shape = [int(d) for d in target.value.numpy().reshape(-1)]
                    return relax.op.reshape(self.get_expr(tensors[0].tensor_idx), shape)
            return self.convert_reshape(op)

    return NamingConverter


def _fold_constant(expr):
    """``expr`` as a relax constant if it computes from constants only, else None."""
    if isinstance(expr, tvm.ir.expr.Constant):
        return expr
    leaves_constant = [True]

    def visit(e):
        if isinstance(e, relax.Var):
            leaves_constant[0] = False

    if not isinstance(expr, relax.Call):
        return None
    relax.analysis.post_order_visit(expr, visit)
    if not leaves_constant[0]:
        return None
    bb = relax.BlockBuilder()
    try:
        with bb.function("fold", []):
            with bb.dataflow():  # FoldConstant folds inside dataflow blocks
                out = bb.emit_output(expr)
            bb.emit_func_output(out)
        body = relax.transform.FoldConstant()(bb.get())["fold"].body
    except Exception:  # not foldable after all: the importer takes it as it is
        return None
    values = {b.var: b.value for block in body.blocks for b in block.bindings}
    result = body.body
    while isinstance(result, relax.Var) and result in values:
        result = values[result]
    return result if isinstance(result, tvm.ir.expr.Constant) else None


def _tflite_declared(model) -> dict:
    """Input name -> dimensions, None where the shape signature says -1 (dynamic)."""
    graph = model.Subgraphs(0)
    declared = {}
    for i in range(graph.InputsLength()):
        tensor = graph.Tensors(graph.Inputs(i))
        signature = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else tensor.ShapeAsNumpy()
        dims = [None if int(d) < 0 else int(d) for d in (signature if not isinstance(signature, int) else [])]
        declared[tensor.Name().decode("utf-8")] = tuple(dims)
    return declared


def _tflite_output_dims(model) -> list:
    """The declared dimensions of the first subgraph's outputs (None where dynamic)."""
    graph = model.Subgraphs(0)
    dims = []
    for i in range(graph.OutputsLength()):
        tensor = graph.Tensors(graph.Outputs(i))
        shape = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else tensor.ShapeAsNumpy()
        dims.append([None if int(d) < 0 else int(d) for d in (shape if not isinstance(shape, int) else [])])
    return dims


def _reshape_outputs(func: relax.Function, declared: list) -> relax.Function:
    """``func`` with each output reshaped to the TFLite-declared shape where TVM's
    importer returns another shape with the same elements: a FULLY_CONNECTED
    flattens its input to (batch, K), which the importer's matmul does not (VGG19's
    logits come out (1, 1, 1, 10) where TFLite says (1, 10)). The reshapes join the
    last dataflow block, so ``main`` stays one block."""
    body = func.body
    is_tuple = isinstance(body.body, relax.Tuple)
    outs = list(body.body.fields) if is_tuple else [body.body]
    if len(outs) != len(declared) or not body.blocks or not isinstance(body.blocks[-1], relax.DataflowBlock):
        return func
    bindings, new_outs = list(body.blocks[-1].bindings), []
    for out, dims in zip(outs, declared):
        ty = out.ty
        shape = _static_dims(ty)
        target = _resolve_dims(dims, shape)
        if not isinstance(out, relax.Var) or target is None or target == shape:
            new_outs.append(out)
            continue
        var = relax.Var(out.name, relax.TensorType(target, ty.dtype))
        bindings.append(relax.VarBinding(var, relax.op.reshape(out, target)))
        new_outs.append(var)
    if all(a.same_as(b) for a, b in zip(outs, new_outs)):
        return func
    blocks = list(body.blocks[:-1]) + [relax.DataflowBlock(bindings)]
    result = relax.Tuple(new_outs) if is_tuple else new_outs[0]
    body = relax.BlockBuilder().normalize(relax.SeqExpr(blocks, result))
    return relax.Function(func.params, body, None, func.is_pure, func.attrs)


def _static_dims(ty) -> Optional[list]:
    if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
        return None
    dims = [d.value if isinstance(d, tvm.ir.prim.expr.IntImm) else None for d in ty.shape.values]
    return None if None in dims else dims


def _resolve_dims(declared: list, shape: Optional[list]) -> Optional[list]:
    """``declared`` with its one dynamic dimension (if any) taken from ``shape``'s
    element count; None when the two cannot hold the same elements."""
    if shape is None or not declared or declared.count(None) > 1:
        return None
    total, known = int(np.prod(shape)), int(np.prod([d for d in declared if d is not None]))
    if None in declared:
        if known == 0 or total % known:
            return None
        declared = [total // known if d is None else d for d in declared]
    return declared if int(np.prod(declared)) == total else None


def _tflite_input_names(model) -> list[str]:
    if model.SubgraphsLength() < 1:
        raise ValueError("the model has no subgraph")
    graph = model.Subgraphs(0)
    names = []
    for i in range(graph.InputsLength()):
        names.append(graph.Tensors(graph.Inputs(i)).Name().decode("utf-8"))
    return names


# ------------------------------------------------------------------ ONNX


def load_onnx(path: "str | os.PathLike", input_shapes: Optional[dict] = None) -> tvm.IRModule:
    """An ``.onnx`` file as normalised Relax. ``input_shapes`` (name -> shape)
    fixes dynamic dimensions such as a symbolic batch size."""
    _read(path)
    onnx = _require("onnx", "ONNX")
    try:
        # from the path, so that weights stored beside it (external data) load too
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:
        raise SophonFrontendError(f"{path} is not a valid ONNX model: {_one_line(err)}") from None
    if len(model.graph.node) == 0:
        raise SophonFrontendError(f"{path} is not a valid ONNX model: its graph has no nodes")
    initializers = {init.name for init in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    _check_shape_names(input_shapes, names, path)
    declared = {}
    for value in model.graph.input:
        if value.name in names and value.type.HasField("tensor_type"):
            dims = value.type.tensor_type.shape.dim
            declared[value.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                                         for d in dims)
    # dynamic inputs import as they are (the CLI then asks for --input-shape); where
    # TVM's importer cannot take them, the error says to give the shape
    shapes = _fix_shapes(path, input_shapes, declared, batch_default=False, require_static=False)
    dynamic = [(n, d) for n, d in declared.items() if n not in shapes and None in d]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Error converting operator ..."
            mod = _onnx_import(model, {k: list(v) for k, v in shapes.items()} or None)
    except tvm.error.OpNotImplemented as err:
        raise SophonFrontendError(f"{path}: TVM's ONNX importer does not support it: {_one_line(err)}") from None
    except Exception as err:
        if dynamic:
            raise _dynamic_error(path, *dynamic[0]) from None
        raise SophonFrontendError(f"{path}: TVM's ONNX importer failed: {_one_line(err)}") from None
    mod = _finish(mod, str(path))
    if is_quantized(mod):  # a QDQ file: its int8 ops follow onnxruntime's arithmetic (partition.py)
        mod = mod.with_attr("sophon.int8_arithmetic", "onnxruntime")
    return mod


def _onnx_import(model, shape_dict) -> tvm.IRModule:
    """TVM's ONNX importer (what ``from_onnx`` does), with each node's Relax named
    after the ONNX node (its name, else its first output; see names.py)."""
    from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter

    class NamingImporter(ONNXGraphImporter):
        def from_onnx(self, graph, opset):
            for node in graph.node:  # an unnamed node goes by its first output
                if not node.name and node.output:
                    node.name = node.output[0]
            return super().from_onnx(graph, opset)

        def _convert_operator(self, op_name, inputs, attrs, opset):
            name = attrs.get("tvm_custom", {}).get("name") or ""
            bb, self.bb = self.bb, NamingBuilder(self.bb, name)
            try:
                result = super()._convert_operator(op_name, inputs, attrs, opset)
            finally:
                self.bb = bb
            return emit_named(self.bb, result, name)

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = NamingImporter(shape_dict, "float32")
    try:
        return importer.from_onnx(model.graph, opset)
    except Exception:
        _close_blocks(importer.bb)
        raise


# ------------------------------------------------------------------ PyTorch


def from_exported_program(program, *, normalise: bool = True) -> tvm.IRModule:
    """A ``torch.export.ExportedProgram`` as Relax, weights bound as constants."""
    torch = _require("torch", "PyTorch")
    if not isinstance(program, torch.export.ExportedProgram):
        raise SophonFrontendError(
            f"expected a torch.export.ExportedProgram (from torch.export.export(model, args)), "
            f"got {type(program).__name__}")
    try:
        mod = _torch_import(program)
    except Exception as err:
        raise SophonFrontendError(f"TVM's PyTorch importer failed: {_one_line(err)}") from None
    return _finish(mod, "exported program") if normalise else mod


def _torch_import(program) -> tvm.IRModule:
    """TVM's ExportedProgram importer (what ``from_exported_program`` does), with
    each node's Relax named after the torch module it came from (``layer1.0.conv1``;
    the node's own name outside modules; see names.py)."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    def module_path(node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        paths = [path for path, _ in stack.values() if path]
        return paths[-1] if paths else node.name

    class NamingImporter(ExportedProgramImporter):
        def create_convert_map(self):
            return {k: self._named(f) for k, f in super().create_convert_map().items()}

        def _named(self, convert):
            def run(node, *rest):
                name = module_path(node)
                bb, self.block_builder = self.block_builder, NamingBuilder(self.block_builder, name)
                try:
                    return convert(node, *rest)
                finally:
                    self.block_builder = bb
            return run

    importer = NamingImporter()
    try:
        return importer.from_exported_program(program.run_decompositions(), False, False, False, None)
    except Exception:
        _close_blocks(getattr(importer, "block_builder", None))
        raise


# ------------------------------------------------------------------ any file


def load(path: "str | os.PathLike", input_shapes: Optional[dict] = None) -> tvm.IRModule:
    """A model file as normalised Relax, by its suffix: ``.tflite`` or ``.onnx``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SophonFrontendError(
            f"{path}: unknown model format '{suffix or '(no suffix)'}' (expected {', '.join(FORMATS)})")
    if FORMATS[suffix] == "tflite":
        return load_tflite(path, input_shapes)
    return load_onnx(path, input_shapes)
