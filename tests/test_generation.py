"""Per-sample reproducible decoding on the tiny in-process model, and the numerics in run
manifests."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from taloop import manifest
from taloop.generation import GumbelSampler, generate, sample_seed
from taloop.manifest import CPU_FLAGS, build_manifest, onednn_version

# Different lengths, so each prompt sits under a different amount of left padding
# depending on its neighbours.
PROMPTS = [
    "a",
    "What is 12 + 30?",
    "Tom has three cats and two dogs. How many legs do his pets have in total, counting all of them?",
    "bb",
]
SAMPLING = {"max_new_tokens": 8, "num_samples": 3, "temperature": 1.0, "seed": 7}


def test_samples_do_not_depend_on_the_batch(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    alone = [generate(model, tok, [p], batch_size=1, **SAMPLING)[0] for p in PROMPTS]
    together = generate(model, tok, PROMPTS, batch_size=4, **SAMPLING)
    in_pairs = generate(model, tok, PROMPTS, batch_size=2, **SAMPLING)
    reordered = generate(model, tok, PROMPTS[::-1], batch_size=3, **SAMPLING)[::-1]
    assert together == alone
    assert in_pairs == alone
    assert reordered == alone


def test_sample_indices_and_seeds_give_different_samples(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    outs = generate(model, tok, PROMPTS, batch_size=4, **SAMPLING)
    assert all(len(set(samples)) == SAMPLING["num_samples"] for samples in outs)
    other_seed = generate(model, tok, PROMPTS, batch_size=4, **{**SAMPLING, "seed": 8})
    assert all(a != b for a, b in zip(outs, other_seed, strict=True))
    # Sample j is the same stream whatever K is: asking for more samples keeps the first ones.
    fewer = generate(model, tok, PROMPTS, batch_size=4, **{**SAMPLING, "num_samples": 2})
    assert fewer == [samples[:2] for samples in outs]


def test_near_zero_temperature_is_greedy(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    greedy = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=4)
    cold = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, num_samples=2, temperature=1e-7)
    assert cold == [samples * 2 for samples in greedy]
    assert generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=2) == greedy
    assert generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, num_samples=3) == [
        samples * 3 for samples in greedy
    ]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sampler_draws_from_the_tempered_softmax(temperature: float) -> None:
    rows = 4000
    logits = torch.tensor([math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)])
    sampler = GumbelSampler([sample_seed(0, "p", j) for j in range(rows)], temperature)
    picks = sampler(torch.zeros(rows, 1, dtype=torch.long), logits.repeat(rows, 1)).argmax(-1)
    share = torch.bincount(picks, minlength=4).double() / rows
    expected = torch.softmax(logits.double() / temperature, -1)
    # Binomial standard error is at most 0.008 here; the draws are seeded, so this is exact
    # across runs, and 0.03 leaves room for any seeds.
    assert torch.allclose(share, expected, atol=0.03), (share, expected)


def test_manifest_records_the_numerics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    numerics = build_manifest("test", {"seed": 0})["numerics"]
    for key in ("torch_num_threads", "torch_num_interop_threads"):
        assert isinstance(numerics[key], int) and numerics[key] >= 1
    assert numerics["onednn_version"] is None or re.fullmatch(r"\d+(\.\d+)+", numerics["onednn_version"])
    assert numerics["cpu_capability"] is None or isinstance(numerics["cpu_capability"], str)
    flags = numerics["cpu_flags"]
    assert flags is None or set(flags) == set(CPU_FLAGS)
    assert flags is None or all(isinstance(v, bool) for v in flags.values())
    json.dumps(numerics)  # manifests are written as JSON
    monkeypatch.setattr(manifest, "CPUINFO", tmp_path / "missing")
    assert manifest.numerics()["cpu_flags"] is None and manifest.numerics()["cpu_model"] is None
    assert onednn_version("  - Intel(R) MKL-DNN v3.7.1 (Git Hash 8d263e6)") == "3.7.1"
    assert onednn_version("  - oneDNN v3.12.0 (Git Hash 80afa71)") == "3.12.0"
    assert onednn_version("no such line") is None
