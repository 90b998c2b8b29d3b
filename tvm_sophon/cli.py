"""The ``tvm-sophon`` command line."""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def _demo(args) -> int:
    return _cli_command(_run_demo)(args)


def _run_demo(args) -> int:
    import tvm
    from tvm import relax

    from . import build, format_stats, last_run_stats, offload_report, partition_for_sophon
    from .models import demo_cnn, reference_run

    _chip(args.chip)
    mod, params, inputs = demo_cnn(layout=args.layout)
    print(f"demo CNN ({args.layout}): input {', '.join(f'{k}{list(v.shape)}' for k, v in inputs.items())}, "
          f"chip {args.chip}")
    start = time.perf_counter()
    partitioned = partition_for_sophon(mod, params, chip=args.chip)
    ex = build(partitioned, chip=args.chip)
    print(f"compiled in {time.perf_counter() - start:.2f} s\n")
    print(offload_report(partitioned).format(), "\n")

    vm = relax.VirtualMachine(ex, tvm.cpu())
    start = time.perf_counter()
    out = vm["main"](*(tvm.runtime.tensor(v) for v in inputs.values())).numpy()
    host_seconds = time.perf_counter() - start
    expected = reference_run(mod, params, inputs)
    err = float(np.max(np.abs(out - expected)))
    # float32 throughout; the emulator and TVM's llvm loops sum in different orders.
    ok = np.allclose(out, expected, rtol=1e-4, atol=1e-5)
    print(f"result: class {int(np.argmax(out))}, probabilities {np.array2string(out.ravel(), precision=4)}")
    print(f"check against TVM's llvm build: max abs error {err:.3g} -> {'OK' if ok else 'MISMATCH'}")
    print(f"host time of the emulated run: {host_seconds * 1e3:.1f} ms\n")
    print(format_stats(last_run_stats(vm)))
    return 0 if ok else 1


# ------------------------------------------------------------------ compile / run
#
# Errors a user can cause (missing or malformed file, unknown input name, shape
# mismatch) end the command with one line on stderr and exit status 1; with
# --verbose the traceback follows. The compiled library carries its own input
# signature (a Relax function returning JSON), so `run` needs only the .so.

SIGNATURE_FUNCTION = "tvm_sophon_signature"


class CliError(Exception):
    """A user error found by the command line itself (bad argument, bad file)."""


def _cli_command(func):
    """Run a compile/run handler: expected errors become one line on stderr."""

    def wrapped(args) -> int:
        from .errors import SophonError

        if args.verbose:
            import logging
            logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        try:
            return func(args)
        except (CliError, SophonError) as err:
            if args.verbose:
                traceback.print_exc()
            print(f"tvm-sophon {args.command}: error: {err}", file=sys.stderr)
            return 1
        except Exception as err:  # a bug, not a user error: still one line, but say so
            if args.verbose:
                traceback.print_exc()
                return 1
            first = (str(err).strip().splitlines() or [""])[-1]
            print(f"tvm-sophon {args.command}: internal error: {type(err).__name__}: {first} "
                  "(run with --verbose for the traceback)", file=sys.stderr)
            return 1

    return wrapped


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _check_output(path, option: str, suffix: str = "") -> None:
    """Before any work: the directory a result goes to exists, and the suffix is right."""
    if path is None:
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise CliError(f"{option} {path}: directory {parent} does not exist")
    if suffix and Path(path).suffix != suffix:
        raise CliError(f"{option} {path}: expected a {suffix} file name, e.g. {Path(path).stem or 'model'}{suffix}")


def _chip(arg: str):
    """--chip: a bundled profile name, or a profile file ending in .json."""
    from .chip import available_chips, get_chip, load_chip

    if arg.endswith(".json"):
        return load_chip(arg)
    if arg not in available_chips():
        raise CliError(f"unknown chip profile {arg!r}; available: {', '.join(available_chips())} "
                       "(or a profile file NAME.json)")
    return get_chip(arg)


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
    except ValueError:
        shape = None
    if not sep or not name or shape is None or any(d <= 0 for d in shape):
        raise CliError(f"--input-shape {text!r}: expected NAME=D1,D2,... with positive integers, "
                       "e.g. image=1,3,224,224")
    return name, shape


