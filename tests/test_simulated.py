from __future__ import annotations

import re
import statistics
from collections import Counter
from fractions import Fraction
from statistics import fmean
from typing import Any

import pytest

from taloop.params import load_params
from taloop.params.schema import TaskSpec, TeacherConfig
from taloop.student.models import load_tokenizer
from taloop.tasks.base import Example
from taloop.tasks.prompts import render
from taloop.tasks.registry import BUILTIN_TASKS, CATALOGUE, get_task
from taloop.teachers.base import TeacherRequest
from taloop.teachers.rationales import _EQUATION, WRITERS, _evaluate, _value
from taloop.teachers.simulated import SimulatedTeacher

from .conftest import REPO

PRICE = {"input_per_mtok": 2.5, "output_per_mtok": 10.0}


def _teacher(task_configs: dict | None = None, **overrides: object) -> SimulatedTeacher:
    cfg = {"backend": "simulated", "model": "sim", "price": PRICE, "error_rate": 0.2, **overrides}
    config = TeacherConfig.model_validate(cfg, context={"tasks": CATALOGUE})
    return SimulatedTeacher(config, task_configs or {})


def _ask(teacher: SimulatedTeacher, ex: Example, sample: int = 0):
    return teacher.query(TeacherRequest(ex, render("cot_v1", question=ex.question), sample))


def _draw(specs: dict[str, TaskSpec], total: int) -> list[Example]:
    per_task = total // len(specs)
    out: list[Example] = []
    for name, spec in specs.items():
        stream = get_task(name, spec).stream(seed=0, needed=per_task)
        out.extend(ex for _, ex in zip(range(per_task), stream, strict=False))
    return out


@pytest.fixture(scope="module")
def items() -> list[Example]:
    """1,000 items over every built-in task at its generator's default settings."""
    return _draw({name: TaskSpec() for name in BUILTIN_TASKS}, 1000)


@pytest.fixture(scope="module")
def default_items() -> list[Example]:
    """1,000 items of the tasks, settings and seed the default params.yaml uses."""
    return _draw(dict(load_params(REPO / "params.yaml").data.tasks), 1000)


def _judged(teacher: SimulatedTeacher, items: list[Example]) -> list[tuple[Example, object, bool]]:
    rows = []
    for ex in items:
        reply = _ask(teacher, ex)
        task = get_task(ex.task, TaskSpec(config=teacher.task_configs.get(ex.task, {})))
        rows.append((ex, reply, task.is_correct(task.extract(reply.text), ex)))
    return rows


@pytest.mark.parametrize("rate", [0.2, 0.35])
def test_realised_error_rate_within_3_points(default_items: list[Example], rate: float) -> None:
    configs = {n: s.config for n, s in load_params(REPO / "params.yaml").data.tasks.items()}
    judged = _judged(_teacher(configs, error_rate=rate), default_items)
    realised = sum(not ok for _, _, ok in judged) / len(judged)
    assert abs(realised - rate) <= 0.03, realised


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5, 0.8])
def test_error_probabilities_average_to_the_setting(items: list[Example], rate: float) -> None:
    teacher = _teacher(error_rate=rate)
    probabilities = [teacher.item_error_probability(ex) for ex in items]
    assert abs(fmean(probabilities) - rate) < 0.01
    assert all(0 <= p <= 1 for p in probabilities)
    assert max(probabilities) > min(probabilities)  # harder items carry more risk


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_extreme_error_rates_are_exact(items: list[Example], rate: float) -> None:
    judged = _judged(_teacher(error_rate=rate), items[::10])
    assert all(ok == (rate == 0.0) for _, _, ok in judged)


def test_deterministic_per_seed_and_item(items: list[Example]) -> None:
    a, b, other_seed = _teacher(), _teacher(), _teacher(seed=99)
    texts_a = [_ask(a, ex).text for ex in items[:200]]
    assert texts_a == [_ask(b, ex).text for ex in items[:200]]
    assert texts_a != [_ask(other_seed, ex).text for ex in items[:200]]


def test_wrong_replies_are_labelled_and_score_wrong(items: list[Example]) -> None:
    judged = _judged(_teacher(error_rate=0.5), items)
    for ex, reply, ok in judged:
        assert (reply.meta["simulated_error"] is None) == ok, (ex.task, reply.text)
    kinds = {(ex.task, reply.meta["simulated_error"]) for ex, reply, ok in judged if not ok}
    assert kinds >= {
        ("gsm_symbolic", "arithmetic_slip"),
        ("chain_sum", "arithmetic_slip"),
        ("leg_counting", "miscounted_animal"),
        ("leg_counting", "addition_slip"),
        ("syllogism", "flipped_conclusion"),
        ("family_relationships", "wrong_relation"),
    }


def _bad_equations(text: str) -> int:
    return sum(
        abs((_evaluate(m.group(1)) or 0) - _value(m.group(4))) > Fraction(1, 1000)
        for m in _EQUATION.finditer(text)
    )


