"""Trim a PyInstaller analysis: Qt plugins and translations the app never loads, and libraries only they need.

Used by rlm-desktop.spec. Kept: the xcb, wayland, offscreen and minimal platforms, the desktop portal theme,
input methods, SVG icons and the common image formats.
"""

from __future__ import annotations

import os
import sys

QT = "PySide6/Qt/"
DROPPED = (
    QT + "translations/",  # the window is in English and installs no Qt translator
    QT + "plugins/egldeviceintegrations/",  # full-screen EGL on embedded boards
    QT + "plugins/generic/",  # raw evdev/TUIO input for kiosks
    QT + "plugins/platforms/libqeglfs.so",
    QT + "plugins/platforms/libqlinuxfb.so",
    QT + "plugins/platforms/libqminimalegl.so",
    QT + "plugins/platforms/libqvkkhrdisplay.so",
    QT + "plugins/platforms/libqvnc.so",
    # loads the system's GTK 3 against bundled cairo/pango copies (a known source of crashes); Qt's own
    # style and the xdg-desktop-portal theme remain
    QT + "plugins/platformthemes/libqgtk3.so",
    QT + "plugins/imageformats/libqtga.so",
    QT + "plugins/imageformats/libqtiff.so",
    QT + "plugins/imageformats/libqwbmp.so",
    QT + "plugins/imageformats/libqwebp.so",
)


def _dropped(dest: str) -> bool:
    return dest.replace(os.sep, "/").startswith(DROPPED)


def _needed(entries: list[tuple[str, str, str]]) -> dict[str, set[str]]:
    """Each collected binary's link-time dependencies, by base name."""
    from PyInstaller.depend.bindepend import get_imports

    needs = {}
    for dest, src, kind in entries:
        if kind in ("BINARY", "EXTENSION") and os.path.isfile(src):
            needs[dest] = {os.path.basename(name) for name, _path in get_imports(src)}
    return needs


def _closure(start: set[str], needs_by_name: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += needs_by_name.get(name, ())
    return seen


def trim(binaries: list, datas: list) -> tuple[list, list, list[str]]:
    """Drop DROPPED files, then the libraries nothing but them links to. Returns (binaries, datas, removed)."""
    dropped_plugins = [e for e in binaries if _dropped(e[0]) and e[2] == "BINARY"]
    removed = [dest for dest, _src, _kind in [*binaries, *datas] if _dropped(dest)]
    binaries = [e for e in binaries if not _dropped(e[0])]
    datas = [e for e in datas if not _dropped(e[0])]
    if not sys.platform.startswith("linux"):
        return binaries, datas, removed
    # A library goes only if a dropped plugin needed it and no kept binary needs it, directly or not.
    needs = _needed([*binaries, *dropped_plugins])
    needs_by_name: dict[str, set[str]] = {}
    for dest, deps in needs.items():
        needs_by_name.setdefault(os.path.basename(dest), set()).update(deps)
    from_dropped = _closure(set().union(*(needs.get(e[0], set()) for e in dropped_plugins)), needs_by_name)
    roots = {os.path.basename(dest) for dest, _src, _kind in binaries} - from_dropped
    still_needed = _closure(roots, needs_by_name)
    orphans = from_dropped - still_needed
    removed += [dest for dest, _src, _kind in binaries if os.path.basename(dest) in orphans]
    binaries = [e for e in binaries if os.path.basename(e[0]) not in orphans]
    datas = [e for e in datas if not (e[2] == "SYMLINK" and os.path.basename(e[0]) in orphans)]
    return binaries, datas, removed
