"""The TOPS pipeline (arXiv 2502.18080) as planned stages, one planning function per stage.

    problems -> seed-gen -> seed-curate -> tag-sft -> effort-gen -> judge -> select -> tops-sft [random-sft]
    -> iter-gen -> iter-judge -> iter-select -> iter-sft | iter-dpo -> eval        (rl-data -> rl)

A planner turns the recipe into a `StagePlan` (inputs, outputs, the exact commands, the settings that
decide its result) without running anything, so `--dry-run` prints exactly what a run would do. Data
stages call the library in-process (`recipes.work`); training and evaluation stages launch the real
OpenRLHF / `evals.run` commands (`recipes.launch`). Every path comes from the run's `RunLayout`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from recipes import launch, work
from recipes.config import STAGE_NAMES, ProblemSet, Recipe, TrainRun, config_hash, to_dict
from recipes.execute import reset_stale
from recipes.layout import RunLayout
from recipes.manifest import digest
from recipes.plan import Hooks, RunContext, StagePlan
from tops_plugin.generation.models import hf_folder
from tops_plugin.jsonl import atomic_writer
from tops_plugin.prompts import EFFORTS

__all__ = ["PLANNERS", "plan_all", "plan_stage"]


def _gen_settings(recipe: Recipe, model: str, sets: Sequence[ProblemSet], efforts: Sequence[str | None],
                  n_samples: int, backend: str | None = None) -> dict:
    return {"model": model, "generation": to_dict(recipe.generation), "problems": to_dict(list(sets)),
            "data_dir": recipe.data.dir, "efforts": list(efforts), "n_samples": n_samples,
            **({"backend": backend} if backend else {})}


def _gen_summary(recipe: Recipe, model: str, sets: Sequence[ProblemSet], efforts: Sequence[str | None],
                 n_samples: int, backend: str | None = None) -> str:
    names = ", ".join(s.label for s in sets)
    effort_text = ",".join(e or "none" for e in efforts)
    return (f"generate with {backend or recipe.generation.backend}:{model}, efforts {effort_text}, {n_samples} "
            f"sample(s) per problem, max_tokens {recipe.generation.max_tokens}, temperature "
            f"{recipe.generation.temperature}, from {names}")


def _gen_plan(name: str, recipe: Recipe, hooks: Hooks, *, model: str, sets: Sequence[ProblemSet],
              efforts: Sequence[str | None], n_samples: int, out: Path, model_input: Path | None = None,
              backend: str | None = None) -> StagePlan:
    inputs = tuple(recipe.data_path(s) for s in sets) + ((model_input,) if model_input else ())
    return StagePlan(
        name=name,
        summary=_gen_summary(recipe, model, sets, efforts, n_samples, backend),
        inputs=inputs,
        outputs=(out,),
        work=lambda ctx: work.generate(ctx, recipe, model=model, sets=sets, efforts=efforts, n_samples=n_samples,
                                       out=out, backend_name=backend),
        settings=_gen_settings(recipe, model, sets, efforts, n_samples, backend),
        hooks=hooks,
    )


def _tag_model(recipe: Recipe, layout: RunLayout) -> tuple[str, Path | None]:
    """The tag model and, when this run trains it, its directory (an input to hash)."""
    if recipe.models.tag:
        return recipe.models.tag, None
    return str(layout.model("tag")), layout.model("tag")


def _tops_model(recipe: Recipe, layout: RunLayout) -> tuple[str, Path | None]:
    if recipe.models.tops:
        return recipe.models.tops, None
    return str(layout.model("tops")), layout.model("tops")


def _pool(layout: RunLayout, name: str) -> ProblemSet:
    """The problems stage's pool file `name` (seed, effort, iteration) as a problem set."""
    return ProblemSet(path=str(layout.pool(name)))