def test_gsm_slip_propagates_to_a_consistent_wrong_answer(items: list[Example]) -> None:
    teacher = _teacher(error_rate=1.0)
    for ex in (e for e in items if e.task == "gsm_symbolic"):
        reply = _ask(teacher, ex)
        body, _, final = reply.text.rpartition("The answer is ")
        answer = final.rstrip(".")
        assert answer != ex.gold
        # One step is wrong; every step after it is computed from the slipped value.
        assert _bad_equations(body) - _bad_equations(ex.meta["answer_cot"]) <= 1
        equations = list(_EQUATION.finditer(body))
        if equations and _value(equations[-1].group(4)) == Fraction(ex.gold):
            pytest.fail(f"final step still shows the gold answer:\n{reply.text}")
        assert re.search(rf"(?<![\d,.]){re.escape(answer)}(?![\d])", body), reply.text


def test_leg_rationale_adds_up_to_its_answer(items: list[Example]) -> None:
    teacher = _teacher(error_rate=1.0)
    for ex in (e for e in items if e.task == "leg_counting"):
        reply = _ask(teacher, ex)
        products = [int(p) for p in re.findall(r"= (\d+)\.\n", reply.text)[:-1]]
        total_line = re.search(r"Total: ([\d + ]+) = (\d+)\.", reply.text)
        assert total_line is not None
        answer = int(reply.text.rsplit("The answer is ", 1)[1].rstrip("."))
        assert int(total_line.group(2)) == answer != int(ex.gold)
        if reply.meta["simulated_error"] == "miscounted_animal":
            assert sum(products) == answer  # the miscount flows into an honest sum


def test_harder_items_are_wrong_more_often(items: list[Example]) -> None:
    judged = _judged(_teacher(error_rate=0.3), items)
    for task in ("leg_counting", "gsm_symbolic"):
        hard_wrong = [WRITERS[task].hardness(ex) for ex, _, ok in judged if ex.task == task and not ok]
        hard_right = [WRITERS[task].hardness(ex) for ex, _, ok in judged if ex.task == task and ok]
        assert fmean(hard_wrong) > fmean(hard_right), task


def test_tokens_are_counted_with_the_real_tokenizer(items: list[Example]) -> None:
    teacher, tok = _teacher(), load_tokenizer("smollm2-135m-instruct")
    ex = items[0]
    prompt = render("cot_v1", question=ex.question)
    reply = _ask(teacher, ex)
    assert reply.input_tokens == len(tok(prompt, add_special_tokens=False).input_ids)
    assert reply.output_tokens == len(tok(reply.text, add_special_tokens=False).input_ids)
    assert reply.output_tokens > 10


def test_reply_stops_at_max_tokens(items: list[Example]) -> None:
    reply = _ask(_teacher(max_tokens=8), items[250])
    assert reply.output_tokens == 8
    assert reply.meta["truncated"] is True
    assert "The answer is" not in reply.text


def test_samples_of_one_prompt_differ(items: list[Example]) -> None:
    teacher = _teacher(error_rate=0.5)
    texts = {_ask(teacher, items[i], sample=s).text for i in range(200, 210) for s in range(4)}
    assert len(texts) > 10


def _gold_groups(name: str, items: list[Example]) -> list[bool]:
    """Splits items into two groups by gold answer: Yes vs No, above vs at or below the
    median number, or the two most common relations vs the rest."""
    fmt = BUILTIN_TASKS[name]
    if fmt == "yes_no":
        return [ex.gold.strip().lower() == "yes" for ex in items]
    if fmt == "number":
        median = statistics.median(float(ex.gold) for ex in items)
        return [float(ex.gold) > median for ex in items]
    top = {gold for gold, _ in Counter(ex.gold for ex in items).most_common(2)}
    return [ex.gold in top for ex in items]


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_error_probability_does_not_track_the_gold_answer(raw_params: dict[str, Any], name: str) -> None:
    # Errors that follow the gold answer would let any answer-biased signal (a leaning
    # towards "Yes") flag wrong replies without detecting anything. Expected probabilities
    # rather than sampled errors: exact and fast. Tasks params.yaml leaves out run at the
    # generator's defaults.
    configs = {n: (s or {}).get("config", {}) for n, s in raw_params["data"]["tasks"].items()}
    teacher = _teacher(configs)
    stream = get_task(name, TaskSpec(config=configs.get(name, {}))).stream(seed=0, needed=2000)
    items = [ex for _, ex in zip(range(2000), stream, strict=False)]
    groups = _gold_groups(name, items)
    assert 0.2 < fmean(groups) < 0.8, "degenerate split"  # both groups big enough to compare
    probability = [teacher.item_error_probability(ex) for ex in items]
    in_group = fmean(p for p, g in zip(probability, groups, strict=True) if g)
    rest = fmean(p for p, g in zip(probability, groups, strict=True) if not g)
    assert abs(in_group - rest) <= 0.05, (in_group, rest)


