"""The TOPS pipeline (arXiv 2502.18080) as stages, each reading and writing files in the run directory.

    problems -> seed-gen -> seed-curate -> tag-sft -> effort-gen -> judge -> select -> tops-sft [random-sft]
    -> iter-gen -> iter-judge -> iter-select -> iter-sft | iter-dpo -> eval        (rl-data -> rl)

A stage is planned first (`StagePlan`: inputs, outputs, the exact commands, the settings that decide
its result) and run later, so `--dry-run` prints exactly what a run would do. Data stages call the
library in-process (generation, the verifier, selection); training and evaluation stages launch the
real OpenRLHF / `evals.run` commands. Outputs appear only when a stage finishes: whole files are
written atomically, generation appends to a `*.partial` file (resumed after a kill) renamed at the end,
and training writes to `DIR.partial`, renamed to `DIR` when OpenRLHF exits cleanly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.layout import CompareFiles, RunFiles
from recipes import launch
from recipes.config import STAGE_NAMES, ProblemSet, Recipe, config_hash, to_dict
from recipes.manifest import digest
from tops_plugin.prompts import EFFORTS
from tops_plugin.generation.models import hf_folder
from tops_plugin.jsonl import atomic_writer, read_jsonl, write_jsonl

__all__ = ["Hooks", "Layout", "RunContext", "StagePlan", "plan_all", "plan_stage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hooks:
    """Callbacks from the command-line layer: generation progress and lines of launched commands."""

    progress: Callable[[str, Any], None] | None = None  # (stage, tops_plugin.generation.ProgressEvent)
    on_line: Callable[[str, str], None] | None = None  # (stage, line)


@dataclass(frozen=True)
class Layout:
    """Where each stage's files live under the run directory."""

    root: Path

    def data(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    def ckpt(self, stage: str) -> Path:
        return self.root / "ckpt" / stage


@dataclass(frozen=True)
class RunContext:
    """What a stage's work gets when it runs: its log, a key naming this exact work (settings and input
    digests; names partial files and checkpoints), and whether to discard earlier partial work."""

    stage: str
    log_path: Path
    key: str
    fresh: bool
    hooks: Hooks


@dataclass(frozen=True)
class StagePlan:
    name: str
    summary: str  # what the stage does, one line
    inputs: tuple[Path, ...] = ()
    outputs: tuple[Path, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()  # external commands, run in order after `work`
    work: Callable[[RunContext], None] | None = None  # in-process part
    renames: tuple[tuple[Path, Path], ...] = ()  # (partial, final) after the commands succeed
    ckpt_dir: Path | None = None  # OpenRLHF checkpoints, kept for resume only while `key` is unchanged
    settings: Any = None  # what decides the result besides inputs and commands
    unneeded: str | None = None  # why `--stage all` leaves it out (e.g. a model given in the config)
    hooks: Hooks = field(default_factory=Hooks)

    @property
    def config_hash(self) -> str:
        return config_hash({"settings": self.settings, "commands": [list(c) for c in self.commands]})

    def command_lines(self) -> list[str]:
        lines = [] if self.work is None else [f"(in-process) {self.summary}"]
        return lines + [shlex.join(c) for c in self.commands]

    def run(self, log_path: Path, fresh: bool = False) -> None:
        key = config_hash([self.config_hash, {str(p): digest(p) for p in self.inputs}])
        ctx = RunContext(self.name, log_path, key, fresh, self.hooks)
        if self.ckpt_dir is not None:
            _reset_stale(self.ckpt_dir, key, fresh)
        for partial, _ in self.renames:  # a killed run's half-saved model; a resumed run saves it again
            if partial.is_dir():
                shutil.rmtree(partial)
        if self.work is not None:
            with _logging_to(log_path):
                self.work(ctx)
        on_line = None if self.hooks.on_line is None else (lambda line: self.hooks.on_line(self.name, line))
        for command in self.commands:
            argv, env = launch.for_this_machine(command)
            launch.run_command(self.name, argv, log_path, env=env, on_line=on_line)
        for partial, final in self.renames:
            _replace(partial, final)


def _reset_stale(ckpt_dir: Path, key: str, fresh: bool, keep_unmarked: bool = False) -> None:
    """Drop resumable work (checkpoints, an evaluation run) done for other settings or inputs (or all,
    when `fresh`); a folder without a key is kept with `keep_unmarked` (its own resume checks decide)."""
    marker = ckpt_dir / "tops-run-key"
    unmarked = not marker.exists() and not keep_unmarked
    if ckpt_dir.exists() and (fresh or unmarked or (marker.exists() and marker.read_text().strip() != key)):
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n")


def _replace(partial: Path, final: Path) -> None:
    if not partial.exists():
        raise FileNotFoundError(f"{partial} was not written")
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(partial, final)


@contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Send library log records (warnings about skipped rows, torn lines…) to the stage log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level, logging.INFO) if old_level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


# --------------------------------------------------------------------------------------------------
# Shared pieces of work
# --------------------------------------------------------------------------------------------------


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
    backend = load_backend(name, model, **(g.options if name == g.backend else {}))
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
    """Every record of `src` with verdict fields added (`tops_plugin.judging`: cut-off responses are judged
    and marked as such), in order, written atomically to `dst`. A malformed record names its line."""
    from tops_plugin.judging import judge_rows
    from tops_plugin.selection import GOLD_KEYS, read_records
    from tops_plugin.verifier import Verifier

    bad: list = []
    with Verifier(workers=recipe.verifier.workers, timeout=recipe.verifier.timeout) as verifier:
        rows = read_records(src, need_verdict=False, skip_bad=True, errors=bad)
        count = write_jsonl(dst, judge_rows(rows, verifier.check_many, gold_keys=GOLD_KEYS))
    for error in bad:
        log.warning("malformed record skipped: %s", error)
    write_judge_meta(dst, src, count, bad)
    log.info("judged %d records -> %s (%d malformed skipped)", count, dst, len(bad))


def write_judge_meta(dst: Path, src: Path, judged: int, bad: Sequence) -> None:
    """`judged.meta.json`: how many records were judged and which were skipped as malformed (file:line and
    reason), so that the selection's own meta file can count every exclusion back to the generations."""
    from tops_plugin.jsonl import atomic_writer
    from tops_plugin.openrlhf import meta_path

    meta = {"input": str(src), "judged": judged, "malformed": len(bad),
            "malformed_rows": [str(error) for error in bad[:1000]]}
    with atomic_writer(meta_path(dst), "w") as handle:
        json.dump(meta, handle, indent=2)
        handle.write("\n")


def judge_meta(judged: Path) -> dict:
    """The judge stage's counts for `judged` (empty for a file judged elsewhere)."""
    from tops_plugin.openrlhf import meta_path

    path = meta_path(judged)
    return json.loads(path.read_text()) if path.is_file() else {}


def select_to(recipe: Recipe, mode: str, src: Path, dst: Path, seed: Path | None = None) -> dict:
    """Run one selection mode over judged records and write the OpenRLHF dataset (with its sidecar);
    with `seed`, the low-effort rows of that curated seed file are added (under the same length limit)."""
    from tops_plugin.openrlhf import write_dataset
    from tops_plugin.selection import SelectionConfig, add_seed_rows, read_records, select

    models, max_len = recipe.models, recipe.training.common.max_len
    config = SelectionConfig(mode=mode, seed=recipe.selection.seed, curation_tokenizer=models.curation_tokenizer,
                             min_gap=recipe.curation.gap_tokens, max_len=max_len,
                             chat_tokenizer=models.chat_tokenizer)
    selection = select(read_records(src), config)
    if seed is not None:
        selection = add_seed_rows(selection, seed, config)
    rows = selection.rows
    stats = selection.stats.to_dict()
    stats["malformed_input_rows"] = judge_meta(src).get("malformed", 0)
    inputs = [src] if seed is None else [src, seed]
    meta = write_dataset(dst, rows, mode=mode, inputs=inputs, curation_tokenizer=models.curation_tokenizer,
                         length_tokenizer=selection.stats.length_tokenizer, stats=stats,
                         config={"seed": recipe.selection.seed, "min_gap": recipe.curation.gap_tokens,
                                 "max_len": max_len})
    if not rows:
        log.warning("%s selection of %s is empty: no problem had a usable response", mode, src)
    log.info("%s: %d rows -> %s", mode, meta["rows"], dst)
    return meta


# --------------------------------------------------------------------------------------------------
# The stages: one planning function each
# --------------------------------------------------------------------------------------------------


def _gen_settings(recipe: Recipe, model: str, sets: Sequence[ProblemSet], efforts, n_samples: int,
                  backend: str | None = None) -> dict:
    return {"model": model, "generation": to_dict(recipe.generation), "problems": to_dict(list(sets)),
            "data_dir": recipe.data.dir, "efforts": list(efforts), "n_samples": n_samples,
            **({"backend": backend} if backend else {})}


def _gen_summary(recipe: Recipe, model: str, sets, efforts, n_samples: int, backend: str | None = None) -> str:
    names = ", ".join(s.label for s in sets)
    effort_text = ",".join(e or "none" for e in efforts)
    return (f"generate with {backend or recipe.generation.backend}:{model}, efforts {effort_text}, {n_samples} sample(s) "
            f"per problem, max_tokens {recipe.generation.max_tokens}, temperature "
            f"{recipe.generation.temperature}, from {names}")


def _gen_plan(name: str, recipe: Recipe, layout: Layout, hooks: Hooks, *, model: str, sets, efforts,
              n_samples: int, out: Path, model_input: Path | None = None, backend: str | None = None) -> StagePlan:
    inputs = tuple(recipe.data_path(s) for s in sets) + ((model_input,) if model_input else ())
    return StagePlan(
        name=name,
        summary=_gen_summary(recipe, model, sets, efforts, n_samples, backend),
        inputs=inputs,
        outputs=(out,),
        work=lambda ctx: generate(ctx, recipe, model=model, sets=sets, efforts=efforts, n_samples=n_samples,
                                  out=out, backend_name=backend),
        settings=_gen_settings(recipe, model, sets, efforts, n_samples, backend),
        hooks=hooks,
    )


def _tag_model(recipe: Recipe, layout: Layout) -> tuple[str, Path | None]:
    """The tag model and, when this run trains it, its directory (an input to hash)."""
    if recipe.models.tag:
        return recipe.models.tag, None
    return str(layout.model("tag")), layout.model("tag")


def _tops_model(recipe: Recipe, layout: Layout) -> tuple[str, Path | None]:
    if recipe.models.tops:
        return recipe.models.tops, None
    return str(layout.model("tops")), layout.model("tops")


def _pool(layout: Layout, name: str) -> ProblemSet:
    """The problems stage's pool file `name` (seed, effort, iteration) as a problem set."""
    return ProblemSet(path=str(layout.data("problems", f"{name}.jsonl")))


def plan_problems(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    """The seed, effort and iteration pools, from local files or hub datasets, disjoint (recipes.problems)."""
    from recipes.problems import POOLS_META, build_pools, pool_sets

    pools = {name: sets for name, sets in pool_sets(recipe).items() if sets}
    inputs = tuple(recipe.data_path(s) for sets in pools.values() for s in sets if s.path is not None)
    out_dir = layout.data("problems")
    described = "; ".join(f"{name}: {', '.join(s.label for s in sets)}" for name, sets in pools.items())
    return StagePlan(
        name="problems", summary=f"write disjoint problem pools ({described})", inputs=inputs,
        outputs=tuple(out_dir / f"{name}.jsonl" for name in pools) + (out_dir / POOLS_META,),
        work=lambda ctx: build_pools(recipe, out_dir), hooks=hooks,
        settings={"data": to_dict(recipe.data)},
    )


def plan_seed_gen(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    return _gen_plan("seed-gen", recipe, layout, hooks, model=recipe.models.teacher, sets=(_pool(layout, "seed"),),
                     efforts=EFFORTS, n_samples=1, out=layout.data("seed", "generations.jsonl"),
                     backend=recipe.models.teacher_backend)


def plan_seed_curate(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    src, judged, out = (layout.data("seed", n) for n in ("generations.jsonl", "judged.jsonl", "sft.jsonl"))

    def work(ctx: RunContext) -> None:
        judge(recipe, src, judged)
        select_to(recipe, "seed", judged, out)

    return StagePlan(
        name="seed-curate",
        summary=f"judge {src.name}, keep problems correct under all efforts with gaps > "
                f"{recipe.curation.gap_tokens} tokens, write tag-model SFT rows",
        inputs=(src,), outputs=(judged, out), work=work, hooks=hooks,
        settings={"curation": to_dict(recipe.curation), "tokenizers": _tokenizer_settings(recipe),
                  "verifier_timeout": recipe.verifier.timeout, "checker": _checker_version()},
    )


def _sft_plan(name: str, recipe: Recipe, layout: Layout, hooks: Hooks, *, model: str, dataset: Path,
              run, out_name: str, extra_inputs: tuple[Path, ...] = (), unneeded: str | None = None) -> StagePlan:
    final = layout.model(out_name)
    partial = final.with_name(final.name + ".partial")
    command = launch.sft_command(recipe.cluster, recipe.training.common, run, model=hf_folder(model, convert=False),
                                 dataset=dataset, output_dir=partial, ckpt_path=layout.ckpt(name))
    return StagePlan(
        name=name, summary=f"OpenRLHF SFT of {model} on {dataset.name}", inputs=(dataset, *extra_inputs),
        outputs=(final,), commands=(tuple(command),), work=_before_training(model, dataset, run.batch_size),
        renames=((partial, final),),
        ckpt_dir=layout.ckpt(name), unneeded=unneeded, hooks=hooks,
    )


def _before_training(model: str, dataset: Path, batch_size: int) -> Callable[[RunContext], None]:
    """Work before a trainer starts: refuse, by name, a dataset smaller than one batch (OpenRLHF drops the
    incomplete batch and dies in `datasets` or in its step arithmetic), and write a GGUF model's or alias's
    converted folder (what OpenRLHF loads)."""

    def work(ctx: RunContext) -> None:
        rows = sum(1 for _ in read_jsonl(dataset))
        if rows == 0:
            raise ValueError(f"{dataset} has no rows: nothing to train (its .meta.json counts what was dropped)")
        if rows < batch_size:
            raise ValueError(f"{dataset} has {rows} rows, fewer than one batch ({batch_size}, the stage's "
                             "batch_size): OpenRLHF would train no step")
        if hf_folder(model, convert=False) != model:
            log.info("training from %s", hf_folder(model))

    return work


def plan_tag_sft(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    unneeded = f"models.tag is set ({recipe.models.tag}): no tag model to train" if recipe.models.tag else None
    return _sft_plan("tag-sft", recipe, layout, hooks, model=recipe.models.base,
                     dataset=layout.data("seed", "sft.jsonl"), run=recipe.training.tag_sft, out_name="tag",
                     unneeded=unneeded)


def plan_effort_gen(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    model, model_dir = _tag_model(recipe, layout)
    return _gen_plan("effort-gen", recipe, layout, hooks, model=model, sets=(_pool(layout, "effort"),),
                     efforts=EFFORTS, n_samples=1, out=layout.data("effort", "generations.jsonl"),
                     model_input=model_dir)


def _checker_version() -> str:
    from tops_plugin.judging import checker_version

    return checker_version()


def _tokenizer_settings(recipe: Recipe) -> dict:
    """What decides a selection besides its input: the tokenizers and the trainer's length limit."""
    return {"curation": recipe.models.curation_tokenizer, "chat": recipe.models.chat_tokenizer,
            "max_len": recipe.training.common.max_len}


def _judge_plan(name: str, recipe: Recipe, hooks: Hooks, src: Path, dst: Path) -> StagePlan:
    return StagePlan(
        name=name, summary=f"judge {src} with the verifier ({recipe.verifier.timeout:g} s per item)",
        inputs=(src,), outputs=(dst,), work=lambda ctx: judge(recipe, src, dst), hooks=hooks,
        settings={"verifier_timeout": recipe.verifier.timeout, "checker": _checker_version()},
    )


def plan_judge(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    return _judge_plan("judge", recipe, hooks, layout.data("effort", "generations.jsonl"),
                       layout.data("effort", "judged.jsonl"))


def plan_select(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    judged = layout.data("effort", "judged.jsonl")
    seed = layout.data("seed", "sft.jsonl")
    modes = ("shortest", "random") if recipe.selection.random else ("shortest",)
    outs = tuple(layout.data("select", f"{mode}.jsonl") for mode in modes)
    add_seed = recipe.selection.add_seed_low

    def work(ctx: RunContext) -> None:
        for mode, out in zip(modes, outs):
            select_to(recipe, mode, judged, out, seed=seed if add_seed else None)

    return StagePlan(
        name="select",
        summary=f"select per problem: {' and '.join(modes)} correct response"
                + (" + the low-effort seed responses" if add_seed else ""),
        inputs=(judged, seed) if add_seed else (judged,), outputs=outs, work=work, hooks=hooks,
        settings={"selection": to_dict(recipe.selection), "tokenizers": _tokenizer_settings(recipe)},
    )


def plan_tops_sft(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    unneeded = f"models.tops is set ({recipe.models.tops}): no TOPS model to train" if recipe.models.tops else None
    return _sft_plan("tops-sft", recipe, layout, hooks, model=recipe.models.base,
                     dataset=layout.data("select", "shortest.jsonl"), run=recipe.training.tops_sft,
                     out_name="tops", unneeded=unneeded)


def plan_random_sft(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    unneeded = None if recipe.selection.random else "selection.random is false: no Random baseline"
    return _sft_plan("random-sft", recipe, layout, hooks, model=recipe.models.base,
                     dataset=layout.data("select", "random.jsonl"), run=recipe.training.tops_sft,
                     out_name="random", unneeded=unneeded)


def plan_iter_gen(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    model, model_dir = _tops_model(recipe, layout)
    plan = _gen_plan("iter-gen", recipe, layout, hooks, model=model, sets=(_pool(layout, "iteration"),), efforts=(None,),
                     n_samples=recipe.iteration.samples, out=layout.data("iter", "generations.jsonl"),
                     model_input=model_dir)
    if not recipe.data.iteration:
        return dataclasses.replace(plan, unneeded="data.iteration lists no problem files")
    return plan


def plan_iter_judge(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    return _judge_plan("iter-judge", recipe, hooks, layout.data("iter", "generations.jsonl"),
                       layout.data("iter", "judged.jsonl"))


def plan_iter_select(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    judged = layout.data("iter", "judged.jsonl")
    modes = tuple(f"iter-{m}" for m in recipe.iteration.methods)
    outs = tuple(layout.data("iter", f"{m.removeprefix('iter-')}.jsonl") for m in modes)

    def work(ctx: RunContext) -> None:
        for mode, out in zip(modes, outs):
            select_to(recipe, mode, judged, out)

    return StagePlan(
        name="iter-select", summary=f"select {' and '.join(modes)} data from the TOPS model's samples",
        inputs=(judged,), outputs=outs, work=work, hooks=hooks,
        settings={"selection": to_dict(recipe.selection), "tokenizers": _tokenizer_settings(recipe)},
    )


def plan_iter_sft(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    model, model_dir = _tops_model(recipe, layout)
    unneeded = None if "sft" in recipe.iteration.methods else "iteration.methods leaves out sft"
    return _sft_plan("iter-sft", recipe, layout, hooks, model=model, dataset=layout.data("iter", "sft.jsonl"),
                     run=recipe.training.iter_sft, out_name="iter-sft",
                     extra_inputs=(model_dir,) if model_dir else (), unneeded=unneeded)


def plan_iter_dpo(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    model, model_dir = _tops_model(recipe, layout)
    dataset = layout.data("iter", "dpo.jsonl")
    final = layout.model("iter-dpo")
    partial = final.with_name(final.name + ".partial")
    trained = hf_folder(model, convert=False)
    command = launch.dpo_command(recipe.cluster, recipe.training.common, recipe.training.iter_dpo, model=trained,
                                 reference=trained, dataset=dataset, output_dir=partial,
                                 ckpt_path=layout.ckpt("iter-dpo"))
    return StagePlan(
        name="iter-dpo", summary=f"OpenRLHF DPO of {model} (reference: itself) on {dataset.name}",
        inputs=(dataset, *((model_dir,) if model_dir else ())), outputs=(final,), commands=(tuple(command),),
        work=_before_training(model, dataset, recipe.training.iter_dpo.batch_size),
        renames=((partial, final),), ckpt_dir=layout.ckpt("iter-dpo"), hooks=hooks,
        unneeded=None if "dpo" in recipe.iteration.methods else "iteration.methods leaves out dpo",
    )


def _eval_model(recipe: Recipe, layout: Layout, name: str) -> tuple[str, Path | None]:
    """A name in `eval.models`: base, teacher, tag, tops, random, iter-sft, iter-dpo, rl — or a path."""
    if name == "base":
        return recipe.models.base, None
    if name == "teacher":
        return recipe.models.teacher, None
    if name == "tag":
        return _tag_model(recipe, layout)
    if name == "tops":
        return _tops_model(recipe, layout)
    if name in ("random", "iter-sft", "iter-dpo", "rl"):
        return str(layout.model(name)), layout.model(name)
    return name, None


def plan_eval(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    """`evals.run` per entry of `eval.models` (Table 2: the tag model under each effort; Table 3: the base
    model greedy and sampled, TOPS and the baselines sampled), then one comparison in the paper's layout
    with the published figures of `eval.reference` beside ours."""
    ev = recipe.eval
    commands, inputs, run_dirs, model_dirs = [], [], [], []
    for run in ev.models:
        model, model_dir = _eval_model(recipe, layout, run.model)
        out_dir = layout.data("eval", run.name)
        commands.append(tuple(launch.eval_command(ev, run, model=model, out_dir=out_dir,
                                                  data_dir=str(recipe.data_root()))))
        inputs += [model_dir] if model_dir else []
        run_dirs.append(out_dir)
        model_dirs.append(model_dir)
    reference = layout.data("eval", "reference.json") if ev.reference else None
    compare_dir = layout.data("eval", "compare")
    commands.append(tuple(launch.compare_command(run_dirs, out_dir=compare_dir, reference=reference)))

    def work(ctx: RunContext) -> None:
        # evals.run resumes a run directory whose settings match, and a retrained model keeps its path:
        # samples of the model's earlier weights must go first, as must every run's when forced.
        for command, out_dir, model_dir in zip(commands, run_dirs, model_dirs):
            _reset_stale(out_dir, config_hash([list(command[1:]), model_dir and digest(model_dir)]), ctx.fresh,
                         keep_unmarked=True)
        if reference is not None:
            with atomic_writer(reference, "w") as handle:
                json.dump(ev.reference, handle, indent=2)

    return StagePlan(
        name="eval",
        summary=f"evaluate {', '.join(run.name for run in ev.models)} on {', '.join(ev.benchmarks)}, then compare"
                + (" with the published figures" if reference else ""),
        inputs=tuple(inputs),
        outputs=tuple(RunFiles(d).summary for d in run_dirs) + (CompareFiles(compare_dir).markdown,),
        commands=tuple(commands), work=work, hooks=hooks,
        settings={"reference": ev.reference},
    )


def _rl_start_model(recipe: Recipe, layout: Layout) -> tuple[str, Path | None]:
    """The model RL starts from. A local folder is named absolutely: the Ray job runs in its own folder."""
    model, model_dir = (recipe.rl.model, None) if recipe.rl.model else _tops_model(recipe, layout)
    local = Path(model).expanduser()
    return (os.path.abspath(local) if local.exists() else model), model_dir


def plan_rl_data(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    """RL prompts whose labels carry `ref_tokens`, the shortest known correct length: from this run's
    iteration samples, or from a generation pass of the starting model over the prompts."""
    from recipes import rl

    out = layout.data("rl", "prompts.jsonl")
    source = recipe.rl.ref_tokens
    sets = recipe.rl.prompts
    inputs = [recipe.data_path(s) for s in sets if s.path is not None]
    outputs = [out, out.with_name(out.name + ".meta.json")]
    judged: list[Path] = []
    if source == "iteration":
        judged = [layout.data("iter", "judged.jsonl")]
        inputs += judged
    model, model_dir = _rl_start_model(recipe, layout)
    generated, ref_judged = layout.data("rl", "ref_generations.jsonl"), layout.data("rl", "ref_judged.jsonl")
    if source == "generate":
        judged = [ref_judged]
        inputs += [model_dir] if model_dir else []
        outputs += [generated, ref_judged]

    def work(ctx: RunContext) -> None:
        if source == "generate":
            generate(ctx, recipe, model=model, sets=sets, efforts=(None,), n_samples=recipe.rl.ref_samples,
                     out=generated)
            judge(recipe, generated, ref_judged)
        references = rl.reference_lengths(judged) if judged else {}
        rl.write_rl_prompts(read_problems(recipe, sets), out, references, ref_source=source)

    where = {"iteration": "the iteration samples' shortest correct length",
             "generate": f"the shortest correct of {recipe.rl.ref_samples} samples of {model}",
             "none": "no reference length"}[source]
    return StagePlan(
        name="rl-data", summary=f"write RL prompts (chat messages + label {{answer, ref_tokens}}: {where})",
        inputs=tuple(inputs), outputs=tuple(outputs), work=work, hooks=hooks,
        settings={"prompts": to_dict(list(sets)), "data_dir": recipe.data.dir, "ref_tokens": source,
                  **({"generation": _gen_settings(recipe, model, sets, (None,), recipe.rl.ref_samples),
                      "verifier_timeout": recipe.verifier.timeout} if source == "generate" else {})},
    )


def plan_rl(recipe: Recipe, layout: Layout, hooks: Hooks) -> StagePlan:
    """`ray job submit` of OpenRLHF's PPO trainer with the thinking-optimal reward: the job folder (reward
    file + config) and `tops_plugin` reach every node through the job's runtime environment."""
    from recipes import rl

    model, model_dir = _rl_start_model(recipe, layout)
    prompts = layout.data("rl", "prompts.jsonl")
    final = layout.model("rl")
    partial = final.with_name(final.name + ".partial")
    job_dir = layout.data("rl", "job")
    reward = recipe.rl.reward_url or rl.REWARD_FILE
    if recipe.rl.reward_url and Path(reward).expanduser().is_file():  # a file of yours: named from any folder
        reward = os.path.abspath(Path(reward).expanduser())
    if recipe.rl.reward_server == "start":
        reward = rl.server_url(recipe.rl.reward_server_host, recipe.rl.reward_server_port)
    env = rl.runtime_env(job_dir, ship_plugin=recipe.rl.ship_plugin, extra=recipe.rl.runtime_env)
    command = launch.ppo_command(recipe.cluster, recipe.training.common, recipe.rl, model=model, prompts=prompts,
                                 output_dir=partial, ckpt_path=layout.ckpt("rl"), reward_url=reward,
                                 runtime_env=env)
    if recipe.rl.reward_server == "start":
        command = launch.with_reward_server(command, port=recipe.rl.reward_server_port,
                                            config=job_dir / rl.REWARD_CONFIG_FILE)
    return StagePlan(
        name="rl", summary=f"OpenRLHF {recipe.rl.estimator} RL of {model} with reward {reward} "
                           f"({recipe.rl.reward.get('mode', 'correct')}), shipped in {job_dir}",
        inputs=(prompts, *((model_dir,) if model_dir else ())), outputs=(final,), commands=(tuple(command),),
        work=lambda ctx: rl.write_job_dir(job_dir, recipe.rl.reward),
        renames=((partial, final),), ckpt_dir=layout.ckpt("rl"), hooks=hooks,
        settings={"reward": recipe.rl.reward},
    )


PLANNERS: dict[str, Callable[[Recipe, Layout, Hooks], StagePlan]] = {
    "problems": plan_problems,
    "seed-gen": plan_seed_gen,
    "seed-curate": plan_seed_curate,
    "tag-sft": plan_tag_sft,
    "effort-gen": plan_effort_gen,
    "judge": plan_judge,
    "select": plan_select,
    "tops-sft": plan_tops_sft,
    "random-sft": plan_random_sft,
    "iter-gen": plan_iter_gen,
    "iter-judge": plan_iter_judge,
    "iter-select": plan_iter_select,
    "iter-sft": plan_iter_sft,
    "iter-dpo": plan_iter_dpo,
    "eval": plan_eval,
    "rl-data": plan_rl_data,
    "rl": plan_rl,
}
assert tuple(PLANNERS) == STAGE_NAMES, "the planner registry must follow recipes.config.STAGE_NAMES"


def plan_stage(name: str, recipe: Recipe, hooks: Hooks | None = None) -> StagePlan:
    if name not in PLANNERS:
        raise KeyError(f"unknown stage {name!r} (stages: {', '.join(STAGE_NAMES)})")
    # Absolute paths: commands run on other nodes and in Ray jobs, whose working directory differs.
    return PLANNERS[name](recipe, Layout(Path(recipe.run_dir).resolve()), hooks or Hooks())


def plan_all(recipe: Recipe, names: Sequence[str], hooks: Hooks | None = None) -> list[StagePlan]:
    """Plans for `names`, in pipeline order."""
    return [plan_stage(n, recipe, hooks) for n in STAGE_NAMES if n in names]
