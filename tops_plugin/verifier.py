"""A pool of worker processes that judges answers with a hard wall-clock deadline per item.

math-verify guards itself with SIGALRM, which works only on a process's main thread, and some inputs
(power towers, huge integers) hang inside C code where no signal lands. OpenRLHF calls reward code from
worker threads. So judging happens in worker processes, each running `answers.judge` on its own main
thread; the parent waits at most `timeout` seconds per item, then kills and replaces the worker and
records ``timeout``. A worker that dies mid-item (crash, OOM killer, SIGKILL) is replaced and the item
retried once on the fresh worker; a second death records ``error``.

One driver thread per worker feeds it from a shared queue, so `check` is safe from any number of threads
and one hostile item holds up only its own worker. Workers are forked from a single-threaded fork server
that has math-verify imported already: a replacement is ready in milliseconds, and forking never copies a
caller's threads or locks.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from multiprocessing.connection import Connection

from tops_plugin.answers import Verdict, judge

__all__ = ["Verifier", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 5.0
_STOP = None


def _worker_main(conn: Connection) -> None:
    """Worker loop: receive a list of (response, gold, truncated), reply with each verdict as it is made."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C and shuts us down
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # verdicts are the report, not log lines
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is _STOP:
            return
        for response, gold, truncated in task:
            verdict = judge(response, gold, truncated=truncated)
            conn.send((verdict.verdict, verdict.pred, verdict.answer_from))


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: mp.context.BaseContext):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        try:
            self.process.kill()
        except (OSError, ValueError, AttributeError):
            pass
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(_STOP)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


class Verifier:
    """Judge responses against gold answers in worker processes, with a deadline per item.

    >>> with Verifier(workers=2, timeout=5.0) as verifier:
    ...     verifier.check("so the answer is \\\\boxed{42}", "42").verdict
    'correct'
    """

    def __init__(self, workers: int | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = float(timeout)
        self.stats = {"timeouts": 0, "restarts": 0}
        self._stats_lock = threading.Lock()
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["tops_plugin.answers"])
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._workers: list[_Worker | None] = [None] * self.workers  # each driver's current worker
        self._drivers = [
            threading.Thread(target=self._drive, args=(i,), name=f"verifier-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for driver in self._drivers:
            driver.start()
        # Runs on close(), on garbage collection, or at interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, Verifier._shutdown, self._tasks, self._drivers)

    # ------------------------------------------------------------------------------------------ public

    def submit(self, response: str, gold: str, truncated: bool = False) -> Future:
        """Queue one item; the future resolves to a `Verdict`."""
        return self._submit_chunk([(response, gold, truncated)])[0]

    def _submit_chunk(self, items: list[tuple]) -> list[Future]:
        if self._closed:
            raise RuntimeError("Verifier is closed")
        futures = [Future() for _ in items]
        payloads = [(_as_text(item[0]), _as_text(item[1]), bool(item[2]) if len(item) > 2 else False)
                    for item in items]
        self._tasks.put((futures, payloads))
        return futures

    def check(self, response: str, gold: str, truncated: bool = False) -> Verdict:
        """Judge one response (blocking, thread-safe)."""
        return self.submit(response, gold, truncated).result()

    def check_many(
        self,
        pairs: Iterable[tuple[str, str]] | Iterable[tuple[str, str, bool]],
        window: int | None = None,
        chunk: int = 8,
    ) -> Iterator[Verdict]:
        """Judge a stream of (response, gold[, truncated]) in order, keeping every worker busy.

        Items travel to a worker `chunk` at a time (one message, not one per item: on cheap items the
        round trip is most of the cost); a stuck item delays the rest of its chunk by at most its deadline.
        Latency-sensitive callers (the reward path) pass ``chunk=1``. At most `window` items (default 4
        chunks per worker) are in flight, so memory stays flat on any input size.
        """
        chunk = max(1, chunk)
        limit = max(window or 4 * chunk * self.workers, chunk)
        pending: deque[Future] = deque()
        batch: list[tuple] = []
        for pair in pairs:
            batch.append(pair)
            if len(batch) >= chunk:
                pending.extend(self._submit_chunk(batch))
                batch = []
                while len(pending) >= limit:
                    yield pending.popleft().result()
        if batch:
            pending.extend(self._submit_chunk(batch))
        while pending:
            yield pending.popleft().result()

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers that have started (for monitoring)."""
        return [worker.process.pid for worker in self._workers if worker is not None]

    def close(self) -> None:
        """Stop the workers (idempotent). Queued items still finish first."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- drivers

    @staticmethod
    def _shutdown(tasks: queue.SimpleQueue, drivers: list[threading.Thread]) -> None:
        for _ in drivers:
            tasks.put(_STOP)
        for driver in drivers:
            if driver is not threading.current_thread():
                driver.join(timeout=10)

    def _drive(self, slot: int) -> None:
        worker: _Worker | None = None
        try:
            while True:
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

    def _run(self, worker: _Worker | None, payloads: list[tuple], futures: list[Future], slot: int) -> _Worker | None:
        """Judge a chunk on this driver's worker, resolving each future as its verdict arrives.

        No answer within the deadline: the worker is killed, the item recorded as ``timeout`` and the rest
        of the chunk sent to a fresh worker. A worker that dies mid-item (its pipe closes) is discarded at
        once -- `is_alive()` can still say True for a few milliseconds -- and the item retried once on a
        fresh worker; a second death records ``error``. Returns the worker to keep using.
        """
        done, retried = 0, False
        while done < len(payloads):
            if worker is None:
                try:
                    worker = _Worker(self._ctx)
                except Exception:  # cannot start a process at all (resources): record, do not crash
                    for future in futures[done:]:
                        future.set_result(Verdict("error"))
                    return None
                self._workers[slot] = worker
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
                worker.kill()
                worker = None
                self._count("restarts")
                if retried:
                    futures[done].set_result(Verdict("error"))
                    done, retried = done + 1, False
                else:
                    retried = True
        return worker


def _as_text(value: object) -> str:
    """Coerce to a string that pickles and pipes safely (lone surrogates replaced)."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "")
