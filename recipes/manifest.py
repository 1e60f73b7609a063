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
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from recipes.layout import RunLayout
from tops_plugin.jsonl import atomic_writer, sha256_file

__all__ = ["Manifest", "RunDirBusy", "digest", "run_lock"]


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


class Manifest:
    """`RUN_DIR/manifest.json`: per-stage records, saved atomically after each change."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = RunLayout(self.run_dir).manifest
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
    lock = RunLayout(path).lock
    with open(lock, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(f"{path}: another run is using this run directory (lock {lock})") from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
