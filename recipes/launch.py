"""OpenRLHF 0.11 command lines built from the recipe, as run here and as printed for a cluster.

The commands are the ones a user would type on a cluster: `deepspeed [--hostfile …] --module
openrlhf.cli.train_sft|train_dpo …` for SFT and DPO, `ray job submit --address … -- python3 -m
openrlhf.cli.train_ppo_ray …` for RL, `python -m evals.run …` for evaluation. Flags are OpenRLHF's
dotted names (`--data.max_len`); a contract test checks every flag emitted here against the installed
OpenRLHF parsers, so a renamed flag fails a test rather than a job on a cluster.

Plans record and print these upstream commands. On a machine without CUDA, `for_this_machine` runs the
SFT and DPO commands through `recipes.openrlhf_cpu` instead (same module, same flags, rank 0 of 1 on
the CPU); on GPUs every command runs exactly as printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recipes.config import RL, Cluster, Eval, EvalRun, TrainCommon, TrainRun

__all__ = [
    "compare_command",
    "dpo_command",
    "eval_command",
    "flags",
    "for_this_machine",
    "ppo_command",
    "sft_command",
    "with_reward_server",
]


def flags(values: Mapping[str, Any]) -> list[str]:
    """Dotted OpenRLHF flags from a mapping: True -> bare flag, False/None -> omitted, lists -> several values."""
    argv: list[str] = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        argv.append(f"--{name}")
        if value is True:
            continue
        if isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        else:
            argv.append(str(value))
    return argv


def deepspeed_launcher(cluster: Cluster) -> list[str]:
    """`deepspeed [--hostfile H --num_nodes N] --num_gpus G [--master_addr A --master_port P] --module`."""
    argv = [cluster.deepspeed]
    if cluster.hostfile:
        argv += ["--hostfile", cluster.hostfile, "--num_nodes", str(cluster.nodes)]
    argv += ["--num_gpus", str(cluster.gpus_per_node)]
    if cluster.master_addr:
        argv += ["--master_addr", cluster.master_addr]
    if cluster.master_port:
        argv += ["--master_port", str(cluster.master_port)]
    return argv + ["--module"]


def _train_flags(common: TrainCommon, run: TrainRun, output_dir: Path, ckpt_path: Path) -> dict[str, Any]:
    return {
        "train.max_epochs": run.epochs,
        "train.batch_size": run.batch_size,
        "train.micro_batch_size": common.micro_batch_size,
        "train.seed": common.seed,
        "adam.lr": run.lr,
        "data.max_len": common.max_len,
        "data.apply_chat_template": True,
        "ds.zero_stage": common.zero_stage,
        "ds.param_dtype": common.param_dtype,
        "ds.attn_implementation": common.attn_implementation,
        "ds.packing_samples": common.packing,
        "ds.adam_offload": common.adam_offload,
        "model.gradient_checkpointing_enable": common.gradient_checkpointing,
        "ckpt.output_dir": output_dir,
        "ckpt.path": ckpt_path,
        "ckpt.save_steps": common.save_steps,
        "ckpt.load_enable": True,  # resumes from ckpt.path when a checkpoint is there
        "logger.logging_steps": 1,
    }


def sft_command(cluster: Cluster, common: TrainCommon, run: TrainRun, *, model: str, dataset: Path,
                output_dir: Path, ckpt_path: Path) -> list[str]:
    """SFT on our rows (`prompt` messages, `response` assistant message, chat template on)."""
    values = {
        "model.model_name_or_path": model,
        "data.dataset": dataset,
        "data.input_key": "prompt",
        "data.output_key": "response",
        **_train_flags(common, run, output_dir, ckpt_path),
        **common.extra_flags,
        **run.extra_flags,
    }
    return deepspeed_launcher(cluster) + ["openrlhf.cli.train_sft"] + flags(values)


def dpo_command(cluster: Cluster, common: TrainCommon, run: TrainRun, *, model: str, reference: str,
                dataset: Path, output_dir: Path, ckpt_path: Path) -> list[str]:
    """DPO on our pairs; the reference is the TOPS model and `--data.max_len` is raised from OpenRLHF's 512."""
    values = {
        "model.model_name_or_path": model,
        "ref.model_name_or_path": reference,
        "model.beta": run.beta,
        "data.dataset": dataset,
        "data.prompt_key": "prompt",
        "data.chosen_key": "chosen",
        "data.rejected_key": "rejected",
        **_train_flags(common, run, output_dir, ckpt_path),
        **common.extra_flags,
        **run.extra_flags,
    }
    return deepspeed_launcher(cluster) + ["openrlhf.cli.train_dpo"] + flags(values)


