"""Port 465: applications submit mail, authenticated by their client certificate.

The identity is read when the TLS handshake completes (the TLS layer has already refused
anyone without a valid certificate from Rail's CA). A session outlives the handshake, so
each MAIL FROM checks the certificate against the revocations loaded since
(``530 5.7.0`` once it is revoked). MAIL FROM and every From header
address must be one of the certificate's senders; any recipient may be addressed
(authenticated relay). ``X-Rail-Tag`` and ``X-Rail-Metadata-*`` fields become the
message's tag and metadata and are taken out of it (:mod:`rail.mail.meta`; ``550 5.6.0``
when they break the bounds). The message is completed (Received, and Message-ID, Date and
From when absent) and acknowledged only once the queue has it on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.audit import log_accepted
from rail.mail.headers import HeaderLimits, completed, format_date, parse_header_section
from rail.mail.limits import check_header_section
from rail.mail.meta import MetaFields, take_meta_headers
from rail.policy.identity import ClientIdentity, identity_from_certificate
from rail.policy.rates import ClientRates, Limited
from rail.policy.sender import check_from_header, check_sender
from rail.policy.verdict import Reject
from rail.refusals import Refusals
from rail.smtp.session import Envelope, Reply
from rail.store.ids import new_message_id
from rail.store.model import (
    IQueueStore,
    MessageMeta,
    NewMessage,
    QueueFullError,
    StoreUnavailableError,
)

__all__ = ["SubmissionSession"]

_log = Logger()

_NO_IDENTITY = Reject(530, "5.7.0", "Client certificate required")
# RFC 4954's "Authentication required": the session's credential no longer counts.
_REVOKED = Reject(530, "5.7.0", "Client certificate revoked")
_MANY_FROM = Reject(550, "5.6.0", "Message has more than one From header")
_AUTHOR_FIELDS = ("from", "sender", "resent-from", "resent-sender")
_QUEUE_FULL = Reply(452, "4.3.1", "Insufficient system storage; try again later")
_UNAVAILABLE = Reply(451, "4.3.0", "Requested action aborted: local error in processing")


class SubmissionSession:
    """The port-465 half of one SMTP session (see :class:`rail.smtp.session.Session`)."""

    def __init__(
        self,
        store: IQueueStore,
        clock: IReactorTime,
        hostname: str,
        *,
        revoked: Callable[[], frozenset[int]] = frozenset,
        header_limits: HeaderLimits | None = None,
        refusals: Refusals | None = None,
        rates: ClientRates | None = None,
        count_accepted: Callable[[float, int], None] | None = None,
    ) -> None:
        """``revoked()`` returns the loaded revoked serials (no I/O: it is called on
        every MAIL FROM); ``rates`` holds the per-client rate limits (messages at MAIL
        FROM, recipients per day at RCPT TO) and counts what is accepted;
        ``count_accepted(now, messages)`` counts each message the store accepted (the
        console's and ``/stats``' acceptance rate)."""
        self._store = store
        self._clock = clock
        self._hostname = hostname
        self._revoked = revoked
        self._logged_revoked = False
        self._header_limits = header_limits or HeaderLimits()
        self._refusals = refusals
        self._rates = rates
        self._count_accepted = count_accepted
        self.identity: ClientIdentity | None = None

    def handshake_completed(self, transport: Any) -> None:
        certificate = transport.getPeerCertificate()
        if certificate is None:
            return
        try:
            self.identity = identity_from_certificate(certificate.to_cryptography())
        except ValueError:
            _log.warn("client certificate without a usable identity; refusing mail")

    def check_mail(self, envelope: Envelope) -> Reject | None:
        identity = self.identity
        if identity is None:
            return _NO_IDENTITY
        if identity.serial in self._revoked():
            if not self._logged_revoked:  # once per session, however often it retries
                self._logged_revoked = True
                _log.info(
                    "refused MAIL FROM of {client} from {peer}: client certificate serial"
                    " {serial} was revoked during the session",
                    client=identity.name,
                    peer=envelope.peer,
                    serial=format(identity.serial, "x"),
                )
            return _REVOKED
        verdict = check_sender(identity, envelope.sender)
        if verdict is None and self._rates is not None:
            return self._limited(self._rates.check_message(identity.name), envelope)
        return verdict

    def check_rcpt(self, envelope: Envelope, recipient: str) -> Reject | None:
        identity = self.identity
        if identity is None or self._rates is None:
            return None
        count = len(envelope.recipients) + 1
        return self._limited(self._rates.check_recipients(identity.name, count), envelope)

    def _limited(self, limited: Limited | None, envelope: Envelope) -> Reject | None:
        """A rate limit's refusal: temporary, so the client's queue retries later."""
        if limited is None:
            return None
        if self._refusals is not None:
            self._refusals.refuse("submission", limited.limit, envelope.peer)
        return Reject(452, "4.7.0", limited.text)

    def deliver(self, envelope: Envelope, data: bytes) -> Any:
        identity = self.identity
        if identity is None:
            return _NO_IDENTITY
        over = check_header_section(data, self._header_limits)
        if over is not None:
            if self._refusals is not None:
                self._refusals.refuse("submission", over[0], envelope.peer)
            return over[1]
        section = parse_header_section(data)
        if len(section.values("from")) > 1:
            return _MANY_FROM
        # Sender and Resent-* name who sent the message as much as From does.
        for field in _AUTHOR_FIELDS:
            verdict = check_from_header(identity, section.addresses(field))
            if verdict is not None:
                return verdict
        meta = MetaFields()
        if any(name.startswith("x-rail-") for name, _ in section.fields):
            taken = take_meta_headers(data, section.end)
            if isinstance(taken, str):
                if self._refusals is not None:
                    self._refusals.refuse("submission", "metadata", envelope.peer)
                return Reject(550, "5.6.0", f"Rejected: {taken}")
            data, meta = taken
            section = parse_header_section(data)
        now = self._clock.seconds()
        message_id = new_message_id(now)
        date = format_date(now)
        protocol = "UTF8SMTPSA" if envelope.smtputf8 else "ESMTPSA"
        # RFC 5321 §4.4 TCP-info: an address literal, IPv6 ones tagged.
        literal = f"IPv6:{envelope.peer}" if ":" in envelope.peer else envelope.peer
        received = (
            f"Received: from {envelope.helo} ([{literal}])\r\n"
            f"\t(authenticated client {identity.name})\r\n"
            f"\tby {self._hostname} (Rail) with {protocol} id {message_id};\r\n"
            f"\t{date}"
        )
        full = completed(
            data,
            section,
            prepend=[received],
            defaults=[
                ("From", f"From: <{envelope.sender}>"),
                ("Date", f"Date: {date}"),
                ("Message-ID", f"Message-ID: <{message_id}@{self._hostname}>"),
            ],
        )
        message = NewMessage(
            id=message_id,
            client=identity.name,
            sender=envelope.sender,
            recipients=envelope.recipients,
            data=full,
            channel="smtp",
            received_at=now,
            smtputf8=envelope.smtputf8,
            eight_bit=not full.isascii(),
            meta=MessageMeta(tag=meta.tag, metadata=meta.metadata),
        )
        accepted: defer.Deferred[Any] = self._store.accept(message)
        return accepted.addCallbacks(self._accepted, self._failed, callbackArgs=(message,))

    def _accepted(self, result: Any, message: NewMessage) -> Reply:
        if self._rates is not None:
            self._rates.record(message.client, len(message.recipients))
        if self._count_accepted is not None:
            self._count_accepted(self._clock.seconds(), 1)
        log_accepted(message)
        return Reply(250, "2.0.0", f"Ok: queued as {message.id}")

    def _failed(self, failure: Failure) -> Reply:
        if failure.check(QueueFullError):
            _log.warn("queue full: refusing a message ({why})", why=str(failure.value))
            return _QUEUE_FULL
        if failure.check(StoreUnavailableError):
            _log.error("queue unavailable: {why}", why=str(failure.value))
        else:
            _log.failure("storing a message failed", failure)
        return _UNAVAILABLE
