"""``python -m tops_plugin.check IN.jsonl -o OUT.jsonl``: add verdict fields to every row of a file.

Rows are written in input order. Work goes to ``OUT.jsonl.partial`` (append-only, flushed per row) and
is renamed to ``OUT.jsonl`` only when every row is judged, so OUT is never half-written and an
interrupted run, rerun with the same command, resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tops_plugin.answers import VERDICTS
from tops_plugin.jsonl import JsonlError, append_jsonl, read_jsonl, repair_tail
from tops_plugin.verifier import DEFAULT_TIMEOUT_S, Verifier


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tops_plugin.check", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="JSONL with a response and a gold answer per row")
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSONL to write (rows + verdicts)")
    parser.add_argument("--response-key", default="response")
    parser.add_argument("--gold-key", default="answer")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="deadline per row, seconds")
    parser.add_argument("--skip-bad", action="store_true", help="report and skip malformed rows instead of stopping")
    return parser.parse_args(argv)


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def resume_point(partial: Path, rows: Iterator[dict], response_key: str) -> int:
    """Rows already judged in `partial`, after checking they are the same rows as the input's first ones."""
    repair_tail(partial)
    done = 0
    for done, (old, new) in enumerate(zip(read_jsonl(partial), rows), start=1):
        if old.get(response_key) != new.get(response_key):
            raise SystemExit(
                f"error: {partial} does not match {response_key!r} of input row {done}; "
                f"delete it to start over"
            )
    return done


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    required = (args.response_key, args.gold_key)
    if not args.input.exists():
        console.print(f"[red]error:[/] {args.input}: no such file")
        return 2
    partial = args.output.with_name(args.output.name + ".partial")
    total = count_lines(args.input)
    bad: list[JsonlError] = []

    def input_rows() -> Iterator[dict]:
        return read_jsonl(args.input, require=required, skip_bad=args.skip_bad, errors=bad)

    try:
        done = resume_point(partial, input_rows(), args.response_key) if partial.exists() else 0
        bad.clear()
        if done:
            console.print(f"resuming: {done} rows already judged in {partial}")
        counts: Counter[str] = Counter()
        started = time.perf_counter()
        rows = input_rows()
        for _ in range(done):
            next(rows)
        columns = (TextColumn("judging"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                   TimeRemainingColumn())
        with Verifier(workers=args.workers, timeout=args.timeout) as verifier, append_jsonl(partial) as write, \
                Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("judge", total=max(total - done, 0), rate="")
            for row in judge_rows(verifier, rows, args.response_key, args.gold_key):
                write(row)
                counts[row["verdict"]] += 1
                progress.advance(task)
                if sum(counts.values()) % 64 == 0:
                    rate = sum(counts.values()) / max(time.perf_counter() - started, 1e-9)
                    progress.update(task, rate=f"{rate:.0f} rows/s")
    except JsonlError as exc:
        console.print(f"[red]error:[/] {exc}  (use --skip-bad to skip malformed rows; nothing was written to "
                      f"{args.output})")
        return 2
    except KeyboardInterrupt:
        console.print(f"interrupted: rows judged so far are kept in {partial}; rerun the same command to resume")
        return 130
    os.replace(partial, args.output)
    elapsed = time.perf_counter() - started
    judged = sum(counts.values())
    for error in bad:
        console.print(f"[yellow]skipped:[/] {error}")
    summary = ", ".join(f"{verdict} {counts[verdict]}" for verdict in VERDICTS)
    console.print(f"{judged} rows judged in {elapsed:.1f}s ({judged / max(elapsed, 1e-9):.1f} rows/s): {summary}"
                  + (f"; {len(bad)} malformed rows skipped" if bad else ""))
    console.print(f"wrote {args.output}")
    return 0


def judge_rows(verifier: Verifier, rows: Iterable[dict], response_key: str, gold_key: str) -> Iterator[dict]:
    """Yield each row with its verdict fields, in order, streaming through the verifier."""
    buffered: deque[dict] = deque()

    def pairs() -> Iterator[tuple[str, str, bool]]:
        for row in rows:
            buffered.append(row)
            yield row[response_key], row[gold_key], row.get("finish_reason") == "length"

    for verdict in verifier.check_many(pairs()):
        row = buffered.popleft()
        row.update(verdict.fields())
        yield row


if __name__ == "__main__":
    sys.exit(main())
