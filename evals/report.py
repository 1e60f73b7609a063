"""Markdown and CSV views: the run report of summary.json (the paper's Table 3 and Table 6 shapes), the
side-by-side table of several runs, and the report of an analysis (analysis.json, `evals.analysis`).

Everything here is a pure function of summary or analysis dictionaries, so a report can be rebuilt from
its JSON without rerunning anything.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from evals.config import RESPONSES_BACKEND
from evals.metrics import level_sort_key
from tops_plugin.prompts import DEFAULT_EFFORT

__all__ = [
    "accuracy_text",
    "analysis_markdown",
    "cell_label",
    "compare_csv",
    "compare_levels_markdown",
    "compare_markdown",
    "compare_rows",
    "coverage",
    "coverage_warnings",
    "display_name",
    "level_table",
    "markdown_table",
    "num",
    "paper_markdown",
    "pct",
    "render_report",
]

DISPLAY_NAMES = {"gsm8k": "GSM8K", "math500": "MATH500", "aime2024": "AIME2024"}


def display_name(benchmark: str) -> str:
    return DISPLAY_NAMES.get(benchmark, benchmark)


def pct(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A proportion in percent (0.5 -> ``50.00``), "-" when there is none."""
    return "-" if value is None else f"{100 * value:.{digits}f}{unit}"


