"""What one step of a run did, shown in a detail pane: one renderer per kind of step, in a table."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QToolButton, QVBoxLayout, QWidget

from rlm_desktop.engine.events import NodeView
from rlm_desktop.gui import theme
from rlm_desktop.gui.excerpt_view import ERROR_COLOUR, ExcerptView
from rlm_desktop.gui.run_tree_model import STATUS_TEXT, cost_text, error_text, tokens_text

KIND_TITLES = {
    "root": "Whole run",
    "iteration": "Root-model iteration",
    "code": "Code block",
    "llm_query": "Sub-call",
    "rlm_query": "Sub-investigation (sub-RLM)",
    "compaction": "Compaction",
}
STATUS_BANNERS = {
    "cancelled": "Stopped by you — the answer so far",
    "cap_reached": "The spending cap was reached — the answer is partial",
    "limit_reached": "A limit was reached — the answer is partial",
}
# a PDF page break (form feed) and stray control characters would vanish in a text view: show a line break


class DetailContext(Protocol):
    """What renderers may ask of the panel around them."""

    @property
    def record(self) -> dict[str, Any] | None: ...

    def document_title(self, doc_id: int) -> str: ...

    def describe_span(self, doc_id: int, start: int, end: int) -> str: ...


def _human_status(status: str) -> str:
    return STATUS_TEXT.get(status, status.replace("_", " "))


class _Section(QWidget):
    """A caption over an ExcerptView."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(2)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.view = ExcerptView()
        self.view.setMinimumHeight(36)  # two lines: the detail may shrink so the answer and tree keep room
        layout.addWidget(self.caption)
        layout.addWidget(self.view, 1)

    def show_content(self, caption: str) -> None:
        self.caption.setText(caption)
        self.caption.setVisible(bool(caption))
        self.view.clear()
        self.setVisible(True)
        self._hold_caption()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._hold_caption()

    def _hold_caption(self) -> None:
        """A splitter ignores a wrapped caption's height for its width, and squeezed the view over it: the
        section's minimum is the caption's height at this width plus two lines of the view."""
        caption = self.caption.heightForWidth(self.width()) if self.caption.isVisibleTo(self) else 0
        minimum = max(0, caption) + self.view.minimumHeight() + 12  # the layout's margin and spacing
        if minimum != self.minimumHeight():
            self.setMinimumHeight(minimum)


