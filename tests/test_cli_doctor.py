"""`rlm-desktop doctor` as a user runs it: a readable report or one JSON object, exit 0 or 1 with the reason."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from rlm_desktop.engine.endpoints import load_caps
from rlm_desktop.settings import Settings, run_config
from tests.probe_server import ProbeServer, Quirks

KEY = "sk-test-DOCTOR-0123456789"


def doctor(home, *args, key: str | None = KEY):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home)}
    env.pop("OPENAI_BASE_URL", None)
    env.pop("OPENAI_API_KEY", None)
    if key is not None:
        env["OPENAI_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "rlm_desktop", "doctor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


QUIRKY = Quirks(
    models=["qwen3:8b", "gpt-4o-mini"],
    model_fields={"qwen3:8b": {"max_model_len": 8192}},
    refuse_max_completion_tokens="422",
    reasoning="think",
    usage="total_only",
    stream="no_options",
)


def test_doctor_reports_the_settings_models_in_words_and_caches_them(tmp_path):
    with ProbeServer(QUIRKY) as server:
        Settings(base_url=server.base_url, root_model="qwen3:8b", sub_model="gpt-4o-mini").save(tmp_path)
        proc = doctor(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"Endpoint  {server.base_url}" in out and "2 models listed: qwen3:8b, gpt-4o-mini" in out
    assert "Root model  qwen3:8b  ✓" in out and "Sub model  gpt-4o-mini  ✓" in out
    assert "takes max_tokens" in out
    assert (
        "refused max_completion_tokens (HTTP 422: max_completion_tokens: Extra inputs are not permitted)"
        in out
    )
    assert "yes, but without token usage" in out
    assert "NOT reported: costs are estimated and held against the cap" in out
    assert "in <think> tags in the text" in out
    assert "8,192 tokens (reported by the server)" in out
    assert "128,000 tokens (known for this model; not reported)" in out
    assert "This machine: walls around model code" in out and "rlimits" in out
    assert out.rstrip().endswith("Ready.")
    assert KEY not in out + proc.stderr
    # the findings reach the next run's config
    config = run_config(Settings.load(tmp_path), home=tmp_path)
    assert config.model_caps["qwen3:8b"]["token_param"] == "max_tokens"
    assert config.model_caps["qwen3:8b"]["context_window"] == 8192
    assert config.model_caps["gpt-4o-mini"]["stream_usage"] is False


def test_doctor_json_is_one_object_and_flags_override_settings(tmp_path):
    Settings(base_url="http://127.0.0.1:9/v1", root_model="unused", sub_model="unused").save(tmp_path)
    with ProbeServer(QUIRKY) as server:
        proc = doctor(
            tmp_path,
            "--json",
            "--base-url",
            server.base_url,
            "--root-model",
            "gpt-4o-mini",
            "--sub-model",
            "gpt-4o-mini",
        )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # nothing but the object on stdout
    assert data["ok"] and data["endpoint"] == server.base_url
    assert (data["root_model"], data["sub_model"]) == ("gpt-4o-mini", "gpt-4o-mini")
    [model] = data["models"]  # one model in both roles is probed once
    assert model["roles"] == ["root", "sub"]
    assert model["caps"]["token_param"] == "max_tokens" and model["caps"]["usage_reported"] is False
    assert model["context_window"] == {"tokens": 128_000, "source": "known"}
    assert model["cost_estimated"] and model["cost_usd"] > 0 and model["calls"] >= 3
    assert ["output limit", "takes max_tokens"] in model["findings"]
    modes = {m["mode"]: m for m in data["isolation"]["modes"]}
    assert set(modes) == {"bwrap", "unshare", "landlock", "rlimits"} and modes["rlimits"]["available"]
    assert data["cache"] == str(tmp_path / "endpoints.json")
    assert set(load_caps(tmp_path, server.base_url)) == {"gpt-4o-mini"}


def test_doctor_names_connection_refused_and_exits_1(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    proc = doctor(tmp_path, "--base-url", url)
    assert proc.returncode == 1
    assert f"Endpoint  {url}\n  ✗ connection refused" in proc.stdout
    assert "Not ready: connection refused" in proc.stdout and "Traceback" not in proc.stderr
    proc = doctor(tmp_path, "--base-url", url, "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert not data["ok"] and not data["reachable"] and data["problem"].startswith("connection refused")
    assert data["cache"] is None and not (tmp_path / "endpoints.json").exists()


def test_doctor_names_a_rejected_key_without_showing_it(tmp_path):
    with ProbeServer(Quirks(api_key="sk-right", echo_key_on_401=True)) as server:
        proc = doctor(tmp_path, "--base-url", server.base_url, "--root-model", "tidy-model")
    assert proc.returncode == 1
    assert "the server rejected the API key (HTTP 401" in proc.stdout
    assert "DOCTOR-0123" not in proc.stdout + proc.stderr


def test_doctor_names_a_model_the_server_does_not_have(tmp_path):
    with ProbeServer(Quirks()) as server:
        proc = doctor(
            tmp_path, "--base-url", server.base_url, "--root-model", "tidy-model", "--sub-model", "gpt-9"
        )
    assert proc.returncode == 1
    assert "Sub model  gpt-9  ✗" in proc.stdout
    assert "Not ready: gpt-9: HTTP 404: The model `gpt-9` does not exist." in proc.stdout


def test_doctor_without_a_key_for_openai_says_so_without_calling_out(tmp_path):
    proc = doctor(tmp_path, key=None)
    assert proc.returncode == 1
    assert (
        "Not ready: no API key: set $OPENAI_API_KEY (or --api-key-env VAR), or save one in settings"
        in proc.stdout
    )
