"""Versioned prompt templates.

Templates are files under ``templates/`` so that dvc.yaml can list them as deps: editing
one reruns exactly the stages that render it, and the version name is recorded with every
teacher reply (and is part of the teacher cache key through the rendered prompt).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"

# `{name}` only: other braces (JSON, set notation in a question) are not placeholders
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def available_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.txt"))


@cache
def _template(name: str) -> str:
    path = TEMPLATE_DIR / f"{name}.txt"
    if not path.is_file():
        raise KeyError(f"unknown prompt template {name!r}; available: {', '.join(available_templates())}")
    return path.read_text()


def render(name: str, **fields: str) -> str:
    """Fill the template's ``{field}`` placeholders in one pass over the template, so a
    field's text (a question or model output, which may contain braces or even ``{output}``)
    is inserted verbatim and never searched for placeholders itself."""
    text = _template(name)
    wanted = set(_PLACEHOLDER.findall(text))
    # a placeholder left in would reach a (paid) teacher as literal text
    if missing := sorted(wanted - fields.keys()):
        given = ", ".join(sorted(fields)) or "none"
        raise KeyError(f"prompt template {name!r} needs field(s) {', '.join(missing)}; given: {given}")
    return _PLACEHOLDER.sub(lambda m: fields[m.group(1)].strip(), text).strip()
