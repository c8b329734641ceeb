"""Scenario files: hook requests to send as Prelude would, and the answers to expect.

```yaml
version: 1
step_keys: [kyc_review]            # custom keys registered in Prelude's step_keys
scenarios:
  - name: large transfer asks for OTP then KYC
    request:                       # contract 2.1; user_id defaults to a fresh one per run
      scope: transfer:write
      identifiers: [{type: phone_number, value: "+33612345678"}]
      signals: {platform: WEB}
      metadata: {amount: "1500"}
    expect: {status: review, steps: [verify_sms, kyc_review], rule: large-transfer}
sequences:                         # with history: hooks, tokens, outcomes (sequences.py)
  - name: ...
```

``scenarios`` or ``sequences`` (:mod:`.sequences`, one user through several requests with the
answer expected after each), or both.

A request Prelude would never send (a scope outside its pattern, metadata over its limits) is
refused at load, as is any unknown key, so a typo cannot silently weaken a check. Errors name
the file and the scenario.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import yaml

from .lint import GRANT_MODES, MANAGED_STEPS, MAX_DURATION, STATUSES, STEP_KEY

if TYPE_CHECKING:
    from .sequences import Sequence

# Contract 2.1.
SCOPE: Final = re.compile(r"[a-zA-Z0-9.\-_:]+")
METADATA_KEY: Final = re.compile(r"[a-zA-Z0-9.\-_:]{1,12}")
METADATA_MAX_ENTRIES: Final = 5
METADATA_MAX_VALUE: Final = 32
IDENTIFIER_TYPES: Final = ("email_address", "phone_number")

_TOP: Final = {"version", "step_keys", "scenarios", "sequences"}
_SCENARIO: Final = {"name", "request", "expect"}
_REQUEST: Final = {"scope", "user_id", "identifiers", "signals", "metadata"}
_EXPECT: Final = {"status", "steps", "rule", "grant_mode", "granted_for"}


class ScenarioError(Exception):
    """The scenario file cannot be used; the message names the file and the scenario."""


def shipped_scenarios(name: str = "example.yaml") -> Path:
    """The scenarios for the bundled example policy (``hook_service/policies/example.yaml``):
    ``example.yaml``, or ``history.yaml`` (sequences for the policy deciding from facts)."""
    return Path(str(resources.files(__package__) / "scenarios" / name))


@dataclass(frozen=True, slots=True)
class HookRequestSpec:
    """The body of one hook request (contract 2.1)."""

    scope: str
    user_id: str | None = None
    identifiers: tuple[tuple[str, str], ...] = ()
    signals: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def body(self, default_user_id: str) -> bytes:
        """The JSON body Prelude would send, for ``user_id`` or ``default_user_id``."""
        return json.dumps(
            {
                "scope_requested": self.scope,
                "user_id": self.user_id or default_user_id,
                "identifiers": [{"type": t, "value": v} for t, v in self.identifiers],
                "signals": self.signals,
                "metadata": self.metadata,
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the hook should answer; ``None`` fields are not compared."""

    status: str
    steps: tuple[str, ...] | None = None
    rule: str | None = None
    grant_mode: str | None = None
    granted_for: int | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    request: HookRequestSpec
    expect: Expectation


@dataclass(frozen=True, slots=True)
class ScenarioFile:
    path: Path
    step_keys: frozenset[str]
    scenarios: tuple[Scenario, ...]
    sequences: tuple[Sequence, ...] = ()

    def requests(self) -> list[tuple[HookRequestSpec, Expectation]]:
        """Every hook request with its expectation: the scenarios', then the sequences'."""
        pairs = [(s.request, s.expect) for s in self.scenarios]
        return pairs + [(h.request, h.expect) for q in self.sequences for h in q.hooks()]

    def first_request(self) -> HookRequestSpec | None:
        """The first hook request of the file; None when its sequences only ask for tokens
        and report outcomes."""
        requests = self.requests()
        return requests[0][0] if requests else None

    def custom_step_request(self) -> HookRequestSpec | None:
        """The first request expected to yield a custom step, if any."""
        for request, expect in self.requests():
            steps = expect.steps or ()
            if expect.status == "review" and any(k not in MANAGED_STEPS for k in steps):
                return request
        return None


