"""OpenTelemetry traces, optional (docs/operations.md, "Tracing").

On only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_TRACES_EXPORTER`` is set (read by
:mod:`hook_service.settings`) and the ``[otel]`` extra is installed: one span per request (the
middleware), with children for the signature check, the policy, each store call and signing,
each carrying the request id. Off, nothing of OpenTelemetry is imported and the collaborators
are not wrapped; what remains is :func:`no_span`, a shared null context.

The core does not import OpenTelemetry either: :class:`~hook_service.tokens.issuer.TokenIssuer`
and :class:`~hook_service.store.observed.ObservedStore` take a :data:`Spans` callable, and the
policy and the signature check are wrapped here, in :func:`traced_policy` and
:func:`traced_signatures`, when tracing is on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from hook_service import logs
from hook_service.errors import ConfigError

if TYPE_CHECKING:
    from hook_service.facts.base import Facts
    from hook_service.hook.base import HookRequest
    from hook_service.hook.signature import SignatureCheck
    from hook_service.policy.base import Decision, DecisionPolicy
    from hook_service.settings import Settings

Spans = Callable[[str], AbstractContextManager[Any]]
"""``spans(name)``: a context manager around one step of a request."""

_NULL = nullcontext()


def no_span(name: str) -> AbstractContextManager[Any]:
    """The :data:`Spans` of a service without tracing: does nothing."""
    return _NULL


class Tracing:
    """A tracer of our own (not the global provider): spans for requests and their steps."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer = provider.get_tracer("hook_service")
        self._propagator = TraceContextTextMapPropagator()

    def span(self, name: str) -> AbstractContextManager[Any]:
        """A child span of the current one, with the request's id (:data:`Spans`)."""
        notes = logs.REQUEST.get()
        attributes = {"request_id": str(notes["request_id"])} if notes else None
        span: AbstractContextManager[Any] = self._tracer.start_as_current_span(
            name, attributes=attributes
        )
        return span

    @contextmanager
    def request(self, method: str, headers: Mapping[str, str], request_id: str) -> Iterator[Any]:
        """The span of one request, continuing the caller's trace (W3C ``traceparent``)."""
        from opentelemetry.trace import SpanKind

        parent = self._propagator.extract(headers)
        attributes = {"http.request.method": method, "request_id": request_id}
        with self._tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span

    def shutdown(self) -> None:
        """Export what is buffered and stop (the app's shutdown)."""
        self._provider.shutdown()


def build_tracing(settings: Settings, exporter: Any = None) -> Tracing | None:
    """The tracing ``settings`` ask for, or None. ``exporter`` (tests: the SDK's in-memory
    exporter) replaces the configured one and exports each span as it ends."""
    kind = settings.tracing if exporter is None else "test"
    if kind is None:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER is set, but OpenTelemetry is "
            "not installed: pip install 'prelude-stepup-hook[otel]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": "prelude-stepup-hook"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif kind == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL (OpenTelemetry's spec): the
        # traces go to <endpoint>/v1/traces. Unset, the exporter's default (localhost:4318).
        endpoint = settings.otel_endpoint
        url = None if endpoint is None else endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return Tracing(provider)


class _TracedPolicy:
    def __init__(self, policy: DecisionPolicy, spans: Spans) -> None:
        self._policy = policy
        self._spans = spans

    @property
    def custom_steps(self) -> frozenset[str]:
        return self._policy.custom_steps

    def reads_facts(self, scope: str) -> bool:
        return self._policy.reads_facts(scope)

    def decide(self, request: HookRequest, facts: Facts | None = None) -> Decision:
        with self._spans("policy.decide"):
            return self._policy.decide(request, facts)

    def on_error_decision(self, request: HookRequest, reason: str, cause: str) -> Decision:
        return self._policy.on_error_decision(request, reason, cause)


def traced_policy(policy: DecisionPolicy, spans: Spans) -> DecisionPolicy:
    """``policy`` with a ``policy.decide`` span around each decision."""
    return _TracedPolicy(policy, spans)


class _TracedSignatures:
    def __init__(self, check: SignatureCheck, spans: Spans) -> None:
        self._check = check
        self._spans = spans

    async def verify(self, body: bytes, signature: str | None, key_id: str | None) -> None:
        with self._spans("hook.signature"):
            await self._check.verify(body, signature, key_id)


def traced_signatures(check: SignatureCheck, spans: Spans) -> SignatureCheck:
    """``check`` with a ``hook.signature`` span around each verification."""
    return _TracedSignatures(check, spans)  # type: ignore[return-value]
