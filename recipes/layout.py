"""Where every file of a run directory lives, named once.

Each stage reads and writes files under the run directory; a producer and its consumers (the next
stage, `recipes.rl`, the eval stage, tests) all ask `RunLayout` for a path, so no file name is spelled
in two places:

    RUN_DIR/manifest.json  logs/STAGE.log  .lock          what ran (recipes.manifest)
    problems/{seed,effort,iteration}.jsonl  meta.json      the problem pools
    seed/{generations,judged,sft}.jsonl                    teacher samples, judged, tag-model SFT rows
    effort/{generations,judged}.jsonl                      tag-model samples under each effort, judged
    select/{shortest,random}.jsonl                         TOPS (and Random baseline) SFT rows
    iter/{generations,judged,sft,dpo}.jsonl                TOPS-model samples, judged, iteration data
    rl/prompts.jsonl (.meta.json)  ref_*.jsonl  job/       RL prompts, their reference pass, the Ray job
    eval/RUN/  eval/reference.json  eval/compare/          evaluation runs and their comparison (files:
                                                           evals.layout)
    models/NAME  ckpt/STAGE                                trained models, trainer checkpoints
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evals.layout import CompareFiles, RunFiles

__all__ = ["RunLayout", "Samples"]


@dataclass(frozen=True)
class Samples:
    """One generation pass: its samples, and the same samples with verdicts."""

    generations: Path
    judged: Path


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory."""

    root: Path

    # what ran
    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def log(self, stage: str) -> Path:
        return self.root / "logs" / f"{stage}.log"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    # problems
    @property
    def problems_dir(self) -> Path:
        return self.root / "problems"

    def pool(self, name: str) -> Path:
        """A problem pool: seed, effort or iteration."""
        return self.problems_dir / f"{name}.jsonl"

    @property
    def pools_meta(self) -> Path:
        return self.problems_dir / "meta.json"

    # samples and training data
    @property
    def seed(self) -> Samples:
        return self._samples("seed")

    @property
    def seed_sft(self) -> Path:
        """The curated seed: tag-model SFT rows, one per effort of each kept problem."""
        return self.root / "seed" / "sft.jsonl"

    @property
    def effort(self) -> Samples:
        return self._samples("effort")

    def selected(self, mode: str) -> Path:
        """The select stage's SFT rows of one mode: shortest (TOPS) or random."""
        return self.root / "select" / f"{mode}.jsonl"

    @property
    def iteration(self) -> Samples:
        return self._samples("iter")

    def iteration_data(self, method: str) -> Path:
        """The iter-select stage's rows for one method: sft or dpo."""
        return self.root / "iter" / f"{method}.jsonl"

    # the RL recipe
    @property
    def rl_prompts(self) -> Path:
        return self.root / "rl" / "prompts.jsonl"

    @property
    def rl_prompts_meta(self) -> Path:
        return self.root / "rl" / "prompts.jsonl.meta.json"

    @property
    def rl_reference(self) -> Samples:
        """The starting model's samples that give RL labels their reference length."""
        rl = self.root / "rl"
        return Samples(rl / "ref_generations.jsonl", rl / "ref_judged.jsonl")

    @property
    def rl_job_dir(self) -> Path:
        """The folder Ray ships to every node (its files: `recipes.rl`)."""
        return self.root / "rl" / "job"

    # evaluation
    def eval_run(self, name: str) -> RunFiles:
        """One `evals.run` output folder and its files."""
        return RunFiles(self.root / "eval" / name)

    @property
    def eval_reference(self) -> Path:
        """The published figures set beside ours."""
        return self.root / "eval" / "reference.json"

    @property
    def eval_compare(self) -> CompareFiles:
        """The `evals.compare` output folder and its files."""
        return CompareFiles(self.root / "eval" / "compare")

    # models
    def model(self, name: str) -> Path:
        """A trained model's folder: tag, tops, random, iter-sft, iter-dpo, rl."""
        return self.root / "models" / name

    def model_partial(self, name: str) -> Path:
        """Where the trainer saves the model; renamed to `model(name)` when it exits cleanly."""
        return self.root / "models" / f"{name}.partial"

    def ckpt(self, stage: str) -> Path:
        """A training stage's OpenRLHF checkpoints (kept for resume)."""
        return self.root / "ckpt" / stage

    def _samples(self, folder: str) -> Samples:
        return Samples(self.root / folder / "generations.jsonl", self.root / folder / "judged.jsonl")
