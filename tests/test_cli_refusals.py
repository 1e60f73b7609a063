"""Every command refuses dangerous or meaningless arguments before any work: exit code 2, a message that
names the argument, no traceback, nothing overwritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import ArgumentTypeError
from pathlib import Path

import pytest

from tops_plugin.cli import args as cli_args
from tops_plugin.cli import check, generate, select, serve
from tops_plugin.jsonl import read_jsonl_numbered
from tops_plugin.judging.answers import judge

REPO = Path(__file__).resolve().parent.parent
ROWS = [{"id": i, "response": rf"so the answer is \boxed{{{i}}}", "answer": str(i)} for i in range(3)]


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


def refused(main, argv: list[str], capsys) -> str:
    """Run a command's main; assert argparse refused it (exit 2) and return its error text."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "abc", ""])
def test_positive_float_refuses_meaningless_values(value: str) -> None:
    with pytest.raises(ArgumentTypeError):
        cli_args.positive_float(value)


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "nan", "x"])
def test_positive_int_refuses_meaningless_values(value: str) -> None:
    with pytest.raises(ArgumentTypeError):
        cli_args.positive_int(value)


def test_numeric_types_accept_sane_values() -> None:
    assert cli_args.positive_float("2.5") == 2.5 and cli_args.positive_int("4") == 4
    assert cli_args.fraction("1") == 1.0 and cli_args.nonnegative_float("0") == 0.0
    assert cli_args.port("0") == 0 and cli_args.nonnegative_int("0") == 0


@pytest.mark.parametrize("value", ["0", "nan", "inf"])
@pytest.mark.parametrize("command", [check.main, select.main, serve.main, generate.main])
def test_every_command_refuses_a_meaningless_timeout_or_count(command, value, rows_file, tmp_path, capsys):
    out = str(tmp_path / "out.jsonl")
    argv = {
        check.main: [str(rows_file), "-o", out, "--timeout", value],
        select.main: [str(rows_file), "--mode", "shortest", "-o", out, "--timeout", value],
        serve.main: ["--timeout", value],
        generate.main: [str(rows_file), "-o", out, "--max-tokens", value],
    }[command]
    err = refused(command, argv, capsys)
    assert ("--timeout" in err or "--max-tokens" in err) and repr(value) in err
    assert not Path(out).exists()


def test_evals_and_recipes_commands_validate_numbers_too(tmp_path, capsys) -> None:
    from evals import analyze, run
    from recipes import tops

    err = refused(run.main, ["--model", "m", "-o", str(tmp_path / "o"), "--timeout", "nan"], capsys)
    assert "--timeout" in err
    err = refused(run.main, ["--model", "m", "-o", str(tmp_path / "o"), "--top-p", "1.5"], capsys)
    assert "--top-p" in err
    err = refused(analyze.main, [str(tmp_path), "-o", str(tmp_path / "a"), "--bins", "0"], capsys)
    assert "--bins" in err
    err = refused(tops.main, ["--config", str(tmp_path)], capsys)
    assert "--config" in err and "is a directory" in err


def test_evals_commands_refuse_a_device_as_input_before_reading_it(tmp_path, capsys) -> None:
    """/dev/zero never ends: reading it would hang and fill memory."""
    from evals import analyze, compare, run

    err = refused(run.main, ["--backend", "responses", "--responses", "/dev/zero", "-o", str(tmp_path / "r")], capsys)
    assert "--responses" in err and "/dev/zero is not a regular file" in err
    err = refused(analyze.main, ["/dev/zero", "-o", str(tmp_path / "a")], capsys)
    assert "/dev/zero is not a regular file" in err
    err = refused(compare.main, [str(tmp_path), "-o", str(tmp_path / "c"), "--reference", "/dev/zero"], capsys)
    assert "--reference" in err and "/dev/zero is not a regular file" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "a").exists()


def test_check_refuses_output_equal_to_input_and_leaves_it_intact(rows_file, capsys) -> None:
    before = rows_file.read_bytes()
    err = refused(check.main, [str(rows_file), "-o", str(rows_file)], capsys)
    assert "--output" in err and "is the input file" in err
    link = rows_file.with_name("link.jsonl")
    link.symlink_to(rows_file)
    err = refused(check.main, [str(rows_file), "-o", str(link)], capsys)
    assert "is the input file" in err
    assert rows_file.read_bytes() == before


def test_check_refuses_directories_and_devices_before_judging(rows_file, tmp_path, capsys) -> None:
    err = refused(check.main, [str(tmp_path), "-o", str(tmp_path / "o.jsonl")], capsys)
    assert "is a directory" in err
    err = refused(check.main, [str(rows_file), "-o", str(tmp_path)], capsys)
    assert "--output" in err and "is a directory" in err
    err = refused(check.main, ["/dev/zero", "-o", str(tmp_path / "o.jsonl")], capsys)
    assert "/dev/zero is not a regular file" in err
    err = refused(check.main, [str(rows_file), "-o", str(tmp_path / "missing" / "o.jsonl")], capsys)
    assert "does not exist" in err


def test_check_command_exits_with_a_message_not_a_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tops_plugin.check", "/dev/zero", "-o", str(tmp_path / "o.jsonl"), "--timeout", "nan"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "error: argument" in proc.stderr


def test_an_overlong_line_is_a_clear_error_and_can_be_skipped(tmp_path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "' + b"x" * 5000 + b'"}\n{"c": 3}\n')
    with pytest.raises(ValueError, match=r"long.jsonl:2: line longer than 1,000 bytes"):
        list(read_jsonl_numbered(path, max_line_bytes=1000))
    errors: list = []
    rows = list(read_jsonl_numbered(path, max_line_bytes=1000, skip_bad=True, errors=errors))
    assert rows == [(1, {"a": 1}), (3, {"c": 3})] and len(errors) == 1


def test_malformed_line_message_says_what_the_partial_file_keeps(tmp_path, capsys) -> None:
    source = tmp_path / "in.jsonl"
    rows = [{"response": rf"\boxed{{{i}}}", "answer": str(i)} for i in range(1100)]  # more than one batch
    source.write_text("".join(json.dumps(row) + "\n" for row in rows) + "{not json\n")
    out = tmp_path / "out.jsonl"
    assert check.main([str(source), "-o", str(out), "--workers", "1", "--timeout", "5"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    partial = out.with_name("out.jsonl.partial")
    kept = len(partial.read_text().splitlines())
    assert not out.exists() and kept > 0
    assert f"the {kept} rows judged before it are kept in" in err and "resume file" in err


@pytest.mark.parametrize("pred", ["0" + "7" * 5000, "+" + "7" * 5000, "7" * 5000])
def test_integers_beyond_pythons_string_limit_are_judged(pred: str) -> None:
    assert judge(rf"\boxed{{{pred}}}", "7" * 5000).verdict == "correct"
    assert judge(rf"\boxed{{{pred}8}}", "7" * 5000).verdict == "wrong"


@pytest.mark.parametrize(
    "text", ["timeout: .nan\n", "timeout: .inf\n", "workers: 0\n", "floor: .nan\n", "timeout: yes\n", "floor: '1'\n"]
)
def test_server_refuses_a_reward_config_with_meaningless_numbers(text, tmp_path, capsys) -> None:
    config = tmp_path / "reward.yaml"
    config.write_text(text)
    err = refused(serve.main, ["--config", str(config)], capsys)
    assert "reward config" in err and "reward.yaml" in err
