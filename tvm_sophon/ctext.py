"""Text from outside (chip profiles, model, region and tensor names) on its way
into generated C: the one escaping function every such string goes through.

``c_escape`` keeps a conservative set of printable ASCII characters and writes
every other byte of the text's UTF-8 form as a three-digit octal escape
(``\\ooo``). Three digits always end the escape, so a following digit is never
swallowed, and the result is safe both inside a C string literal and inside a
``/* */`` comment: it holds no quote, backslash-newline, ``*`` or ``/`` (so no
``*/``), ``?`` (so no trigraph such as ``??/``, which -std=c99 honours), no
control character and nothing outside ASCII. In a string literal the escapes
give back the original bytes exactly; in a comment they are inert text.
"""
from __future__ import annotations

import string

_SAFE = frozenset((string.ascii_letters + string.digits + " _.,:;()[]{}<>=+-#@!$%^&|~'").encode())


def c_escape(text: str) -> str:
    """``text`` as C source characters, for a string literal or a comment."""
    return "".join(chr(b) if b in _SAFE else f"\\{b:03o}" for b in str(text).encode("utf-8", "surrogatepass"))


def c_string(text: str) -> str:
    """A C string literal whose value is the UTF-8 bytes of ``text``."""
    return f'"{c_escape(text)}"'


def c_comment(text: str) -> str:
    """A C comment holding ``text``."""
    return f"/* {c_escape(text)} */"
