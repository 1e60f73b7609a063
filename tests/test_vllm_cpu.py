"""The vllm backend for real on vLLM's CPU build: the embedded SmolLM2-135M through the same path the GPU
cluster uses (`vllm.LLM`, `SamplingParams(n, seed)`, one engine per Ray actor). One engine is loaded per
test session (about 30 s)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from tops_plugin.generation import GenerationRequest, SamplingParams, generate_to_file, load_backend
from tops_plugin.generation import vllm as vllm_backend
from tops_plugin.generation.vllm import CPU_KV_CACHE_BYTES, cpu_engine_defaults
from tops_plugin.jsonl import read_jsonl

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")

PROBLEMS = [
    {"id": "add", "problem": "Tom has 5 apples and buys 3 more. How many apples does he have?", "answer": "8"},
    {"id": "sub", "problem": "Mia has 9 pens and gives 4 away. How many pens does she have?", "answer": "5"},
    {"id": "mul", "problem": "A box holds 6 eggs. How many eggs are in 2 boxes?", "answer": "12"},
]


def test_cpu_defaults_fill_in_only_what_is_not_given(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert cpu_engine_defaults({}) == {"enforce_eager": True, "enable_chunked_prefill": False,
                                       "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES}
    given = cpu_engine_defaults({"enforce_eager": False, "gpu_memory_utilization": 0.3})
    assert given == {"enforce_eager": False, "enable_chunked_prefill": False, "gpu_memory_utilization": 0.3}
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")  # vLLM's own knob sizes the cache: leave it to vLLM
    assert "kv_cache_memory_bytes" not in cpu_engine_defaults({})


@needs_vllm
@pytest.mark.parametrize("preset", [None, "1"])
def test_cpu_engine_core_runs_in_process_unless_the_user_chose(monkeypatch, preset):
    """On CPU the engine core runs in the calling process (two fewer processes importing torch and vLLM
    per load) on one compute thread; a `VLLM_ENABLE_V1_MULTIPROCESSING` the user set is left alone."""
    import vllm

    if preset is None:
        monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    else:
        monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", preset)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = {}
    monkeypatch.setattr(vllm_backend, "on_cpu", lambda: True)
    monkeypatch.setattr(vllm_backend, "_one_compute_thread", lambda: seen.update(one_thread=True))
    monkeypatch.setattr(vllm, "LLM", lambda **kwargs: seen.update(kwargs, env=os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"]))
    vllm_backend.default_engine("smollm2-135m")
    assert seen["env"] == (preset or "0") and seen["enforce_eager"] is True
    # in this process the engine computes on one thread, as its own worker process would bind itself
    assert seen.get("one_thread", False) is (preset is None)


@pytest.fixture(scope="session")
def ray_backend():
    """smollm2-135m (an alias: vLLM gets its converted folder) on one Ray actor of a 1-CPU local Ray."""
    ray = pytest.importorskip("ray")
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    backend = load_backend("vllm", "smollm2-135m", data_parallel_size=0, max_model_len=1024)
    try:
        yield backend
    finally:
        backend.close()
        if started_here:
            ray.shutdown()


def _requests(seed: int) -> list[GenerationRequest]:
    sampling = SamplingParams(temperature=1.0, max_tokens=24, seed=seed)
    return [GenerationRequest(p, effort, 2, sampling) for p in PROBLEMS for effort in ("low", None)]


@needs_vllm
@pytest.mark.slow
def test_real_engine_generates_every_sample_through_a_ray_actor(ray_backend, tmp_path):
    summary = generate_to_file(ray_backend, _requests(seed=1), tmp_path / "g.jsonl")
    records = list(read_jsonl(tmp_path / "g.jsonl"))
    assert summary.complete and summary.records == len(records) == 12
    assert {(r["id"], r["effort"], r["sample"]) for r in records} == {
        (p["id"], e, s) for p in PROBLEMS for e in ("low", None) for s in (0, 1)}
    assert all(r["response"].strip() and 0 < r["gen_tokens"] <= 24 and r["tokens"] > 0 for r in records)
    assert {r["finish_reason"] for r in records} <= {"stop", "length"}
    assert len(ray_backend._actors) == 1  # data_parallel_size=0 on a cluster without GPUs: one CPU engine
    by_key = {(r["id"], r["effort"], r["sample"]): r["response"] for r in records}
    assert sum(by_key[(p["id"], "low", 0)] != by_key[(p["id"], "low", 1)] for p in PROBLEMS) >= 2  # n samples differ


@needs_vllm
@pytest.mark.slow
def test_real_engine_is_reproducible_by_seed(ray_backend, tmp_path):
    first = list(ray_backend.generate(_requests(seed=7)))
    again = list(ray_backend.generate(_requests(seed=7)))
    other = list(ray_backend.generate(_requests(seed=8)))

    def texts(records):
        return {(r["id"], r["effort"], r["sample"]): r["response"] for r in records}

    assert texts(first) == texts(again)
    assert texts(first) != texts(other)


def test_engine_options_reach_the_backend_from_the_command_line(tmp_path, monkeypatch):
    from tops_plugin.cli.generate import backend_options, build_parser

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.jsonl").write_text('{"id": 1, "problem": "1+1?", "answer": "2"}\n')
    args = build_parser().parse_args(["p.jsonl", "-o", "g.jsonl", "--backend", "vllm", "--no-enforce-eager",
                                      "--engine-option", "kv_cache_memory_bytes=2147483648",
                                      "--engine-option", "dtype=bfloat16"])
    options = backend_options(args)
    assert options["enforce_eager"] is False and options["kv_cache_memory_bytes"] == 2 << 30
    assert options["dtype"] == "bfloat16"
    defaults = backend_options(build_parser().parse_args(["p.jsonl", "-o", "g.jsonl", "--backend", "vllm"]))
    assert "enforce_eager" not in defaults  # chosen by the engine for its machine
    with pytest.raises(SystemExit):
        build_parser().parse_args(["p.jsonl", "-o", "g.jsonl", "--engine-option", "no-value"])


def test_progress_bar_given_to_vllm_never_reports_zero_elapsed_time():
    from tops_plugin.generation.vllm import counting_bar

    counted: list[int] = []
    bar = counting_bar(counted.append)(total=4)
    assert bar.format_dict["elapsed"] > 0  # vLLM divides by it as soon as the first request finishes
    bar.update(2)
    assert counted == [2]
