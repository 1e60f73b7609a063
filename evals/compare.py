"""`python -m evals.compare RUN_DIR... [--out DIR]`: several runs side by side (Markdown and CSV).

Rows are runs x efforts; columns are each benchmark's accuracy ± std (%) and mean tokens. Then the same
figures in the paper's layout, with published figures beside ours when `--reference FILE` names them
(see `evals.reference`), and accuracy and tokens by difficulty level for benchmarks with levels. Reads
only each run's summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evals.reference import load_reference
from evals.report import compare_csv, compare_levels_markdown, compare_markdown, paper_markdown
from tops_plugin.jsonl import atomic_writer


def load_runs(paths: list[str]) -> list[tuple[str, dict]]:
    """(label, summary) per run directory (or summary.json path); the label is the directory name."""
    runs = []
    for text in paths:
        path = Path(text)
        summary_path = path / "summary.json" if path.is_dir() else path
        if not summary_path.is_file():
            raise FileNotFoundError(f"{summary_path}: no summary.json (run `python -m evals.run ... --out {path}` first)")
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{summary_path}: not valid JSON ({exc})") from exc
        if "results" not in summary:
            raise ValueError(f"{summary_path}: no 'results' key (not an evals.run summary)")
        runs.append((summary_path.parent.name, summary))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="evals.run output directories")
    parser.add_argument("--out", default=None, help="write compare.md and compare.csv here")
    parser.add_argument("--reference", default=None, metavar="FILE",
                        help="published figures (YAML/JSON, see evals.reference) shown beside ours, labelled")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.runs)
        reference = None if args.reference is None else load_reference(args.reference)
    except (FileNotFoundError, ValueError) as exc:  # a bad reference raises ReferenceError, a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    markdown = compare_markdown(runs)
    markdown += "\n## In the paper's layout\n\n" + paper_markdown(runs, reference)
    levels = compare_levels_markdown(runs)
    if levels:
        markdown += "\n" + levels
    if args.out:
        out = Path(args.out)
        with atomic_writer(out / "compare.md", "w") as handle:
            handle.write(markdown)
        with atomic_writer(out / "compare.csv", "w") as handle:
            handle.write(compare_csv(runs))
        print(f"wrote {out / 'compare.md'} and {out / 'compare.csv'}", file=sys.stderr)
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
