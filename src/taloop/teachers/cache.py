"""Content-addressed, durable cache of teacher replies.

One file per reply, named by the SHA-256 of everything that shapes it (backend, model,
prompt, generation settings, sample index), written with fsync + rename before the reply
counts as bought: a crash loses at most the reply in flight. The cache lives outside DVC's
outputs (see :func:`default_cache_dir`) so `dvc repro`/`dvc exp run` removing stage outputs
never throws paid replies away.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from taloop.io import write_json
from taloop.teachers.base import TeacherReply

CACHE_ENV = "TALOOP_CACHE_DIR"


def repo_root(start: Path | None = None) -> Path:
    """The user's repository root, also from inside a DVC temp workspace (`dvc exp run
    --queue/--temp` runs in .dvc/tmp/exps/...), so queued experiments share one cache."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for candidate in (here, *here.parents):
        if (candidate / ".dvc").is_dir() or (candidate / ".git").exists():
            return candidate
    return here


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else repo_root() / ".taloop-cache"


def cache_key(backend: str, model: str, prompt: str, settings: dict[str, Any], sample: int) -> str:
    identity = {"backend": backend, "model": model, "prompt": prompt, "settings": settings, "sample": sample}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class ReplyCache:
    def __init__(self, root: Path) -> None:
        self.root = root / "teacher"

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> TeacherReply | None:
        path = self._path(key)
        if not path.is_file():
            return None
        entry = json.loads(path.read_text(encoding="utf-8"))
        return TeacherReply(**entry["reply"])

    def put(self, key: str, reply: TeacherReply, record: dict[str, Any]) -> None:
        """Store durably; ``record`` (model, prompt template, price paid...) is kept beside it."""
        write_json(self._path(key), {"key": key, "reply": asdict(reply), "record": record}, durable=True)

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()
