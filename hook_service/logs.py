"""Process logging for ``serve`` and the uvicorn factory: one line per record on stderr.

The hook logs one line per decision and the token endpoint one per token (design.md), so
logging sits on the hot path: the record attributes our format never shows are not
collected, as the logging HOWTO's "Optimization" section describes. (Writing from a
background thread was measured and is slower here: the writer thread and the event loop then
trade the GIL on every record.)
"""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Logger topics: the names operators filter on (docs/configuration.md, "Logs"). Every module
# logs under one of these, never under its own ``__name__``, so moving code keeps them stable.
SERVICE = "hook_service"  # start-up, configuration warnings, unexpected errors
HOOK = "hook_service.hook"  # one line per hook decision
TOKENS = "hook_service.tokens"  # one line per verification token
KEYS = "hook_service.keys"  # key life cycle and its audit events
KEYSTORE = "hook_service.keystore"  # reading and writing the key set (file or Redis)
POLICY = "hook_service.policy"  # rule evaluation failures, policy loading
STORE = "hook_service.store"  # the pending-step store
PRELUDE = "hook_service.prelude"  # Prelude's JWKS: fetches and refusals


def configure_logging(level: str) -> None:
    """Root logging on stderr at ``level`` (``HOOK_LOG_LEVEL``); a no-op for the handlers if
    the root logger already has some (as :func:`logging.basicConfig`)."""
    # LOG_FORMAT shows none of these; collecting them costs a frame walk, getpid() and a
    # thread lookup per record (logging HOWTO, "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # documented there: skips sys._getframe() in findCaller
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger(SERVICE).setLevel(level)
