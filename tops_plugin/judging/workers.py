"""Judge worker processes, forked from a server that has math-verify loaded and never sees `__main__`.

`multiprocessing` children re-import the caller's main module before they run (``spawn``/``forkserver``
preparation): under a trainer whose `__main__` imports torch that is seconds per worker, paid by the first
item sent to it, and a main module without a ``__name__`` guard would run once per worker. So the
verifier forks its workers from its own server process, started with ``python -c`` running `serve`:
a fresh interpreter that imports only this package, judges a few warm-up items (math-verify builds its
parsers lazily) and then forks one child per request. A child is ready the moment it exists; it says so
before it is given any item, so a deadline measures judging only.

Lifetimes: the server exits when the caller's end of its control socket closes (the caller exited, even
by SIGKILL), and each worker gets SIGKILL when the server dies (Linux ``PR_SET_PDEATHSIG``), so nothing
is left behind. An idle worker also exits when its pipe closes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from tops_plugin.judging.answers import judge

__all__ = ["ForkServer", "WorkerStartError", "fork_server", "serve"]

_READY = b"ready"
_PID = struct.Struct("q")
_WARM_UP = ((r"so the answer is $\boxed{\frac{1}{2}}$", "0.5"), (r"\boxed{x^2+1}", "1+x^2"), ("x = 3", "3"))


class WorkerStartError(RuntimeError):
    """A worker (or the server that forks workers) did not become ready within the start-up bound."""


# ------------------------------------------------------------------------------------- child side


def _judge_loop(conn: Connection) -> None:
    """Worker: receive lists of (response, gold, truncated), reply with each verdict as it is made."""
    conn.send_bytes(_READY)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        for response, gold, truncated in task:
            verdict = judge(response, gold, truncated=truncated)
            conn.send((verdict.verdict, verdict.pred, verdict.answer_from))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the fork server) dies; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve(control: socket.socket) -> None:
    """Fork server: preload, warm up, then fork one worker per received pipe end until the caller leaves."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # verdicts are the report, not log lines
    for response, gold in _WARM_UP:
        judge(response, gold)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed workers
    control.sendall(_READY)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, 1)
        except OSError:
            return
        if not message or not fds:
            return
        try:
            pid = os.fork()
        except OSError:  # no process to spare (a pids limit): this start fails, running workers go on
            pid = -1
        if pid == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _die_with_parent()
            if os.getppid() == 1:  # the server died between fork and prctl
                os._exit(0)
            code = 0
            try:
                _judge_loop(Connection(fds[0]))
            except BaseException:
                code = 1
            os._exit(code)
        os.close(fds[0])
        control.sendall(_PID.pack(pid))


# ------------------------------------------------------------------------------------ caller side


class ForkServer:
    """The caller's handle on one fork server process; `start_worker` is thread-safe."""

    def __init__(self, start_timeout: float):
        self._control, theirs = socket.socketpair()
        # The caller's own import path, with this very package first: `python -c` would otherwise put the
        # working directory first, and a `sympy/` or another copy of this package there would shadow the
        # caller's (the caller's script directory, not its working directory, heads its path).
        paths = [str(Path(__file__).resolve().parents[2])]  # the folder that holds tops_plugin/
        paths += [path for path in sys.path if isinstance(path, str) and path not in paths]
        code = (
            f"import sys; sys.path[:] = {paths!r}; "
            f"from tops_plugin.judging.workers import serve; serve({theirs.fileno()})"
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
            )
        finally:
            theirs.close()
        self._lock = threading.Lock()
        self._expect(_READY, start_timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def start_worker(self, start_timeout: float) -> tuple[int, Connection]:
        """Fork a worker; return (pid, connection) once it has said it is ready, else WorkerStartError."""
        mine, theirs = socket.socketpair()
        try:
            with self._lock:
                try:
                    socket.send_fds(self._control, [b"F"], [theirs.fileno()])
                except OSError as exc:
                    raise WorkerStartError(f"fork server is gone: {exc}") from exc
                pid = _PID.unpack(self._expect(_PID.size, start_timeout))[0]
        finally:
            theirs.close()
        if pid < 0:
            mine.close()
            raise WorkerStartError("the verifier's fork server could not fork a worker")
        conn = Connection(mine.detach())
        try:
            if not conn.poll(start_timeout):
                _kill(pid)  # alive but late: its pipe is open, so the pid is still its own
                raise WorkerStartError(f"worker {pid} not ready within {start_timeout:g}s")
            if conn.recv_bytes() != _READY:
                _kill(pid)
                raise WorkerStartError(f"worker {pid} sent an unexpected first message")
        except (EOFError, OSError) as exc:  # it died: reaped by the server, its pid may already be reused
            conn.close()
            raise WorkerStartError(f"worker {pid} exited before it was ready") from exc
        except WorkerStartError:
            conn.close()
            raise
        return pid, conn

    def _expect(self, what: bytes | int, timeout: float) -> bytes:
        size = what if isinstance(what, int) else len(what)
        data = b""
        while len(data) < size:
            ready, _, _ = select.select([self._control], [], [], timeout)
            chunk = self._control.recv(size - len(data)) if ready else b""
            if not chunk:
                self.close(kill=True)
                reason = "exited" if ready else f"not ready within {timeout:g}s"
                raise WorkerStartError(f"the verifier's fork server {reason}")
            data += chunk
        if isinstance(what, bytes) and data != what:
            self.close(kill=True)
            raise WorkerStartError("the verifier's fork server sent an unexpected reply")
        return data

    def close(self, kill: bool = False) -> None:
        """Stop the server (its workers exit with it); `kill` when it is not answering (late or broken)."""
        self._control.close()
        if kill:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


_shared: ForkServer | None = None
_shared_lock = threading.Lock()


def _forget_parent_server() -> None:
    """In a forked child: drop the parent's server (and the child's copy of its control socket, which
    would otherwise keep it alive after the parent exits); the child starts its own on first use."""
    global _shared, _shared_lock
    if _shared is not None:
        _shared._control.close()
    _shared, _shared_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_parent_server)


def fork_server(start_timeout: float) -> ForkServer:
    """The process-wide fork server, (re)started when missing or dead. Raises WorkerStartError."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.alive():
            _shared = ForkServer(start_timeout)
        return _shared


def serve(control_fd: int) -> None:
    """Entry point of the fork server process (see `ForkServer`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller owns Ctrl-C and shuts us down
    _serve(socket.socket(fileno=control_fd))
