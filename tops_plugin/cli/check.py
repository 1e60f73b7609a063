"""``tops-check IN.jsonl -o OUT.jsonl``: add verdict fields to every row of a file.

Rows are written in input order with the verdict fields of `tops_plugin.judging.rows` (``truncated`` among
them: a row whose ``finish_reason`` is ``length``, or whose reasoning block never closed, is judged as
cut off). Work goes to ``OUT.jsonl.partial`` (append-only, flushed per batch) and is renamed to
``OUT.jsonl`` only when every row is judged, so OUT is never half-written and an interrupted run, rerun
with the same command, resumes where it stopped. A resumed run keeps an earlier verdict only while
what decided it is unchanged (response, gold answer, truncation, checker version): from the first row
that differs, rows are judged again.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tops_plugin.cli.args import command_parser, input_file, output_file, positive_float, positive_int, same_file
from tops_plugin.cli.progress import ProgressDisplay
from tops_plugin.jsonl import JsonlError, append_jsonl, read_jsonl, read_jsonl_numbered, repair_tail
from tops_plugin.judging.answers import VERDICTS
from tops_plugin.judging.rows import UNSETTLED_VERDICTS, VERDICT_FIELDS, gold_of, is_truncated, judge_key, judge_rows
from tops_plugin.judging.verifier import DEFAULT_TIMEOUT_S, Verifier


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("tops-check", "Judge a file of responses: every row, in order, with verdict fields "
                            "added.\n\nAn interrupted run resumes when the same command is run again.")
    parser.add_argument("input", type=input_file, metavar="IN.jsonl",
                        help="JSONL with a response and a gold answer per row")
    parser.add_argument("-o", "--output", type=output_file, required=True, metavar="OUT.jsonl",
                        help="JSONL to write: the input rows with verdict fields")
    parser.add_argument("--response-key", default="response", metavar="KEY", help="field holding the response")
    parser.add_argument("--gold-key", default="answer", metavar="KEY", help="field holding the gold answer")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="verifier worker processes (default: one per core)")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="SEC",
                        help="deadline per row, seconds")
    parser.add_argument("--skip-bad", action="store_true", help="report and skip malformed rows instead of stopping")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    partial = args.output.with_name(args.output.name + ".partial")
    if same_file(args.input, args.output) or same_file(args.input, partial):
        parser.error(f"argument -o/--output: {args.output} is the input file; writing it would destroy the input")
    return args


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def valid_rows(
    path: Path, response_key: str, gold_key: str, *, skip_bad: bool = False, errors: list[JsonlError] | None = None
) -> Iterator[dict]:
    """Rows of `path` with a string response and a gold answer (a number is taken as its text).

    A malformed row -- not JSON, a key missing, a response that is not a string, a gold that is null or
    not a string/number -- raises `JsonlError` naming the file and line, or with `skip_bad` goes to
    `errors` and is skipped.
    """
    for line, row in read_jsonl_numbered(path, skip_bad=skip_bad, errors=errors):
        problem = _row_problem(row, response_key, gold_key)
        if problem is None:
            yield row
            continue
        error = JsonlError(path, line, problem)
        if not skip_bad:
            raise error
        if errors is not None:
            errors.append(error)


def _row_problem(row: dict, response_key: str, gold_key: str) -> str | None:
    for key, option in ((response_key, "--response-key"), (gold_key, "--gold-key")):
        if key not in row:
            keys = ", ".join(map(repr, row)) or "none"
            return f"missing key {key!r} (the row has {keys}; name the right one with {option} KEY)"
    response, gold = row[response_key], row[gold_key]
    if not isinstance(response, str):
        return f"{response_key!r} must be a string, got {type(response).__name__} {_short(response)}"
    if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
        return f"{gold_key!r} must be a string or a number, got {type(gold).__name__} {_short(gold)}"
    if isinstance(gold, float) and not math.isfinite(gold):
        return f"{gold_key!r} is not a finite number: {gold!r}"
    if row.get("truncated") is not None and not isinstance(row["truncated"], bool):  # else silently replaced
        return f"'truncated' must be true or false, got {_short(row['truncated'])}"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resume_point(partial: Path, rows: Iterator[dict], response_key: str, gold_key: str) -> int:
    """How many leading rows of `partial` can be kept: those written from the same input row (every
    field equal) whose judge key still matches (same response, gold answer, truncation and checker).
    A `timeout` or `error` verdict is never kept: it depends on the deadline and the machine, not only
    on the row. The rest of `partial` is cut off."""
    repair_tail(partial)
    keep, offset = 0, 0
    with open(partial, "rb") as handle:
        for (_, old), new in zip(read_jsonl_numbered(partial), rows):
            gold = gold_of(new, (gold_key,))
            expected = judge_key(new[response_key], gold, is_truncated(new, response_key))
            if (old.get("judge_key") != expected or old.get("verdict") in UNSETTLED_VERDICTS
                    or _input_fields(old) != _input_fields(new)):
                break
            keep += 1
            offset = _offset_after_line(handle, offset)
    with open(partial, "rb+") as handle:
        handle.truncate(offset)
    return keep


def _input_fields(row: dict) -> dict:
    return {key: value for key, value in row.items() if key not in VERDICT_FIELDS}


def _offset_after_line(handle, offset: int) -> int:
    """Byte offset just past the next non-blank line starting at `offset`."""
    handle.seek(offset)
    while True:
        line = handle.readline()
        if not line:
            return handle.tell()
        if line.strip():
            return handle.tell()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)  # whole lines: error messages stay greppable in logs
    if not args.input.exists():
        console.print(f"[red]error:[/] {args.input}: no such file")
        return 2
    partial = args.output.with_name(args.output.name + ".partial")
    total = count_lines(args.input)
    bad: list[JsonlError] = []

    def input_rows() -> Iterator[dict]:
        return valid_rows(args.input, args.response_key, args.gold_key, skip_bad=args.skip_bad, errors=bad)

    try:
        kept_lines = _count_rows(partial) if partial.exists() else 0
        done = resume_point(partial, input_rows(), args.response_key, args.gold_key) if partial.exists() else 0
        bad.clear()
        if done:
            console.print(f"resuming: {done} rows already judged in {partial}")
        if done < kept_lines:
            console.print(f"[yellow]note:[/] {kept_lines - done} rows of {partial} were judged from other "
                          f"input, gold or checker (from input row {done + 1} on): judging them again")
        counts: Counter[str] = Counter()
        truncated: Counter[bool] = Counter()  # truncated rows judged now, by correctness
        started = time.perf_counter()
        rows = input_rows()
        for _ in range(done):
            next(rows)
        todo = max(total - done, 0)
        with Verifier(workers=args.workers, timeout=args.timeout) as verifier, append_jsonl(partial) as write, \
                ProgressDisplay(console, transient=True) as progress:
            progress.update("judging", 0, todo)
            for row in judge_rows(rows, verifier.judge_many, response_key=args.response_key,
                                  gold_keys=(args.gold_key,)):
                write(row)
                counts[row["verdict"]] += 1
                truncated[row["verdict"] == "correct"] += row["truncated"]
                progress.update("judging", sum(counts.values()), todo)
    except JsonlError as exc:
        judged = count_lines(partial) if partial.exists() else 0
        if partial.exists() and not judged:
            partial.unlink()  # an empty resume file holds nothing worth keeping
        kept = (f"; the {judged} rows judged before it are kept in {partial}, the resume file: rerun after "
                f"fixing the line to go on from there (or delete it to start over)") if judged else ""
        console.print(f"[red]error:[/] {exc}  (use --skip-bad to skip malformed rows); nothing was written to "
                      f"{args.output}{kept}")
        return 2
    except KeyboardInterrupt:
        console.print(f"interrupted: rows judged so far are kept in {partial}; rerun the same command to resume")
        return 130
    judged = sum(counts.values())
    for error in bad:
        console.print(f"[yellow]skipped:[/] {escape(str(error))}")
    if bad and judged + done == 0:  # nothing but skipped rows: an empty output would pass for a result
        if partial.exists() and partial.stat().st_size == 0:
            partial.unlink()
        console.print(f"[red]error:[/] every row of {args.input} was skipped ({len(bad)} malformed); nothing "
                      f"was written to {args.output}")
        return 2
    os.replace(partial, args.output)
    elapsed = time.perf_counter() - started
    summary = ", ".join(f"{verdict} {counts[verdict]}" for verdict in VERDICTS)
    console.print(f"{judged} rows judged in {elapsed:.1f}s ({judged / max(elapsed, 1e-9):.1f} rows/s): {summary}"
                  + f"; truncated {sum(truncated.values())} ({truncated[True]} of them correct)"
                  + (f"; {len(bad)} malformed rows skipped" if bad else ""))
    console.print(f"wrote {args.output}")
    return 0


def _count_rows(path: Path) -> int:
    repair_tail(path)
    return sum(1 for _ in read_jsonl(path))


if __name__ == "__main__":
    sys.exit(main())
