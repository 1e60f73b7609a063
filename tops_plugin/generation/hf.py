"""Hugging Face `transformers` backend: batched sampling with left padding, CPU or GPU.

The default for machines without vLLM (and the demo model `smollm2-135m`). Samples of one request
are rows of a batch; each batch is seeded from the run seed and its first (id, effort, sample), so the
same run over the same problems gives the same responses.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator

from tops_plugin.generation.base import GenerationRequest, SamplingParams, sample_seed, valid_requests
from tops_plugin.generation.models import CONVERTED_MARK, ModelSource, converted_cache_dir, resolve_model, save_converted
from tops_plugin.generation.outputs import RawOutput, make_records

__all__ = ["HFBackend", "load_model"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def load_model(model: str, device: str | None = None, dtype: str | None = None, cache: bool = True):
    """(model, tokenizer) for a path, hub id or alias; cached in memory so several backends share one
    copy, and GGUF models also on disk, de-quantized (see `converted_cache_dir`)."""
    import torch

    source = resolve_model(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.startswith("cuda") else None)
    tokenizer, hf_model = _from_pretrained(source, torch_dtype, cache)
    hf_model = hf_model.to(device).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        pad = hf_model.generation_config.pad_token_id
        if pad is None:
            pad = _eos_ids(hf_model, tokenizer)[0]
        tokenizer.pad_token_id = pad
    return hf_model, tokenizer


def _from_pretrained(source: ModelSource, torch_dtype, cache: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype_kwargs = {} if torch_dtype is None else {"dtype": torch_dtype}
    cached = converted_cache_dir(source) if cache else None
    if cached is not None and (cached / CONVERTED_MARK).exists():
        try:
            return (AutoTokenizer.from_pretrained(cached),
                    AutoModelForCausalLM.from_pretrained(cached, **dtype_kwargs))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable converted-model cache %s (%s)", cached, exc)
            cached = None
    kwargs = source.from_pretrained_kwargs()
    tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **kwargs)
    hf_model = AutoModelForCausalLM.from_pretrained(source.name_or_path, **kwargs, **dtype_kwargs)
    if cached is not None and torch_dtype is None:
        save_converted(hf_model, tokenizer, cached)
    return tokenizer, hf_model


def _eos_ids(hf_model, tokenizer) -> list[int]:
    """End-of-sequence ids: the generation config's (GGUF tokenizers sometimes name the wrong one)."""
    eos = hf_model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


class FinishedRows:
    """A stopping criterion that never stops: it reports rows whose last token is an end-of-sequence id,
    once each, while `model.generate` runs (rows of a batch finish at different steps)."""

    def __init__(self, eos_ids: list[int], report: Callable[[int], None]):
        self.eos_ids, self.report = list(eos_ids), report
        self.finished = None

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        ended = torch.isin(input_ids[:, -1], torch.tensor(self.eos_ids, device=input_ids.device))
        if self.finished is None:
            self.finished = torch.zeros_like(ended)
        new = ended & ~self.finished
        self.finished |= ended
        if bool(new.any()):
            self.report(int(new.sum()))
        return torch.zeros_like(ended)


class HFBackend:
    """Generate with `model.generate`, `batch_size` rows (samples) at a time."""

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str | None = None,
        hf_model=None,
        tokenizer=None,
        count_tokenizer=None,
        cache_converted: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        if hf_model is None or tokenizer is None:
            hf_model, tokenizer = load_model(model, device, dtype, cache_converted)
        self.hf_model, self.tokenizer = hf_model, tokenizer
        self.eos_ids = _eos_ids(hf_model, tokenizer)
        self.count_tokenizer = count_tokenizer
        self.errors: list[tuple[object, str]] = []
        #: Called with how many rows of the running batch just ended (EOS), so that progress advances per
        #: finished sequence rather than per batch (`generate_to_file` sets it).
        self.on_sequence_done: Callable[[int], None] | None = None

    def close(self) -> None:
        """Nothing to release: the model stays cached for the next backend."""

    def prompt_text(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[dict]:
        for batch in self._batches(requests):
            yield from make_records(self._run_batch(batch), self.model, self.count_tokenizer)

    def _batches(self, requests: Iterable[GenerationRequest]) -> Iterator[list[tuple]]:
        """Rows (request, sample, messages, prompt) in batches that share sampling settings."""
        batch: list[tuple] = []
        for request, messages in valid_requests(requests, self.errors):
            prompt = self.prompt_text(messages)
            for sample in request.sample_indices:
                if batch and (len(batch) >= self.batch_size or batch[0][0].sampling != request.sampling):
                    yield batch
                    batch = []
                batch.append((request, sample, messages, prompt))
        if batch:
            yield batch

    def _run_batch(self, batch: list[tuple]) -> list[RawOutput]:
        import torch

        first_request, first_sample = batch[0][0], batch[0][1]
        sampling: SamplingParams = first_request.sampling
        enc = self.tokenizer(
            [row[3] for row in batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.hf_model.device)
        torch.manual_seed(sample_seed(sampling.seed, first_request.id, first_request.effort, first_sample))
        kwargs = self.generate_kwargs(sampling)
        if self.on_sequence_done is not None:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([FinishedRows(self.eos_ids, self.on_sequence_done)])
        with torch.inference_mode():
            out = self.hf_model.generate(**enc, **kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        outputs = []
        for (request, sample, messages, _), ids in zip(batch, new_tokens):
            response, finish, n_tokens = self._decode(ids, sampling)
            outputs.append(RawOutput(request, sample, messages, response, finish, n_tokens))
        return outputs

    def generate_kwargs(self, sampling: SamplingParams) -> dict:
        """`model.generate` keyword arguments for one batch's sampling settings."""
        kwargs: dict = {
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.eos_ids,
        }
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=None)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        return kwargs

    def _decode(self, ids: list[int], sampling: SamplingParams) -> tuple[str, str, int]:
        """(text, finish reason, generated tokens) of one row; the text ends before EOS/stop string."""
        eos = set(self.eos_ids)
        end = next((i for i, tok in enumerate(ids) if tok in eos), None)
        if end is not None:
            kept, finish, n_tokens = ids[:end], "stop", end + 1
        else:
            kept, finish, n_tokens = ids, "length", len(ids)
        text = self.tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        for stop in sampling.stop:
            cut = text.find(stop)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        return text, finish, n_tokens
