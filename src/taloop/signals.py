"""The paper's signals: student self-consistency and a TA model's confidence in an output."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from taloop.tasks.prompts import render
from taloop.training import TrainExample, WeightedCollator, chat_prompt, encode, example_nll, scored_positions

JUDGE_TEMPLATE = "judge_v1"


@dataclass(frozen=True)
class Consistency:
    majority: str | None  # None: most samples had no parsable answer
    share: float  # share of the K samples that agree with the majority answer
    entropy: float  # of the answer distribution, in nats (0 = all agree)
    majority_index: int  # first sample giving the majority answer


def self_consistency(answers: Sequence[str | None]) -> Consistency:
    if not answers:
        raise ValueError("self-consistency needs at least one sample")
    counts = Counter(answers)
    majority, top = counts.most_common(1)[0]  # ties: the answer seen first wins
    k = len(answers)
    entropy = -sum((c / k) * math.log(c / k) for c in counts.values())
    return Consistency(majority, top / k, entropy + 0.0, answers.index(majority))


def likelihood_confidence(
    model: Any, tok: Any, prompts: Sequence[str], outputs: Sequence[str], batch_size: int, desc: str = "TA"
) -> list[float]:
    """Geometric-mean probability of each output's tokens given its prompt (length-normalised).

    Batches are left-padded and only output positions are projected onto the vocabulary:
    with Gemma's 262k vocabulary, logits for the prompt tokens would dominate the cost.
    """
    rows = encode(tok, [TrainExample(p, o) for p, o in zip(prompts, outputs, strict=True)], max_length=4096)
    collate = WeightedCollator(tok.pad_token_id)
    scores: list[float] = []
    model.eval()
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch"):
        batch = collate(rows[start : start + batch_size])
        labels = batch.pop("labels")
        batch.pop("weight")
        keep = scored_positions(labels)
        with torch.inference_mode():
            out = model(**batch, logits_to_keep=keep)
        nll, tokens = example_nll(out.logits, labels[:, -keep:])
        scores.extend(torch.exp(-nll / tokens.clamp(min=1)).tolist())
    return scores


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
        enc = tok(
            texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.inference_mode():
            logits = model(**enc, logits_to_keep=1).logits[:, -1, :].float()
        pair = torch.softmax(logits[:, [yes, no]], dim=-1)
        scores.extend(pair[:, 0].tolist())
    return scores
