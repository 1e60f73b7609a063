"""The pipeline's configuration: frozen dataclasses loaded from YAML, checked on load.

Every number of the method (learning rates, batch sizes, epochs, token gaps, sample counts) and every
cluster knob is a value here, never a constant in the stages. A mistake in a config file is reported
with the file and the dotted key path (`training.tag_sft.lr: expected a number, got 'fast'`) before
anything runs, because a typo found after a day of generation is a lost day.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "DEFAULT_STAGES",
    "STAGE_NAMES",
    "Cluster",
    "ConfigError",
    "Curation",
    "Data",
    "Eval",
    "EvalRun",
    "Generation",
    "HubSource",
    "Iteration",
    "Models",
    "Pipeline",
    "ProblemSet",
    "RL",
    "Recipe",
    "SelectionSettings",
    "TrainCommon",
    "TrainRun",
    "Training",
    "VerifierSettings",
    "config_hash",
    "load_config",
    "to_dict",
]

# The stage vocabulary, in pipeline order (the registry in recipes.planners follows it).
STAGE_NAMES: tuple[str, ...] = (
    "problems",
    "seed-gen",
    "seed-curate",
    "tag-sft",
    "effort-gen",
    "judge",
    "select",
    "tops-sft",
    "random-sft",
    "iter-gen",
    "iter-judge",
    "iter-select",
    "iter-sft",
    "iter-dpo",
    "eval",
    "rl-data",
    "rl",
)
# What `--stage all` runs unless the config says otherwise: the TOPS pipeline, not the RL recipe.
DEFAULT_STAGES: tuple[str, ...] = tuple(n for n in STAGE_NAMES if n not in ("random-sft", "rl-data", "rl"))


class ConfigError(ValueError):
    """A bad configuration value, named by file and dotted key path."""

    def __init__(self, source: str, key: str, reason: str):
        self.source, self.key, self.reason = source, key, reason
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key or '<top level>'}: {reason}")


class _Invalid(ValueError):
    """Raised by a dataclass's own checks; `key` is relative to that dataclass."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


def _check(ok: object, key: str, reason: str) -> None:
    if not ok:
        raise _Invalid(key, reason)


@dataclass(frozen=True)
class HubSource:
    """A dataset read with `datasets.load_dataset` (a hub id such as AI-MO/NuminaMath-CoT, or a local
    dataset folder of parquet/JSON files) and turned into problem rows.

    The gold answer is the `answer_key` column when given, else the last `\\boxed{}` of the
    `solution_key` column; rows whose answer cannot be extracted or parsed are dropped and counted.
    `filters` keep rows whose column equals a value or one of a list (`{source: [amc_aime, olympiads]}`).
    `revision` pins the dataset (a commit or tag); unpinned, the revision read is recorded.
    """

    name: str
    split: str = "train"
    config: str | None = None
    revision: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    problem_key: str = "problem"
    solution_key: str = "solution"
    answer_key: str | None = None
    id_key: str | None = None  # None: "NAME/SPLIT/ROW"

    def __post_init__(self) -> None:
        _check(self.name.strip(), "name", "must not be empty")
        for column, allowed in self.filters.items():
            values = allowed if isinstance(allowed, list) else [allowed]
            _check(values and all(isinstance(v, (str, int, float, bool)) for v in values), f"filters.{column}",
                   "expected a value or a non-empty list of values")


@dataclass(frozen=True)
class ProblemSet:
    """Problems (`id`, `problem`, `answer`) from a local JSONL file (relative paths are under `data.dir`)
    or a hub dataset (`hub`). `skip`/`limit` cut rows in file order; `sample` then draws a seeded random
    sample of N problems (after problems used by earlier pools are taken out)."""

    path: str | None = None
    hub: HubSource | None = None
    limit: int | None = None  # at most N rows; None = all
    skip: int = 0  # rows to pass over first (to keep sets from the same file apart)
    sample: int | None = None  # a seeded random sample of N problems; None = all
    seed: int = 0

    def __post_init__(self) -> None:
        _check((self.path is None) != (self.hub is None), "path", "give exactly one of path (local JSONL) or hub")
        _check(self.limit is None or self.limit >= 1, "limit", "must be >= 1 (or null for all rows)")
        _check(self.skip >= 0, "skip", "must be >= 0")
        _check(self.sample is None or self.sample >= 1, "sample", "must be >= 1 (or null for all problems)")

    @property
    def label(self) -> str:
        """A short description for plans and logs."""
        where = self.path if self.path is not None else f"{self.hub.name}:{self.hub.split}"
        if self.limit or self.skip:
            where += f"[{self.skip}:{'' if self.limit is None else self.skip + self.limit}]"
        return where + (f" (sample {self.sample}, seed {self.seed})" if self.sample else "")


