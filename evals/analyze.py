"""``tops-analyze RUN_DIR|samples.jsonl -o DIR [--round-judge openai --round-judge-model M]``
(``python -m evals.analyze``).

Why long reasoning hurts, measured on a run: reasoning rounds, erroneous rounds, and length vs accuracy
(see `evals.analysis`). Parses arguments, shows progress and delegates.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evals.analysis import EQUATION_MODES, AnalysisConfig, analyze, load_samples, write_outputs
from evals.layout import AnalysisFiles, samples_file
from evals.report import display_name, num, pct
from tops_plugin.cli.args import add_renamed, command_parser, input_path, positive_float, positive_int
from tops_plugin.jsonl import JsonlError
from tops_plugin.judging.verifier import DEFAULT_TIMEOUT_S
from tops_plugin.rounds.judge import RoundJudge


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "tops-analyze",
        "Why long reasoning hurts, measured on a run: reasoning rounds, erroneous rounds, and length vs accuracy.",
    )
    parser.add_argument("source", type=input_path, metavar="RUN_DIR|SAMPLES.jsonl",
                        help="a run directory (its samples.jsonl) or a samples JSONL file")
    add_renamed(parser, "-o", "--output", old="--out", required=True, metavar="DIR",
                help="directory to write analysis.json, report.md and plots to")
    parser.add_argument("--gold-key", default="answer", metavar="KEY", help="field holding the gold answer")
    parser.add_argument("--bins", type=positive_int, default=8, metavar="N", help="token-length bins per benchmark")
    parser.add_argument("--equations", choices=sorted(EQUATION_MODES), default="cued",
                        help="which '= N.' conclusions end a round besides boxed and phrased answers: those "
                        "led by a cue word like 'so' (cued), every one (all), or none")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="verifier worker processes (default: one per core)")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="SEC",
                        help="deadline per answer, seconds")
    parser.add_argument("--tokenizer", default=None, metavar="PATH",
                        help="tokenizer for rows without 'tokens' (default: Qwen2.5)")
    parser.add_argument("--no-plots", action="store_true", help="write no plots")
    # Formerly --judge…: elsewhere --judge means judging answers with the verifier (tops-select --judge).
    judge = parser.add_argument_group("language-model round judge")
    add_renamed(judge, "--round-judge", old="--judge", choices=["openai"], default=None,
                help="also count rounds with a language model")
    add_renamed(judge, "--round-judge-model", old="--judge-model", default=None, metavar="MODEL",
                help="the round judge's model (needed with --round-judge)")
    add_renamed(judge, "--round-judge-base-url", old="--judge-base-url", default=None, metavar="URL",
                help="OpenAI-compatible endpoint (default: OpenAI)")
    add_renamed(judge, "--round-judge-api-key-env", old="--judge-api-key-env", default="OPENAI_API_KEY",
                metavar="NAME", help="environment variable with the key")
    add_renamed(judge, "--round-judge-cache", old="--judge-cache", default=None, metavar="FILE",
                help="reply cache (default: OUTPUT/judge_cache.jsonl)")
    add_renamed(judge, "--round-judge-concurrency", old=("--judge-concurrency", "--judge-workers"),
                type=positive_int, default=4, metavar="N", help="round judge requests in flight")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    from tops_plugin.cli.progress import ProgressDisplay
    from tops_plugin.judging.rows import judge_rows
    from tops_plugin.judging.verifier import Verifier
    from tops_plugin.tokens import with_token_counts

    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    if args.round_judge and not args.round_judge_model:
        console.print("[red]--round-judge openai needs --round-judge-model")
        return 2
    if args.bins < 1:
        console.print("[red]--bins must be at least 1")
        return 2
    try:
        rows = load_samples(args.source, args.gold_key)
    except (JsonlError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}")
        return 2
    if not rows:
        console.print(f"[red]{samples_file(args.source)}: no samples")
        return 2
    config = AnalysisConfig(
        length_bins=args.bins,
        gold_key=args.gold_key,
        rounds=EQUATION_MODES[args.equations],
        judge_workers=args.round_judge_concurrency,
    )
    judge = None
    if args.round_judge:
        from tops_plugin.rounds.judge import openai_complete

        complete = openai_complete(args.round_judge_model, args.round_judge_base_url, args.round_judge_api_key_env)
        judge = RoundJudge(complete, args.round_judge_model,
                           args.round_judge_cache or AnalysisFiles(args.output).judge_cache)
    counted = sum("tokens" not in row for row in rows)  # load_samples checked any `tokens` is a count
    try:
        rows = list(with_token_counts(rows, tokenizer=args.tokenizer, recount=False))
    except OSError as exc:  # --tokenizer names no tokenizer
        console.print(f"--tokenizer: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    unjudged = [row for row in rows if not isinstance(row.get("correct"), bool)]
    with Verifier(workers=args.workers, timeout=args.timeout) as verifier, \
            ProgressDisplay(console, transient=True) as display:
        judged = len(list(judge_rows(unjudged, verifier.judge_many, gold_keys=(args.gold_key,))))
        analysis, records = analyze(rows, judge_many=verifier.judge_many, judge=judge, config=config,
                                    progress=display.update)
    analysis["source"] = str(samples_file(args.source))
    paths = write_outputs(args.output, analysis, records, plots=not args.no_plots)
    if counted or judged:
        console.print(f"counted tokens of {counted} and judged {judged} responses that lacked them")
    for bench, groups in analysis["by_benchmark"].items():
        for effort, cell in groups.items():
            console.print(
                f"{display_name(bench)} {effort}: {cell['all']['responses']} responses, accuracy "
                f"{pct(cell['accuracy'], 1, '%')}, rounds {num(cell['rounds_mean'], 2)}, erroneous "
                f"{num(cell['erroneous_rounds_mean'], 2)}, ratio {num(cell['erroneous_ratio'], 2)} (correct answers)",
                markup=False, highlight=False, soft_wrap=True,
            )
    if len(analysis["benchmarks"]) > 1:
        pooled = analysis["pooled"]
        console.print(f"pooled over {', '.join(display_name(b) for b in pooled['over'])}: {pooled['responses']} "
                      f"responses, accuracy {pct(pooled['accuracy'], 1, '%')}", markup=False, highlight=False, soft_wrap=True)
    if judge is not None:
        judged_ok = sum(record["llm_judge"]["judged"] for record in records)
        console.print(f"judge {judge.model}: {judged_ok} judged, {len(records) - judged_ok} unjudged "
                      f"(replies cached in {judge.cache_path})")
    console.print(f"wrote {paths['analysis']}, {paths['report']} and {len(paths['plots'])} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
