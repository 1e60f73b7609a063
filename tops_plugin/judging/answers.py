"""Extract a response's final answer and judge it against the gold answer with math-verify.

Two verbs, as in math-verify: `extract_answer` finds the answer a response commits to, `judge` decides
whether it equals the gold answer. Both are pure and run in-process; untrusted text should go through
`tops_plugin.judging.verifier.Verifier`, which adds the hard deadline math-verify cannot give off the main thread.

Where the answer is looked for, in order (the first source that yields one wins):

1. the *final part* of a reasoning model's output -- the text after the last ``</think>`` (an unclosed
   ``<think>`` means generation was cut, so the final part is empty);
2. within that text: the last ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5``; then anchored phrases
   ("final answer is", "the answer is", "**Answer:**", "A:", "X is the correct answer") -- or, when it
   comes later, a conclusion stated in prose ("the value of X is Y", "(the same|my) (answer|result): Y",
   "Therefore, X is Y." near the end of a finished response; see `_prose_answer`); then, for numeric
   golds only, GSM8K's ``#### N`` and finally the last number;
3. if the final part holds no answer, the reasoning itself -- boxed and anchored answers only: a bare
   number picked from unfinished reasoning is not an answer the model committed to.

The last-number fallback is also skipped for responses known to be truncated (``truncated=True``), which
is how math-verify used plainly ends up accepting a number from the middle of a cut-off response.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

__all__ = ["Extraction", "Verdict", "VERDICTS", "extract_answer", "judge", "normalize_answer", "split_thinking"]

VERDICTS: tuple[str, ...] = ("correct", "wrong", "no_answer", "timeout", "error")

#: math-verify's own (signal based) time budget per parse/compare, used only on a main thread.
MATH_VERIFY_TIMEOUT_S = 3


@dataclass(frozen=True)
class Extraction:
    """An answer found in a response: its text, how it was found, and in which part."""

    text: str
    method: str  # "boxed" | "phrase" | "prose" | "gsm8k" | "last_number"
    part: str  # "final" | "reasoning"

    @property
    def source(self) -> str:
        return f"{self.part}:{self.method}"


@dataclass(frozen=True)
class Verdict:
    """The judgement of one response (the verdict fields `tops_plugin.judging.rows.judge_rows` adds to a row)."""

    verdict: str
    pred: str | None = None
    answer_from: str | None = None

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"

    def fields(self) -> dict:
        """The keys merged into a record: ``pred``, ``correct``, ``verdict``, ``answer_from``."""
        return {"pred": self.pred, "correct": self.correct, "verdict": self.verdict, "answer_from": self.answer_from}


# --------------------------------------------------------------------------------------------- splitting

#: (open, close) tag pairs of reasoning blocks: DeepSeek-R1/QwQ style and Sky-T1 style.
THINKING_TAGS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
)
_SOLUTION_TAGS = re.compile(r"<\|(?:begin|end)_of_solution\|>")


def split_thinking(response: str) -> tuple[str, str]:
    """Split a response into (reasoning, final part).

    Closed block: everything up to the last closing tag is reasoning. Unclosed opening tag: all of it is
    reasoning and the final part is empty (generation was cut). No tags: no reasoning.
    """
    for open_tag, close_tag in THINKING_TAGS:
        close = response.rfind(close_tag)
        if close >= 0:
            return response[:close], _SOLUTION_TAGS.sub("", response[close + len(close_tag) :])
        open_ = response.find(open_tag)
        if open_ >= 0:
            return response[open_ + len(open_tag) :], ""
    return "", response


# ------------------------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*(\{)?")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` (nested braces), or of ``\\boxed 5``."""
    for match in reversed(list(_BOX_RE.finditer(text))):
        start = match.end()
        if match.group(1) is None:  # \boxed 5  (one token, as LaTeX reads it)
            token = re.match(r"[^\s$}\\]+", text[start:])
            if token:
                return token.group(0)
            continue
        depth, i = 1, start
        while i < len(text):
            char = text[i]
            if char == "\\":
                i += 2
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i]
            i += 1
    return None


# Anchored phrases, most specific first. Each captures the rest of the line after the anchor.
_PHRASES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    for pattern in (
        r"final\s+answer\s*(?:is|:|=|would be|will be)\s*:?\s*(?P<ans>[^\n]+)",
        r"\*\*\s*(?:final\s+)?answer\s*:?\s*\*\*\s*:?\s*(?P<ans>[^\n]+)",
        r"^\s*(?:#+\s*)?(?:final\s+)?answer\s*:\s*(?P<ans>[^\n]+)",
        r"\bthe\s+(?:correct\s+)?answer\s+(?:is|would be|will be|should be)\s*:?\s*(?P<ans>[^\n]+)",
        r"^\s*A\s*:\s*(?P<ans>[^\n]+)",
        r"(?P<ans>[^\s:]+)\s+is\s+the\s+(?:correct|final|right)\s+answer",
    )
)

