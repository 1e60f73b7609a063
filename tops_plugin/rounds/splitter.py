"""Split a response into reasoning rounds and count the erroneous ones.

The paper defines a round as a complete reasoning or verification pass that reaches an answer, and shows
that more effort brings more rounds and more erroneous ones. This module is the deterministic version of
that count: it finds where the response reflects and where it commits to an answer, and each round's
answer is judged against the gold answer by the project's checker (`tops_plugin.judging.answers`, or a
`Verifier`'s ``judge_many`` for untrusted text). A round is *erroneous* when its answer is judged wrong.

How a response is split (all markers live in `RoundConfig`):

1. Reasoning region. If the response has a thinking block (``<think>…</think>``, or Sky-T1's
   ``<|begin_of_thought|>…<|end_of_thought|>``), only the inside is split; the text after the (last)
   closing tag is a summary that restates the conclusion and adds no round -- unless the block holds no
   round at all, in which case the summary is split like a plain response. A closing tag without an
   opening one closes a block that starts with the response (the opening tag was in the prompt); an
   unclosed block (a truncated response) is split to its end. Without tags the whole response is split.
2. Committed answers. Every sentence that commits to an answer: a ``\\boxed{}``, an anchored phrase
   ("so the answer is …", "Final answer: …", read by `tops_plugin.judging.answers.extract_answer`), or an
   *equation conclusion*: an ``= N`` (or "is N", "equals N", "gives N") that ends a sentence or line,
   where N is a number or simple fraction (optionally followed by a unit word or two), or a constant
   right-hand side closing a LaTeX math span (``\\[ r = \\sqrt{5} \\]``; one with variables,
   ``y = 12 - 3x``, is a step, not an answer). A conclusion cue ("so", "thus", "therefore", "we get",
   "indeed", "answer"…) must come earlier in the same sentence, which keeps the steps of a computation
   ("6 * 6 = 36.") from ending rounds. One sentence commits once (boxed before phrase before equation).
3. Rounds. A round ends at the sentence of each committed answer, so two answers in one passage are two
   rounds even without a reflection between them. The next round starts at the first *reflection marker*
   (at the start of a sentence or line: "Wait", "No wait", "Actually", "Alternatively", "Let me
   verify/check", "Hmm", "But wait/let/maybe…", "Hold on"…) after that answer, or right after the answer
   when no marker comes before the next one. Markers start rounds but are not needed to end one. The same
   answer committed again *without* a marker in between restates the conclusion ("so 13 * 2 = 26. The
   answer is \\boxed{26}.") and extends the round; after a marker it is a new (verification) round.
   Text after the last answer -- reflections that reach no new answer -- belongs to the last round.
4. Each round's answer is judged as ``\\boxed{answer}`` against the gold answer; a round is erroneous
   when its answer is judged wrong.

Limits, known and accepted:

* Markers are English surface forms. Reflection phrased otherwise ("On reflection, …", other languages)
  does not open a round, and a marker word used plainly at a sentence start ("But she also bakes…" is
  excluded, "Hmm, so the total…" is not) opens one.
* Equation conclusions are a heuristic. A cued intermediate result ("So each meal is 18/12 = 1.5
  servings.") ends a round with a wrong answer, and an uncued final one ("they need 12 / 1.5 = 8 meals.")
  is missed. ``RoundConfig(conclusion_cues=())`` accepts every sentence-ending equation (more rounds,
  more of them intermediate); ``RoundConfig(equation_answers=False)`` counts only boxed and phrased
  answers (fewest rounds; long reasoning that never boxes until the end becomes one round).
  On 200 labelled Sky-T1 responses to MATH500/AIME (``labeled_dev``) the defaults give 3.98 rounds per
  correct response (0.50 of them erroneous, mostly cued intermediate results) and 4.01 per wrong one
  (0.74 erroneous).
* An erroneous step that the same round corrects before committing is not seen. The paper's judge
  also counted rounds with erroneous *steps*; that needs a language model (`tops_plugin.rounds.judge`).
* Anchored phrases inherit `extract_answer`'s heuristics ("the answer is going to be…" yields a
  nonsense answer, which is then judged wrong).
* Answers are judged against the gold answer only; an answer to a sub-question is "wrong".
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from tops_plugin.judging.answers import extract_answer, last_boxed
from tops_plugin.judging.rows import JudgeMany, judge_in_process

__all__ = [
    "DEFAULT_CONFIG",
    "Round",
    "RoundConfig",
    "RoundCounts",
    "count_rounds",
    "judge_answers",
    "round_judge_text",
    "split_rounds",
]



@dataclass(frozen=True)
class RoundConfig:
    """What opens a round, what ends one, and where reasoning lives. Patterns are case-insensitive."""

    reflection_markers: tuple[str, ...] = (
        r"wait\b",
        r"alternatively\b",
        r"hmm+\b",
        r"hold\s+on\b",
        r"(?:no|oh),?\s+wait\b",
        r"actually\b",
        r"no,\s+(?:that|this|it)(?:'s|\s+is)\s+(?:not|wrong|incorrect)\b",
        r"on\s+second\s+thought\b",
        r"let\s+me\s+(?:re-?)?(?:verify|check|double[- ]check|confirm|examine|consider|calculate|compute)\b",
        r"let\s+me\s+re-?(?:think|do|try|evaluate)\b",
        r"let(?:'s|\s+us)\s+(?:re-?)?(?:verify|check|double[- ]check|confirm)\b",
        r"to\s+(?:verify|double[- ]check|confirm)\b",
        # "But" only where it turns the reasoning on itself, not in "But she also bakes…".
        r"but(?=\s*,|\s+(?:wait|let|maybe|perhaps|actually|hold|hmm|is\s+(?:this|that|it)\b|i\b|that'?s\s+not"
        r"|then\s+again|no\b|what\s+if|did\s+i|am\s+i|could|should|shouldn'?t|isn'?t|wouldn'?t))",
    )
    #: Anchors of a phrased answer ("so the answer is 7", "Final answer: 7", "**Answer:** 7"); the answer
    #: itself is read by `tops_plugin.judging.answers.extract_answer` from the anchor's sentence.
    answer_phrases: tuple[str, ...] = (
        r"final\s+answer\b",
        r"\bthe\s+(?:correct\s+)?answer\s+(?:is|would\s+be|will\s+be|should\s+be)\b",
        r"^[ \t]*(?:#+[ \t]*)?answer[ \t]*:",
        r"\*\*[ \t]*answer[ \t]*:?[ \t]*\*\*",
        r"\bis\s+the\s+(?:correct|final|right)\s+answer\b",
    )
    #: A `= N.` conclusion ("= N", "is (indeed) N", "equals N", "get(s) N") that ends a sentence or line:
    #: a number or simple fraction, then at most two unit words and a closing math delimiter.
    equation_pattern: str = (
        r"(?:=|\bequals|\bis(?:\s+(?:indeed|still|also|just))?|\b(?:gets?|gives))"
        r"\s*(?:\\\$|\$(?=\s*-?\d))?\s*(?P<ans>-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?"
        r"|-?\\[dt]?frac\s*\{[^{}]+\}\s*\{[^{}]+\})"
        r"(?:\s+[A-Za-z]+){0,2}\s*(?:\\\)|\\\]|\$\$?)?\s*(?:\.(?=\s|$)|$)"
    )
    #: The same inside LaTeX math: the right-hand side of the last `=` before a closing delimiter that ends
    #: a sentence or line. It counts only when it is a constant (`_is_constant`: no variables).
    math_equation_pattern: str = (
        r"=\s*(?P<ans>[^=\n$]{1,80}?)\s*(?:\\\)|\\\]|\$\$?)(?:\s+[A-Za-z]+){0,2}\s*(?:[.,;]?[ \t]*$|\.(?=\s))"
    )
    #: Words that make an equation a conclusion rather than a step ("So 9 * 2 = 18." but not "6 * 6 = 36.");
    #: one must appear earlier in the same sentence. Empty: every equation that ends a sentence counts.
    conclusion_cues: tuple[str, ...] = (
        r"so\b", r"thus\b", r"therefore\b", r"hence\b", r"finally\b", r"indeed\b", r"answer\b",
        r"(?:i|we)\s+(?:get|got|have|find|found|end\s+up\s+with)\b", r"gives\b", r"result\b", r"confirms?\b",
        r"yes\b", r"correct\b", r"same\b", r"again\b", r"consistent\b",
    )
    equation_answers: bool = True
    #: (open, close) tags of thinking blocks; the first tag pair found in a response is used.
    think_tags: tuple[tuple[str, str], ...] = (
        ("<think>", "</think>"),
        ("<|begin_of_thought|>", "<|end_of_thought|>"),
    )

    @cached_property
    def marker_re(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{m})" for m in self.reflection_markers), re.IGNORECASE)

    @cached_property
    def answer_phrase_re(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{p})" for p in self.answer_phrases), re.IGNORECASE | re.MULTILINE)

    @cached_property
    def equation_re(self) -> re.Pattern[str]:
        return re.compile(self.equation_pattern, re.MULTILINE)

    @cached_property
    def math_equation_re(self) -> re.Pattern[str]:
        return re.compile(self.math_equation_pattern, re.MULTILINE)

    @cached_property
    def cue_re(self) -> re.Pattern[str] | None:
        if not self.conclusion_cues:
            return None
        return re.compile(r"\b(?:" + "|".join(f"(?:{c})" for c in self.conclusion_cues) + ")", re.IGNORECASE)


DEFAULT_CONFIG = RoundConfig()


@dataclass(frozen=True)
class Round:
    """One reasoning round: its span in the response, the answer it reaches, and what opened it."""

    start: int
    end: int
    answer: str
    method: str  # "boxed" | "phrase" | "equation"
    marker: str | None  # the reflection marker that opened it; None at the start of the reasoning

    def text(self, response: str) -> str:
        return response[self.start : self.end]


@dataclass(frozen=True)
class RoundCounts:
    """Judged rounds of one response. ``unjudged``: the checker gave no verdict (no_answer/timeout/error)."""

    rounds: int
    erroneous: int
    unjudged: int
    verdicts: tuple[str, ...]


# ----------------------------------------------------------------------------------------------- splitting


def _regions(response: str, config: RoundConfig) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """(reasoning span, summary span or None). A closing tag alone (the opening one was in the prompt, as
    chat templates of reasoning models do) still closes a block that starts at the response's start."""
    for open_tag, close_tag in config.think_tags:
        start = response.find(open_tag)
        inner = start + len(open_tag) if start >= 0 else 0
        close = response.rfind(close_tag, inner)
        if start < 0 and close < 0:
            continue
        if close < 0:
            return (inner, len(response)), None
        return (inner, close), (close + len(close_tag), len(response))
    return (0, len(response)), None


