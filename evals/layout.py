"""Where evaluation outputs live: the files of a run, of an analysis and of a comparison, named once.

Every producer and consumer (`evals.run`, `evals.analyze`, `evals.compare`, the recipe's eval stage)
names a file through these classes, so a file renamed here is renamed everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AnalysisFiles", "CompareFiles", "RunFiles", "samples_file", "summary_file"]


@dataclass(frozen=True)
class _Folder:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))


@dataclass(frozen=True)
class RunFiles(_Folder):
    """An `evals.run` directory. The directory is the run's only state, so rerunning the same command
    finishes a killed run:

        config.json                what defines the samples (model, decoding, prompts, data hashes)
        generations/BENCH.jsonl    generation records, appended as they complete (model backends)
        samples.jsonl              judged samples: generation record + verdict + `benchmark` (appended)
        summary.json, report.md, *.png   rebuilt from samples.jsonl at the end of every run
    """

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def generations_dir(self) -> Path:
        return self.root / "generations"

    def generations(self, benchmark: str) -> Path:
        return self.generations_dir / f"{benchmark}.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def accuracy_vs_tokens_plot(self) -> Path:
        return self.root / "accuracy_vs_tokens.png"

    @property
    def tokens_by_effort_plot(self) -> Path:
        return self.root / "tokens_by_effort.png"

    def tokens_by_level_plot(self, benchmark: str) -> Path:
        return self.root / f"tokens_by_level_{benchmark}.png"


@dataclass(frozen=True)
class AnalysisFiles(_Folder):
    """The output directory of `evals.analyze`."""

    @property
    def analysis(self) -> Path:
        return self.root / "analysis.json"

    @property
    def rounds(self) -> Path:
        """Each response's rounds, to inspect."""
        return self.root / "rounds.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def judge_cache(self) -> Path:
        """The language-model round judge's replies, so a rerun asks nothing twice."""
        return self.root / "judge_cache.jsonl"

    @property
    def rounds_by_effort_plot(self) -> Path:
        return self.root / "rounds_by_effort.png"

    @property
    def accuracy_by_effort_plot(self) -> Path:
        return self.root / "accuracy_by_effort.png"

    @property
    def accuracy_by_length_plot(self) -> Path:
        return self.root / "accuracy_by_length.png"

    @property
    def accuracy_by_level_plot(self) -> Path:
        return self.root / "accuracy_by_level.png"


@dataclass(frozen=True)
class CompareFiles(_Folder):
    """The output directory of `evals.compare`."""

    @property
    def markdown(self) -> Path:
        return self.root / "compare.md"

    @property
    def csv(self) -> Path:
        return self.root / "compare.csv"

    @property
    def accuracy_vs_tokens_plot(self) -> Path:
        return self.root / "accuracy_vs_tokens.png"


def samples_file(path: str | os.PathLike) -> Path:
    """A run directory means its samples file; a file is used as given."""
    target = Path(path)
    return RunFiles(target).samples if target.is_dir() else target


def summary_file(path: str | os.PathLike) -> Path:
    """A run directory means its summary file; a file is used as given."""
    target = Path(path)
    return RunFiles(target).summary if target.is_dir() else target
