"""LoRA SFT through TRL with per-example loss weights.

TRL's SFTTrainer has no weight column and drops columns the model does not take, so the
dataset is tokenized here (prompt tokens masked to -100, loss on the completion only),
passed with ``skip_prepare_dataset``, collated by :class:`WeightedCollator` (which keeps the
weight) with ``remove_unused_columns=False`` and no packing, and the loss is computed by
:meth:`WeightedSFTTrainer.compute_loss`.

The loss and its normaliser are in taloop.student.loss.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from taloop.core import profiling
from taloop.core.errors import UsageError
from taloop.core.profiling import phase
from taloop.student.frozen_prefix import frozen_cut, prefix_states, top_layers_only
from taloop.student.loss import WeightedCollator, loss_normaliser, scored_positions, weighted_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainExample:
    prompt: str  # the rendered task prompt (the user turn)
    completion: str  # the rationale ending in "The answer is X."
    weight: float = 1.0


@dataclass(frozen=True)
class TrainSettings:
    steps: int  # optimiser steps (fixed per comparison, see schedule.optimizer_steps)
    learning_rate: float
    batch_size: int
    max_length: int
    seed: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_top_layers: int | None  # None: every layer
    bf16: bool  # autocast matmuls to bfloat16 (fast on CPUs with avx512_bf16 and on GPUs)


def chat_prompt(tok: Any, prompt: str) -> str:
    """The user turn in the model's chat format, ending where the assistant starts."""
    if tok.chat_template:
        return tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return f"{prompt}\n"


class PromptTooLongError(UsageError, ValueError):
    """A prompt leaves no room for its completion within the token limit."""


def prompt_ids(tok: Any, prompt: str, max_length: int, name: str) -> list[int]:
    """``prompt``'s tokens in the chat format. A prompt that fills ``max_length`` by itself
    would leave nothing of its completion to score, so it raises :class:`PromptTooLongError`
    naming it (``name``: which example, in the caller's words)."""
    ids = tok(chat_prompt(tok, prompt), add_special_tokens=False).input_ids
    if len(ids) >= max_length:
        raise PromptTooLongError(
            f"{name} (prompt {prompt[:60]!r}...) has {len(ids)} prompt tokens, which leaves none of "
            f"its completion within the limit of {max_length} (student.max_length when training); "
            "raise the limit or shorten the task's questions"
        )
    return ids


def encode(tok: Any, examples: Sequence[TrainExample], max_length: int) -> list[dict[str, Any]]:
    """Token ids, loss labels (prompt tokens -100) and weight of each example, cut at
    ``max_length`` tokens; :class:`PromptTooLongError` for a prompt that leaves no room."""
    rows = []
    for n, ex in enumerate(examples):
        prompt = prompt_ids(tok, ex.prompt, max_length, f"example {n}")
        completion_ids = tok(ex.completion + (tok.eos_token or ""), add_special_tokens=False).input_ids
        input_ids = (prompt + completion_ids)[:max_length]
        labels = ([-100] * len(prompt) + completion_ids)[:max_length]
        rows.append(
            {"input_ids": input_ids, "labels": labels, "weight": float(ex.weight), "length": len(input_ids)}
        )
    return rows


