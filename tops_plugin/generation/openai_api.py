"""OpenAI-compatible chat backend (OpenAI, a local `vllm serve`, any compatible endpoint).

One API call per sample (reasoning models refuse `n > 1`), at most `concurrency` at a time, each
retried with exponential backoff on 429/5xx/connection errors, honouring `Retry-After`. The API's
`usage` (with `completion_tokens_details.reasoning_tokens`) is recorded so the hidden-reasoning
estimate of o1-style models can be computed later. The API key is read from the environment and
never logged or written.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from tops_plugin.generation.base import GenerationRequest, sample_seed, valid_requests
from tops_plugin.generation.records import RawOutput, make_records

__all__ = ["OpenAIBackend", "RetryPolicy", "retry_after_seconds"]

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: `base_delay * 2**attempt` (with jitter) capped at `max_delay`; a server's
    `Retry-After` wins when given (capped at `max_retry_after`)."""

    max_retries: int = 8
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 600.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        backoff = min(self.base_delay * (2**attempt), self.max_delay)
        return backoff * (0.5 + random.random() / 2)


def retry_after_seconds(headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None when absent."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


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
        retry: RetryPolicy = RetryPolicy(),
        timeout: float = 600.0,
        reasoning_effort: str | None = None,
        max_tokens_field: str = "max_completion_tokens",
        send_sampling: bool = True,
        extra_body: dict | None = None,
        count_tokenizer=None,
        client=None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_tokens_field not in ("max_completion_tokens", "max_tokens"):
            raise ValueError(f"max_tokens_field must be max_completion_tokens or max_tokens, got {max_tokens_field!r}")
        self.model = model
        self.concurrency = concurrency
        self.retry = retry
        self.reasoning_effort = reasoning_effort
        self.max_tokens_field = max_tokens_field
        self.send_sampling = send_sampling
        self.extra_body = dict(extra_body or {})
        self.count_tokenizer = count_tokenizer
        self.errors: list[tuple[object, str]] = []
        self.retries = 0
        self._lock = threading.Lock()
        self._sleep = sleep
        self.client = client if client is not None else self._make_client(base_url, api_key_env, timeout)

    @staticmethod
    def _make_client(base_url: str | None, api_key_env: str, timeout: float):
        import openai

        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get(api_key_env)
        if not api_key:
            if base_url is None:
                raise ValueError(f"no API key: set the environment variable {api_key_env} (or pass base_url for a local server)")
            api_key = "EMPTY"  # local servers (vllm serve) accept any key
        # retries are ours (bounded, logged, Retry-After aware); the client's own are off
        return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

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

    # -- one call with retries --------------------------------------------------------------------
    def _call(self, request: GenerationRequest, sample: int, messages: list[dict]) -> RawOutput | None:
        import openai

        kwargs = self.call_kwargs(request, sample, messages)
        where = f"effort {request.effort} sample {sample}"
        for attempt in range(self.retry.max_retries + 1):
            try:
                response = self.client.chat.completions.create(**kwargs)
                return self._raw(request, sample, messages, response)
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                retryable = status is None or status in RETRY_STATUS or status >= 500
                if not retryable or attempt == self.retry.max_retries:
                    reason = f"{where}: {type(exc).__name__}" + (f" (HTTP {status})" if status else "")
                    log.warning("problem %r %s; giving up after %d attempt(s)", request.id, reason, attempt + 1)
                    with self._lock:
                        self.errors.append((request.id, reason))
                    return None
                response = getattr(exc, "response", None)
                delay = self.retry.delay(attempt, retry_after_seconds(getattr(response, "headers", None)))
                log.info("problem %r %s: HTTP %s, retrying in %.2fs", request.id, where, status, delay)
                with self._lock:
                    self.retries += 1
                self._sleep(delay)
            except Exception as exc:  # a malformed reply must not end a long run: report it, move on
                reason = f"{where}: {type(exc).__name__}: {exc}"[:300]
                log.warning("problem %r %s", request.id, reason)
                with self._lock:
                    self.errors.append((request.id, reason))
                return None
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