_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _phrase_answer(text: str) -> tuple[str, int] | None:
    """The last anchored answer of the most specific phrase kind, with its offset."""
    for pattern in _PHRASES:
        matches = list(pattern.finditer(text))
        if matches:
            answer = _clip_phrase(matches[-1].group("ans"))
            if answer:
                return answer, matches[-1].start()
    return None


_FILLER = re.compile(
    r"^(?:(?:indeed|still|actually|definitely|clearly|probably|simply|just|then|therefore|thus|now|also|"
    r"exactly|precisely|equal\s+to|given\s+by|as\s+follows)\b[\s,:]*)+",
    re.IGNORECASE,
)


def _clip_phrase(answer: str) -> str:
    """Keep the answer itself from the rest of an anchored line: the first math span, else up to a period."""
    answer = _FILLER.sub("", answer.strip())
    inline = re.search(r"\$\$?(.+?)\$\$?|\\\((.+?)\\\)|\\\[(.+?)\\\]", answer)
    if inline:
        return next(group for group in inline.groups() if group is not None).strip()
    # End of sentence: a period followed by a space/end that is not a decimal point.
    answer = re.split(r"(?<!\d)\.(?:\s|$)|\.\s", answer, maxsplit=1)[0]
    return answer.strip().rstrip(".").strip()


# Conclusions stated in prose, for finished responses whose final answer is a sentence, not a box.
_PROSE: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # "the value of \(k\) is indeed \(\frac{5}{3}\)", "the value of m is 12"
        r"\bthe\s+value\s+of\s+[^.\n]{1,80}?\s+(?:is|equals|=)\s+(?P<ans>[^\n]+)",
        # "I get the same result: $3 - 4i$", "my answer is: 7"
        r"\b(?:the\s+same|my)\s+(?:final\s+)?(?:answer|result)\s*(?:is|was)?\s*:\s*(?P<ans>[^\n]+)",
        # "Therefore, the difference is indeed 7π." -- a concluding sentence "X is Y."
        r"(?:^|[.!?]\s+|\n)\s*(?:so|therefore|thus|hence|finally|in\s+conclusion)\b,?\s*(?:yes,\s*)?"
        r"[^.\n]{0,120}?\s(?:is|are|equals)\s+(?P<ans>[^\n]+)",
    )
)
_COMPUTATION = re.compile(r"[\d$=]|\\[(\[]")
#: Prose conclusions count only when they start this close to the end of the final part.
PROSE_TAIL_CHARS = 400

NUMBER_WORDS: dict[str, str] = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
#: Words after a number word that make it part of a larger quantity or relation, not a count of things.
_NOT_A_COUNTED_NOUN = frozenset(
    [*NUMBER_WORDS, *"half halves third thirds quarter quarters fourth fourths fifth fifths sixth sixths seventh "
     "sevenths eighth eighths ninth ninths tenth tenths hundred hundreds thousand thousands million millions "
     "billion dozen more less than times fold of to or and plus minus over divided per point percent squared "
     "cubed only when if unless".split()]
)
_STARTS_MATHEMATICAL = re.compile(r"\s*(?:[-−+\d.$\\(\[{π√∞]|(?:%s)\b)" % "|".join(NUMBER_WORDS), re.IGNORECASE)


#: After a prose conclusion, words that take it back or say the work goes on.
_REVISION = re.compile(
    r"\b(?:wait|hmm+|however|actually|mistake|wrong|incorrect|not\s+(?:right|correct|sure|quite)|can't\s+be|"
    r"reconsider|rethink|re-?examine|start\s+over|try\s+again|need\s+to|still\s+need|next|contradict\w*|"
    r"impossible|no\s+(?:such|solution)|does(?:n't|\s+not)\s+work)\b",
    re.IGNORECASE,
)
#: Before a prose statement in its sentence, words that make it a hypothesis or a step, not a conclusion.
_HYPOTHESIS = re.compile(r"\b(?:whether|if|suppose|assum\w*|doubt\w*|unless|wonder\w*|so\s+far)\b", re.IGNORECASE)


