"""A study as data: ``studies/<name>.yaml`` and the cells it expands to.

A study file names the params every cell sets (``set``), the swept params with their values
(``sweep``, every combination), named bundles of params swept as one axis (``arms``: a method
is often several params that move together), params that take another param's value in every
cell (``same``: the TA's student-side AUC follows its teacher-side one), the training seeds
(``seeds``, each set on ``seed_params``), the split, the variants, and how its cells are
aggregated (``report``). Each cell is one DVC experiment, named ``<study>-<cell>`` after the
``cell`` template (``{teacher.error_rate}``, ``{arm}``, ``{seed}``: a dotted param, the arm's
name or the seed, numbers written as ``%g``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from taloop.core.errors import UsageError

STUDIES_DIR = Path("studies")
KEPT_DIR = Path("reports/studies")
# The training seeds: data, teacher and evaluation seeds stay, so every seed is scored on the
# same items and the same teacher replies.
TRAINING_SEEDS = ("warmup.seed", "signals.seed", "stage2.seed")
_FIELD = re.compile(r"\{([A-Za-z_][\w.]*)\}")


class StudyError(UsageError):
    """A study file that cannot be read or expanded; the message names the file and field."""


class Study(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    cell: str = "s{seed}"
    split: Literal["test", "val"] = "test"
    baseline: str = "ft"
    variants: list[str]
    set: dict[str, Any] = {}
    sweep: dict[str, list[Any]] = {}
    arms: dict[str, dict[str, Any]] = {}
    same: dict[str, str] = {}
    seeds: list[int] = []
    seed_params: list[str] = list(TRAINING_SEEDS)
    # effect_size: benchmarks' paired comparisons, maps and curves (taloop.studies.aggregate);
    # headroom: ft against oracle_one_stage per setting (taloop.studies.headroom);
    # ta_quality: gains against the TA's AUC per arm, break-even AUC (taloop.studies.ta_quality).
    report: Literal["effect_size", "headroom", "ta_quality"] = "effect_size"
    # Other studies whose cells this one's aggregation reads too (the budget curve's 100% points
    # are the map's cells at the same error rate).
    include: list[str] = []

    @model_validator(mode="after")
    def _names_every_axis(self) -> Study:
        for key, values in self.sweep.items():
            if not values:
                raise ValueError(f"sweep.{key}: no values")
        for target, source in self.same.items():
            if source not in {*self.sweep, *self.set}:
                raise ValueError(f"same.{target}: {source} is neither swept nor set")
        used = set(_FIELD.findall(self.cell))
        axes = {*self.sweep, *(["arm"] if self.arms else []), *(["seed"] if self.seeds else [])}
        if used != axes:
            raise ValueError(f"cell template {self.cell!r} must name exactly these: {sorted(axes)}")
        return self


@dataclass(frozen=True)
class Cell:
    study: str
    name: str
    params: dict[str, Any]  # dotted key -> value, as `dvc exp run -S` sets them

    @property
    def experiment(self) -> str:
        return f"{self.study}-{self.name}"

    def set_args(self) -> list[str]:
        """``-S key=value`` arguments (values in YAML flow style, as DVC parses them)."""
        return [arg for key, value in self.params.items() for arg in ("-S", f"{key}={_yaml(value)}")]


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def load(name: str, root: Path = Path()) -> Study:
    path = root / STUDIES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / STUDIES_DIR).glob("*.yaml"))
        raise StudyError(f"no study named {name!r} ({path} does not exist); studies: {', '.join(known)}")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return Study(name=name, **raw)
    except ValidationError as err:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in err.errors())
        raise StudyError(f"{path}: {fields}") from None


def cells(study: Study) -> list[Cell]:
    """Every combination of the swept values and arms, for every seed (seeds outermost, as the
    kept cells were run; arms innermost, so a point's arms run back to back)."""
    fixed = {**study.set, "eval.split": study.split, "baseline": study.baseline, "compare": study.variants}
    keys = list(study.sweep)
    arms: dict[str | None, dict[str, Any]] = dict(study.arms) or {None: {}}
    out = []
    for seed in study.seeds or [None]:
        for values in itertools.product(*(study.sweep[k] for k in keys)):
            for arm, bundle in arms.items():
                point: dict[str, Any] = {**dict(zip(keys, values, strict=True)), **bundle}
                labels: Mapping[str, Any] = {
                    **point, **({"arm": arm} if arm else {}), **({"seed": seed} if seed is not None else {})
                }  # fmt: skip
                name = _FIELD.sub(lambda m, labels=labels: _label(labels[m.group(1)]), study.cell)
                seeds = {} if seed is None else dict.fromkeys(study.seed_params, seed)
                params = {**fixed, **point, **seeds}
                params |= {target: params[source] for target, source in study.same.items()}
                out.append(Cell(study.name, name, params))
    names = [c.name for c in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StudyError(f"study {study.name}: several cells are named {', '.join(twice)} (cell template)")
    return out


def available(root: Path = Path()) -> list[str]:
    return sorted(p.stem for p in (root / STUDIES_DIR).glob("*.yaml"))
