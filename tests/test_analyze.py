"""evals.analyze on a small samples file whose figures are computed by hand below."""

from __future__ import annotations

import json

import pytest

from evals.analysis import AnalysisConfig, analyze, load_samples
from evals.analyze import main
from evals.layout import AnalysisFiles
from tops_plugin.jsonl import JsonlError, write_jsonl
from tops_plugin.rounds.judge import RoundJudge

# Rounds of each response (see tests/test_rounds.py for the splitter's rules):
#   A  p1 low     100 tok  correct  1 round  (4)                       0 erroneous
#   B  p1 high    300 tok  wrong    3 rounds (5, 4, 5)                 2 erroneous
#   C  p2 high    200 tok  correct  2 rounds (6, 10) in <think>        1 erroneous
#   D  p2 default  50 tok  wrong    0 rounds
#   E  p3 low     120 tok  correct  2 rounds (7, 7)                    0 erroneous
#   F  g1 low      80 tok  correct  1 round  (18)                      0 erroneous  (gsm8k)
ROWS = [
    {"id": "p1", "benchmark": "math500", "level": 1, "effort": "low", "answer": "4", "tokens": 100,
     "correct": True, "response": "2 + 2 = 4. The answer is \\boxed{4}."},
    {"id": "p1", "benchmark": "math500", "level": 1, "effort": "high", "answer": "4", "tokens": 300,
     "correct": False,
     "response": "2 + 2 = 5. So \\boxed{5}.\nWait, let me check: 2 + 2 = 4, \\boxed{4}.\nHmm, but maybe \\boxed{5}."},
    {"id": "p2", "benchmark": "math500", "level": 2, "effort": "high", "answer": "10", "tokens": 200,
     "correct": True,
     "response": "<think>So 3 + 3 = 6.\nWait, I misread: so 5 + 5 = 10.\nLet me verify: 10 - 5 = 5, so that is "
                 "consistent.</think>\nThe answer is \\boxed{10}."},
    {"id": "p2", "benchmark": "math500", "level": "Level 2", "effort": None, "answer": "10", "tokens": 50,
     "correct": False, "response": "I don't know."},
    {"id": "p3", "benchmark": "math500", "level": 2, "effort": "low", "answer": "7", "tokens": 120,
     "correct": True, "response": "So x = 7.\nAlternatively, solving again gives x = 7."},
    {"id": "g1", "benchmark": "gsm8k", "effort": "low", "answer": "18", "tokens": 80, "correct": True,
     "response": "She has 16 - 3 - 4 = 9 eggs. So she makes 9 * 2 = 18 dollars."},
]


@pytest.fixture(scope="module")
def result():
    return analyze([dict(row) for row in ROWS], config=AnalysisConfig(length_bins=2))


def test_rounds_by_effort(result):
    analysis, records = result
    assert [(r["rounds"], r["erroneous_rounds"]) for r in records] == [(1, 0), (3, 2), (2, 1), (0, 0), (2, 0), (1, 0)]
    by_effort = analysis["by_effort"]
    assert list(by_effort) == ["default", "low", "high"]  # one order everywhere: baseline first
    low, high, default = by_effort["low"], by_effort["high"], by_effort["default"]
    # Correct final answers only (the paper's restriction).
    assert (low["responses"], low["rounds_mean"], low["erroneous_rounds_mean"], low["erroneous_ratio"]) == (
        3, pytest.approx(4 / 3), 0.0, 0.0)
    assert (high["responses"], high["rounds_mean"], high["erroneous_rounds_mean"], high["erroneous_ratio"]) == (
        1, 2.0, 1.0, 0.5)
    assert (default["responses"], default["rounds_mean"], default["erroneous_ratio"]) == (0, None, None)
    # All responses.
    assert (high["all"]["responses"], high["all"]["rounds_mean"], high["all"]["erroneous_rounds_mean"],
            high["all"]["erroneous_ratio"]) == (2, 2.5, 1.5, 0.6)
    assert (default["all"]["responses"], default["all"]["rounds_mean"], default["all"]["erroneous_ratio"]) == (
        1, 0.0, None)
    assert (low["accuracy"], high["accuracy"], default["accuracy"]) == (1.0, 0.5, 0.0)
    # Per benchmark; the figure over both is labelled as pooled.
    assert analysis["benchmarks"] == {
        "gsm8k": {"responses": 1, "problems": 1, "accuracy": 1.0},
        "math500": {"responses": 5, "problems": 3, "accuracy": 0.6},
    }
    assert analysis["pooled"] == {"over": ["gsm8k", "math500"], "responses": 6, "accuracy": pytest.approx(4 / 6)}
    assert "accuracy" not in analysis


