"""`taloop run`'s time estimate: the benchmark's stage times scaled by a speed probe."""

from __future__ import annotations

from typing import Any

import pytest

from taloop.cli import runtime
from taloop.params import validate_params
from taloop.params.profiles import flatten

REFERENCE = {
    "probe_s": 0.05,
    "stages": {"warmup": 60.0, "train_stage2@two_stage": 100.0, "train_stage2@oracle": 120.0, "report": 5.0},
}


def test_stage_times_scale_with_the_probe() -> None:
    est = runtime.estimate(["warmup", "report"], REFERENCE, probe_s=0.1)  # this machine: half as fast
    assert est.scale == pytest.approx(2.0)
    assert est.seconds == pytest.approx({"warmup": 120.0, "report": 10.0})
    assert est.total == pytest.approx(130.0)


def test_a_variant_not_benchmarked_takes_its_stage_kind_mean() -> None:
    est = runtime.estimate(["train_stage2@ta_loop", "acquire"], REFERENCE, probe_s=0.05)
    assert est.seconds["train_stage2@ta_loop"] == pytest.approx(110.0)
    assert est.seconds["acquire"] == 0.0  # nothing to go on


def test_params_differ_names_the_changed_keys(raw_params: dict[str, Any]) -> None:
    params = validate_params(raw_params)
    reference = {**REFERENCE, "params": flatten(params.model_dump(mode="json"))}
    assert runtime.params_differ(params, reference) == []
    raw_params["budget"]["queries"] = 96
    raw_params["stage2"]["epochs"] = 4
    assert runtime.params_differ(validate_params(raw_params), reference) == [
        "budget.queries",
        "stage2.epochs",
    ]


def test_speed_probe_times_a_pass() -> None:
    assert 0 < runtime.speed_probe(bf16=False, repeats=1) < 10


@pytest.mark.parametrize(("seconds", "text"), [(42, "42 s"), (600, "10 min"), (7200, "2.0 h")])
def test_duration(seconds: float, text: str) -> None:
    assert runtime.duration(seconds) == text
