"""The lower bound of a Redis client for ``bench/redis_clients.py`` (issue 15.4): EVALSHA over
one asyncio stream, replies parsed by ``hiredis.Reader``. Bench only: no Sentinel, no Cluster."""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis

from .servers import HOST

Args = Sequence[int | str]
Call = Callable[[Sequence[str], Args], Awaitable[Any]]
Link = tuple[asyncio.StreamWriter, deque[asyncio.Future[Any]]]  # a connection, its callers


class RawClient:
    """The lower bound: EVALSHA (EVAL after NOSCRIPT) over one asyncio stream, every caller
    multiplexed on it (replies come back in order), replies parsed by ``hiredis.Reader``; a
    per-call timeout, a new connection after the server closed one (a call that met the close
    is sent once more, as the store's ``retry_closed``). No Sentinel, no Cluster."""

    def __init__(self, port: int, script: str, timeout: float) -> None:
        self._port, self._script, self._timeout = port, script, timeout
        self._sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis's name)
        self._link: Link | None = None
        self._connecting = asyncio.Lock()
        self._readers: set[asyncio.Task[None]] = set()

    async def evalsha(self, keys: Sequence[str], args: Args) -> Any:
        try:
            reply = await self._send("EVALSHA", self._sha, len(keys), *keys, *args)
        except ConnectionError:
            reply = await self._send("EVALSHA", self._sha, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._send("EVAL", self._script, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    async def _send(self, *command: str | int) -> Any:
        async with asyncio.timeout(self._timeout):
            writer, pending = self._link or await self._connect()
            future = asyncio.get_running_loop().create_future()
            pending.append(future)
            # hiredis's stub types the command as a 1-tuple.
            writer.write(hiredis.pack_command(command))  # type: ignore[arg-type]
            return await future

    async def _connect(self) -> Link:
        async with self._connecting:  # concurrent callers share the one new connection
            if self._link is None:
                reader, writer = await asyncio.open_connection(HOST, self._port)
                self._link = (writer, deque())
                task = asyncio.create_task(self._read(reader, self._link))
                self._readers.add(task)
                task.add_done_callback(self._readers.discard)
            return self._link

    async def _read(self, reader: asyncio.StreamReader, link: Link) -> None:
        parser = hiredis.Reader(encoding="utf-8", errors="surrogatepass")
        writer, pending = link
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    future = pending.popleft()
                    if not future.done():  # else its caller timed out: the reply is dropped
                        future.set_result(reply)
        except OSError:
            pass
        finally:
            if self._link is link:
                self._link = None
            writer.close()
            for future in pending:
                if not future.done():
                    future.set_exception(ConnectionError("connection closed by server"))

    async def __aenter__(self) -> Call:
        return self.evalsha

    async def __aexit__(self, *_: object) -> None:
        if self._link is not None:
            self._link[0].close()
        for task in list(self._readers):
            await task
