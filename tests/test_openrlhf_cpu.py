"""OpenRLHF's SFT and DPO trainers on CPU through `recipes.openrlhf_cpu`: what the layer patches, when the
launcher uses it, and a few real training steps whose saved model loads."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipes import launch, openrlhf_cpu
from recipes.config import Cluster, Eval, EvalRun, TrainCommon, TrainRun
from recipes.execute import run_command

REPO = Path(__file__).resolve().parent.parent
needs_trainer_stack = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("deepspeed", "openrlhf", "peft")),
    reason="the CPU training stack (deepspeed, peft, openrlhf) is not installed")
CPU_COMMON = TrainCommon(max_len=256, zero_stage=2, packing=False, gradient_checkpointing=False,
                         attn_implementation="sdpa", adam_offload=True, micro_batch_size=4)


def _sft(tmp_path: Path, common: TrainCommon = CPU_COMMON) -> list[str]:
    return launch.sft_command(Cluster(gpus_per_node=1), common, TrainRun(1e-4, 4, 1), model="m",
                              dataset=tmp_path / "d.jsonl", output_dir=tmp_path / "out", ckpt_path=tmp_path / "ck")


def test_cpu_command_runs_the_same_module_and_flags_as_rank_0_of_1(tmp_path):
    command = _sft(tmp_path)
    argv, env = openrlhf_cpu.cpu_command(command, python="py")
    module_at = command.index("openrlhf.cli.train_sft")
    assert argv == ["py", "-m", "recipes.openrlhf_cpu", *command[module_at:]]
    assert env["DS_ACCELERATOR"] == "cpu" and (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("0", "1", "0")
    assert env["MASTER_ADDR"] == "127.0.0.1" and 0 < int(env["MASTER_PORT"]) < 65536
    evaluation = launch.eval_command(Eval(), EvalRun("tops"), model="m", out_dir=tmp_path)
    assert openrlhf_cpu.cpu_command(evaluation) is None


def test_launcher_uses_the_layer_only_without_cuda(tmp_path, monkeypatch):
    command = _sft(tmp_path)
    monkeypatch.setattr(openrlhf_cpu, "cuda_available", lambda: True)
    assert launch.for_this_machine(command) == (command, None)  # GPUs: the upstream command, unchanged
    monkeypatch.setattr(openrlhf_cpu, "cuda_available", lambda: False)
    argv, env = launch.for_this_machine(command)
    assert argv[1:3] == ["-m", "recipes.openrlhf_cpu"] and env["DS_ACCELERATOR"] == "cpu"
    evaluation = launch.eval_command(Eval(), EvalRun("tops"), model="m", out_dir=tmp_path)
    assert launch.for_this_machine(evaluation) == (evaluation, None)


def test_flags_the_cpu_cannot_honour_are_refused_by_name(tmp_path):
    openrlhf_cpu.check_flags(_sft(tmp_path)[_sft(tmp_path).index("openrlhf.cli.train_sft") + 1:])
    with pytest.raises(ValueError, match="--ds.packing_samples"):
        openrlhf_cpu.check_flags(["--ds.packing_samples", "--ds.attn_implementation", "sdpa"])
    with pytest.raises(ValueError, match="flash_attention_2"):
        openrlhf_cpu.check_flags(["--ds.attn_implementation", "flash_attention_2"])
    with pytest.raises(ValueError, match="default flash_attention_2"):
        openrlhf_cpu.check_flags([])
    result = subprocess.run([sys.executable, "-m", "recipes.openrlhf_cpu", "openrlhf.cli.train_sft",
                             "--ds.packing_samples"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "--ds.packing_samples needs FlashAttention" in result.stderr
    assert "Traceback" not in result.stderr


PATCH_CHECK = """
import importlib.util, torch
from recipes.openrlhf_cpu import install_patches
install_patches()
install_patches()  # idempotent
assert importlib.util.find_spec("flash_attn") is not None  # transformers probes with find_spec
from flash_attn.bert_padding import pad_input
from flash_attn.utils.distributed import all_gather
try:
    pad_input()
except RuntimeError as exc:
    assert "needs CUDA" in str(exc)
else:
    raise AssertionError("a stub must fail loudly when called")
