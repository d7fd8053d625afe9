"""Versioned prompt templates.

Templates are files under ``templates/`` so that dvc.yaml can list them as deps: editing
one reruns exactly the stages that render it, and the version name is recorded with every
teacher reply (and is part of the teacher cache key through the rendered prompt).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"


def available_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.txt"))


@cache
def _template(name: str) -> str:
    path = TEMPLATE_DIR / f"{name}.txt"
    if not path.is_file():
        raise KeyError(f"unknown prompt template {name!r}; available: {', '.join(available_templates())}")
    return path.read_text()


def render(name: str, **fields: str) -> str:
    """Fill ``{field}`` placeholders; str.replace, not str.format, since model text and
    questions may contain braces."""
    text = _template(name)
    for key, value in fields.items():
        text = text.replace(f"{{{key}}}", value.strip())
    return text.strip()
