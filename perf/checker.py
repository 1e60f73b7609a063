"""Checker throughput and memory, by hand: ``python perf/checker.py [--rows N] [--repeats R]``.

Baseline: plain math-verify in one process, the usual way (``verify(parse("$"+gold+"$"), parse(response))``).
Measured on the same rows, in one run:
  * labelled responses (../shared/labeled/labeled_dev.jsonl, a uniform sample of --rows);
  * a grouped set: 8 responses per problem (what judging generations looks like);
then the verifier's parent-process peak RSS while streaming 10k and 100k rows through `judge_many`.
Prints medians over --repeats and ratios against the baseline.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tops_plugin.jsonl import read_jsonl  # noqa: E402
from tops_plugin.judging.verifier import Verifier  # noqa: E402

LABELED = REPO.parent / "shared" / "labeled" / "labeled_dev.jsonl"


def plain_math_verify(pairs: list[tuple[str, str]]) -> float:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # its timeout warnings echo whole inputs

    started = time.perf_counter()
    for response, gold in pairs:
        try:
            verify(parse("$" + gold + "$"), parse(response))
        except BaseException:
            pass
    return time.perf_counter() - started


def ours(pairs: list[tuple[str, str]], workers: int) -> float:
    with Verifier(workers=workers, timeout=5) as verifier:
        list(verifier.judge_many(pairs[:64], chunk=1))  # start-up excluded: every worker forked and warm
        started = time.perf_counter()
        for _ in verifier.judge_many(pairs):
            pass
        return time.perf_counter() - started


def grouped(rows: list[dict], problems: int) -> list[tuple[str, str]]:
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_problem[row.get("problem_id") or row["id"]].append(row)
    pairs = []
    for group in list(by_problem.values())[:problems]:
        pairs += [(group[i % len(group)]["response"], group[0]["gold"]) for i in range(8)]
    return pairs


def peak_rss_mb(n_rows: int) -> float:
    code = f"""
import resource, sys
sys.path.insert(0, {str(REPO)!r})
from tops_plugin.judging.verifier import Verifier
rows = ((rf"The total is \\boxed{{{{{{i % 97}}}}}}.", str(i % 89)) for i in range({n_rows}))
if __name__ == "__main__":
    with Verifier(workers=2, timeout=5) as v:
        for _ in v.judge_many(rows):
            pass
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--problems", type=int, default=300, help="problems in the grouped set (8 rows each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    rows = list(read_jsonl(LABELED))
    step = max(1, len(rows) // args.rows)
    sample = [(r["response"], r["gold"]) for r in rows[::step][: args.rows]]
    sets = {"labelled": sample, "grouped x8": grouped(rows, args.problems)}
    results = {}
    for name, pairs in sets.items():
        times = defaultdict(list)
        for _ in range(args.repeats):
            times["plain math-verify"].append(plain_math_verify(pairs))
            times["verifier, 1 worker"].append(ours(pairs, 1))
            times["verifier, 2 workers"].append(ours(pairs, 2))
        base = statistics.median(times["plain math-verify"])
        print(f"\n{name}: {len(pairs)} rows, median of {args.repeats}")
        for label, values in times.items():
            median = statistics.median(values)
            print(f"  {label:22s} {len(pairs) / median:8.1f} rows/s   {base / median:5.2f}x")
        results[name] = {k: len(pairs) / statistics.median(v) for k, v in times.items()}
    if not args.no_memory:
        print("\npeak RSS of the parent while streaming (judge_many):")
        for n in (10_000, 100_000):
            print(f"  {n:7d} rows: {peak_rss_mb(n):7.1f} MB")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
