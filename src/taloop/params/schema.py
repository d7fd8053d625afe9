"""The params schema: the single source of truth for params.yaml.

It names no task: the built-in tasks, their generator settings and the prompt templates are
the task layer's, handed to validation as a :class:`TaskCatalogue` in pydantic's validation
context (:func:`taloop.params.validate_params` does), so the task modules can name the
schema's types without an import circle.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from taloop.core.errors import UsageError
from taloop.core.precision import Bf16Setting

# The TA's confidence measures, all from one forward pass over (question, output) (the
# contrastive one takes a second pass); see taloop.method.signals.
TA_MEASURES = ("mean_logprob", "min_logprob", "local_window", "answer_logprob", "contrastive")
TaMeasure = Literal["mean_logprob", "min_logprob", "local_window", "answer_logprob", "contrastive"]


class ConfigError(UsageError, ValueError):
    """Params failed validation; ``str()`` lists one ``key.path: problem`` per line."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "params") -> None:
        self.problems = problems
        lines = [f"  {path}: {msg}" for path, msg in problems]
        super().__init__(f"invalid {source}:\n" + "\n".join(lines))


class TaskCatalogue(Protocol):
    """What validation needs to know of the tasks (the task layer's :data:`CATALOGUE`)."""

    builtin_tasks: Mapping[str, str]

    def check_generator_config(self, name: str, config: dict[str, Any]) -> str | None: ...

    def templates(self) -> list[str]: ...


def _catalogue(info: ValidationInfo) -> TaskCatalogue:
    catalogue = (info.context or {}).get("tasks")
    if catalogue is None:
        raise ValueError("validated without the task catalogue: use taloop.params.validate_params")
    return catalogue


