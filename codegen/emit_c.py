"""Render region programs as C that drives the runtime: one straight-line function
per region (GDMA loads, compute instructions, GDMA stores), deterministic names,
table-driven per instruction, so generated code diffs cleanly and tests can read it.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import program as P

PRELUDE = (Path(__file__).resolve().parent / "prelude.c").read_text()
STATS_SYMBOL = "sophon_last_run_stats"
DTYPE_C = {"float32": "SOPHON_F32", "int8": "SOPHON_I8", "int32": "SOPHON_I32"}
DLPACK_DTYPE = {"float32": (2, 32), "int8": (0, 8), "int32": (0, 32)}  # (kDLFloat=2 / kDLInt=0, bits)


def _f(value: float) -> str:
    text = repr(float(value))
    return (text if "e" in text or "." in text else text + ".0") + "f"


def _act(act: P.Activation) -> str:
    return f"{{SOPHON_ACT_{act.kind}, {_f(act.alpha)}, {_f(act.lo)}, {_f(act.hi)}}}"


def _local_decl(region: str, local: P.Local) -> str:
    n, c, h, w = local.dims
    return (f"static const sophon_local {region}_{local.name} = "
            f"{{{local.addr}u, {n}, {c}, {h}, {w}, {DTYPE_C[local.tensor.dtype]}, SOPHON_LAYOUT_{local.layout}}};")


def _ref(region: str, local) -> str:
    return "NULL" if local is None else f"&{region}_{local.name}"


def _global(ref: P.GlobalRef, base: str) -> str:
    n, c, h, w = ref.dims
    sn, sc, sh, sw = ref.strides
    return (f"{{{base}, {n}, {c}, {h}, {w}, {sn}, {sc}, {sh}, {sw}, {DTYPE_C[ref.tensor.dtype]}}}")


def _data_expr(tensor: P.Tensor) -> str:
    if tensor.role == "scratch":
        return f"scratch_{tensor.name}"
    return f"sophon_data(arg_{tensor.name})"


def _conv_params(step: P.Conv2d) -> str:
    t, l, b, r = step.padding
    return (f"{{{step.kernel[0]}, {step.kernel[1]}, {step.strides[0]}, {step.strides[1]}, "
            f"{t}, {l}, {b}, {r}, {step.dilation[0]}, {step.dilation[1]}, {step.groups}, {_act(step.act)}}}")


def _pool_params(step: P.Pool2d) -> str:
    t, l, b, r = step.padding
    return (f"{{SOPHON_POOL_{step.kind}, {step.kernel[0]}, {step.kernel[1]}, {step.strides[0]}, "
            f"{step.strides[1]}, {t}, {l}, {b}, {r}, {step.dilation[0]}, {step.dilation[1]}, "
            f"{int(step.count_include_pad)}}}")


def _step(region: str, step, index: int) -> list[str]:
    R = lambda local: _ref(region, local)  # noqa: E731
    if isinstance(step, P.Load):
        return [f"  {{ /* gdma: {step.src.tensor.name} -> LMEM {step.dst.addr} */",
                f"    const sophon_global g = {_global(step.src, _data_expr(step.src.tensor))};",
                f"    SOPHON_TRY(sophon_gdma_load(dev, {R(step.dst)}, &g));",
                "  }"]
    if isinstance(step, P.Store):
        return [f"  {{ /* gdma: LMEM {step.src.addr} -> {step.dst.tensor.name} */",
                f"    const sophon_global g = {_global(step.dst, _data_expr(step.dst.tensor))};",
                f"    SOPHON_TRY(sophon_gdma_store(dev, &g, {R(step.src)}));",
                "  }"]
    comment = f"  /* {step.pattern} */"
    if isinstance(step, P.Conv2d):
        return [comment, "  {",
                f"    const sophon_conv_params p = {_conv_params(step)};",
                f"    SOPHON_TRY(sophon_tiu_conv2d(dev, {R(step.out)}, {R(step.input)}, {R(step.weight)}, {R(step.bias)}, &p));",
                "  }"]
    if isinstance(step, P.FullyConnected):
        return [comment, "  {",
                f"    const sophon_activation act = {_act(step.act)};",
                f"    SOPHON_TRY(sophon_tiu_fc(dev, {R(step.out)}, {R(step.input)}, {R(step.weight)}, {R(step.bias)}, &act));",
                "  }"]
    if isinstance(step, P.Pool2d):
        return [comment, "  {",
                f"    const sophon_pool_params p = {_pool_params(step)};",
                f"    SOPHON_TRY(sophon_tiu_pool2d(dev, {R(step.out)}, {R(step.input)}, &p));",
                "  }"]
    if isinstance(step, P.Binary):
        return [comment, "  {",
                f"    const sophon_activation act = {_act(step.act)};",
                f"    SOPHON_TRY(sophon_tiu_binary(dev, {R(step.out)}, {R(step.lhs)}, {R(step.rhs)}, SOPHON_BINARY_{step.op}, &act));",
                "  }"]
    if isinstance(step, P.Unary):
        return [comment, "  {",
                f"    const sophon_activation act = {_act(step.act)};",
                f"    SOPHON_TRY(sophon_tiu_activation(dev, {R(step.out)}, {R(step.input)}, &act));",
                "  }"]
    if isinstance(step, P.Softmax):
        return [comment, f"  SOPHON_TRY(sophon_tiu_softmax(dev, {R(step.out)}, {R(step.input)}));"]
    raise TypeError(f"no C template for {type(step).__name__}")


def _region(prog: P.RegionProgram, index: int) -> str:
    region = f"r{index}"
    sym = prog.symbol
    args = prog.inputs + prog.outputs
    lines = [f"/* ===== region {sym}: {len(prog.steps)} steps, LMEM peak {prog.lmem_peak_bytes} "
             f"bytes per lane, {prog.macs()} MACs ===== */"]
    lines.extend(_local_decl(region, local) for local in prog.locals)
    for t in args:
        dims = ", ".join(str(d) for d in t.shape) or "1"
        lines.append(f"static const int64_t {region}_shape_{t.name}[] = {{{dims}}};")
    lines.append(f"static const sophon_chip {region}_chip = {prog.chip.c_initializer()};")
    lines.append("")
    lines.append(f"TVM_FFI_DLL_EXPORT int __tvm_ffi_{sym}(void* self, const TVMFFIAny* args, "
                 f"int32_t num_args, TVMFFIAny* result) {{")
    lines.append(f"  static const char region_name[] = \"{sym}\";")
    lines.append("  (void)self;")
    lines.append(f"  if (num_args != {len(args)}) {{")
    lines.append("    char message[128];")
    lines.append(f"    snprintf(message, sizeof(message), \"expects {len(args)} arguments "
                 f"({len(prog.inputs)} inputs, {len(prog.outputs)} outputs), got %d\", (int)num_args);")
    lines.append("    sophon_raise(\"TypeError\", region_name, message);")
    lines.append("    return -1;")
    lines.append("  }")
    for t in args:
        code, bits = DLPACK_DTYPE[t.dtype]
        lines.append(f"  DLTensor* arg_{t.name} = sophon_tensor_arg(region_name, args, {t.arg_index}, "
                     f"\"{t.name}\", {len(t.shape)}, {region}_shape_{t.name}, {code}, {bits});")
        lines.append(f"  if (arg_{t.name} == NULL) return -1;")
    for t in prog.scratch:
        lines.append(f"  void* scratch_{t.name} = malloc({t.nbytes});")
    if prog.scratch:
        cond = " || ".join(f"scratch_{t.name} == NULL" for t in prog.scratch)
        lines.append(f"  if ({cond}) {{")
        lines.extend(f"    free(scratch_{t.name});" for t in prog.scratch)
        lines.append("    sophon_raise(\"RuntimeError\", region_name, \"out of host memory for scratch buffers\");")
        lines.append("    return -1;")
        lines.append("  }")
    lines.append(f"  sophon_device* dev = sophon_acquire(region_name, &{region}_chip);")
    lines.append("  int status = 0;")
    lines.append("  if (dev == NULL) {")
    lines.append("    status = -1;")
    lines.append("    goto done;")
    lines.append("  }")
    for i, step in enumerate(prog.steps):
        lines.extend(_step(region, step, i))
    lines.append(f"  sophon_release(&g_stats[{index}]);")
    lines.append("  goto done;")
    lines.append("chip_error:")
    lines.append("  sophon_raise(\"RuntimeError\", region_name, sophon_device_error(dev));")
    lines.append(f"  sophon_release(&g_stats[{index}]);")
    lines.append("  status = -1;")
    lines.append("done:")
    lines.extend(f"  free(scratch_{t.name});" for t in prog.scratch)
    lines.append("  if (status == 0) {")
    lines.append("    result->type_index = kTVMFFINone;")
    lines.append("    result->v_int64 = 0;")
    lines.append("  }")
    lines.append("  return status;")
    lines.append("}")
    return "\n".join(lines)


def _stats_function(programs: list[P.RegionProgram]) -> str:
    """``sophon_last_run_stats()``: the chip counters of every region's last run,
    as JSON, so a loaded library can be profiled with nothing but TVM."""
    chip = programs[0].chip
    header = json.dumps({"chip": json.loads(chip.to_json())})[:-1]  # open object
    fields = ["macs", "tiu_instructions", "gdma_instructions", "bytes_loaded",
              "bytes_stored", "tiu_cycles", "gdma_cycles", "lmem_peak_bytes"]
    fmt = ", ".join(f'\\"{f}\\": %llu' for f in fields)
    values = ", ".join(f"(unsigned long long)s->last.{f}" for f in fields)
    header_c = header.replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join([
        f"TVM_FFI_DLL_EXPORT int __tvm_ffi_{STATS_SYMBOL}(void* self, const TVMFFIAny* args, "
        "int32_t num_args, TVMFFIAny* result) {",
        "  static char text[65536];",
        "  size_t used = 0;",
        "  (void)self; (void)args; (void)num_args;",
        "  pthread_mutex_lock(&g_device_lock);",
        f"  used += (size_t)snprintf(text + used, sizeof(text) - used, \"%s, \\\"regions\\\": [\", \"{header_c}\");",
        f"  for (size_t i = 0; i < sizeof(g_stats) / sizeof(g_stats[0]) && used < sizeof(text); ++i) {{",
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
    parts = ["/* Generated by tvm_sophon codegen: programs for the emulated "
             f"{programs[0].chip.name}. Do not edit. */", PRELUDE]
    names = ", ".join(f"{{\"{p.symbol}\", 0, {{0}}}}" for p in programs)
    parts.append(f"static sophon_region_stats g_stats[{len(programs)}] = {{{names}}};")
    parts.extend(_region(prog, i) for i, prog in enumerate(programs))
    parts.append(_stats_function(programs))
    return "\n\n".join(parts) + "\n"
