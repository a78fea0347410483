"""Migrations run once, in order, recorded in the case; a newer case is refused clearly."""

import sqlite3

import pytest

from rlm_desktop.store import migrations
from rlm_desktop.store.case import Case


def test_migrations_are_recorded_and_not_rerun(tmp_path):
    path = tmp_path / "c.sqlite"
    Case.open(path).close()
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [name for name, _ in migrations.MIGRATIONS]
    assert migrations.migrate(conn) == []  # nothing left to apply
    conn.close()


def test_case_from_a_newer_app_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    Case.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _migrations VALUES ('m999_future', 'x')")
    conn.commit()
    with pytest.raises(RuntimeError, match="newer RLM Desktop"):
        migrations.migrate(conn)


def test_a_failing_migration_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    Case.open(path).close()

    def m900_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise ValueError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m900_broken", m900_broken)])
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(ValueError):
        migrations.migrate(conn)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables
    assert conn.execute("SELECT COUNT(*) FROM _migrations WHERE name = 'm900_broken'").fetchone()[0] == 0
