"""From a hook request's signals to an :class:`~hook_service.facts.base.Attempt`.

The only place where a raw IP or user agent is handled: both are reduced here to keyed
hashes, a country and a rounded location, and go no further (never stored, never logged).
The raw body, which holds them too, is reduced here to the keyed hash a replay is recognised
by (:meth:`AttemptFactory.once`).
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, Final

from hook_service.facts.base import Attempt, Once
from hook_service.facts.device import DeviceKeys
from hook_service.facts.geo import NOWHERE, Geo
from hook_service.facts.hashing import FactsKey, parse_ip

# Device keys are few (browser, OS, its major version, platform) and a key's hash never changes:
# the hashes of the last DEVICE_HASHES keys are kept (an HMAC is 1.3 µs a request), only of keys
# up to CACHED_KEY_CHARS (a user agent is cut at 1,024, but the platform is the caller's text):
# at most about 1.5 MB per process.
DEVICE_HASHES: Final = 1024
CACHED_KEY_CHARS: Final = 1280


def random_id() -> str:
    """A 96-bit attempt id (unpadded base64url, 16 characters)."""
    # secrets.token_urlsafe(12) without its three layers of Python calls: the same
    # os.urandom bytes, and 12 bytes encode to 16 characters with no padding to strip.
    return base64.urlsafe_b64encode(os.urandom(12)).decode("ascii")


class AttemptFactory:
    """``attempt(scope, signals, at)``: the undecided attempt of one hook request.

    ``signals`` is the request's ``signals`` object (contract 2.1: ``ip``, ``user_agent``,
    ``platform``); a missing or malformed value only leaves that part unknown."""

    def __init__(
        self,
        key: FactsKey,
        devices: DeviceKeys,
        geo: Geo,
        ids: Callable[[], str] = random_id,
    ) -> None:
        self._key = key
        self._devices = devices
        self._geo = geo
        self._ids = ids
        self._device_hash = functools.lru_cache(maxsize=DEVICE_HASHES)(key.device)

    def _device(self, device_key: str) -> str:
        if len(device_key) <= CACHED_KEY_CHARS:
            return self._device_hash(device_key)
        return self._key.device(device_key)

    def attempt(self, scope: str, signals: Mapping[str, Any], at: float) -> Attempt:
        device_key = self._devices.key(signals.get("user_agent"), signals.get("platform"))
        address = parse_ip(signals.get("ip"))
        place = NOWHERE if address is None else self._geo.locate(address)
        return Attempt(
            id=self._ids(),
            at=at,
            scope=scope,
            device=None if device_key is None else self._device(device_key),
            ip=None if address is None else self._key.ip(address),
            country=place.country,
            location=place.location,
        )

    def once(self, body: bytes, signature: str | None, window: int) -> Once | None:
        """The replay check of a hook request (issue 11 point 3): keyed hash of ``signature``
        (None when signatures are not checked) and ``body``; None when ``window`` is 0 (the
        replay check is off)."""
        if window <= 0:
            return None
        return Once(self._key.request(body, signature), window)
