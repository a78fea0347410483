"""The user's pane sizes (the window's splitters) and view choices, kept in <home>/window.ini across restarts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QSplitter

FILE_NAME = "window.ini"


class LayoutState:
    """Splitter sizes by name. Only what the user drags is saved (setSizes from code emits no splitterMoved)."""

    def __init__(self, home: Path):
        # a file in the app's home, not the platform's QSettings store: each home (and each test) has its own
        self.path = Path(home) / FILE_NAME
        self._settings = QSettings(str(self.path), QSettings.Format.IniFormat)

    def keep(self, name: str, splitter: QSplitter) -> bool:
        """Give `splitter` its saved sizes (True if there were any) and save them whenever the user moves it."""
        state = self._settings.value(f"splitters/{name}")
        restored = (
            isinstance(state, QByteArray)
            and splitter.restoreState(state)
            and len(splitter.sizes()) == splitter.count()
        )
        splitter.splitterMoved.connect(lambda _pos, _index: self.save(name, splitter))
        return bool(restored)

    def save(self, name: str, splitter: QSplitter) -> None:
        self._settings.setValue(f"splitters/{name}", splitter.saveState())
        self._settings.sync()


    def text(self, key: str, default: str = "") -> str:
        value = self._settings.value(key)
        return value if isinstance(value, str) else default

    def set_text(self, key: str, value: str) -> None:
        self._settings.setValue(key, value)
        self._settings.sync()


def share(total: int, fractions: Sequence[float]) -> list[int]:
    """`total` pixels split by `fractions` (the last part takes what rounding leaves)."""
    parts = [int(total * f) for f in fractions[:-1]]
    return [*parts, max(0, total - sum(parts))]
