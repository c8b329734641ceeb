"""The semantics of facts, shared by every :class:`~hook_service.facts.base.FactsStore`.

Pure: plain values and the caller's ``now``; no I/O. A store keeps a :class:`History` per user
(the memory store as it is, the Redis store in its own layout, decoded into one) and calls
these functions, so what counts, what is known, what expires and what is capped cannot drift
between backends.

Times are whole Unix seconds (``floor(now)``). Every entry ages out after the retention
(``HOOK_FACTS_RETENTION``) counted from its own timestamp; reads ignore entries past it even
before :func:`prune` deletes them, so the answer does not depend on when pruning ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Final

from hook_service.facts.base import REVIEW, Attempt, Facts, Proof

HOUR: Final = 3600
DAY: Final = 86_400
# travel_kmh: IP geolocation is city-level (tens of km off), so two places closer than this
# count as the same place (0 km/h), and the elapsed time is at least this many seconds: without
# the floor, two requests a second apart from neighbouring cities would need thousands of km/h.
SAME_PLACE_KM: Final = 50.0
MIN_TRAVEL_SECONDS: Final = 300
_EARTH_KM: Final = 6371.0088  # mean radius (IUGG)


@dataclass(frozen=True, slots=True)
class Limits:
    """Retention, flag lifetime and per-user caps (the caps keep the most recent entries)."""

    retention: int = 30 * DAY  # HOOK_FACTS_RETENTION
    flag_ttl: int = 7 * DAY  # HOOK_FACTS_FLAG_TTL
    devices: int = 20
    ips: int = 50
    countries: int = 20
    steps: int = 20
    attempts: int = 100  # attempt times kept (last 24 h): the counters saturate there
    scopes: int = 8  # latest attempt per scope, for proofs

    def __post_init__(self) -> None:
        if self.retention < DAY:
            raise ValueError("the facts retention must be at least one day (attempts_24h)")
        if self.flag_ttl < 1:
            raise ValueError("the flag TTL must be positive")
        caps = (self.devices, self.ips, self.countries, self.steps, self.attempts, self.scopes)
        if min(caps) < 1:
            raise ValueError("facts caps must be positive")


@dataclass(slots=True)
class Latest:
    """The latest attempt of a user for one scope and whether a proof already marked it."""

    attempt: Attempt
    proven: bool = False


@dataclass(slots=True)
class History:
    """Everything held for one user. Timestamps are whole Unix seconds."""

    seen_devices: dict[str, int] = field(default_factory=dict)  # hash -> last attempt
    seen_ips: dict[str, int] = field(default_factory=dict)
    known_devices: dict[str, int] = field(default_factory=dict)  # hash -> last proof
    known_ips: dict[str, int] = field(default_factory=dict)
    known_countries: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)  # step key -> last token issued
    verified_at: int = 0  # last proof, 0 = never
    location: tuple[int, float, float] | None = None  # (proof time, lat, lon)
    times: list[int] = field(default_factory=list)  # attempt times in arrival order
    latest: dict[str, Latest] = field(default_factory=dict)  # scope -> latest, oldest first
    flagged_until: int = 0


def seconds(now: float) -> int:
    """The whole second every stored time and every age is counted in."""
    return math.floor(now)


def live(stamp: int | None, now: int, limits: Limits) -> bool:
    """Whether an entry stamped ``stamp`` is still within the retention."""
    return stamp is not None and stamp > now - limits.retention


def facts(history: History, attempt: Attempt, now: float, limits: Limits) -> Facts:
    """The facts about ``attempt`` from ``history`` (which must not contain it yet)."""
    n = seconds(now)
    h = history
    dev, ip, country = attempt.device, attempt.ip, attempt.country
    hour, day = n - HOUR, n - DAY
    # live(t) inlined (a call per entry was most of this function): every stored time is an
    # int, and an entry is live while its time is after the cutoff.
    cutoff = n - limits.retention
    location = h.location if h.location and h.location[0] > cutoff else None
    times = h.times
    verified = h.verified_at
    return Facts(
        device_seen=dev is not None and _after(h.seen_devices.get(dev), cutoff),
        device_known=dev is not None and _after(h.known_devices.get(dev), cutoff),
        ip_seen=ip is not None and _after(h.seen_ips.get(ip), cutoff),
        ip_known=ip is not None and _after(h.known_ips.get(ip), cutoff),
        country=country,
        country_known=bool(country) and _after(h.known_countries.get(country), cutoff),
        attempts_1h=len([t for t in times if t > hour]),
        attempts_24h=len([t for t in times if t > day]),
        # The IPs of the attempts of the last 24 h are those last seen within it.
        distinct_ips_24h=len([t for t in h.seen_ips.values() if t > day]),
        verified_age=max(0, n - verified) if verified and verified > cutoff else -1,
        step_age={k: max(0, n - t) for k, t in h.steps.items() if t > cutoff},
        flagged=h.flagged_until > n,
        travel_kmh=travel_kmh(location, attempt.location, n),
    )


def _after(stamp: int | None, cutoff: int) -> bool:
    """:func:`live` with its cutoff (``now - retention``) computed once by the caller."""
    return stamp is not None and stamp > cutoff


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance between two (lat, lon) points in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    s = math.sin((lat2 - lat1) / 2) ** 2
    s += math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(s)))


def travel_kmh(
    last: tuple[int, float, float] | None, here: tuple[float, float] | None, now: int
) -> float:
    """Speed from the last verified location to ``here``; -1 when either is unknown."""
    if last is None or here is None:
        return -1.0
    km = great_circle_km((last[1], last[2]), here)
    if km < SAME_PLACE_KM:
        return 0.0
    elapsed = max(now - last[0], MIN_TRAVEL_SECONDS)  # also absorbs clock skew (negative)
    return round(km / (elapsed / HOUR), 1)


def trim_times(times: list[int], now: int, limits: Limits) -> None:
    """Drop leading times older than the 24 h window, then keep the last ``attempts``.

    Exactly what the Redis script does with its list (LPOP while old, LTRIM): arrival order
    from several hosts may be slightly unsorted, and a straggler simply waits its turn."""
    cutoff = now - DAY
    drop = 0
    while drop < len(times) and times[drop] <= cutoff:
        drop += 1
    del times[:drop]
    if len(times) > limits.attempts:
        del times[: len(times) - limits.attempts]


def record(history: History, attempt: Attempt, now: float, limits: Limits) -> None:
    """Add ``attempt``: seen device and IP, the counters, and the scope's latest attempt."""
    n = seconds(now)
    h = history
    if attempt.device is not None:
        h.seen_devices[attempt.device] = max(n, h.seen_devices.get(attempt.device, 0))
    if attempt.ip is not None:
        h.seen_ips[attempt.ip] = max(n, h.seen_ips.get(attempt.ip, 0))
    h.times.append(n)
    trim_times(h.times, n, limits)
    h.latest.pop(attempt.scope, None)
    h.latest[attempt.scope] = Latest(attempt)
    while len(h.latest) > limits.scopes:
        del h.latest[next(iter(h.latest))]


