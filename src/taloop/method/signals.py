"""The paper's signals: student self-consistency and a TA model's confidence in an output.

TA confidence comes from one forward pass of the TA over (prompt, output): the log-probability
of every output token (:func:`output_logprobs`), summarised by the :data:`TA_MEASURES`, all
"higher = more confident":

- ``mean_logprob``: mean token log-prob (the paper's length-normalised likelihood is its exp);
- ``min_logprob``: the least likely token (one slip anywhere makes an output suspect);
- ``local_window``: mean of the lowest 10% of the means of :data:`WINDOW`-token windows (a
  short wrong step, not diluted by a long right rationale, nor as noisy as one token);
- ``answer_logprob``: summed log-prob of the final answer's tokens;
- ``contrastive``: log P(output) - log P(the output with its final answer swapped for the most
  plausible alternative), from one more pass over the swapped outputs: how much the TA
  prefers this answer to its nearest rival, given the same rationale.

The judge (P(yes) to "is this answer correct?") is a separate, costlier prompt, run only
when asked for.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from taloop.core.profiling import phase

# The measures are listed in the params schema (ta.scorer names them), which must not import
# torch; this module re-exports them.
from taloop.params.schema import TA_MEASURES
from taloop.student.loss import WeightedCollator, scored_positions
from taloop.student.training import TrainExample, chat_prompt, encode
from taloop.tasks.answers import _NUMBER, _YES_NO, final_answer_span, normalize_number
from taloop.tasks.prompts import render
from taloop.teachers.rationales import _OPPOSITE

log = logging.getLogger(__name__)

JUDGE_TEMPLATE = "judge_v1"
WINDOW = 4  # tokens per local window: about one number or short phrase
LOW_WINDOW_SHARE = 0.1  # local_window averages this share of the least likely windows
MAX_LENGTH = 4096  # prompt + output tokens the TA reads; longer outputs lose their tail


@dataclass(frozen=True)
class Consistency:
    majority: str | None  # None: no sample had a parsable answer
    share: float  # share of the K samples that agree with the majority answer
    entropy: float  # of the answer distribution, in nats (0 = all agree)
    majority_index: int  # first sample giving the majority answer


def self_consistency(answers: Sequence[str | None]) -> Consistency:
    """Majority answer of K samples and the share agreeing with it.

    An unparsable sample (None) is its own distinct answer: two samples that both fail to
    answer do not agree, so every None lowers the share and raises the entropy. The majority
    is the most common parsed answer (ties: the one seen first); only when no sample parsed
    is it None, with share 1/K.
    """
    if not answers:
        raise ValueError("self-consistency needs at least one sample")
    k = len(answers)
    counts = Counter(a for a in answers if a is not None)
    singletons = k - sum(counts.values())  # the Nones, one category each
    entropy = -sum((c / k) * math.log(c / k) for c in counts.values()) + singletons * math.log(k) / k
    if not counts:
        return Consistency(None, 1 / k, entropy + 0.0, 0)
    majority, top = counts.most_common(1)[0]  # Counter keeps first-seen order on ties
    return Consistency(majority, top / k, entropy + 0.0, answers.index(majority))


# --- TA measures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredOutput:
    logprobs: list[float]  # log P of each output token given everything before it; EOS last
    offsets: list[tuple[int, int]] | None  # each token's character span in the output text


def _output_offsets(tok: Any, output: str) -> list[tuple[int, int]] | None:
    """Character spans of the output's tokens, tokenized exactly as :func:`encode` does
    (output + EOS, no special tokens); None for slow tokenizers, which have no offsets."""
    if not getattr(tok, "is_fast", False):
        return None
    enc = tok(output + (tok.eos_token or ""), add_special_tokens=False, return_offsets_mapping=True)
    return [tuple(span) for span in enc["offset_mapping"]]


def output_logprobs(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    outputs: Sequence[str],
    batch_size: int,
    desc: str = "TA",
    phase_name: str = "ta_forward",
) -> list[ScoredOutput]:
    """Per-token log-probs of each output given its prompt, in one batched forward pass.

    Batches are left-padded (every output ends at the last position), and only output
    positions are projected onto the vocabulary: with Gemma's 262k vocabulary, logits for the
    prompt tokens would dominate the cost. Pairs are batched in length order to cut padding.
    The batches' time is profiled as ``phase_name``, tokenisation as "ta_tokenize".
    """
    with phase("ta_tokenize"):
        rows = encode(tok, [TrainExample(p, o) for p, o in zip(prompts, outputs, strict=True)], MAX_LENGTH)
    collate = WeightedCollator(tok.pad_token_id)
    order = sorted(range(len(rows)), key=lambda i: rows[i]["length"])
    logprobs: list[list[float]] = [[] for _ in rows]
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        with phase(phase_name):
            chunk = order[start : start + batch_size]
            batch = collate([rows[i] for i in chunk])
            labels = batch.pop("labels")
            batch.pop("weight")
            # Positions count from each row's first real token, so a left-padded row is scored
            # as it would be alone (absolute-position models would otherwise see a shift).
            batch["position_ids"] = (batch["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
            keep = scored_positions(labels)
            with torch.inference_mode():
                logits = model(**batch, logits_to_keep=keep).logits
            targets = labels[:, -keep:][:, 1:]
            nll = F.cross_entropy(
                logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=-100, reduction="none"
            )
            for n, i in enumerate(chunk):
                logprobs[i] = (-nll[n][targets[n] != -100]).tolist()
    scored = []
    with phase("ta_tokenize"):
        for lp, output in zip(logprobs, outputs, strict=True):
            offsets = _output_offsets(tok, output)
            if offsets is not None:
                if len(offsets) < len(lp):
                    raise RuntimeError(
                        "output tokens and their offsets disagree; is the tokenizer deterministic?"
                    )
                offsets = offsets[: len(lp)]  # a truncated output keeps the offsets of what was read
            scored.append(ScoredOutput(lp, offsets))
    return scored


def local_window(logprobs: Sequence[float], window: int = WINDOW, share: float = LOW_WINDOW_SHARE) -> float:
    """Mean of the lowest ``share`` of sliding ``window``-token mean log-probs (at least one
    window; an output shorter than a window is one window)."""
    lp = np.asarray(logprobs, dtype=float)
    if lp.size <= window:
        return float(lp.mean())
    means = np.convolve(lp, np.ones(window) / window, mode="valid")  # every full window
    lowest = max(1, math.floor(share * means.size))
    return float(np.sort(means)[:lowest].mean())


# Converse of each relation word: the simulated teacher's map of likely confusions, plus its
# inverse for the words it only maps to (granddaughter -> grandmother, ...).
_CONVERSE = {**{v: k for k, v in _OPPOSITE.items()}, **_OPPOSITE}
_RELATION = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(w) for w in sorted(_CONVERSE, key=len, reverse=True)) + r")(?![\w-])",
    re.IGNORECASE,
)


def _same_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word.capitalize() if like[:1].isupper() else word.lower()


def _neighbour(raw: str) -> str | None:
    """The number one above ``raw``: off-by-one is the commonest arithmetic slip, so it is the
    alternative a TA that follows the arithmetic should find least likely relative to the
    stated answer; it also keeps the token count close to the original's."""
    value = normalize_number(raw)
    if value is None:
        return None
    return normalize_number(str(float(value) + 1)) if "." in value else str(int(value) + 1)