def _prose_answer(text: str) -> tuple[str, int] | None:
    """The last conclusion stated in prose near the end of `text`, with its offset, if what it states
    starts as mathematics (a number, a number word, LaTeX) -- "the method is sound" is not an answer --
    and nothing is computed after its line: a step followed by more arithmetic is not the conclusion.
    Nor is a statement the text then takes back or goes on from ("Wait, no", "I still need to find y")
    or one put as a hypothesis in its sentence ("check whether the value of m is 12"). A text that does not
    end as a finished one ("...is 12 apples, and the") was cut off, marked or not: no prose answer."""
    if not _looks_finished(text):
        return None
    floor = len(text) - PROSE_TAIL_CHARS
    best: tuple[str, int] | None = None
    for pattern in _PROSE:
        for match in pattern.finditer(text, max(floor, 0)):
            if _COMPUTATION.search(text, match.end("ans")) or _REVISION.search(text, match.start("ans")):
                continue
            sentence_start = max(text.rfind(mark, 0, match.start("ans")) for mark in ".!?\n") + 1
            if _HYPOTHESIS.search(text[sentence_start:match.start("ans")]):
                continue
            answer = _clip_phrase(re.split(r",\s+(?:which|so|because|since|as|and)\b", match.group("ans"))[0])
            if answer and _STARTS_MATHEMATICAL.match(answer) and (best is None or match.start() > best[1]):
                best = (answer, match.start())
    return best


#: Weak answers (phrases, ``####``, last number) must start within this many characters of the end of
#: the text unless the text looks finished: a cut-off response often says "the answer is 6" mid-way.
TAIL_CHARS = 600
_FINISHED_END = re.compile(r"[.!?)\]}$*>]\s*$")


def _looks_finished(text: str) -> bool:
    return bool(_FINISHED_END.search(text[-50:]))


def _weak_ok(text: str, start: int) -> bool:
    return start >= len(text) - TAIL_CHARS or _looks_finished(text)


def _find_in(
    text: str, part: str, numeric_gold: bool, allow_last_number: bool, boxed_only: bool = False,
    allow_prose: bool = False,
) -> Extraction | None:
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return Extraction(boxed.strip(), "boxed", part)
    if boxed_only:
        return None
    phrase = _phrase_answer(text)
    if phrase and not _weak_ok(text, phrase[1]):
        phrase = None
    prose = _prose_answer(text) if allow_prose else None
    if prose and (phrase is None or prose[1] > phrase[1]):  # the last conclusion wins over a restatement
        return Extraction(prose[0], "prose", part)
    if phrase:
        return Extraction(phrase[0], "phrase", part)
    if numeric_gold:
        hashes = list(re.finditer(r"####\s*([^\n]+)", text))
        if hashes and hashes[-1].group(1).strip() and _weak_ok(text, hashes[-1].start()):
            return Extraction(hashes[-1].group(1).strip(), "gsm8k", part)
        if allow_last_number:
            numbers = list(_NUMBER_RE.finditer(text))
            if numbers and (_looks_finished(text) or not text[numbers[-1].end() :].strip()):
                return Extraction(numbers[-1].group(0), "last_number", part)
    return None


def extract_answer(response: str, numeric_gold: bool = False, truncated: bool = False) -> Extraction | None:
    """The answer a response commits to, or None. See the module docstring for the search order."""
    reasoning, final = split_thinking(response)
    found = _find_in(final, "final", numeric_gold, allow_last_number=not truncated, allow_prose=not truncated)
    if found is None and reasoning:
        # A closed block was finished: its anchored statements count. An unclosed one was cut mid-way:
        # only a boxed answer is a commitment, a phrase there is often a step that is revised later.
        closed = bool(final) or any(close in response for _, close in THINKING_TAGS)
        found = _find_in(reasoning, "reasoning", numeric_gold, allow_last_number=False, boxed_only=not closed)
    return found


# ---------------------------------------------------------------------------------------- normalisation

_TEXT_UNIT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit)\s*\{([^{}]*)\}")
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:(?:,|\\!|,\\!|\{,\}|\\,)\d{3})+(?:\.\d+)?$")
_NUMBER_THEN_WORDS = re.compile(
    r"(-?\d[\d,]*(?:\.\d+)?)\s*(?:\^\s*\{?\s*(?:st|nd|rd|th)\s*\}?|st|nd|rd|th)?"
    r"(?:\s*(?!(?:pi|sin|cos|tan|log|ln|sqrt|i)\b)[A-Za-z]{2,}[A-Za-z/ ]*(?:\^\s*\{?\d\}?)?)?"
)


