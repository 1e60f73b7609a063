"""Build generation records (`tops_plugin.records.GenerationRecord`) from what a backend produced.

A record is its problem row (extra keys kept) plus the keys this stage owns: effort, sample, seed, model,
messages, response, finish_reason, tokens (Qwen2.5 tokens of the response), gen_tokens; API backends add
``usage``.

Every backend hands its raw outputs here so the record shape (and the Qwen2.5 token count that the
paper reports for every model) lives in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tops_plugin.generation.base import GenerationRequest
from tops_plugin.records import GenerationRecord
from tops_plugin.tokens import count_tokens

__all__ = ["RawOutput", "make_records", "record_key"]

# Keys this stage owns; anything else in the problem row is carried over unchanged.
_OWN_KEYS = ("effort", "sample", "seed", "model", "messages", "response", "finish_reason", "tokens", "gen_tokens")


@dataclass(frozen=True)
class RawOutput:
    """One response as a backend saw it, before it becomes a record."""

    request: GenerationRequest
    sample: int
    messages: list[dict]
    response: str
    finish_reason: str | None
    gen_tokens: int
    extra: dict = field(default_factory=dict)


def record_key(row: dict) -> tuple[str, str | None, int]:
    """The resume key of a generation record: (id, effort, sample). Ids compare as text."""
    return str(row.get("id")), row.get("effort"), int(row.get("sample", 0))


def make_records(outputs: Sequence[RawOutput], model: str, tokenizer=None) -> list[GenerationRecord]:
    """Turn raw outputs into records, counting Qwen2.5 tokens of all responses in one batch."""
    if not outputs:
        return []
    counts = count_tokens([out.response for out in outputs], tokenizer)
    records = []
    for out, tokens in zip(outputs, counts):
        row = {key: value for key, value in out.request.problem.items() if key not in _OWN_KEYS}
        row.update(
            effort=out.request.effort,
            sample=out.sample,
            seed=out.request.sampling.seed,
            model=model,
            messages=out.messages,
            response=out.response,
            finish_reason=_normalise_finish(out.finish_reason),
            tokens=int(tokens),
            gen_tokens=int(out.gen_tokens),
        )
        row.update(out.extra)
        records.append(row)
    return records


def _normalise_finish(reason: str | None) -> str:
    """Engines say "stop"/"length" (and APIs sometimes "eos", "max_tokens" or nothing)."""
    if reason in (None, "", "stop", "eos", "end_turn", "stop_sequence"):
        return "stop"
    if reason in ("length", "max_tokens"):
        return "length"
    return str(reason)
