"""The service's collaborators, built once from :class:`~hook_service.settings.Settings`.

Start-up is where invalid configuration must surface (a bad policy file, an unusable key
directory), so everything here is loaded eagerly and raises :class:`ConfigError` subclasses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .clock import Clock, system_clock
from .keystore import FileKeyStore
from .policy import Policy, example_policy_path
from .prelude_keys import PreludeKeys
from .settings import Settings
from .store import Store, open_store

logger = logging.getLogger("hook_service")


@dataclass(slots=True)
class Services:
    """What the endpoints work with; stored on ``app.state.services``."""

    settings: Settings
    clock: Clock
    policy: Policy
    store: Store
    keys: FileKeyStore
    prelude_keys: PreludeKeys | None

    async def startup(self) -> None:
        if self.prelude_keys is not None:
            await self.prelude_keys.load()

    async def aclose(self) -> None:
        await self.store.aclose()
        if self.prelude_keys is not None:
            await self.prelude_keys.aclose()


def build_services(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    store: Store | None = None,
    keys: FileKeyStore | None = None,
    prelude_keys: PreludeKeys | None = None,
) -> Services:
    """Load the policy and keys and open the store; any of them may be injected (tests)."""
    policy = Policy.load(settings.policy_file or example_policy_path())
    if keys is None:
        keys = FileKeyStore(settings.keys_dir, clock=clock)
    keys.load_or_create()
    if prelude_keys is None and settings.signature_source:
        prelude_keys = PreludeKeys(
            url=settings.prelude_jwks_url, file=settings.prelude_jwks_file, clock=clock
        )
    if settings.insecure_skip_signature:
        logger.warning(
            "HOOK_INSECURE_SKIP_SIGNATURE is on: hook requests are NOT authenticated. "
            "Anyone who can reach /hooks/stepup can obtain decisions. Development only."
        )
    if not settings.api_keys:
        logger.warning("HOOK_API_KEYS is unset: POST /verification-token refuses every call")
    return Services(
        settings=settings,
        clock=clock,
        policy=policy,
        store=store if store is not None else open_store(settings.redis_url, clock),
        keys=keys,
        prelude_keys=prelude_keys,
    )
