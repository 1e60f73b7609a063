"""OpenAI-compatible chat backend (OpenAI, a local `vllm serve`, any compatible endpoint).

One API call per sample (reasoning models refuse `n > 1`), at most `concurrency` at a time. The openai
SDK retries each (`max_retries` times, with exponential backoff on 408/409/429/5xx and connection errors,
honouring `Retry-After`); a call that still fails is recorded in `errors` and its samples are left for a
rerun to fill in. The API's
`usage` (with `completion_tokens_details.reasoning_tokens`) is recorded so the hidden-reasoning
estimate of o1-style models can be computed later. The API key is read from the environment and
never logged or written.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from tops_plugin.generation.base import GenerationRequest, sample_seed, valid_requests
from tops_plugin.generation.outputs import RawOutput, make_records

__all__ = ["OpenAIBackend"]

log = logging.getLogger(__name__)


class OpenAIBackend:
    """`load_backend("openai", "o1-mini", base_url=…, concurrency=…, reasoning_effort=…)`."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        max_retries: int = 8,
        timeout: float = 600.0,
        reasoning_effort: str | None = None,
        max_tokens_field: str = "max_completion_tokens",
        send_sampling: bool = True,
        extra_body: dict | None = None,
        count_tokenizer=None,
        client=None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_tokens_field not in ("max_completion_tokens", "max_tokens"):
            raise ValueError(f"max_tokens_field must be max_completion_tokens or max_tokens, got {max_tokens_field!r}")
        self.model = model
        self.concurrency = concurrency
        self.reasoning_effort = reasoning_effort
        self.max_tokens_field = max_tokens_field
        self.send_sampling = send_sampling
        self.extra_body = dict(extra_body or {})
        self.count_tokenizer = count_tokenizer
        self.errors: list[tuple[object, str]] = []
        self.retries = 0  # retries the client made for calls that then succeeded
        self._lock = threading.Lock()
        self.client = client if client is not None else self._make_client(base_url, api_key_env, timeout, max_retries)

    @staticmethod
    def _make_client(base_url: str | None, api_key_env: str, timeout: float, max_retries: int):
        import openai

        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get(api_key_env)
        if not api_key:
            if base_url is None:
                raise ValueError(f"no API key: set the environment variable {api_key_env} (or pass base_url for a local server)")
            api_key = "EMPTY"  # local servers (vllm serve) accept any key
        return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"OpenAIBackend(model={self.model!r}, concurrency={self.concurrency})"

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    # -- requests ---------------------------------------------------------------------------------
    def call_kwargs(self, request: GenerationRequest, sample: int, messages: list[dict]) -> dict:
        """The `chat.completions.create` arguments for one sample."""
        sampling = request.sampling
        kwargs: dict = {
            "model": self.model,
            "messages": messages,
            self.max_tokens_field: sampling.max_tokens,
            "seed": sample_seed(sampling.seed, request.id, request.effort, sample),
        }
        if self.send_sampling:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if self.reasoning_effort is not None:
            kwargs["reasoning_effort"] = self.reasoning_effort
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        return kwargs

    def _jobs(self, requests: Iterable[GenerationRequest]) -> Iterator[tuple[GenerationRequest, int, list[dict]]]:
        for request, messages in valid_requests(requests, self.errors):
            for sample in request.sample_indices:
                yield request, sample, messages

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[dict]:
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai")
        pending: set[Future] = set()
        try:
            for job in self._jobs(requests):
                pending.add(pool.submit(self._call, *job))
                if len(pending) >= 2 * self.concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from self._finish(done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from self._finish(done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _finish(self, done: Iterable[Future]) -> Iterator[dict]:
        raw = [out for out in (future.result() for future in done) if out is not None]
        yield from make_records(raw, self.model, self.count_tokenizer)

    # -- one call ---------------------------------------------------------------------------------------
    def _call(self, request: GenerationRequest, sample: int, messages: list[dict]) -> RawOutput | None:
        """One sample; the client has retried what can succeed on retry. None (and an `errors` entry) when
        the call failed for good: a long run goes on, and a rerun asks for the missing samples."""
        import openai

        where = f"effort {request.effort} sample {sample}"
        try:
            reply = self.client.chat.completions.with_raw_response.create(**self.call_kwargs(request, sample, messages))
            with self._lock:
                self.retries += reply.retries_taken
            return self._raw(request, sample, messages, reply.parse())
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            status = getattr(exc, "status_code", None)
            reason = f"{where}: {type(exc).__name__}" + (f" (HTTP {status})" if status else "")
        except Exception as exc:  # a malformed reply must not end a long run: report it, move on
            reason = f"{where}: {type(exc).__name__}: {exc}"[:300]
        log.warning("problem %r %s; giving up", request.id, reason)
        with self._lock:
            self.errors.append((request.id, reason))
        return None

    def _raw(self, request: GenerationRequest, sample: int, messages: list[dict], response) -> RawOutput:
        choice = response.choices[0]
        usage = response.usage.model_dump(exclude_none=True) if response.usage is not None else {}
        extra: dict = {"usage": usage}
        reasoning = (getattr(choice.message, "model_extra", None) or {}).get("reasoning_content")
        if reasoning:
            extra["reasoning"] = reasoning
        gen_tokens = usage.get("completion_tokens", 0)
        return RawOutput(request, sample, messages, choice.message.content or "", choice.finish_reason, gen_tokens, extra)
