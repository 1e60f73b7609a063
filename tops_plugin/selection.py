"""Thinking-optimal selection: from many judged responses per problem, choose what the model learns from.

Modes (DESIGN §1, steps 1, 4 and 6):

* ``shortest`` -- TOPS: the shortest correct response per problem; problems without one are dropped;
* ``random`` -- the paper's baseline: a random correct response, seeded and order-independent;
* ``iter-sft`` -- the shortest correct among the samples of the TOPS model;
* ``iter-dpo`` -- pairs (shortest correct, longest wrong) and, when some wrong response is shorter
  than the chosen one, (shortest correct, shortest wrong); never the same pair twice;
* ``seed`` -- the curated tag-model set (`tops_plugin.efforts.curate_seed`).

Rows stream through once; state is a few candidates per problem, so memory grows with the number of
problems, not responses, and the input need not be sorted. Ties break deterministically: fewest tokens
(most, for the longest wrong), then lowest sample index, then effort order, then input order.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

from tops_plugin.efforts import EFFORTS, SeedCurationConfig, curate_seed
from tops_plugin.jsonl import JsonlError, read_jsonl, read_jsonl_numbered
from tops_plugin.openrlhf import dpo_row, prompt_messages, sft_row
from tops_plugin.tokens import with_token_counts

__all__ = [
    "MODES",
    "Selection",
    "SelectionConfig",
    "SelectionStats",
    "fill_verdicts",
    "low_effort_seed_rows",
    "read_records",
    "select",
    "verdict_of",
]

MODES: tuple[str, ...] = ("shortest", "random", "iter-sft", "iter-dpo", "seed")
VERDICT_FIELDS = ("verdict", "correct")


@dataclass(frozen=True)
class SelectionConfig:
    """What to select and how.

    `tokenizer` recounts every response (a path or hub name); None keeps each row's `tokens` and
    counts only missing ones, in Qwen2.5 tokens. `rejected_verdicts`: verdicts that may be picked as a
    DPO rejected response (`timeout` and `error` rows have unknown labels; add them only on purpose).
    `group_keys`: row fields by which the effort of the selected responses is broken down.
    """

    mode: str = "shortest"
    seed: int = 0
    tokenizer: str | None = None
    rejected_verdicts: frozenset[str] = frozenset({"wrong"})
    min_gap: int = 300
    keep_effort_prompt: bool = False
    group_keys: tuple[str, ...] = ("benchmark", "source", "level")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        unknown = set(self.rejected_verdicts) - {"wrong", "no_answer", "timeout", "error"}
        if unknown:
            raise ValueError(f"rejected_verdicts: unknown verdict(s) {sorted(unknown)}")


@dataclass
class SelectionStats:
    """Per-mode figures: what went in, what came out, and which effort produced the selection."""

    mode: str
    rows_in: int = 0
    problems_in: int = 0
    problems_out: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    chosen_tokens: dict[str, float] = field(default_factory=dict)  # n, mean, median
    rejected_tokens: dict[str, float] = field(default_factory=dict)
    effort_selected: dict[str, int] = field(default_factory=dict)
    effort_by_group: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    seed: dict = field(default_factory=dict)  # seed mode: Table 1 / Table 7 figures

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Selection:
    rows: list[dict]  # OpenRLHF rows (SFT, or DPO for iter-dpo)
    stats: SelectionStats


def verdict_of(row: dict) -> str | None:
    """The row's verdict: its `verdict` field, else derived from a boolean `correct`; None if neither."""
    verdict = row.get("verdict")
    if verdict is not None:
        return str(verdict)
    correct = row.get("correct")
    if isinstance(correct, bool):
        return "correct" if correct else "wrong"
    return None


def _effort_rank(effort) -> int:
    return EFFORTS.index(effort) if effort in EFFORTS else len(EFFORTS)


class _Candidate:
    """A response still in the running for its problem: only what ranking and output need."""

    __slots__ = ("effort", "order", "response", "sample", "tokens")

    def __init__(self, row: dict, order: int):
        self.response = row["response"]
        self.tokens = int(row["tokens"])
        self.sample = int(row.get("sample", 0) or 0)
        self.effort = row.get("effort")
        self.order = order

    def base_key(self) -> tuple:
        return (self.sample, _effort_rank(self.effort), self.order)


class _Problem:
    """Per-problem state. The prompt and grouping fields are kept once, from the problem's first row
    (the prompt without its effort system prompt is the same for every response of a problem)."""

    __slots__ = ("best", "info", "longest_wrong", "shortest_wrong")

    def __init__(self, row: dict, group_keys: tuple[str, ...]):
        self.best = self.longest_wrong = self.shortest_wrong = None
        prompt = {"messages": row["messages"]} if row.get("messages") else {"problem": row.get("problem")}
        self.info = {**prompt, **{key: row[key] for key in group_keys if row.get(key) is not None}}


