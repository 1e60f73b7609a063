"""python -m evals.run end to end without a model: responses mode, resume, refusals, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

import tops_plugin.generation as generation
from evals import compare, run
from evals.comparison import on_common_problems
from evals.config import EvalConfig
from evals.harness import ConfigMismatch, run_eval
from evals.layout import CompareFiles, RunFiles
from tops_plugin.jsonl import JsonlError, read_jsonl
from tops_plugin.prompts import build_messages

PROBLEMS = [
    {"id": "p1", "problem": "1+1?", "answer": "2", "level": 1},
    {"id": "p2", "problem": "2+3?", "answer": "5", "level": 1},
    {"id": "p3", "problem": "3+4?", "answer": "7", "level": 2},
    {"id": "p4", "problem": "4+4?", "answer": "8", "level": 2},
]

# (id, sample, response, finish_reason): whitespace-word counts 4, 2, 2, 7, 1, 5.
RESPONSES = [
    ("p1", 0, "so x is \\boxed{2}", "stop"),
    ("p1", 1, "maybe \\boxed{3}", "stop"),
    ("p2", 0, "clearly \\boxed{5}", "stop"),
    ("p2", 1, "a b c d e f \\boxed{5}", "stop"),
    ("p3", 0, "\\boxed{1}", "stop"),
    ("p3", 1, "I am still thinking about", "length"),
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def toy(tmp_path):
    """A 4-problem benchmark, a word-count tokenizer and a responses file (p4 unanswered, p1 also 'low')."""
    bench = write_jsonl(tmp_path / "toy.jsonl", PROBLEMS)
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "words.json"))
    rows = [{"id": pid, "sample": s, "response": text, "finish_reason": fin} for pid, s, text, fin in RESPONSES]
    rows.append({"id": "p1", "effort": "low", "response": "\\boxed{2}"})  # no sample: rank 0
    responses = write_jsonl(tmp_path / "responses.jsonl", rows)
    return {"bench": str(bench), "tokenizer": str(tmp_path / "words.json"), "responses": str(responses), "dir": tmp_path}


def responses_config(toy, out, **overrides) -> EvalConfig:
    settings = dict(
        model="toy-model", backend="responses", benchmarks=(toy["bench"],), out=str(out),
        responses=toy["responses"], tokenizer=toy["tokenizer"], workers=1,
    )
    settings.update(overrides)
    return EvalConfig(**settings)


def test_responses_mode_hand_computed(toy):
    out = toy["dir"] / "run"
    result = run_eval(responses_config(toy, out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    cell = summary["results"]["toy"]["default"]
    assert cell["n_problems"] == 3 and cell["n_samples"] == 6 and cell["n_problems_missing"] == 1
    assert cell["accuracy_mean"] == pytest.approx(0.5)  # per sample index: 2/3 and 1/3
    assert cell["accuracy_std"] == pytest.approx(1 / 6)
    assert cell["pass_at_k"] == {"1": pytest.approx(0.5), "2": pytest.approx(2 / 3)}
    assert cell["tokens_mean"] == pytest.approx(3.5) and cell["tokens_median"] == pytest.approx(3.0)
    assert cell["tokens_correct_mean"] == pytest.approx(13 / 3) and cell["tokens_wrong_mean"] == pytest.approx(8 / 3)
    assert cell["verdicts"] == {"correct": 3, "wrong": 2, "no_answer": 1, "timeout": 0, "error": 0}
    assert cell["truncated"] == 1
    assert cell["by_level"]["1"]["accuracy"] == 0.75 and cell["by_level"]["2"]["tokens_mean"] == 3.0
    low = summary["results"]["toy"]["low"]
    assert low["n_samples"] == 1 and low["accuracy_mean"] == 1.0 and low["tokens_mean"] == 1.0

    assert summary["data"]["toy"]["path"] == toy["bench"] and len(summary["data"]["toy"]["sha256"]) == 64
    assert summary["config"]["backend"] == "responses" and summary["config"]["tokenizer"] == toy["tokenizer"]
    samples = list(read_jsonl(out / "samples.jsonl"))
    assert len(samples) == 7
    assert {row["benchmark"] for row in samples} == {"toy"}
    assert all({"pred", "correct", "verdict", "tokens", "level", "answer"} <= row.keys() for row in samples)
    report = (out / "report.md").read_text()
    # Table 3 row: accuracy ± std, its coverage (p4 has no response), mean tokens (3.5 -> 4); a single
    # sample has no ±, and the run says loudly that coverage is incomplete.
    assert "| toy-model | 50.00 ± 16.67 (3/4) | 4 |" in report
    assert "| toy-model (low) | 100.00 (1/4) | 1 |" in report
    assert "**Incomplete coverage.**" in report and "toy (default): 1 of 4 problems have no response" in report
    assert "| toy | `" in report and "| 3 / 4 / 4 |" in report  # Data: with responses / asked for / in source
    assert cell["problem_ids"] == ["p1", "p2", "p3"] and cell["by_level"]["2"]["n_problems_expected"] == 2
    assert "| toy-model | 75.00 | 4 | 0.00 (1/2) | 3 |" in report  # by level: L2 has p3 of p3, p4
    assert "toy by level" in report
    for name in ("accuracy_vs_tokens.png", "tokens_by_effort.png", "tokens_by_level_toy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every file of the run is one the layout names, and summary.json lists them all beside itself.
    files = RunFiles(out)
    named = {files.config, files.samples, files.summary, files.report, files.accuracy_vs_tokens_plot,
             files.tokens_by_effort_plot, files.tokens_by_level_plot("toy")}
    assert set(out.iterdir()) == named
    assert {out / name for name in summary["files"].values()} == named - {files.config}


def test_responses_resume_after_interruption(toy):
    out = toy["dir"] / "run"
    first = run_eval(responses_config(toy, out)).summary
    samples = out / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    samples.write_bytes(b"".join(lines[:3]) + lines[3][:20])  # killed while writing line 4
    again = run_eval(responses_config(toy, out))
    assert again.summary["run"]["judged_now"] == 4
    assert again.summary["results"] == first["results"]
    assert len(list(read_jsonl(samples))) == 7
    # Nothing left to do: a third run judges nothing and reports the same.
    third = run_eval(responses_config(toy, out))
    assert third.summary["run"]["judged_now"] == 0 and third.summary["results"] == first["results"]


def test_rewritten_responses_are_judged_again_not_kept(toy):
    """The responses file rewritten under the same name: the old verdicts of changed rows go, the rest stay,
    and the result equals a fresh run on the new file."""
    out = toy["dir"] / "run"
    first = run_eval(responses_config(toy, out)).summary
    assert first["results"]["toy"]["default"]["verdicts"]["correct"] == 3
    path = Path(toy["responses"])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        if row.get("sample") == 1 and row["id"] in ("p1", "p2"):
            row["response"] = "\\boxed{99}"
    write_jsonl(path, rows)
    again = run_eval(responses_config(toy, out)).summary
    assert again["run"]["judged_again"] == 2 and again["run"]["judged_now"] == 2
    assert again["run"]["responses_file"]["already_judged"] == 5
    fresh = run_eval(responses_config(toy, toy["dir"] / "fresh")).summary
    assert again["results"] == fresh["results"] != first["results"]
    assert len(list(read_jsonl(out / "samples.jsonl"))) == 7
    truncated = [r for r in read_jsonl(out / "samples.jsonl") if r["truncated"]]
    assert [(r["id"], r["verdict"]) for r in truncated] == [("p3", "no_answer")]


def test_effort_filter_and_limit_in_responses_mode(toy):
    out = toy["dir"] / "low"
    summary = run_eval(responses_config(toy, out, efforts=("low",), limit=1)).summary
    assert list(summary["results"]["toy"]) == ["low"]
    assert summary["results"]["toy"]["low"]["n_problems"] == 1
    assert summary["run"]["responses_file"]["beyond_limit"] == 4  # p2, p3 rows: known ids, cut by --limit


def test_unknown_id_names_file_and_line(toy):
    path = Path(toy["responses"])
    path.write_text(path.read_text() + json.dumps({"id": "p99", "sample": 0, "response": "x"}) + "\n")
    with pytest.raises(JsonlError) as info:
        run_eval(responses_config(toy, toy["dir"] / "run"))
    assert info.value.path == str(path) and info.value.line == 8 and "p99" in str(info.value)
    # The file is validated before any judging starts.
    samples = toy["dir"] / "run" / "samples.jsonl"
    assert not samples.exists() or samples.read_bytes() == b""


class CannedBackend:
    """Stand-in for a model backend: answers each request with `\\boxed{<sample>}`, counts its calls."""

    name = "canned"
    calls: list[tuple] = []
    stop_after: int | None = None

    def __init__(self, model: str, **options):
        self.model, self.options, self.errors = model, options, []

    def generate(self, requests):
        for request in requests:
            for sample in request.sample_indices:
                if CannedBackend.stop_after is not None and len(CannedBackend.calls) >= CannedBackend.stop_after:
                    raise KeyboardInterrupt
                CannedBackend.calls.append((request.id, request.effort, sample, request.sampling.seed))
                text = f"The answer is \\boxed{{{request.problem['answer'] if sample == 0 else 0}}}"
                yield {**request.problem, "effort": request.effort, "sample": sample, "seed": request.sampling.seed,
                       "model": self.model, "messages": build_messages(request.problem["problem"], request.effort),
                       "response": text, "finish_reason": "stop", "tokens": len(text.split())}

    def close(self):
        pass


@pytest.fixture
def canned(monkeypatch):
    CannedBackend.calls, CannedBackend.stop_after = [], None
    monkeypatch.setattr(generation, "load_backend", lambda name, model, **options: CannedBackend(model, **options))
    return CannedBackend


def model_config(toy, out, **overrides) -> EvalConfig:
    settings = dict(model="m", backend="hf", benchmarks=(toy["bench"],), out=str(out), n_samples=3, seed=10,
                    max_tokens=32, efforts=("low", None), workers=1, backend_options=(("batch_size", 2),))
    settings.update(overrides)
    return EvalConfig(**settings)


def test_generation_resume_after_interruption_and_seeds(toy, canned):
    out = toy["dir"] / "gen"
    canned.stop_after = 5
    with pytest.raises(KeyboardInterrupt):
        run_eval(model_config(toy, out))
    assert len(list(read_jsonl(out / "generations" / "toy.jsonl"))) == 5
    canned.stop_after = None
    result = run_eval(model_config(toy, out))
    assert len(canned.calls) == 4 * 2 * 3  # 5 before the interruption + only the 19 missing after it
    assert len(set(canned.calls)) == len(canned.calls)
    assert {(sample, seed) for _, _, sample, seed in canned.calls} == {(0, 10), (1, 11), (2, 12)}  # seed S+i
    summary = result.summary
    for effort in ("default", "low"):
        cell = summary["results"]["toy"][effort]
        assert cell["n_samples"] == 12 and cell["n_problems"] == 4
        assert cell["accuracy_per_sample"] == {"0": 1.0, "1": 0.0, "2": 0.0}  # sample 0 answers right
        assert cell["accuracy_mean"] == pytest.approx(1 / 3)
        assert cell["accuracy_std"] == pytest.approx((2 / 9) ** 0.5)
        assert cell["pass_at_k"]["3"] == 1.0
    assert summary["config"]["backend_options"] == {"batch_size": 2}
    # Fewer samples from the same directory: reported from what is on disk, nothing generated.
    canned.calls.clear()
    fewer = run_eval(model_config(toy, out, n_samples=1)).summary
    assert canned.calls == [] and fewer["results"]["toy"]["low"]["accuracy_mean"] == 1.0


def test_changed_setting_is_refused_naming_the_key(toy, canned, monkeypatch):
    out = toy["dir"] / "gen"
    # A run that failed before any sample (say, a mistyped model) does not lock the directory.
    monkeypatch.setattr(generation, "load_backend", lambda *a, **k: (_ for _ in ()).throw(OSError("no such model")))
    with pytest.raises(OSError):
        run_eval(model_config(toy, out, n_samples=1, model="typo"))
    monkeypatch.setattr(generation, "load_backend", lambda name, model, **options: CannedBackend(model, **options))
    run_eval(model_config(toy, out, n_samples=1))
    with pytest.raises(ConfigMismatch, match="temperature"):
        run_eval(model_config(toy, out, n_samples=1, temperature=0.6))
    with pytest.raises(ConfigMismatch, match="max_tokens"):
        run_eval(model_config(toy, out, n_samples=1, max_tokens=64))
    with pytest.raises(ConfigMismatch, match="model"):
        run_eval(model_config(toy, out, n_samples=1, model="other"))
    Path(toy["bench"]).write_text(Path(toy["bench"]).read_text().replace('"8"', '"9"'))
    with pytest.raises(ConfigMismatch, match="data file of benchmark 'toy'"):
        run_eval(model_config(toy, out, n_samples=1))


def test_cli_greedy_options_and_errors(toy, canned, capsys):
    out = toy["dir"] / "cli"
    argv = ["--model", "m", "--backend", "hf", "--benchmarks", toy["bench"], "--greedy", "--max-tokens", "16",
            "--workers", "1", "--backend-option", "batch_size=4", "--backend-option", "device=cpu", "-o", str(out)]
    assert run.main(argv) == 0
    assert "| m |" in capsys.readouterr().out
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["temperature"] == 0.0 and config["n_samples"] == 1 and config["greedy"] is True
    assert config["backend_options"] == {"batch_size": 4, "device": "cpu"}
    assert {seed for *_, seed in canned.calls} == {0}
    assert run.main(argv[:-2] + ["--n-samples", "4", "-o", str(out)]) == 2
    assert "--greedy" in capsys.readouterr().err
    assert run.main(["--backend", "hf", "--benchmarks", toy["bench"], "-o", str(out)]) == 2
    assert "--model is required" in capsys.readouterr().err


def test_compare_tables(toy, tmp_path, capsys):
    run_eval(responses_config(toy, tmp_path / "a"))
    run_eval(responses_config(toy, tmp_path / "b", efforts=(None,), model="other"))
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "cmp")]) == 0
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    captured = capsys.readouterr()
    assert captured.out == markdown
    # a's "low" cell covers only p1: the runs are not comparable as they stand, and it is said.
    assert "warning: toy: runs cover different problems (a: 3, a (low): 1, b: 3; 1 in common)" in captured.err
    assert markdown.startswith("> **Runs cover different problems**")
    lines = markdown.splitlines()
    assert "| Run | Model | Effort | toy Acc | toy #Tokens | toy Problems | toy Samples/problem |" in lines
    assert "| a | toy-model | default | 50.00 ± 16.67 | 4 | 3/4 | 2 |" in lines
    assert "| a | toy-model | low | 100.00 | 1 | 1/4 | 1 |" in lines  # one sample: no ±
    assert "| b | other | default | 50.00 ± 16.67 | 4 | 3/4 | 2 |" in lines
    assert "| a (low) | ours | 100.00 (1/4) | 1 |" in lines  # the paper layout names coverage too
    csv_lines = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert csv_lines[0] == ("run,model,effort,toy_acc,toy_std,toy_tokens,toy_samples,toy_problems,"
                            "toy_problems_expected,toy_samples_per_problem")
    assert csv_lines[1].startswith("a,toy-model,default,50.0,16.66")
    assert csv_lines[2] == "a,toy-model,low,100.0,,1.0,1,1,4,1"
    assert (tmp_path / "cmp" / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    files = CompareFiles(tmp_path / "cmp")
    assert set(files.root.iterdir()) == {files.markdown, files.csv, files.accuracy_vs_tokens_plot}

    # On the problems all cells cover (p1 only): recomputed from the samples.
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--common-problems", "-o", str(tmp_path / "common")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "> Figures recomputed on the problems every run covers: toy 1."
    assert "| a | toy-model | default | 50.00 ± 50.00 | 3 | 1 | 2 |" in lines  # p1: right (4 words), wrong (2)
    assert "| a | toy-model | low | 100.00 | 1 | 1 | 1 |" in lines
    assert compare.main([str(tmp_path / "missing"), "-o", str(tmp_path / "cmp")]) == 2
    # A summary that does not list its problems cannot be restricted: said, not guessed.
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    del summary["results"]["toy"]["default"]["problem_ids"]
    (tmp_path / "b" / "summary.json").write_text(json.dumps(summary))
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--common-problems", "-o", str(tmp_path / "common")]) == 2
    assert "the summary of b does not list its problems" in capsys.readouterr().err


def test_common_problems_recount_what_the_run_counted(toy, tmp_path):
    # p1 was cut mid-thought (an unclosed <think>, no finish_reason): only its judged row says so.
    rows = [{"id": "p1", "response": "<think>so it is \\boxed{2} or"}, {"id": "p2", "response": "\\boxed{5}"}]
    responses = write_jsonl(tmp_path / "cut.jsonl", rows)
    run_eval(responses_config(toy, tmp_path / "a", responses=str(responses)))
    runs = compare.load_runs([str(tmp_path / "a")])
    [(_, restricted)] = on_common_problems(runs, [tmp_path / "a"])
    cell, again = runs[0][1]["results"]["toy"]["default"], restricted["results"]["toy"]["default"]
    assert cell["truncated"] == 1 and cell["truncated_correct"] == 1
    for key in ("truncated", "truncated_correct", "verdicts", "accuracy_mean", "tokens_mean"):
        assert again[key] == cell[key], key


def test_api_usage_gives_the_o1_estimate_in_summary_and_report(toy):
    rows = [
        {"id": "p1", "sample": 0, "response": "so \\boxed{2}", "usage": {"completion_tokens": 1100, "completion_tokens_details": {"reasoning_tokens": 1000}}},
        {"id": "p2", "sample": 0, "response": "a b \\boxed{5}", "usage": {"completion_tokens": 5300, "reasoning_tokens": 5000}},
    ]
    responses = write_jsonl(toy["dir"] / "api.jsonl", rows)
    out = toy["dir"] / "api"
    summary = run_eval(responses_config(toy, out, responses=str(responses), model="o1-mini")).summary
    estimate = summary["results"]["toy"]["default"]["o1_estimate"]
    # Visible summaries are 2 and 3 words: 2*1000/100 = 20 and 3*5000/300 = 50 hidden tokens.
    assert estimate["hidden_tokens_mean"] == pytest.approx(35.0)
    assert estimate["visible_tokens_mean"] == pytest.approx(2.5)
    assert "Hidden reasoning tokens" in (out / "report.md").read_text()


def test_cli_warns_loudly_about_missing_problems(toy, capsys):
    argv = ["--backend", "responses", "--responses", toy["responses"], "--benchmarks", toy["bench"],
            "--tokenizer", toy["tokenizer"], "--workers", "1", "-o", str(toy["dir"] / "cli"), "--quiet"]
    assert run.main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: toy (default): 1 of 4 problems have no response; its figures cover only the 3 that do" in err
    assert "warning: toy (low): 3 of 4 problems have no response" in err


@pytest.fixture
def data_dir(tmp_path):
    """A data directory with local copies of two registry benchmarks (their file names, toy problems)."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "math500.jsonl", [dict(p, id=f"m{i}") for i, p in enumerate(PROBLEMS)])
    write_jsonl(folder / "aime2024.jsonl", [{"id": "2024-I-1", "problem": "?", "answer": "204"}])
    return folder


