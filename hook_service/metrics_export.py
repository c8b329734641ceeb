"""What ``GET /metrics`` renders, and the metric files of several workers (docs/operations.md).

The counters and histograms of :mod:`hook_service.metrics` live in this process
(:data:`~hook_service.metrics.REGISTRY`), or with several workers in prometheus-client's
multiprocess files: ``serve --workers N`` calls :func:`prepare_multiprocess` before the workers
start (they inherit ``PROMETHEUS_MULTIPROC_DIR``) and :func:`cleanup_multiprocess` at the end.
A scrape then sums every worker's files, a dead worker's too, so counters never go back. No
gauge is pushed to those files (so none must be retired when a worker dies): the key-set and
policy gauges are computed by :class:`ServiceCollector` from the serving worker's own view at
scrape time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from hook_service.metrics import PREFIX, REGISTRY

if TYPE_CHECKING:
    from hook_service.services import Services
    from hook_service.settings import Settings

# Prometheus's classic text format, which every Prometheus 2 and 3 reads; our names need none
# of the newer format's escaping.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"


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
