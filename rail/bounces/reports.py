"""Reading what comes back to a return path: DSNs (RFC 3464) and ARF complaints (RFC 5965).

Both are ``multipart/report`` messages: a human-readable part, a machine-readable part
(``message/delivery-status`` or ``message/feedback-report``, a block of ``Name: value``
fields, then for a DSN one block per recipient) and the original message or its header
section. :func:`parse_report` finds the machine-readable part and returns its facts as
plain values; anything else is :class:`Unreadable`, with the reason, for the log.

The input comes from anyone on the internet, so this reader is written for it: it never
raises (an unexpected error becomes :class:`Unreadable`), its cost is linear in the input
(each byte is scanned a bounded number of times: lines are found with ``find``, never by
re-splitting what remains), the input is cut at :data:`MAX_REPORT` octets and every value
at :data:`MAX_VALUE` characters, and it reads at most :data:`MAX_PARTS` parts and
:data:`MAX_RECIPIENTS` recipient blocks. It does not use the ``email`` package, whose
parser has quadratic paths on hostile header sections. Pure: bytes in, values out.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator

import attrs

__all__ = [
    "MAX_PARTS",
    "MAX_RECIPIENTS",
    "MAX_REPORT",
    "MAX_VALUE",
    "DeliveryReport",
    "FeedbackReport",
    "RecipientReport",
    "Unreadable",
    "parse_report",
]

MAX_REPORT = 4 * 1024 * 1024
"""Octets of a report that are read; the rest is ignored (the intake refuses larger ones)."""
MAX_VALUE = 1000
"""Characters kept of one field value."""
MAX_PARTS = 50
"""MIME parts of the report that are looked at."""
MAX_RECIPIENTS = 1000
"""Recipient blocks of one DSN that are read."""
_MAX_FIELDS = 200  # fields of one header section or block
_NESTING = 3  # multipart/report inside multipart/mixed (some forwarders wrap it)


@attrs.frozen
class RecipientReport:
    """One per-recipient block of a DSN (RFC 3464 §2.3). Addresses are without their
    address type (``rfc822;``); ``action`` is lower-case (``failed``, ``delayed``,
    ``delivered``, ``relayed``, ``expanded`` or whatever was written); ``status`` the
    enhanced code (``5.1.1``) or None if missing or malformed; ``diagnostic`` the text
    after ``smtp;`` of ``Diagnostic-Code``; ``remote_mta`` the host of ``Remote-MTA``."""

    final_recipient: str | None
    original_recipient: str | None
    action: str
    status: str | None
    diagnostic: str | None = None
    remote_mta: str | None = None


@attrs.frozen
class DeliveryReport:
    """A DSN: who reported (``Reporting-MTA``) and one entry per recipient block."""

    reporting_mta: str | None
    recipients: tuple[RecipientReport, ...]


@attrs.frozen
class FeedbackReport:
    """An ARF report (RFC 5965 §3.1, §3.2): the fields of ``message/feedback-report`` and,
    from the returned original (message or header section), its ``Message-ID`` and
    ``Return-Path``. ``recipients`` are the ``Original-Rcpt-To`` addresses (often
    redacted by the reporter, then empty)."""

    feedback_type: str
    user_agent: str | None
    version: str | None
    recipients: tuple[str, ...]
    arrival_date: str | None
    reporting_mta: str | None
    reported_domain: str | None = None
    source_ip: str | None = None
    original_mail_from: str | None = None
    original_message_id: str | None = None
    original_return_path: str | None = None


@attrs.frozen
class Unreadable:
    """Neither a DSN nor an ARF report; ``reason`` says why, for the log."""

    reason: str


Report = DeliveryReport | FeedbackReport | Unreadable

_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r|$)")
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")
_PARAM = re.compile(r';\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]+)')
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")


def parse_report(data: bytes) -> Report:
    """The report in ``data`` (a whole message); never raises."""
    try:
        return _parse(data[:MAX_REPORT])
    except Exception as error:  # garbage must not become an error: it is just unreadable
        return Unreadable(f"unreadable report ({type(error).__name__})")


def _parse(data: bytes) -> Report:
    fields, body = _split(data)
    for depth in range(_NESTING):
        content_type, params = _content_type(fields)
        if not content_type.startswith("multipart/"):
            return Unreadable(f"not a multipart/report but {content_type or 'no content type'}")
        boundary = params.get("boundary")
        if not boundary:
            return Unreadable("multipart without a boundary")
        parts = list(_parts(body, boundary))
        if content_type == "multipart/report":
            return _report(params.get("report-type", "").lower(), parts)
        # A report wrapped in multipart/mixed (a forwarding mailbox): look one level down.
        inner = next(
            (p for p in parts if _content_type(p[0])[0] == "multipart/report"),
            None,
        )
        if inner is None or depth == _NESTING - 1:
            return Unreadable(f"{content_type} holding no multipart/report")
        fields, body = inner
    return Unreadable("nested too deep")


def _report(report_type: str, parts: list[tuple[dict[str, list[str]], bytes]]) -> Report:
    if report_type == "delivery-status":
        for fields, body in parts:
            kind = _content_type(fields)[0]
            if kind in ("message/delivery-status", "message/global-delivery-status"):
                return _delivery_status(_decoded(fields, body))
        return Unreadable("delivery-status report without a message/delivery-status part")
    if report_type == "feedback-report":
        feedback: dict[str, list[str]] | None = None
        original: dict[str, list[str]] = {}
        for fields, body in parts:
            kind = _content_type(fields)[0]
            if kind == "message/feedback-report" and feedback is None:
                blocks = _blocks(_decoded(fields, body))
                feedback = next(blocks, {})
            elif kind in ("message/rfc822", "text/rfc822-headers", "message/global-headers"):
                original, _ = _split(_decoded(fields, body))
        if feedback is None:
            return Unreadable("feedback report without a message/feedback-report part")
        return _feedback(feedback, original)
    return Unreadable(f"multipart/report of type {report_type or 'none'}")


def _delivery_status(body: bytes) -> Report:
    blocks = _blocks(body)
    per_message = next(blocks, None)
    if per_message is None:
        return Unreadable("empty delivery-status part")
    recipients: list[RecipientReport] = []
    for block in blocks:
        if len(recipients) >= MAX_RECIPIENTS:
            break
        final = _typed(_first(block, "final-recipient"))
        original = _typed(_first(block, "original-recipient"))
        action = (_first(block, "action") or "").lower().split(" ")[0]
        if final is None and original is None:
            continue
        status = _first(block, "status")
        match = _ENHANCED.match(status or "")
        recipients.append(
            RecipientReport(
                final_recipient=final,
                original_recipient=original,
                action=action,
                status=match.group(0) if match else None,
                diagnostic=_typed(_first(block, "diagnostic-code")),
                remote_mta=_typed(_first(block, "remote-mta")),
            )
        )
    if not recipients:
        return Unreadable("delivery-status part without a recipient block")
    return DeliveryReport(_typed(_first(per_message, "reporting-mta")), tuple(recipients))


def _feedback(fields: dict[str, list[str]], original: dict[str, list[str]]) -> Report:
    feedback_type = (_first(fields, "feedback-type") or "").lower()
    if not feedback_type:
        return Unreadable("feedback report without Feedback-Type")
    recipients = tuple(
        address
        for value in fields.get("original-rcpt-to", [])[:MAX_RECIPIENTS]
        if (address := _angle(value))
    )
    return FeedbackReport(
        feedback_type=feedback_type,
        user_agent=_first(fields, "user-agent"),
        version=_first(fields, "version"),
        recipients=recipients,
        arrival_date=_first(fields, "arrival-date") or _first(fields, "received-date"),
        reporting_mta=_typed(_first(fields, "reporting-mta")),
        reported_domain=_first(fields, "reported-domain"),
        source_ip=_first(fields, "source-ip"),
        original_mail_from=_angle(_first(fields, "original-mail-from") or ""),
        original_message_id=_first(original, "message-id"),
        original_return_path=_angle(_first(original, "return-path") or ""),
    )


# -- MIME, linearly ------------------------------------------------------------------------


def _lines(data: bytes) -> Iterator[bytes]:
    """The lines of ``data`` without their ends (CRLF, LF or a lone CR)."""
    for match in _LINE.finditer(data):
        line = match.group(0)
        if not line:
            return
        yield line.rstrip(b"\r\n")


def _split(data: bytes, start: int = 0) -> tuple[dict[str, list[str]], bytes]:
    """The header fields (lower-case names → values in order, unfolded) and the body."""
    fields, offset = _fields(data, start)
    return fields, data[offset:]


def _fields(data: bytes, start: int = 0) -> tuple[dict[str, list[str]], int]:
    """The fields of the header section (or field block) at ``start`` and the offset
    after its terminating empty line: one pass over those lines only."""
    fields: dict[str, list[str]] = {}
    name: str | None = None
    pieces: list[str] = []
    kept = 0
    count = 0
    offset = start
    for match in _LINE.finditer(data, start):
        raw = match.group(0)
        if not raw:
            break
        offset = match.end()
        line = raw.rstrip(b"\r\n")
        if not line:
            break
        text = line.decode("utf-8", "replace")
        if text[:1] in (" ", "\t"):
            if name is not None and kept < MAX_VALUE:
                pieces.append(text)
                kept += len(text)
            continue
        if name is not None:
            fields.setdefault(name, []).append(_value(pieces))
        field, colon, value = text.partition(":")
        name, pieces, kept = None, [], 0
        if colon and field and count < _MAX_FIELDS and " " not in field.strip():
            name, pieces, kept = field.strip().lower(), [value], len(value)
            count += 1
    if name is not None:
        fields.setdefault(name, []).append(_value(pieces))
    return fields, offset


def _value(pieces: list[str]) -> str:
    text = " ".join(" ".join(piece.split()) for piece in pieces if piece.strip())
    return _CONTROLS.sub(" ", text)[:MAX_VALUE]


def _blocks(body: bytes) -> Iterator[dict[str, list[str]]]:
    """The field blocks of a delivery-status or feedback-report body, separated by
    empty lines; one linear pass."""
    start = 0
    while start < len(body):
        fields, offset = _fields(body, start)
        if fields:
            yield fields
        if offset <= start:
            break
        start = offset


def _content_type(fields: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    value = _first(fields, "content-type") or "text/plain"
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(match.group(1).lower(), raw)
    return kind.strip().lower(), params


def _parts(body: bytes, boundary: str) -> Iterator[tuple[dict[str, list[str]], bytes]]:
    """The parts of a multipart body, as (fields, body); at most :data:`MAX_PARTS`."""
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    starts: list[tuple[int, int]] = []  # (start of the delimiter line, start of the part)
    for match in _LINE.finditer(body):
        line = match.group(0)
        if not line:
            break
        if line.startswith(delimiter):
            rest = line[len(delimiter) :].rstrip(b"\r\n")
            if rest.startswith(b"--"):
                starts.append((match.start(), -1))
                break
            if not rest.strip(b" \t"):
                starts.append((match.start(), match.end()))
                if len(starts) > MAX_PARTS:
                    break
    for (_, begin), (end, _) in zip(starts, [*starts[1:], (len(body), -1)], strict=False):
        if begin < 0:
            break
        yield _split(body[begin:end])


def _decoded(fields: dict[str, list[str]], body: bytes) -> bytes:
    encoding = (_first(fields, "content-transfer-encoding") or "").strip().lower()
    if encoding == "base64":
        return binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/=]", b"", body), strict_mode=False)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    return body


# -- field values ---------------------------------------------------------------------------


def _first(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    if not values:
        return None
    return values[0].strip() or None


def _typed(value: str | None) -> str | None:
    """The value of a typed field (``rfc822; a@b``, ``smtp; 550 ...``, ``dns; host``)
    without its type; a value without one is taken whole."""
    if value is None:
        return None
    kind, semicolon, rest = value.partition(";")
    text = rest.strip() if semicolon and " " not in kind.strip() else value.strip()
    return _angle(text) if "@" in text and " " not in text else (text or None)


def _angle(value: str) -> str | None:
    """An address as written, without its angle brackets."""
    text = value.strip()
    if text.startswith("<") and ">" in text:
        text = text[1 : text.index(">")]
    return text.strip() or None
