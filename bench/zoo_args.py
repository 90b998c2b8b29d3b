"""The model selection the zoo benches share (zoo.py, compile_time.py): the arguments,
and the checked list of names they select."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import zoo_models  # noqa: E402


def add_zoo_arguments(parser: argparse.ArgumentParser) -> None:
    """--small, --only, --json, --table and --workdir, as every zoo bench reads them."""
    parser.add_argument("--small", action="store_true", help="the tests' small input sizes")
    parser.add_argument("--only", help="comma-separated model names (default: all)")
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--table", metavar="JSON", help="print the table of a --json file and exit")
    parser.add_argument("--workdir", default=str(zoo_models.default_workdir()),
                        help="where converted models are kept (default %(default)s)")


def selected_models(parser: argparse.ArgumentParser, only: str | None, known) -> list[str]:
    """The names of --only (comma-separated; None: all of `known`), in its order; an
    unknown name is a usage error that lists the known ones."""
    names = only.split(",") if only else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names
