"""The CPU demo end to end: the data stages run for real with the embedded SmolLM2-135M model, the
training stages are printed, and a rerun skips everything that is up to date."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from recipes import tops
from tops_plugin.efforts import EFFORTS
from tops_plugin.jsonl import read_jsonl

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"
RAN = ["problems", "seed-gen", "seed-curate", "effort-gen", "judge", "select"]


def _demo_config(tmp_path: Path, data_dir: Path) -> Path:
    """The shipped demo, cut further (1 + 2 problems, 12 tokens) to keep the test short on 2 busy cores."""
    config = yaml.safe_load((CONFIGS / "demo-cpu.yaml").read_text())
    config["run_dir"] = str(tmp_path / "run")
    config["data"]["dir"] = str(data_dir)
    config["data"]["seed"]["limit"] = 1
    config["data"]["effort"].update(skip=1, limit=2)
    config["generation"]["max_tokens"] = 12
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP threads spin waiting for each other and CPU
    generation gets about 10x slower (measured: 131 s vs 13 s for this demo)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _main(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tops.main(argv)
    return code, out.getvalue()


@pytest.mark.slow
def test_demo_runs_data_stages_and_prints_training(tmp_path, shared_data_dir, one_torch_thread):
    config = _demo_config(tmp_path, shared_data_dir)
    run = tmp_path / "run"
    code, text = _main(["--config", str(config)])
    assert code == 0, text

    manifest = json.loads((run / "manifest.json").read_text())["stages"]
    assert sorted(manifest) == sorted(RAN)
    assert all(manifest[name]["status"] == "done" for name in RAN)

    seed = list(read_jsonl(run / "seed" / "generations.jsonl"))
    gsm8k = [row["id"] for row in read_jsonl(shared_data_dir / "gsm8k_test.jsonl")][:3]
    assert sorted((r["id"], r["effort"]) for r in seed) == sorted((gsm8k[0], e) for e in EFFORTS)
    assert all(r["model"] == "smollm2-135m" and r["tokens"] >= 0 for r in seed)
    effort = list(read_jsonl(run / "effort" / "judged.jsonl"))
    assert sorted({r["id"] for r in effort}) == sorted(gsm8k[1:3])  # skip/limit kept the sets apart
    assert len(effort) == 6 and all(r["verdict"] in ("correct", "wrong", "no_answer", "timeout", "error")
                                    and isinstance(r["correct"], bool) for r in effort)
    judged_seed = list(read_jsonl(run / "seed" / "judged.jsonl"))
    assert [r["response"] for r in judged_seed] == [r["response"] for r in seed]  # order and text kept
    for mode in ("shortest", "random"):
        rows = list(read_jsonl(run / "select" / f"{mode}.jsonl"))
        meta = json.loads((run / "select" / f"{mode}.meta.json").read_text())
        assert meta["rows"] == len(rows) and meta["mode"] == mode
        correct = {r["id"] for r in effort if r["correct"]}
        assert {r["id"] for r in rows if r.get("origin") != "seed"} == correct
    assert not list(run.rglob("*.partial"))  # generation's partial files were renamed into place

    for printed in ("tag-sft [print only]", "tops-sft [print only]", "iter-dpo [print only]", "eval [print only]"):
        assert printed in text
    assert "--module openrlhf.cli.train_sft --model.model_name_or_path HuggingFaceTB/SmolLM2-135M-Instruct" in text
    assert f"--data.dataset {run}/select/shortest.jsonl" in text
    assert not (run / "models").exists()  # nothing was trained

    code, text = _main(["--config", str(config)])  # a rerun: every stage is up to date
    assert code == 0
    for name in RAN:
        assert f"= {name}: up to date (skipped)" in text
    before = (run / "select" / "shortest.jsonl").stat().st_mtime_ns
    code, text = _main(["--config", str(config), "--stage", "select", "--force", "select"])
    assert code == 0 and "> select (forced)" in text
    assert (run / "select" / "shortest.jsonl").stat().st_mtime_ns != before
