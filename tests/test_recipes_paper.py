"""The paper recipe's evaluation stage: Table 2 (the tag model under each effort), Table 3 (the base model
greedy and sampled, TOPS and the baselines sampled) and one comparison beside the published figures."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from pathlib import Path

import pytest
import yaml

from evals.reference import parse_reference
from evals.run import build_parser
from recipes import tops
from recipes.config import ConfigError, load_config
from recipes.execute import run_plan
from recipes.layout import RunLayout
from recipes.planners import plan_all

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"
PAPER = CONFIGS / "qwen2.5-32b-tops.yaml"


def _eval_args(command) -> dict:
    return vars(build_parser().parse_args(list(command[3:])))


def test_eval_stage_runs_tables_2_and_3_then_compares(tmp_path):
    recipe = load_config(PAPER, {"run_dir": str(tmp_path)})
    (plan,) = plan_all(recipe, ["eval"])
    *runs, comparison = plan.commands
    by_out = {Path(_eval_args(c)["output"]).name: _eval_args(c) for c in runs}
    tag = by_out["tag"]
    assert tag["model"] == str(RunLayout(tmp_path).model("tag")) and tag["efforts"] == ("low", "medium", "high")
    greedy, sampled = by_out["base-greedy"], by_out["base"]
    assert greedy["model"] == sampled["model"] == "Qwen/Qwen2.5-32B-Instruct"
    assert greedy["greedy"] and greedy["n_samples"] is None and greedy["temperature"] is None
    for name in ("base", "teacher", "tops", "random", "iter-sft", "iter-dpo"):
        args = by_out[name]
        assert (args["n_samples"], args["temperature"], args["max_tokens"]) == (5, 1.0, 16384), name
        assert not args["greedy"] and args["efforts"] is None
    assert comparison[1:3] == ("-m", "evals.compare")
    layout = RunLayout(tmp_path)
    assert comparison[3:3 + len(runs)] == tuple(str(layout.eval_run(n).root) for n in by_out)
    assert comparison[-2:] == ("--reference", str(layout.eval_reference))
    assert plan.outputs[-1] == layout.eval_compare.markdown


@pytest.mark.parametrize("config", ["qwen2.5-32b-tops.yaml", "llama3.1-8b-tops.yaml"])
def test_both_paper_configs_evaluate_the_tag_model_per_effort_and_the_base_model_greedy(config, tmp_path):
    (plan,) = plan_all(load_config(CONFIGS / config, {"run_dir": str(tmp_path)}), ["eval"])
    runs = {Path(args["output"]).name: args for args in map(_eval_args, plan.commands[:-1])}
    assert runs["tag"]["efforts"] == ("low", "medium", "high") and runs["base-greedy"]["greedy"]
    assert {"base", "tops", "random", "iter-sft", "iter-dpo"} <= set(runs)


def test_published_figures_are_data_in_the_config():
    recipe = load_config(PAPER)
    reference = parse_reference(recipe.eval.reference)
    rows = {row.run: row for row in reference.rows}
    assert rows["base-greedy"].results["gsm8k"] == {"accuracy": 95.91, "tokens": 295.0}
    assert rows["tops"].results["math500"] == {"accuracy": 91.48, "tokens": 1883.0}
    assert rows["iter-dpo"].results["aime2024"] == {"accuracy": 46.0, "tokens": 6427.0}
    assert set(rows) <= {run.name for run in recipe.eval.models}  # each published row has a run of ours


def test_eval_stage_writes_the_reference_and_the_comparison(tmp_path, monkeypatch):
    """Run the stage with stand-in evaluation commands: the reference file reaches evals.compare."""
    recipe = load_config(PAPER, {"run_dir": str(tmp_path), "eval.models": ["tops"]})
    (plan,) = plan_all(recipe, ["eval"])
    summary = {"model": "m", "results": {"gsm8k": {"default": {"accuracy_mean": 0.5, "accuracy_std": 0.1,
                                                               "tokens_mean": 400.0, "n_samples": 10}}},
               "config": {"n_samples": 5}}
    layout = RunLayout(tmp_path)
    layout.eval_run("tops").root.mkdir(parents=True)
    layout.eval_run("tops").summary.write_text(json.dumps(summary))
    plan = dataclasses.replace(plan, commands=plan.commands[-1:])  # only the comparison
    run_plan(plan, tmp_path / "eval.log")
    text = layout.eval_compare.markdown.read_text()
    assert "| tops | ours | 50.00 ± 10.00 | 400 |" in text
    assert "| Qwen2.5-32B-TOPS (paper) | published | 95.82 | 412 |" in text
    assert json.loads(layout.eval_reference.read_text()) == recipe.eval.reference


def test_eval_of_a_retrained_model_does_not_resume_its_old_samples(tmp_path):
    """evals.run resumes a run directory made with the same settings; the model path stays the same when
    an earlier stage retrains it, so the stage must clear that run first (and only then)."""
    recipe = load_config(PAPER, {"run_dir": str(tmp_path), "eval.models": ["tops"], "eval.reference": {}})
    weights, out = RunLayout(tmp_path).model("tops") / "weights", RunLayout(tmp_path).eval_run("tops").root
    weights.parent.mkdir(parents=True)
    resuming_eval = ("-c", f"import pathlib, shutil; out = pathlib.Path({str(out)!r}); out.mkdir(parents=True, exist_ok=True)\n"
                           f"if not (out / 'samples').exists(): shutil.copy({str(weights)!r}, out / 'samples')")

    def run_stage() -> str:
        (plan,) = plan_all(recipe, ["eval"])
        run_plan(dataclasses.replace(plan, commands=(plan.commands[0][:1] + resuming_eval,)), tmp_path / "eval.log")
        return (out / "samples").read_text()

    weights.write_text("v1")
    assert run_stage() == "v1"
    (out / "report.md").write_text("kept")
    assert run_stage() == "v1" and (out / "report.md").exists()  # same model: resumed, not redone
    weights.write_text("v2")  # tops-sft ran again
    assert run_stage() == "v2"


def test_dry_run_lists_the_tag_model_efforts_base_greedy_and_comparison(tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tops.main(["--config", str(PAPER), "--dry-run", "--stage", "eval", "-o", str(tmp_path)]) == 0
    text, data = out.getvalue(), os.path.abspath("../shared/data")  # data.dir, as every stage reads it
    assert f"--efforts low,medium,high --data-dir {data} --output {tmp_path}/eval/tag" in text
    assert f"--greedy --seed 0 --max-tokens 16384 --data-dir {data} --output {tmp_path}/eval/base-greedy" in text
    assert f"-m evals.compare {tmp_path}/eval/tag {tmp_path}/eval/base-greedy" in text


def test_eval_reads_the_benchmarks_from_data_dir_as_expanded_for_the_other_stages(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_ROOT", str(tmp_path / "bench"))
    recipe = load_config(PAPER, {"run_dir": str(tmp_path), "data.dir": "$BENCH_ROOT/math"})
    (plan,) = plan_all(recipe, ["eval"])
    assert {_eval_args(c)["data_dir"] for c in plan.commands[:-1]} == {str(tmp_path / "bench" / "math")}


@pytest.mark.parametrize(("change", "key"), [
    ({"models": ["tops", "tops"]}, "eval.models"),
    ({"models": [{"model": "tag", "efforts": ["low", "extreme"]}]}, "eval.models[0].efforts[1]"),
    ({"models": [{"model": "x", "count": "words"}]}, "eval.models[0].count"),
    ({"reference": {"source": "s", "rows": [{"model": "M", "gsm8k": {"accuracy": 101}}]}},
     "eval.reference.rows[0].gsm8k.accuracy"),
])
def test_bad_eval_settings_name_the_key(tmp_path, change, key):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"models": {"base": "b", "teacher": "t"}, "eval": change}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
