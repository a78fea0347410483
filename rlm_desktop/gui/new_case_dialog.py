"""Ask for a new case's name, saying inline why a name cannot be used; what was typed is never lost."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from rlm_desktop.gui import theme
from rlm_desktop.paths import InvalidCaseName, case_path


class NewCaseDialog(QDialog):
    """A name box checked as the user types: OK stays off, with the reason beside it, until the name works."""

    def __init__(self, home: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.home = home
        self.setWindowTitle("New case")
        self.name_box = QLineEdit()
        self.name_box.setPlaceholderText("e.g. harbour-leak 2026")
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet(f"color: {theme.UNVERIFIED.name()};")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Name of the new case (letters, digits, spaces, . _ -):"))
        layout.addWidget(self.name_box)
        layout.addWidget(self.reason)
        layout.addWidget(self.buttons)
        self.name_box.textChanged.connect(self._check)
        self.setMinimumWidth(420)
        self._check("")

    @property
    def name(self) -> str:
        return self.name_box.text().strip()

    def problem(self) -> str | None:
        """Why the typed name cannot be used, or None."""
        if not self.name:
            return ""  # nothing typed yet: nothing to explain
        try:
            case_path(self.home, self.name)  # an existing case is fine: the window opens it and says so
        except InvalidCaseName as exc:
            return str(exc)
        return None

    def _check(self, _text: str) -> None:
        problem = self.problem()
        self.reason.setText(problem or "")
        self.reason.setVisible(bool(problem))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(problem is None)
        if problem:  # the wrapped reason needs its height: grow to show all of it
            self.resize(self.width(), max(self.height(), self.heightForWidth(self.width()), self.sizeHint().height()))

    def accept(self) -> None:  # Enter in the box comes here too: an unusable name keeps the dialog open
        if self.problem() is None:
            super().accept()