class NodeDetail(QWidget):
    """What one step did: a header line, then a primary pane (code, prompt, reply, question) and a
    secondary pane (output, response, answer)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.primary = _Section()
        self.secondary = _Section()
        self.splitter.addWidget(self.primary)
        self.splitter.addWidget(self.secondary)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 3)  # code and prompts are longer than outputs and responses
        self.splitter.setStretchFactor(1, 2)
        # A reasoning model's thinking: kept for the record, never run, folded away unless asked for.
        self.thinking_button = QToolButton()
        self.thinking_button.setCheckable(True)
        self.thinking_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.thinking_button.setArrowType(Qt.ArrowType.RightArrow)
        self.thinking_button.setAutoRaise(True)
        self.thinking_button.setToolTip(
            "What the model reasoned before replying (from <think> tags or a reasoning field). It is shown "
            "for the record only: code in it is never run."
        )
        self.thinking_button.toggled.connect(self._thinking_toggled)
        self.thinking = ExcerptView()
        self.thinking.setVisible(False)
        self.splitter.insertWidget(0, self.thinking)
        layout.addWidget(self.header)
        layout.addWidget(self.thinking_button)
        layout.addWidget(self.splitter, 1)
        self.node_id: str | None = None
        self.show_empty()

    def _thinking_toggled(self, shown: bool) -> None:
        self.thinking_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.thinking.setVisible(shown and self.thinking_button.isVisible())

    def set_thinking(self, text: str) -> None:
        """Offer the step's thinking behind the fold (it stays open or closed as the user left it)."""
        self.thinking.clear()
        if not text:
            self.thinking_button.setVisible(False)
            self.thinking.setVisible(False)
            return
        self.thinking_button.setText(f"Thinking — {len(text):,} characters, never run")
        self.thinking_button.setVisible(True)
        self.thinking.add_text(text, colour=theme.MUTED)
        self.thinking.setVisible(self.thinking_button.isChecked())

    @property
    def excerpt(self) -> ExcerptView:
        return self.primary.view

    def show_empty(self, message: str = "Select a step in the tree above to see what it did.") -> None:
        self.node_id = None
        self.set_thinking("")
        self.header.setText(f"<span style='color:{theme.MUTED.name()}'>{html.escape(message)}</span>")
        self.primary.view.clear()
        self.secondary.view.clear()
        self.primary.setVisible(False)
        self.secondary.setVisible(False)

    def set_header(self, view: NodeView, elapsed: str) -> None:
        parts = [f"<b>{html.escape(KIND_TITLES.get(view.kind, view.kind))}</b>"]
        if view.kind == "iteration":
            parts[0] = f"<b>Iteration {html.escape(str(view.detail.get('number', '?')))}</b>"
        colour = theme.STATUS_COLOURS.get(view.status, theme.MUTED).name()
        parts.append(f"<span style='color:{colour}'>{html.escape(_human_status(view.status))}</span>")
        if view.model:
            parts.append(html.escape(view.model))
        if tokens_text(view):
            parts.append(tokens_text(view) + " tokens")
        if cost_text(view):
            parts.append(html.escape(cost_text(view)))
        if elapsed:
            parts.append(html.escape(elapsed))
        retries = view.detail.get("retries") or []
        if retries:
            last = retries[-1]
            parts.append(
                f"<span style='color:{theme.UNVERIFIED.name()}'>retried {len(retries)}×"
                f" ({html.escape(str(last.get('reason', '')))})</span>"
            )
        self.header.setText(" &nbsp;·&nbsp; ".join(parts))
        self._hold_height()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._hold_height()

    def _hold_height(self) -> None:
        """As for a section's caption: the layout's minimum ignores the header's wrapped height (a sub-call's
        header is two lines at 1280x720), so the panel gave the detail a line too little and the sections
        overlapped ("Response" drawn under the prompt). The minimum is the header at this width plus the rest."""
        layout = self.layout()
        header = self.header.heightForWidth(self.width()) if self.header.isVisibleTo(self) else 0
        button = self.thinking_button.sizeHint().height() if self.thinking_button.isVisibleTo(self) else 0
        minimum = max(0, header) + button + self.splitter.minimumSizeHint().height() + 2 * layout.spacing()
        if minimum != self.minimumHeight():
            self.setMinimumHeight(minimum)

    def render(self, node: NodeView, elapsed: str, ctx: DetailContext) -> None:
        """Show `node`: the header line, its thinking behind the fold, then what its kind's renderer draws."""
        self.node_id = node.id
        self.set_header(node, elapsed)
        self.set_thinking(str(node.detail.get("thinking") or ""))
        RENDERERS.get(node.kind, _render_other)(self, node, ctx)


def _render_root(detail: NodeDetail, node: NodeView, ctx: DetailContext) -> None:
    primary, secondary, muted = detail.primary, detail.secondary, theme.MUTED
    # one pane: a question is a line, and the answer is best read right under it
    primary.show_content("")  # the header says "Whole run"; the text has its own headings
    secondary.setVisible(False)
    view = primary.view
    view.add_heading("Question")
    view.add_text(node.text)
    record = ctx.record or {}
    status = record.get("status") or node.status
    view.add_heading("Answer")
    if record.get("answer"):
        banner = STATUS_BANNERS.get(status)
        if banner:
            view.add_text(banner + "\n", colour=theme.STATUS_COLOURS.get(status, muted), italic=True)
        view.add_text(record["answer"])
    elif status == "running" or not record:
        view.add_text("The answer appears here when the run ends.", colour=muted, italic=True)
    elif status == "cancelled":
        view.add_text("Stopped by you before an answer was written.", colour=muted, italic=True)
    else:
        view.add_text("(no answer)", colour=muted, italic=True)
    if record.get("error") and status != "cancelled":  # "stopped by the user" says nothing the banner did not
        view.add_text(f"Why the run ended: {record['error']}", colour=ERROR_COLOUR, gap=True)
    if "WEAK" in str(record.get("isolation") or ""):  # the usual walls are in the record and reports
        view.add_text(f"Model code ran with weak isolation: {record['isolation']}", colour=ERROR_COLOUR, gap=True)


