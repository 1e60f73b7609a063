"""ProgressDisplay: steady log lines when the output is not a terminal, bars when it is."""

from __future__ import annotations

import io
import time

from rich.console import Console

from tops_plugin.cli.progress import ProgressDisplay, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _display(clock: Clock, **options) -> tuple[ProgressDisplay, io.StringIO]:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    return ProgressDisplay(console, interval=30, timer=False, clock=clock, **options), buffer


def test_log_lines_at_start_at_a_steady_pace_and_at_the_end():
    clock = Clock()
    display, buffer = _display(clock)
    assert not display.live  # a file is no terminal
    with display:
        display.update("judge", 0, 100)
        clock.now += 10
        display.update("judge", 20, 100)  # within the interval: no line
        clock.now += 25
        display.update("judge", 40, 100)  # 35 s after the first line
        clock.now += 5
        display.tick()  # the timer: nothing new is due yet
        clock.now += 30
        display.tick()  # a long batch, no update for 30 s: the timer still writes a line
        clock.now += 10
        display.update("judge", 100, 100)
        display.update("judge", 100, 100)  # a repeated end is not logged twice
    lines = buffer.getvalue().splitlines()
    assert lines == [
        "judge: 0/100 (0%), 0s elapsed",
        "judge: 40/100 (40%), 1.1/s, ETA 52s",
        "judge: 40/100 (40%), 0.6/s, ETA 1m45s",
        "judge: 100/100 (100%), 1.2/s, done in 1m20s",
    ]


def test_unknown_totals_tokens_and_the_last_state_at_exit():
    clock = Clock()
    display, buffer = _display(clock)
    events = display.events("generate gsm8k")
    with display:
        display.update("rounds", 0)
        clock.now += 12
        display.update("rounds", 600)

        class Event:  # the shape of tops_plugin.generation.ProgressEvent
            done, total, gen_tokens = 4, 10, 2000

        events(Event())
        clock.now += 8
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "rounds: 0, 0s elapsed"
    assert lines[1] == "generate gsm8k: 4/10 (40%), 0s elapsed"  # first line of the stage, at its start
    assert lines[2:] == ["rounds: 600, 30.0/s, 20s elapsed", "generate gsm8k: 4/10 (40%), 0.5/s, 250 tok/s, ETA 12s"]


def test_bars_on_a_terminal_and_durations():
    buffer = io.StringIO()
    display = ProgressDisplay(Console(file=buffer, force_terminal=True, width=120))
    assert display.live
    with display:
        display.update("judge", 3, 4)
    assert "judge" in buffer.getvalue() and "3/4" in buffer.getvalue()
    assert [format_duration(s) for s in (0.4, 59, 61, 3600 * 2 + 7 * 60)] == ["0s", "59s", "1m01s", "2h07m"]


def test_slow_work_reads_as_time_per_item():
    clock = Clock()
    display, buffer = _display(clock)
    display.update("generate", 0, 4)
    clock.now += 400
    display.update("generate", 4, 4)
    assert buffer.getvalue().splitlines()[-1] == "generate: 4/4 (100%), 1m40s each, done in 6m40s"


def test_the_timer_writes_lines_without_updates():
    buffer = io.StringIO()
    display = ProgressDisplay(Console(file=buffer, force_terminal=False), interval=0.05)
    with display:
        display.update("generate", 0, 8)
        deadline = time.monotonic() + 10
        while buffer.getvalue().count("generate: 0/8") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert buffer.getvalue().count("generate: 0/8") >= 3
