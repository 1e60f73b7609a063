"""`python -m tops_plugin.check`: order, summary, malformed input, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tops_plugin.check import main
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
    assert "missing key(s) 'answer'" in capsys.readouterr().err
    assert main([str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--workers", "1", "--skip-bad"]) == 0
    assert [r["response"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["1", "3"]
    assert "skipped" in capsys.readouterr().err


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
