"""Every Prometheus metric of the service, defined once (docs/operations.md, "Metrics").

Names start with ``stepup_hook_``; every label takes its values from a finite set: a route
template, an error code, a reason from a fixed list, a scope or rule of the loaded policy. A
value outside the set is counted as :data:`OTHER`, so no caller (not even an attacker choosing a
scope) can create series. No label ever holds a user id, an IP, a kid or a token.

Counters and histograms live in this process (:data:`REGISTRY`), or with several workers in
prometheus-client's multiprocess files; :mod:`hook_service.metrics_export` renders them for
``GET /metrics`` with the gauges computed at scrape time, and sets the workers' files up.

The core never imports this module: the endpoints, the middleware and the small observers
wired in :mod:`hook_service.services` call the functions below.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from hook_service import errors

PREFIX: Final = "stepup_hook_"
OTHER: Final = "_other"

# The `_created` series (one more gauge per counter and histogram) tell nothing a rate() needs,
# and multiprocess mode omits them anyway: the same exposition with one worker or several.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's counters and histograms (single-process mode)."""

# Prelude gives the hook 5 s (contract 8); 0.8 s is the store's budget (hook/decider.py).
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5, 5.0, 10.0)


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
    return Counter(PREFIX + name, doc, tuple(labels), registry=REGISTRY)


def _histogram(name: str, doc: str, labels: Iterable[str] = ()) -> Histogram:
    return Histogram(PREFIX + name, doc, tuple(labels), buckets=_SECONDS, registry=REGISTRY)


# --- the metrics (the table in docs/operations.md lists each) -------------------------------

REQUESTS = _counter(
    "requests_total", "HTTP requests answered, by route and status code.", ("route", "code")
)
REQUEST_DURATION = _histogram(
    "request_duration_seconds",
    "Time from the request to the end of the answer, by route.",
    ("route",),
)
DECISIONS = _counter(
    "decisions_total",
    "Hook decisions, by scope, status and deciding rule.",
    ("scope", "status", "rule"),
)
HOOK_DURATION = _histogram(
    "hook_duration_seconds", "Hook latency: signature check, parsing, policy and store."
)
SIGNATURE_FAILURES = _counter(
    "signature_failures_total", "Hook requests refused for their signature, by reason.", ("reason",)
)
ON_ERROR = _counter(
    "on_error_total",
    "Hook requests answered with the policy's on_error decision, by reason.",
    ("reason",),
)
REPLAYS = _counter("replays_total", "Hook requests recognised as replays of an earlier one.")
TOKENS = _counter(
    "verification_tokens_total", "POST /verification-token answers, by outcome.", ("outcome",)
)
OUTCOMES = _counter(
    "outcomes_reported_total", "Outcomes the backend reported (POST /outcomes).", ("outcome",)
)
TOKEN_PROOFS = _counter(
    "token_proofs_total",
    "First verification tokens recorded as proof in the facts, by result.",
    ("result",),
)
SHADOW_DISAGREEMENTS = _counter(
    "shadow_disagreements_total",
    "Hook requests the shadow policy decided differently, by scope.",
    ("scope",),
)
STORE_ERRORS = _counter(
    "store_errors_total",
    "Failed calls to the pending-step and facts stores, by operation.",
    ("operation",),
)
KEYSTORE_ERRORS = _counter(
    "keystore_errors_total",
    "Requests refused because the key set could not be used, by reason.",
    ("reason",),
)
JWKS_FETCHES = _counter(
    "prelude_jwks_fetches_total",
    "Fetches of Prelude's app JWKS, by trigger and result.",
    ("trigger", "result"),
)
POLICY_RELOADS = _counter("policy_reloads_total", "Policy reloads, by result.", ("result",))

# The bounded label sets that are not the policy's own.
SIGNATURE_REASONS: Final = frozenset(
    {
        "missing",
        "malformed",
        "missing_key_id",
        "unknown_key",
        "wrong_key_type",
        "mismatch",
        "no_jwks",
        "invalid",
    }
)
ON_ERROR_REASONS: Final = frozenset(
    {"policy_error", "store_unavailable", "store_timeout", "internal_error", "undecided_replay"}
)
TOKEN_OUTCOMES: Final = frozenset(
    {"issued", "re-sent"}
    | {c.code for c in errors.HookError.__subclasses__()}
    | {c.code for c in errors.KeyStoreUnavailable.__subclasses__()}
)
KEYSTORE_REASONS: Final = frozenset({"stale", "failure", "changed"})
JWKS_TRIGGERS: Final = frozenset({"initial", "unknown_kid", "stale_cache"})
JWKS_RESULTS: Final = frozenset({"ok", "error"})
OUTCOME_KINDS: Final = frozenset({"verified", "fraud"})
PROOF_RESULTS: Final = frozenset({"marked", "noted", "failed"})
RELOAD_RESULTS: Final = frozenset({"ok", "invalid"})
STATUS_CODES: Final = frozenset(range(100, 600))


