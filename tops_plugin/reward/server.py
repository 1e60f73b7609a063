"""HTTP reward server for OpenRLHF's ``--reward.remote_url http://host:port/get_reward``.

Any number of RL workers share one verifier pool (local processes, or Ray actors with ``--ray``) through
this aiohttp server:

* ``POST /get_reward`` -- OpenRLHF's payload ``{"query": [...], "prompts": [...], "labels": [...]}`` ->
  ``{"rewards": [...], "scores": [...], "extra_logs": {...}, "verdicts": [...]}`` (rewards as in
  ``tops_plugin.reward.scorer``; ``verdicts`` is extra and ignored by OpenRLHF);
* ``GET /health`` -- liveness and queue depth, never behind the token;
* ``GET /metrics`` -- Prometheus text: requests by status, items, verdicts, latency histogram, queue depth.

Protection, because a reward server is reachable by every rollout worker: bound to a non-loopback address
it needs a token (``Authorization: Bearer …``, or ``?token=…`` in the URL since OpenRLHF's client sends no
headers); bodies over ``max_body_bytes`` get 413 and malformed payloads 400, both with a JSON error;
admission is bounded by ``max_queue`` items in flight -- beyond it the reply is 503 with ``Retry-After``,
never unbounded memory. OpenRLHF's client retries 5 times, 1 s apart, then leaves the sample without a
reward: size ``max_queue`` to the rollout concurrency and let 503 absorb bursts, not steady overload.
Before a request is authenticated its connection has ``header_timeout_s`` for the headers and
``body_timeout_s`` for the body (408), and at most ``max_connections`` are open (503), so slow clients
cannot exhaust the server; clients that leave mid-body are counted as client aborts, not 500s.

Fairness: each request is one lane of the verifier's queue and the lanes are served in turn, so a small
request never waits behind another request's whole batch; ``request_budget_s`` bounds a whole request
(items not started by then are ``timeout``). Each item has the verifier's hard deadline. On SIGTERM/SIGINT
the server stops accepting, finishes the requests in flight, then closes the pool.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientConnectionError, web
from aiohttp.streams import EofStream
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from tops_plugin.jsonl import loads
from tops_plugin.judging.answers import VERDICTS
from tops_plugin.reward.scorer import Scorer

__all__ = ["ServerSettings", "is_loopback", "make_app", "serve"]

TOKEN_ENV = "TOPS_REWARD_TOKEN"


@dataclass(frozen=True)
class ServerSettings:
    """Limits and access rules of one server."""

    token: str | None = None  # required on every request but /health when set
    max_body_bytes: int = 64 * 2**20
    max_queue: int = 1024  # items admitted at once; more -> 503 + Retry-After
    threads: int = 64  # threads feeding the verifier (each blocks on one request)
    retry_after_s: int = 1
    deadline_s: float = 5.0  # per-item verifier deadline (for the latency buckets and Retry-After)
    request_budget_s: float = 120.0  # from arrival, a wait for a thread included; later items are `timeout`
    header_timeout_s: float = 15.0  # to send a request's headers (also the idle keep-alive limit)
    body_timeout_s: float = 60.0  # to send a request's body once its headers are in
    max_connections: int = 2048  # open connections; more are answered 503 and closed at once

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_queue", "threads", "retry_after_s", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("deadline_s", "request_budget_s", "header_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Metrics:
    """Prometheus series of one app (own registry, so several apps can live in one process)."""

    def __init__(self, deadline_s: float):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tops_reward_requests",
            "Requests by endpoint and HTTP status.",
            ["path", "status"],
            registry=self.registry,
        )
        self.items = Counter("tops_reward_items", "Samples judged.", registry=self.registry)
        self.verdicts = Counter(
            "tops_reward_verdicts", "Samples judged, by verdict.", ["verdict"], registry=self.registry
        )
        buckets = sorted(
            {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, deadline_s, deadline_s + 1.0, 10.0, 30.0}
        )
        self.latency = Histogram(
            "tops_reward_request_seconds",
            "Time to answer POST /get_reward.",
            buckets=buckets,
            registry=self.registry,
        )
        self.queue = Gauge(
            "tops_reward_queue_items", "Items admitted and not yet answered.", registry=self.registry
        )
        self.client_aborts = Counter(
            "tops_reward_client_aborts",
            "Requests whose client went away or stalled before sending the whole body (not server errors).",
            ["reason"],
            registry=self.registry,
        )
        for verdict in VERDICTS:
            self.verdicts.labels(verdict)


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _validate(payload: Any) -> tuple[list, list, list]:
    """(queries, prompts, labels) of OpenRLHF's payload; ValueError saying what is wrong."""
    if not isinstance(payload, dict):
        raise ValueError("payload must be a JSON object with 'query', 'prompts' and 'labels'")
    queries, labels = payload.get("query"), payload.get("labels")
    prompts = payload.get("prompts")
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise ValueError("'query' must be a list of strings")
    if not isinstance(labels, list) or len(labels) != len(queries):
        raise ValueError(f"'labels' must be a list as long as 'query' ({len(queries)})")
    if prompts is None:
        prompts = [None] * len(queries)
    if not isinstance(prompts, list) or len(prompts) != len(queries):
        raise ValueError(f"'prompts' must be a list as long as 'query' ({len(queries)})")
    if not all(p is None or isinstance(p, str) for p in prompts):
        raise ValueError("'prompts' must hold strings")
    return queries, prompts, labels