def num(value: float | None, digits: int = 0) -> str:
    """A figure with `digits` decimals, "-" when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def coverage(cell: dict) -> tuple[int, int] | None:
    """(problems with responses, problems asked for) when some problems have none; None when complete."""
    missing = cell.get("n_problems_missing") or 0
    return (cell["n_problems"], cell["n_problems"] + missing) if missing else None


def _spread(cell: dict, samples_asked: int = 1) -> bool:
    """Whether a ± means anything: at least two samples of some problem (one sample has no spread).
    `samples_asked` (the run's --n-samples) stands in for a cell that does not say."""
    return cell.get("samples_per_problem_max", samples_asked) >= 2 and cell.get("accuracy_std") is not None


def accuracy_text(cell: dict) -> str:
    """Accuracy in %, ``± std`` only with two or more samples, and its coverage when incomplete:
    ``79.09 (263/500)``."""
    text = pct(cell.get("accuracy_mean"))
    if _spread(cell):
        text += f" ± {pct(cell['accuracy_std'])}"
    covered = coverage(cell)
    return text if covered is None else f"{text} ({covered[0]}/{covered[1]})"


def _level_accuracy(entry: dict) -> str:
    text = pct(entry["accuracy"])
    expected = entry.get("n_problems_expected")
    return text if expected is None or entry["n_problems"] >= expected else f"{text} ({entry['n_problems']}/{expected})"


def coverage_warnings(summary: dict) -> list[str]:
    """One sentence per benchmark x effort whose accuracy covers only part of the problems asked for."""
    warnings = []
    for bench, per_effort in summary["results"].items():
        for effort, cell in per_effort.items():
            covered = coverage(cell)
            if covered is not None:
                warnings.append(
                    f"{display_name(bench)} ({effort}): {covered[1] - covered[0]} of {covered[1]} problems have no "
                    f"response; its figures cover only the {covered[0]} that do"
                )
    for bench, item in summary.get("data", {}).items():
        if not summary["results"].get(bench):
            warnings.append(f"{display_name(bench)}: no responses at all ({item['n_problems']} problems asked for)")
    return warnings


def cell_label(name: str, effort: str) -> str:
    """A run's (or model's) row under one effort: the name alone for the default prompt, else
    ``name (effort)``."""
    return name if effort == DEFAULT_EFFORT else f"{name} ({effort})"


def _efforts(results: dict) -> list[str]:
    seen: list[str] = []
    for per_effort in results.values():
        for effort in per_effort:
            if effort not in seen:
                seen.append(effort)
    return seen


def _protocol(config: dict) -> str:
    if config.get("backend") == RESPONSES_BACKEND:
        return f"responses scored from `{config.get('responses')}`"
    if config.get("greedy"):
        return f"greedy decoding, max {config.get('max_tokens')} new tokens"
    return (
        f"temperature {config.get('temperature')}, top-p {config.get('top_p')}, {config.get('n_samples')} "
        f"sample(s) per problem (seeds {config.get('seed')}..{config.get('seed', 0) + config.get('n_samples', 1) - 1}), "
        f"max {config.get('max_tokens')} new tokens"
    )


def level_table(rows: Sequence[tuple[str, dict]]) -> list[str]:
    """Markdown lines of accuracy and mean tokens per difficulty level (MATH's Table 6 shape), one row per
    (label, results cell); empty when no cell has levels. Works for any benchmark whose problems carry a
    `level`."""
    levels = sorted({lvl for _, cell in rows for lvl in cell.get("by_level", {})}, key=level_sort_key)
    if not levels:
        return []
    header = ["Model"] + [f"L{lvl} {part}" for lvl in levels for part in ("Acc", "#Tokens")]
    body = []
    for label, cell in rows:
        row = [label]
        for lvl in levels:
            entry = cell.get("by_level", {}).get(lvl)
            row += ["-", "-"] if entry is None else [_level_accuracy(entry), num(entry["tokens_mean"])]
        body.append(row)
    return markdown_table(header, body)


def render_report(summary: dict) -> str:
    """report.md: accuracy / tokens per benchmark (Table 3), details, MATH levels (Table 6), o1 estimate."""
    results, config = summary["results"], summary.get("config", {})
    model = summary.get("model", config.get("model", "model"))
    benches = list(results)
    lines = [
        f"# Evaluation of `{model}`",
        "",
        f"Backend `{summary.get('backend')}`; {_protocol(config)}. Accuracy in %, mean ± std over samples "
        "(one accuracy per sample index); tokens = mean "
        + ("length of the thought part" if config.get("count_tokens") == "thought" else "response length")
        + " in Qwen2.5 tokens.",
        "",
    ]
    warnings = coverage_warnings(summary)
    if warnings:
        lines += ["> **Incomplete coverage.** Accuracy cells show (problems with responses / problems asked for).",
                  *[f"> - {warning}." for warning in warnings], ""]
    header = ["Model"] + [f"{display_name(b)} {part}" for b in benches for part in ("Acc", "#Tokens")]
    rows = []
    for effort in _efforts(results):
        row = [cell_label(model, effort)]
        for bench in benches:
            cell = results[bench].get(effort)
            row += ["-", "-"] if cell is None else [accuracy_text(cell), num(cell.get("tokens_mean"))]
        rows.append(row)
    lines += markdown_table(header, rows)

    lines += ["", "## Details", ""]
    header = [
        "Benchmark", "Effort", "Problems", "Samples", "Acc", "pass@k", "Tokens mean / median",
        "Tokens correct / wrong", "Truncated", "No answer", "Timeout", "Error",
    ]
    rows = []
    for bench in benches:
        for effort, cell in results[bench].items():
            verdicts = cell.get("verdicts", {})
            passk = ", ".join(f"@{k} {pct(v, 1)}" for k, v in cell.get("pass_at_k", {}).items())
            missing = cell.get("n_problems_missing") or 0
            rows.append([
                display_name(bench), effort,
                f"{cell['n_problems']}" + (f" ({missing} missing)" if missing else ""),
                str(cell["n_samples"]), accuracy_text(cell), passk,
                f"{num(cell.get('tokens_mean'))} / {num(cell.get('tokens_median'))}",
                f"{num(cell.get('tokens_correct_mean'))} / {num(cell.get('tokens_wrong_mean'))}",
                f"{cell.get('truncated', 0)} ({pct(cell.get('truncated_share'), 1)}%)",
                str(verdicts.get("no_answer", 0)), str(verdicts.get("timeout", 0)), str(verdicts.get("error", 0)),
            ])
    lines += markdown_table(header, rows)

    for bench in benches:
        table = level_table([(cell_label(model, effort), cell) for effort, cell in results[bench].items()])
        if table:
            lines += ["", f"## {display_name(bench)} by level", "", *table]

    o1_rows = [
        [display_name(bench), effort, str(cell["o1_estimate"]["n_samples"]),
         num(cell["o1_estimate"]["visible_tokens_mean"]), num(cell["o1_estimate"]["hidden_tokens_mean"], 2),
         num(cell["o1_estimate"]["api_reasoning_tokens_mean"], 2)]
        for bench in benches for effort, cell in results[bench].items() if cell.get("o1_estimate")
    ]
    if o1_rows:
        lines += [
            "", "## Hidden reasoning tokens (API models)", "",
            "Estimate n_s × n_r / (n_c − n_r) in Qwen2.5 tokens, beside the visible summary and the API's own count.",
            "",
        ]
        lines += markdown_table(["Benchmark", "Effort", "Samples", "Visible tokens", "Hidden (estimate)", "API reasoning tokens"], o1_rows)

    lines += ["", "## Data", ""]
    lines += markdown_table(
        ["Benchmark", "Source", "Problems with responses / asked for / in source", "sha256"],
        [[display_name(b), f"`{d['path']}`",
          f"{max((c['n_problems'] for c in results.get(b, {}).values()), default=0)} / {d['n_problems']} / "
          f"{d['n_total']}", f"`{d['sha256'][:16]}`"]
         for b, d in summary.get("data", {}).items()],
    )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- compare


def compare_rows(runs: Sequence[tuple[str, dict]]) -> tuple[list[str], list[dict]]:
    """One row per (run, effort); per benchmark accuracy mean/std (%), mean tokens, and what the figures
    cover: problems with responses, problems asked for, samples per problem. Returns (benchmarks, rows)."""
    benches: list[str] = []
    for _, summary in runs:
        for bench in summary["results"]:
            if bench not in benches:
                benches.append(bench)
    rows = []
    for label, summary in runs:
        results = summary["results"]
        for effort in _efforts(results):
            row: dict = {"run": label, "model": summary.get("model", ""), "effort": effort}
            for bench in benches:
                cell = results.get(bench, {}).get(effort)
                row[f"{bench}_acc"] = None if cell is None else 100 * cell["accuracy_mean"]
                spread = cell is not None and _spread(cell, summary.get("config", {}).get("n_samples", 1))
                row[f"{bench}_std"] = 100 * cell["accuracy_std"] if spread else None
                row[f"{bench}_tokens"] = None if cell is None else cell.get("tokens_mean")
                row[f"{bench}_samples"] = None if cell is None else cell["n_samples"]
                row[f"{bench}_problems"] = None if cell is None else cell.get("n_problems")
                row[f"{bench}_problems_expected"] = (
                    None if cell is None or "n_problems" not in cell
                    else cell["n_problems"] + (cell.get("n_problems_missing") or 0)
                )
                row[f"{bench}_samples_per_problem"] = (
                    None if cell is None or "samples_per_problem" not in cell
                    else _per_problem(cell["samples_per_problem"], cell.get("samples_per_problem_max"))
                )
            rows.append(row)
    return benches, rows


def _per_problem(fewest: int, most: int | None) -> str:
    return str(fewest) if most is None or most == fewest else f"{fewest}-{most}"


def _row_accuracy(row: dict, bench: str, with_coverage: bool = False) -> str:
    """A compare row's accuracy: ± only with two or more samples per problem; the coverage when asked
    for and incomplete (``79.09 (263/500)``)."""
    std = row[f"{bench}_std"]
    text = f"{row[f'{bench}_acc']:.2f}" + ("" if std is None else f" ± {std:.2f}")
    problems, expected = row[f"{bench}_problems"], row[f"{bench}_problems_expected"]
    return f"{text} ({problems}/{expected})" if with_coverage and problems != expected else text


def compare_markdown(runs: Sequence[tuple[str, dict]]) -> str:
    """The side-by-side table: per benchmark accuracy (± only with two or more samples per problem),
    mean tokens, problems covered (of those asked for) and samples per problem."""
    benches, rows = compare_rows(runs)
    header = ["Run", "Model", "Effort"] + [
        f"{display_name(b)} {part}" for b in benches for part in ("Acc", "#Tokens", "Problems", "Samples/problem")
    ]
    body = []
    for row in rows:
        cells = [row["run"], row["model"], row["effort"]]
        for bench in benches:
            acc = row[f"{bench}_acc"]
            if acc is None:
                cells += ["-", "-", "-", "-"]
                continue
            problems, expected = row[f"{bench}_problems"], row[f"{bench}_problems_expected"]
            cells += [
                _row_accuracy(row, bench),
                num(row[f"{bench}_tokens"]),
                num(problems) if problems == expected else f"{problems}/{expected}",
                row[f"{bench}_samples_per_problem"] or "-",
            ]
        body.append(cells)
    return "\n".join(markdown_table(header, body)) + "\n"


def compare_csv(runs: Sequence[tuple[str, dict]]) -> str:
    benches, rows = compare_rows(runs)
    parts = ("acc", "std", "tokens", "samples", "problems", "problems_expected", "samples_per_problem")
    fields = ["run", "model", "effort"] + [f"{b}_{part}" for b in benches for part in parts]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if value is None else value) for key, value in row.items()})
    return buffer.getvalue()


