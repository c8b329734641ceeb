"""What the two Redis backends share: one client factory and one guard for Redis errors.

:mod:`hook_service.store.redis` (pending steps) and :mod:`hook_service.keys.backends.redis`
(the shared key set) are the only modules that use it. A Redis URL may carry a password (in
the user info or a ``password=`` query parameter); :class:`RedisSite` names the server without
it, and scrubs it from redis-py's messages before they reach a log or an error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from hook_service import errors
from hook_service.settings import redact_url

ERRORS = (RedisError, OSError)
"""What a Redis call raises when the server is unreachable, slow or refuses (timeouts are
OSErrors too)."""


def _url_secrets(url: str) -> tuple[str, ...]:
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        return ()
    return tuple({s for v in found if v for s in (v, unquote(v))})


class RedisSite:
    """One Redis server as the service talks about it and to it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = redact_url(url)
        """The URL without user info, query or fragment: safe to log."""
        self._secrets = _url_secrets(url)

    def __repr__(self) -> str:
        return f"RedisSite({self.location!r})"

    def scrub(self, message: str) -> str:
        """``message`` with every secret of the URL replaced by ``***``."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def client(
        self, *, timeout: float, max_connections: int | None = None, retry_closed: bool = False
    ) -> Redis:
        """An asyncio client: ``timeout`` bounds connecting, each reply and (with
        ``max_connections``, a blocking pool) waiting for a pooled connection, so an
        unreachable server fails fast instead of hanging requests. A bad URL is a
        :class:`errors.ConfigError` naming the server, never its password.

        ``retry_closed``: a command that fails with a connection error (typically "Connection
        closed by server" on a pooled connection after Redis restarted, which redis-py's
        check on checkout does not always see) is sent once more, at once, on a fresh
        connection. Only for callers whose every command is safe to run twice; never after
        a timeout, which would double the budget."""
        options = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # Otherwise no retries: each call fails within ~timeout, and a retried script
            # could run twice.
            "retry": (
                Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
                if retry_closed
                else Retry(NoBackoff(), 0)
            ),
            "decode_responses": True,
            # Lone surrogates (legal in JSON strings) must round-trip, not crash the encoder.
            "encoding_errors": "surrogatepass",
        }
        try:
            if max_connections is None:
                pool = ConnectionPool.from_url(self.url, **options)
            else:
                pool = BlockingConnectionPool.from_url(
                    self.url, max_connections=max_connections, timeout=timeout, **options
                )
        except ValueError as exc:
            # `from None`: the original may quote parts of the URL; the message is scrubbed.
            raise errors.ConfigError(
                f"invalid redis URL {self.location}: {self.scrub(str(exc))}"
            ) from None
        return Redis.from_pool(pool)

    def sync_client(self, *, timeout: float) -> redis.Redis:
        """A synchronous client, for start-up and the CLI."""
        return redis.Redis.from_url(
            self.url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    @contextlib.contextmanager
    def guard(
        self,
        operation: str,
        failed: Callable[[str], Exception],
        *,
        log: logging.Logger | None = None,
    ) -> Iterator[None]:
        """Turn a Redis failure inside into ``failed(<error class name>)``, the one thing a
        client may learn of it; with ``log``, first a warning naming the operation, the
        server and redis-py's message, scrubbed."""
        try:
            yield
        except ERRORS as exc:
            name = type(exc).__name__
            if log is not None:
                message = self.scrub(str(exc))
                log.warning(
                    "redis %s failed at %s: %s: %s", operation, self.location, name, message
                )
            raise failed(name) from None
