"""The paper's tables from evaluation runs: thought-only token counting, published reference rows beside
ours, and the by-level view of any benchmark with levels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers

from evals import compare
from evals.config import EvalConfig
from evals.harness import counted_text, run_eval
from evals.reference import ReferenceError, load_reference, parse_reference
from tops_plugin.jsonl import read_jsonl

PROBLEMS = [
    {"id": "p1", "problem": "1+1?", "answer": "2", "level": "easy"},
    {"id": "p2", "problem": "2+3?", "answer": "5", "level": "hard"},
]
# Sky-T1 / STILL-2 shape: 6 thought words, then a 3-word summary.
SKY = ("<|begin_of_thought|> one two three four five six <|end_of_thought|> "
       "<|begin_of_solution|> so \\boxed{2} <|end_of_solution|>")


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def toy(tmp_path):
    bench = _jsonl(tmp_path / "toy.jsonl", PROBLEMS)
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "words.json"))
    responses = _jsonl(tmp_path / "responses.jsonl", [
        {"id": "p1", "response": SKY},
        {"id": "p2", "response": "plain answer \\boxed{4}"},  # no thought block: counted whole
    ])
    return {"bench": str(bench), "tokenizer": str(tmp_path / "words.json"), "responses": str(responses)}


def _run(toy, out: Path, count: str):
    config = EvalConfig(model="sky", backend="responses", benchmarks=(toy["bench"],), out=str(out),
                        responses=toy["responses"], tokenizer=toy["tokenizer"], workers=1, count_tokens=count)
    return run_eval(config)


def test_counted_text_keeps_only_the_thought_part():
    assert counted_text(SKY, "response") == SKY
    assert counted_text(SKY, "thought").split() == "one two three four five six".split()
    assert counted_text("<think>a b</think> final", "thought").split() == ["a", "b"]
    assert counted_text("<think>cut off mid", "thought").split() == ["cut", "off", "mid"]
    assert counted_text("no block at all", "thought") == "no block at all"


def test_thought_counting_is_an_option_recorded_in_the_summary(toy, tmp_path):
    whole = _run(toy, tmp_path / "whole", "response").summary
    thought = _run(toy, tmp_path / "thought", "thought").summary
    assert whole["config"]["count_tokens"] == "response" and thought["config"]["count_tokens"] == "thought"
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "thought" / "samples.jsonl")}
    assert rows["p1"]["tokens"] == 6 and rows["p1"]["response_tokens"] == len(SKY.split())
    assert rows["p2"]["tokens"] == rows["p2"]["response_tokens"] == 3
    assert thought["results"]["toy"]["default"]["tokens_mean"] == (6 + 3) / 2
    assert whole["results"]["toy"]["default"]["tokens_mean"] == (len(SKY.split()) + 3) / 2
    assert "thought part" in (tmp_path / "thought" / "report.md").read_text()
    with pytest.raises(ValueError, match="count-tokens"):
        EvalConfig(model="m", backend="hf", benchmarks=("gsm8k",), out="x", count_tokens="words")


def test_reference_rows_sit_under_our_runs_and_levels_are_compared(toy, tmp_path, capsys):
    _run(toy, tmp_path / "sky", "thought")
    reference = tmp_path / "paper.yaml"
    reference.write_text(yaml.safe_dump({"source": "Some paper, Table 9", "rows": [
        {"model": "Sky-Paper", "run": "sky", "toy": {"accuracy": 77.5, "tokens": 1234}},
        {"model": "Other", "toy": {"accuracy": 10.0}},
    ]}))
    assert compare.main([str(tmp_path / "sky"), "--reference", str(reference), "-o", str(tmp_path / "cmp")]) == 0
    text = (tmp_path / "cmp" / "compare.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    # a thought-only count is marked, as the paper marks it, since #Tokens is then not the whole response
    ours = next(i for i, line in enumerate(lines) if line.startswith("| sky † | ours | 50.00 | 4 |"))
    assert "† #Tokens counts only the thought part" in text
    assert lines[ours + 1] == "| Sky-Paper (paper) | published | 77.50 | 1234 |"
    assert "| Other (paper) | published | 10.00 | - |" in lines
    assert "figures of Some paper, Table 9, not ours" in text
    assert "## toy by level" in text and "| sky | 100.00 | 6 | 0.00 | 3 |" in text  # Leasy Acc, tokens, Lhard…

    reference.write_text(yaml.safe_dump({"source": "x", "rows": [{"model": "M", "toy": {"accuracy": 120}}]}))
    assert compare.main([str(tmp_path / "sky"), "--reference", str(reference), "-o", str(tmp_path / "cmp2")]) == 2
    assert "rows[0].toy.accuracy: must be in [0, 100]" in capsys.readouterr().err


@pytest.mark.parametrize(("data", "key"), [
    ({"rows": [{"model": "M", "b": {"accuracy": 1}}]}, "source"),
    ({"source": "s", "rows": []}, "rows"),
    ({"source": "s", "rows": [{"b": {"accuracy": 1}}]}, "rows[0].model"),
    ({"source": "s", "rows": [{"model": "M"}]}, "rows[0]"),
    ({"source": "s", "rows": [{"model": "M", "b": {"acc": 1}}]}, "rows[0].b.acc"),
    ({"source": "s", "rows": [{"model": "M", "b": {"accuracy": "high"}}]}, "rows[0].b.accuracy"),
])
def test_malformed_reference_names_the_key(data, key):
    with pytest.raises(ReferenceError) as info:
        parse_reference(data)
    assert info.value.key == key


def test_reference_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "ref.json"
    bad.write_text("{not json")
    with pytest.raises(ReferenceError, match="ref.json.*not valid JSON"):
        load_reference(bad)
