"""Every command the package installs (setup.cfg's console scripts, so a new command cannot be left out)
behaves alike: its parser is named after the script, takes whole option names only, documents every option
and shows its defaults; a command that writes takes ``-o/--output``; an option spelled alike in two commands
parses alike; renamed options still accept their former spelling."""

from __future__ import annotations

import argparse
import configparser
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def console_scripts() -> dict[str, str]:
    """script name -> "module:function", as setup.cfg declares them."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in line.split("=", 1)) for line in lines)


COMMANDS = console_scripts()
#: Commands that write no file: they serve, run another command, or print.
WRITE_NOTHING = {"tops-serve", "tops-serve-reward", "tops-reward-path"}


def build_parser(script: str) -> argparse.ArgumentParser:
    module, _, function = COMMANDS[script].partition(":")
    assert function == "main", f"{script}: the entry point is {COMMANDS[script]}, expected MODULE:main"
    return importlib.import_module(module).build_parser()


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


def visible(action: argparse.Action) -> bool:
    return action.help is not argparse.SUPPRESS


def test_the_package_installs_the_commands() -> None:
    assert {"tops-check", "tops-generate", "tops-select", "tops-eval", "tops-analyze", "tops-compare",
            "tops-pipeline"} <= set(COMMANDS)


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_the_parser_is_named_after_its_script(script: str) -> None:
    parser = build_parser(script)
    assert parser.prog == script
    assert parser.format_usage().startswith(f"usage: {script} ")


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_no_abbreviated_option_is_accepted(script: str) -> None:
    parser = build_parser(script)
    for action in parser._actions:  # nothing required, so only the abbreviation is judged
        action.required = False
    for group in parser._mutually_exclusive_groups:
        group.required = False
    known = {flag for action in options(parser) for flag in action.option_strings}
    for flag in sorted(known):
        prefix = flag[:-1]
        if not flag.startswith("--") or prefix in known:
            continue
        _, unknown = parser.parse_known_args([prefix])
        assert prefix in unknown, f"{script} reads {prefix} as {flag}"


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_every_option_has_help_and_every_hidden_one_is_a_former_spelling(script: str) -> None:
    parser = build_parser(script)
    shown = {action.dest for action in parser._actions if visible(action)}
    for action in parser._actions:
        name = "/".join(action.option_strings) or action.dest
        if visible(action):
            assert isinstance(action.help, str) and action.help.strip(), f"{script} {name}: no help"
        else:
            assert action.dest in shown, f"{script} {name}: hidden, and not a former spelling of a shown option"


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_help_shows_every_default_worth_showing(script: str) -> None:
    parser = build_parser(script)
    text = " ".join(parser.format_help().split())
    for action in options(parser):
        if not visible(action) or action.default in (None, [], argparse.SUPPRESS) or action.default is False:
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        assert f"(default: {action.default})" in text, f"{script} {action.option_strings}: default not shown"
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: [])" not in text


@pytest.mark.parametrize("script", sorted(set(COMMANDS) - WRITE_NOTHING))
def test_a_command_that_writes_takes_dash_o_output(script: str) -> None:
    parser = build_parser(script)
    (output,) = [action for action in options(parser) if "--output" in action.option_strings]
    assert output.option_strings == ["-o", "--output"] and output.dest == "output" and visible(output)


def test_an_option_spelled_alike_in_two_commands_parses_alike() -> None:
    """One name, one meaning: --timeout, --workers, --seed, --efforts... parse the same way everywhere
    (-o/--output excepted: a file for some commands, a directory for others)."""
    seen: dict[str, tuple[str, object]] = {}
    for script in sorted(COMMANDS):
        for action in filter(visible, options(build_parser(script))):
            for flag in set(action.option_strings) - {"-o", "--output", "-h", "--help"}:
                parse = (type(action).__name__, action.type)  # a switch, a value, a list; and the value's type
                first, kind = seen.setdefault(flag, (script, parse))
                assert kind == parse, f"{flag}: {first} parses it with {kind}, {script} with {parse}"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    problems, config = tmp_path / "problems.jsonl", tmp_path / "recipe.yaml"
    problems.write_text("")
    config.write_text("")
    return {"in": str(problems), "out": str(tmp_path / "out.jsonl"), "config": str(config), "dir": str(tmp_path)}


RENAMES = [  # (script, argv with the former spelling, argv with the current one)
    ("tops-generate", ["{in}", "--out", "{out}"], ["{in}", "-o", "{out}"]),
    ("tops-generate", ["{in}", "-o", "{out}", "--engine-option", "dtype=half"],
     ["{in}", "-o", "{out}", "--backend-option", "dtype=half"]),
    ("tops-select", ["{in}", "--mode", "seed", "-o", "{out}", "--tokenizer", "t"],
     ["{in}", "--mode", "seed", "-o", "{out}", "--curation-tokenizer", "t"]),
    ("tops-eval", ["--model", "m", "--out", "{dir}", "--effort", "low,none"],
     ["--model", "m", "-o", "{dir}", "--efforts", "low,none"]),
    ("tops-analyze", ["{dir}", "--out", "{dir}", "--judge-workers", "2"],
     ["{dir}", "-o", "{dir}", "--round-judge-concurrency", "2"]),
    ("tops-analyze", ["{dir}", "-o", "{dir}", "--judge", "openai", "--judge-model", "m", "--judge-cache", "c"],
     ["{dir}", "-o", "{dir}", "--round-judge", "openai", "--round-judge-model", "m", "--round-judge-cache", "c"]),
    ("tops-compare", ["{dir}", "--out", "{dir}"], ["{dir}", "-o", "{dir}"]),
    ("tops-pipeline", ["--config", "{config}", "--run-dir", "{dir}"], ["--config", "{config}", "-o", "{dir}"]),
    ("tops-demo-problems", ["{dir}"], ["-o", "{dir}"]),
    ("tops-demo-problems", ["-o", "{dir}", "--seed", "2"], ["-o", "{dir}", "--seed-problems", "2"]),
]


@pytest.mark.parametrize(("script", "old", "new"), RENAMES, ids=[f"{s}:{' '.join(o)}" for s, o, _ in RENAMES])
def test_a_renamed_option_still_accepts_its_former_spelling(script, old, new, files) -> None:
    parser = build_parser(script)
    fill = lambda argv: [part.format(**files) for part in argv]  # noqa: E731
    assert vars(parser.parse_args(fill(old))) == vars(parser.parse_args(fill(new)))


def test_an_old_and_a_new_spelling_together_are_refused(files, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser("tops-generate").parse_args([files["in"], "-o", files["out"], "--out", files["out"]])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(("script", "argv", "message"), [
    ("tops-generate", ["{in}", "-o", "{out}", "--effort", "low"], "unrecognized arguments: --effort low"),
    ("tops-eval", ["--model", "m", "-o", "{dir}", "--temp", "0.6"], "unrecognized arguments: --temp 0.6"),
    ("tops-generate", ["{in}"], "the arguments -o/--output is required"),
])
def test_the_mistakes_a_new_user_makes_are_named(script, argv, message, files, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser(script).parse_args([part.format(**files) for part in argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
