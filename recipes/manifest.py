"""The run directory's memory: what each stage ran, on what, producing what — and whether to run it again.

`manifest.json` (one per run directory, rewritten atomically after every change) holds per stage:
the command(s), the hash of the settings that decide its result, the sha256 of every input and
output, start and end times, the wall time in seconds, and the status (`running`, `done`, `failed`). A stage is skipped when its
last run is `done`, its settings hash and input digests are unchanged, and its outputs are still the
ones it wrote; anything else reruns it, and `force` reruns it regardless. Because stages rename their
outputs into place only when they finish, a killed stage leaves no output that could pass for done.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tops_plugin.jsonl import atomic_writer, sha256_file

__all__ = [
    "Manifest",
    "RunDirBusy",
    "StageFailed",
    "digest",
    "execute",
    "log_tail",
    "run_lock",
]

MANIFEST_NAME = "manifest.json"


def digest(path: str | os.PathLike) -> str | None:
    """sha256 of a file's bytes; for a directory (a trained model), sha256 of its sorted listing of
    (relative path, size, mtime) — cheap on 60 GB checkpoints and changed by any rewrite. None if absent."""
    target = Path(path)
    if target.is_file():
        return sha256_file(target)
    if target.is_dir():
        sha = hashlib.sha256(b"tree\n")
        for item in sorted(p for p in target.rglob("*") if p.is_file()):
            stat = item.stat()
            sha.update(f"{item.relative_to(target).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return "tree:" + sha.hexdigest()
    return None


class StageFailed(RuntimeError):
    """A stage that did not finish: its name, the exact command, and the end of its log."""

    def __init__(self, stage: str, reason: str, command: Sequence[str] | str | None = None, log_tail: str = "",
                 log_path: str | os.PathLike | None = None):
        self.stage, self.reason, self.log_tail = stage, reason, log_tail
        self.command = command if isinstance(command, str) or command is None else _shell(command)
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


def _shell(command: Sequence[str]) -> str:
    import shlex

    return shlex.join(str(part) for part in command)


class Manifest:
    """`RUN_DIR/manifest.json`: per-stage records, saved atomically after each change."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST_NAME
        self.stages: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as handle:
                try:
                    data = json.load(handle)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{self.path}: not valid JSON ({exc}); move it away to start over") from None
            self.stages = dict(data.get("stages", {}))

    def save(self) -> None:
        with atomic_writer(self.path, "w") as handle:
            json.dump({"version": 1, "stages": self.stages}, handle, indent=2, sort_keys=True)
            handle.write("\n")

    def check(self, name: str, config_hash: str, inputs: dict[str, str | None],
              outputs: Iterable[str]) -> tuple[bool, str]:
        """(up to date?, why it must run or 'up to date'). `inputs` maps path -> current digest."""
        record = self.stages.get(name)
        if record is None:
            return False, "never run"
        if record.get("status") != "done":
            return False, f"last run {record.get('status', 'unknown')}"
        if record.get("config_hash") != config_hash:
            return False, "settings changed"
        recorded_inputs = record.get("inputs", {})
        for path, sha in inputs.items():
            if sha is None:
                return False, f"input missing: {path}"
            if recorded_inputs.get(path) != sha:
                return False, f"input changed: {path}"
        if set(recorded_inputs) != set(inputs):
            return False, "inputs changed"
        recorded_outputs = record.get("outputs", {})
        for path in outputs:
            current = digest(path)
            if current is None:
                return False, f"output missing: {path}"
            if recorded_outputs.get(path) != current:
                return False, f"output changed since the stage wrote it: {path}"
        return True, "up to date"

    def start(self, name: str, commands: list[str], config_hash: str, inputs: dict[str, str | None], log: str) -> None:
        self.stages[name] = {
            "status": "running",
            "commands": commands,
            "config_hash": config_hash,
            "inputs": inputs,
            "outputs": {},
            "log": log,
            "started": _now(),
            "ended": None,
        }
        self.save()

    def finish(self, name: str, outputs: dict[str, str | None], seconds: float | None = None) -> None:
        self.stages[name].update(status="done", outputs=outputs, ended=_now(),
                                 seconds=None if seconds is None else round(seconds, 1))
        self.save()

    def fail(self, name: str, error: str) -> None:
        self.stages[name].update(status="failed", error=error, ended=_now())
        self.save()


class RunDirBusy(RuntimeError):
    """Another process is running stages in the same run directory."""


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold `RUN_DIR/.lock` while running stages, so two runs never write the same files and manifest."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(f"{path}: another run is using this run directory (lock {path / '.lock'})") from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Plan(Protocol):
    """What `execute` needs from a stage plan (see `recipes.stages.StagePlan`)."""

    name: str
    inputs: tuple[Path, ...]
    outputs: tuple[Path, ...]

    @property
    def config_hash(self) -> str: ...

    def command_lines(self) -> list[str]: ...

    def run(self, log_path: Path, fresh: bool = False) -> None: ...


@dataclass(frozen=True)
class Outcome:
    name: str
    ran: bool
    reason: str  # why it ran, or "up to date"
    seconds: float = 0.0


def execute(plan: Plan, manifest: Manifest, *, force: bool = False,
            on_start: Callable[[Plan, str], None] | None = None) -> Outcome:
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
    log_path = manifest.run_dir / "logs" / f"{plan.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    manifest.start(plan.name, plan.command_lines(), chash, inputs, str(log_path))
    if on_start is not None:
        on_start(plan, reason)
    started = time.perf_counter()
    try:
        plan.run(log_path, fresh=force)
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
