"""`tops-pipeline --config FILE [--stage NAME|all] [--dry-run] [--force STAGE] [-o DIR]` (`python -m recipes.tops`)

Runs the TOPS pipeline stage by stage (see `recipes.planners`), skipping stages whose inputs and
settings are unchanged since they last finished. This module only parses arguments, shows progress and
prints; planning is in `recipes.planners`, running in `recipes.execute`, records in `recipes.manifest`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from recipes.config import STAGE_NAMES, ConfigError, Recipe, load_config
from recipes.execute import StageFailed, execute
from recipes.manifest import Manifest, RunDirBusy, digest, run_lock
from recipes.plan import Hooks, StagePlan
from recipes.planners import plan_all
from tops_plugin.cli.progress import ProgressDisplay
from tops_plugin.cli.args import add_renamed, command_parser, input_file


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "tops-pipeline",
        "Run the Thinking-Optimal Scaling pipeline as resumable stages that launch OpenRLHF.\n\n"
        "A stage whose inputs and settings are unchanged since it last finished is skipped.",
    )
    parser.add_argument("--config", required=True, type=input_file, metavar="FILE",
                        help="recipe YAML (see recipes/configs/)")
    parser.add_argument("--stage", default="all", metavar="NAMES",
                        help=f"'all' (the config's pipeline.stages) or comma-separated names: {', '.join(STAGE_NAMES)}")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every command and the files each stage would write; run nothing")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help="rerun this stage even if it is up to date (repeatable)")
    add_renamed(parser, "-o", "--output", old="--run-dir", type=Path, metavar="DIR",
                help="run directory: every stage's outputs, logs and manifest.json (default: the config's run_dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set generation.max_tokens=64 (YAML value)")
    return parser


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", item, "expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def choose_stages(recipe: Recipe, stage_arg: str) -> tuple[list[str], bool]:
    """(stage names, whether 'all' was asked)."""
    if stage_arg == "all":
        return list(recipe.pipeline.stages), True
    names = [n.strip() for n in stage_arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise ConfigError("--stage", unknown[0], f"unknown stage (stages: {', '.join(STAGE_NAMES)})")
    return names, False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)  # commands stay on one line, copy-pasteable
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        overrides = parse_overrides(args.set)
        if args.output is not None:
            overrides["run_dir"] = str(args.output)
        recipe = load_config(args.config, overrides)
        names, everything = choose_stages(recipe, args.stage)
        unknown_force = [n for n in args.force if n not in STAGE_NAMES]
        if unknown_force:
            raise ConfigError("--force", unknown_force[0], f"unknown stage (stages: {', '.join(STAGE_NAMES)})")
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {escape(str(exc))}")
        return 2

    # Library warnings (skipped rows, empty selections) reach the terminal; every record goes to the stage log.
    handler = RichHandler(console=err, level=logging.WARNING, show_time=False, show_path=False)
    logging.getLogger().addHandler(handler)
    try:
        if args.dry_run:
            return _run(args, recipe, names, everything, console, err)
        with run_lock(recipe.run_dir):
            return _run(args, recipe, names, everything, console, err)
    except RunDirBusy as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    finally:
        logging.getLogger().removeHandler(handler)


def _run(args: argparse.Namespace, recipe: Recipe, names: list[str], everything: bool, console: Console,
         err: Console) -> int:
    with ProgressDisplay(console) as progress:
        hooks = Hooks(progress=lambda stage, event: progress.events(stage)(event),
                      on_line=lambda stage, line: progress.console.print(f"[dim]{stage}|[/dim] {escape(line)}"))
        plans = plan_all(recipe, names, hooks)
        try:
            manifest = Manifest(recipe.run_dir)
        except ValueError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            return 2
        console.print(f"run directory: {recipe.run_dir}   config: {args.config}")
        results: list[tuple[StagePlan, str]] = []
        for plan in plans:
            if everything and plan.unneeded and plan.name not in recipe.pipeline.print_only:
                console.print(f"[dim]- {plan.name}: left out ({escape(plan.unneeded)})[/dim]")
                continue
            if args.dry_run or (everything and plan.name in recipe.pipeline.print_only):
                describe(console, plan, manifest, force=plan.name in args.force,
                         label="dry run" if args.dry_run else "print only")
                results.append((plan, "printed"))
                continue
            missing = missing_data(plan, recipe)
            if missing is not None:
                err.print(f"[red]stage {plan.name!r}: {escape(missing)}[/red]")
                return 1
            try:
                outcome = execute(plan, manifest, force=plan.name in args.force,
                                  on_start=lambda p, why: console.print(
                                      f"[bold]> {p.name}[/bold] ({escape(why)}): {escape(p.summary)}"))
            except StageFailed as exc:
                err.print(f"[red]{escape(str(exc))}[/red]")
                return 1
            if outcome.ran:
                console.print(f"[green]done[/green] {plan.name} in {outcome.seconds:.1f} s")
                results.append((plan, "done"))
            else:
                console.print(f"[dim]= {plan.name}: up to date (skipped)[/dim]")
                results.append((plan, "up to date"))
    if not args.dry_run:
        print_outputs(console, results)
    return 0


def missing_data(plan: StagePlan, recipe: Recipe) -> str | None:
    """Why a stage cannot read its benchmark or problem data (which no stage writes), or None."""
    root = recipe.data_root()
    for path in plan.inputs:
        if path.exists() or root not in path.parents:
            continue
        if not root.is_dir():
            return (f"the data folder {root} does not exist (data.dir = {recipe.data.dir!r}); point data.dir at "
                    f"the folder holding the problem files, e.g. --set data.dir=DIR")
        return f"{path.name} is not in the data folder {root} (data.dir); no stage writes it"
    return None


def describe(console: Console, plan: StagePlan, manifest: Manifest, *, force: bool, label: str) -> None:
    """A stage as --dry-run shows it: would it run and why, its commands, the files it writes."""
    inputs = {str(p): digest(p) for p in plan.inputs}
    current, why = manifest.check(plan.name, plan.config_hash, inputs, [str(p) for p in plan.outputs])
    status = "would skip (up to date)" if current and not force else f"would run ({'forced' if force else why})"
    console.print(f"[bold]{plan.name}[/bold] {escape(f'[{label}]')} {status}")
    if plan.unneeded:
        console.print(f"  [dim]note: {escape(plan.unneeded)}[/dim]")
    for line in plan.command_lines():
        console.print(f"  $ {escape(line)}", soft_wrap=True)
    for path in plan.inputs:
        console.print(f"  reads:  {escape(str(path))}")
    for path in plan.outputs:
        console.print(f"  writes: {escape(str(path))}")


def print_outputs(console: Console, results: list[tuple[StagePlan, str]]) -> None:
    if not results:
        return
    console.print("\n[bold]outputs[/bold]")
    for plan, status in results:
        for path in plan.outputs:
            mark = "" if Path(path).exists() else "  (not written)"
            console.print(f"  {plan.name:<12} {status:<11} {escape(str(path))}{mark}")


if __name__ == "__main__":
    sys.exit(main())
