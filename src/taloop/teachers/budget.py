"""Budget ledger: spend is reserved at its upper bound before a call and settled after.

Reserving first means no order of calls (or, later, concurrent calls) can push spend
past the budget: a call that might overshoot is refused before it is sent.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass


class BudgetExhausted(RuntimeError):
    pass


@dataclass(frozen=True)
class Reservation:
    usd: float
    serial: int  # which reservation of its ledger: each is settled or released once


class Ledger:
    def __init__(self, max_queries: int | None, max_usd: float | None) -> None:
        self.max_queries = max_queries
        self.max_usd = max_usd
        self.queries = 0
        self.usd = 0.0
        self._reserved_queries = 0
        self._reserved_usd = 0.0
        self._open: set[int] = set()
        self._serials = itertools.count()
        self._lock = threading.Lock()

    def reserve(self, usd_upper_bound: float) -> Reservation:
        with self._lock:
            queries = self.queries + self._reserved_queries + 1
            if self.max_queries is not None and queries > self.max_queries:
                raise BudgetExhausted(f"query budget of {self.max_queries} reached")
            usd = self.usd + self._reserved_usd + usd_upper_bound
            if self.max_usd is not None and usd > self.max_usd + 1e-12:
                raise BudgetExhausted(
                    f"USD budget of {self.max_usd:.4f} would be exceeded (spent {self.usd:.4f}, "
                    f"this call may cost up to {usd_upper_bound:.4f})"
                )
            self._reserved_queries += 1
            self._reserved_usd += usd_upper_bound
            reservation = Reservation(usd_upper_bound, next(self._serials))
            self._open.add(reservation.serial)
            return reservation

    def _close(self, reservation: Reservation) -> None:
        """Called under the lock: a second settle or release would free the budget twice."""
        if reservation.serial not in self._open:
            raise ValueError(f"reservation {reservation.serial} was already settled or released")
        self._open.remove(reservation.serial)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        if actual_usd > reservation.usd + 1e-12:
            raise ValueError(f"call cost {actual_usd} more than its reserved bound {reservation.usd}")
        with self._lock:
            self._close(reservation)
            self._reserved_queries -= 1
            self._reserved_usd -= reservation.usd
            self.queries += 1
            self.usd += actual_usd

    def release(self, reservation: Reservation) -> None:
        """The call was not made (or failed unbilled): free its reservation."""
        with self._lock:
            self._close(reservation)
            self._reserved_queries -= 1
            self._reserved_usd -= reservation.usd
