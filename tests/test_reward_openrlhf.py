"""Contract: the installed OpenRLHF loads tops_plugin/reward/reward_func.py and gets correct rewards through its own
reward path (`SingleTurnAgentExecutor.execute` -> `asyncio.to_thread(reward_func, ...)`), concurrently and
within the deadline, hostile samples included. Only the vLLM engine is a stand-in."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from tops_plugin.reward.scorer import CONFIG_ENV, LOG_KEYS, reward_func_path

from openrlhf_engine import Engine

agent = pytest.importorskip("openrlhf.utils.agent", reason="OpenRLHF 0.11 is not installed")

TIMEOUT_S = 2.0
HOSTILE = ("\\boxed{9^{9^{9^{9}}}}", "The tower is huge: $\\boxed{9^{9^{9^{9}}}}$")


def chat_prompt(problem: str) -> str:
    return (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        f"<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.fixture(scope="module")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    from tops_plugin.tokens import load_tokenizer

    return transformers.PreTrainedTokenizerFast(tokenizer_object=load_tokenizer())


@pytest.fixture
def reward_process(tmp_path, monkeypatch):
    """A fresh process-wide scorer configured through TOPS_REWARD_CONFIG; closed afterwards."""
    import tops_plugin.reward.scorer as reward

    config = tmp_path / "reward.yaml"
    config.write_text(f"mode: thinking_optimal\nfloor: 0.5\ntimeout: {TIMEOUT_S}\nworkers: 2\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setattr(reward, "_shared", None)
    yield reward
    if reward._shared is not None:
        reward._shared.verifier.close()


def build_samples(count: int) -> list[dict]:
    """Problems `a + b` with correct (some with a reference length), wrong, empty and hostile answers."""
    from tops_plugin.tokens import count_tokens

    samples = []
    for i in range(count):
        a, b = 3 * i + 1, 7 * i + 2
        problem, gold = f"Problem {i}: what is {a} + {b}?", str(a + b)
        kind = ["correct", "long_correct", "wrong", "no_answer"][i % 4] if i not in (13, 42) else "hostile"
        if kind == "correct":
            response = f"{a} + {b} = {a + b}. So the answer is $\\boxed{{{a + b}}}$."
        elif kind == "long_correct":
            response = (
                f"{a} + {b} = {a + b}. Let me verify that again carefully. " * 4 + f"\\boxed{{{a + b}}}"
            )
        elif kind == "wrong":
            response = f"I think it is \\boxed{{{a + b + 1}}}."
        elif kind == "no_answer":
            response = "Let me think about this for a while."
        else:
            response = HOSTILE[i % 2]
        label, expected = gold, 0.0
        if kind in ("correct", "long_correct"):
            length = count_tokens([response])[0]
            ref = length // (2 if kind == "long_correct" else 1)
            label = json.dumps({"answer": gold, "ref_tokens": ref})
            expected = (
                0.5 + 0.5 * ref / length
            )  # thinking_optimal, floor 0.5: 1.0, or about 0.75 at twice the length
        samples.append(
            {
                "prompt": chat_prompt(problem),
                "label": label,
                "response": response,
                "kind": kind,
                "expected": expected,
            }
        )
    return samples


def test_openrlhf_loads_reward_file_and_rewards_64_concurrent_samples(hf_tokenizer, reward_process):
    executor = agent.SingleTurnAgentExecutor(remote_rm_url=str(reward_func_path()))
    assert executor.reward_func is not None
    samples = build_samples(64)
    engine = Engine(hf_tokenizer, {s["prompt"]: s["response"] for s in samples})
    params = SimpleNamespace(max_tokens=1024, logprobs=None)

    async def run_all(batch):
        return await asyncio.gather(
            *(executor.execute(s["prompt"], s["label"], params, 4096, hf_tokenizer, engine) for s in batch)
        )

    asyncio.run(run_all(samples[:1]))  # the pool starts lazily on the first call: keep that out of the timing
    started = time.monotonic()
    outputs = asyncio.run(run_all(samples))
    elapsed = time.monotonic() - started

    assert elapsed < TIMEOUT_S + 3.0, f"64 samples took {elapsed:.1f}s"
    for sample, out in zip(samples, outputs):
        assert isinstance(out["reward"], torch.Tensor) and out["reward"].shape == (1,)
        assert out["reward"].item() == pytest.approx(sample["expected"]), sample["kind"]
        assert out["scores"].item() == (1.0 if sample["kind"] in ("correct", "long_correct") else 0.0)
        assert set(out["extra_logs"]) == set(LOG_KEYS)
        logs = out["extra_logs"]
        if sample["kind"] == "hostile":
            assert logs["timeouts"] == 1.0
        if sample["kind"] == "no_answer":
            assert logs["no_answer"] == 1.0
    assert reward_process._shared.verifier.workers == 2  # one pool, shared by OpenRLHF's threads


def test_reward_func_never_raises_on_garbage(reward_process):
    import importlib.util

    spec = importlib.util.spec_from_file_location("reward_func", reward_func_path())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for queries, prompts, labels in [
        (None, None, None),
        ([None], [None], [None]),
        (["x"], ["y"], [{"no": 1}]),
        (["\x00\ud800"], [""], ["1"]),
    ]:
        out = module.reward_func(queries, prompts, labels)
        assert out["rewards"].dtype == torch.float32 and bool((out["rewards"] == 0).all())
        assert set(out["extra_logs"]) == set(LOG_KEYS)


def test_reward_path_command_prints_the_file():
    out = subprocess.run(
        [sys.executable, "-m", "tops_plugin.reward_path"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(reward_func_path()) and reward_func_path().is_file()


def test_rewards_compose_with_openrlhf_length_penalties(reward_process):
    """OpenRLHF's own overlong and stop-properly penalties act on our rewards afterwards (not re-implemented)."""
    import importlib.util

    penalties = pytest.importorskip("openrlhf.trainer.ppo_utils.length_penalty")
    spec = importlib.util.spec_from_file_location("reward_func", reward_func_path())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from tops_plugin.tokens import count_tokens

    response = "7 * 6 = 42, so the answer is \\boxed{42}."
    ref = count_tokens([response])[0]
    prompt = chat_prompt("What is 7 times 6?")
    label = json.dumps({"answer": "42", "ref_tokens": ref})
    rewards = [
        module.reward_func([prompt + response + "<|im_end|>"], [prompt], [label])["rewards"] for _ in range(3)
    ]
    assert [r.item() for r in rewards] == [1.0, 1.0, 1.0]
    # As OpenRLHF builds experiences (samples_generator: rewards=torch.tensor([reward_val])).
    lengths, truncated = [200, 950, 1000], [False, False, True]
    experiences = [
        SimpleNamespace(
            rewards=torch.tensor([r]),
            response_length=torch.tensor([n]),
            truncated=torch.tensor([t]),
            info={"reward": torch.tensor([r])},
        )
        for r, n, t in zip(rewards, lengths, truncated)
    ]
    args = SimpleNamespace(
        reward=SimpleNamespace(
            overlong_buffer_len=100, overlong_penalty_factor=1.0, stop_properly_penalty_coef=0.0
        ),
        rollout=SimpleNamespace(max_new_tokens=1000),
        data=SimpleNamespace(max_len=4096),
    )
    penalties.apply_length_penalties(experiences, args)
    assert [e.rewards.item() for e in experiences] == [pytest.approx(1.0), pytest.approx(0.5), 0.0]


def test_bad_config_fails_when_openrlhf_loads_the_file(tmp_path, monkeypatch):
    config = tmp_path / "reward.yaml"
    config.write_text("mode: shortest\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    with pytest.raises(ValueError, match="reward.yaml.*shortest"):
        agent.SingleTurnAgentExecutor(remote_rm_url=str(reward_func_path()))
