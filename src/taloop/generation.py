"""Batched greedy and sampled decoding of the student: transformers (default) or vLLM."""

from __future__ import annotations

import gc
import hashlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from taloop.config import Params
from taloop.models import load_student
from taloop.training import chat_prompt

log = logging.getLogger(__name__)


class GenerationBackendError(RuntimeError):
    """The configured generation engine cannot run here."""


def complete(
    params: Params,
    base_dir: Path,
    adapter: Path | None,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    num_samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    desc: str = "generate",
) -> tuple[list[list[str]], Any]:
    """``num_samples`` completions per prompt from the student (base plus merged adapter) with
    ``generation.backend``, and the student's tokenizer."""
    if params.generation.backend == "vllm":
        return _vllm(
            base_dir, adapter, prompts, max_new_tokens, num_samples, temperature, seed, params.student.bf16
        )
    model, tok = load_student(base_dir, adapter)
    outputs = generate(
        model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, num_samples=num_samples,
        temperature=temperature, seed=seed, bf16=params.student.bf16, desc=desc,
    )  # fmt: skip
    del model
    gc.collect()
    return outputs, tok


def _vllm(
    base_dir: Path,
    adapter: Path | None,
    prompts: Sequence[str],
    max_new_tokens: int,
    num_samples: int,
    temperature: float,
    seed: int,
    bf16: bool,
) -> tuple[list[list[str]], Any]:
    try:
        from vllm import LLM, SamplingParams
    except ImportError as err:
        raise GenerationBackendError(
            "generation.backend: vllm is selected but the vllm package is not installed; install it "
            "(pip install vllm, on a GPU machine) or set generation.backend: transformers"
        ) from err
    # vLLM loads a plain checkpoint: merging the adapter first sidesteps its LoRA limits
    # (e.g. adapters on only some layers, lora.top_layers).
    model, tok = load_student(base_dir, adapter)
    with tempfile.TemporaryDirectory(prefix="taloop-vllm-") as merged:
        model.save_pretrained(merged, safe_serialization=True)
        tok.save_pretrained(merged)
        del model
        gc.collect()
        llm = LLM(model=merged, dtype="bfloat16" if bf16 else "auto", seed=seed)
        sampling = SamplingParams(
            n=num_samples, temperature=temperature, max_tokens=max_new_tokens, seed=seed
        )
        results = llm.generate([chat_prompt(tok, p) for p in prompts], sampling)
    log.info("vLLM generated %d x %d completions", len(prompts), num_samples)
    return [[c.text for c in r.outputs] for r in results], tok


def sample_seed(seed: int, prompt: str, sample_index: int) -> int:
    """Seed of the random stream behind sample ``sample_index`` of ``prompt``: a function of
    these three alone, so the sample does not depend on the batch it was drawn in."""
    return int.from_bytes(hashlib.sha256(f"{seed}\n{prompt}\n{sample_index}".encode()).digest(), "little")


class GumbelSampler(LogitsProcessor):
    """Temperature sampling by the Gumbel-max trick, for generate run greedily:
    argmax(logits / T + G), with G standard Gumbel noise, is a draw from softmax(logits / T).
    Each row draws its noise from its own generator, so a row's tokens depend on its own
    seed and logits only, never on transformers' global RNG or on the other rows."""

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        # NumPy's PCG64 rather than a torch.Generator: the full-vocabulary draw each row needs
        # at every step took ~10 ms for 48 rows x 49k tokens against ~30 ms with torch's
        # mt19937, and CPU draws are the same whatever device the model runs on.
        self.rngs = [np.random.Generator(np.random.PCG64(s)) for s in seeds]
        self._noise = np.empty((0, 0))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        rows, vocab = scores.shape
        if rows != len(self.rngs):
            raise ValueError(f"{rows} rows but {len(self.rngs)} seeds")
        if self._noise.shape != (rows, vocab):
            self._noise = np.empty((rows, vocab))
        for noise, rng in zip(self._noise, self.rngs, strict=True):
            rng.standard_exponential(out=noise)
        # -log E is standard Gumbel for E ~ Exp(1). E is drawn in float64 so the small values
        # that let an unlikely token win are not cut off at float32's 24-bit resolution; the
        # cast afterwards only rounds, and the clamp keeps log finite.
        exponential = torch.from_numpy(self._noise).to(torch.float32)
        gumbel = exponential.clamp_min_(torch.finfo(torch.float32).tiny).log_().neg_()
        return scores.to(torch.float32) / self.temperature + gumbel.to(scores.device)


def generate(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    num_samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    bf16: bool = False,
    desc: str = "generate",
) -> list[list[str]]:
    """``num_samples`` completions per prompt (greedy when temperature is 0, then all copies
    are the same). Sample j of a prompt depends only on (seed, prompt, j) and the model: not
    on batch size, the other prompts or their order (see :class:`GumbelSampler`). ``bf16``
    autocasts the matmuls (about 1.3x faster on CPUs with avx512_bf16)."""
    tok.padding_side = "left"  # decoder-only batches must end where generation starts
    sampling = temperature > 0
    copies = num_samples if sampling else 1
    outputs: list[list[str]] = []
    model.eval()
    with tqdm(total=len(prompts), desc=desc, unit="q") as bar:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            batch = [chat_prompt(tok, p) for p in chunk]
            enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            # Rows are prompt-major (row i*K + j = prompt i, sample j), lined up with the
            # sampler's seeds. Expanded here rather than by num_return_sequences, which greedy
            # generate refuses.
            enc = {k: v.repeat_interleave(copies, dim=0).to(model.device) for k, v in enc.items()}
            processors = LogitsProcessorList()
            if sampling:
                seeds = [sample_seed(seed, p, j) for p in chunk for j in range(copies)]
                processors.append(GumbelSampler(seeds, temperature))
            with torch.inference_mode(), torch.autocast(model.device.type, torch.bfloat16, enabled=bf16):
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    # Greedy over the sampler's perturbed scores: transformers' own RNG,
                    # shared by the whole batch, is never drawn from.
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    logits_processor=processors,
                    pad_token_id=tok.pad_token_id,
                )
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i in range(0, len(texts), copies):
                outputs.append(texts[i : i + copies] if sampling else texts[i : i + 1] * num_samples)
            bar.update(len(chunk))
    return outputs
