"""Reward shaping, label and query parsing, config, and the Scorer with the real verifier pool."""

from __future__ import annotations

import json
import time

import pytest

from tops_plugin.judging.answers import Verdict
from tops_plugin.reward.scorer import (
    CONFIG_ENV,
    LOG_KEYS,
    REWARD_MODES,
    Judged,
    Label,
    RewardConfig,
    Scorer,
    load_config,
    parse_label,
    response_text,
)

PROMPT = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
    "<|im_start|>user\nWhat is 6 times 7?<|im_end|>\n<|im_start|>assistant\n"
)
HOSTILE = "Multiply out the tower. The answer is $\\boxed{9^{9^{9^{9}}}}$"


def query(response: str, eos: str = "<|im_end|>") -> str:
    return PROMPT + response + eos


# ------------------------------------------------------------------------------------------------ labels


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("42", Label("42")),
        (42, Label("42")),
        ("\\frac{1}{2}", Label("\\frac{1}{2}")),
        ("{1, 2}", Label("{1, 2}")),  # set notation, not JSON
        ('{"answer": "\\\\frac{1}{2}", "ref_tokens": 310}', Label("\\frac{1}{2}", 310)),
        ('{"answer": 7}', Label("7")),
        ({"answer": "7", "ref_tokens": 12.0}, Label("7", 12)),
        ('{"x": 1}', Label('{"x": 1}')),  # an object without "answer" is not ours: keep the text
    ],
)
def test_parse_label_accepts_gold_strings_and_objects(label, expected):
    assert parse_label(label) == expected


@pytest.mark.parametrize(
    "label",
    [
        None,
        True,
        ["7"],
        {"ref_tokens": 3},
        {"answer": "7", "ref_tokens": -1},
        '{"answer": "7", "ref_tokens": "many"}',
    ],
)
def test_parse_label_rejects_what_has_no_usable_answer(label):
    with pytest.raises(ValueError):
        parse_label(label)


# ----------------------------------------------------------------------------------------------- queries


def test_response_text_cuts_prompt_and_special_tokens():
    assert (
        response_text(query("So it is \\boxed{42}.", "<|im_end|><|endoftext|>"), PROMPT)
        == "So it is \\boxed{42}."
    )


def test_response_text_without_matching_prompt_uses_last_assistant_turn():
    truncated_prompt = PROMPT[40:]  # OpenRLHF left-truncates long prompts: the given prompt is no prefix
    text = "noise " + PROMPT + "The answer is 42<|im_end|>"
    assert response_text(text, "something else") == "The answer is 42"
    assert response_text(query("x = 1"), truncated_prompt) == "x = 1"


def test_response_text_removes_tokens_anywhere_and_keeps_plain_text():
    assert response_text("a<|im_start|>b</s>c", None) == "abc"
    assert response_text("plain answer 5", "") == "plain answer 5"


# -------------------------------------------------------------------------------------------------- modes


def judged(verdict: str, ref: int | None = None, tokens: int | None = None) -> Judged:
    return Judged(Verdict(verdict, "1"), Label("1", ref), tokens)


def test_correct_mode_is_binary():
    reward = REWARD_MODES["correct"](RewardConfig()).reward
    assert [reward(judged(v)) for v in ("correct", "wrong", "no_answer", "timeout", "error")] == [
        1,
        0,
        0,
        0,
        0,
    ]


