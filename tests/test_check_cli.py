"""`python -m tops_plugin.check`: order, summary, malformed input, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tops_plugin.cli.check import main
from tops_plugin.jsonl import read_jsonl

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_writes_every_row_in_order_with_verdicts(tmp_path: Path) -> None:
    rows = [{"id": i, "response": rf"\boxed{{{i % 3}}}", "answer": "1", "extra": [i]} for i in range(30)]
    _write(tmp_path / "in.jsonl", rows)
    proc = subprocess.run(
        [sys.executable, "-m", "tops_plugin.check", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"),
         "--workers", "2"], capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [r["id"] for r in out] == list(range(30)) and out[0]["extra"] == [0]
    assert [r["verdict"] for r in out] == ["correct" if i % 3 == 1 else "wrong" for i in range(30)]
    assert "correct 10" in proc.stderr and "rows/s" in proc.stderr


def test_malformed_line_stops_with_file_and_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "in.jsonl", [{"response": "1", "answer": "1"}, "{not json", {"response": "2", "answer": "2"}])
    assert main([str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--workers", "1"]) == 2
    assert f"{tmp_path / 'in.jsonl'}:2" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_missing_key_and_skip_bad(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "in.jsonl", [{"response": "1", "answer": "1"}, {"response": "2"}, {"response": "3", "answer": "3"}])
    assert main([str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--workers", "1"]) == 2
    assert "in.jsonl:2: missing key 'answer' (the row has 'response'; name the right one with --gold-key KEY)" in (
        capsys.readouterr().err)
    assert main([str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--workers", "1", "--skip-bad"]) == 0
    assert [r["response"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["1", "3"]
    err = capsys.readouterr().err
    assert "skipped: " in err and "in.jsonl:2: missing key 'answer'" in err and "[yellow]" not in err  # no raw markup


def test_interrupted_run_resumes(tmp_path: Path) -> None:
    rows = [{"id": i, "response": rf"\boxed{{{i}}}", "answer": str(i)} for i in range(20)]
    _write(tmp_path / "in.jsonl", rows)
    partial = tmp_path / "out.jsonl.partial"
    # A previous run judged 5 rows and was killed while writing the 6th.
    done = [dict(r, pred=str(r["id"]), correct=True, verdict="correct", answer_from="final:boxed") for r in rows[:5]]
    partial.write_text("".join(json.dumps(r) + "\n" for r in done) + '{"id": 5, "resp')
    assert main([str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--workers", "1"]) == 0
    out = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [r["id"] for r in out] == list(range(20)) and all(r["correct"] for r in out)
    assert not partial.exists()


def test_bad_fields_are_bad_lines_and_a_number_gold_is_text(tmp_path: Path, capsys) -> None:
    cases = {
        '{"response": ["\\\\boxed{1}"], "answer": "1"}': "'response' must be a string",
        '{"response": 1e400, "answer": "1"}': "'response' must be a string",
        '{"response": "\\\\boxed{1}", "answer": null}': "'answer' must be a string or a number",
        '{"response": "\\\\boxed{1}", "answer": true}': "'answer' must be a string or a number",
        '{"response": "\\\\boxed{1}", "answer": "1", "truncated": "yes"}': "'truncated' must be true or false",
    }
    for line, reason in cases.items():
        (tmp_path / "in.jsonl").write_text('{"response": "\\\\boxed{2}", "answer": 2}\n' + line + "\n")
        assert main([str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--workers", "1"]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / 'in.jsonl'}:2" in err and reason in err, (line, err)
        assert not (tmp_path / "out.jsonl").exists()
    (tmp_path / "in.jsonl").write_text('{"response": "\\\\boxed{2}", "answer": 2}\n')
    assert main([str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--workers", "1"]) == 0
    [row] = read_jsonl(tmp_path / "out.jsonl")
    assert row["verdict"] == "correct" and row["answer"] == 2


def test_truncated_rows_are_judged_as_cut_and_marked(tmp_path: Path, capsys) -> None:
    rows = [
        {"id": 0, "response": "So far 12 + 30 = 42. Then checking with 204", "answer": "204", "finish_reason": "length"},
        {"id": 1, "response": "So far 12 + 30 = 42. Then checking with 204", "answer": "204", "finish_reason": "stop"},
        {"id": 2, "response": "<think>the area is \\boxed{7}, let me re", "answer": "7"},
        {"id": 3, "response": "<think>7</think> \\boxed{7}", "answer": "7"},
    ]
    _write(tmp_path / "in.jsonl", rows)
    assert main([str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--workers", "1"]) == 0
    out = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [r["truncated"] for r in out] == [True, False, True, False]
    assert [r["verdict"] for r in out] == ["no_answer", "correct", "correct", "correct"]
    assert "truncated 2 (1 of them correct)" in " ".join(capsys.readouterr().err.split())


def test_resume_rejudges_from_the_first_changed_row(tmp_path: Path, capsys) -> None:
    """Killed after some rows, rerun against another gold: the stale verdicts are not kept, and the
    result is byte-identical to an uninterrupted run on the new input."""
    rows = [{"id": i, "response": rf"\boxed{{{i}}}", "answer": str(i), "alt": str(i if i < 3 else -1)}
            for i in range(8)]
    _write(tmp_path / "in.jsonl", rows)
    out, partial = tmp_path / "out.jsonl", tmp_path / "out.jsonl.partial"
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1"]) == 0
    lines = out.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:6]))  # as if killed after row 6
    out.unlink()
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1", "--gold-key", "alt"]) == 0
    assert "judging them again" in " ".join(capsys.readouterr().err.split())
    resumed = out.read_bytes()
    assert [r["correct"] for r in read_jsonl(out)] == [True] * 3 + [False] * 5
    out.unlink()
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1", "--gold-key", "alt"]) == 0
    assert out.read_bytes() == resumed
    # An unchanged input resumes without judging again: kept rows are the partial's own bytes.
    partial.write_text("".join(out.read_text().splitlines(keepends=True)[:4]))
    first = out.read_bytes()
    out.unlink()
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1", "--gold-key", "alt"]) == 0
    assert "resuming: 4 rows" in capsys.readouterr().err and out.read_bytes() == first


def test_gold_under_another_key_is_named_and_all_skipped_is_no_success(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "in.jsonl", [{"id": i, "response": f"\\boxed{{{i}}}", "gold": str(i)} for i in range(3)])
    out = tmp_path / "out.jsonl"
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "missing key 'answer' (the row has 'id', 'response', 'gold'; name the right one with --gold-key KEY)" in err
    # Skipping every row is not a result: refused, and nothing is left behind.
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1", "--skip-bad"]) == 2
    assert "every row of" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "out.jsonl.partial").exists()
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1", "--gold-key", "gold"]) == 0
    assert [r["verdict"] for r in read_jsonl(out)] == ["correct"] * 3


def test_resume_keeps_no_row_whose_other_fields_changed_nor_an_unsettled_verdict(tmp_path: Path) -> None:
    """A kept row is the partial's copy of the input row: one whose id changed (same response and gold)
    would carry the old id into the output; a `timeout` depends on the deadline, not the row."""
    rows = [{"id": i, "response": rf"\boxed{{{i}}}", "answer": str(i)} for i in range(6)]
    _write(tmp_path / "in.jsonl", rows)
    out, partial = tmp_path / "out.jsonl", tmp_path / "out.jsonl.partial"
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1"]) == 0
    lines = out.read_text().splitlines(keepends=True)
    judged = [json.loads(line) for line in lines]
    assert judged[1]["verdict"] == "correct"
    judged[1]["verdict"], judged[1]["correct"] = "timeout", False  # as if the first run hit its deadline
    partial.write_text("".join(json.dumps(r) + "\n" for r in judged[:4]))
    rows[3]["id"] = "renamed"
    _write(tmp_path / "in.jsonl", rows)
    out.unlink()
    assert main([str(tmp_path / "in.jsonl"), "-o", str(out), "--workers", "1"]) == 0
    resumed = list(read_jsonl(out))
    assert [r["id"] for r in resumed] == [0, 1, 2, "renamed", 4, 5]
    assert [r["verdict"] for r in resumed] == ["correct"] * 6
