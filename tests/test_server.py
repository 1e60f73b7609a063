"""The HTTP reward server: OpenRLHF's payload and client, limits, auth, backpressure, metrics, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tops_plugin.judging.answers import Verdict
from tops_plugin.reward.scorer import LOG_KEYS, RewardConfig, Scorer
from tops_plugin.reward.server import ServerSettings, is_loopback, make_app

TIMEOUT_S = 2.0
PROMPT = "<|im_start|>user\nWhat is 6 times 7?<|im_end|>\n<|im_start|>assistant\n"
HOSTILE = "$\\boxed{9^{9^{9^{9}}}}$"


def payload(*responses: str, gold: str = "42") -> dict:
    return {
        "query": [PROMPT + r + "<|im_end|>" for r in responses],
        "prompts": [PROMPT] * len(responses),
        "labels": [gold] * len(responses),
    }


@pytest.fixture(scope="module")
def verifier():
    from tops_plugin.judging.verifier import Verifier

    with Verifier(workers=2, timeout=TIMEOUT_S) as pool:
        yield pool


def run_with_client(app, body):
    """Run `body(client)` against `app` on an in-process test server."""

    async def main():
        async with TestClient(TestServer(app)) as client:
            return await body(client)

    return asyncio.run(main())


def test_get_reward_judges_a_batch_in_order(verifier):
    app = make_app(Scorer(RewardConfig(), verifier))

    async def body(client):
        resp = await client.post(
            "/get_reward", json=payload("\\boxed{42}", "\\boxed{41}", "no idea", "\\boxed{42}")
        )
        return resp.status, await resp.json()

    status, data = run_with_client(app, body)
    assert status == 200
    assert data["rewards"] == [1.0, 0.0, 0.0, 1.0] and data["scores"] == [1.0, 0.0, 0.0, 1.0]
    assert data["verdicts"] == ["correct", "wrong", "no_answer", "correct"]
    assert data["extra_logs"] == {
        **dict.fromkeys(LOG_KEYS, 0.0),
        "correct": 2.0,
        "wrong": 1.0,
        "no_answer": 1.0,
    }


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "malformed"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"query": ["a"], "labels": []}).encode(), "labels"),
        (json.dumps({"query": "a", "labels": ["1"]}).encode(), "query"),
        (json.dumps({"query": ["a"], "labels": ["1"], "prompts": [1]}).encode(), "prompts"),
        (b"\xff\xfe", "malformed"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed"),
    ],
)
def test_malformed_payloads_get_400_with_json_error(verifier, body, needle):
    app = make_app(Scorer(RewardConfig(), verifier))

    async def run(client):
        resp = await client.post("/get_reward", data=body, headers={"Content-Type": "application/json"})
        return resp.status, await resp.json()

    status, data = run_with_client(app, run)
    assert status == 400 and needle in data["error"]


def test_oversize_body_gets_413_with_json_error(verifier):
    app = make_app(Scorer(RewardConfig(), verifier), ServerSettings(max_body_bytes=1000))

    async def run(client):
        big = await client.post("/get_reward", json=payload("x" * 5000))

        async def chunks():  # no Content-Length: the limit must hold while reading, too
            for _ in range(10):
                yield b"x" * 500

        streamed = await client.post("/get_reward", data=chunks())
        small = await client.post("/get_reward", json=payload("\\boxed{42}"))
        return [(r.status, await r.json()) for r in (big, streamed, small)]

    (big, big_data), (streamed, streamed_data), (small, _) = run_with_client(app, run)
    assert big == 413 and "1000" in big_data["error"]
    assert streamed == 413 and "error" in streamed_data
    assert small == 200


def test_token_required_except_health(verifier):
    app = make_app(Scorer(RewardConfig(), verifier), ServerSettings(token="s3cret"))

    async def run(client):
        out = {}
        out["none"] = (await client.post("/get_reward", json=payload("\\boxed{42}"))).status
        out["wrong"] = (
            await client.post(
                "/get_reward", json=payload("\\boxed{42}"), headers={"Authorization": "Bearer nope"}
            )
        ).status
        out["bearer"] = (
            await client.post(
                "/get_reward", json=payload("\\boxed{42}"), headers={"Authorization": "Bearer s3cret"}
            )
        ).status
        out["query"] = (await client.post("/get_reward?token=s3cret", json=payload("\\boxed{42}"))).status
        out["metrics"] = (await client.get("/metrics")).status
        out["health"] = (await client.get("/health")).status
        return out

    assert run_with_client(app, run) == {
        "none": 401,
        "wrong": 401,
        "bearer": 200,
        "query": 200,
        "metrics": 401,
        "health": 200,
    }


def test_loopback_detection():
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("::1")
        and is_loopback("localhost")
        and is_loopback("127.1.2.3")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.org")


class GatedChecker:
    """Stand-in verifier that holds every item until released, to fill the queue deterministically."""

    def __init__(self):
        self.release, self.entered = threading.Event(), threading.Event()

    def judge_many(self, pairs, window=None, chunk=1, budget=None):
        pairs = list(pairs)
        self.entered.set()
        self.release.wait(10)
        return iter([Verdict("correct", "42")] * len(pairs))


def test_full_queue_answers_503_with_retry_after_and_recovers():
    checker = GatedChecker()
    app = make_app(Scorer(RewardConfig(), checker), ServerSettings(max_queue=3))

    async def run(client):
        first = asyncio.create_task(client.post("/get_reward", json=payload("a", "b")))
        await asyncio.get_running_loop().run_in_executor(None, checker.entered.wait, 5)
        health = await (await client.get("/health")).json()
        full = await client.post("/get_reward", json=payload("c", "d"))
        too_big = await client.post("/get_reward", json=payload(*"abcd"))
        checker.release.set()
        done = await first
        after = await client.post("/get_reward", json=payload("e", "f"))
        return health, full.status, full.headers.get("Retry-After"), too_big.status, done.status, after.status

    health, full, retry_after, too_big, done, after = run_with_client(app, run)
    assert health["in_flight"] == 2
    assert full == 503 and retry_after == "1"
    assert too_big == 413  # can never fit: not worth retrying
    assert (done, after) == (200, 200)


def test_metrics_in_prometheus_text(verifier):
    app = make_app(Scorer(RewardConfig(), verifier))

    async def run(client):
        await client.post("/get_reward", json=payload("\\boxed{42}", "\\boxed{1}"))
        await client.post("/get_reward", data=b"{")
        resp = await client.get("/metrics")
        return resp.headers["Content-Type"], await resp.text()

    content_type, text = run_with_client(app, run)
    assert content_type.startswith("text/plain")
    assert 'tops_reward_requests_total{path="/get_reward",status="200"} 1.0' in text
    assert 'tops_reward_requests_total{path="/get_reward",status="400"} 1.0' in text
    assert "tops_reward_items_total 2.0" in text
    assert (
        'tops_reward_verdicts_total{verdict="correct"} 1.0' in text
        and 'tops_reward_verdicts_total{verdict="wrong"} 1.0' in text
    )
    assert 'tops_reward_verdicts_total{verdict="timeout"} 0.0' in text
    assert (
        "tops_reward_request_seconds_count 1.0" in text
        and 'tops_reward_request_seconds_bucket{le="+Inf"} 1.0' in text
    )


def test_unknown_path_is_a_json_404(verifier):
    app = make_app(Scorer(RewardConfig(), verifier))

    async def run(client):
        resp = await client.get("/nope")
        return resp.status, await resp.json()

    status, data = run_with_client(app, run)
    assert status == 404 and "error" in data


# ----------------------------------------------------------------------------- as a process, with OpenRLHF


@pytest.fixture
def server_process():
    """`python -m tops_plugin.server --port 0`; yields (process, url); always stopped afterwards."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tops_plugin.server",
            "--port",
            "0",
            "--workers",
            "2",
            "--timeout",
            str(TIMEOUT_S),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TOPS_REWARD_CONFIG": ""},
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, (
            proc.stderr.read() if proc.poll() is not None else line
        )
        yield proc, line.split("listening on ")[1].strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_openrlhf_http_client_against_server(server_process):
    agent = pytest.importorskip("openrlhf.utils.agent", reason="OpenRLHF 0.11 is not installed")
    _, url = server_process
    executor = agent.SingleTurnAgentExecutor(remote_rm_url=url)
    assert executor.reward_func is None  # an http URL: OpenRLHF takes its HTTP path

    async def run():
        one = await executor._fetch_rewards_via_http([PROMPT + "\\boxed{42}<|im_end|>"], [PROMPT], ["42"])
        many = await asyncio.gather(
            *(
                executor._fetch_rewards_via_http([PROMPT + f"\\boxed{{{i}}}<|im_end|>"], [PROMPT], ["42"])
                for i in range(40, 45)
            )
        )
        return one, many

    one, many = asyncio.run(run())
    assert one[0]["rewards"] == [1.0] and one[0]["scores"] == [1.0]
    assert [m[0]["rewards"] for m in many] == [[0.0], [0.0], [1.0], [0.0], [0.0]]
    assert set(one[0]["extra_logs"]) == set(LOG_KEYS)