_SENTENCE_LEAD = " \t*_#>\"'`-"


def _at_sentence_start(text: str, pos: int, floor: int) -> bool:
    """True when only markdown/quotes/spaces separate `pos` from a line start or a sentence end."""
    j = pos
    while j > floor and text[j - 1] in _SENTENCE_LEAD:
        j -= 1
    return j == floor or text[j - 1] in "\n.!?"


def _markers(response: str, span: tuple[int, int], config: RoundConfig) -> list[tuple[int, str]]:
    """(offset, text) of every reflection marker that starts a sentence or line within `span`."""
    start, end = span
    return [
        (match.start(), match.group(0))
        for match in config.marker_re.finditer(response, start, end)
        if _at_sentence_start(response, match.start(), start)
    ]


_SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)|\n")
_CLOSING_RE = re.compile(r"(?:[ \t]*(?:\\\]|\\\)|\$\$?|[.!?]))*")


class _SentenceEnds:
    """Where the sentences of a region end (after the period, or at the line break), found in one pass so
    that each committed answer finds its sentence's end by bisection (a 1 MB line costs one scan)."""

    def __init__(self, text: str, span: tuple[int, int]):
        self.text, self.limit = text, span[1]
        self.starts: list[int] = []
        self.ends: list[int] = []
        for match in _SENTENCE_END_RE.finditer(text, *span):
            self.starts.append(match.start())
            self.ends.append(match.start() if match.group(0) == "\n" else match.end())

    def after(self, pos: int) -> int:
        """End of the sentence holding `pos`, never past the region; a math span or sentence closing
        right after it goes with it (``\\boxed{5} \\]``)."""
        index = bisect_left(self.starts, pos)
        end = self.limit if index == len(self.starts) else self.ends[index]
        return min(self.limit, _CLOSING_RE.match(self.text, end, self.limit).end())


