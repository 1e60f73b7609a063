"""Where a run's responses come from: a model generating them (`ModelSamples`) or a file of responses
made elsewhere (`FileSamples`), behind one interface (`SampleSource`), chosen once by `sample_source`.

The harness asks its source for the rows to judge, what defines them and which judged rows belong to the
run; it never asks which source it has.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from evals.benchmarks import BENCHMARKS, BenchmarkData, local_ids
from evals.config import RESPONSES_BACKEND, EvalConfig
from evals.layout import RunFiles
from tops_plugin import generation
from tops_plugin.jsonl import JsonlError, read_jsonl, read_jsonl_numbered, sha256_file
from tops_plugin.judging.rows import is_truncated, judge_key
from tops_plugin.prompts import EFFORTS, build_messages, effort_label

__all__ = [
    "FileSamples",
    "ModelSamples",
    "Progress",
    "SampleKey",
    "SampleSource",
    "build_requests",
    "sample_key",
    "sample_source",
    "up_to_date",
]

Progress = Callable[[str, int, int | None], None]  # (stage, done, total or None)

SampleKey = tuple[str, str, str | None, int]  # (benchmark, id, effort, sample)


def sample_key(row: dict) -> SampleKey:
    """What names one sample of a run: (benchmark, id, effort, sample index)."""
    return str(row["benchmark"]), str(row["id"]), row.get("effort"), int(row.get("sample", 0))


def up_to_date(row: dict, done: dict[SampleKey, str | None]) -> bool:
    """Whether samples.jsonl already holds this row's verdict, made from the same response, gold, truncation
    and checker. A row whose sample was judged from other inputs is judged again (see `evals.harness.drop_samples`)."""
    key = sample_key(row)
    return key in done and done[key] == judge_key(row["response"], str(row["answer"]), is_truncated(row))


def _prompt_hashes(efforts: Iterable[str | None]) -> dict[str, str]:
    """sha256 of the messages each effort sends (system prompt + instruction), per effort label."""
    return {
        effort_label(effort): hashlib.sha256(
            json.dumps(build_messages("{problem}", effort), sort_keys=True).encode()
        ).hexdigest()
        for effort in efforts
    }


class SampleSource(Protocol):
    """Where a run's responses come from (see the module doc)."""

    #: Whether rows' `tokens` are counted again (a file's counts may come from another tokenizer).
    recount: bool

    def identity(self) -> dict[str, Any]:
        """The source's settings in config.json: a run directory holds samples of one source only."""

    def prepare(self, progress: Progress | None) -> None:
        """Make the responses that are missing (generation); nothing for responses that already exist."""

    def rows(self, done: dict[SampleKey, str | None], stats: Counter) -> Iterator[dict]:
        """Response rows in scope, each with `benchmark` and `answer`, lacking an up-to-date verdict in
        `done` (from `evals.harness.judged_keys`); rows left out for a reason are counted in `stats`."""

    def in_scope(self, row: dict) -> bool:
        """Whether a judged row of samples.jsonl belongs to this run's figures (its efforts, samples)."""

    def record(self, stats: Counter) -> dict[str, Any]:
        """What summary.json's `run` says about the source after a run (`stats` from `rows`)."""


