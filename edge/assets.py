"""Files of `static/` (the browser snippet, the demo): where they are, installed or not.

An installed rokt-edge ships `static/` as the package `edge.static`; in a source checkout run
without installing (PYTHONPATH=.), the directory sits beside the `edge` package.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path


def static_root() -> Traversable:
    try:
        return resources.files("edge.static")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "static"


def read_static(name: str) -> bytes | None:
    """The file's bytes, or None when it is not there (e.g. a snippet not yet built)."""
    try:
        return static_root().joinpath(name).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
