"""The verifier as Ray actors (the server's --ray option), on a local one-CPU Ray instance."""

from __future__ import annotations

import shutil
import tempfile
import time

import pytest

from tops_plugin.reward.scorer import RewardConfig, Scorer

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'tops-plugin[ray]')")


@pytest.mark.slow
def test_ray_verifier_judges_in_order_with_deadline(monkeypatch):
    from tops_plugin.judging.ray_verifier import RayVerifier

    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no accelerators here: silence Ray's notice
    temp_dir = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit in 107 bytes
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    try:
        with RayVerifier(actors=1, workers=1, timeout=2.0, batch=2) as verifier:
            assert verifier.judge("so \\boxed{42}", "42").verdict == "correct"
            pairs = [
                ("\\boxed{1}", "1"),
                ("\\boxed{2}", "3"),
                ("nothing", "1"),
                ("$\\boxed{9^{9^{9^{9}}}}$", "1"),
                ("\\boxed{\\frac12}", "0.5"),
            ]
            started = time.monotonic()
            verdicts = [v.verdict for v in verifier.judge_many(pairs)]
            assert verdicts == ["correct", "wrong", "no_answer", "timeout", "correct"]
            assert time.monotonic() - started < 2.0 + 5.0
            out = Scorer(RewardConfig(), verifier).score(
                ["<|im_start|>assistant\n\\boxed{7}<|im_end|>"], [None], ["7"]
            )
            assert out["rewards"] == [1.0]
            started = time.monotonic()  # a budget shorter than the deadline bounds the whole call
            assert [v.verdict for v in verifier.judge_many(pairs[3:4], budget=0.5)] == ["timeout"]
            assert time.monotonic() - started < 0.5 + 1.5
        assert ray.is_initialized()  # the caller started Ray, so the caller stops it
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
