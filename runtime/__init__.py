"""Locates the C sources of the emulated chip (this directory) for the compiler.

runtime/ is the C reference runtime; this module only tells Python where it is.
"""
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent


def library_sources() -> list[Path]:
    """The runtime's C translation units, in a stable order."""
    return sorted(SOURCE_DIR.glob("sophon_*.c"))


def headers() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.h"))


def test_sources() -> list[Path]:
    """The runtime's C unit-test programs: one standalone program per file."""
    return sorted((SOURCE_DIR / "tests").glob("test_*.c"))
