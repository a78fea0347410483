"""Synthetic task suites modelled on the RLM paper's families, built as real cases (mbox, PDF, text) by seed and size.

Families: `niah` (one needle in mail, PDFs and notes, S-NIAH style), `aggregation` (count invoices over many
documents, OOLONG style), `pairs` (which pairs of people emailed about a topic, OOLONG-Pairs style) and
`multihop` (an email names the shipment, only its attached PDF holds the contract number).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from rlm_desktop.bench.pdfwrite import KEEP, layout_pages, write_pdf
from rlm_desktop.bench.prose import COMPANIES, FIRST_NAMES, LAST_NAMES, Prose

SUITES = {"small": 100_000, "medium": 1_000_000, "large": 10_000_000}  # approximate tokens of text
FAMILIES = ("niah", "aggregation", "pairs", "multihop")
MAX_TASKS = 5  # per family, planted in every corpus; a bench run asks the first N
CHARS_PER_TOKEN = 4
MIN_TOKENS, MAX_TOKENS = 5_000, 50_000_000
INLINE_INGEST_TOKENS = 200_000
GENERATOR_VERSION = 1  # bump when the corpus or tasks change: cached suites are rebuilt

PLACES = ["Harbor Street", "Quarry Lane", "Juniper Court", "Foxglove Road", "Kestrel Yard", "Obsidian Row",
          "Marigold Wharf", "Tamarind Close"]  # fmt: skip
CITIES = ["Lisbon", "Gdansk", "Valparaiso", "Tromso", "Windhoek", "Hobart", "Cebu", "Tangier"]
PROJECTS = ["Zephyr", "Basalt", "Lantern", "Cobalt", "Heron", "Saffron", "Granite", "Mistral"]


@dataclass
class Task:
    """One question with its expected answer and how to score it (see scoring.py)."""

    id: str
    family: str
    question: str
    expected: str | list[str]
    scoring: str  # exact | regex | number | set
    universe: list[str] = field(default_factory=list)  # set scoring: words that make a listed item count

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        return cls(**data)


@dataclass
class Suite:
    """A generated case and its tasks; `case_name` is under <home>/cases, so `show RUN --case` works on its runs."""

    name: str
    seed: int
    tokens: int
    case_name: str
    case_path: Path
    tasks: list[Task]
    documents: int = 0
    chars: int = 0

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "tokens": self.tokens, "case": self.case_name,
                "documents": self.documents, "chars": self.chars}  # fmt: skip


class _Writer:
    """Writes the corpus as it is made (messages straight to the mbox, PDF and text files) and counts its characters."""

    def __init__(self, root: Path, rng: random.Random):
        self.root = root
        self.rng = rng
        self.prose = Prose(rng)
        self.message_count = 0
        self.chars = 0
        self.files = 0
        self.clock = datetime(2023, 1, 2, 8, 0, tzinfo=UTC)
        for sub in ("pdfs", "notes", "invoices", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.mbox = (root / "mail" / "mail.mbox").open("wb")  # streamed: a 10M-token suite never sits in memory

    def _tick(self) -> datetime:
        self.clock += timedelta(minutes=self.rng.randrange(7, 240))
        return self.clock

    def email(self, sender: str, to: str, subject: str, body: str,
              attachments: list[tuple[str, bytes]] = ()) -> None:  # fmt: skip
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, to, subject
        msg["Date"] = format_datetime(self._tick())
        msg["Message-ID"] = f"<bench{self.message_count}.{self.rng.randrange(10**9)}@bench.example>"
        msg.set_content(body)
        for filename, data in attachments:
            msg.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
        if attachments:  # the email package picks a random boundary: fix it so a seed gives the same bytes
            msg.set_boundary(f"==bench-{self.message_count}==")
        self.message_count += 1
        self.mbox.write(b"From bench@bench.example Mon Jan  2 08:00:00 2023\n")
        data = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\nFrom ", b"\n>From ")
        self.mbox.write(data if data.endswith(b"\n") else data + b"\n")
        self.mbox.write(b"\n")
        self.chars += len(body) + len(subject) + 80

    def pdf_bytes(self, title: str, paragraphs: list[str]) -> bytes:
        pages = layout_pages([(title, True), *((p, False) for p in paragraphs)], columns=1)
        return write_pdf(pages, title, "bench", "D:20230101120000Z")

    def pdf(self, folder: str, name: str, title: str, paragraphs: list[str]) -> None:
        (self.root / folder / name).write_bytes(self.pdf_bytes(title, paragraphs))
        self.chars += len(title) + sum(len(p) + 1 for p in paragraphs)
        self.files += 1

    def note(self, name: str, text: str) -> None:
        (self.root / "notes" / name).write_text(text, encoding="utf-8")
        self.chars += len(text)
        self.files += 1

    def filler(self, paragraphs: int) -> list[str]:
        return [self.prose.paragraph() for _ in range(paragraphs)]

    def close(self) -> None:
        self.mbox.close()


def _people(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Distinct (name, address) pairs."""
    names: list[str] = []
    while len(names) < count:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if name not in names and name.split()[0] not in {n.split()[0] for n in names}:
            names.append(name)
    return [(n, n.lower().replace(" ", ".") + "@" + rng.choice(["corp.example", "mail.example"])) for n in names]


