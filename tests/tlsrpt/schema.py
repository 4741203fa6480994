"""The independent JSON Schema of RFC 8460 reports (``rfc8460.schema.json``, written from
the RFC's §4 text, not from Rail's code) and a helper that validates a report with it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

__all__ = ["SCHEMA", "validate_report"]

SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).parent / "rfc8460.schema.json").read_text(encoding="utf-8")
)
_VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_report(body: bytes) -> dict[str, Any]:
    """The report in ``body`` (gzip-compressed or plain JSON), after checking it against
    the schema; raises ``jsonschema.ValidationError`` naming the first problem."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    report: dict[str, Any] = json.loads(body)
    _VALIDATOR.validate(report)
    return report
