"""Progress of long work, the same way for every command: bars on a terminal, steady log lines elsewhere.

A job under CI, ``nohup`` or with its output in a log file has no terminal, and redrawn bars there
either vanish or flood the log. `ProgressDisplay` looks at its console: on a terminal it draws one rich
bar per stage; otherwise it writes a plain line per stage when the stage starts, every `interval`
seconds while it runs (from a timer, so a line comes even while one long batch computes) and when it
ends -- ``judge: 1,200/5,000 (24%), 40.1/s, ETA 1m35s`` -- so a log shows that work goes on, how fast,
and for how long still.

Library code reports progress through plain callables (``progress(stage, done, total)``); only the
command-line layer builds a display and passes `ProgressDisplay.update` (or `ProgressDisplay.events` for
`tops_plugin.generation.ProgressEvent` callbacks) down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

__all__ = ["DEFAULT_INTERVAL_S", "ProgressDisplay", "format_duration"]

#: Seconds between two log lines of a running stage when the output is not a terminal.
DEFAULT_INTERVAL_S = 30.0


def format_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``: short enough for a log line."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class _Stage:
    started: float
    done: int = 0
    total: int | None = None
    tokens: int | None = None
    logged_at: float | None = None
    finished: bool = False
    task: Any = field(default=None)


class ProgressDisplay:
    """Shows the progress of named stages on `console` (a rich bar per stage on a terminal, else log lines).

    Use as a context manager; `update(stage, done, total)` may be called from the thread doing the work.
    `live` forces one mode (default: bars exactly when the console is a terminal); `interval` is the
    pace of log lines; `timer=False` leaves the pace to `update` and `tick` calls, and `clock` replaces
    the monotonic clock (both for tests).
    """

    def __init__(
        self,
        console: Console,
        *,
        live: bool | None = None,
        interval: float = DEFAULT_INTERVAL_S,
        transient: bool = False,
        timer: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.interval = interval
        self.clock = clock
        self.timer = timer
        self._stages: dict[str, _Stage] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._bars = None
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.progress import TimeRemainingColumn

            self._bars = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=transient,
            )

    def __enter__(self) -> ProgressDisplay:
        if self._bars is not None:
            self._bars.start()
        elif self.timer and self.interval > 0:
            self._timer = threading.Thread(target=self._beat, name="progress-log", daemon=True)
            self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bars is not None:
            self._bars.stop()
            return
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        if exc_info[0] is None:  # where each stage stood at the end, unless its last line says it already
            with self._lock:
                for name, stage in self._stages.items():
                    if not stage.finished and stage.logged_at is not None and stage.logged_at < self.clock():
                        self._log(name, stage)

    def tick(self) -> None:
        """Log every running stage whose last line is `interval` seconds old (the timer calls this)."""
        with self._lock:
            now = self.clock()
            for name, stage in self._stages.items():
                if not stage.finished and stage.logged_at is not None and now - stage.logged_at >= self.interval:
                    self._log(name, stage)

    def _beat(self) -> None:
        while not self._stop.wait(min(self.interval, 5.0)):
            self.tick()

    def update(self, stage: str, done: int, total: int | None = None, *, tokens: int | None = None) -> None:
        """`done` of `total` (None: unknown) items of `stage`; `tokens` generated so far, if any."""
        with self._lock:
            now = self.clock()
            state = self._stages.get(stage)
            if state is None:
                state = self._stages[stage] = _Stage(started=now)
            state.done, state.total, state.tokens = done, total, tokens
            if self._bars is not None:
                if state.task is None:
                    state.task = self._bars.add_task(stage, total=total, rate="")
                self._bars.update(state.task, completed=done, total=total, rate=self._rate_text(state, now))
                return
            finished = total is not None and done >= total
            due = state.logged_at is None or now - state.logged_at >= self.interval
            if (finished and not state.finished) or (due and not finished):
                self._log(stage, state)
            state.finished = finished

    def events(self, stage: str) -> Callable[[Any], None]:
        """A callback for `tops_plugin.generation.ProgressEvent`s (done, total, generated tokens)."""
        return lambda event: self.update(stage, event.done, event.total, tokens=event.gen_tokens)

    def print(self, text: str) -> None:
        """A message between progress lines (above the bars on a terminal)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    # ------------------------------------------------------------------------------------------ internals

    def _rate_text(self, state: _Stage, now: float) -> str:
        elapsed = now - state.started
        if elapsed <= 0 or not state.done:
            return ""
        if state.tokens:
            return f"{state.tokens / elapsed:,.0f} tok/s"
        return f"{state.done / elapsed:,.1f}/s"

    def _log(self, name: str, state: _Stage) -> None:
        now = self.clock()
        state.logged_at = now
        elapsed = now - state.started
        parts = [f"{state.done:,}" + ("" if state.total is None else f"/{state.total:,}")]
        if state.total:
            parts[0] += f" ({100 * state.done / state.total:.0f}%)"
        if state.done and elapsed >= 1:  # a rate over less than a second is noise
            rate = state.done / elapsed
            parts.append(f"{rate:,.1f}/s" if rate >= 0.1 else f"{format_duration(1 / rate)} each")
            if state.tokens:
                parts.append(f"{state.tokens / elapsed:,.0f} tok/s")
        if state.total is not None and state.done >= state.total:
            parts.append(f"done in {format_duration(elapsed)}")
        elif state.total is not None and state.done and elapsed >= 1:
            parts.append(f"ETA {format_duration((state.total - state.done) * elapsed / state.done)}")
        else:
            parts.append(f"{format_duration(elapsed)} elapsed")
        self.console.print(f"{name}: " + ", ".join(parts), markup=False, highlight=False, soft_wrap=True)