def bounded(value: str, allowed: Collection[str]) -> str:
    """``value`` when it is one of ``allowed``, else :data:`OTHER`."""
    return value if value in allowed else OTHER


# --- what the endpoints, the middleware and the observers call --------------------------------


# The labelled series of the per-request metrics, looked up once: labels() validates and
# takes a lock on every call (about 1.5 µs each, three per hook call). Their label values
# are finite sets (above), and so is this.
_SERIES: dict[tuple[int, tuple[str, ...]], Any] = {}


def _series(metric: Counter | Histogram, *values: str) -> Any:
    key = (id(metric), values)
    series = _SERIES.get(key)
    if series is None:
        series = _SERIES[key] = metric.labels(*values)
    return series


def request(route: str, code: int, seconds: float) -> None:
    """One HTTP request on ``route`` (a route template, or :data:`OTHER` when none matched)."""
    _series(REQUESTS, route, str(code) if code in STATUS_CODES else OTHER).inc()
    _series(REQUEST_DURATION, route).observe(seconds)


def decision(scopes: Collection[str], scope: str, status: str, rule: str) -> None:
    """A hook decision; ``scopes`` are the policy's (an unlisted scope is :data:`OTHER`).
    ``status`` and ``rule`` come from the policy, a finite set by construction."""
    _series(DECISIONS, bounded(scope, scopes), status, rule).inc()


def on_error(reason: str) -> None:
    """An ``on_error`` answer; ``reason`` its :attr:`~hook_service.policy.base.Decision.cause`."""
    ON_ERROR.labels(bounded(reason, ON_ERROR_REASONS)).inc()


def hook_seconds(seconds: float) -> None:
    HOOK_DURATION.observe(seconds)


def signature_failure(reason: str) -> None:
    SIGNATURE_FAILURES.labels(bounded(reason, SIGNATURE_REASONS)).inc()


def replay() -> None:
    REPLAYS.inc()


def token(outcome: str) -> None:
    """A ``POST /verification-token`` answer: ``issued``, ``re-sent`` or the error code."""
    _series(TOKENS, bounded(outcome, TOKEN_OUTCOMES)).inc()


def outcome_reported(outcome: str) -> None:
    OUTCOMES.labels(bounded(outcome, OUTCOME_KINDS)).inc()


def token_proof(result: str) -> None:
    """A first token's proof (facts/proofs.py): ``marked``, ``noted`` or ``failed``."""
    _series(TOKEN_PROOFS, bounded(result, PROOF_RESULTS)).inc()


def shadow_disagreement(scopes: Collection[str], scope: str) -> None:
    SHADOW_DISAGREEMENTS.labels(bounded(scope, scopes)).inc()


def store_error(operation: str) -> None:
    """A failed store call; ``operation`` is a method name of the Store protocol."""
    STORE_ERRORS.labels(operation).inc()


def keystore_error(exc: errors.KeyStoreUnavailable) -> None:
    """A request refused because of the key set (KeyStoreFailure, KeySetChanged, or stale)."""
    if isinstance(exc, errors.KeyStoreFailure):
        KEYSTORE_ERRORS.labels("failure").inc()
    elif isinstance(exc, errors.KeySetChanged):
        KEYSTORE_ERRORS.labels("changed").inc()
    else:
        KEYSTORE_ERRORS.labels("stale").inc()


def jwks_fetch(trigger: str, ok: bool) -> None:
    """A fetch of Prelude's JWKS (the observer of :class:`~hook_service.prelude.jwks.
    PreludeJwks`)."""
    JWKS_FETCHES.labels(bounded(trigger, JWKS_TRIGGERS), "ok" if ok else "error").inc()


def policy_reload(result: str) -> None:
    POLICY_RELOADS.labels(bounded(result, RELOAD_RESULTS)).inc()
