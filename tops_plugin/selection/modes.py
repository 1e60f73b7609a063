"""Thinking-optimal selection: from many judged responses per problem, choose what the model learns from.

Modes (the method's steps 1, 4 and 6):

* ``shortest`` -- TOPS: the shortest correct response per problem; problems without one are dropped;
* ``random`` -- the paper's baseline: a random correct response, seeded and order-independent;
* ``iter-sft`` -- the shortest correct among the samples of the TOPS model;
* ``iter-dpo`` -- pairs (shortest correct, longest wrong) and, when some wrong response is shorter
  than the chosen one, (shortest correct, shortest wrong); never the same pair twice;
* ``seed`` -- the curated tag-model set (`tops_plugin.selection.seeds.curate_seed`).

Rows stream through once; state is a few candidates per problem, so memory grows with the number of
problems, not responses, and the input need not be sorted. Ties break deterministically: fewest tokens
(most, for the longest wrong), then lowest sample index, then effort order, then input order.

What may become a training target:

* a *truncated* response (cut before it finished: `tops_plugin.judging.rows.is_truncated`) is never an SFT
  response, a seed response or a DPO chosen one, whatever its verdict; it may be a DPO rejected one
  only when its verdict is in `rejected_verdicts`;
* with a length limit (`SelectionConfig.max_len`), a candidate that OpenRLHF would cut or drop
  (`tops_plugin.selection.openrlhf.TrainLength`) is excluded *before* choosing, so the shortest correct response
  that fits is chosen and a pair whose rejected response does not fit is not emitted.

Every exclusion is counted in `SelectionStats.excluded` (and, for problems left without a target, in
`dropped`).
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

from tops_plugin.jsonl import JsonlError, loads, read_jsonl_numbered
from tops_plugin.judging.answers import VERDICTS
from tops_plugin.judging.rows import is_truncated, verdict_of
from tops_plugin.records import GenerationRecord
from tops_plugin.selection.openrlhf import TrainLength, dpo_row, effort_prompt_problem, prompt_messages, sft_row
from tops_plugin.selection.seeds import EFFORTS, SeedCurationConfig, curate_seed
from tops_plugin.tokens import with_token_counts

__all__ = [
    "GOLD_KEYS",
    "MODES",
    "Selection",
    "SelectionConfig",
    "SelectionStats",
    "add_seed_rows",
    "low_effort_seed_rows",
    "read_records",
    "select",
]

MODES: tuple[str, ...] = ("shortest", "random", "iter-sft", "iter-dpo", "seed")
#: Where a record to judge keeps its gold answer, first present wins (generation records: `answer`).
GOLD_KEYS: tuple[str, ...] = ("answer", "gold")
VERDICT_FIELDS = ("verdict", "correct")


@dataclass(frozen=True)
class SelectionConfig:
    """What to select and how.

    Two tokenizers, two jobs. `curation_tokenizer` (the model being trained: a path or hub name) ranks
    responses and measures the seed gaps; None ranks by Qwen2.5 tokens. The reported figures (row
    `tokens`, statistics) are always Qwen2.5 tokens: each row's `tokens`, counted where missing, or
    recounted for every row with `recount`. `rejected_verdicts`: verdicts that may be picked as a DPO
    rejected response (`timeout` and `error` rows have unknown labels; add them only on purpose).
    `max_len`: OpenRLHF's `--data.max_len` of the training run; candidates that would not fit whole,
    measured with `chat_tokenizer` (the trained model's tokenizer and chat template; None: a Qwen2.5
    stand-in, named in the statistics), are excluded. `group_keys`: row fields by which the effort of
    the selected responses is broken down.
    """

    mode: str = "shortest"
    seed: int = 0
    curation_tokenizer: str | None = None
    recount: bool = False
    rejected_verdicts: frozenset[str] = frozenset({"wrong"})
    min_gap: int = 300
    keep_effort_prompt: bool = False
    max_len: int | None = None
    chat_tokenizer: str | None = None
    group_keys: tuple[str, ...] = ("benchmark", "source", "level")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if self.max_len is not None and (isinstance(self.max_len, bool) or self.max_len < 3):
            raise ValueError(f"max_len must be an integer >= 3, got {self.max_len!r}")
        if self.chat_tokenizer is not None and self.max_len is None:
            raise ValueError("a chat tokenizer measures rows against max_len: give max_len too")
        if self.mode == "seed" and self.keep_effort_prompt:
            raise ValueError("seed mode always writes the re-assigned effort prompt: keep_effort_prompt does not apply")
        if not self.rejected_verdicts:
            raise ValueError("rejected_verdicts names no verdict: no response could be a rejected one")
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
    excluded: dict[str, int] = field(default_factory=dict)  # candidates left out, by reason and role
    # truncated rows in, by verdict, and how many of them could be a DPO rejected response
    max_len: int | None = None  # the length limit applied, and the tokenizer that measured it
    length_tokenizer: str | None = None
    truncated: dict[str, int] = field(default_factory=dict)
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


def _effort_rank(effort) -> int:
    return EFFORTS.index(effort) if effort in EFFORTS else len(EFFORTS)


class _Candidate:
    """A response still in the running for its problem: only what ranking and output need."""

    __slots__ = ("effort", "length", "order", "response", "sample", "tokens")

    def __init__(self, row: dict, order: int):
        self.response = row["response"]
        self.tokens = row["tokens"]  # Qwen2.5: reported
        self.length = row.get("curation_tokens", self.tokens)  # the curation tokenizer's: ranked
        self.sample = row.get("sample") or 0
        self.effort = row.get("effort")
        self.order = order

    def base_key(self) -> tuple:
        return (self.sample, _effort_rank(self.effort), self.order)


_REJECTED_OVER_MAX_LEN = "rejected_over_max_len"  # a wrong response left out: not a reason to lack a correct one


class _Problem:
    """Per-problem state. The prompt and grouping fields are kept once, from the problem's first row
    (the prompt without its effort system prompt is the same for every response of a problem)."""

    __slots__ = ("best", "info", "longest_wrong", "lost", "shortest_wrong")

    def __init__(self, row: dict, group_keys: tuple[str, ...]):
        self.best = self.longest_wrong = self.shortest_wrong = None
        self.lost: set[str] = set()  # why correct candidates were excluded (and _REJECTED_OVER_MAX_LEN)
        prompt = {"messages": row["messages"], "effort": row.get("effort")} if row.get("messages") else {
            "problem": row.get("problem")}
        self.info = {**prompt, **{key: row[key] for key in group_keys if row.get(key) is not None}}


def select(rows: Iterable[dict], config: SelectionConfig = SelectionConfig()) -> Selection:
    """Select from generation records with verdicts (see the module doc); one pass over `rows`."""
    limit = TrainLength(config.max_len, config.chat_tokenizer) if config.max_len is not None else None
    counted = count_lengths(rows, config)
    if config.mode == "seed":
        selection = _select_seed(counted, config, limit)
    else:
        selection = _select_responses(counted, config, limit)
    if limit is not None:
        selection.stats.max_len, selection.stats.length_tokenizer = limit.max_len, limit.name
    return selection


def _select_responses(counted: Iterable[dict], config: SelectionConfig, limit: TrainLength | None) -> Selection:
    stats = SelectionStats(mode=config.mode)
    verdicts: Counter = Counter()
    excluded: Counter = Counter()
    truncated: Counter = Counter()
    problems: dict = {}
    pairs_wanted = config.mode == "iter-dpo"
    for order, row in enumerate(counted):
        verdict = verdict_of(row)
        verdicts[verdict] += 1
        state = problems.get(row["id"])
        if state is None:
            state = problems[row["id"]] = _Problem(row, config.group_keys)
        cut = is_truncated(row)
        if cut:
            truncated[str(verdict)] += 1
        rejectable = pairs_wanted and verdict in config.rejected_verdicts
        if verdict != "correct" and not rejectable:
            continue
        if verdict == "correct" and cut:
            excluded["truncated_correct"] += 1
            state.lost.add("truncated")
            continue
        role = "correct" if verdict == "correct" else "rejected"
        if limit is not None and not limit.fits(_prompt(state, row.get("effort"), config), row["response"]):
            excluded[f"over_max_len_{role}"] += 1
            state.lost.add("over_max_len" if role == "correct" else _REJECTED_OVER_MAX_LEN)
            continue
        cand = _Candidate(row, order)
        if verdict == "correct":
            if state.best is None or _better(cand, state.best, row["id"], config):
                state.best = cand
        else:
            if cut:
                truncated["eligible_as_rejected"] += 1
            if state.longest_wrong is None or _longer(cand, state.longest_wrong):
                state.longest_wrong = cand
            if state.shortest_wrong is None or _shorter(cand, state.shortest_wrong):
                state.shortest_wrong = cand
    stats.rows_in = sum(verdicts.values())
    stats.problems_in = len(problems)
    stats.verdicts = {str(k): v for k, v in sorted(verdicts.items(), key=lambda kv: str(kv[0]))}
    stats.excluded = dict(sorted(excluded.items()))
    stats.truncated = dict(sorted(truncated.items()))
    out = _emit_pairs(problems, config, stats, limit) if pairs_wanted else _emit_sft(problems, config, stats)
    stats.rows_out = len(out)
    return Selection(out, stats)


def count_lengths(rows: Iterable[dict], config: SelectionConfig) -> Iterator[dict]:
    """Rows with `tokens` in Qwen2.5 tokens (counted where missing, or all with `recount`) and, when a
    curation tokenizer is set, `curation_tokens` in its tokens."""
    counted = with_token_counts(rows, recount=config.recount)
    if config.curation_tokenizer is not None:
        counted = with_token_counts(counted, field="curation_tokens", tokenizer=config.curation_tokenizer)
    return counted


def _random_key(cand: _Candidate, problem_id, seed: int) -> bytes:
    text = f"{seed}\x1f{problem_id}\x1f{cand.effort}\x1f{cand.sample}".encode()
    return hashlib.blake2b(text, digest_size=8).digest()


def _better(new: _Candidate, old: _Candidate, problem_id, config: SelectionConfig) -> bool:
    if config.mode == "random":
        return (_random_key(new, problem_id, config.seed), new.base_key()) < (
            _random_key(old, problem_id, config.seed), old.base_key())
    return _shorter(new, old)


def _shorter(new: _Candidate, old: _Candidate) -> bool:
    return (new.length, *new.base_key()) < (old.length, *old.base_key())


def _longer(new: _Candidate, old: _Candidate) -> bool:
    return (-new.length, *new.base_key()) < (-old.length, *old.base_key())


def _drain(problems: dict) -> Iterator[tuple]:
    """(id, state) in first-seen order, freeing each problem's state as it is emitted."""
    for problem_id in list(problems):
        yield problem_id, problems.pop(problem_id)


