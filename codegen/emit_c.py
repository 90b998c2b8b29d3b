"""Render region programs as C: per region, static tables (local tensors, DDR
views, instruction parameters) and a command buffer that the runtime's
``sophon_program_run`` executes, plus the TVM FFI entry point that checks the
arguments and runs it. Names are deterministic and every table row carries a
comment, so generated code diffs cleanly and reads as the chip program.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from tvm_sophon.ctext import c_comment, c_escape, c_string

from . import program as P

PRELUDE = (Path(__file__).resolve().parent / "prelude.c").read_text()
STATS_SYMBOL = "sophon_last_run_stats"
STATS_FIELDS = ("macs", "tiu_instructions", "gdma_instructions", "bytes_loaded", "bytes_stored",
                "tiu_cycles", "gdma_cycles", "lmem_peak_bytes", "timesteps", "cycles")
DTYPE_C = {"float32": "SOPHON_F32", "int8": "SOPHON_I8", "int32": "SOPHON_I32"}
DLPACK_DTYPE = {"float32": (2, 32), "int8": (0, 8), "int32": (0, 32)}  # (kDLFloat=2 / kDLInt=0, bits)


def _f32_bits(value: float) -> int:
    """The bit pattern of float32 ``value`` as a signed int32 (a command's value field)."""
    return struct.unpack("<i", struct.pack("<f", value))[0]


def _f(value: float) -> str:
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):  # <math.h>, included by the prelude
        return "NAN" if value != value else ("INFINITY" if value > 0 else "-INFINITY")
    text = repr(value)
    return (text if "e" in text or "." in text or "n" in text else text + ".0") + "f"


def _act(act: P.Activation) -> str:
    return f"{{SOPHON_ACT_{act.kind}, {_f(act.alpha)}, {_f(act.lo)}, {_f(act.hi)}, {_f(act.beta)}}}"


class _Table:
    """Rows of one C table, deduplicated, with a comment each."""

    def __init__(self):
        self.rows: list[tuple[str, str]] = []
        self.index: dict[str, int] = {}

    def add(self, row: str, comment: str = "", dedupe: bool = True) -> int:
        if dedupe and row in self.index:
            return self.index[row]
        self.index[row] = len(self.rows)
        self.rows.append((row, comment))
        return len(self.rows) - 1

    def render(self, ctype: str, name: str) -> str:
        if not self.rows:
            return f"static const {ctype}* const {name} = NULL;"
        body = "\n".join(f"  /* {i:>4} */ {row},{'  ' + c_comment(c) if c else ''}"
                         for i, (row, c) in enumerate(self.rows))
        return f"static const {ctype} {name}[] = {{\n{body}\n}};"


