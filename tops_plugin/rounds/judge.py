"""Count reasoning rounds and erroneous rounds with a language model, as the paper did with GPT-4o.

The deterministic splitter (`tops_plugin.rounds.splitter`) only sees rounds that end in a readable answer and only
judges that answer; the paper's count also marks rounds with erroneous *steps*. This module asks a model
for both counts under the paper's definition and parses its reply strictly: anything but one JSON object
with two consistent non-negative integers is recorded as *unjudged* with the reason, never guessed at.

Replies are cached on disk in an append-only JSONL file keyed by a hash of (model, prompt), so a re-run
(or a run killed half-way) asks only what it has not asked before. Failed calls are not cached.

The model is reached through a ``complete(messages) -> str`` callable, so tests and other clients can
stand in for the default `openai_complete` (the ``openai`` package's client, any compatible endpoint).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tops_plugin.jsonl import append_jsonl, read_jsonl

__all__ = [
    "JudgeItem",
    "JudgeResult",
    "RoundJudge",
    "judge_messages",
    "cache_key",
    "openai_complete",
    "parse_reply",
]

Complete = Callable[[list[dict]], str]

SYSTEM_PROMPT = (
    "You analyse step-by-step solutions to math problems.\n"
    "A reasoning round is a complete reasoning or verification pass that reaches an answer (intermediate or "
    "final). A new round begins when the solution reflects on, re-checks, or tries again after reaching an "
    "answer (for example after 'wait', 'alternatively', 'let me verify'). Reflection that reaches no answer "
    "is not a round of its own.\n"
    "An erroneous round is a round that contains an erroneous step or reaches a wrong answer.\n"
    "Count the rounds of the solution and the erroneous rounds among them. Reply with one JSON object and "
    'nothing else: {"rounds": <integer>, "erroneous_rounds": <integer>}'
)

USER_TEMPLATE = "Problem:\n{problem}\n\nReference answer: {gold}\n\nSolution to analyse:\n{response}"


@dataclass(frozen=True)
class JudgeItem:
    """What the judge is asked about: one response to one problem."""

    problem: str
    response: str
    gold: str


@dataclass(frozen=True)
class JudgeResult:
    """A judgement: counts when ``judged``, else ``reason`` says why not (the raw reply is kept)."""

    judged: bool
    rounds: int | None = None
    erroneous: int | None = None
    reason: str | None = None
    reply: str | None = None
    cached: bool = False

    def fields(self) -> dict:
        return {
            "judged": self.judged,
            "rounds": self.rounds,
            "erroneous_rounds": self.erroneous,
            "reason": self.reason,
        }


def judge_messages(item: JudgeItem) -> list[dict]:
    """The chat messages sent to the judge for one response."""
    user = USER_TEMPLATE.format(problem=item.problem.strip(), gold=str(item.gold).strip(), response=item.response)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def cache_key(model: str, messages: list[dict]) -> str:
    """sha256 of (model, prompt): a changed prompt or model is a new question."""
    payload = json.dumps({"model": model, "messages": messages}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


_FENCE_RE = re.compile(r"\A```(?:json)?[ \t]*\n(?P<body>.*)\n```\Z", re.DOTALL)


def parse_reply(reply: str | None) -> JudgeResult:
    """Strictly read ``{"rounds": int, "erroneous_rounds": int}``; anything else is unjudged.

    One Markdown code fence around the object is tolerated; prose, several objects, floats, booleans,
    negatives, or more erroneous rounds than rounds are not.
    """
    if not isinstance(reply, str) or not reply.strip():
        return JudgeResult(False, reason="empty reply", reply=reply)
    text = reply.strip()
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group("body").strip()
    try:
        data = json.loads(text)
    except ValueError as exc:
        return JudgeResult(False, reason=f"not JSON: {exc.msg}", reply=reply)
    if not isinstance(data, dict):
        return JudgeResult(False, reason=f"expected a JSON object, got {type(data).__name__}", reply=reply)
    values = []
    for key in ("rounds", "erroneous_rounds"):
        value = data.get(key)
        if type(value) is not int:  # bool is an int subclass; 2.0 is not a count
            return JudgeResult(False, reason=f"{key!r} is not an integer: {value!r}", reply=reply)
        if value < 0:
            return JudgeResult(False, reason=f"{key!r} is negative: {value}", reply=reply)
        values.append(value)
    rounds, erroneous = values
    if erroneous > rounds:
        return JudgeResult(False, reason=f"erroneous_rounds {erroneous} > rounds {rounds}", reply=reply)
    return JudgeResult(True, rounds, erroneous, reply=reply)


def openai_complete(
    model: str,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    temperature: float = 0.0,
    max_tokens: int = 256,
    timeout: float = 120.0,
) -> Complete:
    """A `complete` callable over an OpenAI-compatible chat endpoint (key read from `api_key_env`)."""
    from openai import OpenAI  # optional dependency: only needed when a model judges

    client = OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY", timeout=timeout)

    def complete(messages: list[dict]) -> str:
        reply = client.chat.completions.create(
            model=model, messages=messages, temperature=temperature, max_tokens=max_tokens
        )
        return reply.choices[0].message.content or ""

    return complete


class RoundJudge:
    """Judge responses with `complete`, through an optional on-disk cache of replies."""

    def __init__(self, complete: Complete, model: str, cache_path: str | os.PathLike | None = None):
        self.complete, self.model = complete, model
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        if self.cache_path is not None and self.cache_path.exists():
            # A torn last line (killed writer) is skipped here and cut by append_jsonl before writing.
            for row in read_jsonl(self.cache_path, skip_bad=True):
                if isinstance(row.get("key"), str) and isinstance(row.get("reply"), str):
                    self._cache[row["key"]] = row["reply"]

    def judge(self, item: JudgeItem) -> JudgeResult:
        """One judgement; a failed call is unjudged (and not cached), never raised."""
        messages = judge_messages(item)
        key = cache_key(self.model, messages)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            result = parse_reply(cached)
            return JudgeResult(result.judged, result.rounds, result.erroneous, result.reason, cached, cached=True)
        try:
            reply = self.complete(messages)
        except Exception as exc:  # network, quota, server errors: record and move on
            return JudgeResult(False, reason=f"call failed: {type(exc).__name__}: {exc}"[:300])
        if not isinstance(reply, str):
            return JudgeResult(False, reason=f"reply is {type(reply).__name__}, not text")
        self._remember(key, reply)
        return parse_reply(reply)

    def judge_many(self, items: Iterable[JudgeItem], workers: int = 1) -> Iterator[JudgeResult]:
        """Judgements in input order; `workers` > 1 sends that many requests at once."""
        if workers <= 1:
            yield from map(self.judge, items)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(self.judge, items)

    def _remember(self, key: str, reply: str) -> None:
        with self._lock:
            self._cache[key] = reply
            if self.cache_path is not None:
                with append_jsonl(self.cache_path) as write:
                    write({"key": key, "model": self.model, "reply": reply})

