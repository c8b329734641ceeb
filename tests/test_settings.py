from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from hook_service._redis_target import RedisTarget
from hook_service._variables import PARSERS
from hook_service.errors import SettingsError
from hook_service.settings import Settings

JWKS = {"HOOK_PRELUDE_JWKS_URL": "https://app.session.prelude.dev/.well-known/jwks.json"}
API_KEY = "k" * 20
ADMIN = "a" * 20
KEK = bytes(range(32))
KEK_B64 = base64.b64encode(KEK).decode()
URLSAFE_REVERSED = base64.urlsafe_b64encode(KEK[::-1]).decode()


def test_every_setting_has_a_parser_and_every_parser_a_setting() -> None:
    # The parsers live apart from the dataclass (hook_service/_variables.py): a field without
    # one would fail only when its variable is set, a parser without a field would accept a
    # flag that sets nothing.
    assert set(PARSERS) == {f.name for f in dataclasses.fields(Settings)}


def test_defaults_match_the_design() -> None:
    settings = Settings.from_env(JWKS)
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.keys_dir == Path("keys")
    assert settings.redis_url is None
    assert settings.policy_file is None
    assert settings.token_ttl == 300
    assert settings.insecure_skip_signature is False
    assert settings.api_keys == () and settings.admin_tokens == ()
    assert settings.key_store == "file"
    assert settings.key_publish_lead == 660  # 11 minutes
    assert settings.key_rotation_interval is None  # automatic rotation is off
    assert settings.key_encryption_keys == ()


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "HOOK_HOST": "0.0.0.0",
            "HOOK_PORT": "9000",
            "HOOK_REDIS_URL": "redis://:pw@127.0.0.1:6379/2",
            "HOOK_KEYS_DIR": "/var/lib/hook/keys",
            "HOOK_POLICY_FILE": "/etc/hook/policy.yaml",
            "HOOK_SHADOW_POLICY_FILE": "/etc/hook/next.yaml",
            "HOOK_PRELUDE_JWKS_FILE": "/etc/hook/prelude.json",
            "HOOK_API_KEYS": f"{API_KEY}, {API_KEY}2",
            "HOOK_ADMIN_TOKENS": ADMIN,
            "HOOK_TOKEN_TTL": "120",
            "HOOK_LOG_LEVEL": "debug",
            "HOOK_KEY_ENCRYPTION_KEYS": f"{KEK_B64}, {URLSAFE_REVERSED}",
            "HOOK_KEY_PUBLISH_LEAD": "15m",
            "HOOK_KEY_ROTATION_INTERVAL": "30d",
            "HOOK_REPLICA_ID": "pod-a",
            "HOOK_FACTS_KEY": base64.b64encode(bytes(range(1, 33))).decode(),
            "HOOK_FACTS_RETENTION": "60d",
            "HOOK_FACTS_FLAG_TTL": "12h",
            "HOOK_GEOIP_DB": "/var/lib/hook/GeoLite2-City.mmdb",
            "HOOK_REPLAY_WINDOW": "5m",
        }
    )
    assert settings.facts_key is not None and repr(settings.facts_key) == "FactsKey(<hidden>)"
    assert (settings.facts_retention, settings.facts_flag_ttl) == (60 * 86400, 12 * 3600)
    assert (settings.geoip_db, settings.replay_window) == (
        Path("/var/lib/hook/GeoLite2-City.mmdb"),
        300,
    )
    assert settings.key_store == "redis"  # the default whenever HOOK_REDIS_URL is set
    assert settings.key_encryption_keys == (KEK, KEK[::-1])
    assert (settings.key_publish_lead, settings.key_rotation_interval) == (900, 30 * 86400)
    assert settings.replica == "pod-a"
    assert settings.host == "0.0.0.0" and settings.port == 9000
    assert settings.redis_url == "redis://:pw@127.0.0.1:6379/2"
    assert settings.keys_dir == Path("/var/lib/hook/keys")
    assert settings.policy_file == Path("/etc/hook/policy.yaml")
    assert settings.shadow_policy_file == Path("/etc/hook/next.yaml")
    assert settings.prelude_jwks_file == Path("/etc/hook/prelude.json")
    assert settings.api_keys == (API_KEY, API_KEY + "2")
    assert settings.admin_tokens == (ADMIN,)
    assert settings.token_ttl == 120
    assert settings.log_level == "DEBUG"


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({**JWKS, "HOOK_PORT": "9000"}, port=9100, host=None)
    assert settings.port == 9100
    assert settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HOOK_PORT": "eighty"}, "HOOK_PORT"),
        ({"HOOK_PORT": "70000"}, "HOOK_PORT"),
        ({"HOOK_TOKEN_TTL": "29"}, "HOOK_TOKEN_TTL"),
        ({"HOOK_TOKEN_TTL": "3601"}, "HOOK_TOKEN_TTL"),
        ({"HOOK_INSECURE_SKIP_SIGNATURE": "maybe"}, "HOOK_INSECURE_SKIP_SIGNATURE"),
        ({"HOOK_REDIS_URL": "http://127.0.0.1:6379"}, "HOOK_REDIS_URL"),
        ({"HOOK_PRELUDE_JWKS_URL": "http://prelude.example/jwks.json"}, "HOOK_PRELUDE_JWKS_URL"),
        ({"HOOK_API_KEYS": "short"}, "HOOK_API_KEYS"),
        ({"HOOK_ADMIN_TOKENS": f"{ADMIN},tiny"}, "HOOK_ADMIN_TOKENS"),
        ({"HOOK_LOG_LEVEL": "LOUD"}, "HOOK_LOG_LEVEL"),
        ({"HOOK_API_KEYS": API_KEY, "HOOK_ADMIN_TOKENS": API_KEY}, "HOOK_ADMIN_TOKENS"),
        ({"HOOK_PRELUDE_JWKS_FILE": "/tmp/j.json"}, "HOOK_PRELUDE_JWKS_FILE"),
        ({"HOOK_KEYSTORE": "vault"}, "HOOK_KEYSTORE"),
        ({"HOOK_KEYSTORE": "redis", "HOOK_KEY_ENCRYPTION_KEYS": KEK_B64}, "HOOK_REDIS_URL"),
        ({"HOOK_REDIS_URL": "redis://r:6379"}, "HOOK_KEY_ENCRYPTION_KEYS"),
        ({"HOOK_KEY_ENCRYPTION_KEYS": "c2hvcnQ="}, "HOOK_KEY_ENCRYPTION_KEYS: entry 1"),
        (
            {"HOOK_KEY_ENCRYPTION_KEYS": f"{KEK_B64},not base64!"},
            "HOOK_KEY_ENCRYPTION_KEYS: entry 2",
        ),
        ({"HOOK_KEY_ENCRYPTION_KEYS": f"{KEK_B64},{KEK_B64}"}, "HOOK_KEY_ENCRYPTION_KEYS"),
        ({"HOOK_KEY_PUBLISH_LEAD": "soon"}, "HOOK_KEY_PUBLISH_LEAD"),
        ({"HOOK_KEY_ROTATION_INTERVAL": "30x"}, "HOOK_KEY_ROTATION_INTERVAL"),
        ({"HOOK_KEY_ROTATION_INTERVAL": "15m"}, "HOOK_KEY_ROTATION_INTERVAL"),  # < 2 x 11 min
        ({"HOOK_KEY_ROTATION_INTERVAL": "400d"}, "HOOK_KEY_ROTATION_INTERVAL"),
        ({"HOOK_KEY_ROTATION_INTERVAL": "9" * 5000}, "HOOK_KEY_ROTATION_INTERVAL"),  # int() limit
        ({"HOOK_KEY_PUBLISH_LEAD": "\u0661\u0661m"}, "HOOK_KEY_PUBLISH_LEAD"),  # non-ASCII digits
        ({"HOOK_REPLICA_ID": "pod-a\nkey revoked: kid=x"}, "HOOK_REPLICA_ID"),  # log injection
        ({"HOOK_REPLICA_ID": "p" * 65}, "HOOK_REPLICA_ID"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({**JWKS, **env})


def test_signature_source_is_required_unless_explicitly_skipped() -> None:
    with pytest.raises(SettingsError, match="HOOK_PRELUDE_JWKS_URL or HOOK_PRELUDE_JWKS_FILE"):
        Settings.from_env({})
    settings = Settings.from_env({"HOOK_INSECURE_SKIP_SIGNATURE": "true"})
    assert settings.insecure_skip_signature is True


def test_errors_and_repr_never_show_secrets() -> None:
    secret = "tooshort"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**JWKS, "HOOK_API_KEYS": secret})
    assert secret not in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**JWKS, "HOOK_REDIS_URL": "http://:hunter2hunter2@redis:6379"})
    assert "hunter2" not in str(caught.value)
    settings = Settings.from_env(
        {
            **JWKS,
            "HOOK_API_KEYS": API_KEY,
            "HOOK_ADMIN_TOKENS": ADMIN,
            "HOOK_REDIS_URL": "redis://:hunter2hunter2@redis:6379",
            "HOOK_KEY_ENCRYPTION_KEYS": KEK_B64,
        }
    )
    assert KEK_B64 not in repr(settings) and str(tuple(KEK)) not in repr(settings)
    assert repr(KEK) not in repr(settings)
    assert API_KEY not in repr(settings)
    assert ADMIN not in repr(settings)
    assert "hunter2" not in repr(settings)


