"""Published figures to show beside a reproduction: data, never code.

A reference is plain data (a YAML/JSON file, or the `eval.reference` mapping of a recipe config):

    source: arXiv 2502.18080, Table 3 (Qwen2.5-32B)
    rows:
      - {model: TOPS, run: tops, gsm8k: {accuracy: 95.82, tokens: 412}, math500: {accuracy: 91.48, tokens: 1883}}

`accuracy` is in percent and `tokens` the mean response length (Qwen2.5 tokens), as papers print them;
`run` (optional) names the evaluation run the row corresponds to, so the comparison can put the
published row right under ours; `effort` (optional) the effort prompt of that run. Every benchmark key
other than `model`, `run` and `effort` is a benchmark name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Reference", "ReferenceError", "ReferenceRow", "load_reference", "parse_reference"]

_ROW_KEYS = ("model", "run", "effort")


class ReferenceError(ValueError):
    """A malformed reference; `key` is the dotted path of the bad value (`rows[2].gsm8k.accuracy`)."""

    def __init__(self, key: str, reason: str, source: str = ""):
        self.key, self.reason, self.source = key, reason, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key or '<top level>'}: {reason}")


@dataclass(frozen=True)
class ReferenceRow:
    model: str  # the name the publication gives the model
    results: dict[str, dict[str, float | None]]  # benchmark -> {"accuracy": %, "tokens": mean or None}
    run: str | None = None  # the label of our run it corresponds to
    effort: str = "default"


@dataclass(frozen=True)
class Reference:
    source: str  # where the figures are published, shown in the table's caption
    rows: tuple[ReferenceRow, ...]


def _number(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReferenceError(key, f"expected a number, got {value!r}")
    if not low <= value <= high:
        raise ReferenceError(key, f"must be in [{low:g}, {high:g}], got {value}")
    return float(value)


def _cell(value: Any, key: str) -> dict[str, float | None]:
    if not isinstance(value, Mapping):
        raise ReferenceError(key, "expected a mapping {accuracy: PERCENT, tokens: MEAN}")
    unknown = sorted(set(value) - {"accuracy", "tokens"})
    if unknown:
        raise ReferenceError(f"{key}.{unknown[0]}", "unknown key (expected accuracy, tokens)")
    if "accuracy" not in value:
        raise ReferenceError(f"{key}.accuracy", "is required (percent)")
    tokens = value.get("tokens")
    return {
        "accuracy": _number(value["accuracy"], f"{key}.accuracy", 0.0, 100.0),
        "tokens": None if tokens is None else _number(tokens, f"{key}.tokens", 0.0, math.inf),
    }


def parse_reference(data: Any) -> Reference:
    """Check and read reference data (see the module docstring); raises `ReferenceError` naming the key."""
    if not isinstance(data, Mapping):
        raise ReferenceError("", "expected a mapping with `source` and `rows`")
    unknown = sorted(set(data) - {"source", "rows"})
    if unknown:
        raise ReferenceError(unknown[0], "unknown key (expected source, rows)")
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ReferenceError("source", "is required: say where the figures are published")
    raw_rows = data.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise ReferenceError("rows", "expected a non-empty list of rows")
    rows = []
    for i, raw in enumerate(raw_rows):
        key = f"rows[{i}]"
        if not isinstance(raw, Mapping):
            raise ReferenceError(key, "expected a mapping")
        for name in _ROW_KEYS:
            if name in raw and raw[name] is not None and not isinstance(raw[name], str):
                raise ReferenceError(f"{key}.{name}", f"expected a string, got {raw[name]!r}")
        if not raw.get("model"):
            raise ReferenceError(f"{key}.model", "is required")
        results = {str(b): _cell(v, f"{key}.{b}") for b, v in raw.items() if b not in _ROW_KEYS}
        if not results:
            raise ReferenceError(key, "gives no benchmark figures")
        rows.append(ReferenceRow(raw["model"], results, raw.get("run"), raw.get("effort") or "default"))
    return Reference(source.strip(), tuple(rows))


def load_reference(path: str | Path) -> Reference:
    """A reference from a YAML or JSON file; errors name the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReferenceError("", f"cannot read ({exc.strerror or exc})", str(path)) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ReferenceError("", f"not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})", str(path)) from None
    try:
        return parse_reference(data)
    except ReferenceError as exc:
        raise ReferenceError(exc.key, exc.reason, str(path)) from None