def test_thinking_optimal_formula():
    mode = REWARD_MODES["thinking_optimal"](RewardConfig(mode="thinking_optimal", floor=0.5))
    assert mode.needs_tokens
    assert mode.reward(judged("correct", ref=100, tokens=100)) == pytest.approx(1.0)
    assert mode.reward(judged("correct", ref=100, tokens=50)) == pytest.approx(
        1.0
    )  # shorter than known: capped
    assert mode.reward(judged("correct", ref=100, tokens=200)) == pytest.approx(0.75)
    assert mode.reward(judged("correct", ref=100, tokens=400)) == pytest.approx(0.625)
    assert mode.reward(judged("correct", ref=100, tokens=10**7)) >= 0.5
    assert mode.reward(judged("correct", ref=None, tokens=500)) == 1.0  # no reference: plain correctness
    for verdict in ("wrong", "no_answer", "timeout", "error"):
        assert mode.reward(judged(verdict, ref=100, tokens=10)) == 0.0  # a short wrong answer gains nothing
    lengths = [50, 100, 150, 300, 1000, 5000]
    rewards = [mode.reward(judged("correct", ref=100, tokens=n)) for n in lengths]
    assert rewards == sorted(rewards, reverse=True) and min(rewards) > 0.0


def test_thinking_optimal_tolerance_and_floor():
    mode = REWARD_MODES["thinking_optimal"](RewardConfig(mode="thinking_optimal", floor=0.2, tolerance=0.1))
    assert mode.reward(judged("correct", ref=100, tokens=110)) == pytest.approx(1.0)
    assert mode.reward(judged("correct", ref=100, tokens=220)) == pytest.approx(0.2 + 0.8 * 0.5)


# ------------------------------------------------------------------------------------------------- config


