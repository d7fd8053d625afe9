"""How long a `dvc repro` will take on this machine, before it starts.

The benchmark (benchmarks/run.py) records, per profile, each stage's wall time on the machine
it ran on together with that machine's :func:`speed_probe` in the precision it ran in
(benchmarks/stage_times.json). Here the same probe, run in this machine's resolved precision,
scales those times: most of every heavy stage is the student's linear layers, forward and
backward, which is what the probe times. So a machine that would run bf16 emulated (24x slower
per training step, measured) is told so before it starts, not half an hour into the warm-up.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taloop.params.profiles import flatten
from taloop.params.schema import Params

STAGE_TIMES = Path("benchmarks/stage_times.json")

# SmolLM2-135M's MLP (hidden 576, intermediate 1536) over a batch of 8 x 64 tokens: the shape
# of the student's training and decoding matmuls.
_TOKENS, _HIDDEN, _INTERMEDIATE = 512, 576, 1536


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def speed_probe(bf16: bool, repeats: int = 3) -> float:
    """Median seconds of one forward and backward pass through an MLP block of the student's
    shape, under bf16 autocast or in fp32 (about 0.04 s in fp32 on 2 cores; 1 s under emulated bf16)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(_TOKENS, _HIDDEN, generator=gen)
    up = torch.randn(_INTERMEDIATE, _HIDDEN, generator=gen, requires_grad=True)
    down = torch.randn(_HIDDEN, _INTERMEDIATE, generator=gen, requires_grad=True)

    def once() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            y = F.linear(F.silu(F.linear(x, up)), down)
        y.float().sum().backward()
        return time.perf_counter() - start

    once()  # kernel selection and allocation happen on the first call
    return statistics.median(once() for _ in range(repeats))


@dataclass(frozen=True)
class Estimate:
    seconds: dict[str, float]  # per stage to run, scaled to this machine
    scale: float  # this machine's probe over the reference machine's
    reference: Mapping[str, Any]  # the stage_times.json entry used

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _family(stage: str) -> str:
    """``train_stage2@ta_loop`` -> ``train_stage2``: variants not benchmarked take their kind's mean."""
    return stage.split("@", 1)[0]


def estimate(stages: Iterable[str], reference: Mapping[str, Any], probe_s: float) -> Estimate:
    """Scaled reference seconds for ``stages``; a stage the reference lacks takes the mean of its
    family (another variant of the same stage), else 0 with nothing to go on."""
    times: Mapping[str, float] = reference["stages"]
    families: dict[str, list[float]] = {}
    for name, seconds in times.items():
        families.setdefault(_family(name), []).append(seconds)
    scale = probe_s / reference["probe_s"]
    out = {}
    for stage in stages:
        base = times.get(stage)
        if base is None:
            kin = families.get(_family(stage))
            base = statistics.mean(kin) if kin else 0.0
        out[stage] = base * scale
    return Estimate(out, scale, reference)


def params_differ(params: Params, reference: Mapping[str, Any]) -> list[str]:
    """The dotted params keys where ``params`` and the benchmarked workload differ."""
    ours = flatten(params.model_dump(mode="json"))
    theirs = reference.get("params", {})
    return sorted(k for k in ours.keys() | theirs.keys() if ours.get(k, ...) != theirs.get(k, ...))


def load_reference(profile: str, path: Path = STAGE_TIMES) -> Mapping[str, Any] | None:
    """The benchmark's record for ``profile`` ("default" for params.yaml as committed), if any."""
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(profile)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
