"""Training the top layers from cached lower-layer states (taloop.student.frozen_prefix) against the
plain path: same loss curve, same adapter, and the plain path wherever the cache cannot apply."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from taloop.student.frozen_prefix import frozen_cut
from taloop.student.models import TINY_RANDOM, load_saved, materialize
from taloop.student.training import TrainExample, TrainSettings, encode, train_lora

EXAMPLES = [
    TrainExample(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.\nThe answer is {a + b}.", w)
    for a, b, w in [(1, 2, 1.0), (3, 4, 0.5), (10, 5, 2.0), (7, 7, 1.0), (2, 9, 0.0), (12, 30, 1.5)]
]
# Tolerance: the cached states come from other batches (other padding) than the plain
# path's, so they differ in float rounding only: fp32 to 1e-4; under bf16 autocast (the
# default's setting) each matmul rounds to 8 significant bits (0.4%), so the loss curves and
# weights agree to 2% and 1e-3.
RTOL = {False: 1e-4, True: 2e-2}
ATOL = {False: 1e-6, True: 1e-3}


def _settings(top_layers: int | None, bf16: bool = False) -> TrainSettings:
    return TrainSettings(
        steps=6, learning_rate=5e-3, batch_size=2, max_length=64, seed=0, lora_r=4, lora_alpha=8,
        lora_dropout=0.1, lora_top_layers=top_layers, bf16=bf16,
    )  # fmt: skip


def _train(base: Path, out: Path, reuse: bool, top_layers: int | None = 1, bf16: bool = False) -> list[float]:
    settings = _settings(top_layers, bf16)
    train_lora(base, EXAMPLES, settings, out / "adapter", out / "live", reuse_frozen_states=reuse)
    with (out / "live/plots/metrics/loss.tsv").open() as fh:
        return [float(row["loss"]) for row in csv.DictReader(fh, delimiter="\t")]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("student") / "base"
    materialize(TINY_RANDOM, path)
    return path


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_cached_lower_layers_train_like_the_plain_path(
    base: Path, tmp_path: Path, caplog, bf16: bool
) -> None:
    with caplog.at_level("INFO", logger="taloop.student.training"):
        fast = _train(base, tmp_path / "fast", reuse=True, bf16=bf16)
    assert "lower 1 layers computed once per example" in caplog.text
    plain = _train(base, tmp_path / "plain", reuse=False, bf16=bf16)
    assert len(fast) == len(plain) == 6 and plain[0] != plain[-1]
    assert fast == pytest.approx(plain, rel=RTOL[bf16])
    weights = [load_file(tmp_path / run / "adapter/adapter_model.safetensors") for run in ("fast", "plain")]
    assert weights[0].keys() == weights[1].keys()
    assert all(".layers.1." in key for key in weights[0])  # the adapted layer keeps its index
    for key, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][key], rtol=RTOL[bf16], atol=ATOL[bf16])


def test_plain_path_where_the_cache_does_not_apply(base: Path) -> None:
    model, tok = load_saved(base)
    rows = encode(tok, EXAMPLES, 64)
    assert frozen_cut(model, 1, rows, processes=1) == 1
    assert frozen_cut(model, None, rows, processes=1) is None  # every layer adapted
    assert frozen_cut(model, 2, rows, processes=1) is None  # top_layers covers the whole stack
    assert frozen_cut(model, 1, rows, processes=2) is None
    model.config.attention_dropout = 0.1
    assert frozen_cut(model, 1, rows, processes=1) is None
    model.config.attention_dropout = 0.0
    model.config.model_type = "gemma3_text"
    assert frozen_cut(model, 1, rows, processes=1) is None
