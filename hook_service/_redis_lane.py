"""The lane: a client's script calls (``EVALSHA``) on one multiplexed connection of its own.

redis-py spends about 60 to 120 µs of CPU on each asyncio call (a pool checkout, a task, its
parser's reads), and about 30 µs per call when 8 calls of one loop turn share a pipeline; on
one connection whose replies a ``hiredis.Reader`` parses as they arrive, a call costs 12 to
16 µs at 8 callers and 30 to 60 µs alone (``bench/redis_clients.py``, "The Redis round trip" in
docs/benchmarks.md; issue 15 point 4). :class:`Lane` is that connection, for
:class:`~hook_service._redis_batch.BatchingRedis` (one server, or the master a set of Sentinels
names); every other command stays on redis-py, on the client's pool.

What a caller relies on, each the same as through redis-py:

- **Connecting.** A lane connection is made by the client's own pool (``make_connection``) and
  redis-py's ``connect()``: the URL's host, port or unix socket, TLS, user name, password,
  database and client name, the connect timeout, and with Sentinel the master the Sentinels name
  now. It is made at the first call and again after a drop; only then does the lane take over
  its transport (it speaks RESP2, the protocol those clients use).
- **Replies.** Redis answers the commands of one connection in order, so the n-th reply is the
  n-th caller's. It is parsed by a ``hiredis.Reader`` made as redis-py makes its own: decoded
  with the client's encoding and error handler, error replies turned into redis-py's exception
  classes (``NOSCRIPT`` is a ``NoScriptError``, so ``AsyncScript`` loads the script and calls
  again). A caller that gave up (a cancel, its own deadline) keeps its place: its reply is read
  and dropped. The calls of one loop turn go out in one write.
- **Timeouts.** Each call is answered within the client's ``socket_timeout`` of its write (a
  connect first is bounded by the connect timeout) or fails with redis-py's ``TimeoutError``;
  the connection is then dropped (a late reply must not reach a
  later caller) and the calls still waiting on it fail the same way.
- **Drops.** A connection closed by the server, an error reply of the ``ConnectionError``
  kind, or ``READONLY`` on a Sentinel master (redis-py's "The previous master is now a
  slave": the master was demoted) fail the calls waiting on it with a ``ConnectionError``; with
  ``retry_closed`` each is sent once more, on a fresh connection (never after a timeout).
- **Counts.** Each call is recorded as redis-py records a command (its observability hooks).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool, DefaultParser
from redis.asyncio.observability.recorder import record_error_count, record_operation_duration
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# redis-py's words for the same events (redis/_parsers/socket.py, asyncio/sentinel.py).
CLOSED = "Connection closed by server."
DEMOTED = "The previous master is now a slave"

_Entry = tuple[list[bytes], "asyncio.Future[Any]"]


class LaneClosed(RedisConnectionError):
    """A call failed by :meth:`Lane.aclose`: never sent again (``retry_closed`` retries a
    connection the *server* closed), so that nothing connects again behind a close."""


def suits(pool: ConnectionPool) -> bool:
    """The lane can speak for ``pool``'s connections: RESP2, redis-py's own handshake."""
    kwargs = pool.connection_kwargs
    return str(kwargs.get("protocol") or 2) == "2" and not kwargs.get("redis_connect_func")


class _Link(asyncio.Protocol):
    """One connection of a lane: the callers waiting for its replies, in the order sent."""

    def __init__(self, lane: Lane, conn: AbstractConnection, writer: asyncio.StreamWriter) -> None:
        self.lane, self.conn = lane, conn
        # Kept: the stream redis-py opened still owns the transport's other end.
        self.writer, self.transport = writer, writer.transport
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.sent = self.answered = 0
        self.dropped = False
        self.lost = asyncio.get_running_loop().create_future()
        encoder = conn.encoder
        options: dict[str, Any] = {
            "protocolError": InvalidResponse,
            "replyError": DefaultParser.parse_error,
        }
        if encoder.decode_responses:  # as redis-py's _AsyncHiredisParser.on_connect
            options |= {"encoding": encoder.encoding, "errors": encoder.encoding_errors}
        self.reader = hiredis.Reader(**options)
        path = getattr(conn, "path", "")
        self.where = path or f"{getattr(conn, 'host', '')}:{getattr(conn, 'port', '')}"

    def send(self, data: bytes, futures: list[asyncio.Future[Any]]) -> None:
        self.transport.write(data)
        self.waiting.extend(futures)
        self.sent += len(futures)
        timeout = self.lane.timeout
        if timeout is not None:  # one timer per write: these calls share their deadline
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time() + timeout, self._expire, self.sent)

    def _expire(self, sent: int) -> None:
        if not self.dropped and self.answered < sent:
            self.drop(RedisTimeoutError, f"Timeout reading from {self.where}")

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        while not self.dropped:
            try:
                reply = reader.gets()
            except UnicodeDecodeError as exc:
                # One reply not in the client's encoding: hiredis has read all of it and is in
                # step with the stream, so only its caller fails (as through redis-py); the
                # calls behind it ran and their replies follow.
                if not waiting:
                    self.drop(RedisConnectionError, f"{self.where}: unexpected reply")
                    return
                self.answered += 1
                if not (future := waiting.popleft()).done():
                    future.set_exception(exc)
                continue
            except Exception as exc:  # a protocol error: the stream cannot be read on
                # redis-py's read raises it to the caller whose reply it is, and disconnects.
                if waiting and not (future := waiting.popleft()).done():
                    future.set_exception(exc)
                self.drop(RedisConnectionError, f"{self.where}: unreadable reply")
                return
            if reply is False:  # RESP2 has no false: the reader needs more bytes
                return
            if not waiting:  # a reply nobody asked for: the stream cannot be trusted
                self.drop(RedisConnectionError, f"{self.where}: unexpected reply")
                return
            self.answered += 1
            future = waiting.popleft()
            # redis-py's hiredis parser raises these (and its read then disconnects).
            if isinstance(reply, RedisConnectionError) or (
                isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError)
            ):
                error = reply if isinstance(reply, RedisConnectionError) else reply[0]
                if not future.done():
                    future.set_exception(error)
                self.drop(RedisConnectionError, f"{self.where}: {error}")
            elif isinstance(reply, ReadOnlyError) and self.lane.demotes:
                if not future.done():
                    future.set_exception(RedisConnectionError(DEMOTED))
                self.drop(RedisConnectionError, DEMOTED)
            elif future.done():  # its caller gave up: the reply is dropped
                continue
            elif isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        # Closed by Lane.aclose: its calls are not sent again.
        kind = LaneClosed if self.lane.closing else RedisConnectionError
        if exc is None:
            self.drop(kind, CLOSED)
        else:  # redis-py's words for an OSError while reading
            self.drop(kind, f"Error while reading from {self.where} : {exc.args}")

    def drop(self, kind: type[Exception], message: str) -> None:
        """Close the connection and fail every call still waiting on it with ``kind``."""
        if self.dropped:
            return
        self.dropped = True
        self.lane.forget(self)
        # The callers first: nothing may leave them waiting past their timeout.
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(kind(message))
        self.transport.abort()


class Lane:
    """The ``EVALSHA`` calls of one client on one multiplexed connection (the module says
    what it keeps). ``retry_closed``: as :meth:`~hook_service._redis.RedisSite.client`'s."""

    def __init__(self, pool: ConnectionPool, *, retry_closed: bool) -> None:
        self._pool, self._retry = pool, retry_closed
        # Never connected: it packs as the pool's connections do (hiredis, redis-py for what
        # hiredis refuses), and holds their settings.
        self._packer: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
        self.timeout: float | None = self._packer.socket_timeout
        self.demotes = isinstance(pool, SentinelConnectionPool) and pool.is_master
        """``READONLY`` means the master was demoted: drop the connection, as redis-py does."""
        self._link: _Link | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._outbox: list[_Entry] = []
        self.closing = False
        """During :meth:`aclose`: a call fails at once instead of connecting again behind it."""

    async def call(self, args: tuple[Any, ...]) -> Any:
        """Send one command (``args`` as ``execute_command`` takes them) and return its reply;
        raise its error reply or the connection's failure as redis-py's exception classes."""
        packed = self._packer.pack_command(*args)
        started = time.monotonic()
        retried = 0
        try:
            try:
                reply = await self._send(packed)
            except RedisConnectionError as exc:
                if not self._retry or isinstance(exc, LaneClosed):
                    raise
                retried = 1
                reply = await self._send(packed)
        except Exception as exc:
            host, port = self._address()
            await record_error_count(host, port, host, port, exc, retried, is_internal=False)
            raise
        host, port = self._address()
        await record_operation_duration(
            args[0], time.monotonic() - started, host, port, str(self._packer.db)
        )
        return reply

    def _address(self) -> tuple[Any, Any]:
        conn = self._link.conn if self._link is not None else self._packer
        return getattr(conn, "host", None), getattr(conn, "port", None)

    def _send(self, packed: list[bytes]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if self.closing:
            future.set_exception(LaneClosed(CLOSED))
            return future
        if not self._outbox and self._connecting is None:
            # The first call of this turn: written once the coroutines already woken in it
            # (the other requests) have had their turn and added theirs.
            future.get_loop().call_soon(self._flush)
        self._outbox.append((packed, future))
        return future

    def _flush(self) -> None:
        link = self._link
        if self.closing:  # aclose() fails what is queued
            return
        if link is not None:
            self._write(link)
        elif self._outbox and self._connecting is None:
            # Its own task: a caller giving up never cancels the connection the others wait for.
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    def _write(self, link: _Link) -> None:
        outbox, self._outbox = self._outbox, []
        parts: list[bytes] = []
        futures = []
        for packed, future in outbox:
            if not future.done():  # else its caller gave up before the write: not sent
                parts += packed
                futures.append(future)
        if futures:
            link.send(b"".join(parts), futures)

    async def _connect(self) -> None:
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            # redis-py's own connect: address (Sentinel's master now), TLS, AUTH, SELECT,
            # client name, its timeouts; then the stream it opened is ours.
            await conn.connect()  # type: ignore[no-untyped-call]
            writer, reader = conn._writer, conn._reader
            if writer is None or reader is None or reader.at_eof() or writer.is_closing():
                raise RedisConnectionError(CLOSED)
        except BaseException as exc:  # cancelled too (aclose): the calls fail, not wait
            if self._connecting is asyncio.current_task():
                self._connecting = None
            self._fail_outbox(exc if isinstance(exc, Exception) else RedisConnectionError(CLOSED))
            await conn.disconnect(nowait=True)
            if not isinstance(exc, Exception):
                raise
            return
        # Detached from redis-py's connection (which would close it when collected).
        conn._writer = conn._reader = None
        link = _Link(self, conn, writer)
        writer.transport.set_protocol(link)
        self._link, self._connecting = link, None
        self._write(link)

    def _fail_outbox(self, exc: Exception) -> None:
        outbox, self._outbox = self._outbox, []
        for _, future in outbox:
            if not future.done():
                future.set_exception(exc)

    def forget(self, link: _Link) -> None:
        """``link`` was dropped: the next call connects again."""
        if self._link is link:
            self._link = None

    async def aclose(self) -> None:
        """Close the connection (and a connect under way); calls waiting on it fail, and so
        do calls made until it returns (none of them connects again). The lane may be used
        again afterwards, as a redis-py client may: its next call connects."""
        self.closing = True
        try:
            self._fail_outbox(LaneClosed(CLOSED))  # queued, never written
            # Reset here: a connect task cancelled before its first step never runs its own
            # clean-up, and would otherwise be taken for a connect under way for ever.
            task, self._connecting = self._connecting, None
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if (link := self._link) is not None:
                self._link = None
                link.transport.close()  # graceful: connection_lost follows
                try:
                    async with asyncio.timeout(self._packer.socket_connect_timeout):
                        await asyncio.shield(link.lost)
                except TimeoutError:
                    link.transport.abort()
                link.drop(LaneClosed, CLOSED)
        finally:
            self.closing = False
