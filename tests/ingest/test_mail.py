"""extract_email on messages built with the stdlib: structure, charsets, headers, attachments, damage."""

from __future__ import annotations

import base64
import codecs
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser

from rlm_desktop.ingest.mail import extract_email, normalise_subject
from rlm_desktop.ingest.source import Source

PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n\x00\xff\xfe binary tail"


def _extract(message: EmailMessage | MIMEMultipart | MIMEText | bytes, name: str = "m.eml"):
    data = message if isinstance(message, bytes) else message.as_bytes()
    return extract_email(Source(name=name, data=data))


def _simple_headers(message, subject: str = "Quarterly numbers") -> None:
    message["From"] = "Ann Example <ann@example.org>"
    message["To"] = "Bob <bob@example.org>, carol@example.org"
    message["Cc"] = "Dan <dan@example.org>"
    message["Date"] = "Tue, 04 Mar 2025 09:15:00 +0100"
    message["Subject"] = subject
    message["Message-ID"] = "<own@example.org>"


def test_alternative_prefers_plain_and_builds_header_block() -> None:
    message = MIMEMultipart("alternative")
    _simple_headers(message)
    message.attach(MIMEText("Plain body line.\n", "plain", "utf-8"))
    message.attach(MIMEText("<p>HTML <b>body</b></p>", "html", "utf-8"))
    result = _extract(message)
    assert result.kind == "email"
    assert result.title == "Quarterly numbers"
    assert result.text == (
        "From: Ann Example <ann@example.org>\n"
        "To: Bob <bob@example.org>, carol@example.org\n"
        "Cc: Dan <dan@example.org>\n"
        "Date: Tue, 04 Mar 2025 09:15:00 +0100\n"
        "Subject: Quarterly numbers\n\n"
        "Plain body line.\n"
    )
    assert "HTML" not in result.text
    assert result.children == []  # the unchosen HTML rendering is not an attachment
    meta = result.meta
    assert meta["from"] == ["Ann Example <ann@example.org>"]
    assert meta["to"] == ["Bob <bob@example.org>", "carol@example.org"]
    assert meta["cc"] == ["Dan <dan@example.org>"]
    assert meta["bcc"] == []
    assert meta["date"] == "2025-03-04T09:15:00+01:00"
    assert meta["date_raw"] == "Tue, 04 Mar 2025 09:15:00 +0100"
    assert meta["message_id"] == "<own@example.org>"
    assert meta["thread_key"] == "<own@example.org>"
    assert meta["charsets"] == ["utf-8"]
    assert meta["charset_problems"] == []
    assert result.warnings == []


def test_html_only_body_is_converted_to_text() -> None:
    message = MIMEText(
        "<html><head><style>p{}</style></head><body><p>Hello &amp; welcome</p>"
        "<ul><li>one</li><li>two</li></ul></body></html>",
        "html",
        "utf-8",
    )
    _simple_headers(message)
    result = _extract(message)
    body = result.text.split("\n\n", 1)[1]
    assert body == "Hello & welcome\n\n- one\n- two\n"


def test_threading_fields_and_normalised_subject() -> None:
    message = EmailMessage()
    _simple_headers(message, subject="AW: Re: [proj-list] Fwd: Budget   Review")
    message["In-Reply-To"] = "<parent@example.org>"
    message["References"] = "<root@example.org> <parent@example.org>"
    message.set_content("reply")
    meta = _extract(message).meta
    assert meta["references"] == ["<root@example.org>", "<parent@example.org>"]
    assert meta["in_reply_to"] == "<parent@example.org>"
    assert meta["thread_key"] == "<root@example.org>"
    assert meta["subject_norm"] == "budget review"
    assert normalise_subject("SV: WG: TR: Fw: RE[2]: Hello") == "hello"


def _raw_part_message(charset: str, body: bytes, cte: str = "8bit") -> bytes:
    return (
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: charset test\r\n"
        b"Date: Wed, 05 Mar 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        + f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + body
    )


