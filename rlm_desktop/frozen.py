"""Running from a PyInstaller bundle ("frozen"): where its files are and how it starts itself again."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The bundle has no Python to run `python worker.py` with: the app's own executable starts the REPL worker
# when this is its first argument (rlm_desktop/__main__.py dispatches it before argparse).
SANDBOX_WORKER_FLAG = "--sandbox-worker"
# ... and the engine of a window's question thread (rlm_desktop/engine/remote.py) when this one is.
ENGINE_WORKER_FLAG = "--engine-worker"


def is_frozen() -> bool:
    """True inside a PyInstaller bundle (sys.frozen is set by its bootloader)."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def data_dir() -> Path:
    """The folder holding the data files: the bundle's `_internal` (sys._MEIPASS), or the checkout."""
    if is_frozen():
        return Path(sys._MEIPASS).resolve()  # type: ignore[attr-defined]
    return Path(__file__).resolve().parents[1]


def resources_dir() -> Path:
    """`resources/` (prompts, icons, the .desktop file); the spec copies it to the same place in a bundle."""
    return data_dir() / "resources"


def bundle_root() -> Path:
    """The smallest folder holding both the executable and the bundle's files.

    Linux/Windows one-folder: `rlm-desktop/` (executable) around `rlm-desktop/_internal/`; a macOS .app:
    `Contents/` around `Contents/MacOS/` and `Contents/Frameworks/`.
    """
    executable = os.path.dirname(os.path.realpath(sys.executable))
    if not is_frozen():
        return Path(executable)
    return Path(os.path.commonpath([executable, str(data_dir())]))


def worker_argv() -> list[str]:
    """The command that starts a REPL worker from the bundle's own executable."""
    return [os.path.realpath(sys.executable), SANDBOX_WORKER_FLAG]


def run_sandbox_worker() -> int:
    """Be the REPL worker (this process was started with SANDBOX_WORKER_FLAG by the sandbox host)."""
    # The worker's audit hook lets it read only below sys.prefix & co. In a bundle, modules imported lazily
    # (a cell's `import json`) are read from the archive appended to the executable, which lies outside
    # sys.prefix (`_internal`): widen exec_prefix, the "platform-dependent files" prefix, to the whole bundle.
    if is_frozen():
        sys.exec_prefix = str(bundle_root())
    from rlm_desktop.sandbox import worker

    return worker.main()


def restore_library_path() -> None:
    """Give child processes (tesseract, xdg-open, bwrap) the library path the user had, not the bundle's.

    The bootloader points LD_LIBRARY_PATH at the bundle and keeps the original in LD_LIBRARY_PATH_ORIG; system
    programs started with the bundle's libraries can crash. The running process is not affected: the dynamic
    loader read the variable at start-up.
    """
    if not is_frozen() or not sys.platform.startswith("linux"):
        return
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)
