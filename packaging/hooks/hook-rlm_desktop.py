"""PyInstaller hook for rlm_desktop: modules imported lazily, and the standard library the REPL offers."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules

# Commands and the window import their modules inside functions; take them all, the GUI included.
hiddenimports = collect_submodules("rlm_desktop")
# qasync finds its Qt binding with importlib at run time.
hiddenimports += ["qasync", "PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets"]
# The REPL worker loads its seccomp layer (and ctypes) only when it confines itself.
hiddenimports += ["pyseccomp", "ctypes", "ctypes.util"]
# tiktoken finds its encodings as plugins in the tiktoken_ext namespace; the cl100k table is a data file
# (without them token estimates fall back to bytes/4, see engine/tokens.py).
hiddenimports += collect_submodules("tiktoken_ext")
# `serve` names uvicorn's loop, HTTP protocol and lifespan (rlm_desktop/serve.py); uvicorn imports them, and the
# formatters of its logging config, from strings.
hiddenimports += ["uvicorn.loops.asyncio", "uvicorn.protocols.http.h11_impl", "uvicorn.lifespan.on", "uvicorn.logging"]
datas = collect_data_files("tiktoken_ext")
# An encrypted DOCX is opened with msoffcrypto only when a password is given; it picks its format reader
# by what the file holds.
hiddenimports += collect_submodules("msoffcrypto")

# The root model's code cells may import any standard module, but a bundle holds only what the app itself
# imports. These are the ones an investigation plausibly uses (text, numbers, dates, tables): without them a
# cell's `import statistics` would fail only in the desktop app.
REPL_STDLIB = [
    "array", "base64", "bisect", "calendar", "collections", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email", "enum", "fnmatch", "fractions", "functools", "hashlib", "heapq", "html", "itertools",
    "json", "math", "operator", "pprint", "random", "re", "statistics", "string", "textwrap", "time", "typing",
    "unicodedata", "urllib.parse", "uuid", "zoneinfo",
]
hiddenimports += REPL_STDLIB
