"""The `rlm-desktop` command line (CONTRACTS.md): ingest, docs, search; more commands join as they are built."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rlm_desktop import __version__
from rlm_desktop.paths import InvalidCaseName, case_path, resolve_home

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
COMMANDS = (
    "gui", "ingest", "docs", "search", "ask", "runs", "show", "export", "doctor", "verify", "serve", "tag",
    "findings", "bench",
)


class UsageError(Exception):
    """Wrong arguments: exit code 2 with the message."""


def _common(top_level: bool) -> argparse.ArgumentParser:
    """--home/--case/--json, accepted before and after the subcommand.

    On subcommands the defaults are SUPPRESS, so a value given before the subcommand is not overwritten.
    """
    common = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return value if top_level else argparse.SUPPRESS

    common.add_argument(
        "--home",
        metavar="DIR",
        default=default(None),
        help="data folder (default: $RLM_DESKTOP_HOME or the platform's)",
    )
    common.add_argument(
        "--case",
        metavar="NAME",
        default=default(None),
        help="case name (default: 'default'; the window opens the last case used)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output on stdout, nothing else",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common(top_level=False)
    parser = argparse.ArgumentParser(
        prog="rlm-desktop",
        description="Investigate document collections with a Recursive Language Model.",
        parents=[_common(top_level=True)],
    )
    parser.add_argument("--version", action="version", version=f"rlm-desktop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ingest", parents=[common], help="add files and folders (recursively) to the case")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "--password-env",
        metavar="VAR",
        help="open encrypted PDF and DOCX files with the password in $VAR (never a flag value; never stored)",
    )

    p = sub.add_parser("docs", parents=[common], help="list the case's documents")
    p.add_argument(
        "--kind", help="only documents of this kind (pdf, docx, email, text, html, attachment, ...)"
    )
    p.add_argument("--failures", action="store_true", help="list the files that failed to ingest instead")

    p = sub.add_parser(
        "search",
        parents=[common],
        help='search texts and names: words, emails, IDs, "phrases", AND/OR/NOT, NEAR(a b, 5), prefix*',
    )
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=20, metavar="N")

    # The endpoint and models, shared by ask and doctor.
    endpoint = argparse.ArgumentParser(add_help=False)
    endpoint.add_argument(
        "--base-url", metavar="URL", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL, settings)"
    )
    endpoint.add_argument(
        "--api-key-env",
        metavar="VAR",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default OPENAI_API_KEY; else settings)",
    )
    endpoint.add_argument("--root-model", metavar="M")
    endpoint.add_argument("--sub-model", metavar="M")

    p = sub.add_parser("ask", parents=[common, endpoint], help="investigate a question with the RLM (headless)")
    p.add_argument("question")
    p.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="MODEL=IN:OUT",
        help="USD per million input:output tokens; repeatable",
    )
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--cap", type=float, metavar="USD", help="hard spending cap for this run")
    cap.add_argument("--no-cap", action="store_true", help="run without a spending cap")
    p.add_argument("--max-depth", type=int, metavar="N")
    p.add_argument("--max-iterations", type=int, metavar="N")
    p.add_argument("--max-subcalls", type=int, metavar="N")
    p.add_argument("--max-seconds", type=float, metavar="S", help="wall-clock limit for the run")
    p.add_argument("--concurrency", type=int, metavar="N")
    p.add_argument(
        "--sub-base-url",
        metavar="URL",
        help="a separate endpoint for sub-calls, e.g. a local vLLM (default $RLM_SUB_BASE_URL, settings; "
        "else the root's endpoint)",
    )
    p.add_argument(
        "--sub-api-key-env",
        metavar="VAR",
        default="RLM_SUB_API_KEY",
        help="environment variable holding the sub endpoint's key (default RLM_SUB_API_KEY; else the sub key "
        "saved in the window's Settings; else none: the root's key is never sent to another endpoint)",
    )
    p.add_argument("--max-in-flight", type=int, metavar="N", help="requests at once to the root's endpoint")
    p.add_argument("--sub-max-in-flight", type=int, metavar="N", help="requests at once to the sub endpoint")
    p.add_argument("--root-max-tokens", type=int, metavar="N", help="output-token limit of each root call")
    p.add_argument("--sub-max-tokens", type=int, metavar="N", help="output-token limit of each sub-call")
    p.add_argument(
        "--output-chars", type=int, metavar="N", help="REPL output shown to the root model, cut head and tail"
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        metavar="S",
        help="seconds for one model call (when streaming: the longest silence between chunks)",
    )
    p.add_argument(
        "--context-window",
        action="append",
        default=[],
        metavar="MODEL=TOKENS",
        help="a model's context window (input + output tokens), over settings and the server's report; repeatable",
    )
    p.add_argument("--no-stream", action="store_true", help="plain requests only, even where streaming works")
    p.add_argument(
        "--follow",
        metavar="RUN_ID",
        help="ask a follow-up in that run's thread: the root model sees the thread's earlier questions, answers "
        "and verified citations, also as `history` in its REPL. The REPL itself starts fresh (the window keeps a "
        "thread's REPL, with its variables, between questions)",
    )
    p.add_argument(
        "--allow-weak-isolation",
        action="store_true",
        help="run model code even where this machine offers only weak isolation (see `doctor`)",
    )
    p.add_argument(
        "--isolation",
        choices=["auto", "bwrap", "landlock", "unshare", "rlimits"],
        default="auto",
        help=argparse.SUPPRESS,
    )

    p = sub.add_parser("gui", parents=[common], help="open the investigation window (the default command)")
    p.add_argument("--open-run", metavar="RUN_ID", help="open this saved run (its tree, answer and first citation)")
    p.add_argument(
        "--screenshot", metavar="FILE.png", help="render the window to this PNG and exit (for docs and checks)"
    )
    p.add_argument("--size", metavar="WxH", default=None, help=argparse.SUPPRESS)
    p.add_argument("paths", nargs="*", metavar="PATH", type=Path, help="files or folders to add to the case")

    p = sub.add_parser(
        "export", parents=[common], help="export a saved run (or, with --findings, the case's findings) as an evidence report"
    )
    p.add_argument("run_id", metavar="RUN_ID", nargs="?")
    p.add_argument("--findings", action="store_true", help="one report of the case's findings instead of a run")
    from rlm_desktop.reports import FORMATS  # the formats table (reports/__init__.py)

    p.add_argument("--format", choices=list(FORMATS), required=True)
    p.add_argument("-o", "--output", metavar="FILE", required=True, type=Path)

    p = sub.add_parser(
        "doctor",
        parents=[common, endpoint],
        help="what the endpoint, each configured model and this machine's sandbox can do",
        description="Probe the endpoint and the root and sub models with a few tiny calls (token parameter, "
        "streaming, usage, reasoning, context window), check which sandbox walls work here, and cache the "
        "findings for runs. Exit 0 when the endpoint and both models answered, 1 otherwise (with the reason).",
    )
    p.add_argument("--timeout", type=float, default=20.0, metavar="S", help="seconds to wait for each probe call")

    p = sub.add_parser(
        "verify",
        parents=[common],
        help="re-check stored texts, text hashes, originals and (with RUN_ID) a run's citations",
    )
    p.add_argument("run_id", metavar="RUN_ID", nargs="?")
    p.add_argument(
        "--reextract", action="store_true", help="also extract every original again (slow on a large case)"
    )

    p = sub.add_parser("tag", parents=[common], help="add, remove or list a document's tags")
    p.add_argument("doc_id", metavar="DOC_ID", type=int)
    p.add_argument("tags", metavar="TAG", nargs="*", help="tags to add (none: list the document's tags)")
    p.add_argument("--remove", action="store_true", help="remove the given tags instead")
    sub.add_parser("findings", parents=[common], help="the case's findings, each verified now (exit 1 if one fails)")

    p = sub.add_parser(
        "runs", parents=[common], help="list the case's saved runs (follow-ups under the run they follow)"
    )
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--delete", metavar="RUN_ID", help="delete a saved run (its follow-ups then follow the run it followed)"
    )
    action.add_argument(
        "--rename", nargs=2, metavar=("RUN_ID", "NAME"), help="name a run (an empty NAME removes the name)"
    )
    p = sub.add_parser("show", parents=[common], help="one saved run: answer, citations and its tree")
    p.add_argument("run_id", metavar="RUN_ID")
    _serve_parser(sub, common, endpoint)
    from rlm_desktop.bench.command import add_parser as add_bench_parser

    add_bench_parser(sub, [common, endpoint])  # `bench`: the run options of ask, and its own
    return parser


def _serve_parser(sub: Any, common: argparse.ArgumentParser, endpoint: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common, endpoint],
        help="an OpenAI-compatible API over the cases (model rlm:<case>) for other tools",
        description="Serve POST /v1/chat/completions and GET /v1/models: each case is a model rlm:<case>. Every "
        "request needs the bearer token and is saved as a run; the settings' cap and limits apply per request, "
        "serve_daily_cap_usd to all requests of a day, serve_concurrency to runs at once.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, metavar="N", help="port (default 8765; 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true", help="allow a --host other machines can reach")
    p.add_argument(
        "--token-env", metavar="VAR", help="take the bearer token from $VAR instead of the generated, stored one"
    )
    p.add_argument("--show-token", action="store_true", help="print the stored bearer token (made if none) and exit")
    p.add_argument("--price", action="append", default=[], metavar="MODEL=IN:OUT", help="as for ask; repeatable")


GLOBAL_VALUE_OPTIONS = ("--home", "--case")


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    """The subcommands the parser knows (all of them, whoever added them)."""
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return list(action.choices)
    return list(COMMANDS)


def _files_open_the_window(argv: list[str], commands: list[str]) -> list[str]:
    """`rlm-desktop a.pdf folder/` and `rlm-desktop --case X folder/` (a file manager's "Open with", or a user
    naming the case first) open the window on the case and add the files: `gui` goes before the first path."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in GLOBAL_VALUE_OPTIONS:
            index += 2
        elif token.startswith("-"):  # --json, --home=DIR, ...: argparse judges them
            index += 1
        else:
            break
    if index < len(argv) and argv[index] not in commands:
        token = argv[index]
        if not Path(token).exists():
            raise UsageError(f"{token!r} is neither a command ({', '.join(commands)}) nor a file or folder")
        return [*argv[:index], "gui", *argv[index:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        argv = _files_open_the_window(list(sys.argv[1:] if argv is None else argv), _commands(parser))
    except UsageError as exc:
        print(f"rlm-desktop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, "gui"])
    from rlm_desktop.redact import install_log_redaction

    install_log_redaction()  # a logged error may quote a server's reply that echoes the key
    try:
        home = resolve_home(args.home)
        if args.command == "gui":
            from rlm_desktop.gui.app import run_gui

            return run_gui(args, home)
        path = case_path(home, args.case or "default")
        if args.command not in ("doctor", "bench"):
            _say_if_upgrading(path)
        handler = {
            "ingest": cmd_ingest,
            "docs": cmd_docs,
            "search": cmd_search,
            "ask": cmd_ask,
            "runs": cmd_runs,
            "show": cmd_show,
            "export": cmd_export,
            "doctor": cmd_doctor,
            "verify": cmd_verify,
            "serve": cmd_serve,
            "tag": cmd_tag,
            "findings": cmd_findings,
            "bench": cmd_bench,
        }[args.command]
        return handler(args, path)
    except (UsageError, InvalidCaseName) as exc:
        from rlm_desktop.redact import redact

        print(f"rlm-desktop: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _say_if_upgrading(path: Path) -> None:
    """A big case written by an older version is upgraded when opened, which can take minutes: say so first,
    rather than look hung."""
    from rlm_desktop.store.migrations import slow_upgrade

    if slow_upgrade(path):
        print(
            f"rlm-desktop: upgrading case {path.stem!r} to this version's format: once, and a large case takes"
            " a few minutes…",
            file=sys.stderr,
            flush=True,
        )


def _open_existing(path: Path):
    from rlm_desktop.store.case import Case

    if not path.exists():
        raise UsageError(f"no case {path.stem!r} at {path} (ingest files into it first)")
    return Case.open(path)


class _TerminalProgress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.width = shutil.get_terminal_size((80, 20)).columns

    def __call__(self, event: Any) -> None:
        from rlm_desktop.ingest.progress import (
            FileProgressed,
            FileStarted,
            IngestFinished,
            MembersProgressed,
            members_text,
        )

        if not self.enabled:
            return
        if isinstance(event, FileStarted):
            self._line(event.index, event.total_files, Path(event.path).name)
        elif isinstance(event, FileProgressed):
            pct = 100 * event.bytes_done // max(event.bytes_total, 1)
            self._line(None, None, f"{Path(event.path).name}: {event.messages} messages ({pct}%)")
        elif isinstance(event, MembersProgressed):
            self._line(None, None, f"{Path(event.path).name}: {members_text(event)}")
        elif isinstance(event, IngestFinished):
            sys.stderr.write("\r" + " " * (self.width - 1) + "\r")
            sys.stderr.flush()

    def _line(self, done: int | None, total: int | None, label: str) -> None:
        if done is not None and total:
            bar_len = 24
            filled = bar_len * done // total
            prefix = f"[{'#' * filled}{'.' * (bar_len - filled)}] {done}/{total} "
            self._prefix = prefix
        else:
            prefix = getattr(self, "_prefix", "")
        text = (prefix + label)[: self.width - 1]
        sys.stderr.write("\r" + text.ljust(self.width - 1))
        sys.stderr.flush()


def cmd_ingest(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.ingest.pipeline import ingest
    from rlm_desktop.store.case import Case

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            raise UsageError(f"--password-env {args.password_env}: ${args.password_env} is not set or empty")
    cancel = threading.Event()

    def stop(signum: int, frame: object) -> None:
        cancel.set()  # finish the current file (or mailbox batch), then stop; the case stays consistent

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Case.open(path) as case:
            report = ingest(case, args.paths, progress=_TerminalProgress(), cancel=cancel, password=password)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        _print_json(report.to_json())
    else:
        print(
            f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{len(report.failed)} failed; {report.documents_added} documents written "
            f"(attachments and messages included); {report.documents} documents in case '{path.stem}'"
        )
        for failure in report.failed:
            print(f"  failed: {failure['path']}: {failure['error']}")
        for failure in report.child_failures:
            print(f"  attachment not read: {failure['path']}: {failure['error']}")
        if report.skipped:
            print(f"  skipped {len(report.skipped)} hidden or special files")
        if report.cancelled:
            print("Stopped before the end; ingest again to continue where it stopped.")
    return EXIT_STOPPED if report.cancelled else EXIT_OK


def cmd_docs(args: argparse.Namespace, path: Path) -> int:
    with _open_existing(path) as case:
        if args.failures:
            failures = case.failures()
            if args.json:
                _print_json(failures)
            else:
                for f in failures:
                    print(f"{f['path']}: {f['error']}")
            return EXIT_OK
        docs = case.documents(kind=args.kind)
    if args.json:
        _print_json([d.to_json() for d in docs])
        return EXIT_OK
    print(f"{'id':>6}  {'kind':<10} {'chars':>9} {'pages':>5}  title")
    for d in docs:
        indent = "  ↳ " if d.parent_id else ""
        pages = str(d.pages) if d.pages else ""
        flag = " (partial)" if d.status != "complete" else ""
        print(f"{d.id:>6}  {d.kind:<10} {d.chars:>9} {pages:>5}  {indent}{d.title}{flag}")
    return EXIT_OK


def cmd_search(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.corpus import Corpus
    from rlm_desktop.store.search_query import InvalidQuery

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with _open_existing(path):
        pass  # brings a case from an older version up to date (the names index), as other commands do
    corpus = Corpus.open(path)
    try:
        hits = corpus.search(args.query, k=args.limit)
    except InvalidQuery as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        _print_json(
            [
                {
                    "doc_id": h.doc_id,
                    "start": h.start,
                    "end": h.end,
                    "snippet": h.snippet(60),
                    "score": h.score,
                    "title": corpus.by_id(h.doc_id).title,
                    "field": h.field,  # "text", or the name that matched: "path", "title", "from", ...
                }
                for h in hits
            ]
        )
        return EXIT_OK
    if not hits:
        print("no hits")
    for h in hits:
        doc = corpus.by_id(h.doc_id)
        where = f"chars {h.start}-{h.end}" if h.field == "text" else "by its name"
        print(f"[{h.doc_id}] {doc.title}  {where}  score {h.score:.2f}")
        print(f"    {h.snippet(60)}")
    return EXIT_OK


def _run_config(args: argparse.Namespace, home: Path):
    from rlm_desktop.settings import Settings, run_config

    try:
        settings = Settings.load(home)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    overrides: dict[str, Any] = {
        "base_url": args.base_url or os.environ.get("OPENAI_BASE_URL") or (settings.base_url or "").strip() or None,
        "price_args": tuple(args.price),
        "isolation": args.isolation,
    }
    if args.no_cap:
        overrides["cap_usd"] = None
    flags = {
        "cap_usd": args.cap,
        "root_model": args.root_model,
        "sub_model": args.sub_model,
        "max_depth": args.max_depth,
        "max_iterations": args.max_iterations,
        "max_subcalls": args.max_subcalls,
        "concurrency": args.concurrency,
        "max_wall_s": args.max_seconds,
        # ask's own options; bench and other commands that reuse this take them from settings and the environment
        "sub_base_url": getattr(args, "sub_base_url", None) or os.environ.get("RLM_SUB_BASE_URL") or None,
        "max_in_flight": getattr(args, "max_in_flight", None),
        "sub_max_in_flight": getattr(args, "sub_max_in_flight", None),
    }
    overrides.update({name: value for name, value in flags.items() if value is not None})
    overrides.update(_limit_flags(args, settings))
    config = run_config(settings, home=home, **overrides)
    try:
        config.check()
    except (ValueError, LookupError) as exc:
        raise UsageError(str(exc).strip('"')) from None
    return config


def _limit_flags(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """RunConfig overrides from ask's output-limit, timeout, context-window and isolation flags."""
    from rlm_desktop.settings import (
        CONTEXT_WINDOW_RANGE,
        MAX_OUTPUT_TOKENS,
        OUTPUT_CHARS_RANGE,
        parse_context_window,
    )

    out: dict[str, Any] = {}
    for flag, name, value in (
        ("--root-max-tokens", "root_max_output_tokens", args.root_max_tokens),
        ("--sub-max-tokens", "sub_max_output_tokens", args.sub_max_tokens),
    ):
        if value is not None:
            if not 1 <= value <= MAX_OUTPUT_TOKENS:
                raise UsageError(f"{flag} must be from 1 to {MAX_OUTPUT_TOKENS:,} tokens")
            out[name] = value
    if args.output_chars is not None:
        low, high = OUTPUT_CHARS_RANGE
        if not low <= args.output_chars <= high:
            raise UsageError(f"--output-chars must be from {low:,} to {high:,} characters")
        out["output_chars"] = args.output_chars
    if args.request_timeout is not None:
        if not args.request_timeout > 0:
            raise UsageError("--request-timeout must be more than 0 seconds")
        out["request_timeout_s"] = args.request_timeout
    if args.context_window:
        windows = dict(settings.context_windows) if isinstance(settings.context_windows, dict) else {}
        low, high = CONTEXT_WINDOW_RANGE
        for text in args.context_window:
            try:
                model, tokens = parse_context_window(text)
            except ValueError as exc:
                raise UsageError(f"--context-window {exc}") from None
            if not low <= tokens <= high:
                raise UsageError(f"--context-window {text!r}: the window must be from {low:,} to {high:,} tokens")
            windows[model] = tokens
        out["context_windows"] = windows
    if args.no_stream:
        out["stream"] = False
    if args.allow_weak_isolation:
        out["allow_weak_isolation"] = True
    return out


def cmd_ask(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.engine.handle import RunHandle
    from rlm_desktop.redact import redact_record
    from rlm_desktop.secrets import run_sub_key
    from rlm_desktop.settings import load_api_key

    home = resolve_home(args.home)
    if not path.exists():
        raise UsageError(f"no case {path.stem!r} at {path} (ingest files into it first)")
    config = _run_config(args, home)
    from rlm_desktop.sandbox.isolation import IsolationRefused, check_isolation

    try:  # a forced mode this machine cannot build, or no real wall and weak isolation not allowed
        check_isolation(config.isolation, config.allow_weak_isolation)
    except IsolationRefused as exc:
        raise UsageError(str(exc)) from None
    api_key = os.environ.get(args.api_key_env) or load_api_key(home)
    if not api_key:
        if config.base_url:  # local servers (Ollama, vLLM, LM Studio) usually need no key
            api_key = ""
        else:
            raise UsageError(
                f"no API key: set ${args.api_key_env} (or --api-key-env VAR), or save one in settings"
            )
    # Sub-calls on their own endpoint get their own key (the variable, else the one saved in the window's
    # settings), or none: the root's key never goes to another host.
    sub_key = run_sub_key(home, config, args.sub_api_key_env)
    handle = RunHandle(path, args.question, config, api_key, follows=args.follow, sub_api_key=sub_key)
    progress = _AskProgress(enabled=sys.stderr.isatty())
    handle.subscribe(progress)

    def stop(signum: int, frame: object) -> None:
        handle.cancel()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            handle.start()
        except ValueError as exc:  # a run to follow that is not in the case
            raise UsageError(str(exc)) from None
        while not handle.join(0.1):  # short waits keep the main thread free to take signals
            pass
        record = handle.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.clear()
    record = redact_record(record, (api_key,))  # an error body may echo the key: never print it
    if args.json:
        _print_json(record)
    else:
        _print_record(record)
    status = record["status"]
    if status == "completed":
        return EXIT_OK
    if status == "failed":
        return EXIT_FAILED
    return EXIT_STOPPED


def _isolation_report() -> dict[str, Any]:
    """This machine's sandbox walls, for doctor (one place to swap in a richer source)."""
    from rlm_desktop.doctor import isolation_report

    return isolation_report()


def cmd_doctor(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.doctor import doctor_json, doctor_text
    from rlm_desktop.engine.endpoints import OPENAI_URL, effective_base_url, endpoint_key
    from rlm_desktop.engine.pricing import PriceTable
    from rlm_desktop.engine.probe import EndpointReport, probe_endpoint_sync, save_report
    from rlm_desktop.settings import Settings, load_api_key

    home = resolve_home(args.home)
    try:
        settings = Settings.load(home)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.timeout > 0:
        raise UsageError("--timeout must be more than 0 seconds")
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or (settings.base_url or "").strip() or None
    roles = {"root": args.root_model or settings.root_model, "sub": args.sub_model or settings.sub_model}
    api_key = os.environ.get(args.api_key_env) or load_api_key(home) or ""
    try:
        prices = PriceTable(overrides=settings.prices if isinstance(settings.prices, dict) else {})
    except ValueError:
        prices = PriceTable()  # an unreadable price is for Settings to name; the probe only estimates
    if not api_key and effective_base_url(base_url) == OPENAI_URL:
        report = EndpointReport(
            base_url=endpoint_key(base_url),
            error=f"no API key: set ${args.api_key_env} (or --api-key-env VAR), or save one in settings",
        )
    else:
        try:
            report = probe_endpoint_sync(base_url, api_key, list(roles.values()), args.timeout, prices)
        except KeyboardInterrupt:
            return EXIT_STOPPED
    cache = None
    try:
        cache = save_report(home, report)
    except OSError as exc:
        print(f"rlm-desktop: warning: findings not cached: {exc}", file=sys.stderr)
    windows = settings.context_windows if isinstance(settings.context_windows, dict) else {}
    weak = settings.allow_weak_isolation is True
    data = doctor_json(report, roles, windows, _isolation_report(), cache, weak)
    if args.json:
        _print_json(data)
    else:
        print(doctor_text(data))
    return EXIT_OK if report.ok else EXIT_FAILED


class _AskProgress:
    """On a terminal: the root model's text as it streams, and a live status line (calls, tokens, dollars).

    Everything goes to stderr, so stdout holds only the answer (or the JSON record with --json).
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.shown: dict[str, int] = {}  # node id -> characters of its text already written
        self.status = ""

    def __call__(self, event: Any) -> None:
        from rlm_desktop.engine.events import CostChanged, NodeFinished, NodeUpdated

        if not self.enabled:
            return
        if isinstance(event, CostChanged):
            cap = f" of ${event.cap_usd:.2f}" if event.cap_usd is not None else ""
            held = f" (${event.held_usd:.4f} held)" if event.held_usd else ""
            self.status = (
                f"{event.calls} calls, {event.prompt_tokens:,} in / {event.completion_tokens:,} out, "
                f"${event.spent_usd:.4f}{held}{cap}, {event.elapsed_s:.0f} s"
            )
            self._write("\r" + self.status + "   ")
        elif isinstance(event, NodeUpdated | NodeFinished) and event.node.kind == "iteration":
            text = event.node.text
            done = self.shown.get(event.node.id)
            if done is None and not text:
                return
            if done is None:
                self.clear()
                self._write(f"── root, iteration {event.node.detail.get('number', '?')} ──\n")
                done = 0
            if len(text) > done:
                self._write(text[done:])
            self.shown[event.node.id] = max(done, len(text))
            if isinstance(event, NodeFinished):
                self._write("\n")

    def _write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            self._write("\r" + " " * min(120, len(self.status) + 3) + "\r")


def _print_record(record: dict[str, Any]) -> None:
    if record["status"] == "cancelled":  # the user's own Ctrl-C: say so, not that the run found nothing
        print("Stopped by you." + (" The answer so far:\n" if record["answer"] else " No answer was written yet."))
    if record["answer"] or record["status"] != "cancelled":
        print(record["answer"] or "(no answer)")
    if record["citations"]:
        print("\nCitations:")
        for c in record["citations"]:
            mark = "verified" if c["verified"] else f"NOT VERIFIED ({c.get('problem', '')})"
            page = f", page {c['page']}" if c.get("page") else ""
            quote = c["quote"] if len(c["quote"]) <= 200 else c["quote"][:200] + "…"
            print(f"  {c['marker']} {c['title']}{page}, characters {c['start']}-{c['end']}, {mark}")
            print(f'      "{quote}"')
    for marker in record.get("unresolved_markers") or []:
        print(f"  {marker} was never registered with cite/quote: unverified")
    cap = f" of a ${record['cap_usd']:.2f} cap" if record.get("cap_usd") is not None else ""
    held = record.get("cost_held_usd") or 0.0
    money = f"${record['cost_usd']:.4f}"
    if held:
        money = (
            f"${record.get('cost_billed_usd', 0.0):.4f} billed + ${held:.4f} held (calls whose cost the server "
            f"did not report, counted at their worst case; probably about ${record.get('cost_held_estimate_usd', 0.0):.4f})"
        )
    for warning in record.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)
    line = f"\n[{record['status']}] {money}{cap}; run {record['run_id']}"
    if record.get("error") and record["status"] != "cancelled":
        line += f"; {record['error']}"
    print(line)


def cmd_runs(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.engine.runs import delete_run, list_runs, rename_run, threaded

    with _open_existing(path) as case:
        try:
            if args.delete:
                relinked = delete_run(case, args.delete)
                done = {"deleted": args.delete, "relinked_follow_ups": relinked}
            elif args.rename:
                rename_run(case, *args.rename)
                done = {"renamed": args.rename[0], "label": " ".join(args.rename[1].split()) or None}
            else:
                done = None
        except KeyError as exc:
            raise UsageError(str(exc).strip('"')) from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        runs = list_runs(case)
    if done is not None:
        if args.json:
            _print_json(done)
        elif "deleted" in done:
            relinked = done["relinked_follow_ups"]
            more = f"; {relinked} follow-up(s) now follow the run it followed" if relinked else ""
            print(f"deleted run {args.delete}{more}")
        else:
            print(f"renamed run {args.rename[0]}")
        return EXIT_OK
    if args.json:
        _print_json([r.to_json() for r in runs])
        return EXIT_OK
    for r, depth in threaded(runs):
        indent = "  ↳ " * min(depth, 1) + "  " * max(0, depth - 1)
        name = f"{r.label} — " if r.label else ""
        print(f"{r.run_id}  {r.started[:19]}  {r.status:<13} ${r.cost_usd:.4f}  {indent}{name}{r.question[:60]}")
    if not runs:
        print("no runs yet")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.engine.runs import load_run
    from rlm_desktop.redact import redact_record

    with _open_existing(path) as case:
        try:
            record = redact_record(load_run(case, args.run_id))  # runs saved before redaction existed too
        except KeyError as exc:
            raise UsageError(str(exc).strip('"')) from None
    if args.json:
        _print_json(record)
        return EXIT_OK
    print(f"Question: {record['question']}\n")
    if record.get("follows"):
        print(f"Follows run {record['follows']} (a follow-up in its thread)\n")
    _print_record(record)
    if record.get("tree"):
        print("\nTrajectory:")
        _print_tree(record["tree"], 0)
    return EXIT_OK


def cmd_export(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.reports import export_cli

    if args.findings:
        if args.run_id:
            raise UsageError("export takes either RUN_ID or --findings, not both")
        from rlm_desktop.reports.findings import export_findings_cli

        return export_findings_cli(args, path)
    if not args.run_id:
        raise UsageError("export needs a RUN_ID (see `rlm-desktop runs`), or --findings for the case's findings")

    return export_cli(args, path)


def cmd_verify(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.integrity import verify_cli

    with _open_existing(path) as case:
        try:
            return verify_cli(case, args.run_id, reextract_all=args.reextract, as_json=args.json)
        except KeyError as exc:
            raise UsageError(str(exc).strip('"')) from None


def cmd_bench(args: argparse.Namespace, path: Path) -> int:
    """Benchmark the configured endpoint and models (rlm_desktop/bench): the run config as `ask` builds it."""
    from rlm_desktop.bench.command import BenchUsageError, run_bench
    from rlm_desktop.sandbox.isolation import IsolationRefused, check_isolation
    from rlm_desktop.settings import load_api_key

    home = resolve_home(args.home)
    config = _run_config(args, home)
    try:
        check_isolation(config.isolation, config.allow_weak_isolation)
    except IsolationRefused as exc:
        raise UsageError(str(exc)) from None
    api_key = os.environ.get(args.api_key_env) or load_api_key(home) or ""
    if not api_key and not config.base_url:  # local servers (Ollama, vLLM, LM Studio) usually need no key
        raise UsageError(f"no API key: set ${args.api_key_env} (or --api-key-env VAR), or save one in settings")
    try:
        return run_bench(args, home, config, api_key)
    except BenchUsageError as exc:
        raise UsageError(str(exc)) from None


def _print_tree(node: dict[str, Any], depth: int) -> None:
    first = (node.get("text") or "").strip().splitlines()
    label = first[0][:70] if first else ""
    model = f" {node['model']}" if node.get("model") else ""
    cost = f" ${node['cost_usd']:.4f}" if node.get("cost_usd") else ""
    print(f"{'  ' * depth}- {node['kind']}{model} [{node['status']}]{cost} {label}")
    for child in node.get("children", []):
        _print_tree(child, depth + 1)


def cmd_serve(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop import serve

    home = resolve_home(args.home)
    if args.show_token:
        print(serve.load_or_create_token(home)[0])
        return EXIT_OK
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env, "").strip()
        if not token:
            raise UsageError(f"--token-env {args.token_env}: ${args.token_env} is not set")
    overrides: dict[str, Any] = {"isolation": "auto"}
    if args.base_url:
        overrides["base_url"] = args.base_url
    if args.price:
        overrides["price_args"] = tuple(args.price)
    overrides.update({k: v for k, v in (("root_model", args.root_model), ("sub_model", args.sub_model)) if v})
    try:
        return serve.run(
            home,
            host=args.host,
            port=args.port,
            allow_remote=args.allow_remote,
            token=token,
            overrides=overrides,
            api_key=os.environ.get(args.api_key_env) or None,
        )
    except ValueError as exc:
        raise UsageError(str(exc).strip('"')) from None


def cmd_tag(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.findings import tag_cli

    with _open_existing(path) as case:
        return tag_cli(case, args.doc_id, args.tags, remove=args.remove, as_json=args.json)


def cmd_findings(args: argparse.Namespace, path: Path) -> int:
    from rlm_desktop.findings import findings_cli

    with _open_existing(path) as case:
        return findings_cli(case, as_json=args.json)
