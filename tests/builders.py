"""Build real fixture files (PDF, DOCX, email, mbox) inside tests, so no test depends on shipped samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import docx
import pymupdf
from lxml import etree


def make_pdf(path: Path, pages: list[str]) -> Path:
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 770), text, fontsize=11)
    doc.save(path)
    doc.close()
    return path


def pdf_bytes(pages: list[str]) -> bytes:
    doc = pymupdf.open()
    for text in pages:
        doc.new_page().insert_textbox(pymupdf.Rect(72, 72, 540, 770), text, fontsize=11)
    data = doc.tobytes()
    doc.close()
    return data


def make_encrypted_pdf(path: Path, pages: list[str], password: str) -> Path:
    """A PDF that needs `password` to open (AES-256), as a protected report arrives."""
    doc = pymupdf.open(stream=pdf_bytes(pages), filetype="pdf")
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw=password + "-owner")
    doc.close()
    return path


def make_encrypted_docx(path: Path, paragraphs: list[str], password: str) -> Path:
    """A DOCX as Word saves it with "Encrypt with password": an OLE file holding the encrypted package."""
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = path.with_name(path.name + ".plain.docx")
    make_docx(plain, paragraphs)
    with plain.open("rb") as source, path.open("wb") as out:
        OOXMLFile(source).encrypt(password, out)
    plain.unlink()
    return path


def make_docx(path: Path, paragraphs: list[str]) -> Path:
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(path)
    return path


def make_email(
    subject: str,
    body: str,
    *,
    sender: str = "Alice Example <alice@example.org>",
    to: str = "Bob Example <bob@example.org>",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    date: datetime | None = None,
    attachments: list[tuple[str, bytes, str]] = (),
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2024, 3, 1, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="example.org")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    for filename, data, mime in attachments:
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def make_mbox(path: Path, count: int, *, start: datetime | None = None, body_lines: int = 3) -> list[str]:
    """Write `count` messages to an mbox; returns their Message-IDs in order."""
    start = start or datetime(2024, 1, 1, tzinfo=UTC)
    ids = []
    with path.open("wb") as fh:
        for i in range(count):
            mid = f"<msg{i}@example.org>"
            ids.append(mid)
            body = "\n".join(
                f"Message {i} line {j}: quarterly figures and payments." for j in range(body_lines)
            )
            msg = make_email(f"Report {i}", body, message_id=mid, date=start + timedelta(minutes=i))
            fh.write(b"From alice@example.org Mon Jan  1 00:00:00 2024\n")
            fh.write(msg.as_bytes().replace(b"\r\n", b"\n"))
            fh.write(b"\n")
    return ids


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_ANNA = 'w:author="Anna Berg" w:date="2024-03-05T09:30:00Z"'
_BEN = 'w:author="Ben Ode" w:date="2024-03-06T14:00:00Z"'


def make_revised_docx(path: Path) -> Path:
    """A memo edited with Track Changes on, as Word writes it: w:ins and w:del around runs."""
    document = docx.Document()
    document.add_paragraph("Board memo")
    body = document.element.body
    paragraphs = [
        '<w:r><w:t xml:space="preserve">The transfer of </w:t></w:r>'
        f'<w:del w:id="1" {_ANNA}><w:r><w:delText>EUR 40,000</w:delText></w:r></w:del>'
        f'<w:ins w:id="2" {_ANNA}><w:r><w:t>EUR 400,000</w:t></w:r></w:ins>'
        '<w:r><w:t xml:space="preserve"> to Zurich was approved</w:t></w:r>'
        f'<w:ins w:id="3" {_BEN}><w:r><w:t xml:space="preserve"> by the chair</w:t></w:r></w:ins>'
        "<w:r><w:t>.</w:t></w:r>",
        # a whole sentence deleted: its paragraph is empty now, the deletion marks where it stood
        f'<w:del w:id="4" {_BEN}><w:r><w:delText>Nobody objected.</w:delText></w:r></w:del>',
        "<w:r><w:t>Signed, the secretary.</w:t></w:r>",
    ]
    anchor = body[-1]  # the section properties stay last
    for inner in paragraphs:
        anchor.addprevious(etree.fromstring(f'<w:p xmlns:w="{_W}">{inner}</w:p>'))
    document.save(path)
    return path


REVISED_DOCX_TEXT = (
    "Board memo\nThe transfer of EUR 400,000 to Zurich was approved by the chair.\nSigned, the secretary."
)