def test_iso_2022_jp_body_and_subject() -> None:
    text = "日本語のテキスト、１２３です。"
    message = MIMEText(text, "plain", "iso-2022-jp")
    _simple_headers(
        message, subject="=?ISO-2022-JP?B?" + base64.b64encode("会議".encode("iso2022_jp")).decode() + "?="
    )
    result = _extract(message)
    assert result.title == "会議"
    assert text in result.text
    assert result.meta["charset_problems"] == []


def test_shift_jis_label_decodes_windows_extensions() -> None:
    body = "丸数字 ① と 髙橋".encode("cp932")  # not valid strict Shift_JIS; every mailer means cp932
    result = _extract(_raw_part_message("Shift_JIS", body))
    assert "丸数字 ① と 髙橋" in result.text
    assert result.meta["charset_problems"] == []


def test_gb2312_label_decodes_gbk_characters() -> None:
    body = "朱镕基 讲话".encode("gbk")  # 镕 is outside GB2312
    result = _extract(_raw_part_message("gb2312", base64.encodebytes(body), cte="base64"))
    assert "朱镕基 讲话" in result.text
    assert result.meta["charsets"] == ["gb2312"]
    assert result.meta["charset_problems"] == []


def test_bogus_charset_falls_back_with_a_recorded_problem() -> None:
    body = "Caf\u00e9 cr\u00e8me \u2013 \u20ac10\n".encode("cp1252")
    result = _extract(_raw_part_message("x-bogus-charset", body))
    assert "Café crème – €10" in result.text
    problems = result.meta["charset_problems"]
    assert problems == ["part 1 declared charset 'x-bogus-charset' could not be decoded; decoded as cp1252"]
    assert problems[0] in result.warnings


def test_utf8_labelled_latin1_is_read_as_utf8() -> None:
    result = _extract(_raw_part_message("iso-8859-1", "naïve café".encode()))
    assert "naïve café" in result.text
    assert "UTF-8" in result.meta["charset_problems"][0]


def test_undecodable_bytes_are_replaced_and_reported() -> None:
    body = b"\xff\xfe\xfa\xfb\x81\x8d\x8f\x90\x9d" * 5
    result = _extract(_raw_part_message("utf-8", body))
    assert "with replacements" in result.meta["charset_problems"][0]


def test_base64_and_quoted_printable_bodies() -> None:
    for cte_body, cte in (
        (base64.encodebytes("Grüße aus Köln\n".encode()), "base64"),
        (
            b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln, a very long line that gets a soft=\r\n break\r\n",
            "quoted-printable",
        ),
    ):
        result = _extract(_raw_part_message("utf-8", cte_body, cte=cte))
        assert "Grüße aus Köln" in result.text, cte
    qp = _extract(_raw_part_message("utf-8", b"soft=\r\n break\r\n", cte="quoted-printable"))
    assert "soft break" in qp.text


def test_rfc2047_headers_and_rfc2231_filename() -> None:
    message = MIMEMultipart("mixed")
    message["From"] = "=?utf-8?q?Bj=C3=B6rk_Gu=C3=B0mundsd=C3=B3ttir?= <bjork@example.is>"
    message["To"] = '"=?iso-8859-1?q?M=FCller=2C_Hans?=" <hans@example.de>'
    message["Subject"] = "=?utf-8?b?" + base64.b64encode("Überweisung für März".encode()).decode() + "?="
    message["Date"] = "Thu, 06 Mar 2025 08:00:00 -0500"
    message.attach(MIMEText("see attachment", "plain", "utf-8"))
    part = MIMEApplication(b"col1,col2\n1,2\n", "octet-stream")
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "Übersicht März.csv"))
    message.attach(part)
    encoded_name = MIMEApplication(b"x", "octet-stream")
    encoded_name.add_header("Content-Disposition", 'attachment; filename="=?utf-8?q?r=C3=A9sum=C3=A9.txt?="')
    message.attach(encoded_name)
    result = _extract(message)
    assert result.meta["from"] == ["Björk Guðmundsdóttir <bjork@example.is>"]
    assert result.meta["to"] == ["Müller, Hans <hans@example.de>"]
    assert result.title == "Überweisung für März"
    assert [child.filename for child in result.children] == ["Übersicht März.csv", "résumé.txt"]
    assert result.children[0].data == b"col1,col2\n1,2\n"
    assert result.meta["date"] == "2025-03-06T08:00:00-05:00"


