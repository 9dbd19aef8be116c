"""Structured logs that carry the object being reconciled: JSON lines, or a console format.

The worker sets :data:`object_key`, :data:`reconcile_id` and :data:`controller_name` (context
variables, so every task keeps its own) and any ``logging`` call made while reconciling, however
deep, is tagged with them: one ``jq 'select(.key == "ns/name")'`` shows an object's whole story.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

object_key: ContextVar[str | None] = ContextVar("object_key", default=None)
reconcile_id: ContextVar[str | None] = ContextVar("reconcile_id", default=None)
controller_name: ContextVar[str | None] = ContextVar("controller_name", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is kept.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the reconcile context, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, var in (
            ("controller", controller_name),
            ("key", object_key),
            ("reconcileID", reconcile_id),
        ):
            value = var.get()
            if value is not None:
                entry[name] = value
        for attr, value in vars(record).items():
            if attr not in _STANDARD_ATTRS and not attr.startswith("_"):
                entry[attr] = value if _is_json_scalar(value) else repr(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """One human line: time, level, logger, the object key and reconcile id, message, extras as
    ``name=value`` (what ``--log-format console`` prints for a person at a terminal, as zap's
    development encoder does for controller-runtime)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        parts = [ts, f"{record.levelname:<7}", record.name]
        key, rid = object_key.get(), reconcile_id.get()
        if key is not None:
            parts.append(f"[{key}{' ' + rid[:8] if rid else ''}]")
        parts.append(record.getMessage())
        extras = [
            f"{attr}={value}"
            for attr, value in vars(record).items()
            if attr not in _STANDARD_ATTRS and not attr.startswith("_")
        ]
        line = " ".join(parts + extras)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


LOG_FORMATS = ("json", "console")


def _is_json_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def configure_logging(
    level: str | int = "INFO", *, log_format: str = "json", stream: TextIO | None = None
) -> None:
    """Route the root logger to ``stream`` (stderr) in ``log_format`` (one of
    :data:`LOG_FORMATS`), replacing handlers set before, so a process logs in one format only."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


__all__ = [
    "LOG_FORMATS",
    "ConsoleFormatter",
    "JsonFormatter",
    "configure_logging",
    "controller_name",
    "object_key",
    "reconcile_id",
]
