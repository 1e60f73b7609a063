"""`tops-compare RUN_DIR... -o DIR` (`python -m evals.compare`): several runs side by side.

Rows are runs x efforts; columns are each benchmark's accuracy (%, ± std only with two or more samples
per problem), mean tokens, problems covered and samples per problem. Then the same figures in the paper's
layout, with published figures beside ours when `--reference FILE` names them (see `evals.reference`), and
accuracy and tokens by difficulty level for benchmarks with levels. Runs that cover different problems are
named with a warning; ``--common-problems`` recomputes every figure on the problems all runs cover
(`evals.comparison`). The Markdown is printed and written to ``compare.md``, with ``compare.csv`` and
``accuracy_vs_tokens.png`` (the paper's Figure 1 view, one point per run and effort per benchmark) beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evals.comparison import on_common_problems, problem_set_differences
from evals.layout import CompareFiles, summary_file
from evals.plots import runs_accuracy_vs_tokens
from evals.reference import load_reference
from evals.report import compare_csv, compare_levels_markdown, compare_markdown, display_name, paper_markdown
from tops_plugin.cli.args import add_renamed, command_parser, input_file
from tops_plugin.jsonl import atomic_writer


def load_runs(paths: list[str]) -> list[tuple[str, dict]]:
    """(label, summary) per run directory (or summary.json path); the label is the directory name."""
    runs = []
    for text in paths:
        summary_path = summary_file(text)
        if not summary_path.is_file():
            raise FileNotFoundError(f"{summary_path}: no run summary (run `tops-eval ... -o {text}` first)")
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{summary_path}: not valid JSON ({exc})") from exc
        if "results" not in summary:
            raise ValueError(f"{summary_path}: no 'results' key (not an evals.run summary)")
        runs.append((summary_path.parent.name, summary))
    return runs


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "tops-compare",
        "Several evaluation runs side by side: prints the comparison as Markdown and writes compare.md, "
        "compare.csv and accuracy_vs_tokens.png to the output directory.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="tops-eval output directories")
    add_renamed(parser, "-o", "--output", old="--out", required=True, metavar="DIR",
                help="directory to write compare.md, compare.csv and accuracy_vs_tokens.png to")
    parser.add_argument("--reference", type=input_file, default=None, metavar="FILE",
                        help="published figures (YAML/JSON, see evals.reference) shown beside ours, labelled")
    parser.add_argument("--common-problems", action="store_true",
                        help="recompute every figure on the problems all runs cover (from their samples.jsonl)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.runs)
        reference = None if args.reference is None else load_reference(args.reference)
        differences = problem_set_differences(runs)
        if args.common_problems:
            runs = on_common_problems(runs, [_run_dir(path) for path in args.runs])
    except (FileNotFoundError, ValueError) as exc:  # a bad reference raises ReferenceError, a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    notes = []
    if differences and args.common_problems:
        notes = ["> Figures recomputed on the problems every run covers: "
                 + "; ".join(f"{display_name(d.benchmark)} {d.common}" for d in differences) + "."]
    elif differences:
        notes = ["> **Runs cover different problems**, so their figures are not comparable as they stand:"]
        notes += [f"> - {d.describe()}" for d in differences]
        notes += ["> Rerun with `--common-problems` to compare on the problems all runs cover."]
        for difference in differences:
            print(f"warning: {difference.describe()}; --common-problems compares on those {difference.common}",
                  file=sys.stderr)
    markdown = ("\n".join(notes) + "\n\n" if notes else "") + compare_markdown(runs)
    markdown += "\n## In the paper's layout\n\n" + paper_markdown(runs, reference)
    levels = compare_levels_markdown(runs)
    if levels:
        markdown += "\n" + levels
    files = CompareFiles(args.output)
    with atomic_writer(files.markdown, "w") as handle:
        handle.write(markdown)
    with atomic_writer(files.csv, "w") as handle:
        handle.write(compare_csv(runs))
    title = "accuracy vs mean response tokens, per run"
    if differences and args.common_problems:
        title += " (common problems: " + ", ".join(f"{display_name(d.benchmark)} {d.common}"
                                                 for d in differences) + ")"
    plot = runs_accuracy_vs_tokens(runs, files.accuracy_vs_tokens_plot, title)
    print(f"wrote {files.markdown}, {files.csv}" + (f" and {plot}" if plot else ""), file=sys.stderr)
    print(markdown, end="")
    return 0


def _run_dir(text: str) -> Path:
    path = Path(text)
    return path if path.is_dir() else path.parent


if __name__ == "__main__":
    sys.exit(main())