def ppo_command(cluster: Cluster, common: TrainCommon, rl: RL, *, model: str, prompts: Path, output_dir: Path,
                ckpt_path: Path, reward_url: str, runtime_env: Mapping[str, Any] | None = None) -> list[str]:
    """`ray job submit [--runtime-env-json …]` of `openrlhf.cli.train_ppo_ray` with our reward function on an
    existing Ray cluster."""
    gpus = {"num_nodes": cluster.nodes, "num_gpus_per_node": cluster.gpus_per_node}
    values: dict[str, Any] = {
        "actor.model_name_or_path": model,
        "actor.num_nodes": gpus["num_nodes"],
        "actor.num_gpus_per_node": gpus["num_gpus_per_node"],
        "ref.num_nodes": gpus["num_nodes"],
        "ref.num_gpus_per_node": gpus["num_gpus_per_node"],
        "vllm.num_engines": rl.vllm_engines,
        "vllm.tensor_parallel_size": rl.vllm_tensor_parallel_size,
        "train.colocate_all": rl.colocate_all,
        "vllm.enable_sleep": rl.colocate_all,
        "ds.enable_sleep": rl.colocate_all,
        "reward.remote_url": reward_url,
        "algo.advantage.estimator": rl.estimator,
        "algo.kl.init_coef": rl.init_kl_coef,
        "algo.kl.use_loss": rl.kl_loss,
        "algo.kl.estimator": rl.kl_estimator if rl.kl_loss else None,
        "rollout.n_samples_per_prompt": rl.n_samples_per_prompt,
        "rollout.batch_size": rl.rollout_batch_size,
        "rollout.temperature": rl.temperature,
        "rollout.max_new_tokens": rl.max_new_tokens,
        "rollout.micro_batch_size": common.micro_batch_size,
        "train.batch_size": rl.train_batch_size,
        "train.micro_batch_size": common.micro_batch_size,
        "train.num_episodes": rl.episodes,
        "train.seed": common.seed,
        "actor.adam.lr": rl.actor_lr,
        "actor.gradient_checkpointing_enable": common.gradient_checkpointing,
        "data.prompt_dataset": prompts,
        "data.input_key": "prompt",
        "data.label_key": "label",
        "data.apply_chat_template": True,
        "data.max_len": rl.max_len,
        "ds.zero_stage": common.zero_stage,
        "ds.param_dtype": common.param_dtype,
        "ds.attn_implementation": common.attn_implementation,
        "ds.packing_samples": common.packing,
        "ds.adam_offload": common.adam_offload,
        "ckpt.output_dir": output_dir,
        "ckpt.path": ckpt_path,
        "ckpt.save_steps": common.save_steps,
        "ckpt.load_enable": True,
        "logger.logging_steps": 1,
        **rl.extra_flags,
    }
    submit = [cluster.ray, "job", "submit", "--address", cluster.ray_address]
    if runtime_env:
        submit += ["--runtime-env-json", json.dumps(runtime_env, sort_keys=True)]
    return submit + ["--", cluster.python, "-m", "openrlhf.cli.train_ppo_ray"] + flags(values)


def with_reward_server(command: Sequence[str], *, port: int, config: Path, python: str = sys.executable) -> list[str]:
    """`command` run beside a shared reward server (`recipes.serve_reward`: started first, stopped after;
    the `{token}` in the command's reward URL is filled in there, never written here)."""
    return [python, "-m", "recipes.serve_reward", "--port", str(port), "--config", str(config), "--", *command]


def eval_command(ev: Eval, run: EvalRun, *, model: str, out_dir: Path, data_dir: str | None = None,
                 python: str = sys.executable) -> list[str]:
    """`python -m evals.run` for one run of the eval stage: the paper's sampling protocol, or
    greedy decoding, under the run's effort prompts and token counting."""
    values: dict[str, Any] = {
        "model": model,
        "backend": ev.backend,
        "benchmarks": ",".join(ev.benchmarks),
        "greedy": run.greedy,
        "n-samples": None if run.greedy else ev.n_samples,
        "temperature": None if run.greedy else ev.temperature,
        "seed": ev.seed,
        "max-tokens": ev.max_tokens,
        "efforts": ",".join(run.efforts) or None,
        "count-tokens": None if run.count == "response" else run.count,
        "limit": ev.limit,
        "data-dir": data_dir,
        "output": out_dir,
    }
    options = [arg for key, value in ev.options.items() for arg in ("--backend-option", f"{key}={value}")]
    return [python, "-m", "evals.run"] + flags(values) + options


def compare_command(run_dirs: Sequence[Path], *, out_dir: Path, reference: Path | None = None,
                    python: str = sys.executable) -> list[str]:
    """`python -m evals.compare` over the eval stage's runs, with published figures beside ours."""
    return [python, "-m", "evals.compare", *map(str, run_dirs), "--output", str(out_dir)] + (
        ["--reference", str(reference)] if reference is not None else [])


def for_this_machine(command: Sequence[str]) -> tuple[list[str], dict[str, str] | None]:
    """(argv, extra environment) that run a planned command here: OpenRLHF SFT/DPO through the CPU layer
    when no CUDA device is present, anything else (and everything on GPUs) unchanged."""
    from recipes import openrlhf_cpu

    argv = [str(part) for part in command]
    if any(part in openrlhf_cpu.CPU_MODULES for part in argv) and not openrlhf_cpu.cuda_available():
        adapted = openrlhf_cpu.cpu_command(argv)
        if adapted is not None:
            return adapted
    return argv, None