@dataclass(frozen=True)
class Models:
    """Which model plays which part. Names are local paths, hub ids, or backend aliases."""

    base: str  # the model trained by tag-sft and tops-sft (paper: Qwen2.5-32B-Instruct)
    teacher: str  # answers the seed problems under each effort (paper: QwQ-32B-Preview)
    teacher_backend: str | None = None  # generation backend for the teacher (None: generation.backend)
    tag: str | None = None  # use this model instead of training one in tag-sft
    tops: str | None = None  # use this model instead of training one in tops-sft
    # Ranks responses and measures the seed gaps: the tokenizer of the model being trained (a hub name or
    # local folder; None: the offline Qwen2.5 tokenizer). Reported token figures are always Qwen2.5.
    curation_tokenizer: str | None = None
    # Measures selected rows against training.common.max_len as OpenRLHF will (prompt + response through
    # the trained model's chat template); None: Qwen2.5 tokens with ChatML stand in, named in meta.json.
    chat_tokenizer: str | None = None


@dataclass(frozen=True)
class Data:
    dir: str = "../shared/data"
    seed: ProblemSet = field(default_factory=lambda: ProblemSet("numinamath_seed.jsonl"))
    effort: ProblemSet = field(default_factory=lambda: ProblemSet("numinamath_50k.jsonl"))
    iteration: tuple[ProblemSet, ...] = ()


@dataclass(frozen=True)
class Generation:
    """Sampling for seed-gen, effort-gen and iter-gen; `options` go to the backend's constructor."""

    backend: Literal["vllm", "hf", "openai"] = "vllm"
    options: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16384
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.temperature >= 0, "temperature", "must be >= 0")
        _check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        _check(self.max_tokens >= 1, "max_tokens", "must be >= 1")


@dataclass(frozen=True)
class VerifierSettings:
    """The verifier pool's size and per-item deadline (the pool itself: `tops_plugin.judging.verifier.Verifier`)."""

    workers: int | None = None  # None: one per CPU core
    timeout: float = 5.0

    def __post_init__(self) -> None:
        _check(self.workers is None or self.workers >= 1, "workers", "must be >= 1 (or null)")
        _check(self.timeout > 0, "timeout", "must be > 0")


@dataclass(frozen=True)
class Curation:
    gap_tokens: int = 300  # medium - low and high - medium must both exceed this


@dataclass(frozen=True)
class SelectionSettings:
    """Which TOPS datasets the select stage writes (the selection itself: `tops_plugin.selection.modes`)."""

    random: bool = False  # also write the Random baseline's dataset (and train it in random-sft)
    seed: int = 0
    add_seed_low: bool = True  # add the low-effort seed responses to the TOPS set (paper step 4)


@dataclass(frozen=True)
class Iteration:
    samples: int = 8
    methods: tuple[Literal["sft", "dpo"], ...] = ("sft", "dpo")

    def __post_init__(self) -> None:
        _check(self.samples >= 1, "samples", "must be >= 1")
        _check(len(self.methods) >= 1, "methods", "name at least one of sft, dpo")


@dataclass(frozen=True)
class Cluster:
    """Where training runs: deepspeed over `nodes` x `gpus_per_node` (a hostfile for several nodes),
    Ray for the RL recipe (an existing cluster's job-submission address)."""

    nodes: int = 1
    gpus_per_node: int = 8
    hostfile: str | None = None
    master_addr: str | None = None
    master_port: int | None = None
    deepspeed: str = "deepspeed"  # launcher executable
    ray: str = "ray"  # ray CLI executable
    ray_address: str = "http://127.0.0.1:8265"
    python: str = "python3"  # interpreter on the cluster (ray jobs) and for evals.run

    def __post_init__(self) -> None:
        _check(self.nodes >= 1, "nodes", "must be >= 1")
        _check(self.gpus_per_node >= 1, "gpus_per_node", "must be >= 1")
        _check(self.nodes == 1 or self.hostfile, "hostfile", "is required when nodes > 1 (deepspeed hostfile)")