def _region(prog: P.RegionProgram, index: int) -> str:
    r = f"r{index}"
    sym = prog.symbol
    args = prog.inputs + prog.outputs
    buffers = {id(t): i for i, t in enumerate(args + prog.scratch)}
    locals_, globals_, convs, pools, acts, cmds, requants, adds, values = (_Table() for _ in range(9))
    resizes, norms, lrns, luts, qbinaries = _Table(), _Table(), _Table(), _Table(), _Table()
    local_index = {}
    for local in prog.locals:
        n, c, h, w = local.dims
        local_index[id(local)] = locals_.add(
            f"{{{local.addr}u, {n}, {c}, {h}, {w}, {DTYPE_C[local.tensor.dtype]}, "
            f"SOPHON_LAYOUT_{local.layout}, {local.cstride}}}", local.name, dedupe=False)

    def L(local) -> int:
        return -1 if local is None else local_index[id(local)]

    arrays: list[str] = []

    def conv(step) -> int:
        t, l, b, rr = step.padding
        act = _act(step.act) if hasattr(step, "act") else _act(P.Activation())
        return convs.add(f"{{{step.kernel[0]}, {step.kernel[1]}, {step.strides[0]}, {step.strides[1]}, "
                         f"{t}, {l}, {b}, {rr}, {step.dilation[0]}, {step.dilation[1]}, {step.groups}, {act}}}")

    def pool(step) -> int:
        t, l, b, rr = step.padding
        return pools.add(f"{{SOPHON_POOL_{step.kind}, {step.kernel[0]}, {step.kernel[1]}, "
                         f"{step.strides[0]}, {step.strides[1]}, {t}, {l}, {b}, {rr}, "
                         f"{step.dilation[0]}, {step.dilation[1]}, "
                         f"{int(getattr(step, 'count_include_pad', 0))}"
                         f"{onnxruntime_fields(getattr(step, 'onnxruntime', None))}}}")

    def onnxruntime_fields(quantization) -> str:
        """The int8 arithmetic and quantization fields of an int8 pool or resize in
        onnxruntime's arithmetic (none: TFLite's, the zero default)."""
        if quantization is None:
            return ""
        s_in, z_in, s_out, z_out = quantization
        return f", SOPHON_INT8_ONNXRUNTIME, {float(s_in).hex()}f, {float(s_out).hex()}f, {int(z_in)}, {int(z_out)}"


    def requant(q) -> int:
        """A sophon_requant row; its multipliers and shifts are static arrays."""
        key = (f"{q.input_zero_point},{q.output_zero_point},{q.act_min},{q.act_max},{q.multipliers},{q.shifts},"
               f"{q.rounding},{q.scales},{q.input_scale},{q.output_scale},{q.k_block}")
        if key in requant_rows:
            return requant_rows[key]
        k = len(requant_rows)
        arrays.append(f"static const int32_t {r}_mult{k}[] = {{{', '.join(map(str, q.multipliers))}}};")
        arrays.append(f"static const int32_t {r}_shift{k}[] = {{{', '.join(map(str, q.shifts))}}};")
        scale = "NULL"
        if q.rounding in ("double", "float32", "float_conv"):   # hexadecimal literals: the doubles exactly
            arrays.append(f"static const double {r}_scale{k}[] = {{{', '.join(float(v).hex() for v in q.scales)}}};")
            scale = f"{r}_scale{k}"
        rounding = {"fixed_point": "SOPHON_REQUANT_FIXED_POINT", "double": "SOPHON_REQUANT_DOUBLE",
                    "float32": "SOPHON_REQUANT_FLOAT32", "float_conv": "SOPHON_REQUANT_FLOAT_CONV"}[q.rounding]
        float_conv = ""
        if q.rounding == "float_conv":  # float32 values: their hexadecimal literals are exact
            float_conv = f", {float(q.input_scale).hex()}f, {float(q.output_scale).hex()}f, {q.k_block}"
        requant_rows[key] = requants.add(
            f"{{{q.input_zero_point}, {q.output_zero_point}, {q.act_min}, {q.act_max}, "
            f"{int(q.per_channel)}, {r}_mult{k}, {r}_shift{k}, {rounding}, {scale}{float_conv}}}", dedupe=False)
        return requant_rows[key]

    requant_rows: dict[str, int] = {}

    def G(ref: P.GlobalRef) -> int:
        n, c, h, w = ref.dims
        sn, sc, sh, sw = ref.strides
        buffer = buffers[id(ref.tensor.base if ref.tensor.base is not None else ref.tensor)]
        return globals_.add(f"{{{buffer}, {ref.offset}, {n}, {c}, {h}, {w}, "
                            f"{sn}, {sc}, {sh}, {sw}, {DTYPE_C[ref.tensor.dtype]}}}", ref.tensor.name)

    for step in prog.steps:
        if isinstance(step, P.Load):
            cmds.add(f"{{SOPHON_CMD_LOAD, {L(step.dst)}, {G(step.src)}, -1, -1, -1}}",
                     f"{step.src.tensor.name} -> {step.dst.name}", dedupe=False)
        elif isinstance(step, P.Store):
            cmds.add(f"{{SOPHON_CMD_STORE, {L(step.src)}, {G(step.dst)}, -1, -1, -1}}",
                     f"{step.src.name} -> {step.dst.tensor.name}", dedupe=False)
        elif isinstance(step, P.Copy):
            cmds.add(f"{{SOPHON_CMD_COPY, -1, {G(step.dst)}, {G(step.src)}, -1, -1}}",
                     f"{step.src.tensor.name} -> {step.dst.tensor.name} ({step.layer})", dedupe=False)
        elif isinstance(step, P.Fill):
            cmds.add(f"{{SOPHON_CMD_FILL, -1, {G(step.dst)}, -1, -1, {values.add(_f(step.value))}}}",
                     f"{step.dst.tensor.name} ({step.layer})", dedupe=False)
        elif isinstance(step, P.Timestep):
            cmds.add("{SOPHON_CMD_TIMESTEP, -1, -1, -1, -1, -1}", "", dedupe=False)
        elif isinstance(step, P.Conv2d):
            p = conv(step)
            cmds.add(f"{{SOPHON_CMD_CONV2D, {L(step.out)}, {L(step.input)}, {L(step.weight)}, "
                     f"{L(step.bias)}, {p}}}", f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.FullyConnected):
            p = acts.add(_act(step.act))
            cmds.add(f"{{SOPHON_CMD_FC, {L(step.out)}, {L(step.input)}, {L(step.weight)}, "
                     f"{L(step.bias)}, {p}}}", f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Pool2d):
            p = pool(step)
            cmds.add(f"{{SOPHON_CMD_POOL2D, {L(step.out)}, {L(step.input)}, -1, -1, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Binary):
            p = acts.add(_act(step.act))
            cmds.add(f"{{SOPHON_CMD_BINARY, {L(step.out)}, {L(step.lhs)}, {L(step.rhs)}, "
                     f"SOPHON_BINARY_{step.op}, {p}}}", f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Unary):
            p = acts.add(_act(step.act))
            cmds.add(f"{{SOPHON_CMD_ACTIVATION, {L(step.out)}, {L(step.input)}, -1, -1, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Softmax):
            cmds.add(f"{{SOPHON_CMD_SOFTMAX, {L(step.out)}, {L(step.input)}, -1, -1, -1}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Conv2dTranspose) and step.requant is not None:   # int8
            cmds.add(f"{{SOPHON_CMD_CONV2D_TRANSPOSE_INT8, {L(step.out)}, {L(step.input)}, {L(step.weight)}, "
                     f"{L(step.bias)}, {conv(step)}, {requant(step.requant)}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Conv2dTranspose):
            cmds.add(f"{{SOPHON_CMD_CONV2D_TRANSPOSE, {L(step.out)}, {L(step.input)}, {L(step.weight)}, "
                     f"{L(step.bias)}, {conv(step)}}}", f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Lrn):
            p = lrns.add(f"{{{step.size}, {_f(step.alpha)}, {_f(step.beta)}, {_f(step.bias)}}}")
            cmds.add(f"{{SOPHON_CMD_LRN, {L(step.out)}, {L(step.input)}, -1, -1, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Norm):
            p = norms.add(f"{{{_f(step.epsilon)}}}")
            cmds.add(f"{{SOPHON_CMD_NORM, {L(step.out)}, {L(step.input)}, {L(step.gamma)}, {L(step.beta)}, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Reduce):
            cmds.add(f"{{SOPHON_CMD_REDUCE, {L(step.out)}, {L(step.input)}, -1, SOPHON_REDUCE_{step.kind}, -1}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Resize):
            p = resizes.add(f"{{SOPHON_RESIZE_{step.method}, SOPHON_COORD_{step.coord}, SOPHON_ROUND_{step.rounding}, "
                            f"{step.in_h}, {step.out_h}, {step.in_row0}, {step.out_row0}"
                            f"{onnxruntime_fields(step.onnxruntime)}}}")
            kind = "SOPHON_CMD_RESIZE_INT8" if step.out.tensor.dtype == "int8" else "SOPHON_CMD_RESIZE"
            cmds.add(f"{{{kind}, {L(step.out)}, {L(step.input)}, -1, -1, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.QConv2d):
            cmds.add(f"{{SOPHON_CMD_CONV2D_INT8, {L(step.out)}, {L(step.input)}, {L(step.weight)}, "
                     f"{L(step.bias)}, {conv(step)}, {requant(step.requant)}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.QFullyConnected):
            cmds.add(f"{{SOPHON_CMD_FC_INT8, {L(step.out)}, {L(step.input)}, {L(step.weight)}, "
                     f"{L(step.bias)}, {requant(step.requant)}}}", f"{step.pattern} -> {step.out.name}",
                     dedupe=False)
        elif isinstance(step, P.QAdd):
            a = step.params
            p = adds.add(f"{{{a.left_shift}, {a.input1_zero_point}, {a.input2_zero_point}, {a.output_zero_point}, "
                         f"{a.input1_multiplier}, {a.input1_shift}, {a.input2_multiplier}, {a.input2_shift}, "
                         f"{a.output_multiplier}, {a.output_shift}, {a.act_min}, {a.act_max}}}")
            cmds.add(f"{{SOPHON_CMD_ADD_INT8, {L(step.out)}, {L(step.lhs)}, {L(step.rhs)}, -1, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.QLut):
            p = luts.add("{{" + ", ".join(map(str, step.table)) + "}}")
            cmds.add(f"{{SOPHON_CMD_LUT_INT8, {L(step.out)}, {L(step.input)}, -1, -1, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.QBinary):
            b = step.params
            p = qbinaries.add(f"{{SOPHON_BINARY_INT8_{b.op}, {b.input1_zero_point}, {b.input2_zero_point}, "
                              f"{b.output_zero_point}, {b.multiplier1}, {b.shift1}, {b.multiplier2}, {b.shift2}, "
                              f"{b.act_min}, {b.act_max}, {b.multiplier3}, {b.shift3}, "
                              f"{float(b.scale).hex()}f, {float(b.input1_scale).hex()}f, "
                              f"{float(b.input2_scale).hex()}f, {float(b.output_scale).hex()}f, {b.value_offset}}}")
            cmds.add(f"{{SOPHON_CMD_BINARY_INT8, {L(step.out)}, {L(step.lhs)}, {L(step.rhs)}, -1, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.QPool2d):
            cmds.add(f"{{SOPHON_CMD_POOL2D_INT8, {L(step.out)}, {L(step.input)}, {step.act_min}, "
                     f"{step.act_max}, {pool(step)}}}", f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.QReduce):
            p = requant(step.requant) if step.requant is not None else -1
            cmds.add(f"{{SOPHON_CMD_REDUCE_INT8, {L(step.out)}, {L(step.input)}, -1, SOPHON_REDUCE_{step.kind}, {p}}}",
                     f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.QSoftmax) and step.onnxruntime is not None:
            s_in, s_out, z_out = step.onnxruntime  # the scales as their f32 bit patterns
            cmds.add(f"{{SOPHON_CMD_SOFTMAX_INT8_ONNXRUNTIME, {L(step.out)}, {L(step.input)}, {_f32_bits(s_in)}, "
                     f"{_f32_bits(s_out)}, {int(z_out)}}}", f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.Cast):  # the scale as its f32 bit pattern, the zero point itself
            if step.out.tensor.dtype == "int8":
                cmds.add(f"{{SOPHON_CMD_QUANTIZE_INT8, {L(step.out)}, {L(step.input)}, {_f32_bits(step.scale)}, "
                         f"{int(step.zero_point)}, SOPHON_QUANTIZE_{step.rounding}}}",
                         f"{step.pattern} -> {step.out.name}", dedupe=False)
            else:
                cmds.add(f"{{SOPHON_CMD_DEQUANTIZE_INT8, {L(step.out)}, {L(step.input)}, {_f32_bits(step.scale)}, "
                         f"{int(step.zero_point)}, -1}}", f"{step.pattern} -> {step.out.name}", dedupe=False)
        elif isinstance(step, P.QSoftmax):
            cmds.add(f"{{SOPHON_CMD_SOFTMAX_INT8, {L(step.out)}, {L(step.input)}, {step.input_multiplier}, "
                     f"{step.input_left_shift}, -1}}", f"{step.pattern} -> {step.out.name}", dedupe=False)
        else:
            raise TypeError(f"no C form for {type(step).__name__}")

    plan = prog.plan.to_json() if prog.plan is not None else "{}"
    # the plan's JSON without its quotes reads well in a comment and escapes to itself
    lines = [f"/* ===== region {c_escape(sym)}: {len(prog.steps)} commands, LMEM peak {prog.lmem_peak_bytes} "
             f"bytes per lane, {prog.macs()} MACs\n * plan: {c_escape(plan.replace(chr(34), ''))} */",
             locals_.render("sophon_local", f"{r}_locals"),
             globals_.render("sophon_global_ref", f"{r}_globals"),
             convs.render("sophon_conv_params", f"{r}_convs"),
             pools.render("sophon_pool_params", f"{r}_pools"),
             acts.render("sophon_activation", f"{r}_acts"),
             *arrays,
             requants.render("sophon_requant", f"{r}_requants"),
             adds.render("sophon_add_int8_params", f"{r}_adds"),
             values.render("float", f"{r}_values"),
             resizes.render("sophon_resize_params", f"{r}_resizes"),
             norms.render("sophon_norm_params", f"{r}_norms"),
             lrns.render("sophon_lrn_params", f"{r}_lrns"),
             luts.render("sophon_lut_int8_params", f"{r}_luts"),
             qbinaries.render("sophon_binary_int8_params", f"{r}_qbinaries"),
             cmds.render("sophon_cmd", f"{r}_cmds")]
    count = lambda t: len(t.rows)  # noqa: E731
    constant = [int(t.role == "input" and t.arg_index in prog.constant_inputs) for t in args + prog.scratch]
    if any(constant):
        lines.append(f"static const uint8_t {r}_constant[] = {{{', '.join(map(str, constant))}}};")
    lines.append(f"static const sophon_program {r}_program = {{{r}_locals, {count(locals_)}, "
                 f"{r}_globals, {count(globals_)}, {r}_convs, {count(convs)}, {r}_pools, {count(pools)}, "
                 f"{r}_acts, {count(acts)}, {r}_cmds, {count(cmds)}, {len(buffers)}, "
                 f"{r}_requants, {count(requants)}, {r}_adds, {count(adds)}, {r}_values, {count(values)}, "
                 f".resizes = {r}_resizes, .num_resizes = {count(resizes)}, "
                 f".norms = {r}_norms, .num_norms = {count(norms)}, "
                 f".lrns = {r}_lrns, .num_lrns = {count(lrns)}, "
                 f".luts = {r}_luts, .num_luts = {count(luts)}, "
                 f".binaries_int8 = {r}_qbinaries, .num_binaries_int8 = {count(qbinaries)}, "
                 f".constant_buffers = {f'{r}_constant' if any(constant) else 'NULL'}}};")
    for t in args:
        dims = ", ".join(str(d) for d in t.shape) or "1"
        lines.append(f"static const int64_t {r}_shape_{t.name}[] = {{{dims}}};")
    lines.append(f"static const sophon_chip {r}_chip = {prog.chip.c_initializer()};")
    lines.append("")
    lines.append(f"TVM_FFI_DLL_EXPORT int __tvm_ffi_{sym}(void* self, const TVMFFIAny* args, "
                 f"int32_t num_args, TVMFFIAny* result) {{")
    lines.append(f"  static const char region_name[] = {c_string(sym)};")
    lines.append(f"  void* buffers[{len(buffers)}];")
    lines.append("  (void)self;")
    lines.append(f"  if (num_args != {len(args)}) {{")
    lines.append("    char message[128];")
    lines.append(f"    snprintf(message, sizeof(message), \"expects {len(args)} arguments "
                 f"({len(prog.inputs)} inputs, {len(prog.outputs)} outputs), got %d\", (int)num_args);")
    lines.append("    sophon_raise(\"TypeError\", region_name, message);")
    lines.append("    return -1;")
    lines.append("  }")
    for i, t in enumerate(args):
        code, bits = DLPACK_DTYPE[t.dtype]
        lines.append(f"  if ((buffers[{i}] = sophon_tensor_arg(region_name, args, {t.arg_index}, {c_string(t.name)}, "
                     f"{len(t.shape)}, {r}_shape_{t.name}, {code}, {bits})) == NULL) return -1;")
    scratch = [(len(args) + k, t) for k, t in enumerate(prog.scratch)]
    sizes = ", ".join(str(t.nbytes) for _, t in scratch)
    if scratch:
        lines.insert(lines.index("  (void)self;"), f"  static void* scratch[{len(scratch)}];  /* allocated at the first call */")
    lines.append(f"  return sophon_run_region(region_name, &{r}_chip, &{r}_program, buffers, "
                 f"{len(args)}, {len(scratch)}, {'(const size_t[]){' + sizes + '}' if scratch else 'NULL'}, "
                 f"{'scratch' if scratch else 'NULL'}, &g_stats[{index}], result);")
    lines.append("}")
    return "\n".join(lines)


def _stats_function(programs: list[P.RegionProgram]) -> str:
    """``sophon_last_run_stats()``: the chip counters of every region's last run,
    as JSON, so a loaded library can be profiled with nothing but TVM."""
    chip = programs[0].chip
    header = json.dumps({"chip": json.loads(chip.to_json())})[:-1]  # open object
    fmt = ", ".join(f'\\"{f}\\": %llu' for f in STATS_FIELDS)
    values = ", ".join(f"(unsigned long long)s->last.{f}" for f in STATS_FIELDS)
    return "\n".join([
        f"TVM_FFI_DLL_EXPORT int __tvm_ffi_{STATS_SYMBOL}(void* self, const TVMFFIAny* args, "
        "int32_t num_args, TVMFFIAny* result) {",
        "  static char text[65536];",
        "  size_t used = 0;",
        "  (void)self; (void)args; (void)num_args;",
        "  pthread_mutex_lock(&g_device_lock);",
        f"  used += (size_t)snprintf(text + used, sizeof(text) - used, \"%s, \\\"regions\\\": [\", {c_string(header)});",
        "  for (size_t i = 0; i < sizeof(g_stats) / sizeof(g_stats[0]) && used < sizeof(text); ++i) {",
        "    const sophon_region_stats* s = &g_stats[i];",
        "    used += (size_t)snprintf(text + used, sizeof(text) - used,",
        f"        \"%s{{\\\"name\\\": \\\"%s\\\", \\\"calls\\\": %llu, {fmt}}}\",",
        f"        i ? \", \" : \"\", s->name, (unsigned long long)s->calls, {values});",
        "  }",
        "  if (used < sizeof(text)) used += (size_t)snprintf(text + used, sizeof(text) - used, \"]}\");",
        "  pthread_mutex_unlock(&g_device_lock);",
        "  if (used >= sizeof(text)) {",
        "    TVMFFIErrorSetRaisedFromCStr(\"RuntimeError\", \"sophon: stats do not fit the buffer\");",
        "    return -1;",
        "  }",
        "  TVMFFIByteArray bytes = {text, used};",
        "  return TVMFFIStringFromByteArray(&bytes, result);",
        "}",
    ])


def render_library(programs: list[P.RegionProgram]) -> str:
    """The C source of every region of one build, plus the stats entry point."""
    parts = [c_comment(f"Generated by tvm_sophon codegen: programs for the emulated "
                       f"{programs[0].chip.name}. Do not edit."), PRELUDE]
    names = ", ".join(f"{{{c_string(p.symbol)}, 0, {{0}}}}" for p in programs)
    parts.append(f"static sophon_region_stats g_stats[{len(programs)}] = {{{names}}};")
    parts.extend(_region(prog, i) for i, prog in enumerate(programs))
    parts.append(_stats_function(programs))
    return "\n\n".join(parts) + "\n"
