"""twistd's log as JSON lines: one object per line, with the same keys for every event.

``logging.format: json`` writes each event as::

    {"time": "2026-12-04T21:38:06.125Z", "level": "info", "namespace": "rail.delivery",
     "event": "delivery.attempt", "text": "delivery.attempt msg_id=... ...",
     "fields": {"msg_id": "...", ...}}

``time`` is RFC 3339 in UTC to the millisecond; ``event`` is the line kind of Rail's
structured lines (:mod:`rail.logkv`) and null for every other line; ``text`` is what the
text format would write after the ``[namespace#level]`` prefix; ``fields`` holds the
event's own keys whose values are strings, numbers, booleans or null (Twisted's
``log_*`` keys, the keys twisted.python.log's legacy observers add to an event, and
anything else are left out); an event carrying a failure adds
``traceback``. Twisted's ``jsonFileLogObserver`` is not used: it writes every key of
the event under Twisted's own names, with an RS byte before each record, and spends
several times as long per line.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.logger import LogEvent, formatEvent

from rail.logtext import event_text

__all__ = ["json_line"]

_SCALARS = (str, int, float, bool, type(None))
# What twisted.python.log's observers add to an event they see (LegacyLogObserverWrapper).
_LEGACY = frozenset({"message", "time", "system", "format", "isError"})
_stamp: list[Any] = [None, ""]  # [whole second, its text up to the seconds]
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr).encode


def _time(when: object) -> str | None:
    if not isinstance(when, int | float):
        return None
    second, millisecond = divmod(round(when * 1000), 1000)
    if _stamp[0] != second:
        _stamp[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _stamp[0] = second
    return f"{_stamp[1]}.{millisecond:03d}Z"


def json_line(event: LogEvent) -> str | None:
    """The JSON line (with its newline) for one event, None for an event with no text
    (twistd writes no line for those either); see the module docstring."""
    level = event.get("log_level")
    fields = {
        key: value
        for key, value in event.items()
        if not key.startswith(("log_", "rail_"))
        and key not in _LEGACY
        and isinstance(value, _SCALARS)
    }
    try:
        text = event_text(event)
    except Exception:
        text = None
    if text is None:
        text = formatEvent(event)
    failure = event.get("log_failure")
    if not text and failure is None:
        return None
    record: dict[str, Any] = {
        "time": _time(event.get("log_time")),
        "level": level.name if level is not None else None,
        "namespace": event.get("log_namespace"),
        "event": event.get("rail_event"),
        "text": text,
        "fields": fields,
    }
    if "rail_worker" in event:  # one of several worker processes (rail.logtext.tagged)
        record["worker"] = event["rail_worker"]
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    return _encode(record) + "\n"
