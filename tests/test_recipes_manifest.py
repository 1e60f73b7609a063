"""Stage bookkeeping: skip when unchanged, rerun on change or --force, resume after failures, and a
failing command's message (stage, exact command, end of its log)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from recipes import tops
from recipes.execute import StageFailed, execute
from recipes.layout import RunLayout
from recipes.manifest import Manifest, digest
from recipes.plan import StagePlan
from tops_plugin.jsonl import read_jsonl, write_jsonl


@pytest.fixture(autouse=True)
def as_on_a_gpu_machine(monkeypatch):
    """These tests launch stand-ins for the `deepspeed` launcher: run planned commands as on a GPU machine,
    where the launcher runs them unchanged (the CPU layer is tested in test_openrlhf_cpu.py)."""
    from recipes import openrlhf_cpu

    monkeypatch.setattr(openrlhf_cpu, "cuda_available", lambda: True)


def _copy_plan(name: str, src: Path, dst: Path, calls: list, settings=None) -> StagePlan:
    """A stage that uppercases every row's text from src into dst (atomic), counting its runs."""

    def work(ctx) -> None:
        calls.append(name)
        write_jsonl(dst, ({"text": row["text"].upper()} for row in read_jsonl(src)))

    return StagePlan(name=name, summary="copy", inputs=(src,), outputs=(dst,), work=work, settings=settings)


def _pipeline(tmp_path: Path, calls: list, settings=None) -> tuple[list[StagePlan], Manifest]:
    src, mid, out = tmp_path / "in.jsonl", tmp_path / "run" / "mid.jsonl", tmp_path / "run" / "out.jsonl"
    if not src.exists():
        write_jsonl(src, [{"text": "a"}, {"text": "b"}])
    plans = [_copy_plan("first", src, mid, calls, settings), _copy_plan("second", mid, out, calls)]
    return plans, Manifest(tmp_path / "run")


def _run(plans, manifest, force=()):
    return [execute(p, manifest, force=p.name in force).ran for p in plans]


def test_skip_when_unchanged_and_record_everything(tmp_path):
    calls: list = []
    plans, manifest = _pipeline(tmp_path, calls)
    assert _run(plans, manifest) == [True, True]
    assert _run(*_pipeline(tmp_path, calls)) == [False, False]  # a new process reads the same manifest
    assert calls == ["first", "second"]
    record = json.loads(RunLayout(tmp_path / "run").manifest.read_text())["stages"]["second"]
    assert record["status"] == "done" and record["started"] and record["ended"]
    mid = str(tmp_path / "run" / "mid.jsonl")
    assert record["inputs"] == {mid: digest(mid)}
    assert record["outputs"] == {str(tmp_path / "run" / "out.jsonl"): digest(tmp_path / "run" / "out.jsonl")}
    assert len(record["config_hash"]) == 64 and record["commands"] == ["(in-process) copy"]


def test_changed_input_settings_or_output_rerun_what_depends_on_them(tmp_path):
    calls: list = []
    _run(*_pipeline(tmp_path, calls))
    write_jsonl(tmp_path / "in.jsonl", [{"text": "c"}])  # new input: both stages rerun
    calls.clear()
    assert _run(*_pipeline(tmp_path, calls)) == [True, True]
    assert [r["text"] for r in read_jsonl(tmp_path / "run" / "out.jsonl")] == ["C"]
    calls.clear()
    assert _run(*_pipeline(tmp_path, calls, settings={"lr": 2})) == [True, False]  # same output: second skips
    (tmp_path / "run" / "out.jsonl").write_text('{"text": "edited"}\n')  # someone edited an output
    calls.clear()
    assert _run(*_pipeline(tmp_path, calls, settings={"lr": 2})) == [False, True]


def test_force_reruns_one_stage(tmp_path):
    calls: list = []
    _run(*_pipeline(tmp_path, calls))
    calls.clear()
    plans, manifest = _pipeline(tmp_path, calls)
    assert _run(plans, manifest, force={"second"}) == [False, True]
    assert calls == ["second"]