@dataclass(frozen=True)
class TrainCommon:
    """Settings shared by every OpenRLHF training stage."""

    max_len: int = 16384
    zero_stage: int = 3
    packing: bool = True
    gradient_checkpointing: bool = True
    micro_batch_size: int = 1
    param_dtype: Literal["bf16", "fp16"] = "bf16"
    attn_implementation: str = "flash_attention_2"
    adam_offload: bool = False
    save_steps: int = -1  # > 0: DeepSpeed checkpoints every N steps, resumed on rerun
    seed: int = 42
    extra_flags: dict[str, Any] = field(default_factory=dict)  # more OpenRLHF flags, e.g. {"logger.wandb.key": …}

    def __post_init__(self) -> None:
        _check(self.max_len >= 1, "max_len", "must be >= 1")
        _check(self.zero_stage in (0, 1, 2, 3), "zero_stage", "must be 0, 1, 2 or 3")
        _check(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")


@dataclass(frozen=True)
class TrainRun:
    lr: float
    batch_size: int
    epochs: int
    beta: float = 0.1  # DPO only
    extra_flags: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.lr > 0, "lr", "must be > 0")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(self.epochs >= 1, "epochs", "must be >= 1")
        _check(self.beta > 0, "beta", "must be > 0")


@dataclass(frozen=True)
class Training:
    common: TrainCommon = field(default_factory=TrainCommon)
    tag_sft: TrainRun = field(default_factory=lambda: TrainRun(1e-5, 32, 3))
    tops_sft: TrainRun = field(default_factory=lambda: TrainRun(1e-5, 96, 2))
    iter_sft: TrainRun = field(default_factory=lambda: TrainRun(1e-6, 32, 1))
    iter_dpo: TrainRun = field(default_factory=lambda: TrainRun(5e-7, 32, 3, beta=0.1))


def _check_reward(reward: dict[str, Any]) -> None:
    """The reward settings must make a `tops_plugin.reward.scorer.RewardConfig` (checked here, not on the cluster)."""
    from tops_plugin.reward.scorer import RewardConfig

    known = [f.name for f in dataclasses.fields(RewardConfig)]
    unknown = sorted(set(map(str, reward)) - set(known))
    _check(not unknown, f"reward.{unknown[0] if unknown else ''}", f"unknown key (expected one of: {', '.join(known)})")
    try:
        RewardConfig(**reward)
    except (TypeError, ValueError) as exc:
        raise _Invalid("reward", str(exc)) from None


@dataclass(frozen=True)
class RL:
    """`openrlhf.cli.train_ppo_ray` with our reward function (REINFORCE++-baseline by default)."""

    prompts: tuple[ProblemSet, ...] = (ProblemSet("math_train.jsonl"),)
    model: str | None = None  # None: the TOPS model of this run
    reward_url: str | None = None  # None: the installed tops_plugin/reward/reward_func.py
    estimator: Literal["gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo"] = (
        "reinforce_baseline"
    )
    n_samples_per_prompt: int = 8
    rollout_batch_size: int = 128
    train_batch_size: int = 128
    actor_lr: float = 5e-7
    init_kl_coef: float = 1e-3
    kl_loss: bool = True  # KL as a loss (k2), as OpenRLHF's REINFORCE++-baseline examples do
    kl_estimator: Literal["k1", "k2", "k3"] = "k2"
    temperature: float = 1.0
    max_new_tokens: int = 16384
    max_len: int = 18432  # prompt + response
    vllm_engines: int = 8
    vllm_tensor_parallel_size: int = 1
    colocate_all: bool = True
    episodes: int = 1
    extra_flags: dict[str, Any] = field(default_factory=dict)
    # The reward every rollout worker computes (`tops_plugin.reward.scorer.RewardConfig` keys: mode, floor,
    # tolerance, timeout, workers = verifier processes per reward process); shipped with the job.
    reward: dict[str, Any] = field(default_factory=lambda: {"mode": "thinking_optimal"})
    # Where each prompt's shortest correct length (its label's `ref_tokens`) comes from: this run's
    # iteration samples, a generation pass of the starting model over the prompts, or nowhere.
    ref_tokens: Literal["iteration", "generate", "none"] = "iteration"
    ref_samples: int = 4  # ref_tokens: generate -- samples per prompt
    ship_plugin: bool = True  # send tops_plugin to every node with the job (Ray runtime_env py_modules)
    # start: one shared tops_plugin.reward.server on this machine judges for the whole job (large clusters),
    # started before the job and stopped after it; the job reaches it at reward_server_host.
    reward_server: Literal["none", "start"] = "none"
    reward_server_host: str | None = None  # None: this machine's host name
    reward_server_port: int = 5000
    runtime_env: dict[str, Any] = field(default_factory=dict)  # more runtime_env fields (pip, env_vars, …)

    def __post_init__(self) -> None:
        _check(self.n_samples_per_prompt >= 1, "n_samples_per_prompt", "must be >= 1")
        _check(self.ref_samples >= 1, "ref_samples", "must be >= 1")
        _check(self.reward_server == "none" or not self.reward_url, "reward_server",
               "is 'start' but reward_url is set too: use one (a server you run yourself goes in reward_url)")
        _check(1 <= self.reward_server_port <= 65535, "reward_server_port", "must be a TCP port (1-65535)")
        _check("working_dir" not in self.runtime_env, "runtime_env.working_dir",
               "is the stage's job folder (reward file and config); ship other files with py_modules")
        modules, env_vars = self.runtime_env.get("py_modules", []), self.runtime_env.get("env_vars", {})
        _check(isinstance(modules, list) and all(isinstance(m, str) for m in modules), "runtime_env.py_modules",
               "expected a list of paths or URIs, as Ray takes it")
        _check(isinstance(env_vars, dict) and all(isinstance(v, str) for v in env_vars.values()),
               "runtime_env.env_vars", "expected a mapping of names to strings (Ray refuses other values): "
               "quote numbers")
        _check_reward(self.reward)
        _check(
            self.estimator not in ("rloo", "reinforce_baseline", "group_norm", "dr_grpo")
            or self.n_samples_per_prompt > 1,
            "n_samples_per_prompt",
            f"must be > 1 for estimator {self.estimator} (its baseline is the group of samples)",
        )
        _check(self.actor_lr > 0, "actor_lr", "must be > 0")
        _check(self.max_len > self.max_new_tokens, "max_len", "must exceed max_new_tokens (it holds the prompt too)")