def _render_iteration(detail: NodeDetail, node: NodeView, ctx: DetailContext) -> None:
    primary, secondary, info, muted = detail.primary, detail.secondary, node.detail, theme.MUTED
    caption = "<b>Reply from the root model</b> — its prose, and the code it asked the REPL to run"
    if info.get("final_request"):
        caption = (
            "<b>Final reply</b> — no iterations were left, so the root model was asked to answer"
        )
    primary.show_content(caption)
    if node.text:
        primary.view.add_reply(node.text)
    else:
        primary.view.add_text("Waiting for the root model to reply…", colour=muted, italic=True)
    _notes(node, secondary)


def _render_code(detail: NodeDetail, node: NodeView, ctx: DetailContext) -> None:
    primary, secondary, info, muted = detail.primary, detail.secondary, node.detail, theme.MUTED
    primary.show_content(f"<b>Code</b> (block {info.get('block', 1)} of the reply)")
    primary.view.add_text(node.text, mono=True)
    secondary.show_content("<b>Output</b> — what the code printed")
    output, error = info.get("output"), info.get("error")
    if node.status == "running" and output is None:
        secondary.view.add_text("Running…", colour=muted, italic=True)
    elif output:
        secondary.view.add_text(output, mono=True)
    elif output is not None:
        secondary.view.add_text("(no output)", colour=muted, italic=True)
    if error:
        secondary.view.add_heading("Error")
        secondary.view.add_text(error_text(error), mono=True, colour=ERROR_COLOUR)
    for key, heading in (("final", "FINAL answer"), ("final_refused", "FINAL refused (first turn)")):
        if info.get(key):
            secondary.view.add_heading(heading)
            secondary.view.add_text(str(info[key]))
    citations = info.get("citations") or []
    if citations:
        secondary.view.add_heading("Citations registered")
        lines = [
            f"{c.get('marker')}  {ctx.document_title(int(c.get('doc_id', -1)))}, characters "
            f"{c.get('start')}–{c.get('end')}: “{c.get('quote', '')}”"
            for c in citations
        ]
        secondary.view.add_text("\n".join(lines))


def _render_llm_query(detail: NodeDetail, node: NodeView, ctx: DetailContext) -> None:
    primary, secondary, info, muted = detail.primary, detail.secondary, node.detail, theme.MUTED
    spans = info.get("prompt_spans") or []
    if spans:
        doc_ids = list(dict.fromkeys(int(s["doc_id"]) for s in spans))
        names = ", ".join(html.escape(ctx.document_title(d)) for d in doc_ids[:3])
        if len(doc_ids) > 3:
            names += f" and {len(doc_ids) - 3} more"
        caption = (
            "<b>Prompt sent to the sub-model</b> — "
            f"<span style='background:{theme.HIGHLIGHT_TEXT.name()}'>&nbsp;highlighted&nbsp;</span> "
            f"passages were copied from {names}; click one to show it in its document"
        )
    else:
        # the engine traces a prompt's sources while the sub-model answers; they arrive with the result
        note = (
            "its passages are traced to their documents when the sub-call ends"
            if node.status == "running"
            else "no passage of it was traced to a document"
        )
        caption = (
            f"<b>Prompt sent to the sub-model</b> — <span style='color:{muted.name()}'>{note}</span>"
        )
    primary.show_content(caption)
    primary.view.add_excerpt(node.text, spans, ctx.describe_span)
    secondary.show_content("<b>Response</b>")
    if info.get("response"):
        secondary.view.add_text(str(info["response"]))
    elif node.status == "running":
        secondary.view.add_text("Waiting for the sub-model…", colour=muted, italic=True)
    elif info.get("response") is not None:
        secondary.view.add_text("(empty)", colour=muted, italic=True)
    if info.get("flag"):
        secondary.view.add_text(
            f"Flagged to the root model: {info['flag']}",
            colour=theme.STATUS_COLOURS["cap_reached"],
            gap=True,
        )
    if info.get("error"):
        secondary.view.add_text(error_text(info["error"]), colour=ERROR_COLOUR, gap=True)