def test_sigterm_finishes_in_flight_request_then_exits(server_process):
    proc, url = server_process

    async def run():
        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(session.post(url, json=payload(HOSTILE, "\\boxed{42}")))
            await asyncio.sleep(0.5)  # the hostile item is now on a worker, for up to TIMEOUT_S
            proc.send_signal(signal.SIGTERM)
            resp = await request
            return resp.status, await resp.json()

    started = time.monotonic()
    status, data = asyncio.run(run())
    assert status == 200 and data["verdicts"] == ["timeout", "correct"]
    assert proc.wait(30) == 0
    assert time.monotonic() - started < TIMEOUT_S + 10


def test_non_loopback_host_without_token_refuses_to_start():
    out = subprocess.run(
        [sys.executable, "-m", "tops_plugin.server", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "TOPS_REWARD_TOKEN"},
    )
    assert out.returncode == 2 and "--token" in out.stderr


# ------------------------------------------------------------------------- fairness and hardening


def test_one_item_request_is_not_starved_by_another_clients_hostile_batch(verifier):
    app = make_app(Scorer(RewardConfig(timeout=TIMEOUT_S), verifier))

    async def run(client):
        hostile = asyncio.create_task(client.post("/get_reward", json=payload(*[HOSTILE] * 16)))
        await asyncio.sleep(0.3)  # the hostile batch is queued and both workers are stuck on it
        started = time.monotonic()
        resp = await client.post("/get_reward", json=payload("\\boxed{42}"))
        small = (time.monotonic() - started, resp.status, await resp.json())
        big = await (await hostile).json()
        return small, big

    (elapsed, status, data), big = run_with_client(app, run)
    assert status == 200 and data["verdicts"] == ["correct"] and data["rewards"] == [1.0]
    assert elapsed <= TIMEOUT_S + 1.0, f"a 1-item request waited {elapsed:.1f}s behind another client's batch"
    assert big["verdicts"] == ["timeout"] * 16


