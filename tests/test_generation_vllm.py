"""The vllm backend's request building, result mapping and sharding, through a stand-in engine.

The real engine needs a GPU: that test is marked `gpu` and skipped here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from types import SimpleNamespace

import pytest

from tops_plugin.prompts import EFFORT_PROMPTS
from tops_plugin.generation import GenerationRequest, SamplingParams, generate_to_file, load_backend, sample_seed
from tops_plugin.generation.vllm import EngineWorker, stream_chunks
from tops_plugin.jsonl import read_jsonl


class StandInTokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        assert tokenize is False and add_generation_prompt
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def __call__(self, text, add_special_tokens=True):
        assert add_special_tokens is False  # the template already has what it needs
        return {"input_ids": [len(word) for word in text.split()]}


class StandInEngine:
    """Mimics `vllm.LLM.generate`: one RequestOutput per prompt with `n` CompletionOutputs."""

    def __init__(self):
        self.calls: list[tuple[list, list]] = []

    def get_tokenizer(self):
        return StandInTokenizer()

    def generate(self, prompts, params, use_tqdm=True):
        assert use_tqdm is False
        self.calls.append((prompts, params))
        results = []
        for prompt, p in zip(prompts, params):
            outs = [
                SimpleNamespace(index=i, text=f"seed {p.seed} out {i} \\boxed{{{i}}}", token_ids=list(range(3 + i)),
                                finish_reason="length" if i % 2 else "stop")
                for i in range(p.n)
            ]
            results.append(SimpleNamespace(prompt_token_ids=prompt["prompt_token_ids"], outputs=outs[::-1]))
        return results


def make_backend(**options):
    engine = StandInEngine()
    backend = load_backend("vllm", "tiny-model", engine_factory=lambda: engine, params_factory=SimpleNamespace, **options)
    return backend, engine


def rows(n):
    return [{"id": i, "problem": f"Compute {i} times two.", "answer": str(2 * i)} for i in range(n)]


def test_request_building_uses_chat_template_and_per_request_seed():
    backend, engine = make_backend()
    sampling = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=100, seed=11, stop=("</s>",))
    list(backend.generate([GenerationRequest(rows(1)[0], "high", 4, sampling)]))
    (prompts, params), = engine.calls
    tok = StandInTokenizer()
    expected = tok(tok.apply_chat_template(
        [{"role": "system", "content": EFFORT_PROMPTS["high"]},
         {"role": "user", "content": "Compute 0 times two.\n\nPlease reason step by step, and put your final answer within \\boxed{}."}],
    ), add_special_tokens=False)["input_ids"]
    assert prompts == [{"prompt_token_ids": expected}]
    p = params[0]
    assert (p.n, p.temperature, p.top_p, p.max_tokens, p.stop) == (4, 0.7, 0.9, 100, ["</s>"])
    assert p.seed == sample_seed(11, 0, "high", 0)


def test_results_map_to_records_by_output_index_and_resume_subset(tmp_path):
    backend, engine = make_backend()
    request = GenerationRequest(rows(1)[0], "low", 4, SamplingParams(seed=2), samples=(1, 3))
    records = list(backend.generate([request]))
    assert engine.calls[0][1][0].n == 2
    assert engine.calls[0][1][0].seed == sample_seed(2, 0, "low", 1)
    by_sample = {r["sample"]: r for r in records}
    assert sorted(by_sample) == [1, 3]
    # output index 0 -> sample 1 (stop, 3 tokens), output index 1 -> sample 3 (length, 4 tokens)
    assert by_sample[1]["finish_reason"] == "stop" and by_sample[1]["gen_tokens"] == 3
    assert by_sample[3]["finish_reason"] == "length" and by_sample[3]["gen_tokens"] == 4
    assert by_sample[1]["response"].endswith("out 0 \\boxed{0}") and by_sample[1]["tokens"] > 3
    assert all(r["model"] == "tiny-model" and r["effort"] == "low" and r["seed"] == 2 for r in records)


def test_chunks_stream_back_before_the_next_is_generated(tmp_path):
    backend, engine = make_backend(chunk_size=2)
    requests = [GenerationRequest(r, None, 2, SamplingParams()) for r in rows(5)]
    stream = backend.generate(requests)
    first = next(stream)
    assert len(engine.calls) == 1 and first["id"] in (0, 1)
    rest = list(stream)
    assert len(engine.calls) == 3 and len(rest) + 1 == 10
    summary = generate_to_file(backend, requests, tmp_path / "g.jsonl")
    assert summary.records == 10
    again = generate_to_file(backend, requests, tmp_path / "g.jsonl")
    assert again.records == 0 and len(engine.calls) == 6  # resume asked the engine for nothing


def test_bad_requests_skipped_and_reported():
    backend, engine = make_backend()
    bad = [{"id": "x", "problem": ""}, {"problem": "no id"}]
    records = list(backend.generate([GenerationRequest(r, None, 1, SamplingParams()) for r in rows(1) + bad]))
    assert len(records) == 1 and [pid for pid, _ in backend.errors] == ["x", None]


def test_stream_chunks_shards_dynamically_over_workers():
    pool = ThreadPoolExecutor(3)
    per_worker: dict[int, list] = {0: [], 1: [], 2: []}
    in_flight = {0: 0, 1: 0, 2: 0}
    peak = {0: 0, 1: 0, 2: 0}
    lock = threading.Lock()

    def work(worker, chunk):
        time.sleep(0.03 if worker == 0 else 0.005)  # worker 0 is slow
        with lock:
            in_flight[worker] -= 1
        return [x * 10 for x in chunk]

    def submit(worker, chunk):
        with lock:
            in_flight[worker] += 1
            peak[worker] = max(peak[worker], in_flight[worker])
        per_worker[worker].append(chunk)
        return pool.submit(work, worker, chunk)

    def wait_one(futures):
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        future = next(iter(done))
        return future, future.result()

    chunks = [[i, i + 100] for i in range(30)]
    results = list(stream_chunks(iter(chunks), 3, submit, wait_one, in_flight=2))
    pool.shutdown()
    assert sorted(c[0] for c, _ in results) == list(range(30))  # every chunk exactly once
    assert all(result == [x * 10 for x in chunk] for chunk, result in results)
    assert max(peak.values()) <= 2
    assert len(per_worker[0]) < len(per_worker[1])  # the slow engine got less work


def test_engine_worker_runs_without_ray():
    worker = EngineWorker(StandInEngine, SimpleNamespace)
    from tops_plugin.generation.vllm import EngineItem

    out = worker.run([EngineItem(7, [{"role": "user", "content": "hi there"}], {"n": 2, "seed": 1})])
    assert out[0][0] == 7 and sorted(o[0] for o in out[0][1]) == [0, 1]


class PidEngine(StandInEngine):
    """Stand-in that signs each response with the process it ran in."""

    def generate(self, prompts, params, use_tqdm=True):
        results = super().generate(prompts, params, use_tqdm)
        for result in results:
            for out in result.outputs:
                out.text += f" pid={os.getpid()}"
        return results


@pytest.mark.slow
def test_data_parallel_over_ray_actors(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # CPU-only actors: leave device env alone
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import this test module
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    backend = load_backend("vllm", "tiny", data_parallel_size=2, actor_num_gpus=0, chunk_size=2,
                           engine_factory=PidEngine, params_factory=SimpleNamespace)
    try:
        requests = [GenerationRequest(r, e, 2, SamplingParams(seed=4)) for r in rows(7) for e in ("low", "high")]
        summary = generate_to_file(backend, requests, tmp_path / "dp.jsonl")
        records = list(read_jsonl(tmp_path / "dp.jsonl"))
        keys = {(r["id"], r["effort"], r["sample"]) for r in records}
        assert summary.records == len(records) == len(keys) == 28
        pids = {r["response"].rsplit("pid=", 1)[1] for r in records}
        assert len(pids) == 2 and str(os.getpid()) not in pids  # both engines worked, none in the driver
        for r in records:  # seeds travel with the request, whatever engine ran it
            assert f"seed {sample_seed(4, r['id'], r['effort'], 0)} " in r["response"]
    finally:
        backend.close()
        if started_here:
            ray.shutdown()


@pytest.mark.gpu
def test_real_vllm_engine_on_gpu(tmp_path):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (GPU machines only)")
    import torch

    from tops_plugin.generation.models import build_tiny_qwen2

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    model_dir = build_tiny_qwen2(tmp_path / "tiny-qwen2")
    backend = load_backend("vllm", str(model_dir), gpu_memory_utilization=0.3, max_model_len=512)
    requests = [GenerationRequest(r, e, 8, SamplingParams(max_tokens=32, seed=1)) for r in rows(3) for e in ("low", None)]
    summary = generate_to_file(backend, requests, tmp_path / "g.jsonl")
    recs = list(read_jsonl(tmp_path / "g.jsonl"))
    assert summary.records == len(recs) == 48
    assert {r["finish_reason"] for r in recs} <= {"stop", "length"} and all(r["gen_tokens"] > 0 for r in recs)
    backend.close()


def test_in_process_engine_reports_each_finished_request_to_progress(tmp_path):
    """vLLM advances its `use_tqdm` bar by a request's outputs as it finishes; that reaches progress."""

    class BarEngine(StandInEngine):
        def generate(self, prompts, params, use_tqdm=True):
            results = super().generate(prompts, params, False)
            bar = use_tqdm(total=len(prompts), desc="Processed prompts", dynamic_ncols=True)
            for p in params:  # requests finish one by one, each with its n outputs
                bar.update(p.n)
            bar.close()
            return results

    engine = BarEngine()
    backend = load_backend("vllm", "tiny-model", engine_factory=lambda: engine, params_factory=SimpleNamespace)
    events = []
    sampling = SamplingParams(max_tokens=8, seed=1)
    requests = [GenerationRequest(row, None, 2, sampling) for row in rows(3)]
    generate_to_file(backend, requests, tmp_path / "g.jsonl", progress=events.append)
    # Before any record is written, the three requests' 2 sequences each were counted as they finished.
    assert [e.done for e in events[:4]] == [0, 2, 4, 6]
    assert events[-1].done == 6 and all(a.done <= b.done for a, b in zip(events, events[1:]))
    assert backend.on_sequence_done is None
