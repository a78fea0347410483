"""`rlm-desktop tag` and `rlm-desktop findings` against a real case file."""

from __future__ import annotations

import json
import sqlite3

from rlm_desktop.cli import main
from rlm_desktop.findings import add_finding
from rlm_desktop.store.case import Case

TEXT = "The shipment left Rotterdam on 4 May 2023 under the name Blue Heron."


def make_case(tmp_path):
    home = tmp_path / "home"
    path = home / "cases" / "c.sqlite"
    path.parent.mkdir(parents=True)
    with Case.open(path) as case:
        doc_id = case.add_text_document("harbour.txt", TEXT)
    return home, path, doc_id


def test_tag_adds_lists_and_removes(tmp_path, capsys):
    home, path, doc_id = make_case(tmp_path)
    base = ["--home", str(home), "--case", "c"]
    assert main(["tag", str(doc_id), "key evidence", "Rotterdam", *base]) == 0
    assert capsys.readouterr().out.strip() == f"{doc_id} harbour.txt: key evidence, Rotterdam"
    assert main(["tag", str(doc_id), "rotterdam", "--remove", "--json", *base]) == 0
    assert json.loads(capsys.readouterr().out) == {"doc_id": doc_id, "title": "harbour.txt", "tags": ["key evidence"]}
    assert main(["tag", "99", "x", *base]) == 2
    assert "no document 99" in capsys.readouterr().err
    assert main(["tag", str(doc_id), " ", *base]) == 2
    assert "cannot be empty" in capsys.readouterr().err


def test_findings_lists_each_verified_now_and_fails_on_a_tampered_text(tmp_path, capsys):
    home, path, doc_id = make_case(tmp_path)
    base = ["--home", str(home), "--case", "c"]
    with Case.open(path) as case:
        add_finding(case, doc_id, 4, 12, note="the cargo")
    assert main(["findings", *base]) == 0
    out = capsys.readouterr().out
    assert "F1  harbour.txt, characters 4-12  [verified]  selected in the viewer" in out and "note: the cargo" in out
    conn = sqlite3.connect(path)
    conn.execute("UPDATE documents SET text = replace(text, 'shipment', 'SHIPMENT')")
    conn.commit()
    conn.close()
    assert main(["findings", "--json", *base]) == 1
    [item] = json.loads(capsys.readouterr().out)
    assert item["verified"] is False and item["problem"] == "stored text changed since ingest"
