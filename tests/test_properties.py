"""Property-based tests (hypothesis) of invariants the reported numbers rest on: answer
extraction reads back any answer of its kind; stage-2 weights are per task, monotone in
usefulness, and keep their totals; the budget ledger holds its limits under any
interleaving; the reply cache keeps every completed put whatever byte a crash cuts the
next one at."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from taloop.method.selection import SignalPlan, example_weights, usefulness
from taloop.params.schema import Stage2Config, VariantSpec
from taloop.tasks.answers import extract_number, extract_strict, extract_text, extract_yes_no
from taloop.tasks.reasoning_gym_tasks import RELATIONS
from taloop.teachers.budget import BudgetExhausted, Ledger, Reservation
from taloop.teachers.cache import ReplyCache
from tests.test_cache import _put_all, _reply

LOOP = VariantSpec(schedule="two_stage", signals=["self_consistency", "ta_student", "ta_teacher"])
PLAN = SignalPlan("mean_logprob", dict.fromkeys(LOOP.signals, 1), "mean")
CLOSINGS = st.sampled_from([".", "", "!", " ", ".\nMore text with 7 in it."])


@given(st.integers(-(10**9), 10**9), st.booleans(), CLOSINGS)
def test_any_integer_reads_back(value: int, grouped: bool, closing: str) -> None:
    written = f"{value:,}" if grouped else str(value)
    text = f"Some steps: 3 + 4 = 7.\nThe answer is {written}{closing}"
    assert extract_number(text) == str(value)
    assert extract_strict(text, "number") == str(value)


@given(st.decimals(-(10**6), 10**6, places=3, allow_nan=False, allow_infinity=False))
def test_any_decimal_reads_back_as_its_value(value: Any) -> None:
    read = extract_number(f"The answer is {value}.")
    assert read is not None and float(read) == float(value)


@given(st.sampled_from(["Yes", "No"]), st.sampled_from([str.lower, str.upper, str.title]), CLOSINGS)
def test_any_yes_no_reads_back(answer: str, case: Any, closing: str) -> None:
    assert extract_yes_no(f"Premises first.\nThe answer is {case(answer)}{closing}") == answer


@given(st.sampled_from(sorted(RELATIONS)), st.sampled_from(["", "the ", "her ", "**"]), CLOSINGS)
def test_any_relation_reads_back(word: str, before: str, closing: str) -> None:
    assert extract_text(f"The answer is {before}{word}{closing}", RELATIONS) == word


def _rows(task: str, values: list[tuple[float, float, float]]) -> list[dict[str, Any]]:
    return [
        {
            "task": task,
            "sc": sc,
            "ta_student_mean_logprob": st_,
            "ta_teacher_mean_logprob": te,
            "teacher_correct": True,
        }
        for sc, st_, te in values
    ]


SIGNALS = st.tuples(*[st.floats(-5, 5, allow_nan=False)] * 3)
TASK_ROWS = st.lists(SIGNALS, min_size=1, max_size=12)
CONFIGS = st.builds(
    Stage2Config,
    mode=st.sampled_from(["weight", "filter"]),
    keep_fraction=st.floats(0.1, 1.0),
    weight_floor=st.floats(0.0, 0.5),
)


@settings(max_examples=60, deadline=None)
@given(TASK_ROWS, TASK_ROWS, TASK_ROWS, CONFIGS)
def test_a_task_s_weights_ignore_other_tasks(a: list, b: list, other_b: list, cfg: Stage2Config) -> None:
    # Task a's weights (hence its totals and kept count) are the same whatever task b holds.
    first = example_weights(_rows("a", a) + _rows("b", b), LOOP, cfg, PLAN)[: len(a)]
    second = example_weights(_rows("a", a) + _rows("b", other_b), LOOP, cfg, PLAN)[: len(a)]
    assert np.array_equal(first, second)
    if cfg.mode == "weight":
        assert np.isclose(first.mean(), 1.0)
    else:
        assert int((first > 0).sum()) == max(1, round(cfg.keep_fraction * len(a)))


@settings(max_examples=60, deadline=None)
@given(TASK_ROWS, CONFIGS)
def test_weights_are_monotone_in_usefulness(values: list, cfg: Stage2Config) -> None:
    rows = _rows("a", values)
    useful = usefulness(rows, PLAN)
    weights = example_weights(rows, LOOP, cfg, PLAN)
    for i in range(len(rows)):
        for j in range(len(rows)):
            if useful[i] > useful[j]:
                assert weights[i] >= weights[j]


class LedgerMachine(RuleBasedStateMachine):
    """Any interleaving of reserve, settle and release: spend plus what is reserved never
    passes either limit, counters never go negative, and a reservation closes only once."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(max_queries=5, max_usd=1.0)
        self.open: list[Reservation] = []
        self.closed: list[Reservation] = []

    @rule(bound=st.floats(0, 0.6))
    def reserve(self, bound: float) -> None:
        with contextlib.suppress(BudgetExhausted):
            self.open.append(self.ledger.reserve(bound))

    @rule(data=st.data(), share=st.floats(0, 1))
    def settle(self, data: st.DataObject, share: float) -> None:
        if self.open:
            r = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
            self.ledger.settle(r, r.usd * share)
            self.closed.append(r)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if self.open:
            r = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
            self.ledger.release(r)
            self.closed.append(r)

    @rule(data=st.data(), settle=st.booleans())
    def close_again(self, data: st.DataObject, settle: bool) -> None:
        if self.closed:
            r = data.draw(st.sampled_from(self.closed))
            with pytest.raises(ValueError, match="already settled or released"):
                self.ledger.settle(r, 0.0) if settle else self.ledger.release(r)

    @invariant()
    def within_limits(self) -> None:
        led = self.ledger
        assert 0 <= led._reserved_queries == len(self.open)
        assert led._reserved_usd >= -1e-9 and led.usd >= 0
        assert led.queries + led._reserved_queries <= 5
        assert led.usd + led._reserved_usd <= 1.0 + 1e-9


