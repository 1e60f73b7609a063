"""Several runs on the same footing: which problems each covers, and their figures on the common ones.

Two runs compared cell by cell mean something only when they answered the same problems: a 2-problem
smoke run beside a 263-problem run says nothing about either model. `problem_set_differences` names the
benchmarks where runs cover different problems, and `on_common_problems` recomputes every figure of every
run on the problems all of them cover (from each run's samples.jsonl, with the same `evals.metrics`
functions the run used). Pure functions over (label, summary) pairs and run directories; nothing printed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.config import RESPONSES_BACKEND
from evals.layout import RunFiles
from evals.metrics import metric_row, summarize
from evals.report import cell_label, display_name
from tops_plugin.jsonl import read_jsonl
from tops_plugin.prompts import effort_label

__all__ = ["ProblemSetDifference", "on_common_problems", "problem_set_differences"]

Run = tuple[str, dict]  # (label, summary.json)


@dataclass(frozen=True)
class ProblemSetDifference:
    """A benchmark whose cells (run x effort) do not all cover the same problems."""

    benchmark: str
    covered: dict[str, int]  # "run (effort)" -> problems covered
    common: int  # problems every cell covers

    def describe(self) -> str:
        cells = ", ".join(f"{name}: {count}" for name, count in self.covered.items())
        return f"{display_name(self.benchmark)}: runs cover different problems ({cells}; {self.common} in common)"


def _problem_sets(runs: Sequence[Run]) -> dict[str, dict[str, frozenset[str]]]:
    """benchmark -> cell name -> problem ids, for cells whose summary lists them."""
    sets: dict[str, dict[str, frozenset[str]]] = defaultdict(dict)
    for label, summary in runs:
        for bench, per_effort in summary["results"].items():
            for effort, cell in per_effort.items():
                if "problem_ids" in cell:
                    sets[bench][cell_label(label, effort)] = frozenset(cell["problem_ids"])
    return sets


def problem_set_differences(runs: Sequence[Run]) -> list[ProblemSetDifference]:
    """Benchmarks on which the runs' cells cover different problems (summaries without ids are skipped)."""
    differences = []
    for bench, cells in _problem_sets(runs).items():
        if len(set(cells.values())) > 1:
            common = frozenset.intersection(*cells.values())
            differences.append(ProblemSetDifference(bench, {n: len(ids) for n, ids in cells.items()}, len(common)))
    return differences


def _samples_path(run_dir: Path, summary: dict) -> Path:
    """The samples file the summary names (relative to its run directory), else the layout's."""
    named = summary.get("files", {}).get("samples")
    return run_dir / named if named else RunFiles(run_dir).samples


def on_common_problems(runs: Sequence[Run], run_dirs: Sequence[str | os.PathLike]) -> list[Run]:
    """The runs with every figure recomputed on the problems that all their cells of a benchmark cover.

    Reads each run's samples.jsonl (rows of that benchmark, effort and problem, and for model backends
    sample indices below the run's ``n_samples``). A benchmark whose cells share no problem is dropped.
    Raises `FileNotFoundError` naming a run without samples, `ValueError` one whose summary does
    not list its problems.
    """
    for label, summary in runs:
        if any("problem_ids" not in cell for cells in summary["results"].values() for cell in cells.values()):
            raise ValueError(f"the summary of {label} does not list its problems (made by an older version); "
                             "rerun its evals.run command to rebuild it from the samples")
    common = {bench: frozenset.intersection(*cells.values()) for bench, cells in _problem_sets(runs).items()}
    restricted = []
    for (label, summary), run_dir in zip(runs, run_dirs):
        path = _samples_path(Path(run_dir), summary)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no samples file, so {label} cannot be restricted to common problems")
        config = summary.get("config", {})
        max_sample = None if config.get("backend") == RESPONSES_BACKEND else config.get("n_samples")
        groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for row in read_jsonl(path, require=("benchmark", "id")):
            bench, effort = row["benchmark"], effort_label(row.get("effort"))
            if str(row["id"]) not in common.get(bench, ()) or effort not in summary["results"].get(bench, {}):
                continue
            if max_sample is not None and int(row.get("sample") or 0) >= max_sample:
                continue
            groups[bench][effort].append(metric_row(row))
        results = {
            bench: {effort: summarize(rows, n_problems_expected=len(common[bench])) for effort, rows in per.items()}
            for bench, per in groups.items() if common.get(bench)
        }
        restricted.append((label, {**summary, "results": results}))
    return restricted