_CONSTANT_COMMANDS_RE = re.compile(r"\\(?:[dt]?frac|sqrt|pi|cdot|times|left|right|circ)(?![A-Za-z])|\\[,;!: ]")
_UNIT_TEXT_RE = re.compile(r"\\(?:text|mathrm|mbox)\s*\{[^{}]*\}")


def _is_constant(expr: str) -> bool:
    """True for a value without variables (``\\sqrt{5}``, ``20\\pi``, ``(3, \\frac{\\pi}{2})``)."""
    if not re.search(r"\d|\\pi", expr):
        return False
    rest = _CONSTANT_COMMANDS_RE.sub("", _UNIT_TEXT_RE.sub("", expr))
    return not re.search(r"[A-Za-z\\<>]", rest)


def _sentence_start(text: str, pos: int, window: int = 300) -> int:
    """Start of the sentence holding `pos`: after ". ", "? ", "! " or a line break that ends a sentence (a
    line ending in "," ":" or an opening "\\[" goes on: "Therefore,\\n\\[ r = 5 \\]")."""
    floor = max(0, pos - window)
    start = max([floor] + [end + 2 for end in (text.rfind(m, floor, pos) for m in (". ", "? ", "! ")) if end >= 0])
    newline = text.rfind("\n", start, pos)
    while newline >= start:
        before = text[start:newline].rstrip(" \t")
        if not before or before[-1] not in ",:[":
            return newline + 1
        newline = text.rfind("\n", start, newline)
    return start