def test_pdf_attachment_bytes_and_meta() -> None:
    message = MIMEMultipart("mixed")
    _simple_headers(message)
    message.attach(MIMEText("Report attached.", "plain", "utf-8"))
    pdf = MIMEApplication(PDF_BYTES, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename="report.pdf")
    message.attach(pdf)
    nameless = MIMEApplication(b"\x00\x01\x02", "octet-stream")
    message.attach(nameless)
    result = _extract(message)
    assert [(c.filename, c.content_type, c.origin) for c in result.children] == [
        ("report.pdf", "application/pdf", "attachment 1"),
        ("attachment-2.bin", "application/octet-stream", "attachment 2"),
    ]
    assert result.children[0].data == PDF_BYTES
    assert result.meta["attachments"][0] == {
        "filename": "report.pdf",
        "content_type": "application/pdf",
        "size": len(PDF_BYTES),
    }
    assert "Report attached." in result.text


def test_nested_message_becomes_an_email_blob() -> None:
    inner = MIMEText("Inner body text.", "plain", "utf-8")
    inner["From"] = "inner@example.org"
    inner["Subject"] = "Original / question"
    inner["Date"] = "Mon, 03 Mar 2025 07:00:00 +0000"
    outer = MIMEMultipart("mixed")
    _simple_headers(outer, subject="Fwd: Original / question")
    outer.attach(MIMEText("See below.", "plain", "utf-8"))
    outer.attach(MIMEMessage(inner))
    result = _extract(outer)
    assert "Inner body text." not in result.text
    (child,) = result.children
    assert child.content_type == "message/rfc822"
    assert child.filename == "Original _ question.eml"
    nested = extract_email(Source(name=child.filename, data=child.data))
    assert nested.title == "Original / question"
    assert "Inner body text." in nested.text


def test_inline_image_and_signature_become_blobs() -> None:
    related = MIMEMultipart("related")
    related.attach(MIMEText('<p>Logo: <img src="cid:logo" alt="logo"></p>', "html", "utf-8"))
    image = MIMEImage(b"\x89PNG\r\n\x1a\nfake", "png")
    image.add_header("Content-ID", "<logo>")
    image.add_header("Content-Disposition", "inline")
    related.attach(image)
    signed = MIMEMultipart("signed", protocol="application/pgp-signature", micalg="pgp-sha256")
    _simple_headers(signed)
    signed.attach(related)
    signature = MIMEBase("application", "pgp-signature")
    signature.set_payload("-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n")
    signed.attach(signature)
    result = _extract(signed)
    assert "Logo: logo" in result.text
    assert [(c.filename, c.content_type) for c in result.children] == [
        ("image-1.png", "image/png"),
        ("signature.asc", "application/pgp-signature"),
    ]
    assert result.children[0].data == b"\x89PNG\r\n\x1a\nfake"


def test_digest_parts_are_message_blobs() -> None:
    digest = MIMEMultipart("digest")
    _simple_headers(digest, subject="List digest")
    for number in (1, 2):
        post = MIMEText(f"post {number} body", "plain", "utf-8")
        post["Subject"] = f"Post {number}"
        digest.attach(MIMEMessage(post))
    result = _extract(digest)
    assert [c.filename for c in result.children] == ["Post 1.eml", "Post 2.eml"]
    assert all(c.content_type == "message/rfc822" for c in result.children)
    parsed = BytesParser().parsebytes(result.children[1].data)
    assert parsed["Subject"] == "Post 2"


