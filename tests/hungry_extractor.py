"""An extractor that asks for 3 GB on files named hog*: stands in for a decompression bomb no format check saw."""

from pathlib import Path

from rlm_desktop.ingest.prepare import Prepared, prepare_file, reason_for


def hungry_prepare(path, hint, size, label):
    if Path(path).name.startswith("hog"):
        try:
            hog = bytearray(3 * 1024**3)
        except MemoryError as exc:
            return Prepared("", error=reason_for(exc))
        del hog
        return Prepared("", error="allocated 3 GB: the extractor process has no memory limit")
    return prepare_file(path, hint, size, label)
