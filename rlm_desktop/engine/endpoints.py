"""The probe cache `<home>/endpoints.json`: what each (endpoint, model) was found to do, keyed without credentials."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rlm_desktop.engine.model_info import ModelCaps

ENDPOINTS_FILE = "endpoints.json"
OPENAI_URL = "https://api.openai.com/v1"
_VERSION = 1
_lock = threading.Lock()  # one writer at a time within this process; across processes the last merge wins


def effective_base_url(base_url: str | None) -> str:
    """The URL the OpenAI client will really call: the given one, else $OPENAI_BASE_URL, else OpenAI."""
    return (base_url or "").strip() or os.environ.get("OPENAI_BASE_URL", "").strip() or OPENAI_URL


def endpoint_key(base_url: str | None) -> str:
    """The endpoint as shown and cached: no user:password, query or fragment; lower-case host; no trailing /."""
    url = effective_base_url(base_url)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def endpoints_path(home: Path) -> Path:
    return Path(home) / ENDPOINTS_FILE


def _read(home: Path) -> dict[str, Any]:
    path = endpoints_path(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": _VERSION, "endpoints": {}}  # a lost or broken cache only means probing again
    if not isinstance(data, dict) or not isinstance(data.get("endpoints"), dict):
        return {"version": _VERSION, "endpoints": {}}
    return data


def load_caps(home: Path, base_url: str | None) -> dict[str, dict[str, Any]]:
    """model -> ModelCaps.to_json() cached for this endpoint (empty when never probed)."""
    entry = _read(home)["endpoints"].get(endpoint_key(base_url))
    models = entry.get("models") if isinstance(entry, dict) else None
    if not isinstance(models, dict):
        return {}
    return {str(m): ModelCaps.from_json(c).to_json() for m, c in models.items() if isinstance(c, dict)}


def load_endpoint(home: Path, base_url: str | None) -> dict[str, Any]:
    """The whole cached entry of an endpoint: {"models": {...}, "listed": [...] | None, "probed_at": ...}."""
    entry = _read(home)["endpoints"].get(endpoint_key(base_url))
    return dict(entry) if isinstance(entry, dict) else {}


def save_caps(
    home: Path,
    base_url: str | None,
    caps: Mapping[str, ModelCaps | Mapping[str, Any]],
    listed: list[str] | None = None,
) -> Path:
    """Merge these models' findings into the cache (atomically, readable only by the user)."""
    key = endpoint_key(base_url)
    with _lock:
        data = _read(home)
        entry = data["endpoints"].get(key)
        if not isinstance(entry, dict):
            entry = {}
        models = entry.get("models") if isinstance(entry.get("models"), dict) else {}
        for model, found in caps.items():
            models[model] = (
                found.to_json() if isinstance(found, ModelCaps) else ModelCaps.from_json(found).to_json()
            )
        entry["models"] = models
        if listed is not None:
            entry["listed"] = list(listed)
        entry["probed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        data["endpoints"][key] = entry
        data["version"] = _VERSION
        return _write_private(endpoints_path(home), json.dumps(data, indent=2, sort_keys=True))


def _write_private(path: Path, text: str) -> Path:
    """Write via a 0600 temporary file in the same folder, then rename: complete or absent, never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=".endpoints-", suffix=".tmp", dir=path.parent
    )  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