def test_load_config_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "reward.yaml"
    path.write_text("mode: thinking_optimal\nfloor: 0.3\ntimeout: 2.5\nspecial_tokens: ['<eos>']\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    config = load_config()
    assert (config.mode, config.floor, config.timeout, config.special_tokens) == (
        "thinking_optimal",
        0.3,
        2.5,
        ("<eos>",),
    )
    monkeypatch.delenv(CONFIG_ENV)
    assert load_config() == RewardConfig()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("mood: correct\n", "mood"),
        ("mode: longest\n", "longest"),
        ("floor: 2\n", "floor"),
        ("- 1\n", "mapping"),
    ],
)
def test_load_config_names_file_and_problem(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_config(path)
    assert str(path) in str(info.value) and needle in str(info.value)


# ------------------------------------------------------------------------------------ scorer (stand-in)


class ListChecker:
    """Stand-in verifier: returns preset verdicts and records what it was asked."""

    def __init__(self, verdicts):
        self.verdicts, self.seen = list(verdicts), []

    def judge_many(self, pairs, window=None, chunk=1, budget=None):
        pairs = list(pairs)
        self.seen.extend(pairs)
        return iter(self.verdicts[: len(pairs)])


def test_scorer_counts_bad_labels_and_queries_as_errors_without_raising():
    checker = ListChecker([Verdict("correct", "42")])
    out = Scorer(RewardConfig(), checker).score(
        [query("\\boxed{42}"), 17, query("x")], [PROMPT, PROMPT, PROMPT], ["42", "7", None]
    )
    assert checker.seen == [("\\boxed{42}", "42")]  # only the judgeable sample reached the verifier
    assert out["rewards"] == [1.0, 0.0, 0.0] and out["scores"] == [1.0, 0.0, 0.0]
    assert out["extra_logs"] == {**dict.fromkeys(LOG_KEYS, 0.0), "correct": 1.0, "errors": 2.0}
    assert Scorer(RewardConfig(), checker).score(None, None, None)["rewards"] == []


def test_scorer_survives_a_failing_verifier():
    class Broken:
        def judge_many(self, pairs, window=None, chunk=1, budget=None):
            raise RuntimeError("pool is gone")

    out = Scorer(RewardConfig(), Broken()).score([query("\\boxed{1}")], [PROMPT], ["1"])
    assert out["rewards"] == [0.0] and out["extra_logs"]["errors"] == 1.0


def test_thinking_optimal_scorer_counts_tokens_only_for_correct_with_reference():
    counted = []

    def count(texts):
        counted.extend(texts)
        return [200] * len(texts)

    checker = ListChecker([Verdict("correct", "42"), Verdict("correct", "42"), Verdict("wrong", "41")])
    config = RewardConfig(mode="thinking_optimal", floor=0.5)
    labels = [
        json.dumps({"answer": "42", "ref_tokens": 100}),
        "42",
        json.dumps({"answer": "42", "ref_tokens": 100}),
    ]
    out = Scorer(config, checker, count_tokens=count).score(
        [query("a \\boxed{42}"), query("b \\boxed{42}"), query("\\boxed{41}")], [PROMPT] * 3, labels
    )
    assert counted == ["a \\boxed{42}"]
    assert out["rewards"] == [pytest.approx(0.75), 1.0, 0.0]
    assert out["scores"] == [1.0, 1.0, 0.0]
    assert out["extra_logs"]["no_ref"] == 1.0 and out["extra_logs"]["correct"] == 2.0


# -------------------------------------------------------------------------------- scorer (real verifier)


@pytest.fixture(scope="module")
def verifier():
    from tops_plugin.judging.verifier import Verifier

    with Verifier(workers=2, timeout=2.0) as pool:
        yield pool


def test_scorer_with_real_verifier_and_tokenizer(verifier):
    from tops_plugin.tokens import count_tokens

    good = "6 times 7 is 42, so the answer is \\boxed{42}."
    ref = count_tokens([good])[0]
    samples = [
        (query(good), json.dumps({"answer": "42", "ref_tokens": ref})),
        (query(good + " " + "Let me double check. " * 40), json.dumps({"answer": "42", "ref_tokens": ref})),
        (query("The answer is \\boxed{41}."), "42"),
        (query("I do not know."), "42"),
        (query(HOSTILE), "42"),
    ]
    scorer = Scorer(RewardConfig(mode="thinking_optimal", floor=0.5, timeout=2.0), verifier)
    started = time.monotonic()
    out = scorer.score([q for q, _ in samples], [PROMPT] * len(samples), [label for _, label in samples])
    assert time.monotonic() - started < 2.0 + 3.0
    assert out["verdicts"] == ["correct", "correct", "wrong", "no_answer", "timeout"]
    assert out["rewards"][0] == pytest.approx(1.0)
    assert 0.5 < out["rewards"][1] < 0.75  # correct but many times longer than the shortest known
    assert out["rewards"][2:] == [0.0, 0.0, 0.0]
    assert out["extra_logs"] == {
        "correct": 2.0,
        "wrong": 1.0,
        "no_answer": 1.0,
        "timeouts": 1.0,
        "errors": 0.0,
        "no_ref": 0.0,
    }


def test_scorer_agrees_with_labelled_responses(verifier, labeled_path):
    from tops_plugin.jsonl import read_jsonl

    rows = [row for row in read_jsonl(labeled_path) if row.get("label") is not None][:40]
    queries = [query(row["response"]) for row in rows]
    out = Scorer(RewardConfig(), verifier).score(queries, [PROMPT] * len(rows), [row["gold"] for row in rows])
    agree = sum((reward == 1.0) == bool(row["label"]) for reward, row in zip(out["rewards"], rows))
    assert len(out["rewards"]) == len(rows) and agree >= 0.9 * len(rows)


def test_hostile_items_in_one_batch_are_judged_side_by_side(verifier):
    # Two hostile items further apart than the verifier's default window: in order, they would cost two deadlines.
    responses = [HOSTILE] + ["\\boxed{42}"] * 20 + [HOSTILE] + ["\\boxed{41}"] * 5
    started = time.monotonic()
    out = Scorer(RewardConfig(timeout=2.0), verifier).score(
        [query(r) for r in responses], [PROMPT] * len(responses), ["42"] * len(responses)
    )
    elapsed = time.monotonic() - started
    assert out["verdicts"] == ["timeout"] + ["correct"] * 20 + ["timeout"] + ["wrong"] * 5
    assert elapsed < 2.0 + 1.5, f"{elapsed:.1f}s: the hostile items were judged one after the other"
