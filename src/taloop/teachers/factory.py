"""Build the teacher that params.yaml asks for."""

from __future__ import annotations

from taloop.config import Params
from taloop.teachers.base import Teacher


def make_teacher(params: Params) -> Teacher:
    cfg = params.teacher
    if cfg.backend == "simulated":
        from taloop.teachers.simulated import SimulatedTeacher

        return SimulatedTeacher(cfg, {name: spec.config for name, spec in params.data.tasks.items()})
    raise ValueError(f"teacher.backend: {cfg.backend!r} is not available")
