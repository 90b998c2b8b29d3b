"""Compiling C with the system compiler: the runtime (the emulated chip) and the
code generated for offloaded regions.

One small place for it: honours ``CC``, builds with warnings as errors, caches
by a hash of the sources, flags and compiler, and writes each artifact to a
temporary file that is renamed into place, so concurrent builds never see a
half-written object. The cache lives in ``$TVM_SOPHON_CACHE`` (default
``~/.cache/tvm_sophon``).
"""
from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import tvm_ffi.libinfo

from . import runtime as runtime_src
from .errors import SophonToolchainError

COMMON_FLAGS = ["-O2", "-fPIC", "-Wall", "-Werror"]
RUNTIME_FLAGS = ["-std=c99", "-pedantic", "-Wextra", *COMMON_FLAGS]
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
    return _digest(*(f.name for f in files), *(f.read_bytes() for f in files))


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


def _compile_objects(sources: list[Path], flags: list[str], workdir: Path) -> list[str]:
    objects = []
    for src in sources:
        obj = workdir / (src.stem + ".o")
        _run([*compiler(), *flags, *(f"-I{d}" for d in include_dirs()), "-c", str(src), "-o", str(obj)])
        objects.append(str(obj))
    return objects


def _link_relocatable(objects: list[str], out: Path) -> None:
    """Merge objects into one relocatable object (what load_static_library takes)."""
    _run([*compiler(), "-r", "-nostdlib", *objects, "-o", str(out)])


def runtime_object() -> Path:
    """The whole runtime as one relocatable, position-independent object."""
    flags = [*RUNTIME_FLAGS, *HIDDEN]
    key = _digest(_runtime_digest(), *compiler(), *flags)

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _link_relocatable(_compile_objects(runtime_src.library_sources(), flags, Path(tmp)), out)

    return _cached(f"sophon_runtime_{key}.o", build)


def runtime_shared_library() -> Path:
    """The runtime as a shared library, for Python (ctypes) to call the cost model
    and individual instructions."""
    key = _digest(_runtime_digest(), *compiler(), *RUNTIME_FLAGS)

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            objs = _compile_objects(runtime_src.library_sources(), RUNTIME_FLAGS, Path(tmp))
            _run([*compiler(), "-shared", *objs, "-lm", "-o", str(out)])

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


def build_executable(sources: list[Path], out: Path, flags: list[str] = RUNTIME_FLAGS) -> Path:
    """Compile and link a standalone C program (the runtime's unit tests)."""
    _run([*compiler(), *flags, *(f"-I{d}" for d in include_dirs()), *map(str, sources), "-lm", "-o", str(out)])
    return out
