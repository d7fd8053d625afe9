"""Where a stage's time goes: named phases summed per process, for benchmarks/run.py.

With ``TALOOP_PROFILE=<dir>`` set, every ``with phase("forward"):`` adds its wall time (and a
count) to a per-process table, written at exit to ``<dir>/<DVC_STAGE>.<pid>.json`` together
with the process start-up time (process creation until the first phase began: interpreter
start and imports) and the process's whole wall time until exit. Unset, ``phase`` does nothing but yield,
so the stages pay nothing for it. Phases may nest (``train`` around ``forward``): each is
reported on its own, so nested phases are parts of their parent, not additions to it.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROFILE_ENV = "TALOOP_PROFILE"

_totals: dict[str, list[float]] = {}  # phase -> [seconds, count]
_first_phase: list[float] = []  # epoch time the first phase began


def _process_start() -> float | None:
    """Epoch time the process was created (Linux /proc), or None elsewhere. From the uptime
    rather than /proc/stat's boot time, which is rounded to whole seconds."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # starttime: clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def enabled() -> bool:
    return bool(os.environ.get(PROFILE_ENV))


def add(name: str, seconds: float, count: int = 1) -> None:
    """Add time measured elsewhere (e.g. between two trainer callbacks) to phase ``name``."""
    if not enabled():
        return
    _began(time.time() - seconds)
    entry = _totals.setdefault(name, [0.0, 0])
    entry[0] += seconds
    entry[1] += count


def total(name: str) -> float:
    """Seconds summed so far in phase ``name`` (0 when not profiling)."""
    return _totals.get(name, [0.0, 0])[0]


def _began(at: float) -> None:
    if not _first_phase:
        _first_phase.append(at)
        atexit.register(_write, Path(os.environ[PROFILE_ENV]))
    else:
        _first_phase[0] = min(_first_phase[0], at)


@contextmanager
def phase(name: str) -> Iterator[None]:
    if not enabled():
        yield
        return
    _began(time.time())
    start = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - start)


def _write(out_dir: Path) -> None:
    started = _process_start()
    record = {
        "stage": os.environ.get("DVC_STAGE", "no-stage"),
        "startup_s": None if started is None else max(0.0, _first_phase[0] - started),
        "process_s": None if started is None else time.time() - started,
        "phases": {name: {"seconds": s, "count": int(n)} for name, (s, n) in sorted(_totals.items())},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{record['stage']}.{os.getpid()}.json").write_text(json.dumps(record, indent=1))