def settle(history: History, attempt: Attempt) -> bool:
    """Put the decision of ``attempt`` on the scope's latest attempt if it is still that one."""
    latest = history.latest.get(attempt.scope)
    if latest is None or latest.attempt.id != attempt.id or latest.proven:
        return False
    latest.attempt = attempt
    return True


def provable(latest: Latest | None, proof: Proof, now: int) -> bool:
    """Whether ``proof`` marks ``latest`` (see :meth:`FactsStore.prove`)."""
    if latest is None:
        return False
    a = latest.attempt
    if a.status != REVIEW or now >= seconds(a.expires_at):
        return False
    return proof.step is None or proof.step in a.steps


def prove(history: History, proof: Proof, now: float) -> bool:
    """Apply ``proof``; returns whether an attempt was marked (see ``FactsStore.prove``)."""
    n = seconds(now)
    h = history
    if proof.step is not None:
        h.steps[proof.step] = n
    latest = h.latest.get(proof.scope)
    if not provable(latest, proof, n):
        return False
    assert latest is not None
    if latest.proven:  # a retried outcome neither refreshes verified_age nor counts twice
        return True
    a = latest.attempt
    if a.device is not None:
        h.known_devices[a.device] = n
    if a.ip is not None:
        h.known_ips[a.ip] = n
    if a.country:
        h.known_countries[a.country] = n
    h.verified_at = n
    if a.location is not None:
        h.location = (n, *a.location)
    latest.proven = True
    return True


def report_fraud(history: History, now: float, limits: Limits) -> None:
    """Flag the user and forget what proofs taught (see ``FactsStore.report_fraud``)."""
    h = history
    h.flagged_until = seconds(now) + limits.flag_ttl
    for learned in (h.known_devices, h.known_ips, h.known_countries, h.steps, h.latest):
        learned.clear()
    h.verified_at = 0
    h.location = None


@dataclass(frozen=True, slots=True)
class Pruned:
    """What :func:`prune` removed: (table, name, timestamp) triples; ``table`` is a
    :class:`History` field name, ``name`` "" for the single-valued ones."""

    entries: tuple[tuple[str, str, int], ...] = ()


_TABLES: Final = (
    ("seen_devices", "devices"),
    ("seen_ips", "ips"),
    ("known_devices", "devices"),
    ("known_ips", "ips"),
    ("known_countries", "countries"),
    ("steps", "steps"),
)


_NOTHING_PRUNED: Final = Pruned()


def prune(history: History, now: float, limits: Limits) -> Pruned:
    """Delete entries past the retention, over a cap (oldest first) or an expired flag."""
    n = seconds(now)
    h = history
    cutoff = n - limits.retention  # live(t) is t > cutoff: every stored time is an int
    removed: list[tuple[str, str, int]] = []
    for name, cap_name in _TABLES:
        table: dict[str, int] = getattr(h, name)
        cap: int = getattr(limits, cap_name)
        if not table or (len(table) <= cap and min(table.values()) > cutoff):
            continue  # nothing stale, nothing over the cap: the common case, in C
        stale = [k for k, t in table.items() if t <= cutoff]
        if len(table) - len(stale) > cap:
            fresh = sorted((t, k) for k, t in table.items() if t > cutoff)
            stale += [k for _, k in fresh[: len(fresh) - cap]]
        for k in stale:
            removed.append((name, k, table.pop(k)))
    if h.verified_at and h.verified_at <= cutoff:
        removed.append(("verified_at", "", h.verified_at))
        h.verified_at = 0
    if h.location is not None and h.location[0] <= cutoff:
        removed.append(("location", "", h.location[0]))
        h.location = None
    if h.flagged_until and h.flagged_until <= n:
        removed.append(("flagged_until", "", h.flagged_until))
        h.flagged_until = 0
    return Pruned(tuple(removed)) if removed else _NOTHING_PRUNED


def copy(history: History) -> History:
    """A copy that the functions above may change without touching ``history``."""
    h = history
    return replace(
        h,
        seen_devices=dict(h.seen_devices),
        seen_ips=dict(h.seen_ips),
        known_devices=dict(h.known_devices),
        known_ips=dict(h.known_ips),
        known_countries=dict(h.known_countries),
        steps=dict(h.steps),
        times=list(h.times),
        latest={s: Latest(x.attempt, x.proven) for s, x in h.latest.items()},
    )