class ModelSamples:
    """Responses a model backend generates into ``generations/BENCH.jsonl``, appended as they complete,
    so a rerun generates only the missing (id, effort, sample)."""

    recount = False  # the backend wrote each record's Qwen2.5 count

    def __init__(self, config: EvalConfig, data: list[BenchmarkData], files: RunFiles) -> None:
        self.config, self.data, self.files = config, data, files
        self.efforts = set(config.generation_efforts)
        self.counts: dict[str, dict] = {}

    def identity(self) -> dict[str, Any]:
        config = self.config
        return {"temperature": config.temperature, "top_p": config.top_p, "max_tokens": config.max_tokens,
                "seed": config.seed, "prompts": _prompt_hashes(config.generation_efforts)}

    def prepare(self, progress: Progress | None) -> None:
        """Generate what each benchmark's generation file lacks, keeping per-benchmark counts."""
        config = self.config
        if progress is not None:  # loading weights can take minutes: a stage of its own, so it shows
            progress(f"load {config.model}", 0, 1)
        backend = generation.load_backend(config.backend, config.model, **dict(config.backend_options))
        if progress is not None:
            progress(f"load {config.model}", 1, 1)
        try:
            for item in self.data:
                stage = f"generate {item.name}"

                def report(event, stage=stage) -> None:
                    if progress is not None:
                        progress(stage, event.done, event.total)

                result = generation.generate_to_file(backend, build_requests(config, item),
                                                     self.files.generations(item.name), report)
                self.counts[item.name] = {
                    "generated": result.records,
                    "already_done": result.skipped,
                    "planned": result.planned,
                    "failed": [list(map(str, bad)) for bad in result.bad],
                    "elapsed_s": result.elapsed_s,
                    "gen_tokens_per_s": result.gen_tokens_per_s,
                }
        finally:
            close = getattr(backend, "close", None)
            if close is not None:
                close()

    def rows(self, done: dict[SampleKey, str | None], stats: Counter) -> Iterator[dict]:
        """Generation records in scope (problems after --limit, efforts, samples < K) without an up-to-date
        verdict (`done` is updated as rows are yielded, so a second record of a sample is not judged)."""
        for item in self.data:
            path = self.files.generations(item.name)
            if not path.exists():
                continue
            golds = {str(problem["id"]): problem for problem in item.problems}
            for row in read_jsonl(path, require=("id", "response")):
                problem = golds.get(str(row["id"]))
                if problem is None or not self.in_scope(row):
                    continue
                row["benchmark"] = item.name
                row["answer"] = problem["answer"]
                if up_to_date(row, done):
                    continue
                done[sample_key(row)] = None
                yield row

    def in_scope(self, row: dict) -> bool:
        return row.get("effort") in self.efforts and int(row.get("sample", 0)) < self.config.n_samples

    def record(self, stats: Counter) -> dict[str, Any]:
        return {"generation": self.counts}


