"""Batched greedy and sampled decoding of the student: transformers (default) or vLLM.

With transformers, decoding runs its own loop (:func:`_decode`) rather than model.generate: the
K samples of a prompt share one prefill, and a row that ends leaves the batch at once, so the
steps after it cost only the rows still going. Each row's tokens are the ones model.generate
would pick. Evaluation and student sampling also end a row at its answer line
(:func:`states_answer`, :func:`answer_end`) instead of running on to EOS or max_new_tokens.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from taloop.core import precision
from taloop.core.errors import UsageError
from taloop.core.profiling import phase
from taloop.params.schema import Params
from taloop.student.kv_cache import prefill
from taloop.student.models import free_weights, load_student, store_for_autocast
from taloop.student.training import chat_prompt
from taloop.tasks.answers import final_answer_span

log = logging.getLogger(__name__)

RowStop = Callable[[Sequence[int], torch.Tensor], torch.Tensor]
"""``stop(rows, generated)``: which rows of ``generated`` (the batch rows ``rows``' tokens so
far) are done, as a bool tensor."""

AnswerRule = Callable[[int, str], bool]
"""``rule(i, text)``: whether ``text``, generated for prompt ``i`` and ending with a newline,
has stated its answer (see :func:`answer_end`)."""


class GenerationBackendError(UsageError, RuntimeError):
    """The configured generation engine cannot run here."""


# A line in the asked-for format opens with its marker ("The answer is X.", perhaps after
# markdown emphasis). Prose that mentions the phrase mid-line is no answer line: the default
# run's students wrote "...leaves no room for 'The answer is No' to satisfy the condition."
# and answered Yes on their last line.
_OPENS_ANSWER_LINE = re.compile(r"[\s*_#>`]*the (?:final )?answer is\b", re.IGNORECASE)


def states_answer(index: int, text: str) -> bool:
    """The default :data:`AnswerRule`: the line that ``text`` ends with opens with "The answer
    is" and states something after it (a bare "The answer is" may continue on the next line).

    It does not know the task, so it also ends a row whose X the task cannot read (e.g.
    "twelve" for a number), which may leave lenient extraction a later number to take; a
    caller that knows each prompt's task passes :func:`task_answered` instead, after which the
    only change is the one :func:`answer_end` describes."""
    line = text[text.rfind("\n", 0, len(text) - 1) + 1 :]
    return _OPENS_ANSWER_LINE.match(line) is not None and final_answer_span(line) is not None


def task_answered(extract_strict: Sequence[Callable[[str], Any]]) -> AnswerRule:
    """The task-aware rule: :func:`states_answer`, and prompt i's task reads a value from the
    text strictly (``extract_strict[i]``); evaluation and student sampling use it."""
    return lambda i, text: states_answer(i, text) and extract_strict[i](text) is not None


def answer_end(text: str, index: int, answered: AnswerRule) -> int | None:
    """Length of ``text`` through the first newline by which ``answered(index, ...)`` holds;
    None when no newline does. Generation stops a row there and returns ``text[:end]``.

    Why this keeps the extracted answer, and when it does not. Only complete lines are judged:
    X in "The answer is X" runs to the end of its line, so "The answer is 1" may still become
    "12". Extraction (taloop.tasks.answers) reads the LAST answer marker that states a value,
    leniently and strictly alike (answer markers come before every other marker and fallback).
    Let T = P + C be the full completion and P = ``text[:end]``, and let the rule imply that P
    states a value on an answer marker (``extract_strict(P) is not None``, as the task-aware
    rule in :func:`states_answer` does). Every marker of P is one of T with the same X, since
    each X in P ends at a newline inside P. So T reads as P unless C states a different value
    after another "the answer is". No stop short of EOS can rule that out, since any
    continuation may restate; the student learns replies that end with their answer line
    (taloop.teachers.rationales), so a restatement is a model straying from that format. The
    TA scores the returned text: what follows the answer line is not part of it.
    """
    for newline in re.finditer("\n", text):
        if answered(index, text[: newline.end()]):
            return newline.end()
    return None


def through_answer(text: str, index: int, answered: AnswerRule) -> str:
    """``text`` up to :func:`answer_end` (all of it when no line end satisfies ``answered``)."""
    end = answer_end(text, index, answered)
    return text if end is None else text[:end]


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
    answered: AnswerRule = states_answer,
    desc: str = "generate",
) -> tuple[list[list[str]], Any]:
    """``num_samples`` completions per prompt from the student (base plus merged adapter) with
    ``generation.backend``, each ending at its answer line (``answered``, see
    :func:`generate`), and the student's tokenizer."""
    bf16 = precision.student(params.student.bf16).bf16
    if params.generation.backend == "vllm":
        return _vllm(
            base_dir, adapter, prompts, max_new_tokens, num_samples, temperature, seed, bf16, answered,
        )  # fmt: skip
    model, tok = load_student(base_dir, adapter)
    if bf16:
        store_for_autocast(model, torch.bfloat16)
    outputs = generate(
        model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, num_samples=num_samples,
        temperature=temperature, seed=seed, bf16=bf16, answered=answered, desc=desc,
    )  # fmt: skip
    free_weights(model)
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
    answered: AnswerRule,
) -> tuple[list[list[str]], Any]:
    """As :func:`generate`, but vLLM runs every completion to EOS or max_tokens (its stop
    strings cannot say "a line that states the answer") and the texts are cut at
    :func:`answer_end` afterwards, so both backends return the same span of text."""
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
        free_weights(model)
        llm = LLM(model=merged, dtype="bfloat16" if bf16 else "auto", seed=seed)
        sampling = SamplingParams(
            n=num_samples, temperature=temperature, max_tokens=max_new_tokens, seed=seed
        )
        results = llm.generate([chat_prompt(tok, p) for p in prompts], sampling)
    log.info("vLLM generated %d x %d completions", len(prompts), num_samples)
    return [[through_answer(c.text, i, answered) for c in r.outputs] for i, r in enumerate(results)], tok


