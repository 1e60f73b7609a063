"""Run OpenRLHF 0.11's SFT and DPO trainers on a machine without CUDA.

    python -m recipes.openrlhf_cpu openrlhf.cli.train_sft --model.model_name_or_path … (OpenRLHF's flags)

The recipe's launcher uses this only when no CUDA device is present (`cpu_command`); on GPUs it runs
OpenRLHF's own command unchanged. The trainers run for real (DeepSpeed on its CPU accelerator, gloo,
CPU Adam); what stands between them and a CPU is small, and each patch here is one of these:

- `openrlhf.models` imports FlashAttention at module level (`ring_attn_utils`: `flash_attn.bert_padding`,
  `flash_attn.utils.distributed`) although only packed samples and ring attention use it. Stub modules
  take its place; they carry a `__spec__` because transformers probes packages with `find_spec`, and
  calling anything in them raises, so a code path that really needs FlashAttention fails loudly.
- `setup_distributed` calls `torch.cuda.set_device`, barriers call `torch.cuda.synchronize`, and
  `all_reduce`/`all_gather` move tensors to `torch.cuda.current_device()`: on CPU torch these become a
  no-op, a no-op and the device "cpu". (`init_device_mesh("cuda", …)` already works with gloo.)
- The process runs as rank 0 of 1 (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) with
  `DS_ACCELERATOR=cpu`, without the `deepspeed` launcher, which needs GPUs to count.

Flags the CPU cannot honour are refused before anything loads, naming the flag: FlashAttention
(`--ds.attn_implementation` must be `sdpa` or `eager`) and `--ds.packing_samples` (it needs
FlashAttention's varlen kernels). `--ds.adam_offload` selects DeepSpeed's CPU Adam, ~10x faster here.
PPO is not covered: its weight sync to vLLM needs NCCL.

Threads: unless `OMP_NUM_THREADS` is set, a run uses the cores idle when it starts (`training_threads`).
On an idle machine every core speeds up each step; on a busy one, threads beyond the idle cores spend
their time waiting for each other at every parallel region, so it takes what is free, at least one.

DeepSpeed compiles its CPU ops (CPU Adam, shared-memory collectives) with g++ the first time a trainer
loads them: minutes. `python -m recipes.openrlhf_cpu --build-ops` does it ahead of time (`make install` runs
it), so no training run pays for it. They are built for this environment's torch and DeepSpeed and kept in
it (`TORCH_EXTENSIONS_DIR`, by default `<environment>/torch_extensions`): torch's shared cache in the home
folder is keyed by op name only, so two environments would rebuild over each other's copy at every use.
"""

from __future__ import annotations

import importlib.machinery
import os
import runpy
import socket
import sys
import types
from collections.abc import Sequence

__all__ = ["CPU_MODULES", "CPU_OPS", "build_ops", "check_flags", "cpu_command", "cuda_available", "extensions_dir",
           "install_patches", "main", "training_threads"]

