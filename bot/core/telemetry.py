"""OpenTelemetry tracing: spans per command, webhook and outbound call;
exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

log = logging.getLogger("chatops.telemetry")
_provider: TracerProvider | None = None


def setup_tracing(otlp_endpoint: str | None, service_name: str = "chatops-bot") -> TracerProvider:
    """Install the process-wide tracer provider once (OpenTelemetry allows one)."""
    global _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers).
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("exporting traces over OTLP", extra={"endpoint": otlp_endpoint})
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()
