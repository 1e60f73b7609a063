"""The openai backend against a small OpenAI-compatible server on loopback that misbehaves on purpose."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from tops_plugin.generation import GenerationRequest, SamplingParams, generate_to_file, load_backend  # noqa: E402
from tops_plugin.jsonl import read_jsonl  # noqa: E402

SECRET = "sk-test-secret-do-not-log-0123456789"
USAGE = {"prompt_tokens": 50, "completion_tokens": 120, "total_tokens": 170,
         "completion_tokens_details": {"reasoning_tokens": 100}}


class FakeAPI:
    """Scripted failures keyed by problem text: a list of statuses to return before succeeding."""

    def __init__(self, script: dict[str, list[int]]):
        self.script = {key: list(statuses) for key, statuses in script.items()}
        self.hits: list[tuple[float, str, int, int]] = []  # (time, problem marker, status sent, seed)
        self.bodies: list[dict] = []
        self.auth: set[str] = set()
        self.active = self.max_active = 0
        self.lock = threading.Lock()

    def handle(self, body: dict, auth: str) -> tuple[int, dict, dict]:
        marker = body["messages"][-1]["content"].split("\n")[0]
        with self.lock:
            self.bodies.append(body)
            self.auth.add(auth)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            statuses = self.script.get(marker, [])
            status = statuses.pop(0) if statuses else 200
            self.hits.append((time.monotonic(), marker, status, body.get("seed")))
        time.sleep(0.05)  # long enough for concurrent calls to overlap
        with self.lock:
            self.active -= 1
        if status == 429:
            return 429, {"Retry-After": "0.6"}, {"error": {"message": "slow down", "type": "rate_limit"}}
        if status != 200:
            return status, {}, {"error": {"message": f"status {status}", "type": "server_error"}}
        return 200, {}, {
            "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"{marker} The answer is \\boxed{{4}}."}}],
            "usage": USAGE,
        }


@pytest.fixture
def api():
    holder: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, headers, payload = holder["api"].handle(body, self.headers.get("Authorization", ""))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    holder["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield holder
    server.shutdown()
    server.server_close()


def test_retries_usage_reasoning_effort_and_secret(api, tmp_path, monkeypatch, caplog):
    api["api"] = fake = FakeAPI({"Problem 0": [429, 500], "Problem 1": [500], "Problem 2": [400, 400]})
    monkeypatch.setenv("TOPS_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    backend = load_backend("openai", "o1-mini", base_url=api["url"], api_key_env="TOPS_TEST_KEY", concurrency=3,
                           reasoning_effort="high", max_retries=4)
    rows = [{"id": f"q{i}", "problem": f"Problem {i}", "answer": "4"} for i in range(5)]
    sampling = SamplingParams(max_tokens=64, seed=5)
    out = tmp_path / "api.jsonl"
    summary = generate_to_file(backend, [GenerationRequest(r, "low", 2, sampling) for r in rows], out)

    records = list(read_jsonl(out))
    assert len(records) == summary.records == 8  # q2 refused (400, not retried): its 2 samples missing
    assert sorted({r["id"] for r in records}) == ["q0", "q1", "q3", "q4"]
    assert [pid for pid, _ in summary.bad] == ["q2", "q2"] and "HTTP 400" in summary.bad[0][1]
    for r in records:
        assert r["usage"]["completion_tokens_details"]["reasoning_tokens"] == 100
        assert r["gen_tokens"] == 120 and r["finish_reason"] == "stop" and r["tokens"] > 5
        assert r["response"].endswith("\\boxed{4}.")
    # q0: 429 then 500 then success for one of its samples; q1: one 500; q2 tried once per sample
    assert backend.retries == 3
    assert sum(1 for _, m, _, _ in fake.hits if m == "Problem 2") == 2
    limited_at, limited_seed = next((t, seed) for t, m, s, seed in fake.hits if s == 429)
    later = [t for t, _, _, seed in fake.hits if seed == limited_seed and t > limited_at]
    assert later and min(later) - limited_at >= 0.5, "Retry-After (0.6 s) not respected"
    assert fake.max_active <= 3
    body = fake.bodies[0]
    assert body["reasoning_effort"] == "high" and body["max_completion_tokens"] == 64 and "seed" in body
    assert body["messages"][0]["role"] == "system"
    assert fake.auth == {f"Bearer {SECRET}"}
    assert SECRET not in caplog.text and SECRET not in out.read_text() and SECRET not in repr(backend)

    # rerun: only the two refused samples are asked for again (now the server accepts them)
    fake.script.clear()
    before = len(fake.hits)
    again = generate_to_file(backend, [GenerationRequest(r, "low", 2, sampling) for r in rows], out)
    assert again.records == 2 and again.skipped == 8 and len(fake.hits) - before == 2
    backend.close()


def test_missing_key_without_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TOPS_NO_SUCH_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="TOPS_NO_SUCH_KEY"):
        load_backend("openai", "gpt-4o", api_key_env="TOPS_NO_SUCH_KEY")


def test_retries_are_bounded_and_a_call_that_keeps_failing_is_recorded(api, tmp_path):
    api["api"] = fake = FakeAPI({"Problem 0": [503] * 10})
    backend = load_backend("openai", "m", base_url=api["url"], max_retries=1)
    rows = [{"id": "q0", "problem": "Problem 0", "answer": "4"}, {"id": "q1", "problem": "Problem 1", "answer": "4"}]
    summary = generate_to_file(backend, [GenerationRequest(r, None, 1, SamplingParams(max_tokens=8)) for r in rows],
                               tmp_path / "out.jsonl")
    assert summary.records == 1 and summary.bad == (("q0", "effort None sample 0: InternalServerError (HTTP 503)"),)
    assert [status for _, marker, status, _ in fake.hits if marker == "Problem 0"] == [503, 503]  # 1 try + 1 retry
    assert backend.retries == 0  # retries are counted for the calls that succeeded
    backend.close()
