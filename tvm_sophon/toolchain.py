"""Compiling C with the system compiler: the runtime (the emulated chip) and the
code generated for offloaded regions.

One small place for it: honours ``CC``, builds with warnings as errors, caches
by a hash of the sources, flags and compiler, and writes each artifact to a
temporary file that is renamed into place, so concurrent builds never see a
half-written object. The cache lives in ``$TVM_SOPHON_CACHE`` (default
``~/.cache/tvm_sophon``).
"""
from __future__ import annotations

import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tvm_ffi.libinfo

from . import runtime as runtime_src
from .errors import SophonToolchainError

COMMON_FLAGS = ["-O3", "-fPIC", "-Wall", "-Werror"]
# No -march: an exported library must run on any CPU of its architecture. The fast
# kernels carry AVX2 variants (__attribute__((target))) picked at run time with
# __builtin_cpu_supports; simd_flags() turns them off for a compiler that cannot
# build them, leaving the plain C path.
RUNTIME_FLAGS = ["-std=c99", "-pedantic", "-Wextra", "-pthread", *COMMON_FLAGS]
# Objects linked into exported TVM libraries keep the runtime's symbols private
# to each library; the generated entry points are marked visible (TVM_FFI_DLL_EXPORT).
HIDDEN = ["-fvisibility=hidden"]
GENERATED_FLAGS = ["-std=c11", *COMMON_FLAGS, *HIDDEN]


def compiler() -> list[str]:
    """The C compiler command: ``$CC`` if set (may carry flags), else ``cc``."""
    return shlex.split(os.environ.get("CC", "cc"))


def cache_dir() -> Path:
    root = os.environ.get("TVM_SOPHON_CACHE") or Path.home() / ".cache" / "tvm_sophon"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def include_dirs() -> list[str]:
    return [
        str(runtime_src.SOURCE_DIR),
        tvm_ffi.libinfo.find_include_path(),
        tvm_ffi.libinfo.find_dlpack_include_path(),
    ]


_SIMD_PROBE = """
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static float probe(const float* a, const float* b) {
  __m256 x = _mm256_add_ps(_mm256_loadu_ps(a), _mm256_broadcast_ss(b));
  return _mm256_cvtss_f32(x);
}
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
static int probe_vnni(const void* u, const void* w) {
  __m512i x = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(u),
                                  _mm512_loadu_si512(w));
  return _mm512_reduce_add_epi32(x);
}
int sophon_simd_probe(const float* a, const float* b) {
  return (int)probe(a, b) + probe_vnni(a, b) + __builtin_cpu_supports("avx2") +
         __builtin_cpu_supports("avx512vnni");
}
#else
int sophon_simd_probe(void) { return 0; }
#endif
"""


def _compiler_identity(cc: tuple[str, ...]) -> str:
    """The compiler program's resolved path, size and mtime: a new or updated
    compiler gets a new identity, so results cached for the old one are not reused."""
    program = shutil.which(cc[0]) if cc else None
    if program is None:
        return "missing:" + " ".join(cc)
    path = Path(program).resolve()
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


