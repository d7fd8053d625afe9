"""Pipeline file locations, shared by the stage modules (dvc.yaml lists the same paths)."""

from pathlib import Path

PARAMS = Path("params.yaml")
PREPARED = Path("data/prepared")
TEACHER_DIR = Path("data/teacher")
RESPONSES = TEACHER_DIR / "responses.jsonl"
METRICS = Path("metrics")
TEACHER_METRICS = METRICS / "teacher.json"


def split_file(split: str) -> Path:
    return PREPARED / f"{split}.jsonl"
