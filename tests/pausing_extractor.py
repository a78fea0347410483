"""An extractor that holds a file's result until the writer has passed on a live member count: proves the
counts cross from the extractor process while the writer waits (the test's progress callback writes the marker)."""

import time
from pathlib import Path

from rlm_desktop.ingest.prepare import prepare_file

HOLD_SECONDS = 20  # only reached when no live count arrived: the test then fails on what it saw


def pausing_prepare(path, hint, size, label):
    prepared = prepare_file(path, hint, size, label)
    marker = Path(path).with_name(Path(path).name + ".seen")
    deadline = time.monotonic() + HOLD_SECONDS
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return prepared
