"""The command line as scripts use it: JSON shapes and exit codes from CONTRACTS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from builders import make_email, make_pdf, pdf_bytes

from rlm_desktop import cli


def run(*args, home, check=True):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_desktop", *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def src(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_pdf(src / "report.pdf", ["The shipment left Rotterdam on 4 May."])
    mail = make_email(
        "Shipment",
        "Confirming Rotterdam.",
        attachments=[("manifest.pdf", pdf_bytes(["Manifest: 40 containers"]), "application/pdf")],
    )
    (src / "mail.eml").write_bytes(bytes(mail))
    (src / "bad.pdf").write_bytes(b"%PDF-1.4 not really")
    return src


def test_ingest_docs_search_json(tmp_path, src):
    home = tmp_path / "home"
    out = json.loads(run("ingest", str(src), "--json", home=home).stdout)
    assert out["added"] == 2 and out["unchanged"] == 0 and out["documents"] == 3
    assert [os.path.basename(f["path"]) for f in out["failed"]] == ["bad.pdf"] and out["failed"][0]["error"]
    assert (home / "cases" / "default.sqlite").exists()

    docs = json.loads(run("docs", "--json", home=home).stdout)
    assert len(docs) == 3
    for d in docs:
        assert {"id", "kind", "title", "path", "parent_id", "sha256", "chars", "pages", "meta"} <= d.keys()
    manifest = next(d for d in docs if d["title"] == "manifest.pdf")
    assert manifest["parent_id"] == next(d["id"] for d in docs if d["kind"] == "email")

    hits = json.loads(run("search", "rotterdam", "--json", "--limit", "5", home=home).stdout)
    assert len(hits) == 2
    assert all({"doc_id", "start", "end", "snippet", "score"} <= h.keys() for h in hits)
    assert all("Rotterdam" in h["snippet"] for h in hits)

    again = json.loads(run("ingest", str(src), "--json", home=home).stdout)
    assert again["added"] == 0 and again["unchanged"] == 2


def test_cases_and_home_flag(tmp_path, src):
    home = tmp_path / "elsewhere"
    run("--home", str(home), "ingest", str(src), "--case", "inquiry-7", home=tmp_path / "ignored")
    assert (home / "cases" / "inquiry-7.sqlite").exists()
    text = run("docs", "--home", str(home), "--case", "inquiry-7", home=tmp_path / "ignored").stdout
    assert "report.pdf" in text and "manifest.pdf" in text


def test_usage_errors_exit_2(tmp_path):
    home = tmp_path / "home"
    missing = run("docs", "--case", "nope", home=home, check=False)
    assert missing.returncode == 2 and "no case 'nope'" in missing.stderr
    bad_name = run("docs", "--case", "../escape", home=home, check=False)
    assert bad_name.returncode == 2 and "invalid case name" in bad_name.stderr
    assert run("frobnicate", home=home, check=False).returncode == 2


def test_bad_search_query_is_a_usage_error_in_words(tmp_path, src):
    home = tmp_path / "home"
    run("ingest", str(src), home=home)
    proc = run("search", "NEAR(shipment rotterdam, soon)", home=home, check=False)
    assert proc.returncode == 2 and "must be a whole number, not 'soon'" in proc.stderr
    proc = run("search", "++", home=home, check=False)
    assert proc.returncode == 2 and "nothing to search for" in proc.stderr
    assert "fts5" not in proc.stderr.lower() and "sqlite" not in proc.stderr.lower()
    assert json.loads(run("search", '"unbalanced', "--json", home=home).stdout) == []  # closed at the end


def test_search_finds_everyday_queries_and_file_names(tmp_path, capsys):
    src = tmp_path / "src" / "Docket 2020"
    src.mkdir(parents=True)
    make_pdf(src / "greek.pdf", ["Olives and marble."])
    (src / "memo.txt").write_text(
        "FAA-2020-0686: Mr. O'Brien (U.S.) wired $50,000; write to stefan@datenfreihafen.org about C++.\n",
        encoding="utf-8",
    )
    home = tmp_path / "home"
    run("ingest", str(src), home=home)
    docs = {os.path.basename(d["path"]): d["id"] for d in json.loads(run("docs", "--json", home=home).stdout)}

    def search(*args: str) -> str:  # in this process: one interpreter start per query would cost seconds
        capsys.readouterr()
        assert cli.main(["search", *args, "--home", str(home)]) == 0
        return capsys.readouterr().out

    for query in ("stefan@datenfreihafen.org", "FAA-2020-0686", "O'Brien", "$50,000", "U.S.", "C++"):
        hits = json.loads(search(query, "--json"))
        assert [(h["doc_id"], h["field"]) for h in hits] == [(docs["memo.txt"], "text")], query
    for query in ("greek.pdf", "greek", '"Docket 2020"'):
        hits = json.loads(search(query, "--json"))
        assert hits[0]["doc_id"] == docs["greek.pdf"] and hits[0]["field"] in ("path", "title"), query
        assert (hits[0]["start"], hits[0]["end"]) == (0, 0) and "greek.pdf" in hits[0]["snippet"]
    assert json.loads(search("docket", "--json"))[0]["snippet"].startswith("file path: ")  # a folder's name
    text = run("search", "greek.pdf", home=home).stdout  # and once as users run it
    assert "greek.pdf  by its name" in text and "title: greek.pdf" in text


def test_a_path_after_the_global_options_opens_the_window_on_that_case(tmp_path, src, monkeypatch, capsys):
    from rlm_desktop import cli
    from rlm_desktop.gui import app

    seen = []
    monkeypatch.setattr(app, "run_gui", lambda args, home: seen.append((args, home)) or 0)
    home = tmp_path / "home"
    for argv in (
        ["--home", str(home), "--case", "inquiry", str(src)],  # the case named first (issue 13)
        [str(src), "--home", str(home), "--case", "inquiry"],  # a file manager's "Open with"
        ["--case=inquiry", "--home", str(home), str(src)],
    ):
        assert cli.main(argv) == 0
        args, opened_home = seen.pop()
        assert args.command == "gui" and args.case == "inquiry" and opened_home == home
        assert args.paths == [src]

    assert cli.main(["--case", "inquiry", str(tmp_path / "no-such-folder")]) == 2
    err = capsys.readouterr().err
    assert "no-such-folder" in err and "is neither a command" in err and "ingest" in err and not seen