def test_empty_variables_count_as_unset() -> None:
    settings = Settings.from_env({**JWKS, "HOOK_ADMIN_TOKENS": "", "HOOK_POLICY_FILE": " "})
    assert settings.admin_tokens == ()
    assert settings.policy_file is None


def test_settings_are_frozen_and_replace_revalidates() -> None:
    settings = Settings.from_env(JWKS)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    with pytest.raises(SettingsError, match="HOOK_TOKEN_TTL"):
        settings.replace(token_ttl=10)
    assert settings.replace(token_ttl=60).token_ttl == 60


def test_a_misspelt_variable_is_refused_with_a_hint() -> None:
    with pytest.raises(SettingsError, match=r"HOOK_API_KEY is not a setting.*HOOK_API_KEYS"):
        Settings.from_env({**JWKS, "HOOK_API_KEY": API_KEY})
    with pytest.raises(SettingsError, match="HOOK_NONSENSE is not a setting"):
        Settings.from_env({**JWKS, "HOOK_NONSENSE": "1"})


def test_jwks_url_errors_do_not_echo_credentials() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"HOOK_PRELUDE_JWKS_URL": "http://user:s3cr3t@prelude.example/j?k=tok"})
    assert "s3cr3t" not in str(caught.value)
    assert "tok" not in str(caught.value)
    assert "prelude.example" in str(caught.value)


