"""A stage as data: what it reads, writes and runs, planned before anything runs.

A plan names its inputs, outputs, the exact external commands and the settings that decide its result,
so `--dry-run` prints exactly what a run would do and the manifest can tell whether a finished stage is
still up to date. The planners (`recipes.planners`) build plans from a recipe; `recipes.execute` runs them.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.config import config_hash

__all__ = ["Hooks", "RunContext", "StagePlan"]


@dataclass(frozen=True)
class Hooks:
    """Callbacks from the command-line layer: generation progress and lines of launched commands."""

    progress: Callable[[str, Any], None] | None = None  # (stage, tops_plugin.generation.ProgressEvent)
    on_line: Callable[[str, str], None] | None = None  # (stage, line)


@dataclass(frozen=True)
class RunContext:
    """What a stage's work gets when it runs: its log, a key naming this exact work (settings and input
    digests; names partial files and checkpoints), and whether to discard earlier partial work."""

    stage: str
    log_path: Path
    key: str
    fresh: bool
    hooks: Hooks


@dataclass(frozen=True)
class StagePlan:
    name: str
    summary: str  # what the stage does, one line
    inputs: tuple[Path, ...] = ()
    outputs: tuple[Path, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()  # external commands, run in order after `work`
    work: Callable[[RunContext], None] | None = None  # in-process part
    renames: tuple[tuple[Path, Path], ...] = ()  # (partial, final) after the commands succeed
    ckpt_dir: Path | None = None  # OpenRLHF checkpoints, kept for resume only while the run key is unchanged
    settings: Any = None  # what decides the result besides inputs and commands
    unneeded: str | None = None  # why `--stage all` leaves it out (e.g. a model given in the config)
    hooks: Hooks = field(default_factory=Hooks)

    @property
    def config_hash(self) -> str:
        return config_hash({"settings": self.settings, "commands": [list(c) for c in self.commands]})

    def command_lines(self) -> list[str]:
        lines = [] if self.work is None else [f"(in-process) {self.summary}"]
        return lines + [shlex.join(c) for c in self.commands]
