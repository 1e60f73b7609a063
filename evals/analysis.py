"""Why long reasoning hurts, measured on a run: reasoning rounds, erroneous rounds, and length vs accuracy.

The library behind ``tops-analyze RUN_DIR|samples.jsonl -o DIR``. It reads judged
samples (generation records with verdict fields; ``RUN_DIR`` means ``RUN_DIR/samples.jsonl``)
and writes ``DIR/analysis.json``, ``DIR/rounds.jsonl`` (each response's rounds, to inspect),
``DIR/report.md`` and PNG plots.

Rows lacking ``tokens`` or a verdict are counted and judged by the library's one path for each
(`tops_plugin.tokens.with_token_counts`, `tops_plugin.judging.rows.judge_rows`) before `analyze`.

* Rounds: every response is split by `tops_plugin.rounds.splitter`; each round's answer is judged
  against the gold answer by the checker. Means per effort, per benchmark and per MATH level, over
  correct final answers (the paper's restriction; the top-level numbers of each group) and over all
  responses (``"all"``). With ``--judge``, a language model also counts rounds under the paper's
  definition (`tops_plugin.rounds.judge`), reported beside the deterministic count.
* Length and accuracy: accuracy by token-length bins (quantiles of each benchmark's lengths) and by
  effort per benchmark; the effort that maximises accuracy per difficulty level (MATH level, else the
  benchmark); the share of problems where a shorter response was correct and a longer one wrong. Each
  length bin carries its n and a Wilson 95% interval (``ci95``): a bin of two responses says little.
* Figures are per benchmark (``benchmarks``); one over several benchmarks is ``pooled`` and labelled so,
  because benchmarks differ in difficulty and length.

This module computes; `evals.report` renders the Markdown and `evals.plots` draws the figures. It never
prints. The command line is `evals.analyze`; the output files are named in `evals.layout.AnalysisFiles`.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from evals.layout import AnalysisFiles, samples_file
from evals.metrics import level_name, level_sort_key, mean_or_none, wilson_interval
from evals.plots import write_analysis_plots
from evals.report import analysis_markdown
from tops_plugin.jsonl import JsonlError, atomic_writer, read_jsonl_numbered, write_jsonl
from tops_plugin.judging.rows import JudgeMany, judge_in_process
from tops_plugin.prompts import effort_label, effort_sort_key
from tops_plugin.rounds.judge import JudgeItem, RoundJudge
from tops_plugin.rounds.splitter import (
    DEFAULT_CONFIG,
    RoundConfig,
    count_rounds,
    judge_answers,
    split_rounds,
)

__all__ = [
    "EQUATION_MODES",
    "AnalysisConfig",
    "analyze",
    "load_samples",
    "write_outputs",
]

UNKNOWN_BENCHMARK = "unknown"

#: The splitter's settings behind ``--equations``.
EQUATION_MODES = {
    "cued": DEFAULT_CONFIG,
    "all": RoundConfig(conclusion_cues=()),
    "none": RoundConfig(equation_answers=False),
}

#: progress(stage, done, total): called as work advances (stage: "rounds", "checker", "judge").
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AnalysisConfig:
    """Knobs of one analysis."""

    length_bins: int = 8
    gold_key: str = "answer"
    rounds: RoundConfig = DEFAULT_CONFIG
    judge_workers: int = 4


# ------------------------------------------------------------------------------------------------- inputs


def load_samples(path: str | os.PathLike, gold_key: str = "answer") -> list[dict]:
    """Judged samples of a run directory or file (`evals.layout.samples_file`); a row without
    id/response/gold raises `JsonlError` naming the file and line."""
    source = samples_file(path)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such samples file")
    rows = []
    for line, row in read_jsonl_numbered(source, require=("id", "response", gold_key)):
        problem = None
        if not isinstance(row["response"], str):
            problem = "'response' is not a string"
        elif "tokens" in row and (type(row["tokens"]) is not int or row["tokens"] < 0):
            problem = f"'tokens' is not a non-negative integer: {row['tokens']!r}"
        if problem:
            raise JsonlError(source, line, problem)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------- rounds


def _response_rounds(
    rows: Sequence[dict], judge_many: JudgeMany | None, config: AnalysisConfig, progress: Progress | None
) -> list[dict]:
    """One record per response: its rounds, their verdicts and the counts."""
    splits = []
    for done, row in enumerate(rows, start=1):
        splits.append(split_rounds(row["response"], config.rounds))
        if progress is not None:
            progress("rounds", done, len(rows))
    pairs = [(r.answer, str(row[config.gold_key])) for row, rounds in zip(rows, splits) for r in rounds]
    verdicts = judge_answers(pairs, _counting(judge_many, progress))
    records = []
    for row, rounds in zip(rows, splits):
        gold = str(row[config.gold_key])
        counts = count_rounds(rounds, gold, verdicts)
        records.append(
            {
                "id": row["id"],
                "sample": row.get("sample"),
                "benchmark": row.get("benchmark") or UNKNOWN_BENCHMARK,
                "level": level_name(row.get("level")),
                "effort": effort_label(row.get("effort")),
                "tokens": row["tokens"],
                "correct": bool(row.get("correct")),
                "rounds": counts.rounds,
                "erroneous_rounds": counts.erroneous,
                "unjudged_rounds": counts.unjudged,
                "round_spans": [
                    {"start": r.start, "end": r.end, "answer": r.answer, "method": r.method, "marker": r.marker,
                     "verdict": verdict}
                    for r, verdict in zip(rounds, counts.verdicts)
                ],
            }
        )
    return records


def _counting(judge_many: JudgeMany | None, progress: Progress | None) -> JudgeMany | None:
    """Wrap the checker so each verdict reports progress (the pairs reaching it are distinct)."""
    if progress is None:
        return judge_many
    check = judge_many or judge_in_process

    def counted(pairs: Iterable[tuple[str, str]]):
        todo = list(pairs)
        for done, verdict in enumerate(check(todo), start=1):
            progress("checker", done, len(todo))
            yield verdict

    return counted


def _add_llm_judgements(
    records: list[dict], rows: Sequence[dict], judge: RoundJudge, config: AnalysisConfig, progress: Progress | None
) -> None:
    items = [JudgeItem(str(row.get("problem", "")), row["response"], str(row[config.gold_key])) for row in rows]
    for done, (record, result) in enumerate(zip(records, judge.judge_many(items, config.judge_workers)), start=1):
        record["llm_judge"] = result.fields()
        if progress is not None:
            progress("judge", done, len(items))


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _round_stats(records: Sequence[dict]) -> dict:
    rounds = [r["rounds"] for r in records]
    erroneous = [r["erroneous_rounds"] for r in records]
    return {
        "responses": len(records),
        "rounds_mean": mean_or_none(rounds),
        "erroneous_rounds_mean": mean_or_none(erroneous),
        "erroneous_ratio": _ratio(sum(erroneous), sum(rounds)),
        "unjudged_rounds_mean": mean_or_none([r["unjudged_rounds"] for r in records]),
        "tokens_mean": mean_or_none([r["tokens"] for r in records]),
    }


def _judge_stats(records: Sequence[dict]) -> dict:
    judged = [r["llm_judge"] for r in records if r["llm_judge"]["judged"]]
    rounds = [j["rounds"] for j in judged]
    erroneous = [j["erroneous_rounds"] for j in judged]
    return {
        "judged": len(judged),
        "unjudged": len(records) - len(judged),
        "rounds_mean": mean_or_none(rounds),
        "erroneous_rounds_mean": mean_or_none(erroneous),
        "erroneous_ratio": _ratio(sum(erroneous), sum(rounds)),
    }


def _group_summary(records: Sequence[dict]) -> dict:
    """Round figures over correct final answers (top level, as in the paper) and over all responses."""
    correct = [r for r in records if r["correct"]]
    summary = _round_stats(correct)
    summary["population"] = "correct"
    summary["accuracy"] = _ratio(len(correct), len(records))
    summary["all"] = _round_stats(records)
    if records and "llm_judge" in records[0]:
        summary["llm_judge"] = _judge_stats(correct)
        summary["all"]["llm_judge"] = _judge_stats(records)
    return summary


def _by(records: Iterable[dict], key: Callable[[dict], object]) -> dict:
    groups: dict = defaultdict(list)
    for record in records:
        value = key(record)
        if value is not None:
            groups[value].append(record)
    return groups


def _by_effort(records: Sequence[dict]) -> dict:
    groups = _by(records, lambda r: r["effort"])
    return {effort: _group_summary(groups[effort]) for effort in sorted(groups, key=effort_sort_key)}


def _rounds_breakdowns(records: Sequence[dict]) -> dict:
    by_benchmark = _by(records, lambda r: r["benchmark"])
    by_level = {}
    for bench in sorted(by_benchmark):
        levels = _by(by_benchmark[bench], lambda r: r["level"])
        if levels:
            by_level[bench] = {level: _by_effort(levels[level]) for level in sorted(levels, key=level_sort_key)}
    return {
        "by_effort": _by_effort(records),
        "by_benchmark": {bench: _by_effort(by_benchmark[bench]) for bench in sorted(by_benchmark)},
        "by_level": by_level,
    }


# ------------------------------------------------------------------------------------- length and accuracy


def _accuracy(records: Sequence[dict]) -> float | None:
    return _ratio(sum(r["correct"] for r in records), len(records))


def _quantile_edges(values: Sequence[int], bins: int) -> list[float]:
    """Bin edges at quantiles of `values`, the lowest and highest included (duplicates dropped, so heavy
    ties give fewer bins)."""
    inner = statistics.quantiles(values, n=bins, method="inclusive") if len(values) > 1 else []
    return sorted({float(min(values)), *inner, float(max(values))})


def _length_bins(records: Sequence[dict], bins: int) -> list[dict]:
    """Accuracy per token-length bin: [lo, hi) except the last, which includes its upper edge. Each bin
    carries its n and the Wilson 95% interval (``ci95``): a bin of 3 responses says little, and says so."""
    if not records:
        return []
    edges = _quantile_edges([r["tokens"] for r in records], max(1, bins))
    if len(edges) == 1:
        edges = [edges[0], edges[0]]
    table = []
    for i, (low, high) in enumerate(zip(edges, edges[1:])):
        last = i == len(edges) - 2
        members = [r for r in records if low <= r["tokens"] < high or (last and r["tokens"] == high)]
        correct = sum(r["correct"] for r in members)
        interval = wilson_interval(correct, len(members))
        table.append(
            {"lo": low, "hi": high, "n": len(members), "correct": correct, "accuracy": _accuracy(members),
             "ci95": None if interval is None else list(interval),
             "tokens_mean": mean_or_none([r["tokens"] for r in members])}
        )
    return table


def _effort_table(records: Sequence[dict]) -> dict:
    groups = _by(records, lambda r: r["effort"])
    return {
        effort: {
            "n": len(groups[effort]),
            "accuracy": _accuracy(groups[effort]),
            "tokens_mean": mean_or_none([r["tokens"] for r in groups[effort]]),
            "tokens_median": statistics.median([r["tokens"] for r in groups[effort]]),
        }
        for effort in sorted(groups, key=effort_sort_key)
    }


def _best_effort(records: Sequence[dict]) -> dict:
    """The effort with the highest accuracy; ties go to the shorter mean length (thinking-optimal)."""
    table = _effort_table(records)
    best = min(table, key=lambda e: (-table[e]["accuracy"], table[e]["tokens_mean"], effort_sort_key(e)))
    return {
        "best_effort": best,
        "best_accuracy": table[best]["accuracy"],
        "best_tokens_mean": table[best]["tokens_mean"],
        "efforts_compared": len(table),
        "accuracy": {e: cell["accuracy"] for e, cell in table.items()},
        "tokens_mean": {e: cell["tokens_mean"] for e, cell in table.items()},
        "n": {e: cell["n"] for e, cell in table.items()},
    }


def _shorter_correct(records: Sequence[dict]) -> dict:
    """Over problems with two or more responses: how often a shorter one was right and a longer one wrong."""
    problems = _by(records, lambda r: r["id"])
    multi = [group for group in problems.values() if len(group) >= 2]
    mixed = [g for g in multi if any(r["correct"] for r in g) and not all(r["correct"] for r in g)]
    shorter_right = longer_right = 0
    for group in mixed:
        right = [r["tokens"] for r in group if r["correct"]]
        wrong = [r["tokens"] for r in group if not r["correct"]]
        shorter_right += min(right) < max(wrong)
        longer_right += max(right) > min(wrong)
    return {
        "problems": len(multi),
        "mixed_problems": len(mixed),
        "shorter_correct_longer_wrong": shorter_right,
        "share": _ratio(shorter_right, len(multi)),
        "share_of_mixed": _ratio(shorter_right, len(mixed)),
        "longer_correct_shorter_wrong": longer_right,
        "share_reverse": _ratio(longer_right, len(multi)),
    }


def _length_analysis(records: Sequence[dict], bins: int) -> dict:
    by_benchmark = _by(records, lambda r: r["benchmark"])
    length_accuracy, optimal, shorter = {}, {}, {}
    for bench in sorted(by_benchmark):
        members = by_benchmark[bench]
        length_accuracy[bench] = {"bins": _length_bins(members, bins), "by_effort": _effort_table(members)}
        optimal[bench] = {"all": _best_effort(members)}
        levels = _by(members, lambda r: r["level"])
        for level in sorted(levels, key=level_sort_key):
            optimal[bench][level] = _best_effort(levels[level])
        shorter[bench] = _shorter_correct(members)
    # Problems are keyed by (benchmark, id) across benchmarks: ids may repeat between files.
    shorter["all"] = _shorter_correct([dict(r, id=(r["benchmark"], r["id"])) for r in records])
    return {"length_accuracy": length_accuracy, "optimal_effort": optimal, "shorter_correct_longer_wrong": shorter}


# ------------------------------------------------------------------------------------------------ analysis


def analyze(
    rows: Sequence[dict],
    *,
    judge_many: JudgeMany | None = None,
    judge: RoundJudge | None = None,
    config: AnalysisConfig = AnalysisConfig(),
    progress: Progress | None = None,
) -> tuple[dict, list[dict]]:
    """(analysis.json object, per-response round records) for judged samples with ``tokens``.

    `judge_many` judges round answers (default: in-process `answers.judge`; pass a `Verifier`'s for
    untrusted text); `judge` adds language-model round counts.
    """
    missing = [i for i, row in enumerate(rows, start=1) if "tokens" not in row or "correct" not in row]
    if missing:
        raise ValueError(f"rows {missing[:5]} lack 'tokens' or 'correct' (count them with "
                         "tokens.with_token_counts, judge them with judging.judge_rows)")
    records = _response_rounds(rows, judge_many, config, progress)
    if judge is not None:
        _add_llm_judgements(records, rows, judge, config, progress)
    by_benchmark = _by(records, lambda r: r["benchmark"])
    analysis = {
        "responses": len(records),
        "benchmarks": {
            bench: {"responses": len(by_benchmark[bench]), "problems": len({r["id"] for r in by_benchmark[bench]}),
                    "accuracy": _accuracy(by_benchmark[bench])}
            for bench in sorted(by_benchmark)
        },
        # Benchmarks differ in difficulty, so one accuracy over all of them is labelled for what it is.
        "pooled": {"over": sorted(by_benchmark), "responses": len(records), "accuracy": _accuracy(records)},
        "rounds_definition": {
            "population": "top-level figures of each group cover correct final answers (as in the paper); "
            "'all' covers every response",
            "erroneous": "a round whose answer the checker judges wrong",
            "erroneous_ratio": "sum of erroneous rounds / sum of rounds",
        },
        "config": {
            "length_bins": config.length_bins,
            "equation_answers": config.rounds.equation_answers,
            "conclusion_cues": list(config.rounds.conclusion_cues),
            "reflection_markers": list(config.rounds.reflection_markers),
            "judge_model": judge.model if judge is not None else None,
        },
    }
    analysis.update(_rounds_breakdowns(records))
    analysis.update(_length_analysis(records, config.length_bins))
    return analysis, records


# ------------------------------------------------------------------------------------------------- outputs


def write_outputs(out_dir: str | os.PathLike, analysis: dict, records: Sequence[dict], plots: bool = True) -> dict:
    """Write analysis.json, rounds.jsonl, plots and report.md (each atomically); returns their paths."""
    files = AnalysisFiles(out_dir)
    files.root.mkdir(parents=True, exist_ok=True)
    written_plots = write_analysis_plots(analysis, files) if plots else []
    with atomic_writer(files.analysis, "w") as handle:
        json.dump(analysis, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    write_jsonl(files.rounds, records)
    with atomic_writer(files.report, "w") as handle:
        handle.write(analysis_markdown(analysis, [str(p) for p in written_plots]))
    return {"analysis": files.analysis, "rounds": files.rounds, "report": files.report, "plots": written_plots}
