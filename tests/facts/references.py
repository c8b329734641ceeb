"""The facts functions as they were before their hot paths were cut short (docs/benchmarks.md,
"What was changed on the hot path"), kept as references: the tests compare the service's
functions with these on random histories, values and malformed replies."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from hook_service.facts.base import Attempt, Facts
from hook_service.facts.logic import (
    _TABLES,
    DAY,
    HOUR,
    History,
    Latest,
    Limits,
    Pruned,
    live,
    seconds,
    travel_kmh,
)
from hook_service.facts.redis_layout import _TABLES as PREFIXES
from hook_service.facts.redis_layout import decode_latest, decode_times, encode_latest


def facts(history: History, attempt: Attempt, now: float, limits: Limits) -> Facts:
    n = seconds(now)
    h = history
    dev, ip, country = attempt.device, attempt.ip, attempt.country
    hour, day = n - HOUR, n - DAY
    location = h.location if h.location and live(h.location[0], n, limits) else None
    return Facts(
        device_seen=dev is not None and live(h.seen_devices.get(dev), n, limits),
        device_known=dev is not None and live(h.known_devices.get(dev), n, limits),
        ip_seen=ip is not None and live(h.seen_ips.get(ip), n, limits),
        ip_known=ip is not None and live(h.known_ips.get(ip), n, limits),
        country=country,
        country_known=bool(country) and live(h.known_countries.get(country), n, limits),
        attempts_1h=sum(1 for t in h.times if t > hour),
        attempts_24h=sum(1 for t in h.times if t > day),
        distinct_ips_24h=sum(1 for t in h.seen_ips.values() if t > day),
        verified_age=max(0, n - h.verified_at) if live(h.verified_at or None, n, limits) else -1,
        step_age={k: max(0, n - t) for k, t in h.steps.items() if live(t, n, limits)},
        flagged=h.flagged_until > n,
        travel_kmh=travel_kmh(location, attempt.location, n),
    )


def prune(history: History, now: float, limits: Limits) -> Pruned:
    n = seconds(now)
    h = history
    removed: list[tuple[str, str, int]] = []
    for name, cap_name in _TABLES:
        table: dict[str, int] = getattr(h, name)
        stale = [k for k, t in table.items() if not live(t, n, limits)]
        cap: int = getattr(limits, cap_name)
        if len(table) - len(stale) > cap:
            fresh = sorted((t, k) for k, t in table.items() if live(t, n, limits))
            stale += [k for _, k in fresh[: len(fresh) - cap]]
        for k in stale:
            removed.append((name, k, table.pop(k)))
    if h.verified_at and not live(h.verified_at, n, limits):
        removed.append(("verified_at", "", h.verified_at))
        h.verified_at = 0
    if h.location is not None and not live(h.location[0], n, limits):
        removed.append(("location", "", h.location[0]))
        h.location = None
    if h.flagged_until and h.flagged_until <= n:
        removed.append(("flagged_until", "", h.flagged_until))
        h.flagged_until = 0
    return Pruned(tuple(removed))


def settled(
    attempt: Attempt, status: str, steps: tuple[str, ...] = (), expires_at: float = 0.0
) -> Attempt:
    return replace(attempt, status=status, steps=steps, expires_at=expires_at)


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> Iterator[tuple[str, str]]:
    items = [_text(v) for v in flat]
    return zip(items[0::2], items[1::2], strict=True)


def decode(state: list[Any]) -> History:
    held, times, latest, flag = state
    h = History()
    for field, value in _pairs(held):
        kind, name = field[0], field[1:]
        if kind == "l":
            at, lat, lon = value.split(",")
            h.location = (int(at), float(lat), float(lon))
        elif kind == "v":
            h.verified_at = int(value)
        else:
            table: dict[str, int] = getattr(h, PREFIXES[kind])
            table[name] = int(value)
    h.times = decode_times(_text(times)) if times else []
    for record in reversed(latest):
        decoded = decode_latest(_text(record))
        h.latest[decoded.attempt.scope] = decoded
    h.flagged_until = int(_text(flag)) if flag else 0
    return h


# Random histories around every boundary: stamps at, just before and just after the retention
# cutoff and the 1 h and 24 h windows, tables under, at and over their caps.
NOW = 1_760_000_000
NAMES = (*(c * 16 for c in "abcdefgh"), "A_-" * 6, "kyc_review", "z")
COUNTRIES = ("GB", "FR", "DE", "ES", "US")
SCOPES = ("transfer:write", "profile:write", "prld:pwd:write", "a", "b.c")
LIMITS = (Limits(), Limits(devices=2, ips=3, countries=1, steps=2, attempts=5, scopes=2))


def stamp(rng: random.Random, limits: Limits) -> int:
    cutoff = NOW - limits.retention
    return rng.choice(
        [
            NOW,
            NOW + 5,
            NOW - 1,
            NOW - HOUR,
            NOW - HOUR + 1,
            NOW - DAY,
            NOW - DAY + 1,
            cutoff - 1,
            cutoff,
            cutoff + 1,
            rng.randrange(cutoff - DAY, NOW + 10),
        ]
    )


def attempt(rng: random.Random, limits: Limits, scope: str | None = None) -> Attempt:
    status = rng.choice(["", "continue", "review", "block"])
    at = float(stamp(rng, limits)) + rng.choice([0.0, 0.25, 0.999])
    return Attempt(
        id=f"{rng.randrange(10**16):016d}",
        at=at,
        scope=scope or rng.choice(SCOPES),
        device=rng.choice([None, *NAMES[:6]]),
        ip=rng.choice([None, *NAMES[2:9]]),
        country=rng.choice(["", *COUNTRIES]),
        location=rng.choice([None, (51.51, -0.09), (-33.87, 151.21), (0.0, -180.0)]),
        status=status,
        steps=rng.choice([(), ("kyc_review",), ("z", "kyc_review")]) if status else (),
        expires_at=0.0 if not status else at + rng.choice([1, 600, DAY]),
    )


def history(rng: random.Random, limits: Limits) -> History:
    h = History()
    for table, pool in (
        (h.seen_devices, NAMES),
        (h.seen_ips, NAMES),
        (h.known_devices, NAMES),
        (h.known_ips, NAMES),
        (h.known_countries, COUNTRIES),
        (h.steps, NAMES[-3:]),
    ):
        table.update({k: stamp(rng, limits) for k in rng.sample(pool, rng.randrange(len(pool)))})
    if rng.random() < 0.6:
        h.verified_at = stamp(rng, limits)
    if rng.random() < 0.5:
        h.location = (stamp(rng, limits), rng.uniform(-90, 90), rng.uniform(-180, 180))
    h.times = sorted(stamp(rng, limits) for _ in range(rng.randrange(12)))
    if h.times and rng.random() < 0.3:  # arrival order from several hosts: a straggler
        h.times.insert(rng.randrange(len(h.times)), stamp(rng, limits))
    for scope in rng.sample(SCOPES, rng.randrange(len(SCOPES) + 1)):
        a = attempt(rng, limits, scope)
        h.latest[scope] = Latest(a, proven=a.status == "review" and rng.random() < 0.5)
    if rng.random() < 0.4:
        h.flagged_until = rng.choice([NOW - 1, NOW, NOW + 1, NOW + DAY])
    return h


def reply(h: History, rng: random.Random) -> list[Any]:
    """``h`` as the READ part of the scripts returns it (redis-py, bytes replies): the hash's
    fields in a random order, as HGETALL gives them."""
    fields: list[tuple[str, str]] = []
    for prefix, table in PREFIXES.items():
        fields += [(prefix + k, str(t)) for k, t in getattr(h, table).items()]
    if h.verified_at:
        fields.append(("v", str(h.verified_at)))
    if h.location is not None:
        at, lat, lon = h.location
        fields.append(("l", f"{at},{lat!r},{lon!r}"))
    rng.shuffle(fields)
    flat = [part.encode() for pair in fields for part in pair]
    times = ",".join(str(t - b) for b, t in zip([0, *h.times], h.times, strict=False))
    latest = [encode_latest(x).encode() for x in reversed(h.latest.values())]
    flag = str(h.flagged_until).encode() if h.flagged_until else None
    return [flat, times.encode() if times else None, latest, flag]
