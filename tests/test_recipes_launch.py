"""Contract with the installed OpenRLHF 0.11.2: every flag a recipe emits exists in its CLI parser and
parses with the value we give it; plus --dry-run output.

The CLI modules import GPU-only packages (deepspeed, flash-attn) at the top, so instead of importing
them we execute only the argument-parser part of their `if __name__ == "__main__":` block.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib.util
import io
from pathlib import Path

import pytest

from recipes import tops
from recipes.config import STAGE_NAMES, load_config
from recipes.layout import RunLayout
from recipes.planners import plan_all

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"
MODULES = ("openrlhf.cli.train_sft", "openrlhf.cli.train_dpo", "openrlhf.cli.train_ppo_ray")


def openrlhf_parser(module: str) -> argparse.ArgumentParser:
    """The module's ArgumentParser, rebuilt from its source without importing the module."""
    spec = importlib.util.find_spec("openrlhf")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("openrlhf is not installed")
    path = Path(spec.submodule_search_locations[0], *module.split(".")[1:]).with_suffix(".py")
    tree = ast.parse(path.read_text(), str(path))
    main = next(node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))
    body = []
    for statement in main.body:
        if "parse_args" in ast.unparse(statement):
            break
        body.append(statement)
    namespace = {"argparse": argparse, "datetime": datetime.datetime}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace["parser"]


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return {module: openrlhf_parser(module) for module in MODULES}


def test_parsers_are_the_real_ones(parsers):
    flags = {m: {s for a in p._actions for s in a.option_strings} for m, p in parsers.items()}
    assert "--data.apply_chat_template" in flags["openrlhf.cli.train_sft"]
    assert "--ref.model_name_or_path" in flags["openrlhf.cli.train_dpo"]
    assert "--actor.adam.lr" in flags["openrlhf.cli.train_ppo_ray"]  # built in a for loop over prefixes
    assert "--data.apply_chat_template_x" not in flags["openrlhf.cli.train_sft"]


def _openrlhf_commands(config: Path, run_dir: Path) -> list[tuple[str, list[str]]]:
    recipe = load_config(config, {"run_dir": str(run_dir)})
    found = []
    for plan in plan_all(recipe, STAGE_NAMES):
        for command in plan.commands:
            module = next((part for part in command if part in MODULES), None)
            if module is not None:
                found.append((module, list(command[command.index(module) + 1:])))
    return found


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_emitted_flag_exists_and_parses(config, parsers, tmp_path):
    commands = _openrlhf_commands(CONFIGS / config, tmp_path)
    assert {module for module, _ in commands} == set(MODULES)  # SFT, DPO and the RL recipe are all covered
    for module, argv in commands:
        parser = parsers[module]
        known = {s for a in parser._actions for s in a.option_strings}
        unknown = [arg for arg in argv if arg.startswith("--") and arg not in known]
        assert not unknown, f"{config}: {module} has no flag(s) {unknown}"
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                args = parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{config}: {module} rejects {argv}: {stderr.getvalue()}")
        values = vars(args)
        if module.endswith("train_dpo"):
            assert values["ref.model_name_or_path"] == values["model.model_name_or_path"]
            assert values["data.max_len"] > 512  # OpenRLHF's DPO default is far too short for reasoning
            assert values["data.chosen_key"] == "chosen" and values["data.apply_chat_template"]
        if module.endswith("train_sft"):
            assert values["data.input_key"] == "prompt" and values["data.output_key"] == "response"
        if module.endswith("train_ppo_ray"):
            assert values["reward.remote_url"].endswith("reward_func.py")
            assert values["algo.advantage.estimator"] == "reinforce_baseline"
            assert values["data.label_key"] == "label" and values["rollout.n_samples_per_prompt"] > 1


