"""Argument types shared by every command, so a meaningless value is refused by argparse up front.

Each is an argparse ``type=``: it returns the parsed value or raises ``ArgumentTypeError``, which argparse
reports as ``error: argument --timeout: must be a positive finite number, got 'nan'`` with exit code 2 --
never a traceback, and never a hang later (``--timeout nan`` would make every deadline wait forever).
"""

from __future__ import annotations

import math
import os
import stat
from argparse import ArgumentTypeError
from pathlib import Path

__all__ = [
    "fraction",
    "input_file",
    "nonnegative_float",
    "nonnegative_int",
    "output_file",
    "port",
    "positive_float",
    "positive_int",
    "same_file",
]


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        noun = "an integer" if kind is int else "a number"
        raise ArgumentTypeError(f"must be {noun}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, sizes)."""
    value = _number(text, float)
    if value <= 0:
        raise ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (a sampling temperature)."""
    value = _number(text, float)
    if value < 0:
        raise ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1] (top-p, a share of GPU memory)."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts of workers, samples, tokens)."""
    value = _number(text, int)
    if value < 1:
        raise ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (seeds; counts where 0 means "all" or "none")."""
    value = _number(text, int)
    if value < 0:
        raise ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535."""
    value = _number(text, int)
    if not 0 <= value <= 65535:
        raise ArgumentTypeError(f"must be a port number in 0..65535, got {text!r}")
    return value


def input_file(text: str) -> Path:
    """An existing regular file: not a directory, nor a device such as /dev/zero that never ends."""
    path = Path(text)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ArgumentTypeError(f"{text}: no such file") from None
    except OSError as exc:
        raise ArgumentTypeError(f"{text}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise ArgumentTypeError(f"{text} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise ArgumentTypeError(f"{text} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ArgumentTypeError(f"{text}: permission denied")
    return path


def output_file(text: str) -> Path:
    """A file path that can be written: not a directory or a device, and its folder exists."""
    path = Path(text)
    if path.is_dir():
        raise ArgumentTypeError(f"{text} is a directory, not a file")
    if path.exists() and not path.is_file():
        raise ArgumentTypeError(f"{text} is not a regular file")
    folder = path.parent
    if not folder.is_dir():
        raise ArgumentTypeError(f"{text}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ArgumentTypeError(f"{text}: folder {folder} is not writable")
    return path


def same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file (also through links), so writing one would destroy the other."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False