# --- error_mode: systematic ----------------------------------------------------------------


def _spot(ex: Example) -> bool:
    return WRITERS[ex.task].blind_spot(ex)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_systematic_error_probabilities_average_to_the_setting(items: list[Example], rate: float) -> None:
    # The blind spot's share is measured on a reference sample, not on these items: 3 points.
    teacher = _teacher(error_rate=rate, error_mode="systematic")
    probabilities = [teacher.item_error_probability(ex) for ex in items]
    assert abs(fmean(probabilities) - rate) < 0.03
    assert all(0 <= p <= 1 for p in probabilities)


def test_systematic_errors_fill_the_blind_spot_first(default_items: list[Example]) -> None:
    configs = {n: s.config for n, s in load_params(REPO / "params.yaml").data.tasks.items()}
    shares = {task: fmean(_spot(ex) for ex in default_items if ex.task == task) for task in configs}
    assert all(0.1 < share < 0.6 for share in shares.values()), shares  # a sub-type, not all or none
    low = _judged(_teacher(configs, error_rate=0.05, error_mode="systematic"), default_items)
    assert all(_spot(ex) for ex, _, ok in low if not ok)
    assert any(not ok for _, _, ok in low)
    high = _judged(_teacher(configs, error_rate=0.5, error_mode="systematic"), default_items)
    for ex, reply, ok in high:
        if _spot(ex):
            assert not ok and reply.meta["simulated_error"].startswith("blind_spot:"), reply.text
    outside = [ok for ex, _, ok in high if not _spot(ex)]
    assert 0 < sum(not ok for ok in outside) < len(outside)  # the rest of the errors, at random


def _answer(reply: Any) -> str:
    return reply.text.rsplit("The answer is ", 1)[1].rstrip(".")


def test_each_blind_spot_applies_one_wrong_rule(items: list[Example]) -> None:
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    teacher = _teacher(error_rate=1.0, error_mode="systematic")
    seen = Counter()
    for ex in filter(_spot, items):
        reply = _ask(teacher, ex)
        answer, kind = _answer(reply), reply.meta["simulated_error"]
        seen[kind] += 1
        if ex.task == "leg_counting":
            insects = {a: n for a, n in ex.meta["animals"].items() if ANIMALS[a] == 6}
            assert all(re.search(rf"{a} has 8 legs", reply.text) for a in insects)
            assert int(answer) == int(ex.gold) + 2 * sum(insects.values())
        elif ex.task == "chain_sum":
            lines = re.findall(r"^(-?\d+) ([-+]) (\d+) = (-?\d+)$", reply.text, re.M)
            for a, op, b, c in lines:
                a_, b_ = int(a), int(b)
                exact = a_ + b_ if op == "+" else a_ - b_
                carry = op == "+" and a_ >= 0 and a_ % 10 + b_ % 10 >= 10
                assert int(c) == exact - 10 * carry, reply.text
            assert int(c) == int(answer) and (int(ex.gold) - int(answer)) % 10 == 0 < int(ex.gold) - int(
                answer
            )
        elif ex.task == "gsm_symbolic" and kind == "blind_spot:stopped_early":
            steps = _EQUATION.findall(ex.meta["answer_cot"])
            # Answers are written to 4 decimals.
            assert abs(Fraction(answer) - _value(steps[-2][3])) < Fraction(1, 1000)
            assert Fraction(answer) != Fraction(ex.gold)
            assert len(_EQUATION.findall(reply.text)) == len(steps) - 1
        elif ex.task == "syllogism":
            assert answer.lower() != ex.gold.strip().lower()
        elif ex.task == "family_relationships":
            assert answer == {"mother": "daughter", "son": "father", "wife": "husband"}.get(ex.gold, answer)
            assert answer != ex.gold
    assert set(seen) == {
        "blind_spot:insect_as_spider", "blind_spot:dropped_carry", "blind_spot:stopped_early",
        "blind_spot:inversion_misread", "blind_spot:converse_relation",
    }  # fmt: skip


def test_a_blind_spot_holds_across_samples_of_a_question(items: list[Example]) -> None:
    # Self-consistency over the teacher's samples cannot reveal a systematic mistake.
    teacher = _teacher(error_rate=0.1, error_mode="systematic")
    for ex in list(filter(_spot, items))[:60]:
        assert len({_answer(_ask(teacher, ex, sample=s)) for s in range(3)}) == 1


def test_the_error_mode_is_part_of_the_reply_cache_key(items: list[Example]) -> None:
    random_mode, systematic = _teacher(), _teacher(error_mode="systematic")
    assert random_mode.settings() != systematic.settings()
    assert "error_mode" not in random_mode.settings()  # replies cached before the mode existed replay
