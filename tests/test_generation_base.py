"""The generation contract and resumable writing, driven by a stand-in backend (no model needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tops_plugin.generation import (
    BadRequest,
    GenerationRequest,
    SamplingParams,
    generate_to_file,
    load_backend,
    sample_seed,
)
from tops_plugin.generation.base import request_problem
from tops_plugin.prompts import EFFORT_PROMPTS, build_messages
from tops_plugin.generation.outputs import RawOutput, make_records
from tops_plugin.jsonl import read_jsonl

REPO = Path(__file__).resolve().parent.parent


class StandInBackend:
    """Answers every sample with a text naming it; can fail after `fail_after` records (a crash)."""

    name = "standin"

    def __init__(self, model="standin", fail_after: int | None = None, delay: float = 0.0):
        self.model, self.fail_after, self.delay = model, fail_after, delay
        self.errors: list = []
        self.seen: list[tuple] = []

    def generate(self, requests):
        produced = 0
        for request in requests:
            messages = build_messages(request_problem(request), request.effort)
            outs = []
            for sample in request.sample_indices:
                if self.fail_after is not None and produced >= self.fail_after:
                    raise RuntimeError("engine died")
                self.seen.append((request.id, request.effort, sample))
                text = f"{request.id}/{request.effort}/{sample}: \\boxed{{{len(request.problem['problem'])}}}"
                outs.append(RawOutput(request, sample, messages, text, "stop", 7))
                produced += 1
                time.sleep(self.delay)
            yield from make_records(outs, self.model)

    def close(self):
        pass


def problems(n: int) -> list[dict]:
    return [{"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i), "extra": i} for i in range(n)]


def requests_for(rows, efforts=("low", "high"), n_samples=2, seed=3):
    sampling = SamplingParams(max_tokens=32, seed=seed)
    return [GenerationRequest(row, effort, n_samples, sampling) for row in rows for effort in efforts]


def keys(path) -> list[tuple]:
    return [(r["id"], r["effort"], r["sample"]) for r in read_jsonl(path)]


def test_build_messages_effort_prompt_and_boxed_instruction():
    msgs = build_messages("  What is 2+2?\n", "medium")
    assert msgs[0] == {"role": "system", "content": EFFORT_PROMPTS["medium"]}
    assert msgs[1]["role"] == "user" and msgs[1]["content"].startswith("What is 2+2?\n\n")
    assert "\\boxed{}" in msgs[1]["content"]
    bare = build_messages("What is 2+2?", None)
    assert [m["role"] for m in bare] == ["user"]


def test_sampling_params_validate_and_normalise_stop():
    assert SamplingParams(stop="###").stop == ("###",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    for bad in ({"temperature": -1}, {"top_p": 0}, {"max_tokens": 0}):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def test_bad_requests_name_the_problem():
    sampling = SamplingParams()
    cases = [
        ({"problem": "x"}, None, "missing id"),
        ({"id": "a", "problem": "   "}, None, "empty problem"),
        ({"id": "b", "problem": "x"}, "extreme", "unknown effort"),
    ]
    for row, effort, reason in cases:
        with pytest.raises(BadRequest, match=reason):
            request_problem(GenerationRequest(row, effort, 1, sampling))


def test_sample_seed_depends_on_every_part_of_the_key():
    base = sample_seed(0, "p1", "low", 0)
    assert base == sample_seed(0, "p1", "low", 0)
    others = {sample_seed(1, "p1", "low", 0), sample_seed(0, "p2", "low", 0),
              sample_seed(0, "p1", "high", 0), sample_seed(0, "p1", "low", 1)}
    assert base not in others and len(others) == 4


def test_generate_to_file_writes_records_with_design_fields(tmp_path):
    out = tmp_path / "gens.jsonl"
    summary = generate_to_file(StandInBackend(), requests_for(problems(3)), out)
    rows = list(read_jsonl(out))
    assert summary.records == len(rows) == 3 * 2 * 2 and summary.complete
    for row in rows:
        for key in ("id", "problem", "answer", "effort", "sample", "seed", "model", "messages", "response",
                    "finish_reason", "tokens", "gen_tokens"):
            assert key in row, key
        assert row["extra"] == int(row["id"][1:])  # problem keys carried over
        assert row["seed"] == 3 and row["tokens"] > 5 and row["gen_tokens"] == 7
        assert row["messages"][0]["content"] == EFFORT_PROMPTS[row["effort"]]
    assert summary.mean_tokens == pytest.approx(sum(r["tokens"] for r in rows) / len(rows))


def test_crash_then_resume_no_duplicates_nothing_lost(tmp_path):
    out = tmp_path / "gens.jsonl"
    reqs = requests_for(problems(4))
    with pytest.raises(RuntimeError, match="engine died"):
        generate_to_file(StandInBackend(fail_after=5), reqs, out)
    first = keys(out)
    assert 0 < len(first) <= 5
    # a kill mid-write leaves half a line
    with open(out, "ab") as handle:
        handle.write(b'{"id": "p3", "effort": "lo')
    backend = StandInBackend()
    summary = generate_to_file(backend, reqs, out)
    assert summary.torn_bytes > 0
    assert summary.skipped == len(first)
    assert len(backend.seen) == summary.records == 16 - len(first)  # only what was missing was asked for
    final = keys(out)
    assert len(final) == len(set(final)) == 16
    assert set(final) == {(f"p{i}", e, s) for i in range(4) for e in ("low", "high") for s in range(2)}
    again = generate_to_file(StandInBackend(), reqs, out)
    assert again.records == 0 and again.skipped == 16 and keys(out) == final


def test_bad_requests_are_reported_and_skipped(tmp_path):
    rows = problems(2) + [{"problem": "no id here"}, {"id": "empty", "problem": ""}]
    summary = generate_to_file(StandInBackend(), requests_for(rows, efforts=("low",), n_samples=1), tmp_path / "g.jsonl")
    assert summary.records == 2
    reasons = dict(summary.bad)
    assert set(reasons) == {None, "empty"} and "missing id" in reasons[None]


def test_progress_reports_total_then_each_record(tmp_path):
    events = []
    generate_to_file(StandInBackend(), requests_for(problems(2)), tmp_path / "g.jsonl", progress=events.append)
    assert events[0].done == 0 and events[0].total == 8
    assert [e.done for e in events[1:]] == list(range(1, 9))
    assert events[-1].gen_tokens == 8 * 7


class BatchedBackend(StandInBackend):
    """Works in batches of 4 whose records come at the batch's end, telling as each sequence ends (as the
    Hugging Face backend does through its stopping criterion); one sequence per batch runs to the limit."""

    def __init__(self):
        super().__init__()
        self.on_sequence_done = None

    def generate(self, requests):
        records = list(super().generate(requests))
        for start in range(0, len(records), 4):
            batch = records[start : start + 4]
            if self.on_sequence_done is not None:
                self.on_sequence_done(2)  # two end early, together
                self.on_sequence_done(1)  # then one more; the fourth hits max_tokens (no report)
            yield from batch


def test_progress_advances_per_finished_sequence_not_per_batch(tmp_path):
    events = []
    backend = BatchedBackend()
    generate_to_file(backend, requests_for(problems(2)), tmp_path / "g.jsonl", progress=events.append)
    # Per batch of 4: 2 and 3 sequences done before any record, then the records bring it to 4.
    assert [e.done for e in events] == [0, 2, 3, 3, 3, 3, 4, 6, 7, 7, 7, 7, 8]
    assert [e.done for e in events] == sorted(e.done for e in events)  # never goes back
    assert backend.on_sequence_done is None  # the hook is the run's only
    assert len(keys(tmp_path / "g.jsonl")) == 8


def test_finished_rows_criterion_reports_each_row_once():
    torch = pytest.importorskip("torch")
    from tops_plugin.generation.hf import FinishedRows

    reports = []
    criterion = FinishedRows([1, 9], reports.append)
    steps = [[5, 1, 5], [1, 1, 5], [1, 1, 9]]  # last token of each row at three steps (1 and 9 end a row)
    for step in steps:
        stop = criterion(torch.tensor([[0, token] for token in step]), None)
        assert not bool(stop.any())  # it never stops generation itself
    assert reports == [1, 1, 1]


def test_load_backend_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend("tgi", "x")


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_generation_base import StandInBackend, problems, requests_for
    from tops_plugin.generation import generate_to_file
    generate_to_file(StandInBackend(delay={delay}), requests_for(problems(6)), sys.argv[1])
    """
)


