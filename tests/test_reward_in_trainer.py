"""The reward file inside a trainer-like process: a `__main__` that takes seconds to import (as one that
imports torch does) must never be imported by the verifier's workers, and worker start-up must never be
charged to an item's deadline. A correct answer is never scored 0 for want of a ready worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tops_plugin.reward.scorer import reward_func_path

REPO = Path(__file__).resolve().parent.parent

TRAINER = textwrap.dedent(
    """
    import os, time
    with open(os.environ["IMPORT_LOG"], "a") as log:   # one line per import of this module
        log.write(f"{os.getpid()} {__name__}\\n")
    time.sleep(3.0)                                      # a trainer's heavy imports

    import importlib.util, json, sys
    from concurrent.futures import ThreadPoolExecutor

    def load_reward_func(path):
        spec = importlib.util.spec_from_file_location("reward_func", path)   # as OpenRLHF does
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.reward_func

    if __name__ == "__main__":
        reward_func = load_reward_func(sys.argv[1])
        items = []
        for i in range(48):
            if i % 8 == 3:
                items.append(("hostile", "<|im_start|>assistant\\n$\\\\boxed{9^{9^{9^{9}}}}$", "5"))
            else:
                gold = str(i) if i % 3 else str(i + 1)
                items.append(("ordinary", f"<|im_start|>assistant\\nso the answer is $\\\\boxed{{{i}}}$.", gold))

        def reward(item):
            kind, query, gold = item
            return float(reward_func([query], [""], [gold])["rewards"][0])

        rounds = []
        for _ in range(2):
            with ThreadPoolExecutor(max_workers=32) as threads:   # OpenRLHF's asyncio.to_thread calls
                rounds.append(list(threads.map(reward, items)))
        print(json.dumps({"kinds": [kind for kind, _, _ in items], "rounds": rounds}))
    """
)


@pytest.mark.slow
def test_reward_func_under_a_slow_main_module_scores_every_ordinary_item_right(tmp_path: Path) -> None:
    script, log, config = tmp_path / "trainer.py", tmp_path / "imports.log", tmp_path / "reward.yaml"
    script.write_text(TRAINER)
    config.write_text("mode: correct\ntimeout: 2.0\n")
    env = {**os.environ, "IMPORT_LOG": str(log), "TOPS_REWARD_CONFIG": str(config)}
    proc = subprocess.run(
        [sys.executable, str(script), str(reward_func_path())],
        capture_output=True, text=True, timeout=240, cwd=REPO, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = [1.0 if i % 3 else 0.0 for i in range(48)]
    for n, rewards in enumerate(out["rounds"]):
        for i, (kind, reward) in enumerate(zip(out["kinds"], rewards)):
            if kind == "ordinary":
                assert reward == expected[i], f"round {n}, item {i}: reward {reward}, expected {expected[i]}"
            else:
                assert reward == 0.0
    # The main module ran once, in the trainer itself: no worker imported or ran it.
    imports = log.read_text().splitlines()
    assert len(imports) == 1 and imports[0].endswith(" __main__"), imports
