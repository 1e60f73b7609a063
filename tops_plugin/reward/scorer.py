"""Rewards for OpenRLHF RL: judge each rollout with the verifier pool and shape it by length.

OpenRLHF calls ``reward_func(queries, prompts, labels)`` once per sample from a worker thread,
where ``queries`` is prompt + response decoded *with* special tokens. This module turns that into rewards:

1. ``parse_label`` reads the label: the plain gold answer, or a JSON object ``{"answer": …, "ref_tokens": …}``
   carrying per-problem data (``ref_tokens``: the shortest known correct response, in Qwen2.5 tokens, e.g.
   the ``chosen_tokens``/``tokens`` of TOPS selection rows);
2. ``response_text`` cuts the prompt off the query and drops chat special tokens;
3. a ``Verifier`` (one per process, shared by all threads) judges the response under a hard deadline;
4. a *reward mode* -- a small function built from the frozen ``RewardConfig`` and registered by name in
   ``REWARD_MODES`` (open-r1 style) -- maps the judged sample to a reward.

Modes
-----
``correct``: 1 for a correct answer, else 0.

``thinking_optimal``: with response length ``L`` and the problem's reference length ``R`` (both Qwen2.5
tokens), a correct response earns ::

    r = floor + (1 - floor) * min(1, R * (1 + tolerance) / L)

and anything else earns 0. So a correct response as short as the shortest known correct one earns 1, one
twice as long earns halfway between ``floor`` and 1, and none earns less than ``floor`` (default 0.5). Why:
TOPS (arXiv 2502.18080) finds that on easy problems longer chains of thought lower accuracy and that the
best model trains on the *shortest correct* response per problem; this is the per-sample, training-time
form of that selection. Length pressure is applied only to correct answers and never pushes a correct
answer below a wrong one (floor > 0): as in Kimi k1.5's length reward (a wrong answer never gains from
being short) and ShorterBetter (reward relative to the sample-optimal length, i.e. the shortest correct),
a length term that can outweigh correctness teaches the policy to answer briefly and wrongly. OpenRLHF
gives no hook the n samples of one prompt together, so the reference comes from the label, not the group;
the group baselines (``--algo.advantage.estimator group_norm|rloo|reinforce_baseline``) supply the
within-group comparison. Without ``ref_tokens`` a correct response earns 1 (counted as ``no_ref``).
OpenRLHF's own ``--reward.overlong_buffer_len`` and ``--reward.stop_properly_penalty_coef`` act on these
rewards afterwards; they compose and are not repeated here.

``scores`` (OpenRLHF's dynamic filtering) is correctness, 1 or 0, in every mode: filtering should drop the
all-correct and all-wrong groups, not groups whose lengths happen to agree.

Configuration: a YAML file named by ``TOPS_REWARD_CONFIG`` (keys = ``RewardConfig`` fields), else the
defaults below. Nothing here raises on bad input: a failure is a 0 reward counted in ``extra_logs``.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import yaml

from tops_plugin.judging.answers import Verdict
from tops_plugin.judging.verifier import Verifier
from tops_plugin.tokens import count_tokens, load_tokenizer

__all__ = [
    "CONFIG_ENV",
    "LOG_KEYS",
    "REWARD_MODES",
    "Judged",
    "Label",
    "RewardConfig",
    "RewardMode",
    "Scorer",
    "load_config",
    "parse_label",
    "reward_func_path",
    "response_text",
    "default_workers",
    "shared_scorer",
]

CONFIG_ENV = "TOPS_REWARD_CONFIG"

#: Chat and end-of-sequence markers removed from a decoded response (Qwen/ChatML, Llama 3, DeepSeek, T5).
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|begin_of_text|>",
    "<｜end▁of▁sentence｜>",
    "</s>",
)

#: Marker after which a ChatML assistant turn starts; used when the prompt is not a prefix of the query.
ASSISTANT_MARKERS: tuple[str, ...] = (
    "<|im_start|>assistant\n",
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
)


@dataclass(frozen=True)
class RewardConfig:
    """What the reward does; read once per process from YAML (``TOPS_REWARD_CONFIG``) or defaults."""

    mode: str = "correct"
    floor: float = 0.5  # thinking_optimal: least reward of a correct response
    tolerance: float = 0.0  # thinking_optimal: slack over the reference length before the reward decays
    timeout: float = 5.0  # seconds per item, hard (the verifier kills the worker)
    workers: int | None = None  # verifier processes per process that loads the reward; None = see below
    tokenizer: str | None = None  # counts response tokens; None = offline Qwen2.5 files
    special_tokens: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS

    def __post_init__(self) -> None:
        for name in ("floor", "tolerance", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):  # YAML `yes` is True, i.e. 1
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.mode not in REWARD_MODES:
            raise ValueError(f"unknown reward mode {self.mode!r}; choose one of {sorted(REWARD_MODES)}")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {self.floor}")
        if not 0 <= self.tolerance < math.inf:
            raise ValueError(f"tolerance must be a finite number >= 0, got {self.tolerance}")
        if not 0 < self.timeout < math.inf:
            raise ValueError(f"timeout must be a positive finite number of seconds, got {self.timeout}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")
        object.__setattr__(self, "special_tokens", tuple(self.special_tokens))


def load_config(path: str | os.PathLike | None = None) -> RewardConfig:
    """Config from `path`, else from the file named by ``TOPS_REWARD_CONFIG``, else the defaults."""
    path = path if path is not None else os.environ.get(CONFIG_ENV) or None
    if path is None:
        return RewardConfig()
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: reward config must be a mapping of RewardConfig fields")
    known = {f.name for f in fields(RewardConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown reward config keys {unknown}; known: {sorted(known)}")
    try:
        return RewardConfig(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


# ------------------------------------------------------------------------------------- labels, queries


@dataclass(frozen=True)
class Label:
    """Gold answer plus optional per-problem data carried in the label."""

    answer: str
    ref_tokens: int | None = None


def parse_label(label: Any) -> Label:
    """Read a label: a gold string/number, a dict, or a JSON object string with ``answer``.

    A string that merely looks like braces (``{1, 2}``, a set) is a plain gold answer. Raises ValueError
    for a missing answer or a bad ``ref_tokens``.
    """
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            decoded = json.loads(label)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and "answer" in decoded:
            label = decoded
    if isinstance(label, Mapping):
        if label.get("answer") is None:
            raise ValueError("label object has no 'answer'")
        ref = label.get("ref_tokens")
        if ref is not None:
            if isinstance(ref, bool) or not isinstance(ref, (int, float)) or ref <= 0:
                raise ValueError(f"ref_tokens must be a positive number, got {ref!r}")
            ref = int(ref)
        return Label(str(label["answer"]), ref)
    if label is None or isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise ValueError(
            f"label must be a gold answer or an object with 'answer', got {type(label).__name__}"
        )
    return Label(str(label))


def response_text(
    query: str, prompt: str | None, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS
) -> str:
    """The model's response inside OpenRLHF's query (prompt + response, special tokens kept).

    The prompt is cut when it is a prefix of the query; otherwise (a left-truncated prompt) the text after
    the last assistant-turn marker is used. Special tokens are then removed wherever they occur.
    """
    text = query
    if prompt and text.startswith(prompt):
        text = text[len(prompt) :]
    else:
        cut = max(
            (text.rfind(marker) + len(marker) if marker in text else -1) for marker in ASSISTANT_MARKERS
        )
        if cut >= 0:
            text = text[cut:]
    for token in special_tokens:
        if token in text:
            text = text.replace(token, "")
    return text.strip()


# ------------------------------------------------------------------------------------------------ modes


@dataclass(frozen=True)
class Judged:
    """One rollout after judging: its verdict, label and (when the mode needs it) its token length."""

    verdict: Verdict
    label: Label
    tokens: int | None = None


@dataclass(frozen=True)
class RewardMode:
    """A reward function of one judged sample, and whether it needs the response's token count."""

    reward: Callable[[Judged], float]
    needs_tokens: bool = False


