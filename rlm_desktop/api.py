"""Ask a case from Python: `open_case(name_or_path).ask(question)` gives a typed answer with verified citations."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_desktop.paths import case_path, resolve_home

if TYPE_CHECKING:
    from rlm_desktop.engine.handle import RunHandle
    from rlm_desktop.engine.rlm import RunConfig

__all__ = ["Answer", "Case", "Citation", "open_case"]


@dataclass(frozen=True)
class Citation:
    """One citation of an answer: an exact span of a document's stored text, checked against the case."""

    marker: str  # as it appears in the answer, e.g. "[c1]"
    doc_id: int
    title: str
    path: str
    start: int  # character offsets into the document's stored text
    end: int
    quote: str  # text[start:end] when verified
    verified: bool
    page: int | None = None  # PDFs: the page the span starts on (1-based)

    @classmethod
    def from_record(cls, c: dict[str, Any]) -> Citation:
        return cls(
            marker=str(c.get("marker", "")),
            doc_id=int(c["doc_id"]),
            title=str(c.get("title") or ""),
            path=str(c.get("path") or ""),
            start=int(c["start"]),
            end=int(c["end"]),
            quote=str(c.get("quote") or ""),
            verified=bool(c.get("verified")),
            page=c.get("page"),
        )


@dataclass(frozen=True)
class Answer:
    """A finished run: its answer, citations and cost, and the whole run record (CONTRACTS.md)."""

    answer: str
    citations: tuple[Citation, ...]
    cost_usd: float  # billed + held: what the cap counts
    status: str  # completed, cancelled, cap_reached, limit_reached, failed
    run_id: str
    record: dict[str, Any] = field(repr=False)
    case: Case | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(cls, record: dict[str, Any], case: Case | None = None) -> Answer:
        return cls(
            answer=record.get("answer") or "",
            citations=tuple(Citation.from_record(c) for c in record.get("citations") or []),
            cost_usd=float(record.get("cost_usd") or 0.0),
            status=str(record.get("status")),
            run_id=str(record["run_id"]),
            record=record,
            case=case,
        )

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def error(self) -> str | None:
        return self.record.get("error")

    def follow_up(self, question: str, **limits: Any) -> Answer:
        """Ask another question in this run's thread (its root model sees this answer and its citations)."""
        if self.case is None:
            raise ValueError("this answer is not tied to an open case: use open_case(...).ask(q, follows=run_id)")
        return self.case.ask(question, follows=self.run_id, **limits)

    def __str__(self) -> str:
        return self.answer


_CONFIG_FIELDS: frozenset[str] | None = None


def _config_fields() -> frozenset[str]:
    global _CONFIG_FIELDS
    if _CONFIG_FIELDS is None:
        from rlm_desktop.engine.rlm import RunConfig

        _CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(RunConfig))
    return _CONFIG_FIELDS


