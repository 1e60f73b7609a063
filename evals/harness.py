"""One evaluation run: problems -> generations -> judged samples -> summary, report and plots.

The run directory (`evals.layout.RunFiles`) is the only state, so a killed run is finished by rerunning
the same command. A rerun generates only the missing (id, effort, sample) triples and judges only rows not yet in
samples.jsonl. A setting that would mix incompatible samples (another model, temperature, seed, token
budget, prompt text, tokenizer or data file) is refused with the key that differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evals.benchmarks import BENCHMARKS, BenchmarkData, load_benchmarks, local_ids
from evals.layout import RunFiles
from evals.metrics import level_name, summarize, usage_tokens
from tops_plugin.prompts import DEFAULT_EFFORT, EFFORTS, effort_label, effort_sort_key
from tops_plugin.jsonl import (
    JsonlError,
    append_jsonl,
    atomic_writer,
    dumps,
    read_jsonl,
    read_jsonl_numbered,
    repair_tail,
    sha256_file,
)

__all__ = [
    "TOKEN_COUNTS",
    "ConfigMismatch",
    "EvalConfig",
    "MODEL_BACKENDS",
    "counted_text",
    "run_eval",
]

MODEL_BACKENDS: tuple[str, ...] = ("vllm", "hf", "openai")
RESPONSES_BACKEND = "responses"  # scores a file of responses made elsewhere (`FileSamples`)
_SECRET_HINTS = ("key", "token", "secret", "password")

# Keys of config.json that, when they differ, mean the samples on disk are not the ones asked for (beside
# those of the run's source: decoding and prompts for a model, the file for responses).
IDENTITY_KEYS: tuple[str, ...] = ("model", "backend", "tokenizer", "count_tokens")
# What `tokens` counts: the whole response, or only the thought part of thought-and-summary models.
TOKEN_COUNTS: tuple[str, ...] = ("response", "thought")

Progress = Callable[[str, int, int | None], None]  # (stage, done, total or None)


class ConfigMismatch(ValueError):
    """The run directory holds samples made with another setting."""


@dataclass(frozen=True)
class EvalConfig:
    """Everything one `python -m evals.run` command asks for."""

    model: str
    backend: str
    benchmarks: tuple[str, ...]
    out: str
    n_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    max_tokens: int = 16384
    efforts: tuple[str | None, ...] | None = None  # None: no effort prompt (models) / as in file (responses)
    limit: int | None = None
    data_dir: str | None = None
    responses: str | None = None
    tokenizer: str | None = None
    workers: int | None = None
    timeout: float = 5.0
    greedy: bool = False
    backend_options: tuple[tuple[str, Any], ...] = ()
    count_tokens: str = "response"

    def __post_init__(self) -> None:
        if self.count_tokens not in TOKEN_COUNTS:
            raise ValueError(f"--count-tokens must be one of {', '.join(TOKEN_COUNTS)}, got {self.count_tokens!r}")
        if self.backend not in (*MODEL_BACKENDS, RESPONSES_BACKEND):
            raise ValueError(f"unknown backend {self.backend!r} (vllm, hf, openai or responses)")
        if self.backend == RESPONSES_BACKEND and not self.responses:
            raise ValueError("--backend responses needs --responses FILE")
        if self.backend != RESPONSES_BACKEND and self.responses:
            raise ValueError("--responses FILE only goes with --backend responses")
        if self.greedy:
            if self.n_samples != 1 or self.temperature not in (0, 0.0):
                raise ValueError("greedy decoding means temperature 0 and one sample per problem")
        if self.n_samples < 1:
            raise ValueError(f"--n-samples must be >= 1, got {self.n_samples}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        for effort in self.efforts or ():
            if effort is not None and effort not in EFFORTS:
                raise ValueError(f"unknown effort {effort!r} (expected {', '.join(EFFORTS)} or {DEFAULT_EFFORT})")
        if not self.benchmarks:
            raise ValueError("no benchmarks given")

    @property
    def generation_efforts(self) -> tuple[str | None, ...]:
        return self.efforts if self.efforts else (None,)

    def to_json(self) -> dict:
        """All settings, with secrets in backend options masked (summary.json is shared)."""
        data = asdict(self)
        data["benchmarks"] = list(self.benchmarks)
        data["efforts"] = None if self.efforts is None else [effort_label(e) for e in self.efforts]
        data["backend_options"] = {
            key: "***" if any(hint in key.lower() for hint in _SECRET_HINTS) else value
            for key, value in self.backend_options
        }
        return data


# ------------------------------------------------------------------------------------------------ identity


def _prompt_hashes(efforts: Iterable[str | None]) -> dict[str, str]:
    """sha256 of the messages each effort sends (system prompt + instruction), per effort label."""
    from tops_plugin.prompts import build_messages

    return {
        effort_label(effort): hashlib.sha256(
            json.dumps(build_messages("{problem}", effort), sort_keys=True).encode()
        ).hexdigest()
        for effort in efforts
    }


def sample_identity(config: EvalConfig, data: list[BenchmarkData], source: SampleSource) -> dict:
    """What config.json records: the settings that define the samples, their source's own, data hashes."""
    identity: dict[str, Any] = {key: getattr(config, key) for key in IDENTITY_KEYS}
    identity.update(source.identity())
    identity["data"] = {item.name: item.sha256 for item in data}
    return identity


