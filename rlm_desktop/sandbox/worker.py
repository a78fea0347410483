"""Untrusted REPL worker: runs the root model's code cells against the case corpus in one namespace."""

from __future__ import annotations

import ast
import builtins
import collections
import io
import linecache
import os
import re
import signal
import sys
import time
import traceback
import types
import urllib.parse
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run by path (python -I .../worker.py): make the package importable without PYTHONPATH.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rlm_desktop.sandbox import functions, protocol  # noqa: E402

DEFAULT_LIMITS: dict[str, Any] = {
    "output_chars": 20_000,
    "cell_timeout_s": 120.0,
    "memory_mb": 2048,
    "cpu_s": 3600,
    "file_mb": 256,
    "scratch_mb": 256,
    "nproc": 64,
    "max_cite_chars": 20_000,
    "max_citations": 1000,  # per cell
    "final_chars": 200_000,
    # markers are "[<prefix><n>]"; each REPL of a run gets its own prefix so nested REPLs never collide
    "marker_prefix": "c",
}
PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


class CellTimeout(BaseException):
    """Raised into running user code when the cell's wall-clock budget is spent.

    A BaseException so that a model's `except Exception:` does not swallow it.
    """


class WallsUnavailable(Exception):
    """The walls this isolation mode needs cannot be built in this process (not a bug: a machine's limits)."""


class SandboxViolation(PermissionError):
    """An operation the REPL is not allowed to perform."""


# --- output capture ---------------------------------------------------------------------------


