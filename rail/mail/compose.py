"""From a validated send request to the exact bytes Rail will queue.

Everything here is a decision on plain values, so the HTTP resource only moves bytes:
:func:`compose` has :mod:`rail.mail.request` parse and validate the request, authorizes
its sender against the client's certificate, builds the MIME message with the stdlib
``email`` package and returns either a :class:`Submission` ready for the store or a
:class:`~rail.mail.request.ComposeError` naming the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from typing import Any

import attrs

from rail.mail.addresses import Mailbox
from rail.mail.headers import format_date, parse_header_section
from rail.mail.request import _UNSAFE, ComposeError, SendRequest, _invalid, parse_request
from rail.policy.identity import ClientIdentity
from rail.policy.sender import check_from_header, check_sender
from rail.policy.verdict import Reject
from rail.store.model import IdempotencyKey, NewMessage

__all__ = [
    "PAYLOAD_TOO_LARGE",
    "TOO_MANY_RECIPIENTS",
    "Submission",
    "authorize",
    "build_message",
    "compose",
]

TOO_MANY_RECIPIENTS = "TOO_MANY_RECIPIENTS"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"

_NOT_CRLF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_MAX_LINE = 998


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
    reject = check_sender(identity, address) or check_from_header(identity, [address])
    return None if reject is None else _from_reject(reject, address)


class _CachedHeaderRegistry(HeaderRegistry):
    """The stdlib's registry builds a new header class (``type(...)``) on every lookup,
    which was a third of the API's CPU per message; the classes never change."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        key = name.lower()
        found = self._classes.get(key)
        if found is None:
            found = self._classes[key] = super().__getitem__(name)
        return found


_REGISTRY = _CachedHeaderRegistry()
_ASCII_POLICY = policy.SMTP.clone(cte_type="7bit", header_factory=_REGISTRY)
_UTF8_POLICY = policy.SMTPUTF8.clone(cte_type="7bit", header_factory=_REGISTRY)


def _set_addresses(message: EmailMessage, name: str, mailboxes: Iterable[Mailbox]) -> None:
    headers = [m.header() for m in mailboxes]
    if headers:
        message[name] = headers


def build_message(
    request: SendRequest, *, message_id: str, hostname: str, now: float
) -> bytes | ComposeError:
    """The message as it will be queued, signed and sent: CRLF line ends, 7-bit bodies
    (quoted-printable or base64 when needed, so no relay has to downgrade them), raw
    UTF-8 headers only when an address requires SMTPUTF8. Bcc never becomes a header.

    Only Date, Message-ID and the MIME headers are added to what the app asked for.
    """
    message = EmailMessage(policy=_UTF8_POLICY if request.smtputf8 else _ASCII_POLICY)
    message["From"] = request.sender.header()
    _set_addresses(message, "To", request.to)
    _set_addresses(message, "Cc", request.cc)
    _set_addresses(message, "Reply-To", request.reply_to)
    if request.subject is not None:
        message["Subject"] = request.subject
    message["Date"] = format_date(now)
    message["Message-ID"] = f"<{message_id}@{hostname}>"
    for name, value in request.headers:
        message[name] = value
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
    # The email package decodes RFC 2047 encoded words when a header is set and writes a
    # decoded CR or LF out as a real line break, so the raw fields passing validation is
    # not enough: check the values as the package holds them, then the output's shape.
    for part in message.walk():
        for name, value in part.items():
            if _UNSAFE.search(str(value)):
                return _invalid(
                    f"header {name} would contain a line break or control character"
                    " (encoded words are decoded before this check)"
                )
    data = message.as_bytes()
    if _NOT_CRLF.search(data) or not data.endswith(b"\r\n"):
        return _invalid("the message could not be built with CRLF line ends")
    section = parse_header_section(data)
    if (
        not section.has_separator
        or len(section.fields) != len(message.items())
        or len(section.values("from")) != 1
        or section.has("bcc")
    ):
        # Never queue a header section other than the one the request describes.
        return _invalid("the header fields could not be built as requested")
    if any(len(line) > _MAX_LINE for line in data.split(b"\r\n")):
        return _invalid(
            f"a header line would be longer than {_MAX_LINE} octets;"
            " shorten the display names or header values"
        )
    return data


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
) -> Submission | ComposeError:
    """The whole of ``POST /api/v1/send`` short of the store: validate, authorize, check
    limits, build. ``message_id`` and ``now`` come from the caller's clock and ULID source."""
    request = parse_request(body, idempotency_header)
    if isinstance(request, ComposeError):
        return request
    refused = authorize(identity, request)
    if refused is not None:
        return refused
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
    )
    return Submission(message=message, idempotency=request.idempotency)
