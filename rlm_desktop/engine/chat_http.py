"""Chat requests on aiohttp: about a quarter of the CPU per request of the SDK's httpx stack (issue 15).

With 16 or more sub-calls in flight the engine's own CPU per call decides how close a fan-out comes to the
model's latency: httpx's pure-Python HTTP/1.1 parser, connection pool and stream layers cost 1.6-1.9 ms per
request on the standard machine, aiohttp (C parser) 0.3-0.5 ms. aiohttp is the SDK's own optional transport
(`openai[aiohttp]`). Everything else about a request stays the SDK's: its headers (sdk_headers.py), and its error
classes built by the SDK from the response (`ChatTransport.post` hands an error status over as an httpx response).
The SDK and its HTTP library are imported only when an error comes (`errors`): a successful run never needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.request
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp

# Headers that describe the body as it came over the wire; the body handed on is already decoded.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
# As the SDK's default client: many connections (a fan-out of hundreds), idle ones closed after 5 s.
MAX_CONNECTIONS = 1000
KEEPALIVE_S = 5.0


class ChatResponse:
    """A successful reply being read: its headers, its body whole, or its lines as they come."""

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response
        self.headers = response.headers  # case-insensitive

    async def aread(self) -> bytes:
        return await self._response.read()

    def line_batches(self) -> _LineBatches:
        """The body's lines (without their ends), a list per piece received: one deadline reset per piece."""
        return _LineBatches(self._response.content)

    def at_eof(self) -> bool:
        """Whether the whole body has been received and read."""
        return self._response.content.at_eof()


class _LineBatches:
    """An async iterator of the lines of each piece of a body (a class, not an async generator: those cost a
    finalizer hook and a weak reference each, twice per sub-call)."""

    __slots__ = ("_content", "_pending", "_ended")

    def __init__(self, content: aiohttp.StreamReader):
        self._content = content
        self._pending = b""
        self._ended = False

    def __aiter__(self) -> _LineBatches:
        return self

    async def __anext__(self) -> list[str]:
        while not self._ended:
            piece = await self._content.readany()
            if not piece:  # the end of the body
                self._ended = True
                if self._pending:
                    return [self._pending.decode("utf-8", "replace")]
                break
            pending = self._pending + piece if self._pending else piece
            lines = pending.splitlines(keepends=True)  # \n, \r\n and \r, as SSE allows
            self._pending = lines.pop() if lines and not lines[-1].endswith((b"\n", b"\r")) else b""
            if lines:
                # A line is split from its bytes before it is decoded: UTF-8 never puts a line end inside
                # a character, so a character cut between two pieces is whole again here.
                return [line.decode("utf-8", "replace") for line in lines]
        raise StopAsyncIteration


class _Post:
    """One POST as an async context manager (a class, not an async generator: see _LineBatches)."""

    __slots__ = ("_transport", "_data", "_sent")

    def __init__(self, transport: ChatTransport, data: bytes):
        self._transport = transport
        self._data = data
        self._sent: Any = None

    async def __aenter__(self) -> ChatResponse:
        transport = self._transport
        try:
            self._sent = transport._session_here().post(
                transport.url, data=self._data, headers=transport.headers, proxy=transport.proxy,
                allow_redirects=True,
            )
            response = await self._sent.__aenter__()
        except aiohttp.ConnectionTimeoutError as exc:
            raise transport._connection_error("APITimeoutError") from exc
        except aiohttp.ClientConnectorError as exc:  # refused, unresolvable, TLS handshake, proxy connect
            raise transport._connection_error("APIConnectionError") from exc
        if not 200 <= response.status < 300:
            try:
                body = await response.read()
            except BaseException as exc:
                await self._sent.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            await self._sent.__aexit__(None, None, None)
            errors = transport.errors()
            raise errors.make_status_error(transport._as_httpx(errors.httpx, response, body))
        return ChatResponse(response)

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._sent.__aexit__(*exc_info)


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY), as the SDK's client."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


class SdkErrors(NamedTuple):
    """What the SDK builds its errors with: its factory of status errors from an httpx response, and its HTTP
    library (httpx, or httpx2 in newer SDKs), whose types its errors take."""

    make_status_error: Callable[[Any], Exception]
    httpx: Any


class ChatTransport:
    """POSTs JSON bodies to one URL on a pooled aiohttp session (one per event loop, made on first use).

    Errors keep the shapes the engine reads: an error status is the SDK's error class (`make_status_error`
    builds it from an httpx response holding the same status, headers and body); a failure to connect is
    `openai.APIConnectionError` or `openai.APITimeoutError` from aiohttp's connector error; anything that
    breaks once the request may have gone out is aiohttp's own error, raised as it is. `errors` gives the SDK's
    side of them and `ssl_context` the TLS context, each asked for only when first needed.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeout_s: float,
        ssl_context: Callable[[], ssl.SSLContext],
        errors: Callable[[], SdkErrors],
    ):
        self.url = url
        self.headers = headers
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self.errors = errors
        self.proxy = _proxy_for(url)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def speaks_tls(self) -> bool:
        """Whether this endpoint, or the proxy in front of it, is reached over TLS (https)."""
        return "https" in (urlsplit(self.url).scheme.lower(), urlsplit(self.proxy or "").scheme.lower())

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # A TLS context reads the whole CA bundle (25-80 ms, once per process): plain http to a local server
            # never needs one. A redirect from there to https is still verified, on aiohttp's default context.
            tls = self.ssl_context() if self.speaks_tls() else True
            connector = aiohttp.TCPConnector(
                ssl=tls, limit=MAX_CONNECTIONS, limit_per_host=0, keepalive_timeout=KEEPALIVE_S
            )
            # Our own deadlines (ModelClient._send) bound the whole call or each streamed piece; aiohttp's
            # only bounds the connect, so a refused or unreachable host fails as one that was never reached.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s)
            # trust_env stays off: it would also read ~/.netrc, which aiohttp refuses beside our Authorization
            # header; the environment's proxy is passed explicitly instead (_proxy_for).
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True)
            self._loop = loop
        return self._session

    def post(self, data: bytes) -> _Post:
        """`async with transport.post(body) as response:` a successful reply, its body still to be read."""
        return _Post(self, data)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close on it
                await session.close()

    def _request(self, httpx: Any) -> Any:
        return httpx.Request("POST", self.url)

    def _connection_error(self, name: str) -> Exception:
        import openai  # the SDK's exception classes, imported when the first error needs them

        return getattr(openai, name)(request=self._request(self.errors().httpx))

    def _as_httpx(self, httpx: Any, response: aiohttp.ClientResponse, body: bytes) -> Any:
        headers: list[tuple[str, Any]] = [
            (k, v) for k, v in response.headers.items() if k.lower() not in _WIRE_HEADERS
        ]
        return httpx.Response(response.status, headers=headers, content=body, request=self._request(httpx))
