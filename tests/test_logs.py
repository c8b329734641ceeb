"""Process logging (docs/operations.md, "Logs"): one line per record and per request, text or
JSON, every value escaped (issue 10.7), uvicorn's lines in the same format."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hook_service.logs import escape, format_line
from tests.support import PRELUDE_JWKS_FILE, ServiceProcess, free_port, hook_body, sign_hook

SCRIPT = """
import logging, sys
from hook_service.logs import configure_logging, request_line
from hook_service.settings import Settings
configure_logging(Settings(insecure_skip_signature=True, log_format=sys.argv[1]))
configure_logging(Settings(insecure_skip_signature=True, log_format=sys.argv[1]))  # no 2nd line
logging.getLogger("hook_service.hook").info("decision rule=%s", "otp-only")
logging.getLogger("hook_service.hook").debug("not shown")
logging.getLogger("httpx").info("third-party INFO is not shown")
logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
try:
    raise ValueError("bad\\nvalue")
except ValueError:
    logging.getLogger("hook_service").exception("failed")
request_line({"request_id": "r-1", "method": "GET", "status": 200, "user_id": "a b"})
"""

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def run_script(fmt: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == ""
    return done.stderr.splitlines()


def test_text_lines_one_per_record_in_the_documented_format() -> None:
    lines = run_script("text")
    assert len(lines) == 4, lines
    assert re.fullmatch(TIME + r" INFO hook_service\.hook decision rule=otp-only", lines[0])
    assert re.fullmatch(TIME + r" INFO uvicorn\.error Started server process \[42\]", lines[1])
    # The traceback stays on its record's line, escaped.
    assert re.fullmatch(TIME + r" ERROR hook_service failed exc_info=\"Traceback .*", lines[2])
    assert 'ValueError: bad\\nvalue"' in lines[2]
    assert lines[3].endswith(
        ' INFO hook_service.access request request_id=r-1 method=GET status=200 user_id="a b"'
    )


def test_json_lines_are_one_object_each() -> None:
    records = [json.loads(line) for line in run_script("json")]
    assert [r["logger"] for r in records] == [
        "hook_service.hook",
        "uvicorn.error",
        "hook_service",
        "hook_service.access",
    ]
    assert all(re.fullmatch(TIME, r["time"]) for r in records)
    assert records[0] == {**records[0], "level": "INFO", "message": "decision rule=otp-only"}
    assert records[2]["exc_info"].endswith("ValueError: bad\nvalue")
    assert records[3] == {
        "time": records[3]["time"],
        "level": "INFO",
        "logger": "hook_service.access",
        "event": "request",
        "request_id": "r-1",
        "method": "GET",
        "status": 200,
        "user_id": "a b",
    }


HOSTILE = "\n\r\t\x00\x1b\x7f\x85\u2028\u2029\u061c\u200e\u200f\u202a\u202e\u2066\u2069\\"


def test_escape_covers_control_separator_and_bidi_characters() -> None:
    assert escape("usr_1") == "usr_1"
    assert escape("José") == "José"  # letters stay readable in text mode
    assert escape(HOSTILE) == (
        "\\n\\r\\t\\x00\\x1b\\x7f\\x85\\u2028\\u2029\\u061c\\u200e\\u200f\\u202a\\u202e"
        "\\u2066\\u2069\\\\"
    )


def test_text_values_cannot_forge_a_field() -> None:
    line = format_line("text", 0, "INFO", "x", "request", {"user_id": 'a rule=forged "q"'})
    assert line.endswith('user_id="a rule=forged \\"q\\""')
    json_line = format_line("json", 0, "INFO", "x", "m", {"user_id": HOSTILE})
    assert json.loads(json_line)["user_id"] == HOSTILE  # escaped, yet the same value
    assert all(ord(c) < 0x7F and c.isprintable() for c in json_line)


# A hook signed by Prelude's key whose user_id would, written raw, start a forged line.
FORGED = "usr_1\n2025-01-01T00:00:00.000Z CRITICAL hook_service.keys key revoked: kid=FAKE"
USER_ID = FORGED + "\x00\u202eevil\r\u2066"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_hostile_user_id_gives_exactly_one_escaped_line(tmp_path: Path, fmt: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOK_")}
    env |= {
        "HOOK_PRELUDE_JWKS_FILE": str(PRELUDE_JWKS_FILE),
        "HOOK_KEYS_DIR": str(tmp_path / "keys"),
        "HOOK_LOG_FORMAT": fmt,
    }
    command = [sys.executable, "-m", "hook_service", "serve", "--port", str(port)]
    with ServiceProcess(command, env, port, tmp_path) as service:
        body = hook_body(user_id=USER_ID)
        headers = sign_hook(body) | {"X-Request-Id": "req-hostile-1"}
        answer = httpx.post(service.base + "/hooks/stepup", content=body, headers=headers)
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == "req-hostile-1"
        lines = service.read()
    output = "".join(lines)
    for raw in ("\x00", "\u202e", "\u2066", "\r"):
        assert raw not in output
    forged = [line for line in lines if "kid=FAKE" in line]
    assert len(forged) == 1, lines
    [line] = forged
    assert "req-hostile-1" in line
    if fmt == "json":
        # Every line the process wrote, uvicorn's start-up lines included, is a JSON object.
        records = [json.loads(x) for x in lines]
        assert any(r["logger"].startswith("uvicorn") for r in records)
        [record] = [r for r in records if r.get("request_id") == "req-hostile-1"]
        assert record["user_id"] == USER_ID
        assert (record["event"], record["path"], record["status"]) == (
            "request",
            "/hooks/stepup",
            200,
        )
        assert record["rule"] == "large-transfer" and len(record["policy_revision"]) == 64
    else:
        assert "user_id=usr_1\\n2025-01-01T00:00:00.000Z" not in line  # quoted: has spaces
        assert "\\nuser_id=" not in line
        assert 'user_id="usr_1\\n2025-01-01T00:00:00.000Z CRITICAL' in line
        assert "kid=FAKE\\x00\\u202eevil\\r\\u2066" in line
    # Never the raw client address, the user agent or the signature.
    assert "203.0.113.42" not in output and "Mozilla" not in output
    assert headers["X-Webhook-Signature"].split("=", 1)[1][:40] not in output
