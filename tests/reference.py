"""Reference computations the signal tests compare taloop's batched code against."""

from __future__ import annotations

from typing import Any

import torch

from taloop.student.training import chat_prompt


def manual_logprobs(model: Any, tok: Any, prompt: str, output: str) -> list[float]:
    """The output tokens' log-probs from one forward pass over the unpadded sequence alone,
    at the model's default positions 0, 1, 2, ..."""
    prompt_ids = tok(chat_prompt(tok, prompt), add_special_tokens=False).input_ids
    output_ids = tok(output + tok.eos_token, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt_ids + output_ids])
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return [float(logp[len(prompt_ids) + j - 1, t]) for j, t in enumerate(output_ids)]
