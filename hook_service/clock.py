"""The injected clock: every pure module takes ``now`` values or a :data:`Clock`, never
``time.time`` directly, so tests can move time without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current Unix time in seconds."""

system_clock: Clock = time.time