@functools.lru_cache(maxsize=None)
def _simd_flags(cc: tuple[str, ...]) -> tuple[str, ...]:
    """Probe once per compiler (the answer is kept in the cache directory: every
    process needs it for the runtime's cache key, and the probe is a compile)."""
    key = _digest(_SIMD_PROBE, *cc, *RUNTIME_FLAGS, _compiler_identity(cc))
    answer = cache_dir() / f"simd_probe_{key}.txt"
    if answer.exists():
        return tuple(answer.read_text().split())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(_SIMD_PROBE)
        proc = subprocess.run([*cc, *RUNTIME_FLAGS, "-c", str(src), "-o", str(Path(tmp) / "probe.o")],
                              capture_output=True, text=True)
    flags = () if proc.returncode == 0 else ("-DSOPHON_PORTABLE",)
    fd, tmp_path = tempfile.mkstemp(dir=answer.parent, prefix=f".{answer.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(" ".join(flags))
    os.replace(tmp_path, answer)
    return flags


def simd_flags() -> list[str]:
    """Build-time check of the fast kernels' x86 variants: [] if the compiler builds
    them (they are then chosen at run time by CPU), else ``-DSOPHON_PORTABLE``."""
    return list(_simd_flags(tuple(compiler())))


def runtime_flags() -> list[str]:
    """Flags for the runtime's C sources."""
    return [*RUNTIME_FLAGS, *simd_flags()]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SophonToolchainError(
            f"C compiler failed (exit {proc.returncode}):\n  {shlex.join(cmd)}\n"
            f"{proc.stdout}{proc.stderr}"
        )


def _digest(*parts: "str | bytes") -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def _runtime_digest() -> str:
    files = runtime_src.library_sources() + runtime_src.headers()
    names = (f.relative_to(runtime_src.SOURCE_DIR).as_posix() for f in files)
    return _digest(*names, *(f.read_bytes() for f in files))


def _cached(name: str, build) -> Path:
    """Return cache_dir()/name, calling build(tmp_path) to create it if absent."""
    target = cache_dir() / name
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    try:
        build(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _object_name(src: Path) -> str:
    """An object name unique per source: a runtime file's path inside runtime/ with
    '/' as '__' (chip/sophon_device.c -> chip__sophon_device), else its stem."""
    try:
        rel = src.resolve().relative_to(runtime_src.SOURCE_DIR)
    except ValueError:
        return src.stem
    return "__".join(rel.with_suffix("").parts)


def _compile_objects(sources: list[Path], flags: list[str], workdir: Path, what: str = "") -> list[str]:
    """Compile ``sources``; with ``what``, show progress on stderr (the runtime is
    built once per compiler and source version, which takes a while)."""
    objects = []
    if what:
        from tqdm import tqdm

        sources = tqdm(sources, desc=f"tvm_sophon: building {what} (once; cached in {cache_dir()})",
                       unit="file", file=sys.stderr, leave=True)
    for src in sources:
        obj = workdir / (_object_name(src) + ".o")
        _run([*compiler(), *flags, *(f"-I{d}" for d in include_dirs()), "-c", str(src), "-o", str(obj)])
        objects.append(str(obj))
    return objects


def _link_relocatable(objects: list[str], out: Path) -> None:
    """Merge objects into one relocatable object (what load_static_library takes)."""
    _run([*compiler(), "-r", "-nostdlib", *objects, "-o", str(out)])


def runtime_object() -> Path:
    """The whole runtime as one relocatable, position-independent object."""
    flags = [*runtime_flags(), *HIDDEN]
    key = _digest(_runtime_digest(), *compiler(), *flags)

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _link_relocatable(_compile_objects(runtime_src.library_sources(), flags, Path(tmp),
                                               "the emulator runtime: object linked into models"), out)

    return _cached(f"sophon_runtime_{key}.o", build)


def runtime_shared_library() -> Path:
    """The runtime as a shared library, for Python (ctypes) to call the cost model
    and individual instructions."""
    flags = runtime_flags()
    key = _digest(_runtime_digest(), *compiler(), *flags)

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            objs = _compile_objects(runtime_src.library_sources(), flags, Path(tmp),
                                    "the emulator runtime: library for the cost model")
            _run([*compiler(), "-shared", "-pthread", *objs, "-lm", "-o", str(out)])

    return _cached(f"libsophon_runtime_{key}.so", build)


def generated_object(source: str, name: str) -> Path:
    """Compile generated C and merge it with the runtime into one object.

    The result is self-contained: exporting it into a TVM library needs nothing
    from this package at load time."""
    runtime_obj = runtime_object()
    key = _digest(source, runtime_obj.name, *compiler(), *GENERATED_FLAGS)

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / f"{name}.c"
            src.write_text(source)
            objs = _compile_objects([src], GENERATED_FLAGS, Path(tmp))
            _link_relocatable([*objs, str(runtime_obj)], out)

    return _cached(f"{name}_{key}.o", build)


def build_executable(sources: list[Path], out: Path, flags: "list[str] | None" = None) -> Path:
    """Compile and link a standalone C program (the runtime's unit tests)."""
    flags = runtime_flags() if flags is None else flags
    _run([*compiler(), *flags, *(f"-I{d}" for d in include_dirs()), *map(str, sources), "-lm", "-o", str(out)])
    return out


def create_shared(output: str, objects, options=None, **kwargs):
    """TVM's ``create_shared`` (the ``fcompile`` of ``export_library``) with ``$CC``
    split like everywhere here: TVM runs ``$CC`` as one program name, so
    ``CC="gcc -O2"`` fails there with FileNotFoundError. Use as
    ``ex.export_library(path, fcompile=tvm_sophon.toolchain.create_shared)``
    (``tvm-sophon compile`` does)."""
    from tvm.support import cc as tvm_cc

    program, *flags = compiler()
    return tvm_cc.create_shared(output, objects, options=[*flags, *(options or [])], cc=program, **kwargs)


def _target_triple():
    proc = subprocess.run([*compiler(), "-dumpmachine"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


create_shared.get_target_triple = _target_triple
create_shared.output_format = "so"