def test_request_budget_bounds_a_whole_request(verifier):
    app = make_app(Scorer(RewardConfig(timeout=TIMEOUT_S), verifier), ServerSettings(request_budget_s=1.0))

    async def run(client):
        started = time.monotonic()
        resp = await client.post("/get_reward", json=payload(*[HOSTILE] * 8))
        return time.monotonic() - started, await resp.json()

    elapsed, data = run_with_client(app, run)
    assert data["verdicts"] == ["timeout"] * 8 and data["extra_logs"]["timeouts"] == 8
    assert elapsed <= 1.0 + TIMEOUT_S + 1.0  # the budget, plus the deadline of items already started


def test_request_budget_counts_the_wait_for_a_free_thread(verifier):
    settings = ServerSettings(request_budget_s=1.0, threads=1)
    app = make_app(Scorer(RewardConfig(timeout=TIMEOUT_S), verifier), settings)

    async def timed(client, body):
        resp = await client.post("/get_reward", json=body)
        return time.monotonic(), await resp.json()

    async def run(client):
        first = asyncio.create_task(timed(client, payload(*[HOSTILE] * 8)))
        await asyncio.sleep(0.2)  # the first request holds the only thread past the second's budget
        second = asyncio.create_task(timed(client, payload(*[HOSTILE] * 8)))
        return await first, await second

    (first_done, _), (second_done, data) = run_with_client(app, run)
    # Its budget ran out while it waited: nothing of it is started, so it answers at once, not a deadline later.
    assert data["verdicts"] == ["timeout"] * 8
    assert second_done - first_done < TIMEOUT_S / 2


