"""The weighted loss pieces of taloop.student.loss on hand-made tensors: per-example NLL and token
counts, the fixed normaliser, and the left-padding collator (token ids or cached states)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from taloop.student.loss import WeightedCollator, example_nll, loss_normaliser, weighted_loss

# Over a vocabulary of 3, logits log([1, 1, 2]) give probabilities [1/4, 1/4, 1/2]:
# the NLL of token 0 or 1 is ln 4 and that of token 2 is ln 2.
ROW_LOGITS = torch.log(torch.tensor([1.0, 1.0, 2.0]))


def _logits(batch: int, width: int) -> torch.Tensor:
    return ROW_LOGITS.expand(batch, width, 3).clone()


# Labels are shifted by one: position t's logits predict label t + 1, so label 0 is never scored.
LABELS = torch.tensor(
    [
        [-100, 2, 0, 2],  # scores 2, 0, 2: ln 2 + ln 4 + ln 2 = 4 ln 2, three tokens
        [-100, -100, -100, 1],  # scores 1 only: ln 4 = 2 ln 2, one token
    ]
)


def test_example_nll_sums_each_examples_scored_tokens_and_counts_them() -> None:
    nll, count = example_nll(_logits(2, 4), LABELS)
    assert nll.tolist() == pytest.approx([4 * math.log(2), 2 * math.log(2)])
    assert count.tolist() == [3, 1]


def test_weighted_loss_is_the_weighted_nll_sum_over_the_normaliser() -> None:
    weight = torch.tensor([0.5, 3.0])
    # (0.5 * 4 ln 2 + 3 * 2 ln 2) / 4 = 8 ln 2 / 4 = 2 ln 2
    loss = weighted_loss(_logits(2, 4), LABELS, weight, normaliser=4.0)
    assert loss.item() == pytest.approx(2 * math.log(2))


def test_weighted_loss_stays_in_the_nll_dtype_for_a_float64_weight_column() -> None:
    # The NLL is computed in float32; a float64 weight column (as numpy hands out) must not
    # turn the loss into float64, which some accelerators (MPS) cannot hold.
    weight = torch.tensor([0.5, 3.0], dtype=torch.float64)
    loss = weighted_loss(_logits(2, 4), LABELS, weight, normaliser=4.0)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(2 * math.log(2))


def _row(weight: float, labels: list[int]) -> dict[str, Any]:
    return {"input_ids": list(range(len(labels))), "labels": labels, "weight": weight}


@pytest.mark.parametrize(
    ("rows", "batch_size", "expected"),
    [
        # w * n = 2 * 2 and 1 * 1: mean 2.5, times batch 4
        ([_row(2.0, [-100, 5, 6]), _row(1.0, [-100, -100, 7])], 4, 10.0),
        # a weighted mass below one is still positive: 0.5 * 1 / 1 * 4
        ([_row(0.5, [-100, 5])], 4, 2.0),
        # exactly one: 1 * 1 / 1 * 3
        ([_row(1.0, [-100, 5])], 3, 3.0),
        # a weight-0 row still counts in the mean: (0 + 0.25 * 2) / 2 * 8
        ([_row(0.0, [5, 6]), _row(0.25, [5, 6])], 8, 2.0),
    ],
)
def test_loss_normaliser_is_the_mean_weighted_token_count_times_batch_size(
    rows: list[dict[str, Any]], batch_size: int, expected: float
) -> None:
    assert loss_normaliser(rows, batch_size) == pytest.approx(expected)


@pytest.mark.parametrize(
    "rows",
    [[], [_row(0.0, [5, 6])], [_row(3.0, [-100, -100])]],
    ids=["no rows", "weight zero", "no completion tokens"],
)
def test_loss_normaliser_refuses_a_dataset_with_no_weighted_tokens(rows: list[dict[str, Any]]) -> None:
    with pytest.raises(
        ValueError, match=r"^no training example has both a positive weight and completion tokens$"
    ):
        loss_normaliser(rows, 4)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["default float32", "default float64"])
def default_dtype(request: pytest.FixtureRequest) -> Iterator[torch.dtype]:
    """The collator's dtypes are its own, whatever torch's global default float dtype."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    try:
        yield request.param
    finally:
        torch.set_default_dtype(before)


ROWS = [
    {"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "weight": 0.5, "row": 2},
    {"input_ids": [4, 5], "labels": [-100, 5], "weight": 2, "row": 0},
]


def test_collator_left_pads_ids_labels_and_mask_and_keeps_the_weight(default_dtype: torch.dtype) -> None:
    batch = WeightedCollator(pad_token_id=9)(ROWS)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "weight"}
    assert batch["input_ids"].tolist() == [[1, 2, 3], [9, 4, 5]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [-100, -100, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]
    assert batch["weight"].tolist() == [0.5, 2.0]
    # Token ids, labels and mask are LongTensors (as transformers models take them); the
    # weight column is float32 even when torch's default float dtype is not.
    for key in ("input_ids", "labels", "attention_mask"):
        assert batch[key].dtype == torch.long, key
    assert batch["weight"].dtype == torch.float32


def _states(dtype: torch.dtype) -> list[torch.Tensor]:
    # Hidden size 4; row r has r + 2 tokens (2, 3, 4), so no token count equals the hidden
    # size. Values like 0.1 are not float32-representable, so a float64 copy must be exact.
    return [
        (torch.arange((r + 2) * 4, dtype=torch.float64).reshape(r + 2, 4) * 0.1 + r).to(dtype)
        for r in range(3)
    ]


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["float32", "float64", "bfloat16"]
)
def test_collator_hands_each_rows_cached_states_left_padded_as_inputs_embeds(dtype: torch.dtype) -> None:
    states = _states(dtype)
    rows = [  # in batch order 2, 0: a row's states come from its "row", not its batch position
        {"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4], "weight": 1.0, "row": 2},
        {"input_ids": [5, 6], "labels": [-100, 6], "weight": 0.5, "row": 0},
    ]
    batch = WeightedCollator(pad_token_id=9, states=states)(rows)
    assert set(batch) == {"inputs_embeds", "attention_mask", "labels", "weight"}
    embeds = batch["inputs_embeds"]
    assert embeds.shape == (2, 4, 4)
    assert embeds.dtype == dtype  # the states as cached, neither rounded nor widened
    assert torch.equal(embeds[0], states[2])
    assert torch.equal(embeds[1, 2:], states[0])
    assert torch.equal(embeds[1, :2], torch.zeros((2, 4), dtype=dtype))
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 3, 4], [-100, -100, -100, 6]]
    assert batch["weight"].tolist() == [1.0, 0.5]


def test_collator_with_the_states_of_a_one_row_dataset() -> None:
    state = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.25, -0.5]])
    batch = WeightedCollator(pad_token_id=0, states=[state])(
        [{"input_ids": [7, 8], "labels": [-100, 8], "weight": 1.0, "row": 0}]
    )
    assert torch.equal(batch["inputs_embeds"], state.unsqueeze(0))
