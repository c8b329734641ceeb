"""Each collaborator opened from :class:`~hook_service.settings.Settings`: the pending-step
store, the key store and its admin, the claim guard between them, the facts store and the
attempt factory, the policy. :func:`~hook_service.services.build_services` puts them together;
the CLI opens the key store alone.

An error names the variable that chose the path (a bad policy file, an unusable key directory).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from hook_service import metrics
from hook_service.clock import Clock, system_clock
from hook_service.errors import ConfigError, SettingsError
from hook_service.facts.attempts import AttemptFactory
from hook_service.facts.base import FactsStore
from hook_service.facts.device import DeviceKeys
from hook_service.facts.geo import Geo
from hook_service.facts.hashing import FactsKey
from hook_service.facts.logic import Limits
from hook_service.facts.memory import MemoryFactsStore
from hook_service.facts.redis import RedisFactsStore
from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends.base import KeyStore, VersionedKeyStore
from hook_service.keys.backends.file import FileKeyStore
from hook_service.keys.backends.keyring import keyring
from hook_service.keys.backends.redis import RedisKeyStore
from hook_service.keys.lifecycle import NewKey, generate_rsa_key
from hook_service.policy.engine import Policy, example_policy_path
from hook_service.policy.holder import PolicyHolder
from hook_service.settings import Settings
from hook_service.store.base import Store
from hook_service.store.memory import MemoryStore
from hook_service.store.redis import RedisStore
from hook_service.tokens.base import ClaimGuard
from hook_service.tokens.guards import RereadKeySet, VersionInClaim


@contextmanager
def named(variable: str) -> Iterator[None]:
    """Prefix a :class:`ConfigError` raised inside with the variable that chose the path."""
    try:
        yield
    except ConfigError as exc:
        raise type(exc)(f"{variable}: {exc}") from None


def open_key_store(
    settings: Settings, *, clock: Clock = system_clock, new_key: NewKey = generate_rsa_key
) -> KeyStore:
    """The key store ``HOOK_KEYSTORE`` selects (not loaded yet)."""
    target = settings.redis_target
    if settings.key_store == "redis" and target is not None:
        return RedisKeyStore(
            target,
            keyring(settings.key_encryption_keys),
            clock=clock,
            replica=settings.replica,
            new_key=new_key,
        )
    return FileKeyStore(settings.keys_dir, clock=clock, new_key=new_key)


def key_admin(settings: Settings, keys: KeyStore, clock: Clock) -> KeyAdmin:
    """:class:`KeyAdmin` on ``keys`` with the settings' TTL, publish lead and replica id."""
    return KeyAdmin(
        keys,
        clock=clock,
        token_ttl=settings.token_ttl,
        publish_lead=settings.key_publish_lead,
        replica=settings.replica,
    )


def claim_guard(keys: KeyStore, *, same_redis: bool, cluster: bool = False) -> ClaimGuard:
    """The issuer's claim guard: the claim checks the key set's version itself when the key
    set is on the Redis where the steps are claimed (``same_redis``), else the key set is
    re-read around the claim. (A guard read on another Redis would never match, every token
    a 503, or worse match another deployment's version.) On a Redis Cluster (``cluster``)
    the version key is in the key set's slot, not the user's, so one script cannot read
    both: the key set is re-read (docs/keys.md, "Redis Cluster")."""
    if same_redis and not cluster and isinstance(keys, VersionedKeyStore):
        return VersionInClaim(keys)
    return RereadKeySet(keys)


def open_facts(
    settings: Settings, facts: FactsStore | None = None
) -> tuple[FactsStore, AttemptFactory]:
    """The facts store (``facts`` if given, else Redis when Redis is configured) and the
    attempt factory.

    Without Redis and without ``HOOK_FACTS_KEY`` (``--dev``, one process) the hashes are
    keyed by a random key: the history then lasts as long as the process."""
    target = settings.redis_target
    if target is not None and settings.facts_key is None and facts is None:
        # Every replica must hash IPs and devices alike, and the hashes must outlive a
        # restart: a per-process key would make every device new after each deploy.
        raise SettingsError(
            f"HOOK_FACTS_KEY is required with {target.variable}: IPs and devices are stored "
            "only as keyed hashes under it (base64 of 32 random bytes: "
            "openssl rand -base64 32)"
        )
    key = settings.facts_key or FactsKey.generate()
    limits = Limits(retention=settings.facts_retention, flag_ttl=settings.facts_flag_ttl)
    with named("HOOK_GEOIP_DB") if settings.geoip_db else nullcontext():
        geo = Geo(settings.geoip_db)
    attempts = AttemptFactory(key, DeviceKeys(), geo)
    if facts is not None:
        return facts, attempts
    if target is None:
        return MemoryFactsStore(key, limits), attempts
    facts = RedisFactsStore(target, key=key, limits=limits, on_error=metrics.store_error)
    return facts, attempts


def open_policy(settings: Settings, clock: Clock) -> PolicyHolder:
    """The policy (``HOOK_POLICY_FILE``, else the bundled example) and the shadow policy
    (``HOOK_SHADOW_POLICY_FILE``), loaded now; an error names the variable."""
    path = settings.policy_file or example_policy_path()
    with named("HOOK_POLICY_FILE"):
        live = Policy.load(path)
    shadow = None
    if settings.shadow_policy_file is not None:
        with named("HOOK_SHADOW_POLICY_FILE"):
            shadow = Policy.load(settings.shadow_policy_file, shadow=True)
    holder = PolicyHolder(path, settings.shadow_policy_file, clock=clock, loaded=(live, shadow))
    holder.on_disagreement = lambda scope, _live, _shadow: metrics.shadow_disagreement(
        holder.scopes, scope
    )
    holder.on_reload = metrics.policy_reload
    return holder


# HKDF label of the key that seals verification tokens at rest (keyring.Keyring.cipher).
AT_REST_LABEL = "verification-token-at-rest"


def open_store(settings: Settings, clock: Clock) -> Store:
    """The configured store: Redis when configured (``HOOK_REDIS_URL`` or
    ``HOOK_REDIS_SENTINELS``; its tokens sealed under ``HOOK_KEY_ENCRYPTION_KEYS``, which
    settings require then), else in-memory."""
    target = settings.redis_target
    if target is None:
        return MemoryStore(clock)
    sealer = keyring(settings.key_encryption_keys).cipher(AT_REST_LABEL)
    return RedisStore(target, sealer=sealer, clock=clock)