def _signature_function(inputs, own_names: list, outputs: list, chip: str, model: str, report_json: str):
    """The library's signature. Inputs carry the model's own names (``name``, what
    --input takes) beside TVM's renamed parameters (``param``: its ONNX importer
    turns ``a.b`` into ``a_b`` and a clashing ``a_b`` into ``a_b_1``)."""
    import json

    from tvm import ir, relax

    if len(own_names) != len(inputs) or len(set(own_names)) != len(own_names):
        own_names = [i.name for i in inputs]
    text = json.dumps({"format": 1, "model": model, "chip": chip,
                       "inputs": [{"name": own, "param": i.name, "shape": list(i.shape), "dtype": i.dtype}
                                  for own, i in zip(own_names, inputs)],
                       "outputs": outputs, "offload_report": json.loads(report_json)})
    return relax.Function([], ir.expr.StringImm(text)).with_attr("global_symbol", SIGNATURE_FUNCTION)


def _input_names(path) -> list:
    """The model file's own input names in call order (TVM may rename them), or []."""
    from .frontend import _tflite_input_names

    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".onnx":
            import onnx
            graph = onnx.load(str(path), load_external_data=False).graph
            initializers = {init.name for init in graph.initializer}
            return [i.name for i in graph.input if i.name not in initializers]
        if suffix == ".tflite":
            import tflite
            return _tflite_input_names(tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0))
    except Exception:  # the file was already validated by the import
        return []
    return []


def _output_names(path) -> list:
    """Output names the model file gives (used as keys of --output), or []."""
    from pathlib import Path

    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".onnx":
            import onnx
            return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
        if suffix == ".tflite":
            import tflite
            graph = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0).Subgraphs(0)
            return [graph.Tensors(graph.Outputs(i)).Name().decode() for i in range(graph.OutputsLength())]
    except Exception:  # names are a convenience; the file was already validated
        return []
    return []


@_cli_command
def _compile(args) -> int:
    from . import build, libcheck, offload_report, toolchain
    from .frontend import inputs_of

    chip = _chip(args.chip)
    _check_output(args.output, "-o", ".so")
    if args.quantize is not None and args.calibration is None:
        raise CliError("--quantize int8 needs --calibration DATA.npz (model inputs to calibrate on)")
    if args.quantize is not None and not chip.has_int8:
        raise CliError(f"--quantize int8 needs an INT8 chip: {chip.name} is FP32 only; add --chip bm1684")
    shapes = _parse_shapes(args.input_shape)
    start = time.perf_counter()
    mod = _load_model(args.model, shapes)
    inputs = inputs_of(mod)
    if args.quantize is not None:
        from .quantize import quantize, quantize_report

        mod = quantize(mod, _calibration_batches(args.calibration, inputs), method=args.method)
        print(quantize_report(mod).format())
    partitioned = _partition(mod, chip)
    report = offload_report(partitioned)
    partitioned = partitioned.clone()
    partitioned[SIGNATURE_FUNCTION] = _signature_function(
        inputs, _input_names(args.model), _output_names(args.model), chip.name, str(args.model), report.to_json())
    ex = build(partitioned, chip=chip)
    ex.export_library(str(args.output), fcompile=toolchain.create_shared)  # $CC may carry flags
    libcheck.stamp(args.output)
    print(report.format())
    print(f"inputs: {', '.join(f'{i.name}{list(i.shape)} {i.dtype}' for i in inputs)}")
    print(f"wrote {args.output} for {chip.name} in {time.perf_counter() - start:.1f} s")
    return 0


def _parse_shapes(specs) -> dict:
    shapes: dict = {}
    for spec in specs:
        name, shape = _parse_shape(spec)
        if name in shapes:
            raise CliError(f"--input-shape gives '{name}' twice")
        shapes[name] = shape
    return shapes


