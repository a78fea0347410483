"""The API key: in the system keyring when there is one, else in a file only the user can read."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CREDENTIALS_FILE = "credentials.json"
KEY_ENV_VAR = "OPENAI_API_KEY"
SUB_KEY_ENV_VAR = "RLM_SUB_API_KEY"
SUB_CREDENTIALS_FILE = "sub-credentials.json"
NO_KEY_MESSAGE = "No API key: open Settings (Ctrl+,) and enter the key for your endpoint"


def _usable_keyring():
    """The keyring backend if it can really store secrets, else None (no backend, or the null one)."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend = keyring.get_keyring()
    except Exception:  # a broken keyring install or config must not stop the app; the file still works
        return None
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return backend


def warm_up() -> None:
    """Find the keyring backend now (it can take half a second: D-Bus, entry points), so that the first
    Ask or Settings in a window does not wait for it; call on a background thread."""
    _usable_keyring()


def _backend_name(backend) -> str:
    from keyring.backends import chainer

    if isinstance(backend, chainer.ChainerBackend):
        backend = backend.backends[0]  # the one that is asked first
    return getattr(backend, "name", None) or type(backend).__name__


def read_key_file(path: Path, field: str = "api_key") -> str | None:
    """The key in a credentials file, or None; tightens a file that others could read."""
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.chmod(path, 0o600)  # written by something older or copied in: close it before reading
        key = json.loads(path.read_text(encoding="utf-8")).get(field)
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) and key else None


def write_key_file(path: Path, key: str, field: str = "api_key") -> None:
    """Atomically replace `path` with the key; the file is 0600 from the moment it exists."""
    from rlm_desktop.paths import make_private_dirs

    make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    # O_EXCL: never write into a file someone else prepared; the mode is set at creation, so
    # the key is never readable by others, not even for an instant.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({field: key}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class KeyStore:
    """Stores one API key per home folder.

    With a working system keyring the key goes there (service `service`, user "api-key:<home>",
    so two homes never share a key) and any file copy is removed; a key found in the file
    while the keyring works is moved into the keyring on first read. Without a keyring the
    key lives in `<home>/credentials.json`, mode 0600.

    `name` and `file_name` store another secret the same way (`serve`'s bearer token: "serve-token").
    """

    def __init__(
        self, home: Path, service: str = "rlm-desktop", *, name: str = "api-key", file_name: str = CREDENTIALS_FILE
    ):
        self.home = Path(home).expanduser()
        self.service = service
        self.username = f"{name}:{self.home.resolve()}"
        self.path = self.home / file_name
        self._field = name.replace("-", "_")
        self._keyring = _usable_keyring()

    @property
    def backend(self) -> str:
        if self._keyring is not None:
            return f"system keyring ({_backend_name(self._keyring)})"
        return f"file {self.path} (readable only by you)"

    @property
    def uses_keyring(self) -> bool:
        return self._keyring is not None

    def get(self) -> str | None:
        if self._keyring is None:
            return read_key_file(self.path, self._field)
        try:
            key = self._keyring.get_password(self.service, self.username)
        except Exception:  # a locked or failing keyring: fall back to the file for good
            self._keyring = None
            return read_key_file(self.path, self._field)
        if key:
            return key
        key = read_key_file(self.path, self._field)
        if key:
            self._move_into_keyring(key)
        return key

    def set(self, key: str) -> None:
        key = key.strip()
        if not key:
            raise ValueError("the API key is empty; use delete() to remove it")
        if self._keyring is not None:
            try:
                self._keyring.set_password(self.service, self.username, key)
            except Exception:  # e.g. the user refused to unlock it: keep the key in the file instead
                self._keyring = None
            else:
                self._remove_file()  # no stale copy left behind
                return
        write_key_file(self.path, key, self._field)

    def delete(self) -> None:
        """Remove the key from the keyring and the file, wherever it is."""
        if self._keyring is not None:
            with contextlib.suppress(Exception):  # PasswordDeleteError when nothing was stored
                self._keyring.delete_password(self.service, self.username)
        self._remove_file()

    def _move_into_keyring(self, key: str) -> None:
        try:
            self._keyring.set_password(self.service, self.username, key)
            moved = self._keyring.get_password(self.service, self.username) == key
        except Exception:
            return  # the file copy stays in use
        if moved:
            self._remove_file()

    def _remove_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def load_key(home: Path, env_var: str = KEY_ENV_VAR) -> str | None:
    """The key a run should use: the environment variable first, then the stored key."""
    from rlm_desktop.redact import remember_secret

    key = os.environ.get(env_var) or KeyStore(home).get()
    remember_secret(key)  # whatever this process stores, prints or exports from now on is redacted of it
    return key


def sub_key_store(home: Path) -> KeyStore:
    """Where the key of a separate sub-call endpoint is kept: like the API key, under its own name and file."""
    return KeyStore(home, name="sub-api-key", file_name=SUB_CREDENTIALS_FILE)


def load_sub_key(home: Path, env_var: str = SUB_KEY_ENV_VAR) -> str:
    """The key for a separate sub-call endpoint: the environment variable, then the stored sub key; "" when
    there is none (the root's key is never sent to another host)."""
    from rlm_desktop.redact import remember_secret

    key = os.environ.get(env_var) or sub_key_store(home).get() or ""
    remember_secret(key)
    return key


def run_sub_key(home: Path, config: Any, env_var: str = SUB_KEY_ENV_VAR) -> str | None:
    """What a run with `config` (a RunConfig) gives as its sub key: the sub endpoint's own key when sub-calls
    have their own endpoint, None when they share the root's (every caller: window, ask, API, serve, bench)."""
    return load_sub_key(home, env_var) if config.separate_sub_endpoint else None


def api_key_status(home: Path, base_url: str | None = None) -> str | None:
    """None when runs can go ahead, else a sentence telling the user what to set.

    A key in $OPENAI_API_KEY or the store is enough. A custom endpoint (`base_url` from settings, or
    $OPENAI_BASE_URL) may need no key at all (Ollama, vLLM, LM Studio), as `ask` allows.
    """
    if load_key(home):
        return None
    endpoint = (os.environ.get("OPENAI_BASE_URL") or base_url or "").strip()
    if endpoint and urlsplit(endpoint).hostname not in (None, "api.openai.com"):
        return None
    return NO_KEY_MESSAGE
