"""User datasets: local JSONL/CSV files, or Hugging Face `datasets` by name (online users)."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taloop.core.errors import UsageError
from taloop.tasks.base import Example, Task, example_id

if TYPE_CHECKING:
    from taloop.params.schema import TaskSpec


class DatasetRowError(UsageError, ValueError):
    """A user dataset row is unusable; the message names the file, the row and the field."""


class FileTask(Task):
    def __init__(self, name: str, spec: TaskSpec) -> None:
        super().__init__(name)
        self.spec = spec
        assert spec.answer_format is not None  # guaranteed by the schema
        self.answer_format = spec.answer_format

    def _rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(where, row) pairs; ``where`` names the row in error messages."""
        spec = self.spec
        if spec.source == "hf":
            import datasets

            ds = datasets.load_dataset(spec.hf_name, spec.hf_config, split=spec.hf_split)
            for i, row in enumerate(ds):
                yield f"{spec.hf_name}[{spec.hf_split}] row {i}", dict(row)
            return
        path = Path(str(spec.path))
        if not path.is_file():
            raise DatasetRowError(f"data.tasks.{self.name}.path: file {path} does not exist")
        with path.open(newline="", encoding="utf-8") as fh:
            if spec.source == "csv":
                for i, row in enumerate(csv.DictReader(fh), start=2):
                    yield f"{path}:{i}", row
                return
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DatasetRowError(f"{path}:{i}: not valid JSON ({err.msg})") from None
                if not isinstance(row, dict):
                    raise DatasetRowError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
                yield f"{path}:{i}", row

    def _example(self, where: str, row: dict[str, Any]) -> Example:
        fields = {"question": self.spec.question_field, "answer": self.spec.answer_field}
        values = {}
        for role, name in fields.items():
            value = row.get(name)
            if value is None or not str(value).strip():
                raise DatasetRowError(
                    f"{where}: field {name!r} ({role}) is missing or empty "
                    f"(set data.tasks.{self.name}.{role}_field to the right column)"
                )
            values[role] = str(value).strip()
        if self.answer_format == "number" and self.extract(values["answer"]) is None:
            raise DatasetRowError(
                f"{where}: field {fields['answer']!r} is not a number: {values['answer']!r}"
            )
        if self.answer_format == "yes_no" and values["answer"].lower() not in ("yes", "no", "true", "false"):
            raise DatasetRowError(f"{where}: field {fields['answer']!r} is not yes/no: {values['answer']!r}")
        gold = values["answer"]
        if self.answer_format == "yes_no":
            gold = "Yes" if gold.lower() in ("yes", "true") else "No"
        elif self.answer_format == "number":
            gold = self.extract(gold) or gold
        extra = {k: v for k, v in row.items() if k not in fields.values()}
        return Example(example_id(self.name, values["question"]), self.name, values["question"], gold, extra)

    def stream(self, seed: int, needed: int) -> Iterator[Example]:
        # Validate every row before yielding any, so a bad row fails before anything is spent.
        examples = [self._example(where, row) for where, row in self._rows()]
        random.Random(seed).shuffle(examples)
        yield from examples
