"""The deterministic round splitter on hand-written responses with a known round structure."""

from __future__ import annotations

import itertools
import json

import pytest

from tops_plugin.judging.answers import Verdict
from tops_plugin.rounds.splitter import (
    RoundConfig,
    count_rounds,
    judge_answers,
    round_judge_text,
    split_rounds,
)


def answers(response: str, config: RoundConfig | None = None) -> list[str]:
    return [r.answer for r in (split_rounds(response, config) if config else split_rounds(response))]


def test_no_answer_means_no_rounds():
    assert split_rounds("I am not sure how to approach this problem.") == []
    # Reflection alone reaches no answer: still no round.
    assert split_rounds("Hmm, wait. Let me check the statement again.\nBut maybe I misread it.") == []
    assert split_rounds("") == []
    assert count_rounds([], "4").rounds == 0


def test_one_round_spans_the_response():
    response = "16 - 3 - 4 = 9 eggs remain, sold at $2 each: 9 * 2 = 18.\nThe answer is \\boxed{18}."
    (only,) = split_rounds(response)
    assert (only.start, only.end) == (0, len(response))
    assert (only.answer, only.method, only.marker) == ("18", "boxed", None)
    counts = count_rounds([only], "18")
    assert (counts.rounds, counts.erroneous, counts.unjudged, counts.verdicts) == (1, 0, 0, ("correct",))


def test_wrong_then_right_rounds():
    response = (
        "16 - 3 = 13 eggs, so she makes 13 * 2 = 26 dollars. The answer is \\boxed{26}.\n\n"
        "Wait, she also uses four eggs for muffins. 13 - 4 = 9, and 9 * 2 = 18. So the answer is \\boxed{18}.\n\n"
        "Let me verify: 16 - 3 - 4 = 9, so 9 * 2 = 18."
    )
    rounds = split_rounds(response)
    assert [(r.answer, r.method, r.marker) for r in rounds] == [
        ("26", "boxed", None),
        ("18", "boxed", "Wait"),
        ("18", "equation", "Let me verify"),
    ]
    assert rounds[1].text(response).startswith("Wait, she also")
    assert rounds[2].end == len(response)
    counts = count_rounds(rounds, "18")
    assert (counts.rounds, counts.erroneous, counts.verdicts) == (3, 1, ("wrong", "correct", "correct"))


def test_reflections_without_a_new_answer_join_the_last_round():
    response = "The answer is \\boxed{18}. Wait, is that right? Hmm, yes, I am confident about it."
    (only,) = split_rounds(response)
    assert only.answer == "18" and only.end == len(response)


def test_reflection_without_answer_opens_the_next_round():
    response = "So x = 3.\nWait, I misread the problem. Let me start over.\nAlternatively, 2x = 10 so x = 5."
    rounds = split_rounds(response)
    assert [(r.answer, r.marker) for r in rounds] == [("3", None), ("5", "Wait")]
    assert rounds[1].start == response.index("Wait")
    # A response that opens with a marker: the first round carries it.
    assert [(r.answer, r.marker) for r in split_rounds("Hmm, so x = 4.")] == [("4", "Hmm")]


def test_think_block_rounds_and_the_summary():
    response = (
        "<think>Let's see: so 2 + 2 = 5.\nWait, no. Adding again gives 2 + 2 = 4.\n"
        "Let me verify: 4 - 2 = 2, so that is consistent.</think>\n\nThe answer is \\boxed{4}."
    )
    rounds = split_rounds(response)
    # The summary after </think> restates the conclusion: not a round; the check adds no answer.
    assert [(r.answer, r.method) for r in rounds] == [("5", "equation"), ("4", "equation")]
    assert rounds[-1].end == response.index("</think>")
    assert count_rounds(rounds, "4").erroneous == 1


def test_think_block_without_rounds_falls_back_to_the_summary():
    assert answers("<think>hmm</think> So \\boxed{4}") == ["4"]
    # Sky-T1's tags are thinking blocks too.
    sky = (
        "<|begin_of_thought|>So x = 2.\nWait, so x = 3.<|end_of_thought|>"
        "<|begin_of_solution|>\\boxed{3}<|end_of_solution|>"
    )
    assert answers(sky) == ["2", "3"]


def test_unclosed_think_block_is_split_to_its_end():
    assert answers("<think>First, so x = 7.\nBut wait, so x = 8.\nHmm, let me") == ["7", "8"]


