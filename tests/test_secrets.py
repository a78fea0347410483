"""KeyStore: the API key in the system keyring when one works, else in a 0600 file; never in settings."""

from __future__ import annotations

import json
import os
import stat

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import KeyringError, PasswordDeleteError

from rlm_desktop.secrets import NO_KEY_MESSAGE, KeyStore, api_key_status, load_key, write_key_file
from rlm_desktop.settings import Settings, load_api_key, save_api_key


class MemoryKeyring(KeyringBackend):
    """A working keyring backend that keeps passwords in a dict (what a real system keyring does)."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}
        self.broken = False

    def get_password(self, service, username):
        if self.broken:
            raise KeyringError("locked")
        return self.passwords.get((service, username))

    def set_password(self, service, username, password):
        if self.broken:
            raise KeyringError("locked")
        self.passwords[(service, username)] = password

    def delete_password(self, service, username):
        if self.passwords.pop((service, username), None) is None:
            raise PasswordDeleteError("not found")


@pytest.fixture
def no_keyring():
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_file_fallback_is_0600_and_round_trips(tmp_path, no_keyring):
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        store = KeyStore(tmp_path / "home")
        assert store.get() is None and not store.uses_keyring
        assert store.backend == f"file {tmp_path / 'home' / 'credentials.json'} (readable only by you)"
        store.set("  sk-test-123\n")
    finally:
        os.umask(old_umask)
    assert mode(store.path) == 0o600
    assert json.loads(store.path.read_text()) == {"api_key": "sk-test-123"}
    assert KeyStore(tmp_path / "home").get() == "sk-test-123"
    store.set("sk-second")
    assert store.get() == "sk-second" and mode(store.path) == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == ["credentials.json"]  # no temp file left
    store.delete()
    assert store.get() is None and not store.path.exists()
    store.delete()  # deleting nothing is fine


def test_empty_key_is_refused(tmp_path, no_keyring):
    with pytest.raises(ValueError, match="empty"):
        KeyStore(tmp_path).set("   ")


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_readable_credentials_file_is_tightened_on_read(tmp_path, no_keyring):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"api_key": "sk-old"}))
    os.chmod(path, 0o644)
    assert KeyStore(tmp_path).get() == "sk-old"
    assert mode(path) == 0o600


def test_write_key_file_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "credentials.json"
    write_key_file(path, "sk-a")
    with pytest.raises(TypeError):
        write_key_file(path, object())  # type: ignore[arg-type]  # json cannot write it
    assert json.loads(path.read_text()) == {"api_key": "sk-a"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.json"]


def test_working_keyring_is_used_and_no_file_is_written(tmp_path, memory_keyring):
    store = KeyStore(tmp_path / "home")
    assert store.uses_keyring
    assert store.backend.startswith("system keyring (") and store.backend.endswith("MemoryKeyring)")
    store.set("sk-in-keyring")
    assert not (tmp_path / "home" / "credentials.json").exists()
    user = f"api-key:{(tmp_path / 'home').resolve()}"
    assert memory_keyring.passwords == {("rlm-desktop", user): "sk-in-keyring"}
    assert KeyStore(tmp_path / "home").get() == "sk-in-keyring"
    assert KeyStore(tmp_path / "other-home").get() is None  # one key per home
    store.delete()
    assert memory_keyring.passwords == {} and store.get() is None


def test_a_key_in_the_file_moves_into_the_keyring(tmp_path, memory_keyring):
    write_key_file(tmp_path / "credentials.json", "sk-from-file")
    store = KeyStore(tmp_path)
    assert store.get() == "sk-from-file"
    assert not (tmp_path / "credentials.json").exists()
    assert list(memory_keyring.passwords.values()) == ["sk-from-file"]


def test_a_failing_keyring_falls_back_to_the_file(tmp_path, memory_keyring):
    memory_keyring.broken = True
    store = KeyStore(tmp_path)
    store.set("sk-kept")
    assert not store.uses_keyring and store.backend.startswith("file ")
    assert KeyStore(tmp_path).get() == "sk-kept"  # the new store's keyring read fails, then the file answers


def test_key_never_goes_into_settings(tmp_path, no_keyring):
    save_api_key(tmp_path, "sk-secret")
    Settings(base_url="http://127.0.0.1:1/v1").save(tmp_path)
    assert load_api_key(tmp_path) == "sk-secret"
    assert "sk-secret" not in (tmp_path / "settings.json").read_text()


def test_api_key_status_and_lookup_order(tmp_path, no_keyring, monkeypatch):
    assert api_key_status(tmp_path) == NO_KEY_MESSAGE
    assert load_key(tmp_path) is None
    KeyStore(tmp_path).set("sk-stored")
    assert api_key_status(tmp_path) is None and load_key(tmp_path) == "sk-stored"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert load_key(tmp_path) == "sk-env"  # the environment wins, as in `ask`
    KeyStore(tmp_path).delete()
    assert api_key_status(tmp_path) is None


def test_a_local_endpoint_needs_no_key(tmp_path, no_keyring):
    Settings(base_url="https://api.openai.com/v1").save(tmp_path)
    assert api_key_status(tmp_path, Settings.load(tmp_path).base_url) == NO_KEY_MESSAGE
    Settings(base_url="http://127.0.0.1:11434/v1").save(tmp_path)
    assert api_key_status(tmp_path, Settings.load(tmp_path).base_url) is None
