"""HumanEval task files: which file holds which task, and loading its problems."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

TaskName = Literal["single-line", "multi-line", "random-span-light", "humaneval"]
TASK_NAMES: tuple[TaskName, ...] = get_args(TaskName)

TASK_FILES: dict[TaskName, str] = {
    "single-line": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi-line": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random-span-light": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
    "humaneval": "HumanEval.jsonl.gz",
}


class TaskDataError(ValueError):
    """A task name, data folder or data file the harness cannot use."""


@dataclass(frozen=True)
class Problem:
    """One benchmark item: the model fills `canonical_middle` between `prefix` and `suffix`."""

    task: TaskName
    task_id: str
    prefix: str
    suffix: str
    canonical_middle: str
    test: str
    entry_point: str


def parse_task_names(values: list[str]) -> list[TaskName]:
    """Flatten repeated and comma-separated --task values, keeping first-seen order without duplicates."""
    names: list[TaskName] = []
    for value in values:
        for name in filter(None, (part.strip() for part in value.split(","))):
            if name not in TASK_NAMES:
                raise TaskDataError(f"unknown task {name!r}; choose from {', '.join(TASK_NAMES)}")
            if name not in names:
                names.append(name)
    if not names:
        raise TaskDataError("no task given")
    return names


def load_problems(task: TaskName, data_dir: Path, offset: int = 0, limit: int | None = None) -> list[Problem]:
    """Read `task`'s problems in file order, skipping `offset` and keeping at most `limit`."""
    path = data_dir / TASK_FILES[task]
    if not path.is_file():
        raise TaskDataError(f"data file for task {task!r} not found: {path}")
    end = None if limit is None else offset + limit
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            records = [json.loads(line) for line in lines if line.strip()][offset:end]
    except (OSError, EOFError, json.JSONDecodeError) as error:
        raise TaskDataError(f"cannot read {path}: {error}") from error
    return [_problem_from_record(task, record, path) for record in records]


def _problem_from_record(task: TaskName, record: dict, path: Path) -> Problem:
    try:
        return Problem(task=task, task_id=record["task_id"], prefix=record["prompt"],
                       # Plain HumanEval has no suffix: the model writes the body after the prompt.
                       suffix=record.get("suffix", ""), canonical_middle=record["canonical_solution"],
                       test=record["test"], entry_point=record["entry_point"])
    except KeyError as error:
        raise TaskDataError(f"{path}: record {record.get('task_id', '?')} lacks field {error}") from None