def test_closing_tag_alone_closes_a_block_opened_in_the_prompt():
    response = "So x = 7.\nWait, so x = 8.</think>\n\nSo the answer is \\boxed{8}."
    rounds = split_rounds(response)
    assert [r.answer for r in rounds] == ["7", "8"]
    assert rounds[-1].end == response.index("</think>")


def test_plain_but_and_mid_sentence_markers_do_not_split():
    response = "16 - 3 = 13. But she also bakes with four: 13 - 4 = 9. So she makes 9 * 2 = 18."
    assert answers(response) == ["18"]
    assert answers("We wait until x = 3. So, honestly, 3 + 3 = 6.") == ["6"]


def test_equation_conclusions_need_a_sentence_end_and_a_cue():
    assert answers("So 4 - 2 = 2, which checks out") == []
    # A step is not a conclusion: a cue word ("so", "thus", "we get"…) must lead the sentence's equation.
    assert answers("The total number of outcomes is 6 * 6 = 36.") == []
    assert answers("The total number of outcomes is 6 * 6 = 36.", RoundConfig(conclusion_cues=())) == ["36"]
    # Inside math, the right-hand side counts only when it is a constant.
    assert answers("Therefore,\n\\[ r = \\sqrt{5} \\]\n") == ["\\sqrt{5}"]
    assert answers("So \\( y = 12 - 3x \\).") == []
    assert answers("So I end up with \\(r = 2\\pi\\) meters.") == ["2\\pi"]
    # An adverb caught by an anchored phrase is no part of the answer.
    assert answers("Everything checks out. I think the answer is indeed 12.") == ["12"]
    assert answers("Thus the total is $1,234.") == ["1,234"]
    assert answers("so \\(a_8 = \\frac{243}{625}\\).") == ["\\frac{243}{625}"]
    assert answers("So we get 12 apples.\n") == ["12"]


def test_config_switches_and_custom_markers():
    response = "So x = 1. Redo: so x = 2. Wait, \\boxed{3}"
    # Each committed answer ends a round, with or without a reflection marker before the next one.
    assert [(r.answer, r.marker) for r in split_rounds(response)] == [("1", None), ("2", None), ("3", "Wait")]
    custom = RoundConfig(reflection_markers=(r"redo\b", r"wait\b"))
    rounds = split_rounds(response, custom)
    assert [(r.answer, r.marker) for r in rounds] == [("1", None), ("2", "Redo"), ("3", "Wait")]
    assert rounds[1].start == response.index("Redo")
    assert answers(response, RoundConfig(equation_answers=False)) == ["3"]
    with pytest.raises(Exception):
        custom.equation_answers = False  # frozen


def test_round_spans_are_ordered_and_disjoint():
    response = (
        "Try 1: so x = 3.\nWait, so x = 4.\nHmm, so x = 5.\nAlternatively, \\boxed{5}.\nBut wait, is it 6? "
        "Let me check: \\boxed{6}."
    )
    rounds = split_rounds(response)
    assert len(rounds) == 5
    for left, right in itertools.pairwise(rounds):
        assert left.start < left.end <= right.start < right.end
    assert rounds[0].start == 0 and rounds[-1].end == len(response)


def test_judge_answers_checks_each_distinct_pair_once():
    calls: list[tuple[str, str]] = []

    def fake_check(pairs):
        for text, gold in pairs:
            calls.append((text, gold))
            yield Verdict("timeout" if text == round_judge_text("9^{9^{9}}") else "wrong")

    pairs = [("5", "4"), ("5", "4"), ("9^{9^{9}}", "4"), ("5", "4")]
    verdicts = judge_answers(pairs, fake_check)
    assert calls == [(round_judge_text("5"), "4"), (round_judge_text("9^{9^{9}}"), "4")]
    rounds = split_rounds("So x = 5.\nWait, \\boxed{9^{9^{9}}}")
    counts = count_rounds(rounds, "4", verdicts)
    # A timeout is neither correct nor erroneous: it is counted as unjudged.
    assert (counts.rounds, counts.erroneous, counts.unjudged) == (2, 1, 1)


