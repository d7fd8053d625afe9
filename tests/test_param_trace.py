"""taloop.core.param_trace: what a process records as read (the params-coverage test relies on it;
tests/test_pipeline_full.py holds dvc.yaml to the records of a real run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from taloop.core.param_trace import TRACE_ENV

from .conftest import REPO

READER = """
from taloop.params import load_params
p = load_params({params!r})
p.student.bf16                    # a leaf
p.student                         # only a way down: nothing recorded by itself
p.variants["ft"].description      # through a dict of sections
p.data.tasks                      # a dict of sections: only the fields read below count
p.data.tasks["syllogism"].config
p.eval.model_dump()               # every field of a section at once
p.compare                         # a list is a leaf
load_params({params!r}).teacher.model   # a second load adds to the same record
"""


def _trace(tmp_path: Path, code: str, traced: bool = True) -> list[dict]:
    out = tmp_path / "trace"
    env = dict(os.environ, DVC_STAGE="evaluate@ta_loop")
    if traced:
        env[TRACE_ENV] = str(out)
    else:
        env.pop(TRACE_ENV, None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def test_records_the_leaves_a_process_reads(tmp_path: Path) -> None:
    records = _trace(tmp_path, READER.format(params=str(REPO / "params.yaml")))
    assert len(records) == 1 and records[0]["stage"] == "evaluate@ta_loop"
    assert records[0]["reads"] == [
        "compare",
        "data.tasks.syllogism.config",
        "eval",
        "student.bf16",
        "teacher.model",
        "variants.ft.description",
    ]


def test_writes_nothing_unless_asked(tmp_path: Path) -> None:
    assert _trace(tmp_path, READER.format(params=str(REPO / "params.yaml")), traced=False) == []


def test_a_process_outside_a_dvc_stage_is_not_traced(tmp_path: Path) -> None:
    out = tmp_path / "trace"
    env = {k: v for k, v in os.environ.items() if k != "DVC_STAGE"} | {TRACE_ENV: str(out)}
    code = f"from taloop.params import load_params; load_params({str(REPO / 'params.yaml')!r}).teacher.model"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    assert not out.exists()
