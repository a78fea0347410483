"""An extractor that kills its own process on files named crash*: stands in for MuPDF dying on a hostile file."""

import os
from pathlib import Path

from rlm_desktop.ingest.prepare import prepare_file


def crashing_prepare(path, hint, size, label):
    if Path(path).name.startswith("crash"):
        os._exit(139)  # what a segfault in a C library looks like to the pool
    return prepare_file(path, hint, size, label)