class FileSamples:
    """Responses made elsewhere (``--responses FILE``), matched to their problems by id; a row may name
    its `benchmark`, `effort` and `sample`."""

    recount = True  # their `tokens`, if any, may come from another tokenizer

    #: Rows that `rows` counts in its `stats` but does not score, and why.
    SKIPPED = {
        "other_benchmark": "their problems belong to benchmarks not asked for (--benchmarks)",
        "other_effort": "efforts not asked for (--efforts)",
        "beyond_limit": "problems beyond --limit",
        "duplicates": "the same (benchmark, id, effort, sample) again",
    }

    def __init__(self, config: EvalConfig, data: list[BenchmarkData]) -> None:
        self.config, self.data, self.path = config, data, config.responses
        self.efforts = None if config.efforts is None else set(config.efforts)

    def identity(self) -> dict[str, Any]:
        return {"responses": str(Path(self.path).resolve())}

    def prepare(self, progress: Progress | None) -> None:
        """Nothing to make: the responses exist."""

    def rows(self, done: dict[SampleKey, str | None], stats: Counter) -> Iterator[dict]:
        """Rows of the file without an up-to-date verdict, with their problem's text and level.

        The whole file is validated first (a streaming pass), so a bad line stops the run before any work
        starts. A row whose (benchmark, id, effort, sample) was seen before counts as a duplicate.
        """
        for _ in self._matched(Counter()):
            pass
        seen: set[SampleKey] = set()
        for row, problem in self._matched(stats):
            key = sample_key(row)
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            if up_to_date(row, done):
                stats["already_judged"] += 1
                continue
            row.setdefault("problem", problem["problem"])
            if problem.get("level") is not None:
                row.setdefault("level", problem["level"])
            yield row

    def _matched(self, stats: Counter) -> Iterator[tuple[dict, dict]]:
        """Validated rows of the file with their problem, in file order.

        Raises `JsonlError` (file and line) for an unknown or ambiguous id, an unknown effort, a non-string
        response or a bad `sample`. `sample` defaults to the row's rank among rows of the same problem and
        effort. Ids beyond --limit, efforts not asked for and rows of other benchmarks (by their
        ``benchmark`` key, or by an id found only in another registry benchmark's local copy) are counted in
        `stats` and skipped.
        """
        path = self.path
        by_id: dict[str, list[tuple[BenchmarkData, dict | None]]] = defaultdict(list)
        for item in self.data:
            kept = {str(problem["id"]) for problem in item.problems}
            for problem in item.problems:
                by_id[str(problem["id"])].append((item, problem))
            for pid in item.all_ids - kept:  # ids beyond --limit are known but not scored
                by_id[pid].append((item, None))
        rank: Counter = Counter()
        asked = [item.name for item in self.data]
        names = ", ".join(asked)
        other_ids = local_ids(self.config.data_dir, [name for name in BENCHMARKS if name not in asked])
        for number, row in read_jsonl_numbered(path, require=("id", "response")):
            pid = str(row["id"])
            if row.get("benchmark") is not None and row["benchmark"] not in asked:
                stats["other_benchmark"] += 1  # a file holding several benchmarks: rows of others are not scored
                continue
            matches = by_id.get(pid)
            if row.get("benchmark") is not None and matches:
                matches = [match for match in matches if match[0].name == row["benchmark"]]
            if not matches and pid in other_ids:
                stats["other_benchmark"] += 1
                continue
            if not matches:
                raise JsonlError(path, number, f"unknown problem id {pid!r} (not in benchmark(s) {names}, nor in "
                                               "another benchmark's file under --data-dir; a row of another "
                                               "benchmark is skipped when it has a 'benchmark' key)")
            if len(matches) > 1:
                raise JsonlError(path, number, f"problem id {pid!r} is in several benchmarks; add a 'benchmark' key")
            item, problem = matches[0]
            effort = row.get("effort")
            if effort is not None and effort not in EFFORTS:
                raise JsonlError(path, number, f"unknown effort {effort!r} (expected {', '.join(EFFORTS)} or null)")
            if not isinstance(row["response"], str):
                raise JsonlError(path, number, f"'response' must be a string, got {type(row['response']).__name__}")
            sample = row.get("sample")
            if sample is None:
                sample = rank[(item.name, pid, effort)]
            elif isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
                raise JsonlError(path, number, f"'sample' must be an integer >= 0, got {sample!r}")
            rank[(item.name, pid, effort)] += 1
            if problem is None:
                stats["beyond_limit"] += 1
                continue
            if self.efforts is not None and effort not in self.efforts:
                stats["other_effort"] += 1
                continue
            row.update(benchmark=item.name, id=problem["id"], effort=effort, sample=sample, answer=problem["answer"])
            yield row, problem

    def in_scope(self, row: dict) -> bool:
        return self.efforts is None or row.get("effort") in self.efforts

    def record(self, stats: Counter) -> dict[str, Any]:
        return {"responses_file": {"path": self.path, "sha256": sha256_file(self.path), **stats}}


def sample_source(config: EvalConfig, data: list[BenchmarkData], files: RunFiles) -> SampleSource:
    """The run's one source of responses, chosen by its backend."""
    if config.backend == RESPONSES_BACKEND:
        return FileSamples(config, data)
    return ModelSamples(config, data, files)


def build_requests(config: EvalConfig, data: BenchmarkData) -> list[generation.GenerationRequest]:
    """One request per (problem, effort, sample i), sample i seeded with `seed + i`."""
    requests = []
    for index in range(config.n_samples):
        sampling = generation.SamplingParams(
            temperature=0.0 if config.greedy else config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            seed=config.seed + index,
        )
        for problem in data.problems:
            for effort in config.generation_efforts:
                requests.append(generation.GenerationRequest(problem, effort, n_samples=config.n_samples,
                                                             sampling=sampling, samples=(index,)))
    return requests
