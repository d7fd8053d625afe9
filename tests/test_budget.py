"""The budget ledger: a call is reserved at its upper bound before it is sent, settled at
its actual cost after, and refused when it might push spend past the budget. Float sums of
prices carry rounding noise, so totals within 1e-12 USD of a limit (inclusive) still fit."""

from __future__ import annotations

import pytest

from taloop.teachers.budget import BudgetExhausted, Ledger


@pytest.mark.parametrize(
    ("max_usd", "bounds"),
    [
        (1.0, [1.0]),  # exactly the budget
        (0.3, [0.1, 0.1, 0.1]),  # sums to 0.30000000000000004: rounding noise only
        (1.0, [0.25, 0.75]),
        (1.0, [1.0 + 1e-12]),  # at the edge of the rounding tolerance
    ],
)
def test_reservations_that_fit_the_budget_are_accepted(max_usd: float, bounds: list[float]) -> None:
    ledger = Ledger(max_queries=None, max_usd=max_usd)
    for bound in bounds:
        ledger.reserve(bound)
    with pytest.raises(BudgetExhausted):  # every bound was counted: the budget is now full
        ledger.reserve(1e-3)


@pytest.mark.parametrize(
    ("max_usd", "bounds"),
    [
        (1.0, [1.0 + 1e-9]),  # over by far more than rounding noise
        (1.0, [0.6, 0.6]),  # the first call is still in flight
        (0.3, [0.1, 0.1, 0.1, 0.1]),
    ],
)
def test_a_reservation_past_the_budget_is_refused(max_usd: float, bounds: list[float]) -> None:
    ledger = Ledger(max_queries=None, max_usd=max_usd)
    for bound in bounds[:-1]:
        ledger.reserve(bound)
    with pytest.raises(BudgetExhausted, match="USD budget"):
        ledger.reserve(bounds[-1])


@pytest.mark.parametrize("actual", [0.0, 0.2, 0.5, 0.5 + 1e-12])
def test_settling_at_or_under_the_reserved_bound_records_the_actual_cost(actual: float) -> None:
    ledger = Ledger(max_queries=3, max_usd=1.0)
    ledger.settle(ledger.reserve(0.5), actual)
    assert (ledger.queries, ledger.usd) == (1, actual)
    # The reservation is freed: what is left is the budget less the actual cost.
    ledger.reserve(1.0 - actual)


@pytest.mark.parametrize("actual", [0.5 + 1e-9, 0.6])
def test_settling_above_the_reserved_bound_is_an_error(actual: float) -> None:
    ledger = Ledger(max_queries=None, max_usd=1.0)
    reservation = ledger.reserve(0.5)
    with pytest.raises(ValueError, match="more than its reserved bound"):
        ledger.settle(reservation, actual)


def test_a_reservation_closes_only_once() -> None:
    ledger = Ledger(max_queries=2, max_usd=None)
    first = ledger.reserve(0.0)
    ledger.release(first)
    with pytest.raises(ValueError, match="already settled or released"):
        ledger.settle(first, 0.0)
    second = ledger.reserve(0.0)
    ledger.settle(second, 0.0)
    with pytest.raises(ValueError, match="already settled or released"):
        ledger.release(second)
    assert ledger.queries == 1
    ledger.reserve(0.0)  # the released query was given back: one of two is left
    with pytest.raises(BudgetExhausted, match="query budget of 2"):
        ledger.reserve(0.0)
