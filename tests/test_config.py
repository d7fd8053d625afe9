from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from taloop.params import load_params, validate_params
from taloop.params.profiles import apply_profile
from taloop.params.schema import ConfigError
from taloop.tasks.splits import make_splits

from .conftest import REPO


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[last] = value


def _delete(raw: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    del node[last]


def test_repository_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.budget.queries > 0
    assert len(params.data.tasks) == 4
    assert params.baseline == "ft" and {"two_stage", "ta_loop", "oracle"} <= set(params.compare)
    assert len(params.variants) == 9
    one_stage_oracle = params.variants["oracle_one_stage"]  # ft's schedule, gold-filtered
    assert one_stage_oracle.schedule == params.variants["ft"].schedule == "one_stage"
    assert one_stage_oracle.gold_filter and not one_stage_oracle.signals


BAD_VALUES = [
    ("budget.queries", -5, "budget.queries"),
    ("budget.queries", 0, "budget.queries"),
    ("budget.queries", "lots", "budget.queries"),
    ("budget.queries", 10**9, "budget.queries"),  # more than the train pool
    ("budget.usd", -1.0, "budget.usd"),
    ("warmup.fraction", 0.0, "warmup.fraction"),
    ("warmup.fraction", 1.0, "warmup.fraction"),
    ("warmup.fraction", 1.5, "warmup.fraction"),
    ("teacher.error_rate", 1.2, "teacher.error_rate"),
    ("teacher.error_rate", -0.1, "teacher.error_rate"),
    ("teacher.backend", "gpt5-magic", "teacher.backend"),
    ("teacher.samples", 0, "teacher.samples"),
    ("teacher.max_tokens", 0, "teacher.max_tokens"),
    ("teacher.temperature", 3.0, "teacher.temperature"),
    ("teacher.prompt_template", "cot_v999", "teacher.prompt_template"),
    ("teacher.price.input_per_mtok", -2, "teacher.price.input_per_mtok"),
    ("teacher.price.batch_discount", 1.0, "teacher.price.batch_discount"),
    ("signals.samples", 1, "signals.samples"),
    ("signals.temperature", 0.0, "signals.temperature"),
    ("ta.scorer", "vibes", "ta.scorer"),
    ("data.train_per_task", 0, "data.train_per_task"),
    ("data.test_per_task", -3, "data.test_per_task"),
    ("data.tasks", {}, "data.tasks"),
    ("data.tasks.chess_puzzles", {}, "data.tasks"),
    ("data.tasks.leg_counting", {"config": {"max_legs": 3}}, "leg_counting.config"),
    ("data.tasks.leg_counting", {"config": {"min_animals": 5, "max_animals": 2}}, "leg_counting.config"),
    ("data.tasks.syllogism", {"source": "jsonl"}, "data.tasks.syllogism"),
    ("compare", ["ta_loop", "nonsense"], "compare"),
    ("compare", ["ft"], "compare"),
    ("baseline", "best", "baseline"),
    ("variants.ta_loop.signals", ["vibes"], "variants.ta_loop.signals"),
    ("variants.ft.schedule", "three_stage", "variants.ft.schedule"),
    ("stage2.mode", "boost", "stage2.mode"),
    ("stage2.keep_fraction", 0.0, "stage2.keep_fraction"),
    ("student.lora.r", 0, "student.lora.r"),
    ("eval.bootstrap", 10, "eval.bootstrap"),
    ("teacher.model", "", "teacher.model"),
    ("budget.surprise", 3, "budget.surprise"),
    ("teacher.cache_only", "sometimes", "teacher.cache_only"),
]


@pytest.mark.parametrize(("key", "value", "named"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_names_the_key(raw_params: dict[str, Any], key: str, value: Any, named: str) -> None:
    _set(raw_params, key, value)
    with pytest.raises(ConfigError) as info:
        validate_params(raw_params)
    assert named in str(info.value)


@pytest.mark.parametrize("key", ["budget.queries", "teacher.backend", "teacher.price", "data.tasks"])
def test_missing_required_key_is_named(raw_params: dict[str, Any], key: str) -> None:
    _delete(raw_params, key)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_params(raw_params)


def test_unknown_section_lists_allowed_keys(raw_params: dict[str, Any]) -> None:
    raw_params["teachr"] = {}
    with pytest.raises(ConfigError) as info:
        validate_params(raw_params)
    assert "teachr" in str(info.value)
    assert "teacher" in str(info.value)  # the allowed keys are listed


def test_unknown_teacher_backend_lists_allowed(raw_params: dict[str, Any]) -> None:
    raw_params["teacher"]["backend"] = "oracle"
    with pytest.raises(ConfigError, match="simulated"):
        validate_params(raw_params)


def test_one_stage_signals_need_base_student_scores(raw_params: dict[str, Any]) -> None:
    raw_params["compare"] = ["ta_loop_one_stage"]
    with pytest.raises(ConfigError, match=r"signals\.base_student"):
        validate_params(raw_params)
    raw_params["signals"]["base_student"] = True
    # the validation calibration covers the warmed-up student's signals only
    with pytest.raises(ConfigError, match=r"signals\.selection: .*as_listed"):
        validate_params(raw_params)
    raw_params["signals"]["selection"] = "as_listed"
    # calibrated weights are fitted on the warmed-up student too: caught before anything is bought
    raw_params["stage2"]["weighting"] = "calibrated"
    with pytest.raises(ConfigError, match=r"stage2\.weighting: .*rank"):
        validate_params(raw_params)
    raw_params["stage2"]["weighting"] = "rank"
    validate_params(raw_params)


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every non-mapping value by its key path."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _key_orders(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], list[str]]:
    """Each mapping's keys, in file order, by the mapping's key path."""
    out = {prefix: list(tree)}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_key_orders(value, (*prefix, key)))
    return out


def _comments(text: str) -> list[str]:
    return [line[line.index("#") :] for line in text.splitlines() if "#" in line]


@pytest.mark.parametrize("profile", ["test", "paper", "study"])
def test_profile_keeps_comments_and_key_order(profile: str, tmp_path: Path) -> None:
    original_text = (REPO / "params.yaml").read_text()
    target = tmp_path / "params.yaml"
    target.write_text(original_text)
    returned = apply_profile(profile, target, REPO / "profiles")
    written_text = target.read_text()
    original, written = yaml.safe_load(original_text), yaml.safe_load(written_text)
    overrides = _leaves(yaml.safe_load((REPO / "profiles" / f"{profile}.yaml").read_text()))

    assert _comments(original_text) and _comments(written_text) == _comments(original_text)
    written_orders = _key_orders(written)
    for path, keys in _key_orders(original).items():
        assert written_orders[path][: len(keys)] == keys, path  # a key the profile adds goes last
    for path, value in overrides.items():
        node = written
        for key in path:
            node = node[key]
        # an empty mapping merges into the one there (leaving it as it was), a leaf replaces
        assert isinstance(node, dict) if value == {} else node == value, path
    assert written != original  # the checks above are not vacuous
    written_leaves = _leaves(written)
    for path, value in _leaves(original).items():
        if not any(path[: len(o)] == o or o[: len(path)] == path for o in overrides):
            assert written_leaves[path] == value, path
    load_params(target)
    assert returned == written  # what the caller gets is what the file now says


def test_invalid_profile_leaves_params_untouched(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "broken.yaml").write_text("budget: {queries: -1}\n")
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    with pytest.raises(ConfigError, match=r"budget\.queries"):
        apply_profile("broken", target, tmp_path / "profiles")
    assert target.read_text() == (REPO / "params.yaml").read_text()


def test_simulated_teacher_refuses_user_datasets(raw_params: dict[str, Any]) -> None:
    raw_params["data"]["tasks"]["mine"] = {"source": "jsonl", "path": "x.jsonl", "answer_format": "number"}
    with pytest.raises(ConfigError, match=r"teacher\.backend"):
        validate_params(raw_params)


def test_all_problems_reported_at_once(raw_params: dict[str, Any]) -> None:
    raw_params["budget"]["queries"] = -1
    raw_params["teacher"]["error_rate"] = 7
    with pytest.raises(ConfigError) as info:
        validate_params(raw_params)
    assert {p for p, _ in info.value.problems} >= {"budget.queries", "teacher.error_rate"}


def _run_validator(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taloop.params", str(path)], capture_output=True, text=True, check=False
    )


def test_cli_rejects_negative_budget(raw_params: dict[str, Any], tmp_path: Path) -> None:
    raw_params["budget"]["queries"] = -5
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params))
    result = _run_validator(path)
    assert result.returncode != 0
    assert "budget.queries" in result.stderr


def test_cli_accepts_repository_params() -> None:
    result = _run_validator(REPO / "params.yaml")
    assert result.returncode == 0, result.stderr


def test_cli_reports_broken_yaml(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data: [unclosed\n")
    result = _run_validator(path)
    assert result.returncode != 0
    assert "YAML" in result.stderr


@pytest.mark.parametrize("profile", ["test", "paper", "study"])
def test_a_profile_draws_its_splits_of_distinct_questions(profile: str, tmp_path: Path) -> None:
    # Validation alone passed a study profile asking leg_counting for 470 distinct questions
    # of the 148 its default generator settings have (and a paper profile asking the default's
    # chain_sum for 2,600 of 2,123); `dvc repro` then failed in prepare_data.
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    data = validate_params(apply_profile(profile, target, REPO / "profiles")).data
    splits = make_splits(data)
    for split, per_task in (
        ("train", data.train_per_task),
        ("val", data.val_per_task),
        ("test", data.test_per_task),
    ):
        assert len(splits[split]) == per_task * len(data.tasks), split
