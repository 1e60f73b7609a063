"""Seed curation: the effort-tagged SFT set that teaches a base model the three reasoning styles."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from tops_plugin.judging.rows import verdict_of
from tops_plugin.prompts import EFFORT_PROMPTS, EFFORTS
from tops_plugin.selection.openrlhf import prompt_messages, sft_row
from tops_plugin.tokens import with_token_counts

# --------------------------------------------------------------------------------------------------
# Seed curation (the method's step 1): the tag-model SFT set.
# --------------------------------------------------------------------------------------------------

#: Length ranks of the three responses to one problem, shortest first (the paper's Table 7 columns).
RANKS: tuple[str, ...] = ("shortest", "middle", "longest")

SEED_DROP_REASONS: tuple[str, ...] = (
    "missing_effort", "not_all_correct", "not_usable", "gap_too_small", "over_max_len",
)

# What a held seed response needs; the rest of its row is freed as soon as it is read.
_SEED_KEEP = ("id", "messages", "problem", "effort", "response", "tokens", "curation_tokens", "sample",
              "verdict", "correct", "truncated", "finish_reason")


@dataclass(frozen=True)
class SeedCurationConfig:
    """How seed problems are kept: all three efforts correct, then both length gaps above `min_gap`.

    Lengths are ranked and gaps measured in `curation_tokenizer` tokens (a path or hub name: the model
    being trained, as in the paper); None uses a row's `curation_tokens` when present, else its Qwen2.5
    `tokens`. Reported means are always Qwen2.5 `tokens` (counted where missing).
    """

    min_gap: int = 300
    curation_tokenizer: str | None = None


@dataclass
class SeedStats:
    """The paper's Table 1 (problems kept, mean tokens per effort) and Table 7 (which prompt produced
    the shortest / middle / longest response)."""

    problems_in: int = 0
    rows_in: int = 0
    duplicates: int = 0  # extra samples of an (id, effort) beyond the first, ignored
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEED_DROP_REASONS, 0))
    excluded: dict[str, int] = field(default_factory=dict)  # correct responses not usable, by reason
    tokens_by_effort: dict[str, float] = field(default_factory=dict)  # mean, after re-sorting (kept)
    tokens_by_prompt: dict[str, float] = field(default_factory=dict)  # mean, by the prompt used (kept)
    rank_by_prompt_all_correct: dict[str, dict[str, int]] = field(default_factory=dict)
    rank_by_prompt_kept: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SeedCuration:
    rows: list[dict]  # OpenRLHF SFT rows, each with its (re-assigned) effort system prompt
    stats: SeedStats


def curate_seed(
    rows: Iterable[dict],
    config: SeedCurationConfig = SeedCurationConfig(),
    *,
    usable: Callable[[dict], str | None] | None = None,
    fits: Callable[[list[dict], str], bool] | None = None,
) -> SeedCuration:
    """Curate the tag-model set from generation records with verdicts, one response per effort.

    Per problem: keep it only if its low, medium and high responses are all correct; re-sort the three
    by token count (the teacher often ignores the prompt) and relabel them low < medium < high; keep it
    only if medium - low > min_gap and high - medium > min_gap. Each kept response becomes an SFT row
    whose system prompt is its *re-assigned* effort. Several samples of one (id, effort): the lowest
    `sample` index is used (ties: first seen). Input need not be sorted.

    `usable(row)` names why a correct response cannot be a training target (e.g. "truncated"), or
    returns None; such a problem is dropped as `not_usable`. `fits(prompt, response)` says whether a
    curated row, with its re-assigned effort prompt, fits the trainer's length limit; a problem with a
    row that does not is dropped as `over_max_len`.
    """
    stats = SeedStats()
    by_problem: dict = {}
    counted = with_token_counts(rows, recount=False)
    if config.curation_tokenizer is not None:
        counted = with_token_counts(counted, field="curation_tokens", tokenizer=config.curation_tokenizer)
    excluded: dict[str, int] = {}
    for row in counted:
        stats.rows_in += 1
        effort = row.get("effort")
        slots = by_problem.setdefault(row["id"], {})
        if effort not in EFFORT_PROMPTS:
            continue  # not an effort-conditioned response: cannot be a seed response
        sample = int(row.get("sample", 0) or 0)
        held = slots.get(effort)
        if held is not None:
            stats.duplicates += 1
            if held[0] <= sample:
                continue
        slots[effort] = (sample, {key: row[key] for key in _SEED_KEEP if key in row})
    stats.problems_in = len(by_problem)

    out: list[dict] = []
    sums = dict.fromkeys(EFFORTS, 0)
    prompt_sums = dict.fromkeys(EFFORTS, 0)
    rank_all = {effort: dict.fromkeys(RANKS, 0) for effort in EFFORTS}
    rank_kept = {effort: dict.fromkeys(RANKS, 0) for effort in EFFORTS}
    for problem_id, slots in by_problem.items():
        if len(slots) < len(EFFORTS):
            stats.dropped["missing_effort"] += 1
            continue
        if not all(verdict_of(slots[effort][1]) == "correct" for effort in EFFORTS):
            stats.dropped["not_all_correct"] += 1
            continue
        reasons = [usable(slots[effort][1]) for effort in EFFORTS] if usable is not None else []
        if any(reasons):
            for reason in filter(None, reasons):
                excluded[reason] = excluded.get(reason, 0) + 1
            stats.dropped["not_usable"] += 1
            continue
        # Shortest first; equal lengths keep the prompt order (they fail the gap test anyway).
        ordered = sorted(EFFORTS, key=lambda effort: (_curation_length(slots[effort][1]), EFFORTS.index(effort)))
        for rank, prompt_effort in zip(RANKS, ordered):
            rank_all[prompt_effort][rank] += 1
        lengths = [_curation_length(slots[effort][1]) for effort in ordered]
        if not (lengths[1] - lengths[0] > config.min_gap and lengths[2] - lengths[1] > config.min_gap):
            stats.dropped["gap_too_small"] += 1
            continue
        rows_out = []
        for new_effort, prompt_effort in zip(EFFORTS, ordered):
            row = slots[prompt_effort][1]
            extra = {"curation_tokens": row["curation_tokens"]} if "curation_tokens" in row else {}
            rows_out.append(sft_row(prompt_messages(row, new_effort), row["response"], id=problem_id,
                                    tokens=row["tokens"], effort=new_effort, prompt_effort=prompt_effort,
                                    sample=row.get("sample"), **extra))
        if fits is not None and not all(fits(r["prompt"], r["response"][0]["content"]) for r in rows_out):
            stats.dropped["over_max_len"] += 1
            continue
        stats.kept += 1
        out.extend(rows_out)
        for rank, new_effort, prompt_effort in zip(RANKS, EFFORTS, ordered):
            tokens = slots[prompt_effort][1]["tokens"]
            rank_kept[prompt_effort][rank] += 1
            sums[new_effort] += tokens
            prompt_sums[prompt_effort] += tokens
    if stats.kept:
        stats.tokens_by_effort = {effort: sums[effort] / stats.kept for effort in EFFORTS}
        stats.tokens_by_prompt = {effort: prompt_sums[effort] / stats.kept for effort in EFFORTS}
    stats.rank_by_prompt_all_correct = rank_all
    stats.rank_by_prompt_kept = rank_kept
    stats.excluded = excluded
    return SeedCuration(out, stats)


def _curation_length(row: dict) -> int:
    return row.get("curation_tokens", row["tokens"])
