"""`tops-eval` (`python -m evals.run`): evaluate a model (or score responses made elsewhere) on GSM8K,
MATH500, AIME2024.

Parses the command line, shows progress, and delegates to `evals.harness.run_eval`. Rerunning the same
command with the same -o/--output directory finishes an interrupted run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from evals.benchmarks import BENCHMARKS, BenchmarkError
from evals.config import RESPONSES_BACKEND, TOKEN_COUNTS, EvalConfig
from evals.harness import ConfigMismatch, run_eval
from evals.layout import RunFiles
from evals.report import coverage_warnings
from evals.sources import FileSamples
from tops_plugin.cli.args import (
    add_renamed,
    command_parser,
    efforts,
    fraction,
    input_file,
    key_value,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from tops_plugin.cli.progress import ProgressDisplay
from tops_plugin.jsonl import JsonlError
from tops_plugin.judging.verifier import DEFAULT_TIMEOUT_S
from tops_plugin.prompts import EFFORTS


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "tops-eval",
        "Accuracy and response tokens (Qwen2.5 tokenizer) on math benchmarks: GSM8K, MATH500, AIME2024 or "
        "your own problem files.\n\nGenerates with a model (--backend vllm|hf|openai) or scores responses made "
        "elsewhere (--backend responses --responses FILE). Rerunning the same command with the same output "
        "directory finishes an interrupted run.",
    )
    parser.add_argument("--model",
                        help="model path, hub id, alias (smollm2-135m) or API model; a label in responses mode")
    parser.add_argument("--backend", choices=("vllm", "hf", "openai", "responses"), default="hf",
                        help="what generates; responses: score the --responses file")
    parser.add_argument("--benchmarks", default="gsm8k,math500,aime2024", metavar="LIST",
                        help=f"comma-separated: {', '.join(BENCHMARKS)} or paths to JSONL problem files")
    parser.add_argument("--n-samples", type=positive_int, default=None, metavar="N",
                        help="samples per problem; sample i uses seed S+i (default: 1)")
    parser.add_argument("--temperature", type=nonnegative_float, default=None, metavar="T",
                        help="sampling temperature (default: 1.0, the paper's protocol)")
    parser.add_argument("--top-p", type=fraction, default=1.0, metavar="P", help="nucleus sampling mass")
    parser.add_argument("--seed", type=nonnegative_int, default=0, metavar="S", help="seed of sample 0")
    parser.add_argument("--max-tokens", type=positive_int, default=16384, metavar="N",
                        help="max new tokens per response")
    add_renamed(parser, "--efforts", old="--effort", type=efforts, default=None, metavar="LIST",
                help=f"effort prompts, comma-separated: {', '.join(EFFORTS)}, none (no effort prompt; the "
                "default). Responses mode: keep only these efforts (default: all)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="first N problems of each benchmark")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="directory with local copies (gsm8k_test.jsonl, math500.jsonl, aime2024.jsonl)")
    parser.add_argument("--responses", type=input_file, default=None, metavar="FILE",
                        help="JSONL of responses to score (with --backend responses)")
    add_renamed(parser, "-o", "--output", old="--out", required=True, metavar="DIR",
                help="run directory: samples.jsonl, summary.json, report.md, plots (reused to resume)")
    parser.add_argument("--tokenizer", default=None, metavar="PATH",
                        help="tokenizer for counting (default: offline Qwen2.5)")
    parser.add_argument(
        "--count-tokens", choices=TOKEN_COUNTS, default="response",
        help="what `tokens` counts: the whole response or only the thought part of thought-and-summary models "
        "(Sky-T1 / STILL-2), as the paper counts them",
    )
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="verifier worker processes (default: one per core)")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="SEC",
                        help="deadline per response, seconds")
    parser.add_argument("--greedy", action="store_true", help="temperature 0, one sample per problem")
    parser.add_argument(
        "--backend-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
        help="passed to the backend, value read as YAML (e.g. batch_size=8, tensor_parallel_size=4, "
        "base_url=...); repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the report")
    return parser


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    model = args.model
    if model is None:
        if args.backend != RESPONSES_BACKEND:
            raise ValueError(f"--model is required with --backend {args.backend}")
        model = Path(args.responses or "responses").stem
    temperature = args.temperature
    n_samples = args.n_samples
    if args.greedy:
        if temperature not in (None, 0, 0.0) or n_samples not in (None, 1):
            raise ValueError("--greedy means temperature 0 and one sample: drop --temperature/--n-samples")
        temperature, n_samples = 0.0, 1
    return EvalConfig(
        model=model,
        backend=args.backend,
        benchmarks=tuple(name.strip() for name in args.benchmarks.split(",") if name.strip()),
        out=args.output,
        n_samples=1 if n_samples is None else n_samples,
        temperature=1.0 if temperature is None else temperature,
        top_p=args.top_p,
        seed=args.seed,
        max_tokens=args.max_tokens,
        efforts=args.efforts,
        limit=args.limit,
        data_dir=args.data_dir,
        responses=None if args.responses is None else str(args.responses),
        tokenizer=args.tokenizer,
        workers=args.workers,
        timeout=args.timeout,
        greedy=args.greedy,
        backend_options=tuple(args.backend_option),
        count_tokens=args.count_tokens,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    try:
        with ProgressDisplay(err) as display:
            result = run_eval(config, display.update)
    except (BenchmarkError, ConfigMismatch, JsonlError, OSError, ValueError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print(f"interrupted: finished samples are kept in {config.out}; rerun the same command to complete the run")
        return 130
    files = RunFiles(result.out)
    if not args.quiet:
        print(files.report.read_text())
    skipped = result.summary.get("run", {}).get("responses_file", {})
    for key, what in FileSamples.SKIPPED.items():
        if skipped.get(key):
            err.print(f"note: skipped {skipped[key]} rows of {config.responses}: {what}", markup=False,
                      highlight=False, soft_wrap=True)
    for warning in coverage_warnings(result.summary):
        err.print(f"warning: {warning}", style="bold yellow", markup=False, highlight=False, soft_wrap=True)
    err.print(f"wrote {files.samples}, {files.summary.name}, {files.report.name} and plots", markup=False,
              highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