@dataclass(frozen=True)
class _Commitment:
    """An answer the text commits to, and where: `pos` is where it stands, `end` where its sentence ends."""

    pos: int
    end: int
    answer: str
    method: str  # "boxed" | "phrase" | "equation"


#: Which kind wins when one sentence commits twice ("So the answer is \\boxed{4}."): as in `extract_answer`.
_METHOD_RANK = {"boxed": 0, "phrase": 1, "equation": 2}


_BOX_START_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _boxed_commitments(text: str, span: tuple[int, int], ends: _SentenceEnds) -> Iterator[_Commitment]:
    start, end = span
    boxes = [m.start() for m in _BOX_START_RE.finditer(text, start, end)]
    for box, following in zip(boxes, boxes[1:] + [end]):
        content = last_boxed(text[box:following])  # the one box of this slice
        if content is not None and content.strip():
            close = box + text[box:following].find(content) + len(content)
            yield _Commitment(box, ends.after(close), content.strip(), "boxed")


#: How far after its anchor a phrased answer is read ("the answer is …"): answers are short, and a bound
#: keeps a megabyte-long line with many anchors linear.
_PHRASE_REACH = 500


def _phrase_commitments(
    text: str, span: tuple[int, int], ends: _SentenceEnds, config: RoundConfig
) -> Iterator[_Commitment]:
    start, end = span
    last_per_sentence: dict[int, re.Match[str]] = {}  # one sentence commits once: its last anchor counts
    for match in config.answer_phrase_re.finditer(text, start, end):
        last_per_sentence[ends.after(match.end())] = match
    for sentence_end, match in last_per_sentence.items():
        reach = min(sentence_end, match.end() + _PHRASE_REACH)
        found = extract_answer(text[max(start, _sentence_start(text, match.start())) : reach])
        if found is not None and found.method == "phrase" and found.text.strip():
            answer = _FILLER_RE.sub("", found.text.strip()) or found.text.strip()
            yield _Commitment(match.start(), sentence_end, answer, "phrase")


def _equation_commitments(
    text: str, span: tuple[int, int], ends: _SentenceEnds, config: RoundConfig
) -> Iterator[_Commitment]:
    """Constant `= N` conclusions that end a sentence or line (cued, when cues are configured)."""
    start, end = span
    for pattern, needs_constant in ((config.equation_re, False), (config.math_equation_re, True)):
        for match in pattern.finditer(text, start, end):
            answer = match.group("ans").strip()
            if needs_constant and not _is_constant(answer):
                continue
            if config.cue_re is not None:
                if not config.cue_re.search(text, max(start, _sentence_start(text, match.start())), match.start()):
                    continue
            answer = answer if needs_constant else re.sub(r"\s+", "", answer)
            yield _Commitment(match.start("ans"), ends.after(match.start("ans")), answer, "equation")


# "the answer is indeed 12": the phrase capture keeps the adverb, which is no part of the answer.
_FILLER_RE = re.compile(r"^(?:(?:indeed|still|also|just|probably|likely|definitely|clearly|actually|simply)\s+)+",
                        re.IGNORECASE)