def compare_levels_markdown(runs: Sequence[tuple[str, dict]]) -> str:
    """Per benchmark with difficulty levels (MATH500, or any set whose problems carry `level`): one table
    of accuracy and mean tokens per level, one row per run and effort."""
    benches: list[str] = []
    for _, summary in runs:
        benches += [b for b in summary["results"] if b not in benches]
    lines: list[str] = []
    for bench in benches:
        rows = [(cell_label(label, effort), cell) for label, summary in runs
                for effort, cell in summary["results"].get(bench, {}).items()]
        table = level_table(rows)
        if table:
            lines += ["", f"## {display_name(bench)} by level", "", *table]
    return "\n".join(lines).lstrip("\n") + ("\n" if lines else "")


def paper_markdown(runs: Sequence[tuple[str, dict]], reference=None) -> str:
    """The paper's Table 3 layout: accuracy (%, ± std over seeds when sampled) and mean tokens per model and
    benchmark, with each published row of `reference` (an `evals.reference.Reference`) right under the run
    it corresponds to and labelled as published figures."""
    benches, rows = compare_rows(runs)
    ref_rows = list(reference.rows) if reference is not None else []
    for ref in ref_rows:
        benches += [b for b in ref.results if b not in benches]
    header = ["Model", "Figures"] + [f"{display_name(b)} {part}" for b in benches for part in ("Acc", "#Tokens")]
    body: list[list[str]] = []

    def published(ref) -> list[str]:
        cells = [f"{ref.model} (paper)", "published"]
        for bench in benches:
            cell = ref.results.get(bench)
            cells += ["-", "-"] if cell is None else [f"{cell['accuracy']:.2f}", num(cell["tokens"])]
        return cells

    thought_only = {label for label, summary in runs if summary.get("config", {}).get("count_tokens") == "thought"}
    for row in rows:
        cells = [cell_label(row["run"], row["effort"]) + (" †" if row["run"] in thought_only else ""), "ours"]
        for bench in benches:
            acc = row.get(f"{bench}_acc")
            if acc is None:
                cells += ["-", "-"]
                continue
            cells += [_row_accuracy(row, bench, with_coverage=True), num(row[f"{bench}_tokens"])]
        body.append(cells)
        for ref in [r for r in ref_rows if r.run == row["run"] and r.effort == row["effort"]]:
            body.append(published(ref))
            ref_rows.remove(ref)
    body += [published(ref) for ref in ref_rows]  # published rows without a run of ours
    caption = ("Accuracy in % (± population std over sample seeds, with two or more samples per problem; "
               "(covered/asked) when some problems have no response), #Tokens = mean response length in "
               "Qwen2.5 tokens.")
    if thought_only:
        caption += " † #Tokens counts only the thought part, as the paper counts thought-and-summary models."
    if reference is not None:
        caption += f" Rows marked *published* are the figures of {reference.source}, not ours."
    return "\n".join([caption, "", *markdown_table(header, body)]) + "\n"