def correct(config: RewardConfig) -> RewardMode:
    """1 for a correct answer, 0 otherwise."""
    return RewardMode(lambda item: 1.0 if item.verdict.correct else 0.0)


def thinking_optimal(config: RewardConfig) -> RewardMode:
    """Correct answers earn more the closer they are to the shortest known correct length (module doc)."""
    floor, slack = config.floor, 1.0 + config.tolerance

    def reward(item: Judged) -> float:
        if not item.verdict.correct:
            return 0.0
        if item.label.ref_tokens is None or not item.tokens:
            return 1.0
        return floor + (1.0 - floor) * min(1.0, item.label.ref_tokens * slack / item.tokens)

    return RewardMode(reward, needs_tokens=True)


REWARD_MODES: dict[str, Callable[[RewardConfig], RewardMode]] = {
    "correct": correct,
    "thinking_optimal": thinking_optimal,
}


# ----------------------------------------------------------------------------------------------- scoring


class Checker(Protocol):
    """What a scorer needs from a verifier (local `Verifier` or `RayVerifier`)."""

    def judge_many(
        self,
        pairs: Sequence[tuple[str, str]],
        window: int | None = None,
        chunk: int = 1,
        budget: float | None = None,
    ) -> Iterable[Verdict]: ...


#: Keys of ``extra_logs``: the same every call, since OpenRLHF stacks them across samples.
LOG_KEYS: tuple[str, ...] = ("correct", "wrong", "no_answer", "timeouts", "errors", "no_ref")
_LOG_OF_VERDICT = {"correct": "correct", "wrong": "wrong", "no_answer": "no_answer", "timeout": "timeouts"}