def _commitments(text: str, span: tuple[int, int], config: RoundConfig) -> list[_Commitment]:
    """Every answer committed to within `span`, in order, one per sentence (the strongest kind, then the
    last one of that kind, as `extract_answer` picks)."""
    ends = _SentenceEnds(text, span)
    found = [*_boxed_commitments(text, span, ends), *_phrase_commitments(text, span, ends, config)]
    if config.equation_answers:
        found += _equation_commitments(text, span, ends, config)
    per_sentence: dict[int, _Commitment] = {}
    for item in found:
        best = per_sentence.get(item.end)
        if best is None or (_METHOD_RANK[item.method], -item.pos) < (_METHOD_RANK[best.method], -best.pos):
            per_sentence[item.end] = item
    return sorted(per_sentence.values(), key=lambda item: item.end)


def _same_answer(left: str, right: str) -> bool:
    return re.sub(r"\s+|\$", "", left) == re.sub(r"\s+|\$", "", right)


def _split_region(response: str, span: tuple[int, int], config: RoundConfig) -> list[Round]:
    """Rounds of one region: each ends at a committed answer; the next starts at the first reflection
    marker after it (or right after it when none comes before the next answer)."""
    markers = _markers(response, span, config)
    offsets = [pos for pos, _ in markers]
    rounds: list[Round] = []
    start = span[0]
    marker = markers[0][1] if markers and offsets[0] == start else None
    last_end = span[0]
    for item in _commitments(response, span, config):
        first = bisect_left(offsets, last_end)  # the markers between the last answer and this one
        reflected = markers[first:bisect_left(offsets, item.pos, first)]
        if rounds and not reflected and _same_answer(rounds[-1].answer, item.answer):
            # The same answer again without reflecting in between restates the conclusion: same round,
            # answered in the strongest form it took ("so 2 * 13 = 26. The answer is \\boxed{26}.").
            last = rounds[-1]
            answer, method = (
                (item.answer, item.method) if _METHOD_RANK[item.method] <= _METHOD_RANK[last.method]
                else (last.answer, last.method)
            )
            rounds[-1] = Round(last.start, item.end, answer, method, last.marker)
            last_end = item.end
            continue
        if rounds:
            start, marker = reflected[0] if reflected else (last_end, None)
            previous = rounds[-1]
            rounds[-1] = Round(previous.start, start, previous.answer, previous.method, previous.marker)
        rounds.append(Round(start, item.end, item.answer, item.method, marker))
        last_end = item.end
    if rounds:  # reflections after the last answer that reach no new one belong to the last round
        last = rounds[-1]
        rounds[-1] = Round(last.start, span[1], last.answer, last.method, last.marker)
    return rounds


def split_rounds(response: str, config: RoundConfig = DEFAULT_CONFIG) -> list[Round]:
    """The reasoning rounds of a response, in order (empty when it never commits to an answer)."""
    reasoning, summary = _regions(response, config)
    rounds = _split_region(response, reasoning, config)
    if not rounds and summary is not None:
        rounds = _split_region(response, summary, config)
    return rounds


# ------------------------------------------------------------------------------------------------- judging


def round_judge_text(answer: str) -> str:
    """The text handed to the checker for a round's answer (a boxed answer is what it reads first)."""
    return f"\\boxed{{{answer}}}"


def judge_answers(pairs: Iterable[tuple[str, str]], judge_many: JudgeMany | None = None) -> dict[tuple[str, str], str]:
    """Verdict name for each distinct (answer, gold) pair; each distinct pair is judged once.

    `judge_many` defaults to in-process `answers.judge`; pass a `Verifier`'s ``judge_many`` for
    untrusted text (it enforces a hard deadline per item).
    """
    unique = list(dict.fromkeys((str(answer), str(gold)) for answer, gold in pairs))
    verdicts = (judge_many or judge_in_process)((round_judge_text(answer), gold) for answer, gold in unique)
    return {pair: verdict.verdict for pair, verdict in zip(unique, verdicts)}


def count_rounds(rounds: Sequence[Round], gold: str, verdicts: dict[tuple[str, str], str] | None = None) -> RoundCounts:
    """Count a response's rounds and erroneous rounds; `verdicts` from `judge_answers` (computed if None)."""
    gold = str(gold)
    if verdicts is None:
        verdicts = judge_answers(((r.answer, gold) for r in rounds))
    names = tuple(verdicts[(r.answer, gold)] for r in rounds)
    return RoundCounts(
        rounds=len(names),
        erroneous=sum(name == "wrong" for name in names),
        unjudged=sum(name not in ("correct", "wrong") for name in names),
        verdicts=names,
    )