def test_paper_numbers_reach_the_commands(tmp_path, parsers):
    by_output = {}
    recipe = load_config(CONFIGS / "qwen2.5-32b-tops.yaml", {"run_dir": str(tmp_path)})
    for plan in plan_all(recipe, ["tag-sft", "tops-sft", "iter-sft", "iter-dpo", "rl"]):
        command = list(plan.commands[0])
        module = next(part for part in command if part in MODULES)
        by_output[plan.name] = vars(parsers[module].parse_args(command[command.index(module) + 1:]))
        if plan.name != "rl":
            assert command[:7] == ["deepspeed", "--hostfile", "hostfile", "--num_nodes", "4", "--num_gpus", "8"]
    assert [by_output["tag-sft"][k] for k in ("adam.lr", "train.batch_size", "train.max_epochs")] == [1e-5, 32, 3]
    assert [by_output["tops-sft"][k] for k in ("adam.lr", "train.batch_size", "train.max_epochs")] == [1e-5, 96, 2]
    assert [by_output["iter-sft"][k] for k in ("adam.lr", "train.batch_size", "train.max_epochs")] == [1e-6, 32, 1]
    assert [by_output["iter-dpo"][k] for k in ("adam.lr", "train.batch_size", "train.max_epochs")] == [5e-7, 32, 3]
    assert by_output["iter-dpo"]["model.beta"] == 0.1
    llama = load_config(CONFIGS / "llama3.1-8b-tops.yaml", {"run_dir": str(tmp_path)})
    (tag,) = plan_all(llama, ["tag-sft"])
    args = vars(parsers["openrlhf.cli.train_sft"].parse_args(tag.commands[0][tag.commands[0].index("--module") + 2:]))
    assert [args[k] for k in ("adam.lr", "train.batch_size", "train.max_epochs")] == [1e-5, 32, 5]  # LLaMA: 5 epochs
    assert by_output["tops-sft"]["model.model_name_or_path"] == "Qwen/Qwen2.5-32B-Instruct"  # the BASE model
    assert by_output["iter-dpo"]["ref.model_name_or_path"] == str(RunLayout(tmp_path).model("tops"))
    for name in ("tag-sft", "tops-sft", "iter-dpo"):
        args = by_output[name]
        assert args["ds.zero_stage"] == 3 and args["ds.packing_samples"] and args["data.max_len"] >= 16384
        assert args["model.gradient_checkpointing_enable"] and args["ckpt.output_dir"].endswith(".partial")
    assert by_output["rl"]["actor.model_name_or_path"] == str(RunLayout(tmp_path).model("tops"))


def test_dry_run_lists_commands_and_outputs_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tops.main(["--config", str(CONFIGS / "qwen2.5-32b-tops.yaml"), "--dry-run", "-o", str(run_dir)])
    text = out.getvalue()
    assert code == 0
    for stage in ("seed-gen", "seed-curate", "tag-sft", "effort-gen", "judge", "select", "tops-sft", "random-sft",
                  "iter-gen", "iter-judge", "iter-select", "iter-sft", "iter-dpo", "eval"):
        assert f"{stage} [dry run] would run (never run)" in text
    assert "rl " not in text  # the RL recipe is not part of the pipeline unless asked for
    assert "deepspeed --hostfile hostfile --num_nodes 4 --num_gpus 8 --module openrlhf.cli.train_dpo" in text
    assert f"--ref.model_name_or_path {run_dir}/models/tops" in text
    assert "-m evals.run --model Qwen/Qwen2.5-32B-Instruct --backend vllm --benchmarks gsm8k,math500,aime2024" in text
    for written in ("seed/generations.jsonl", "seed/sft.jsonl", "select/shortest.jsonl", "select/random.jsonl",
                    "iter/dpo.jsonl", "models/iter-dpo", "eval/tops/summary.json"):
        assert f"writes: {run_dir}/{written}" in text
    assert not run_dir.exists()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tops.main(["--config", str(CONFIGS / "qwen2.5-32b-tops.yaml"), "--dry-run", "--stage", "rl-data,rl",
                          "-o", str(run_dir)]) == 0
    assert "ray job submit --address http://127.0.0.1:8265 --runtime-env-json" in out.getvalue()
    assert "-- python3 -m openrlhf.cli.train_ppo_ray" in out.getvalue()


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_eval_commands_parse_with_evals_run(config, tmp_path):
    from evals.run import build_parser

    recipe = load_config(CONFIGS / config, {"run_dir": str(tmp_path)})
    (plan,) = plan_all(recipe, ["eval"])
    *runs, comparison = plan.commands
    assert len(runs) == len(recipe.eval.models)
    for command, run in zip(runs, recipe.eval.models):
        assert list(command[1:3]) == ["-m", "evals.run"]
        args = build_parser().parse_args(list(command[3:]))
        assert args.backend == recipe.eval.backend and args.greedy == run.greedy
        assert args.n_samples == (None if run.greedy else recipe.eval.n_samples)
        assert args.max_tokens == recipe.eval.max_tokens
        assert args.output == str(RunLayout(tmp_path).eval_run(run.name).root)
    assert list(comparison[1:3]) == ["-m", "evals.compare"]
