"""The CPU demo: its generated problem sets, its scripted teacher, and the first stages of the shipped
config run for real (the whole loop is `make demo`; its training and vLLM parts are tested in
test_openrlhf_cpu.py and test_vllm_cpu.py)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import yaml

from recipes import tops
from recipes.demo_problems import ROLES, SolverBackend, make_problems, worked_solution, write_problem_sets
from recipes.layout import RunLayout
from tops_plugin.generation import GenerationRequest
from tops_plugin.jsonl import read_jsonl
from tops_plugin.judging.answers import judge
from tops_plugin.prompts import EFFORTS
from tops_plugin.tokens import count_tokens

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"


def _replay(steps: list[list[str]], start: int) -> int:
    value = start
    for _, equation in steps:
        left, result = equation.split(" = ")
        a, op, b = left.split(" ")
        assert int(a) == value  # each step starts from the previous result
        value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b), "/": int(a) // int(b)}[op]
        assert op != "/" or int(a) % int(b) == 0
        assert value == int(result) and value >= 0
    return value


def test_problems_are_deterministic_graded_and_correct():
    rows = make_problems("test", per_level=5, max_level=4)
    assert rows == make_problems("test", per_level=5, max_level=4)
    assert rows != make_problems("seed", per_level=5, max_level=4)
    assert [r["level"] for r in rows[:8]] == [1, 2, 3, 4, 1, 2, 3, 4]  # interleaved: a prefix covers all levels
    for row in rows:
        assert len(row["steps"]) == row["level"]
        start = int(re.match(r"\w+ has (\d+) ", row["problem"]).group(1))
        assert _replay(row["steps"], start) == int(row["answer"])
        assert all(sentence in row["problem"] for sentence, _ in row["steps"])
    with pytest.raises(ValueError, match="unknown role"):
        make_problems("train", 1)


def test_roles_never_share_a_problem(tmp_path):
    paths = write_problem_sets(tmp_path, {role: 6 for role in ROLES})
    texts = {role: [r["problem"] for r in read_jsonl(path)] for role, path in paths.items()}
    assert all(len(t) == 24 == len(set(t)) for t in texts.values())
    assert len(set().union(*texts.values())) == 24 * len(ROLES)
    again = write_problem_sets(tmp_path / "again", {"test": 6, "seed": 6, "effort": 6, "iter": 6})
    assert (again["test"]).read_bytes() == paths["test"].read_bytes()  # independent of the order asked


def test_scripted_teacher_is_correct_and_longer_with_effort():
    rows = make_problems("seed", per_level=2, max_level=4)
    for row in rows:
        texts = [worked_solution(row, effort) for effort in EFFORTS]
        assert all(judge(text, row["answer"]).correct for text in texts)
        low, medium, high = count_tokens(texts)
        assert low + 5 < medium and medium + 5 < high  # the demo's curation gap is 5 tokens
    backend = SolverBackend()
    records = list(backend.generate([GenerationRequest(rows[0], "low", 2), GenerationRequest({"id": 1, "problem": "x"}, "low")]))
    assert [r["sample"] for r in records] == [0, 1] and records[0]["response"] == worked_solution(rows[0], "low")
    assert backend.errors == [(1, "no `steps`: not a demo problem")]


def _main(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tops.main(argv)
    return code, out.getvalue()


def test_shipped_demo_seeds_and_curates_then_plans_the_loop(tmp_path):
    data = tmp_path / "data"
    write_problem_sets(data, {"seed": 2, "effort": 1, "iter": 1, "test": 1})
    config = yaml.safe_load((CONFIGS / "demo-cpu.yaml").read_text())
    config.update(run_dir=str(tmp_path / "run"))
    config["data"]["dir"] = str(data)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    first = ("problems", "seed-gen", "seed-curate")
    code, text = _main(["--config", str(path), "--stage", ",".join(first)])
    assert code == 0, text
    manifest = json.loads(RunLayout(tmp_path / "run").manifest.read_text())["stages"]
    assert {manifest[s]["status"] for s in first} == {"done"}
    assert all(manifest[s]["seconds"] >= 0 for s in first)
    sft = list(read_jsonl(RunLayout(tmp_path / "run").seed_sft))
    assert len(sft) == 8 * 3  # every problem kept, under each effort: the teacher is right, the gaps wide
    code, text = _main(["--config", str(path), "--stage", ",".join(first)])
    assert "= seed-gen: up to date (skipped)" in text and "= seed-curate: up to date (skipped)" in text

    code, text = _main(["--config", str(path), "--dry-run"])
    assert code == 0
    for stage in ("tag-sft", "effort-gen", "tops-sft", "random-sft", "iter-gen", "iter-sft", "iter-dpo", "eval"):
        assert f"{stage} [dry run] would run" in text
    assert "generate with vllm:" in text and "--ds.attn_implementation sdpa" in text and "--ds.adam_offload" in text
    assert "--ds.packing_samples" not in text
