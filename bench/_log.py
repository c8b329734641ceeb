"""The bench's progress lines on stderr: one format for every module that runs a part of
``make bench`` (the figures go to stdout at the end)."""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    """``message`` on stderr after the time of day, at once (a run lasts minutes)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
