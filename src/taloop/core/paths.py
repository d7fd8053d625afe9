"""Pipeline file locations, shared by the stage modules (dvc.yaml lists the same paths)."""

from pathlib import Path

PARAMS = Path("params.yaml")
PREPARED = Path("data/prepared")
TEACHER_DIR = Path("data/teacher")
RESPONSES = TEACHER_DIR / "responses.jsonl"
METRICS = Path("metrics")
TEACHER_METRICS = METRICS / "teacher.json"
ACQUIRED = Path("data/acquired/responses.jsonl")
ACQUISITION_SCORES = Path("data/acquired/scores.jsonl")
ACQUISITION_METRICS = METRICS / "acquisition.json"


def split_file(split: str) -> Path:
    return PREPARED / f"{split}.jsonl"


# The student's K samples per question, apart from the TA's scores of them, so that a ta.*
# change reruns TA scoring only: warmed-up student on the calibration questions (validation)
# and on the stage-2 questions; base student on every bought question (signals.base_student).
SAMPLES_DIR = Path("data/samples")
SAMPLES_CALIBRATION = SAMPLES_DIR / "calibration.jsonl"
SAMPLES_STAGE2 = SAMPLES_DIR / "stage2.jsonl"
SAMPLES_BASE = SAMPLES_DIR / "base.jsonl"
SAMPLES_METRICS = METRICS / "samples.json"
SIGNALS = Path("data/signals.jsonl")
SIGNAL_METRICS = METRICS / "signals.json"
CALIBRATION_DIR = Path("data/calibration")
CALIBRATION_ROWS = CALIBRATION_DIR / "signals.jsonl"
CALIBRATION = METRICS / "calibration.json"
MODELS = Path("models")
BASE_STUDENT = MODELS / "base/student"
BASE_TA = MODELS / "base/ta"
WARMUP = MODELS / "warmup"
TRAIN_CURVES = METRICS / "train"


def stage2_model(variant: str) -> Path:
    return MODELS / "stage2" / variant


def release_model(variant: str) -> Path:
    return MODELS / "release" / variant


STAGE2_PLANS = Path("data/stage2")


def stage2_plan(variant: str) -> Path:
    """The replies, weights and step count a variant trains stage 2 on (plan_stage2)."""
    return STAGE2_PLANS / f"{variant}.json"


def stage2_metrics(variant: str) -> Path:
    return METRICS / "stage2" / f"{variant}.json"


def predictions(variant: str) -> Path:
    return Path("data/predictions") / f"{variant}.jsonl"


def eval_metrics(variant: str) -> Path:
    return METRICS / "eval" / f"{variant}.json"


REPORTS = Path("reports")
REPORT_MD = REPORTS / "report.md"
REPORT_HTML = REPORTS / "report.html"
FIGURES = REPORTS / "figures"
COMPARE_HTML = REPORTS / "compare.html"
# The TA-quality map a study published (studies/ta_quality.yaml), which each report reads.
TA_MAP = REPORTS / "studies" / "ta_quality.json"
SUMMARY = METRICS / "summary.json"
HEADLINE = METRICS / "headline.json"
PLOT_DATA = METRICS / "plots"


def model_manifest(model_dir: Path) -> Path:
    """What trained the adapter in ``model_dir``: versions, seeds, CPU, precision."""
    return model_dir / "manifest.json"
