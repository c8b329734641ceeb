"""Process logging: one line per record on stderr, as text or JSON (``HOOK_LOG_FORMAT``), and
the one line per request (docs/operations.md, "Logs").

Every value that reaches a line is escaped: control characters (C0, DEL, C1), the Unicode line
and paragraph separators and the bidirectional controls (U+061C, U+200E/F, U+202A-U+202E,
U+2066-U+2069) are written as ``\\n``, ``\\x00``, ``\\u202e``..., so that a signed hook whose
``user_id`` holds a newline cannot write a forged line, nor a right-to-left override reverse
what a reader sees (issue 10.7). JSON lines are ASCII (``ensure_ascii``), which escapes the
same characters; text lines quote a value holding a space, a quote or ``=`` (logfmt), so that
no value can forge a field either.

Logging sits on the hot path (a line per hook and per token), so the request line skips the
logging module's per-record machinery: the middleware hands its fields to
:func:`request_line`, which formats them and writes to the configured :class:`LineHandler`'s
stream under its lock. Other records go through logging as usual, formatted by
:class:`LineFormatter`; the record attributes the formats never show are not collected (the
logging HOWTO's "Optimization"). Writing from a background thread was measured and is slower
here: the writer thread and the event loop then trade the GIL on every record.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from hook_service.settings import Settings

# Logger topics: the names operators filter on (docs/configuration.md, "Logs"). Every module
# logs under one of these, never under its own ``__name__``, so moving code keeps them stable.
SERVICE = "hook_service"  # start-up, configuration warnings, unexpected errors
ACCESS = "hook_service.access"  # one line per request (endpoints/observe.py)
HOOK = "hook_service.hook"  # hook failures (the decision itself is in the request line)
TOKENS = "hook_service.tokens"  # token failures (the token itself is in the request line)
KEYS = "hook_service.keys"  # key life cycle and its audit events
KEYSTORE = "hook_service.keystore"  # reading and writing the key set (file or Redis)
POLICY = "hook_service.policy"  # rule evaluation failures, policy loading
STORE = "hook_service.store"  # the pending-step store
PRELUDE = "hook_service.prelude"  # Prelude's JWKS: fetches and refusals

# --- escaping -------------------------------------------------------------------------------

_UNSAFE: Final = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: str) -> str:
    """``value`` with backslashes, control, line-separator and bidi characters escaped."""
    return _UNSAFE.sub(_escaped, value)


_NEEDS_QUOTES: Final = re.compile(r'[\s"=]')


_PLAIN_TEXT: Final = frozenset(' \\"=')


def _text_value(value: object) -> str:
    if type(value) is str:
        # The common case, decided by C-level string methods: printable ASCII with nothing to
        # escape or quote (ids, scopes, rule names, paths).
        if value.isascii() and value.isprintable() and value and _PLAIN_TEXT.isdisjoint(value):
            return value
        text = escape(value)
        if not text or _NEEDS_QUOTES.search(text):
            return '"' + text.replace('"', '\\"') + '"'
        return text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _text_value(str(value))


# --- the line ---------------------------------------------------------------------------------

_second: tuple[int, str] = (-1, "")


def timestamp(now: float) -> str:
    """RFC 3339 UTC with milliseconds (``2025-01-31T12:00:00.123Z``); the seconds part is
    formatted once per second."""
    global _second
    whole = int(now)
    cached = _second
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        _second = cached
    return f"{cached[1]}.{int((now - whole) * 1000):03d}Z"


# Built once: json.dumps with any non-default argument builds a new encoder per call.
_JSON: Final = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)


def format_line(
    fmt: str, now: float, level: str, logger: str, head: str, fields: Mapping[str, object]
) -> str:
    """One line: ``head`` is the event of a request line or the message of a record."""
    if fmt == "json":
        data: dict[str, object] = {"time": timestamp(now), "level": level, "logger": logger}
        data["event" if logger == ACCESS else "message"] = head
        data.update(fields)
        line = _JSON.encode(data)
        return line.replace("\x7f", "\\u007f") if "\x7f" in line else line
    parts = [timestamp(now), level, logger, escape(head)]
    for key, value in fields.items():
        if value is not None:
            parts.append(f"{key}={_text_value(value)}")
    return " ".join(parts)


# The notes of the request being served: the endpoints and the core add the fields of its line
# (scope, rule, jti...) with note(); the middleware sets and writes it.
REQUEST: ContextVar[dict[str, object] | None] = ContextVar("hook_request", default=None)


def note(**fields: object) -> None:
    """Add ``fields`` to the current request's line (nothing outside a request)."""
    notes = REQUEST.get()
    if notes is not None:
        notes.update(fields)


