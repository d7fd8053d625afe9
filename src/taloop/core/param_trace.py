"""Records which params a stage actually reads, so a test can hold dvc.yaml to it.

DVC reruns a stage only when a param the stage *declares* changes; a param read but not
declared leaves stale outputs behind (a model trained in bf16 after ``student.bf16: false``).
With ``TALOOP_PARAMS_TRACE=<dir>`` set, :func:`taloop.params.load_params` hands the params to
:func:`trace`, and at exit the process writes the dotted keys it read to
``<dir>/<DVC_STAGE>.<pid>.json``; tests/test_params_coverage.py compares them with dvc.yaml.
Off by default: attribute access then costs nothing extra.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

TRACE_ENV = "TALOOP_PARAMS_TRACE"

# Methods that read every field of a section at once (pydantic reads __dict__ directly, so
# the fields' own accesses are never seen).
_WHOLE_SECTION_READS = frozenset({"model_dump", "model_dump_json", "model_copy"})


class _Recorder:
    def __init__(self) -> None:
        # id -> (section, dotted path); the section is kept alive so its id is never reused.
        self.paths: dict[int, tuple[BaseModel, str]] = {}
        self.reads: set[str] = set()

    def register(self, node: BaseModel, prefix: str) -> None:
        self.paths[id(node)] = (node, prefix)
        for name in type(node).model_fields:
            value = node.__dict__[name]
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(value, BaseModel):
                self.register(value, path)
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, BaseModel):
                        self.register(item, f"{path}.{key}")

    def saw(self, node: BaseModel, name: str, value: Any) -> None:
        entry = self.paths.get(id(node))
        if entry is None:
            return
        prefix = entry[1]
        if name in _WHOLE_SECTION_READS:
            self.reads.add(prefix or "<all>")
        elif name in type(node).model_fields and not _is_container_of_sections(value):
            self.reads.add(f"{prefix}.{name}" if prefix else name)


def _is_container_of_sections(value: Any) -> bool:
    """Sections and dicts of sections are only a way down to the fields actually read."""
    if isinstance(value, BaseModel):
        return True
    return isinstance(value, dict) and bool(value) and all(isinstance(v, BaseModel) for v in value.values())


_recorder: _Recorder | None = None


def trace(params: BaseModel, section_type: type[BaseModel], out_dir: Path) -> None:
    """Record every field read from ``params`` (whose sections subclass ``section_type``) until
    the process exits, then write the keys under ``out_dir``. Every call in a process adds to
    one record. Only a process DVC runs as a stage (``DVC_STAGE`` set) is traced: the reads of
    one that drives dvc (``taloop run`` checking params.yaml first) belong to no stage."""
    global _recorder
    if not os.environ.get("DVC_STAGE"):
        return
    if _recorder is None:
        recorder = _recorder = _Recorder()

        def getattribute(self: BaseModel, name: str) -> Any:
            value = object.__getattribute__(self, name)
            recorder.saw(self, name, value)
            return value

        section_type.__getattribute__ = getattribute  # type: ignore[method-assign,assignment]
        atexit.register(_write, recorder, out_dir)
    _recorder.register(params, "")


def _write(recorder: _Recorder, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = os.environ["DVC_STAGE"]
    record = {"stage": stage, "reads": sorted(recorder.reads)}
    (out_dir / f"{stage}.{os.getpid()}.json").write_text(json.dumps(record, indent=1))
