"""Word 97-2003 .doc files through antiword, else LibreOffice headless, when either is on this machine; else a
reason naming what to install. Both run as child processes with a time limit, on a private copy of the file."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rlm_desktop.ingest.extracted import Extracted, ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import normalise_newlines

TIMEOUT_SECONDS = 120
INSTALL_HINT = (
    "Word 97-2003 .doc files are read with antiword or LibreOffice, and neither is installed: "
    "install antiword (Debian/Ubuntu: apt install antiword) or LibreOffice, or save the file as .docx"
)


def _run(argv: list[str], cwd: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env["HOME"] = cwd  # LibreOffice writes a profile there: keep it in the scratch folder
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TIMEOUT_SECONDS, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ExtractionError(f"{Path(argv[0]).name} took more than {TIMEOUT_SECONDS} s on this file; not read") from exc


def extract_doc(source: Source) -> Extracted:
    """A Word 97-2003 document as text (kind "doc")."""
    antiword, soffice = shutil.which("antiword"), shutil.which("soffice") or shutil.which("libreoffice")
    if not antiword and not soffice:
        raise UnsupportedFormat(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="rlm-doc-") as scratch:
        copy = Path(scratch) / "document.doc"
        copy.write_bytes(source.read_bytes())
        if antiword:
            done = _run([antiword, "-m", "UTF-8.txt", "-w", "0", str(copy)], scratch)
            if done.returncode == 0:
                text, tool = done.stdout.decode("utf-8", "replace"), "antiword"
            else:
                reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
                if not soffice:
                    detail = reason[-1] if reason else f"exit code {done.returncode}"
                    if "encrypt" in detail.lower() or "password" in detail.lower():
                        raise ExtractionError("the .doc file is encrypted (password-protected); not read")
                    raise ExtractionError(f"antiword could not read this .doc file: {detail}")
                text = ""
        if not antiword or (antiword and not text):
            done = _run([soffice, "--headless", "--norestore", "--convert-to", "txt:Text (encoded):UTF8",
                         "--outdir", scratch, str(copy)], scratch)  # fmt: skip
            out = Path(scratch) / "document.txt"
            if not out.exists():
                detail = done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
                raise ExtractionError(f"LibreOffice could not convert this .doc file: {detail[:300]}")
            text, tool = out.read_bytes().decode("utf-8-sig", "replace"), "libreoffice"
    text = normalise_newlines(text).strip("\n") + "\n"
    return Extracted(kind="doc", title=source.name.rsplit("/", 1)[-1], text=text, meta={"format": "doc", "reader": tool})
