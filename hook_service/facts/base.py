"""Risk facts about a user's history: the values and the store interface (issue 11, design.md
"Facts").

The hook builds an :class:`Attempt` from each authentic, non-replayed request
(:class:`~hook_service.facts.attempts.AttemptFactory`) and asks a :class:`FactsStore` for the
:class:`Facts` the policy sees as ``facts``. Facts come from the history *before* the attempt
("this one excluded"); the attempt is recorded in the same round trip. *Seen* comes from any
attempt; *known* only from a :class:`Proof`: a verification token issued for a custom step the
attempt recorded, or ``POST /outcomes`` ``verified``. A request alone, or a ``continue`` answer,
never makes anything known.

The hook decides *after* reading the facts, so an attempt is recorded undecided
(``status == ""``) by :meth:`FactsStore.observe` and completed by :meth:`FactsStore.settle`;
only a settled ``review`` attempt can become proof. Scopes whose rules do not read facts know
their decision first and use :meth:`FactsStore.record` (fire-and-forget) with a decided attempt.

Devices and IPs only ever appear as keyed hashes (:mod:`hook_service.facts.hashing`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

CONTINUE: Final = "continue"
REVIEW: Final = "review"
BLOCK: Final = "block"
UNDECIDED: Final = ""
STATUSES: Final = frozenset({CONTINUE, REVIEW, BLOCK, UNDECIDED})

# Scopes and step keys (contract 2.1 and 3 charsets) travel inside the stores' records, so a
# separator ("|", ",") can never appear in one; hashes are unpadded base64url.
NAME: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
HASH: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")
COUNTRY: Final = re.compile(r"[A-Z]{2}")
# How a frozen dataclass sets its fields (Attempt.settled builds one without __init__).
_new: Final = object.__new__
_set: Final = object.__setattr__


@dataclass(frozen=True, slots=True)
class Facts:
    """The CEL variable ``facts`` (design.md "Facts"); the defaults mean "nothing known".

    ``step_age`` maps a custom step key to seconds since a verification token for it was last
    issued to this user; a key never issued (or issued before the retention) is absent.
    Treat it as read-only: :meth:`to_cel` hands CEL a copy.
    """

    device_seen: bool = False
    device_known: bool = False
    ip_seen: bool = False
    ip_known: bool = False
    country: str = ""
    country_known: bool = False
    attempts_1h: int = 0
    attempts_24h: int = 0
    distinct_ips_24h: int = 0
    verified_age: int = -1
    step_age: dict[str, int] = field(default_factory=dict)
    flagged: bool = False
    travel_kmh: float = -1.0

    def to_cel(self) -> dict[str, Any]:
        """Plain dicts, ints, floats and bools, as cel-expr-python takes them."""
        return {
            "device_seen": self.device_seen,
            "device_known": self.device_known,
            "ip_seen": self.ip_seen,
            "ip_known": self.ip_known,
            "country": self.country,
            "country_known": self.country_known,
            "attempts_1h": self.attempts_1h,
            "attempts_24h": self.attempts_24h,
            "distinct_ips_24h": self.distinct_ips_24h,
            "verified_age": self.verified_age,
            "step_age": dict(self.step_age),
            "flagged": self.flagged,
            "travel_kmh": float(self.travel_kmh),
        }


NO_FACTS: Final = Facts()
"""What a policy sees for a user with no history (also ``policy eval`` without ``--facts``)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One authentic hook request, as the facts stores keep it.

    ``device`` and ``ip`` are keyed hashes (None when the request had no usable user agent or
    IP); ``location`` is ``(lat, lon)`` rounded to 0.01 degree, only with a city database.
    ``status`` is the decision (``""`` until :meth:`FactsStore.settle`); ``steps`` the custom
    step keys the decision recorded as pending; ``expires_at`` (Unix seconds) the end of the
    window in which a proof may still mark this attempt (``POST /outcomes`` or a token).
    ``id`` tells this attempt from another of the same user and scope (random, not secret).
    """

    id: str
    at: float
    scope: str
    device: str | None = None
    ip: str | None = None
    country: str = ""
    location: tuple[float, float] | None = None
    status: str = UNDECIDED
    steps: tuple[str, ...] = ()
    expires_at: float = 0.0

    def __post_init__(self) -> None:
        if not HASH.fullmatch(self.id):
            raise ValueError("Attempt.id must be base64url")
        if not NAME.fullmatch(self.scope):
            raise ValueError("Attempt.scope must match [A-Za-z0-9._:-]{1,128}")
        for digest in (self.device, self.ip):
            if digest is not None and not HASH.fullmatch(digest):
                raise ValueError("Attempt.device and Attempt.ip must be keyed hashes")
        if self.country and not COUNTRY.fullmatch(self.country):
            raise ValueError("Attempt.country must be ISO 3166-1 alpha-2 or empty")
        if self.status not in STATUSES:
            raise ValueError(f"Attempt.status must be one of {sorted(STATUSES)}")
        if any(not NAME.fullmatch(step) for step in self.steps):
            raise ValueError("Attempt.steps must be step keys")
        if not (math.isfinite(self.at) and math.isfinite(self.expires_at)):
            raise ValueError("Attempt times must be finite")
        if self.location is not None:
            lat, lon = self.location
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
                raise ValueError("Attempt.location must be (lat, lon) in degrees")

    def settled(self, status: str, steps: tuple[str, ...] = (), expires_at: float = 0.0) -> Attempt:
        """This attempt with its decision: ``status``, the custom ``steps`` it recorded and the
        end of its proof window (a ``review`` needs ``expires_at`` > ``at`` to be provable)."""
        if type(self) is not Attempt:
            return replace(self, status=status, steps=steps, expires_at=expires_at)
        # dataclasses.replace, without its field walk and without checking again the fields
        # this attempt already passed (about 2.3 of its 3.3 µs a call): __post_init__'s checks
        # on the three new values, in its order, with its messages.
        if status not in STATUSES:
            raise ValueError(f"Attempt.status must be one of {sorted(STATUSES)}")
        if any(not NAME.fullmatch(step) for step in steps):
            raise ValueError("Attempt.steps must be step keys")
        if not math.isfinite(expires_at):  # self.at is finite already
            raise ValueError("Attempt times must be finite")
        new = _new(Attempt)
        _set(new, "id", self.id)
        _set(new, "at", self.at)
        _set(new, "scope", self.scope)
        _set(new, "device", self.device)
        _set(new, "ip", self.ip)
        _set(new, "country", self.country)
        _set(new, "location", self.location)
        _set(new, "status", status)
        _set(new, "steps", steps)
        _set(new, "expires_at", expires_at)
        return new


@dataclass(frozen=True, slots=True)
class Proof:
    """Evidence that a step-up succeeded: for the user's latest attempt for ``scope``.

    ``step`` is set when a verification token was issued for that custom step key (the token
    endpoint knows the scope from the pending step); None for ``POST /outcomes`` ``verified``.
    """

    scope: str
    step: str | None = None

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.scope):
            raise ValueError("Proof.scope must match [A-Za-z0-9._:-]{1,128}")
        if self.step is not None and not NAME.fullmatch(self.step):
            raise ValueError("Proof.step must be a step key")


@dataclass(frozen=True, slots=True)
class Once:
    """The replay check of one hook request (issue 11 point 3): ``digest`` is the keyed hash
    of its signature and body (:meth:`FactsKey.request
    <hook_service.facts.hashing.FactsKey.request>`), ``window`` the seconds a repeat of it is
    a replay (``HOOK_REPLAY_WINDOW``), ``answer`` the decision to give a replay (opaque text
    to the store; ``""`` while the first is undecided)."""

    digest: str
    window: int
    answer: str = ""

    def __post_init__(self) -> None:
        if not HASH.fullmatch(self.digest):
            raise ValueError("Once.digest must be a keyed hash")
        if self.window < 1:
            raise ValueError("Once.window must be positive")


@dataclass(frozen=True, slots=True)
class Replay:
    """The same request was seen within its window: nothing was recorded, and ``answer`` is
    what the first got (``""``: it was not decided, or deciding it failed)."""

    answer: str


class FactsStore(Protocol):
    """A user's history of attempts and proofs. Same semantics for every backend (they share
    :mod:`hook_service.facts.logic`); every backend failure raises ``errors.StoreUnavailable``.
    ``now`` is the injected clock's Unix time."""

    async def observe(self, user_id: str, attempt: Attempt, now: float) -> Facts:
        """The facts before ``attempt``, then record it: one atomic step (one Redis round trip),
        so concurrent requests of one user each count the others."""

    async def observe_once(
        self, user_id: str, attempt: Attempt, now: float, once: Once
    ) -> Facts | Replay:
        """:meth:`observe`, unless ``once.digest`` was seen within its window: then nothing is
        recorded and the first answer comes back as a :class:`Replay`. Otherwise the replay
        record (``once.answer``, kept ``once.window`` seconds) is written in the same atomic
        step (the same Redis round trip), so of two concurrent copies exactly one counts."""

    async def record(
        self, user_id: str, attempt: Attempt, now: float, once: Once | None = None
    ) -> Replay | None:
        """The same write as :meth:`observe` (:meth:`observe_once` with ``once``) without the
        facts: for scopes whose rules do not read facts; the hook need not wait for it."""

    async def settle(
        self, user_id: str, attempt: Attempt, now: float, once: Once | None = None
    ) -> None:
        """Complete an attempt :meth:`observe` recorded undecided (same ``id``) with its
        decision. Nothing happens if a newer attempt for that scope superseded it. Only a
        ``review`` can ever be proved, so the hook may skip this for other answers. With
        ``once``, its replay record (written by :meth:`observe_once` at ``attempt.at``, if still
        there) gets ``once.answer``; its lifetime is not extended."""

    async def prove(self, user_id: str, proof: Proof, now: float) -> bool:
        """Learn from ``proof``: if the user's latest attempt for ``proof.scope`` is a settled
        ``review``, not expired, and (for a token) recorded ``proof.step``, its device, IP and
        country become known and it becomes the last verified step-up (once per attempt).
        A token always sets ``step_age[proof.step]``. Returns whether an attempt was marked:
        False is ``404 no_attempt`` for ``POST /outcomes``."""

    async def report_fraud(self, user_id: str, now: float) -> None:
        """``POST /outcomes`` ``fraud``: flag the user for the flag TTL and forget everything
        learned from proof (known devices, IPs, countries, last verification and location,
        step ages) and the attempts not yet proved, which can then never prove anything."""

    async def show(self, user_id: str, now: float) -> dict[str, Any]:
        """What is held for the user (``GET /admin/users/{user_id}/facts``): counts, ages and
        hashes, never a raw IP, user agent or coordinate."""

    async def erase(self, user_id: str, now: float) -> dict[str, int]:
        """Delete everything held for the user here; answers the counts of what was in force."""

    async def ping(self) -> None:
        """Raise ``errors.StoreUnavailable`` when the backend cannot be reached."""

    async def aclose(self) -> None:
        """Release connections (only those the store opened itself)."""
