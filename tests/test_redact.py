"""No API key, nor anything key-shaped, in run records, CLI output or reports, even when a server echoes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from rlm_script import PRICES, ROOT, SUB

from rlm_desktop.redact import REDACTED, public_base_url, redact, redact_record
from rlm_desktop.store.case import Case
from tests.fake_openai import Reply

KEY = "sk-proj-Zx81kQ0wLmN4vB7cR2tY9pHs"
USERINFO_SECRET = "hunter2pass"
QUERY_SECRET = "AzUrEqUeRySeCrEt42"


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("Incorrect API key provided: sk-proj-abcDEF123456. You can find your key", "sk-proj-abcDEF123456"),
        ("Incorrect API key provided: sk-ant-api03-QQQQQQQQQQ", "sk-ant-api03-QQQQQQQQQQ"),
        ("Incorrect API key provided: sk-****************wxyz.", "wxyz"),
        ("headers: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("GET https://bob:s3cr3tpw@api.example.com/v1 failed", "s3cr3tpw"),
        ("url=https://api.example.com/v1?api-key=abc123XYZ&x=1", "abc123XYZ"),
        ("url=https://api.example.com/v1?key=AIzaLongGoogleStyleKey000000000000000", "AIzaLong"),
        ("url=https://h/v1?access_token=tok_998877&api_key=k_665544", "tok_998877"),
        ("url=https://h/v1?access_token=tok_998877&api_key=k_665544", "k_665544"),
        ('{"api_key": "plainsecret99", "model": "m"}', "plainsecret99"),
    ],
)
def test_key_shaped_strings_are_removed(text, gone):
    out = redact(text)
    assert gone not in out and REDACTED in out


def test_known_secrets_of_any_shape_and_ordinary_text_survive():
    assert redact("the key was 7f3a9c1e2b", known_secrets=["7f3a9c1e2b"]) == f"the key was {REDACTED}"
    # a server that echoes only part of the key (cut off, or its end): the word holding it goes
    cut = redact("key 'Xq7f3a9c1e2b...' rejected", known_secrets=["ZZXq7f3a9c1e2bYY"])
    assert cut == f"key {REDACTED} rejected"
    ordinary = (
        "The task-list and desk-top; keys of the safe; token received yesterday; Basic authentication; "
        "the bearer instrument; sketch-book; https://example.org/a?b=c"
    )
    assert redact(ordinary) == ordinary


def test_a_word_like_piece_of_a_key_leaves_prose_and_flags_alone():
    # a word-like test key shares "t-window" with a flag: the flag stays, the key and its random pieces go
    key = "sk-test-window"
    assert redact("use --context-window N", known_secrets=[key]) == "use --context-window N"
    assert redact(f"bad key {key}", known_secrets=[key]) == f"bad key {REDACTED}"
    generated = "sk-proj-Q7x2mK9pL4vR8tZ1"
    assert redact("echo: 'mK9pL4vR...'", known_secrets=[generated]) == f"echo: {REDACTED}"


def test_public_base_url_keeps_the_endpoint_and_drops_credentials():
    url = f"https://user:{USERINFO_SECRET}@example.com:8443/openai/v1?api-version=2024-06-01&api-key={QUERY_SECRET}"
    assert public_base_url(url) == "https://example.com:8443/openai/v1?api-version=2024-06-01"
    assert public_base_url("http://127.0.0.1:11434/v1") == "http://127.0.0.1:11434/v1"


def test_record_quotes_stay_verbatim():
    record = {
        "answer": f"The password: Zurich account [c1]; leaked {KEY}",
        "error": f"boom {KEY}",
        "config": {"base_url": f"http://u:{USERINFO_SECRET}@h/v1"},
        "citations": [{"quote": "password=letmein123"}],
        "tree": {"kind": "llm_query", "text": "excerpt: token=abcdefgh123", "error": "Bearer abc123def456ghi"},
    }
    out = redact_record(record, (KEY,))  # the run's own key is always known (RunHandle, load_key)
    assert KEY not in json.dumps(out) and USERINFO_SECRET not in json.dumps(out)
    assert out["citations"][0]["quote"] == "password=letmein123"  # checked character for character
    assert out["answer"] == f"The password: Zurich account [c1]; leaked {REDACTED}"  # prose, but never the key
    assert out["tree"]["text"] == "excerpt: token=abcdefgh123"  # a sub-call's prompt is document text
    assert out["tree"]["error"] == f"Bearer {REDACTED}"


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    with Case.open(home / "cases" / "default.sqlite") as case:
        case.add_text_document("memo.txt", "The meeting with the auditors is on 12 June in Geneva.\n")
    return home


def cli(home, *args, key=KEY):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": key}
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "rlm_desktop", *args], capture_output=True, text=True, env=env, timeout=120
    )


def ask_args(base_url):
    return [
        "ask",
        "When is the meeting?",
        "--base-url",
        base_url,
        "--root-model",
        ROOT,
        "--sub-model",
        SUB,
        *(a for p in PRICES for a in ("--price", p)),
    ]


def everything_written(home, run_id, tmp_path):
    """Every place the run can end up: the case file's bytes, show, and each report format."""
    outputs = {"case": (home / "cases" / "default.sqlite").read_bytes().decode("utf-8", "replace")}
    wal = home / "cases" / "default.sqlite-wal"
    if wal.exists():
        outputs["wal"] = wal.read_bytes().decode("utf-8", "replace")
    for fmt in ("json", "html", "md", "docx"):
        out = tmp_path / f"report.{fmt}"
        proc = cli(home, "export", run_id, "--format", fmt, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        if fmt == "docx":
            import docx

            document = docx.Document(out)
            cells = [c.text for t in document.tables for r in t.rows for c in r.cells]
            outputs[fmt] = "\n".join([p.text for p in document.paragraphs] + cells)
        else:
            outputs[fmt] = out.read_text(encoding="utf-8")
    for extra in ([], ["--json"]):
        proc = cli(home, "show", run_id, *extra)
        outputs[f"show{extra}"] = proc.stdout + proc.stderr
    return outputs


def test_a_401_echoing_the_key_leaves_no_trace_of_it(fake_openai, home, tmp_path):
    # What OpenAI answers to a wrong key: a 401 whose message repeats the key that was sent.
    fake_openai.handler = lambda request: Reply(
        status=401, error={"error": {"message": f"Incorrect API key provided: {KEY}. You can find your API key at "
                                     "https://platform.openai.com/account/api-keys.", "type": "invalid_request_error",
                                     "code": "invalid_api_key"}}
    )
    proc = cli(home, *ask_args(fake_openai.base_url), "--json")
    assert fake_openai.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"  # the key really was sent
    record = json.loads(proc.stdout)
    assert proc.returncode == 1 and record["status"] == "failed"
    assert "Incorrect API key provided" in record["error"] and REDACTED in record["error"]
    plain = cli(home, *ask_args(fake_openai.base_url))
    assert plain.returncode == 1 and "Incorrect API key provided" in plain.stdout + plain.stderr
    outputs = {"ask --json": proc.stdout + proc.stderr, "ask": plain.stdout + plain.stderr}
    outputs |= everything_written(home, record["run_id"], tmp_path)
    for where, text in outputs.items():
        assert KEY not in text and KEY[8:] not in text, f"the key is in {where}"
    assert "Incorrect API key provided" in outputs["html"] and "Incorrect API key provided" in outputs["md"]


def test_base_url_credentials_are_never_stored_or_exported(fake_openai, home, tmp_path):
    port_url = fake_openai.base_url.replace("http://", f"http://someone:{USERINFO_SECRET}@")
    proc = cli(home, *ask_args(f"{port_url}?api-key={QUERY_SECRET}"), "--json")
    record = json.loads(proc.stdout)
    assert record["config"]["base_url"] == fake_openai.base_url
    outputs = {"ask": proc.stdout + proc.stderr} | everything_written(home, record["run_id"], tmp_path)
    for where, text in outputs.items():
        assert USERINFO_SECRET not in text and QUERY_SECRET not in text, f"a credential is in {where}"


def test_events_the_window_draws_from_carry_no_key(fake_openai, home):
    from sample_case import run_config

    from rlm_desktop.engine.handle import RunHandle

    fake_openai.handler = lambda request: Reply(status=401, error=f"Incorrect API key provided: {KEY}.")
    handle = RunHandle(home / "cases" / "default.sqlite", "When?", run_config(fake_openai), KEY)
    events = []
    handle.subscribe(events.append)
    record = handle.start().wait(60)
    assert record["status"] == "failed" and "Incorrect API key provided" in record["error"]
    assert any("Incorrect API key provided" in repr(e) for e in events)  # the error is shown...
    assert KEY not in repr(events) and KEY not in repr(record)  # ...without the key


def test_logged_errors_are_redacted(tmp_path):
    script = (
        "import logging\n"
        "from rlm_desktop.redact import install_log_redaction\n"
        "install_log_redaction()\n"
        "try:\n"
        f"    raise RuntimeError('401: Incorrect API key provided: {KEY}')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('rlm_desktop.engine').exception('call failed with Bearer %s', 'tok3n-abc123-def456')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "call failed with Bearer" in proc.stderr and "Incorrect API key provided" in proc.stderr
    assert KEY not in proc.stderr and "tok3n-abc123-def456" not in proc.stderr
