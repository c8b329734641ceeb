"""One error hierarchy for the whole service.

Every error a client can see is a :class:`HookError` subclass with a stable ``code`` and an HTTP
``status_code``; one handler in :mod:`hook_service.app` renders them all as
``{"error": code, "detail": message}``. ``detail`` is a human sentence and never carries secret
material (keys, tokens, signatures).

:class:`ConfigError` is separate: it is raised at start-up (settings, policy file, key store)
and stops the process with a message naming the variable or file. Nothing raised while serving
is a ``ConfigError``.

The tree (status in brackets)::

    Exception
    ├── HookError [500] ·························· rendered to the client
    │   ├── InvalidRequest [400]
    │   ├── InvalidPolicy [400] ·················· a policy reload refused; the old one stays
    │   ├── InvalidSignature [401]
    │   ├── Unauthorized [401]
    │   ├── NotFound [404]
    │   ├── NoPendingStep [404]
    │   ├── NoAttempt [404] ······················ POST /outcomes: no attempt to mark verified
    │   ├── UnknownKey [404]
    │   ├── EventsUnavailable [404] ·············· the key store keeps no event stream
    │   ├── MethodNotAllowed [405]
    │   ├── RequestTimeout [408] ················· head or body slower than HOOK_READ_TIMEOUT
    │   ├── StepAlreadyUsed [409]
    │   ├── RotationTooEarly [409]
    │   ├── LockLost [409] ······················· a fenced key-set write came too late
    │   ├── PayloadTooLarge [413]
    │   ├── UriTooLong [414] ····················· request line over 8 KiB
    │   ├── UnsupportedMediaType [415]
    │   ├── HeadersTooLarge [431] ················ header fields over 16 KiB
    │   ├── StoreUnavailable [503] ··············· the pending-step store cannot be reached
    │   ├── KeyStoreUnavailable [503] ············ the key set cannot be read right now
    │   │   ├── KeyStoreFailure [503] ············ a read or write failed while serving
    │   │   └── KeySetChanged [503] ·············· it kept changing while a token was issued
    │   ├── Overloaded [503] ····················· over HOOK_MAX_CONNECTIONS on a listener
    │   ├── InternalError [500]
    │   └── NotReady [503]
    └── ConfigError ······························ start-up only; names the variable or file
        ├── SettingsError
        ├── PolicyError
        └── KeyStoreError ························ the key set cannot be loaded at start-up
"""

from __future__ import annotations


class HookError(Exception):
    """Base class of every error rendered to an HTTP client."""

    code: str = "internal_error"
    status_code: int = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


class InvalidRequest(HookError):
    code = "invalid_request"
    status_code = 400


class InvalidPolicy(HookError):
    """``POST /admin/policy/reload`` refused the file; ``detail`` is ``policy check``'s
    message and the policy in force stays."""

    code = "invalid_policy"
    status_code = 400


class InvalidSignature(HookError):
    """``reason`` is one word from a fixed set, for the metrics (``stepup_hook_signature_
    failures_total``): missing, malformed, missing_key_id, unknown_key, wrong_key_type,
    mismatch, no_jwks, invalid."""

    code = "invalid_signature"
    status_code = 401

    def __init__(self, detail: str, reason: str = "invalid") -> None:
        super().__init__(detail)
        self.reason = reason


class Unauthorized(HookError):
    code = "unauthorized"
    status_code = 401


class NotFound(HookError):
    code = "not_found"
    status_code = 404


class NoPendingStep(HookError):
    code = "no_pending_step"
    status_code = 404


class NoAttempt(HookError):
    """``POST /outcomes`` ``verified``: the user has no unexpired ``review`` attempt for that
    scope to mark (never asked, expired, superseded, or forgotten by a ``fraud`` report)."""

    code = "no_attempt"
    status_code = 404


class UnknownKey(HookError):
    code = "unknown_key"
    status_code = 404


class EventsUnavailable(HookError):
    code = "events_unavailable"
    status_code = 404


class MethodNotAllowed(HookError):
    code = "method_not_allowed"
    status_code = 405


class RequestTimeout(HookError):
    """Answered by the server itself (:mod:`hook_service.protocols`), never by a handler."""

    code = "request_timeout"
    status_code = 408


class StepAlreadyUsed(HookError):
    code = "step_already_used"
    status_code = 409


class RotationTooEarly(HookError):
    code = "rotation_too_early"
    status_code = 409


class LockLost(HookError):
    """A fenced write came from a replica whose rotation lock has since been given to another
    (its fencing token is older than the last one issued)."""

    code = "lock_lost"
    status_code = 409


class PayloadTooLarge(HookError):
    code = "payload_too_large"
    status_code = 413


class UriTooLong(HookError):
    code = "uri_too_long"
    status_code = 414


class HeadersTooLarge(HookError):
    code = "headers_too_large"
    status_code = 431


class UnsupportedMediaType(HookError):
    code = "unsupported_media_type"
    status_code = 415


class StoreUnavailable(HookError):
    code = "store_unavailable"
    status_code = 503


class StoreTooLate(StoreUnavailable):
    """The store's answer came after the write's deadline, so the write was refused there
    (the hook had already answered ``on_error``): counted as a store timeout."""


class KeyStoreUnavailable(HookError):
    code = "key_store_unavailable"
    status_code = 503


class KeyStoreFailure(KeyStoreUnavailable):
    """Reading or writing the key set failed while serving (a full disk, a PEM gone missing).

    ``reason`` (paths and the OS error, never key bytes) is for the log, the CLI and
    ``str()``; the client gets only the generic ``detail``."""

    def __init__(self, reason: str) -> None:
        super().__init__("the signing keys cannot be read or written right now")
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class KeySetChanged(KeyStoreUnavailable):
    """The shared key set kept changing while a token was being issued (the issuer signs
    again after each change, a few times): nothing was claimed; the client retries."""


class Overloaded(HookError):
    code = "overloaded"
    status_code = 503


class InternalError(HookError):
    code = "internal_error"
    status_code = 500


class NotReady(HookError):
    code = "not_ready"
    status_code = 503


class ConfigError(Exception):
    """Invalid configuration found at start-up; the message names the variable or file."""


class SettingsError(ConfigError):
    """A ``HOOK_*`` variable (or the matching CLI flag) has an invalid value."""


class PolicyError(ConfigError):
    """The policy file cannot be loaded; the message names the file, the rule and the reason."""


class KeyStoreError(ConfigError):
    """At start-up (or in the keys CLI): the key set cannot be loaded or created, or holds
    inconsistent material. While serving, the same causes raise :class:`KeyStoreFailure`."""
