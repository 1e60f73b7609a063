"""The pipeline's problem pools -- seed, effort and iteration problems -- from local JSONL files or hub
datasets, made disjoint and written as local JSONL.

Why a stage of its own: the paper draws its seed and effort problems from NuminaMath, which nobody ships
as a file, and its iteration problems from MATH train and AIME "not used earlier". This module turns a
config's sources into the three files the generation stages read:

* a hub dataset (`datasets.load_dataset`: a hub id such as AI-MO/NuminaMath-CoT, or a local dataset
  folder) is filtered on its columns (e.g. `source`), and each row's gold answer is the last `\\boxed{}`
  of its solution (or a given answer column); rows whose answer cannot be extracted or parsed by
  math-verify are dropped and counted;
* `skip`/`limit` cut rows in source order; problems already in an earlier pool (seed, then effort, then
  iteration; same text after whitespace and case folding) or twice in the same pool are taken out and
  counted; `sample: N` then takes a seeded random sample of N of what is left.

The pools' meta file records, per pool and source, the dataset revision read (the hub commit; unpinned sources
are resolved to one first), the sha256 of local inputs and of each written pool, and every count. The
stage's outputs are these files, so a rerun with unchanged settings is skipped and reads nothing.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipes.config import HubSource, ProblemSet, Recipe, to_dict
from recipes.layout import RunLayout
from tops_plugin.jsonl import atomic_writer, read_jsonl, sha256_file, write_jsonl

__all__ = ["POOLS", "ProblemSourceError", "build_pools", "gold_from_solution", "parses",
           "pool_sets", "read_set", "text_key"]

log = logging.getLogger(__name__)

POOLS: tuple[str, ...] = ("seed", "effort", "iteration")  # priority order: a problem stays in the first


class ProblemSourceError(ValueError):
    """A problem source that cannot be read; the message names the config key and what to do."""


def pool_sets(recipe: Recipe) -> dict[str, tuple[ProblemSet, ...]]:
    """The sources of each pool, in priority order."""
    return {"seed": (recipe.data.seed,), "effort": (recipe.data.effort,), "iteration": recipe.data.iteration}


def text_key(problem: str) -> str:
    """What makes two problems the same: their text with whitespace collapsed and case folded."""
    return " ".join(problem.split()).casefold()


def gold_from_solution(solution: str) -> str | None:
    """The gold answer of a worked solution: its last `\\boxed{}`; "" when math-verify cannot parse it,
    None when there is none."""
    from tops_plugin.judging.answers import last_boxed

    boxed = last_boxed(solution)
    if boxed is None or not boxed.strip():
        return None
    return boxed.strip() if parses(boxed.strip()) else ""


def parses(answer: str) -> bool:
    """Whether math-verify reads `answer` as mathematics (not only as the raw string it falls back to)."""
    from tops_plugin.judging.answers import parse_gold

    parsed = parse_gold(answer) or parse_gold.__wrapped__(answer)  # a parse timed out on a busy machine: again
    return any(not isinstance(item, str) for item in parsed)


# ------------------------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """Rows of one source, addressable by position, and how to turn one into a problem."""

    size: int
    row: Callable[[int], dict | None]  # position -> problem row, or None (dropped; reason counted)
    info: dict[str, Any]


def _local_source(recipe: Recipe, problems: ProblemSet) -> _Source:
    path = recipe.data_path(problems)
    if not path.is_file():
        raise ProblemSourceError(f"{problems.label}: no such file {path} (check data.dir and the path)")
    stop = None if problems.limit is None else problems.skip + problems.limit
    rows = list(itertools.islice(read_jsonl(path, require=("id", "problem", "answer")), problems.skip, stop))
    return _Source(len(rows), rows.__getitem__, {"path": str(path), "sha256": sha256_file(path)})


def _load_hub(source: HubSource) -> tuple[Any, dict[str, Any]]:
    """The split as a `datasets.Dataset` (memory-mapped) and where it came from."""
    try:
        import datasets
    except ImportError:
        raise ProblemSourceError("hub problem sources need the `datasets` package: pip install datasets") from None
    folder = Path(source.name).expanduser()
    revision = source.revision
    info: dict[str, Any] = {"name": source.name, "split": source.split, "config": source.config}
    if not folder.exists() and source.name.startswith(("/", ".", "~")):
        raise ProblemSourceError(f"no such dataset folder {str(folder.absolute())!r} (hub.name {source.name!r}; "
                                 "a relative folder is taken from the working directory)")
    if folder.exists():  # a local dataset folder: identified by its files' digests
        info["files"] = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
                         if p.is_file() and not p.name.startswith(".")}
    elif revision is None:  # pin what the hub serves now, so the recorded revision is the one read
        try:
            from huggingface_hub import HfApi

            revision = HfApi().dataset_info(source.name).sha
        except Exception as exc:
            raise ProblemSourceError(
                f"cannot reach the hub for dataset {source.name!r} ({type(exc).__name__}: {exc}); "
                "on an offline machine use a local dataset folder or JSONL file"
            ) from None
    info["revision"] = revision
    try:
        dataset = datasets.load_dataset(str(folder) if folder.exists() else source.name, source.config,
                                        split=source.split, revision=None if folder.exists() else revision)
    except Exception as exc:
        raise ProblemSourceError(f"cannot load dataset {source.name!r} split {source.split!r}: "
                                 f"{type(exc).__name__}: {exc}") from None
    return dataset, info


def _hub_source(problems: ProblemSet, counts: Counter, key: str) -> _Source:
    source = problems.hub
    dataset, info = _load_hub(source)
    columns = set(dataset.column_names)
    needed = [source.problem_key, source.answer_key or source.solution_key, *source.filters]
    needed += [source.id_key] if source.id_key else []
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ProblemSourceError(f"{key}.hub: dataset {source.name!r} has no column(s) {missing} "
                                 f"(columns: {', '.join(sorted(columns))})")
    total = len(dataset)
    if source.filters:
        wanted = {c: set(v if isinstance(v, list) else [v]) for c, v in source.filters.items()}
        columns_of = {c: dataset.data.column(c).to_pylist() for c in wanted}  # whole columns, not row dicts
        for column, values in columns_of.items():
            odd = next((v for v in values if isinstance(v, (list, dict))), None)
            if odd is not None:
                raise ProblemSourceError(f"{key}.hub.filters.{column}: the column holds {type(odd).__name__} values "
                                         f"(e.g. {str(odd)[:80]}); a filter matches whole values (text, numbers)")
        kept = [i for i in range(total) if all(columns_of[c][i] in allowed for c, allowed in wanted.items())]
        counts["filtered_out"] += total - len(kept)
        if not kept:
            seen = "; ".join(f"{c}: {', '.join(sorted(map(repr, set(columns_of[c]))))[:300]}" for c in wanted)
            raise ProblemSourceError(f"{key}.hub.filters: no row of dataset {source.name!r} split "
                                     f"{source.split!r} matches {source.filters} (values present: {seen})")
    else:
        kept = list(range(total))
    stop = None if problems.limit is None else problems.skip + problems.limit
    kept = kept[problems.skip:stop]
    info["rows_in_split"] = total

    def row(position: int) -> dict | None:
        index = kept[position]
        raw = dataset[index]
        text = raw.get(source.problem_key)
        if not isinstance(text, str) or not text.strip():
            counts["dropped.no_problem_text"] += 1
            return None
        if source.answer_key:
            answer = raw.get(source.answer_key)
            answer = None if answer is None else str(answer).strip()
            answer = answer if answer and parses(answer) else ("" if answer else None)
        else:
            answer = gold_from_solution(str(raw.get(source.solution_key) or ""))
        if answer is None:
            counts["dropped.no_answer_found"] += 1
            return None
        if answer == "":
            counts["dropped.answer_not_parsed"] += 1
            return None
        pid = str(raw[source.id_key]) if source.id_key else f"{source.name}/{source.split}/{index}"
        # The filter columns (e.g. `source`) travel on, for per-source statistics; the solution does not
        # (every generation record copies its problem's fields).
        return {"id": pid, "problem": text, "answer": answer, **{c: raw[c] for c in source.filters}}

    return _Source(len(kept), row, info)


# --------------------------------------------------------------------------------------------- pools


def _draw(source: _Source, problems: ProblemSet, taken: dict[str, str], pool: str, counts: Counter) -> list[dict]:
    """Rows of `source` not already taken (by an earlier pool or this one), in source order -- or, with
    `sample`, in a seeded random order until N are kept."""
    order: Sequence[int] = range(source.size)
    if problems.sample is not None:
        order = list(order)
        random.Random(problems.seed).shuffle(order)
    out: list[dict] = []
    for position in order:
        if problems.sample is not None and len(out) >= problems.sample:
            break
        row = source.row(position)
        if row is None:
            continue
        key = text_key(str(row["problem"]))
        owner = taken.get(key)
        if owner is not None:
            counts[f"dropped.{'duplicate' if owner == pool else 'in_' + owner + '_pool'}"] += 1
            continue
        taken[key] = pool
        out.append(row)
    if problems.sample is not None and len(out) < problems.sample:
        counts["short_of_sample"] += problems.sample - len(out)
        log.warning("%s: only %d problems left to sample %d from", problems.label, len(out), problems.sample)
    return out


def _open(recipe: Recipe, problems: ProblemSet, counts: Counter, key: str) -> _Source:
    return _hub_source(problems, counts, key) if problems.hub else _local_source(recipe, problems)


def read_set(recipe: Recipe, problems: ProblemSet, key: str = "problems") -> list[dict]:
    """The problems of one set on its own (e.g. RL prompts): cut, deduplicated and sampled as in a pool."""
    return _draw(_open(recipe, problems, Counter(), key), problems, {}, key, Counter())


def build_pools(recipe: Recipe, layout: RunLayout) -> dict:
    """Write the seed, effort and (when configured) iteration pools and their meta file where `layout`
    puts them; returns the meta record. Nothing is written unless every configured pool has problems."""
    taken: dict[str, str] = {}
    id_owners: dict[str, str] = {}  # problem id -> config key of the source it came from
    drawn_pools: dict[str, tuple[list[dict], list[dict]]] = {}
    for pool, sets in pool_sets(recipe).items():
        if not sets:
            continue
        rows: list[dict] = []
        sources = []
        for i, problems in enumerate(sets):
            key = f"data.{pool}" + (f"[{i}]" if pool == "iteration" else "")
            counts: Counter = Counter()
            source = _open(recipe, problems, counts, key)
            drawn = _draw(source, problems, taken, pool, counts)
            for row in drawn:  # later stages group samples by id: one id must be one problem
                owner = id_owners.get(str(row["id"]))
                if owner is not None:  # this source's own earlier row, or another source's
                    raise ProblemSourceError(f"{key}: problem id {row['id']!r} is also the id of another problem "
                                             f"in {owner}; give the sources distinct ids (a hub source's id_key)")
                id_owners[str(row["id"])] = key
            rows += drawn
            sources.append({"config": to_dict(problems), **source.info, "rows_available": source.size,
                            "kept": len(drawn), **_nest(counts)})
        if not rows:
            raise ProblemSourceError(f"data.{pool}: no problems left for the {pool} pool ("
                                     + "; ".join(_describe(s) for s in sources) + ")")
        drawn_pools[pool] = rows, sources
    meta: dict[str, Any] = {"pools": {}}
    for pool, (rows, sources) in drawn_pools.items():
        path = layout.pool(pool)
        write_jsonl(path, rows)
        meta["pools"][pool] = {"path": str(path), "sha256": sha256_file(path), "problems": len(rows),
                               "sources": sources}
        log.info("%s pool: %d problems -> %s", pool, len(rows), path)
    meta["overlap_removed"] = {pool: sum(s.get("dropped", {}).get(f"in_{other}_pool", 0)
                                         for s in info["sources"] for other in POOLS)
                               for pool, info in meta["pools"].items()}
    with atomic_writer(layout.pools_meta, "w") as handle:
        json.dump(meta, handle, indent=2)
    return meta


def _describe(source: dict[str, Any]) -> str:
    """One source's counts in words: '40 rows available, dropped: in_seed_pool 40'."""
    dropped = ", ".join(f"{reason} {n}" for reason, n in source["dropped"].items())
    return f"{source['rows_available']} rows available" + (f", dropped: {dropped}" if dropped else "")


def _nest(counts: Counter) -> dict[str, Any]:
    """{"dropped.x": 3, "filtered_out": 2} -> {"dropped": {"x": 3}, "filtered_out": 2}."""
    nested: dict[str, Any] = {"dropped": {}}
    for name, value in sorted(counts.items()):
        head, _, tail = name.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[name] = value
    return nested