def select(rows: Iterable[dict], config: SelectionConfig = SelectionConfig()) -> Selection:
    """Select from generation records with verdicts (see the module doc); one pass over `rows`."""
    if config.mode == "seed":
        return _select_seed(rows, config)
    stats = SelectionStats(mode=config.mode)
    verdicts: Counter = Counter()
    problems: dict = {}
    pairs_wanted = config.mode == "iter-dpo"
    counted = with_token_counts(rows, tokenizer=config.tokenizer, recount=config.tokenizer is not None)
    for order, row in enumerate(counted):
        verdict = verdict_of(row)
        verdicts[verdict] += 1
        state = problems.get(row["id"])
        if state is None:
            state = problems[row["id"]] = _Problem(row, config.group_keys)
        if verdict == "correct":
            cand = _Candidate(row, order)
            if state.best is None or _better(cand, state.best, row["id"], config):
                state.best = cand
        elif pairs_wanted and verdict in config.rejected_verdicts:
            cand = _Candidate(row, order)
            if state.longest_wrong is None or _longer(cand, state.longest_wrong):
                state.longest_wrong = cand
            if state.shortest_wrong is None or _shorter(cand, state.shortest_wrong):
                state.shortest_wrong = cand
    stats.rows_in = sum(verdicts.values())
    stats.problems_in = len(problems)
    stats.verdicts = {str(k): v for k, v in sorted(verdicts.items(), key=lambda kv: str(kv[0]))}
    out = _emit_pairs(problems, config, stats) if pairs_wanted else _emit_sft(problems, config, stats)
    stats.rows_out = len(out)
    return Selection(out, stats)


def _random_key(cand: _Candidate, problem_id, seed: int) -> bytes:
    text = f"{seed}\x1f{problem_id}\x1f{cand.effort}\x1f{cand.sample}".encode()
    return hashlib.blake2b(text, digest_size=8).digest()


def _better(new: _Candidate, old: _Candidate, problem_id, config: SelectionConfig) -> bool:
    if config.mode == "random":
        return (_random_key(new, problem_id, config.seed), new.base_key()) < (
            _random_key(old, problem_id, config.seed), old.base_key())
    return _shorter(new, old)


def _shorter(new: _Candidate, old: _Candidate) -> bool:
    return (new.tokens, *new.base_key()) < (old.tokens, *old.base_key())


def _longer(new: _Candidate, old: _Candidate) -> bool:
    return (-new.tokens, *new.base_key()) < (-old.tokens, *old.base_key())


def _drain(problems: dict) -> Iterator[tuple]:
    """(id, state) in first-seen order, freeing each problem's state as it is emitted."""
    for problem_id in list(problems):
        yield problem_id, problems.pop(problem_id)


def _prompt(state: _Problem, cand: _Candidate, config: SelectionConfig) -> list[dict]:
    return prompt_messages(state.info, cand.effort if config.keep_effort_prompt else None)


def _emit_sft(problems: dict, config: SelectionConfig, stats: SelectionStats) -> list[dict]:
    out, lengths = [], []
    dropped = 0
    for problem_id, state in _drain(problems):
        best = state.best
        if best is None:
            dropped += 1
            continue
        out.append(sft_row(_prompt(state, best, config), best.response, id=problem_id, tokens=best.tokens,
                           effort=best.effort, sample=best.sample))
        lengths.append(best.tokens)
        _count_effort(stats, best.effort, state.info, config)
    stats.dropped = {"no_correct": dropped}
    stats.problems_out = len(out)
    stats.chosen_tokens = _summary(lengths)
    return out


def _emit_pairs(problems: dict, config: SelectionConfig, stats: SelectionStats) -> list[dict]:
    out, chosen_lengths, rejected_lengths = [], [], []
    pairs = Counter({"longest_wrong": 0, "shorter_wrong": 0})
    dropped = Counter({"no_correct": 0, "no_rejectable": 0})
    for problem_id, state in _drain(problems):
        chosen, longest, shortest = state.best, state.longest_wrong, state.shortest_wrong
        if chosen is None:
            dropped["no_correct"] += 1
            continue
        if longest is None:
            dropped["no_rejectable"] += 1
            continue
        rejected = [("longest_wrong", longest)]
        if shortest.tokens < chosen.tokens and shortest is not longest and shortest.response != longest.response:
            rejected.append(("shorter_wrong", shortest))
        prompt = _prompt(state, chosen, config)
        emitted = 0
        for pair, reject in rejected:
            if reject.response == chosen.response:
                continue  # same text judged both ways: no preference to learn
            out.append(dpo_row(prompt, chosen.response, reject.response, pair=pair, id=problem_id,
                               chosen_tokens=chosen.tokens, rejected_tokens=reject.tokens,
                               chosen_sample=chosen.sample, rejected_sample=reject.sample))
            pairs[pair] += 1
            rejected_lengths.append(reject.tokens)
            emitted += 1
        if emitted:
            chosen_lengths.append(chosen.tokens)
            _count_effort(stats, chosen.effort, state.info, config)
        else:
            dropped["identical_text"] += 1
    stats.dropped = dict(dropped)
    stats.pairs = dict(pairs)
    stats.problems_out = len(chosen_lengths)
    stats.chosen_tokens = _summary(chosen_lengths)
    stats.rejected_tokens = _summary(rejected_lengths)
    return out


