"""`rlm-desktop gui`: start Qt under a qasync loop, open the window on a case, or render it to a PNG and exit."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from rlm_desktop.paths import InvalidCaseName, case_path
from rlm_desktop.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def run_gui(args: argparse.Namespace, home: Path) -> int:
    """Open the window on `--case`, else the last case used, else 'default'."""
    if args.screenshot and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a screenshot needs no screen
    try:
        settings = Settings.load(home)
    except ValueError as exc:
        print(f"rlm-desktop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    name = args.case or settings.last_case or "default"
    try:
        path = case_path(home, name)
    except InvalidCaseName as exc:
        print(f"rlm-desktop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.screenshot and not path.exists():
        print(f"rlm-desktop: error: no case {name!r} at {path}", file=sys.stderr)
        return EXIT_USAGE
    try:
        size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
        if size is None and args.screenshot:  # an offscreen "screen" is 800x800: render at the usual size
            size = (1400, 900)
        if size is not None and len(size) != 2:
            raise ValueError
    except ValueError:
        print(f"rlm-desktop: error: --size must look like 1400x900, not {args.size!r}", file=sys.stderr)
        return EXIT_USAGE

    import qasync
    from PySide6.QtWidgets import QApplication

    from rlm_desktop.gui.bridge import configure_gui_thread
    from rlm_desktop.gui.main_window import QUIT_BUDGET_S, MainWindow

    configure_gui_thread()  # the GIL goes back to the GUI thread within 1 ms while a run or an ingest works
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("RLM Desktop")
    app.setOrganizationName("rlm-desktop")
    app.setDesktopFileName("rlm-desktop")
    _set_icon(app)
    window = MainWindow(home, settings)
    if size is not None:  # else the window picks a size that fits the screen
        window.resize(*size)
    window.open_case(name)
    if args.screenshot:
        return _screenshot(app, window, args.open_run, Path(args.screenshot))
    if args.open_run and window.open_run(args.open_run, quiet=True) is None:
        print(f"rlm-desktop: error: no run {args.open_run!r} in case {name!r}", file=sys.stderr)
        window.shutdown()
        return EXIT_USAGE
    window.show()
    if args.paths:
        window.ingest_paths([p.expanduser().resolve() for p in args.paths])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    window.shutdown(QUIT_BUDGET_S)  # closing the window did this already; a quit by other means needs it
    _exit_now(EXIT_OK)
    return EXIT_OK  # not reached


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown: everything is saved and closed by now, and tearing down Qt
    and the libraries PDF reading loads (PyMuPDF's ONNX runtime) took 1-2 s after the window had gone. An
    ingest left finishing its file is safe to cut (its case stays consistent, and its extractor processes
    leave when they see their parent gone)."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _walk(node: dict):
    yield node
    for child in node.get("children", []):
        yield from _walk(child)


def _set_icon(app) -> None:
    """The drawn PNG sizes (a scaled SVG blurs at 16 px)."""
    from PySide6.QtGui import QIcon

    from rlm_desktop.frozen import resources_dir

    icon = QIcon()
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = resources_dir() / "icons" / f"rlm-desktop-{size}.png"
        if png.exists():
            icon.addFile(str(png))
    if not icon.isNull():
        app.setWindowIcon(icon)


def _screenshot(app, window, run_id: str | None, out: Path) -> int:
    """Render the window as a user would see it (a run's tree, answer and first citation open) and save it."""
    from PySide6.QtCore import QEventLoop, QTimer

    if run_id:
        record = window.open_run(run_id, quiet=True)
        if record is None:
            print(f"rlm-desktop: error: no run {run_id!r} in case {window.case_name!r}", file=sys.stderr)
            window.shutdown()
            return EXIT_USAGE
        first_subcall = next(
            (n for n in _walk(record.get("tree") or {}) if n.get("kind") == "llm_query"), None
        )
        if first_subcall is not None:  # its excerpt shows which source passages the sub-model read
            window.ask_panel.tree.select_node(first_subcall["id"])
        citations = record.get("citations") or []
        if citations:
            window.ask_panel.answer.activate_citation(citations[0]["marker"])
    window.show()
    # let layouts settle and pages render: a few turns of the event loop
    for _ in range(5):
        pause = QEventLoop()
        QTimer.singleShot(40, pause.quit)
        pause.exec()
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(out))
    window.shutdown()
    window.close()
    if not ok:
        print(f"rlm-desktop: error: could not write {out}", file=sys.stderr)
        return EXIT_FAILED
    print(out)
    return EXIT_OK
