"""Train the top layers from cached hidden states of the frozen lower layers.

With LoRA on the top N of L decoder layers (``student.lora.top_layers``), the lower L - N
layers are frozen and have no dropout, so they compute the same hidden states for a reply at
every step it is trained on (ft takes three passes over its replies on the default). Here
they are computed once per reply, without gradients, and training runs only the top layers
from them: the forward pass of the lower layers is paid once instead of once per visit, and
backward never reaches them (as before: nothing below the cut needs a gradient).

Equal to the plain path up to float rounding: the states are computed on left-padded batches
of other rows than the training batch, and rotary position embeddings depend only on the
distance between tokens, so padding shifts positions without changing what a real token
sees (pad positions are masked out). The training test compares loss curves of both paths.

:func:`frozen_cut` says when the path applies and returns None (the plain path) otherwise:
no top_layers, an architecture outside :data:`SUPPORTED` (the decoder layout, embeddings
passed as ``inputs_embeds`` and position handling are checked for these only), attention
dropout in the base model, LoRA modules below the cut (e.g. a warm-up adapter trained on
other layers), several processes, or states that would not fit :data:`MAX_STATE_BYTES`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

log = logging.getLogger(__name__)

SUPPORTED = frozenset({"llama"})
MAX_STATE_BYTES = 2 * 2**30  # fp32 states of every row, kept in memory for the whole run


def _decoder(model: Any) -> Any:
    """The decoder stack (``.layers``, ``.norm``) under a PEFT wrapper and a causal-LM head."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model


def frozen_cut(
    model: Any, top_layers: int | None, rows: Sequence[dict[str, Any]], processes: int
) -> int | None:
    """How many lower layers can be cached for ``rows``, or None for the plain path (logged)."""
    config = model.config
    n_layers = config.num_hidden_layers
    if not top_layers or top_layers >= n_layers:
        return None
    cut = n_layers - top_layers
    width = sum(len(r["input_ids"]) for r in rows) * config.hidden_size * 4
    reason = None
    if config.model_type not in SUPPORTED:
        reason = f"architecture {config.model_type!r} not among {sorted(SUPPORTED)}"
    elif getattr(config, "attention_dropout", 0.0):
        reason = "the base model has attention dropout"
    elif processes > 1:
        reason = f"{processes} processes (each would cache its own shard)"
    elif width > MAX_STATE_BYTES:
        reason = f"states of {width / 2**30:.1f} GiB exceed {MAX_STATE_BYTES / 2**30:.0f} GiB"
    elif any("lora_" in name for name, _ in _decoder(model).layers[:cut].named_modules()):
        reason = "LoRA modules below the cut"
    if reason:
        log.info("training every step through all layers: %s", reason)
        return None
    return cut


def prefix_states(
    model: Any, cut: int, rows: Sequence[dict[str, Any]], batch_size: int, bf16: bool
) -> list[torch.Tensor]:
    """Hidden states entering layer ``cut`` for each row's ``input_ids`` (fp32, unpadded)."""
    decoder = _decoder(model)
    layers, norm = decoder.layers, decoder.norm
    decoder.layers, decoder.norm = torch.nn.ModuleList(list(layers)[:cut]), torch.nn.Identity()
    states: list[torch.Tensor | None] = [None] * len(rows)
    # Similar lengths together: less padding computed and thrown away.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    device = next(decoder.parameters()).device
    try:
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                width = max(len(rows[i]["input_ids"]) for i in chunk)
                ids = torch.zeros((len(chunk), width), dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for j, i in enumerate(chunk):
                    n = len(rows[i]["input_ids"])
                    ids[j, width - n :] = torch.tensor(rows[i]["input_ids"])
                    mask[j, width - n :] = 1
                out = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
                for j, i in enumerate(chunk):
                    n = len(rows[i]["input_ids"])
                    states[i] = out.last_hidden_state[j, width - n :].float().cpu()
    finally:
        decoder.layers, decoder.norm = layers, norm
    return [s for s in states if s is not None]


@contextmanager
def top_layers_only(model: Any, cut: int) -> Iterator[None]:
    """The decoder runs only layers ``cut``.. (from ``inputs_embeds`` = cached states); the
    full stack is back afterwards, so saved adapters keep their layer indices."""
    decoder = _decoder(model)
    layers = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(layers)[cut:])
    try:
        yield
    finally:
        decoder.layers = layers
