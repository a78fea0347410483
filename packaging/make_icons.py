"""Regenerate the app icons (PNG sizes, Windows .ico, macOS .icns) from resources/icons/rlm-desktop.svg.

Sizes up to SMALL_MAX come from rlm-desktop-small.svg, the same picture drawn on a 16 px grid.

Usage: .venv/bin/python packaging/make_icons.py   (renders with Qt's SVG renderer, else with PyMuPDF)
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SVG = ICONS / "rlm-desktop.svg"
SMALL_SVG = ICONS / "rlm-desktop-small.svg"
SMALL_MAX = 32
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# .icns entry types holding PNG data, by pixel size (the @2x types reuse the larger renderings)
ICNS_TYPES = (
    (b"icp4", 16),
    (b"ic11", 32),
    (b"icp5", 32),
    (b"ic12", 64),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic13", 256),
    (b"ic08", 256),
    (b"ic14", 512),
    (b"ic09", 512),
    (b"ic10", 1024),
)


def render_qt(svg: Path, sizes: set[int]) -> dict[int, bytes]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - QPainter needs one
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"Qt cannot read {svg}")
    out = {}
    for size in sorted(sizes):
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        out[size] = bytes(data.data())
    return out


def render_mupdf(svg: Path, sizes: set[int]) -> dict[int, bytes]:
    import pymupdf

    page = pymupdf.open(str(svg))[0]
    out = {}
    for size in sorted(sizes):
        zoom = size / page.rect.width
        out[size] = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=True).tobytes("png")
    return out


def ico(pngs: dict[int, bytes], sizes: tuple[int, ...]) -> bytes:
    """A Windows .ico whose entries are PNG images (accepted since Windows Vista)."""
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        data = pngs[size]
        side = 0 if size >= 256 else size  # 0 means 256
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return header + entries + blobs


def icns(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns whose entries are PNG images (accepted since OS X 10.7)."""
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> int:
    sizes = set(PNG_SIZES) | set(ICO_SIZES) | {size for _, size in ICNS_TYPES}
    small = {s for s in sizes if s <= SMALL_MAX}
    try:
        pngs = render_qt(SVG, sizes - small) | render_qt(SMALL_SVG, small)
    except ImportError:
        pngs = render_mupdf(SVG, sizes - small) | render_mupdf(SMALL_SVG, small)
    for size in PNG_SIZES:
        (ICONS / f"rlm-desktop-{size}.png").write_bytes(pngs[size])
    (ICONS / "rlm-desktop.ico").write_bytes(ico(pngs, ICO_SIZES))
    (ICONS / "rlm-desktop.icns").write_bytes(icns(pngs))
    print(f"wrote {len(PNG_SIZES)} PNGs, rlm-desktop.ico and rlm-desktop.icns in {ICONS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
