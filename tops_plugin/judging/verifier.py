"""A pool of worker processes that judges answers with a hard wall-clock deadline per item.

math-verify guards itself with SIGALRM, which works only on a process's main thread, and some inputs
(power towers, huge integers) hang inside C code where no signal lands. OpenRLHF calls reward code from
worker threads. So judging happens in worker processes, each running `answers.judge` on its own main
thread; the parent waits at most `timeout` seconds per item, then kills and replaces the worker and
records ``timeout``. A worker that dies mid-item (crash, OOM killer, SIGKILL) is replaced and the item
retried once on the fresh worker; a second death records ``error``.

The deadline measures judging only. Workers are forked from a server process that has math-verify loaded
and never imports the caller's `__main__` (`tops_plugin.judging.workers`); each is started, and has said it
is ready, before an item is given to it, and a killed worker is replaced at once, before its driver takes
the next item. A worker that cannot become ready within `start_timeout` turns its items into ``error``
(counted in ``stats["start_failures"]``), never into ``timeout``.

One driver thread per worker takes items from a fair queue: each caller (a `judge_many` call, or one
`submit`) has its own lane and the drivers serve the lanes in turn, so a large or hostile batch from one
caller delays another caller's items by at most one item per worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout

from tops_plugin.judging.answers import Verdict
from tops_plugin.judging.workers import WorkerStartError, fork_server

__all__ = ["Verifier", "DEFAULT_TIMEOUT_S", "DEFAULT_START_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_START_TIMEOUT_S = 60.0  # a cold start imports sympy and math-verify; generous on a loaded node
_STOP = None


class _Worker:
    """One worker process and the parent's end of its pipe; ready to judge once constructed."""

    def __init__(self, start_timeout: float):
        self.pid, self.conn = fork_server(start_timeout).start_worker(start_timeout)

    def kill(self) -> None:
        """Kill a worker that is alive but stuck (its pipe is open, so its pid is still its own)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self.conn.close()

    def discard(self) -> None:
        """Forget a worker whose pipe closed: it is dead and reaped, and its pid may already be reused."""
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(_STOP)
        except (OSError, ValueError):
            pass
        self.conn.close()


class _FairQueue:
    """Tasks in per-caller lanes; `get` takes the oldest task of the next lane in turn (round robin)."""

    def __init__(self) -> None:
        self._lanes: dict[object, deque] = {}  # insertion order is the turn order
        self._stops = 0
        self._ready = threading.Condition(threading.Lock())

    def put(self, lane: object, task: tuple) -> None:
        with self._ready:
            self._lanes.setdefault(lane, deque()).append(task)
            self._ready.notify()

    def stop(self, count: int) -> None:
        """Make `count` calls of `get` return `_STOP` once every queued task has been taken."""
        with self._ready:
            self._stops += count
            self._ready.notify_all()

    def drop(self) -> None:
        """Cancel every queued task (items already given to a worker finish within their deadline)."""
        with self._ready:
            lanes, self._lanes = self._lanes, {}
        for tasks in lanes.values():
            for futures, _ in tasks:
                for future in futures:
                    future.cancel()

    def get(self) -> tuple | None:
        with self._ready:
            while not self._lanes and not self._stops:
                self._ready.wait()
            if not self._lanes:
                self._stops -= 1
                return _STOP
            lane = next(iter(self._lanes))
            tasks = self._lanes.pop(lane)
            task = tasks.popleft()
            if tasks:
                self._lanes[lane] = tasks  # back of the turn order
            return task


class Verifier:
    """Judge responses against gold answers in worker processes, with a deadline per item.

    >>> with Verifier(workers=2, timeout=5.0) as verifier:
    ...     verifier.judge("so the answer is \\\\boxed{42}", "42").verdict
    'correct'
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
    ):
        for name, value in (("timeout", timeout), ("start_timeout", start_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self.timeout = float(timeout)
        self.start_timeout = float(start_timeout)
        self.stats = {"timeouts": 0, "restarts": 0, "start_failures": 0}
        self._stats_lock = threading.Lock()
        self._tasks = _FairQueue()
        self._closed = False
        self._owner = os.getpid()  # the drivers are threads of this process; a forked child has none
        self._lock = threading.Lock()
        self._workers: list[_Worker | None] = [None] * self.workers  # each driver's current worker
        self._drivers = [
            threading.Thread(target=self._drive, args=(i,), name=f"verifier-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for driver in self._drivers:
            driver.start()
        # Runs on close() or at interpreter exit, whichever comes first. Never on garbage collection: the
        # driver threads hold the pool, so a pool that is dropped without close() runs until exit.
        self._finalizer = weakref.finalize(self, Verifier._shutdown, self._tasks, self._drivers)

    # ------------------------------------------------------------------------------------------ public

    def submit(self, response: str, gold: str, truncated: bool = False) -> Future:
        """Queue one item (its own lane); the future resolves to a `Verdict`."""
        return self._submit_chunk(object(), [(response, gold, truncated)])[0]

    def _submit_chunk(self, lane: object, items: list[tuple]) -> list[Future]:
        if self._closed:
            raise RuntimeError("Verifier is closed")
        if os.getpid() != self._owner:
            raise RuntimeError("Verifier was created in the parent process; create a new one after fork")
        futures = [Future() for _ in items]
        payloads = [(_as_text(item[0]), _as_text(item[1]), bool(item[2]) if len(item) > 2 else False)
                    for item in items]
        self._tasks.put(lane, (futures, payloads))
        return futures

    def judge(self, response: str, gold: str, truncated: bool = False) -> Verdict:
        """Judge one response (blocking, thread-safe)."""
        return self.submit(response, gold, truncated).result()

    def judge_many(
        self,
        pairs: Iterable[tuple[str, str]] | Iterable[tuple[str, str, bool]],
        window: int | None = None,
        chunk: int = 8,
        budget: float | None = None,
    ) -> Iterator[Verdict]:
        """Judge a stream of (response, gold[, truncated]) in order, keeping every worker busy.

        Items travel to a worker `chunk` at a time (one message, not one per item: on cheap items the
        round trip is most of the cost); a stuck item delays the rest of its chunk by at most its deadline.
        Latency-sensitive callers (the reward path) pass ``chunk=1``. At most `window` items (default 4
        chunks per worker) are in flight, so memory stays flat on any input size. The call is one lane of
        the fair queue. With a `budget` (seconds for the whole call), items not yet given to a worker when
        it runs out are ``timeout`` without being judged; items being judged keep their own deadline.
        """
        chunk = max(1, chunk)
        limit = max(window or 4 * chunk * self.workers, chunk)
        ends = time.monotonic() + budget if budget is not None else None
        lane = object()
        pending: deque[Future] = deque()
        batch: list[tuple] = []
        for pair in pairs:
            if ends is not None and time.monotonic() >= ends:
                pending.append(_TIMED_OUT)
            else:
                batch.append(pair)
            if len(batch) >= chunk:
                pending.extend(self._submit_chunk(lane, batch))
                batch = []
            while len(pending) >= limit:
                yield self._result(pending, ends)
        if batch:
            pending.extend(self._submit_chunk(lane, batch))
        while pending:
            yield self._result(pending, ends)

    def _result(self, pending: deque[Future], ends: float | None) -> Verdict:
        """The oldest pending verdict; past the budget, every pending item not yet started is cancelled."""
        future = pending.popleft()
        if ends is None:
            return future.result()
        try:
            return future.result(timeout=max(0.0, ends - time.monotonic()))
        except FutureTimeout:
            for other in (future, *pending):
                other.cancel()  # refused by a future a worker is judging: that one keeps its deadline
            return Verdict("timeout") if future.cancelled() else future.result()
        except CancelledError:  # cancelled above, when the budget ran out on an earlier item
            return Verdict("timeout")

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers that have started (for monitoring)."""
        return [worker.pid for worker in self._workers if worker is not None]

    def close(self) -> None:
        """Stop the workers (idempotent). Queued items still finish first (leaving a `with` block on an
        exception drops them), within 10 s for the whole pool; drivers still busy then run on as daemons."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, exc_type: type | None, *exc) -> None:
        if exc_type is not None:  # e.g. Ctrl-C: nobody waits for the queued items, so do not judge them
            self._tasks.drop()
        self.close()

    # ---------------------------------------------------------------------------------------- drivers

    @staticmethod
    def _shutdown(tasks: _FairQueue, drivers: list[threading.Thread]) -> None:
        tasks.stop(len(drivers))
        ends = time.monotonic() + 10  # one bound for the whole pool, not one per driver
        for driver in drivers:
            if driver is not threading.current_thread():
                driver.join(timeout=max(0.0, ends - time.monotonic()))

    def _drive(self, slot: int) -> None:
        worker: _Worker | None = None
        try:
            while True:
                if worker is None:
                    worker = self._start(slot)  # warm before taking an item, so no item waits for a start
                task = self._tasks.get()
                if task is _STOP:
                    return
                futures, payloads = task
                live = [i for i, future in enumerate(futures) if future.set_running_or_notify_cancel()]
                if not live:
                    continue
                worker = self._run(worker, [payloads[i] for i in live], [futures[i] for i in live], slot)
        finally:
            if worker is not None:
                worker.stop()

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _start(self, slot: int) -> _Worker | None:
        """A ready worker for `slot`, or None (counted) when none became ready within `start_timeout`."""
        try:
            worker = _Worker(self.start_timeout)
        except (WorkerStartError, OSError):
            self._workers[slot] = None
            self._count("start_failures")
            return None
        self._workers[slot] = worker
        return worker

    def _run(self, worker: _Worker | None, payloads: list[tuple], futures: list[Future], slot: int) -> _Worker | None:
        """Judge a chunk on this driver's worker, resolving each future as its verdict arrives.

        No answer within the deadline: the worker is killed, the item recorded as ``timeout`` and the rest
        of the chunk sent to a fresh worker. A worker that dies mid-item (its pipe closes) is discarded at
        once and the item retried once on a fresh worker; a second death records ``error``. No worker ready
        within the start-up bound: the rest of the chunk is ``error``. Returns the worker to keep using.
        """
        done, retried = 0, False
        while done < len(payloads):
            if worker is None:
                worker = self._start(slot)
                if worker is None:
                    for future in futures[done:]:
                        future.set_result(Verdict("error"))
                    return None
            try:
                worker.conn.send(payloads[done:])
                while done < len(payloads):
                    if not worker.conn.poll(self.timeout):
                        worker.kill()  # no answer within the deadline
                        worker = None
                        self._count("timeouts")
                        self._count("restarts")
                        futures[done].set_result(Verdict("timeout"))
                        done, retried = done + 1, False
                        break
                    kind, pred, answer_from = worker.conn.recv()
                    futures[done].set_result(Verdict(kind, pred, answer_from))
                    done, retried = done + 1, False
            except (EOFError, OSError):
                worker.discard()
                worker = None
                self._count("restarts")
                if retried:
                    futures[done].set_result(Verdict("error"))
                    done, retried = done + 1, False
                else:
                    retried = True
        return worker


_TIMED_OUT: Future = Future()
_TIMED_OUT.set_result(Verdict("timeout"))


def _as_text(value: object) -> str:
    """Coerce to a string that pickles and pipes safely (lone surrogates replaced)."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "")