def _addr(person: tuple[str, str]) -> str:
    return f"{person[0]} <{person[1]}>"


def _code(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    return f"{rng.choice(letters)}{rng.choice(letters)}-{rng.randrange(1000, 10000)}-{rng.choice(letters)}"


def generate(root: Path, tokens: int, seed: int) -> list[Task]:
    """Write the corpus for `tokens` (about CHARS_PER_TOKEN characters each) under `root`; return its tasks."""
    rng = random.Random(f"bench:{seed}")
    w = _Writer(root, rng)
    try:
        return _generate(w, tokens, seed)
    finally:
        w.close()


def _generate(w: _Writer, tokens: int, seed: int) -> list[Task]:
    rng = w.rng
    people = _people(rng, 16)
    tasks: list[Task] = []
    plant: list[Any] = []  # planted documents, written in a shuffled order among the filler

    # niah: one sentence in an email, a PDF report or a note
    for i, place in enumerate(rng.sample(PLACES, MAX_TASKS)):
        code = _code(rng)
        needle = f"For the record, the access code for the {place} storage unit is {code}."
        tasks.append(Task(f"niah-{i + 1}", "niah", f"What is the access code for the {place} storage unit?",
                          code, "exact"))  # fmt: skip
        plant.append(("needle", i % 3, needle))

    # aggregation: invoices from four vendors, standalone PDFs or attached to an email
    vendors = [f"{c} Supplies" for c in rng.sample(COMPANIES, 4)]
    invoice_count = max(24, tokens // 2500)
    invoices = []
    for n in range(invoice_count):
        vendor = vendors[n % len(vendors)]
        total = rng.randrange(500_00, 50_000_00) / 100
        invoices.append((f"INV-{seed % 1000:03d}-{n + 1:05d}", vendor, total))
    for i in range(MAX_TASKS):
        vendor = vendors[i % len(vendors)]
        threshold = rng.choice([5_000, 10_000, 20_000, 25_000, 30_000, 40_000])
        count = sum(1 for _, v, t in invoices if v == vendor and t > threshold)
        tasks.append(Task(f"aggregation-{i + 1}", "aggregation",
                          f"How many invoices from {vendor} have a total due above ${threshold:,}? "
                          "Answer with the number.", str(count), "number"))  # fmt: skip
    plant.extend(("invoice", inv) for inv in invoices)

    # pairs: three pairs of people emailed each other about each project
    universe = [name for name, _ in people]
    for i, project in enumerate(rng.sample(PROJECTS, MAX_TASKS)):
        pairs: list[tuple[int, int]] = []
        while len(pairs) < 3:
            a, b = sorted(rng.sample(range(len(people)), 2))
            if (a, b) not in pairs:
                pairs.append((a, b))
        expected = [f"{people[a][0]} & {people[b][0]}" for a, b in pairs]
        tasks.append(Task(f"pairs-{i + 1}", "pairs",
                          f"Which pairs of people emailed each other about Project {project}? "
                          "List each pair on its own line as 'Name & Name'.", expected, "set", universe))  # fmt: skip
        for a, b in pairs:
            for _ in range(rng.randrange(1, 3)):
                s, r = (a, b) if rng.random() < 0.5 else (b, a)
                plant.append(("project", people[s], people[r], project))

    # multihop: the email names the shipment; only its attached PDF holds the contract number
    for i, city in enumerate(rng.sample(CITIES, MAX_TASKS)):
        sender, recipient = rng.sample(people, 2)
        number = f"CN-{rng.randrange(10000, 100000)}"
        tasks.append(Task(f"multihop-{i + 1}", "multihop",
                          f"What is the contract number in the PDF attached to {sender[0]}'s email about the "
                          f"{city} shipment?", number, "exact"))  # fmt: skip
        plant.append(("contract", sender, recipient, city, number))

    rng.shuffle(plant)
    target = tokens * CHARS_PER_TOKEN
    # Spread the planted documents evenly through the corpus (by characters written), so answers sit
    # everywhere from the first document to the last, not bunched at one end.
    spacing = target / (len(plant) + 1)
    planted = 0
    while plant or w.chars < target:
        if plant and (w.chars >= spacing * (planted + 1) or w.chars >= target):
            _plant(w, plant.pop(), people)
            planted += 1
        else:
            _filler(w, people)
    return tasks


def _plant(w: _Writer, item: tuple, people: list[tuple[str, str]]) -> None:
    rng, kind = w.rng, item[0]
    if kind == "needle":
        where, needle = item[1], item[2]
        paragraphs = w.filler(rng.randrange(2, 5))
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), needle)
        if where == 0:
            a, b = rng.sample(people, 2)
            w.email(_addr(a), _addr(b), w.prose.title(), "\n\n".join(paragraphs))
        elif where == 1:  # the code and its subject on one PDF line, so the span is one line of the page
            kept = needle.replace(" storage unit is ", " storage" + KEEP + "unit" + KEEP + "is" + KEEP)
            paragraphs[paragraphs.index(needle)] = kept
            w.pdf("pdfs", f"report-{w.files:05d}.pdf", w.prose.title(), paragraphs)
        else:
            w.note(f"note-{w.files:05d}.txt", "\n\n".join(paragraphs) + "\n")
    elif kind == "invoice":
        number, vendor, total = item[1]
        lines = [f"INVOICE {number}", f"Vendor: {vendor}", f"Bill to: {w.prose.company()}",
                 f"Description: {w.prose.sentence()}", f"Total due: ${total:,.2f}"]  # fmt: skip
        if rng.random() < 0.3:
            a, b = rng.sample(people, 2)
            body = f"Please find attached invoice {number}.\n\n{w.prose.paragraph(2)}"
            w.email(f"Accounts <billing@{vendor.split()[0].lower()}.example>", _addr(b), f"Invoice {number}", body,
                    [(f"{number}.pdf", w.pdf_bytes(f"Invoice {number}", lines))])  # fmt: skip
            w.chars += sum(len(line) + 1 for line in lines)
        else:
            w.pdf("invoices", f"{number}.pdf", f"Invoice {number}", lines)
    elif kind == "project":
        sender, recipient, project = item[1], item[2], item[3]
        topic = rng.choice(["timeline", "budget", "next steps", "risks", "vendor shortlist"])
        body = (f"{recipient[0].split()[0]},\n\nAbout Project {project}: {w.prose.paragraph(3)}\n\n"
                f"{sender[0].split()[0]}")  # fmt: skip
        w.email(_addr(sender), _addr(recipient), f"Project {project} {topic}", body)
    elif kind == "contract":
        sender, recipient, city, number = item[1], item[2], item[3], item[4]
        body = (f"{recipient[0].split()[0]},\n\nAttached is the signed contract for the {city} shipment. "
                f"{w.prose.paragraph(2)}\n\n{sender[0].split()[0]}")  # fmt: skip
        contract = [f"Contract number: {number}", *w.filler(2)]
        w.email(_addr(sender), _addr(recipient), f"Signed contract: {city} shipment", body,
                [("contract.pdf", w.pdf_bytes("Supply contract", contract))])  # fmt: skip
        w.chars += sum(len(p) + 1 for p in contract)


