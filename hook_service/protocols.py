"""uvicorn's HTTP/1.1 protocols with the bounds ``serve`` promises (docs/deploying.md, "Limits").

httptools has no limit on a request head and its cost grows with the square of its size; h11
has one limit for everything and answers it with a plain 400. So both are wrapped by one mixin
that counts the bytes of each request head as they arrive, before the parser sees them:

* a request line over :data:`LINE_LIMIT` is refused with 414 ``uri_too_long``, header fields
  over :data:`FIELDS_LIMIT` in total with 431 ``headers_too_large`` (RFC 6585 sec. 5), once
  the read that crosses the bound arrives and before the parser is given it;
* a request whose head and body have not arrived within ``HOOK_READ_TIMEOUT`` of its first
  byte (of the connection, for the first request) gets 408 ``request_timeout``;
* a connection beyond ``HOOK_MAX_CONNECTIONS`` open on its listener in this worker gets one
  request, then is closed: 503 ``overloaded``, except the hook, which is still answered.

A refused connection is half-closed after the answer and what the client still sends is read
and dropped for a moment (:data:`LINGER_SECONDS`, :data:`LINGER_BYTES`), so that the client
reads the answer instead of a reset. The gauge does not parse HTTP: it looks for the end of the
request line and for the blank line that ends the head, the loosest reading either parser has.
A request pipelined into the same read as the end of the previous one is counted from the next
read on (at most one read of up to 256 KiB more, parsed once: linear, not quadratic).
"""

from __future__ import annotations

import asyncio
import http
import json
from collections import Counter
from typing import Any, Literal

import h11
from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hook_service.errors import HeadersTooLarge, HookError, Overloaded, RequestTimeout, UriTooLong

LINE_LIMIT = 8 * 1024
FIELDS_LIMIT = 16 * 1024
LINGER_SECONDS = 1.0
LINGER_BYTES = 64 * 1024
HOOK_PATH = "/hooks/stepup"

Phase = Literal["idle", "head", "body"]


class HookConfig(Config):
    """uvicorn's :class:`~uvicorn.Config` plus the limits the guarded protocols read.

    Pickled into each worker with the rest of the configuration; ``open_connections`` counts
    this worker's open connections by listener port."""

    def __init__(self, app: Any, *, read_timeout: float, max_connections: int, **kw: Any) -> None:
        super().__init__(app, **kw)
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.open_connections: Counter[int] = Counter()


class HeadGauge:
    """The size of one request head so far, from the raw bytes (CR LF or bare LF lines)."""

    __slots__ = ("ended", "fields", "line", "line_done", "started", "tail")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started = False  # a byte other than CR or LF seen (RFC 9112 sec. 2.2)
        self.line = 0
        self.line_done = False
        self.fields = 0
        self.tail = b""  # the last bytes of the head so far: a blank line may span two reads
        self.ended = False

    def feed(self, data: bytes) -> HookError | None:
        """Count ``data``; the error to answer once a bound is crossed, else ``None``."""
        if self.ended:
            return None
        if not self.started:
            stripped = data.lstrip(b"\r\n")
            self.line += len(data) - len(stripped)  # empty lines before it count as its own
            self.started = bool(stripped)
            data = stripped
        if not self.line_done:
            end = data.find(b"\n")
            self.line += len(data) if end < 0 else end + 1
            if self.line > LINE_LIMIT:
                return UriTooLong(f"the request line exceeds {LINE_LIMIT} bytes")
            if end < 0:
                return None
            self.line_done = True
            data = data[end + 1 :]
            self.tail = b"\n"  # a blank line right after the request line ends the head
        window = self.tail + data
        found = ((window.find(b"\n\n"), 2), (window.find(b"\n\r\n"), 3))
        ends = [at + size for at, size in found if at >= 0]
        if ends:
            self.ended = True
            self.fields += min(ends) - len(self.tail)
        else:
            self.fields += len(data)
            self.tail = window[-2:]
        if self.fields > FIELDS_LIMIT:
            return HeadersTooLarge(f"the request header fields exceed {FIELDS_LIMIT} bytes")
        return None


