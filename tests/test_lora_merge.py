"""The PEFT-free LoRA merge gives PEFT's merged weights bit for bit, and declines what it
cannot merge exactly."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from taloop.student.lora_merge import merge_lora


def _adapter(base: Any, path: Path, save_embedding_layers: bool | str = "auto", **settings: Any) -> Path:
    """A LoRA adapter on a copy of ``base`` with random (nonzero) A and B, saved to ``path``."""
    torch.manual_seed(0)
    config = LoraConfig(
        **{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"],
           "init_lora_weights": False, **settings},
    )  # fmt: skip
    peft_model = get_peft_model(copy.deepcopy(base), config)
    peft_model.save_pretrained(path, save_embedding_layers=save_embedding_layers)
    return path


def _peft_merged(base: Any, adapter: Path) -> dict[str, torch.Tensor]:
    return PeftModel.from_pretrained(copy.deepcopy(base), adapter).merge_and_unload().state_dict()


@pytest.mark.parametrize(
    "settings",
    [{}, {"use_rslora": True}, {"layers_to_transform": [1]}],
    ids=["plain", "rslora", "top_layer_only"],
)
def test_merge_equals_peft_merge_bit_for_bit(tiny: tuple[Any, Any], tmp_path: Path, settings: dict) -> None:
    base = tiny[0]
    adapter = _adapter(base, tmp_path / "adapter", **settings)
    ours = copy.deepcopy(base)
    assert merge_lora(ours, adapter)
    theirs = _peft_merged(base, adapter)
    changed = 0
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs[name]), name
        changed += not torch.equal(value, base.state_dict()[name])
    assert changed == (1 if settings.get("layers_to_transform") else base.config.num_hidden_layers) * 3


def test_adapters_it_cannot_merge_exactly_are_left_to_peft(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    base = tiny[0]
    before = copy.deepcopy(base.state_dict())
    assert base.lm_head.weight is base.get_input_embeddings().weight  # tied, as PEFT merges them
    for name, settings in [
        ("dora", {"use_dora": True}), ("bias", {"bias": "lora_only"}),
        # Saved without the embedding PEFT would add, which the merge would decline anyway.
        ("tied", {"target_modules": ["q_proj", "lm_head"], "save_embedding_layers": False}),
    ]:  # fmt: skip
        ours = copy.deepcopy(base)
        assert not merge_lora(ours, _adapter(base, tmp_path / name, **settings)), name
        assert all(torch.equal(v, before[k]) for k, v in ours.state_dict().items()), name


def test_adapted_layers_sharing_a_weight_are_left_to_peft(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    """PEFT adds both layers' updates into the one shared weight; new tensors would split it."""
    base = tiny[0]
    adapter = _adapter(base, tmp_path / "adapter", target_modules=["q_proj"])
    ours = copy.deepcopy(base)
    layers = ours.model.layers
    layers[1].self_attn.q_proj.weight = layers[0].self_attn.q_proj.weight
    assert not merge_lora(ours, adapter)
    assert layers[1].self_attn.q_proj.weight is layers[0].self_attn.q_proj.weight