def _load_model(path, shapes: dict):
    """A model file as Relax, every input static (else an error naming --input-shape)."""
    from .frontend import inputs_of, load

    mod = load(path, shapes)
    for inp in inputs_of(mod):
        if not inp.is_static:
            dims = ",".join("?" if d is None else str(d) for d in (inp.shape or ()))
            raise CliError(f"input '{inp.name}' has a dynamic shape [{dims}]; the chip needs static "
                           f"shapes: give it with --input-shape {inp.name}=D1,D2,...")
    return mod


def _partition(mod, chip):
    """partition_for_sophon, its INT8-on-an-FP32-chip error said in CLI terms."""
    from . import partition_for_sophon
    from .errors import SophonCompileError
    from .quant import is_quantized

    if is_quantized(mod) and not chip.has_int8:
        raise CliError(f"the model is quantized to int8, but {chip.name} has no INT8 datapath "
                       "(FP32 only); add --chip bm1684")
    try:
        return partition_for_sophon(mod, chip=chip)
    except SophonCompileError as err:
        raise CliError(str(err)) from None


def _calibration_batches(path, inputs) -> list[dict]:
    """Batches from an .npz keyed by input name: arrays of the input's shape, or
    stacks of them along a new first axis."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as err:
        raise CliError(f"{path}: cannot read calibration data ({err})") from None
    names = [i.name for i in inputs]
    missing = [n for n in names if n not in data.files]
    if missing:
        raise CliError(f"{path}: no array for input '{missing[0]}' (it has: {', '.join(data.files) or 'nothing'})")
    stacks = {}
    for inp in inputs:
        arr = data[inp.name]
        shape = list(inp.shape)
        if list(arr.shape) == shape:
            arr = arr[None]
        elif list(arr.shape[1:]) != shape:
            raise CliError(f"{path}: '{inp.name}' has shape {list(arr.shape)}; expected {shape} "
                           f"or [N, {', '.join(map(str, shape))}]")
        stacks[inp.name] = arr.astype(inp.dtype, copy=False)
    count = min(len(a) for a in stacks.values())
    return [{n: stacks[n][i] for n in names} for i in range(count)]


@_cli_command
def _compare(args) -> int:
    from .frontend import inputs_of
    from .models import MODELS, bind_params
    from .quantize import compare

    chip = _chip(args.chip)
    _check_output(args.json, "--json")
    _check_output(args.plot, "--plot", ".png")
    if args.plot:
        _require_matplotlib()
    if not chip.has_int8:
        raise CliError(f"compare runs INT8 on the chip: {chip.name} is FP32 only; use --chip bm1684")
    if args.model in MODELS:
        mod, params, example = MODELS[args.model]()
        batches = [example]
        if args.calibration:
            batches = _calibration_batches(args.calibration, inputs_of(bind_params(mod, params)))
    else:
        if not Path(args.model).exists():
            raise CliError(f"{args.model}: neither a bundled model ({', '.join(MODELS)}) nor a file")
        if not args.calibration:
            raise CliError("compare needs --calibration DATA.npz for a model file")
        mod, params = _load_model(args.model, {}), None
        batches = _calibration_batches(args.calibration, inputs_of(mod))
    result = compare(mod, batches, params=params, chip=chip, method=args.method)
    print(result.format())
    if args.json:
        Path(args.json).write_text(result.to_json())
        print(f"wrote {args.json}")
    if args.plot:
        result.write_plot(args.plot, title=Path(args.model).name)
        print(f"wrote {args.plot}")
    return 0


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install 'tvm-sophon[plot]'") from None


def _load_library(path):
    import json

    import tvm
    from tvm import relax

    from . import libcheck

    libcheck.check(path)  # before the loader maps it: a truncated file is a SIGBUS there
    try:
        lib = tvm.runtime.load_module(str(path))
        vm = relax.VirtualMachine(lib, tvm.cpu())
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[-1]
        raise CliError(f"{path} is not a library built by `tvm-sophon compile` ({first})") from None
    try:
        signature = json.loads(str(vm[SIGNATURE_FUNCTION]()))
    except Exception:
        raise CliError(f"{path} has no input signature: build it with `tvm-sophon compile`") from None
    return vm, signature


def _read_inputs(specs, signature) -> list:
    expected = {i["name"]: i for i in signature["inputs"]}
    renamed = {i["param"]: i["name"] for i in signature["inputs"] if i.get("param", i["name"]) != i["name"]}
    given = {}
    for spec in specs:
        name, sep, path = spec.rpartition("=")  # the last '=': a name may contain '='
        if not sep or not name or not path:
            raise CliError(f"--input {spec!r}: expected NAME=FILE.npy")
        if name not in expected:
            hint = f"; '{name}' is TVM's name for the input '{renamed[name]}'" if name in renamed else ""
            raise CliError(f"the model has no input named '{name}' (its inputs: {', '.join(expected)}{hint})")
        if name in given:
            raise CliError(f"--input gives '{name}' twice")
        if Path(path).is_file() and Path(path).read_bytes()[:6] != b"\x93NUMPY":
            raise CliError(f"input file {path} is not a .npy file (no NumPy header); "
                           "write arrays with numpy.save")
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise CliError(f"input file {path} does not exist") from None
        except Exception as err:
            raise CliError(f"input file {path} is not a .npy array ({type(err).__name__}: {err})") from None
        if not isinstance(array, np.ndarray):
            raise CliError(f"input file {path} holds several arrays; give one .npy array per input")
        want = expected[name]
        if tuple(array.shape) != tuple(want["shape"]):
            raise CliError(f"input '{name}' from {path} has shape {list(array.shape)}, "
                           f"but the model takes {want['shape']}")
        if array.dtype != np.dtype(want["dtype"]):
            if not (array.dtype.kind == "f" and np.dtype(want["dtype"]).kind == "f"):
                raise CliError(f"input '{name}' from {path} is {array.dtype}, but the model takes {want['dtype']}")
            print(f"note: input '{name}' from {path} is {array.dtype}; cast to {want['dtype']}", file=sys.stderr)
            array = array.astype(want["dtype"])  # float64 .npy files are common; same kind, so cast
        given[name] = array
    missing = [n for n in expected if n not in given]
    if missing:
        raise CliError(f"missing --input for {', '.join(missing)} (the model's inputs: {', '.join(expected)})")
    return [given[n] for n in expected]


def _flatten(value) -> list:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [array for item in value for array in _flatten(item)]


@_cli_command
def _run(args) -> int:
    import tvm

    _check_output(args.output, "--output", ".npz")
    vm, signature = _load_library(args.library)
    arrays = _read_inputs(args.input, signature)
    start = time.perf_counter()
    outputs = _flatten(vm["main"](*(tvm.runtime.tensor(a) for a in arrays)))
    seconds = time.perf_counter() - start
    names = signature.get("outputs") or []
    if len(names) != len(outputs):
        names = [f"output_{k}" for k in range(len(outputs))]
    for name, out in zip(names, outputs):
        summary = np.array2string(out.ravel()[:8], precision=4)
        print(f"{name}: {list(out.shape)} {out.dtype} {summary}{' ...' if out.size > 8 else ''}")
    if args.output:
        _save_npz(args.output, names, outputs)
        print(f"wrote {', '.join(names)} to {args.output}")
    print(f"host time of the emulated run: {seconds * 1e3:.1f} ms")
    if args.profile:
        from . import format_stats, last_run_stats
        print()
        print(format_stats(last_run_stats(vm)))
    return 0


def _save_npz(path, names: list, arrays: list) -> None:
    """An .npz (np.load reads it) with one array per output under its own name:
    what np.savez writes, without passing names as keyword arguments (an output
    named 'file' or 'allow_pickle' would clash with savez's own parameters)."""
    import zipfile

    if len(set(names)) != len(names):
        names = [f"output_{k}" for k in range(len(arrays))]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in zip(names, arrays):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)