CPU_MODULES = ("openrlhf.cli.train_sft", "openrlhf.cli.train_dpo")
#: DeepSpeed's CPU op builders the trainers load: CPU Adam (`--ds.adam_offload`) and the shared-memory
#: collectives its CPU accelerator uses for every all-reduce.
CPU_OPS = ("CPUAdamBuilder", "ShareMemCommBuilder")
_FLASH_ATTN_MODULES = ("flash_attn", "flash_attn.bert_padding", "flash_attn.utils", "flash_attn.utils.distributed")
_FLASH_ATTN_NAMES = {
    "flash_attn.bert_padding": ("index_first_axis", "pad_input", "rearrange", "unpad_input"),
    "flash_attn.utils.distributed": ("all_gather",),
}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_command(command: Sequence[str], python: str = sys.executable) -> tuple[list[str], dict[str, str]] | None:
    """(argv, environment) that run a `deepspeed … --module openrlhf.cli.train_sft|train_dpo …` command on
    this machine's CPU, or None for any other command (it then runs unchanged)."""
    argv = [str(part) for part in command]
    module = next((part for part in argv if part in CPU_MODULES), None)
    if module is None or "--module" not in argv:
        return None
    args = argv[argv.index(module) + 1:]
    env = {"DS_ACCELERATOR": "cpu", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    return [python, "-m", __name__, module, *args], env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_flags(args: Sequence[str]) -> None:
    """Refuse OpenRLHF flags that need a GPU, naming them (ValueError)."""
    args = list(args)
    if "--ds.packing_samples" in args:
        raise ValueError("--ds.packing_samples needs FlashAttention (CUDA); drop it on CPU (training.common.packing: false)")
    attn = args[args.index("--ds.attn_implementation") + 1] if "--ds.attn_implementation" in args else None
    if attn not in ("sdpa", "eager"):
        raise ValueError(f"--ds.attn_implementation {attn or '(default flash_attention_2)'} needs CUDA; use sdpa on CPU "
                         "(training.common.attn_implementation: sdpa)")


def _flash_attn_unavailable(name: str):
    def missing(*args, **kwargs):
        raise RuntimeError(f"{name} is FlashAttention, which needs CUDA; it is a stub on CPU")

    return missing


def _stub_flash_attn() -> None:
    for name in _FLASH_ATTN_MODULES:
        if name in sys.modules:
            continue
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
        module.__path__ = []
        for attr in _FLASH_ATTN_NAMES.get(name, ()):
            setattr(module, attr, _flash_attn_unavailable(f"{name}.{attr}"))
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


def install_patches() -> None:
    """Make OpenRLHF's CUDA-only calls harmless on CPU torch (see the module docstring). Idempotent."""
    import torch

    if torch.cuda.is_available():
        raise RuntimeError("a CUDA device is present: run OpenRLHF's own command, not the CPU layer")
    _stub_flash_attn()
    torch.cuda.set_device = lambda device: None
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.current_device = lambda: "cpu"


def training_threads(sample_s: float = 0.5) -> int:
    """The cores idle right now (CPU use sampled over `sample_s` seconds, rounded), at least one."""
    import psutil

    cores = os.cpu_count() or 1
    busy = psutil.cpu_percent(interval=sample_s) / 100 * cores
    return max(1, min(cores, round(cores - busy)))


def extensions_dir() -> str:
    """Where this environment's compiled ops live: `TORCH_EXTENSIONS_DIR`, else `<sys.prefix>/torch_extensions`."""
    return os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(sys.prefix, "torch_extensions")


def _deepspeed_on_cpu() -> None:
    """DeepSpeed on its CPU accelerator, with this environment's compiled ops: the same for building them
    and for every run that loads them."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ["TORCH_EXTENSIONS_DIR"] = extensions_dir()


def build_ops() -> None:
    """Compile DeepSpeed's CPU ops into this environment's extension folder (`extensions_dir`); an op
    already built there loads in about a second."""
    _deepspeed_on_cpu()
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    for name in CPU_OPS:
        accelerator.create_op_builder(name).load(verbose=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--build-ops"]:
        build_ops()
        print(f"DeepSpeed CPU ops ready: {', '.join(CPU_OPS)}")
        return 0
    if not argv or argv[0] not in CPU_MODULES:
        print(f"usage: python -m {__name__} {{{','.join(CPU_MODULES)}}} OPENRLHF_FLAGS…\n"
              f"       python -m {__name__} --build-ops", file=sys.stderr)
        return 2
    module, args = argv[0], argv[1:]
    try:
        check_flags(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _deepspeed_on_cpu()
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if "OMP_NUM_THREADS" not in os.environ:  # before torch loads OpenMP: it reads this once
        os.environ["OMP_NUM_THREADS"] = str(training_threads())
    print(f"CPU training: {os.environ['OMP_NUM_THREADS']} thread(s)", file=sys.stderr, flush=True)
    install_patches()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