def _has_samples(files: RunFiles) -> bool:
    paths = [files.samples, *sorted(files.generations_dir.glob("*.jsonl"))]
    return any(path.is_file() and path.stat().st_size > 0 for path in paths)


def check_identity(files: RunFiles, identity: dict) -> dict:
    """Refuse when the directory's recorded identity differs from this run's; return the merged record.

    Prompts and data are compared per effort / benchmark present in both, so adding an effort or a
    benchmark to an existing run directory is allowed. A directory without samples yet (a run that
    failed before producing any) takes the new identity.
    """
    path = files.config
    if not path.exists() or not _has_samples(files):
        return identity
    try:
        recorded = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigMismatch(f"{path}: unreadable ({exc}); remove it or use another --out") from exc
    for key, value in identity.items():
        if key in ("prompts", "data"):
            old = recorded.get(key) or {}
            for name, digest in value.items():
                if name in old and old[name] != digest:
                    what = "prompt text for effort" if key == "prompts" else "data file of benchmark"
                    raise ConfigMismatch(
                        f"{files.root}: the {what} {name!r} differs from the one its samples were made with "
                        f"({key}.{name}: {old[name][:12]} on disk, {digest[:12]} now); use another --out"
                    )
        elif key in recorded and recorded[key] != value:
            raise ConfigMismatch(
                f"{files.root}: holds samples made with {key}={recorded[key]!r}, but this run asks for "
                f"{key}={value!r}; rerun with the same setting or use another --out"
            )
    merged = dict(recorded)
    for key, value in identity.items():
        merged[key] = {**(recorded.get(key) or {}), **value} if key in ("prompts", "data") else value
    return merged


# ------------------------------------------------------------------------------------------- verdicts kept

SampleKey = tuple[str, str, str | None, int]  # (benchmark, id, effort, sample)


def _key(row: dict) -> SampleKey:
    return str(row["benchmark"]), str(row["id"]), row.get("effort"), int(row.get("sample", 0))


def judged_keys(samples_path: Path) -> dict[SampleKey, str | None]:
    """Samples already in samples.jsonl (after cutting a torn last line), each with the `judge_key` of its
    verdict: what decided it (response, gold, truncation, checker version; None for rows without one, and
    for a `timeout` or `error` verdict, which depends on the machine, not on the row: judged again)."""
    from tops_plugin.judging import UNSETTLED_VERDICTS

    if not samples_path.exists():
        return {}
    repair_tail(samples_path)
    return {_key(row): None if row.get("verdict") in UNSETTLED_VERDICTS else row.get("judge_key")
            for row in read_jsonl(samples_path, require=("benchmark", "id"))}