def test_kubernetes_service_links_are_not_mistaken_for_typos() -> None:
    # What kubelet injects for a Service named "hook-service".
    links = {
        "HOOK_SERVICE_SERVICE_HOST": "10.0.0.7",
        "HOOK_SERVICE_SERVICE_PORT": "80",
        "HOOK_SERVICE_SERVICE_PORT_HTTP": "80",
        "HOOK_SERVICE_PORT": "tcp://10.0.0.7:80",
        "HOOK_SERVICE_PORT_80_TCP": "tcp://10.0.0.7:80",
        "HOOK_SERVICE_PORT_80_TCP_PROTO": "tcp",
        "HOOK_SERVICE_PORT_80_TCP_PORT": "80",
        "HOOK_SERVICE_PORT_80_TCP_ADDR": "10.0.0.7",
    }
    assert Settings.from_env({**JWKS, **links}).port == 8000


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("660", 660), ("90s", 90), ("11m", 660), ("12h", 43200), ("30d", 2592000), (" 2 H ", 7200)],
)
def test_durations_accept_units_and_plain_seconds(raw: str, seconds: int) -> None:
    assert Settings.from_env({**JWKS, "HOOK_KEY_PUBLISH_LEAD": raw}).key_publish_lead == seconds


def test_a_bad_kek_is_refused_without_echoing_it() -> None:
    wrong = base64.b64encode(b"x" * 31).decode()
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**JWKS, "HOOK_KEY_ENCRYPTION_KEYS": f"{KEK_B64},{wrong}"})
    assert "entry 2" in str(caught.value) and "32" in str(caught.value)
    assert wrong not in str(caught.value) and KEK_B64 not in str(caught.value)


def test_file_keystore_can_be_kept_beside_redis_and_replica_defaults() -> None:
    env = {**JWKS, "HOOK_REDIS_URL": "redis://r:6379", "HOOK_KEYSTORE": "file"}
    settings = Settings.from_env({**env, "HOOK_KEY_ENCRYPTION_KEYS": KEK_B64})
    assert settings.key_store == "file" and len(settings.key_encryption_keys) == 1
    host, _, pid = settings.replica.rpartition(":")
    assert host and pid.isdigit()


