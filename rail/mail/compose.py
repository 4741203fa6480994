"""From a validated send request to the exact bytes Rail will queue.

Everything here is a decision on plain values, so the HTTP resource only moves bytes:
:func:`compose` has :mod:`rail.mail.request` parse and validate the request, authorizes
its sender against the client's certificate, builds the MIME message with the stdlib
``email`` package and returns either a :class:`Submission` ready for the store or a
:class:`~rail.mail.request.ComposeError` naming the offending field.

The message is byte for byte the one ``EmailMessage`` writes when every field is set on
it in order (tests/mail/test_compose_stdlib.py holds the two together), but building one
cost more CPU than the rest of the request: header fields are written by
:mod:`rail.mail.headers`, which skips the registry's parse and fold where they change
nothing, and a lone text part is encoded here the way ``set_content`` encodes it. Only
alternative bodies and attachments are built as an ``EmailMessage``.
"""

from __future__ import annotations

import binascii
import re
from email import quoprimime
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any

import attrs

from rail.mail.headers import (
    ASCII_POLICY,
    HEADER_FIELDS,
    HEADER_SIZE,
    UTF8_POLICY,
    HeaderLimits,
    WrittenField,
    format_date,
    is_unstructured,
    line_limit,
    parse_header_section,
    write_address_field,
    write_field,
)
from rail.mail.limits import HEADER_TOO_LARGE, check_header_section
from rail.mail.longfields import REGISTRY_MAX
from rail.mail.request import _UNSAFE, ComposeError, SendRequest, _invalid, parse_request
from rail.policy.identity import ClientIdentity
from rail.policy.sender import ADMIN_CANNOT_SEND, check_from_header, check_sender
from rail.policy.verdict import Reject
from rail.store.model import IdempotencyKey, MessageMeta, NewMessage

__all__ = [
    "HEADER_TOO_LARGE",
    "PAYLOAD_TOO_LARGE",
    "TOO_MANY_RECIPIENTS",
    "Submission",
    "authorize",
    "build_message",
    "compose",
]

TOO_MANY_RECIPIENTS = "TOO_MANY_RECIPIENTS"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"

_MAX_LINE = 998
_DEFAULT_HEADER_LIMITS = HeaderLimits()
_LINE_END = re.compile(r"\r\n|\r|\n")


@attrs.frozen
class Submission:
    """What the resource hands to ``IQueueStore.accept``."""

    message: NewMessage
    idempotency: IdempotencyKey | None


def _from_reject(reject: Reject, address: str) -> ComposeError:
    return ComposeError(
        reject.error,
        reject.http_status,
        f"{address} is not a sender this client certificate may use",
    )


def authorize(identity: ClientIdentity, request: SendRequest) -> ComposeError | None:
    """The envelope sender and every From header address must be the certificate's
    (RAIL.md §3). Both come from ``from``, but both checks run so the API and SMTP apply
    one rule through one code path."""
    address = request.sender.address
    if identity.role == "admin":
        return ComposeError(
            ADMIN_CANNOT_SEND.error,
            ADMIN_CANNOT_SEND.http_status,
            "an admin certificate cannot send mail; use a client certificate",
        )
    reject = check_sender(identity, address) or check_from_header(identity, [address])
    return None if reject is None else _from_reject(reject, address)


def _encode_text(text: str, max_line: int) -> tuple[str, bytes]:
    """``text`` as UTF-8 in the transfer encoding ``EmailMessage.set_content`` picks under
    a 7-bit policy (``email.contentmanager``): 7bit when ASCII with short lines, else
    quoted-printable or base64, whichever is shorter on the first ten lines. Lines end in
    CRLF, as the generator writes them."""
    lines = text.encode("utf-8").splitlines()
    whole = b"\r\n".join(lines) + b"\r\n"
    if max((len(line) for line in lines), default=0) <= max_line and whole.isascii():
        return "7bit", whole
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), max_line)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        step = max_line // 4 * 3
        encoded = b"".join(
            binascii.b2a_base64(whole[i : i + step], newline=False) + b"\r\n"
            for i in range(0, len(whole), step)
        )
        return "base64", encoded
    if len(lines) > 10:
        sniff_qp = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), max_line)
    return "quoted-printable", _LINE_END.sub("\r\n", sniff_qp).encode("ascii")


def _single_part(text: str, subtype: str, max_line: int) -> tuple[int, bytes]:
    """One text part: the three MIME fields ``set_content`` writes, then the body."""
    cte, body = _encode_text(text, max_line)
    fields = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n"
        "MIME-Version: 1.0\r\n\r\n"
    )
    return 3, fields.encode("ascii") + body