def test_rounds_by_benchmark_and_level(result):
    analysis, _ = result
    assert analysis["by_benchmark"]["gsm8k"]["low"]["rounds_mean"] == 1.0
    math = analysis["by_benchmark"]["math500"]
    assert math["low"]["rounds_mean"] == 1.5 and math["low"]["responses"] == 2
    levels = analysis["by_level"]["math500"]
    assert list(levels) == ["1", "2"]  # 2 and "Level 2" are one level
    assert levels["1"]["high"]["all"]["erroneous_rounds_mean"] == 2.0 and levels["1"]["high"]["responses"] == 0
    assert set(levels["2"]) == {"low", "high", "default"}
    assert "gsm8k" not in analysis["by_level"]


def test_length_bins_and_effort_accuracy(result):
    analysis, _ = result
    math = analysis["length_accuracy"]["math500"]
    # Lengths 50, 100, 120, 200, 300: quantile edges 50, 120, 300.
    assert [(b["lo"], b["hi"], b["n"], b["accuracy"]) for b in math["bins"]] == [
        (50, 120, 2, 0.5), (120, 300, 3, pytest.approx(2 / 3))]
    assert math["by_effort"]["high"] == {"n": 2, "accuracy": 0.5, "tokens_mean": 250.0, "tokens_median": 250.0}
    assert analysis["length_accuracy"]["gsm8k"]["bins"] == [
        {"lo": 80, "hi": 80, "n": 1, "correct": 1, "accuracy": 1.0, "ci95": [pytest.approx(0.2065, abs=1e-4), 1.0],
         "tokens_mean": 80.0}]
    # Every bin carries its n and a Wilson 95% interval around its accuracy.
    for cell in math["bins"]:
        low, high = cell["ci95"]
        assert 0 <= low < cell["accuracy"] < high <= 1 and cell["correct"] == round(cell["accuracy"] * cell["n"])


def test_optimal_effort_per_level(result):
    analysis, _ = result
    optimal = analysis["optimal_effort"]["math500"]
    assert optimal["all"]["best_effort"] == "low" and optimal["all"]["accuracy"] == {
        "low": 1.0, "high": 0.5, "default": 0.0}
    assert optimal["1"]["best_effort"] == "low"
    # Level 2: low and high both 100%; the shorter one (low, 120 tokens vs 200) wins the tie.
    assert optimal["2"]["accuracy"]["high"] == optimal["2"]["accuracy"]["low"] == 1.0
    assert (optimal["2"]["best_effort"], optimal["2"]["best_tokens_mean"]) == ("low", 120.0)


def test_shorter_correct_longer_wrong(result):
    analysis, _ = result
    share = analysis["shorter_correct_longer_wrong"]
    # p1: correct 100 < wrong 300 (counts); p2: correct 200 > wrong 50 (the reverse); p3: one response.
    assert share["math500"] == {
        "problems": 2, "mixed_problems": 2, "shorter_correct_longer_wrong": 1, "share": 0.5,
        "share_of_mixed": 0.5, "longer_correct_shorter_wrong": 1, "share_reverse": 0.5}
    assert share["gsm8k"]["problems"] == 0 and share["gsm8k"]["share"] is None
    assert share["all"]["shorter_correct_longer_wrong"] == 1


def test_llm_judge_figures_beside_the_splitter():
    def complete(messages):
        if "I don't know" in messages[1]["content"]:
            return "no idea"
        return '{"rounds": 2, "erroneous_rounds": 1}'

    analysis, records = analyze([dict(row) for row in ROWS], judge=RoundJudge(complete, "fake"))
    high = analysis["by_effort"]["high"]
    assert high["llm_judge"] == {"judged": 1, "unjudged": 0, "rounds_mean": 2.0, "erroneous_rounds_mean": 1.0,
                                 "erroneous_ratio": 0.5}
    assert analysis["by_effort"]["default"]["all"]["llm_judge"]["unjudged"] == 1
    assert records[3]["llm_judge"]["judged"] is False
    assert analysis["config"]["judge_model"] == "fake"


