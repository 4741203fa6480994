"""The bounce message: an RFC 3464 delivery status notification to the envelope sender.

When recipients of a message bounce, the sender learns it from one DSN per message that
lists every failed recipient, so an application can match it to what it sent and a
person can read why. The bytes are written out here by hand rather than through the
``email`` generator: every line must end in CRLF and stay within 998 octets, the
machine-readable part must be exactly the RFC 3464 field syntax, and the result must
not depend on the generator's folding rules. The stdlib parser reads it back in tests.

The DSN is 7-bit unless the original message's header section holds 8-bit octets, which
are then returned as ``message/global-headers`` (RFC 6533) and need an 8BITMIME (and
usually SMTPUTF8) transaction. Non-ASCII recipient addresses are written in the 7-bit
``utf-8-addr-xtext`` form of RFC 6533 §3.

A DSN is sent with the null reverse-path and is never sent for a message that had one
(RFC 5321 §6.1, RFC 3464 §2): bounces do not bounce.
"""

from __future__ import annotations

import quopri
import re
import textwrap
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

import attrs

from rail.delivery.outcome import Reply

__all__ = ["FailedRecipient", "build_dsn", "should_send_dsn"]

_CRLF = b"\r\n"
_WIDTH = 76
# A field value longer than this is cut, so that even a single unbreakable word fits
# in one 998-octet line together with its field name (RFC 5322 §2.1.1).
_MAX_VALUE = 900
_MAX_LINE = 998
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_BOUNDARY_CHARS = re.compile(r"[^0-9A-Za-z'()+_,./:?-]")


@attrs.frozen
class FailedRecipient:
    """One recipient that bounced: its address, the reply that decided it, the remote
    host that gave that reply (None for local conclusions such as a null MX or expiry),
    and when the last attempt was made (seconds since the epoch)."""

    address: str
    reply: Reply
    remote_mta: str | None
    last_attempt: float


def should_send_dsn(sender: str) -> bool:
    """False for the null reverse-path and for mail from a MAILER-DAEMON.

    A message with the null reverse-path is itself a notification; answering it could
    start a loop between two mail systems (RFC 5321 §4.5.5). Some systems send their
    bounces from ``MAILER-DAEMON@...`` with a non-null path, so those are skipped too.
    """
    if not sender:
        return False
    local, _, _ = sender.rpartition("@")
    return local.lower() != "mailer-daemon"


def build_dsn(
    *,
    reporting_mta: str,
    original: bytes,
    original_id: str,
    sender: str,
    failures: Sequence[FailedRecipient],
    arrival: float,
    now: float,
    message_id: str,
) -> bytes:
    """The complete DSN for one message, CRLF line ends, ready to queue.

    ``reporting_mta`` is Rail's host name (From is ``MAILER-DAEMON@`` it, Message-ID is
    ``<message_id@reporting_mta>``); ``original`` is the bounced message as stored, of
    which only the header section is returned; ``original_id`` is Rail's queue id of it;
    ``sender`` is its envelope sender and the DSN's recipient; ``arrival`` and ``now``
    are seconds since the epoch. The caller sends it with ``MAIL FROM:<>``.
    """
    if not should_send_dsn(sender):
        raise ValueError(f"no DSN is sent to the reverse-path {sender!r}")
    if not failures:
        raise ValueError("a DSN needs at least one failed recipient")
    for name, value in [
        ("reporting_mta", reporting_mta),
        ("original_id", original_id),
        ("message_id", message_id),
    ]:
        if not value or not value.isascii() or _has_control(value):
            raise ValueError(f"{name} must be non-empty printable ASCII, got {value!r}")
    if _has_control(sender):
        raise ValueError(f"sender must not contain control characters, got {sender!r}")

    headers, eight_bit = _original_headers(original)
    parts = [
        _human_part(reporting_mta, failures),
        _status_part(reporting_mta, original_id, failures, arrival),
        _headers_part(headers, eight_bit),
    ]
    boundary = _boundary(message_id, parts)
    top = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: {sender}",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {_date(now)}",
        f"Message-ID: <{message_id}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f' boundary="{boundary}"',
    ]
    if eight_bit:
        top.append("Content-Transfer-Encoding: 8bit")
    out = [_lines(top), _CRLF, b"This is a MIME-encapsulated message." + _CRLF]
    for part in parts:
        out += [_CRLF, b"--" + boundary.encode("ascii") + _CRLF, part]
    out += [_CRLF, b"--" + boundary.encode("ascii") + b"--" + _CRLF]
    return b"".join(out)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _clean(text: str) -> str:
    """One line of printable text: controls (CR, LF included) become spaces, runs of
    spaces collapse, lone surrogates from undecodable input become '?'."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return " ".join(text.split())


def _ascii(text: str) -> str:
    """For the 7-bit machine-readable fields: non-ASCII characters become '?'."""
    return _clean(text).encode("ascii", "replace").decode("ascii")


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def _date(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def _lines(lines: Sequence[str]) -> bytes:
    return b"".join(line.encode("utf-8") + _CRLF for line in lines)


def _field(name: str, value: str) -> list[str]:
    """A ``Name: value`` field folded at spaces to about 76 columns."""
    wrapped = textwrap.wrap(
        f"{name}: {value}", _WIDTH, break_long_words=False, break_on_hyphens=False
    )
    return [wrapped[0], *(" " + line for line in wrapped[1:])]


def _status(reply: Reply) -> str:
    """RFC 3463 status: the reply's own enhanced code, else the class of its basic code."""
    if reply.enhanced and _ENHANCED.fullmatch(reply.enhanced):
        return reply.enhanced
    return f"{reply.code // 100}.0.0" if reply.code // 100 in (2, 4, 5) else "5.0.0"


