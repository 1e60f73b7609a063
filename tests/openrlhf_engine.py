"""A stand-in for OpenRLHF's vLLM engine, for tests that drive OpenRLHF's own agent executor."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace


class Engine:
    """Answers each prompt with a preset response, then EOS, as OpenRLHF's engine wrapper returns it."""

    def __init__(self, tokenizer, responses: dict[str, str]):
        self.tokenizer, self.responses = tokenizer, responses

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        prompt = self.tokenizer.decode(prompt_token_ids, skip_special_tokens=False)
        text = self.responses[prompt] + "<|im_end|>"
        ids = self.tokenizer(text=text, add_special_tokens=False)["input_ids"]
        await asyncio.sleep(0)
        return SimpleNamespace(
            outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)]
        )