def _up_to_date(row: dict, done: dict[SampleKey, str | None]) -> bool:
    """Whether samples.jsonl already holds this row's verdict, made from the same response, gold, truncation
    and checker. A row whose sample was judged from other inputs is judged again (see `drop_samples`)."""
    from tops_plugin.judging import is_truncated, judge_key

    key = _key(row)
    return key in done and done[key] == judge_key(row["response"], str(row["answer"]), is_truncated(row))


def drop_samples(samples_path: Path, keys: set[SampleKey]) -> int:
    """Rewrite samples.jsonl (atomically) without the rows of `keys`; returns how many were dropped."""
    if not keys or not samples_path.exists():
        return 0
    dropped = 0
    with atomic_writer(samples_path) as handle:
        for row in read_jsonl(samples_path, require=("benchmark", "id")):
            if _key(row) in keys:
                dropped += 1
                continue
            handle.write(dumps(row))
    return dropped


# ------------------------------------------------------------------------------------------------ sources


class SampleSource(Protocol):
    """Where a run's responses come from: a model generating them, or a file of responses made elsewhere.

    The harness asks its source and never which one it has."""

    #: Whether rows' `tokens` are counted again (a file's counts may come from another tokenizer).
    recount: bool

    def identity(self) -> dict[str, Any]:
        """The source's settings in config.json: a run directory holds samples of one source only."""

    def prepare(self, progress: Progress | None) -> None:
        """Make the responses that are missing (generation); nothing for responses that already exist."""

    def rows(self, done: dict[SampleKey, str | None], stats: Counter) -> Iterator[dict]:
        """Response rows in scope, each with `benchmark` and `answer`, lacking an up-to-date verdict in
        `done` (from `judged_keys`); rows left out for a reason are counted in `stats`."""

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
        self.generation: dict[str, dict] = {}

    def identity(self) -> dict[str, Any]:
        config = self.config
        return {"temperature": config.temperature, "top_p": config.top_p, "max_tokens": config.max_tokens,
                "seed": config.seed, "prompts": _prompt_hashes(config.generation_efforts)}

    def prepare(self, progress: Progress | None) -> None:
        """Generate what each benchmark's generation file lacks, keeping per-benchmark counts."""
        from tops_plugin.generation import generate_to_file, load_backend

        config = self.config
        if progress is not None:  # loading weights can take minutes: a stage of its own, so it shows
            progress(f"load {config.model}", 0, 1)
        backend = load_backend(config.backend, config.model, **dict(config.backend_options))
        if progress is not None:
            progress(f"load {config.model}", 1, 1)
        try:
            for item in self.data:
                stage = f"generate {item.name}"

                def report(event, stage=stage) -> None:
                    if progress is not None:
                        progress(stage, event.done, event.total)

                result = generate_to_file(backend, build_requests(config, item), self.files.generations(item.name),
                                          report)
                self.generation[item.name] = {
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
                if _up_to_date(row, done):
                    continue
                done[_key(row)] = None
                yield row

    def in_scope(self, row: dict) -> bool:
        return row.get("effort") in self.efforts and int(row.get("sample", 0)) < self.config.n_samples

    def record(self, stats: Counter) -> dict[str, Any]:
        return {"generation": self.generation}


class FileSamples:
    """Responses made elsewhere (``--responses FILE``), matched to their problems by id; a row may name
    its `benchmark`, `effort` and `sample`."""

    recount = True  # their `tokens`, if any, may come from another tokenizer

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
            key = _key(row)
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            if _up_to_date(row, done):
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


def build_requests(config: EvalConfig, data: BenchmarkData) -> list:
    """One request per (problem, effort, sample i), sample i seeded with `seed + i`."""
    from tops_plugin.generation import GenerationRequest, SamplingParams

    requests = []
    for index in range(config.n_samples):
        sampling = SamplingParams(
            temperature=0.0 if config.greedy else config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            seed=config.seed + index,
        )
        for problem in data.problems:
            for effort in config.generation_efforts:
                requests.append(
                    GenerationRequest(problem, effort, n_samples=config.n_samples, sampling=sampling, samples=(index,))
                )
    return requests


# ------------------------------------------------------------------------------------------------- scoring


def counted_text(response: str, count: str) -> str:
    """The part of a response whose tokens `tokens` holds. `response`: all of it. `thought`: only the thought
    part of a thought-and-summary response (Sky-T1 / STILL-2 `<|begin_of_thought|>…<|end_of_thought|>`, or
    `<think>…</think>`), as the paper counts such models; a response with no thought block counts whole."""
    from tops_plugin.answers import THINKING_TAGS, split_thinking

    if count == "response":
        return response
    reasoning, _final = split_thinking(response)
    if not reasoning:
        return response
    for open_tag, _close in THINKING_TAGS:
        if reasoning.lstrip().startswith(open_tag):
            return reasoning.lstrip()[len(open_tag):]
    return reasoning


def _without(rows: Iterable[dict], key: str) -> Iterator[dict]:
    for row in rows:
        row.pop(key, None)
        yield row


def judge_to_samples(
    rows: Iterable[dict], samples_path: Path, config: EvalConfig, progress: Progress | None, *, recount: bool,
    batch: int = 512,
) -> int:
    """Count tokens, judge, and append to samples.jsonl.

    Rows keep the `tokens` they carry unless `recount` or --tokenizer is set (a --responses file's counts
    may come from another tokenizer; generation records hold the Qwen2.5 count the backend wrote). With `count_tokens="thought"` every row is recounted over its thought part (`counted_text`) and the
    whole response's count is kept as `response_tokens`.
    """
    from tops_plugin.judging import judge_rows
    from tops_plugin.tokens import load_tokenizer, with_token_counts
    from tops_plugin.verifier import Verifier

    tokenizer = load_tokenizer(config.tokenizer)
    if config.count_tokens == "response":
        counted = with_token_counts(rows, tokenizer=tokenizer, recount=recount or config.tokenizer is not None,
                                    batch_size=batch)
    else:
        whole = with_token_counts(rows, tokenizer=tokenizer, field="response_tokens", recount=True, batch_size=batch)
        counted = with_token_counts(_with_counted_text(whole, config.count_tokens), key=_COUNTED_KEY,
                                    tokenizer=tokenizer, recount=True, batch_size=batch)
    counted = _without(counted, _COUNTED_KEY)
    written = 0
    if progress is not None:
        progress("judge", 0, None)
    with Verifier(workers=config.workers, timeout=config.timeout) as verifier, append_jsonl(samples_path) as write:
        for row in judge_rows(counted, verifier.check_many, gold_keys=("answer",), batch_size=batch):
            write(row)
            written += 1
            if progress is not None and written % 64 == 0:
                progress("judge", written, None)
    if progress is not None:
        progress("judge", written, written)
    return written


_COUNTED_KEY = "_counted_text"  # transient: the text `tokens` is counted over (never written)


def _with_counted_text(rows: Iterable[dict], count: str) -> Iterator[dict]:
    for row in rows:
        row[_COUNTED_KEY] = counted_text(row["response"], count)
        yield row


# ------------------------------------------------------------------------------------------------- summary

_COMPACT = ("id", "sample", "correct", "verdict", "tokens", "finish_reason", "truncated", "level")


def collect(
    samples_path: Path, source: SampleSource, data: list[BenchmarkData]
) -> dict[str, dict[str, list[dict]]]:
    """Judged rows in scope, reduced to what the metrics need, grouped by benchmark and effort label."""
    scope = {item.name: {str(problem["id"]) for problem in item.problems} for item in data}
    groups: dict[str, dict[str, list[dict]]] = {item.name: defaultdict(list) for item in data}
    if not samples_path.exists():
        return groups
    for row in read_jsonl(samples_path, require=("benchmark", "id")):
        bench = row["benchmark"]
        if bench not in scope or str(row["id"]) not in scope[bench]:
            continue
        if not source.in_scope(row):
            continue
        compact = {key: row.get(key) for key in _COMPACT}
        compact["id"] = str(compact["id"])
        compact["sample"] = int(compact["sample"] or 0)
        compact["tokens"] = int(compact["tokens"] or 0)
        pair = usage_tokens(row.get("usage"))
        if pair is not None:
            compact["usage"] = {"completion_tokens": pair[0], "reasoning_tokens": pair[1]}
        groups[bench][effort_label(row.get("effort"))].append(compact)
    return groups


def build_summary(
    config: EvalConfig, data: list[BenchmarkData], groups: dict[str, dict[str, list[dict]]], run: dict
) -> dict:
    """summary.json: results per benchmark x effort, the data used and the configuration."""
    results = {}
    for item in data:
        per_effort = groups.get(item.name, {})
        level_totals = Counter(level_name(p.get("level")) for p in item.problems)
        level_totals.pop(None, None)
        results[item.name] = {
            label: summarize(per_effort[label], n_problems_expected=len(item.problems), level_totals=level_totals)
            for label in sorted(per_effort, key=effort_sort_key)
            if per_effort[label]
        }
    return {
        "schema_version": 1,
        "model": config.model,
        "backend": config.backend,
        "results": results,
        "data": {
            item.name: {"path": item.path, "sha256": item.sha256, "n_problems": len(item.problems), "n_total": item.total}
            for item in data
        },
        "config": config.to_json(),
        "run": run,
    }


# ----------------------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class RunResult:
    """Where the outputs went and the summary they hold."""

    out: Path
    summary: dict
    files: dict[str, str] = field(default_factory=dict)


def run_eval(config: EvalConfig, progress: Progress | None = None) -> RunResult:
    """Run (or finish) one evaluation and write samples, summary, report and plots into `config.out`.

    The benchmarks are loaded before the directory is made; a run that fails before its first sample
    removes the directory it created."""
    files = RunFiles(config.out)
    data = load_benchmarks(config.benchmarks, config.data_dir, config.limit)  # before anything is created
    created = not files.root.exists()
    files.root.mkdir(parents=True, exist_ok=True)
    try:
        return _run_in(files, config, data, progress)
    except BaseException:
        if created and not _has_samples(files):  # a run that failed before any sample leaves nothing behind
            shutil.rmtree(files.root, ignore_errors=True)
        raise


def _run_in(files: RunFiles, config: EvalConfig, data: list[BenchmarkData], progress: Progress | None) -> RunResult:
    """The run itself, in an existing directory."""
    from evals.plots import write_plots
    from evals.report import render_report

    source = sample_source(config, data, files)
    identity = check_identity(files, sample_identity(config, data, source))
    with atomic_writer(files.config, "w") as handle:
        json.dump(identity, handle, indent=2, sort_keys=True)

    source.prepare(progress)
    done = judged_keys(files.samples)
    # A sample whose response, gold or checker changed since it was judged: its old verdict goes first.
    stale = {_key(row) for row in source.rows(dict(done), Counter()) if _key(row) in done}
    run: dict[str, Any] = {"judged_again": drop_samples(files.samples, stale)}
    for key in stale:
        del done[key]
    stats: Counter = Counter()
    run["judged_now"] = judge_to_samples(source.rows(done, stats), files.samples, config, progress,
                                         recount=source.recount)
    run.update(source.record(stats))

    groups = collect(files.samples, source, data)
    summary = build_summary(config, data, groups, run)
    written = {"samples": files.samples, "summary": files.summary, "report": files.report}
    written.update(write_plots(summary, groups, files))
    summary["files"] = {name: os.path.relpath(path, files.root) for name, path in written.items()}
    with atomic_writer(files.summary, "w") as handle:
        json.dump(summary, handle, indent=2)
    with atomic_writer(files.report, "w") as handle:
        handle.write(render_report(summary))
    return RunResult(files.root, summary, {name: str(path) for name, path in written.items()})