class Scorer:
    """Turns OpenRLHF's (queries, prompts, labels) into rewards, scores and counts. Thread-safe."""

    def __init__(
        self,
        config: RewardConfig,
        verifier: Checker,
        count_tokens: Callable[[list[str]], list[int]] | None = None,
    ):
        self.config = config
        self.mode = REWARD_MODES[config.mode](config)
        self.verifier = verifier
        self._count_tokens = count_tokens

    def score(
        self,
        queries: Sequence[str],
        prompts: Sequence[str] | None,
        labels: Sequence[Any],
        budget: float | None = None,
    ) -> dict:
        """``{"rewards": [float], "scores": [float], "verdicts": [str], "extra_logs": {key: count}}``.

        Never raises: a sample that cannot be judged gets reward 0 and is counted under ``errors``. With a
        `budget` (seconds for the whole call), samples not started by then are ``timeout``.
        """
        n = len(queries) if isinstance(queries, Sequence) and not isinstance(queries, str) else 0
        verdicts: list[Verdict] = [Verdict("error")] * n
        parsed: list[Label | None] = [None] * n
        texts: list[str] = [""] * n
        try:
            prompts = list(prompts) if prompts is not None else [None] * n
            labels = list(labels) if labels is not None else [None] * n
            todo = []
            for i in range(n):
                try:
                    query, prompt = queries[i], prompts[i] if i < len(prompts) else None
                    if not isinstance(query, str):
                        raise ValueError("query is not a string")
                    parsed[i] = parse_label(labels[i] if i < len(labels) else None)
                    texts[i] = response_text(
                        query, prompt if isinstance(prompt, str) else None, self.config.special_tokens
                    )
                    todo.append(i)
                except Exception:
                    continue
            if todo:
                pairs = [(texts[i], parsed[i].answer) for i in todo]
                # The whole batch in flight at once: a hostile item holds up only its own worker.
                verdicts_in_order = self.verifier.judge_many(pairs, window=len(pairs), chunk=1, budget=budget)
                for i, verdict in zip(todo, verdicts_in_order):
                    verdicts[i] = verdict
        except Exception:
            pass  # what was judged stands; the rest stays "error"
        tokens = self._tokens(texts, verdicts, parsed)
        return self._assemble(verdicts, parsed, tokens)

    def _tokens(
        self, texts: list[str], verdicts: list[Verdict], parsed: list[Label | None]
    ) -> list[int | None]:
        """Token counts of the correct responses that have a reference length (the only ones that need it)."""
        out: list[int | None] = [None] * len(texts)
        if not self.mode.needs_tokens:
            return out
        wanted = [
            i for i, (v, lab) in enumerate(zip(verdicts, parsed)) if v.correct and lab and lab.ref_tokens
        ]
        if not wanted:
            return out
        try:
            counts = (self._count_tokens or _qwen_counter(self.config.tokenizer))([texts[i] for i in wanted])
            for i, count in zip(wanted, counts):
                out[i] = int(count)
        except Exception:
            pass  # no length: the sample is rewarded as plain correct and counted as no_ref
        return out

    def _assemble(
        self, verdicts: list[Verdict], parsed: list[Label | None], tokens: list[int | None]
    ) -> dict:
        logs = dict.fromkeys(LOG_KEYS, 0.0)
        rewards, scores = [], []
        for verdict, label, count in zip(verdicts, parsed, tokens):
            if label is None:
                verdict = Verdict("error")
            try:
                reward = float(self.mode.reward(Judged(verdict, label, count))) if label is not None else 0.0
            except Exception:
                reward, verdict = 0.0, Verdict("error")
            rewards.append(reward)
            scores.append(1.0 if verdict.correct else 0.0)
            logs[_LOG_OF_VERDICT.get(verdict.verdict, "errors")] += 1
            if self.mode.needs_tokens and verdict.correct and (count is None or label.ref_tokens is None):
                logs["no_ref"] += 1
        return {
            "rewards": rewards,
            "scores": scores,
            "verdicts": [v.verdict for v in verdicts],
            "extra_logs": logs,
        }