async def raw_exchange(host: str, port: int, data: bytes, *, close_after_send: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    if close_after_send:
        writer.close()
        return b""
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            answer += chunk
            if b"\r\n\r\n" in answer and b"Connection: close" not in answer:
                break  # a kept-alive answer: its head is enough here
    except asyncio.TimeoutError:
        pass
    writer.close()
    return answer


def test_authorization_header_that_is_not_utf8_is_401(verifier):
    app = make_app(Scorer(RewardConfig(), verifier), ServerSettings(token="s3cret"))

    async def run(client):
        return await raw_exchange(
            client.host, client.port,
            b"POST /get_reward HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3(\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        )

    answer = run_with_client(app, run)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


@contextlib.asynccontextmanager
async def serving(app, settings: ServerSettings):
    """`serve` (the command's own listener and limits) on a free port; yields (host, port)."""
    from tops_plugin.reward.server import serve

    urls: list[str] = []
    server = asyncio.create_task(serve(app, "127.0.0.1", 0, settings=settings, ready=urls.append))
    while not urls:
        await asyncio.sleep(0.01)
    host, port = urls[0].removeprefix("http://").split(":")
    try:
        yield host, int(port)
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


def test_client_that_leaves_mid_body_is_a_client_abort_and_a_stalled_body_408(verifier):
    settings = ServerSettings(body_timeout_s=0.5)
    app = make_app(Scorer(RewardConfig(), verifier), settings)
    head = b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    metrics = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def run():
        async with serving(app, settings) as (host, port):
            for _ in range(3):
                await raw_exchange(host, port, head + b'{"query": [', close_after_send=True)
            started = time.monotonic()
            stalled = await raw_exchange(host, port, head + b'{"query": [')
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.2)
            return stalled, elapsed, (await raw_exchange(host, port, metrics)).decode()

    stalled, elapsed, text = asyncio.run(run())
    assert stalled.startswith(b"HTTP/1.1 408"), stalled[:200]
    assert elapsed < 5.0  # answered and closed, not kept reading a stalled body
    assert 'tops_reward_client_aborts_total{reason="disconnected"} 3.0' in text
    assert 'tops_reward_client_aborts_total{reason="slow_body"} 1.0' in text
    assert 'status="500"' not in text


def test_slow_headers_are_cut_and_connections_are_bounded(verifier):
    settings = ServerSettings(header_timeout_s=0.5, max_connections=3)
    app = make_app(Scorer(RewardConfig(), verifier), settings)

    async def run():
        async with serving(app, settings) as (host, port):
            slow = [await asyncio.open_connection(host, port) for _ in range(3)]
            for _, writer in slow:
                writer.write(b"POST /get_reward HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            await asyncio.sleep(0.1)
            refused = await raw_exchange(host, port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            cut = [await asyncio.wait_for(reader.read(), 5) for reader, _ in slow]
            cut_after = time.monotonic() - started
            healthy = await raw_exchange(host, port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return refused, cut, cut_after, healthy

    refused, cut, cut_after, healthy = asyncio.run(run())
    assert refused.startswith(b"HTTP/1.1 503") and b"Retry-After" in refused
    assert cut_after < 3.0 and all(not answer.startswith(b"HTTP/1.1 2") for answer in cut)
    assert healthy.startswith(b"HTTP/1.1 200")
