"""Extraction ahead of the writer: text cleaning that keeps offsets, and worker processes that may crash."""

from __future__ import annotations

from crash_extractor import crashing_prepare

from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.prepare import clean_text
from rlm_desktop.store.case import Case


def test_lone_surrogates_and_control_characters_keep_offsets(tmp_path):
    raw = "bad font \ud835 here\x00 and \x07 bell"
    cleaned = clean_text(raw)
    assert len(cleaned) == len(raw) and cleaned == "bad font \ufffd here  and   bell"
    with Case.open(tmp_path / "c.sqlite") as case:
        doc_id = case.add_text_document("ok", "x", meta={"subject": "broken \udc80 header"})
        assert case.document(doc_id).meta["subject"] == "broken ? header"


def test_a_crashing_worker_fails_only_its_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"doc{i:02}.txt").write_text(f"document {i}")
    (src / "crash-me.txt").write_text("this file kills the extractor")
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [src], jobs=2, extractor=crashing_prepare)
        assert report.added == 12
        assert [f["path"] for f in report.failed] == [str(src / "crash-me.txt")]
        assert "extractor crashed" in report.failed[0]["error"]
        assert sorted(d.title for d in case.documents()) == [f"doc{i:02}.txt" for i in range(12)]


def test_parallel_and_inline_ingest_give_the_same_case(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i:02}.md").write_text(f"# Title {i}\n\nbody {i} " * (i + 1))
    results = []
    for jobs in (1, 2):
        with Case.open(tmp_path / f"case{jobs}.sqlite") as case:
            ingest(case, [src], jobs=jobs)
            results.append([(d.id, d.title, d.sha256, d.chars) for d in case.documents()])
    assert results[0] == results[1]
