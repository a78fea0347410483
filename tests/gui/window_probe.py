"""Run by test_window_layout in a child process whose offscreen screen has a given size: open the window
as a user would (its own first size), open an email's attachment, and report sizes as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from rlm_desktop.gui.main_window import MainWindow


def settle(app: QApplication, turns: int = 5) -> None:
    for _ in range(turns):
        pause = QEventLoop()
        QTimer.singleShot(30, pause.quit)
        pause.exec()


def main(home: str, case: str, attachment_id: str, shot: str) -> None:
    app = QApplication(sys.argv[:1])
    window = MainWindow(Path(home))
    window.open_case(case)
    window.show()
    settle(app)
    first = window.size()
    window.viewer.show_document(int(attachment_id))
    settle(app)
    window.grab().save(shot)
    screen = window.screen().availableGeometry()
    print(
        json.dumps(
            {
                "screen": [screen.width(), screen.height()],
                "first": [first.width(), first.height()],
                "after": [window.width(), window.height()],
                "frame": [window.frameGeometry().width(), window.frameGeometry().height()],
                "minimum": [window.minimumSizeHint().width(), window.minimumSizeHint().height()],
                "parent_text": window.viewer.parent_button.text(),
            }
        )
    )
    window.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
