"""Run by test_window_layout in a child process whose offscreen screen has a given size: open the window
as a user would (its own first size), open an email's attachment, and report sizes as JSON."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, QPoint, QTimer
from PySide6.QtWidgets import QApplication

from rlm_desktop.engine.events import NodeStarted, NodeView, RunStarted
from rlm_desktop.gui.main_window import MainWindow
from rlm_desktop.settings import Settings


def node(node_id: str, parent: str | None, kind: str, text: str) -> NodeView:
    return NodeView(
        id=node_id, parent_id=parent, kind=kind, model=None, status="running", prompt_tokens=0,
        completion_tokens=0, cost_usd=0.0, started=f"2025-03-01T12:00:{len(node_id):02d}.000+00:00",
        ended=None, text=text, detail={"number": 1} if kind == "iteration" else {}, spans=(),
    )


def fill_right_column(window: MainWindow) -> tuple[int, int]:
    """A 20-line answer and a 30-step tree; returns (answer lines in view, tree rows in view)."""
    panel = window.ask_panel
    panel.answer.set_answer("\n".join(f"Line {i} of the answer." for i in range(1, 21)), [], "completed")
    panel.tree.apply(RunStarted("r", "q", node("n0", None, "root", "q")))
    for i in range(1, 31):
        panel.tree.apply(NodeStarted("r", node(f"n{i}", "n0", "iteration", f"step {i}")))
    browser = panel.answer.browser
    # the line at the bottom edge of the view may be cut: count the ones above it
    position = browser.cursorForPosition(QPoint(20, browser.viewport().height() - 2)).position()
    seen = re.findall(r"Line (\d+)", browser.toPlainText()[:position])
    lines = int(seen[-1]) - 1 if seen else 0
    tree = panel.tree.tree
    rows = tree.viewport().height() // max(1, tree.rowHeight(tree.model().index(0, 0)))
    return lines, rows


def settle(app: QApplication, turns: int = 5) -> None:
    for _ in range(turns):
        pause = QEventLoop()
        QTimer.singleShot(30, pause.quit)
        pause.exec()


def main(home: str, case: str, attachment_id: str, shot: str) -> None:
    app = QApplication(sys.argv[:1])
    # a window in use (an endpoint set up): the first-launch checklist would take the column's height
    Settings(base_url="http://127.0.0.1:9/v1").save(Path(home))
    window = MainWindow(Path(home))
    window.open_case(case)
    window.show()
    settle(app)
    first = window.size()
    window.viewer.show_document(int(attachment_id))
    settle(app)
    lines, rows = fill_right_column(window)
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
                "answer_lines": lines,
                "tree_rows": rows,
            }
        )
    )
    window.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