def _multipart(
    request: SendRequest, write_policy: EmailPolicy[Any]
) -> tuple[int, bytes] | ComposeError:
    """Alternative bodies and attachments: the MIME structure is built by
    ``EmailMessage``, and its top-level fields and body follow the app's fields."""
    message = EmailMessage(policy=write_policy)
    if request.body_text is not None:
        message.set_content(request.body_text)
        if request.body_html is not None:
            message.add_alternative(request.body_html, subtype="html")
    elif request.body_html is not None:
        message.set_content(request.body_html, subtype="html")
    for attachment in request.attachments:
        message.add_attachment(
            attachment.content,
            maintype=attachment.maintype,
            subtype=attachment.subtype,
            filename=attachment.filename,
            params=dict(attachment.params),
        )
    for part in message.walk():
        # set_content stamps MIME-Version on every part; it belongs on the top only.
        if part is not message:
            del part["MIME-Version"]
    if "MIME-Version" not in message:
        # add_attachment on an empty message (attachments only) never sets it.
        message["MIME-Version"] = "1.0"
    for part in message.walk():
        for name, value in part.items():
            if _UNSAFE.search(str(value)):
                return _unsafe_field(name)
    return len(message.items()), message.as_bytes()


def _written_unsafe(data: bytes) -> bool:
    """Whether a written field holds a control character or a line break other than
    its folds (CRLF then a space or tab) and its final CRLF."""
    unfolded = data[:-2].replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t")
    return _UNSAFE.search(unfolded.decode("utf-8", "replace")) is not None


def _unsafe_field(name: str) -> ComposeError:
    return _invalid(
        f"header {name} would contain a line break or control character"
        " (encoded words are decoded before this check)"
    )


def _header_fields(
    request: SendRequest,
    write_policy: EmailPolicy[Any],
    *,
    message_id: str,
    hostname: str,
    now: float,
) -> list[WrittenField] | ComposeError:
    fields = [write_address_field("From", (request.sender,), write_policy)]
    for name, mailboxes in (("To", request.to), ("Cc", request.cc), ("Reply-To", request.reply_to)):
        if mailboxes:
            fields.append(write_address_field(name, mailboxes, write_policy))
    if request.subject is not None:
        fields.append(write_field("Subject", request.subject, write_policy))
    fields.append(write_field("Date", format_date(now), write_policy, canonical=True))
    fields.append(
        write_field("Message-ID", f"<{message_id}@{hostname}>", write_policy, canonical=True)
    )
    counts: dict[str, int] = {}
    for name, value in request.headers:
        # A field the RFC allows once (of those not forbidden, Orig-Date) given twice in
        # different case: EmailMessage raised, which the API answered with a 500.
        seen = counts[name.lower()] = counts.get(name.lower(), 0) + 1
        if seen > 1 and write_policy.header_max_count(name) is not None:
            return _invalid(f"headers: {name} may be given only once (in any case)")
        if len(value) > REGISTRY_MAX and not is_unstructured(name):
            return _invalid(f"headers.{name} is longer than {REGISTRY_MAX} characters")
        fields.append(write_field(name, value, write_policy))
    return fields


def build_message(
    request: SendRequest, *, message_id: str, hostname: str, now: float
) -> bytes | ComposeError:
    """The message as it will be queued, signed and sent: CRLF line ends, 7-bit bodies
    (quoted-printable or base64 when needed, so no relay has to downgrade them), raw
    UTF-8 headers only when an address requires SMTPUTF8. Bcc never becomes a header.

    Only Date, Message-ID and the MIME headers are added to what the app asked for. The
    bytes are those ``EmailMessage`` writes for the same fields set in this order; the
    header fields and a lone text part are written without building one
    (:func:`rail.mail.headers.write_field`, :func:`_encode_text`), which was most of the
    API's CPU per message.
    """
    write_policy = UTF8_POLICY if request.smtputf8 else ASCII_POLICY
    fields = _header_fields(
        request, write_policy, message_id=message_id, hostname=hostname, now=now
    )
    if isinstance(fields, ComposeError):
        return fields
    # The email package decodes RFC 2047 encoded words when a header is set, or when it
    # folds a quoted display name, and writes a decoded CR, LF or NUL out raw, so the raw
    # fields passing validation is not enough: check the values as the package holds
    # them and each field as written, then the output's shape.
    for field in fields:
        if not field.plain and (_UNSAFE.search(field.value) or _written_unsafe(field.data)):
            return _unsafe_field(field.name)
    content: tuple[int, bytes] | ComposeError
    if request.attachments or (request.body_text is None) == (request.body_html is None):
        content = _multipart(request, write_policy)
    elif request.body_text is not None:
        content = _single_part(request.body_text, "plain", line_limit(write_policy))
    else:
        assert request.body_html is not None
        content = _single_part(request.body_html, "html", line_limit(write_policy))
    if isinstance(content, ComposeError):
        return content
    count, mime = content
    data = b"".join(field.data for field in fields) + mime
    crlf = data.count(b"\r\n")
    if not (crlf == data.count(b"\r") == data.count(b"\n")) or not data.endswith(b"\r\n"):
        return _invalid("the message could not be built with CRLF line ends")
    section = parse_header_section(data)
    if (
        not section.has_separator
        or len(section.fields) != len(fields) + count
        or len(section.values("from")) != 1
        or section.has("bcc")
    ):
        # Never queue a header section other than the one the request describes.
        return _invalid("the header fields could not be built as requested")
    if max(map(len, data.split(b"\r\n"))) > _MAX_LINE:
        return _invalid(
            f"a header line would be longer than {_MAX_LINE} octets;"
            " shorten the display names or header values"
        )
    return data


