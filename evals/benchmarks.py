"""Benchmark registry: each benchmark is a record (where its data lives, how to read its gold answer).

Adding a benchmark is adding one `Benchmark` entry. A named data directory (`--data-dir DIR`, holding the
registry's file names) is the only source of a registry benchmark: a directory that does not exist, or
lacks the file, is an error naming it, never a silent fall-back to the network. The Hugging Face hub is
tried only when no directory was named (and a warning says so), so offline machines and CI that pass
`--data-dir` never touch the network. Any JSONL file of problem rows (`{"id", "problem", "answer", ...}`) is
accepted in place of a registry name. Whatever is loaded is identified by its sha256 in the run summary,
because several variants of these benchmarks circulate.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tops_plugin.jsonl import JsonlError, dumps, read_jsonl, sha256_file

__all__ = [
    "BENCHMARKS",
    "local_ids",
    "Benchmark",
    "BenchmarkData",
    "BenchmarkError",
    "gsm8k_gold",
    "load_benchmark",
    "load_benchmarks",
    "plain_gold",
]


LOG = logging.getLogger(__name__)


class BenchmarkError(ValueError):
    """A benchmark that cannot be found or read; the message says what to pass instead."""


def gsm8k_gold(text: str) -> str:
    """GSM8K's gold: the number after the last `####` of a solution (or the text itself), commas removed.

    Thousands separators are dropped because `2,125` would otherwise read as a pair of numbers.
    """
    tail = text.rsplit("####", 1)[-1].strip()
    if re.fullmatch(r"[-+]?[\d,]*\.?\d+", tail):
        tail = tail.replace(",", "")
    return tail


def plain_gold(text: str) -> str:
    """The answer field as given (MATH500, AIME)."""
    return str(text).strip()


def _aime_id(row: dict, index: int) -> str:
    """`2024-I-1` from an AoPS url (the local file's convention); the hub's own id otherwise."""
    match = re.search(r"(\d{4})_AIME_(I+)_Problems/Problem_(\d+)", str(row.get("url", "")))
    if match:
        return f"{match.group(1)}-{match.group(2)}-{int(match.group(3))}"
    return str(row.get("id", index))


@dataclass(frozen=True)
class Benchmark:
    """Where a benchmark's problems live and how its rows map onto the problem record."""

    name: str
    local_file: str  # file name under --data-dir
    hub_path: str
    hub_split: str
    hub_config: str | None = None
    hub_problem_key: str = "problem"
    hub_answer_key: str = "answer"
    hub_id: Callable[[dict, int], str] = lambda row, index: str(row.get("id", index))
    gold: Callable[[str], str] = plain_gold
    expected_rows: int | None = None
    note: str = ""

    def from_hub(self, row: dict, index: int) -> dict:
        """One hub row in the problem shape (`id`, `problem`, `answer`, original fields kept)."""
        problem = dict(row)
        raw_answer = str(row[self.hub_answer_key])
        if self.hub_answer_key != "answer" or "####" in raw_answer:
            problem.setdefault("solution", raw_answer)
        problem.update(
            id=self.hub_id(row, index),
            problem=row[self.hub_problem_key],
            answer=self.gold(raw_answer),
        )
        return problem


BENCHMARKS: dict[str, Benchmark] = {
    bench.name: bench
    for bench in (
        Benchmark(
            name="gsm8k",
            local_file="gsm8k_test.jsonl",
            hub_path="openai/gsm8k",
            hub_config="main",
            hub_split="test",
            hub_problem_key="question",
            hub_id=lambda row, index: f"gsm8k-test-{index}",
            gold=gsm8k_gold,
            expected_rows=1319,
            note="GSM8K test; gold = the number after '####'",
        ),
        Benchmark(
            name="math500",
            local_file="math500.jsonl",
            hub_path="HuggingFaceH4/MATH-500",
            hub_split="test",
            hub_id=lambda row, index: str(row.get("unique_id", index)),
            expected_rows=500,
            note="PRM800K's MATH500 split (ids = MATH unique_id); rows carry `level` 1-5",
        ),
        Benchmark(
            name="aime2024",
            local_file="aime2024.jsonl",
            hub_path="HuggingFaceH4/aime_2024",
            hub_split="train",
            hub_id=_aime_id,
            expected_rows=30,
            note="AIME 2024 I+II (default hub variant HuggingFaceH4/aime_2024; ids 2024-I-1 ... 2024-II-15)",
        ),
    )
}


@dataclass(frozen=True)
class BenchmarkData:
    """Problems of one benchmark as used in a run, with the identity of their source."""

    name: str
    path: str  # local file, or hub:PATH[/CONFIG]:SPLIT
    sha256: str  # of the local file, or of the normalised rows when read from the hub
    problems: tuple[dict, ...]  # after --limit
    total: int  # problems in the source
    all_ids: frozenset[str] = field(default=frozenset())  # every id of the source, also beyond --limit
    levels: bool = field(default=False)  # whether rows carry a `level`


def _read_local(path: Path, gold: Callable[[str], str]) -> list[dict]:
    rows = []
    seen: dict[str, int] = {}
    for number, row in enumerate(read_jsonl(path, require=("id", "problem", "answer")), start=1):
        key = str(row["id"])
        if key in seen:
            raise JsonlError(path, number, f"duplicate problem id {key!r} (first seen in row {seen[key]})")
        seen[key] = number
        row["id"] = key
        row["answer"] = gold(str(row["answer"]))
        rows.append(row)
    return rows


def _load_hub(bench: Benchmark) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets ships with the install
        raise BenchmarkError(f"{bench.name}: no local copy and the `datasets` package is missing") from exc
    try:
        data = datasets.load_dataset(bench.hub_path, bench.hub_config, split=bench.hub_split)
    except Exception as exc:  # network, auth or missing dataset: all mean "use a local copy"
        raise BenchmarkError(
            f"{bench.name}: no --data-dir given and the hub dataset {bench.hub_path} could not be loaded "
            f"({type(exc).__name__}: {str(exc)[:200]}). Offline? Put {bench.local_file} in a directory "
            f"and pass --data-dir DIR."
        ) from exc
    return [bench.from_hub(dict(row), index) for index, row in enumerate(data)]


def _local_file(bench: Benchmark, data_dir: str | os.PathLike) -> Path:
    """The benchmark's file in a named data directory; a missing directory or file is a `BenchmarkError`."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise BenchmarkError(f"data directory {str(data_dir)!r} does not exist (--data-dir)")
    local = folder / bench.local_file
    if not local.is_file():
        raise BenchmarkError(
            f"{bench.name}: {local} not found; the data directory {str(data_dir)!r} must hold {bench.local_file} "
            f"(leave out --data-dir to load {bench.hub_path} from the Hugging Face hub)"
        )
    return local


def local_ids(data_dir: str | os.PathLike | None, names: Sequence[str]) -> dict[str, str]:
    """Problem id -> benchmark name for the registry benchmarks `names` that have a local copy in
    `data_dir` (never the hub): lets a responses file holding several benchmarks be filtered by name."""
    ids: dict[str, str] = {}
    for name in names:
        bench = BENCHMARKS.get(name)
        local = None if bench is None or data_dir is None else Path(data_dir) / bench.local_file
        if local is not None and local.is_file():
            for row in read_jsonl(local, require=("id",)):
                ids.setdefault(str(row["id"]), name)
    return ids


def load_benchmark(name: str, data_dir: str | os.PathLike | None = None, limit: int | None = None) -> BenchmarkData:
    """Problems of a registry benchmark (from `data_dir` when named, else the hub) or of a JSONL file path.

    `limit` keeps the first N problems (in file order); the sha256 is always that of the whole source.
    """
    bench = BENCHMARKS.get(name)
    if bench is None:
        path = Path(name)
        if not path.is_file():
            raise BenchmarkError(
                f"unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)} or a path to a JSONL file "
                f"of problem rows"
            )
        rows, source, digest = _read_local(path, plain_gold), str(path), sha256_file(path)
        label = path.stem
    else:
        label = bench.name
        if data_dir is not None:
            local = _local_file(bench, data_dir)
            rows, source, digest = _read_local(local, bench.gold), str(local), sha256_file(local)
        else:
            LOG.warning("%s: no --data-dir given, so loading %s from the Hugging Face hub", bench.name, bench.hub_path)
            rows = _load_hub(bench)
            config = f"/{bench.hub_config}" if bench.hub_config else ""
            source = f"hub:{bench.hub_path}{config}:{bench.hub_split}"
            digest = hashlib.sha256(b"".join(dumps(row) for row in rows)).hexdigest()
    if not rows:
        raise BenchmarkError(f"{label}: {source} holds no problems")
    kept = rows if limit is None else rows[: max(limit, 0)]
    return BenchmarkData(
        name=label,
        path=source,
        sha256=digest,
        problems=tuple(kept),
        total=len(rows),
        all_ids=frozenset(str(row["id"]) for row in rows),
        levels=any(row.get("level") is not None for row in kept),
    )


def load_benchmarks(
    names: Sequence[str], data_dir: str | os.PathLike | None = None, limit: int | None = None
) -> list[BenchmarkData]:
    """Several benchmarks; two with the same label are refused (their samples would mix)."""
    loaded = [load_benchmark(name, data_dir, limit) for name in names]
    labels = [data.name for data in loaded]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise BenchmarkError(f"benchmark name(s) given twice: {', '.join(duplicates)}")
    return loaded
