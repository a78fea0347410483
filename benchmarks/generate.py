"""Generate a synthetic, seeded case folder (PDFs, mboxes with threads and attachments, DOCX with tables).

At --scale 1.0 it holds about 10M tokens (40M characters of text, 1 token ~ 4 characters). A few unique
"needle" phrases are planted at known places so search and grep results can be checked, not only timed.

    python -m benchmarks.generate --scale 0.01 --out /tmp/bench-data
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from benchmarks.docxwrite import Block, write_docx
from rlm_desktop.bench.pdfwrite import KEEP, layout_pages, write_pdf
from rlm_desktop.bench.prose import LAST_NAMES, Prose, wrap

FULL_SCALE_CHARS = 40_000_000  # 10M tokens
PDF_SHARE, EMAIL_SHARE, DOCX_SHARE = 0.60, 0.30, 0.10
# A real breach dump is mostly mail: the 100M-token benchmark (`--scale 100m`) uses this mix.
MIXES = {"default": (PDF_SHARE, EMAIL_SHARE, DOCX_SHARE), "mail": (0.20, 0.72, 0.08)}
CHARS_PER_PAGE = 3100  # what one full page of the PDF layout holds, roughly
PLANNED_CHARS_PER_PAGE = 2650  # measured average, last pages being part-filled: sizes the PDF budget
MBOXES = 4
MIN_MESSAGES_PER_MBOX = 12  # the needle messages sit at fixed early positions
PDF_BATCH = 40
GENERATOR_VERSION = 2  # bump when the output changes, so cached data is regenerated


@dataclass
class Needle:
    """A unique phrase planted once; `code` also matches the regex NDL-\\d{4}-[A-Z]{3}."""

    phrase: str  # three invented words: query it as an FTS phrase
    code: str
    host: str  # what kind of place it sits in
    file: str = ""  # relative to the data folder
    where: str = ""

    @property
    def text(self) -> str:
        return f"{self.phrase} {self.code}"


@dataclass
class PdfSpec:
    name: str
    pages: int
    columns: int
    seed: str
    needles: list[Needle] = field(default_factory=list)


@dataclass
class DocxSpec:
    name: str
    paragraphs: int
    tables: int
    seed: str
    needles: list[Needle] = field(default_factory=list)


@dataclass
class MboxSpec:
    name: str
    budget_chars: int
    seed: str
    needles: dict[int, Needle] = field(default_factory=dict)  # message ordinal -> needle


def make_needles(seed: int) -> list[Needle]:
    rng = random.Random(f"{seed}:needles")
    hosts = [
        "pdf single-column page 2",
        "pdf two-column page 2",
        "pdf last page of the longest pdf",
        "email body",
        "email pdf attachment",
        "email docx attachment",
        "docx table cell",
        "docx last paragraph",
    ]
    needles, seen = [], set()
    for host in hosts:
        while True:  # q, x and j never occur in the synthetic vocabulary, so these words are unique
            words = [
                rng.choice("qxj") + rng.choice("aeiou") + rng.choice("qxjvz") + rng.choice("aeiou") + "x"
                for _ in range(3)
            ]
            code = f"NDL-{rng.randrange(1000, 10000)}-{''.join(rng.choice('ABCDEFGHKMNPRSTUVWXYZ') for _ in range(3))}"
            if words[0] not in seen:
                seen.add(words[0])
                break
        needles.append(Needle(" ".join(words), code, host))
    return needles


def _pages_for(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.70:
        return rng.randint(1, 2)
    if roll < 0.90:
        return rng.randint(3, 8)
    if roll < 0.98:
        return rng.randint(9, 25)
    return rng.randint(26, 60)


def plan(
    scale: float, seed: int, mix: str = "default"
) -> tuple[list[PdfSpec], list[DocxSpec], list[MboxSpec], list[Needle]]:
    """Decide every file's name, size and seed; cheap, so it runs in the parent."""
    pdf_share, email_share, docx_share = MIXES[mix]
    rng = random.Random(f"{seed}:plan")
    total = FULL_SCALE_CHARS * scale
    needles = make_needles(seed)
    by_host = {n.host: n for n in needles}

    pdfs: list[PdfSpec] = []
    chars = 0.0
    while chars < total * pdf_share or len(pdfs) < 3:
        index = len(pdfs)
        pages = _pages_for(rng)
        columns = 2 if rng.random() < 0.25 else 1
        if index == 0:
            pages, columns = 3, 1
        elif index == 1:
            pages, columns = 3, 2
        folder = f"pdf/{index // 500:03d}"
        pdfs.append(PdfSpec(f"{folder}/report-{index:05d}.pdf", pages, columns, f"{seed}:pdf:{index}"))
        chars += pages * PLANNED_CHARS_PER_PAGE
    pdfs[0].needles.append(by_host["pdf single-column page 2"])
    pdfs[1].needles.append(by_host["pdf two-column page 2"])
    longest = max(pdfs[2:], key=lambda spec: spec.pages)
    longest.needles.append(by_host["pdf last page of the longest pdf"])

    docxs: list[DocxSpec] = []
    chars = 0.0
    while chars < total * docx_share or len(docxs) < 2:
        index = len(docxs)
        paragraphs, tables = rng.randint(5, 40), rng.randint(1, 4)
        docxs.append(DocxSpec(f"docx/memo-{index:04d}.docx", paragraphs, tables, f"{seed}:docx:{index}"))
        chars += paragraphs * 270 + tables * 12 * 5 * 14
    docxs[0].needles.append(by_host["docx table cell"])
    docxs[-1].needles.append(by_host["docx last paragraph"])

    mailboxes = MBOXES if scale <= 1 else int(MBOXES * scale)  # mailboxes of a few hundred MB, like exports
    mboxes = [
        MboxSpec(f"mbox/mailbox-{i}.mbox", int(total * email_share / mailboxes), f"{seed}:mbox:{i}")
        for i in range(mailboxes)
    ]
    mboxes[0].needles[7] = by_host["email body"]
    mboxes[1 % mailboxes].needles[5] = by_host["email pdf attachment"]
    mboxes[2 % mailboxes].needles[9] = by_host["email docx attachment"]
    for spec in pdfs:
        for needle in spec.needles:
            needle.file = spec.name
    for spec in docxs:
        for needle in spec.needles:
            needle.file = spec.name
    for spec in mboxes:
        for ordinal, needle in spec.needles.items():
            needle.file, needle.where = spec.name, f"message #{ordinal} generated"
    return pdfs, docxs, mboxes, needles


