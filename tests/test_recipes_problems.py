"""The problems stage: seed, effort and iteration pools from a hub dataset (a local dataset folder stands in
for the hub) and local JSONL, gold answers from the solutions' boxed answers, drops and overlaps counted,
seeded samples reproducible, everything recorded in the pools' meta file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from recipes.config import ConfigError, load_config
from recipes.execute import run_plan
from recipes.layout import RunLayout
from recipes.planners import plan_all
from recipes.problems import ProblemSourceError, text_key
from tops_plugin.jsonl import read_jsonl, sha256_file

pd = pytest.importorskip("pandas")
pytest.importorskip("datasets")

SOURCES = ["olympiads", "amc_aime", "cn_k12", "synthetic_math"]


def _hub_folder(root: Path) -> Path:
    """A NuminaMath-CoT-shaped dataset folder: problem, solution, source (parquet, as the hub serves it)."""
    rows = []
    for i in range(40):
        rows.append({"problem": f"Compute {i} + {i}.", "solution": f"Add: {i} + {i} = \\boxed{{{2 * i}}}.",
                     "source": SOURCES[i % 4], "tags": ["x", "y"]})
    # Rows with i % 4 == 3 are synthetic_math, filtered out; among the other 30:
    rows[4]["solution"] = "We prove the claim by induction."  # no boxed answer
    rows[5]["solution"] = "So it is \\boxed{???}."  # not mathematics
    rows[6]["problem"] = rows[1]["problem"]  # the same problem twice
    rows[9]["problem"] = "What is 1 + 1?"  # also in the local iteration file
    folder = root / "numina"
    (folder / "data").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    return folder


def _config(tmp_path: Path, hub: Path, **data) -> Path:
    local = tmp_path / "data"
    local.mkdir(exist_ok=True)
    (local / "math_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "train/1", "problem": "What is  1 + 1?", "answer": "2"},
        {"id": "train/2", "problem": "What is 2 + 5?", "answer": "7"},
        {"id": "train/3", "problem": "What is 3 + 5?", "answer": "8"},
    ]))
    source = {"name": str(hub), "split": "train", "filters": {"source": ["olympiads", "amc_aime", "cn_k12"]}}
    config = {
        "models": {"base": "b", "teacher": "t"},
        "run_dir": str(tmp_path / "run"),
        "data": {"dir": str(local), "seed": {"hub": source, "sample": 6, "seed": 3},
                 "effort": {"hub": source}, "iteration": [{"path": "math_train.jsonl", "sample": 2, "seed": 0}],
                 **data},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config: Path, run_dir: Path) -> dict:
    recipe = load_config(config, {"run_dir": str(run_dir)})
    (plan,) = plan_all(recipe, ["problems"])
    run_plan(plan, run_dir / "problems.log")
    return json.loads(RunLayout(run_dir).pools_meta.read_text())


def test_pools_from_a_hub_dataset_and_local_files_are_disjoint_and_counted(tmp_path):
    meta = _run(_config(tmp_path, _hub_folder(tmp_path)), tmp_path / "run")
    pools = {name: list(read_jsonl(RunLayout(tmp_path / "run").pool(name))) for name in meta["pools"]}
    assert [len(pools[p]) for p in ("seed", "effort", "iteration")] == [6, 30 - 2 - 1 - 6, 2]
    keys = [{text_key(r["problem"]) for r in rows} for rows in pools.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    for row in pools["seed"] + pools["effort"]:  # gold = the row's own boxed answer, 2 * its index
        row_index = int(row["id"].rsplit("/", 1)[1])
        assert row["id"] == f"{tmp_path / 'numina'}/train/{row_index}" and row["answer"] == str(2 * row_index)
        assert row["source"] != "synthetic_math"

    effort = meta["pools"]["effort"]["sources"][0]
    assert effort["filtered_out"] == 10 and effort["rows_available"] == 30
    dropped = effort["dropped"]  # the effort pool reads every row; the seed sample only until it has 6
    assert (dropped["no_answer_found"], dropped["answer_not_parsed"]) == (1, 1)
    assert dropped["in_seed_pool"] + dropped.get("duplicate", 0) == 6 + 1
    assert effort["revision"] is None and "data/train-00000-of-00001.parquet" in effort["files"]
    iteration = meta["pools"]["iteration"]
    assert iteration["sources"][0]["dropped"] == {"in_effort_pool": 1}  # "What is 1 + 1?" went to effort
    assert {r["id"] for r in pools["iteration"]} == {"train/2", "train/3"}
    assert meta["overlap_removed"] == {"seed": 0, "effort": dropped["in_seed_pool"], "iteration": 1}
    for name, info in meta["pools"].items():
        assert info["sha256"] == sha256_file(RunLayout(tmp_path / "run").pool(name))


def test_samples_are_seeded_and_reproducible(tmp_path):
    hub = _hub_folder(tmp_path)
    config = _config(tmp_path, hub)
    _run(config, tmp_path / "a")
    _run(config, tmp_path / "b")
    for name in ("seed", "effort", "iteration"):
        a, b = (RunLayout(tmp_path / d).pool(name) for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes()
    other = _config(tmp_path, hub, seed={"hub": {"name": str(hub)}, "sample": 6, "seed": 4})
    _run(other, tmp_path / "c")
    assert RunLayout(tmp_path / "c").pool("seed").read_bytes() != RunLayout(tmp_path / "a").pool("seed").read_bytes()


def test_generation_stages_read_the_pools(tmp_path):
    recipe = load_config(_config(tmp_path, _hub_folder(tmp_path)))
    seed_gen, effort_gen, iter_gen = plan_all(recipe, ["seed-gen", "effort-gen", "iter-gen"])
    problems = RunLayout(tmp_path / "run").problems_dir
    assert seed_gen.inputs == (problems / "seed.jsonl",)
    assert effort_gen.inputs[0] == problems / "effort.jsonl" and iter_gen.inputs[0] == problems / "iteration.jsonl"


def test_source_errors_name_the_key_or_the_dataset(tmp_path, monkeypatch):
    hub = _hub_folder(tmp_path)
    bad = _config(tmp_path, hub, seed={"hub": {"name": str(hub), "filters": {"origin": "x"}}})
    with pytest.raises(ProblemSourceError, match=r"data.seed.hub: .* no column\(s\) \['origin'\]"):
        _run(bad, tmp_path / "run")
    missing = _config(tmp_path, hub, seed={"hub": {"name": str(tmp_path / "numina-typo")}})
    with pytest.raises(ProblemSourceError, match="no such dataset folder .*numina-typo"):
        _run(missing, tmp_path / "run")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = _config(tmp_path, hub, seed={"hub": {"name": "AI-MO/NuminaMath-CoT"}})
    with pytest.raises(ProblemSourceError, match="cannot reach the hub for dataset 'AI-MO/NuminaMath-CoT'"):
        _run(offline, tmp_path / "run")


@pytest.mark.parametrize(("data", "message"), [
    ({"seed": {"hub": {"filters": {"source": "Olympiads"}}}},  # the column holds 'olympiads'
     r"data.seed.hub.filters: no row of dataset .* matches \{'source': 'Olympiads'\} \(values present: "
     r"source: 'amc_aime', 'cn_k12', 'olympiads', 'synthetic_math'\)"),
    ({"seed": {"hub": {"filters": {"tags": "x"}}}},
     r"data.seed.hub.filters.tags: the column holds list values \(e.g. \['x', 'y'\]\); a filter matches whole"),
    ({"seed": {"path": "math_train.jsonl"}},  # takes every iteration problem first
     r"data.iteration: no problems left for the iteration pool \(3 rows available, dropped: in_seed_pool 3\)"),
    ({"iteration": [{"path": "math_train.jsonl"}, {"path": "more.jsonl"}]},
     r"data.iteration\[1\]: problem id 'train/2' is also the id of another problem in data.iteration\[0\]"),
    ({"iteration": [{"path": "more.jsonl"}]},
     r"data.iteration\[0\]: problem id 'train/2' is also the id of another problem in data.iteration\[0\]"),
])
def test_pools_that_would_fail_later_stages_are_refused_before_any_is_written(tmp_path, data, message):
    hub = _hub_folder(tmp_path)
    if "hub" in data.get("seed", {}):
        data["seed"]["hub"]["name"] = str(hub)
    config = _config(tmp_path, hub, **data)
    (tmp_path / "data" / "more.jsonl").write_text("".join(json.dumps({"id": "train/2", "problem": text, "answer": "1"})
                                                          + "\n" for text in ("2 + 9?", "3 + 9?")))
    with pytest.raises(ProblemSourceError, match=message):
        _run(config, tmp_path / "run")
    assert not RunLayout(tmp_path / "run").problems_dir.exists()


@pytest.mark.parametrize(("seed", "key"), [
    ({"path": "a.jsonl", "hub": {"name": "x"}}, "data.seed.path"),
    ({"limit": 3}, "data.seed.path"),
    ({"path": "a.jsonl", "sample": 0}, "data.seed.sample"),
    ({"hub": {"name": "x", "filters": {"source": []}}}, "data.seed.hub.filters.source"),
])
def test_bad_problem_sets_name_the_key(tmp_path, seed, key):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"models": {"base": "b", "teacher": "t"}, "data": {"seed": seed}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