def sample_seed(seed: int, prompt: str, sample_index: int) -> int:
    """Seed of the random stream behind sample ``sample_index`` of ``prompt``: a function of
    these three alone, so the sample does not depend on the batch it was drawn in."""
    return int.from_bytes(hashlib.sha256(f"{seed}\n{prompt}\n{sample_index}".encode()).digest(), "little")


class GumbelSampler(LogitsProcessor):
    """Temperature sampling by the Gumbel-max trick, for greedy decoding (the decode loop, or
    model.generate): argmax(logits / T + G), with G standard Gumbel noise, is a draw from
    softmax(logits / T).
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

    def select(self, rows: Sequence[int]) -> None:
        """Keep these rows' streams only, in this order (the other rows left the batch)."""
        self.rngs = [self.rngs[i] for i in rows]


# model.generate would apply the options in a generation config other than these: logits
# processors (a repetition penalty, bad words, a minimum length...), another cache, beams.
# The decode loop applies none of them, so a model whose config sets one is decoded by
# model.generate itself (without the loop's savings) to keep computing the same tokens.
_LOOP_CONFIG = frozenset({
    "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "max_length", "max_new_tokens",
    # Sampling knobs: greedy decoding over the GumbelSampler's scores overrides or skips them.
    "do_sample", "temperature", "top_k", "top_p", "min_p", "typical_p",
    "output_attentions", "output_hidden_states", "output_scores", "output_logits",
    "return_dict_in_generate", "transformers_version", "_from_model_config",
})  # fmt: skip


def _config_beyond_loop(model: Any) -> list[str]:
    """The generation config options of ``model`` that the decode loop would not apply."""
    return sorted(set(model.generation_config.to_diff_dict()) - _LOOP_CONFIG)


@cache  # once per model and options: the HF teacher decodes one request per call
def _warn_beyond_loop(model: str, options: tuple[str, ...]) -> None:
    log.warning(
        "%s's generation config sets %s: decoding with model.generate, without the decode loop's "
        "shared prefill and early-leaving rows",
        model, ", ".join(options),
    )  # fmt: skip


