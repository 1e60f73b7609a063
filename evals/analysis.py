"""Why long reasoning hurts, measured on a run: reasoning rounds, erroneous rounds, and length vs accuracy.

The library behind ``python -m evals.analyze RUN_DIR|samples.jsonl --out DIR``. It reads judged
samples (generation records with verdict fields; ``RUN_DIR`` means ``RUN_DIR/samples.jsonl``)
and writes ``DIR/analysis.json``, ``DIR/rounds.jsonl`` (each response's rounds, to inspect),
``DIR/report.md`` and PNG plots.

* Rounds: every response is split by `tops_plugin.rounds`; each round's answer is judged
  against the gold answer by the checker. Means per effort, per benchmark and per MATH level, over
  correct final answers (the paper's restriction; the top-level numbers of each group) and over all
  responses (``"all"``). With ``--judge``, a language model also counts rounds under the paper's
  definition (`tops_plugin.round_judge`), reported beside the deterministic count.
* Length and accuracy: accuracy by token-length bins (quantiles of each benchmark's lengths) and by
  effort per benchmark; the effort that maximises accuracy per difficulty level (MATH level, else the
  benchmark); the share of problems where a shorter response was correct and a longer one wrong. Each
  length bin carries its n and a Wilson 95% interval (``ci95``): a bin of two responses says little.
* Figures are per benchmark (``benchmarks``); one over several benchmarks is ``pooled`` and labelled so,
  because benchmarks differ in difficulty and length.

This module computes and writes; it never prints. The command line is `evals.analyze`.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.metrics import wilson_interval
from evals.plots import accuracy_axis, panels, save_figure
from evals.report import display_name
from tops_plugin.prompts import effort_label, effort_sort_key
from tops_plugin.jsonl import JsonlError, atomic_writer, read_jsonl_numbered, write_jsonl
from tops_plugin.round_judge import JudgeItem, RoundJudge
from tops_plugin.rounds import (
    DEFAULT_CONFIG,
    CheckMany,
    RoundConfig,
    check_in_process,
    count_rounds,
    judge_answers,
    split_rounds,
)

__all__ = [
    "AnalysisConfig",
    "analyze",
    "load_samples",
    "render_report",
    "write_outputs",
    "write_plots",
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


def _level_name(level: object) -> str | None:
    """MATH levels as "1".."5" whether stored as 3 or "Level 3"; None when absent or unreadable."""
    if level is None or isinstance(level, bool):
        return None
    text = str(level).strip()
    if text.lower().startswith("level"):
        text = text[5:].strip()
    return text or None


def samples_path(path: str | os.PathLike) -> Path:
    """``RUN_DIR`` means ``RUN_DIR/samples.jsonl``; a file is used as given."""
    target = Path(path)
    return target / "samples.jsonl" if target.is_dir() else target


def load_samples(path: str | os.PathLike, gold_key: str = "answer") -> list[dict]:
    """Judged samples; a row without id/response/gold raises `JsonlError` naming the file and line."""
    source = samples_path(path)
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


def fill_tokens(rows: Sequence[dict], tokenizer=None) -> int:
    """Count Qwen2.5 tokens of responses that lack ``tokens``; returns how many were counted."""
    todo = [row for row in rows if "tokens" not in row]
    if todo:
        from tops_plugin.tokens import count_tokens  # loads tokenizer files: only when needed

        for row, count in zip(todo, count_tokens([row["response"] for row in todo], tokenizer)):
            row["tokens"] = int(count)
    return len(todo)


def fill_verdicts(rows: Sequence[dict], check_many: CheckMany, gold_key: str = "answer") -> int:
    """Judge final answers of rows that lack a verdict (through `tops_plugin.judging`, so cut-off
    responses are judged as such); returns how many were judged."""
    from tops_plugin.judging import judge_rows

    todo = [row for row in rows if not isinstance(row.get("correct"), bool)]
    for _ in judge_rows(todo, check_many, gold_keys=(gold_key,)):
        pass
    return len(todo)


# ------------------------------------------------------------------------------------------------- rounds


def _response_rounds(
    rows: Sequence[dict], check_many: CheckMany | None, config: AnalysisConfig, progress: Progress | None
) -> list[dict]:
    """One record per response: its rounds, their verdicts and the counts."""
    splits = []
    for done, row in enumerate(rows, start=1):
        splits.append(split_rounds(row["response"], config.rounds))
        if progress is not None:
            progress("rounds", done, len(rows))
    pairs = [(r.answer, str(row[config.gold_key])) for row, rounds in zip(rows, splits) for r in rounds]
    verdicts = judge_answers(pairs, _counting(check_many, progress))
    records = []
    for row, rounds in zip(rows, splits):
        gold = str(row[config.gold_key])
        counts = count_rounds(rounds, gold, verdicts)
        records.append(
            {
                "id": row["id"],
                "sample": row.get("sample"),
                "benchmark": row.get("benchmark") or UNKNOWN_BENCHMARK,
                "level": _level_name(row.get("level")),
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


def _counting(check_many: CheckMany | None, progress: Progress | None) -> CheckMany | None:
    """Wrap the checker so each verdict reports progress (the pairs reaching it are distinct)."""
    if progress is None:
        return check_many
    check = check_many or check_in_process

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


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _round_stats(records: Sequence[dict]) -> dict:
    rounds = [r["rounds"] for r in records]
    erroneous = [r["erroneous_rounds"] for r in records]
    return {
        "responses": len(records),
        "rounds_mean": _mean(rounds),
        "erroneous_rounds_mean": _mean(erroneous),
        "erroneous_ratio": _ratio(sum(erroneous), sum(rounds)),
        "unjudged_rounds_mean": _mean([r["unjudged_rounds"] for r in records]),
        "tokens_mean": _mean([r["tokens"] for r in records]),
    }


def _judge_stats(records: Sequence[dict]) -> dict:
    judged = [r["llm_judge"] for r in records if r["llm_judge"]["judged"]]
    rounds = [j["rounds"] for j in judged]
    erroneous = [j["erroneous_rounds"] for j in judged]
    return {
        "judged": len(judged),
        "unjudged": len(records) - len(judged),
        "rounds_mean": _mean(rounds),
        "erroneous_rounds_mean": _mean(erroneous),
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


def _level_sort(level: str) -> tuple:
    return (0, int(level), "") if level.isdigit() else (1, 0, level)


def _rounds_breakdowns(records: Sequence[dict]) -> dict:
    by_benchmark = _by(records, lambda r: r["benchmark"])
    by_level = {}
    for bench in sorted(by_benchmark):
        levels = _by(by_benchmark[bench], lambda r: r["level"])
        if levels:
            by_level[bench] = {level: _by_effort(levels[level]) for level in sorted(levels, key=_level_sort)}
    return {
        "by_effort": _by_effort(records),
        "by_benchmark": {bench: _by_effort(by_benchmark[bench]) for bench in sorted(by_benchmark)},
        "by_level": by_level,
    }


# ------------------------------------------------------------------------------------- length and accuracy


def _accuracy(records: Sequence[dict]) -> float | None:
    return _ratio(sum(r["correct"] for r in records), len(records))


def _quantile_edges(values: Sequence[int], bins: int) -> list[float]:
    """Bin edges at quantiles of `values` (duplicates dropped, so heavy ties give fewer bins)."""
    ordered = sorted(values)
    edges = []
    for i in range(bins + 1):
        position = (len(ordered) - 1) * i / bins
        low, high = math.floor(position), math.ceil(position)
        edges.append(ordered[low] + (ordered[high] - ordered[low]) * (position - low))
    return sorted(set(edges))


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
             "tokens_mean": _mean([r["tokens"] for r in members])}
        )
    return table


def _effort_table(records: Sequence[dict]) -> dict:
    groups = _by(records, lambda r: r["effort"])
    return {
        effort: {
            "n": len(groups[effort]),
            "accuracy": _accuracy(groups[effort]),
            "tokens_mean": _mean([r["tokens"] for r in groups[effort]]),
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
        for level in sorted(levels, key=_level_sort):
            optimal[bench][level] = _best_effort(levels[level])
        shorter[bench] = _shorter_correct(members)
    # Problems are keyed by (benchmark, id) across benchmarks: ids may repeat between files.
    shorter["all"] = _shorter_correct([dict(r, id=(r["benchmark"], r["id"])) for r in records])
    return {"length_accuracy": length_accuracy, "optimal_effort": optimal, "shorter_correct_longer_wrong": shorter}


# ------------------------------------------------------------------------------------------------ analysis


def analyze(
    rows: Sequence[dict],
    *,
    check_many: CheckMany | None = None,
    judge: RoundJudge | None = None,
    config: AnalysisConfig = AnalysisConfig(),
    progress: Progress | None = None,
) -> tuple[dict, list[dict]]:
    """(analysis.json object, per-response round records) for judged samples with ``tokens``.

    `check_many` judges round answers (default: in-process `answers.judge`; pass a `Verifier`'s for
    untrusted text); `judge` adds language-model round counts.
    """
    missing = [i for i, row in enumerate(rows, start=1) if "tokens" not in row or "correct" not in row]
    if missing:
        raise ValueError(f"rows {missing[:5]} lack 'tokens' or 'correct' (use fill_tokens / fill_verdicts)")
    records = _response_rounds(rows, check_many, config, progress)
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


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _rounds_rows(groups: dict, label: Callable[[str], list[str]]) -> list[list[str]]:
    rows = []
    for name, cell in groups.items():
        rows.append(
            label(name)
            + [str(cell["all"]["responses"]), pct(cell["accuracy"]), fmt(cell["tokens_mean"], 0),
               fmt(cell["rounds_mean"]), fmt(cell["erroneous_rounds_mean"]), fmt(cell["erroneous_ratio"]),
               fmt(cell["all"]["rounds_mean"]), fmt(cell["all"]["erroneous_rounds_mean"]),
               fmt(cell["all"]["erroneous_ratio"])]
            + ([fmt(cell["llm_judge"]["rounds_mean"]), fmt(cell["llm_judge"]["erroneous_rounds_mean"])]
               if "llm_judge" in cell else [])
        )
    return rows


_ROUND_HEADER = ["responses", "accuracy", "tokens (correct)", "rounds", "erroneous", "ratio",
                 "rounds (all)", "erroneous (all)", "ratio (all)"]


def _interval(cell: dict) -> str:
    ci = cell.get("ci95")
    return "-" if ci is None else f"{100 * ci[0]:.0f}–{100 * ci[1]:.0f}%"


def _pooled_label(analysis: dict) -> str:
    """What a figure over every response covers: one benchmark by name, several as 'pooled over …'."""
    over = [display_name(b) for b in analysis["pooled"]["over"]]
    return over[0] if len(over) == 1 else "pooled over " + ", ".join(over)


def render_report(analysis: dict, plots: Sequence[str] = ()) -> str:
    """The Markdown report of an analysis (a pure function of analysis.json). Figures are per benchmark;
    a figure over several benchmarks is labelled as pooled."""
    judged = analysis["config"].get("judge_model") is not None
    header = _ROUND_HEADER + (["judge rounds", "judge erroneous"] if judged else [])
    several = len(analysis["benchmarks"]) > 1
    out = ["# Reasoning rounds and length analysis", ""]
    out += _table(
        ["benchmark", "responses", "problems", "accuracy"],
        [[display_name(bench), str(cell["responses"]), str(cell["problems"]), pct(cell["accuracy"])]
         for bench, cell in analysis["benchmarks"].items()]
        + ([[f"*{_pooled_label(analysis)}*", str(analysis["pooled"]["responses"]), "-",
             pct(analysis["pooled"]["accuracy"])]] if several else []),
    )
    out += [
        "A round is a reasoning or verification pass that ends at an answer the response commits to; it is "
        "erroneous when the checker judges its answer wrong. Round means without a suffix cover correct final "
        "answers, as in the paper; *(all)* covers every response. Ratio = erroneous rounds / rounds.",
        "",
        "## Rounds by benchmark and effort",
        "",
    ]
    out += _table(
        ["benchmark", "effort"] + header,
        [row for bench, groups in analysis["by_benchmark"].items()
         for row in _rounds_rows(groups, lambda e, b=bench: [display_name(b), e])],
    )
    if analysis["by_level"]:
        out += ["## Rounds by level and effort", ""]
        out += _table(
            ["benchmark", "level", "effort"] + header,
            [row for bench, levels in analysis["by_level"].items() for level, groups in levels.items()
             for row in _rounds_rows(groups, lambda e, b=bench, lv=level: [display_name(b), lv, e])],
        )
    if several:
        out += [f"## Rounds by effort, {_pooled_label(analysis)}", "",
                "Benchmarks differ in difficulty and length; read the per-benchmark table first.", ""]
        out += _table(["effort"] + header, _rounds_rows(analysis["by_effort"], lambda e: [e]))
    out += ["## Accuracy by effort", ""]
    out += _table(
        ["benchmark", "effort", "responses", "accuracy", "tokens mean", "tokens median"],
        [[display_name(bench), effort, str(cell["n"]), pct(cell["accuracy"]), fmt(cell["tokens_mean"], 0),
          fmt(cell["tokens_median"], 0)]
         for bench, table in analysis["length_accuracy"].items() for effort, cell in table["by_effort"].items()],
    )
    out += ["## Accuracy by response length", "", "Bins are quantiles of each benchmark's response lengths "
            "(Qwen2.5 tokens); 95% = the Wilson interval of the bin's accuracy, wide when the bin is small. "
            "Across problems, length also tracks difficulty.", ""]
    out += _table(
        ["benchmark", "tokens", "responses", "accuracy", "95%"],
        [[display_name(bench), f"{cell['lo']:.0f}–{cell['hi']:.0f}", str(cell["n"]), pct(cell["accuracy"]),
          _interval(cell)]
         for bench, table in analysis["length_accuracy"].items() for cell in table["bins"]],
    )
    out += ["## Effort that maximises accuracy per difficulty", "",
            "Ties go to the shorter mean length. `all` is the whole benchmark.", ""]
    out += _table(
        ["benchmark", "level", "best effort", "accuracy", "tokens mean", "accuracy per effort (responses)"],
        [[display_name(bench), level, cell["best_effort"], pct(cell["best_accuracy"]),
          fmt(cell["best_tokens_mean"], 0),
          ", ".join(f"{e} {pct(a)} ({cell['n'][e]})" for e, a in cell["accuracy"].items())]
         for bench, levels in analysis["optimal_effort"].items() for level, cell in levels.items()],
    )
    out += ["## Shorter correct, longer wrong", "",
            "Among problems with two or more responses: a shorter response was correct and a longer one wrong "
            "(and the reverse, for contrast). `all` pools the benchmarks.", ""]
    out += _table(
        ["benchmark", "problems", "mixed", "shorter right & longer wrong", "share", "longer right & shorter wrong",
         "share"],
        [[display_name(bench), str(c["problems"]), str(c["mixed_problems"]), str(c["shorter_correct_longer_wrong"]),
          pct(c["share"]), str(c["longer_correct_shorter_wrong"]), pct(c["share_reverse"])]
         for bench, c in analysis["shorter_correct_longer_wrong"].items()],
    )
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(out)


def write_plots(analysis: dict, out_dir: str | os.PathLike) -> list[Path]:
    """PNG plots of rounds by effort, accuracy by effort, by length (with n and Wilson 95% intervals) and
    by level; one panel per benchmark; returns the files written."""
    out = Path(out_dir)
    written: list[Path] = []
    benches = list(analysis["length_accuracy"])
    if not benches:
        return written

    def save(plt, fig, name: str) -> None:
        written.append(Path(save_figure(plt, fig, out / name)))

    # Rounds and erroneous rounds per effort (correct final answers), one panel per benchmark.
    plt, fig, axes = panels(len(benches))
    for ax, bench in zip(axes, benches):
        groups = analysis["by_benchmark"][bench]
        efforts = list(groups)
        xs = range(len(efforts))
        ax.bar([x - 0.2 for x in xs], [groups[e]["rounds_mean"] or 0 for e in efforts], 0.4, label="rounds")
        ax.bar([x + 0.2 for x in xs], [groups[e]["erroneous_rounds_mean"] or 0 for e in efforts], 0.4,
               label="erroneous rounds")
        ax.set_xticks(list(xs), [f"{e}\nn={groups[e]['responses']}" for e in efforts])
        ax.set_title(f"{display_name(bench)}: correct answers")
        ax.set_ylabel("mean per response")
        ax.legend(fontsize=8)
    save(plt, fig, "rounds_by_effort.png")

    # Accuracy vs mean length, one point per effort.
    plt, fig, axes = panels(len(benches))
    for ax, bench in zip(axes, benches):
        table = analysis["length_accuracy"][bench]["by_effort"]
        xs = [cell["tokens_mean"] for cell in table.values()]
        ys = [100 * cell["accuracy"] for cell in table.values()]
        ax.plot(xs, ys, marker="o", linewidth=1 if len(xs) > 1 else 0)
        for effort, x, y in zip(table, xs, ys):
            ax.annotate(f"{effort} (n={table[effort]['n']})", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        ax.set_xlim(0, max(xs) * 1.3 if xs and max(xs) > 0 else 1)
        ax.set_xlabel("mean tokens (Qwen2.5)")
        accuracy_axis(ax, ys)
        ax.set_title(display_name(bench))
        ax.grid(alpha=0.3)
    save(plt, fig, "accuracy_by_effort.png")

    # Accuracy per length bin, with the bin's n and its Wilson 95% interval. Bins sit side by side (their
    # token ranges as labels): quantile bins of a long tail would crowd together on a token axis.
    plt, fig, axes = panels(len(benches), height=3.9, width=5.6)
    for ax, bench in zip(axes, benches):
        cells = [c for c in analysis["length_accuracy"][bench]["bins"] if c["n"]]
        xs = list(range(len(cells)))
        ys = [100 * c["accuracy"] for c in cells]
        below = [max(0.0, y - 100 * c["ci95"][0]) for c, y in zip(cells, ys)]  # >= 0 despite rounding
        above = [max(0.0, 100 * c["ci95"][1] - y) for c, y in zip(cells, ys)]
        ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, linewidth=1)
        ax.set_xticks(xs, [f"{c['lo']:.0f}–{c['hi']:.0f}\nn={c['n']}" for c in cells], fontsize=7)
        ax.set_xlabel("response tokens (Qwen2.5), quantile bins; n = responses")
        ax.set_ylim(-3, 103)
        ax.set_ylabel("accuracy (%), Wilson 95% interval")
        ax.set_title(display_name(bench))
        ax.grid(alpha=0.3)
    save(plt, fig, "accuracy_by_length.png")

    # Accuracy per difficulty level and effort (benchmarks with levels): where each effort is optimal.
    leveled = {}
    for bench, levels in analysis["optimal_effort"].items():
        if len(levels) > 1:
            leveled[bench] = {level: cell for level, cell in levels.items() if level != "all"}
    if leveled:
        plt, fig, axes = panels(len(leveled))
        for ax, (bench, levels) in zip(axes, leveled.items()):
            efforts = sorted({e for cell in levels.values() for e in cell["accuracy"]}, key=effort_sort_key)
            names = list(levels)
            values = []
            for effort in efforts:
                ys = [100 * levels[lv]["accuracy"][effort] if effort in levels[lv]["accuracy"] else float("nan")
                      for lv in names]
                ax.plot(names, ys, marker="o", label=effort)
                values += ys
            counts = [sum(levels[lv]["n"].values()) for lv in names]
            ax.set_xticks(range(len(names)), [f"{lv}\nn={n}" for lv, n in zip(names, counts)])
            ax.set_xlabel("level (responses)")
            accuracy_axis(ax, values)
            ax.set_title(display_name(bench))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        save(plt, fig, "accuracy_by_level.png")
    return written


def write_outputs(out_dir: str | os.PathLike, analysis: dict, records: Sequence[dict], plots: bool = True) -> dict:
    """Write analysis.json, rounds.jsonl, plots and report.md (each atomically); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written_plots = write_plots(analysis, out) if plots else []
    with atomic_writer(out / "analysis.json", "w") as handle:
        json.dump(analysis, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    write_jsonl(out / "rounds.jsonl", records)
    with atomic_writer(out / "report.md", "w") as handle:
        handle.write(render_report(analysis, [str(p) for p in written_plots]))
    return {
        "analysis": out / "analysis.json",
        "rounds": out / "rounds.jsonl",
        "report": out / "report.md",
        "plots": written_plots,
    }


# ----------------------------------------------------------------------------------------------------- CLI