torch.cuda.set_device(0)
torch.cuda.synchronize()
assert torch.cuda.current_device() == "cpu"
import openrlhf.models  # imports flash_attn at module level
from openrlhf.models import ring_attn_utils
print("ok")
"""


@needs_trainer_stack
def test_patches_let_openrlhf_models_import_and_cuda_calls_pass():
    result = subprocess.run([sys.executable, "-c", PATCH_CHECK], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


@pytest.mark.parametrize(("busy_percent", "threads"), [(0.0, 2), (20.0, 2), (30.0, 1), (100.0, 1)])
def test_training_takes_the_cores_idle_at_start_at_least_one(monkeypatch, busy_percent, threads):
    import psutil

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: busy_percent)
    assert openrlhf_cpu.training_threads() == threads


@needs_trainer_stack
def test_build_ops_leaves_deepspeeds_cpu_ops_in_the_extension_cache():
    """`make install` runs this so that no training run compiles them (minutes with g++ on first use)."""
    result = subprocess.run([sys.executable, "-m", "recipes.openrlhf_cpu", "--build-ops"], capture_output=True,
                            text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "DeepSpeed CPU ops ready: CPUAdamBuilder, ShareMemCommBuilder" in result.stdout
    cache = Path(openrlhf_cpu.extensions_dir())  # this environment's own folder, unless TORCH_EXTENSIONS_DIR says
    assert os.environ.get("TORCH_EXTENSIONS_DIR") or cache == Path(sys.prefix) / "torch_extensions"
    for op in ("cpu_adam", "deepspeed_shm_comm"):
        assert list(cache.glob(f"**/{op}/{op}.so")), f"{op} not built under {cache}"


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _train(command: list[str], log: Path) -> None:
    argv, env = launch.for_this_machine(command)
    assert argv[1:3] == ["-m", "recipes.openrlhf_cpu"]  # these tests run where no CUDA device is present
    run_command("train", argv, log, env={**env, "OMP_NUM_THREADS": "2"})


@needs_trainer_stack
@pytest.mark.slow
def test_sft_then_dpo_train_for_real_on_cpu_and_the_models_load(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from tops_plugin.generation.models import build_tiny_qwen2

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the CPU layer is not used")
    base = build_tiny_qwen2(tmp_path / "base")
    problems = [(f"What is {a} + {b}?", str(a + b)) for a, b in zip(range(1, 9), range(3, 11))]
    sft = _write_rows(tmp_path / "sft.jsonl", [
        {"prompt": [{"role": "user", "content": q}], "response": [{"role": "assistant", "content": f"\\boxed{{{a}}}"}]}
        for q, a in problems])
    dpo = _write_rows(tmp_path / "dpo.jsonl", [
        {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": f"\\boxed{{{a}}}"}],
         "rejected": [{"role": "assistant", "content": "Let me think about it for a long while. \\boxed{0}"}]}
        for q, a in problems])
    cluster, run = Cluster(gpus_per_node=1), TrainRun(1e-3, 4, 1)
    _train(launch.sft_command(cluster, CPU_COMMON, run, model=base, dataset=sft, output_dir=tmp_path / "sft-out",
                              ckpt_path=tmp_path / "ck-sft"), tmp_path / "sft.log")
    log = (tmp_path / "sft.log").read_text()
    assert "gpt_loss" in log  # OpenRLHF's own progress line: steps ran
    _train(launch.dpo_command(cluster, CPU_COMMON, TrainRun(1e-3, 4, 1, beta=0.1), model=str(tmp_path / "sft-out"),
                              reference=str(tmp_path / "sft-out"), dataset=dpo, output_dir=tmp_path / "dpo-out",
                              ckpt_path=tmp_path / "ck-dpo"), tmp_path / "dpo.log")
    assert "chosen_reward" in (tmp_path / "dpo.log").read_text()  # DPO steps ran
    before = AutoModelForCausalLM.from_pretrained(base)
    for trained in ("sft-out", "dpo-out"):
        model = AutoModelForCausalLM.from_pretrained(tmp_path / trained)
        changed = any(not torch.equal(p, q) for p, q in zip(before.state_dict().values(), model.state_dict().values()))
        assert changed, f"{trained}: the saved weights equal the base model's"