@lru_cache(maxsize=4)
def _qwen_counter(tokenizer: str | None) -> Callable[[list[str]], list[int]]:
    loaded = load_tokenizer(tokenizer)
    return lambda texts: count_tokens(texts, loaded)


# ------------------------------------------------------------------------------ one scorer per process

_shared: Scorer | None = None
_shared_lock = threading.Lock()


def default_workers() -> int:
    """Verifier processes of one process that loads the reward file: at most 4.

    OpenRLHF loads the reward file in every vLLM engine process, often 8 per node; a pool per core in
    each would start 8 x cores processes. Judging one rollout takes milliseconds, so 4 processes per
    engine keep up with generation and leave spares while one is stuck on a hostile item until its
    deadline. Raise ``workers`` in the reward config for a node with few engines and many cores.
    """
    return min(4, os.cpu_count() or 1)


def _forget_parent_scorer() -> None:
    """In a forked child: the parent's pool has no driver threads here, so start a fresh one on use."""
    global _shared, _shared_lock
    _shared, _shared_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_parent_scorer)


def shared_scorer() -> Scorer:
    """The process-wide scorer and its verifier pool, started on first use and closed at exit."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                config = load_config()
                verifier = Verifier(workers=config.workers or default_workers(), timeout=config.timeout)
                atexit.register(_close_quietly, verifier)
                _shared = Scorer(config, verifier)
    return _shared


def _close_quietly(verifier: Any) -> None:
    try:
        verifier.close()
    except Exception:
        pass


def reward_func_path() -> Path:
    """Installed path of `tops_plugin/reward/reward_func.py`, the file users pass as ``--reward.remote_url``."""
    return Path(__file__).resolve().parent / "reward_func.py"
