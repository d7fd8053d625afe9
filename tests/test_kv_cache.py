"""The decode loop's cache and prefill (taloop.student.kv_cache) and bf16-stored weights
(taloop.student.models.store_for_autocast), on the tiny in-process model: the same logits as
transformers' own cache and weights, bit for bit where the claim is exactness."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import DynamicCache

from taloop.student import kv_cache
from taloop.student.generation import generate
from taloop.student.kv_cache import (
    PreallocatedLayer,
    decode_cache,
    prefill,
    prefix_groups,
    shared_prefix_length,
)
from taloop.student.models import store_for_autocast
from tests.test_generation import PROMPTS, reference

STEPS = 6


def decode_logits(model: Any, cache: DynamicCache, ids: torch.Tensor, bf16: bool) -> list[torch.Tensor]:
    """Logits of a prefill of ``ids`` and of STEPS greedy steps after it, with ``cache``."""
    out = []
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]
        for _ in range(STEPS):
            out.append(logits)
            logits = model(
                input_ids=logits.argmax(-1)[:, None], past_key_values=cache, use_cache=True
            ).logits[:, -1]
    return out


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("capacity", [3, 64], ids=["grows", "preallocated"])
def test_preallocated_cache_gives_dynamic_cache_logits_bit_for_bit(
    tiny: tuple[Any, Any], bf16: bool, capacity: int
) -> None:
    model, _ = tiny
    ids = torch.randint(5, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(0))
    ours = decode_cache(model, capacity)
    theirs = decode_logits(model, DynamicCache(config=model.config), ids, bf16)
    assert all(isinstance(layer, PreallocatedLayer) for layer in ours.layers)
    for a, b in zip(decode_logits(model, ours, ids, bf16), theirs, strict=True):
        assert torch.equal(a, b)
    # What attention reads is stored: the autocast dtype under autocast, not float32 keys.
    assert ours.layers[0].keys.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert ours.get_seq_length() == 9 + STEPS


def test_store_for_autocast_keeps_logits_and_the_embedding(tiny: tuple[Any, Any]) -> None:
    model, _ = tiny
    cast = copy.deepcopy(model)
    store_for_autocast(cast, torch.bfloat16)
    linear = [m for m in cast.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and all(m.weight.dtype == torch.bfloat16 for m in linear)
    embedding = cast.get_input_embeddings().weight
    assert embedding.dtype == torch.float32
    assert torch.equal(embedding, model.get_input_embeddings().weight)
    ids = torch.randint(5, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(cast(input_ids=ids).logits, model(input_ids=ids).logits)


def test_store_for_autocast_unties_a_shared_lm_head(tiny: tuple[Any, Any]) -> None:
    model = copy.deepcopy(tiny[0])
    model.lm_head.weight = model.get_input_embeddings().weight  # tied, as SmolLM2's are
    store_for_autocast(model, torch.bfloat16)
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.get_input_embeddings().weight.dtype == torch.float32


def row(*tokens: int) -> torch.Tensor:
    return torch.tensor(tokens)


def test_shared_prefix_leaves_every_row_a_token() -> None:
    assert shared_prefix_length([row(1, 2, 3, 4), row(1, 2, 3, 9), row(1, 2, 7)]) == 2
    # Identical rows share all but their last token, whose logits start the decoding.
    assert shared_prefix_length([row(1, 2, 3), row(1, 2, 3)]) == 2
    assert shared_prefix_length([row(1, 2, 3, 4), row(1, 2)]) == 1
    assert shared_prefix_length([row(5, 2), row(1, 2)]) == 0
    assert shared_prefix_length([row(1, 2, 3)]) == 0


def test_prefix_groups_split_where_it_saves_work() -> None:
    # Two families of 10 prompts: a 5-token common opening, then a 50-token wording each,
    # then 10 tokens of their own. One group pays 20 x 60 padded tokens beyond its 5 shared;
    # two pay their 55-token prefixes once each and 10 x 10 tokens: cheaper by the cost model.
    opening, wording = list(range(1, 6)), [list(range(100, 150)), list(range(200, 250))]
    prompts = [row(*opening, *wording[i % 2], *range(1000 + 10 * i, 1010 + 10 * i)) for i in range(20)]
    groups = prefix_groups(prompts)
    assert sorted(sorted(g) for g in groups) == [list(range(0, 20, 2)), list(range(1, 20, 2))]
    # Prompts that share little gain nothing from a group of their own.
    short = [row(i, i + 1, i + 2) for i in range(1, 30, 3)]
    assert prefix_groups(short) == [sorted(range(len(short)), key=lambda i: short[i].tolist())]
    assert prefix_groups([row(4, 5)]) == [[0]]


@pytest.fixture
def free_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups cost nothing, so prefill splits the tiny prompts: rows are right-aligned into one
    cache from caches of different lengths, and the next steps read the merged cache."""
    monkeypatch.setattr(kv_cache, "GROUP_COST", 0)
    monkeypatch.setattr(kv_cache, "PREFIX_TOKEN_COST", 0)


@pytest.mark.usefixtures("free_groups")
def test_prefill_groups_give_the_plain_prefill_logits(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    tok.padding_side = "left"
    enc = tok([f"shared opening words {p}" for p in PROMPTS], return_tensors="pt", padding=True)
    width = enc["input_ids"].shape[1]
    rows = [
        ids[width - n :]
        for ids, n in zip(enc["input_ids"], enc["attention_mask"].sum(-1).tolist(), strict=True)
    ]
    groups = prefix_groups(rows)
    assert len(groups) > 1
    lm_head_rows: list[int] = []  # the shared prefixes' passes want keys and values, not logits
    hook = model.lm_head.register_forward_hook(lambda _m, args, _out: lm_head_rows.append(len(args[0])))
    with torch.inference_mode():
        cache, logits, mask, positions = prefill(model, enc["input_ids"], enc["attention_mask"], width + 4)
    hook.remove()
    assert sorted(lm_head_rows) == sorted(len(g) for g in groups)
    with torch.inference_mode():
        plain = model(**enc, position_ids=(enc["attention_mask"].cumsum(-1) - 1).clamp_min(0)).logits[:, -1]
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-5)
    assert positions.flatten().tolist() == (enc["attention_mask"].sum(-1) - 1).tolist()
    assert mask.sum(-1).tolist() == enc["attention_mask"].sum(-1).tolist()
    assert cache.get_seq_length() == mask.shape[1]


@pytest.mark.usefixtures("free_groups")
def test_decoding_from_merged_groups_matches_model_generate(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    kwargs = {"max_new_tokens": 10, "num_samples": 2, "temperature": 1.0, "seed": 3}
    assert generate(model, tok, PROMPTS, batch_size=4, **kwargs) == reference(
        model, tok, PROMPTS, batch_size=4, **kwargs
    )
