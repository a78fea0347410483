"""The headers and URL the OpenAI SDK's AsyncOpenAI client sends with a chat request, without importing the SDK.

Importing `openai` takes 0.5-1.5 s (its hundreds of typed models) and building its HTTP client another ~120 ms,
yet chat requests go out on aiohttp (chat_http.py) and need from the SDK only what it would send. This mirrors
`AsyncOpenAI.default_headers` and its `base_url` (tests/engine/test_sdk_headers.py compares both with the SDK's
own for several environments, so a new SDK that changes them fails there); the SDK itself is imported only for
its error classes when an error reply arrives, and for the model list (`ModelClient.test_connection`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import sys

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def chat_url(base_url: str | None) -> str:
    """Where the SDK would POST a chat completion: `base_url`, else $OPENAI_BASE_URL, else OpenAI's."""
    if base_url is None:
        base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url is None:
        base_url = DEFAULT_BASE_URL
    path, separator, query = base_url.partition("?")
    if not path.endswith("/"):  # the SDK's base URL always ends its path in "/" (a query stays after it)
        base_url = path + "/" + separator + query
    return base_url.rstrip("/") + "/chat/completions"


def sdk_headers(api_key: str, in_event_loop: bool = True) -> dict[str, str]:
    """What AsyncOpenAI sends with every request (its string headers) and the bearer key, as one new dict."""
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": f"AsyncOpenAI/Python {_sdk_version()}",
        **_platform_headers(),
        # the SDK asks sniffio; the engine's clients are made on its asyncio loop
        "X-Stainless-Async": "async:asyncio" if in_event_loop else "async:false",
    }
    for name, variable in (("OpenAI-Organization", "OPENAI_ORG_ID"), ("OpenAI-Project", "OPENAI_PROJECT_ID")):
        value = os.environ.get(variable)
        if value is not None:
            headers[name] = value
    headers.update(_custom_headers(os.environ.get("OPENAI_CUSTOM_HEADERS")))
    headers["Authorization"] = f"Bearer {api_key or 'not-needed'}"  # local servers take any key; the SDK wants one
    return headers


def _custom_headers(text: str | None) -> dict[str, str]:
    """$OPENAI_CUSTOM_HEADERS as the SDK reads it: `Name: value` lines (the bearer key is ours either way)."""
    parsed: dict[str, str] = {}
    for line in (text or "").split("\n") if text is not None else ():
        colon = line.find(":")
        if colon >= 0:
            parsed[line[:colon].strip()] = line[colon + 1 :].strip()
    return {name: value for name, value in parsed.items() if name.lower() != "authorization"}


@functools.cache
def _sdk_version() -> str:
    # Its Version line read as it is: `metadata.version` parses the whole METADATA (the SDK's README, 45 kB)
    # with the email parser first.
    text = importlib.metadata.distribution("openai").read_text("METADATA") or ""
    for line in text.splitlines():
        if line.startswith("Version:"):
            return line[len("Version:") :].strip()
        if not line:
            break  # the headers end here
    return importlib.metadata.version("openai")


@functools.cache
def _platform_headers() -> dict[str, str]:
    return {
        "X-Stainless-Lang": "python",
        "X-Stainless-Package-Version": _sdk_version(),
        "X-Stainless-OS": _os_name(),
        "X-Stainless-Arch": _arch(),
        "X-Stainless-Runtime": platform.python_implementation(),
        "X-Stainless-Runtime-Version": platform.python_version(),
    }


def _os_name() -> str:
    try:
        uname = platform.uname()
        system = uname.system.lower()
        # what the SDK looks for in platform.platform() (iphone, ipad, android) is in these parts of it; its last
        # part, the C library's version, is found by reading the interpreter's binary (~5 ms)
        name = "-".join(part for part in (uname.system, uname.release, uname.machine) if part).lower()
    except Exception:
        return "Unknown"
    if "iphone" in name or "ipad" in name:
        return "iOS"
    if system == "darwin":
        return "MacOS"
    if system == "windows":
        return "Windows"
    if "android" in name:
        return "Android"
    if system in ("freebsd", "openbsd"):
        return {"freebsd": "FreeBSD", "openbsd": "OpenBSD"}[system]
    if system == "linux":
        try:
            distro = platform.freedesktop_os_release().get("ID", "").lower()
        except OSError:
            distro = ""
        return {"freebsd": "FreeBSD", "openbsd": "OpenBSD"}.get(distro, "Linux")
    full = platform.platform().lower()  # a system the SDK names by its whole platform string
    return f"Other:{full}" if full else "Unknown"


def _arch() -> str:
    try:
        machine = platform.machine().lower()
    except Exception:
        return "unknown"
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if machine == "arm":
        return "arm"
    if machine == "x86_64":
        return "x64"
    if sys.maxsize <= 2**32:
        return "x32"
    return f"other:{machine}" if machine else "unknown"