class _KeyedError(ValueError):
    """Problems whose key paths a validator knows better than pydantic's location does."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))

    @classmethod
    def one(cls, path: str, msg: str) -> _KeyedError:
        return cls([(path, msg)])


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(Section):
    """One task: a built-in reasoning-gym generator, or a user dataset."""

    source: Literal["reasoning_gym", "jsonl", "csv", "hf"] = Field(
        "reasoning_gym", description="where examples come from"
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="reasoning-gym generator settings (difficulty ranges)"
    )
    path: str | None = Field(None, description="local .jsonl/.csv file (source jsonl/csv)")
    hf_name: str | None = Field(None, description="datasets.load_dataset name (source hf, online)")
    hf_config: str | None = Field(None, description="datasets config name (source hf)")
    hf_split: str = Field("train", description="split to draw all our splits from (source hf)")
    question_field: str = Field("question", description="column holding the question")
    answer_field: str = Field("answer", description="column holding the gold answer")
    answer_format: Literal["number", "yes_no", "text"] | None = Field(
        None, description="how answers are extracted and compared (user datasets)"
    )

    @model_validator(mode="after")
    def _source_fields(self) -> TaskSpec:
        if self.source in ("jsonl", "csv") and not self.path:
            raise ValueError(f"source {self.source!r} needs 'path'")
        if self.source == "hf" and not self.hf_name:
            raise ValueError("source 'hf' needs 'hf_name'")
        if self.source != "reasoning_gym" and self.answer_format is None:
            raise ValueError("user datasets need 'answer_format': one of number, yes_no, text")
        if self.source != "reasoning_gym" and self.config:
            raise ValueError("'config' only applies to reasoning_gym tasks")
        return self


class DataConfig(Section):
    seed: int = Field(0, description="seed of task generation and split assignment")
    tasks: dict[str, TaskSpec] = Field(
        description="task name -> spec: a built-in reasoning-gym task or a user dataset"
    )
    train_per_task: int = Field(gt=0, description="train pool size per task (teacher buys from it)")
    val_per_task: int = Field(gt=0, description="validation items per task (tuning only)")
    test_per_task: int = Field(gt=0, description="test items per task (evaluation only)")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: dict[str, TaskSpec], info: ValidationInfo) -> dict[str, TaskSpec]:
        if not tasks:
            raise ValueError("at least one task is required")
        catalogue = _catalogue(info)
        builtin = catalogue.builtin_tasks
        problems = []
        for name, spec in tasks.items():
            if spec.source != "reasoning_gym":
                continue
            if name not in builtin:
                problems.append((
                    f"data.tasks.{name}",
                    f"unknown task; built-in tasks are {', '.join(builtin)} "
                    "(or describe a user dataset with source: jsonl/csv/hf)",
                ))  # fmt: skip
            elif problem := catalogue.check_generator_config(name, spec.config):
                problems.append((f"data.tasks.{name}.config", problem))
        if problems:
            raise _KeyedError(problems)
        return tasks


class PriceConfig(Section):
    input_per_mtok: float = Field(ge=0, description="USD per million input tokens")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens")
    batch_discount: float = Field(0.5, ge=0, lt=1, description="share taken off by batch APIs")


class TeacherConfig(Section):
    backend: Literal["simulated", "openai", "anthropic", "hf"] = Field(
        description="simulated (offline), openai (or an OpenAI-compatible server), anthropic, hf (local)"
    )
    model: str = Field(
        min_length=1, description="model name (recorded with every reply, part of the cache key)"
    )
    prompt_template: str = Field("cot_v1", description="versioned prompt file under taloop/tasks/templates")
    seed: int = Field(0, description="seed of the simulated teacher's choices")
    error_rate: float = Field(0.2, ge=0, le=1, description="simulated teacher: share of wrong replies")
    error_mode: Literal["random", "systematic"] = Field(
        "random",
        description="simulated teacher: random (mistakes of several kinds, more on harder items) or "
        "systematic (one consistent wrong rule on a sub-type of each task's items, a blind spot)",
    )
    max_tokens: int = Field(512, gt=0, description="reply length cap (also the cost upper bound)")
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature")
    samples: int = Field(1, ge=1, description="replies bought per question")
    tokenizer: str = Field("smollm2-135m-instruct", description="tokenizer the simulated teacher counts with")
    price: PriceConfig
    cache_only: bool = Field(False, description="answer from the cache alone; fail naming what is missing")
    base_url: str | None = Field(None, description="openai/anthropic: API root, e.g. a vLLM or Ollama server")
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the key (default OPENAI_API_KEY / ANTHROPIC_API_KEY)",
    )
    concurrency: int = Field(8, ge=1, le=1024, description="requests in flight at once")
    requests_per_minute: int | None = Field(None, gt=0, description="optional client-side request rate limit")
    tokens_per_minute: int | None = Field(
        None, gt=0, description="optional client-side limit on prompt + max_tokens per minute"
    )
    max_retries: int = Field(4, ge=0, le=20, description="retries per request on 429/5xx/timeouts/drops")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout in seconds")
    http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="openai/anthropic: the SDK's HTTP transport (aiohttp: less CPU per request; "
        "httpx: the SDKs' default)",
    )
    batch_api: bool = Field(False, description="openai/anthropic: buy through the batch API (discounted)")
    batch_poll_s: float = Field(30.0, gt=0, description="seconds between batch status polls")

    @field_validator("prompt_template")
    @classmethod
    def _template_exists(cls, name: str, info: ValidationInfo) -> str:
        available = _catalogue(info).templates()
        if name not in available:
            raise ValueError(f"unknown template {name!r}; available: {', '.join(available)}")
        return name


class BudgetConfig(Section):
    queries: int = Field(gt=0, description="teacher replies in the run's data (equal for every variant)")
    usd: float | None = Field(None, gt=0, description="hard cap on USD spent by one collection")
    order_seed: int = Field(0, description="seed of the fixed, task-stratified purchase order")
    stop_at_budget: bool = Field(
        False,
        description="if the USD upper bound exceeds budget.usd: buy what fits, then stop (else refuse)",
    )


class AcquisitionConfig(Section):
    mode: Literal["random", "active"] = Field(
        "random",
        description="random: buy the whole budget up front in the fixed order; active: buy the warm-up "
        "share, then spend the rest on the questions the warmed-up student is least sure of",
    )
    candidates: float = Field(
        2.0, ge=1, description="active: unbought questions scored per question bought (scoring costs time)"
    )


class LoraConfig(Section):
    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    top_layers: int | None = Field(
        None, gt=0, description="adapt only the last N layers (backward stops below: faster); null = all"
    )


class StudentConfig(Section):
    model: str = Field(
        "smollm2-135m-instruct", min_length=1, description="alias, hub id, local path or tiny-random"
    )
    max_length: int = Field(384, ge=32, description="prompt + completion tokens kept in training")
    lora: LoraConfig = LoraConfig()
    bf16: Bf16Setting = Field(
        "auto",
        description="bf16 autocast in training and decoding: auto (only where the hardware runs bf16 "
        "natively: CPUs with avx512_bf16 or AMX, CUDA devices with bf16; else fp32), true or false",
    )
    launcher: str = Field(
        "python",
        min_length=1,
        description="runs the training stages: python, or e.g. "
        "'accelerate launch --config_file configs/accelerate/multi_gpu.yaml'",
    )


class TAConfig(Section):
    model: str = Field("gemma-3-270m", min_length=1, description="alias, hub id, local path or tiny-random")
    scorer: Literal["auto", TaMeasure, "judge"] = Field(
        "auto",
        description="which TA measure the variants use: auto (chosen by calibrate_signals on the "
        "validation split), one of " + ", ".join(TA_MEASURES) + ", or judge (P(yes) to 'is this correct?')",
    )
    batch_size: int = Field(8, gt=0, description="outputs scored per forward pass")
    backend: Literal["model", "simulated"] = Field(
        "model",
        description="model: ta.model scores the outputs; simulated: a TA of set quality (ta.auc_teacher, "
        "ta.auc_student) that runs no model, labelled simulated in every report",
    )
    auc_teacher: float = Field(
        0.75, ge=0.5, le=1.0, description="simulated: ROC-AUC at telling wrong teacher replies from right"
    )
    auc_student: float = Field(
        0.75, ge=0.5, le=1.0, description="simulated: ROC-AUC at telling wrong student outputs from right"
    )
    seed: int = Field(0, description="simulated: seed of the confidences (drawn per question and output)")
    blind_spot: Literal["none", "shared"] = Field(
        "none",
        description="simulated: shared = at chance on the questions of the simulated teacher's blind spot, "
        "where it trusts every output as if right (a TA that learned from data like the teacher's)",
    )


class TrainingConfig(Section):
    epochs: float = Field(2.0, gt=0, description="passes over the training examples")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="AdamW learning rate (cosine schedule)")
    batch_size: int = Field(8, gt=0, description="examples per optimiser step")
    seed: int = Field(0, description="training seed (init, shuffling, dropout)")


class WarmupConfig(TrainingConfig):
    fraction: float = Field(0.25, gt=0, lt=1, description="share of teacher data used to warm up")


class SignalsConfig(Section):
    samples: int = Field(8, ge=2, description="K student samples per question for self-consistency")
    temperature: float = Field(0.8, gt=0, le=2, description="sampling temperature for the K samples")
    max_new_tokens: int = Field(128, gt=0, description="length cap of each student sample")
    batch_size: int = Field(8, gt=0, description="questions per generation call (x K sequences)")
    seed: int = Field(0, description="sampling seed")
    base_student: bool = Field(
        False, description="also score every reply with the base (not warmed-up) student (one-stage variants)"
    )
    selection: Literal["calibrated", "as_listed"] = Field(
        "calibrated",
        description="calibrated: calibrate_signals decides each listed signal's inclusion and sign on "
        "the validation split; as_listed: every listed signal, with its paper sign",
    )


class CalibrationConfig(Section):
    queries: int | None = Field(
        None,
        gt=0,
        description="teacher replies bought on validation questions to choose the signals "
        "(null: one per validation question); counted in budget.usd and reported",
    )


class VariantSpec(Section):
    schedule: Literal["one_stage", "two_stage"] = Field(
        description="train once on all data, or warm up first"
    )
    signals: list[Literal["self_consistency", "ta_student", "ta_teacher"]] = Field(
        default_factory=list, description="signals combined into each example's usefulness"
    )
    gold_filter: bool = Field(False, description="drop teacher replies wrong by gold (oracle; uses gold)")
    description: str = Field("", description="shown in reports")


class Stage2Config(TrainingConfig):
    mode: Literal["weight", "filter"] = Field("weight", description="how usefulness shapes stage 2")
    keep_fraction: float = Field(0.6, gt=0, le=1, description="filter mode: share of examples kept")
    weight_floor: float = Field(
        0.1, ge=0, lt=1, description="weight mode: smallest weight (after mean-1 scaling)"
    )
    combine: Literal["auto", "mean", "gate"] = Field(
        "auto",
        description="rank weighting: mean averages the signals' usefulness; gate: teacher trust multiplies "
        "the student-derived usefulness; auto: chosen by calibrate_signals on the validation split",
    )
    weighting: Literal["rank", "calibrated"] = Field(
        "rank",
        description="rank: within-task ranks (the paper's); calibrated: probabilities fitted on the "
        "validation rows that the teacher's reply is right and the student needs the question",
    )
    need_gain: float = Field(
        1.0,
        ge=0,
        description="calibrated: a question the student surely gets wrong weighs 1 + this "
        "times one it surely gets right",
    )
    weight_cap: float = Field(
        3.0, ge=1, description="calibrated weight mode: largest weight (after mean-1 scaling per task)"
    )


class GenerationConfig(Section):
    backend: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="engine for student sampling and evaluation; vllm needs the vllm package (GPU machines)",
    )


class EvalConfig(Section):
    split: Literal["test", "val"] = Field(
        "test", description="test for results; val when tuning params (keeps the test split unseen)"
    )
    max_new_tokens: int = Field(160, gt=0, description="greedy decoding length cap")
    batch_size: int = Field(16, gt=0, description="test questions per generation call")
    bootstrap: int = Field(1000, ge=100, description="bootstrap resamples for CIs and paired tests")
    seed: int = Field(0, description="bootstrap seed")


class Params(Section):
    data: DataConfig
    teacher: TeacherConfig
    budget: BudgetConfig
    acquisition: AcquisitionConfig = AcquisitionConfig()
    student: StudentConfig = StudentConfig()
    ta: TAConfig = TAConfig()
    warmup: WarmupConfig = WarmupConfig()
    signals: SignalsConfig = SignalsConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    stage2: Stage2Config = Stage2Config()
    eval: EvalConfig = EvalConfig()
    generation: GenerationConfig = GenerationConfig()
    variants: dict[str, VariantSpec] = Field(description="every variant a run may train (same teacher data)")
    baseline: str = Field("ft", description="the variant every other one is compared against")
    compare: list[str] = Field(description="variants trained and evaluated besides the baseline")

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        pool = self.data.train_per_task * len(self.data.tasks) * self.teacher.samples
        if self.budget.queries > pool:
            raise _KeyedError.one(
                "budget.queries",
                f"{self.budget.queries} exceeds the train pool ({pool} = data.train_per_task "
                f"x {len(self.data.tasks)} tasks x teacher.samples); raise data.train_per_task",
            )
        unknown = [v for v in [self.baseline, *self.compare] if v not in self.variants]
        if unknown:
            key = "baseline" if self.baseline in unknown else "compare"
            raise _KeyedError.one(
                key, f"unknown variant(s) {', '.join(unknown)}; defined: {', '.join(self.variants)}"
            )
        if self.baseline in self.compare:
            raise _KeyedError.one("compare", f"lists the baseline {self.baseline!r}, which always runs")
        needs_base = [
            v for v in [self.baseline, *self.compare]
            if self.variants[v].schedule == "one_stage" and self.variants[v].signals
        ]  # fmt: skip
        if needs_base and not self.signals.base_student:
            raise _KeyedError.one(
                "signals.base_student",
                f"must be true for one-stage variants with signals ({', '.join(needs_base)})",
            )
        if self.ta.blind_spot == "shared" and (
            self.ta.backend != "simulated"
            or self.teacher.backend != "simulated"
            or self.teacher.error_mode != "systematic"
        ):
            raise _KeyedError.one(
                "ta.blind_spot",
                "shared needs ta.backend: simulated and the simulated teacher's systematic errors "
                "(teacher.backend: simulated, teacher.error_mode: systematic): only it has a blind spot",
            )
        if needs_base and self.signals.selection == "calibrated":
            raise _KeyedError.one(
                "signals.selection",
                f"calibrate_signals calibrates the warmed-up student's signals, not the base student's "
                f"that one-stage variants use ({', '.join(needs_base)}); set signals.selection: as_listed",
            )
        if needs_base and self.stage2.weighting == "calibrated":
            raise _KeyedError.one(
                "stage2.weighting",
                "calibrated weights are fitted on the warmed-up student's validation outputs, not the "
                f"base student's that one-stage variants use ({', '.join(needs_base)}); "
                "set stage2.weighting: rank",
            )
        if self.teacher.batch_api and self.teacher.backend not in ("openai", "anthropic"):
            raise _KeyedError.one(
                "teacher.batch_api", "only the openai and anthropic backends have batch APIs"
            )
        if self.teacher.backend == "simulated":
            user = [n for n, s in self.data.tasks.items() if s.source != "reasoning_gym"]
            if user:
                raise _KeyedError.one(
                    "teacher.backend",
                    f"'simulated' writes rationales for built-in tasks only; {', '.join(user)} "
                    "need a real teacher",
                )
        return self


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that ``loc`` (minus its last item) points into."""
    model: Any = Params
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            model = field.annotation if field else None
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
        else:
            return []
        if typing.get_origin(model) in (typing.Union, types.UnionType):
            model = next((a for a in typing.get_args(model) if a is not type(None)), None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def problems(err: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join(str(p) for p in loc)
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _KeyedError):
            problems.extend(ctx_err.problems)
        elif e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            problems.append((path, "unknown key; allowed here: " + ", ".join(allowed)))
        elif e["type"] == "missing":
            problems.append((path, "required key is missing"))
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append((path, f"{msg} (got {e.get('input')!r})"))
    return problems
