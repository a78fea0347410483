"""Stored metadata: compressed JSON for documents, plain JSON for mailbox containers; both read back the same."""

from __future__ import annotations

import json

import pytest

from rlm_desktop.store.case import Case
from rlm_desktop.store.metadata import decode_meta, encode_meta, meta_text

EMAIL = {
    "from": ["Leila Bergstrom <leila@example.org>"],
    "to": ["Sofia Rodriguez <sofia@example.org>", "Ünal Öz <unal@example.org>"],
    "cc": [],
    "date": "2018-01-11T19:54:00+00:00",
    "subject": "Quarterly figures \u2013 draft \udc80",
    "message_id": "<ce213e5b130e17f6.3316@mail.example>",
}


def test_metadata_round_trips_and_takes_less_room():
    text = json.dumps(EMAIL, ensure_ascii=False)
    stored = encode_meta(text, "email")
    assert isinstance(stored, bytes) and len(stored) < len(text.encode("utf-8", "surrogatepass"))
    assert meta_text(stored) == text and decode_meta(stored) == EMAIL
    assert encode_meta(text, "mailbox") == text  # SQL reads a mailbox's resume state with json_extract
    assert encode_meta("{}", "pdf") == "{}" and decode_meta("{}") == {} and decode_meta(None) == {}
    with pytest.raises(ValueError, match="unknown format"):
        decode_meta(b"\x07abc")


def test_the_case_stores_it_compressed_and_every_reader_sees_the_dict(tmp_path):
    with Case.open(tmp_path / "c.sqlite") as case:
        with case.transaction():
            doc = case.insert_document(kind="email", title="t", text="body", sha256="a" * 64, size=4, meta=EMAIL)
            box = case.insert_document(
                kind="mailbox", title="box", text="", sha256="b" * 64, size=1, meta={"source_path": "/x/box.mbox"}
            )
        case.update_meta(box, resume_offset=10)
        case.update_meta(doc, note="kept")
        kinds = dict(case.conn.execute("SELECT kind, typeof(meta) FROM documents").fetchall())
        assert kinds == {"email": "blob", "mailbox": "text"}
        subject = EMAIL["subject"].replace("\udc80", "?")  # a lone surrogate cannot be stored as UTF-8
        assert case.document(doc).meta == {**EMAIL, "subject": subject, "thread_id": f"doc:{doc}", "note": "kept"}
        assert case.conn.execute(
            "SELECT json_extract(meta, '$.resume_offset') FROM documents WHERE id = ?", (box,)
        ).fetchone() == (10,)
        assert [h.field for h in case.search("Bergstrom")] == ["from"]  # the names index read it too