class LineFormatter(logging.Formatter):
    """Formats a record as one line, ``text`` or ``json``; inside a request the JSON line
    carries its ``request_id``. A traceback stays on the line (escaped)."""

    def __init__(self, fmt: str = "text") -> None:
        super().__init__()
        self.mode = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = dict(getattr(record, "fields", None) or {})
        notes = REQUEST.get()
        if notes is not None and "request_id" in notes and "request_id" not in fields:
            fields["request_id"] = notes["request_id"]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc_info"] = record.exc_text
        return format_line(
            self.mode, record.created, record.levelname, record.name, record.getMessage(), fields
        )


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The process's one log handler (stderr); :func:`request_line` writes through the last
    one created."""

    def __init__(self, stream: Any = None, fmt: str = "text") -> None:
        super().__init__(stream)
        self.mode = fmt
        self.setFormatter(LineFormatter(fmt))
        global _handler
        _handler = self

    def write_line(self, line: str) -> None:
        self.acquire()
        try:
            self.stream.write(line + "\n")
            self.flush()
        finally:
            self.release()

    def close(self) -> None:
        global _handler
        if _handler is self:
            _handler = None
        super().close()


_handler: LineHandler | None = None
_access = logging.getLogger(ACCESS)


def request_line(fields: Mapping[str, object], level: int = logging.INFO) -> None:
    """Write the request line: straight to the :class:`LineHandler` when one is configured,
    else through logging (a host application's handlers, pytest's caplog)."""
    if not _access.isEnabledFor(level):
        return
    handler = _handler
    if handler is None or logging.root.handlers != [handler] or _access.handlers:
        # Another handler listens too (a host application's, pytest's): the logging way.
        _access.log(level, "request", extra={"fields": dict(fields)})
        return
    line = format_line(
        handler.mode, time.time(), logging.getLevelName(level), ACCESS, "request", fields
    )
    try:
        handler.write_line(line)
    except Exception:  # a closed stream: as logging does, report and carry on
        handler.handleError(logging.LogRecord(ACCESS, level, "", 0, line, None, None))


# --- configuration ----------------------------------------------------------------------------


def logging_config(settings: Settings) -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` of the process, also given to ``uvicorn.run(...,
    log_config=...)`` so that each worker sends uvicorn's own records through the same handler
    and format. uvicorn's access logger is silenced here: the service writes its own request
    line (uvicorn's would carry the raw client address)."""
    return _config(settings.log_level, settings.log_format)


def _config(level: str, fmt: str) -> dict[str, Any]:
    # Our topics and uvicorn's at HOOK_LOG_LEVEL; other libraries only from WARNING.
    uvicorn = {"level": level, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "stderr": {"()": f"{__name__}.LineHandler", "stream": "ext://sys.stderr", "fmt": fmt}
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            SERVICE: {"level": level},
            "uvicorn": uvicorn,
            "uvicorn.error": uvicorn,
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def configure_logging(settings: Settings | str) -> None:
    """Configure the process's logging from ``settings`` (``HOOK_LOG_LEVEL``,
    ``HOOK_LOG_FORMAT``; a level alone: the text format). Calling it again replaces the
    handler rather than adding a second one."""
    # The formats show none of these; collecting them costs a frame walk, getpid() and a
    # thread lookup per record (logging HOWTO, "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # documented there: skips sys._getframe() in findCaller
    if isinstance(settings, str):
        logging.config.dictConfig(_config(settings, "text"))
    else:
        logging.config.dictConfig(logging_config(settings))