def normalize_answer(answer: str) -> str:
    """Canonical text of an extracted answer: markdown, dollars, units, degrees, percent and thousands
    separators removed, ``\\dfrac`` as ``\\frac``, no trailing period. Mathematical content is kept.
    """
    text = answer.strip()
    text = text.replace("**", "").replace("__", "")
    text = re.sub(r"^\$+|\$+$", "", text).strip()
    text = text.replace("\\$", "").replace("\\%", "").replace("%", "")
    text = re.sub(r"\^\s*\{?\\circ\}?|°|\\degree", "", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"\\left|\\right", "", text)
    text = re.sub(r"\\[,;!:]\s*$|\\\s*$", "", text)
    # \text{east} -> east ; 5\text{ cm} -> 5 (a unit after a number is dropped)
    unit_after_number = re.match(
        r"^(-?[\d.,]+(?:\\!?\d+)*)\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}\s*(?:\^\s*\{?\d\}?)?\s*$", text
    )
    if unit_after_number:
        text = unit_after_number.group(1)
    text = _TEXT_UNIT_RE.sub(r"\1", text)
    text = text.replace("π", "\\pi").replace("√", "\\sqrt")
    text = text.strip().rstrip(".").strip()
    # five red marbles -> 5 (a small integer written as a word, alone or before a few plain nouns; not
    # "one half", "two less than m", "twenty-one", "one-to-one")
    words = text.lower().split()
    if (words and words[0] in NUMBER_WORDS and len(words) <= 4 and all(w.isalpha() for w in words)
            and not _NOT_A_COUNTED_NOUN.intersection(words[1:])):
        text = NUMBER_WORDS[words[0]]
    # 12^{th} grade -> 12 ; 864 square inches -> 864 ; 15 cm^2 -> 15
    number_then_words = _NUMBER_THEN_WORDS.fullmatch(text)
    if number_then_words:
        text = number_then_words.group(1)
    if _THOUSANDS_RE.match(text):
        text = re.sub(r",|\\!|\{,\}|\\,", "", text)
    if re.fullmatch(r"-?\d+\.0+", text):
        text = text.split(".")[0]
    return text.strip()


_INT_RE = re.compile(r"[+-]?\d+")


def _canonical_int(text: str) -> str:
    """A plain integer's digits without sign '+' or leading zeros, by string: Python refuses int() on
    strings over 4,300 digits, and a 5,000-digit answer is still an answer."""
    digits = text.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if text.startswith("-") and digits != "0" else digits
_NUMERIC_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


def _is_numeric(gold: str) -> bool:
    return bool(_NUMERIC_RE.fullmatch(normalize_answer(gold)))


# -------------------------------------------------------------------------------------------- comparing

_PARSE_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


def _budget() -> int | None:
    # math-verify's timeouts use SIGALRM, which only works on the main thread.
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list:
    return parse(f"${text}$", extraction_config=_PARSE_CONFIG, parsing_timeout=_budget(), raise_on_error=True)


@lru_cache(maxsize=4096)
def parse_gold(gold: str) -> tuple:
    """Parsed gold answer, cached: on grouped data one parse serves every response to the problem."""
    try:
        return tuple(_parse(normalize_answer(gold)))
    except TimeoutException:
        return ()
    except Exception:
        return ()


def _math_equal(gold: str, pred: str) -> bool | None:
    """math-verify's comparison, gold first; None when it ran out of time."""
    gold_parsed = parse_gold(gold)
    try:
        pred_parsed = _parse(pred)
    except TimeoutException:
        return None
    except Exception:
        pred_parsed = []
    timed_out = False
    for g, p in product(gold_parsed, pred_parsed):
        try:
            if verify(g, p, timeout_seconds=_budget(), raise_on_error=True):
                return True
        except TimeoutException:
            timed_out = True
        except Exception:
            continue
    return None if timed_out else False


def judge(response: str, gold: str, truncated: bool = False) -> Verdict:
    """Judge one response against a gold answer (in-process, no hard deadline)."""
    try:
        gold = str(gold)
        found = extract_answer(response, numeric_gold=_is_numeric(gold), truncated=truncated)
        if found is None:
            return Verdict("no_answer")
        pred = normalize_answer(found.text)
        if not pred:
            return Verdict("no_answer", None, found.source)
        gold_norm = normalize_answer(gold)
        # Fast path: decided without sympy (identical text, or two plain integers).
        if pred == gold_norm:
            return Verdict("correct", pred, found.source)
        if _INT_RE.fullmatch(pred) and _INT_RE.fullmatch(gold_norm):
            same = _canonical_int(pred) == _canonical_int(gold_norm)
            return Verdict("correct" if same else "wrong", pred, found.source)
        equal = _math_equal(gold_norm, pred)
        if equal is None:
            return Verdict("timeout", pred, found.source)
        return Verdict("correct" if equal else "wrong", pred, found.source)
    except TimeoutException:
        return Verdict("timeout")
    except RecursionError:
        return Verdict("error")
    except Exception:
        return Verdict("error")
