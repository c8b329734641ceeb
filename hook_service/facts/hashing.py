"""Keyed hashes: how IPs, devices and user ids are kept (issue 11 point 4).

HMAC-SHA-256 under ``HOOK_FACTS_KEY`` (32 random bytes, base64), one domain label per kind so
the same text hashes differently as an IP, a device or a user. Without the key a hash cannot be
linked to the IP or device it came from, even by trying every IPv4 address.

The digest is truncated, unpadded base64url:

* user and request hashes to 128 bits (22 characters): they are compared across every user
  and every request the service ever sees, so collisions must stay out of reach (birthday
  bound 2^64);
* device and IP hashes to 96 bits (16 characters): they are only ever compared within ONE
  user's history (at most ``Limits.devices`` + ``Limits.ips`` = 70 entries, seen or known),
  where the chance of two colliding is about 70^2 / 2^97, 3e-26 per user (3e-17 over a
  billion users); and guessing a request whose hash equals one of a victim's known devices
  needs the key, or about 2^96 / 70 tries through the hook. They are stored once per entry
  (issue 11 point 6: memory per user), so the 6 characters saved count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from typing import Final

from hook_service.errors import ConfigError

KEY_BYTES: Final = 32
DIGEST_BYTES: Final = 16  # user and request hashes
ENTRY_DIGEST_BYTES: Final = 12  # device and IP hashes: compared within one user's history
# An IPv6 host picks a new temporary address every day or so (RFC 8981) inside its /64, the
# block an ISP hands to one customer or a mobile carrier to one phone: the /64 is the
# "same network" of an IPv6 client, as an IPv4 address is.
IPV6_NETWORK_BYTES: Final = 8

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DOTTED_QUAD: Final = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# The domain label of each kind of hash: the same text hashes differently as each.
_DOMAINS: Final = (b"ip4", b"ip6", b"device", b"user", b"request")


def parse_ip(value: object) -> IPAddress | None:
    """``signals.ip`` as an address, IPv4-mapped IPv6 (``::ffff:a.b.c.d``) as IPv4, a zone
    (``%eth0``) dropped; None when absent or not an IP address (never an error)."""
    if not isinstance(value, str) or not 2 <= len(value) <= 64:
        return None
    text = value.strip().removeprefix("[").removesuffix("]").partition("%")[0]
    if _DOTTED_QUAD.fullmatch(text):
        # The common case parsed in C (1.7 -> 0.8 µs a parse): inet_pton takes exactly the dotted
        # quads ipaddress takes (no octet over 255, no leading zero; a test compares them), and
        # what it refuses still goes to ipaddress below.
        try:
            return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
        except OSError:
            pass
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class FactsKey:
    """The HMAC key of the facts; its repr never shows it."""

    __slots__ = ("_key", "_macs")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the facts key must be {KEY_BYTES} bytes")
        self._key = bytes(key)
        # One HMAC per domain, its key and label already absorbed: each hash copies one and
        # feeds it the data (the same digest as hmac.new over label + data, 0.6 µs less per
        # hash, four hashes per hook call).
        self._macs = {
            domain: hmac.new(self._key, domain + b"\x00", hashlib.sha256) for domain in _DOMAINS
        }

    @classmethod
    def from_base64(cls, text: str, variable: str = "HOOK_FACTS_KEY") -> FactsKey:
        """Decode ``variable``'s value (standard or URL-safe base64 of 32 bytes)."""
        cleaned = text.strip().replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{variable} must be base64 of {KEY_BYTES} random bytes") from None
        if len(raw) != KEY_BYTES:
            raise ConfigError(
                f"{variable} must be base64 of {KEY_BYTES} random bytes, got {len(raw)} bytes"
            )
        return cls(raw)

    @classmethod
    def generate(cls) -> FactsKey:
        """A fresh random key (``--dev``: history then lasts as long as the process)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    def __repr__(self) -> str:
        return "FactsKey(<hidden>)"

    def __reduce__(self) -> tuple[type[FactsKey], tuple[bytes]]:
        # The settings travel to `serve --workers` processes pickled; an HMAC object does not
        # pickle, so a worker makes its own from the key.
        return (FactsKey, (self._key,))

    def _digest(self, domain: bytes, data: bytes, size: int = DIGEST_BYTES) -> str:
        mac = self._macs[domain].copy()
        mac.update(data)
        return base64.urlsafe_b64encode(mac.digest()[:size]).rstrip(b"=").decode("ascii")

    def ip(self, address: IPAddress) -> str:
        """The hash of an IPv4 address, or of an IPv6 address's /64 (96 bits)."""
        packed = address.packed
        if address.version == 6:
            packed = packed[:IPV6_NETWORK_BYTES]
        return self._digest(b"ip%d" % address.version, packed, ENTRY_DIGEST_BYTES)

    def device(self, device_key: str) -> str:
        """The hash of a device key (:mod:`hook_service.facts.device`; 96 bits)."""
        return self._digest(
            b"device", device_key.encode("utf-8", "surrogatepass"), ENTRY_DIGEST_BYTES
        )

    def user(self, user_id: str) -> str:
        """The hash a store files a user's history under (never the user id itself)."""
        return self._digest(b"user", user_id.encode("utf-8", "surrogatepass"))

    def request(self, body: bytes, signature: str | None) -> str:
        """The hash a replay of one hook request is recognised by (issue 11 point 3): its
        signature (contract 2.3, the header as sent) and raw body; the body alone when
        signatures are not checked (``HOOK_INSECURE_SKIP_SIGNATURE``: ``signature`` None).
        Keyed, because the body holds the user's IP and user agent."""
        sig = b"" if signature is None else signature.encode("utf-8", "surrogatepass")
        return self._digest(b"request", b"%d:" % len(sig) + sig + body)