@_cli_command
def _profile(args) -> int:
    from .models import MODELS
    from .profile import profile_model

    chip = _chip(args.chip)
    _check_output(args.json, "--json")
    _check_output(args.trace, "--trace")
    _check_output(args.plot, "--plot", ".png")
    if args.plot:
        _require_matplotlib()
    if args.model in MODELS:
        kwargs = {"batch": args.batch} if args.batch is not None else {}
        try:
            mod, params, inputs = MODELS[args.model](**kwargs)
        except TypeError:
            raise CliError(f"bundled model {args.model} has no batch option") from None
    else:
        if not Path(args.model).exists():
            raise CliError(f"{args.model}: neither a bundled model ({', '.join(MODELS)}) nor a file")
        if args.batch is not None:
            raise CliError("--batch applies to bundled models; give file models --input-shape")
        mod = _load_model(args.model, _parse_shapes(args.input_shape))
        params, inputs = None, None
    prof = profile_model(mod, params, inputs, chip=chip, plan=args.plan, run=not args.no_run)
    print(prof.format())
    if args.json:
        Path(args.json).write_text(prof.to_json())
        print(f"wrote {args.json}")
    if args.trace:
        prof.write_trace(args.trace)
        print(f"wrote {args.trace} (open in chrome://tracing or ui.perfetto.dev)")
    if args.plot:
        prof.write_plot(args.plot, title=Path(args.model).name)
        print(f"wrote {args.plot}")
    return 0