def test_whole_file_utf16_with_bom() -> None:
    message = EmailMessage()
    _simple_headers(message, subject="Größe")
    message.set_content("Ünïcödé body")
    text = message.as_string()
    for encoding, bom in (("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)):
        result = _extract(bom + text.encode(encoding))
        assert result.title == "Größe"
        assert "Ünïcödé body" in result.text
        assert result.meta["from"] == ["Ann Example <ann@example.org>"]


def test_emlx_wrapper_is_stripped() -> None:
    message = EmailMessage()
    _simple_headers(message, subject="From Apple Mail")
    message.set_content("emlx body")
    raw = message.as_bytes()
    plist = b'<?xml version="1.0"?>\n<plist version="1.0"><dict><key>flags</key><integer>1</integer></dict></plist>\n'
    data = f"{len(raw)}        \n".encode() + raw + plist
    result = extract_email(Source(name="123.emlx", data=data))
    assert result.title == "From Apple Mail"
    assert "emlx body" in result.text
    assert "plist" not in result.text


def test_malformed_headers_do_not_raise() -> None:
    raw = (
        b'From: "unterminated <broken@@example..org\r\n'
        b"To: ,,, <>; group:;\r\n"
        b"Subject: Caf\xe9 =?bogus-charset?q?na=EFve?= \xe2\x80\x93 done\r\n"
        b"Date: Mon, 32 Foo 2025 27:61:00 +9999\r\n"
        b"Message-ID: no-brackets@example.org\r\n"
        b'Content-Type: text/plain; charset="utf-8\r\n'
        b"this line is not a header\r\n"
        b"\r\n"
        b"Body survives.\r\n"
    )
    result = _extract(raw)
    assert result.meta["date"] is None
    assert result.meta["date_raw"] == "Mon, 32 Foo 2025 27:61:00 +9999"
    assert any("Date header could not be understood" in w for w in result.warnings)
    assert "Caf" in result.title and "done" in result.title
    assert result.meta["message_id"] == "no-brackets@example.org"
    assert "Body survives." in result.text or "this line is not a header" in result.text


def test_missing_date_and_subject() -> None:
    result = _extract(b"From: x@example.org\r\n\r\nJust a body.\r\n")
    assert result.meta["date"] is None
    assert result.meta["date_raw"] is None
    assert result.title == "(no subject)"
    assert result.meta["thread_key"] is None
    assert any("no Date header" in w for w in result.warnings)
    assert result.text == "From: x@example.org\n\nJust a body.\n"


def test_iso_date_and_utc_minus_zero() -> None:
    iso = _extract(b"Date: 2025-03-07T10:11:12Z\r\nSubject: s\r\n\r\nb\r\n")
    assert iso.meta["date"] == "2025-03-07T10:11:12+00:00"
    unknown_zone = _extract(b"Date: Fri, 07 Mar 2025 10:11:12 -0000\r\nSubject: s\r\n\r\nb\r\n")
    assert unknown_zone.meta["date"] == "2025-03-07T10:11:12+00:00"


def test_mbox_from_line_is_ignored() -> None:
    raw = b"From sender@example.org Fri Mar  7 10:00:00 2025\nSubject: from mbox\n\nbody\n"
    result = _extract(raw)
    assert result.title == "from mbox"
    assert "From sender@example.org" not in result.text


def test_format_flowed_is_unwrapped() -> None:
    raw = (
        b"Subject: flowed\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n"
        b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
        b"This paragraph was wrapped \r\nby the mailer and should \r\nbe one line.\r\n"
        b" From a stuffed line.\r\n-- \r\nSignature\r\n"
    )
    body = _extract(raw).text.split("\n\n", 1)[1]
    assert body == (
        "This paragraph was wrapped by the mailer and should be one line.\nFrom a stuffed line.\n--\nSignature\n"
    )


def test_obsolete_header_syntax_with_space_before_colon() -> None:
    raw = b"From  : John Doe <jdoe@example.org>\r\nSubject     : Saying Hello\r\n\r\nHi: there\r\n"
    result = _extract(raw)
    assert result.title == "Saying Hello"
    assert result.meta["from"] == ["John Doe <jdoe@example.org>"]
    assert result.text.endswith("\n\nHi: there\n")
