"""The run's answer with clickable citation markers, a status banner and the numbered list of sources."""

from __future__ import annotations

import html
import re
from typing import Any

from PySide6.QtCore import QPoint, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QContextMenuEvent
from PySide6.QtWidgets import QLabel, QMenu, QVBoxLayout, QWidget

from rlm_desktop.gui import theme
from rlm_desktop.gui.answer_markdown import STYLE, answer_html
from rlm_desktop.gui.link_browser import TooltipBrowser

MARKER = re.compile(r"\[c\d+(?:\.\d+)*\]")
EMPTY_TEXT = "Ask a question about the case; the answer appears here with clickable citations."
UNVERIFIED_TIP = "unverified: the quote was not found at these offsets"
UNKNOWN_TIP = "unknown marker: no citation was registered under this name"
LINK = "#1d5fbf"
BANNERS = {
    "running": ("Working on it…", "#e8f0fc", "#1d4f9c"),
    "cancelled": ("Stopped by you", "#f0f0f0", "#444444"),
    "cap_reached": ("Spending cap reached — partial answer", "#fff1dc", "#8a4b00"),
    "limit_reached": ("Limit reached — partial answer", "#fff1dc", "#8a4b00"),
    "failed": ("Failed", "#fde4e4", "#9b1c1c"),
}


def marker_key(marker: str) -> str:
    """'[c3.1]' and 'c3.1' name the same citation; anchors use the bare form."""
    return marker.strip().strip("[]")


