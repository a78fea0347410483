"""Re-extracting an original at export: the same text as ingest, in a process that is bounded and replaceable."""

from __future__ import annotations

import os
import signal

from builders import make_docx

from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.reextract import Job, Reextractor, job_for
from rlm_desktop.store.case import Case


def test_same_text_a_killed_process_and_a_timeout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_docx(src / "minutes.docx", ["Board minutes", "Approved by Alice."])
    with Case.open(tmp_path / "c.sqlite") as case:
        assert not ingest(case, [src], jobs=1).failed
        (doc,) = case.documents()
        job = job_for(case, doc)
        stored = case.text(doc.id)
    assert isinstance(job, Job)
    with Reextractor() as rx:
        assert rx.check(job, stored).status == "matches"
        assert rx.process is not None
        os.kill(rx.process.pid, signal.SIGKILL)  # a library crashing the process between documents
        killed = rx.check(job, stored)
        assert killed.status == "unavailable" and "extractor process ended" in killed.detail
        assert rx.check(job, stored).status == "matches"  # a fresh process takes the next document
    with Reextractor(timeout_s=0.001) as slow:
        late = slow.check(job, stored)
        assert late.status == "unavailable" and "took longer than" in late.detail
        assert slow.process is None  # ended, not left running