@dataclass(frozen=True)
class AnswerSpan:
    start: int  # character span of the final answer in the output
    end: int
    alternative: str | None  # the most plausible other answer to put there; None: none known


def locate_answer(output: str) -> AnswerSpan | None:
    """The final answer in an output: within X of its last "The answer is X" line, the first
    yes/no word, number or relation word (whichever comes first), with its alternative
    (yes <-> no with case kept, the number plus one, the converse relation); all of X, with no
    alternative, when X holds none of these. None when there is no answer line."""
    span = final_answer_span(output)
    if span is None:
        return None
    start, end = span
    text = output[start:end]
    found: list[tuple[int, int, str | None]] = []
    if m := _YES_NO.search(text):
        found.append(
            (m.start(), m.end(), _same_case("no" if m.group().lower() == "yes" else "yes", m.group()))
        )
    if m := re.search(_NUMBER, text):
        digits = m.group().rstrip(",")  # "1,234," in running text ends before the comma
        found.append((m.start(), m.start() + len(digits), _neighbour(digits)))
    if m := _RELATION.search(text):
        found.append((m.start(), m.end(), _same_case(_CONVERSE[m.group().lower()], m.group())))
    if not found:
        return AnswerSpan(start, end, None)
    first, last, alternative = min(found, key=lambda f: f[0])
    return AnswerSpan(start + first, start + last, alternative)