@dataclass(frozen=True)
class _LineCheck:
    """Which rows have just ended a line by which their text states its answer."""

    tok: Any
    answered: AnswerRule
    prompt_of: Callable[[int], int]  # batch row -> index of its prompt in generate's prompts

    def __call__(self, rows: Sequence[int], generated: torch.Tensor) -> torch.Tensor:
        """``rows``: the batch row of each row of ``generated`` (its tokens so far)."""
        done = torch.zeros(len(rows), dtype=torch.bool)
        for i, (row, last) in enumerate(zip(rows, generated[:, -1].tolist(), strict=True)):
            # Only a token holding a newline ends a line; the others need no decoding.
            if "\n" in self.tok.decode([last]):
                text = self.tok.decode(generated[i], skip_special_tokens=True)
                done[i] = answer_end(text, self.prompt_of(row), self.answered) is not None
        return done.to(generated.device)


class _StopAtAnswer(StoppingCriteria):
    """A :data:`RowStop` (:class:`_LineCheck`) as a stopping criterion for model.generate."""

    def __init__(self, check: RowStop, prompt_length: int) -> None:
        self.check = check
        self.prompt_length = prompt_length

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        return self.check(range(len(input_ids)), input_ids[:, self.prompt_length :])


def _eos_ids(model: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def _decode(
    model: Any,
    enc: Mapping[str, torch.Tensor],
    copies: int,
    max_new_tokens: int,
    sampler: GumbelSampler | None,
    stop: RowStop | None,
) -> list[torch.Tensor]:
    """Each row's new tokens (prompt-major rows: row i*copies + j is prompt i, copy j; EOS kept
    when it came), the tokens model.generate picks greedily over ``sampler``'s scores with
    ``stop`` as a stopping criterion (tests/test_generation.py holds the two to the same texts).

    Three things differ from model.generate, none in what a row computes. The prompts are
    prefilled once and their KV cache copied ``copies`` times, where model.generate would run
    identical copies; the first token still comes from the prefill's last logits. The tokens all
    prompts open with are prefilled once for the batch (taloop.student.kv_cache.prefill), into a cache
    that writes in place (taloop.student.kv_cache.PreallocatedLayer). A row that
    ends leaves the batch (cache, positions, mask and sampler stream dropped), where
    model.generate would carry it, padded, until the last row ends: a row's tokens depend on its
    own prompt, stream and cache alone, so the rows left compute what they did beside it.
    """
    input_ids = enc["input_ids"]
    eos = torch.tensor(_eos_ids(model), dtype=torch.long, device=input_ids.device)
    with phase("prefill"):
        cache, logits, mask, positions = prefill(
            model, input_ids, enc["attention_mask"], capacity=input_ids.shape[1] + max_new_tokens
        )
    mask = None if bool(mask.all()) else mask
    cache.batch_repeat_interleave(copies)
    logits, positions = (t.repeat_interleave(copies, dim=0) for t in (logits, positions))
    if mask is not None:
        mask = mask.repeat_interleave(copies, dim=0)
    ids = input_ids.new_empty((len(logits), 0))  # each row's tokens so far
    rows = list(range(len(ids)))  # the batch row of each row still going
    out = [ids.new_empty(0)] * len(rows)
    with phase("decode"):
        for step in range(max_new_tokens):
            tokens = greedy_tokens(logits if sampler is None else sampler(ids, logits))
            ids = torch.cat([ids, tokens[:, None]], dim=-1)
            done = torch.isin(tokens, eos)
            if stop is not None:
                done |= stop(rows, ids)
            if step + 1 == max_new_tokens:
                done.fill_(True)
            for i in done.nonzero().flatten().tolist():
                out[rows[i]] = ids[i]
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero().flatten()
                rows = [rows[i] for i in keep.tolist()]
                ids, tokens, positions = ids[keep], tokens[keep], positions[keep]
                mask = None if mask is None else mask[keep]
                cache.batch_select_indices(keep)
                if sampler is not None:
                    sampler.select(keep.tolist())
            positions = positions + 1
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)
            logits = model(
                input_ids=tokens[:, None], attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=1,
            ).logits[:, -1]  # fmt: skip
    return out


