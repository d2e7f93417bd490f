"""JSON logs, one object a line, with trace ids; secrets are masked.

Masking works on the final line, so a token that reaches a log through an
exception message or a library's debug output is caught too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

# Slack tokens and signing material look like this whatever their source.
_TOKEN_PATTERNS = re.compile(r"\b(xox[abposr]-[A-Za-z0-9-]{8,}|xapp-[A-Za-z0-9-]{8,})")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = sorted({s for s in (secrets or []) if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
            out["span_id"] = format(span.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return self.mask(json.dumps(out, default=str, ensure_ascii=False))

    def mask(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return _TOKEN_PATTERNS.sub("***", line)


def setup_logging(level: str = "INFO", secrets: list[str] | None = None,
                  stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries log request bodies and headers at DEBUG; keep them quiet
    # unless asked, they are the likeliest place for a secret to leak.
    for noisy in ("slack_sdk", "slack_bolt", "urllib3", "kubernetes", "aiosqlite",
                  "asyncio", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
