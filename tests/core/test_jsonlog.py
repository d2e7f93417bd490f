"""Logs are JSON lines with trace ids, and secrets never appear in them."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from bot.core.jsonlog import setup_logging


def test_json_lines_with_trace_ids_and_masked_secrets() -> None:
    out = io.StringIO()
    setup_logging("INFO", secrets=["s3cret-signing-value"], stream=out)
    log = logging.getLogger("chatops.test")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("command /deploy"):
        log.info("calling slack with token xoxb-1234567890-abcdef",
                 extra={"secret_seen": "s3cret-signing-value", "user": "UALICE"})
    try:
        raise ValueError("bad app token xapp-1-A0-123456789-abcdef")
    except ValueError:
        log.exception("boom")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "info" and first["logger"] == "chatops.test"
    assert first["event"] == "calling slack with token ***"
    assert first["secret_seen"] == "***" and first["user"] == "UALICE"
    assert len(first["trace_id"]) == 32 and len(first["span_id"]) == 16
    assert "xapp-" not in second["exception"] and "***" in second["exception"]
    assert "trace_id" not in second
    logging.getLogger().handlers.clear()
