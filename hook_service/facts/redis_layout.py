"""How :class:`~hook_service.facts.redis.RedisFactsStore` lays a user's :class:`History` out
in Redis, and the codec between the two (pure: no I/O).

Layout, for a user with keyed hash ``T`` (:meth:`FactsKey.user`; the user id never appears),
every key carrying the hash tag ``{T}`` so one user is one Redis Cluster slot:

=====================  ======  ===================================================  ===========
key                    type    content                                              TTL
=====================  ======  ===================================================  ===========
``<p>f:{T}:h`` history hash    seen: ``d<device hash>``, ``i<ip hash>`` -> last      retention
                               attempt; known: ``D<device hash>``, ``I<ip hash>``,  after the
                               ``c<CC>`` -> last proof, ``s<step>`` -> last token,  last write
                               ``v`` -> last proof, ``l`` -> ``"<time>,<lat>,<lon>"``
                               last located proof
``<p>f:{T}:w`` times   string  attempt times of the last 24 h (at most ``attempts``)  24 h
                               in arrival order: the first, then each one's
                               difference from the one before, ``","``-separated
``<p>f:{T}:l`` latest  list    per scope, the latest attempt, newest first:         its window
                               ``scope|id|at|+expires|status|device|ip|cc|lat|lon|`` (>= 60 s)
                               ``steps`` (at most ``scopes``; ``+expires`` counted
                               from ``at``, ``""`` while undecided; the status letter
                               upper case once proven)
``<p>f:{T}:x`` flag    string  flagged until                                         flag TTL
``<p>f:{T}:r`` replays hash    request digest -> ``"<until>|<answer>"`` (a replay    the replay
                               gets the answer until then; issue 11 point 3)         window
=====================  ======  ===================================================  ===========

Every entry of the history hash ages out by its own timestamp (:mod:`~hook_service.facts.logic`
reads ignore it past the retention, ``PRUNE`` deletes it), so one TTL serves seen and known
alike: the retention after the last write, which is never before any entry's own end. The flag
keeps a key of its own: its TTL (``HOOK_FACTS_FLAG_TTL``) may exceed the retention, which must
not keep the rest of the history alive.

Memory (issue 11 point 6): each key costs about 120 bytes before its content (name, dict
entries, object header), hence few keys; timestamps are whole seconds, which Redis's compact
encodings (listpack) store as integers; field names stay short and values under 64 bytes so the
hash keeps that encoding (``hash-max-listpack-value``; a user at every cap at once has 183
fields, under ``hash-max-listpack-entries``' default 512). Measured with a month of typical
history (3 devices, 10 IPs, 60 attempts) on Redis 7.0: about 1,340 bytes of ``MEMORY USAGE``
per user (``tests/facts/test_redis.py``), about 1,510 bytes of ``used_memory`` per user
(``bench/facts.py``); a user at every cap, about 4.9 KB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from hook_service.facts import logic
from hook_service.facts.base import Attempt
from hook_service.facts.logic import History, Latest

# The user's keys, in the order the scripts take them (redis_scripts).
SUFFIXES: Final = ("h", "w", "l", "x")
REPLAYS: Final = "r"

_STATUS: Final = {"": "u", "continue": "c", "review": "r", "block": "b"}
_STATUS_NAME: Final = {code: name for name, code in _STATUS.items()}
# History table -> (key number in the PRUNE script, field prefix): 1 the history hash, 2 the
# flag string (no field).
FIELDS: Final = {
    "seen_devices": (1, "d"),
    "seen_ips": (1, "i"),
    "known_devices": (1, "D"),
    "known_ips": (1, "I"),
    "known_countries": (1, "c"),
    "steps": (1, "s"),
    "verified_at": (1, "v"),
    "location": (1, "l"),
    "flagged_until": (2, ""),
}
# Field prefix -> the History table of name -> timestamp it fills.
_TABLES: Final = {
    prefix: table
    for table, (_, prefix) in FIELDS.items()
    if table not in ("verified_at", "location", "flagged_until")
}
# Which fields a fraud report forgets (logic.report_fraud): all but the seen ones.
SEEN_PREFIXES: Final = "di"


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def encode_latest(latest: Latest) -> str:
    a = latest.attempt
    lat, lon = ("", "") if a.location is None else (repr(a.location[0]), repr(a.location[1]))
    at, expires = logic.seconds(a.at), logic.seconds(a.expires_at)
    status = _STATUS[a.status]
    return "|".join(
        (
            a.scope,
            a.id,
            str(at),
            str(expires - at) if expires else "",  # "": undecided, no window yet
            status.upper() if latest.proven else status,
            a.device or "",
            a.ip or "",
            a.country,
            lat,
            lon,
            ",".join(a.steps),
        )
    )


def decode_latest(text: str) -> Latest:
    scope, id_, at, expires, status, dev, ip, cc, lat, lon, steps = text.split("|")
    attempt = Attempt(
        id=id_,
        at=float(at),
        scope=scope,
        device=dev or None,
        ip=ip or None,
        country=cc,
        location=(float(lat), float(lon)) if lat else None,
        status=_STATUS_NAME[status.lower()],
        steps=tuple(steps.split(",")) if steps else (),
        expires_at=float(int(at) + int(expires)) if expires else 0.0,
    )
    return Latest(attempt, status.isupper())


def encode_times(times: list[int]) -> str:
    """The times string: the first time, then each one's difference from the one before."""
    return ",".join(str(t - before) for before, t in zip([0, *times], times, strict=False))


def decode_times(text: str) -> list[int]:
    times: list[int] = []
    at = 0
    for part in text.split(","):
        at += int(part)
        times.append(at)
    return times


def decode_replay(record: Any) -> str:
    """The answer of a replay record ``"<until>|<answer>"``."""
    return _text(record).partition("|")[2]


def _pairs(flat: list[Any]) -> Iterator[tuple[str, str]]:
    # _text inlined: one call less per item (48 items for a month of history).
    items = [v.decode("utf-8", "surrogatepass") if isinstance(v, bytes) else str(v) for v in flat]
    return zip(items[0::2], items[1::2], strict=True)


def decode(state: list[Any]) -> History:
    """A :class:`History` from the READ part of the scripts: [history, times, latest, flag]."""
    held, times, latest, flag = state
    h = History()
    # Field prefix -> the table it fills: a getattr per table, not one per field.
    tables: dict[str, dict[str, int]] = {kind: getattr(h, name) for kind, name in _TABLES.items()}
    for field, value in _pairs(held):
        kind = field[0]
        table = tables.get(kind)
        if table is not None:
            table[field[1:]] = int(value)
        elif kind == "l":
            at, lat, lon = value.split(",")
            h.location = (int(at), float(lat), float(lon))
        elif kind == "v":
            h.verified_at = int(value)
        else:
            raise KeyError(kind)  # an unknown field, as _TABLES[kind] always refused it
    h.times = decode_times(_text(times)) if times else []
    for record in reversed(latest):
        decoded = decode_latest(_text(record))
        h.latest[decoded.attempt.scope] = decoded
    h.flagged_until = int(_text(flag)) if flag else 0
    return h