METHODS = ["kl", "max", "percentile"]
METHOD_HELP = ("how calibration picks each tensor's int8 range: kl (KL divergence of the histograms, "
               "default), max (the largest magnitude seen), percentile (99.99th percentile)")


def _add_chip(parser, default: str = "bm1680", what: str = "chip profile") -> None:
    from .chip import available_chips

    parser.add_argument("--chip", default=default, metavar="NAME",
                        help=f"{what}: {', '.join(available_chips())} or a profile file NAME.json (default: {default})")


def _add_model_commands(sub) -> None:
    """The `compile` and `run` subcommands."""
    comp = sub.add_parser("compile", help="compile a .tflite or .onnx model into a library for the chip "
                                          "(needs the tflite or onnx extra)")
    comp.add_argument("model", help="model file: .tflite or .onnx")
    comp.add_argument("-o", "--output", required=True, metavar="OUT.so", help="library to write (a .so path)")
    _add_chip(comp)
    comp.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                      help="static shape of an input (repeatable), e.g. image=1,3,224,224; "
                           "needed where the model's shape is dynamic (a dynamic TFLite batch defaults to 1)")
    comp.add_argument("--quantize", choices=["int8"],
                      help="post-training quantization; needs --calibration and --chip bm1684 (INT8)")
    comp.add_argument("--calibration", metavar="DATA.npz",
                      help="calibration inputs for --quantize: one array per input name, shaped as the "
                           "input or stacked [N, ...]")
    comp.add_argument("--method", default="kl", choices=METHODS, help=METHOD_HELP)
    comp.add_argument("--verbose", action="store_true", help="log each step; show tracebacks on errors")
    comp.set_defaults(func=_compile)

    run = sub.add_parser("run", help="run a library built by `compile` on .npy inputs")
    run.add_argument("library", help="library written by `tvm-sophon compile`")
    run.add_argument("--input", action="append", required=True, metavar="NAME=FILE.npy",
                     help="one model input by the model's own name (repeat for each input; required); "
                          "the last '=' separates, so a name may contain '='")
    run.add_argument("--output", metavar="OUT.npz", help="save the outputs (keys: the model's output names)")
    run.add_argument("--profile", action="store_true", help="print the chip counters of the run")
    run.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    run.set_defaults(func=_run)

    from .models import MODELS

    prof = sub.add_parser("profile", help="per-layer and per-group chip time, MACs, DMA bytes, LMEM, energy")
    prof.add_argument("model", help=f"a bundled model ({', '.join(MODELS)}) or a .tflite/.onnx file")
    _add_chip(prof)
    prof.add_argument("--plan", default="layer_group_dp", choices=["layer_group_dp", "layer_by_layer"],
                      help="planning strategy (default: layer_group_dp)")
    prof.add_argument("--batch", type=_positive_int, help="batch size of a bundled model (a positive integer)")
    prof.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                      help="static shape of a file model's input")
    prof.add_argument("--no-run", action="store_true", help="estimate only; do not run on the emulator")
    prof.add_argument("--json", metavar="PATH", help="write the profile as JSON")
    prof.add_argument("--trace", metavar="PATH", help="write a Chrome/Perfetto trace of the two engines")
    prof.add_argument("--plot", metavar="PATH.png",
                      help="write per-layer time and a roofline (needs the plot extra: matplotlib)")
    prof.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    prof.set_defaults(func=_profile)

    cmp_ = sub.add_parser("compare", help="per-layer INT8 (on the chip) against FP32: cosine, SQNR, max error")
    cmp_.add_argument("model", help=f"a bundled model ({', '.join(MODELS)}) or a .tflite/.onnx FP32 file")
    cmp_.add_argument("--calibration", metavar="DATA.npz",
                      help="inputs to calibrate and compare on (required for a model file; a bundled "
                           "model uses its example input)")
    _add_chip(cmp_, "bm1684", "an INT8 chip profile")
    cmp_.add_argument("--method", default="kl", choices=METHODS, help=METHOD_HELP)
    cmp_.add_argument("--json", metavar="PATH", help="write the comparison as JSON")
    cmp_.add_argument("--plot", metavar="PATH.png",
                      help="plot cosine and SQNR per layer (needs the plot extra: matplotlib)")
    cmp_.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    cmp_.set_defaults(func=_compare)


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        tvm_version = version("apache-tvm")
    except PackageNotFoundError:
        tvm_version = "?"
    try:
        return f"{version('tvm-sophon')} (Apache TVM {tvm_version})"
    except PackageNotFoundError:
        return f"(not installed) (Apache TVM {tvm_version})"


