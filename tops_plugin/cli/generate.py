"""`tops-generate PROBLEMS.jsonl -o GENERATIONS.jsonl`: problems -> generation records.

Parses arguments, builds the backend and the requests, and shows progress; the work (and resume:
rerunning with the same output generates only what is missing) is `generate_to_file`'s.
"""

from __future__ import annotations

import argparse
import logging
import sys
from itertools import islice

from tops_plugin.cli.args import (
    add_renamed,
    command_parser,
    efforts,
    fraction,
    input_file,
    key_value,
    nonnegative_float,
    nonnegative_int,
    output_file,
    positive_int,
    same_file,
)
from tops_plugin.cli.progress import ProgressDisplay
from tops_plugin.generation import GenerationRequest, GenerationSummary, SamplingParams, generate_to_file, load_backend
from tops_plugin.jsonl import JsonlError, read_jsonl_numbered
from tops_plugin.prompts import EFFORTS

def build_parser() -> argparse.ArgumentParser:
    p = command_parser("tops-generate", "Generate responses: problems JSONL -> generation records.\n\n"
                       "Records are appended as they complete; rerunning with the same output generates only "
                       "the missing (id, effort, sample).")
    p.add_argument("problems", type=input_file, metavar="PROBLEMS.jsonl",
                   help="problems JSONL ({id, problem, answer, ...} per line)")
    add_renamed(p, "-o", "--output", old="--out", required=True, type=output_file, metavar="GENERATIONS.jsonl",
                help="generation records JSONL (appended to; reruns resume)")
    p.add_argument("--backend", choices=("hf", "vllm", "openai"), default="hf", help="what generates")
    p.add_argument("--model", default="smollm2-135m", help="path, hub id, alias (smollm2-135m) or API model")
    p.add_argument("--efforts", type=efforts, default="none", metavar="LIST",
                   help=f"effort prompts, comma-separated: {', '.join(EFFORTS)}, none (no effort prompt)")
    p.add_argument("--n-samples", type=positive_int, default=1, metavar="N", help="samples per problem and effort")
    p.add_argument("--temperature", type=nonnegative_float, default=1.0, metavar="T", help="sampling temperature")
    p.add_argument("--top-p", type=fraction, default=1.0, metavar="P", help="nucleus sampling mass")
    p.add_argument("--max-tokens", type=positive_int, default=16384, metavar="N", help="max new tokens per response")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="N", help="sampling seed")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="only the first N problems")
    add_renamed(p, "--backend-option", old="--engine-option", action="append", default=[], type=key_value,
                metavar="KEY=VALUE", help="any other backend option, value read as YAML (vllm: any vllm.LLM "
                "option, e.g. kv_cache_memory_bytes=2147483648); repeatable")
    hf = p.add_argument_group("hf backend")
    hf.add_argument("--batch-size", type=positive_int, default=16, metavar="N", help="sequences per forward pass")
    hf.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    vl = p.add_argument_group("vllm backend")
    vl.add_argument("--tensor-parallel-size", type=positive_int, default=1, metavar="N", help="GPUs per engine")
    vl.add_argument("--data-parallel-size", type=nonnegative_int, default=1, metavar="N",
                    help="engines (Ray actors); 0 = all GPUs")
    vl.add_argument("--gpu-memory-utilization", type=fraction, default=None, metavar="SHARE",
                    help="share of GPU memory for vLLM (default: vLLM's)")
    vl.add_argument("--max-model-len", type=positive_int, default=None, metavar="N",
                    help="context length (default: the model's)")
    vl.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                    help="skip CUDA-graph/torch.compile capture (default: on without a GPU, off with one)")
    api = p.add_argument_group("openai backend")
    api.add_argument("--base-url", default=None, metavar="URL", help="endpoint (default: $OPENAI_BASE_URL or OpenAI)")
    api.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                     help="environment variable holding the key")
    api.add_argument("--concurrency", type=positive_int, default=8, metavar="N", help="requests in flight")
    api.add_argument("--reasoning-effort", default=None, metavar="LEVEL", help="passed through as reasoning_effort")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the backend does")
    return p


