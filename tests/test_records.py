"""The typed records (`tops_plugin.records`) say what the writers really write: a key added to a row
without its definition, or a definition the writers no longer fill, fails here."""

from __future__ import annotations

from typing import get_args

from tops_plugin.generation import GenerationRequest, SamplingParams
from tops_plugin.generation.outputs import RawOutput, make_records
from tops_plugin.judging.answers import VERDICTS
from tops_plugin.judging.rows import VERDICT_FIELDS, judge_in_process, judge_rows
from tops_plugin.prompts import EFFORTS, build_messages
from tops_plugin.records import DpoRow, Effort, GenerationRecord, Problem, SftRow, VerdictFields, VerdictName
from tops_plugin.selection.openrlhf import dpo_row, sft_row

PROBLEM = {"id": "p1", "problem": "What is 2 + 2?", "answer": "4"}


def test_the_vocabularies_agree_with_the_code():
    assert get_args(VerdictName) == VERDICTS
    assert get_args(Effort) == tuple(EFFORTS)
    assert tuple(VerdictFields.__annotations__) == VERDICT_FIELDS


def test_a_generation_record_and_its_verdict_fields_are_what_the_writers_add():
    request = GenerationRequest(PROBLEM, "low", sampling=SamplingParams(max_tokens=16))
    output = RawOutput(request, 0, build_messages(PROBLEM["problem"], "low"), "So \\boxed{4}.", "stop", 5,
                       {"usage": {"completion_tokens": 5}, "reasoning": "2 + 2 = 4"})
    (record,) = make_records([output], "some-model")
    assert set(record) - set(PROBLEM) == set(GenerationRecord.__annotations__) - set(Problem.__annotations__)
    before = set(record)
    (judged,) = judge_rows([record], judge_in_process)
    assert set(judged) - before == set(VerdictFields.__annotations__)


def test_sft_and_dpo_rows_hold_their_required_keys_and_only_defined_ones():
    prompt = build_messages(PROBLEM["problem"], None)
    sft = sft_row(prompt, "So \\boxed{4}.", id="p1", tokens=5, effort="low", sample=0)
    assert SftRow.__required_keys__ <= set(sft) <= set(SftRow.__annotations__)
    dpo = dpo_row(prompt, "So \\boxed{4}.", "So \\boxed{5}.", pair="longest_wrong", id="p1", chosen_tokens=5,
                  rejected_tokens=5, chosen_sample=0, rejected_sample=1)
    assert DpoRow.__required_keys__ <= set(dpo) <= set(DpoRow.__annotations__)
    assert [m["role"] for m in sft["response"] + dpo["chosen"] + dpo["rejected"]] == ["assistant"] * 3
