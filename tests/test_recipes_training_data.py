"""The recipe's judge -> select stages on generations mixing truncated, finished, over-length and malformed
records, loaded with OpenRLHF's own dataset classes: no truncated response is a target, no row is cut at
the training stage's max_len, and every exclusion is counted in the meta files."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from recipes.config import from_dict
from recipes.execute import run_plan
from recipes.layout import RunLayout
from recipes.planners import plan_stage
from tops_plugin.cli.select import main as select_command
from tops_plugin.jsonl import read_jsonl
from tops_plugin.selection.openrlhf import TrainLength, meta_path, prompt_messages
from tops_plugin.tokens import default_tokenizer_dir

openrlhf_datasets = pytest.importorskip("openrlhf.datasets")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CUT_EARLY = "<think>12 + 30 = 42, so \\boxed{42}. Let me check with 204"  # boxed early, then cut
FINISHED = "<think>12 + 30 = 42.</think> The sum is \\boxed{42}."
LONG = "<think>" + "Adding twelve and thirty again. " * 60 + "</think> So \\boxed{42}."


def record(pid, sample, response, *, answer="42", effort=None, **extra):
    user = {"role": "user", "content": f"What is 12 + 30? (problem {pid})"}
    return {"id": pid, "problem": user["content"], "answer": answer, "effort": effort, "sample": sample,
            "messages": [user], "response": response, **extra}


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory) -> tuple[Path, object]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(default_tokenizer_dir()))
    tokenizer.chat_template = CHATML
    folder = tmp_path_factory.mktemp("chat-tokenizer")
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


@pytest.fixture(autouse=True)
def _offline_datasets(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    random_fingerprint = lambda *args, **kwargs: datasets.fingerprint.generate_random_fingerprint()  # noqa: E731
    monkeypatch.setattr(datasets.fingerprint, "update_fingerprint", random_fingerprint)
    monkeypatch.setattr(datasets.arrow_dataset, "update_fingerprint", random_fingerprint)
    datasets.disable_progress_bars()


def load(path: Path, **data):
    from openrlhf.datasets.utils import blending_datasets

    strategy = SimpleNamespace(args=SimpleNamespace(data=SimpleNamespace(apply_chat_template=True, **data),
                                                    use_ms=False), print=lambda *a, **k: None, is_rank_0=lambda: True)
    return blending_datasets(str(path), None, strategy), strategy


def write_lines(path: Path, lines: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def test_judge_then_select_gives_openrlhf_only_whole_finished_targets(tmp_path, chat_tokenizer):
    folder, tokenizer = chat_tokenizer
    measure = TrainLength(10**6, str(folder))
    prompt = prompt_messages(record("x", 0, ""))
    max_len = measure.measure(prompt, FINISHED + " " * 4)[1] + 8  # FINISHED fits, LONG does not
    assert measure.measure(prompt, LONG)[1] > max_len
    recipe = from_dict({
        "run_dir": str(tmp_path / "run"),
        "models": {"base": "unused", "teacher": "unused", "tag": "unused", "tops": "unused",
                   "chat_tokenizer": str(folder)},
        "verifier": {"workers": 1, "timeout": 5.0},
        "selection": {"random": True, "add_seed_low": False},
        "training": {"common": {"max_len": max_len}},
    })
    layout = RunLayout(Path(recipe.run_dir))
    effort_gens = [
        record("a", 0, CUT_EARLY, finish_reason="length"),  # correct but cut: never a target
        record("a", 1, FINISHED, finish_reason="stop"),
        record("b", 0, CUT_EARLY),  # unclosed thought, no finish_reason: cut
        record("c", 0, LONG, finish_reason="stop"),  # correct, over max_len
        record("c", 1, FINISHED, finish_reason="stop"),
        record("d", 0, LONG, finish_reason="stop"),  # only over-length correct
        "{not json",
        record("e", 0, FINISHED, tokens=-1),
        record("e", 1, FINISHED, effort="ultra"),
    ]
    write_lines(layout.effort.generations, effort_gens)
    iter_gens = [
        record("p", 0, CUT_EARLY, finish_reason="length"),
        record("p", 1, FINISHED, finish_reason="stop"),
        record("p", 2, LONG.replace("42", "41"), finish_reason="stop"),  # wrong, over max_len
        record("p", 3, "<think>12 + 30 = 41, I am sure. Or is it", finish_reason="length"),  # cut, no answer
        record("p", 4, "So \\boxed{43}.", finish_reason="stop"),  # wrong, fits
    ]
    write_lines(layout.iteration.generations, iter_gens)

    for stage in ("judge", "select", "iter-judge", "iter-select"):
        run_plan(plan_stage(stage, recipe), layout.log(stage))

    judged = list(read_jsonl(layout.effort.judged))
    assert [(r["id"], r["sample"], r["verdict"], r["truncated"]) for r in judged] == [
        ("a", 0, "correct", True), ("a", 1, "correct", False), ("b", 0, "correct", True),
        ("c", 0, "correct", False), ("c", 1, "correct", False), ("d", 0, "correct", False)]
    judge_meta = json.loads(meta_path(layout.effort.judged).read_text())
    assert judge_meta["malformed"] == 3
    assert [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in judge_meta["malformed_rows"]] == ["7", "8", "9"]

    for mode in ("shortest", "random"):
        path = layout.selected(mode)
        rows = list(read_jsonl(path))
        assert [(r["id"], r["sample"]) for r in rows] == [("a", 1), ("c", 1)]
        stats = json.loads(meta_path(path).read_text())["stats"]
        assert stats["malformed_input_rows"] == 3
        assert stats["excluded"] == {"over_max_len_correct": 2, "truncated_correct": 2}
        assert stats["dropped"] == {"no_correct": 0, "only_truncated_correct": 1, "only_over_max_len_correct": 1}
        assert stats["max_len"] == max_len and stats["length_tokenizer"] == str(folder)
        data, strategy = load(path, input_key="prompt", output_key="response")
        dataset = openrlhf_datasets.SFTDataset(data, tokenizer, max_len, strategy, num_processors=1)
        assert len(dataset) == len(rows)
        for index, row in enumerate(rows):
            input_ids, _, loss_mask = dataset[index]
            trained = tokenizer.decode(input_ids[0, 1:][loss_mask[0, :-1].bool()])
            assert trained == row["response"][0]["content"] + "<|im_end|>"  # whole, not cut
            assert "Let me check with 204" not in trained

    # The select command, given the same judged file and settings, writes the same dataset and meta file;
    # only the malformed records the judge stage skipped are the stage's own to count.
    cli_out = tmp_path / "shortest.jsonl"
    assert select_command(["--mode", "shortest", "-o", str(cli_out), "--max-len", str(max_len),
                           "--chat-tokenizer", str(folder), str(layout.effort.judged)]) == 0
    assert cli_out.read_bytes() == layout.selected("shortest").read_bytes()
    stage_meta, cli_meta = (json.loads(meta_path(p).read_text()) for p in (layout.selected("shortest"), cli_out))
    assert stage_meta.keys() == cli_meta.keys() and stage_meta["stats"].keys() == cli_meta["stats"].keys()
    assert (stage_meta["stats"]["malformed_input_rows"], cli_meta["stats"]["malformed_input_rows"]) == (3, 0)
    for meta in (stage_meta, cli_meta):
        del meta["created"], meta["stats"]["malformed_input_rows"]
    assert stage_meta == cli_meta

    sft = list(read_jsonl(layout.iteration_data("sft")))
    assert [(r["id"], r["sample"]) for r in sft] == [("p", 1)]
    pairs = list(read_jsonl(layout.iteration_data("dpo")))
    assert [(p["chosen_sample"], p["rejected_sample"]) for p in pairs] == [(1, 4)]
    dpo_stats = json.loads(meta_path(layout.iteration_data("dpo")).read_text())["stats"]
    assert dpo_stats["excluded"] == {"over_max_len_rejected": 1, "truncated_correct": 1}
    data, strategy = load(layout.iteration_data("dpo"), prompt_key="prompt", chosen_key="chosen",
                          rejected_key="rejected")
    dataset = openrlhf_datasets.RewardDataset(data, tokenizer, max_len, strategy, is_dpo=True, num_processors=1)
    chosen_ids, _, reject_ids, _, prompt_len = dataset[0]
    assert tokenizer.decode(chosen_ids[0, prompt_len:]) == FINISHED + "<|im_end|>"
    assert tokenizer.decode(reject_ids[0, prompt_len:]) == "So \\boxed{43}.<|im_end|>"


def test_llama_recipe_names_its_own_tokenizers_and_fails_clearly_offline(monkeypatch):
    from recipes.config import load_config
    from tops_plugin.tokens import load_tokenizer

    configs = Path(__file__).resolve().parent.parent / "recipes" / "configs"
    llama = load_config(configs / "llama3.1-8b-tops.yaml")
    assert llama.models.curation_tokenizer == llama.models.chat_tokenizer == "meta-llama/Llama-3.1-8B-Instruct"
    qwen = load_config(configs / "qwen2.5-32b-tops.yaml")
    assert qwen.models.curation_tokenizer is None and qwen.models.chat_tokenizer == "Qwen/Qwen2.5-32B-Instruct"
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(FileNotFoundError, match="meta-llama/Llama-3.1-8B-Instruct"):
        load_tokenizer("meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(FileNotFoundError, match="(?s)could not be loaded.*local folder"):
        TrainLength(16384, "meta-llama/Llama-3.1-8B-Instruct")
