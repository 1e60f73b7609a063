"""Scores of one benchmark x effort, as pure functions over judged response rows.

A row here is a judged sample record (or any dict) with at least `id`, `sample`, `correct`, `verdict`,
`tokens`; optional `finish_reason`, `level`, `usage`. Conventions, chosen once for every model:

* accuracy over seeds: sample index i (seed S+i) gives one accuracy over the problems; the run reports the
  mean of those per-seed accuracies and their **population** standard deviation (ddof=0, so one seed or
  greedy decoding gives 0.0, not undefined);
* pass@k: the unbiased estimator of Chen et al. (2021), averaged over problems, for k up to the fewest
  samples any problem has;
* coverage: a problem without any response is *missing*, not wrong; every figure covers the problems that
  have responses, and `n_problems_missing` says how many did not (reports print it beside the accuracy);
* uncertainty of a proportion (accuracy over a handful of responses): the Wilson score interval, which
  stays inside [0, 1] and is sane for 0 of 3 or 3 of 3, unlike the normal approximation;
* tokens are the rows' `tokens` (Qwen2.5 tokens of the visible response); the o1 estimate adds the hidden
  reasoning tokens of API models from their `usage` (the paper's n_s * n_r / (n_c - n_r)).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from tops_plugin.judging.rows import is_truncated
from tops_plugin.tokens import o1_hidden_tokens

__all__ = [
    "VERDICTS",
    "accuracy_over_samples",
    "by_level",
    "default_ks",
    "level_name",
    "level_sort_key",
    "mean_or_none",
    "metric_row",
    "mean_pass_at_k",
    "o1_estimate",
    "pass_at_k",
    "summarize",
    "token_stats",
    "usage_tokens",
    "verdict_counts",
    "wilson_interval",
]

VERDICTS: tuple[str, ...] = ("correct", "wrong", "no_answer", "timeout", "error")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) is correct: 1 - C(n-c,k)/C(n,k).

    Computed as a running product, which stays exact enough for large n where the binomials overflow.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    miss = 1.0
    for total in range(n - c + 1, n + 1):
        miss *= 1.0 - k / total
    return 1.0 - miss


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (samples, correct)."""
    if not counts:
        raise ValueError("pass@k over no problems")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion `successes / n`; None when n is 0."""
    if not 0 <= successes <= n:
        raise ValueError(f"Wilson interval needs 0 <= successes <= n (successes={successes}, n={n})")
    if n == 0:
        return None
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, center - half)  # exact ends, not 0.9999999999999999
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself: the k values reported when every problem has n samples."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    if n >= 1 and ks[-1] != n:
        ks.append(n)
    return ks


def accuracy_over_samples(rows: Iterable[Mapping]) -> tuple[float, float, dict[int, float]]:
    """(mean, population std, {sample index: accuracy}) over the per-sample-index accuracies."""
    hits: dict[int, list[bool]] = defaultdict(list)
    for row in rows:
        hits[int(row["sample"])].append(bool(row["correct"]))
    if not hits:
        raise ValueError("accuracy over no responses")
    per_sample = {index: sum(values) / len(values) for index, values in sorted(hits.items())}
    values = list(per_sample.values())
    return statistics.fmean(values), statistics.pstdev(values), per_sample


def mean_or_none(values: Sequence[float]) -> float | None:
    """The mean, or None for no values (a group without members has no mean, not 0)."""
    return statistics.fmean(values) if values else None


def token_stats(rows: Sequence[Mapping]) -> dict:
    """Mean/median tokens overall, of correct and of wrong responses, the truncation share and how many
    truncated responses were scored correct (a cut-off response that boxed its answer early counts, as
    in the paper's evaluation; it is never a training target)."""
    tokens = [int(row["tokens"]) for row in rows]
    cut = [row for row in rows if is_truncated(row)]
    truncated = len(cut)
    return {
        "tokens_mean": mean_or_none(tokens),
        "tokens_median": statistics.median(tokens) if tokens else None,
        "tokens_max": max(tokens) if tokens else None,
        "tokens_correct_mean": mean_or_none([int(row["tokens"]) for row in rows if row["correct"]]),
        "tokens_wrong_mean": mean_or_none([int(row["tokens"]) for row in rows if not row["correct"]]),
        "truncated": truncated,
        "truncated_share": truncated / len(rows) if rows else None,
        "truncated_correct": sum(1 for row in cut if row["correct"]),
    }


def verdict_counts(rows: Iterable[Mapping]) -> dict[str, int]:
    """Count of every verdict (all five keys present, zeros included)."""
    counts = Counter(str(row.get("verdict")) for row in rows)
    return {name: counts.get(name, 0) for name in VERDICTS} | {
        name: count for name, count in counts.items() if name not in VERDICTS
    }


def level_name(level: object) -> str | None:
    """A difficulty level as "1".."5" whether stored as 3 or "Level 3" (MATH's own spelling); None when
    absent or empty. Every grouping by level reads levels through this one function."""
    if level is None or isinstance(level, bool):
        return None
    text = str(level).strip()
    if text.lower().startswith("level"):
        text = text[5:].strip()
    return text or None


def level_sort_key(level: str) -> tuple:
    """Numeric levels in numeric order, then any others by name."""
    return (0, int(level), "") if level.isdigit() else (1, 0, level)


def by_level(rows: Iterable[Mapping], level_totals: Mapping[str, int] | None = None) -> dict[str, dict]:
    """Accuracy and tokens per difficulty level (MATH500's 1-5, like the paper's Table 6).

    `level_totals` (problems per level name, see `level_name`) adds ``n_problems_expected`` to each level."""
    groups: dict[str, list[Mapping]] = defaultdict(list)
    for row in rows:
        level = level_name(row.get("level"))
        if level is not None:
            groups[level].append(row)
    table = {}
    for level in sorted(groups, key=level_sort_key):
        members = groups[level]
        table[level] = {
            "n_problems": len({row["id"] for row in members}),
            "n_samples": len(members),
            "accuracy": sum(bool(row["correct"]) for row in members) / len(members),
            "tokens_mean": statistics.fmean(int(row["tokens"]) for row in members),
        }
        if level_totals is not None and level in level_totals:
            table[level]["n_problems_expected"] = int(level_totals[level])
    return table


_METRIC_FIELDS = ("id", "sample", "correct", "verdict", "tokens", "finish_reason", "truncated", "level")


def metric_row(row: Mapping) -> dict:
    """A judged sample reduced to what these metrics read (a run holds many, responses are long); every
    caller that summarizes samples.jsonl reduces its rows here, so a figure is the same wherever it is
    computed."""
    compact = {key: row.get(key) for key in _METRIC_FIELDS}
    compact["id"] = str(compact["id"])
    compact["sample"] = int(compact["sample"] or 0)
    compact["tokens"] = int(compact["tokens"] or 0)
    pair = usage_tokens(row.get("usage"))
    if pair is not None:
        compact["usage"] = {"completion_tokens": pair[0], "reasoning_tokens": pair[1]}
    return compact


def usage_tokens(usage: Mapping | None) -> tuple[int, int] | None:
    """(completion_tokens, reasoning_tokens) from an API `usage` (flat or OpenAI's nested details)."""
    if not isinstance(usage, Mapping):
        return None
    completion = usage.get("completion_tokens")
    reasoning = usage.get("reasoning_tokens")
    if reasoning is None:
        details = usage.get("completion_tokens_details")
        if isinstance(details, Mapping):
            reasoning = details.get("reasoning_tokens")
    if completion is None or reasoning is None:
        return None
    return int(completion), int(reasoning)


def o1_estimate(rows: Iterable[Mapping]) -> dict | None:
    """Hidden reasoning tokens estimated per response (n_s * n_r / (n_c - n_r)), averaged.

    Only rows whose `usage` reports reasoning tokens and a visible part (n_c > n_r) count; None when there
    are none (open models).
    """
    hidden, visible, reported = [], [], []
    for row in rows:
        pair = usage_tokens(row.get("usage"))
        if pair is None or pair[0] <= pair[1]:
            continue
        completion, reasoning = pair
        hidden.append(o1_hidden_tokens(int(row["tokens"]), completion, reasoning))
        visible.append(int(row["tokens"]))
        reported.append(reasoning)
    if not hidden:
        return None
    return {
        "n_samples": len(hidden),
        "hidden_tokens_mean": statistics.fmean(hidden),
        "visible_tokens_mean": statistics.fmean(visible),
        "api_reasoning_tokens_mean": statistics.fmean(reported),
    }


def summarize(
    rows: Sequence[Mapping], n_problems_expected: int | None = None, level_totals: Mapping[str, int] | None = None
) -> dict:
    """Every figure of one benchmark x effort (the `results[BENCHMARK][EFFORT]` object of summary.json).

    `n_problems_expected` (problems asked for) adds ``n_problems_missing``; `level_totals` does the same
    per level. ``problem_ids`` lists the problems covered, so runs can be compared on the same problems.
    """
    if not rows:
        raise ValueError("no responses to summarize")
    per_problem: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        per_problem[str(row["id"])].append(bool(row["correct"]))
    counts = [(len(hits), sum(hits)) for hits in per_problem.values()]
    fewest = min(n for n, _ in counts)
    mean, std, per_sample = accuracy_over_samples(rows)
    result = {
        "n_problems": len(per_problem),
        "n_samples": len(rows),
        "samples_per_problem": fewest,
        "samples_per_problem_max": max(n for n, _ in counts),
        "accuracy_mean": mean,
        "accuracy_std": std,
        "accuracy_per_sample": {str(index): value for index, value in per_sample.items()},
        "pass_at_k": {str(k): mean_pass_at_k(counts, k) for k in default_ks(fewest)},
        **token_stats(rows),
        "verdicts": verdict_counts(rows),
    }
    if n_problems_expected is not None:
        result["n_problems_expected"] = n_problems_expected
        result["n_problems_missing"] = max(n_problems_expected - len(per_problem), 0)
    levels = by_level(rows, level_totals)
    if levels:
        result["by_level"] = levels
    o1 = o1_estimate(rows)
    if o1 is not None:
        result["o1_estimate"] = o1
    result["problem_ids"] = sorted(per_problem)
    return result
