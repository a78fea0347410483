"""Where data lives: the home folder, case files and settings (CONTRACTS.md "Where data lives")."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

APP_DIR_NAME = "rlm-desktop"
_CASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")


class InvalidCaseName(ValueError):
    """A case name that cannot be a file name on every platform."""


def default_home() -> Path:
    """The platform's user data folder for the app."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / APP_DIR_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_DIR_NAME
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_DIR_NAME


def resolve_home(flag: str | os.PathLike[str] | None = None) -> Path:
    """`--home` wins, then `$RLM_DESKTOP_HOME`, then the platform default."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get("RLM_DESKTOP_HOME")
    if env:
        return Path(env).expanduser()
    return default_home()


def check_case_name(name: str) -> str:
    if not _CASE_NAME.match(name) or name.endswith((".", " ")) or ".." in name:
        raise InvalidCaseName(
            f"invalid case name {name!r}: use letters, digits, spaces, '.', '_' or '-' (at most 100 characters)"
        )
    return name


def case_path(home: Path, name: str) -> Path:
    """`<home>/cases/<name>.sqlite`."""
    return home / "cases" / f"{check_case_name(name)}.sqlite"


def list_cases(home: Path) -> list[str]:
    folder = home / "cases"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.sqlite"))


def settings_path(home: Path) -> Path:
    return home / "settings.json"


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and any missing parents readable only by this user (0700): the home holds cases and
    the credentials file. Folders that already exist keep their mode (a `--home` may be the user's own)."""
    missing = []
    current = Path(folder)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # the umask can only narrow mkdir's mode; make it exact anyway