def error_response(error: HookError) -> bytes:
    """``error`` as a whole HTTP/1.1 response that closes the connection."""
    body = json.dumps(error.to_json(), separators=(",", ":")).encode()
    status = f"{error.status_code} {http.HTTPStatus(error.status_code).phrase}"
    head = [f"HTTP/1.1 {status}".encode(), *(b"%s: %s" % pair for pair in _headers(body))]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]


class OverCap:
    """The ASGI app of a connection over the cap: one request, then the connection closes.

    The hook is still served (Prelude never gets a 5xx for a signed request: it gets the
    decision or the policy's ``on_error`` answer); any other path gets 503 ``overloaded``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == HOOK_PATH:

            async def closing(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = [*message.get("headers", ()), (b"connection", b"close")]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, closing)
            return
        error = Overloaded("too many open connections on this listener; retry shortly")
        body = json.dumps(error.to_json(), separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": 503, "headers": _headers(body)})
        await send({"type": "http.response.body", "body": body})


class _Bounds:
    """Mixed in before a uvicorn protocol class; the subclasses below report the parser's
    progress through :meth:`_head_complete`, :meth:`_message_complete` and :meth:`_begin`."""

    # From the uvicorn protocol this is mixed into (config is a HookConfig):
    config: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    app: Any

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._gauge = HeadGauge()
        self._phase: Phase = "idle"
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._dropped = 0
        sockname = transport.get_extra_info("sockname")
        self._listener: int = sockname[1] if isinstance(sockname, tuple) else 0
        self.config.open_connections[self._listener] += 1
        if self.config.open_connections[self._listener] > self.config.max_connections:
            self.app = OverCap(self.app)  # this connection only; answered once its head is in
        self._begin()  # the first request's time starts with the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.config.open_connections[self._listener] -= 1
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        if self._phase == "idle":
            self._begin()
        if self._phase == "head":
            error = self._gauge.feed(data)
            if error is not None:
                self._refuse(error)
                return
        super().data_received(data)  # type: ignore[misc]

    def _begin(self) -> None:
        """A request head starts (its first byte, or a connection that has sent nothing)."""
        self._phase = "head"
        self._gauge.reset()
        if self._timer is None:
            self._timer = self.loop.call_later(self.config.read_timeout, self._timed_out)

    def _head_complete(self) -> None:
        self._phase = "body"

    def _message_complete(self) -> None:
        self._phase = "idle"
        self._disarm()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self._refuse(RequestTimeout(f"the request did not arrive within {self._timeout_text}"))

    @property
    def _timeout_text(self) -> str:
        return f"{self.config.read_timeout:g} s"

    def _refuse(self, error: HookError) -> None:
        """Answer ``error`` when no other answer is owed on this connection, then close."""
        self._refused = True
        self._disarm()
        cycle = self.cycle
        idle = cycle is None or cycle.response_complete
        reading_body = self._phase == "body" and not cycle.response_started
        if not self.transport.is_closing():
            if idle or reading_body:
                self.transport.write(error_response(error))
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() answers http.disconnect
                cycle.message_event.set()
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)


class BoundedHttpToolsProtocol(_Bounds, HttpToolsProtocol):
    """httptools (the default: uvicorn[standard] brings it), whose callbacks report the
    parser's progress."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != "head":  # pipelined behind the previous request
            self._begin()

    def on_headers_complete(self) -> None:
        self._head_complete()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._message_complete()


class _TrackedConnection(h11.Connection):
    """An h11 connection telling its protocol when a request head and a message end."""

    protocol: BoundedH11Protocol

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            self.protocol._head_complete()
        elif isinstance(event, h11.EndOfMessage):
            self.protocol._message_complete()
        return event


class BoundedH11Protocol(_Bounds, H11Protocol):
    """h11, with its own buffer bound set to the whole head as a second line of defence."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _TrackedConnection(h11.SERVER, LINE_LIMIT + FIELDS_LIMIT)
        self.conn.protocol = self


PROTOCOLS: dict[str, type[asyncio.Protocol]] = {
    "httptools": BoundedHttpToolsProtocol,
    "h11": BoundedH11Protocol,
}