@dataclass(frozen=True)
class EvalRun:
    """One `python -m evals.run` of the eval stage: a model under one decoding protocol.

    `model` is a stage's model name (base, teacher, tag, tops, random, iter-sft, iter-dpo, rl) or a path.
    `greedy` is the paper's instruct baseline (temperature 0, one sample); `efforts` evaluates under effort
    system prompts (the tag model's Table 2); `count: thought` counts only the thought part of
    thought-and-summary models (Sky-T1 / STILL-2), as the paper does. A bare string is `{model: NAME}`.
    """

    model: str
    greedy: bool = False
    efforts: tuple[Literal["low", "medium", "high"], ...] = ()
    count: Literal["response", "thought"] = "response"
    label: str | None = None  # output folder and row name; default: the model's name (+ "-greedy")

    def __post_init__(self) -> None:
        _check(self.model.strip(), "model", "must not be empty")
        _check(len(set(self.efforts)) == len(self.efforts), "efforts", "names an effort twice")
        _check(self.label is None or (self.label.strip() and "/" not in self.label), "label",
               "must be a non-empty folder name (no '/')")

    @property
    def name(self) -> str:
        """The run's folder under `RUN_DIR/eval` and its row label in the comparison."""
        if self.label:
            return self.label
        return Path(self.model).name + ("-greedy" if self.greedy else "")


