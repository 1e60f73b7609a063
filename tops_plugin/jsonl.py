"""JSONL I/O shared by every stage: line-numbered errors, atomic writes, append-and-resume.

Every arrow of the data flow (problems -> generations -> verdicts -> selections) is a JSONL file, so
these few functions decide whether a killed run loses work. Rules:

* reading names the file and 1-based line of any malformed row (`JsonlError`), or skips it when asked;
* whole-file outputs are written to a temporary file beside the target and renamed into place, so a
  reader never sees half a file;
* long runs append one record per line and flush; on restart `repair_tail` drops a torn last line
  (a kill mid-write) and reports it, and `read_jsonl` tells the caller what is already done.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson

__all__ = [
    "MAX_LINE_BYTES",
    "JsonlError",
    "append_jsonl",
    "atomic_writer",
    "dumps",
    "loads",
    "read_jsonl",
    "read_jsonl_numbered",
    "repair_tail",
    "sha256_file",
    "write_jsonl",
]


#: Longest line read (bytes): a 32k-token response is ~150 KB; a longer line is a broken or hostile file.
MAX_LINE_BYTES = 64 * 2**20

_UMASK = os.umask(0)
os.umask(_UMASK)


class JsonlError(ValueError):
    """A malformed or incomplete row, located by file and 1-based line number."""

    def __init__(self, path: str | os.PathLike, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{self.path}:{line}: {reason}")


def loads(line: bytes | str) -> Any:
    """Parse one JSON value; falls back to `json` for text orjson rejects (lone surrogates)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def dumps(obj: Any) -> bytes:
    """One JSON line (with the newline). Lone surrogates, which orjson refuses, are escaped by `json`."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(obj, ensure_ascii=True) + "\n").encode()


def read_jsonl(
    path: str | os.PathLike,
    *,
    require: Iterable[str] = (),
    skip_bad: bool = False,
    errors: list[JsonlError] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[dict]:
    """Yield each object of a JSONL file, streaming.

    Blank lines are ignored. A line that is not a JSON object, or lacks a key in `require`, raises
    `JsonlError` -- or, with `skip_bad`, is appended to `errors` (when given) and skipped. So is a line
    longer than `max_line_bytes`, which is never held in memory whole.
    """
    for _, row in read_jsonl_numbered(
        path, require=require, skip_bad=skip_bad, errors=errors, max_line_bytes=max_line_bytes
    ):
        yield row


def read_jsonl_numbered(
    path: str | os.PathLike,
    *,
    require: Iterable[str] = (),
    skip_bad: bool = False,
    errors: list[JsonlError] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, dict]]:
    """`read_jsonl` yielding (1-based line, row): for callers that check rows further and must name the
    line of a bad one."""
    required = tuple(require)
    with open(path, "rb") as handle:
        for number, raw in _numbered_lines(handle, max_line_bytes):
            if raw is None:
                problem = JsonlError(path, number, f"line longer than {max_line_bytes:,} bytes")
                if not skip_bad:
                    raise problem
                if errors is not None:
                    errors.append(problem)
                continue
            if not raw.strip():
                continue
            try:
                row = loads(raw)
            except ValueError as exc:
                problem = JsonlError(path, number, f"not valid JSON ({_short(exc)})")
            else:
                if not isinstance(row, dict):
                    problem = JsonlError(path, number, f"expected a JSON object, got {type(row).__name__}")
                else:
                    missing = [key for key in required if key not in row]
                    if not missing:
                        yield number, row
                        continue
                    problem = JsonlError(path, number, f"missing key(s) {', '.join(map(repr, missing))}")
            if not skip_bad:
                raise problem
            if errors is not None:
                errors.append(problem)


def _numbered_lines(handle: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(1-based number, line) pairs; None in place of a line longer than `limit`, which is skipped unread."""
    number = 0
    while raw := handle.readline(limit + 1):
        number += 1
        if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(1 << 20)
            yield number, None
        else:
            yield number, raw


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (data files are recorded by hash in every output)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _short(exc: Exception, limit: int = 120) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write a whole file so that it appears complete or not at all (temp file + fsync + rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows atomically; returns the number written."""
    count = 0
    with atomic_writer(path) as handle:
        for row in rows:
            handle.write(dumps(row))
            count += 1
    return count


def repair_tail(path: str | os.PathLike) -> int:
    """Cut a torn last line (not valid JSON) left by a killed writer.

    A valid last record that only lacks its newline is kept and the newline added. Returns the number
    of bytes dropped (0 when the file is whole or absent).
    """
    target = Path(path)
    if not target.exists():
        return 0
    with open(target, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        # Find the start of the last line by scanning backwards in blocks.
        block, end = 1 << 16, size
        handle.seek(size - 1)
        ends_with_newline = handle.read(1) == b"\n"
        search_end = size - 1 if ends_with_newline else size
        start = 0
        pos = search_end
        while pos > 0:
            step = min(block, pos)
            handle.seek(pos - step)
            chunk = handle.read(step)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                start = pos - step + idx + 1
                break
            pos -= step
        handle.seek(start)
        last = handle.read(end - start)
        if not last.strip():
            return 0
        try:
            loads(last)
        except ValueError:
            handle.truncate(start)
            return size - start
        if not ends_with_newline:  # a complete record that only lacks its newline: keep it
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")
        return 0


@contextmanager
def append_jsonl(path: str | os.PathLike) -> Iterator:
    """Open a JSONL file for appending after repairing a torn tail; yields `write(row)`.

    Each record is flushed as it is written, so a kill loses at most the line being written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(target)
    with open(target, "ab") as handle:

        def write(row: dict) -> None:
            handle.write(dumps(row))
            handle.flush()

        yield write