def _prompt(state: _Problem, effort: str | None, config: SelectionConfig) -> list[dict]:
    return prompt_messages(state.info, effort if config.keep_effort_prompt else None)


def _emit_sft(problems: dict, config: SelectionConfig, stats: SelectionStats) -> list[dict]:
    out, lengths = [], []
    dropped = Counter({"no_correct": 0})
    for problem_id, state in _drain(problems):
        best = state.best
        if best is None:
            dropped[_drop_reason(state)] += 1
            continue
        out.append(sft_row(_prompt(state, best.effort, config), best.response, id=problem_id, tokens=best.tokens,
                           effort=best.effort, sample=best.sample))
        lengths.append(best.tokens)
        _count_effort(stats, best.effort, state.info, config)
    stats.dropped = dict(dropped)
    stats.problems_out = len(out)
    stats.chosen_tokens = _summary(lengths)
    return out


def _emit_pairs(
    problems: dict, config: SelectionConfig, stats: SelectionStats, limit: TrainLength | None
) -> list[dict]:
    """The DPO pairs. A rejected response was measured under its own prompt; the pair takes the chosen
    one's, which differs only with `keep_effort_prompt` and another effort: then it is measured again."""
    out, chosen_lengths, rejected_lengths = [], [], []
    excluded = Counter(stats.excluded)
    pairs = Counter({"longest_wrong": 0, "shorter_wrong": 0})
    dropped = Counter({"no_correct": 0, "no_rejectable": 0})
    for problem_id, state in _drain(problems):
        chosen, longest, shortest = state.best, state.longest_wrong, state.shortest_wrong
        if chosen is None:
            dropped[_drop_reason(state)] += 1
            continue
        if longest is None:
            dropped["no_rejectable" + ("_that_fits" if _REJECTED_OVER_MAX_LEN in state.lost else "")] += 1
            continue
        rejected = [("longest_wrong", longest)]
        if shortest.length < chosen.length and shortest is not longest and shortest.response != longest.response:
            rejected.append(("shorter_wrong", shortest))
        prompt = _prompt(state, chosen.effort, config)
        emitted = 0
        over = 0
        for pair, reject in rejected:
            if reject.response == chosen.response:
                continue  # same text judged both ways: no preference to learn
            if (limit is not None and config.keep_effort_prompt and reject.effort != chosen.effort
                    and not limit.fits(prompt, reject.response)):
                excluded["over_max_len_rejected"] += 1
                over += 1
                continue
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
            dropped["no_rejectable_that_fits" if over else "identical_text"] += 1
    stats.dropped = dict(dropped)
    stats.excluded = dict(sorted(excluded.items()))
    stats.pairs = dict(pairs)
    stats.problems_out = len(chosen_lengths)
    stats.chosen_tokens = _summary(chosen_lengths)
    stats.rejected_tokens = _summary(rejected_lengths)
    return out


