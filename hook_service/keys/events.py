"""Key audit events, derived by comparing the key set before and after a change (pure).

Every change of the key set is described as events ``created``, ``activated``, ``retired``,
``revoked``, ``expired`` (a retired key dropped after ``retire_at``), ``rewrapped`` (its
private key re-encrypted under the first KEK) and ``restored`` (put back into a Redis that
lost the set, by a replica that held it), each with the time, the kid, the actor (``admin
token #N``, ``scheduler``, ``cli``, ``startup`` or ``restore``) and the replica. The Redis key
store appends them to a stream in the same script that writes the set; every store also logs
them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

from hook_service import logs
from hook_service.keys.lifecycle import KeySet

log = logging.getLogger(logs.KEYS)

EventKind = Literal[
    "created", "activated", "retired", "revoked", "expired", "rewrapped", "restored"
]
EVENT_KINDS: tuple[str, ...] = (
    "created",
    "activated",
    "retired",
    "revoked",
    "expired",
    "rewrapped",
    "restored",
)
RESTORE_ACTOR = "restore"
"""The actor of ``restored`` events: a replica's watcher, after Redis lost the set."""


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """One audit record; ``id`` is the stream entry id once stored (None before)."""

    event: EventKind
    kid: str
    time: int
    actor: str
    replica: str
    version: int
    id: str | None = None

    def fields(self) -> dict[str, str]:
        """The record as flat strings (a Redis stream entry), without ``id``."""
        return {k: str(v) for k, v in asdict(self).items() if k != "id"}

    @classmethod
    def from_fields(cls, entry_id: str, fields: dict[str, str]) -> KeyEvent:
        """Inverse of :meth:`fields`; raises ``ValueError`` on a malformed entry."""
        kind = fields.get("event", "")
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown key event {kind!r}")
        return cls(
            kind,  # type: ignore[arg-type]  # checked against EVENT_KINDS above
            fields["kid"],
            int(fields["time"]),
            fields["actor"],
            fields["replica"],
            int(fields["version"]),
            entry_id,
        )

    def to_json(self) -> dict[str, Any]:
        """``GET /admin/keys/events`` shape."""
        return asdict(self)

    def describe(self) -> str:
        """The log line (never key material)."""
        return (
            f"key {self.event}: kid={self.kid} version={self.version} actor={self.actor} "
            f"replica={self.replica}"
        )


def diff(
    before: KeySet | None,
    after: KeySet,
    *,
    now: int,
    actor: str,
    replica: str,
    revoked: str | None = None,
) -> list[KeyEvent]:
    """The events that turn ``before`` (None: no key set yet) into ``after``. A key that is
    gone is ``revoked`` when it is the ``revoked`` kid, else ``expired``."""
    old = {k.kid: k for k in before.keys} if before is not None else {}
    new = {k.kid: k for k in after.keys}
    out: list[tuple[EventKind, str]] = []
    for kid in old.keys() - new.keys():
        out.append(("revoked" if kid == revoked else "expired", kid))
    for kid, key in new.items():
        was = old.get(kid)
        if was is None:
            out.append(("created", kid))
        if key.state != (was.state if was else None) and key.state in ("active", "retired"):
            out.append(("activated" if key.state == "active" else "retired", kid))
    order = {kind: i for i, kind in enumerate(EVENT_KINDS)}
    out.sort(key=lambda item: (order[item[0]], item[1]))
    return [KeyEvent(kind, kid, now, actor, replica, after.version) for kind, kid in out]


def rewrapped(ks: KeySet, *, now: int, actor: str, replica: str) -> list[KeyEvent]:
    """One ``rewrapped`` event per key of ``ks`` (``hook-service keys rewrap``)."""
    return [KeyEvent("rewrapped", k.kid, now, actor, replica, ks.version) for k in ks.keys]


def restored(ks: KeySet, *, now: int, actor: str, replica: str) -> list[KeyEvent]:
    """One ``restored`` event per key of ``ks``, put back as version ``ks.version``."""
    return [KeyEvent("restored", k.kid, now, actor, replica, ks.version) for k in ks.keys]


def log_events(events: list[KeyEvent]) -> None:
    """One log line per event (the file store's only audit trail); revocations as warnings."""
    for event in events:
        level = logging.WARNING if event.event == "revoked" else logging.INFO
        log.log(level, "%s", event.describe())
