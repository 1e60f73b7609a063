"""Reward server under load: 32 concurrent clients on loopback, as OpenRLHF's rollout workers call it.

Items are real labelled responses (shared/labeled/labeled_dev.jsonl) wrapped in a ChatML prompt and EOS,
one item per request (what OpenRLHF sends), with 1% hostile answers (power towers, huge factorials, deep
nesting) that only the verifier's hard deadline stops. Measured in one run:

* raw: `Verifier.judge_many` on the same responses in-process (the baseline: what the pool can do);
* server: `python -m tops_plugin.server` with the same workers and deadline; items/s, p50/p99 latency,
  errors, lost/duplicated items, verdicts that differ from the raw run; a verifier worker is killed with
  SIGKILL half-way, and the server must keep answering.

* fairness: while one client keeps sending batches of 16 hostile items, `--small-clients` other clients
  send 1-item ordinary requests for `--fair-seconds`; p50/p99/max of those small requests.

Targets: no lost or duplicated item, p99 <= deadline + 1 s, server items/s >= 0.8 x raw items/s, and
small requests beside hostile batches p99 <= deadline + 1 s.

    python perf/reward_server.py [--items 1200] [--clients 32] [--workers 2*cores] [--timeout 3]

Before/after a change to the server: the script drives the `tops_plugin` of the current directory, so for
the "before" figures run this file from a checkout of the older commit:

    cd OLD_CHECKOUT && PYTHONPATH=. python /path/to/this/perf/reward_server.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

from tops_plugin.jsonl import read_jsonl
from tops_plugin.judging.verifier import Verifier
from tops_plugin.reward.scorer import response_text

REPO = Path(__file__).resolve().parent.parent
LABELED = Path(os.environ.get("TOPS_SHARED_DIR", REPO.parent / "shared")) / "labeled" / "labeled_dev.jsonl"
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
HOSTILE = (
    "Computing the tower gives $\\boxed{9^{9^{9^{9}}}}$.",
    "So the answer is \\boxed{(10^{100})!}",
    "Final answer: \\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}",
    "\\boxed{" + "\\frac{1}{" * 400 + "2" + "}" * 400 + "}",
    "The answer is \\boxed{10^{10^{10^{10^{10}}}} - 10^{10^{10^{10^{10}}}} + 1}",
)


def build_items(count: int, hostile_rate: float, seed: int) -> list[dict]:
    rows = [row for row in read_jsonl(LABELED, require=("problem", "gold", "response"))]
    rng = random.Random(seed)
    rng.shuffle(rows)
    hostile = set(rng.sample(range(count), max(1, round(count * hostile_rate))))
    items = []
    for i in range(count):
        row = rows[i % len(rows)]
        prompt = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{row['problem']}<|im_end|>\n<|im_start|>assistant\n"
        response = HOSTILE[i % len(HOSTILE)] if i in hostile else row["response"]
        items.append(
            {
                "i": i,
                "prompt": prompt,
                "query": prompt + response + "<|im_end|><|endoftext|>",
                "label": str(row["gold"]),
                "hostile": i in hostile,
            }
        )
    return items


def raw_throughput(items: list[dict], workers: int, timeout: float) -> tuple[float, list[str]]:
    pairs = [(response_text(item["query"], item["prompt"]), item["label"]) for item in items]
    with Verifier(workers=workers, timeout=timeout) as verifier:
        list(verifier.judge_many(pairs[:8]))  # start the workers outside the timing, as the server is warmed
        started = time.perf_counter()
        # A wide window, so a hostile item at the head does not idle the other workers: the pool's best.
        verdicts = [v.verdict for v in verifier.judge_many(pairs, window=256)]
        return len(pairs) / (time.perf_counter() - started), verdicts


def start_server(workers: int, timeout: float, max_queue: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tops_plugin.server",
            "--port",
            "0",
            "--workers",
            str(workers),
            "--timeout",
            str(timeout),
            "--max-queue",
            str(max_queue),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TOPS_REWARD_CONFIG": ""},
    )
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split("listening on ")[1].strip()


def kill_one_worker(server: subprocess.Popen) -> int | None:
    """SIGKILL one verifier worker: a grandchild of the server (a child of the fork server that starts them)."""
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            if child.parent().pid != server.pid:
                os.kill(child.pid, signal.SIGKILL)
                return child.pid
        except (psutil.Error, ProcessLookupError):
            continue
    return None


async def fairness(url: str, items: list[dict], small_clients: int, seconds: float, batch: int = 16) -> dict:
    """Latency of 1-item requests while another client keeps `batch` hostile items in flight."""
    ordinary = [item for item in items if not item["hostile"]]
    prompt = items[0]["prompt"]
    hostile_body = {
        "query": [prompt + HOSTILE[i % len(HOSTILE)] + "<|im_end|>" for i in range(batch)],
        "prompts": [prompt] * batch,
        "labels": ["5"] * batch,
    }
    small, batches, errors = [], [], []
    ends = time.perf_counter() + seconds

    async def hostile_client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < ends:
            started = time.perf_counter()
            async with session.post(url, json=hostile_body) as resp:
                await resp.read()
                if resp.status != 200:
                    errors.append(f"hostile batch: {resp.status}")
                    await asyncio.sleep(1)
                    continue
            batches.append(time.perf_counter() - started)

    async def small_client(session: aiohttp.ClientSession, offset: int) -> None:
        await asyncio.sleep(0.5)  # the hostile batch goes first
        n = offset
        while time.perf_counter() < ends:
            item = ordinary[n % len(ordinary)]
            n += small_clients
            body = {"query": [item["query"]], "prompts": [item["prompt"]], "labels": [item["label"]]}
            started = time.perf_counter()
            async with session.post(url, json=body) as resp:
                await resp.read()
                if resp.status != 200:
                    errors.append(f"small request: {resp.status}")
                    continue
            small.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)  # a rollout worker between samples

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(hostile_client(session), *(small_client(session, k) for k in range(small_clients)))
    return {"small": sorted(small), "batches": batches, "errors": errors}


async def load(url: str, items: list[dict], clients: int, server: subprocess.Popen) -> dict:
    answers: dict[int, list[dict]] = {item["i"]: [] for item in items}
    latencies, errors, retries, killed = [], [], 0, []
    plain_latencies, hostile_latencies = [], []
    next_item = iter(items)
    kill_at = len(items) // 2

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal retries
        for item in next_item:
            body = {"query": [item["query"]], "prompts": [item["prompt"]], "labels": [item["label"]]}
            for _attempt in range(10):
                started = time.perf_counter()
                try:
                    async with session.post(url, json=body) as resp:
                        if resp.status == 503:
                            retries += 1
                            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                            continue
                        data = await resp.json()
                        if resp.status != 200:
                            errors.append(f"{resp.status}: {data}")
                            break
                        latencies.append(time.perf_counter() - started)
                        (hostile_latencies if item["hostile"] else plain_latencies).append(latencies[-1])
                        answers[item["i"]].append(data)
                        break
                except (TimeoutError, aiohttp.ClientError) as exc:
                    errors.append(repr(exc))
                    await asyncio.sleep(0.5)
            if not killed and sum(1 for a in answers.values() if a) >= kill_at:
                killed.append(kill_one_worker(server))

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=180)
    ) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - started
        async with session.get(url.replace("/get_reward", "/health")) as resp:
            health = await resp.json()
        after = [item for item in items[:50]]
        after_ok = 0
        for item in after:  # the pool must still serve after the kill
            async with session.post(
                url, json={"query": [item["query"]], "prompts": [item["prompt"]], "labels": [item["label"]]}
            ) as resp:
                after_ok += resp.status == 200 and len((await resp.json())["rewards"]) == 1
    return {
        "answers": answers,
        "latencies": latencies,
        "errors": errors,
        "retries": retries,
        "elapsed": elapsed,
        "killed": killed,
        "plain": sorted(plain_latencies),
        "hostile": sorted(hostile_latencies),
        "health": health,
        "after_ok": after_ok,
        "after_n": len(after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="as the server default")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--hostile-rate", type=float, default=0.01)
    parser.add_argument("--max-queue", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small-clients", type=int, default=4, help="fairness phase: 1-item clients")
    parser.add_argument("--fair-seconds", type=float, default=30.0, help="fairness phase: duration")
    args = parser.parse_args()

    items = build_items(args.items, args.hostile_rate, args.seed)
    print(
        f"{len(items)} items ({sum(i['hostile'] for i in items)} hostile), {args.clients} clients, "
        f"{args.workers} workers, deadline {args.timeout}s, {os.cpu_count()} CPUs"
    )
    raw_rate, raw_verdicts = raw_throughput(items, args.workers, args.timeout)
    print(f"raw verifier: {raw_rate:.1f} items/s")

    server, url = start_server(args.workers, args.timeout, args.max_queue)
    try:
        asyncio.run(_warm(url, items[:8]))
        result = asyncio.run(load(url, items, args.clients, server))
        fair = asyncio.run(fairness(url, items, args.small_clients, args.fair_seconds))
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)

    answers = result["answers"]
    lost = [i for i, a in answers.items() if not a]
    duplicated = [i for i, a in answers.items() if len(a) > 1 or any(len(x["rewards"]) != 1 for x in a)]
    verdicts = {i: a[0]["verdicts"][0] for i, a in answers.items() if len(a) == 1}
    differ = [i for i, v in verdicts.items() if v != raw_verdicts[i]]
    lat = sorted(result["latencies"])
    p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    rate = len(lat) / result["elapsed"]
    counts = {v: list(verdicts.values()).count(v) for v in sorted(set(verdicts.values()))}
    print(f"server: {rate:.1f} items/s over {result['elapsed']:.1f}s  (ratio to raw {rate / raw_rate:.2f})")
    print(
        f"latency: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms "
        f"(closed loop: mean wait = clients / throughput = {args.clients / rate * 1000:.0f} ms)"
    )
    plain, hostile = result["plain"], result["hostile"]
    print(
        f"  ordinary items: p50 {statistics.median(plain) * 1000:.0f} ms, p99 {plain[int(0.99 * (len(plain) - 1))] * 1000:.0f} ms; "
        f"hostile items: min {hostile[0] * 1000:.0f} ms, max {hostile[-1] * 1000:.0f} ms"
    )
    print(f"verdicts: {counts}")
    print(
        f"errors: {len(result['errors'])}  503 retries: {result['retries']}  lost: {len(lost)}  duplicated: {len(duplicated)}  "
        f"verdicts differing from raw: {len(differ)} {[(i, raw_verdicts[i], verdicts[i], 'hostile' if items[i]['hostile'] else '') for i in differ[:8]]}"
    )
    print(
        f"SIGKILLed worker pid {result['killed']}; after the kill: health {result['health']['status']}, "
        f"{result['after_ok']}/{result['after_n']} follow-up requests answered; server exit code {code}"
    )
    for message in result["errors"][:5]:
        print("  error:", message)
    fair_small = fair["small"] or [float("inf")]
    fair_p99 = fair_small[min(len(fair_small) - 1, int(0.99 * len(fair_small)))]
    print(
        f"fairness: {len(fair['small'])} 1-item requests beside {len(fair['batches'])} hostile batches of 16 "
        f"(each {statistics.median(fair['batches']) if fair['batches'] else float('nan'):.1f}s): "
        f"p50 {statistics.median(fair_small) * 1000:.0f} ms, p99 {fair_p99 * 1000:.0f} ms, "
        f"max {fair_small[-1] * 1000:.0f} ms; errors {len(fair['errors'])}"
    )
    checks = {
        "no lost or duplicated item": not lost and not duplicated,
        f"p99 <= deadline + 1 s ({args.timeout + 1:.1f}s)": p99 <= args.timeout + 1,
        "items/s >= 0.8 x raw": rate >= 0.8 * raw_rate,
        "serves after SIGKILL of a worker": bool(result["killed"] and result["killed"][0])
        and result["after_ok"] == result["after_n"],
        "no errors": not result["errors"],
        f"1-item requests beside hostile batches: p99 <= deadline + 1 s ({args.timeout + 1:.1f}s)": fair_p99
        <= args.timeout + 1,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


async def _warm(url: str, items: list[dict]) -> None:
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(
            *(
                session.post(
                    url, json={"query": [i["query"]], "prompts": [i["prompt"]], "labels": [i["label"]]}
                )
                for i in items
            )
        )


if __name__ == "__main__":
    main()
