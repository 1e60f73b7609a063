"""Selection throughput and memory on a large, unsorted input.

    python perf/selection.py [--rows 1000000] [--samples 8] [--modes shortest,iter-dpo]
                                   [--data-dir ../shared/data] [--keep FILE] [--max-len 16384]

Builds a synthetic generation file from the problems in `--data-dir` (`--rows` rows, `--samples` per
problem, so rows/samples problems; problems are repeated with a suffix when the data has fewer), written
sample-major so that the rows of one problem are spread over the whole file. Then runs
`python -m tops_plugin.select` on it per mode in a child process and prints rows/s and the child's peak
RSS (target: < 1 GB at 1M rows). Rows carry `tokens`, as generation records do. With `--max-len N`, each
mode also runs with `--max-len N` (every candidate measured through the stand-in chat template, as
OpenRLHF will read it) and the ratio to the run without is printed.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tops_plugin.jsonl import dumps, read_jsonl  # noqa: E402

# Runs the command in this child and reports the child's own peak RSS (KiB) as its last stderr line.
CHILD = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
finally:
    print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""

WORDS = "so we have the equation x equals then by substitution wait let me check again therefore".split()


def load_problems(data_dir: Path) -> list[dict]:
    problems = []
    for path in sorted(data_dir.glob("*.jsonl")):
        for row in read_jsonl(path, require=("id", "problem", "answer")):
            problems.append({"id": f"{path.stem}:{row['id']}", "problem": row["problem"], "answer": row["answer"],
                             "level": row.get("level"), "benchmark": path.stem})
    return problems


def build(path: Path, problems: list[dict], rows: int, samples: int) -> None:
    n_problems = rows // samples
    rng = random.Random(0)
    verdicts = ("correct", "correct", "wrong", "wrong", "no_answer", "timeout")
    with open(path, "wb") as out:
        for sample in range(samples):
            chunk = []
            for index in range(n_problems):
                base = problems[index % len(problems)]
                pid = base["id"] if index < len(problems) else f"{base['id']}#{index // len(problems)}"
                n_words = rng.randint(20, 200)
                verdict = verdicts[rng.randrange(len(verdicts))]
                chunk.append(dumps({
                    "id": pid, "problem": base["problem"], "answer": base["answer"], "level": base["level"],
                    "benchmark": base["benchmark"], "effort": None, "sample": sample, "seed": 0, "model": "synthetic",
                    "messages": [{"role": "user", "content": base["problem"]}],
                    "response": " ".join(rng.choices(WORDS, k=n_words)) + f" \\boxed{{{base['answer']}}}",
                    "finish_reason": "stop", "tokens": n_words + 6, "verdict": verdict,
                    "correct": verdict == "correct", "pred": None,
                }))
                if len(chunk) >= 10_000:
                    out.write(b"".join(chunk))
                    chunk = []
            out.write(b"".join(chunk))


def run_mode(src: Path, mode: str, rows: int, tmp: Path, extra: tuple[str, ...] = ()) -> float:
    out = tmp / f"{mode}.jsonl"
    start = time.perf_counter()
    argv = ["tops_plugin.select", str(src), "--mode", mode, "-o", str(out), *extra]
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        print(proc.stdout, proc.stderr)
        raise SystemExit(f"{mode}: exit {proc.returncode}")
    peak_kb = int(proc.stderr.strip().splitlines()[-1].split()[-1])
    written = sum(1 for _ in open(out, "rb"))
    label = f"{mode} {' '.join(extra)}".strip()
    print(f"  {label:24s}: {wall:7.1f} s  {rows / wall:10,.0f} rows/s  peak RSS {peak_kb / 1024:7,.0f} MB"
          f"  rows out {written:,}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--modes", default="shortest,iter-dpo")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--keep", type=Path, help="keep the synthetic input at this path")
    parser.add_argument("--max-len", type=int, help="also run each mode with this --max-len (baseline: without)")
    args = parser.parse_args()

    problems = load_problems(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = args.keep or tmp / "gens.jsonl"
        start = time.perf_counter()
        build(src, problems, args.rows, args.samples)
        print(f"input: {args.rows:,} rows, {args.rows // args.samples:,} problems ({len(problems):,} distinct), "
              f"{src.stat().st_size / 1e9:.2f} GB, built in {time.perf_counter() - start:.0f} s")
        for mode in args.modes.split(","):
            base = run_mode(src, mode, args.rows, tmp)
            if args.max_len:
                limited = run_mode(src, mode, args.rows, tmp, ("--max-len", str(args.max_len)))
                print(f"  {mode}: --max-len costs {limited / base:.2f}x the time of the run without")


if __name__ == "__main__":
    main()
