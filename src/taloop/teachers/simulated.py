"""An offline, deterministic, imperfect teacher for the built-in tasks.

It writes a natural chain of thought from the generator's metadata and is wrong with
probability ``error_rate`` on average. With ``error_mode: random`` it errs more often on
harder items: an item's error probability is ``error_rate`` scaled by its hardness relative
to the task's mean hardness, so the expected error rate stays at the setting. Hardness reads
an item's structure, never its gold answer, so mistakes do not lean towards any answer.

With ``error_mode: systematic`` the mistakes are a blind spot, as a real teacher's are: each
task has a sub-type of items (insects, additions with a carry, long chains, inverted
syllogisms, ties through a marriage; see rationales.py) on which the teacher applies one
consistent wrong rule. Its errors go to that sub-type first (all of it once ``error_rate``
reaches the sub-type's share) and only the rest, if any, to random items, so the expected
error rate is still the setting.

Tokens are counted with a real tokenizer and priced like an API, so budgets and spend behave
as they would with a paid teacher.
"""

from __future__ import annotations

import random
from functools import cache
from statistics import fmean
from typing import Any

from taloop.params.schema import TeacherConfig
from taloop.student.models import load_tokenizer
from taloop.tasks.base import Example
from taloop.tasks.registry import get_task
from taloop.teachers.base import TeacherReply, TeacherRequest
from taloop.teachers.rationales import WRITERS

# How strongly hardness moves an item's error probability around the mean (0 = not at all).
HARDNESS_SPREAD = 0.5
_REFERENCE_ITEMS = 1000
# A data seed nobody uses, so the calibration sample is not the data being labelled.
REFERENCE_SEED = 7919
# Part of the reply cache key: bump it whenever the writers or the error model change what a
# reply says, so replies cached by an older simulation are not replayed as if current.
# 2: hardness no longer reads the gold label (syllogism).
WRITER_REVISION = 2


@cache
def _reference(task: str, config_items: tuple[tuple[str, Any], ...]) -> tuple[float, float]:
    """Mean hardness and the blind spot's share over a fixed reference sample of the task's
    generator."""
    from taloop.params.schema import TaskSpec

    spec = TaskSpec(config=dict(config_items))
    stream = get_task(task, spec).stream(seed=REFERENCE_SEED, needed=_REFERENCE_ITEMS)
    writer = WRITERS[task]
    items = [ex for _, ex in zip(range(_REFERENCE_ITEMS), stream, strict=False)]
    return fmean(writer.hardness(ex) for ex in items), fmean(writer.blind_spot(ex) for ex in items)


def blind_spot_probability(error_rate: float, in_spot: bool, share: float) -> float:
    """An item's error probability in systematic mode: the blind spot (``share`` of the items)
    takes the errors first, the other items what the blind spot cannot hold; the mean over
    items is ``error_rate``."""
    if in_spot:
        return min(1.0, error_rate / share) if share > 0 else 1.0
    return max(0.0, (error_rate - share) / (1 - share)) if share < 1 else 0.0


def error_probability(error_rate: float, hardness: float, mean_hardness: float) -> float:
    if error_rate in (0.0, 1.0):
        return error_rate
    # Shrink the spread near the ends so the probability stays in [0, 1] without clipping.
    spread = HARDNESS_SPREAD * min(1.0, (1 - error_rate) / error_rate)
    return min(1.0, error_rate * (1 + spread * (hardness / mean_hardness - 1)))


class SimulatedTeacher:
    backend = "simulated"

    def __init__(self, cfg: TeacherConfig, task_configs: dict[str, dict[str, Any]]) -> None:
        self.cfg = cfg
        self.model = cfg.model
        self.task_configs = task_configs
        self._tokenizer = load_tokenizer(cfg.tokenizer)

    def settings(self) -> dict[str, Any]:
        cfg = self.cfg
        settings = {
            "error_rate": cfg.error_rate,
            "seed": cfg.seed,
            "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature,
            "tokenizer": cfg.tokenizer,
            "writer_revision": WRITER_REVISION,
        }
        # Only when set, so the replies cached before the setting existed keep their keys.
        if cfg.error_mode != "random":
            settings["error_mode"] = cfg.error_mode
        return settings

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False).input_ids)

    def item_error_probability(self, ex: Example) -> float:
        config = tuple(sorted(self.task_configs.get(ex.task, {}).items()))
        mean_hardness, share = _reference(ex.task, config)
        writer = WRITERS[ex.task]
        if self.cfg.error_mode == "systematic":
            return blind_spot_probability(self.cfg.error_rate, writer.blind_spot(ex), share)
        return error_probability(self.cfg.error_rate, writer.hardness(ex), mean_hardness)

    def query(self, request: TeacherRequest) -> TeacherReply:
        ex = request.example
        rng = random.Random(f"{self.cfg.seed}:{ex.id}:{request.sample}")
        systematic = self.cfg.error_mode == "systematic"
        # A blind spot does not come and go between samples of one question: in systematic
        # mode whether the teacher errs is drawn once per question.
        draw = random.Random(f"{self.cfg.seed}:{ex.id}:systematic").random() if systematic else rng.random()
        wrong = draw < self.item_error_probability(ex)
        writer = WRITERS[ex.task]
        if wrong and systematic and writer.blind_spot(ex):
            rationale = writer.write_blind(ex, rng)
        else:
            rationale = writer.write(ex, wrong, rng)
        ids = self._tokenizer(rationale.text, add_special_tokens=False).input_ids
        text = rationale.text
        if len(ids) > self.cfg.max_tokens:  # like an API: the reply stops at max_tokens
            ids = ids[: self.cfg.max_tokens]
            text = self._tokenizer.decode(ids)
        return TeacherReply(
            text=text,
            input_tokens=self.count_tokens(request.prompt),
            output_tokens=len(ids),
            meta={"simulated_error": rationale.error, "truncated": text != rationale.text},
        )

    async def aquery(self, request: TeacherRequest) -> TeacherReply:
        return self.query(request)

    async def aclose(self) -> None:
        return None