class Case:
    """An open case to ask questions of; settings come from the home's settings.json, overridden per case
    (`open_case(..., root_model=...)`) and per question (`ask(..., cap_usd=0.5)`)."""

    def __init__(self, path: Path, home: Path, api_key: str | None = None, **defaults: Any):
        self.path = Path(path)
        self.home = Path(home)
        self.name = self.path.stem
        self._api_key = api_key
        self.defaults = self._checked(defaults)

    def __repr__(self) -> str:
        return f"Case({self.name!r}, path={str(self.path)!r})"

    @staticmethod
    def _checked(limits: dict[str, Any]) -> dict[str, Any]:
        """RunConfig fields, plus `prices` ({model: "IN:OUT"}, USD per million tokens) over the settings'."""
        unknown = sorted(set(limits) - _config_fields() - {"prices"})
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_config_fields()))}")
        return dict(limits)

    def config(self, **limits: Any) -> RunConfig:
        """The run's configuration: settings, then this case's defaults, then `limits`; ValueError when unusable."""
        from rlm_desktop.settings import Settings, run_config

        settings = Settings.load(self.home)
        values = {**self.defaults, **self._checked(limits)}
        prices = values.pop("prices", None)
        if prices:
            values["price_overrides"] = {**dict(settings.prices), **dict(prices)}
        values.setdefault(
            "base_url", os.environ.get("OPENAI_BASE_URL") or (settings.base_url or "").strip() or None
        )
        config = run_config(settings, home=self.home, **values)
        try:
            config.check()
        except LookupError as exc:  # UnknownPrice: a cap with a model that has no price
            raise ValueError(str(exc).strip('"')) from None
        return config

    def api_key(self, base_url: str | None) -> str:
        """The endpoint's key: given to open_case, else $OPENAI_API_KEY, else the stored key; "" for a custom
        endpoint that needs none (Ollama, vLLM)."""
        from rlm_desktop.secrets import NO_KEY_MESSAGE, load_key

        key = self._api_key or load_key(self.home)
        if key:
            return key
        if base_url:
            return ""
        raise ValueError(NO_KEY_MESSAGE.replace("open Settings (Ctrl+,) and enter", "set $OPENAI_API_KEY or save"))

    def sub_api_key(self, config: RunConfig) -> str | None:
        """The key for sub-calls on their own endpoint ($RLM_SUB_API_KEY, else the stored sub key, else none):
        the root's key is never sent to another host. None when sub-calls share the root's endpoint."""
        from rlm_desktop.secrets import run_sub_key

        return run_sub_key(self.home, config)

    def start(
        self,
        question: str,
        *,
        follows: str | None = None,
        history: list[dict[str, Any]] | None = None,
        config: RunConfig | None = None,
        **limits: Any,
    ) -> RunHandle:
        """Start a run on its own thread and return its handle (subscribe, cancel, wait)."""
        from rlm_desktop.engine.handle import RunHandle
        from rlm_desktop.sandbox.isolation import check_isolation

        if not question or not question.strip():
            raise ValueError("the question is empty")
        config = config or self.config(**limits)
        check_isolation(config.isolation, config.allow_weak_isolation)  # IsolationRefused says what is missing
        handle = RunHandle(
            self.path, question, config, self.api_key(config.base_url), follows=follows, history=history,
            sub_api_key=self.sub_api_key(config),
        )  # fmt: skip
        return handle.start()

    def ask(self, question: str, *, follows: str | None = None, **limits: Any) -> Answer:
        """Run the RLM on `question` and wait for its answer. Ctrl-C cancels the run (saved as cancelled) and
        raises KeyboardInterrupt. follows: a run id (or unique prefix) to follow up."""
        handle = self.start(question, follows=follows, **limits)
        try:
            while not handle.join(0.1):  # short waits keep the main thread free to take Ctrl-C
                pass
        except KeyboardInterrupt:
            handle.cancel()
            handle.join()
            raise
        return Answer.from_record(handle.wait(), self)

    def run(self, run_id: str) -> Answer:
        """A saved run of this case (an id or a unique prefix); KeyError when there is none."""
        from rlm_desktop.engine.runs import load_run
        from rlm_desktop.store.case import Case as CaseFile

        with CaseFile.open(self.path) as case:
            return Answer.from_record(load_run(case, run_id), self)


def open_case(
    name_or_path: str | os.PathLike[str], *, home: str | os.PathLike[str] | None = None, api_key: str | None = None,
    **defaults: Any,
) -> Case:
    """A case by name (`<home>/cases/<name>.sqlite`; home as for the CLI) or by the path of its .sqlite file.

    `defaults` override settings for every question: any RunConfig field (base_url, root_model, sub_model,
    cap_usd, max_depth, max_iterations, max_subcalls, max_wall_s, concurrency, ...) and `prices`.
    FileNotFoundError when there is no such case (ingest files into it first).
    """
    home_path = resolve_home(home)
    text = os.fspath(name_or_path)
    looks_like_path = text.endswith(".sqlite") or os.sep in text or (os.altsep or os.sep) in text
    path = Path(text).expanduser() if looks_like_path else case_path(home_path, text)
    if not path.is_file():
        raise FileNotFoundError(f"no case {path.stem!r} at {path} (ingest files into it first)")
    return Case(path, home_path, api_key=api_key, **defaults)
