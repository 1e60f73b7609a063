"""Token counting speed: `tops_plugin.tokens` against a per-string `transformers` encode loop.

    python perf/tokens.py [--labeled ../shared/labeled/labeled_dev.jsonl] [--repeats 3]
                                [--stream-rows 10000] [--stream-repeats 1]

Both tokenizers are loaded before timing (load time excluded) from the same offline files. Part 1 counts
the labelled responses held in memory; part 2 streams a JSONL file of `--stream-rows` rows (the labelled
responses repeated), reading and counting, as selection does on large generation files. Prints the
median tokens/s of each side and their ratio (target: >= 1.7x on 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tops_plugin.jsonl import read_jsonl, write_jsonl  # noqa: E402
from tops_plugin.tokens import count_tokens, default_tokenizer_dir, load_tokenizer, with_token_counts  # noqa: E402


def timed_pair(first, second, repeats: int) -> tuple[float, float, object, object]:
    """Median seconds of two functions, run alternately so that a change in machine load hits both."""
    times: tuple[list[float], list[float]] = ([], [])
    results = [None, None]
    for _ in range(repeats):
        for index, fn in enumerate((first, second)):
            start = time.perf_counter()
            results[index] = fn()
            times[index].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1]), results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labeled", type=Path, default=REPO.parent / "shared" / "labeled" / "labeled_dev.jsonl")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-rows", type=int, default=10_000)
    parser.add_argument("--stream-repeats", type=int, default=1)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(default_tokenizer_dir()))
    ours = load_tokenizer()
    texts = [row["response"] for row in read_jsonl(args.labeled, require=("response",))]
    print(f"cpus: {os.cpu_count()}  texts: {len(texts):,}  chars: {sum(map(len, texts)):,}")

    def loop(batch=texts):
        return [len(reference.encode(text, add_special_tokens=False)) for text in batch]

    t_loop, t_ours, counts_loop, counts_ours = timed_pair(loop, lambda: count_tokens(texts, ours), args.repeats)
    tokens = sum(counts_ours)
    differ = sum(a != b for a, b in zip(counts_loop, counts_ours))
    print(f"tokens: {tokens:,}  (texts counted differently: {differ}, the Qwen3-only <think> tokens)")
    print(f"[in memory, median of {args.repeats}]")
    print(f"  transformers encode loop : {t_loop:7.2f} s  {tokens / t_loop:12,.0f} tokens/s")
    print(f"  tops_plugin count_tokens : {t_ours:7.2f} s  {tokens / t_ours:12,.0f} tokens/s")
    print(f"  ratio                    : {t_loop / t_ours:.2f}x  (target >= 1.7x)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.jsonl"
        rows = ({"id": i, "response": text} for i, text in enumerate(itertools.islice(itertools.cycle(texts), args.stream_rows)))
        write_jsonl(path, rows)

        def stream_loop():
            return sum(len(reference.encode(row["response"], add_special_tokens=False)) for row in read_jsonl(path))

        def stream_ours():
            return sum(row["tokens"] for row in with_token_counts(read_jsonl(path), tokenizer=ours))

        t_sloop, t_sours, total, total_ours = timed_pair(stream_loop, stream_ours, args.stream_repeats)
        print(f"[streaming, median of {args.stream_repeats}: {args.stream_rows:,} rows from JSONL ({path.stat().st_size / 1e6:,.0f} MB), "
              f"{total_ours:,} tokens, read + count]")
        print(f"  transformers encode loop : {t_sloop:7.2f} s  {args.stream_rows / t_sloop:10,.0f} rows/s  "
              f"{total / t_sloop:12,.0f} tokens/s")
        print(f"  tops_plugin streaming    : {t_sours:7.2f} s  {args.stream_rows / t_sours:10,.0f} rows/s  "
              f"{total_ours / t_sours:12,.0f} tokens/s")
        print(f"  ratio                    : {t_sloop / t_sours:.2f}x")


if __name__ == "__main__":
    main()
