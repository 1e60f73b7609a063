"""One evaluation run: problems -> generations -> judged samples -> summary, report and plots.

The run directory (`evals.layout.RunFiles`) is the only state, so a killed run is finished by rerunning
the same command. The responses come from the run's one source (`evals.sources`: a model generating
them, or a file of responses made elsewhere). A rerun generates only the missing (id, effort, sample)
triples and judges only rows not yet in samples.jsonl. A setting that would mix incompatible samples
(another model, temperature, seed, token budget, prompt text, tokenizer or data file) is refused with the
key that differs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.benchmarks import BenchmarkData, load_benchmarks
from evals.config import EvalConfig
from evals.layout import RunFiles
from evals.metrics import level_name, metric_row, summarize
from evals.plots import write_plots
from evals.report import render_report
from evals.sources import Progress, SampleKey, SampleSource, sample_key, sample_source
from tops_plugin.jsonl import append_jsonl, atomic_writer, dumps, read_jsonl, repair_tail
from tops_plugin.judging.answers import THINKING_TAGS, split_thinking
from tops_plugin.judging.rows import UNSETTLED_VERDICTS, judge_rows
from tops_plugin.judging.verifier import Verifier
from tops_plugin.prompts import effort_label, effort_sort_key
from tops_plugin.tokens import load_tokenizer, with_token_counts

__all__ = ["ConfigMismatch", "RunResult", "counted_text", "run_eval"]

# Keys of config.json that, when they differ, mean the samples on disk are not the ones asked for (beside
# those of the run's source: decoding and prompts for a model, the file for responses).
IDENTITY_KEYS: tuple[str, ...] = ("model", "backend", "tokenizer", "count_tokens")


class ConfigMismatch(ValueError):
    """The run directory holds samples made with another setting."""


# ------------------------------------------------------------------------------------------------ identity


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
        raise ConfigMismatch(f"{path}: unreadable ({exc}); remove it or use another -o/--output") from exc
    for key, value in identity.items():
        if key in ("prompts", "data"):
            old = recorded.get(key) or {}
            for name, digest in value.items():
                if name in old and old[name] != digest:
                    what = "prompt text for effort" if key == "prompts" else "data file of benchmark"
                    raise ConfigMismatch(
                        f"{files.root}: the {what} {name!r} differs from the one its samples were made with "
                        f"({key}.{name}: {old[name][:12]} on disk, {digest[:12]} now); use another -o/--output"
                    )
        elif key in recorded and recorded[key] != value:
            raise ConfigMismatch(
                f"{files.root}: holds samples made with {key}={recorded[key]!r}, but this run asks for "
                f"{key}={value!r}; rerun with the same setting or use another -o/--output"
            )
    merged = dict(recorded)
    for key, value in identity.items():
        merged[key] = {**(recorded.get(key) or {}), **value} if key in ("prompts", "data") else value
    return merged


# ------------------------------------------------------------------------------------------- verdicts kept


def judged_keys(samples_path: Path) -> dict[SampleKey, str | None]:
    """Samples already in samples.jsonl (after cutting a torn last line), each with the `judge_key` of its
    verdict: what decided it (response, gold, truncation, checker version; None for rows without one, and
    for a `timeout` or `error` verdict, which depends on the machine, not on the row: judged again)."""
    if not samples_path.exists():
        return {}
    repair_tail(samples_path)
    return {sample_key(row): None if row.get("verdict") in UNSETTLED_VERDICTS else row.get("judge_key")
            for row in read_jsonl(samples_path, require=("benchmark", "id"))}


def drop_samples(samples_path: Path, keys: set[SampleKey]) -> int:
    """Rewrite samples.jsonl (atomically) without the rows of `keys`; returns how many were dropped."""
    if not keys or not samples_path.exists():
        return 0
    dropped = 0
    with atomic_writer(samples_path) as handle:
        for row in read_jsonl(samples_path, require=("benchmark", "id")):
            if sample_key(row) in keys:
                dropped += 1
                continue
            handle.write(dumps(row))
    return dropped


# ------------------------------------------------------------------------------------------------- scoring


def counted_text(response: str, count: str) -> str:
    """The part of a response whose tokens `tokens` holds. `response`: all of it. `thought`: only the thought
    part of a thought-and-summary response (Sky-T1 / STILL-2 `<|begin_of_thought|>…<|end_of_thought|>`, or
    `<think>…</think>`), as the paper counts such models; a response with no thought block counts whole."""
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
    may come from another tokenizer; generation records hold the Qwen2.5 count the backend wrote). With
    `count_tokens="thought"` every row is recounted over its thought part (`counted_text`) and the whole
    response's count is kept as `response_tokens`.
    """
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
        for row in judge_rows(counted, verifier.judge_many, gold_keys=("answer",), batch_size=batch):
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
        groups[bench][effort_label(row.get("effort"))].append(metric_row(row))
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
    source = sample_source(config, data, files)
    identity = check_identity(files, sample_identity(config, data, source))
    with atomic_writer(files.config, "w") as handle:
        json.dump(identity, handle, indent=2, sort_keys=True)

    source.prepare(progress)
    done = judged_keys(files.samples)
    # A sample whose response, gold or checker changed since it was judged: its old verdict goes first.
    stale = {sample_key(row) for row in source.rows(dict(done), Counter()) if sample_key(row) in done}
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
