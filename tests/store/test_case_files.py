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



def test_opening_a_case_again_keeps_the_locks_other_connections_hold(tmp_path):
    """Closing any descriptor of a file drops all of a process's POSIX locks on it. Opening a second Case in a
    process (the window does, while its engine child writes the same file) must not release the first one's
    shared lock: without it another process closing its connection believes it is the last one, checkpoints
    and deletes the WAL under the first, and the case is corrupted."""
    import subprocess
    import sys

    path = tmp_path / "locks.sqlite"
    holder = Case.open(path)
    try:
        holder.conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
        holder.conn.execute("INSERT INTO t VALUES (1)")  # something in the WAL
        Case.open(path).close()  # another connection of this process comes and goes
        probe = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute('SELECT count(*) FROM t')\nc.close()\n"
        subprocess.run([sys.executable, "-c", probe, str(path)], check=True, timeout=30)
        # the other process saw a connection still open here, so it left the WAL (and this one's data) alone
        assert os.path.exists(f"{path}-wal")
        assert holder.conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        assert holder.conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    finally:
        holder.close()