def plan_problems(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    """The seed, effort and iteration pools, from local files or hub datasets, disjoint (recipes.problems)."""
    from recipes.problems import build_pools, pool_sets

    pools = {name: sets for name, sets in pool_sets(recipe).items() if sets}
    inputs = tuple(recipe.data_path(s) for sets in pools.values() for s in sets if s.path is not None)
    described = "; ".join(f"{name}: {', '.join(s.label for s in sets)}" for name, sets in pools.items())
    return StagePlan(
        name="problems", summary=f"write disjoint problem pools ({described})", inputs=inputs,
        outputs=tuple(layout.pool(name) for name in pools) + (layout.pools_meta,),
        work=lambda ctx: build_pools(recipe, layout), hooks=hooks,
        settings={"data": to_dict(recipe.data)},
    )


def plan_seed_gen(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    return _gen_plan("seed-gen", recipe, hooks, model=recipe.models.teacher, sets=(_pool(layout, "seed"),),
                     efforts=EFFORTS, n_samples=1, out=layout.seed.generations,
                     backend=recipe.models.teacher_backend)


def plan_seed_curate(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    src, judged, out = layout.seed.generations, layout.seed.judged, layout.seed_sft

    def curate(ctx: RunContext) -> None:
        work.judge(recipe, src, judged)
        work.select_to(recipe, "seed", judged, out)

    return StagePlan(
        name="seed-curate",
        summary=f"judge {src.name}, keep problems correct under all efforts with gaps > "
                f"{recipe.curation.gap_tokens} tokens, write tag-model SFT rows",
        inputs=(src,), outputs=(judged, out), work=curate, hooks=hooks,
        settings={"curation": to_dict(recipe.curation), "tokenizers": _tokenizer_settings(recipe),
                  "verifier_timeout": recipe.verifier.timeout, "checker": _checker_version()},
    )


def _sft_plan(name: str, recipe: Recipe, layout: RunLayout, hooks: Hooks, *, model: str, dataset: Path,
              run: TrainRun, out_name: str, extra_inputs: tuple[Path, ...] = (), unneeded: str | None = None) -> StagePlan:
    final, partial = layout.model(out_name), layout.model_partial(out_name)
    command = launch.sft_command(recipe.cluster, recipe.training.common, run, model=hf_folder(model, convert=False),
                                 dataset=dataset, output_dir=partial, ckpt_path=layout.ckpt(name))
    return StagePlan(
        name=name, summary=f"OpenRLHF SFT of {model} on {dataset.name}", inputs=(dataset, *extra_inputs),
        outputs=(final,), commands=(tuple(command),),
        work=lambda ctx: work.before_training(model, dataset, run.batch_size),
        renames=((partial, final),), ckpt_dir=layout.ckpt(name), unneeded=unneeded, hooks=hooks,
    )


def plan_tag_sft(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    unneeded = f"models.tag is set ({recipe.models.tag}): no tag model to train" if recipe.models.tag else None
    return _sft_plan("tag-sft", recipe, layout, hooks, model=recipe.models.base,
                     dataset=layout.seed_sft, run=recipe.training.tag_sft, out_name="tag",
                     unneeded=unneeded)


def plan_effort_gen(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    model, model_dir = _tag_model(recipe, layout)
    return _gen_plan("effort-gen", recipe, hooks, model=model, sets=(_pool(layout, "effort"),),
                     efforts=EFFORTS, n_samples=1, out=layout.effort.generations,
                     model_input=model_dir)


def _checker_version() -> str:
    from tops_plugin.judging.rows import checker_version

    return checker_version()


def _tokenizer_settings(recipe: Recipe) -> dict:
    """What decides a selection besides its input: the tokenizers and the trainer's length limit."""
    return {"curation": recipe.models.curation_tokenizer, "chat": recipe.models.chat_tokenizer,
            "max_len": recipe.training.common.max_len}


def _judge_plan(name: str, recipe: Recipe, hooks: Hooks, src: Path, dst: Path) -> StagePlan:
    return StagePlan(
        name=name, summary=f"judge {src} with the verifier ({recipe.verifier.timeout:g} s per item)",
        inputs=(src,), outputs=(dst,), work=lambda ctx: work.judge(recipe, src, dst), hooks=hooks,
        settings={"verifier_timeout": recipe.verifier.timeout, "checker": _checker_version()},
    )


def plan_judge(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    return _judge_plan("judge", recipe, hooks, layout.effort.generations, layout.effort.judged)


def plan_select(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    judged, seed = layout.effort.judged, layout.seed_sft
    modes = ("shortest", "random") if recipe.selection.random else ("shortest",)
    outs = tuple(layout.selected(mode) for mode in modes)
    add_seed = recipe.selection.add_seed_low

    def select(ctx: RunContext) -> None:
        for mode, out in zip(modes, outs):
            work.select_to(recipe, mode, judged, out, seed=seed if add_seed else None)

    return StagePlan(
        name="select",
        summary=f"select per problem: {' and '.join(modes)} correct response"
                + (" + the low-effort seed responses" if add_seed else ""),
        inputs=(judged, seed) if add_seed else (judged,), outputs=outs, work=select, hooks=hooks,
        settings={"selection": to_dict(recipe.selection), "tokenizers": _tokenizer_settings(recipe)},
    )


def plan_tops_sft(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    unneeded = f"models.tops is set ({recipe.models.tops}): no TOPS model to train" if recipe.models.tops else None
    return _sft_plan("tops-sft", recipe, layout, hooks, model=recipe.models.base,
                     dataset=layout.selected("shortest"), run=recipe.training.tops_sft,
                     out_name="tops", unneeded=unneeded)


def plan_random_sft(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    unneeded = None if recipe.selection.random else "selection.random is false: no Random baseline"
    return _sft_plan("random-sft", recipe, layout, hooks, model=recipe.models.base,
                     dataset=layout.selected("random"), run=recipe.training.tops_sft,
                     out_name="random", unneeded=unneeded)


def plan_iter_gen(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    model, model_dir = _tops_model(recipe, layout)
    plan = _gen_plan("iter-gen", recipe, hooks, model=model, sets=(_pool(layout, "iteration"),), efforts=(None,),
                     n_samples=recipe.iteration.samples, out=layout.iteration.generations,
                     model_input=model_dir)
    if not recipe.data.iteration:
        return dataclasses.replace(plan, unneeded="data.iteration lists no problem files")
    return plan


def plan_iter_judge(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    return _judge_plan("iter-judge", recipe, hooks, layout.iteration.generations, layout.iteration.judged)


def plan_iter_select(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    judged = layout.iteration.judged
    modes = tuple(f"iter-{m}" for m in recipe.iteration.methods)
    outs = tuple(layout.iteration_data(m) for m in recipe.iteration.methods)

    def select(ctx: RunContext) -> None:
        for mode, out in zip(modes, outs):
            work.select_to(recipe, mode, judged, out)

    return StagePlan(
        name="iter-select", summary=f"select {' and '.join(modes)} data from the TOPS model's samples",
        inputs=(judged,), outputs=outs, work=select, hooks=hooks,
        settings={"selection": to_dict(recipe.selection), "tokenizers": _tokenizer_settings(recipe)},
    )


def plan_iter_sft(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    model, model_dir = _tops_model(recipe, layout)
    unneeded = None if "sft" in recipe.iteration.methods else "iteration.methods leaves out sft"
    return _sft_plan("iter-sft", recipe, layout, hooks, model=model, dataset=layout.iteration_data("sft"),
                     run=recipe.training.iter_sft, out_name="iter-sft",
                     extra_inputs=(model_dir,) if model_dir else (), unneeded=unneeded)


def plan_iter_dpo(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    model, model_dir = _tops_model(recipe, layout)
    dataset = layout.iteration_data("dpo")
    final, partial = layout.model("iter-dpo"), layout.model_partial("iter-dpo")
    trained = hf_folder(model, convert=False)
    command = launch.dpo_command(recipe.cluster, recipe.training.common, recipe.training.iter_dpo, model=trained,
                                 reference=trained, dataset=dataset, output_dir=partial,
                                 ckpt_path=layout.ckpt("iter-dpo"))
    return StagePlan(
        name="iter-dpo", summary=f"OpenRLHF DPO of {model} (reference: itself) on {dataset.name}",
        inputs=(dataset, *((model_dir,) if model_dir else ())), outputs=(final,), commands=(tuple(command),),
        work=lambda ctx: work.before_training(model, dataset, recipe.training.iter_dpo.batch_size),
        renames=((partial, final),), ckpt_dir=layout.ckpt("iter-dpo"), hooks=hooks,
        unneeded=None if "dpo" in recipe.iteration.methods else "iteration.methods leaves out dpo",
    )


def _eval_model(recipe: Recipe, layout: RunLayout, name: str) -> tuple[str, Path | None]:
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


def plan_eval(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    """`evals.run` per entry of `eval.models` (Table 2: the tag model under each effort; Table 3: the base
    model greedy and sampled, TOPS and the baselines sampled), then one comparison in the paper's layout
    with the published figures of `eval.reference` beside ours."""
    ev = recipe.eval
    commands, inputs, run_dirs, model_dirs = [], [], [], []
    for run in ev.models:
        model, model_dir = _eval_model(recipe, layout, run.model)
        out_dir = layout.eval_run(run.name).root
        commands.append(tuple(launch.eval_command(ev, run, model=model, out_dir=out_dir,
                                                  data_dir=str(recipe.data_root()))))
        inputs += [model_dir] if model_dir else []
        run_dirs.append(out_dir)
        model_dirs.append(model_dir)
    reference = layout.eval_reference if ev.reference else None
    commands.append(tuple(launch.compare_command(run_dirs, out_dir=layout.eval_compare.root, reference=reference)))

    def prepare(ctx: RunContext) -> None:
        # evals.run resumes a run directory whose settings match, and a retrained model keeps its path:
        # samples of the model's earlier weights must go first, as must every run's when forced.
        for command, out_dir, model_dir in zip(commands, run_dirs, model_dirs):
            reset_stale(out_dir, config_hash([list(command[1:]), model_dir and digest(model_dir)]), ctx.fresh,
                         keep_unmarked=True)
        if reference is not None:
            with atomic_writer(reference, "w") as handle:
                json.dump(ev.reference, handle, indent=2)

    return StagePlan(
        name="eval",
        summary=f"evaluate {', '.join(run.name for run in ev.models)} on {', '.join(ev.benchmarks)}, then compare"
                + (" with the published figures" if reference else ""),
        inputs=tuple(inputs),
        outputs=tuple(layout.eval_run(run.name).summary for run in ev.models) + (layout.eval_compare.markdown,),
        commands=tuple(commands), work=prepare, hooks=hooks,
        settings={"reference": ev.reference},
    )


def _rl_start_model(recipe: Recipe, layout: RunLayout) -> tuple[str, Path | None]:
    """The model RL starts from. A local folder is named absolutely: the Ray job runs in its own folder."""
    model, model_dir = (recipe.rl.model, None) if recipe.rl.model else _tops_model(recipe, layout)
    local = Path(model).expanduser()
    return (os.path.abspath(local) if local.exists() else model), model_dir


def plan_rl_data(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    """RL prompts whose labels carry `ref_tokens`, the shortest known correct length: from this run's
    iteration samples, or from a generation pass of the starting model over the prompts."""
    from recipes import rl

    out, meta = layout.rl_prompts, layout.rl_prompts_meta
    source = recipe.rl.ref_tokens
    sets = recipe.rl.prompts
    inputs = [recipe.data_path(s) for s in sets if s.path is not None]
    outputs = [out, meta]
    judged: list[Path] = []
    if source == "iteration":
        judged = [layout.iteration.judged]
        inputs += judged
    model, model_dir = _rl_start_model(recipe, layout)
    reference = layout.rl_reference
    if source == "generate":
        judged = [reference.judged]
        inputs += [model_dir] if model_dir else []
        outputs += [reference.generations, reference.judged]

    def write_prompts(ctx: RunContext) -> None:
        if source == "generate":
            work.generate(ctx, recipe, model=model, sets=sets, efforts=(None,), n_samples=recipe.rl.ref_samples,
                          out=reference.generations)
            work.judge(recipe, reference.generations, reference.judged)
        references = rl.reference_lengths(judged) if judged else {}
        rl.write_rl_prompts(work.read_problems(recipe, sets), out, references, ref_source=source, meta_path=meta)

    where = {"iteration": "the iteration samples' shortest correct length",
             "generate": f"the shortest correct of {recipe.rl.ref_samples} samples of {model}",
             "none": "no reference length"}[source]
    return StagePlan(
        name="rl-data", summary=f"write RL prompts (chat messages + label {{answer, ref_tokens}}: {where})",
        inputs=tuple(inputs), outputs=tuple(outputs), work=write_prompts, hooks=hooks,
        settings={"prompts": to_dict(list(sets)), "data_dir": recipe.data.dir, "ref_tokens": source,
                  **({"generation": _gen_settings(recipe, model, sets, (None,), recipe.rl.ref_samples),
                      "verifier_timeout": recipe.verifier.timeout} if source == "generate" else {})},
    )


def plan_rl(recipe: Recipe, layout: RunLayout, hooks: Hooks) -> StagePlan:
    """`ray job submit` of OpenRLHF's PPO trainer with the thinking-optimal reward: the job folder (reward
    file + config) and `tops_plugin` reach every node through the job's runtime environment."""
    from recipes import rl

    model, model_dir = _rl_start_model(recipe, layout)
    prompts = layout.rl_prompts
    final, partial = layout.model("rl"), layout.model_partial("rl")
    job_dir = layout.rl_job_dir
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


PLANNERS: dict[str, Callable[[Recipe, RunLayout, Hooks], StagePlan]] = {
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
    return PLANNERS[name](recipe, RunLayout(Path(recipe.run_dir).resolve()), hooks or Hooks())


def plan_all(recipe: Recipe, names: Sequence[str], hooks: Hooks | None = None) -> list[StagePlan]:
    """Plans for `names`, in pipeline order."""
    return [plan_stage(n, recipe, hooks) for n in STAGE_NAMES if n in names]
