"""Judging rows: the one path from a record to its verdict fields, used by every command.

`check`, `select --judge`, the recipe's judge stages, the evaluation harness and the analysis all call
`judge_rows`, so a response is judged the same way everywhere -- in particular a response cut at the
token limit is judged *as truncated* everywhere (no last-number guess from its middle), and every
verdict row says so in its `truncated` field.

Each row gains the verdict fields of `tops_plugin.records.VerdictFields` (beside whatever it already
holds): ``pred``, ``correct``, ``verdict``, ``answer_from``, ``truncated`` (cut before it finished, see
`is_truncated`) and ``judge_key`` (a digest of what decided the verdict: a resumed run keeps an earlier
verdict only while its key is unchanged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import math_verify

from tops_plugin.judging import answers
from tops_plugin.judging.answers import THINKING_TAGS, Verdict, judge

__all__ = [
    "JudgeMany",
    "UNSETTLED_VERDICTS",
    "VERDICT_FIELDS",
    "judge_in_process",
    "checker_version",
    "gold_of",
    "is_truncated",
    "judge_key",
    "judge_rows",
    "verdict_of",
]

#: The fields `judge_rows` adds to every row.
VERDICT_FIELDS: tuple[str, ...] = ("pred", "correct", "verdict", "answer_from", "truncated", "judge_key")

#: Verdicts that say how judging went, not what the answer is: a resumed run judges them again.
UNSETTLED_VERDICTS = frozenset({"timeout", "error"})

#: `finish_reason` values that mean the model stopped by itself (any case: Gemini says "STOP").
FINISHED_REASONS = frozenset({"stop", "eos", "end_turn", "stop_sequence"})

#: A batch judge: (response, gold) pairs or (response, gold, truncated) triples in, one `Verdict` each out,
#: in order (`tops_plugin.judging.verifier.Verifier.judge_many` and `judge_in_process` have this shape).
JudgeMany = Callable[[Iterable[tuple[str, str] | tuple[str, str, bool]]], Iterator[Verdict]]


def judge_in_process(items: Iterable[tuple[str, str] | tuple[str, str, bool]]) -> Iterator[Verdict]:
    """`JudgeMany` over in-process `answers.judge` (no hard deadline: for trusted or short text);
    takes (response, gold) or (response, gold, truncated), as a `Verifier` does."""
    for response, gold, *truncated in items:
        yield judge(response, gold, truncated=bool(truncated and truncated[0]))


def is_truncated(row: dict, response_key: str = "response") -> bool:
    """Whether a response was cut before it finished.

    Cut when any source says so: a ``truncated: true`` field (an earlier judging), a ``finish_reason``
    other than a normal stop (``"length"``: cut at the token limit; ``"max_tokens"``, ``"abort"``...), or
    an opened but never closed reasoning block (``<think>`` without ``</think>``, Sky-T1's
    ``<|begin_of_thought|>`` without its end: the text was cut mid-thought). No field can make a cut
    response finished.
    """
    if row.get("truncated") is True:
        return True
    reason = row.get("finish_reason")
    if reason not in (None, "") and str(reason).lower() not in FINISHED_REASONS:
        return True
    response = row.get(response_key)
    if not isinstance(response, str):
        return False
    return any(open_ in response and close not in response for open_, close in THINKING_TAGS)


def gold_of(row: dict, gold_keys: Sequence[str]) -> str | None:
    """The row's gold answer as text: the first of `gold_keys` that is present and not null."""
    for key in gold_keys:
        value = row.get(key)
        if value is not None:
            return str(value)
    return None


def verdict_of(row: dict) -> str | None:
    """The row's verdict: its `verdict` field, else derived from a boolean `correct`; None if neither."""
    verdict = row.get("verdict")
    if verdict is not None:
        return str(verdict)
    correct = row.get("correct")
    if isinstance(correct, bool):
        return "correct" if correct else "wrong"
    return None


@lru_cache(maxsize=1)
def checker_version() -> str:
    """A digest of the checker's code and the math-verify version: verdicts made by another checker
    are not reused."""
    digest = hashlib.sha256(Path(answers.__file__).read_bytes())
    digest.update(str(getattr(math_verify, "__version__", "")).encode())
    return digest.hexdigest()[:16]


def judge_key(response: str, gold: str, truncated: bool) -> str:
    """Digest of what decides a verdict: the response, the gold answer, truncation and the checker."""
    digest = hashlib.blake2b(digest_size=12)
    for part in (checker_version(), "1" if truncated else "0", gold, response):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def judge_rows(
    rows: Iterable[dict],
    judge_many: JudgeMany,
    *,
    response_key: str = "response",
    gold_keys: Sequence[str] = ("answer",),
    keep_verdicts: bool = False,
    batch_size: int = 512,
) -> Iterator[dict]:
    """Yield each row with its verdict fields (`tops_plugin.records.VerdictFields`), in input order, streaming.

    `judge_many` is a `Verifier`'s (hard deadline per item) or `judge_in_process`. With
    `keep_verdicts`, a row that already carries a verdict (`verdict`, or a boolean `correct`) keeps it
    and only gains a `truncated` field when it lacks one. A row to judge without a gold answer raises
    ValueError naming its id; rows are expected to be validated by their reader (a string response).
    Rows go to the checker `batch_size` at a time, so memory stays flat on any input size.
    """
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            yield from _judge_batch(batch, judge_many, response_key, gold_keys, keep_verdicts)
            batch = []
    if batch:
        yield from _judge_batch(batch, judge_many, response_key, gold_keys, keep_verdicts)


def _judge_batch(
    batch: list[dict], judge_many: JudgeMany, response_key: str, gold_keys: Sequence[str], keep_verdicts: bool
) -> list[dict]:
    todo: list[tuple[dict, str, bool]] = []
    for row in batch:
        truncated = is_truncated(row, response_key)
        if keep_verdicts and _has_verdict(row):
            row.setdefault("truncated", truncated)
            continue
        gold = gold_of(row, gold_keys)
        if gold is None:
            raise ValueError(f"row {row.get('id')!r} has no gold answer ({'/'.join(gold_keys)}) to judge against")
        todo.append((row, gold, truncated))
    verdicts = judge_many((row[response_key], gold, truncated) for row, gold, truncated in todo)
    for (row, gold, truncated), verdict in zip(todo, verdicts, strict=True):
        row.update(verdict.fields())
        row["truncated"] = truncated
        row["judge_key"] = judge_key(row[response_key], gold, truncated)
    return batch


def _has_verdict(row: dict) -> bool:
    return row.get("verdict") is not None or isinstance(row.get("correct"), bool)
