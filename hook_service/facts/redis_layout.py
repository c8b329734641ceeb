"""How :class:`~hook_service.facts.redis.RedisFactsStore` lays a user's :class:`History` out
in Redis, and the codec between the two (pure: no I/O).

Layout, for a user with keyed hash ``T`` (:meth:`FactsKey.user`; the user id never appears),
every key carrying the hash tag ``{T}`` so one user is one Redis Cluster slot:

=====================  ======  ===================================================  ===========
key                    type    content                                              TTL
=====================  ======  ===================================================  ===========
``<p>f:{T}:s`` seen    hash    ``d<device hash>``, ``i<ip hash>`` -> last attempt    retention
``<p>f:{T}:k`` known   hash    ``d…``/``i…`` -> last proof, ``c<CC>`` -> last proof,  retention
                               ``s<step>`` -> last token, ``v`` -> last proof,       after the
                               ``l`` -> ``"<time>,<lat>,<lon>"`` last located proof  last proof
``<p>f:{T}:t`` times   list    attempt times of the last 24 h (at most ``attempts``)  24 h
``<p>f:{T}:a`` latest  list    per scope, the latest attempt, newest first:         its window
                               ``scope|id|at|expires|status|proven|device|ip|cc|``  (>= 60 s)
                               ``lat|lon|steps`` (at most ``scopes``)
``<p>f:{T}:x`` flag    string  flagged until                                         flag TTL
``<p>f:{T}:r`` replays hash    request digest -> ``"<until>|<answer>"`` (a replay    the replay
                               gets the answer until then; issue 11 point 3)         window
=====================  ======  ===================================================  ===========

Timestamps are whole seconds, which Redis's compact encodings (listpack) store as integers;
field names stay short and values under 64 bytes so a hash keeps that encoding. Measured with
a month of typical history (3 devices, 10 IPs, 60 attempts): about 1.6 KB per user
(``tests/facts/test_redis.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from hook_service.facts import logic
from hook_service.facts.base import Attempt
from hook_service.facts.logic import History, Latest

_STATUS: Final = {"": "u", "continue": "c", "review": "r", "block": "b"}
_STATUS_NAME: Final = {code: name for name, code in _STATUS.items()}
# History table -> (key number in the PRUNE script, field prefix)
FIELDS: Final = {
    "seen_devices": (1, "d"),
    "seen_ips": (1, "i"),
    "known_devices": (2, "d"),
    "known_ips": (2, "i"),
    "known_countries": (2, "c"),
    "steps": (2, "s"),
    "verified_at": (2, "v"),
    "location": (2, "l"),
    "flagged_until": (3, ""),
}


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def encode_latest(latest: Latest) -> str:
    a = latest.attempt
    lat, lon = ("", "") if a.location is None else (repr(a.location[0]), repr(a.location[1]))
    return "|".join(
        (
            a.scope,
            a.id,
            str(logic.seconds(a.at)),
            str(logic.seconds(a.expires_at)),
            _STATUS[a.status],
            "1" if latest.proven else "0",
            a.device or "",
            a.ip or "",
            a.country,
            lat,
            lon,
            ",".join(a.steps),
        )
    )


def decode_latest(text: str) -> Latest:
    scope, id_, at, exp, status, proven, dev, ip, cc, lat, lon, steps = text.split("|")
    attempt = Attempt(
        id=id_,
        at=float(at),
        scope=scope,
        device=dev or None,
        ip=ip or None,
        country=cc,
        location=(float(lat), float(lon)) if lat else None,
        status=_STATUS_NAME[status],
        steps=tuple(steps.split(",")) if steps else (),
        expires_at=float(exp),
    )
    return Latest(attempt, proven == "1")


def decode_replay(record: Any) -> str:
    """The answer of a replay record ``"<until>|<answer>"``."""
    return _text(record).partition("|")[2]


def _pairs(flat: list[Any]) -> Iterator[tuple[str, str]]:
    items = [_text(v) for v in flat]
    return zip(items[0::2], items[1::2], strict=True)


def decode(state: list[Any]) -> History:
    """A :class:`History` from the READ part of the scripts: [seen, known, times, latest, flag]."""
    seen, known, times, latest, flag = state
    h = History()
    for field, value in _pairs(seen):
        table = h.seen_devices if field[0] == "d" else h.seen_ips
        table[field[1:]] = int(value)
    for field, value in _pairs(known):
        kind, name = field[0], field[1:]
        if kind == "l":
            at, lat, lon = value.split(",")
            h.location = (int(at), float(lat), float(lon))
        elif kind == "v":
            h.verified_at = int(value)
        else:
            tables = {"d": h.known_devices, "i": h.known_ips, "c": h.known_countries}
            tables.get(kind, h.steps)[name] = int(value)
    h.times = [int(_text(t)) for t in times]
    for record in reversed(latest):
        decoded = decode_latest(_text(record))
        h.latest[decoded.attempt.scope] = decoded
    h.flagged_until = int(_text(flag)) if flag else 0
    return h


def known_fields(before: History, after: History) -> list[str]:
    """HSET arguments for what a proof changed in the known hash."""
    fields: list[str] = []
    for table, prefix in (
        ("known_devices", "d"),
        ("known_ips", "i"),
        ("known_countries", "c"),
        ("steps", "s"),
    ):
        old: dict[str, int] = getattr(before, table)
        for name, stamp in getattr(after, table).items():
            if old.get(name) != stamp:
                fields += [prefix + name, str(stamp)]
    if after.verified_at != before.verified_at:
        fields += ["v", str(after.verified_at)]
    if after.location is not None and after.location != before.location:
        at, lat, lon = after.location
        fields += ["l", f"{at},{lat!r},{lon!r}"]
    return fields
