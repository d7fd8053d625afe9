"""Build the teacher that params.yaml asks for."""

from __future__ import annotations

from taloop.params.schema import Params
from taloop.teachers.base import Teacher, api_key


def make_teacher(params: Params, with_key: bool = True) -> Teacher:
    """``with_key=False`` builds an API teacher that can count and plan but not send (for
    estimates without a key); otherwise a missing key fails here, before any request."""
    cfg = params.teacher
    if cfg.backend == "simulated":
        from taloop.teachers.simulated import SimulatedTeacher

        return SimulatedTeacher(cfg, {name: spec.config for name, spec in params.data.tasks.items()})
    if cfg.backend == "hf":
        from taloop.teachers.hf import HFTeacher

        return HFTeacher(cfg)
    if cfg.backend == "openai":
        from taloop.teachers.openai import OpenAITeacher as api_class
    else:
        from taloop.teachers.anthropic import AnthropicTeacher as api_class
    env = cfg.api_key_env or api_class.default_key_env
    return api_class(cfg, api_key(env) if with_key else None)