def _filler(w: _Writer, people: list[tuple[str, str]]) -> None:
    rng = w.rng
    roll = rng.random()
    if roll < 0.6:
        a, b = rng.sample(people, 2)
        if rng.random() < 0.3:  # mail from outside the roster too
            b = (w.prose.person(), "outside@else.example")
        w.email(_addr(a), _addr(b), w.prose.title(), "\n\n".join(w.filler(rng.randrange(2, 7))))
    elif roll < 0.9:
        w.pdf("pdfs", f"report-{w.files:05d}.pdf", w.prose.title(), w.filler(rng.randrange(6, 30)))
    else:
        w.note(f"note-{w.files:05d}.txt", "\n\n".join(w.filler(rng.randrange(3, 10))) + "\n")


def suite_tokens(name: str, tokens: int | None) -> int:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}: choose from {', '.join(SUITES)}")
    value = tokens if tokens is not None else SUITES[name]
    if not MIN_TOKENS <= value <= MAX_TOKENS:
        raise ValueError(f"--tokens must be from {MIN_TOKENS:,} to {MAX_TOKENS:,}")
    return value


def prepare_suite(home: Path, name: str, seed: int = 1, tokens: int | None = None,
                  progress: Any = None) -> Suite:  # fmt: skip
    """The suite's case, generated and ingested once per (suite, seed, size) and then reused.

    The case is `<home>/cases/bench-<suite>-seed<N>[-<tokens>t].sqlite` (so its runs can be opened and
    exported like any other), its generated files under `<home>/bench/<case name>/files`. A manifest written
    last marks a finished build; anything else found there is rebuilt.
    """
    from rlm_desktop.ingest.pipeline import ingest
    from rlm_desktop.paths import case_path
    from rlm_desktop.store.case import Case

    size = suite_tokens(name, tokens)
    case_name = f"bench-{name}-seed{seed}" + ("" if tokens is None else f"-{size}t")
    path = case_path(home, case_name)
    folder = home / "bench" / case_name
    manifest_path = folder / "manifest.json"
    wanted = {"version": GENERATOR_VERSION, "suite": name, "seed": seed, "tokens": size}
    if manifest_path.exists() and path.exists():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        if all(manifest.get(k) == v for k, v in wanted.items()):
            return Suite(name, seed, size, case_name, path, [Task.from_json(t) for t in manifest["tasks"]],
                         manifest.get("documents", 0), manifest.get("chars", 0))  # fmt: skip
    # A partial or older build: start again from nothing.
    shutil.rmtree(folder, ignore_errors=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    files = folder / "files"
    files.mkdir(parents=True)
    if progress:
        progress(f"generating suite {name!r} (seed {seed}, about {size:,} tokens)")
    tasks = generate(files, size, seed)
    if progress:
        progress(f"ingesting it into case {case_name!r}")
    with Case.open(path) as case:
        # These files are ours, not hostile: a small suite is extracted in this process, since starting the
        # extractor processes would take longer than the extraction; larger ones use them to run in parallel.
        report = ingest(case, [files], jobs=1 if size <= INLINE_INGEST_TOKENS else None)
    if report.failed or report.cancelled:
        raise RuntimeError(f"the generated suite did not ingest cleanly: {report.failed[:3]}")
    with Case.open(path) as case:
        docs = case.documents()
    chars = sum(d.chars for d in docs)
    manifest = {**wanted, "tasks": [t.to_json() for t in tasks], "documents": len(docs), "chars": chars}
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    tmp.replace(manifest_path)
    return Suite(name, seed, size, case_name, path, tasks, len(docs), chars)