def load_scenarios(path: Path) -> ScenarioFile:
    """Read and validate ``path``; raises :class:`ScenarioError`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid YAML ({exc})") from None
    where = str(path)
    top = mapping(data, where, _TOP, required={"version"})
    if top["version"] != 1:
        raise ScenarioError(f"{where}: version must be 1")
    step_keys = frozenset(_string_list(top.get("step_keys", []), f"{where}: step_keys"))
    for key in step_keys:
        if not STEP_KEY.fullmatch(key):
            raise ScenarioError(f"{where}: step_keys: {key!r} does not match [a-zA-Z0-9._:-]+")
    if "scenarios" not in top and "sequences" not in top:
        raise ScenarioError(f"{where}: scenarios or sequences is required")
    scenarios: tuple[Scenario, ...] = ()
    if "scenarios" in top:
        scenarios = named_list(top["scenarios"], where, "scenario", _scenario)
    sequences: tuple[Sequence, ...] = ()
    if "sequences" in top:
        from .sequences import parse_sequences  # it builds on this module's parsers

        sequences = parse_sequences(top["sequences"], where, step_keys)
    return ScenarioFile(path, step_keys, scenarios, sequences)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_N = TypeVar("_N", bound=_Named)


def named_list(
    items: Any, where: str, kind: str, parse: Callable[[Any, str], _N]
) -> tuple[_N, ...]:
    """A non-empty list of named entries (``kind``: scenario, sequence), each read by
    ``parse(item, label)``; the names must differ. The label names the file, the position
    and the name."""
    if not isinstance(items, list) or not items:
        raise ScenarioError(f"{where}: {kind}s must be a non-empty list")
    entries: list[_N] = []
    for position, item in enumerate(items, start=1):
        name = item.get("name") if isinstance(item, dict) else None
        label = f"{where}: {kind} {position}" + (
            f" ({name})" if isinstance(name, str) and name else ""
        )
        entry = parse(item, label)
        if any(e.name == entry.name for e in entries):
            raise ScenarioError(f"{label}: name is used by an earlier {kind}")
        entries.append(entry)
    return tuple(entries)


def _scenario(item: Any, label: str) -> Scenario:
    data = mapping(item, label, _SCENARIO, required=_SCENARIO)
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(f"{label}: name must be a non-empty string")
    return Scenario(
        name,
        hook_request(data["request"], f"{label}: request"),
        expectation(data["expect"], f"{label}: expect"),
    )


def hook_request(item: Any, where: str) -> HookRequestSpec:
    data = mapping(item, where, _REQUEST, required={"scope"})
    scope = data["scope"]
    if not isinstance(scope, str) or not SCOPE.fullmatch(scope):
        raise ScenarioError(f"{where}: scope {scope!r} does not match ^[a-zA-Z0-9.\\-_:]+$")
    user_id = data.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or not user_id):
        raise ScenarioError(f"{where}: user_id must be a non-empty string")
    identifiers = []
    raw_identifiers = data.get("identifiers", [])
    if not isinstance(raw_identifiers, list):
        raise ScenarioError(f"{where}: identifiers must be a list")
    for i, raw in enumerate(raw_identifiers):
        entry = mapping(raw, f"{where}: identifiers[{i}]", {"type", "value"}, {"type", "value"})
        if entry["type"] not in IDENTIFIER_TYPES or not isinstance(entry["value"], str):
            raise ScenarioError(
                f"{where}: identifiers[{i}] needs type email_address or phone_number and a "
                "string value"
            )
        identifiers.append((entry["type"], entry["value"]))
    signals = _string_map(data.get("signals", {}), f"{where}: signals")
    metadata = _string_map(data.get("metadata", {}), f"{where}: metadata")
    if len(metadata) > METADATA_MAX_ENTRIES:
        raise ScenarioError(f"{where}: metadata has more than {METADATA_MAX_ENTRIES} entries")
    for key, value in metadata.items():
        if not METADATA_KEY.fullmatch(key) or len(value) > METADATA_MAX_VALUE:
            raise ScenarioError(
                f"{where}: metadata {key!r}: keys are 1-12 characters of [a-zA-Z0-9.-_:], "
                f"values at most {METADATA_MAX_VALUE} characters (contract 2.1)"
            )
    return HookRequestSpec(scope, user_id, tuple(identifiers), signals, metadata)


def expectation(item: Any, where: str) -> Expectation:
    data = mapping(item, where, _EXPECT, required={"status"})
    if data["status"] not in STATUSES:
        raise ScenarioError(f"{where}: status must be one of {', '.join(STATUSES)}")
    steps = data.get("steps")
    if steps is not None:
        steps = tuple(_string_list(steps, f"{where}: steps"))
    rule = data.get("rule")
    if rule is not None and not isinstance(rule, str):
        raise ScenarioError(f"{where}: rule must be a string")
    grant_mode = data.get("grant_mode")
    if grant_mode is not None and grant_mode not in GRANT_MODES:
        raise ScenarioError(f"{where}: grant_mode must be one of {', '.join(GRANT_MODES)}")
    granted_for = data.get("granted_for")
    if granted_for is not None and (
        not isinstance(granted_for, int) or not 1 <= granted_for <= MAX_DURATION
    ):
        raise ScenarioError(f"{where}: granted_for must be an integer from 1 to {MAX_DURATION}")
    return Expectation(data["status"], steps, rule, grant_mode, granted_for)


def mapping(item: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ScenarioError(f"{where}: must be a mapping")
    unknown = sorted(set(map(str, item)) - allowed)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )
    missing = sorted(required - set(item))
    if missing:
        raise ScenarioError(f"{where}: {missing[0]} is required")
    return item


def _string_list(item: Any, where: str) -> list[str]:
    if not isinstance(item, list) or not all(isinstance(v, str) and v for v in item):
        raise ScenarioError(f"{where} must be a list of non-empty strings")
    return item


def _string_map(item: Any, where: str) -> dict[str, str]:
    if not isinstance(item, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in item.items()
    ):
        raise ScenarioError(f'{where} must map strings to strings (quote numbers: "1500")')
    return item
