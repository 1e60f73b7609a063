"""The verifier pool: deadlines, hostile inputs, thread safety, crash recovery, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from tops_plugin.judging.verifier import Verifier

DEADLINE = 2.0


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=2, timeout=DEADLINE) as pool:
        yield pool


def test_check_and_order_of_check_many(verifier: Verifier) -> None:
    pairs = [(rf"\boxed{{{i % 7}}}", str(i % 5)) for i in range(200)]
    verdicts = list(verifier.judge_many(pairs))
    assert [v.correct for v in verdicts] == [i % 7 == i % 5 for i in range(200)]


def test_64_threads_at_once(verifier: Verifier) -> None:
    def one(i: int) -> bool:
        return verifier.judge(rf"so the answer is $\boxed{{{i}}}$", str(i if i % 2 else i + 1)).correct

    with ThreadPoolExecutor(max_workers=64) as threads:
        results = list(threads.map(one, range(256)))
    assert results == [bool(i % 2) for i in range(256)]


HOSTILE = {
    "power tower": r"\boxed{9^{9^{9^{9}}}}",
    "huge power": r"\boxed{10^{10^{10}}}",
    "deep parentheses": "(" * 2000 + "1" + ")" * 2000,
    "1 MB response": "x = 1. " * 150_000 + r"\boxed{5}",
    "NUL bytes": "a\x00b\x00 \\boxed{5}",
    "lone surrogate": "\ud800\udfff\ud800 \\boxed{5}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_returns_a_verdict_within_deadline(verifier: Verifier, name: str) -> None:
    started = time.monotonic()
    verdict = verifier.judge(HOSTILE[name], "5")
    assert time.monotonic() - started <= DEADLINE + 1.0
    assert verdict.verdict in {"correct", "wrong", "no_answer", "timeout", "error"}


def test_code_in_an_answer_is_never_run(verifier: Verifier, tmp_path: Path) -> None:
    target = tmp_path / "X"
    for text in (
        f"the answer is __import__('os').system('touch {target}')",
        f"\\boxed{{__import__('os').system('touch {target}')}}",
        f"$__import__('os').system('touch {target}')$",
    ):
        assert verifier.judge(text, "5").verdict in {"wrong", "no_answer"}
    assert not target.exists()


def test_one_hostile_item_does_not_hold_up_the_others(verifier: Verifier) -> None:
    started = time.monotonic()
    slow = verifier.submit(HOSTILE["power tower"], "5")
    quick = [verifier.submit(rf"\boxed{{{i}}}", str(i)) for i in range(50)]
    assert all(f.result().correct for f in quick)
    assert time.monotonic() - started < DEADLINE  # the other worker served them while one was stuck
    assert slow.result().verdict in {"timeout", "wrong"}


def test_worker_killed_mid_batch_is_replaced_and_every_row_judged() -> None:
    with Verifier(workers=2, timeout=DEADLINE) as pool:
        pairs = [(rf"\boxed{{{i}}}", str(i)) for i in range(400)]
        results = []
        for i, verdict in enumerate(pool.judge_many(pairs)):
            results.append(verdict)
            if i in (50, 150, 250):
                pids = pool.worker_pids
                assert len(pids) == 2, f"expected two worker processes {pool.stats} {i}"
                os.kill(pids[i % 2], signal.SIGKILL)
        assert len(results) == 400 and all(v.correct for v in results)


def test_no_orphans_after_close_or_interrupt(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(
        """
        import os, signal, sys, time
        import psutil
        from tops_plugin.judging.verifier import Verifier
        if __name__ == "__main__":
            pool = Verifier(workers=2, timeout=30)
            print(pool.judge(r"\\boxed{1}", "1").verdict, flush=True)
            print(*[p.pid for p in psutil.Process().children(recursive=True)], flush=True)
            pool.submit(r"\\boxed{9^{9^{9^{9}}}}", "1")
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C while a worker is busy
            time.sleep(5)
        """
    ))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    verdict, pids = proc.stdout.splitlines()[:2]
    assert verdict == "correct" and len(pids.split()) >= 2  # the fork server and at least one worker
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(psutil.pid_exists(int(pid)) for pid in pids.split()):
        time.sleep(0.1)
    alive = [pid for pid in pids.split() if psutil.pid_exists(int(pid)) and
             psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left behind: {alive}"


@pytest.mark.parametrize("arguments", [{"timeout": 0}, {"timeout": float("nan")}, {"timeout": True},
                                       {"start_timeout": float("inf")}, {"workers": 0}, {"workers": True}])
def test_meaningless_arguments_are_refused_before_any_worker_starts(arguments) -> None:
    with pytest.raises(ValueError, match=next(iter(arguments))):
        Verifier(**arguments)


def test_close_is_idempotent_and_rejects_new_work() -> None:
    pool = Verifier(workers=1, timeout=DEADLINE)
    assert pool.judge(r"\boxed{2}", "2").correct
    pool.close()
    pool.close()
    with pytest.raises(RuntimeError):
        pool.submit("x", "1")


def test_stuck_item_in_a_chunk_times_out_and_the_rest_of_the_chunk_is_judged(verifier: Verifier) -> None:
    pairs = [(rf"\boxed{{{i}}}", str(i)) for i in range(16)]
    pairs[3] = (HOSTILE["power tower"], "5")
    started = time.monotonic()
    verdicts = list(verifier.judge_many(pairs, chunk=8))
    assert time.monotonic() - started <= DEADLINE + 1.0
    assert verdicts[3].verdict in {"timeout", "wrong"}
    assert all(v.correct for i, v in enumerate(verdicts) if i != 3)


def test_a_worker_that_cannot_start_in_time_is_an_error_not_a_timeout(tmp_path: Path) -> None:
    script = tmp_path / "cold.py"
    script.write_text(textwrap.dedent(
        """
        import json
        from tops_plugin.judging.verifier import Verifier
        # A fresh process: the fork server must import sympy and math-verify, far more than 50 ms.
        with Verifier(workers=1, timeout=2.0, start_timeout=0.05) as cold:
            verdicts = [cold.judge(r"\\boxed{1}", "1").verdict for _ in range(2)]
            stats = dict(cold.stats)
        with Verifier(workers=1, timeout=2.0) as warm:   # a later pool starts normally
            after = warm.judge(r"\\boxed{1}", "1").verdict
        print(json.dumps({"verdicts": verdicts, "stats": stats, "after": after}))
        """
    ))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = __import__("json").loads(proc.stdout.splitlines()[-1])
    assert out["verdicts"] == ["error", "error"]
    assert out["stats"]["start_failures"] >= 2 and out["stats"]["timeouts"] == 0
    assert out["after"] == "correct"


def test_killed_caller_leaves_no_worker_behind(tmp_path: Path) -> None:
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent(
        """
        import time, psutil
        from tops_plugin.judging.verifier import Verifier
        pool = Verifier(workers=2, timeout=60)
        pool.judge(r"\\boxed{1}", "1")
        pool.submit(r"\\boxed{9^{9^{9^{9}}}}", "1")     # one worker busy in C code
        time.sleep(0.5)
        print(*[p.pid for p in psutil.Process().children(recursive=True)], flush=True)
        time.sleep(60)
        """
    ))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        pids = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(pids) >= 3  # the fork server and two workers
    finally:
        proc.kill()  # SIGKILL: no atexit, no finalizers
        proc.wait()
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind after SIGKILL of the caller: {alive}"


def test_a_forked_child_gets_its_own_pool_and_never_hangs(tmp_path: Path) -> None:
    script = tmp_path / "forker.py"
    script.write_text(textwrap.dedent(
        """
        import json, os, signal, sys, time
        import psutil
        from tops_plugin.reward.scorer import shared_scorer
        from tops_plugin.judging.verifier import Verifier
        signal.alarm(60)
        parent_pool = Verifier(workers=1, timeout=5)
        assert parent_pool.judge(r"\\boxed{1}", "1").correct
        assert shared_scorer().score([r"\\boxed{2}"], [""], ["2"])["verdicts"] == ["correct"]
        server = psutil.Process().children()[0].pid
        read, write = os.pipe()
        if os.fork() == 0:   # e.g. a data-loader process forked by a trainer
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1), os.dup2(null, 2)   # the test reads the parent's output to its end
            out = {}
            try:
                parent_pool.submit("x", "1")
            except RuntimeError as exc:
                out["parent_pool"] = str(exc)
            out["scorer"] = shared_scorer().score([r"\\boxed{3}"], [""], ["3"])["verdicts"]
            with Verifier(workers=1, timeout=5) as own:
                out["own"] = own.judge(r"\\boxed{4}", "4").verdict
            os.write(write, json.dumps(out).encode() + b"\\n")
            time.sleep(10)   # outlives the parent
            os._exit(0)
        print(os.read(read, 4096).decode().strip(), server, flush=True)
        os._exit(0)          # the parent leaves at once; its fork server must follow it
        """
    ))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90,
                          cwd=Path(__file__).resolve().parent.parent)
    report, server = proc.stdout.strip().rsplit(" ", 1)
    out = __import__("json").loads(report)
    assert "after fork" in out["parent_pool"]
    assert out["scorer"] == ["correct"] and out["own"] == "correct"
    deadline = time.monotonic() + 10
    while psutil.pid_exists(int(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(int(server)) or psutil.Process(int(server)).status() == psutil.STATUS_ZOMBIE


def test_the_callers_working_directory_shadows_nothing(tmp_path: Path) -> None:
    # A run started from a folder holding a `sympy/` and an old copy of this package: the caller, a script
    # elsewhere, imports neither, and neither may its workers.
    for name in ("sympy", "tops_plugin"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise SystemExit('imported the {name} in the cwd')\n")
    script = tmp_path / "bin" / "run.py"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(
        """
        from tops_plugin.judging.verifier import Verifier
        with Verifier(workers=1, timeout=5) as pool:
            print(pool.judge(r"\\boxed{1}", "1").verdict, pool.stats["start_failures"])
        """
    ))
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (repo, os.environ.get("PYTHONPATH"))))}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)
    assert proc.stdout.split() == ["correct", "0"], proc.stderr[-2000:]


def test_leaving_the_pool_on_an_exception_drops_the_queued_items() -> None:
    # Ctrl-C in `check`: the items already given to a worker finish within their deadline, the queued ones
    # (here 10 more power towers per worker, 30 s of judging) are not judged first.
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with Verifier(workers=2, timeout=DEADLINE) as pool:
            futures = [pool.submit(HOSTILE["power tower"], "5") for _ in range(24)]
            time.sleep(0.5)
            raise KeyboardInterrupt
    assert time.monotonic() - started < 3 * DEADLINE + 2
    assert sum(future.cancelled() for future in futures) >= 20


def test_a_worker_that_dies_before_it_is_ready_is_never_signalled(monkeypatch) -> None:
    # The fork server reaps it at once, so its pid may belong to another process by now.
    from tops_plugin.judging import workers as judge_workers

    class DiesAtOnce(judge_workers.Connection):
        def poll(self, timeout=0.0):
            return True

        def recv_bytes(self, maxlength=None):
            raise EOFError

    signalled = []
    monkeypatch.setattr(judge_workers, "Connection", DiesAtOnce)
    monkeypatch.setattr(judge_workers, "_kill", signalled.append)
    with pytest.raises(judge_workers.WorkerStartError):
        judge_workers.fork_server(30.0).start_worker(30.0)
    assert signalled == []


def test_a_failed_fork_fails_one_start_not_every_worker(tmp_path: Path) -> None:
    # The fork server's second fork fails, as under a container's pids limit: that start is an error
    # and is tried again; the server and the worker it already forked go on.
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(
        """
        import os
        _fork, _calls = os.fork, []
        def _failing_fork():
            _calls.append(1)
            if len(_calls) == 2:
                raise BlockingIOError(11, "Resource temporarily unavailable")
            return _fork()
        os.fork = _failing_fork
        """
    ))
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(
        """
        import json, time
        from tops_plugin.judging import workers as judge_workers
        from tops_plugin.judging.verifier import Verifier
        with Verifier(workers=2, timeout=5) as pool:
            ends = time.monotonic() + 30
            while not pool.stats["start_failures"] and time.monotonic() < ends:
                time.sleep(0.05)
            server = judge_workers._shared
            verdicts = [pool.judge(rf"\\boxed{{{i}}}", str(i)).verdict for i in range(4)]
            alive = server is judge_workers._shared and server.alive()
            print(json.dumps({"verdicts": verdicts, "stats": pool.stats, "server_alive": alive}))
        """
    ))
    repo = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, (str(tmp_path), repo, os.environ.get("PYTHONPATH"))))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=repo, env={**os.environ, "PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = __import__("json").loads(proc.stdout.splitlines()[-1])
    assert out == {"verdicts": ["correct"] * 4, "stats": {"timeouts": 0, "restarts": 0, "start_failures": 1},
                   "server_alive": True}
