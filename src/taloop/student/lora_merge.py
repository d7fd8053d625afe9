"""Merge a saved plain-LoRA adapter into its base model's weights without importing PEFT.

Every generating stage loads the student with its adapter merged (taloop.student.models.load_student).
PEFT's ``PeftModel.from_pretrained(...).merge_and_unload()`` spent about 0.3 s of an evaluate
stage's ~20 s importing PEFT and wrapping each target layer only to unwrap it again. For the
adapters taloop trains (LoRA on Linear layers, no DoRA, no bias, no per-module patterns) the
merge is ``W + (B @ A) * scale``, PEFT's own formula and order of operations, so the merged
weights are bit for bit PEFT's (tests/test_lora_merge.py). Any other adapter returns False and
the caller merges with PEFT.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch

# adapter_config.json settings that change what a merge computes: any of them set (truthy) is a
# kind of adapter this module leaves to PEFT.
_NEEDS_PEFT = (
    "use_dora", "fan_in_fan_out", "modules_to_save", "trainable_token_indices", "target_parameters",
    "alpha_pattern", "rank_pattern", "layer_replication", "lora_bias", "use_qalora", "use_bdlora",
    "alora_invocation_tokens", "arrow_config",
)  # fmt: skip
_PREFIX = "base_model.model."


def _scale(config: dict[str, Any]) -> float:
    alpha, rank = config["lora_alpha"], config["r"]
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _pairs(state: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """Module name -> (A, B) for every key of a plain LoRA state dict; None for anything else
    (embedding LoRA, DoRA magnitudes, saved modules...)."""
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in state.items():
        if key.endswith(".lora_B.weight"):
            continue
        if not (key.startswith(_PREFIX) and key.endswith(".lora_A.weight")):
            return None
        b = state.get(key.replace(".lora_A.", ".lora_B."))
        if b is None:
            return None
        pairs[key[len(_PREFIX) : -len(".lora_A.weight")]] = (a, b)
    if 2 * len(pairs) != len(state):  # a lora_B without its lora_A
        return None
    return pairs


def merge_lora(model: Any, adapter_dir: Path) -> bool:
    """Replace the weights ``model``'s adapted Linear layers have by their sums with the adapter
    in ``adapter_dir``; False (``model`` untouched) when the adapter is not one this module
    merges exactly as PEFT does."""
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    weights = adapter_dir / "adapter_model.safetensors"
    if (
        config.get("peft_type") != "LORA"
        or config.get("bias", "none") != "none"
        or any(config.get(key) for key in _NEEDS_PEFT)
        or not weights.exists()
    ):
        return False
    pairs = _pairs(load_file(weights))
    modules = dict(model.named_modules())
    if pairs is None or not all(isinstance(modules.get(name), torch.nn.Linear) for name in pairs):
        return False
    # A weight shared between modules (a tied lm_head, or two adapted layers) changes for all of
    # them when PEFT merges in place; a new tensor here would change one. Left to PEFT.
    holders = Counter(p.data_ptr() for _, p in model.named_parameters(remove_duplicate=False))
    if any(holders[modules[name].weight.data_ptr()] > 1 for name in pairs):
        return False
    scale = _scale(config)
    with torch.no_grad():
        for name, (a, b) in pairs.items():
            module = modules[name]
            weight = module.weight
            # Out of place: the weights safetensors loaded are copy-on-write pages of the
            # memory-mapped file, and adding into them in place faulted in and copied every
            # page (0.47 s of an evaluate stage, against 0.07 s for the same sums written to
            # new tensors). The sum is the same either way.
            merged = weight + (b.to(weight.dtype) @ a.to(weight.dtype)) * scale
            module.weight = torch.nn.Parameter(merged, requires_grad=weight.requires_grad)
    return True
