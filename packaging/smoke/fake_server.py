"""The smoke test's scripted model: tests/fake_openai.py on 127.0.0.1, serving until SIGTERM.

The root model runs two ```repl``` cells in the bundle's sandbox worker: the first searches and imports standard
modules the app itself never loads (read lazily from the bundle's archive under the worker's audit hook); the
second asks the sub model, quotes the PDF and FINALs an answer that names the worker's executable, so the smoke
script can check it ran from the bundle. Usage: fake_server.py PORT_FILE (the base URL is written there).
"""

import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from rlm_script import Script, repl  # noqa: E402
from sample_case import PDF_PHRASE  # noqa: E402

from tests.fake_openai import FakeOpenAIServer  # noqa: E402

FIRST = """
import os, sys, statistics, difflib
hits = search('Rotterdam')
print([(h.doc_id, h.snippet(40)) for h in hits])
print('median hit length', statistics.median([h.end - h.start for h in hits]))
"""
SECOND = f"""
pdf = context.by_id(hits[0].doc_id)
when = llm_query('When did the shipment leave Rotterdam? Text: ' + pdf.text[:2000])
a = quote(pdf.id, {PDF_PHRASE!r})
worker = f"worker={{sys.executable}} frozen={{getattr(sys, 'frozen', False)}} uid={{os.getuid()}}"
FINAL(f"The shipment left Rotterdam on {{when}} {{a}}. [{{worker}}]")
"""


def main() -> int:
    script = Script([repl(FIRST), repl(SECOND)], sub=lambda prompt: "4 May 2023")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with FakeOpenAIServer(script) as server:
        Path(sys.argv[1]).write_text(server.base_url, encoding="utf-8")
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
