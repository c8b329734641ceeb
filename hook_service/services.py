"""The service's collaborators, built once from :class:`~hook_service.settings.Settings`.

Start-up is where invalid configuration must surface (a bad policy file, an unusable key
directory), so everything here is loaded eagerly and raises :class:`ConfigError` subclasses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .clock import Clock, system_clock
from .errors import ConfigError
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
        if self.prelude_keys is not None and not self.prelude_keys.loaded:
            await self.prelude_keys.load()

    async def aclose(self) -> None:
        await self.store.aclose()
        if self.prelude_keys is not None:
            await self.prelude_keys.aclose()


@contextmanager
def _named(variable: str) -> Iterator[None]:
    """Prefix a :class:`ConfigError` raised inside with the variable that chose the path."""
    try:
        yield
    except ConfigError as exc:
        raise type(exc)(f"{variable}: {exc}") from None


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(settings: Settings) -> None:
    """Root logging at ``HOOK_LOG_LEVEL``; used by ``serve`` and the uvicorn factory alike."""
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    logging.getLogger("hook_service").setLevel(settings.log_level)


def build_services(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    store: Store | None = None,
    keys: FileKeyStore | None = None,
    prelude_keys: PreludeKeys | None = None,
) -> Services:
    """Load the policy and keys and open the store; any of them may be injected (tests)."""
    with _named("HOOK_POLICY_FILE"):
        policy = Policy.load(settings.policy_file or example_policy_path())
    if keys is None:
        keys = FileKeyStore(settings.keys_dir, clock=clock)
    with _named("HOOK_KEYS_DIR"):
        keys.load_or_create()
    if prelude_keys is None and settings.signature_source:
        prelude_keys = PreludeKeys(
            url=settings.prelude_jwks_url, file=settings.prelude_jwks_file, clock=clock
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
    return Services(
        settings=settings,
        clock=clock,
        policy=policy,
        store=store if store is not None else open_store(settings.redis_url, clock),
        keys=keys,
        prelude_keys=prelude_keys,
    )
