"""Recipe configs: the shipped files hold the paper's settings; mistakes are named by their key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recipes import tops
from recipes.config import DEFAULT_STAGES, ConfigError, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _minimal(**extra) -> dict:
    return {"models": {"base": "b", "teacher": "t"}, **extra}


def test_qwen_config_holds_the_paper_settings():
    recipe = load_config(CONFIGS / "qwen2.5-32b-tops.yaml")
    t = recipe.training
    assert (t.tag_sft.lr, t.tag_sft.batch_size, t.tag_sft.epochs) == (1e-5, 32, 3)
    assert (t.tops_sft.lr, t.tops_sft.batch_size, t.tops_sft.epochs) == (1e-5, 96, 2)
    assert (t.iter_sft.lr, t.iter_sft.batch_size, t.iter_sft.epochs) == (1e-6, 32, 1)
    assert (t.iter_dpo.lr, t.iter_dpo.batch_size, t.iter_dpo.epochs, t.iter_dpo.beta) == (5e-7, 32, 3, 0.1)
    assert t.common.max_len >= 16384 and t.common.packing and t.common.gradient_checkpointing
    assert t.common.zero_stage == 3
    assert recipe.models.base == "Qwen/Qwen2.5-32B-Instruct" and recipe.models.teacher == "Qwen/QwQ-32B-Preview"
    assert recipe.curation.gap_tokens == 300 and recipe.iteration.samples == 8
    assert recipe.generation.max_tokens == 16384 and recipe.eval.max_tokens == 16384
    assert recipe.cluster.nodes > 1 and recipe.cluster.hostfile
    assert recipe.rl.estimator == "reinforce_baseline"


def test_llama_config_differs_in_model_and_tag_epochs():
    recipe = load_config(CONFIGS / "llama3.1-8b-tops.yaml")
    assert recipe.models.base == "meta-llama/Llama-3.1-8B-Instruct"
    assert recipe.training.tag_sft.epochs == 5
    assert recipe.training.tops_sft.batch_size == 96 and recipe.training.common.max_len >= 16384


def test_demo_config_runs_every_stage_of_the_loop_on_cpu():
    recipe = load_config(CONFIGS / "demo-cpu.yaml")
    assert recipe.generation.backend == "vllm" and recipe.models.teacher_backend == "solver"
    assert recipe.pipeline.print_only == ()
    assert list(recipe.pipeline.stages) == ["problems", "seed-gen", "seed-curate", "tag-sft", "effort-gen", "judge", "select",
                                            "tops-sft", "random-sft", "iter-gen", "iter-judge", "iter-select",
                                            "iter-sft", "iter-dpo", "eval"]
    common = recipe.training.common
    assert (common.attn_implementation, common.packing, common.adam_offload) == ("sdpa", False, True)
    assert [run.model for run in recipe.eval.models] == ["base", "tag", "tops", "random", "iter-sft", "iter-dpo"]


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        (_minimal(training={"tag_sft": {"lrr": 1e-5, "batch_size": 1, "epochs": 1}}), "training.tag_sft.lrr",
         "unknown key"),
        (_minimal(training={"tag_sft": {"lr": "fast", "batch_size": 1, "epochs": 1}}), "training.tag_sft.lr",
         "expected a number"),
        (_minimal(training={"common": {"zero_stage": 5}}), "training.common.zero_stage", "0, 1, 2 or 3"),
        (_minimal(training={"common": {"packing": "yes"}}), "training.common.packing", "true or false"),
        (_minimal(data={"iteration": ["a.jsonl", {"path": "b.jsonl", "limit": 0}]}), "data.iteration[1].limit",
         ">= 1"),
        (_minimal(generation={"backend": "tgi"}), "generation.backend", "one of"),
        (_minimal(cluster={"nodes": 2}), "cluster.hostfile", "required when nodes > 1"),
        (_minimal(rl={"n_samples_per_prompt": 1}), "rl.n_samples_per_prompt", "reinforce_baseline"),
        (_minimal(pipeline={"stages": ["seed-gen", "tag_sft"]}), "pipeline.stages", "tag_sft"),
        ({"models": {"base": "b"}}, "models.teacher", "is required"),
        ({"model": {"base": "b", "teacher": "t"}}, "model", "unknown key"),
    ],
)
def test_validation_error_names_the_key(tmp_path, data, key, words):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ") and words in message


def test_not_a_mapping_and_bad_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level"):
        load_config(path)


def test_defaults_overrides_and_yaml_float_strings(tmp_path):
    path = _write(tmp_path, _minimal(training={"tag_sft": {"lr": "1e-5", "batch_size": 2, "epochs": 1}}))
    recipe = load_config(path, {"generation.max_tokens": 64, "selection.seed": 3})
    assert recipe.training.tag_sft.lr == 1e-5  # PyYAML reads 1e-5 as a string
    assert recipe.generation.max_tokens == 64 and recipe.selection.seed == 3
    assert recipe.pipeline.stages == DEFAULT_STAGES and "rl" not in recipe.pipeline.stages
    assert recipe.training.tops_sft.batch_size == 96  # untouched sections keep the paper's values


def test_cli_reports_config_errors_with_exit_2(tmp_path, capsys):
    path = _write(tmp_path, _minimal(verifier={"timeout": -1}))
    assert tops.main(["--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "verifier.timeout" in err and "must be > 0" in err
    ok = _write(tmp_path, _minimal())
    assert tops.main(["--config", str(ok), "--stage", "seed-gen,nope", "--dry-run"]) == 2
    assert "nope" in capsys.readouterr().err
    assert tops.main(["--config", str(ok), "--set", "generation.top_p=2", "--dry-run"]) == 2
    assert "generation.top_p" in capsys.readouterr().err
