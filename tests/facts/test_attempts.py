"""The attempts of requests (facts/attempts.py): random 96-bit ids, valid Attempt ids, and the
device hash of each as the facts key makes it."""

from __future__ import annotations

import base64
import random

from hook_service.facts.attempts import CACHED_KEY_CHARS, DEVICE_HASHES, AttemptFactory, random_id
from hook_service.facts.base import HASH, Attempt
from hook_service.facts.geo import Geo
from tests.facts.support import (
    CHROME_130_WIN,
    CHROME_131_MAC,
    FIREFOX_WIN,
    KEY,
    SAFARI_IOS_17,
    device_keys,
)


def test_attempt_ids_are_96_random_bits_in_unpadded_base64url() -> None:
    ids = {random_id() for _ in range(2000)}
    assert len(ids) == 2000  # 2000 draws of 96 bits: a repeat would be a broken generator
    for value in ids:
        assert len(value) == 16 and HASH.fullmatch(value) and "=" not in value
        assert len(base64.urlsafe_b64decode(value)) == 12
    # Every id is one an Attempt accepts.
    assert Attempt(id=random_id(), at=1.0, scope="transfer:write").id
    # Both alphabet ends show up over 2000 ids (not a hex or a standard-base64 encoding).
    joined = "".join(ids)
    assert "-" in joined and "_" in joined


def test_the_device_hash_is_the_keyed_hash_of_the_device_key_cached_or_not() -> None:
    # The factory keeps the hashes of the last DEVICE_HASHES device keys: whether a key's
    # hash comes from there or is made again (more distinct keys than that, in a random order
    # with repeats) it is KEY.device of the key, as before the cache.
    devices = device_keys()
    factory = AttemptFactory(KEY, devices, Geo())
    known = [CHROME_130_WIN, CHROME_131_MAC, FIREFOX_WIN, SAFARI_IOS_17]
    unknown = [f"bench-client/{n}" for n in range(DEVICE_HASHES + 200)]  # raw keys
    rng = random.Random(14)
    for _ in range(3 * DEVICE_HASHES):
        ua = rng.choice(known) if rng.random() < 0.5 else rng.choice(unknown)
        platform = rng.choice(["WEB", "ios", "", None])
        attempt = factory.attempt("transfer:write", {"user_agent": ua, "platform": platform}, 1.0)
        device_key = devices.key(ua, platform)
        assert device_key is not None and attempt.device == KEY.device(device_key)
    assert factory.attempt("transfer:write", {"platform": "WEB"}, 1.0).device is None
    # Bounded: never more than DEVICE_HASHES keys, and a key longer than CACHED_KEY_CHARS (a
    # long platform: the caller's text) is hashed each time, not kept.
    cached = factory._device_hash.cache_info()
    assert cached.maxsize == DEVICE_HASHES and cached.currsize == DEVICE_HASHES
    factory._device_hash.cache_clear()
    long = {"user_agent": CHROME_130_WIN, "platform": "P" * (CACHED_KEY_CHARS + 1)}
    attempt = factory.attempt("transfer:write", long, 1.0)
    device_key = devices.key(long["user_agent"], long["platform"])
    assert device_key is not None and attempt.device == KEY.device(device_key)
    assert factory._device_hash.cache_info().currsize == 0
