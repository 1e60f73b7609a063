"""The checker on each answer format it promises to handle (tops_plugin.judging.answers)."""

from __future__ import annotations

import pytest

from tops_plugin.judging.answers import extract_answer, judge, last_boxed, normalize_answer, split_thinking


@pytest.mark.parametrize(
    ("response", "gold", "verdict", "answer_from"),
    [
        # boxed forms
        (r"So $x = \boxed{\frac{1}{2}}$.", r"\frac12", "correct", "final:boxed"),
        (r"first \boxed{3}, then corrected: \boxed{4}", "4", "correct", "final:boxed"),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)", "correct", "final:boxed"),
        (r"\boxed{{a}_{1}+\{b\}}", r"{a}_{1}+\{b\}", "correct", "final:boxed"),
        (r"The answer: \boxed 5", "5", "correct", "final:boxed"),
        (r"\fbox{12}", "12", "correct", "final:boxed"),
        # anchored phrases, words included
        ("Thus the final answer is east.", r"\text{east}", "correct", "final:phrase"),
        ("After all that, the answer is 7 apples.", "7", "correct", "final:phrase"),
        ("**Answer:** 73", "73", "correct", "final:phrase"),
        ("Final Answer: $\\dfrac{3}{4}$", r"\frac{3}{4}", "correct", "final:phrase"),
        ("Checking again, 44 is the correct answer.", "44", "correct", "final:phrase"),
        ("I think the answer is indeed 12.", "12", "correct", "final:phrase"),
        ("So the answer is still $12$.", "12", "correct", "final:phrase"),
        # numeric golds: GSM8K marker and the last number
        ("She has 16 - 3 - 4 = 9 eggs, so 9 * 2 = 18.\n#### 18", "18", "correct", "final:gsm8k"),
        ("She makes 9 * 2 = $18 every day.", "18", "correct", "final:last_number"),
        # normalisation
        (r"\boxed{1,000}", "1000", "correct", "final:boxed"),
        (r"\boxed{\$1000}", "1000", "correct", "final:boxed"),
        (r"\boxed{1000.00}", "1000", "correct", "final:boxed"),
        (r"\boxed{50\%}", "50", "correct", "final:boxed"),
        (r"\boxed{90^\circ}", "90", "correct", "final:boxed"),
        (r"\boxed{15\text{ cm}^2}", r"15\mbox{ cm}^2", "correct", "final:boxed"),
        ("the answer is **73**.", "73", "correct", "final:phrase"),
        (r"\boxed{10,\!080}", "10080", "correct", "final:boxed"),
        # math-verify does the mathematics
        (r"\boxed{\{1, 2, 3\}}", r"\{3, 2, 1\}", "correct", "final:boxed"),
        (r"\boxed{(2, \infty)}", r"(2,\infty)", "correct", "final:boxed"),
        (r"\boxed{[2, \infty)}", r"(2,\infty)", "wrong", "final:boxed"),
        (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", "correct", "final:boxed"),
        (r"\boxed{\frac{\cos x}{\sin x}}", r"\cot x", "correct", "final:boxed"),
        (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", "correct", "final:boxed"),
        (r"\boxed{3}", "4", "wrong", "final:boxed"),
        # answers stated in prose, near the end of a finished response
        (r"Therefore, the value of \(k\) is indeed \(\frac{5}{3}\). I think that's it.", r"\frac{5}{3}",
         "correct", "final:prose"),
        ("Whichever way I compute it, I get the same result: $3 - 4i$.", "3-4i", "correct", "final:prose"),
        ("Therefore, the difference is indeed 7π.\n\nI think that's the answer.", r"7\pi", "correct", "final:prose"),
        ("We look for m. So the answer is an integer m with 0 ≤ m < 20. Trying each residue in turn, "
         "only one works. So the value of m is 12.", "12", "correct", "final:prose"),  # the last conclusion wins
        ("Counting them again, the answer is five red marbles.", "5", "correct", "final:phrase"),  # number words
        ("So, 54 divided by 3 is indeed 18 sets.\nProfit: $93 - $15 = $78.", "78", "correct", "final:last_number"),
        ("Therefore, the method is sound and x = 3 works.", "3", "correct", "final:last_number"),  # not a conclusion
        # nothing to find
        ("I am not sure how to do this.", "4", "no_answer", None),
    ],
)
def test_answer_formats(response: str, gold: str, verdict: str, answer_from: str | None) -> None:
    result = judge(response, gold)
    assert (result.verdict, result.answer_from) == (verdict, answer_from), result


def test_prose_answers_only_in_finished_final_parts() -> None:
    prose = r"So the value of \(k\) is \(\frac{5}{3}\). I think that's it."
    assert judge(prose, r"\frac{5}{3}").verdict == "correct"
    assert judge(prose, r"\frac{5}{3}", truncated=True).verdict == "no_answer"  # cut off: not a conclusion
    assert judge("<think>" + prose + " Wait, let me", r"\frac{5}{3}").verdict == "no_answer"  # cut reasoning
    early = prose + " Now some more words follow." * 30  # far from the end
    assert judge(early, r"\frac{5}{3}").verdict == "no_answer"


def test_thinking_block_final_part_wins_over_reasoning() -> None:
    response = r"<think>maybe \boxed{3}? no.</think> The answer is \boxed{4}."
    assert judge(response, "4").answer_from == "final:boxed"
    assert judge(response, "3").verdict == "wrong"


def test_thinking_block_falls_back_to_reasoning_and_says_so() -> None:
    response = r"<think>so it is \boxed{12}</think>"
    verdict = judge(response, "12")
    assert verdict.correct and verdict.answer_from == "reasoning:boxed"


def test_cut_off_reasoning_gives_no_answer_not_a_stray_number() -> None:
    # Generation cut inside the reasoning: an intermediate "the answer is" is not a commitment.
    response = "<think>Let me try. If x = 3 then the answer is 6. Wait, but then we need to check " + "y" * 50
    assert judge(response, "6").verdict == "no_answer"
    sky = "<|begin_of_thought|>\n\nThe total is 12, but let me recheck the second term which is"
    assert judge(sky, "12").verdict == "no_answer"


def test_sky_t1_solution_block_is_the_final_part() -> None:
    response = "<|begin_of_thought|>\nthink 3\n<|end_of_thought|>\n<|begin_of_solution|>\n\\boxed{5}<|end_of_solution|>"
    assert judge(response, "5").answer_from == "final:boxed"


def test_truncated_response_does_not_use_last_number() -> None:
    response = "We compute 3 + 4 = 7 and then multiply by"
    assert judge(response, "7").verdict == "no_answer"  # cut mid-sentence: looks unfinished
    assert judge("So the total is 7.", "7", truncated=True).verdict == "no_answer"
    assert judge("So the total is 7.", "7").verdict == "correct"


def test_weak_answer_far_from_the_end_of_unfinished_text_is_ignored() -> None:
    response = "Hmm, the answer is 5. " + "Let me expand the other terms carefully and " * 30 + "then"
    assert extract_answer(response, numeric_gold=True) is None


def test_last_number_only_for_numeric_golds() -> None:
    assert extract_answer("we get x + 1 = 8.", numeric_gold=False) is None
    assert extract_answer("we get x + 1 = 8.", numeric_gold=True).text == "8"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(r"\boxed{a{b}c}", "a{b}c"), (r"\boxed{\}}", r"\}"), (r"\boxed{x", None), (r"\boxed 12 more", "12"), ("none", None)],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("1,000", "1000"), ("$1000$", "1000"), ("1000.00", "1000"), ("**73**", "73"), (r"\dfrac{1}{2}", r"\frac{1}{2}"),
     ("5.", "5"), (r"30^{\circ}", "30"), (r"12^{\mathrm{th}} \text{ grade}", "12"), ("(1,2)", "(1,2)"), ("2x", "2x")],
)
def test_normalize_answer(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


def test_split_thinking() -> None:
    assert split_thinking("<think>a</think>b") == ("<think>a", "b")
    assert split_thinking("<think>cut") == ("cut", "")
    assert split_thinking("plain") == ("", "plain")


def test_verdict_fields_are_the_record_schema() -> None:
    fields = judge(r"\boxed{2}", "2").fields()
    assert fields == {"pred": "2", "correct": True, "verdict": "correct", "answer_from": "final:boxed"}


@pytest.mark.parametrize(
    "response, gold",
    [
        # a conclusion the response then takes back, or a step before more work (golds that are not plain
        # numbers, so that the last-number rule does not apply)
        ("Some work.\nSo the value of x is \\(\\frac{5}{3}\\). Wait, no, that's not right. Let me reconsider.",
         r"\frac{5}{3}"),
        ("Some work.\nSo the value of x is 3 - 4i.\nHmm, that can't be right. I must have made a mistake somewhere.",
         "3-4i"),
        ("Step one.\nSo far the value of x is 7π, but I still need to find y. Let me find y next", r"7\pi"),
        ("Work.\nSo the value of x is 7π, which contradicts the assumption. Hence there is no such x.", r"7\pi"),
        # cut off mid-sentence without any truncation marker: the text does not end as a finished one
        ("Work.\nThus the total is 12 apples, and the", "12"),
        ("Work.\nSo the value of k is 12, so k", "12"),
        ("Work.\nTherefore, the area is 7π square", r"7\pi"),
        # a hypothesis, not a conclusion
        ("Some work.\nI need to check whether the value of m is 7π.", r"7\pi"),
        ("Some work.\nI doubt that the value of m is 7π.", r"7\pi"),
        # a number word that is part of a larger phrase, not the answer
        ("Some work.\nTherefore, the probability is one half.", "1"),
        ("Some work.\nTherefore, the number of solutions is one more than the degree.", "1"),
        ("Some work.\nSo the value of n is two less than m.", "2"),
        ("Some work.\nThus, the function is one-to-one.", "1"),
        ("Some work.\nTherefore, there are two cases to consider.", "2"),
        ("Some work.\nTherefore, the number of marbles is twenty-one.", "20"),
    ],
)
def test_prose_rules_do_not_accept_retracted_hypothetical_or_partial_statements(response: str, gold: str) -> None:
    assert judge(response, gold).verdict != "correct"


def test_number_words_stand_for_the_number_only_alone_or_before_plain_nouns() -> None:
    assert normalize_answer("five red marbles") == "5"
    assert normalize_answer("Twelve") == "12"
    for text in ("one half", "two less than m", "one-to-one", "twenty-one", "three times y", "one of them"):
        assert normalize_answer(text) == text, text
