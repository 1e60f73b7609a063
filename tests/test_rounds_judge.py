"""The language-model round judge: prompt, strict reply parsing, cache, and failure handling."""

from __future__ import annotations

import json
import sys
import types

import pytest

from tops_plugin.rounds.judge import (
    JudgeItem,
    RoundJudge,
    judge_messages,
    cache_key,
    openai_complete,
    parse_reply,
)

ITEM = JudgeItem(problem="What is 2 + 2?", response="2 + 2 = 5. Wait, 2 + 2 = 4. \\boxed{4}", gold="4")


class FakeModel:
    """A `complete` callable that records its calls and answers from a script."""

    def __init__(self, reply='{"rounds": 2, "erroneous_rounds": 1}'):
        self.reply, self.calls = reply, []

    def __call__(self, messages):
        self.calls.append(messages)
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply(messages) if callable(self.reply) else self.reply


def test_prompt_states_the_definition_and_the_inputs():
    system, user = judge_messages(ITEM)
    assert system["role"] == "system" and user["role"] == "user"
    assert "complete reasoning or verification pass that reaches an answer" in system["content"]
    assert "erroneous step or reaches a wrong answer" in system["content"]
    assert '"erroneous_rounds"' in system["content"]
    for text in (ITEM.problem, ITEM.response, "Reference answer: 4"):
        assert text in user["content"]


@pytest.mark.parametrize(
    "reply, rounds, erroneous",
    [
        ('{"rounds": 3, "erroneous_rounds": 1}', 3, 1),
        ('  {"erroneous_rounds": 0, "rounds": 0}\n', 0, 0),
        ('```json\n{"rounds": 2, "erroneous_rounds": 2}\n```', 2, 2),
        ('{"rounds": 1, "erroneous_rounds": 0, "note": "one pass"}', 1, 0),
    ],
)
def test_well_formed_replies(reply, rounds, erroneous):
    result = parse_reply(reply)
    assert (result.judged, result.rounds, result.erroneous, result.reason) == (True, rounds, erroneous, None)


@pytest.mark.parametrize(
    "reply, reason",
    [
        (None, "empty"),
        ("   ", "empty"),
        ("The response has 3 rounds.", "not JSON"),
        ('Here you go: {"rounds": 3, "erroneous_rounds": 1}', "not JSON"),
        ('{"rounds": 3, "erroneous_rounds": 1} {"rounds": 2}', "not JSON"),
        ('{"rounds": 3, "erroneous_rounds": 1', "not JSON"),
        ("[3, 1]", "expected a JSON object"),
        ('{"rounds": 3}', "'erroneous_rounds' is not an integer"),
        ('{"rounds": "3", "erroneous_rounds": 1}', "'rounds' is not an integer"),
        ('{"rounds": 3.0, "erroneous_rounds": 1}', "'rounds' is not an integer"),
        ('{"rounds": true, "erroneous_rounds": 0}', "'rounds' is not an integer"),
        ('{"rounds": -1, "erroneous_rounds": 0}', "negative"),
        ('{"rounds": 1, "erroneous_rounds": 2}', "erroneous_rounds 2 > rounds 1"),
    ],
)
def test_malformed_replies_are_unjudged(reply, reason):
    result = parse_reply(reply)
    assert not result.judged and result.rounds is None and result.erroneous is None
    assert reason in result.reason
    assert result.fields() == {"judged": False, "rounds": None, "erroneous_rounds": None, "reason": result.reason}


