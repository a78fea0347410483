"""Generated suites are deterministic by seed, hold every family's answer, and are cached per seed and size."""

from __future__ import annotations

import hashlib
import re

import pytest

from rlm_desktop.bench.questions import QuestionFileError, load_questions
from rlm_desktop.bench.suites import FAMILIES, MAX_TASKS, MIN_TOKENS, generate, suite_tokens


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_corpus_and_tasks_another_seed_another(tmp_path):
    a = generate(tmp_path / "a", MIN_TOKENS, seed=7)
    b = generate(tmp_path / "b", MIN_TOKENS, seed=7)
    c = generate(tmp_path / "c", MIN_TOKENS, seed=8)
    assert [t.to_json() for t in a] == [t.to_json() for t in b]
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    assert [t.expected for t in a] != [t.expected for t in c]
    assert [sum(t.family == f for t in a) for f in FAMILIES] == [MAX_TASKS] * len(FAMILIES)
    # The planted answers are in the files (the mbox holds the mail; PDFs are compressed, so count them).
    mbox = (tmp_path / "a" / "mail" / "mail.mbox").read_text()
    for task in a:
        if task.family == "niah" and "storage unit is " + task.expected in mbox:
            break
    else:
        assert len(list((tmp_path / "a").rglob("*.pdf"))) > 20  # needles went to PDFs and notes instead
    for task in a:
        if task.family == "pairs":
            project = re.search(r"Project (\w+)", task.question).group(1)
            assert f"Subject: Project {project} " in mbox


def test_size_grows_the_corpus_not_the_tasks(tmp_path):
    small = generate(tmp_path / "s", MIN_TOKENS, seed=1)
    big = generate(tmp_path / "b", MIN_TOKENS * 10, seed=1)
    size = lambda root: sum(p.stat().st_size for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert size(tmp_path / "b") > 3 * size(tmp_path / "s")
    assert [t.family for t in small] == [t.family for t in big]
    assert suite_tokens("medium", None) == 1_000_000
    with pytest.raises(ValueError, match="--tokens must be from"):
        suite_tokens("small", 10)


def test_question_files_name_the_row_that_is_wrong(tmp_path):
    good = tmp_path / "q.yaml"
    good.write_text(
        "questions:\n"
        "  - question: Who signed?\n    answer: Ann Lee\n"
        "  - question: Which banks?\n    answer: [UBS, Credit Suisse]\n"
        "  - {question: 'How many wires?', answer: 12, match: number, family: money}\n"
    )
    tasks = load_questions(good)
    assert [(t.family, t.scoring, t.expected) for t in tasks] == [
        ("questions", "exact", "Ann Lee"), ("questions", "set", ["UBS", "Credit Suisse"]), ("money", "number", "12"),
    ]  # fmt: skip
    bad = tmp_path / "q.csv"
    bad.write_text("question,answer,match\nWho?,Ann,exact\nWhen?,,exact\n")
    with pytest.raises(QuestionFileError, match=r"q.csv, row 3: no answer"):
        load_questions(bad)
    bad.write_text("question,answer,match\nWhere?,(geneva,regex\n")
    with pytest.raises(QuestionFileError, match=r"row 2: bad regular expression"):
        load_questions(bad)
    bad.write_text("q,a\nWho?,Ann\n")
    with pytest.raises(QuestionFileError, match="the first row must name the columns"):
        load_questions(bad)
    (tmp_path / "q.txt").write_text("Who?")
    with pytest.raises(QuestionFileError, match="use .yaml, .yml, .json or .csv"):
        load_questions(tmp_path / "q.txt")
    (tmp_path / "broken.yaml").write_text("- question: [unclosed\n")
    with pytest.raises(QuestionFileError, match="is not valid YAML"):
        load_questions(tmp_path / "broken.yaml")
