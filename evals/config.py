"""What one `python -m evals.run` asks for, checked when it is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tops_plugin.prompts import DEFAULT_EFFORT, EFFORTS, effort_label

__all__ = ["MODEL_BACKENDS", "RESPONSES_BACKEND", "TOKEN_COUNTS", "EvalConfig"]

MODEL_BACKENDS: tuple[str, ...] = ("vllm", "hf", "openai")
RESPONSES_BACKEND = "responses"  # scores a file of responses made elsewhere (`evals.sources.FileSamples`)
# What `tokens` counts: the whole response, or only the thought part of thought-and-summary models.
TOKEN_COUNTS: tuple[str, ...] = ("response", "thought")
_SECRET_HINTS = ("key", "token", "secret", "password")


@dataclass(frozen=True)
class EvalConfig:
    """Everything one `python -m evals.run` command asks for."""

    model: str
    backend: str
    benchmarks: tuple[str, ...]
    out: str
    n_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    max_tokens: int = 16384
    efforts: tuple[str | None, ...] | None = None  # None: no effort prompt (models) / as in file (responses)
    limit: int | None = None
    data_dir: str | None = None
    responses: str | None = None
    tokenizer: str | None = None
    workers: int | None = None
    timeout: float = 5.0
    greedy: bool = False
    backend_options: tuple[tuple[str, Any], ...] = ()
    count_tokens: str = "response"

    def __post_init__(self) -> None:
        if self.count_tokens not in TOKEN_COUNTS:
            raise ValueError(f"--count-tokens must be one of {', '.join(TOKEN_COUNTS)}, got {self.count_tokens!r}")
        if self.backend not in (*MODEL_BACKENDS, RESPONSES_BACKEND):
            raise ValueError(f"unknown backend {self.backend!r} (vllm, hf, openai or responses)")
        if self.backend == RESPONSES_BACKEND and not self.responses:
            raise ValueError("--backend responses needs --responses FILE")
        if self.backend != RESPONSES_BACKEND and self.responses:
            raise ValueError("--responses FILE only goes with --backend responses")
        if self.greedy:
            if self.n_samples != 1 or self.temperature not in (0, 0.0):
                raise ValueError("greedy decoding means temperature 0 and one sample per problem")
        if self.n_samples < 1:
            raise ValueError(f"--n-samples must be >= 1, got {self.n_samples}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        for effort in self.efforts or ():
            if effort is not None and effort not in EFFORTS:
                raise ValueError(f"unknown effort {effort!r} (expected {', '.join(EFFORTS)} or {DEFAULT_EFFORT})")
        if not self.benchmarks:
            raise ValueError("no benchmarks given")

    @property
    def generation_efforts(self) -> tuple[str | None, ...]:
        return self.efforts if self.efforts else (None,)

    def to_json(self) -> dict:
        """All settings, with secrets in backend options masked (summary.json is shared)."""
        data = asdict(self)
        data["benchmarks"] = list(self.benchmarks)
        data["efforts"] = None if self.efforts is None else [effort_label(e) for e in self.efforts]
        data["backend_options"] = {
            key: "***" if any(hint in key.lower() for hint in _SECRET_HINTS) else value
            for key, value in self.backend_options
        }
        return data