# ------------------------------------------------------------------ sweep / evaluate (on Ray)


def _split(values: list) -> list:
    """Repeatable, comma-separated options as one list: ["a,b", "c"] -> [a, b, c]."""
    return [v.strip() for text in values for v in text.split(",") if v.strip()]


@_cli_command
def _sweep(args) -> int:
    import json

    from .sweep import Point, format_rows, parse_overrides, sweep, write_pareto_plot

    points = None
    models = args.model
    if args.points:
        try:
            specs = json.loads(Path(args.points).read_text())
            points = [Point(s["model"], s.get("chip", "bm1680"), tuple(sorted(s.get("overrides", {}).items())),
                            s.get("plan", "layer_group_dp"), s.get("precision", "fp32"), s.get("batch"))
                      for s in specs]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise CliError(f"--points {args.points}: expected a JSON list of {{model, chip, overrides, plan, "
                           f"precision, batch}} objects ({type(err).__name__}: {err})") from None
        models = list(dict.fromkeys(models + [p.model for p in points]))
    if not models:
        raise CliError("give at least one model (or --points FILE.json)")
    try:
        batches = [int(b) for b in _split(args.batch)] if args.batch else [None]
    except ValueError:
        raise CliError(f"--batch {','.join(args.batch)}: expected positive integers") from None
    try:
        result = sweep(models, chips=_split(args.chip) or ["bm1680"], overrides=parse_overrides(args.override),
                       plans=_split(args.plan) or ["layer_group_dp"], precisions=_split(args.precision) or ["fp32"],
                       batches=batches, points=points, calibration=args.calibration, run=args.run, out=args.out,
                       address=args.address, num_cpus=args.num_cpus,
                       memory_per_point=int(args.memory_per_point * 2**30),
                       runtime_env={"working_dir": args.working_dir} if args.working_dir else None,
                       progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: the finished points are in {args.out}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    print(format_rows(result.rows))
    failed = sum(r["status"] != "ok" for r in result.rows)
    print(f"{len(result.rows)} points in {result.out} ({result.computed} computed now, {result.skipped} already "
          f"done, {failed} failed) in {result.wall_seconds:.1f} s")
    if any(r["status"] == "ok" for r in result.rows) and args.plot != "none":
        plot = args.plot or str(Path(args.out) / "pareto.png")
        print(f"wrote {write_pareto_plot(result.rows, plot)}")
    return 0


@_cli_command
def _evaluate(args) -> int:
    from .evaluate import evaluate

    result = evaluate(args.library, args.data, reference=args.reference, address=args.address,
                      num_cpus=args.num_cpus, progress=not args.no_progress)
    print(result.format())
    if args.json:
        Path(args.json).write_text(result.to_json())
        print(f"wrote {args.json}")
    return 0


def _add_sweep_commands(sub) -> None:
    """The `sweep` and `evaluate` subcommands (Ray: pip install "tvm-sophon[sweep]")."""
    sw = sub.add_parser("sweep", help="plan and estimate a grid of models x chips x plans x precisions on Ray")
    sw.add_argument("model", nargs="*", default=[],
                    help="bundled model names, .tflite/.onnx files, or package.module:function builders")
    sw.add_argument("--chip", action="append", default=[], help="chip profile(s), comma-separated (default bm1680)")
    sw.add_argument("--override", action="append", default=[], metavar="FIELD=V1,V2,...",
                    help="values of a chip field to sweep (repeatable), e.g. lmem_bytes_per_lane=131072,262144")
    sw.add_argument("--plan", action="append", default=[],
                    help="plan strategies, comma-separated: layer_group_dp, layer_by_layer or package.module:function")
    sw.add_argument("--precision", action="append", default=[], help="fp32, int8 (comma-separated; default fp32)")
    sw.add_argument("--calibration", metavar="DATA.npz", help="INT8 calibration inputs (default: the model's example)")
    sw.add_argument("--batch", action="append", default=[],
                    help="batch sizes, comma-separated (bundled models and builders: batch=; files: first input dim)")
    sw.add_argument("--points", metavar="FILE.json", help="a list of points instead of the grid")
    sw.add_argument("--run", action="store_true", help="also run each point on the emulator; record its error")
    sw.add_argument("--out", default="sweep_out", help="directory of the table (points.jsonl/.csv); reruns resume")
    sw.add_argument("--plot", help="Pareto plot to write (default OUT/pareto.png; 'none' for no plot)")
    sw.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    sw.add_argument("--num-cpus", type=int, help="CPUs of the local Ray cluster (default: all)")
    sw.add_argument("--working-dir", metavar="DIR",
                    help="ship DIR to every Ray worker (for builders or plan strategies given by import path)")
    sw.add_argument("--memory-per-point", type=float, default=1.0, help="GiB of memory a point reserves (default 1)")
    sw.add_argument("--no-progress", action="store_true", help="no progress bar")
    sw.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    sw.set_defaults(func=_sweep)

    ev = sub.add_parser("evaluate", help="accuracy of a compiled library over .npz shards, on Ray")
    ev.add_argument("library", help="library written by `tvm-sophon compile`")
    ev.add_argument("--data", required=True, metavar="DIR", help="directory of .npz shards (labels + inputs)")
    ev.add_argument("--reference", metavar="LIB2.so", help="a second library to agree with (e.g. the FP32 one)")
    ev.add_argument("--json", metavar="PATH", help="write the counts as JSON")
    ev.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    ev.add_argument("--num-cpus", type=int, help="CPUs of the local Ray cluster (default: all)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    ev.set_defaults(func=_evaluate)


def main(argv=None) -> int:
    parser = _Parser(
        prog="tvm-sophon",
        description="Compile and run models on the (emulated) Sophon BM1680 through Apache TVM.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="compile a bundled CNN for the chip, run it, check it against TVM's "
                                       "llvm build, print the offload report and the chip counters")
    _add_chip(demo)
    demo.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"], help="data layout of the model")
    demo.add_argument("--verbose", action="store_true", help="log each step; show tracebacks on errors")
    demo.set_defaults(func=_demo)
    _add_model_commands(sub)
    _add_sweep_commands(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .errors import SophonError
    try:
        return args.func(args)
    except SophonError as err:
        print(f"tvm-sophon: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