def test_missing_tokens_and_verdicts_are_filled(tmp_path, capsys):
    # Row b's count and verdict are kept (a wrong verdict on a right answer: not judged again).
    rows = [{"id": "a", "answer": "4", "response": "So the answer is \\boxed{4}."},
            {"id": "b", "answer": "4", "response": "The answer is \\boxed{4}.", "tokens": 9, "correct": False}]
    write_jsonl(tmp_path / "samples.jsonl", rows)
    assert main([str(tmp_path), "--out", str(tmp_path / "out"), "--no-plots", "--workers", "1"]) == 0
    assert "counted tokens of 1 and judged 1 responses that lacked them" in capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert isinstance(records[0]["tokens"], int) and records[0]["tokens"] > 5 and records[1]["tokens"] == 9
    assert (records[0]["correct"], records[1]["correct"]) == (True, False)
    with pytest.raises(ValueError, match="lack 'tokens' or 'correct'"):
        analyze([{"id": "c", "answer": "1", "response": "1"}])


def test_bad_rows_are_named_by_file_and_line(tmp_path, capsys):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"id": "x", "answer": "1"}) + "\n")
    with pytest.raises(JsonlError, match=r"samples.jsonl:2: missing key\(s\) 'response'"):
        load_samples(tmp_path)
    assert main([str(path), "-o", str(tmp_path / "out")]) == 2
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(dict(ROWS[1], tokens="300")) + "\n")
    with pytest.raises(JsonlError, match=r"samples.jsonl:3: 'tokens' is not a non-negative integer: '300'"):
        load_samples(path)
    write_jsonl(path, ROWS)
    assert main([str(path), "-o", str(tmp_path / "out"), "--round-judge", "openai"]) == 2  # no model
    assert not (tmp_path / "out" / "analysis.json").exists()
    write_jsonl(path, [{key: v for key, v in ROWS[0].items() if key != "tokens"}])  # tokens to count
    assert main([str(path), "--out", str(tmp_path / "out"), "--tokenizer", str(tmp_path / "none.json")]) == 2
    assert "--tokenizer: tokenizer path" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_cli_writes_analysis_report_and_plots(tmp_path):
    run = tmp_path / "run"
    write_jsonl(run / "samples.jsonl", ROWS)
    out = tmp_path / "analysis"
    assert main([str(run), "-o", str(out), "--bins", "2", "--workers", "1"]) == 0
    analysis = json.loads((out / "analysis.json").read_text())
    cell = analysis["by_effort"]["high"]
    assert {"responses", "rounds_mean", "erroneous_rounds_mean", "erroneous_ratio"} <= set(cell)
    assert (cell["responses"], cell["erroneous_ratio"], cell["all"]["erroneous_ratio"]) == (1, 0.5, 0.6)
    assert analysis["source"] == str(run / "samples.jsonl")
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["rounds"] for r in records] == [1, 3, 2, 0, 2, 1]
    assert [span["verdict"] for span in records[1]["round_spans"]] == ["wrong", "correct", "wrong"]
    report = (out / "report.md").read_text()
    assert "| MATH500 | 5 | 3 | 60.0% |" in report and "| *pooled over GSM8K, MATH500* | 6 | - | 66.7% |" in report
    assert "## Rounds by effort, pooled over GSM8K, MATH500" in report and "| high | 2 | 50.0% |" in report
    assert "| MATH500 | 50–120 | 2 | 50.0% | 9–91% |" in report  # length bins with n and the 95% interval
    assert "## Effort that maximises accuracy per difficulty" in report
    for name in ("rounds_by_effort.png", "accuracy_by_effort.png", "accuracy_by_length.png", "accuracy_by_level.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report
    files = AnalysisFiles(out)  # every file written is one the layout names
    assert set(out.iterdir()) == {files.analysis, files.rounds, files.report, files.rounds_by_effort_plot,
                                  files.accuracy_by_effort_plot, files.accuracy_by_length_plot,
                                  files.accuracy_by_level_plot}


def test_cli_equation_modes(tmp_path):
    path = tmp_path / "samples.jsonl"
    write_jsonl(path, ROWS)
    out = tmp_path / "none"
    assert main([str(path), "-o", str(out), "--equations", "none", "--no-plots", "--workers", "1"]) == 0
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    # Only boxed and phrased answers end rounds: C's think block and E's and F's equations no longer do
    # (C falls back to its boxed summary).
    assert [r["rounds"] for r in records] == [1, 3, 1, 0, 0, 0]
    assert not list(out.glob("*.png"))
    assert json.loads((out / "analysis.json").read_text())["config"]["equation_answers"] is False
