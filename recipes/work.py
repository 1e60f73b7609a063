"""The in-process part of the data stages: read problems, generate to a file, judge, select.

Each function reads and writes whole files named by its caller (the planners of `recipes.planners`) and
calls the library for the work; library log records go to the stage log (`recipes.execute`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from recipes.config import ProblemSet, Recipe
from recipes.plan import RunContext
from tops_plugin.generation.models import hf_folder
from tops_plugin.jsonl import atomic_writer, read_jsonl, write_jsonl

__all__ = ["before_training", "generate", "judge", "judge_meta", "read_problems", "select_to"]

log = logging.getLogger(__name__)

#: The recipe's own generation backends, by the name a config gives them (others: `load_backend`'s names).
RECIPE_BACKENDS: dict[str, str] = {
    "solver": "recipes.demo_problems:SolverBackend",  # worked solutions of the CPU demo's problems
}


def read_problems(recipe: Recipe, sets: Sequence[ProblemSet]) -> list[dict]:
    """The problems of `sets` (local files or hub datasets), each cut and sampled as configured; a bad row
    names its file and line."""
    from recipes.problems import read_set

    return [row for problems in sets for row in read_set(recipe, problems)]


def generate(ctx: RunContext, recipe: Recipe, *, model: str, sets: Sequence[ProblemSet],
             efforts: Sequence[str | None], n_samples: int, out: Path, backend_name: str | None = None) -> None:
    """Generate every (problem, effort, sample) into `out`, resuming a `*.partial` file of the same work.
    `backend_name` other than `generation.backend` gets no `generation.options` (they are that backend's)."""
    from tops_plugin.generation import GenerationRequest, SamplingParams, generate_to_file, load_backend

    g = recipe.generation
    sampling = SamplingParams(temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens, seed=g.seed)
    problems = read_problems(recipe, sets)
    requests = [GenerationRequest(p, effort, n_samples, sampling) for p in problems for effort in efforts]
    partial = out.with_name(f"{out.name}.{ctx.key[:12]}.partial")
    if ctx.fresh:
        partial.unlink(missing_ok=True)
    name = backend_name or g.backend
    log.info("generating %d requests x %d samples with %s:%s -> %s", len(requests), n_samples, name, model, partial)
    backend = load_backend(RECIPE_BACKENDS.get(name, name), model, **(g.options if name == g.backend else {}))
    try:
        progress = None if ctx.hooks.progress is None else (lambda event: ctx.hooks.progress(ctx.stage, event))
        summary = generate_to_file(backend, requests, partial, progress=progress)
    finally:
        backend.close()
    for pid, reason in summary.bad:
        log.warning("problem %r not generated: %s", pid, reason)
    if not summary.complete:
        raise RuntimeError(f"{summary.planned - summary.records} of {summary.planned} samples were not "
                           f"generated (kept in {partial}); rerun the stage to fill them in")
    log.info("generated %d records (%d already there), %.1f%% truncated", summary.records, summary.skipped,
             100 * summary.truncated_share)
    for stale in out.parent.glob(f"{out.name}.*.partial"):  # other settings' leftovers
        if stale != partial:
            stale.unlink()
    os.replace(partial, out)


def judge(recipe: Recipe, src: Path, dst: Path) -> None:
    """Every record of `src` with verdict fields added (`tops_plugin.judging.rows`: cut-off responses are judged
    and marked as such), in order, written atomically to `dst`. A malformed record names its line."""
    from tops_plugin.judging.rows import judge_rows
    from tops_plugin.selection.modes import GOLD_KEYS, read_records
    from tops_plugin.judging.verifier import Verifier

    bad: list = []
    with Verifier(workers=recipe.verifier.workers, timeout=recipe.verifier.timeout) as verifier:
        rows = read_records(src, need_verdict=False, skip_bad=True, errors=bad)
        count = write_jsonl(dst, judge_rows(rows, verifier.judge_many, gold_keys=GOLD_KEYS))
    for error in bad:
        log.warning("malformed record skipped: %s", error)
    _write_judge_meta(dst, src, count, bad)
    log.info("judged %d records -> %s (%d malformed skipped)", count, dst, len(bad))


def _write_judge_meta(dst: Path, src: Path, judged: int, bad: Sequence) -> None:
    """`judged.meta.json`: how many records were judged and which were skipped as malformed (file:line and
    reason), so that the selection's own meta file can count every exclusion back to the generations."""
    from tops_plugin.selection.openrlhf import meta_path

    meta = {"input": str(src), "judged": judged, "malformed": len(bad),
            "malformed_rows": [str(error) for error in bad[:1000]]}
    with atomic_writer(meta_path(dst), "w") as handle:
        json.dump(meta, handle, indent=2)
        handle.write("\n")


def judge_meta(judged: Path) -> dict:
    """The judge stage's counts for `judged` (empty for a file judged elsewhere)."""
    from tops_plugin.selection.openrlhf import meta_path

    path = meta_path(judged)
    return json.loads(path.read_text()) if path.is_file() else {}


def select_to(recipe: Recipe, mode: str, src: Path, dst: Path, seed: Path | None = None) -> None:
    """Run one selection mode over judged records and write the OpenRLHF dataset (with its sidecar);
    with `seed`, the low-effort rows of that curated seed file are added (under the same length limit).
    The sidecar counts the records the judge stage skipped as malformed."""
    from tops_plugin.selection.dataset import write_selection
    from tops_plugin.selection.modes import SelectionConfig

    models = recipe.models
    config = SelectionConfig(mode=mode, seed=recipe.selection.seed, curation_tokenizer=models.curation_tokenizer,
                             min_gap=recipe.curation.gap_tokens, max_len=recipe.training.common.max_len,
                             chat_tokenizer=models.chat_tokenizer)
    written = write_selection([src], dst, config, seed_file=seed,
                              malformed_input_rows=judge_meta(src).get("malformed", 0))
    if not written.rows:
        log.warning("%s selection of %s is empty: no problem had a usable response", mode, src)
    log.info("%s: %d rows -> %s", mode, written.rows, dst)


def before_training(model: str, dataset: Path, batch_size: int) -> None:
    """Refuse, by name, a dataset smaller than one batch (OpenRLHF drops the incomplete batch and dies in
    `datasets` or in its step arithmetic), and write a GGUF model's or alias's converted folder (what
    OpenRLHF loads)."""
    rows = sum(1 for _ in read_jsonl(dataset))
    if rows == 0:
        raise ValueError(f"{dataset} has no rows: nothing to train (its .meta.json counts what was dropped)")
    if rows < batch_size:
        raise ValueError(f"{dataset} has {rows} rows, fewer than one batch ({batch_size}, the stage's "
                         "batch_size): OpenRLHF would train no step")
    if hf_folder(model, convert=False) != model:
        log.info("training from %s", hf_folder(model))