def _typed_address(address: str) -> str:
    """RFC 3464 address-type form: ``rfc822;`` for ASCII, else RFC 6533 ``utf-8;`` with
    ``utf-8-addr-xtext``: '+', '=', '\\', controls, space and non-ASCII as ``\\x{HEX}``."""
    if address.isascii() and not _has_control(address) and " " not in address:
        return f"rfc822; {_cut(address)}"
    encoded = "".join(
        c if "!" <= c <= "~" and c not in "+=\\" else f"\\x{{{ord(c):X}}}" for c in address
    )
    return f"utf-8; {_cut(encoded)}"


def _diagnostic(reply: Reply) -> str:
    """``smtp;`` for what a remote server said; ``X-Rail;`` for Rail's own conclusions
    (DNS, null MX, expiry), which no SMTP server issued (RFC 3464 §2.3.6)."""
    kind = "smtp" if reply.remote else "X-Rail"
    return f"{kind}; {_cut(_ascii(str(reply)))}"


def _status_part(
    reporting_mta: str,
    original_id: str,
    failures: Sequence[FailedRecipient],
    arrival: float,
) -> bytes:
    lines = [
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Rail-Queue-ID: {original_id}",
        f"Arrival-Date: {_date(arrival)}",
    ]
    for failure in failures:
        lines += [
            "",
            *_field("Final-Recipient", _typed_address(failure.address)),
            "Action: failed",
            f"Status: {_status(failure.reply)}",
        ]
        if failure.remote_mta:
            lines += _field("Remote-MTA", f"dns; {_cut(_ascii(failure.remote_mta))}")
        lines += _field("Diagnostic-Code", _diagnostic(failure.reply))
        lines.append(f"Last-Attempt-Date: {_date(failure.last_attempt)}")
    return _lines(lines)


def _human_text(reporting_mta: str, failures: Sequence[FailedRecipient]) -> list[str]:
    lines = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        "Your message could not be delivered to the recipients below; delivery",
        "has been given up. The reasons follow each address; the headers of your",
        "message are attached.",
        "",
    ]
    for failure in failures:
        reply = _clean(str(failure.reply))
        if failure.reply.remote and failure.remote_mta:
            reason = f"host {_clean(failure.remote_mta)} said: {reply}"
        else:
            reason = reply
        lines.append(f"<{_cut(_clean(failure.address))}>:")
        lines += textwrap.wrap(
            _cut(reason), _WIDTH, initial_indent="    ", subsequent_indent="    "
        )
        lines.append("")
    return lines


def _human_part(reporting_mta: str, failures: Sequence[FailedRecipient]) -> bytes:
    text = _lines(_human_text(reporting_mta, failures))
    if text.isascii():
        head = ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"]
        body = text
    else:
        head = [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
        ]
        lf = quopri.encodestring(text.replace(_CRLF, b"\n"))
        body = lf.replace(b"\n", _CRLF)
    return _lines([*head, "Content-Description: Notification", ""]) + body


_ANY_LINE = re.compile(rb"([^\r\n]*)(?:\r\n|\r|\n|\Z)")


def _original_headers(original: bytes) -> tuple[list[bytes], bool]:
    """The header section of the original, one entry per line, and whether it is 8-bit.

    Any line end is accepted and CRLF written back. Lines longer than 998 octets (which
    Rail's intake refuses anyway) are folded so that the DSN itself stays valid. 8-bit
    octets that are not UTF-8 become U+FFFD, since message/global-headers is UTF-8.
    """
    lines: list[bytes] = []
    # Line by line up to the first empty one: the body is never split, and a long line
    # is cut by index, not by copying what remains of it at every cut.
    for match in _ANY_LINE.finditer(original):
        line = match.group(1)
        if not line:
            break
        lines.append(line[:_MAX_LINE])
        lines.extend(
            b" " + line[start : start + _MAX_LINE - 1]
            for start in range(_MAX_LINE, len(line), _MAX_LINE - 1)
        )
    eight_bit = not all(line.isascii() for line in lines)
    if eight_bit:
        lines = [line.decode("utf-8", "replace").encode("utf-8") for line in lines]
    return lines, eight_bit


def _headers_part(headers: Sequence[bytes], eight_bit: bool) -> bytes:
    if eight_bit:
        head = ["Content-Type: message/global-headers", "Content-Transfer-Encoding: 8bit"]
    else:
        head = ["Content-Type: text/rfc822-headers", "Content-Transfer-Encoding: 7bit"]
    head = [*head, "Content-Description: Undelivered Message Headers", ""]
    return _lines(head) + b"".join(line + _CRLF for line in headers)


def _boundary(message_id: str, parts: Sequence[bytes]) -> str:
    """A boundary that occurs in no part; ``=_`` cannot appear in quoted-printable text.

    Derived from the message id so the output is a function of the input alone.
    """
    base = "=_rail-dsn-" + _BOUNDARY_CHARS.sub("", message_id)[:40]
    candidate, counter = base, 0
    while any(candidate.encode("ascii") in part for part in parts):
        counter += 1
        candidate = f"{base}-{counter}"
    return candidate