def _drop_reason(state: _Problem) -> str:
    """Why a problem has no target: no correct response at all, or only ones that were excluded."""
    lost = sorted(state.lost - {_REJECTED_OVER_MAX_LEN})
    if not lost:
        return "no_correct"
    return "only_" + "_or_".join(lost) + "_correct"


def _select_seed(rows: Iterable[dict], config: SelectionConfig, limit: TrainLength | None) -> Selection:
    curated = curate_seed(rows, SeedCurationConfig(min_gap=config.min_gap),
                          usable=lambda row: "truncated" if is_truncated(row) else None,
                          fits=None if limit is None else limit.fits)
    seed = curated.stats
    stats = SelectionStats(mode="seed", rows_in=seed.rows_in, problems_in=seed.problems_in)
    stats.problems_out = seed.kept
    stats.rows_out = len(curated.rows)
    stats.dropped = dict(seed.dropped)
    stats.excluded = dict(seed.excluded)
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


def read_records(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    need_verdict: bool = True,
    check_tokens: bool = True,
    skip_bad: bool = False,
    errors: list[JsonlError] | None = None,
) -> Iterator[GenerationRecord]:
    """Stream generation records (`tops_plugin.records`) from one file or several, refusing what selection
    must not trust.

    A bad row raises `JsonlError` naming its file and line -- or, with `skip_bad`, is appended to
    `errors` and skipped. Bad: not a JSON object; no `id` (string or integer) or `response` (string);
    a `verdict` that is not one of `VERDICTS` or contradicts a boolean `correct`; a `truncated` that is
    not a boolean; no verdict (with `need_verdict` False, the rows are to be judged: no gold answer, or a
    gold that is neither a string nor a finite number, in `GOLD_KEYS`); `tokens` present but not a non-negative integer
    (unless `check_tokens` is False, when every row is recounted); `effort` not low/medium/high/null;
    `sample` not a non-negative integer; a system prompt that contradicts `effort`; no prompt
    (`messages` or `problem`); the same (id, effort, sample) as an earlier row (both lines named).
    """
    sources = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    seen: set[int] = set()  # hashes of (id, effort, sample): memory per row is one small int
    for path in sources:
        for line, row in read_jsonl_numbered(path, require=("id", "response"), skip_bad=skip_bad, errors=errors):
            problem = _record_problem(row, need_verdict, check_tokens)
            if problem is None:
                key = _record_key(row)
                first = _first_line_of(sources, key, (path, line)) if hash(key) in seen else None
                if first is None:  # new, or a hash collision with another key
                    seen.add(hash(key))
                    yield row
                    continue
                problem = (f"duplicate of {first[0]}:{first[1]}: the same (id, effort, sample) = "
                           f"({row['id']!r}, {row.get('effort')!r}, {row.get('sample') or 0})")
            error = JsonlError(path, line, problem)
            if not skip_bad:
                raise error
            if errors is not None:
                errors.append(error)