# ---- PDFs ---------------------------------------------------------------------------------------------


def _keep(text: str) -> str:
    return text.replace(" ", KEEP)


def pdf_bytes(prose: Prose, pages: int, columns: int, needles: list[Needle]) -> tuple[bytes, int, int]:
    """A PDF of about `pages` pages; returns (bytes, pages written, characters of text)."""
    rng = prose.rng
    target = pages * CHARS_PER_PAGE * (0.95 if columns == 1 else 0.9) - rng.randrange(0, CHARS_PER_PAGE // 2)
    paragraphs: list[tuple[str, bool]] = [(prose.title(), True)]
    chars = 0
    while chars < target:
        if rng.random() < 0.08:
            paragraphs.append((prose.title(), True))
        text = prose.paragraph()
        paragraphs.append((text, False))
        chars += len(text)
    for needle in needles:
        sentence = f"{prose.sentence()} {_keep(needle.text)} {prose.sentence()}"
        if "last page" in needle.host:
            paragraphs.append((sentence, False))
        else:  # page 2 of 3: about half way through the text
            paragraphs.insert(len(paragraphs) // 2, (sentence, False))
    laid_out = layout_pages(paragraphs, columns)
    year = rng.randrange(2014, 2024)
    data = write_pdf(laid_out, paragraphs[0][0], prose.person(), f"D:{year}0{rng.randrange(1, 10)}15093000Z")
    return data, len(laid_out), sum(len(t) for t, _ in paragraphs)


def _gen_pdfs(data_dir: str, specs: list[PdfSpec]) -> dict[str, int]:
    stats = {"files": 0, "pages": 0, "chars": 0, "bytes": 0}
    for spec in specs:
        data, pages, chars = pdf_bytes(
            Prose(random.Random(spec.seed)), spec.pages, spec.columns, spec.needles
        )
        path = Path(data_dir, spec.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stats["files"] += 1
        stats["pages"] += pages
        stats["chars"] += chars
        stats["bytes"] += len(data)
    return stats


# ---- DOCX ---------------------------------------------------------------------------------------------


def docx_bytes(prose: Prose, paragraphs: int, tables: int, needles: list[Needle]) -> tuple[bytes, int]:
    rng = prose.rng
    title = prose.title()
    blocks: list[Block] = [("h1", title)]
    chars = len(title)
    table_at = sorted(rng.sample(range(1, paragraphs + 1), min(tables, paragraphs)))
    for index in range(1, paragraphs + 1):
        if rng.random() < 0.1:
            blocks.append(("h1", prose.title()))
        text = prose.paragraph(rng.randrange(1, 6))
        blocks.append(("p", text))
        chars += len(text)
        if index in table_at:
            rows = [["Date", "Party", "Amount", "Reference", "Note"]]
            for _ in range(rng.randrange(4, 20)):
                rows.append(
                    [
                        prose.date(),
                        prose.person(),
                        prose.amount(),
                        f"REF-{rng.randrange(10**5, 10**6)}",
                        " ".join(prose.words(rng.randrange(2, 7))),
                    ]
                )
            blocks.append(("table", rows))
            chars += sum(len(cell) + 3 for row in rows for cell in row)
    for needle in needles:
        if "table" in needle.host:
            table = next((b for b in blocks if b[0] == "table"), None)
            if table is None:
                table = ("table", [["Date", "Party", "Amount", "Reference", "Note"]])
                blocks.append(table)
            table[1].append([prose.date(), prose.person(), prose.amount(), "REF-000001", needle.text])  # type: ignore[union-attr]
        else:
            blocks.append(("p", f"{prose.sentence()} {needle.text} {prose.sentence()}"))
        chars += len(needle.text) + 100
    created = f"{rng.randrange(2014, 2024)}-0{rng.randrange(1, 10)}-1{rng.randrange(10)}T10:00:00Z"
    return write_docx(blocks, title, prose.person(), created), chars


def _gen_docxs(data_dir: str, specs: list[DocxSpec]) -> dict[str, int]:
    stats = {"files": 0, "chars": 0, "bytes": 0}
    for spec in specs:
        data, chars = docx_bytes(Prose(random.Random(spec.seed)), spec.paragraphs, spec.tables, spec.needles)
        path = Path(data_dir, spec.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stats["files"] += 1
        stats["chars"] += chars
        stats["bytes"] += len(data)
    return stats


# ---- mail ---------------------------------------------------------------------------------------------


@dataclass
class _Message:
    date: datetime
    raw: str
    sender: str
    message_id: str
    chars: int
    attachments: int


def _address(prose: Prose) -> tuple[str, str]:
    name = prose.person()
    first, last = name.split(" ", 1)
    domain = prose.rng.choice(LAST_NAMES).lower()
    return name, f"{first.lower()}.{last.lower()}@{domain}-corp.example"


def _body(prose: Prose, needle: Needle | None) -> str:
    rng = prose.rng
    roll = rng.random()
    if roll < 0.7:
        paragraphs = [prose.paragraph(rng.randrange(1, 3))]
    elif roll < 0.96:
        paragraphs = [prose.paragraph(rng.randrange(1, 4)) for _ in range(rng.randrange(1, 3))]
    else:
        paragraphs = [prose.paragraph() for _ in range(rng.randrange(3, 6))]
    if needle is not None and "body" in needle.host:
        paragraphs.append(f"{prose.sentence()} {_keep(needle.text)} {prose.sentence()}")
    lines: list[str] = []
    for paragraph in paragraphs:
        lines.extend(line.replace(KEEP, " ") for line in wrap(paragraph, 72))
        lines.append("")
    return "\n".join(lines)


def _quote(parent_body: str) -> str:
    # only the first two lines: a needle in a later paragraph must never be copied into a reply
    head = [line for line in parent_body.split("\n")[:2] if line]
    return "\n".join("> " + line for line in head)


def _attachment(prose: Prose, needle: Needle | None, kind: str) -> tuple[str, str, bytes, int]:
    rng = prose.rng
    needles = [needle] if needle is not None else []
    if kind == "pdf":
        data, _, chars = pdf_bytes(prose, rng.randint(1, 2), 1, [n for n in needles if "pdf" in n.host])
        return f"scan-{rng.randrange(10**6):06d}.pdf", "application/pdf", data, chars
    data, chars = docx_bytes(prose, rng.randint(3, 10), 1, [n for n in needles if "docx" in n.host])
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    return f"draft-{rng.randrange(10**6):06d}.docx", mime, data, chars


def _mbox_escape(body: str) -> str:
    # mboxrd-style: a body line that starts like a From_ line is quoted, or it would split the message
    return "\n".join(">" + line if line.startswith("From ") else line for line in body.split("\n"))


def _message(
    prose: Prose,
    ordinal: int,
    date: datetime,
    subject: str,
    parent: _Message | None,
    references: list[str],
    parent_body: str | None,
    needle: Needle | None,
) -> tuple[_Message, str]:
    rng = prose.rng
    (from_name, from_addr), (to_name, to_addr) = _address(prose), _address(prose)
    message_id = f"<{rng.getrandbits(64):016x}.{ordinal}@mail.example>"
    body = _body(prose, needle)
    if parent_body:
        body = f"{body}\nOn {format_datetime(parent.date)}, {parent.sender} wrote:\n{_quote(parent_body)}\n"  # type: ignore[union-attr]
    headers = [
        f"From: {from_name} <{from_addr}>",
        f"To: {to_name} <{to_addr}>",
    ]
    if rng.random() < 0.3:
        cc_name, cc_addr = _address(prose)
        headers.append(f"Cc: {cc_name} <{cc_addr}>")
    headers += [f"Subject: {subject}", f"Date: {format_datetime(date)}", f"Message-ID: {message_id}"]
    if parent is not None:
        headers.append(f"In-Reply-To: {parent.message_id}")
        headers.append("References: " + " ".join(references[-10:]))
    headers.append("MIME-Version: 1.0")
    attach_kind = None
    if needle is not None and "attachment" in needle.host:
        attach_kind = "pdf" if "pdf" in needle.host else "docx"
    elif rng.random() < 0.03:
        attach_kind = "pdf" if rng.random() < 0.6 else "docx"
    chars = len(body) + 200
    text_part = f'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n{body}'
    if attach_kind is None and rng.random() < 0.1:
        html = "".join(f"<p>{p}</p>" for p in body.split("\n\n") if p)
        boundary = f"alt-{rng.getrandbits(48):012x}"
        content = (
            f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n--{boundary}\n{text_part}\n'
            f'--{boundary}\nContent-Type: text/html; charset="utf-8"\n\n<html><body>{html}</body></html>\n'
            f"--{boundary}--\n"
        )
    elif attach_kind is not None:
        filename, mime, data, attached_chars = _attachment(prose, needle, attach_kind)
        chars += attached_chars
        encoded = base64.encodebytes(data).decode("ascii")
        boundary = f"mix-{rng.getrandbits(48):012x}"
        content = (
            f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n--{boundary}\n{text_part}\n'
            f'--{boundary}\nContent-Type: {mime}; name="{filename}"\nContent-Transfer-Encoding: base64\n'
            f'Content-Disposition: attachment; filename="{filename}"\n\n{encoded}\n--{boundary}--\n'
        )
    else:
        content = text_part
    raw = "\n".join(headers) + "\n" + _mbox_escape(content)
    return _Message(date, raw, from_addr, message_id, chars, int(attach_kind is not None)), body


def _gen_mbox(data_dir: str, spec: MboxSpec) -> dict[str, int]:
    prose = Prose(random.Random(spec.seed))
    rng = prose.rng
    messages: list[_Message] = []
    chars = 0
    start = datetime(2018, 1, 1, tzinfo=UTC)
    while chars < spec.budget_chars or len(messages) < MIN_MESSAGES_PER_MBOX:
        # a thread: a root and replies, each replying to the previous or to an earlier message
        subject = " ".join(prose.words(rng.randrange(2, 7))).capitalize()
        date = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 365 * 4))
        thread: list[tuple[_Message, str]] = []
        references: list[str] = []
        for position in range(min(1 + int(rng.expovariate(0.5)), 12)):
            parent, parent_body = thread[rng.randrange(len(thread))] if thread else (None, None)
            refs = references if parent is None else references + [parent.message_id]
            message, body = _message(
                prose,
                len(messages),
                date,
                subject if parent is None else f"Re: {subject}",
                parent,
                refs,
                parent_body,
                spec.needles.get(len(messages)),
            )
            if position == 0:
                references = [message.message_id]
            thread.append((message, body))
            messages.append(message)
            chars += message.chars
            date += timedelta(minutes=rng.randrange(5, 60 * 48))
    messages.sort(key=lambda m: m.date)  # a mailbox is in arrival order: threads interleave
    path = Path(data_dir, spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for message in messages:
            stamp = message.date.strftime("%a %b %d %H:%M:%S %Y")
            fh.write(f"From {message.sender} {stamp}\n{message.raw}\n\n")
    return {
        "files": 1,
        "messages": len(messages),
        "attachments": sum(m.attachments for m in messages),
        "chars": chars,
        "bytes": path.stat().st_size,
    }


# ---- orchestration ------------------------------------------------------------------------------------


def _run_task(task: tuple[str, str, object]) -> tuple[str, dict[str, int]]:
    kind, data_dir, payload = task
    if kind == "pdf":
        return kind, _gen_pdfs(data_dir, payload)  # type: ignore[arg-type]
    if kind == "docx":
        return kind, _gen_docxs(data_dir, payload)  # type: ignore[arg-type]
    return kind, _gen_mbox(data_dir, payload)  # type: ignore[arg-type]


def generate(out: Path, scale: float = 1.0, seed: int = 1, jobs: int = 2, mix: str = "default") -> dict:
    """Write the case folder under `out/data` and `out/manifest.json`; return the manifest."""
    started = time.perf_counter()
    data_dir = out / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    pdfs, docxs, mboxes, needles = plan(scale, seed, mix)
    tasks: list[tuple[str, str, object]] = [("mbox", str(data_dir), spec) for spec in mboxes]
    tasks += [("pdf", str(data_dir), pdfs[i : i + PDF_BATCH]) for i in range(0, len(pdfs), PDF_BATCH)]
    tasks += [("docx", str(data_dir), docxs[i : i + PDF_BATCH]) for i in range(0, len(docxs), PDF_BATCH)]
    totals: dict[str, dict[str, int]] = {}
    if jobs > 1:
        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(jobs) as pool:
            results = list(pool.imap_unordered(_run_task, tasks))
    else:
        results = [_run_task(task) for task in tasks]
    for kind, stats in results:
        bucket = totals.setdefault(kind, {})
        for key, value in stats.items():
            bucket[key] = bucket.get(key, 0) + value
    manifest = {
        "version": GENERATOR_VERSION,
        "scale": scale,
        "seed": seed,
        "mix": mix,
        "data_dir": "data",
        "totals": totals,
        "chars_estimate": sum(t["chars"] for t in totals.values()),
        "bytes": sum(t["bytes"] for t in totals.values()),
        "needles": [asdict(n) for n in needles],
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 10M tokens (default)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args(argv)
    manifest = generate(args.out, args.scale, args.seed, args.jobs)
    print(json.dumps({k: v for k, v in manifest.items() if k != "needles"}, indent=2))


if __name__ == "__main__":
    main()
