"""The user's own question set: a YAML or CSV file of question -> expected answer (exact, regex, number or set)."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from rlm_desktop.bench.scoring import SCORINGS
from rlm_desktop.bench.suites import Task

FORMAT_HELP = (
    "YAML: a list of {question, answer, match} (match: exact, the default; regex; number; set, with answer a "
    "list); CSV: a header row question,answer[,match], set items separated by '|'"
)


class QuestionFileError(ValueError):
    """A question file that cannot be read, with the file, the row and what is wrong."""


def load_questions(path: Path) -> list[Task]:
    """Tasks from a .yaml/.yml/.json or .csv file; every problem is a QuestionFileError naming the row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"cannot read question file {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(path, text)
    elif suffix in (".yaml", ".yml", ".json"):
        rows = _yaml_rows(path, text)
    else:
        raise QuestionFileError(f"question file {path}: use .yaml, .yml, .json or .csv ({FORMAT_HELP})")
    tasks = [_task(path, number, row) for number, row in rows]
    if not tasks:
        raise QuestionFileError(f"question file {path} holds no questions ({FORMAT_HELP})")
    return tasks


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "question" not in fields or "answer" not in fields:
        raise QuestionFileError(f"question file {path}: the first row must name the columns question,answer[,match]")
    rows = []
    for number, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        if (row.get("match") or "").lower() == "set":
            row["answer"] = [item.strip() for item in re.split(r"[|;]", row["answer"]) if item.strip()]
        rows.append((number, row))
    return rows


def _yaml_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise QuestionFileError(f"question file {path} is not valid YAML: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        data = data["questions"]
    if not isinstance(data, list):
        raise QuestionFileError(f"question file {path}: expected a list of questions ({FORMAT_HELP})")
    rows = []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise QuestionFileError(f"question file {path}, question {number}: expected question/answer keys")
        rows.append((number, {str(k).lower(): v for k, v in item.items()}))
    return rows


def _task(path: Path, number: int, row: dict[str, Any]) -> Task:
    where = f"question file {path}, {'row' if path.suffix.lower() == '.csv' else 'question'} {number}"
    question = str(row.get("question") or "").strip()
    answer = row.get("answer")
    if not question:
        raise QuestionFileError(f"{where}: no question")
    if answer is None or answer == "" or answer == []:
        raise QuestionFileError(f"{where}: no answer")
    match = str(row.get("match") or ("set" if isinstance(answer, list) else "exact")).strip().lower()
    if match not in SCORINGS:
        raise QuestionFileError(f"{where}: match {match!r} is not one of {', '.join(SCORINGS)}")
    if match == "set":
        expected: str | list[str] = [str(a) for a in (answer if isinstance(answer, list) else [answer])]
    elif isinstance(answer, list):
        raise QuestionFileError(f"{where}: a list of answers needs match: set")
    else:
        expected = str(answer)
    if match == "regex":
        try:
            re.compile(expected)
        except re.error as exc:
            raise QuestionFileError(f"{where}: bad regular expression {expected!r}: {exc}") from None
    if match == "number":
        try:
            float(expected.replace(",", ""))
        except ValueError:
            raise QuestionFileError(f"{where}: answer {expected!r} is not a number") from None
    family = str(row.get("family") or "questions").strip() or "questions"
    return Task(str(row.get("id") or f"q{number}"), family, question, expected, match)
