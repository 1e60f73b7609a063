"""The parser every command starts from, and the argument types they share.

`command_parser` makes the commands behave alike: named after their console script, no abbreviated
options (argparse would otherwise read ``--effort low`` as ``--efforts low`` and ``--temp`` as
``--temperature``), and ``--help`` that shows each option's default. `add_renamed` keeps an option's former
spelling working, hidden from ``--help``, after a rename.

Each type is an argparse ``type=``: it returns the parsed value or raises ``ArgumentTypeError``, which
argparse reports as ``error: argument --timeout: must be a positive finite number, got 'nan'`` with exit
code 2 -- never a traceback, and never a hang later (``--timeout nan`` would make every deadline wait
forever).
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import textwrap
from argparse import ArgumentTypeError
from pathlib import Path

import yaml

from tops_plugin.prompts import DEFAULT_EFFORT, EFFORTS

__all__ = [
    "NO_EFFORT",
    "HelpFormatter",
    "add_renamed",
    "command_parser",
    "efforts",
    "fraction",
    "input_file",
    "input_path",
    "key_value",
    "nonnegative_float",
    "nonnegative_int",
    "output_file",
    "port",
    "positive_float",
    "positive_int",
    "same_file",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with the description's own line breaks (each line wrapped to the terminal) and each
    option's default, where it has one: an option that is off or unset by default (False, None, an empty
    list) says so in its help instead of printing ``(default: None)``."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent)
                         for line in text.splitlines())

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def command_parser(prog: str, description: str, **options) -> argparse.ArgumentParser:
    """An argument parser for the command installed as `prog` (its console script): whole option names
    only, defaults shown in ``--help``."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter,
                                   allow_abbrev=False, **options)


def add_renamed(container, *flags: str, old: str | tuple[str, ...], **options) -> argparse.Action:
    """``container.add_argument(*flags, **options)`` that also accepts the option's former spelling(s)
    `old`: same destination and type, hidden from ``--help``, so scripts written for the old name keep
    working. The two spellings form a mutually exclusive group, which carries ``required``: either
    spelling satisfies it, and giving both is an error."""
    group = container.add_mutually_exclusive_group(required=options.pop("required", False))
    action = group.add_argument(*flags, **options)
    alias = {**options, "dest": action.dest, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
    group.add_argument(*((old,) if isinstance(old, str) else old), **alias)
    return action


#: Effort names that mean "no effort prompt" (the model's default behaviour).
NO_EFFORT = ("none", DEFAULT_EFFORT)


def efforts(text: str) -> tuple[str | None, ...]:
    """``low,medium,high`` -> ("low", "medium", "high"); ``none`` (or ``default``) is None: no effort
    prompt."""
    names = [part.strip() for part in text.split(",")]
    unknown = [name for name in names if name not in EFFORTS and name not in NO_EFFORT]
    if unknown:
        raise ArgumentTypeError(f"unknown effort {unknown[0]!r} (use {', '.join(EFFORTS + NO_EFFORT)})")
    return tuple(None if name in NO_EFFORT else name for name in names)


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key, value): the value read as YAML (``4`` is a number, ``true`` a boolean,
    ``[a, b]`` a list, anything else its text); dashes in the key become underscores."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip().replace("-", "_"), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ArgumentTypeError(f"{text!r}: the value is not valid YAML") from None


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


def input_path(text: str) -> Path:
    """An existing directory, or a file as `input_file` takes it (never a device that never ends)."""
    return Path(text) if Path(text).is_dir() else input_file(text)


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
