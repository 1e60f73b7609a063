"""Running planned stages: in-process work, then external commands with their logs, then the renames
that put outputs in place -- recorded in the run directory's manifest.

Outputs appear only when a stage finishes: whole files are written atomically, generation appends to a
`*.partial` file (resumed after a kill) renamed at the end, and training writes to `DIR.partial`,
renamed to `DIR` when OpenRLHF exits cleanly. A stage whose last run is done, with unchanged settings
and input digests and its outputs as it wrote them, is skipped (`recipes.manifest`).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recipes import launch
from recipes.config import config_hash
from recipes.layout import RunLayout
from recipes.manifest import Manifest, digest
from recipes.plan import RunContext, StagePlan

__all__ = ["Outcome", "StageFailed", "execute", "log_tail", "reset_stale", "run_command", "run_plan"]


class StageFailed(RuntimeError):
    """A stage that did not finish: its name, the exact command, and the end of its log."""

    def __init__(self, stage: str, reason: str, command: Sequence[str] | str | None = None, log_tail: str = "",
                 log_path: str | os.PathLike | None = None):
        self.stage, self.reason, self.log_tail = stage, reason, log_tail
        self.command = command if isinstance(command, str) or command is None else shlex.join(map(str, command))
        self.log_path = None if log_path is None else str(log_path)
        lines = [f"stage {stage!r} failed: {reason}"]
        if self.command:
            lines.append(f"command: {self.command}")
        if self.log_path:
            lines.append(f"log: {self.log_path}")
        if log_tail.strip():
            lines.append("last lines of the log:")
            lines.extend("  " + line for line in log_tail.rstrip("\n").splitlines())
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Outcome:
    name: str
    ran: bool
    reason: str  # why it ran, or "up to date"
    seconds: float = 0.0


def execute(plan: StagePlan, manifest: Manifest, *, force: bool = False,
            on_start: Callable[[StagePlan, str], None] | None = None) -> Outcome:
    """Run one stage unless it is up to date; record it. Raises `StageFailed` (recorded as failed)."""
    inputs = {str(p): digest(p) for p in plan.inputs}
    missing = [p for p, sha in inputs.items() if sha is None]
    if missing:
        raise StageFailed(plan.name, f"input not found: {missing[0]} (run the stage that writes it first)")
    chash = plan.config_hash
    current, reason = manifest.check(plan.name, chash, inputs, [str(p) for p in plan.outputs])
    if current and not force:
        return Outcome(plan.name, False, reason)
    reason = "forced" if force else reason
    log_path = RunLayout(manifest.run_dir).log(plan.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    manifest.start(plan.name, plan.command_lines(), chash, inputs, str(log_path))
    if on_start is not None:
        on_start(plan, reason)
    started = time.perf_counter()
    try:
        run_plan(plan, log_path, fresh=force)
        outputs = {str(p): digest(p) for p in plan.outputs}
        absent = [p for p, sha in outputs.items() if sha is None]
        if absent:
            raise StageFailed(plan.name, f"finished without writing {absent[0]}", log_path=log_path)
    except StageFailed as exc:
        manifest.fail(plan.name, str(exc))
        raise
    except Exception as exc:  # a library error inside an in-process stage: keep the message, name the stage
        logging.getLogger(__name__).debug("stage %s failed", plan.name, exc_info=True)
        failure = StageFailed(plan.name, f"{type(exc).__name__}: {exc}", log_tail=log_tail(log_path),
                              log_path=log_path)
        manifest.fail(plan.name, str(failure))
        raise failure from exc
    except BaseException:  # Ctrl-C: record it so the next run knows this stage did not finish
        manifest.fail(plan.name, "interrupted")
        raise
    seconds = time.perf_counter() - started
    manifest.finish(plan.name, outputs, seconds)
    return Outcome(plan.name, True, reason, seconds)


def run_plan(plan: StagePlan, log_path: Path, fresh: bool = False) -> None:
    """Do a stage's work unconditionally: its in-process part (logging to `log_path`), its commands in
    order, then the renames of partial outputs. `fresh` discards earlier partial work and checkpoints."""
    key = config_hash([plan.config_hash, {str(p): digest(p) for p in plan.inputs}])
    ctx = RunContext(plan.name, log_path, key, fresh, plan.hooks)
    if plan.ckpt_dir is not None:
        reset_stale(plan.ckpt_dir, key, fresh)
    for partial, _ in plan.renames:  # a killed run's half-saved model; a resumed run saves it again
        if partial.is_dir():
            shutil.rmtree(partial)
    if plan.work is not None:
        with _logging_to(log_path):
            plan.work(ctx)
    on_line = None if plan.hooks.on_line is None else (lambda line: plan.hooks.on_line(plan.name, line))
    for command in plan.commands:
        argv, env = launch.for_this_machine(command)
        run_command(plan.name, argv, log_path, env=env, on_line=on_line)
    for partial, final in plan.renames:
        _replace(partial, final)


def reset_stale(folder: Path, key: str, fresh: bool, keep_unmarked: bool = False) -> None:
    """Drop resumable work (checkpoints, an evaluation run) done for other settings or inputs (or all,
    when `fresh`); a folder without a key is kept with `keep_unmarked` (its own resume checks decide)."""
    marker = folder / "tops-run-key"
    unmarked = not marker.exists() and not keep_unmarked
    if folder.exists() and (fresh or unmarked or (marker.exists() and marker.read_text().strip() != key)):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n")


def _replace(partial: Path, final: Path) -> None:
    if not partial.exists():
        raise FileNotFoundError(f"{partial} was not written")
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(partial, final)


@contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Send library log records (warnings about skipped rows, torn lines…) to the stage log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level, logging.INFO) if old_level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def run_command(stage: str, command: Sequence[str], log_path: Path, *, cwd: Path | None = None,
                env: Mapping[str, str] | None = None, on_line: Callable[[str], None] | None = None,
                tail_lines: int = 20) -> None:
    """Run one external command, appending its merged stdout/stderr to `log_path` (and to `on_line`).

    A missing executable or a non-zero exit raises `StageFailed` with the stage, the exact command and
    the last lines of the log.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    merged_env = None if env is None else {**os.environ, **env}
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(map(str, command))}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(
                [str(part) for part in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=cwd, env=merged_env,
            )
        except OSError as exc:  # FileNotFoundError, PermissionError: the executable itself
            log.write(f"cannot start: {exc}\n".encode())
            raise StageFailed(stage, f"cannot start {command[0]!r}: {exc.strerror or exc}", command,
                              log_tail(log_path, tail_lines), log_path) from None
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                log.write(raw)
                log.flush()
                if on_line is not None:
                    on_line(raw.decode("utf-8", "replace").rstrip("\n"))
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
    if code != 0:
        raise StageFailed(stage, f"exit status {code}", command, log_tail(log_path, tail_lines), log_path)


def log_tail(path: str | os.PathLike, lines: int = 20) -> str:
    """The last `lines` lines of a log file (read from its last 64 KiB)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