def test_a_redis_store_needs_a_kek_even_beside_the_file_keystore() -> None:
    # Issue 10, point 8: verification tokens are kept in Redis sealed under the KEKs.
    env = {**JWKS, "HOOK_REDIS_URL": "redis://r:6379", "HOOK_KEYSTORE": "file"}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith("HOOK_KEY_ENCRYPTION_KEYS is required with HOOK_REDIS_URL")
    assert Settings.from_env({**JWKS, "HOOK_KEYSTORE": "file"}).key_encryption_keys == ()


def test_admin_token_labels_name_each_token_in_order() -> None:
    other = "b" * 20
    settings = Settings.from_env(
        {**JWKS, "HOOK_ADMIN_TOKENS": f"{ADMIN},{other}", "HOOK_ADMIN_TOKEN_LABELS": "ops, ci"}
    )
    assert settings.admin_token_labels == ("ops", "ci")
    assert (settings.admin_actor(0), settings.admin_actor(1)) == ("admin:ops", "admin:ci")
    unlabelled = Settings.from_env({**JWKS, "HOOK_ADMIN_TOKENS": f"{ADMIN},{other}"})
    assert unlabelled.admin_actor(1) == "admin token #2"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("ops", "names 1 tokens but HOOK_ADMIN_TOKENS holds 2"),
        ("ops,ops", "labels must be distinct"),
        ("ops,bad label", "label 2 must be"),
        ("ops,-x", "label 2 must be"),
        ("ops,a\nforged", "label 2 must be"),
    ],
)
def test_bad_admin_token_labels_are_refused_naming_the_variable(labels: str, message: str) -> None:
    env = {
        **JWKS,
        "HOOK_ADMIN_TOKENS": f"{ADMIN},{'b' * 20}",
        "HOOK_ADMIN_TOKEN_LABELS": labels,
    }
    with pytest.raises(SettingsError, match="HOOK_ADMIN_TOKEN_LABELS") as caught:
        Settings.from_env(env)
    assert message in str(caught.value)
    assert ADMIN not in str(caught.value)


def test_redis_cluster_takes_any_node_s_tcp_url() -> None:
    env = {**JWKS, "HOOK_KEY_ENCRYPTION_KEYS": KEK_B64, "HOOK_REDIS_CLUSTER": "true"}
    for url in ("redis://:pw@node-2:7000", "rediss://node-1:7000/0"):
        settings = Settings.from_env({**env, "HOOK_REDIS_URL": url})
        assert settings.redis_cluster is True and settings.key_store == "redis"
        # The cluster is a kind of Redis target: every "is Redis configured" sees it.
        assert settings.redis_configured
        assert settings.redis_target == RedisTarget(url=url, cluster=True)
    assert Settings.from_env({**env, "HOOK_REDIS_CLUSTER": "false"}).redis_cluster is False


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "HOOK_REDIS_CLUSTER=true needs HOOK_REDIS_URL"),
        ("sentinels", "HOOK_REDIS_CLUSTER=true needs HOOK_REDIS_URL .* not HOOK_REDIS_SENTINELS"),
        ("min-replicas", "HOOK_REDIS_MIN_REPLICAS is not supported with HOOK_REDIS_CLUSTER"),
        ("unix:///run/redis.sock", "not unix://"),
        ("redis://:s3cret-pw@node-1:7000/2", "must name database 0"),
    ],
)
def test_a_redis_cluster_url_that_cannot_work_is_refused_at_start(
    url: str | None, message: str
) -> None:
    env = {**JWKS, "HOOK_KEY_ENCRYPTION_KEYS": KEK_B64, "HOOK_REDIS_CLUSTER": "yes"}
    if url == "sentinels":
        env |= {"HOOK_REDIS_SENTINELS": "s:26379", "HOOK_REDIS_SENTINEL_MASTER": "m"}
    elif url == "min-replicas":  # WAIT would not be sent where the script ran
        env |= {"HOOK_REDIS_URL": "redis://:s3cret-pw@node-1:7000", "HOOK_REDIS_MIN_REPLICAS": "1"}
    elif url is not None:
        env["HOOK_REDIS_URL"] = url
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_env(env)
    assert "s3cret-pw" not in str(caught.value)


