"""OpenTelemetry (docs/operations.md, "Tracing"): a span per request with children for the
signature check, the policy, the store and signing, each with the request id; nothing of
OpenTelemetry without the variables."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from hook_service.app import create_app
from hook_service.errors import ConfigError
from hook_service.settings import Settings
from hook_service.tracing import build_tracing
from tests.support import API_KEY, PRELUDE_JWKS_FILE, USER_ID, bearer, hook_body, sign_hook


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(settings: Settings, exporter: InMemorySpanExporter) -> Iterator[TestClient]:
    tracing = build_tracing(settings, exporter=exporter)
    with TestClient(create_app(settings, tracing=tracing)) as client:
        yield client


def test_a_hook_and_a_token_are_traced_step_by_step(
    traced: TestClient, exporter: InMemorySpanExporter
) -> None:
    body = hook_body(amount="1500")
    headers = sign_hook(body) | {"X-Request-Id": "req-hook-1"}
    assert traced.post("/hooks/stepup", content=body, headers=headers).status_code == 200
    request = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}
    token_headers = bearer(API_KEY) | {"X-Request-Id": "req-token-1"}
    answer = traced.post("/verification-token", headers=token_headers, json=request)
    assert answer.status_code == 200
    spans = exporter.get_finished_spans()
    by_request: dict[str, list[str]] = {}
    for span in spans:
        assert span.attributes is not None
        by_request.setdefault(str(span.attributes["request_id"]), []).append(span.name)
    assert sorted(by_request["req-hook-1"]) == sorted(
        ["hook.signature", "policy.decide", "store.put_pending", "POST /hooks/stepup"]
    )
    assert sorted(by_request["req-token-1"]) == sorted(
        ["tokens.sign", "store.claim", "POST /verification-token"]
    )
    # The steps are children of their request's span, in one trace.
    roots = {s.name: s for s in spans if s.parent is None}
    hook_root = roots["POST /hooks/stepup"]
    assert hook_root.attributes is not None
    assert hook_root.attributes["http.route"] == "/hooks/stepup"
    assert hook_root.attributes["http.response.status_code"] == 200
    for span in spans:
        if span.attributes and span.attributes["request_id"] == "req-hook-1" and span.parent:
            assert span.parent.span_id == hook_root.context.span_id
            assert span.context.trace_id == hook_root.context.trace_id
    # The token itself is in no span.
    token = answer.json()["verification_token"]
    assert all(token not in str(dict(s.attributes or {})) for s in spans)


def test_the_callers_trace_is_continued(traced: TestClient, exporter: InMemorySpanExporter) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    assert traced.get("/healthz", headers={"traceparent": traceparent}).status_code == 200
    [span] = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == trace_id


def test_a_failing_step_marks_its_span(traced: TestClient, exporter: InMemorySpanExporter) -> None:
    body = hook_body()
    forged = sign_hook(body, key="prelude_rsa_other.pem")
    assert traced.post("/hooks/stepup", content=body, headers=forged).status_code == 401
    [signature] = [s for s in exporter.get_finished_spans() if s.name == "hook.signature"]
    assert signature.status.status_code.name == "ERROR"


def test_tracing_is_on_only_when_a_variable_asks() -> None:
    base = {"HOOK_INSECURE_SKIP_SIGNATURE": "true"}
    assert Settings.from_env(base).tracing is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert Settings.from_env(base | endpoint).tracing == "otlp"
    assert Settings.from_env(base | {"OTEL_TRACES_EXPORTER": "console"}).tracing == "console"
    assert Settings.from_env(base | endpoint | {"OTEL_TRACES_EXPORTER": "none"}).tracing is None
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER must be one of"):
        Settings.from_env(base | {"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT must be an http"):
        Settings.from_env(base | {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    tracing = build_tracing(Settings.from_env(base | endpoint))
    assert tracing is not None
    tracing.shutdown()


UNTRACED = f"""
import sys
from hook_service.app import create_app
from hook_service.settings import Settings
from pathlib import Path
jwks = Path({str(PRELUDE_JWKS_FILE)!r})
app = create_app(Settings(prelude_jwks_file=jwks, keys_dir=Path(sys.argv[1])))
services = app.state.services
from hook_service.policy.holder import PolicyHolder
assert type(services.hook._decider._policy) is PolicyHolder, "the policy is wrapped"
# (redis-py imports OpenTelemetry's metrics API when installed; the tracing SDK is ours.)
ours = ("opentelemetry.sdk.trace", "opentelemetry.exporter")
loaded = sorted(m for m in sys.modules if m.startswith(ours))
assert not loaded, loaded
"""

MISSING_EXTRA = """
import sys
sys.modules["opentelemetry.sdk"] = None  # as without the [otel] extra
from hook_service.settings import Settings
from hook_service.tracing import build_tracing
from hook_service.errors import ConfigError
try:
    build_tracing(Settings(insecure_skip_signature=True, otel_traces_exporter="console"))
except ConfigError as exc:
    print(exc)
"""


def test_without_the_variables_no_tracer_is_loaded_nor_wrapper_installed(tmp_path: object) -> None:
    subprocess.run([sys.executable, "-c", UNTRACED, str(tmp_path)], check=True, timeout=60)


def test_without_the_extra_the_variables_stop_start_up_naming_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MISSING_EXTRA], capture_output=True, text=True, timeout=60
    )
    assert "prelude-stepup-hook[otel]" in done.stdout, done.stderr