def test_cache_hit_skips_the_model_and_survives_a_restart(tmp_path):
    cache = tmp_path / "cache.jsonl"
    model = FakeModel()
    judge = RoundJudge(model, "judge-model", cache)
    first = judge.judge(ITEM)
    second = judge.judge(ITEM)
    assert (first.judged, first.rounds, first.erroneous, first.cached) == (True, 2, 1, False)
    assert (second.rounds, second.erroneous, second.cached) == (2, 1, True)
    assert len(model.calls) == 1

    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert rows == [{"key": cache_key("judge-model", judge_messages(ITEM)), "model": "judge-model",
                     "reply": '{"rounds": 2, "erroneous_rounds": 1}'}]

    fresh_model = FakeModel()
    restarted = RoundJudge(fresh_model, "judge-model", cache)
    assert restarted.judge(ITEM).cached and fresh_model.calls == []
    # Another model, or another response, is another question.
    assert not RoundJudge(fresh_model, "other-model", cache).judge(ITEM).cached
    other = JudgeItem(ITEM.problem, ITEM.response + " Done.", ITEM.gold)
    assert not restarted.judge(other).cached
    assert len(fresh_model.calls) == 2
    assert len(cache.read_text().splitlines()) == 3  # appended, never rewritten


def test_malformed_reply_is_unjudged_and_cached(tmp_path):
    model = FakeModel("I count three rounds.")
    judge = RoundJudge(model, "m", tmp_path / "cache.jsonl")
    assert not judge.judge(ITEM).judged
    again = judge.judge(ITEM)
    assert not again.judged and again.cached and "not JSON" in again.reason
    assert len(model.calls) == 1


def test_failed_calls_are_unjudged_and_not_cached(tmp_path):
    cache = tmp_path / "cache.jsonl"
    judge = RoundJudge(FakeModel(ConnectionError("endpoint down")), "m", cache)
    result = judge.judge(ITEM)
    assert not result.judged and "ConnectionError: endpoint down" in result.reason
    assert not cache.exists()
    assert not RoundJudge(FakeModel(reply=lambda messages: None), "m", cache).judge(ITEM).judged
    # The next run asks again and gets an answer.
    assert RoundJudge(FakeModel(), "m", cache).judge(ITEM).judged


def test_torn_cache_tail_is_ignored_then_repaired(tmp_path):
    cache = tmp_path / "cache.jsonl"
    key = cache_key("m", judge_messages(ITEM))
    cache.write_text(json.dumps({"key": key, "model": "m", "reply": '{"rounds": 4, "erroneous_rounds": 3}'})
                     + '\n{"key": "abc", "mod')
    model = FakeModel()
    judge = RoundJudge(model, "m", cache)
    assert judge.judge(ITEM).rounds == 4 and model.calls == []
    judge.judge(JudgeItem("p", "r", "1"))
    lines = cache.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["model"] == "m" for line in lines)


def test_judge_many_keeps_input_order_with_workers():
    def reply(messages):
        count = messages[1]["content"].count("!")
        return json.dumps({"rounds": count, "erroneous_rounds": 0})

    items = [JudgeItem("p", "!" * n, "1") for n in range(6)]
    results = list(RoundJudge(FakeModel(reply), "m").judge_many(items, workers=3))
    assert [r.rounds for r in results] == list(range(6))


def test_openai_complete_sends_the_model_and_key(monkeypatch):
    seen = {}

    class FakeOpenAI:
        def __init__(self, **kwargs):
            seen["client"] = kwargs
            self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=self.create))

        def create(self, **kwargs):
            seen["request"] = kwargs
            message = types.SimpleNamespace(content='{"rounds": 1, "erroneous_rounds": 0}')
            return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])

    monkeypatch.setitem(sys.modules, "openai", types.SimpleNamespace(OpenAI=FakeOpenAI))
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    complete = openai_complete("gpt-4o", base_url="http://localhost:9/v1", api_key_env="JUDGE_KEY")
    assert complete(judge_messages(ITEM)) == '{"rounds": 1, "erroneous_rounds": 0}'
    assert seen["client"]["api_key"] == "sk-test" and seen["client"]["base_url"] == "http://localhost:9/v1"
    assert seen["request"]["model"] == "gpt-4o" and seen["request"]["temperature"] == 0.0
    assert seen["request"]["messages"] == judge_messages(ITEM)