def make_app(
    scorer: Scorer, settings: ServerSettings = ServerSettings(), close: Callable[[], None] | None = None
) -> web.Application:
    """The reward app around `scorer`. `close` (e.g. the verifier's) runs after in-flight requests finish."""
    metrics = _Metrics(settings.deadline_s)
    pool = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="reward")
    state = {"in_flight": 0, "draining": False}

    @web.middleware
    async def guard(request: web.Request, handler):
        try:
            if settings.token and request.path != "/health" and not _authorized(request, settings.token):
                response = _error(401, "missing or wrong token", {"WWW-Authenticate": "Bearer"})
            else:
                response = await handler(request)
        except _ClientGone:  # nobody is left to read an answer; counted as a client abort, not a status
            return _error(400, "client disconnected")
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason)
        except Exception as exc:  # never a bare 500 page: say what failed
            response = _error(500, f"internal error: {type(exc).__name__}")
        metrics.requests.labels(
            request.path if request.path in _PATHS else "other", str(response.status)
        ).inc()
        return response

    async def get_reward(request: web.Request) -> web.Response:
        started = time.perf_counter()
        if state["draining"]:
            return _error(503, "shutting down", {"Retry-After": str(settings.retry_after_s)})
        if request.content_length is not None and request.content_length > settings.max_body_bytes:
            return _error(
                413, f"body of {request.content_length} bytes exceeds the limit of {settings.max_body_bytes}"
            )
        try:
            body = await asyncio.wait_for(request.read(), settings.body_timeout_s)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body exceeds the limit of {settings.max_body_bytes} bytes")
        except asyncio.TimeoutError:
            metrics.client_aborts.labels("slow_body").inc()
            response = _error(408, f"body not received within {settings.body_timeout_s:g}s")
            response.force_close()  # do not linger reading the rest of a stalled body
            return response
        except (ConnectionError, ClientConnectionError, asyncio.IncompleteReadError, EofStream):
            metrics.client_aborts.labels("disconnected").inc()
            raise _ClientGone from None
        try:
            queries, prompts, labels = _validate(loads(body))
        except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors; deep nesting
            return _error(400, f"malformed payload: {str(exc)[:200] or type(exc).__name__}")
        n = len(queries)
        if n > settings.max_queue:
            return _error(413, f"{n} items in one request exceed the queue limit of {settings.max_queue}")
        if state["in_flight"] + n > settings.max_queue:
            return _error(503, "queue full, retry later", {"Retry-After": str(settings.retry_after_s)})
        state["in_flight"] += n
        metrics.queue.set(state["in_flight"])
        def score() -> dict:
            # The budget counts from arrival: time spent waiting for a free thread is part of the request.
            left = settings.request_budget_s - (time.perf_counter() - started)
            return scorer.score(queries, prompts, labels, budget=max(0.0, left))

        try:
            result = await asyncio.get_running_loop().run_in_executor(pool, score)
        finally:
            state["in_flight"] -= n
            metrics.queue.set(state["in_flight"])
        metrics.items.inc(n)
        for verdict in result["verdicts"]:
            metrics.verdicts.labels(verdict).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return web.json_response(result)

    async def health(request: web.Request) -> web.Response:
        status = "draining" if state["draining"] else "ok"
        return web.json_response(
            {
                "status": status,
                "in_flight": state["in_flight"],
                "max_queue": settings.max_queue,
                "mode": scorer.config.mode,
            }
        )

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def on_shutdown(app: web.Application) -> None:
        state["draining"] = True

    async def on_cleanup(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pool.shutdown)
        if close is not None:
            await loop.run_in_executor(None, close)

    app = web.Application(middlewares=[guard], client_max_size=settings.max_body_bytes)
    app.router.add_post("/get_reward", get_reward)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", prometheus)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


_PATHS = frozenset({"/get_reward", "/health", "/metrics"})


class _ClientGone(Exception):
    """The client disconnected mid-request: there is no one to answer."""


def _authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token", "")
    # Header bytes that are not UTF-8 arrive as surrogate escapes: encode them back, never raise.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 60.0,
    settings: ServerSettings = ServerSettings(),
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `app` until SIGTERM/SIGINT, then finish in-flight requests (up to `shutdown_timeout`) and clean up.

    Before any request is authenticated, a connection gets `settings.header_timeout_s` to send its headers
    (aiohttp's keep-alive timer, which also closes idle connections), and at most
    `settings.max_connections` are open at once: more are answered 503 and closed. `ready` receives the base
    URL once listening (with the real port when `port` is 0).
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        keepalive_timeout=settings.header_timeout_s,
        lingering_time=1.0,  # after an early answer (408, 413), drain the rest of a body for 1 s, not 10
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = None
    try:
        handlers = runner.server

        def connection() -> asyncio.Protocol:
            if len(handlers.connections) >= settings.max_connections:
                return _Refuse(settings.retry_after_s)
            return handlers()

        listener = await loop.create_server(connection, host, port, reuse_address=True)
        bound = listener.sockets[0].getsockname()
        if ready is not None:
            name = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            ready(f"http://{name}:{bound[1]}")
        await stop.wait()
    finally:
        if listener is not None:
            listener.close()  # stop accepting; requests in flight finish in cleanup
        await runner.cleanup()


class _Refuse(asyncio.Protocol):
    """Answers a connection over the limit with 503 and closes it, before reading anything."""

    def __init__(self, retry_after_s: int):
        body = b'{"error": "too many connections, retry later"}'
        self.reply = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Retry-After: {retry_after_s}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.reply)  # type: ignore[attr-defined]
        transport.close()