def _linear_module_names(model: Any) -> list[str]:
    """Names of every Linear inside the transformer blocks (what PEFT's all-linear means)."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    return sorted(names)


def _trainer_class() -> type:
    from trl import SFTTrainer

    class WeightedSFTTrainer(SFTTrainer):
        def __init__(self, *args: Any, normaliser: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The loss carries its own fixed normaliser, so Trainer must not rescale it by a
            # token count of its own.
            self.model_accepts_loss_kwargs = False
            self.normaliser = normaliser
            self.tokens_seen = 0  # non-padding input tokens of every micro-batch trained on
            self.completion_tokens_seen = 0

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            weight = inputs.pop("weight")
            labels = inputs.pop("labels")
            # Projecting only completion positions onto the vocabulary skips most of the
            # lm_head work (prompts are longer than rationales here).
            keep = scored_positions(labels)
            if model.training:
                self.tokens_seen += int(inputs["attention_mask"].sum())
                self.completion_tokens_seen += int((labels != -100).sum())
            with phase("forward"):
                outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
                loss = weighted_loss(outputs.logits, labels[:, -keep:], weight, self.normaliser)
            return (loss, outputs) if return_outputs else loss

    return WeightedSFTTrainer


def _step_phases() -> Any:
    """Trainer callback splitting each optimiser step into forward (timed in compute_loss),
    backward (the rest until the optimiser runs, gradient clipping included) and optimizer;
    used only when profiling (taloop.core.profiling)."""
    from transformers import TrainerCallback

    class StepPhases(TrainerCallback):
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.start, self.forward = time.perf_counter(), profiling.total("forward")

        def on_pre_optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            self.pre = time.perf_counter()
            profiling.add("backward", self.pre - self.start - (profiling.total("forward") - self.forward))

        def on_optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            profiling.add("optimizer", time.perf_counter() - self.pre)

    return StepPhases()


def _time_lm_head(model: Any) -> None:
    """Time the vocabulary projection on its own: a forward pre-hook and hook pair."""
    head = model.get_output_embeddings()
    starts: list[float] = []
    head.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
    head.register_forward_hook(lambda *_: profiling.add("lm_head", time.perf_counter() - starts.pop()))


def train_lora(
    base_dir: Path,
    examples: Sequence[TrainExample],
    settings: TrainSettings,
    out_dir: Path,
    live_dir: Path,
    init_adapter: Path | None = None,
    reuse_frozen_states: bool = True,
) -> dict[str, float]:
    """Train a LoRA adapter on ``examples`` (continuing ``init_adapter`` if given) and
    save it to ``out_dir``; curves go to ``live_dir`` through dvclive. The frozen lower layers'
    states are computed once per example where taloop.student.frozen_prefix applies (unless
    ``reuse_frozen_states`` is False: the plain path, which the tests compare against)."""
    from accelerate import PartialState
    from datasets import Dataset
    from dvclive import Live
    from peft import LoraConfig, PeftModel
    from transformers import set_seed
    from transformers.integrations import DVCLiveCallback
    from trl import SFTConfig

    from taloop.student.model_card import point_to_upstream
    from taloop.student.models import load_saved

    set_seed(settings.seed)
    model, tok = load_saved(base_dir)
    peft_config = None
    if init_adapter is not None:
        model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    else:
        n_layers = model.config.num_hidden_layers
        top = settings.lora_top_layers
        peft_config = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            # Explicit names: PEFT refuses layers_to_transform with the "all-linear" shorthand.
            target_modules=_linear_module_names(model),
            # Adapting only the top layers lets backward stop below them.
            layers_to_transform=list(range(max(0, n_layers - top), n_layers)) if top else None,
            task_type="CAUSAL_LM",
        )
    encoded = [dict(row, row=i) for i, row in enumerate(encode(tok, examples, settings.max_length))]
    dataset = Dataset.from_list(encoded)
    # Nothing resumes from checkpoints, so none are written, and the trainer's scratch
    # directory lies outside every DVC out (optimizer states would bloat the DVC cache).
    scratch = tempfile.TemporaryDirectory(prefix="taloop-train-")
    args = SFTConfig(
        output_dir=scratch.name,
        # A fixed step count, not epochs: every variant of a comparison takes the same
        # number of optimiser steps, and a filtered variant revisits its kept rows.
        max_steps=settings.steps,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        # Plain shuffling: length-grouped batches are partly single-task, and batch
        # composition must not differ between weighted and unweighted variants.
        bf16=settings.bf16,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        logging_steps=1,
        save_strategy="no",
        seed=settings.seed,
        data_seed=settings.seed,
        report_to=[],
        remove_unused_columns=False,
        packing=False,
        loss_type="nll",
        max_length=settings.max_length,
        dataset_kwargs={"skip_prepare_dataset": True},
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
        # TRL turns it on by default; with PEFT it also makes the inputs require grad, so
        # backward ran down through every frozen layer to the embeddings, and the adapted
        # layers' forward ran twice. Memory is not what limits these models.
        gradient_checkpointing=False,
    )
    # Under `accelerate launch` with N processes only the main one logs and writes.
    main_process = PartialState().is_main_process
    # dvcyaml=False: dvc.yaml declares the plots itself; dvclive must not append to it.
    live = Live(dir=str(live_dir), save_dvc_exp=False, report=None, dvcyaml=False) if main_process else None
    collator = WeightedCollator(tok.pad_token_id)
    callbacks: list[Any] = [DVCLiveCallback(live=live)] if live else []
    if profiling.enabled():
        callbacks.append(_step_phases())
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        data_collator=collator,
        peft_config=peft_config,
        normaliser=loss_normaliser(encoded, settings.batch_size),
        callbacks=callbacks,
    )
    if profiling.enabled():
        _time_lm_head(trainer.model)
    cut = (
        frozen_cut(trainer.model, settings.lora_top_layers, encoded, PartialState().num_processes)
        if reuse_frozen_states
        else None
    )
    if cut is None:
        result = trainer.train()
    else:
        with phase("frozen_prefix"):
            collator.states = prefix_states(trainer.model, cut, encoded, settings.batch_size, settings.bf16)
        log.info("lower %d layers computed once per example; training runs the top %d", cut,
                 trainer.model.config.num_hidden_layers - cut)  # fmt: skip
        with top_layers_only(trainer.model, cut):
            result = trainer.train()
    if live:
        live.end()
    scratch.cleanup()
    if main_process and out_dir.exists():
        shutil.rmtree(out_dir)  # no stale file from an earlier run survives in the out
    trainer.save_model(str(out_dir))
    if main_process:
        point_to_upstream(out_dir, base_dir)
    # Clipping rescales a whole batch's gradient, so a batch of high-weight examples clipped
    # to the limit pushes no harder than one of low-weight examples: how often it happened
    # says how far the weights survived.
    norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    return {
        "train_loss": float(result.training_loss),
        "clipped_steps_share": (
            sum(n > args.max_grad_norm for n in norms) / len(norms) if norms and args.max_grad_norm else None
        ),
        "grad_norm_max": max(norms) if norms else None,
        "steps": float(result.global_step),
        # non-padding tokens passed through the model in training (throughput figures)
        "train_tokens": float(trainer.tokens_seen),
        "completion_tokens_seen": float(trainer.completion_tokens_seen),
    }
