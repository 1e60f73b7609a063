"""Qwen2.5 token counting and the o1 hidden-token estimate."""

from __future__ import annotations

import itertools

import orjson
import pytest
from tokenizers import Tokenizer

from tops_plugin.jsonl import read_jsonl, write_jsonl
from tops_plugin.tokens import (
    QWEN25_LAST_ADDED_ID,
    count_tokens,
    default_tokenizer_dir,
    load_tokenizer,
    o1_hidden_tokens,
    with_token_counts,
)


@pytest.fixture(scope="module")
def bare_bpe() -> Tokenizer:
    """The same files with *no* added tokens at all: what plain text encodes to."""
    spec = orjson.loads((default_tokenizer_dir() / "tokenizer.json").read_bytes())
    spec["added_tokens"] = []
    return Tokenizer.from_str(orjson.dumps(spec).decode())


def test_default_tokenizer_has_only_qwen25_added_tokens():
    tok = load_tokenizer()
    added = tok.get_added_tokens_decoder()
    assert max(added) == QWEN25_LAST_ADDED_ID
    assert {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "<|file_sep|>"} <= {
        t.content for t in added.values()
    }
    assert tok.token_to_id("<think>") is None and tok.token_to_id("<tool_response>") is None


@pytest.mark.parametrize("text", ["<think>", "</think>", "<tool_response>", "a <think>\nstep</think>\n\n42"])
def test_qwen3_only_tokens_count_as_plain_text(text, bare_bpe):
    ids = load_tokenizer().encode(text, add_special_tokens=False).ids
    assert ids == bare_bpe.encode(text, add_special_tokens=False).ids
    assert max(ids) < 151643  # ordinary BPE pieces only
    assert count_tokens([text]) == [len(ids)]
    assert count_tokens(["<think>"])[0] > 1


def test_qwen25_special_tokens_stay_single_tokens():
    assert count_tokens(["<|im_end|>", "<|endoftext|>", "x<|im_start|>y"]) == [1, 1, 3]


def test_count_tokens_batch_matches_single_and_adds_no_special_tokens():
    tok = load_tokenizer()
    texts = ["", "Hello world", "The answer is $\\boxed{\\frac{1}{2}}$.", "数学 " * 50]
    assert count_tokens(texts) == [len(tok.encode(t, add_special_tokens=False).ids) for t in texts]
    assert count_tokens([]) == []
    assert count_tokens(["Hello world"]) == [2]


def test_count_tokens_matches_transformers_on_labelled_responses(labeled_path):
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(str(default_tokenizer_dir()))
    texts = [row["response"] for row in itertools.islice(read_jsonl(labeled_path), 0, 2461, 25)]
    texts = [t for t in texts if "<think>" not in t and "</think>" not in t]  # Qwen3 files differ there on purpose
    expected = [len(reference.encode(t, add_special_tokens=False)) for t in texts]
    assert count_tokens(texts) == expected


def test_load_tokenizer_from_folder_and_file():
    folder = default_tokenizer_dir()
    by_folder = load_tokenizer(str(folder))
    by_file = load_tokenizer(str(folder / "tokenizer.json"))
    assert by_folder.encode("12345 apples").ids == by_file.encode("12345 apples").ids
    assert count_tokens(["<think>"], str(folder)) == [1]  # the raw Qwen3 files: <think> is one token
    with pytest.raises(FileNotFoundError):
        load_tokenizer(str(folder / "missing" / "tokenizer.json"))


def test_with_token_counts_streams_in_order(tmp_path):
    rows = [{"id": i, "response": "word " * i} for i in range(50)]
    rows[3]["tokens"] = 999
    counted = list(with_token_counts(iter(rows), batch_size=7, recount=False))
    assert [row["id"] for row in counted] == list(range(50))
    assert counted[3]["tokens"] == 999
    assert [row["tokens"] for row in counted[4:]] == count_tokens(["word " * i for i in range(4, 50)])
    recounted = list(with_token_counts(iter(rows), batch_size=7))
    assert recounted[3]["tokens"] == count_tokens(["word " * 3])[0]

    path = tmp_path / "gens.jsonl"
    write_jsonl(path, ({"id": i, "response": " x" * i} for i in range(10)))
    assert [r["tokens"] for r in with_token_counts(read_jsonl(path), batch_size=4)] == list(range(10))


def test_with_token_counts_rejects_non_string_response():
    with pytest.raises(ValueError, match="'response' must be a string"):
        list(with_token_counts([{"id": "p1", "response": None}]))


def test_o1_hidden_tokens_paper_definition():
    # n_s * n_r / (n_c - n_r)
    assert o1_hidden_tokens(200, 1000, 800) == pytest.approx(800.0)
    assert o1_hidden_tokens(150, 1200, 900) == pytest.approx(450.0)
    assert o1_hidden_tokens(120, 100, 0) == 0.0
    with pytest.raises(ValueError):
        o1_hidden_tokens(10, 500, 500)
    with pytest.raises(ValueError):
        o1_hidden_tokens(-1, 500, 100)