def cut_middle(text: str, limit: int) -> str:
    """Keep the head and tail of text within limit characters, with a marker saying what was dropped."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    return (
        f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:] if tail else ''}"
    )


class BoundedCapture(io.TextIOBase):
    """A text stream keeping only the first and last characters written, counting the rest.

    Memory stays bounded however much a cell prints.
    """

    def __init__(self, limit: int):
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head: list[str] = []
        self.head_len = 0
        self.tail: collections.deque[str] = collections.deque()
        self.tail_len = 0
        self.total = 0

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        count = len(s)
        self.total += count
        if self.head_len < self.head_limit:
            taken = s[: self.head_limit - self.head_len]
            self.head.append(taken)
            self.head_len += len(taken)
            s = s[len(taken) :]
        if not s or not self.tail_limit:
            return count
        if len(s) >= self.tail_limit:
            self.tail.clear()
            self.tail.append(s[-self.tail_limit :])
            self.tail_len = self.tail_limit
            return count
        self.tail.append(s)
        self.tail_len += len(s)
        while self.tail_len - len(self.tail[0]) >= self.tail_limit:
            self.tail_len -= len(self.tail.popleft())
        return count

    def render(self) -> str:
        head = "".join(self.head)
        tail = "".join(self.tail)
        tail = tail[len(tail) - min(len(tail), self.tail_limit) :]
        dropped = self.total - len(head) - len(tail)
        if dropped <= 0:
            return head + tail
        return f"{head}\n[... {dropped} characters cut ...]\n{tail}"


# --- defence in depth: audit hook ---------------------------------------------------------------

DENIED_EVENTS = frozenset(
    {
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "resource.setrlimit",
        "resource.prlimit",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.cdata",
        "sqlite3.enable_load_extension",
        "sqlite3.load_extension",
    }
)
DENIED_IMPORTS = frozenset({"_posixsubprocess", "_ctypes", "ctypes"})
PATH_MUTATING_EVENTS = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.mkdir",
        "os.rmdir",
        "os.symlink",
        "os.link",
        "os.chmod",
        "os.chown",
        "os.truncate",
        "os.utime",
        "os.chflags",
        "os.lchflags",
    }
)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _is_under(path: Any, roots: tuple[str, ...]) -> bool:
    if isinstance(path, int):
        return True  # an already open descriptor was checked when it was opened
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return any(real == root or real.startswith(root + os.sep) for root in roots)


def make_audit_hook(scratch_dir: str, case_path: str | None):
    """Refuse network, process creation, and file access outside the allowed roots."""
    scratch = (os.path.realpath(scratch_dir),)
    read_roots = {
        scratch[0],
        PACKAGE_DIR,
        "/dev/null",
        "/dev/urandom",
        "/usr/share/zoneinfo",
        "/etc/localtime",
    }
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        read_roots.add(os.path.realpath(prefix))
    case_files: tuple[str, ...] = ()
    if case_path:
        real_case = os.path.realpath(case_path)
        case_files = tuple(real_case + suffix for suffix in ("", "-wal", "-shm", "-journal"))
        read_roots.update(case_files)
    read_allowed = tuple(sorted(read_roots))
    busy = False

    def deny(event: str, detail: str = "") -> None:
        raise SandboxViolation(f"sandbox: {event} is not allowed{detail}")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal busy
        if busy:
            return
        if event in DENIED_EVENTS:
            deny(event)
        if event == "import" and args and args[0] in DENIED_IMPORTS:
            deny(event, f" for {args[0]}")
        if event not in ("open", "sqlite3.connect") and event not in PATH_MUTATING_EVENTS:
            return
        busy = True
        try:
            if event == "open":
                path, mode, flags = args
                writing = bool((flags or 0) & WRITE_FLAGS) or bool(mode and any(c in mode for c in "wax+"))
                if writing and not _is_under(path, scratch):
                    deny("writing", f" outside the scratch dir {scratch[0]}: {path!r}")
                if not writing and not _is_under(path, read_allowed):
                    deny("reading", f" outside the case and scratch dir: {path!r}")
            elif event == "sqlite3.connect":
                target = os.fsdecode(args[0]) if args and not isinstance(args[0], int) else ""
                _check_sqlite_target(target, scratch, case_files, deny)
            else:
                targets = args[:2] if event in ("os.rename", "os.link", "os.symlink") else args[:1]
                if event == "os.symlink":
                    targets = args[1:2]
                for target in targets:
                    if not _is_under(target, scratch):
                        deny(event, f" outside the scratch dir: {target!r}")
        finally:
            busy = False

    return hook


def _check_sqlite_target(target: str, scratch: tuple[str, ...], case_files: tuple[str, ...], deny) -> None:
    if target in ("", ":memory:"):
        return
    if target.startswith("file:"):
        path, _, query = target[5:].partition("?")
        path = urllib.parse.unquote(path)
        if path in ("", ":memory:") or "mode=memory" in query:
            return
        if _is_under(path, case_files[:1]) and ("mode=ro" in query or "immutable=1" in query):
            return
        target = path
    if not _is_under(target, scratch):
        deny("sqlite3.connect", f" to {target!r} (only the read-only case and the scratch dir)")


# --- resource limits ------------------------------------------------------------------------------


def apply_limits(limits: dict[str, Any], nproc: bool = True) -> list[str]:
    """Lower this process's rlimits; returns notes about limits that could not be set.

    nproc=False leaves RLIMIT_NPROC alone: outside a user namespace it counts every process of the user on
    the machine, so a desktop's browser tabs would leave the REPL no thread at all (seccomp refuses new
    processes there anyway, and the pids cgroup bounds threads where one is writable).
    """
    import resource

    notes = []
    wanted = {
        resource.RLIMIT_AS: int(limits["memory_mb"]) * 1024 * 1024,
        resource.RLIMIT_CPU: int(limits["cpu_s"]),
        resource.RLIMIT_FSIZE: min(int(limits["file_mb"]), int(limits["scratch_mb"])) * 1024 * 1024,
        resource.RLIMIT_CORE: 0,
    }
    if nproc:
        # Set here, not before bwrap: the count is per user namespace, so only the sandbox's processes count.
        wanted[resource.RLIMIT_NPROC] = int(limits["nproc"])
    for which, value in wanted.items():
        try:
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            notes.append(f"rlimit {which}: {exc}")
    return notes


# --- the empty corpus used without a case -------------------------------------------------------


class EmptyCorpus:
    """Stands in for a Corpus when the worker has no case: no documents."""

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int):
        raise IndexError("the case has no documents")

    def __iter__(self):
        return iter(())

    def by_id(self, doc_id: int):
        raise KeyError(doc_id)

    def text_of(self, doc_id: int) -> str:
        raise KeyError(doc_id)

    def grep(self, pattern: str, flags: int = 0, docs: Any = None, max_hits: int = 1000) -> list:
        re.compile(pattern, flags)  # still report a bad pattern
        return []

    def search(self, query: str, k: int = 20) -> list:
        return []


def _chained(report: traceback.TracebackException) -> list[traceback.TracebackException]:
    found = []
    for link in (report.__cause__, report.__context__):
        if link is not None:
            found += [link, *_chained(link)]
    return found


_WORKER_FILE = os.path.abspath(__file__)


# --- the worker -----------------------------------------------------------------------------------


class Worker:
    """Holds the namespace and talks to the host over two private file descriptors."""

    def __init__(self, proto_in: int, proto_out: int):
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.limits: types.MappingProxyType[str, Any] = types.MappingProxyType(dict(DEFAULT_LIMITS))
        self.corpus: Any = EmptyCorpus()
        self.namespace: dict[str, Any] = {}
        self.next_request = 0
        self.next_marker = 0
        self.markers: dict[tuple[int, int, int], str] = {}
        self.cell_citations: list[dict[str, Any]] = []
        self.final: str | None = None
        self.timeout_s = 0.0

    # host requests -------------------------------------------------------------------------

    def call_host(self, kind: str, payload: dict[str, Any]) -> Any:
        # Time spent waiting for the host (network calls) does not count against the cell's budget,
        # and the timer must not interrupt a half-read frame.
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            self.next_request += 1
            request_id = self.next_request
            protocol.write_frame_fd(self.proto_out, protocol.request_message(request_id, kind, payload))
            reply = protocol.read_frame_fd(self.proto_in)
        finally:
            if remaining > 0:
                signal.setitimer(signal.ITIMER_REAL, remaining, 1.0)
        if reply.get("type") != protocol.REPLY or reply.get("id") != request_id:
            raise RuntimeError(f"sandbox protocol: unexpected reply to {kind}")
        if not reply.get("ok"):
            raise RuntimeError(f"{kind} failed: {reply.get('error')}")
        return reply.get("value")

    # citations -------------------------------------------------------------------------------

    @staticmethod
    def _doc_id(doc: Any) -> int:
        return functions.doc_id_of(doc)

    def _text(self, doc_id: int) -> str:
        try:
            self.corpus.by_id(doc_id)  # only documents of this context, not the whole case
            return self.corpus.text_of(doc_id)
        except (KeyError, IndexError, LookupError):
            raise ValueError(f"no document with id {doc_id} in this case") from None

    def _register(self, doc_id: int, start: int, end: int, quote: str) -> str:
        key = (doc_id, start, end)
        marker = self.markers.get(key)
        if marker is None:
            self.next_marker += 1
            marker = self.markers[key] = f"[{self.limits['marker_prefix']}{self.next_marker}]"
        if all(c["marker"] != marker for c in self.cell_citations):
            if len(self.cell_citations) >= self.limits["max_citations"]:
                raise ValueError(f"at most {self.limits['max_citations']} citations per cell")
            # The host reads the quote from the case itself: it never trusts one sent from here.
            self.cell_citations.append({"marker": marker, "doc_id": doc_id, "start": start, "end": end})
        return marker

    def cite(self, doc_id: Any, start: int, end: int) -> str:
        doc_id = self._doc_id(doc_id)
        text = self._text(doc_id)
        if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start < end <= len(text):
            raise ValueError(
                f"cite({doc_id}, {start}, {end}): need 0 <= start < end <= {len(text)} (the document's length)"
            )
        if end - start > self.limits["max_cite_chars"]:
            raise ValueError(f"cite a shorter passage (at most {self.limits['max_cite_chars']} characters)")
        return self._register(doc_id, start, end, text[start:end])

    def quote(self, doc_id: Any, passage: str) -> str:
        doc_id = self._doc_id(doc_id)
        if not isinstance(passage, str) or not passage:
            raise ValueError("quote(doc_id, text) needs the non-empty exact text to find")
        text = self._text(doc_id)
        start = text.find(passage)
        if start < 0:
            raise ValueError(self._quote_miss(doc_id, text, passage))
        end = start + len(passage)
        if end - start > self.limits["max_cite_chars"]:
            raise ValueError(f"quote a shorter passage (at most {self.limits['max_cite_chars']} characters)")
        return self._register(doc_id, start, end, passage)

    @staticmethod
    def _quote_miss(doc_id: int, text: str, passage: str) -> str:
        message = (
            f"quote({doc_id}, ...): the exact text {cut_middle(passage, 120)!r} is not in document {doc_id}."
        )
        words = passage.split()
        if words:
            loose = r"\s+".join(re.escape(w) for w in words)
            match = re.search(loose, text, re.IGNORECASE)
            if match:
                return (
                    f"{message} A passage differing only in whitespace or case is at "
                    f"{match.start()}..{match.end()}: {cut_middle(match.group(), 200)!r}; "
                    f"use cite({doc_id}, {match.start()}, {match.end()}) or quote that exact text."
                )
        return f"{message} Copy the text exactly from the document (grep it first) or use cite(doc_id, start, end)."

    # final answers ---------------------------------------------------------------------------

    def FINAL(self, answer: Any) -> None:
        self._set_final(answer if isinstance(answer, str) else str(answer))

    def _set_final(self, answer: str) -> None:
        if len(answer) > self.limits["final_chars"]:
            raise ValueError(f"the final answer is longer than {self.limits['final_chars']:,} characters")
        self.final = answer

    def FINAL_VAR(self, name: Any) -> None:
        if not isinstance(name, str):
            raise TypeError("FINAL_VAR(name) takes the variable's name as a string, e.g. FINAL_VAR('answer')")
        name = name.strip().strip("'\"")
        if name not in self.namespace:
            raise NameError(f"FINAL_VAR({name!r}): no variable with that name. Defined: {self._user_names()}")
        value = self.namespace[name]
        self._set_final(value if isinstance(value, str) else str(value))

    def _user_names(self) -> list[str]:
        return [n for n in self.namespace if not n.startswith("_") and n not in self.builtin_names]

    def SHOW_VARS(self) -> None:
        names = self._user_names()
        if not names:
            print("(no variables defined yet)")
        for name in names:
            value = self.namespace[name]
            size = f", len {len(value)}" if isinstance(value, (str, list, dict, tuple, set)) else ""
            print(f"{name}: {type(value).__name__}{size}")

    # setup and cells ---------------------------------------------------------------------------

    def init(self, message: dict[str, Any]) -> dict[str, Any]:
        limits = dict(DEFAULT_LIMITS)
        limits.update({k: v for k, v in (message.get("limits") or {}).items() if k in DEFAULT_LIMITS})
        if not re.fullmatch(r"c(\d+\.)*", str(limits["marker_prefix"])):
            limits["marker_prefix"] = "c"
        # Read-only from here on. Cell code could still dig the dict out (nothing in-process is out of its
        # reach); the host re-checks every marker and cuts every output itself.
        self.limits = types.MappingProxyType(limits)
        self.next_marker = max(0, int(message.get("marker_start") or 1) - 1)
        self.timeout_s = float(self.limits["cell_timeout_s"])
        scratch_dir = message["scratch_dir"]
        case_path = message.get("case_path")
        walls = message.get("walls") or {}
        preloaded = set(sys.modules)
        mount_ns = False
        from rlm_desktop.sandbox import confine

        if walls.get("seccomp"):
            confine.preload()  # libseccomp is found through ldconfig, which a new root no longer has
        if walls.get("mount_ns"):  # the unshare mode: a new root of read-only binds, before the case opens
            from rlm_desktop.sandbox import mountns

            case_files = list(walls.get("case_files") or [])
            read = [p for p in walls.get("read") or [] if p not in case_files]
            try:
                mountns.build_root(read, case_files, scratch_dir, int(self.limits["scratch_mb"]))
            except OSError as exc:
                raise WallsUnavailable(f"the new root could not be built: {exc}") from None
            mount_ns = True
        notes = apply_limits(self.limits, nproc=walls.get("nproc_rlimit", True))
        document_type: Any = None
        if case_path:
            from rlm_desktop.corpus import Corpus, Document

            self.corpus = Corpus.open(case_path, message.get("doc_ids"))
            document_type = Document
        os.chdir(scratch_dir)

        # The kernel walls go up before any model code runs: the audit hook below is only a tripwire.
        applied = confine.confine(list(walls.get("read") or []), list(walls.get("write") or []), walls)
        notes += applied.pop("notes")
        applied["mount_ns"] = mount_ns
        for name in set(sys.modules) - preloaded:  # what the walls needed is not left lying around for cells
            if "ctypes" in name or "subprocess" in name or "seccomp" in name:
                del sys.modules[name]
        self.namespace = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "context": self.corpus,
            "Document": document_type,
            "grep": self.corpus.grep,
            "search": self.corpus.search,
            # the functions that call the host, from their one declaration
            **{fn.name: functions.make_stub(fn, self.call_host) for fn in functions.REPL_FUNCTIONS},
            "cite": self.cite,
            "quote": self.quote,
            "FINAL": self.FINAL,
            "FINAL_VAR": self.FINAL_VAR,
            "SHOW_VARS": self.SHOW_VARS,
            **{var.name: None for var in functions.REPL_VARIABLES},
        }
        self.builtin_names = frozenset(self.namespace)
        self.set_variables(message.get("variables") or {})
        signal.signal(signal.SIGALRM, self._on_alarm)
        # Past RLIMIT_FSIZE a write should fail with an error the model can read, not kill the REPL.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        sys.dont_write_bytecode = True
        sys.addaudithook(make_audit_hook(scratch_dir, case_path))
        return {
            "type": protocol.READY,
            "documents": len(self.corpus),
            "notes": notes,
            "pid": os.getpid(),
            "walls": applied,
        }

    def set_variables(self, values: Any) -> None:
        """The host's declared variables (history); any other name is ignored."""
        if isinstance(values, dict):
            for name, value in values.items():
                if name in functions.VARIABLE_NAMES:
                    self.namespace[name] = value

    def _on_alarm(self, signum: int, frame: Any) -> None:
        raise CellTimeout(
            f"the cell ran longer than its {self.timeout_s:g} s wall-clock limit and was stopped"
        )

    def run_cell(self, cell_id: int, code: str) -> dict[str, Any]:
        self.final = None
        self.cell_citations = []
        capture = BoundedCapture(int(self.limits["output_chars"]))
        filename = f"<cell-{cell_id}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        error: str | None = None
        timed_out = False
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = capture
        started = time.monotonic()
        try:
            signal.setitimer(signal.ITIMER_REAL, self.timeout_s, 1.0)
            try:
                self._execute(code, filename)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except CellTimeout as exc:
            timed_out = True
            error = self._format_error(exc)
        except BaseException as exc:  # noqa: BLE001 - everything the cell raises goes back to the model
            error = self._format_error(exc)
        finally:
            sys.stdout, sys.stderr = saved
        elapsed = time.monotonic() - started
        return {
            "type": protocol.RESULT,
            "id": cell_id,
            "output": capture.render(),
            "output_chars_total": capture.total,
            "error": cut_middle(error, int(self.limits["output_chars"])) if error else None,
            "timed_out": timed_out,
            "final": self.final,
            "citations": self.cell_citations,
            "elapsed_s": round(elapsed, 4),
        }

    def _execute(self, code: str, filename: str) -> None:
        tree = ast.parse(code, filename, "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, filename, "exec"), self.namespace)
        if last is not None:
            # Like an interactive REPL: show the value of a trailing expression.
            value = eval(compile(ast.Expression(last.value), filename, "eval"), self.namespace)
            if value is not None:
                print(repr(value))

    @staticmethod
    def _format_error(exc: BaseException) -> str:
        # Show the model only the frames of its own cells, not the worker's machinery (hook, timer, API).
        report = traceback.TracebackException.from_exception(exc)
        for part in (report, *_chained(report)):
            part.stack = traceback.StackSummary.from_list(
                [f for f in part.stack if os.path.abspath(f.filename) != _WORKER_FILE]
            )
        return "".join(report.format())

    def serve(self) -> int:
        message = protocol.read_frame_fd(self.proto_in)
        if message.get("type") != protocol.INIT:
            raise protocol.ProtocolError("first frame must be init")
        try:
            ready = self.init(message)
        except WallsUnavailable as exc:  # this isolation mode cannot be built here: the host tries the next
            protocol.write_frame_fd(
                self.proto_out, {"type": protocol.FATAL, "error": str(exc), "unavailable": True}
            )
            return 1
        except BaseException as exc:  # noqa: BLE001 - report why the REPL could not start
            protocol.write_frame_fd(
                self.proto_out, {"type": protocol.FATAL, "error": self._format_error(exc)}
            )
            return 1
        protocol.write_frame_fd(self.proto_out, ready)
        while True:
            try:
                message = protocol.read_frame_fd(self.proto_in)
            except EOFError:
                return 0
            kind = message.get("type")
            if kind == protocol.SHUTDOWN:
                return 0
            if kind == protocol.SET:
                self.set_variables(message.get("variables"))
                protocol.write_frame_fd(self.proto_out, {"type": protocol.SET_OK})
                continue
            if kind != protocol.EXEC:
                raise protocol.ProtocolError(f"unexpected frame {kind!r}")
            result = self.run_cell(int(message["id"]), str(message["code"]))
            protocol.write_frame_fd(self.proto_out, result)


def main() -> int:
    # The protocol arrives on fds 0/1; move it to private descriptors so user code printing, or C code
    # writing to fd 1, can never corrupt a frame. fd 1 then joins fd 2, the host's bounded diagnostics pipe.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return Worker(proto_in, proto_out).serve()


if __name__ == "__main__":
    sys.exit(main())