def greedy_tokens(scores: torch.Tensor) -> torch.Tensor:
    """Each row's highest-scoring token: argmax's indices (the first of tied maxima, the first
    NaN if any), the same on bf16 scores as on their float32 copy, from ``max``, which took
    1.1 ms against argmax's 3-7 ms over 80 x 49k scores on 2 cores, at every decode step."""
    return scores.max(-1).indices


def _generate_plain(
    model: Any,
    enc: Mapping[str, torch.Tensor],
    copies: int,
    max_new_tokens: int,
    sampler: GumbelSampler | None,
    stop: RowStop | None,
    pad_token_id: int | None,
) -> list[torch.Tensor]:
    """:func:`_decode`'s tokens from model.generate, for models whose generation config asks
    for more than the loop applies (finished rows are padded, and skipped when decoded)."""
    # Expanded here rather than by num_return_sequences, which greedy generate refuses.
    enc = {k: v.repeat_interleave(copies, dim=0) for k, v in enc.items()}
    prompt_length = enc["input_ids"].shape[1]
    with phase("decode"):
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            # Greedy over the sampler's perturbed scores: transformers' own RNG, shared by
            # the whole batch, is never drawn from.
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            logits_processor=LogitsProcessorList([] if sampler is None else [sampler]),
            stopping_criteria=StoppingCriteriaList(
                [] if stop is None else [_StopAtAnswer(stop, prompt_length)]
            ),
            pad_token_id=pad_token_id,
        )
    return list(out[:, prompt_length:])


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
    answered: AnswerRule | None = None,
    desc: str = "generate",
) -> list[list[str]]:
    """``num_samples`` completions per prompt (greedy when temperature is 0, then all copies
    are the same), ``batch_size`` prompts at a time. Sample j of a prompt depends only on
    (seed, prompt, j) and the model: not on batch size, the other prompts or their order (see
    :class:`GumbelSampler`). ``bf16`` autocasts the matmuls (about 1.3x faster on CPUs with
    avx512_bf16).

    With ``answered``, a completion stops at the end of the first line by which
    ``answered(i, text so far)`` holds (i: its prompt's index in ``prompts``) and is returned
    through that line: the rest is never generated (see :func:`answer_end` for what that
    changes). Otherwise, or when no line end satisfies it, it runs to EOS or
    ``max_new_tokens``. Time goes to the "prefill" and "decode" profiling phases.
    """
    tok.padding_side = "left"  # decoder-only batches must end where generation starts
    sampling = temperature > 0
    copies = num_samples if sampling else 1
    beyond = _config_beyond_loop(model)
    if beyond:
        _warn_beyond_loop(model.config.name_or_path, tuple(beyond))
    decode = partial(_generate_plain, pad_token_id=tok.pad_token_id) if beyond else _decode
    outputs: list[list[str]] = []
    model.eval()
    with tqdm(total=len(prompts), desc=desc, unit="q") as bar:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            batch = [chat_prompt(tok, p) for p in chunk]
            enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)

            def prompt_of(row: int, start: int = start) -> int:
                return start + row // copies

            sampler = None
            if sampling:
                # Lined up with the rows: row i*K + j is prompt i, sample j.
                sampler = GumbelSampler(
                    [sample_seed(seed, p, j) for p in chunk for j in range(copies)], temperature
                )
            stop = None if answered is None else _LineCheck(tok, answered, prompt_of)
            with torch.inference_mode(), torch.autocast(model.device.type, torch.bfloat16, enabled=bf16):
                generated = decode(model, enc, copies, max_new_tokens, sampler, stop)
            texts = tok.batch_decode([t.tolist() for t in generated], skip_special_tokens=True)
            if answered is not None:
                texts = [through_answer(t, prompt_of(row), answered) for row, t in enumerate(texts)]
            for i in range(0, len(texts), copies):
                outputs.append(texts[i : i + copies] if sampling else texts[i : i + 1] * num_samples)
            bar.update(len(chunk))
    return outputs
