"""What a facts store answers about what it holds: ``GET`` and ``DELETE
/admin/users/{user_id}/facts`` (issue 11 point 4). Pure, from a :class:`History`, so both
stores answer alike; hashes, counts and ages in seconds, never a raw value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hook_service.facts.logic import DAY, HOUR, History, Latest, Limits, live, seconds


def _open(h: History, n: int) -> Iterator[tuple[str, Latest]]:
    """The latest attempts still in their proof window."""
    return ((s, x) for s, x in h.latest.items() if n < seconds(x.attempt.expires_at))


def inventory(history: History, now: float, limits: Limits) -> dict[str, int]:
    """Counts of what is in force for the user (what :meth:`FactsStore.erase` answers)."""
    n = seconds(now)
    h = history
    held = [
        {k for k, t in table.items() if live(t, n, limits)}
        for table in (h.seen_devices, h.known_devices, h.seen_ips, h.known_ips)
    ]
    return {
        "devices": len(held[0] | held[1]),
        "ips": len(held[2] | held[3]),
        "countries": sum(1 for t in h.known_countries.values() if live(t, n, limits)),
        "attempts": sum(1 for t in h.times if t > n - DAY),
        "open_attempts": sum(1 for _ in _open(h, n)),
        "steps": sum(1 for t in h.steps.values() if live(t, n, limits)),
        "verified": int(live(h.verified_at or None, n, limits)),
        "flag": int(h.flagged_until > n),
    }


def _ages(seen: dict[str, int], known: dict[str, int], n: int, limits: Limits) -> list[Any]:
    """One row per hash, most recent first: seconds since last seen and since last proved."""
    rows: dict[str, dict[str, Any]] = {}
    for label, table in (("seen_age", seen), ("known_age", known)):
        for k, t in table.items():
            if live(t, n, limits):
                rows.setdefault(k, {"hash": k, "seen_age": None, "known_age": None})[label] = n - t
    recency = {
        k: min(a for a in (r["seen_age"], r["known_age"]) if a is not None) for k, r in rows.items()
    }
    return [rows[k] for k in sorted(rows, key=lambda k: (recency[k], k))]


def describe(history: History, now: float, limits: Limits) -> dict[str, Any]:
    """What :meth:`FactsStore.show` answers: hashes, counts and ages in seconds, never raw
    values (coordinates are not shown, only the age of the location held)."""
    n = seconds(now)
    h = history
    location = h.location if h.location and live(h.location[0], n, limits) else None
    return {
        "devices": _ages(h.seen_devices, h.known_devices, n, limits),
        "ips": _ages(h.seen_ips, h.known_ips, n, limits),
        "countries": {c: n - t for c, t in sorted(h.known_countries.items()) if live(t, n, limits)},
        "attempts": {
            "last_1h": sum(1 for t in h.times if t > n - HOUR),
            "last_24h": sum(1 for t in h.times if t > n - DAY),
        },
        "open_attempts": [
            {
                "scope": scope,
                "age": n - seconds(x.attempt.at),
                "status": x.attempt.status or "undecided",
                "expires_in": max(0, seconds(x.attempt.expires_at) - n),
                "proven": x.proven,
                "device": x.attempt.device,
                "ip": x.attempt.ip,
                "country": x.attempt.country,
                "steps": list(x.attempt.steps),
            }
            for scope, x in _open(h, n)
        ],
        "verified_age": n - h.verified_at if live(h.verified_at or None, n, limits) else -1,
        "location_age": n - location[0] if location else -1,
        "step_age": {k: n - t for k, t in sorted(h.steps.items()) if live(t, n, limits)},
        "flagged": h.flagged_until > n,
        "flag_expires_in": max(0, h.flagged_until - n),
    }


def is_empty(history: History, now: float, limits: Limits) -> bool:
    """Nothing in force is left (the memory store then drops the user)."""
    return not any(inventory(history, now, limits).values())
