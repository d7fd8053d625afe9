"""Model cards and adapter configs that name the upstream base model (taloop.student.model_card)."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import ModelCard

from taloop.student.model_card import CardFacts, point_to_upstream, render, teacher_facts
from taloop.student.models import ORIGIN_FILE, origin

FACTS = CardFacts(
    name="ta_loop",
    description="warm-up, then stage 2 weighted by the signals",
    origin=origin("smollm2-135m-instruct"),
    teacher=teacher_facts(
        [
            {"backend": "openai", "model": "gpt-x", "usd": 0.25},
            {"backend": "openai", "model": "gpt-x", "usd": 0.25},
        ]
    ),
    training={
        "examples_trained": 72,
        "steps": 36.0,
        "signal_plan": {"measure": "local_window", "signs": {"ta_student": 1}, "combine": "mean"},
    },
)
EVALUATION = {
    "split": "test",
    "accuracy": 0.4875,
    "ci_low": 0.4,
    "ci_high": 0.575,
    "n": 80,
    "baseline": "ft",
    "vs_baseline": {"diff": 0.025, "relative_improvement": 0.0541, "p_value": 0.7},
}


def test_the_upstream_of_a_packaged_gguf_is_its_hub_model() -> None:
    assert origin("smollm2-135m-instruct")["upstream"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "Q4_1" in origin("smollm2-135m-instruct")["quantisation"]
    assert origin("org/some-model") == {
        "alias": "org/some-model",
        "upstream": "org/some-model",
        "quantisation": "none",
    }


def test_card_says_what_made_the_adapter_and_how_well_it_did() -> None:
    card = ModelCard(render(CardFacts(**{**FACTS.__dict__, "evaluation": EVALUATION})))
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    rows = dict(line.strip("|").split(" | ", 1) for line in card.text.splitlines() if line.startswith("| "))
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["teacher"] == "openai:gpt-x"
    assert rows["teacher replies"] == "2 in the run's data, USD 0.5000 at list price"
    assert rows["signals"] == "TA measure local_window, signs {'ta_student': 1}, combined by mean"
    assert rows["test accuracy"] == "48.8% (95% CI 40.0%–57.5%, n = 80)"
    assert rows["vs ft"] == "+2.5 points (+5.4% relative), p = 0.700 (paired, same items)"
    assert "de-quantised" in card.text


def test_card_before_evaluation_points_to_where_the_accuracy_will_be() -> None:
    pending = CardFacts(**{**FACTS.__dict__, "pending": "see models/release/ta_loop"})
    text = render(pending)
    assert "| accuracy | see models/release/ta_loop |" in text and "test accuracy" not in text


def test_adapter_config_names_the_upstream_model(tmp_path: Path) -> None:
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    base.mkdir()
    adapter.mkdir()
    (base / ORIGIN_FILE).write_text(json.dumps(origin("gemma-3-270m")))
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "models/base/ta", "r": 8})
    )
    point_to_upstream(adapter, base)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config == {"base_model_name_or_path": "google/gemma-3-270m", "r": 8}


def test_a_card_names_a_simulated_ta_as_simulated() -> None:
    plan = {
        **FACTS.training["signal_plan"],
        "ta": "simulated TA (set ROC-AUC: teacher replies 0.9, student outputs 0.7)",
    }
    card = ModelCard(
        render(CardFacts(**{**FACTS.__dict__, "training": {**FACTS.training, "signal_plan": plan}}))
    )
    assert (
        "| signals | TA simulated TA (set ROC-AUC: teacher replies 0.9, student outputs 0.7), "
        "measure local_window" in card.text
    )