@dataclass(frozen=True)
class Eval:
    """The evaluation stage: `python -m evals.run` per entry of `models`, then one comparison.

    `reference` holds published figures shown beside ours in the comparison, clearly labelled: a mapping
    `{source: TEXT, rows: [{model: NAME, run: OUR_RUN_LABEL, gsm8k: {accuracy: %, tokens: N}, ...}]}`
    (checked by `evals.reference`).
    """

    models: tuple[EvalRun, ...] = (EvalRun("tops"), EvalRun("iter-sft"), EvalRun("iter-dpo"))
    benchmarks: tuple[str, ...] = ("gsm8k", "math500", "aime2024")
    backend: Literal["vllm", "hf", "openai"] = "vllm"
    options: dict[str, Any] = field(default_factory=dict)  # --backend-option KEY=VALUE for evals.run
    n_samples: int = 5
    temperature: float = 1.0
    seed: int = 0
    max_tokens: int = 16384
    limit: int | None = None
    reference: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.models, "models", "name at least one model")
        names = [run.name for run in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        _check(not twice, "models", f"two runs share the label(s) {twice}: give one a `label`")
        _check(self.n_samples >= 1, "n_samples", "must be >= 1")
        _check(self.max_tokens >= 1, "max_tokens", "must be >= 1")
        _check(self.limit is None or self.limit >= 1, "limit", "must be >= 1 (or null for all problems)")
        if self.reference:
            from evals.reference import ReferenceError, parse_reference

            try:
                parse_reference(self.reference)
            except ReferenceError as exc:
                raise _Invalid(f"reference.{exc.key}" if exc.key else "reference", exc.reason) from None


@dataclass(frozen=True)
class Pipeline:
    """Which stages `--stage all` covers, and which of those are only printed (as with --dry-run)."""

    stages: tuple[str, ...] = DEFAULT_STAGES
    print_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key, names in (("stages", self.stages), ("print_only", self.print_only)):
            unknown = [n for n in names if n not in STAGE_NAMES]
            _check(not unknown, key, f"unknown stage(s) {unknown} (stages: {', '.join(STAGE_NAMES)})")


@dataclass(frozen=True)
class Recipe:
    models: Models
    run_dir: str = "runs/tops"
    data: Data = field(default_factory=Data)
    generation: Generation = field(default_factory=Generation)
    verifier: VerifierSettings = field(default_factory=VerifierSettings)
    curation: Curation = field(default_factory=Curation)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    iteration: Iteration = field(default_factory=Iteration)
    cluster: Cluster = field(default_factory=Cluster)
    training: Training = field(default_factory=Training)
    rl: RL = field(default_factory=RL)
    eval: Eval = field(default_factory=Eval)
    pipeline: Pipeline = field(default_factory=Pipeline)

    def data_root(self) -> Path:
        """Absolute `data.dir` (relative to the current directory; `~` and `$VARS` expanded)."""
        return Path(os.path.abspath(os.path.expandvars(os.path.expanduser(self.data.dir))))

    def data_path(self, problems: ProblemSet) -> Path:
        """Absolute path of a local problem file: relative paths are under `data.dir`, itself relative to
        the current directory; `~` and `$VARS` are expanded."""
        if problems.path is None:
            raise ValueError(f"{problems.label} is a hub dataset, not a local file")
        path = Path(os.path.expandvars(os.path.expanduser(problems.path)))
        if not path.is_absolute():
            path = self.data_root() / path
        return Path(os.path.abspath(path))


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a YAML recipe, apply dotted `overrides` ({"generation.max_tokens": 64}), and validate it."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"not valid YAML ({exc})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, "", f"expected a mapping at the top level, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value, source)
    return from_dict(raw, source)


def from_dict(raw: dict, source: str = "") -> Recipe:
    """Build and validate a `Recipe` from plain data (as loaded from YAML)."""
    return _build(Recipe, raw, "", source)


def _set_dotted(raw: dict, dotted: str, value: Any, source: str) -> None:
    node = raw
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(source, ".".join(parts[: i + 1]), "is not a mapping; cannot set " + dotted)
        node = child
    node[parts[-1]] = value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(source, prefix, f"expected a mapping, got {_kind(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, raw)) - set(fields))
    if unknown:
        raise ConfigError(
            source, _join(prefix, unknown[0]), f"unknown key (expected one of: {', '.join(fields)})"
        )
    values = {}
    for name, spec in fields.items():
        key = _join(prefix, name)
        if name in raw:
            values[name] = _convert(hints[name], raw[name], key, source)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(source, key, "is required")
    try:
        return cls(**values)
    except _Invalid as exc:
        raise ConfigError(source, _join(prefix, exc.key), exc.reason) from None


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _convert(hint: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, key, source)
    if value is None:
        raise ConfigError(source, key, "must not be null")
    if dataclasses.is_dataclass(hint):
        if hint is ProblemSet and isinstance(value, str):  # a bare path is a whole local file
            value = {"path": value}
        if hint is EvalRun and isinstance(value, str):  # a bare name is that model, default protocol
            value = {"model": value}
        return _build(hint, value, key, source)
    if origin is Literal:
        if value not in args:
            raise ConfigError(source, key, f"must be one of {', '.join(map(str, args))}, got {_kind(value)}")
        return value
    if origin is tuple:
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"expected a list, got {_kind(value)}")
        return tuple(_convert(args[0], item, f"{key}[{i}]", source) for i, item in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"expected a mapping, got {_kind(value)}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"expected an integer, got {_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"expected a number, got {_kind(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, f"expected a string, got {_kind(value)}")
        return value
    if hint is Any:
        return value
    raise ConfigError(source, key, f"unsupported type {hint!r}")  # a bug in this module, not in the file


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for hashing and printing."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def config_hash(settings: Any) -> str:
    """sha256 of the canonical JSON of `settings` (a dataclass or plain data)."""
    text = json.dumps(to_dict(settings), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
