"""`tops-select IN.jsonl --mode shortest|random|iter-sft|iter-dpo|seed -o OUT.jsonl`

Reads judged generation records, selects per problem and writes OpenRLHF rows (SFT, or DPO for
`iter-dpo`) atomically with an `OUT.meta.json` sidecar (`tops_plugin.selection.dataset`, as the
pipeline's select stages do), and prints the statistics. This module only parses arguments, shows
progress and prints; the work is in the library.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack

from rich.console import Console
from rich.table import Table

from tops_plugin.cli.args import (
    add_renamed,
    command_parser,
    input_file,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
    same_file,
)
from tops_plugin.cli.progress import ProgressDisplay
from tops_plugin.jsonl import JsonlError
from tops_plugin.judging.rows import judge_rows
from tops_plugin.judging.verifier import DEFAULT_TIMEOUT_S, Verifier
from tops_plugin.prompts import EFFORTS
from tops_plugin.selection.dataset import SEED_TARGET_MODES, write_selection
from tops_plugin.selection.modes import GOLD_KEYS, MODES, SelectionConfig, read_records

VERDICT_CHOICES = ("wrong", "no_answer", "timeout", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "tops-select",
        "Select training data from judged responses (TOPS) and write an OpenRLHF dataset.\n\n"
        "Modes: seed (the tag model's effort-tagged set), shortest (TOPS: the shortest correct response per "
        "problem), random (a seeded random correct one), iter-sft (the shortest correct sample), iter-dpo "
        "(chosen = shortest correct, rejected = wrong ones).",
    )
    parser.add_argument("inputs", nargs="+", type=input_file, metavar="IN.jsonl",
                        help="generation records with verdicts")
    parser.add_argument("--mode", required=True, choices=MODES, help="what to select")
    parser.add_argument("-o", "--output", required=True, type=output_file, metavar="OUT.jsonl",
                        help="dataset JSONL to write (with an OUT.meta.json sidecar)")
    add_renamed(parser, "--curation-tokenizer", old="--tokenizer", metavar="PATH",
                help="rank responses and measure seed gaps in this tokenizer's tokens (the model being trained; "
                "path or hub name); default Qwen2.5. Reported figures stay in Qwen2.5 tokens")
    parser.add_argument("--recount", action="store_true",
                        help="recount every row's `tokens` (Qwen2.5) instead of trusting and checking the field")
    parser.add_argument("--max-len", type=_train_max_len, metavar="N",
                        help="OpenRLHF's --data.max_len of the training run: exclude candidates whose prompt + "
                        "response would be cut, before choosing")
    parser.add_argument("--chat-tokenizer", metavar="PATH",
                        help="with --max-len: the trained model's tokenizer and chat template (folder or hub "
                        "name); default: Qwen2.5 tokens with ChatML as a stand-in, named in the meta file")
    parser.add_argument("--seed", type=nonnegative_int, default=0, metavar="N", help="random mode: the selection seed")
    parser.add_argument("--min-gap", type=nonnegative_int, default=300, metavar="TOKENS",
                        help="seed mode: minimum token gap between low/medium and medium/high")
    parser.add_argument("--rejected-verdicts", default="wrong", metavar="LIST",
                        help=f"iter-dpo: comma-separated verdicts usable as rejected, from {','.join(VERDICT_CHOICES)}")
    parser.add_argument("--keep-effort-prompt", action="store_true",
                        help="keep the effort system prompt in the training prompt (not for seed mode)")
    parser.add_argument("--add-seed", type=input_file, metavar="SEED.jsonl",
                        help="shortest/random: append the low-effort rows of a curated seed file (seed mode "
                        "output), without their effort prompt, as in the paper")
    judge = parser.add_argument_group("judging rows without verdicts")
    judge.add_argument("--judge", action="store_true", help="judge rows lacking verdict fields on the fly")
    judge.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="verifier worker processes (default: one per core)")
    judge.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="SEC",
                       help="deadline per row, seconds")
    return parser


def _train_max_len(text: str) -> int:
    """OpenRLHF's --data.max_len: an integer with room for a prompt, a response and EOS."""
    value = positive_int(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"must be >= 3 (prompt + response + EOS), got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for path in [*args.inputs, *([args.add_seed] if args.add_seed else [])]:
        if same_file(path, args.output):
            parser.error(f"argument -o/--output: {args.output} is an input file; writing it would destroy it")
    console = Console(stderr=True)
    try:
        verdicts = frozenset(v.strip() for v in args.rejected_verdicts.split(",") if v.strip())
        config = SelectionConfig(mode=args.mode, seed=args.seed, curation_tokenizer=args.curation_tokenizer,
                                 recount=args.recount, rejected_verdicts=verdicts, min_gap=args.min_gap,
                                 keep_effort_prompt=args.keep_effort_prompt, max_len=args.max_len,
                                 chat_tokenizer=args.chat_tokenizer)
        if args.add_seed and args.mode not in SEED_TARGET_MODES:
            raise ValueError(f"--add-seed applies to the {' and '.join(SEED_TARGET_MODES)} modes only")
        for path in [*args.inputs, *([args.add_seed] if args.add_seed else [])]:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2

    with ExitStack() as stack, ProgressDisplay(console, transient=True) as progress:
        stage = f"selecting ({args.mode}), rows read"
        progress.update(stage, 0)
        rows: Iterable[dict] = read_records(args.inputs, need_verdict=not args.judge, check_tokens=not args.recount)
        if args.judge:
            verifier = stack.enter_context(Verifier(workers=args.workers, timeout=args.timeout))
            rows = judge_rows(rows, verifier.judge_many, gold_keys=GOLD_KEYS, keep_verdicts=True)
        try:
            written = write_selection(args.inputs, args.output, config, rows=_advance(rows, progress, stage),
                                      seed_file=args.add_seed)
        except (JsonlError, ValueError, OSError) as exc:  # bad row, bad tokenizer, unreadable or unwritable file
            console.print(f"[red]error:[/red] {exc}")
            return 2

    if written.stats["rows_in"] == 0:
        console.print(f"[yellow]warning:[/yellow] no input rows in {', '.join(map(str, args.inputs))}; "
                      "wrote an empty dataset")
    Console().print(stats_table(written.stats))
    for table in seed_tables(written.stats["seed"]):
        Console().print(table)
    console.print(f"wrote {written.rows:,} rows to {written.path}")
    return 0


def _advance(rows: Iterable[dict], progress: ProgressDisplay, stage: str) -> Iterator[dict]:
    count = 0
    for count, row in enumerate(rows, start=1):
        yield row
        if count % 4096 == 0:
            progress.update(stage, count)
    progress.update(stage, count, count)


def stats_table(stats: dict) -> Table:
    """One table of the per-mode statistics."""
    table = Table(title=f"selection: {stats['mode']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("rows in / problems in", f"{stats['rows_in']:,} / {stats['problems_in']:,}")
    table.add_row("problems out / rows out", f"{stats['problems_out']:,} / {stats['rows_out']:,}")
    table.add_row("dropped", _kv(stats["dropped"]))
    table.add_row("excluded candidates", _kv(stats["excluded"]))
    if stats["truncated"]:
        table.add_row("truncated (by verdict)", _kv(stats["truncated"]))
    if stats["length_tokenizer"]:
        table.add_row("length limit", f"max_len {stats['max_len']:,} in {stats['length_tokenizer']}")
    if stats["verdicts"]:
        table.add_row("verdicts in", _kv(stats["verdicts"]))
    if stats["pairs"]:
        table.add_row("pairs", _kv(stats["pairs"]))
    table.add_row("chosen tokens", _tokens(stats["chosen_tokens"]))
    if stats["rejected_tokens"]:
        table.add_row("rejected tokens", _tokens(stats["rejected_tokens"]))
    table.add_row("effort of selected", _kv(_ordered(stats["effort_selected"])))
    for key, groups in stats["effort_by_group"].items():
        for value, counts in sorted(groups.items()):
            table.add_row(f"  {key}={value}", _kv(_ordered(counts)))
    if stats["seed"].get("low_effort_rows_added") is not None:
        table.add_row("low-effort seed rows added", f"{stats['seed']['low_effort_rows_added']:,}")
    return table


def seed_tables(seed: dict) -> list[Table]:
    """The paper's Table 1 (tokens per effort) and Table 7 (prompt vs length rank) for seed mode."""
    if "rank_by_prompt_kept" not in seed:
        return []
    table1 = Table(title="kept seed responses: mean tokens (Table 1)")
    table1.add_column("effort")
    table1.add_column("mean tokens (re-sorted)", justify="right")
    table1.add_column("mean tokens (by prompt used)", justify="right")
    for effort in EFFORTS:
        table1.add_row(effort, _num(seed["tokens_by_effort"].get(effort)), _num(seed["tokens_by_prompt"].get(effort)))
    table7 = Table(title="which prompt produced which length (Table 7): all-correct problems | kept")
    table7.add_column("prompt")
    for rank in ("shortest", "middle", "longest"):
        table7.add_column(rank, justify="right")
    for effort in EFFORTS:
        every, kept = seed["rank_by_prompt_all_correct"][effort], seed["rank_by_prompt_kept"][effort]
        table7.add_row(effort, *(f"{every[r]:,} | {kept[r]:,}" for r in ("shortest", "middle", "longest")))
    return [table1, table7]


def _ordered(counts: dict) -> dict:
    order = [*EFFORTS, "None"]
    return dict(sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def _kv(counts: dict) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in counts.items()) or "-"


def _tokens(summary: dict) -> str:
    if not summary.get("n"):
        return "-"
    return f"n={summary['n']:,}  mean={summary['mean']:.1f}  median={summary['median']:.1f}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