class AnswerView(QWidget):
    """Shows one answer; markers like [c1] are links, unverified ones are red with a ⚠, unknown ones red."""

    citation_activated = Signal(object)  # the citation dict (CONTRACTS run record)
    finding_requested = Signal(object)  # "Add to findings" on a citation: its dict

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.warnings: list[str] = []
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.setVisible(False)
        self.browser = _AnswerBrowser(self)
        self.browser.setOpenLinks(False)
        self.browser.setOpenExternalLinks(False)
        self.browser.anchorClicked.connect(self._on_anchor)
        self.browser.document().setDocumentMargin(10)
        self.browser.document().setDefaultStyleSheet(STYLE)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(self.browser, 1)
        self.answer = ""
        self.status = ""
        self._citations: dict[str, dict[str, Any]] = {}
        self.unknown_markers: list[str] = []
        self.clear()

    # ---- public API ----------------------------------------------------------------------------------

    @property
    def citations(self) -> list[dict[str, Any]]:
        return list(self._citations.values())

    def clear(self) -> None:
        """The empty state shown before any run."""
        self.answer, self.status = "", ""
        self._citations = {}
        self.unknown_markers = []
        self.banner.setVisible(False)
        self.browser.setHtml(
            f"<div style='color:{theme.MUTED.name()}'><p>&nbsp;</p>"
            f"<p align='center' style='font-size:large'>{html.escape(EMPTY_TEXT)}</p></div>"
        )

    def set_answer(
        self,
        answer: str,
        citations: list[dict[str, Any]],
        status: str,
        error: str | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        """Show an answer. `status` is the run's (completed, cancelled, cap_reached, limit_reached, failed,
        running); `error` is the record's reason, shown in the banner when the run did not complete;
        `warnings` (no usage reported, weak isolation, ...) are listed under the answer."""
        self.answer, self.status = answer or "", status
        self.warnings = [str(w) for w in warnings or []]
        self._citations = {marker_key(c.get("marker", "")): c for c in citations or []}
        used = [marker_key(m) for m in MARKER.findall(self.answer)]
        self.unknown_markers = list(dict.fromkeys(m for m in used if m not in self._citations))
        self._set_banner(status, error)
        self.browser.setHtml(self._html())

    def activate_citation(self, marker: str) -> bool:
        """Act as if the user clicked this marker ('[c1]' or 'c1'); False when there is no such citation."""
        citation = self._citations.get(marker_key(marker))
        if citation is None:
            return False
        self.citation_activated.emit(citation)
        return True

    # ---- rendering -----------------------------------------------------------------------------------

    def _set_banner(self, status: str, error: str | None) -> None:
        if status == "completed" or status not in BANNERS and not error:
            self.banner.setVisible(False)
            return
        text, background, colour = BANNERS.get(
            status, (status.replace("_", " ").capitalize(), "#f0f0f0", "#333")
        )
        if status == "failed":
            text = f"Failed: {error}" if error else "Failed"
        elif status == "cancelled":  # the user's own Stop: no reason to repeat, and no failure to report
            text += " — the answer so far is below" if self.answer.strip() else " before an answer was written"
        elif error and status != "running":
            text = f"{text}. {error[0].upper()}{error[1:]}".rstrip(".") + "."
        self.banner.setText(text)
        self.banner.setStyleSheet(
            f"QLabel {{ background: {background}; color: {colour}; border: 1px solid {colour};"
            " border-radius: 4px; padding: 6px 8px; font-weight: bold; }"
        )
        self.banner.setVisible(True)

    def _marker_html(self, marker: str) -> str:
        key = marker_key(marker)
        citation = self._citations.get(key)
        if citation is None:
            return f"<span style='color:{theme.UNVERIFIED.name()}'>{html.escape(marker)}</span>"
        if citation.get("verified"):
            return (
                f"<a href='cite:{key}' style='color:{LINK}; text-decoration:none'>{html.escape(marker)}</a>"
            )
        return (
            f"<a href='cite:{key}' style='color:{theme.UNVERIFIED.name()}'>⚠&nbsp;{html.escape(marker)}</a>"
        )

    def _answer_html(self) -> str:
        """The answer's Markdown (headings, lists, tables, emphasis, code) with the markers as links."""
        return answer_html(self.answer.strip(), MARKER, self._marker_html)

    def _html(self) -> str:
        if not self.answer.strip():
            message = {
                "running": "The answer appears here when the run ends; its steps fill the tree below as they happen.",
                "cancelled": "You stopped the run before it wrote an answer; its steps so far are in the tree.",
            }.get(self.status, "The run ended without an answer.")
            return f"<p style='color:{theme.MUTED.name()}'><i>{html.escape(message)}</i></p>"
        parts = [f"<div style='font-size:large'>{self._answer_html()}</div>"]
        if self._citations or self.unknown_markers:
            parts.append(self._list_html())
        parts.append(self._warnings_html())
        return "".join(parts)

    def _warnings_html(self) -> str:
        if not self.warnings:
            return ""
        colour = theme.STATUS_COLOURS["cap_reached"].name()
        items = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
        return f"<p style='color:{colour}; margin-bottom:0'><b>Warnings</b></p><ul style='color:{colour}'>{items}</ul>"

    def _list_html(self) -> str:
        muted = theme.MUTED.name()
        rows = []
        for number, (key, citation) in enumerate(self._citations.items(), 1):
            verified = bool(citation.get("verified"))
            marker = html.escape(citation.get("marker") or f"[{key}]")
            colour = LINK if verified else theme.UNVERIFIED.name()
            title = html.escape(str(citation.get("title") or f"document {citation.get('doc_id')}"))
            where = f", page {citation['page']}" if citation.get("page") else ""
            quote = str(citation.get("quote") or "")
            if len(quote) > 400:
                quote = quote[:400] + "…"
            check = (
                f"<span style='color:{theme.VERIFIED.name()}'>✓ verified</span>"
                if verified
                else f"<span style='color:{theme.UNVERIFIED.name()}'>⚠ unverified</span>"
            )
            problem = citation.get("problem")
            if not verified and problem:
                check += f" <span style='color:{muted}'>({html.escape(str(problem))})</span>"
            if verified:  # only a verified span can be kept as a finding
                check += f" · <a href='finding:{key}' style='color:{LINK}'>Add to findings</a>"
            rows.append(
                f"<tr><td style='color:{muted}; padding-right:6px' valign='top'>{number}.</td>"
                f"<td valign='top' style='padding-right:8px'><a href='cite:{key}' style='color:{colour}'>"
                f"{'⚠&nbsp;' if not verified else ''}{marker}</a></td>"
                f"<td valign='top'><b>{title}</b>{html.escape(where)}<br>"
                f"“{html.escape(quote)}”<br>{check}</td></tr>"
            )
        for key in self.unknown_markers:
            rows.append(
                f"<tr><td style='color:{muted}; padding-right:6px'>–</td>"
                f"<td style='color:{theme.UNVERIFIED.name()}; padding-right:8px'>[{html.escape(key)}]</td>"
                f"<td style='color:{theme.UNVERIFIED.name()}'>{html.escape(UNKNOWN_TIP)}</td></tr>"
            )
        return (
            f"<p style='margin-top:18px'><b>Sources</b> <span style='color:{muted}'>— click a marker to show"
            " the passage in its document</span></p>"
            f"<table cellspacing='0' cellpadding='3'>{''.join(rows)}</table>"
        )

    # ---- interaction ---------------------------------------------------------------------------------

    def _on_anchor(self, url: QUrl) -> None:
        target = url.toString()
        if target.startswith("cite:"):
            self.activate_citation(target[5:])
        elif target.startswith("finding:"):
            self.request_finding(target[8:])

    def request_finding(self, marker: str) -> bool:
        """Ask for this citation to be kept as a finding; False when there is no such citation."""
        citation = self._citations.get(marker_key(marker))
        if citation is None:
            return False
        self.finding_requested.emit(citation)
        return True

    def context_menu_for(self, href: str) -> QMenu:
        """The browser's context menu, with "Add to findings" when the pointer is on a citation marker."""
        menu = self.browser.createStandardContextMenu()
        key = href.partition(":")[2] if href.startswith(("cite:", "finding:")) else None
        if key is not None and key in self._citations:
            first = menu.actions()[0] if menu.actions() else None
            show = QAction(f"Show [{key}] in its document", menu)
            show.triggered.connect(lambda: self.activate_citation(key))
            verified = bool(self._citations[key].get("verified"))
            add = QAction(f"Add [{key}] to findings…" if verified else f"[{key}] is unverified: not a finding", menu)
            add.setEnabled(verified)
            add.triggered.connect(lambda: self.request_finding(key))
            menu.insertActions(first, [show, add])
            menu.insertSeparator(first)
        return menu

    def tooltip_for(self, href: str) -> str | None:
        if not href.startswith("cite:"):
            return None
        citation = self._citations.get(href[5:])
        if citation is None:
            return None
        if not citation.get("verified"):
            return UNVERIFIED_TIP
        where = f", page {citation['page']}" if citation.get("page") else ""
        return f"{citation.get('title')}{where}\n“{str(citation.get('quote', ''))[:200]}”\nClick to show it"


class _AnswerBrowser(TooltipBrowser):
    """Tooltips for citation links come from the citation itself, not from HTML attributes."""

    def __init__(self, owner: AnswerView):
        super().__init__(owner)
        self._owner = owner

    def tooltip_at(self, pos: QPoint) -> str | None:
        return self._owner.tooltip_for(self.anchorAt(pos))

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 - Qt override
        menu = self._owner.context_menu_for(self.anchorAt(event.pos()))
        menu.exec(event.globalPos())
        menu.deleteLater()