def test_failed_stage_leaves_no_output_and_resumes(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "run" / "out.jsonl"
    write_jsonl(src, [{"n": i} for i in range(5)])
    attempts = []

    def work(ctx) -> None:
        attempts.append(1)

        def rows():
            for row in read_jsonl(src):
                if len(attempts) == 1 and row["n"] == 3:
                    raise RuntimeError("worker died at row 3")
                yield row

        write_jsonl(out, rows())

    plan = StagePlan(name="flaky", summary="flaky", inputs=(src,), outputs=(out,), work=work)
    manifest = Manifest(tmp_path / "run")
    with pytest.raises(StageFailed) as info:
        execute(plan, manifest)
    assert "stage 'flaky' failed: RuntimeError: worker died at row 3" in str(info.value)
    assert not out.exists() and not list(out.parent.glob("*.tmp"))  # the half-written file was never renamed
    assert Manifest(tmp_path / "run").stages["flaky"]["status"] == "failed"
    assert execute(plan, Manifest(tmp_path / "run")).ran  # a failed stage is not taken as done
    assert len(list(read_jsonl(out))) == 5
    assert not execute(plan, Manifest(tmp_path / "run")).ran


def test_missing_input_names_it(tmp_path):
    plan = StagePlan(name="late", summary="x", inputs=(tmp_path / "nope.jsonl",), outputs=(tmp_path / "o",))
    with pytest.raises(StageFailed, match=r"stage 'late' failed: input not found: .*nope.jsonl"):
        execute(plan, Manifest(tmp_path / "run"))


def test_failing_command_reports_stage_command_and_log_tail(tmp_path):
    script = ("import sys\nfor i in range(30): print(f'step {i}')\n"
              "print('CUDA out of memory', file=sys.stderr)\nsys.exit(3)")
    command = (sys.executable, "-c", script)
    plan = StagePlan(name="tops-sft", summary="train", outputs=(tmp_path / "model",), commands=(command,))
    with pytest.raises(StageFailed) as info:
        execute(plan, Manifest(tmp_path / "run"))
    message = str(info.value)
    assert message.startswith("stage 'tops-sft' failed: exit status 3")
    assert f"command: {sys.executable} -c" in message
    assert "CUDA out of memory" in message and "step 29" in message and "step 5\n" not in message  # the tail only
    assert str(RunLayout(tmp_path / "run").log("tops-sft")) in message


def test_missing_executable_is_a_clear_failure(tmp_path):
    command = ("/nonexistent/bin/deepspeed", "--module", "openrlhf.cli.train_sft", "--data.max_len", "16384")
    plan = StagePlan(name="tag-sft", summary="train", outputs=(tmp_path / "model",), commands=(command,))
    with pytest.raises(StageFailed) as info:
        execute(plan, Manifest(tmp_path / "run"))
    message = str(info.value)
    assert "stage 'tag-sft' failed: cannot start '/nonexistent/bin/deepspeed'" in message
    assert "command: /nonexistent/bin/deepspeed --module openrlhf.cli.train_sft --data.max_len 16384" in message
    assert Manifest(tmp_path / "run").stages["tag-sft"]["status"] == "failed"


FAKE_DEEPSPEED = """\
import os, sys
args = sys.argv[1:]
out = args[args.index("--ckpt.output_dir") + 1]
ckpt = args[args.index("--ckpt.path") + 1]
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "config.json"), "w").write("{}")
print("saved", out, "ckpt marker present:", os.path.exists(os.path.join(ckpt, "tops-run-key")))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


def _training_config(tmp_path: Path) -> Path:
    launcher = tmp_path / "fake-deepspeed"
    launcher.write_text(f"#!{sys.executable}\n{FAKE_DEEPSPEED}")
    launcher.chmod(0o755)
    config = {
        "models": {"base": "some/base-model", "teacher": "t"},
        "run_dir": str(tmp_path / "run"),
        "cluster": {"deepspeed": str(launcher), "gpus_per_node": 2},
        "training": {"tag_sft": {"lr": 1.0e-5, "batch_size": 1, "epochs": 1}},  # one row is one batch
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    write_jsonl(RunLayout(tmp_path / "run").seed_sft, [{"prompt": [], "response": [], "id": 1, "tokens": 1}])
    return path


def test_training_stage_refuses_an_empty_dataset_before_launching(tmp_path, capsys):
    config, layout = _training_config(tmp_path), RunLayout(tmp_path / "run")
    write_jsonl(layout.seed_sft, [])
    assert tops.main(["--config", str(config), "--stage", "tag-sft"]) == 1
    err = capsys.readouterr().err
    assert "sft.jsonl has no rows: nothing to train" in err and "saved" not in err  # the launcher never ran
    assert not layout.model("tag").exists()
    write_jsonl(layout.seed_sft, [{"prompt": [], "response": [], "id": 1, "tokens": 1}] * 3)
    recipe = yaml.safe_load(config.read_text())
    recipe["training"]["tag_sft"]["batch_size"] = 4
    config.write_text(yaml.safe_dump(recipe))
    assert tops.main(["--config", str(config), "--stage", "tag-sft"]) == 1
    assert "has 3 rows, fewer than one batch (4" in capsys.readouterr().err


def test_training_stage_renames_its_model_only_on_success(tmp_path, capsys, monkeypatch):
    config, layout = _training_config(tmp_path), RunLayout(tmp_path / "run")
    model, partial = layout.model("tag"), layout.model_partial("tag")
    monkeypatch.setenv("FAKE_EXIT", "1")
    assert tops.main(["--config", str(config), "--stage", "tag-sft"]) == 1
    err = capsys.readouterr().err
    assert "stage 'tag-sft' failed: exit status 1" in err and "--module openrlhf.cli.train_sft" in err
    assert "ckpt marker present: True" in err  # the last lines of the log
    assert not model.exists() and partial.exists()
    monkeypatch.setenv("FAKE_EXIT", "0")
    assert tops.main(["--config", str(config), "--stage", "tag-sft"]) == 0
    assert (model / "config.json").exists() and not partial.exists()
    capsys.readouterr()
    assert tops.main(["--config", str(config), "--stage", "tag-sft"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert tops.main(["--config", str(config), "--stage", "tag-sft", "--force", "tag-sft"]) == 0
    assert "(forced)" in capsys.readouterr().out


class _StandInBackend:
    """Yields one record per requested sample; dies after `fail_after` records (a killed node)."""

    name = "stand-in"

    def __init__(self, model: str, fail_after: int | None = None, seen: list | None = None):
        self.model, self.fail_after, self.seen, self.errors = model, fail_after, seen, []

    def generate(self, requests):
        count = 0
        for request in requests:
            for sample in request.sample_indices:
                if self.fail_after is not None and count == self.fail_after:
                    raise RuntimeError("node lost")
                count += 1
                if self.seen is not None:
                    self.seen.append((request.problem["id"], request.effort, sample))
                yield {"id": request.problem["id"], "problem": request.problem["problem"],
                       "answer": request.problem["answer"], "effort": request.effort, "sample": sample,
                       "seed": 0, "model": self.model, "messages": [], "response": f"\\boxed{{{sample}}}",
                       "finish_reason": "stop", "tokens": 3}

    def close(self):
        pass


def test_generation_stage_resumes_its_partial_file_and_renames_at_the_end(tmp_path, monkeypatch):
    import tops_plugin.generation as generation
    from recipes.config import load_config
    from recipes.planners import plan_stage

    problems = [{"id": f"p{i}", "problem": f"{i}+0?", "answer": str(i)} for i in range(3)]
    write_jsonl(tmp_path / "problems.jsonl", problems)
    write_jsonl(tmp_path / "effort.jsonl", [{"id": "e0", "problem": "9+9?", "answer": "18"}])
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump({
        "models": {"base": "b", "teacher": "teacher-model"}, "run_dir": str(tmp_path / "run"),
        "data": {"dir": str(tmp_path), "seed": "problems.jsonl", "effort": "effort.jsonl"},
        "generation": {"backend": "hf", "max_tokens": 8},
    }))
    assert execute(plan_stage("problems", load_config(config)), Manifest(tmp_path / "run")).ran  # the seed pool
    seen: list = []
    behaviour = {"fail_after": 4}
    monkeypatch.setattr(generation, "load_backend",
                        lambda name, model, **options: _StandInBackend(model, behaviour["fail_after"], seen))
    plan = plan_stage("seed-gen", load_config(config))
    out = RunLayout(tmp_path / "run").seed.generations
    with pytest.raises(StageFailed, match="RuntimeError: node lost"):
        execute(plan, Manifest(tmp_path / "run"))
    assert not out.exists()
    (partial,) = out.parent.glob("generations.jsonl.*.partial")
    assert len(list(read_jsonl(partial))) == 4
    behaviour["fail_after"] = None
    seen.clear()
    assert execute(plan, Manifest(tmp_path / "run")).ran
    assert len(seen) == 5  # only the 9 - 4 missing samples were generated again
    rows = list(read_jsonl(out))
    assert sorted((r["id"], r["effort"]) for r in rows) == sorted(
        (f"p{i}", e) for i in range(3) for e in ("low", "medium", "high"))
    assert not partial.exists()


def test_two_runs_never_share_a_run_directory(tmp_path, capsys):
    from recipes.manifest import run_lock

    config = _training_config(tmp_path)
    with run_lock(tmp_path / "run"):
        assert tops.main(["--config", str(config), "--stage", "tag-sft"]) == 2
        assert "another run is using this run directory" in capsys.readouterr().err
        assert tops.main(["--config", str(config), "--stage", "tag-sft", "--dry-run"]) == 0  # reads only
    assert not RunLayout(tmp_path / "run").model("tag").exists()


def test_a_missing_data_folder_is_named_as_such(tmp_path, capsys):
    demo = Path(tops.__file__).parent / "configs" / "demo-cpu.yaml"
    argv = ["--config", str(demo), "-o", str(tmp_path / "run"), "--stage", "problems",
            "--set", f"data.dir={tmp_path / 'dat'}"]
    assert tops.main(argv) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"stage 'problems': the data folder {tmp_path / 'dat'} does not exist" in err
    assert "run the stage that writes it" not in err
    (tmp_path / "dat").mkdir()
    assert tops.main(argv) == 1
    assert "is not in the data folder" in " ".join(capsys.readouterr().err.split())
