"""Device keys: which user agents count as the same device (issue 11 point 1).

A device is the browser family, the OS family and the OS major version of the user agent,
plus ``signals.platform``: a browser update (Chrome 130 -> 131) is not a new device, another
OS or another browser is. (Safari's version follows iOS's, so an iOS major update is a new
device, like any OS major update.) Parsed with ua-parser's Rust resolver (``ua-parser-rs``,
the ``[regex]`` extra) behind an LRU cache, as ua-parser 1.x's guide composes them.

The key is plain text and only ever leaves this module hashed
(:meth:`~hook_service.facts.hashing.FactsKey.device`).
"""

from __future__ import annotations

from typing import Final

import ua_parser
import ua_parser.regex
from ua_parser import Domain
from ua_parser.caching import CachingResolver, Lru
from ua_parser.loaders import load_lazy_builtins

# Longer user agents are cut before parsing: real ones stay far below, and the rest are not
# worth the CPU (the hook's budget is one second).
MAX_USER_AGENT: Final = 1024
_UNPARSED: Final = frozenset({"", "Other"})
_SEP: Final = "\x1f"
# Built once: a Flag union made per call cost 0.6 µs of a 1.4 µs key (enum.Flag.__or__ is Python).
_DOMAINS: Final = Domain.USER_AGENT | Domain.OS


class DeviceKeys:
    """``key(user_agent, platform)``: the device key of a request, None without a user agent.

    One per process (the resolver loads ua-parser's rule set once); thread-safe."""

    def __init__(self, cache_size: int = 10_000) -> None:
        base = ua_parser.regex.Resolver(load_lazy_builtins())
        self._resolve = CachingResolver(base, Lru(cache_size))

    def key(self, user_agent: object, platform: object = None) -> str | None:
        """The device key, or None when ``user_agent`` is missing, empty or not a string.

        A user agent that ua-parser recognises neither as a browser nor as an OS is its own
        device (its full text is the key): unknown clients are never merged into one."""
        if not isinstance(user_agent, str) or not user_agent.strip():
            return None
        ua = user_agent[:MAX_USER_AGENT]
        result = self._resolve(ua, _DOMAINS)
        browser = result.user_agent.family if result.user_agent else ""
        os_family = result.os.family if result.os else ""
        os_major = (result.os.major or "") if result.os else ""
        plat = platform.strip().upper() if isinstance(platform, str) else ""
        if browser in _UNPARSED and os_family in _UNPARSED:
            return _SEP.join(("raw", plat, ua))
        return _SEP.join(("v1", browser, os_family, os_major, plat))