def backend_options(args: argparse.Namespace) -> dict:
    if args.backend == "hf":
        return {"batch_size": args.batch_size, "device": args.device, **dict(args.backend_option)}
    if args.backend == "vllm":
        options = {
            "tensor_parallel_size": args.tensor_parallel_size,
            "data_parallel_size": args.data_parallel_size,
            "seed": args.seed,
        }
        if args.gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = args.gpu_memory_utilization
        if args.max_model_len is not None:
            options["max_model_len"] = args.max_model_len
        if args.enforce_eager is not None:
            options["enforce_eager"] = args.enforce_eager
        return {**options, **dict(args.backend_option)}
    return {
        "base_url": args.base_url,
        "api_key_env": args.api_key_env,
        "concurrency": args.concurrency,
        "reasoning_effort": args.reasoning_effort,
        **dict(args.backend_option),
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if same_file(args.problems, args.output):
        parser.error(f"argument -o/--output: {args.output} is the problems file; appending to it would corrupt it")
    from rich.console import Console
    from rich.logging import RichHandler

    console = Console(stderr=True)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    sampling = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed, stop=tuple(args.stop)
    )
    read_errors: list[JsonlError] = []
    numbered = list(islice(read_jsonl_numbered(args.problems, skip_bad=True, errors=read_errors), args.limit))
    for err in read_errors:
        console.print(f"[yellow]skipped unreadable line {err}")
    duplicates = duplicate_ids(numbered)
    if duplicates:
        for pid, first, again in duplicates[:10]:
            console.print(f"[red]error:[/] {args.problems}:{again}: problem id {pid!r} already used on line {first}")
        console.print(f"[red]error:[/] {len(duplicates)} duplicate problem id(s) in {args.problems}: every id must "
                      "name one problem (records are keyed by id); nothing was generated")
        return 2
    problems = [row for _, row in numbered]
    requests = [
        GenerationRequest(row, effort, args.n_samples, sampling) for row in problems for effort in args.efforts
    ]
    backend = load_backend(args.backend, args.model, **backend_options(args))
    try:
        summary = run_with_progress(backend, requests, args.output, console)
    finally:
        backend.close()
    print_summary(summary, console)
    return 0 if summary.complete and not summary.bad else 1


def duplicate_ids(numbered: list[tuple[int, dict]]) -> list[tuple[object, int, int]]:
    """(id, first line, repeated line) for each row whose id an earlier row already has. Ids compare as
    text, as records are keyed (``1`` and ``"1"`` are one id)."""
    first_line: dict[object, int] = {}
    repeats = []
    for line, row in numbered:
        pid = row.get("id")
        if pid is None or isinstance(pid, (dict, list)):
            continue  # reported per problem by the request checks
        key = str(pid)
        if key in first_line:
            repeats.append((pid, first_line[key], line))
        else:
            first_line[key] = line
    return repeats


def run_with_progress(backend, requests, out, console) -> GenerationSummary:
    """`generate_to_file` under `tops_plugin.cli.progress`: done/total, generated tokens/s, ETA (bars on a
    terminal, steady log lines otherwise)."""
    with ProgressDisplay(console) as display:
        return generate_to_file(backend, requests, out, progress=display.events("generating"))


def print_summary(summary: GenerationSummary, console) -> None:
    console.print(
        f"[bold]{summary.path}[/]: wrote {summary.records} record(s) of {summary.planned} planned "
        f"({summary.skipped} already present) in {summary.elapsed_s:.1f}s; "
        f"truncated {summary.truncated_share:.1%}, mean {summary.mean_tokens:.1f} Qwen2.5 tokens, "
        f"{summary.gen_tokens_per_s:,.1f} generated tokens/s"
    )
    if summary.bad:
        problems = len({pid for pid, _ in summary.bad})
        console.print(f"[yellow]{len(summary.bad)} request(s)/sample(s) of {problems} problem(s) skipped or failed "
                      "(warnings above): invalid problems stay skipped until fixed in the input; a rerun retries "
                      "failed samples")


if __name__ == "__main__":
    sys.exit(main())
