"""Batch bookkeeping shared by the batch-API teachers: the submitted batch id is stored on
disk (beside the reply cache) before polling starts, so a rerun resumes polling it instead
of submitting, and paying for, the same requests again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from taloop.io import write_json
from taloop.teachers.base import TeacherReply


@dataclass
class BatchOutcome:
    batch_id: str
    status: str
    replies: dict[str, TeacherReply] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason (errored, expired, ...)

    def mark_missing(self, keys: Iterable[str], reason: str) -> None:
        for key in keys:
            if key not in self.replies and key not in self.failed:
                self.failed[key] = reason


class BatchState:
    """One file per set of requests: <cache>/batches/<backend>-<digest of the keys>.json."""

    def __init__(self, cache_root: Path, backend: str, keys: Iterable[str]) -> None:
        digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:20]
        self.path = cache_root / "batches" / f"{backend}-{digest}.json"

    def load(self) -> str | None:
        if not self.path.is_file():
            return None
        return json.loads(self.path.read_text())["batch_id"]

    def save(self, batch_id: str) -> None:
        write_json(self.path, {"batch_id": batch_id}, durable=True)

    def done(self) -> None:
        """Every result is in the reply cache: the batch is not needed again."""
        self.path.unlink(missing_ok=True)
