"""Generation backends vs the raw engine call they wrap, on the same prompts and settings.

hf (CPU or GPU): the backend through `generate_to_file` (records, Qwen2.5 counts, file writes included)
vs a hand-written template + left-padded batch + `model.generate`, same seed (so the same tokens).
vllm (GPU, or CPU with vLLM's CPU build): the backend (n samples per request, one engine, the engine
options the backend chooses for this machine) vs raw `vllm.LLM.generate` on the same prompts and seeds;
`--vs-hf` then also runs the hf backend on the same requests (vLLM/hf ratio; CPU: hf in float32).
Runs alternate; medians are reported. Target: backend tokens/s >= 0.95 x raw.

    python perf/generation.py [--model smollm2-135m] [--prompts 8] [--max-tokens 64] [--repeats 3]
    python perf/generation.py --backend vllm [--model DIR] [--prompts 64] [--n-samples 8] [--max-tokens 256]
    OMP_NUM_THREADS=1 python perf/generation.py --backend vllm --prompts 8 --n-samples 4 --max-tokens 128 --vs-hf
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

from tops_plugin.generation import GenerationRequest, SamplingParams, generate_to_file, load_backend, sample_seed
from tops_plugin.prompts import build_messages
from tops_plugin.jsonl import read_jsonl

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k_test.jsonl"


def raw_generate(backend, problems, sampling: SamplingParams) -> tuple[float, int, list[str]]:
    """What a user would write by hand: template, left-padded batch, seed, `model.generate`, decode."""
    import torch

    tokenizer, model = backend.tokenizer, backend.hf_model
    started = time.perf_counter()
    prompts = [
        tokenizer.apply_chat_template(build_messages(p["problem"], None), tokenize=False, add_generation_prompt=True)
        for p in problems
    ]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    torch.manual_seed(sample_seed(sampling.seed, problems[0]["id"], None, 0))
    with torch.inference_mode():
        out = model.generate(**enc, **backend.generate_kwargs(sampling))
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    texts, tokens = [], 0
    eos = set(backend.eos_ids)
    for ids in new:
        end = next((i for i, t in enumerate(ids) if t in eos), None)
        kept = ids if end is None else ids[:end]
        tokens += len(ids) if end is None else end + 1
        texts.append(tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False))
    return time.perf_counter() - started, tokens, texts


def backend_generate(backend, problems, sampling: SamplingParams, out_dir: Path, run: int) -> tuple[float, int, list[str]]:
    requests = [GenerationRequest(p, None, 1, sampling) for p in problems]
    out = out_dir / f"run{run}.jsonl"
    started = time.perf_counter()
    summary = generate_to_file(backend, requests, out)
    elapsed = time.perf_counter() - started
    texts = [r["response"] for r in sorted(read_jsonl(out), key=lambda r: [p["id"] for p in problems].index(r["id"]))]
    return elapsed, summary.gen_tokens, texts


def vllm_main(args, problems) -> None:
    """Backend (one engine, data_parallel_size=1) vs raw `LLM.generate` with the same engine object."""
    import vllm

    from tops_plugin.generation.vllm import default_engine

    tmp = tempfile.TemporaryDirectory()
    model = args.model
    llm = default_engine(model, max_model_len=4096)  # the backend's own engine options (CPU defaults on CPU)
    backend = load_backend("vllm", model, engine_factory=lambda: llm)
    tokenizer = llm.get_tokenizer()
    raw_rates, ours_rates = [], []
    for run in range(args.repeats + 1):  # run 0 warms up
        started = time.perf_counter()
        prompts = [
            tokenizer.apply_chat_template(build_messages(p["problem"], "low"), tokenize=False, add_generation_prompt=True)
            for p in problems
        ]
        prompts = [{"prompt_token_ids": tokenizer(text, add_special_tokens=False)["input_ids"]} for text in prompts]
        params = [vllm.SamplingParams(n=args.n_samples, seed=run * 1000 + i, max_tokens=args.max_tokens) for i in range(len(prompts))]
        outs = llm.generate(prompts, params, use_tqdm=False)
        t_raw = time.perf_counter() - started
        n_raw = sum(len(o.token_ids) for r in outs for o in r.outputs)
        requests = [GenerationRequest(p, "low", args.n_samples, SamplingParams(max_tokens=args.max_tokens, seed=run)) for p in problems]
        out = Path(tmp.name) / f"run{run}.jsonl"
        started = time.perf_counter()
        summary = generate_to_file(backend, requests, out)
        t_ours = time.perf_counter() - started
        print(f"run {run}{' (warm-up)' if run == 0 else ''}: raw {n_raw / t_raw:10.1f} tok/s ({n_raw} tokens, {t_raw:.2f}s)   "
              f"backend {summary.gen_tokens / t_ours:10.1f} tok/s ({summary.gen_tokens} tokens, {t_ours:.2f}s)")
        if run:
            raw_rates.append(n_raw / t_raw)
            ours_rates.append(summary.gen_tokens / t_ours)
    raw_rate, ours_rate = statistics.median(raw_rates), statistics.median(ours_rates)
    print(f"vllm, model {model}, {len(problems)} prompts x n={args.n_samples} x {args.max_tokens} max new tokens")
    print(f"raw LLM.generate : median {raw_rate:10.1f} generated tok/s")
    print(f"vllm backend     : median {ours_rate:10.1f} generated tok/s")
    print(f"ratio backend/raw: {ours_rate / raw_rate:.3f}  (target >= 0.95)")
    if args.vs_hf:
        hf = load_backend("hf", model, batch_size=len(problems) * args.n_samples, dtype="float32")
        hf_rates = []
        for run in range(args.repeats + 1):
            requests = [GenerationRequest(p, "low", args.n_samples, SamplingParams(max_tokens=args.max_tokens, seed=run))
                        for p in problems]
            started = time.perf_counter()
            summary = generate_to_file(hf, requests, Path(tmp.name) / f"hf{run}.jsonl")
            elapsed = time.perf_counter() - started
            print(f"hf run {run}{' (warm-up)' if run == 0 else ''}: {summary.gen_tokens / elapsed:10.1f} tok/s")
            if run:
                hf_rates.append(summary.gen_tokens / elapsed)
        hf_rate = statistics.median(hf_rates)
        print(f"hf backend       : median {hf_rate:10.1f} generated tok/s")
        print(f"ratio vllm/hf    : {ours_rate / hf_rate:.3f}")
    tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--n-samples", type=int, default=8, help="vllm: samples per prompt")
    parser.add_argument("--model", default="smollm2-135m", help="model dir, hub id or alias")
    parser.add_argument("--vs-hf", action="store_true", help="vllm: also time the hf backend on the same requests")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    problems = list(islice(read_jsonl(args.data), args.prompts))
    if args.backend == "vllm":
        return vllm_main(args, problems)
    backend = load_backend("hf", args.model, batch_size=len(problems))
    # min-length-free sampling with one seed: both sides generate the very same tokens
    sampling = SamplingParams(max_tokens=args.max_tokens, seed=0)
    raw_times, ours_times, same = [], [], True
    with tempfile.TemporaryDirectory() as tmp:
        backend_generate(backend, problems[:2], SamplingParams(max_tokens=4), Path(tmp), -1)  # warm-up
        for run in range(args.repeats):
            t_raw, n_raw, texts_raw = raw_generate(backend, problems, sampling)
            t_ours, n_ours, texts_ours = backend_generate(backend, problems, sampling, Path(tmp), run)
            same &= texts_raw == texts_ours and n_raw == n_ours
            raw_times.append((t_raw, n_raw))
            ours_times.append((t_ours, n_ours))
            print(f"run {run}: raw {n_raw / t_raw:8.1f} tok/s ({t_raw:.2f}s)   backend {n_ours / t_ours:8.1f} tok/s ({t_ours:.2f}s)")
    raw_rate = statistics.median(n / t for t, n in raw_times)
    ours_rate = statistics.median(n / t for t, n in ours_times)
    print(f"model {args.model}, {len(problems)} prompts x {args.max_tokens} max new tokens, torch threads {torch.get_num_threads()}")
    print(f"raw model.generate : median {raw_rate:8.1f} generated tok/s")
    print(f"hf backend         : median {ours_rate:8.1f} generated tok/s")
    print(f"ratio backend/raw  : {ours_rate / raw_rate:.3f}  (target >= 0.95)   identical outputs: {same}")


if __name__ == "__main__":
    main()