def test_verifier_agrees_with_in_process_judging():
    from tops_plugin.judging.verifier import Verifier

    pairs = [("\\frac{1}{2}", "0.5"), ("3", "4"), ("\\dfrac{243}{625}", "\\frac{243}{625}")]
    with Verifier(workers=1, timeout=10) as verifier:
        isolated = judge_answers(pairs, verifier.judge_many)
    assert isolated == judge_answers(pairs) == {
        ("\\frac{1}{2}", "0.5"): "correct",
        ("3", "4"): "wrong",
        ("\\dfrac{243}{625}", "\\frac{243}{625}"): "correct",
    }


def test_labelled_long_responses_have_more_erroneous_rounds_when_wrong(labeled_path):
    """On real long reasoning, wrong final answers come with a larger share of erroneous rounds."""
    rows = []
    with open(labeled_path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["model"].startswith("Sky-T1-math-correct-5K-27B") and len(row["response"]) < 12000:
                rows.append(row)
    rows = rows[:120]
    splits = [split_rounds(row["response"]) for row in rows]
    verdicts = judge_answers((r.answer, row["gold"]) for row, rounds in zip(rows, splits) for r in rounds)
    totals = {True: [0, 0], False: [0, 0]}
    for row, rounds in zip(rows, splits):
        counts = count_rounds(rounds, row["gold"], verdicts)
        totals[row["label"]][0] += counts.rounds
        totals[row["label"]][1] += counts.erroneous
    ratio = {label: err / max(total, 1) for label, (total, err) in totals.items()}
    assert totals[True][0] > 0 and totals[False][0] > 0
    assert ratio[False] > ratio[True] + 0.2


def test_each_committed_answer_ends_a_round():
    # The example: the first pass commits to 6, "No wait" opens the pass that commits to 7.
    response = (
        "Hmm, let me verify once more with 4 + 3 = 6, giving \\boxed{6}. No wait, 4 + 3 = 7. "
        "Final answer: \\boxed{7}."
    )
    rounds = split_rounds(response)
    assert [(r.answer, r.marker) for r in rounds] == [("6", "Hmm"), ("7", "No wait")]
    assert rounds[1].start == response.index("No wait")
    assert count_rounds(rounds, "7").erroneous == 1
    # Two answers in one passage without any reflection marker are two rounds.
    passage = "So the total is 26. Therefore the answer is \\boxed{18}."
    rounds = split_rounds(passage)
    assert [(r.answer, r.method, r.marker) for r in rounds] == [("26", "equation", None), ("18", "boxed", None)]
    assert rounds[0].end == rounds[1].start and rounds[1].text(passage).lstrip().startswith("Therefore")


def test_new_markers_start_rounds():
    for marker in ("No wait", "No, wait", "Actually", "Hold on", "Oh wait", "Let me redo"):
        response = f"So x = 3.\n{marker}, I dropped a sign. So x = -3."
        rounds = split_rounds(response)
        assert [(r.answer, r.marker) for r in rounds] == [("3", None), ("-3", marker)], marker
        assert rounds[1].text(response).startswith(marker)


def test_a_restated_answer_is_the_same_round_unless_reflected_upon():
    # Restating the conclusion is one round, answered in its strongest form.
    (only,) = split_rounds("So 13 * 2 = 26 dollars. The answer is \\boxed{26}.")
    assert (only.answer, only.method) == ("26", "boxed")
    # After a marker the same answer is a verification pass: a round of its own.
    rounds = split_rounds("So x = 5.\nLet me check: 2 * 5 = 10, so x = 5.")
    assert [(r.answer, r.marker) for r in rounds] == [("5", None), ("5", "Let me check")]


def test_answers_inside_display_math_close_their_round():
    response = "Thus\n\\[\n\\boxed{12}\n\\]\nWait, recount: so the total is 14."
    rounds = split_rounds(response)
    assert [r.answer for r in rounds] == ["12", "14"]
    assert rounds[0].text(response).rstrip().endswith("\\]")
    assert rounds[1].start == response.index("Wait")


@pytest.mark.parametrize(("text", "expected"), [
    ("\\boxed{3} and " * 20000, 1),  # one long line of boxes: one sentence, one round
    ("the answer is 4, " * 20000, 1),  # many anchors in one sentence commit once
    ("Wait, \\boxed{3}. Wait, \\boxed{4}. " * 10000, 20000),  # alternating answers after markers
])
def test_hostile_long_responses_split_in_one_pass(text, expected):
    # Each committed answer finds its sentence end and reflections by bisection, not by rescanning the
    # text: quadratic work here would take minutes (these are ~300 KB).
    assert len(split_rounds(text)) == expected
