"""Every Prometheus metric of the service, defined once (docs/operations.md, "Metrics").

Names start with ``stepup_hook_``; every label takes its values from a finite set: a route
template, an error code, a reason from a fixed list, a scope or rule of the loaded policy. A
value outside the set is counted as :data:`OTHER`, so no caller (not even an attacker choosing a
scope) can create series. No label ever holds a user id, an IP, a kid or a token.

Counters and histograms live in this process (:data:`REGISTRY`), or with several workers in
prometheus-client's multiprocess files: ``serve --workers N`` calls :func:`prepare_multiprocess`
before the workers start (they inherit ``PROMETHEUS_MULTIPROC_DIR``), :func:`worker_exited` for
a worker that died and :func:`cleanup_multiprocess` at the end. A scrape then sums every
worker's files, a dead worker's too, so counters never go back. The key-set and policy gauges
are not pushed: :class:`ServiceCollector` computes them from the serving worker's own view at
scrape time.

The core never imports this module: the endpoints, the middleware and the small observers
wired in :mod:`hook_service.services` call the functions below.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from hook_service import errors

if TYPE_CHECKING:
    from hook_service.services import Services
    from hook_service.settings import Settings

# Prometheus's classic text format, which every Prometheus 2 and 3 reads; our names need none
# of the newer format's escaping.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

PREFIX: Final = "stepup_hook_"
OTHER: Final = "_other"
MULTIPROC_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"

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
    TOKENS.labels(bounded(outcome, TOKEN_OUTCOMES)).inc()


def outcome_reported(outcome: str) -> None:
    OUTCOMES.labels(bounded(outcome, OUTCOME_KINDS)).inc()


def token_proof(result: str) -> None:
    """A first token's proof (facts/proofs.py): ``marked``, ``noted`` or ``failed``."""
    TOKEN_PROOFS.labels(bounded(result, PROOF_RESULTS)).inc()


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


# --- scraping -------------------------------------------------------------------------------


class ServiceCollector(Collector):
    """The gauges read at scrape time from the serving worker's collaborators: the key set
    (from its store's last good copy) and the policy's revision."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        services = self._services
        now = services.clock()
        keys = services.keys
        key_set = keys.current()
        active = key_set.active
        activated = active.created_at if active.activated_at is None else active.activated_at
        yield GaugeMetricFamily(
            PREFIX + "active_key_age_seconds",
            "Seconds since the active signing key was activated.",
            value=now - activated,
        )
        interval = services.settings.key_rotation_interval
        if interval:
            yield GaugeMetricFamily(
                PREFIX + "next_rotation_seconds",
                "Seconds until the next scheduled rotation is due (negative: overdue).",
                value=activated + interval - now,
            )
        yield GaugeMetricFamily(
            PREFIX + "published_keys",
            "Keys in our JWKS (next, active and retired).",
            value=len(key_set.published(now)),
        )
        yield GaugeMetricFamily(
            PREFIX + "keystore_stale",
            "1 while the key set cannot be re-read: the last good one is published, no token "
            "is signed.",
            value=0 if keys.stale is None else 1,
        )
        policy = services.policy
        info = InfoMetricFamily(PREFIX + "policy", "The loaded policy's revision (SHA-256).")
        info.add_metric([], {"revision": policy.revision})
        yield info


class _ThisProcess(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class Exporter:
    """What ``GET /metrics`` renders: every worker's counters (multiprocess mode, when
    ``PROMETHEUS_MULTIPROC_DIR`` is set) or this process's, and the scrape-time gauges."""

    def __init__(self, services: Services) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        directory = services.settings.metrics_dir
        if directory is not None:
            multiprocess.MultiProcessCollector(self.registry, path=str(directory))  # type: ignore[no-untyped-call]
        else:
            self.registry.register(_ThisProcess())
        self.registry.register(ServiceCollector(services))

    def render(self) -> bytes:
        """The text exposition format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


# --- several workers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiprocessDir:
    """The workers' metric files: ``owned`` when :func:`prepare_multiprocess` created it."""

    path: Path
    owned: bool


def prepare_multiprocess(settings: Settings, environ: MutableMapping[str, str]) -> MultiprocessDir:
    """Before the workers start: an empty directory for their metric files, exported in
    ``environ`` (pass ``os.environ``; spawned workers inherit it) as
    ``PROMETHEUS_MULTIPROC_DIR``. The operator's own directory (the variable already set,
    e.g. a tmpfs volume) is emptied of a previous run's files; otherwise a fresh temporary one
    is made, and removed by :func:`cleanup_multiprocess`."""
    if settings.metrics_dir is not None:
        directory = MultiprocessDir(settings.metrics_dir, owned=False)
        _wipe(directory.path)
    else:
        directory = MultiprocessDir(Path(tempfile.mkdtemp(prefix="stepup-hook-metrics-")), True)
    environ[MULTIPROC_VARIABLE] = str(directory.path)
    return directory


def worker_exited(directory: MultiprocessDir, pid: int) -> None:
    """A worker died (the supervisor's child-exit hook): its live gauges leave the scrape. Its
    counters and histograms stay, so that totals never go back."""
    multiprocess.mark_process_dead(pid, str(directory.path))  # type: ignore[no-untyped-call]


def cleanup_multiprocess(directory: MultiprocessDir, environ: MutableMapping[str, str]) -> None:
    """After the workers have stopped: remove the directory (or, the operator's, its files)."""
    if environ.get(MULTIPROC_VARIABLE) == str(directory.path):
        del environ[MULTIPROC_VARIABLE]
    if directory.owned:
        shutil.rmtree(directory.path, ignore_errors=True)
    else:
        _wipe(directory.path)


def _wipe(path: Path) -> None:
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