def _render_rlm_query(detail: NodeDetail, node: NodeView, ctx: DetailContext) -> None:
    primary, secondary, info, muted = detail.primary, detail.secondary, node.detail, theme.MUTED
    primary.show_content("<b>Question for the sub-investigation</b>")
    primary.view.add_text(node.text)
    doc_ids = info.get("doc_ids") or []
    if doc_ids:
        primary.view.add_heading(f"Documents it may read ({len(doc_ids):,})")
        names = ", ".join(ctx.document_title(int(d)) for d in doc_ids[:50])
        if len(doc_ids) > 50:
            names += f", … and {len(doc_ids) - 50:,} more"
        primary.view.add_text(names)
    secondary.show_content("<b>Result</b> — what it reported back")
    if info.get("answer"):
        secondary.view.add_text(str(info["answer"]))
    elif node.status == "running":
        secondary.view.add_text("Investigating…", colour=muted, italic=True)
    outcome = info.get("outcome")
    if outcome and outcome != "completed":
        secondary.view.add_text(
            f"Ended: {_human_status(outcome)}", colour=muted, italic=True, gap=True
        )


def _render_compaction(detail: NodeDetail, node: NodeView, ctx: DetailContext) -> None:
    primary, secondary, muted = detail.primary, detail.secondary, theme.MUTED
    primary.show_content(
        "<b>Compaction</b> — the root conversation grew too long for the model's context window, so it "
        "was restarted from this summary the model wrote; REPL variables and citations were kept"
    )
    if node.text:
        primary.view.add_text(node.text)
    else:
        primary.view.add_text("The root model is writing its summary…", colour=muted, italic=True)
    _notes(node, secondary)


def _render_other(detail: NodeDetail, node: NodeView, ctx: DetailContext) -> None:
    primary, secondary = detail.primary, detail.secondary
    primary.show_content(f"<b>{html.escape(node.kind)}</b>")
    primary.view.add_text(node.text)
    _notes(node, secondary)


def _notes(node: NodeView, section: _Section) -> None:
    notes = []
    if node.detail.get("problem"):
        notes.append(f"Unusable reply: {node.detail['problem']}")
    if node.detail.get("reason"):
        notes.append(f"Why: {node.detail['reason']}")
    if node.detail.get("tokens_before"):
        notes.append(
            f"Conversation: about {node.detail['tokens_before']:,} tokens before, "
            f"{node.detail.get('tokens_after', 0):,} after"
        )
    if node.detail.get("prose_final"):
        notes.append(f"Ran the FINAL line written outside a code block: {node.detail['prose_final']}")
    if node.detail.get("usage_estimated"):
        notes.append(
            "The server reported no token usage for this call: tokens and cost are estimates, and "
            f"{theme.money(float(node.detail.get('held_usd', 0.0)))} is held against the cap"
        )
    notes += list(node.detail.get("notes") or [])
    for retry in node.detail.get("retries") or []:
        notes.append(
            f"Retry {retry.get('attempt')}: {retry.get('reason')} (waited {retry.get('delay_s', 0):g} s)"
        )
    if node.detail.get("error"):
        notes.append(f"Error: {error_text(node.detail['error'])}")
    if not notes:
        section.setVisible(False)
        section.view.clear()
        return
    section.show_content("<b>Notes</b>")
    section.view.add_text("\n".join(f"• {n}" for n in notes))


RENDERERS: dict[str, Callable[[NodeDetail, NodeView, DetailContext], None]] = {
    "root": _render_root,
    "iteration": _render_iteration,
    "code": _render_code,
    "llm_query": _render_llm_query,
    "rlm_query": _render_rlm_query,
    "compaction": _render_compaction,
}
