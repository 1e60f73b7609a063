"""The verifier as Ray actors, so a cluster's CPU nodes judge the rollouts of its GPU nodes.

Same surface as `tops_plugin.judging.verifier.Verifier` (``judge``, ``judge_many``, ``close``, context manager).
Each actor owns a local `Verifier` -- a process pool with the hard per-item deadline -- so a hostile item
is killed on the node that judges it, exactly as in a single-machine run. Actors are spread over the
alive nodes and restarted by Ray if they die; a call to a dead or unreachable actor is a verdict of
``error``, not an exception, and a call that outlives every deadline is ``timeout``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from tops_plugin.judging.answers import Verdict
from tops_plugin.judging.verifier import Verifier

__all__ = ["RayVerifier"]


class _VerifierActor:
    """Runs a local Verifier inside a Ray actor; threaded (``max_concurrency``) so calls overlap."""

    def __init__(self, workers: int | None, timeout: float):
        self._verifier = Verifier(workers=workers, timeout=timeout)

    def judge(self, response: str, gold: str) -> Verdict:
        return self._verifier.judge(response, gold)

    def judge_many(self, pairs: list[tuple[str, str]]) -> list[Verdict]:
        return list(self._verifier.judge_many(pairs, window=len(pairs), chunk=1))

    def close(self) -> None:
        self._verifier.close()


class RayVerifier:
    """Verifier backed by `actors` Ray actors of `workers` processes each (thread-safe).

    `actors` defaults to one per alive node. Ray is initialised (``RAY_ADDRESS`` or a local instance)
    unless the caller did it already; in that case the caller also shuts it down.
    """

    def __init__(
        self,
        actors: int | None = None,
        workers: int | None = None,
        timeout: float = 5.0,
        *,
        batch: int = 16,
        address: str | None = None,
    ):
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(
                address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False
            )
        count = actors or max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
        per_actor = workers or 1
        actor_cls = ray.remote(_VerifierActor).options(
            num_cpus=per_actor,
            max_restarts=-1,
            max_concurrency=4 * per_actor + 4,
            scheduling_strategy="SPREAD",
        )
        self.timeout = timeout
        self._batch = max(1, batch)
        self._window = count * (4 * per_actor + 4)
        # A call may wait behind a full actor queue and a worker restart: allow generously, then give up.
        self._call_limit = 4 * timeout + 30.0
        self._actors = [actor_cls.remote(workers, timeout) for _ in range(count)]
        self._next = itertools.cycle(self._actors)
        self._lock = threading.Lock()

    def _actor(self) -> Any:
        with self._lock:
            return next(self._next)

    def _get(self, ref: Any, size: int, ends: float | None = None) -> list[Verdict]:
        ray = self._ray
        limit = self._call_limit if ends is None else max(0.0, min(self._call_limit, ends - time.monotonic()))
        try:
            result = ray.get(ref, timeout=limit)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=False)
            return [Verdict("timeout")] * size
        except Exception:  # actor died, node lost, task error: the items are errors, the caller goes on
            return [Verdict("error")] * size
        return result if isinstance(result, list) else [result]

    def judge(self, response: str, gold: str) -> Verdict:
        """Judge one response on some actor, under the actor's hard deadline."""
        return self._get(self._actor().judge.remote(response, gold), 1)[0]

    def judge_many(
        self,
        pairs: Iterable[tuple[str, str]],
        window: int | None = None,
        chunk: int | None = None,
        budget: float | None = None,
    ) -> Iterator[Verdict]:
        """Verdicts in input order, streaming; batches (`chunk` items, default the configured batch) go
        round-robin to the actors, at most `window` items (default: enough to fill every actor) in flight.
        Within an actor each item is judged on its own (its local pool gets ``chunk=1``). With a `budget`
        (seconds for the whole call), batches not answered by then are ``timeout``."""
        size = chunk or self._batch
        limit = max(window or self._window, size)
        ends = time.monotonic() + budget if budget is not None else None
        pending: deque[tuple[Any, int]] = deque()
        for batch in _chunks(pairs, size):
            pending.append((self._actor().judge_many.remote(batch), len(batch)))
            while len(pending) * size >= limit:
                yield from self._get(*pending.popleft(), ends)
        while pending:
            yield from self._get(*pending.popleft(), ends)

    def close(self) -> None:
        """Stop the actors' pools and the actors (and Ray, when this object started it)."""
        ray = self._ray
        try:
            ray.get([actor.close.remote() for actor in self._actors], timeout=30)
        except Exception:
            pass
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        self._actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(pairs: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    iterator = iter(pairs)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
