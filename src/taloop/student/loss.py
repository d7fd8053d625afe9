"""The weighted SFT loss and the collator that carries each example's weight.

Loss of a micro-batch = sum_i w_i * NLL_i / Z, where NLL_i is the summed token loss of
example i and Z = mean over the whole dataset of w_i * n_i (n_i: completion tokens) times the
batch size. Z is fixed for the run, so an example's gradient is proportional to its weight
wherever it lands: a per-batch normaliser (sum of w_i * n_i over the batch) would make a
batch of low-weight examples train as hard as a batch of high-weight ones and cancel the
weight of a one-example batch. All-ones weights train like the plain mean token loss (equal
in expectation over batches), and a weight-0 example contributes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class WeightedCollator:
    """Left-pads, so every completion ends at the last position: the loss then needs logits
    for the last ``scored_positions`` only (see :func:`scored_positions`). With ``states``
    (one per row, see taloop.student.frozen_prefix) it hands the model those as ``inputs_embeds``
    instead of token ids."""

    pad_token_id: int
    states: Sequence[torch.Tensor] | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            input_ids[i, width - n :] = torch.tensor(r["input_ids"])
            labels[i, width - n :] = torch.tensor(r["labels"])
            attention[i, width - n :] = 1
        weight = torch.tensor([float(r["weight"]) for r in rows], dtype=torch.float32)
        batch = {"attention_mask": attention, "labels": labels, "weight": weight}
        if self.states is None:
            return {"input_ids": input_ids, **batch}
        embeds = torch.zeros((len(rows), width, self.states[0].shape[-1]), dtype=self.states[0].dtype)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            embeds[i, width - n :] = self.states[r["row"]]
        return {"inputs_embeds": embeds, **batch}


def scored_positions(labels: torch.Tensor) -> int:
    """How many trailing positions of a left-padded batch need logits: the longest completion,
    plus one (the logit predicting a token sits one position before it)."""
    return int((labels != -100).sum(dim=1).max()) + 1


def example_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example summed next-token NLL and number of scored tokens."""
    shifted = labels[:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), shifted, ignore_index=-100, reduction="none"
    )
    return nll.sum(dim=1), (shifted != -100).sum(dim=1)


def weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, normaliser: float
) -> torch.Tensor:
    """sum_i w_i * NLL_i / ``normaliser`` (see :func:`loss_normaliser`)."""
    nll, _ = example_nll(logits, labels)
    return (weight.to(nll.dtype) * nll).sum() / normaliser


def completion_tokens(row: dict[str, Any]) -> int:
    return sum(1 for label in row["labels"] if label != -100)


def loss_normaliser(rows: Sequence[dict[str, Any]], batch_size: int) -> float:
    """The run's fixed loss normaliser: mean of w * n over the dataset times the batch size,
    i.e. the weighted token count of an average full batch."""
    mass = [r["weight"] * completion_tokens(r) for r in rows]
    if not mass or sum(mass) <= 0:
        raise ValueError("no training example has both a positive weight and completion tokens")
    return sum(mass) / len(mass) * batch_size
