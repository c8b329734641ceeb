"""Keyed hashes (issue 11 point 4): HOOK_FACTS_KEY, normalised IPs, a repr without the key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random

import pytest

from hook_service.errors import ConfigError
from hook_service.facts.hashing import FactsKey, parse_ip
from tests.facts.support import KEY

RAW = bytes(range(100, 132))


def test_the_key_decodes_from_base64_either_alphabet() -> None:
    for text in (
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode().rstrip("="),
    ):
        assert FactsKey.from_base64(text).ip(ipaddress.ip_address("1.2.3.4")) == KEY.ip(
            ipaddress.ip_address("1.2.3.4")
        )


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_key_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="HOOK_FACTS_KEY"):
        FactsKey.from_base64(text)


def test_the_repr_never_shows_the_key() -> None:
    shown = repr(KEY) + str(KEY)
    assert RAW.hex() not in shown and base64.b64encode(RAW).decode() not in shown
    assert "hidden" in shown


def test_hashes_depend_on_the_key_and_the_kind() -> None:
    other = FactsKey.generate()
    address = ipaddress.ip_address("81.2.69.142")
    assert KEY.ip(address) != other.ip(address)
    assert len({KEY.ip(address), KEY.device("81.2.69.142"), KEY.user("81.2.69.142")}) == 3
    # Unpadded base64url: 96 bits for what is compared within one user's history, 128 bits
    # for what is compared across all users and requests.
    assert len(KEY.ip(address)) == len(KEY.device("x")) == 16
    assert len(KEY.user("81.2.69.142")) == len(KEY.request(b"{}", "sig")) == 22


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("81.2.69.142", "81.2.69.142"),
        (" 81.2.69.142 ", "81.2.69.142"),
        ("::ffff:81.2.69.142", "81.2.69.142"),
        ("[2a00:1450::1]", "2a00:1450::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("2A00:1450:0000::0001", "2a00:1450::1"),
    ],
)
def test_ips_are_normalised(text: str, expected: str) -> None:
    assert parse_ip(text) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("text", [None, "", "example.com", "999.1.1.1", 12345, "1.2.3.4/24"])
def test_what_is_not_an_ip_is_no_ip(text: object) -> None:
    assert parse_ip(text) is None


def test_an_ipv6_client_is_its_slash_64() -> None:
    one, two = parse_ip("2a00:1450:4009:81e::1"), parse_ip("2a00:1450:4009:81e:aaaa::2")
    other = parse_ip("2a00:1450:4009:81f::1")
    assert one is not None and two is not None and other is not None
    assert KEY.ip(one) == KEY.ip(two) != KEY.ip(other)
    mapped, plain = parse_ip("::ffff:81.2.69.142"), parse_ip("81.2.69.142")
    assert mapped is not None and plain is not None and KEY.ip(mapped) == KEY.ip(plain)


def test_every_hash_is_hmac_sha256_of_its_label_and_data_so_stored_hashes_never_change() -> None:
    # The hashes are stored (Redis keys, history fields): a faster way of computing them must
    # give the same bytes, for every kind, as HMAC-SHA-256(key, label NUL data) truncated.
    raw = bytes(range(32))
    key = FactsKey(raw)

    def expected(label: bytes, data: bytes, size: int) -> str:
        mac = hmac.new(raw, label + b"\x00" + data, hashlib.sha256).digest()[:size]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    v4, v6 = ipaddress.ip_address("203.0.113.7"), ipaddress.ip_address("2001:db8:1:2::9")
    assert key.ip(v4) == expected(b"ip4", v4.packed, 12)
    assert key.ip(v6) == expected(b"ip6", v6.packed[:8], 12)
    assert key.device("v1\x1fSafari") == expected(b"device", b"v1\x1fSafari", 12)
    assert key.user("user-\ud800") == expected(
        b"user", "user-\ud800".encode("utf-8", "surrogatepass"), 16
    )
    assert key.request(b"{}", "sig") == expected(b"request", b"3:sig{}", 16)
    assert key.request(b"{}", None) == expected(b"request", b"0:{}", 16)
    # Twice in a row: the per-label HMAC is copied, never fed itself.
    assert key.user("a") == key.user("a") == expected(b"user", b"a", 16)


def test_the_key_pickles_to_the_same_hashes_as_settings_do_for_workers() -> None:
    import pickle

    key = FactsKey(bytes(range(32)))
    copy = pickle.loads(pickle.dumps(key))
    assert copy.user("a") == key.user("a") and repr(copy) == "FactsKey(<hidden>)"


def _by_ipaddress(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def test_a_dotted_quad_parses_exactly_as_ipaddress_parses_it() -> None:
    # parse_ip reads dotted quads with inet_pton: the same addresses, the same refusals
    # (octets over 255, leading zeros) as ipaddress, on every octet form that can differ.
    octets = ["0", "00", "000", "01", "010", "1", "9", "10", "99", "100", "199", "249"]
    octets += ["250", "255", "256", "299", "300", "999", "0255", "1000"]
    rng = random.Random(15)
    quads = [".".join(rng.choice(octets) for _ in range(4)) for _ in range(20_000)]
    quads += [".".join((octet, "1", "1", "1")) for octet in octets]
    quads += [".".join(("1", "1", "1", octet)) for octet in octets]
    accepted = 0
    for text in quads:
        expected = _by_ipaddress(text)
        assert parse_ip(text) == expected, text
        accepted += expected is not None
    assert 0 < accepted < len(quads)  # both sides of the line were tried
    assert parse_ip("81.2.69.142%eth0") == ipaddress.IPv4Address("81.2.69.142")
    assert parse_ip("[81.2.69.142]") == ipaddress.IPv4Address("81.2.69.142")
