"""Case files are readable only by their owner (0600), in a home folder only they can enter (0700)."""

from __future__ import annotations

import os
import stat

import pytest

from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case


@pytest.fixture(autouse=True)
def usual_umask():
    old = os.umask(0o022)  # what a desktop session has: new files 0644, folders 0755, unless the app says
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_case_in_a_new_home_is_private(tmp_path):
    existing = tmp_path / "user"
    existing.mkdir(mode=0o755)
    home = existing / "share" / "rlm-desktop"
    path = home / "cases" / "leak.sqlite"
    with Case.open(path) as case:
        case.add_text_document("memo.txt", "secret memo")
        assert (path.parent / "leak.sqlite-wal").exists()
        for suffix in ("", "-wal", "-shm"):
            assert mode(f"{path}{suffix}") == 0o600, suffix
    assert mode(home) == 0o700 and mode(home / "cases") == 0o700 and mode(existing / "share") == 0o700
    assert mode(existing) == 0o755  # a folder that already existed keeps its mode


def test_an_existing_world_readable_case_is_tightened(tmp_path):
    path = tmp_path / "old.sqlite"
    Case.open(path).close()
    os.chmod(path, 0o644)
    with Case.open(path) as case:
        case.add_text_document("memo.txt", "secret memo")
    assert mode(path) == 0o600


def test_settings_in_a_new_home_create_it_private(tmp_path):
    home = tmp_path / "home"
    Settings().save(home)
    assert mode(home) == 0o700 and mode(home / "settings.json") == 0o600