def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "gens.jsonl"
    script = _KILL_SCRIPT.format(tests=str(REPO / "tests"), delay=0.05)
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 3):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = len(out.read_bytes().splitlines())
    assert 3 <= before < 24, "the child should have been killed mid-run"
    summary = generate_to_file(StandInBackend(), requests_for(problems(6)), out)
    final = keys(out)
    assert len(final) == len(set(final)) == 24
    assert summary.records + summary.skipped == 24 and summary.skipped >= 3


def test_a_problem_that_cannot_be_encoded_is_skipped_by_id_and_the_rest_generate(tmp_path):
    rows = problems(3)
    rows[1]["problem"] = "What is \ud800 + 1?"  # a lone surrogate, as json.loads gives for "\ud800"
    rows.append({"id": ["not", "an", "id"], "problem": "x"})
    summary = generate_to_file(StandInBackend(), requests_for(rows, efforts=("low",), n_samples=1), tmp_path / "g.jsonl")
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "g.jsonl")) == ["p0", "p2"]
    reasons = dict(summary.bad)
    assert "lone surrogate" in reasons["p1"] and "string or an integer" in reasons[None]


def test_generate_command_refuses_duplicate_ids_naming_both_lines(tmp_path, capsys):
    from tops_plugin.cli.generate import main

    source = tmp_path / "problems.jsonl"
    rows = problems(3) + [{"id": "p1", "problem": "another problem"}]
    source.write_text("".join(__import__("json").dumps(row) + "\n" for row in rows))
    out = tmp_path / "gens.jsonl"
    assert main([str(source), "-o", str(out), "--backend", "openai", "--model", "m"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "problems.jsonl:4: problem id 'p1' already used on line 2" in err and "nothing was generated" in err
    assert not out.exists()


class EchoBackend:
    def __init__(self, model: str, **options):
        self.model, self.options = model, options


def test_load_backend_takes_a_backend_of_its_own_as_module_colon_class():
    backend = load_backend(f"{__name__}:EchoBackend", "m", batch_size=2)
    assert isinstance(backend, EchoBackend) and (backend.model, backend.options) == ("m", {"batch_size": 2})
    with pytest.raises(ValueError, match="no module 'no_such_pkg.backends'"):
        load_backend("no_such_pkg.backends:Backend", "m")
    with pytest.raises(ValueError, match="has no 'NoSuchBackend'"):
        load_backend("types:NoSuchBackend", "m")
