"""One error hierarchy for the whole service.

Every error a client can see is a :class:`HookError` subclass with a stable ``code`` and an HTTP
``status_code``; one handler in :mod:`hook_service.app` renders them all as
``{"error": code, "detail": message}``. ``detail`` is a human sentence and never carries secret
material (keys, tokens, signatures).

:class:`ConfigError` is separate: it is raised at start-up (settings, policy file, key
directory) and stops the process with a message naming the variable or file.
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


class InvalidSignature(HookError):
    code = "invalid_signature"
    status_code = 401


class Unauthorized(HookError):
    code = "unauthorized"
    status_code = 401


class NotFound(HookError):
    code = "not_found"
    status_code = 404


class NoPendingStep(HookError):
    code = "no_pending_step"
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


class UnsupportedMediaType(HookError):
    code = "unsupported_media_type"
    status_code = 415


class StoreUnavailable(HookError):
    code = "store_unavailable"
    status_code = 503


class KeyStoreUnavailable(HookError):
    code = "key_store_unavailable"
    status_code = 503


class KeySetChanged(KeyStoreUnavailable):
    """A claim found the shared key set at a newer version than the one that signed: nothing
    was claimed; the caller re-reads the key set and signs again."""


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
    """The key directory cannot be read or written, or holds inconsistent material."""
