"""The run directory's file names are a user-facing contract (README, resumed runs, other tools reading a
run): the layout names each file once, and this test pins those names."""

from __future__ import annotations

from pathlib import Path

from recipes.layout import RunLayout


def test_every_file_of_a_run_directory_keeps_its_documented_name():
    root = Path("/runs/r")
    layout = RunLayout(root)
    named = {
        layout.manifest: "manifest.json", layout.log("tag-sft"): "logs/tag-sft.log", layout.lock: ".lock",
        layout.pool("seed"): "problems/seed.jsonl", layout.pools_meta: "problems/meta.json",
        layout.seed.generations: "seed/generations.jsonl", layout.seed.judged: "seed/judged.jsonl",
        layout.seed_sft: "seed/sft.jsonl",
        layout.effort.generations: "effort/generations.jsonl", layout.effort.judged: "effort/judged.jsonl",
        layout.selected("shortest"): "select/shortest.jsonl", layout.selected("random"): "select/random.jsonl",
        layout.iteration.generations: "iter/generations.jsonl", layout.iteration.judged: "iter/judged.jsonl",
        layout.iteration_data("sft"): "iter/sft.jsonl", layout.iteration_data("dpo"): "iter/dpo.jsonl",
        layout.rl_prompts: "rl/prompts.jsonl", layout.rl_prompts_meta: "rl/prompts.jsonl.meta.json",
        layout.rl_reference.generations: "rl/ref_generations.jsonl",
        layout.rl_reference.judged: "rl/ref_judged.jsonl", layout.rl_job_dir: "rl/job",
        layout.eval_run("tops").root: "eval/tops", layout.eval_run("tops").summary: "eval/tops/summary.json",
        layout.eval_reference: "eval/reference.json", layout.eval_compare.markdown: "eval/compare/compare.md",
        layout.model("tag"): "models/tag", layout.model_partial("tag"): "models/tag.partial",
        layout.ckpt("iter-dpo"): "ckpt/iter-dpo",
    }
    for path, name in named.items():
        assert path == root / name
