"""User settings beside the cases (`<home>/settings.json`); the API key lives apart, readable only by the user."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rlm_desktop.paths import settings_path

CREDENTIALS_FILE = "credentials.json"


@dataclass
class Settings:
    base_url: str | None = None
    root_model: str = "gpt-5"
    sub_model: str = "gpt-5-mini"
    cap_usd: float | None = 2.0  # a hard cap by default: a runaway run must never surprise anyone
    max_depth: int = 1
    max_iterations: int = 20
    max_subcalls: int = 500
    concurrency: int = 8
    max_wall_s: float = 1800.0
    prices: dict[str, Any] = field(default_factory=dict)  # model -> "IN:OUT" or {"input_per_m", ...}
    last_case: str | None = None

    @classmethod
    def load(cls, home: Path) -> Settings:
        path = settings_path(home)
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read settings {path}: {exc}") from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, home: Path) -> None:
        path = settings_path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)


def load_api_key(home: Path) -> str | None:
    path = home / CREDENTIALS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("api_key") or None
    except (OSError, ValueError):
        return None


def save_api_key(home: Path, key: str) -> None:
    """Write the key to a file only the user can read (created 0600 before the key goes in)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / CREDENTIALS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"api_key": key}, fh)
    os.chmod(path, 0o600)
