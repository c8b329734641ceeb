"""Reading the shared key set at start-up and from the CLI (synchronous, before any loop runs).

:func:`fetch` returns the sealed document Redis holds, or, asked to and when Redis holds none,
writes the first one (compare-and-set on "no version yet": of two replicas starting at the same
moment one writes, the other reads what it wrote). Decoding and keeping it is the store's part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hook_service import _redis, errors
from hook_service.keys.backends.redis_scripts import KeySetKeys, Written
from hook_service.keys.events import KeyEvent
from hook_service.keys.lifecycle import KeySet


@dataclass(frozen=True, slots=True)
class Draft:
    """A first key set ready to write: its events, its sealed document, the script's ARGV."""

    key_set: KeySet
    events: list[KeyEvent]
    body: str
    args: list[str]


First = Callable[[], Draft]
"""Makes the first key set, should Redis hold none."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """The document Redis holds; ``created`` when this call wrote it."""

    raw: str
    created: tuple[KeySet, list[KeyEvent], Written] | None = None


def fetch(
    site: _redis.RedisSite, keys: KeySetKeys, *, timeout: float, first: First | None
) -> Fetched:
    """The key set document in Redis; with ``first``, the one it makes when Redis holds none.
    Start-up errors are :class:`errors.KeyStoreError` naming ``HOOK_REDIS_URL``."""
    client = site.sync_client(timeout=timeout)

    def failed(name: str) -> errors.KeyStoreError:
        return errors.KeyStoreError(
            f"HOOK_REDIS_URL: cannot load the key set from {site.location}: {name}"
        )

    try:
        with site.guard("load", failed):
            raw = client.get(keys.set)
            if raw is None and first is not None:
                draft = first()
                written = keys.write_sync(client, draft.args)
                if written is not None:
                    return Fetched(draft.body, (draft.key_set, draft.events, written))
                raw = client.get(keys.set)
    finally:
        client.close()
    if raw is None:
        raise errors.KeyStoreError(
            f"no key set in Redis at {site.location} under {keys.prefix!r} (the service "
            "creates one on first start)"
        )
    return Fetched(raw.decode() if isinstance(raw, bytes) else str(raw))
