"""The Redis store's PROVE script decides what a proof marks itself (one round trip per token):
on random histories it must leave exactly what ``logic.prove`` then ``logic.prune`` make of
the same history, answer the same ``marked``, and renew the retention exactly when a field of
the history hash changes."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis.asyncio as aredis

from hook_service.facts import logic, redis_scripts
from hook_service.facts.base import Attempt, Proof
from hook_service.facts.logic import DAY, History, Latest, Limits
from hook_service.facts.redis import RedisFactsStore
from hook_service.facts.redis_layout import FIELDS, decode, encode_latest
from tests.facts.support import KEY

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

USER = "usr_proof_script"
NOW = 1_760_000_000
SCOPES = ("transfer:write", "profile:write", "prld:pwd:write")
STEPS = ((), ("kyc_review",), ("other",), ("other", "kyc_review"))
DEVICES = ("D" * 22, "e" * 22, "f_-" * 8)
PLACES = (None, (51.5, -0.12), (48.85, 2.35), (-33.87, 151.21))
LIMITS = Limits(devices=2, ips=2, steps=2)  # small caps: the prune after a proof has work


def _stamp(rng: random.Random) -> int:
    # Now (an unchanged field), recent, or past the retention (pruned).
    return rng.choice([NOW, NOW - 60, NOW - 5 * DAY, NOW - LIMITS.retention - 1])


def random_history(rng: random.Random) -> History:
    h = History()
    for table in ("seen_devices", "known_devices"):
        getattr(h, table).update({d: _stamp(rng) for d in rng.sample(DEVICES, rng.randrange(3))})
    for table in ("seen_ips", "known_ips"):
        getattr(h, table).update({d: _stamp(rng) for d in rng.sample(DEVICES, rng.randrange(3))})
    h.known_countries.update({c: _stamp(rng) for c in rng.sample(["GB", "FR"], rng.randrange(3))})
    h.steps.update({s: _stamp(rng) for s in rng.sample(["kyc_review", "other"], rng.randrange(3))})
    if rng.random() < 0.5:
        h.verified_at = _stamp(rng)
    place = rng.choice(PLACES)
    if place is not None:
        h.location = (_stamp(rng), *place)
    for scope in rng.sample(SCOPES, rng.randrange(len(SCOPES) + 1)):
        at = NOW - rng.randrange(0, 3 * DAY)
        status = rng.choice(["", "continue", "review", "review", "block"])
        window = rng.choice([1, NOW - at, 3 * DAY + 1, 3 * DAY + 1])  # ends before, at, after now
        attempt = Attempt(
            id=f"att{rng.randrange(10**6):06d}" + "x" * 10,
            at=float(at),
            scope=scope,
            device=rng.choice([None, *DEVICES]),
            ip=rng.choice([None, *DEVICES]),
            country=rng.choice(["", "GB", "DE"]),
            location=rng.choice(PLACES),
            status=status,
            steps=rng.choice(STEPS),
            expires_at=0.0 if not status else float(at + window),  # undecided: no window
        )
        h.latest[scope] = Latest(attempt, proven=status == "review" and rng.random() < 0.5)
    if rng.random() < 0.3:
        h.flagged_until = rng.choice([NOW - 1, NOW + DAY])
    return h


async def write(raw: aredis.Redis, keys: list[str], h: History) -> None:
    """``h`` in the store's layout (redis_layout), the history hash without a TTL."""
    fields: dict[Any, Any] = {}  # redis-py types its mapping invariantly
    for table, (_, prefix) in FIELDS.items():
        if table not in ("verified_at", "location", "flagged_until"):
            fields.update({prefix + k: str(t) for k, t in getattr(h, table).items()})
    if h.verified_at:
        fields["v"] = str(h.verified_at)
    if h.location is not None:
        at, lat, lon = h.location
        fields["l"] = f"{at},{lat!r},{lon!r}"
    if fields:
        await raw.hset(keys[0], mapping=fields)
    records = [encode_latest(latest) for latest in reversed(h.latest.values())]
    if records:
        await raw.rpush(keys[2], *records)
    if h.flagged_until:
        await raw.set(keys[3], str(h.flagged_until))


async def read(raw: aredis.Redis, keys: list[str]) -> History:
    state: Any = await raw.eval(redis_scripts.READ, len(keys), *keys)
    return decode(state)


def _learned(h: History) -> tuple[Any, ...]:
    return (h.known_devices, h.known_ips, h.known_countries, h.steps, h.verified_at, h.location)


async def test_the_prove_script_does_what_logic_prove_does(raw: aredis.Redis) -> None:
    rng = random.Random(15)
    store = RedisFactsStore(raw, key=KEY, limits=LIMITS)
    keys = store.keys(USER)
    outcomes = set()
    for _ in range(500):
        await raw.delete(*keys)
        await write(raw, keys, random_history(rng))
        before = await read(raw, keys)
        proof = Proof(scope=rng.choice(SCOPES), step=rng.choice([None, "kyc_review", "other"]))
        expected = logic.copy(before)
        marked = logic.prove(expected, proof, NOW)
        renewed = _learned(expected) != _learned(before)
        logic.prune(expected, NOW, LIMITS)

        assert await store.prove(USER, proof, NOW) is marked
        assert await read(raw, keys) == expected
        ttl = await raw.pttl(keys[0])
        if renewed:
            assert LIMITS.retention * 1000 - 5000 < ttl <= LIMITS.retention * 1000
        else:
            assert ttl < 0  # no write to the hash, no renewal (-1 none, -2 gone)
        outcomes.add((marked, renewed))
    # Every branch was met: marked or not, with or without a change to the history hash.
    assert outcomes == {(True, True), (True, False), (False, True), (False, False)}