SENTINELS = {
    "HOOK_REDIS_SENTINELS": "10.0.0.1:26379, sentinel-b:26380,[::1]:26381",
    "HOOK_REDIS_SENTINEL_MASTER": "hook-master",
    "HOOK_KEY_ENCRYPTION_KEYS": KEK_B64,
}


def test_sentinel_is_redis_configured_everywhere_the_url_was() -> None:
    settings = Settings.from_env(
        {
            **JWKS,
            **SENTINELS,
            "HOOK_REDIS_SENTINEL_PASSWORD": "hunter2hunter2",
            "HOOK_REDIS_MIN_REPLICAS": "1",
            "HOOK_WORKERS": "4",  # refused without Redis: the in-memory store is per process
        }
    )
    target = settings.redis_target
    assert target is not None and target.url is None
    assert target.sentinels == (("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381))
    assert (target.master, target.password, target.min_replicas) == (
        "hook-master",
        "hunter2hunter2",
        1,
    )
    assert target.sentinel_list == "10.0.0.1:26379,sentinel-b:26380,[::1]:26381"
    assert settings.redis_configured and settings.key_store == "redis"
    assert "hunter2" not in repr(settings) and "hunter2" not in repr(target)
    url = Settings.from_env(
        {
            **JWKS,
            "HOOK_REDIS_URL": "redis://r:6379",
            "HOOK_KEYSTORE": "file",
            "HOOK_KEY_ENCRYPTION_KEYS": KEK_B64,
        }
    )
    assert url.redis_target is not None and url.redis_target.url == "redis://r:6379"
    assert Settings.from_env(JWKS).redis_target is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HOOK_REDIS_URL": "redis://r:6379"}, "HOOK_REDIS_URL and HOOK_REDIS_SENTINELS"),
        (
            {"HOOK_REDIS_SENTINEL_MASTER": ""},
            "HOOK_REDIS_SENTINELS needs HOOK_REDIS_SENTINEL_MASTER",
        ),
        ({"HOOK_REDIS_SENTINELS": "a:26379,b"}, "HOOK_REDIS_SENTINELS: entry 2 must be host:port"),
        ({"HOOK_REDIS_SENTINELS": "a:0"}, "HOOK_REDIS_SENTINELS: entry 1"),
        ({"HOOK_REDIS_SENTINELS": ":26379"}, "HOOK_REDIS_SENTINELS: entry 1"),
        ({"HOOK_REDIS_SENTINELS": "a:1,a:1"}, "HOOK_REDIS_SENTINELS: the same Sentinel"),
        ({"HOOK_REDIS_SENTINEL_MASTER": "my master"}, "HOOK_REDIS_SENTINEL_MASTER must be"),
        ({"HOOK_REDIS_MIN_REPLICAS": "-1"}, "HOOK_REDIS_MIN_REPLICAS must be from 0 to 16"),
        ({"HOOK_REDIS_MIN_REPLICAS": "one"}, "HOOK_REDIS_MIN_REPLICAS must be an integer"),
        (
            {"HOOK_KEY_ENCRYPTION_KEYS": "", "HOOK_KEYSTORE": "file"},
            "HOOK_KEY_ENCRYPTION_KEYS is required with HOOK_REDIS_SENTINELS",
        ),
        (
            {"HOOK_REDIS_SENTINEL_PASSWORD": " hunter2hunter2"},
            "HOOK_REDIS_SENTINEL_PASSWORD must not",
        ),
    ],
)
def test_a_bad_sentinel_setting_is_refused_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_env({**JWKS, **SENTINELS, **env})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HOOK_REDIS_SENTINEL_MASTER": "m"}, "HOOK_REDIS_SENTINEL_MASTER is set without"),
        ({"HOOK_REDIS_SENTINEL_PASSWORD": "pw"}, "HOOK_REDIS_SENTINEL_PASSWORD is set without"),
        ({"HOOK_REDIS_MIN_REPLICAS": "1"}, "HOOK_REDIS_MIN_REPLICAS needs HOOK_REDIS_URL or"),
    ],
)
def test_sentinel_settings_without_sentinels_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**JWKS, **env})
