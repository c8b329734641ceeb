"""Process logging: the format docs/configuration.md documents, on stderr, at HOOK_LOG_LEVEL."""

from __future__ import annotations

import re
import subprocess
import sys

SCRIPT = """
import logging
from hook_service.logs import configure_logging
configure_logging("INFO")
configure_logging("INFO")  # a second call adds no second handler
logging.getLogger("hook_service.hook").info("decision rule=%s", "otp-only")
logging.getLogger("hook_service.hook").debug("not shown")
"""


def test_records_are_written_to_stderr_once_in_the_documented_format() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    pattern = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO hook_service\.hook decision rule=otp-only"
    assert re.fullmatch(pattern, lines[0])
    assert done.stdout == ""
