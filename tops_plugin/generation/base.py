"""The generation interface every backend implements, and the request/record vocabulary around it.

One request is one problem under one effort (or none), asking for `n_samples` responses. A backend
turns an iterable of requests into a stream of generation records (`tops_plugin.records.GenerationRecord`,
built by `outputs.py`) as they complete, so a caller can write each one to disk the moment it exists.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tops_plugin.prompts import EFFORT_PROMPTS, EFFORTS, build_messages

log = logging.getLogger(__name__)

__all__ = [
    "Backend",
    "BadRequest",
    "GenerationRequest",
    "SamplingParams",
    "request_problem",
    "sample_seed",
]

@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings shared by every backend. `temperature == 0` means greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16384
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if isinstance(self.stop, str):  # a lone string would otherwise become a tuple of characters
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))


@dataclass(frozen=True)
class GenerationRequest:
    """One problem row under one effort (None: no effort prompt), `n_samples` responses.

    `samples` names the sample indices still to generate (default: all of `range(n_samples)`); resume
    narrows it to the missing ones so a rerun produces exactly what was lost.
    """

    problem: dict
    effort: str | None
    n_samples: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    samples: tuple[int, ...] | None = None

    @property
    def sample_indices(self) -> tuple[int, ...]:
        return tuple(range(self.n_samples)) if self.samples is None else tuple(self.samples)

    @property
    def id(self):
        return self.problem.get("id") if isinstance(self.problem, dict) else None


class BadRequest(ValueError):
    """A request that cannot be generated (no id, empty problem, unknown effort); skipped, not fatal."""

    def __init__(self, problem_id, reason: str):
        self.problem_id, self.reason = problem_id, reason
        super().__init__(f"problem {problem_id!r}: {reason}")


def request_problem(request: GenerationRequest) -> str:
    """The problem text of a request, or `BadRequest` saying why it cannot be generated."""
    problem = request.problem
    if not isinstance(problem, dict):
        raise BadRequest(None, f"problem row is a {type(problem).__name__}, not an object")
    pid = problem.get("id")
    if pid is None or (isinstance(pid, str) and not pid.strip()):
        raise BadRequest(None, "missing id")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise BadRequest(None, f"id must be a string or an integer, got {type(pid).__name__} {pid!r}")
    text = problem.get("problem")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(pid, "empty problem text")
    for name, value in (("id", pid), ("problem text", text)):
        if isinstance(value, str) and (bad := _lone_surrogate(value)) is not None:
            raise BadRequest(pid, f"{name} is not valid Unicode (a lone surrogate at character {bad})")
    if request.effort is not None and request.effort not in EFFORT_PROMPTS:
        raise BadRequest(pid, f"unknown effort {request.effort!r} (expected one of {', '.join(EFFORTS)})")
    if request.n_samples < 1:
        raise BadRequest(pid, f"n_samples must be >= 1, got {request.n_samples}")
    bad = [s for s in request.sample_indices if not 0 <= s < request.n_samples]
    if bad:
        raise BadRequest(pid, f"sample indices {bad} outside range({request.n_samples})")
    return text


def _lone_surrogate(text: str) -> int | None:
    """Index of the first unpaired surrogate (JSON's "\\ud800"), which no tokenizer or API can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def valid_requests(
    requests: Iterable[GenerationRequest], errors: list[tuple[object, str]]
) -> Iterator[tuple[GenerationRequest, list[dict]]]:
    """Each request with its chat messages. A bad request is logged, appended to `errors` as
    (problem id, reason) and skipped: one bad row never stops a long run."""
    for request in requests:
        try:
            text = request_problem(request)
        except BadRequest as exc:
            log.warning("skipping request: %s", exc)
            errors.append((exc.problem_id, exc.reason))
            continue
        yield request, build_messages(text, request.effort)


def sample_seed(seed: int, problem_id, effort: str | None, sample: int) -> int:
    """A per-(problem, effort, sample) seed derived from the run seed.

    Engines that seed each request (vLLM, API servers) then give the same response for the same
    sample however the work was batched, sharded or resumed.
    """
    key = f"{seed}\x1f{problem_id}\x1f{effort}\x1f{sample}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little") & 0x7FFFFFFF


@runtime_checkable
class Backend(Protocol):
    """A generation engine. `generate` yields generation records (`tops_plugin.records.GenerationRecord`, built
    by `outputs.py`) as they complete (any order).

    Requests that cannot be generated are skipped and appended to `errors` as `(id, reason)`; samples
    that failed for good (an API that kept refusing) are reported the same way and simply missing, so a
    resumed run fills them in.
    """

    name: str
    model: str
    errors: list[tuple[object, str]]

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[dict]: ...

    def close(self) -> None: ...
