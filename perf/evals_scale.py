"""Scoring at scale, by hand: ``python perf/evals_scale.py [--rows 100000] [--ref-rows N] [--workers W]``.

Builds a `--backend responses` file of --rows rows from the real responses in
../shared/labeled/labeled_dev.jsonl (those whose problem is in GSM8K, MATH500 or AIME2024), each reused
under new sample indices, then runs `python -m evals.run --backend responses` on it in a subprocess and
reports rows/s and the peak memory of the run's main process (and with its checker workers).

Baseline: the checker alone -- `Verifier.judge_many` over (response, gold) pairs of the same rows, in
memory, no I/O and no token counting -- on the first --ref-rows rows. The ratio says what the harness
(reading, validation, Qwen2.5 token counting, appending samples.jsonl, summary, report, plots) costs on
top of judging.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evals.benchmarks import load_benchmarks  # noqa: E402
from evals.layout import RunFiles  # noqa: E402
from tops_plugin.jsonl import dumps, read_jsonl  # noqa: E402
from tops_plugin.judging.verifier import Verifier  # noqa: E402

SHARED = REPO.parent / "shared"
BENCHES = ("gsm8k", "math500", "aime2024")


def build_rows(rows: int) -> tuple[list[dict], dict[str, str]]:
    """--rows response rows cycling over the usable labelled responses; gold per problem id."""
    golds = {
        str(problem["id"]): problem["answer"]
        for item in load_benchmarks(BENCHES, SHARED / "data")
        for problem in item.problems
    }
    source = [row for row in read_jsonl(SHARED / "labeled" / "labeled_dev.jsonl") if row["problem_id"] in golds]
    if not source:
        raise SystemExit("no labelled responses match the benchmarks")
    counts: Counter = Counter()
    out = []
    for index in range(rows):
        row = source[index % len(source)]
        pid = row["problem_id"]
        out.append({"id": pid, "sample": counts[pid], "response": row["response"]})
        counts[pid] += 1
    return out, golds


def checker_rate(rows: list[dict], golds: dict[str, str], workers: int) -> tuple[float, float]:
    with Verifier(workers=workers) as verifier:
        started = time.perf_counter()
        for _ in verifier.judge_many((row["response"], golds[row["id"]]) for row in rows):
            pass
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed, elapsed


def token_rate(rows: list[dict]) -> tuple[float, float]:
    """Qwen2.5 token counting alone (the other per-row cost evals.run has and the checker has not)."""
    from tops_plugin.tokens import count_tokens, load_tokenizer

    tokenizer = load_tokenizer(None)
    started = time.perf_counter()
    for start in range(0, len(rows), 2048):
        count_tokens([row["response"] for row in rows[start : start + 2048]], tokenizer)
    elapsed = time.perf_counter() - started
    return len(rows) / elapsed, elapsed


def harness_run(path: Path, out: Path, workers: int) -> tuple[float, float, float]:
    """(elapsed s, peak RSS of the main process MB, peak RSS with children MB) of one evals.run."""
    command = [
        sys.executable, "-m", "evals.run", "--backend", "responses", "--responses", str(path),
        "--benchmarks", ",".join(BENCHES), "--data-dir", str(SHARED / "data"), "--workers", str(workers),
        "-o", str(out), "--quiet",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    peak_main = peak_all = 0
    while process.poll() is None:
        try:
            main = watched.memory_info().rss
            children = sum(child.memory_info().rss for child in watched.children(recursive=True))
        except psutil.Error:
            main = children = 0
        peak_main, peak_all = max(peak_main, main), max(peak_all, main + children)
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"evals.run failed: {process.stderr.read().decode()[-2000:]}")
    return elapsed, peak_main / 2**20, peak_all / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--ref-rows", type=int, default=None, help="rows for the checker baseline (default: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    rows, golds = build_rows(args.rows)
    with tempfile.TemporaryDirectory(prefix="evals-scale-") as tmp:
        path = Path(tmp) / "responses.jsonl"
        with open(path, "wb") as handle:
            for row in rows:
                handle.write(dumps(row))
        size_mb = path.stat().st_size / 2**20
        reference = rows[: args.ref_rows] if args.ref_rows else rows
        print(f"{len(rows)} response rows ({size_mb:.0f} MB), {args.workers} checker workers, "
              f"{len({row['id'] for row in rows})} problems")
        checker, tokens, harness, mem_main, mem_all = [], [], [], [], []
        for repeat in range(args.repeats):
            rate, seconds = checker_rate(reference, golds, args.workers)
            checker.append(rate)
            print(f"  checker alone    {len(reference):>7} rows  {seconds:8.1f} s  {rate:8.0f} rows/s")
            rate, seconds = token_rate(reference)
            tokens.append(rate)
            print(f"  tokens alone     {len(reference):>7} rows  {seconds:8.1f} s  {rate:8.0f} rows/s")
            elapsed, main_mb, all_mb = harness_run(path, Path(tmp) / f"run{repeat}", args.workers)
            harness.append(len(rows) / elapsed)
            mem_main.append(main_mb)
            mem_all.append(all_mb)
            print(f"  evals.run        {len(rows):>7} rows  {elapsed:8.1f} s  {len(rows) / elapsed:8.0f} rows/s  "
                  f"peak RSS main {main_mb:.0f} MB, with workers {all_mb:.0f} MB")
        summary = json.loads(RunFiles(Path(tmp) / "run0").summary.read_text())
        scored = sum(cell["n_samples"] for bench in summary["results"].values() for cell in bench.values())
        both = 1 / (1 / statistics.median(checker) + 1 / statistics.median(tokens))
        print(f"median checker {statistics.median(checker):.0f} rows/s, token counting {statistics.median(tokens):.0f} "
              f"rows/s (both in sequence: {both:.0f} rows/s); median evals.run "
              f"{statistics.median(harness):.0f} rows/s = {statistics.median(harness) / statistics.median(checker):.2f}x "
              f"the checker alone, {statistics.median(harness) / both:.2f}x checker+tokens; peak RSS main {statistics.median(mem_main):.0f} MB "
              f"(with workers {statistics.median(mem_all):.0f} MB); {scored} rows in summary")


if __name__ == "__main__":
    main()
