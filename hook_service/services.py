"""The service's collaborators, built once from :class:`~hook_service.settings.Settings`, and
their life cycle: start-up, readiness, shutdown (each one is opened in
:mod:`hook_service.collaborators`).

Start-up is where invalid configuration must surface (a bad policy file, an unusable key
directory), so everything here is loaded eagerly and raises :class:`ConfigError` subclasses.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from hook_service import logs, metrics
from hook_service.clock import Clock, system_clock
from hook_service.collaborators import (
    claim_guard,
    key_admin,
    named,
    open_facts,
    open_key_store,
    open_policy,
    open_store,
)
from hook_service.errors import HookError
from hook_service.facts.attempts import AttemptFactory
from hook_service.facts.base import FactsStore
from hook_service.facts.proofs import TokenProofs
from hook_service.hook.decider import HookDecider
from hook_service.hook.history import HookHistory
from hook_service.hook.signature import SignatureCheck
from hook_service.hook.stepup import StepUpHook
from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends.base import KeyStore
from hook_service.keys.scheduler import RotationScheduler
from hook_service.policy.base import DecisionPolicy
from hook_service.policy.holder import PolicyHolder
from hook_service.prelude.jwks import PreludeJwks
from hook_service.settings import Settings
from hook_service.store.base import Store
from hook_service.store.observed import ObservedStore
from hook_service.tokens.base import ClaimGuard
from hook_service.tokens.issuer import TokenIssuer
from hook_service.tracing import Tracing, build_tracing, no_span, traced_policy, traced_signatures

logger = logging.getLogger(logs.SERVICE)

# /readyz answers within this even when the store hangs.
READY_TIMEOUT = 1.0


@dataclass(slots=True)
class Services:
    """What the endpoints work with; stored on ``app.state.services``."""

    settings: Settings
    clock: Clock
    policy: PolicyHolder
    """The live policy (and shadow), reloaded by SIGHUP or POST /admin/policy/reload."""
    store: Store
    keys: KeyStore
    key_admin: KeyAdmin
    scheduler: RotationScheduler | None
    prelude_keys: PreludeJwks | None
    hook: StepUpHook
    """POST /hooks/stepup: signature check, parsing and the decision step."""
    issuer: TokenIssuer
    """POST /verification-token: sign, claim once, refuse a revoked key."""
    facts: FactsStore
    """Each user's history of attempts and proofs (design.md "Facts")."""
    attempts: AttemptFactory
    """A hook request's signals as an Attempt: keyed hashes, country, location."""
    history: HookHistory
    """The hook's use of the facts: observed or recorded in the background, replays."""
    tracing: Tracing | None = None
    """Spans for requests and their steps (OpenTelemetry), when configured."""

    async def startup(self) -> None:
        _on_sighup(self.policy.reload_or_log)
        if self.prelude_keys is not None and not self.prelude_keys.loaded:
            await self.prelude_keys.load()
        await self.keys.start()
        if self.scheduler is not None:
            self.scheduler.start()
        await self._connect()

    async def _connect(self) -> None:
        # A Redis Cluster client reads the slot map and the command table on its first
        # command: here, not inside the first hook call's budget (RECORD_TIMEOUT), which a busy
        # node could make it miss, answering on_error. Best effort: a store that does not answer
        # yet is readiness's to report (/readyz), and every call tries it again.
        for name, store in (("store", self.store), ("facts", self.facts)):
            try:
                async with asyncio.timeout(READY_TIMEOUT):
                    await store.ping()
            except (HookError, TimeoutError) as exc:
                reason = exc.detail if isinstance(exc, HookError) else "timed out"
                logger.warning("the %s did not answer at start-up (%s)", name, reason)

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state for ``/readyz``: ``ok``, ``skipped`` or why it is not ready.

        The store answers (within :data:`READY_TIMEOUT`), the key set is readable and, when
        signatures are checked, Prelude's JWKS has been loaded at least once. The policy and an
        active key are loaded before the app serves at all (start-up fails otherwise)."""
        self.keys.current()  # notices a key set changed on disk by another worker or the CLI
        checks: dict[str, str] = {"policy": "ok", "keys": "stale" if self.keys.stale else "ok"}
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.store.ping()
            checks["store"] = "ok"
        except (HookError, TimeoutError):
            checks["store"] = "unreachable"
        if self.prelude_keys is None:
            checks["prelude_jwks"] = "skipped"
        else:
            checks["prelude_jwks"] = "ok" if self.prelude_keys.loaded else "not loaded"
        return checks

    async def aclose(self) -> None:
        _on_sighup(None)
        if self.scheduler is not None:
            await self.scheduler.aclose()
        await self.keys.aclose()
        await self.store.aclose()
        await self.history.background.drain()  # the attempts still being recorded
        await self.facts.aclose()
        if self.prelude_keys is not None:
            await self.prelude_keys.aclose()
        if self.tracing is not None:
            self.tracing.shutdown()


def _on_sighup(callback: Callable[[], object] | None) -> None:
    """Reload the policy on SIGHUP (``None``: stop). Only where the loop may own signals:
    the main thread of a Unix process (not under a test client's thread)."""
    try:
        loop = asyncio.get_running_loop()
        if callback is None:
            loop.remove_signal_handler(signal.SIGHUP)
        else:
            loop.add_signal_handler(signal.SIGHUP, callback)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        pass


def build_services(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    store: Store | None = None,
    keys: KeyStore | None = None,
    prelude_keys: PreludeJwks | None = None,
    guard: ClaimGuard | None = None,
    facts: FactsStore | None = None,
    tracing: Tracing | None = None,
) -> Services:
    """Load the policy and keys and open the store; any of them (and ``tracing``) may be
    injected (tests).

    Stores built here from the settings share one Redis exactly when both are on the
    configured Redis; whoever injects a store and a key store knows whether they do, and
    passes the claim ``guard`` (by default the key set is re-read around each claim)."""
    policy = open_policy(settings, clock)
    same_redis = store is None and keys is None and settings.key_store == "redis"
    if keys is None:
        keys = open_key_store(settings, clock=clock)
    # The Redis store's errors already name its variable or HOOK_KEY_ENCRYPTION_KEYS.
    with named("HOOK_KEYS_DIR") if settings.key_store == "file" else nullcontext():
        keys.load_or_create()
    admin = key_admin(settings, keys, clock)
    interval = settings.key_rotation_interval
    scheduler = RotationScheduler(admin, interval) if interval else None
    if prelude_keys is None and settings.signature_source:
        prelude_keys = PreludeJwks(
            url=settings.prelude_jwks_url,
            file=settings.prelude_jwks_file,
            clock=clock,
            on_fetch=metrics.jwks_fetch,
        )
    if prelude_keys is not None:
        prelude_keys.preload()
    if settings.insecure_skip_signature:
        logger.warning(
            "HOOK_INSECURE_SKIP_SIGNATURE is on: hook requests are NOT authenticated. "
            "Anyone who can reach /hooks/stepup can obtain decisions. Development only."
        )
    if not settings.api_keys:
        logger.warning("HOOK_API_KEYS is unset: POST /verification-token refuses every call")
    if tracing is None:
        tracing = build_tracing(settings)
    spans = no_span if tracing is None else tracing.span
    # Every store call's failure is counted (and traced): one wrapper, whichever store.
    store = ObservedStore(
        open_store(settings, clock) if store is None else store,
        metrics.store_error,
        spans,
    )
    facts, attempts = open_facts(settings, facts)
    history = HookHistory(facts, attempts, clock, window=settings.replay_window)
    signatures = None if settings.insecure_skip_signature else SignatureCheck(prelude_keys)
    deciding: DecisionPolicy = policy
    if tracing is not None:  # wrapped only when traced: no cost otherwise
        deciding = traced_policy(policy, spans)
        signatures = signatures and traced_signatures(signatures, spans)
    issuer = TokenIssuer(
        store,
        guard or claim_guard(keys, same_redis=same_redis, cluster=settings.redis_cluster),
        custom_steps=policy.live_custom_steps(),
        ttl=settings.token_ttl,
        spans=spans,
        # A first token is proof (design.md "Facts"); each proof counted by its result.
        on_issued=TokenProofs(facts, on_result=metrics.token_proof),
    )
    return Services(
        settings=settings,
        clock=clock,
        policy=policy,
        store=store,
        keys=keys,
        key_admin=admin,
        scheduler=scheduler,
        prelude_keys=prelude_keys,
        hook=StepUpHook(HookDecider(deciding, store, clock, history=history), signatures),
        issuer=issuer,
        facts=facts,
        attempts=attempts,
        tracing=tracing,
        history=history,
    )
