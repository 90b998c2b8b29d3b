"""Locates the C sources of the emulated chip (this directory) for the compiler.

runtime/ is the C reference runtime (README.md there shows its parts: the public
headers here, chip/, isa/, reference/ and fast/); this module only tells Python
where it is.
"""
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent

# The runtime's parts, each a folder beside the public headers (README.md).
PARTS = ("chip", "isa", "reference", "fast")


def _files(pattern: str) -> list[Path]:
    """Files matching pattern at the top and in each part, sorted by relative path."""
    found = list(SOURCE_DIR.glob(pattern))
    for part in PARTS:
        found += (SOURCE_DIR / part).glob(pattern)
    return sorted(found, key=lambda f: f.relative_to(SOURCE_DIR).as_posix())


def library_sources() -> list[Path]:
    """The runtime's C translation units, in a stable order."""
    return _files("sophon_*.c")


def headers() -> list[Path]:
    """The runtime's headers (public ones first level, the parts' in their folders)."""
    return _files("*.h")


def test_sources() -> list[Path]:
    """The runtime's C unit-test programs: one standalone program per file."""
    return sorted((SOURCE_DIR / "tests").glob("test_*.c"))
