"""Logging setup: a human format for terminals, or one JSON object per line for collectors.

Both carry the correlation id of the work in progress (and, in JSON, the trace and span ids
when tracing is on), so a log line can be matched to its Event and trace.
"""

from __future__ import annotations

import datetime
import json
import logging

from zenlead import tracing

__all__ = ("configure",)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("correlation_id", "trace_id", "span_id"):
            value = getattr(record, field, "")
            if value:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        cid = getattr(record, "correlation_id", "")
        return f"{text} [cid={cid}]" if cid else text


def configure(*, level: str, fmt: str) -> None:
    """Send logs to stderr at `level` in `fmt` (``text`` or ``json``)."""
    handler = logging.StreamHandler()
    handler.addFilter(tracing.CorrelationFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The kubernetes client logs every request at DEBUG; keep ours readable.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
