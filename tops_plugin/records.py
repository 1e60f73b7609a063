"""The records that flow between the stages, as typed definitions.

Data flows one way: problems -> generation records -> verdicts -> selections -> OpenRLHF datasets ->
training -> a new model -> evaluation. Each arrow is a JSONL file (one JSON object a line), so every stage
can be resumed, inspected and run on another machine. A stage keeps the keys it does not own: extra keys are
allowed everywhere and carried along. The definitions below say which keys each stage writes and reads;
every one is a plain ``dict`` at run time.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "DpoRow",
    "Effort",
    "GenerationRecord",
    "JudgedRecord",
    "Message",
    "Problem",
    "SftRow",
    "VerdictFields",
    "VerdictName",
]

#: A reasoning-effort label; None (null) is the model's default behaviour, with no effort prompt.
Effort = Literal["low", "medium", "high"]

#: What judging concluded: ``timeout`` and ``error`` say how judging went, not what the answer is.
VerdictName = Literal["correct", "wrong", "no_answer", "timeout", "error"]


class Message(TypedDict):
    """One chat message, as OpenAI-style chat templates read it."""

    role: str  # "system", "user" or "assistant"
    content: str


class _ProblemRequired(TypedDict):
    id: str | int
    problem: str


class Problem(_ProblemRequired, total=False):
    """A math problem: one line of a benchmark or training file (the files under ``shared/data``).

    * ``id`` -- unique in its file, a string or an integer (compared as text);
    * ``problem`` -- the statement, as shown to the model;
    * ``answer`` -- the gold answer (LaTeX or a number); ``gold`` is accepted in its place;
    * ``level`` -- MATH's difficulty ("Level 3" or 3), read by the evaluation's per-level figures.

    Written by the data preparation (e.g. ``recipes.problems``); read by generation
    (`tops_plugin.generation.GenerationRequest`) and, through the records built from it, by judging.
    """

    answer: str | int | float
    gold: str | int | float
    level: str | int


class GenerationRecord(Problem, total=False):
    """One sampled response to one problem under one effort: every key of the problem, plus

    * ``effort`` -- "low" | "medium" | "high" | None (no effort prompt);
    * ``sample`` -- the sample's index for its (id, effort), from 0; (id, effort, sample) is the record's key;
    * ``seed`` -- the sampling seed the backend was given;
    * ``model`` -- the model that answered (a path, hub id or API model);
    * ``messages`` -- what was sent: the effort's system prompt (if any) and the user's problem;
    * ``response`` -- the text the model returned;
    * ``finish_reason`` -- "stop" when the model ended by itself, "length" when cut at the token limit;
    * ``tokens`` -- Qwen2.5 tokens of the response (the paper reports every model's length in them);
    * ``gen_tokens`` -- the model's own count of the tokens it generated;
    * ``usage`` -- API backends only: the provider's token accounting, as returned.
    * ``reasoning`` -- API backends only, when the server returns it apart (``reasoning_content``): the
      model's reasoning text.

    Written by `tops_plugin.generation` (``make_records``, appended and resumed by ``generate_to_file``);
    read by judging (`tops_plugin.judging.rows.judge_rows`), selection
    (`tops_plugin.selection.modes.read_records`) and the evaluation.
    """

    effort: Effort | None
    sample: int
    seed: int
    model: str
    messages: list[Message]
    response: str
    finish_reason: str | None
    tokens: int
    gen_tokens: int
    usage: dict
    reasoning: str


class VerdictFields(TypedDict, total=False):
    """What judging adds to any row that has a response and a gold answer (a generation record, mostly).

    * ``pred`` -- the normalised answer found, or None;
    * ``correct`` -- ``verdict == "correct"``;
    * ``verdict`` -- "correct" | "wrong" | "no_answer" | "timeout" | "error";
    * ``answer_from`` -- where the answer was found ("final:boxed", "reasoning:phrase", ...), or None;
    * ``truncated`` -- the response was cut before it finished: never a training target, and judged as cut
      (no last-number guess from its middle);
    * ``judge_key`` -- a digest of everything that decided the verdict (response, gold, truncation, checker
      version): a resumed run keeps an earlier verdict only while its key is unchanged.

    Written by `tops_plugin.judging.rows.judge_rows` (the ``check`` command, ``select --judge``, the recipe's
    judge stages, the evaluation); read by selection, which also accepts a row with only a boolean
    ``correct`` (verdict "correct" or "wrong").
    """

    pred: str | None
    correct: bool
    verdict: VerdictName
    answer_from: str | None
    truncated: bool
    judge_key: str


class JudgedRecord(GenerationRecord, VerdictFields, total=False):
    """A generation record with its verdict fields: what selection reads."""


class _SftRowRequired(TypedDict):
    prompt: list[Message]
    response: list[Message]
    id: str | int
    tokens: int


class SftRow(_SftRowRequired, total=False):
    """One SFT example in OpenRLHF's format (``--data.input_key prompt --data.output_key response
    --data.apply_chat_template``): message lists, never pre-rendered strings, so the trained model's own
    chat template renders them.

    * ``prompt`` -- the messages before the answer (an effort's system prompt, if any, and the problem);
    * ``response`` -- one assistant message: the chosen response;
    * ``id`` -- the problem's id;
    * ``tokens`` -- Qwen2.5 tokens of the response;
    * ``effort`` -- the effort the row teaches (seed rows: the *re-assigned* effort, by length rank);
    * ``sample`` -- the chosen record's sample index;
    * ``prompt_effort`` -- seed rows: the effort whose prompt produced the response;
    * ``curation_tokens`` -- seed rows curated with another tokenizer: the length they were ranked by;
    * ``origin`` -- "seed" for the low-effort seed rows added to a TOPS selection.

    Written by `tops_plugin.selection.openrlhf.sft_row` (modes shortest, random, iter-sft and seed); read by
    OpenRLHF's SFT trainer and, for seed files, by ``add_seed_rows``.
    """

    effort: Effort | None
    sample: int | None
    prompt_effort: Effort
    curation_tokens: int
    origin: str


class _DpoRowRequired(TypedDict):
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    pair: Literal["longest_wrong", "shorter_wrong"]
    id: str | int
    chosen_tokens: int
    rejected_tokens: int


class DpoRow(_DpoRowRequired, total=False):
    """One preference pair in OpenRLHF's format (``--data.prompt_key prompt --data.chosen_key chosen
    --data.rejected_key rejected --data.apply_chat_template``); with the chat template on, OpenRLHF needs
    message lists here, not strings.

    * ``prompt`` -- the messages before the answer;
    * ``chosen`` -- one assistant message: the shortest correct response;
    * ``rejected`` -- one assistant message: a wrong (or, by the rules, rejectable) response;
    * ``pair`` -- "longest_wrong" (against the longest wrong response) or "shorter_wrong" (against the
      shortest wrong one, emitted only when it is shorter than the chosen response);
    * ``id`` -- the problem's id;
    * ``chosen_tokens``, ``rejected_tokens`` -- Qwen2.5 tokens of each response;
    * ``chosen_sample``, ``rejected_sample`` -- the sample index of each.

    Written by `tops_plugin.selection.openrlhf.dpo_row` (mode iter-dpo); read by OpenRLHF's DPO trainer.
    """

    chosen_sample: int | None
    rejected_sample: int | None
