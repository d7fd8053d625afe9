"""The decode loop's KV cache and prefill (taloop.student.generation._decode).

Two costs of transformers' DynamicCache that the profile of evaluation showed (benchmarks/run.py,
docs/performance.md), removed without changing a computed value:

- DynamicLayer grows by concatenation, copying a row's whole cache at every decode step; a
  :class:`PreallocatedLayer` writes each step in place into buffers sized for the whole decoding.
- Under bf16 autocast, keys leave the rotary embedding in float32, so the cache held float32 and
  attention cast all of it to bf16 again at every step; the layer stores what attention reads.

:func:`prefill` runs the tokens every prompt of a batch opens with (chat template, system
prompt, task instructions: about 55 of the default's 90 prompt tokens) once instead of once per
row. That computes the same values in another order: exact in real arithmetic, but under bf16
a greedy token on a near-tie can flip (7-8 of 80 default outputs changed, docs/performance.md, "Decoding").
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values live in buffers with room for ``capacity``
    positions (more are made room for by doubling, should a caller underestimate).

    Under autocast, keys and values are stored in the autocast dtype. Every attention path
    (SDPA, eager matmuls, flash kernels) is an autocast op that casts its float32 inputs to that
    dtype, so the values attention reads are the ones it read from a float32 cache: stored
    once rather than cast at every step (tests/test_kv_cache.py holds logits bit for bit)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        device = key_states.device.type
        autocast = torch.is_autocast_enabled(device)
        self.dtype = torch.get_autocast_dtype(device) if autocast else key_states.dtype
        self.device = key_states.device
        self._keys, self._values = (
            s.new_empty((*s.shape[:2], self.capacity, s.shape[-1]), dtype=self.dtype)
            for s in (key_states, value_states)
        )
        self.length = 0
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        """``keys`` and ``values`` (read by DynamicLayer's other methods and by callers) as views
        of the filled positions."""
        self.keys = self._keys[..., : self.length, :]
        self.values = self._values[..., : self.length, :]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[-2]:
            more = max(end, 2 * self._keys.shape[-2]) - self._keys.shape[-2]
            self._keys, self._values = (
                torch.cat([b, b.new_empty((*b.shape[:2], more, b.shape[-1]))], dim=-2)
                for b in (self._keys, self._values)
            )
        self._keys[..., self.length : end, :] = key_states
        self._values[..., self.length : end, :] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def copy(self, capacity: int) -> PreallocatedLayer:
        """This layer's positions in a new layer with room for ``capacity`` (at least its length)."""
        twin = PreallocatedLayer(capacity)
        if self.is_initialized:
            twin.dtype, twin.device, twin.length = self.dtype, self.device, self.length
            twin.is_initialized = True
            twin._keys, twin._values = (
                torch.cat(
                    [
                        b[..., : self.length, :],
                        b.new_empty((*b.shape[:2], capacity - self.length, b.shape[-1])),
                    ],
                    -2,
                )
                for b in (self._keys, self._values)
            )
            twin._expose()
        return twin

    def gather(self, parts: Sequence[tuple[list[int], PreallocatedLayer]], rows: int, length: int) -> None:
        """Hold ``rows`` rows of ``length`` positions: those of each part's layer at its rows'
        indices, right-aligned; the positions before a shorter part are zeros (finite, as
        attention multiplies their values by a zero weight)."""
        first = parts[0][1]
        self.dtype, self.device = first.dtype, first.device
        self._keys, self._values = (
            b.new_zeros((rows, *b.shape[1:2], max(self.capacity, length), b.shape[-1]))
            for b in (first._keys, first._values)
        )
        for indices, part in parts:
            start = length - part.length
            self._keys[indices, :, start:length] = part.keys
            self._values[indices, :, start:length] = part.values
        self.length = length
        self.is_initialized = True
        self._expose()

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = (self._select(b, indices) for b in (self._keys, self._values))
            self._expose()

    def _select(self, buffer: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """``buffer``'s rows at ``indices`` in a buffer of the same capacity, filled positions
        only. index_select into the view took a seventh of the time of ``buffer[indices]``
        (2 cores, the default's cache shapes), which also copied the unfilled capacity."""
        out = buffer.new_empty((len(indices), *buffer.shape[1:]))
        torch.index_select(buffer[..., : self.length, :], 0, indices, out=out[..., : self.length, :])
        return out


def decode_cache(model: Any, capacity: int) -> DynamicCache:
    """``model``'s DynamicCache with each plain DynamicLayer preallocated for ``capacity``
    positions; other layer kinds (sliding windows...) are kept as transformers makes them."""
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    cache.layers = [
        PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache


def _common_length(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    return int((a[:n] == b[:n]).long().cumprod(0).sum())


def shared_prefix_length(rows: Sequence[torch.Tensor]) -> int:
    """How many leading tokens all ``rows`` share, leaving each at least one of its own (its
    last token's logits start the decoding); 0 for a single row, which has nothing to share."""
    if len(rows) < 2:
        return 0
    return min(min(_common_length(rows[0], r) for r in rows[1:]), min(len(r) for r in rows) - 1)


# The cost model that splits a batch's prefill into groups, in units of one prompt token of a
# batched forward pass. Measured on the default (2 cores, SmolLM2-135M, bf16): a batch-1 pass
# over a 52-token shared prefix took as long as ~150 batched tokens, and a forward call costs
# ~50 tokens' worth however short; a group makes two calls (its prefix, then its rows).
PREFIX_TOKEN_COST = 3
GROUP_COST = 100


def prefix_groups(prompts: Sequence[torch.Tensor]) -> list[list[int]]:
    """The prompts split into groups (lists of indices) whose separate prefills cost least by
    :data:`PREFIX_TOKEN_COST` and :data:`GROUP_COST`: each group runs its own shared prefix once
    and pads its other tokens only to its own longest prompt.

    Groups are runs of the prompts in token order, where prompts that share a prefix (a task's
    wording) sit together and a run's shared prefix is the one its first and last prompts share;
    the best split of that order is found exactly, in O(n^2)."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i].tolist())
    rows = [prompts[i] for i in order]
    adjacent = [_common_length(a, b) for a, b in itertools.pairwise(rows)]
    best = [0.0] + [float("inf")] * len(rows)  # best[j]: cost of the first j prompts
    cut = [0] * (len(rows) + 1)
    for end in range(1, len(rows) + 1):
        common, shortest, longest = 1 << 30, 1 << 30, 0
        for start in range(end - 1, -1, -1):  # group rows[start:end], grown to the left
            shortest, longest = min(shortest, len(rows[start])), max(longest, len(rows[start]))
            if start < end - 1:
                common = min(common, adjacent[start])
            shared = min(common, shortest - 1) if start < end - 1 else 0
            cost = best[start] + GROUP_COST + PREFIX_TOKEN_COST * shared + (end - start) * (longest - shared)
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(rows)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def _fill(model: Any, ids: torch.Tensor, cache: DynamicCache) -> None:
    """Run ``ids`` into ``cache`` for their keys and values alone: through the decoder without
    the lm_head (``model.base_model``, which the model's own forward calls with these same
    arguments) where the model has one apart. Besides the wasted logits, a batch-1 lm_head
    call over the last position took ~75 ms on the default's shapes, against ~4 ms for the
    same product on a [1, hidden] matrix: torch multiplies that strided [1, 1, hidden] slice
    by bmm, copying the whole bf16 vocabulary matrix first."""
    decoder = model.base_model
    if decoder is model:
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    else:
        decoder(input_ids=ids, past_key_values=cache, use_cache=True)


def _prefill_group(
    model: Any, prompts: Sequence[torch.Tensor], cache: DynamicCache, cached: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill ``cache``, which holds the first ``cached`` tokens of every prompt at batch size 1,
    with ``prompts``; each row's logits at its last token, and the attention mask over the
    cached positions (see :func:`prefill`)."""
    shared = max(shared_prefix_length(prompts), cached)
    if shared > cached:
        _fill(model, prompts[0][None, cached:shared], cache)
    if shared:
        cache.batch_repeat_interleave(len(prompts))
    rest = max(len(p) for p in prompts) - shared
    # Left-padded with token 0: masked positions get no attention weight, whatever they hold.
    ids = torch.stack([torch.nn.functional.pad(p[shared:], (rest + shared - len(p), 0)) for p in prompts])
    own = torch.stack([torch.arange(rest) >= rest + shared - len(p) for p in prompts]).to(ids.device)
    mask = torch.cat([own.new_ones(len(prompts), shared), own], dim=-1).long()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    # Without padding no mask is passed at all, as model.generate does (the model then takes
    # another attention path, with its own rounding).
    logits = model(
        input_ids=ids, attention_mask=None if bool(mask.all()) else mask, position_ids=positions[:, shared:],
        past_key_values=cache, use_cache=True, logits_to_keep=1,
    ).logits[:, -1]  # fmt: skip
    return logits, mask


def prefill(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, capacity: int
) -> tuple[DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A cache (:func:`decode_cache`, room for ``capacity`` positions) filled with the
    left-padded prompts ``input_ids``, each row's logits at its last prompt token, the attention
    mask over the cached positions, and each row's last position id.

    A group's shared prefix (:func:`shared_prefix_length`) runs once at batch size 1 and its
    cache is repeated over the group's rows; each row's other tokens follow it left-padded, so
    a row reads ``prefix, padding, rest`` with the padding masked out and position ids counting
    real tokens only: every real token has the position and attends to the keys it has in the
    plain prefill. With several groups (:func:`prefix_groups`), their caches are right-aligned
    into one, the positions before a shorter group's masked out."""
    width = input_ids.shape[1]
    prompts = [ids[width - n :] for ids, n in zip(input_ids, attention_mask.sum(-1).tolist(), strict=True)]
    cache = decode_cache(model, capacity)
    shared = shared_prefix_length(prompts)
    if shared:  # once for all groups
        _fill(model, prompts[0][None, :shared], cache)
    # Merging needs every layer's buffers; other layer kinds (sliding windows...) fill as one group.
    groups = (
        prefix_groups(prompts)
        if all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)
        else [list(range(len(prompts)))]
    )
    if len(groups) == 1:
        logits, mask = _prefill_group(model, prompts, cache, shared)
    else:
        parts = []
        for group in groups:
            part = decode_cache(model, width)
            part.layers = [layer.copy(width) for layer in cache.layers]  # room for its prompts only
            parts.append((group, part, *_prefill_group(model, [prompts[i] for i in group], part, shared)))
        length = max(mask.shape[1] for *_, mask in parts)
        logits = parts[0][2].new_empty((len(prompts), parts[0][2].shape[-1]))
        mask = input_ids.new_zeros((len(prompts), length))
        for group, _, group_logits, group_mask in parts:
            logits[group] = group_logits
            mask[group, length - group_mask.shape[1] :] = group_mask
        for index, layer in enumerate(cache.layers):
            layer.gather([(group, part.layers[index]) for group, part, *_ in parts], len(prompts), length)
    positions = (mask.cumsum(-1) - 1)[:, -1:]
    return cache, logits, mask, positions
