"""Append-only, resumable generation to a JSONL file.

A run of 150K generations is killed sooner or later. The output file is the only state: records are
appended and flushed one by one, a torn last line is cut on restart, and a rerun asks the backend
only for the (id, effort, sample) triples not yet on disk.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from tops_plugin.generation.base import Backend, BadRequest, GenerationRequest, request_problem
from tops_plugin.generation.outputs import record_key
from tops_plugin.jsonl import JsonlError, append_jsonl, read_jsonl, repair_tail

__all__ = ["GenerationSummary", "ProgressEvent", "done_keys", "generate_to_file", "pending_requests"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """What a progress display needs after each record: counts so far and the record itself."""

    done: int
    total: int
    gen_tokens: int
    record: dict | None = None


@dataclass(frozen=True)
class GenerationSummary:
    """Outcome of one `generate_to_file` call (this run only; `skipped` counts what was already there)."""

    path: str
    records: int
    skipped: int
    planned: int
    truncated: int
    tokens: int
    gen_tokens: int
    elapsed_s: float
    torn_bytes: int = 0
    bad: tuple[tuple[object, str], ...] = ()
    unreadable_lines: tuple[str, ...] = field(default=())

    @property
    def truncated_share(self) -> float:
        return self.truncated / self.records if self.records else 0.0

    @property
    def mean_tokens(self) -> float:
        return self.tokens / self.records if self.records else 0.0

    @property
    def gen_tokens_per_s(self) -> float:
        return self.gen_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def complete(self) -> bool:
        """True when every planned sample is on disk."""
        return self.records == self.planned


def done_keys(path: str | os.PathLike, errors: list[JsonlError] | None = None) -> set[tuple[str, str | None, int]]:
    """The (id, effort, sample) keys already written to `path`; unreadable lines go to `errors`."""
    if not os.path.exists(path):
        return set()
    return {record_key(row) for row in read_jsonl(path, require=("id",), skip_bad=True, errors=errors)}


def pending_requests(
    requests: Iterable[GenerationRequest],
    done: set[tuple[str, str | None, int]],
    bad: list[tuple[object, str]],
    counts: dict[str, int],
) -> Iterator[GenerationRequest]:
    """Narrow each request to its samples not in `done`; drop bad requests into `bad` (by id).

    `counts` gains "planned" (samples to generate) and "skipped" (samples already on disk).
    """
    for request in requests:
        try:
            request_problem(request)
        except BadRequest as exc:
            bad.append((exc.problem_id, exc.reason))
            continue
        pid = str(request.problem["id"])
        missing = tuple(s for s in request.sample_indices if (pid, request.effort, s) not in done)
        counts["skipped"] += len(request.sample_indices) - len(missing)
        if missing:
            counts["planned"] += len(missing)
            yield dataclasses.replace(request, samples=missing)


def generate_to_file(
    backend: Backend,
    requests: Iterable[GenerationRequest],
    out_path: str | os.PathLike,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> GenerationSummary:
    """Generate what `out_path` still lacks and append it, one flushed line per record.

    `progress` is called once before the first record (with the total), after each record, and -- for a
    backend with an ``on_sequence_done`` hook (batched Hugging Face generation, the in-process vLLM
    engine) -- as each sequence of a running batch ends, so that progress advances per finished
    sequence rather than per batch.
    Records for keys already on disk are never written twice, even if a backend repeats itself.
    """
    started = time.perf_counter()
    torn = repair_tail(out_path)
    if torn:
        log.warning("%s: dropped a torn last line (%d bytes) left by an interrupted run", out_path, torn)
    read_errors: list[JsonlError] = []
    done = done_keys(out_path, read_errors)
    for err in read_errors:
        log.warning("%s", err)
    bad: list[tuple[object, str]] = []
    counts = {"planned": 0, "skipped": 0}
    pending = list(pending_requests(requests, done, bad, counts))
    for (pid, reason), count in Counter(bad).items():
        log.warning("skipping problem %r (%d request(s)): %s", pid, count, reason)

    errors_before = len(getattr(backend, "errors", ()) or ())
    written = truncated = tokens = gen_tokens = 0
    ended = 0  # sequences the backend saw end whose records have not come yet (batched backends)
    if progress is not None:
        progress(ProgressEvent(0, counts["planned"], 0))

    def sequences_ended(count: int) -> None:
        nonlocal ended
        ended += count
        progress(ProgressEvent(min(written + ended, counts["planned"]), counts["planned"], gen_tokens))

    reports_sequences = progress is not None and hasattr(backend, "on_sequence_done")
    if reports_sequences:
        backend.on_sequence_done = sequences_ended
    try:
        if pending:
            with append_jsonl(out_path) as write:
                for record in backend.generate(pending):
                    key = record_key(record)
                    if key in done:
                        continue
                    write(record)
                    done.add(key)
                    written += 1
                    ended = max(ended - 1, 0)
                    truncated += record.get("finish_reason") == "length"
                    tokens += int(record.get("tokens", 0))
                    gen_tokens += int(record.get("gen_tokens", 0))
                    if progress is not None:
                        done_now = min(written + ended, counts["planned"])
                        progress(ProgressEvent(done_now, counts["planned"], gen_tokens, record))
    finally:
        if reports_sequences:
            backend.on_sequence_done = None
    bad.extend(list(getattr(backend, "errors", ()) or ())[errors_before:])
    return GenerationSummary(
        path=str(out_path),
        records=written,
        skipped=counts["skipped"],
        planned=counts["planned"],
        truncated=truncated,
        tokens=tokens,
        gen_tokens=gen_tokens,
        elapsed_s=time.perf_counter() - started,
        torn_bytes=torn,
        bad=tuple(bad),
        unreadable_lines=tuple(str(err) for err in read_errors),
    )
