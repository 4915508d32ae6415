"""OpenTelemetry traces: off unless configured by the standard ``OTEL_*`` variables.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or ``OTEL_TRACES_EXPORTER=otlp``
or ``console``) set and ``OTEL_SDK_DISABLED`` not ``true``, ``setup_tracing`` installs a tracer provider that
exports spans in batches over OTLP/HTTP (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, headers... as the
SDK reads them). Then the API's requests (FastAPI instrumentation) and every Temporal call of its client and
worker (``temporalio.contrib.opentelemetry.TracingInterceptor``: workflow start, update, signal, the workflow
run, each activity) are spans of one trace per order request: the REST call, the workflow, the risk check, the
broker call and the booking as one tree.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.contrib.opentelemetry import TracingInterceptor

__all__ = ["configured", "instrument_app", "setup_tracing", "temporal_interceptor", "use_provider"]

log = logging.getLogger(__name__)

_provider: TracerProvider | None = None


def configured(env: dict[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    env = dict(os.environ) if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(endpoint) or exporter in ("otlp", "console")


def use_provider(provider: TracerProvider | None) -> None:
    """Trace through ``provider`` from now on (``None``: stop tracing new clients, apps and workers)."""
    global _provider
    _provider = provider


def setup_tracing(service_name: str) -> bool:
    """Install the exporting tracer provider if the environment asks for one; whether it did."""
    if not configured():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    use_provider(provider)
    log.info("tracing on: spans of %s exported (%s)", service_name, type(exporter).__name__)
    return True


def temporal_interceptor() -> TracingInterceptor | None:
    """Temporal's tracing interceptor on the configured provider, or ``None`` when tracing is off."""
    if _provider is None:
        return None
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return TracingInterceptor(_provider.get_tracer("exodus.temporal"))


def instrument_app(app: FastAPI) -> Any:
    """Trace the app's requests when tracing is on (``X-Request-Id`` becomes a span attribute)."""
    if _provider is None:
        return None
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="health,ready,metrics")
    return app
