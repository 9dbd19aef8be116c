"""Structured JSON logs that carry the object being reconciled.

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


def _is_json_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def configure_logging(
    level: str | int = "INFO", *, json_format: bool = True, stream: TextIO | None = None
) -> None:
    """Route the root logger to ``stream`` (stderr) with the JSON formatter, replacing handlers
    set before, so a process logs in one format only."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


__all__ = ["JsonFormatter", "configure_logging", "controller_name", "object_key", "reconcile_id"]
