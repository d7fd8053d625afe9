from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from taloop.params.schema import DataConfig, TaskSpec
from taloop.tasks.base import example_id
from taloop.tasks.files import DatasetRowError
from taloop.tasks.registry import CATALOGUE, get_task
from taloop.tasks.splits import make_splits, stratified_order

BUILTINS = {"gsm_symbolic": {}, "leg_counting": {}, "syllogism": {}, "family_relationships": {}}


def _data(**overrides: object) -> DataConfig:
    base = {"seed": 1, "tasks": BUILTINS, "train_per_task": 30, "val_per_task": 5, "test_per_task": 10}
    base.update(overrides)
    return DataConfig.model_validate(base, context={"tasks": CATALOGUE})


def test_splits_are_disjoint_sized_and_deterministic() -> None:
    a, b = make_splits(_data()), make_splits(_data())
    for split, n in (("train", 30), ("val", 5), ("test", 10)):
        assert Counter(ex.task for ex in a[split]) == {t: n for t in BUILTINS}
        assert [ex.id for ex in a[split]] == [ex.id for ex in b[split]]
    ids = [ex.id for split in a.values() for ex in split]
    assert len(ids) == len(set(ids))


def test_growing_the_train_pool_keeps_test_and_val() -> None:
    small, big = make_splits(_data()), make_splits(_data(train_per_task=60))
    assert [e.id for e in small["test"]] == [e.id for e in big["test"]]
    assert [e.id for e in small["val"]] == [e.id for e in big["val"]]
    assert {e.id for e in small["train"]} <= {e.id for e in big["train"]}


def test_ids_hash_task_and_question() -> None:
    ex = make_splits(_data())["train"][0]
    assert ex.id == example_id(ex.task, ex.question)
    assert example_id("a", "q") != example_id("b", "q")


def test_generator_config_changes_items() -> None:
    easy = _data(tasks={"leg_counting": {"config": {"min_animals": 1, "max_animals": 2}}})
    for ex in make_splits(easy)["train"]:
        assert 1 <= len(ex.meta["animals"]) <= 2


def test_stratified_order_prefixes_are_even_and_nested() -> None:
    pool = make_splits(_data())["train"]
    order = stratified_order(pool, seed=4)
    assert sorted(e.id for e in order) == sorted(e.id for e in pool)
    for n in (8, 20, 44):
        assert Counter(e.task for e in order[:n]) == {t: n // 4 for t in BUILTINS}
    assert order == stratified_order(list(reversed(pool)), seed=4)  # input order does not matter
    assert order != stratified_order(pool, seed=5)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_dataset_with_custom_fields(tmp_path: Path) -> None:
    rows = [{"q": f"What is {i} + {i}?", "a": f"{2 * i:,}", "src": "mine"} for i in range(1000, 1040)]
    path = _write_jsonl(tmp_path / "add.jsonl", rows)
    spec = TaskSpec(
        source="jsonl", path=str(path), question_field="q", answer_field="a", answer_format="number"
    )
    data = _data(tasks={"add": spec.model_dump()}, train_per_task=20, val_per_task=5, test_per_task=10)
    splits = make_splits(data)
    assert sum(len(s) for s in splits.values()) == 35
    ex = splits["train"][0]
    assert ex.gold.isdigit() and "," not in ex.gold
    assert ex.meta == {"src": "mine"}
    task = get_task("add", spec)
    assert task.is_correct(task.extract(f"The answer is {int(ex.gold):,}."), ex)


def test_csv_dataset_yes_no(tmp_path: Path) -> None:
    path = tmp_path / "yn.csv"
    path.write_text(
        "question,label\n" + "".join(f"Is {i} even?,{'yes' if i % 2 == 0 else 'no'}\n" for i in range(30))
    )
    spec = TaskSpec(source="csv", path=str(path), answer_field="label", answer_format="yes_no")
    examples = list(get_task("yn", spec).stream(seed=0, needed=30))
    assert {e.gold for e in examples} == {"Yes", "No"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"question": "q1", "answer": "3"}, {"question": "q2"}], r"add\.jsonl:2: field 'answer'"),
        ([{"question": "", "answer": "3"}], r"add\.jsonl:1: field 'question'"),
        ([{"question": "q", "answer": "three"}], r"add\.jsonl:1: .*not a number"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, rows: list[dict], message: str) -> None:
    path = _write_jsonl(tmp_path / "add.jsonl", rows)
    spec = TaskSpec(source="jsonl", path=str(path), answer_format="number")
    with pytest.raises(DatasetRowError, match=message):
        list(get_task("add", spec).stream(seed=0, needed=1))


def test_malformed_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "add.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n{"question": oops}\n')
    spec = TaskSpec(source="jsonl", path=str(path), answer_format="number")
    with pytest.raises(DatasetRowError, match=r"add\.jsonl:2: not valid JSON"):
        list(get_task("add", spec).stream(seed=0, needed=1))


def test_hf_datasets_source_reads_a_local_folder(tmp_path: Path) -> None:
    """The `datasets.load_dataset` path, exercised offline on a local folder of JSONL."""
    _write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": str(i)} for i in range(12)])
    spec = TaskSpec(source="hf", hf_name=str(tmp_path), hf_split="train", answer_format="number")
    examples = list(get_task("d", spec).stream(seed=0, needed=12))
    assert sorted(int(e.gold) for e in examples) == list(range(12))


def test_too_small_source_is_reported(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "t.jsonl", [{"question": f"q{i}", "answer": "1"} for i in range(5)])
    spec = {"source": "jsonl", "path": str(path), "answer_format": "number"}
    with pytest.raises(ValueError, match=r"data\.tasks\.t: only 5 distinct"):
        make_splits(_data(tasks={"t": spec}))