def _header_refusal(limits: HeaderLimits, fields: bool) -> ComposeError:
    if fields:
        message = f"the message would have more than {limits.fields} header fields"
    else:
        message = f"the header section would be larger than {limits.size} bytes"
    limit = HEADER_FIELDS if fields else HEADER_SIZE
    return ComposeError(HEADER_TOO_LARGE, 413, message, limit=limit)


OWN_FIELDS = 16
"""More than the header fields Rail writes into an API message besides the request's
``headers`` (From, To, Cc, Reply-To, Subject, Date, Message-ID, MIME-Version,
Content-Type, Content-Transfer-Encoding)."""


def _header_input_excess(request: SendRequest, limits: HeaderLimits) -> ComposeError | None:
    """Refuse before building a header section the request already makes too large:
    writing only ever lengthens what the request gives (the header fields' names and
    values, the Subject, addresses and display names), and there are at least as many
    fields as ``headers`` entries."""
    if len(request.headers) > limits.fields:
        return _header_refusal(limits, True)
    mailboxes = (request.sender, *request.to, *request.cc, *request.reply_to)
    size = len(request.subject or "")
    size += sum(len(name) + len(value) for name, value in request.headers)
    size += sum(len(m.display_name) + len(m.address) for m in mailboxes)
    if size > limits.size:
        return _header_refusal(limits, False)
    return None


def compose(
    body: bytes,
    idempotency_header: str | None,
    identity: ClientIdentity,
    *,
    message_id: str,
    hostname: str,
    now: float,
    max_recipients: int,
    max_message_size: int,
    header_limits: HeaderLimits = _DEFAULT_HEADER_LIMITS,
) -> Submission | ComposeError:
    """The whole of ``POST /api/v1/send`` short of the store: validate, authorize, check
    limits, build. ``message_id`` and ``now`` come from the caller's clock and ULID source.

    Pure and linear in the request: the API runs it in a thread for large requests."""
    request = parse_request(body, idempotency_header)
    if isinstance(request, ComposeError):
        return request
    refused = authorize(identity, request)
    if refused is not None:
        return refused
    too_large = _header_input_excess(request, header_limits)
    if too_large is not None:
        return too_large
    recipients = request.recipients
    if len(recipients) > max_recipients:
        return ComposeError(
            TOO_MANY_RECIPIENTS,
            400,
            f"{len(recipients)} distinct recipients; the limit is {max_recipients}",
        )
    data = build_message(request, message_id=message_id, hostname=hostname, now=now)
    if isinstance(data, ComposeError):
        return data
    if len(data) > header_limits.size or (len(request.headers) + OWN_FIELDS > header_limits.fields):
        # Otherwise the composed section is within both limits by construction (it is
        # part of ``data``, and holds the request's fields and at most OWN_FIELDS more):
        # the scan would cost every ordinary request a few microseconds for nothing.
        over = check_header_section(data, header_limits)
        if over is not None:
            return _header_refusal(header_limits, over[0] == HEADER_FIELDS)
    if len(data) > max_message_size:
        return ComposeError(
            PAYLOAD_TOO_LARGE,
            413,
            f"the composed message is {len(data)} bytes; the limit is {max_message_size}",
        )
    message = NewMessage(
        id=message_id,
        client=identity.name,
        sender=request.sender.address,
        recipients=recipients,
        data=data,
        channel="api",
        received_at=now,
        smtputf8=request.smtputf8,
        eight_bit=not data.isascii(),
        meta=MessageMeta(
            request_id=None if request.idempotency is None else request.idempotency.key,
            tag=request.meta.tag,
            metadata=request.meta.metadata,
        ),
    )
    return Submission(message=message, idempotency=request.idempotency)
