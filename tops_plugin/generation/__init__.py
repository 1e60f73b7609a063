"""Generation backends behind one interface: `vllm` (GPU or its CPU build; Ray data-parallel), `hf`, `openai`.

    backend = load_backend("hf", "smollm2-135m")
    requests = [GenerationRequest(row, effort, n_samples=4, sampling=SamplingParams(max_tokens=1024))
                for row in problems for effort in EFFORTS]
    summary = generate_to_file(backend, requests, "gens.jsonl")   # resumable, append-only

Backends are imported only when asked for, so this package imports without torch, vllm or openai. A
backend of your own needs no registration: pass it as ``"module:Class"`` (a class taking the model and
keyword options, with the `Backend` methods), e.g. ``load_backend("my_pkg.backends:TGIBackend", "qwen")``.
"""

from __future__ import annotations

import importlib

from tops_plugin.generation.base import (
    Backend,
    BadRequest,
    GenerationRequest,
    SamplingParams,
    sample_seed,
)
from tops_plugin.generation.resume import GenerationSummary, ProgressEvent, generate_to_file

__all__ = [
    "BACKENDS",
    "Backend",
    "BadRequest",
    "GenerationRequest",
    "GenerationSummary",
    "ProgressEvent",
    "SamplingParams",
    "generate_to_file",
    "load_backend",
    "sample_seed",
]

# name -> "module:class"; adding a backend is adding an entry.
BACKENDS: dict[str, str] = {
    "hf": "tops_plugin.generation.hf:HFBackend",
    "vllm": "tops_plugin.generation.vllm:VLLMBackend",
    "openai": "tops_plugin.generation.openai_api:OpenAIBackend",
}


def load_backend(name: str, model: str, **options) -> Backend:
    """Build the backend `name` (a `BACKENDS` name, or ``"module:Class"``) for `model` (a path, hub id,
    alias such as `smollm2-135m`, or API model).

    `options` go to the backend's constructor (e.g. `batch_size` for hf, `tensor_parallel_size` and
    `data_parallel_size` for vllm, `base_url` and `concurrency` for openai).
    """
    target = BACKENDS.get(name, name)
    module_name, _, class_name = target.partition(":")
    if not (module_name and class_name):
        raise ValueError(f"unknown backend {name!r} (choose from {', '.join(sorted(BACKENDS))}, or give module:Class)")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise  # the backend's module exists but lacks one of its own dependencies: say which
        raise ValueError(f"unknown backend {name!r}: no module {module_name!r}") from None
    except AttributeError:
        raise ValueError(f"unknown backend {name!r}: module {module_name!r} has no {class_name!r}") from None
    return cls(model, **options)