def _record_key(row: dict) -> tuple:
    return (row["id"], row.get("effort"), row.get("sample") or 0)


def _first_line_of(sources: list, key: tuple, before: tuple) -> tuple[str, int] | None:
    """(file, line) of the first record with `key`, searched up to `before` (read again only when a
    record's key hash was seen already); None when only `before` itself has it."""
    for path in sources:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if (path, number) == before:
                    return None
                try:
                    row = loads(raw)
                    if isinstance(row, dict) and "id" in row and _record_key(row) == key:
                        return str(path), number
                except ValueError:
                    continue
    return None


def _record_problem(row: dict, need_verdict: bool, check_tokens: bool) -> str | None:
    """Why a generation record cannot be selected from, or None."""
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        return f"'id' must be a string or integer, got {_short(row['id'])}"
    if not isinstance(row["response"], str):
        return f"'response' must be a string, got {type(row['response']).__name__}"
    verdict, correct = row.get("verdict"), row.get("correct")
    if verdict is not None and verdict not in VERDICTS:
        return f"unknown verdict {_short(verdict)} (expected {', '.join(VERDICTS)})"
    if verdict is not None and isinstance(correct, bool) and correct != (verdict == "correct"):
        return f"'verdict' {verdict!r} contradicts 'correct' {str(correct).lower()}"
    if row.get("truncated") is not None and not isinstance(row["truncated"], bool):
        return f"'truncated' must be true or false, got {_short(row['truncated'])}"
    if verdict_of(row) is None:
        if need_verdict:
            return ("no verdict ('verdict' or boolean 'correct'): judge the file first (tops-check) "
                    "or pass --judge")
        gold = next((row[key] for key in GOLD_KEYS if row.get(key) is not None), None)
        if gold is None:
            return f"no gold answer ({' or '.join(map(repr, GOLD_KEYS))}) to judge against"
        if isinstance(gold, bool) or not isinstance(gold, (str, int, float)) or (
                isinstance(gold, float) and not math.isfinite(gold)):
            return f"the gold answer must be a string or a finite number, got {_short(gold)}"
    tokens = row.get("tokens")
    if check_tokens and tokens is not None and (type(tokens) is not int or tokens < 0):
        return f"'tokens' must be a non-negative integer, got {_short(tokens)} (or recount with --recount)"
    if row.get("effort") is not None and row["effort"] not in EFFORTS:
        return f"unknown effort {_short(row['effort'])} (expected {', '.join(EFFORTS)} or null)"
    sample = row.get("sample")
    if sample is not None and (type(sample) is not int or sample < 0):
        return f"'sample' must be a non-negative integer, got {_short(sample)}"
    messages = row.get("messages")
    if messages is not None and not (isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages)):
        return "'messages' must be a list of {role, content} string pairs"
    if messages and not any(m["role"] == "user" for m in messages):
        return "'messages' has no user message: no prompt to train on"
    if not messages and row.get("problem") is None:
        return "neither 'messages' nor 'problem': no prompt to train on"
    if not messages and not isinstance(row["problem"], str):
        return f"'problem' must be a string, got {_short(row['problem'])}"
    return effort_prompt_problem(row)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def low_effort_seed_rows(path: str | os.PathLike) -> Iterator[dict]:
    """The curated seed rows (seed-mode output) re-assigned to low effort, without their effort prompt:
    the paper adds them to the TOPS selection (step 4). Marked `"origin": "seed"`. A row that is not a
    seed-mode SFT row (message-list prompt, one assistant message as response, an effort) raises
    `JsonlError` naming its line."""
    for line, row in read_jsonl_numbered(path, require=("prompt", "response", "effort")):
        response = row["response"]
        if not (isinstance(row["prompt"], list) and isinstance(response, list) and len(response) == 1
                and isinstance(response[0], dict) and isinstance(response[0].get("content"), str)):
            raise JsonlError(path, line, "not a seed-mode SFT row (a message-list 'prompt' and a one-message "
                                         "'response')")
        if row["effort"] == "low":
            try:
                prompt = prompt_messages({"messages": row["prompt"], "effort": "low"})
            except (KeyError, TypeError, ValueError) as exc:
                raise JsonlError(path, line, f"bad seed prompt: {exc}") from None
            yield {**row, "prompt": prompt, "origin": "seed"}


def add_seed_rows(selection: Selection, path: str | os.PathLike, config: SelectionConfig) -> Selection:
    """`selection` with the low-effort rows of a curated seed file appended (`low_effort_seed_rows`).

    The length limit holds for these rows too: with `config.max_len`, a seed row that OpenRLHF would cut
    (the seed file may have been curated under another limit) is left out and counted as
    `excluded["over_max_len_seed"]`."""
    limit = TrainLength(config.max_len, config.chat_tokenizer) if config.max_len is not None else None
    added, over = [], 0
    for row in low_effort_seed_rows(path):
        if limit is not None and not limit.fits(row["prompt"], row["response"][0]["content"]):
            over += 1
            continue
        added.append(row)
    stats = selection.stats
    stats.seed = {**stats.seed, "low_effort_rows_added": len(added)}
    if over:
        stats.excluded = {**stats.excluded, "over_max_len_seed": over}
    stats.rows_out += len(added)
    return Selection(selection.rows + added, stats)