# ------------------------------------------------------------------------------------------------ analysis


def _share(value: float | None) -> str:
    return pct(value, 1, "%")


def _section_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A table and the blank line that ends its section."""
    return markdown_table(header, rows) + [""]


def _rounds_rows(groups: dict, label: Callable[[str], list[str]]) -> list[list[str]]:
    rows = []
    for name, cell in groups.items():
        rows.append(
            label(name)
            + [str(cell["all"]["responses"]), _share(cell["accuracy"]), num(cell["tokens_mean"]),
               num(cell["rounds_mean"], 2), num(cell["erroneous_rounds_mean"], 2), num(cell["erroneous_ratio"], 2),
               num(cell["all"]["rounds_mean"], 2), num(cell["all"]["erroneous_rounds_mean"], 2),
               num(cell["all"]["erroneous_ratio"], 2)]
            + ([num(cell["llm_judge"]["rounds_mean"], 2), num(cell["llm_judge"]["erroneous_rounds_mean"], 2)]
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


def analysis_markdown(analysis: dict, plots: Sequence[str] = ()) -> str:
    """The Markdown report of an analysis (a pure function of analysis.json). Figures are per benchmark;
    a figure over several benchmarks is labelled as pooled."""
    judged = analysis["config"].get("judge_model") is not None
    header = _ROUND_HEADER + (["judge rounds", "judge erroneous"] if judged else [])
    several = len(analysis["benchmarks"]) > 1
    out = ["# Reasoning rounds and length analysis", ""]
    out += _section_table(
        ["benchmark", "responses", "problems", "accuracy"],
        [[display_name(bench), str(cell["responses"]), str(cell["problems"]), _share(cell["accuracy"])]
         for bench, cell in analysis["benchmarks"].items()]
        + ([[f"*{_pooled_label(analysis)}*", str(analysis["pooled"]["responses"]), "-",
             _share(analysis["pooled"]["accuracy"])]] if several else []),
    )
    out += [
        "A round is a reasoning or verification pass that ends at an answer the response commits to; it is "
        "erroneous when the checker judges its answer wrong. Round means without a suffix cover correct final "
        "answers, as in the paper; *(all)* covers every response. Ratio = erroneous rounds / rounds.",
        "",
        "## Rounds by benchmark and effort",
        "",
    ]
    out += _section_table(
        ["benchmark", "effort"] + header,
        [row for bench, groups in analysis["by_benchmark"].items()
         for row in _rounds_rows(groups, lambda e, b=bench: [display_name(b), e])],
    )
    if analysis["by_level"]:
        out += ["## Rounds by level and effort", ""]
        out += _section_table(
            ["benchmark", "level", "effort"] + header,
            [row for bench, levels in analysis["by_level"].items() for level, groups in levels.items()
             for row in _rounds_rows(groups, lambda e, b=bench, lv=level: [display_name(b), lv, e])],
        )
    if several:
        out += [f"## Rounds by effort, {_pooled_label(analysis)}", "",
                "Benchmarks differ in difficulty and length; read the per-benchmark table first.", ""]
        out += _section_table(["effort"] + header, _rounds_rows(analysis["by_effort"], lambda e: [e]))
    out += ["## Accuracy by effort", ""]
    out += _section_table(
        ["benchmark", "effort", "responses", "accuracy", "tokens mean", "tokens median"],
        [[display_name(bench), effort, str(cell["n"]), _share(cell["accuracy"]), num(cell["tokens_mean"]),
          num(cell["tokens_median"])]
         for bench, table in analysis["length_accuracy"].items() for effort, cell in table["by_effort"].items()],
    )
    out += ["## Accuracy by response length", "", "Bins are quantiles of each benchmark's response lengths "
            "(Qwen2.5 tokens); 95% = the Wilson interval of the bin's accuracy, wide when the bin is small. "
            "Across problems, length also tracks difficulty.", ""]
    out += _section_table(
        ["benchmark", "tokens", "responses", "accuracy", "95%"],
        [[display_name(bench), f"{cell['lo']:.0f}–{cell['hi']:.0f}", str(cell["n"]), _share(cell["accuracy"]),
          _interval(cell)]
         for bench, table in analysis["length_accuracy"].items() for cell in table["bins"]],
    )
    out += ["## Effort that maximises accuracy per difficulty", "",
            "Ties go to the shorter mean length. `all` is the whole benchmark.", ""]
    out += _section_table(
        ["benchmark", "level", "best effort", "accuracy", "tokens mean", "accuracy per effort (responses)"],
        [[display_name(bench), level, cell["best_effort"], _share(cell["best_accuracy"]),
          num(cell["best_tokens_mean"]),
          ", ".join(f"{e} {_share(a)} ({cell['n'][e]})" for e, a in cell["accuracy"].items())]
         for bench, levels in analysis["optimal_effort"].items() for level, cell in levels.items()],
    )
    out += ["## Shorter correct, longer wrong", "",
            "Among problems with two or more responses: a shorter response was correct and a longer one wrong "
            "(and the reverse, for contrast). `all` pools the benchmarks.", ""]
    out += _section_table(
        ["benchmark", "problems", "mixed", "shorter right & longer wrong", "share", "longer right & shorter wrong",
         "share"],
        [[display_name(bench), str(c["problems"]), str(c["mixed_problems"]), str(c["shorter_correct_longer_wrong"]),
          _share(c["share"]), str(c["longer_correct_shorter_wrong"]), _share(c["share_reverse"])]
         for bench, c in analysis["shorter_correct_longer_wrong"].items()],
    )
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(out)