TestLedgerInterleavings = LedgerMachine.TestCase
TestLedgerInterleavings.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.data())
def test_every_completed_put_survives_a_crash_anywhere_in_the_next(count: int, data: st.DataObject) -> None:
    # The journal after `count` completed puts, then the next put's line cut at any byte, as a
    # kill during its write leaves it: a new reader returns exactly the completed ones.
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        asyncio.run(_put_all(ReplyCache(root), count + 1))
        (journal,) = (root / "teacher").glob("journal-*.jsonl")
        lines = journal.read_bytes().splitlines(keepends=True)
        cut = data.draw(st.integers(0, len(lines[-1]) - 1))
        journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:cut])
        last = json.loads(lines[-1])["key"]
        cache = ReplyCache(root)
        done = {json.loads(line)["key"] for line in lines[:-1]}
        assert set(cache.replies) == done and last not in cache
        assert all(cache.get(f"key{n}") == _reply(n) for n in range(count + 1) if f"key{n}" in done)


def test_threads_reserving_at_once_never_pass_the_limits() -> None:
    # 8 threads race to reserve and settle 40 calls each against a 50-query, 5-USD budget
    # (0.09 USD bound, 0.08 actual): exactly the budget's worth succeeds, never more.
    ledger = Ledger(max_queries=50, max_usd=5.0)
    start = threading.Barrier(8)

    def worker() -> int:
        start.wait()
        made = 0
        for _ in range(40):
            try:
                r = ledger.reserve(0.09)
            except BudgetExhausted:
                continue
            ledger.settle(r, 0.08)
            made += 1
        return made

    with ThreadPoolExecutor(8) as pool:
        made = sum(pool.map(lambda _: worker(), range(8)))
    assert made == ledger.queries == 50
    assert ledger.usd == pytest.approx(50 * 0.08) and ledger._reserved_queries == 0