def swap_answer(output: str) -> str | None:
    """The output with its final answer replaced by the alternative; None when there is none."""
    span = locate_answer(output)
    if span is None or span.alternative is None:
        return None
    return output[: span.start] + span.alternative + output[span.end :]


def answer_token_indices(output: str, scored: ScoredOutput) -> list[int]:
    """Indices (into ``scored.logprobs``) of the tokens that overlap the final answer.

    Without an answer line, or without offsets (slow tokenizer), or when truncation cut the
    answer off, this falls back to the last token before EOS: an output that answers at all
    does so at its end, and the EOS token says nothing about the answer.
    """
    n = len(scored.logprobs)
    span = locate_answer(output)
    if span is not None and scored.offsets is not None:
        hits = [i for i, (a, b) in enumerate(scored.offsets) if a < span.end and b > span.start]
        if hits:
            return hits
    if scored.offsets is not None:
        content = [i for i, (a, _) in enumerate(scored.offsets) if a < len(output)]
        return content[-1:] or [n - 1]
    return [max(0, n - 2)]  # encode appends EOS after the output


def ta_measures(
    model: Any, tok: Any, prompts: Sequence[str], outputs: Sequence[str], batch_size: int, desc: str = "TA"
) -> dict[str, list[float]]:
    """Every :data:`TA_MEASURES` for each (prompt, output) pair: one pass over the outputs and
    one over the outputs whose final answer can be swapped (``contrastive`` is 0.0 for the
    others: no alternative, no evidence either way)."""
    scored = output_logprobs(model, tok, prompts, outputs, batch_size, desc=desc)
    out: dict[str, list[float]] = {m: [] for m in TA_MEASURES}
    for output, s in zip(outputs, scored, strict=True):
        if not s.logprobs:  # encode always appends EOS, so only a tokenizer without one gets here
            raise ValueError(f"output {output[:40]!r} has no tokens to score")
        lp = np.asarray(s.logprobs)
        out["mean_logprob"].append(float(lp.mean()))
        out["min_logprob"].append(float(lp.min()))
        out["local_window"].append(local_window(s.logprobs))
        out["answer_logprob"].append(float(lp[answer_token_indices(output, s)].sum()))
    swapped = {i: alt for i, o in enumerate(outputs) if (alt := swap_answer(o)) is not None}
    rival = output_logprobs(
        model,
        tok,
        [prompts[i] for i in swapped],
        list(swapped.values()),
        batch_size,
        desc=f"{desc} (swapped)",
        phase_name="ta_contrastive",
    )
    rival_logp = {i: sum(r.logprobs) for i, r in zip(swapped, rival, strict=True)}
    out["contrastive"] = [
        sum(s.logprobs) - rival_logp[i] if i in rival_logp else 0.0 for i, s in enumerate(scored)
    ]
    return out


# --- TA as a judge ---------------------------------------------------------------------------


def _answer_token(tok: Any, word: str) -> int:
    return tok(word, add_special_tokens=False).input_ids[0]


def judge_confidence(
    model: Any,
    tok: Any,
    questions: Sequence[str],
    outputs: Sequence[str],
    batch_size: int,
    desc: str = "TA judge",
) -> list[float]:
    """P(Yes) / (P(Yes) + P(No)) for "Is the final answer correct?" asked of the TA."""
    yes, no = _answer_token(tok, "Yes"), _answer_token(tok, "No")
    tok.padding_side = "left"  # the next-token logits sit at the last position
    texts = [
        chat_prompt(tok, render(JUDGE_TEMPLATE, question=q, output=o))
        for q, o in zip(questions, outputs, strict=True)
    ]
    scores: list[float] = []
    model.eval()
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch"):
        with phase("ta_judge"):
            enc = tok(
                texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            )
            # Positions count real tokens only, as in an unpadded pass: left padding would
            # otherwise shift them, which models with absolute position embeddings (GPT-2) read.
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp_min(0)
            with torch.inference_mode():
                logits = model(**enc, position_ids=positions, logits_to_keep=1).logits[:, -1, :].float()
            pair = torch.softmax(logits[:, [yes, no]], dim=-1)
            scores.extend(pair[:, 0].tolist())
    return scores