def _select_seed(rows: Iterable[dict], config: SelectionConfig) -> Selection:
    curated = curate_seed(rows, SeedCurationConfig(min_gap=config.min_gap, tokenizer=config.tokenizer))
    seed = curated.stats
    stats = SelectionStats(mode="seed", rows_in=seed.rows_in, problems_in=seed.problems_in)
    stats.problems_out = seed.kept
    stats.rows_out = len(curated.rows)
    stats.dropped = dict(seed.dropped)
    stats.chosen_tokens = _summary([row["tokens"] for row in curated.rows])
    for row in curated.rows:
        _count_effort(stats, row.get("effort"), row, config)
    stats.seed = seed.to_dict()
    return Selection(curated.rows, stats)


def _count_effort(stats: SelectionStats, effort, info: dict, config: SelectionConfig) -> None:
    effort = str(effort)
    stats.effort_selected[effort] = stats.effort_selected.get(effort, 0) + 1
    for key in config.group_keys:
        if info.get(key) is None:
            continue
        groups = stats.effort_by_group.setdefault(key, {})
        counts = groups.setdefault(str(info[key]), {})
        counts[effort] = counts.get(effort, 0) + 1


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": statistics.fmean(values), "median": float(statistics.median(values))}


# --------------------------------------------------------------------------------------------------
# Reading and judging input records.
# --------------------------------------------------------------------------------------------------


def read_records(path: str | os.PathLike, *, need_verdict: bool = True) -> Iterator[dict]:
    """Stream generation records from `path`, checking `id`, `response` and (unless `need_verdict` is
    False) a verdict; a bad row raises `JsonlError` naming the file and line."""
    for line, row in read_jsonl_numbered(path, require=("id", "response")):
        if need_verdict and verdict_of(row) is None:
            raise JsonlError(path, line, "no verdict ('verdict' or boolean 'correct'): "
                             "judge the file first (python -m tops_plugin.check) or pass --judge")
        if not isinstance(row["response"], str):
            raise JsonlError(path, line, "'response' must be a string")
        if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
            raise JsonlError(path, line, f"'id' must be a string or integer, got {row['id']!r}")
        if not row.get("messages") and row.get("problem") is None:
            raise JsonlError(path, line, "neither 'messages' nor 'problem': no prompt to train on")
        yield row


def low_effort_seed_rows(path: str | os.PathLike) -> Iterator[dict]:
    """The curated seed rows (seed-mode output) re-assigned to low effort, without their effort prompt:
    the paper adds them to the TOPS selection (step 4). Marked `"origin": "seed"`."""
    for row in read_jsonl(path, require=("prompt", "response", "effort")):
        if row["effort"] == "low":
            yield {**row, "prompt": prompt_messages({"messages": row["prompt"]}), "origin": "seed"}


def fill_verdicts(
    rows: Iterable[dict], verifier, *, gold_keys: tuple[str, ...] = ("answer", "gold"), batch_size: int = 256
) -> Iterator[dict]:
    """Add verdict fields to rows lacking them, judged by `verifier.check_many`; order is kept.

    A row that lacks a verdict and a gold answer raises ValueError naming its id.
    """
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            yield from _judge_batch(batch, verifier, gold_keys)
            batch = []
    if batch:
        yield from _judge_batch(batch, verifier, gold_keys)


def _judge_batch(batch: list[dict], verifier, gold_keys: tuple[str, ...]) -> list[dict]:
    todo = [row for row in batch if verdict_of(row) is None]
    pairs = []
    for row in todo:
        gold = next((row[key] for key in gold_keys if row.get(key) is not None), None)
        if gold is None:
            raise ValueError(f"row {row.get('id')!r} has no verdict and no gold answer ({'/'.join(gold_keys)})")
        pairs.append((row["response"], str(gold)))
    for row, verdict in zip(todo, verifier.check_many(pairs)):
        row.update(verdict.fields())
    return batch
