"""Regenerate the smoke test's documents (packaging/smoke/documents/) from the tests' sample case.

Usage: .venv/bin/python packaging/smoke/make_documents.py   (the files are committed; run only to change them)
"""

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sample_case import write_documents  # noqa: E402

target = Path(__file__).resolve().parent / "documents"
shutil.rmtree(target, ignore_errors=True)
write_documents(target)
print("\n".join(sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())))
