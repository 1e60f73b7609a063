"""evals.metrics and evals.benchmarks: pure functions checked against hand-computed values."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from evals import metrics
from evals.benchmarks import BENCHMARKS, BenchmarkError, gsm8k_gold, load_benchmark, load_benchmarks
from tops_plugin.tokens import o1_hidden_tokens


def exact_pass_at_k(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # c/n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 3, 0.9),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (5, 2, 4, 1.0),  # fewer wrong samples than k
        (10, 0, 5, 0.0),
        (100, 1, 10, 0.1),  # one correct among 100: k/n
        (16, 16, 8, 1.0),
    ],
)
def test_pass_at_k_known_values(n, c, k, expected):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_exact_binomials_for_large_n():
    for n, c, k in [(1000, 10, 100), (64, 3, 32), (200, 150, 7)]:
        assert metrics.pass_at_k(n, c, k) == pytest.approx(exact_pass_at_k(n, c, k), rel=1e-9)


def test_pass_at_k_rejects_impossible_inputs():
    with pytest.raises(ValueError):
        metrics.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        metrics.pass_at_k(4, 2, 5)


def test_mean_pass_at_k_and_default_ks():
    assert metrics.mean_pass_at_k([(2, 1), (2, 2), (2, 0)], 1) == pytest.approx(0.5)
    assert metrics.mean_pass_at_k([(2, 1), (2, 2), (2, 0)], 2) == pytest.approx(2 / 3)
    assert metrics.default_ks(1) == [1]
    assert metrics.default_ks(5) == [1, 2, 4, 5]
    assert metrics.default_ks(16) == [1, 2, 4, 8, 16]


def _row(pid, sample, correct, tokens, verdict=None, **extra):
    return {"id": pid, "sample": sample, "correct": correct, "tokens": tokens,
            "verdict": verdict or ("correct" if correct else "wrong"), **extra}


def test_accuracy_std_is_population_std_over_sample_indices():
    rows = [_row("a", 0, True, 1), _row("b", 0, True, 1), _row("a", 1, False, 1), _row("b", 1, False, 1)]
    mean, std, per_sample = metrics.accuracy_over_samples(rows)
    assert per_sample == {0: 1.0, 1: 0.0}
    assert mean == 0.5
    assert std == 0.5  # population std; the sample std would be 0.707
    # One seed (greedy): defined, zero.
    assert metrics.accuracy_over_samples(rows[:2])[1] == 0.0


def test_summarize_hand_computed():
    rows = [
        _row("p1", 0, True, 4, level=1), _row("p1", 1, False, 2, level=1),
        _row("p2", 0, True, 2, level=1), _row("p2", 1, True, 7, level=1, truncated=True),
        _row("p3", 0, False, 1, level=2), _row("p3", 1, False, 5, "no_answer", level=2, finish_reason="length"),
    ]
    result = metrics.summarize(rows, n_problems_expected=4)
    assert result["n_problems"] == 3 and result["n_samples"] == 6 and result["n_problems_missing"] == 1
    assert result["accuracy_mean"] == pytest.approx(0.5)
    assert result["accuracy_std"] == pytest.approx(1 / 6)
    assert result["pass_at_k"] == {"1": pytest.approx(0.5), "2": pytest.approx(2 / 3)}
    assert result["tokens_mean"] == pytest.approx(3.5)
    assert result["tokens_median"] == pytest.approx(3.0)
    assert result["tokens_correct_mean"] == pytest.approx(13 / 3)
    assert result["tokens_wrong_mean"] == pytest.approx(8 / 3)
    # p2/1 is marked truncated by the judge (an unclosed thought), p3/1 by its finish_reason.
    assert result["truncated"] == 2 and result["truncated_share"] == pytest.approx(2 / 6)
    assert result["truncated_correct"] == 1
    assert result["verdicts"] == {"correct": 3, "wrong": 2, "no_answer": 1, "timeout": 0, "error": 0}
    assert result["by_level"]["1"] == {"n_problems": 2, "n_samples": 4, "accuracy": 0.75, "tokens_mean": 3.75}
    assert result["problem_ids"] == ["p1", "p2", "p3"] and result["n_problems_expected"] == 4
    levels = metrics.summarize(rows, n_problems_expected=4, level_totals={"1": 2, "2": 2})["by_level"]
    assert levels["1"]["n_problems_expected"] == 2 and levels["2"]["n_problems"] == 1
    assert result["by_level"]["2"]["accuracy"] == 0.0
    assert "o1_estimate" not in result


def test_levels_are_read_one_way_whatever_their_spelling():
    # MATH stores "Level 3"; local copies store 3: one level, named "3", in numeric order (10 after 9).
    assert [metrics.level_name(v) for v in (3, "3", "Level 3", " level 3 ", None, True, "")] == [
        "3", "3", "3", "3", None, None, None]
    rows = [_row("p1", 0, True, 4, level="Level 10"), _row("p2", 0, True, 2, level=2),
            _row("p3", 0, False, 6, level="Level 2"), _row("p4", 0, True, 1)]
    table = metrics.by_level(rows, level_totals={"2": 3})
    assert list(table) == ["2", "10"]
    assert table["2"] == {"n_problems": 2, "n_samples": 2, "accuracy": 0.5, "tokens_mean": 4.0,
                          "n_problems_expected": 3}


def test_o1_estimate_on_the_papers_worked_numbers():
    # o1-mini, MATH500: API reasoning tokens 1122.07 on average, estimate 1110.88. The estimate scales the
    # API count by the Qwen2.5/API token ratio of the visible summary (here 1110.88 / 1122.07).
    for api, published in [(1122.07, 1110.88), (4861.87, 4972.08)]:
        summary_api = 400.0
        summary_qwen = summary_api * published / api
        assert o1_hidden_tokens(summary_qwen, api + summary_api, api) == pytest.approx(published, abs=0.01)


def test_o1_estimate_averages_per_response_and_skips_unusable_usage():
    rows = [
        _row("a", 0, True, 99, usage={"completion_tokens": 1100, "completion_tokens_details": {"reasoning_tokens": 1000}}),
        _row("b", 0, True, 300, usage={"completion_tokens": 5300, "reasoning_tokens": 5000}),
        _row("c", 0, True, 50, usage={"completion_tokens": 70, "reasoning_tokens": 70}),  # no visible part
        _row("d", 0, True, 50),  # open model: no usage
    ]
    estimate = metrics.o1_estimate(rows)
    assert estimate["n_samples"] == 2
    assert estimate["hidden_tokens_mean"] == pytest.approx((990 + 5000) / 2)
    assert estimate["visible_tokens_mean"] == pytest.approx(199.5)
    assert estimate["api_reasoning_tokens_mean"] == pytest.approx(3000)
    assert metrics.o1_estimate(rows[2:]) is None


def test_gsm8k_gold_takes_number_after_hashes():
    assert gsm8k_gold("She makes 9 * 2 = $18.\n#### 18") == "18"
    assert gsm8k_gold("#### 2,125") == "2125"
    assert gsm8k_gold("-3") == "-3"


def test_hub_rows_become_problem_rows():
    gsm = BENCHMARKS["gsm8k"].from_hub({"question": "How many?", "answer": "3 + 4 = 7\n#### 7"}, 5)
    assert gsm["id"] == "gsm8k-test-5" and gsm["problem"] == "How many?" and gsm["answer"] == "7"
    assert gsm["solution"].startswith("3 + 4")
    aime = BENCHMARKS["aime2024"].from_hub(
        {"id": 60, "problem": "P", "answer": "204",
         "url": "https://artofproblemsolving.com/wiki/index.php/2024_AIME_I_Problems/Problem_1"}, 0)
    assert aime["id"] == "2024-I-1" and aime["answer"] == "204"


def test_local_registry_files(shared_data_dir):
    loaded = load_benchmarks(["gsm8k", "math500", "aime2024"], shared_data_dir)
    sizes = {item.name: item.total for item in loaded}
    assert sizes == {"gsm8k": 1319, "math500": 500, "aime2024": 30}
    gsm = loaded[0]
    assert gsm.sha256 == "d1428b21e328ea79ac67006293b104178644f861460a842f073d5126b65f07e7"
    assert all("," not in row["answer"] for row in gsm.problems)  # golds are plain numbers
    assert loaded[1].levels and {row["level"] for row in loaded[1].problems} == {1, 2, 3, 4, 5}
    assert [row["id"] for row in load_benchmark("aime2024", shared_data_dir, limit=2).problems] == ["2024-I-1", "2024-I-2"]


def test_any_jsonl_path_is_a_benchmark_and_bad_rows_are_located(tmp_path):
    path = tmp_path / "toy.jsonl"
    path.write_text('{"id": 1, "problem": "1+1", "answer": "2"}\n{"id": 2, "problem": "x"}\n')
    with pytest.raises(Exception) as info:
        load_benchmark(str(path))
    assert f"{path}:2" in str(info.value) and "answer" in str(info.value)
    path.write_text('{"id": 1, "problem": "1+1", "answer": "2"}\n')
    data = load_benchmark(str(path))
    assert data.name == "toy" and data.problems[0]["id"] == "1" and len(data.sha256) == 64


def test_missing_local_copy_offline_gives_a_clear_error(tmp_path, monkeypatch, caplog):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    # A named directory without the file is an error naming both; the hub is not tried.
    with pytest.raises(BenchmarkError) as info:
        load_benchmark("math500", tmp_path)
    assert f"{tmp_path / 'math500.jsonl'} not found" in str(info.value) and "hub unreachable" not in str(info.value)
    # No directory named: the hub is tried, said so, and its failure says what to pass instead.
    with caplog.at_level("WARNING", logger="evals.benchmarks"), pytest.raises(BenchmarkError) as info:
        load_benchmark("math500")
    assert "no --data-dir given, so loading HuggingFaceH4/MATH-500 from the Hugging Face hub" in caplog.text
    assert "hub unreachable" in str(info.value) and "pass --data-dir DIR" in str(info.value)
    with pytest.raises(BenchmarkError, match="unknown benchmark"):
        load_benchmark("no-such-bench", tmp_path)


def test_wilson_interval_against_hand_computed_values():
    # 0 of 3: [0, 0.5615]; 3 of 3: [0.4385, 1]; 8 of 10: [0.4902, 0.9433] (Wilson 1927, z = 1.96).
    low, high = metrics.wilson_interval(0, 3)
    assert low == 0.0 and high == pytest.approx(0.5615, abs=1e-4)
    low, high = metrics.wilson_interval(3, 3)
    assert low == pytest.approx(0.4385, abs=1e-4) and high == 1.0
    low, high = metrics.wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert metrics.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        metrics.wilson_interval(4, 3)