def test_a_missing_data_dir_is_named_at_once_and_nothing_is_left(toy, data_dir, tmp_path, capsys, monkeypatch):
    import evals.benchmarks as benchmarks

    def no_hub(bench):  # a named --data-dir never falls back to the network
        raise AssertionError(f"tried the hub for {bench.name}")

    monkeypatch.setattr(benchmarks, "_load_hub", no_hub)
    out = tmp_path / "run"
    argv = ["--backend", "responses", "--responses", toy["responses"], "--benchmarks", "math500",
            "--tokenizer", toy["tokenizer"], "--workers", "1", "-o", str(out), "--quiet"]
    assert run.main(argv + ["--data-dir", str(tmp_path / "dat")]) == 2
    assert f"data directory '{tmp_path / 'dat'}' does not exist (--data-dir)" in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "empty").mkdir()
    assert run.main(argv + ["--data-dir", str(tmp_path / "empty")]) == 2
    assert "math500.jsonl not found" in capsys.readouterr().err and not out.exists()
    # A failure after the directory was made (an unknown id) leaves nothing behind either.
    assert run.main(argv + ["--data-dir", str(data_dir)]) == 2
    assert "unknown problem id 'p1'" in capsys.readouterr().err and not out.exists()


def test_responses_of_benchmarks_not_asked_for_are_skipped_and_counted(toy, data_dir, tmp_path, capsys):
    rows = [
        {"id": "m0", "response": "\\boxed{2}"},
        {"id": "2024-I-1", "response": "\\boxed{204}"},  # AIME's, known from its local copy
        {"id": "x9", "benchmark": "gsm8k", "response": "\\boxed{1}"},  # named as another benchmark
        {"id": "m1", "benchmark": "math500", "response": "\\boxed{4}"},
    ]
    responses = write_jsonl(tmp_path / "mixed.jsonl", rows)
    argv = ["--backend", "responses", "--responses", str(responses), "--benchmarks", "math500", "--data-dir",
            str(data_dir), "--tokenizer", toy["tokenizer"], "--workers", "1", "-o", str(tmp_path / "run"), "--quiet"]
    assert run.main(argv) == 0
    assert "note: skipped 2 rows of" in capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["run"]["responses_file"]["other_benchmark"] == 2
    assert summary["results"]["math500"]["default"]["n_samples"] == 2
    # An id in none of the benchmarks stays an error naming the file and line.
    write_jsonl(responses, rows + [{"id": "nowhere", "response": "1"}])
    assert run.main(argv[:-2] + [str(tmp_path / "run2"), "--quiet"]) == 2
    assert f"{responses}:5: unknown problem id 'nowhere'" in capsys.readouterr().err


def test_a_timeout_verdict_is_judged_again_on_resume(toy):
    """A timeout says the machine was busy, not what the answer is: a rerun judges it again (as check does)."""
    out = toy["dir"] / "run"
    first = run_eval(responses_config(toy, out)).summary
    samples = out / "samples.jsonl"
    rows = list(read_jsonl(samples))
    rows[0].update(verdict="timeout", correct=False, pred=None)
    write_jsonl(samples, rows)
    again = run_eval(responses_config(toy, out)).summary
    assert again["run"]["judged_again"] == 1 and again["run"]["judged_now"] == 1
    assert again["results"] == first["results"]
    assert [r["verdict"] for r in read_jsonl(samples)].count("timeout") == 0
