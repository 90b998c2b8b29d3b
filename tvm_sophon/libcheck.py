"""The libraries ``tvm-sophon compile`` writes are checked before they are loaded.

A truncated or overwritten shared object handed to the dynamic loader kills the
process (SIGBUS when a mapped page lies past the end of the file) with no
message. So ``compile`` appends a trailer to the library it exports (a magic
string, the length of the library before it and its SHA-256; the loader maps
only what the ELF program headers name, so bytes after them are inert), and
``run`` checks, before loading: the trailer and digest, the ELF header, that the
section and program header tables and every loaded segment lie within the file.
Each failed check is one line naming the file and the problem.
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from .errors import SophonError

MAGIC = b"\0tvm_sophon-lib1"
TRAILER = struct.Struct("<16sQ32s")  # magic, library bytes before the trailer, sha256 of them


class SophonLibraryError(SophonError):
    """A library file is missing, truncated, corrupt or not built by tvm-sophon."""


def stamp(path: "str | Path") -> None:
    """Append the trailer to a library just exported."""
    path = Path(path)
    data = path.read_bytes()
    with path.open("ab") as f:
        f.write(TRAILER.pack(MAGIC, len(data), hashlib.sha256(data).digest()))


def check(path: "str | Path") -> None:
    """Raise SophonLibraryError unless ``path`` is an intact library from ``compile``."""
    path = Path(path)
    if not path.is_file():
        raise SophonLibraryError(f"library {path} does not exist")
    data = path.read_bytes()
    if len(data) < TRAILER.size or data[-TRAILER.size:][:len(MAGIC)] != MAGIC:
        raise SophonLibraryError(f"{path} is not a library built by `tvm-sophon compile` "
                                 "(no tvm-sophon trailer: truncated, or built otherwise)")
    magic, length, digest = TRAILER.unpack(data[-TRAILER.size:])
    body = data[:-TRAILER.size]
    if length != len(body) or hashlib.sha256(body).digest() != digest:
        raise SophonLibraryError(f"{path} is corrupt: its contents do not match the digest "
                                 "`tvm-sophon compile` stored (modified or spliced file)")
    _check_elf(path, body)


def _check_elf(path: Path, data: bytes) -> None:
    size = len(data)

    def bad(what: str) -> SophonLibraryError:
        return SophonLibraryError(f"{path} is not a valid shared library: {what}")

    if size < 64 or data[:4] != b"\x7fELF":
        raise bad("no ELF header")
    if data[4] != 2 or data[5] not in (1, 2):
        raise bad("not a 64-bit ELF file")
    end = "<" if data[5] == 1 else ">"
    (e_type, _machine, _version, _entry, phoff, shoff, _flags, _ehsize,
     phentsize, phnum, shentsize, shnum, _shstrndx) = struct.unpack_from(end + "HHIQQQIHHHHHH", data, 16)
    if e_type != 3:  # ET_DYN
        raise bad(f"ELF type {e_type}, not a shared object")
    if phnum == 0 or phentsize < 56 or phoff + phnum * phentsize > size:
        raise bad("program header table beyond the end of the file (truncated?)")
    if shnum and (shentsize < 64 or shoff + shnum * shentsize > size):
        raise bad("section table beyond the end of the file (truncated?)")
    for k in range(phnum):
        p_type, _pflags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            end + "IIQQQQ", data, phoff + k * phentsize)
        if p_type == 1 and p_offset + p_filesz > size:  # PT_LOAD
            raise bad(f"segment {k} ends at byte {p_offset + p_filesz}, past the end of the "
                      f"file ({size} bytes; truncated?)")
    for k in range(shnum):
        sh_type, = struct.unpack_from(end + "I", data, shoff + k * shentsize + 4)
        sh_offset, sh_size = struct.unpack_from(end + "QQ", data, shoff + k * shentsize + 24)
        if sh_type != 8 and sh_offset + sh_size > size:  # SHT_NOBITS occupies no file bytes
            raise bad(f"section {k} lies beyond the end of the file (truncated?)")
