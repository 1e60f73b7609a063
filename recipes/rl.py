"""The RL recipe's two files: prompts whose labels carry the thinking-optimal reference, and the Ray job's
runtime environment that carries the reward to every node.

Labels. The thinking-optimal reward (`tops_plugin.reward.scorer`) needs, per problem, the shortest known correct
response length (`ref_tokens`, Qwen2.5 tokens). It comes from judged samples of a model close to the one
being trained -- the TOPS model's iteration samples, or a generation pass of the starting model -- as the
shortest correct response the TOPS selection would pick (`iter-sft` selection). Each label is the JSON
text of `{"answer": GOLD, "ref_tokens": N or null}` (text, so every row of the column has one type for
the `datasets` loader OpenRLHF uses; `tops_plugin.reward.scorer.parse_label` reads it).

Runtime environment. `ray job submit --runtime-env-json` gives every Ray worker of the job -- the vLLM
engines that call the reward function included, on whichever node -- the job folder as working
directory (the reward file and its config, so `--reward.remote_url reward_func.py` and
`TOPS_REWARD_CONFIG=reward.yaml` resolve on every node), `tops_plugin` itself as a `py_modules` entry,
and the environment variables. OpenRLHF's own `ray.init(runtime_env=…)` sets other variables, which Ray
merges with the job's per key.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tops_plugin.jsonl import atomic_writer, read_jsonl, write_jsonl

__all__ = [
    "REWARD_CONFIG_FILE",
    "REWARD_FILE",
    "reference_lengths",
    "rl_label",
    "runtime_env",
    "server_url",
    "write_job_dir",
    "write_rl_prompts",
]

log = logging.getLogger(__name__)

REWARD_FILE = "reward_func.py"  # in the job folder, the working directory of every worker
REWARD_CONFIG_FILE = "reward.yaml"


def reference_lengths(judged: Sequence[Path]) -> dict[str, tuple[int, str]]:
    """Per problem id: (shortest correct length in Qwen2.5 tokens -- the reward's unit --, the gold answer
    it was judged against), from judged generation records, chosen as TOPS's `iter-sft` selection chooses."""
    from tops_plugin.selection.modes import SelectionConfig, read_records, select

    golds: dict[str, str] = {}
    lengths: dict[str, tuple[int, str]] = {}
    for path in judged:
        for row in read_jsonl(path, require=("id",)):
            golds.setdefault(str(row["id"]), str(row.get("answer")))
        for row in select(read_records(path), SelectionConfig(mode="iter-sft")).rows:
            pid = str(row["id"])
            if pid not in lengths or row["tokens"] < lengths[pid][0]:
                lengths[pid] = (int(row["tokens"]), golds[pid])
    return lengths


def rl_label(answer: str, ref_tokens: int | None) -> str:
    """The label OpenRLHF hands the reward function: JSON text of `{"answer", "ref_tokens"}`."""
    return json.dumps({"answer": answer, "ref_tokens": ref_tokens}, ensure_ascii=False)


def write_rl_prompts(problems: Iterable[Mapping], out: Path, references: Mapping[str, tuple[int, str]],
                     ref_source: str, meta_path: Path) -> dict:
    """RL prompts (the generation stage's boxed-answer messages) with labels; returns the counts written
    to `meta_path`: prompts with and without a reference length, and why not."""
    from tops_plugin.prompts import build_messages

    counts: Counter = Counter()
    lengths: list[int] = []

    def rows():
        for problem in problems:
            pid, answer = str(problem["id"]), str(problem["answer"])
            ref = references.get(pid)
            if ref is not None and ref[1] != answer:
                counts["without_ref_tokens.gold_differs"] += 1  # another problem under the same id
                ref = None
            elif ref is None:
                counts["without_ref_tokens.no_correct_sample"] += 1
            if ref is not None:
                lengths.append(ref[0])
            counts["prompts"] += 1
            yield {"id": problem["id"], "prompt": build_messages(str(problem["problem"]), None),
                   "label": rl_label(answer, None if ref is None else ref[0])}

    write_jsonl(out, rows())
    without = {key.split(".", 1)[1]: n for key, n in counts.items() if key.startswith("without_ref_tokens.")}
    meta = {
        "prompts": counts["prompts"],
        "with_ref_tokens": len(lengths),
        "without_ref_tokens": sum(without.values()),
        "without_ref_tokens_by_reason": without,
        "ref_source": ref_source,
        "ref_tokens": _spread(lengths),
    }
    with atomic_writer(meta_path, "w") as handle:
        json.dump(meta, handle, indent=2)
    log.info("wrote %d RL prompts -> %s (%d with ref_tokens, %d without)", meta["prompts"], out,
             meta["with_ref_tokens"], meta["without_ref_tokens"])
    return meta


def _spread(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1],
            "mean": sum(ordered) / len(ordered)}


def write_job_dir(job_dir: Path, reward: Mapping[str, Any]) -> None:
    """The folder Ray ships to every node: the reward file and its configuration."""
    from tops_plugin.reward.scorer import reward_func_path

    job_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(reward_func_path(), job_dir / REWARD_FILE)
    with atomic_writer(job_dir / REWARD_CONFIG_FILE, "w") as handle:
        yaml.safe_dump(dict(reward), handle, sort_keys=True)


def runtime_env(job_dir: Path, *, ship_plugin: bool, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The job's Ray runtime environment: the job folder as working directory, `tops_plugin` (when
    shipped) in `py_modules`, the reward config's path in `env_vars`; `extra` fields are merged in."""
    from tops_plugin.reward.scorer import CONFIG_ENV

    import tops_plugin

    env: dict[str, Any] = {"working_dir": str(job_dir)}
    modules = [str(Path(tops_plugin.__file__).resolve().parent)] if ship_plugin else []
    modules += list(extra.get("py_modules", []))
    if modules:
        env["py_modules"] = modules
    env["env_vars"] = {CONFIG_ENV: REWARD_CONFIG_FILE, **dict(extra.get("env_vars", {}))}
    env.update({key: value for key, value in extra.items() if key not in ("py_modules", "env_vars")})
    return env


def server_url(host: str | None, port: int) -> str:
    """The shared reward server's URL as OpenRLHF calls it; `{token}` is filled in when the job starts.
    Without `host`, this machine's name as other nodes would call it: its fully qualified name, or its
    host name where /etc/hosts maps that to `localhost` (which, on another node, is that node)."""
    import socket

    from recipes.serve_reward import TOKEN_PLACEHOLDER

    if host is None:
        host = socket.getfqdn()
        if host.split(".")[0] == "localhost":
            host = socket.gethostname()
    return f"http://{host}:{port}/get_reward?token={TOKEN_PLACEHOLDER}"
