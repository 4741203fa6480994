"""Port 25: mail from the internet for Rail's clients.

No client certificate is asked for (the listener's STARTTLS context has no client
authentication). Recipients are routed by :mod:`rail.inbound.recipients` (no open relay);
at the end of DATA the message is checked with SPF, DKIM and DMARC, refused or tagged by
:mod:`rail.inbound.policy`, given Rail's ``Received`` and ``Authentication-Results``
fields (any such field claiming to be Rail's own is removed first: it would be forged)
and spooled with one webhook job per client. ``250`` is sent only once the spool has it
on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.config.schema import Inbound
from rail.forward.copies import ForwardRequest, Received
from rail.forward.forwarding import Forwarding, Return
from rail.inbound.model import Authentication, IInboundStore, InboundMessage
from rail.inbound.policy import (
    authentication_verdict,
    bounce_allowed,
    decode_subject,
    received_field,
)
from rail.inbound.recipients import (
    RecipientTable,
    Refusal,
    Route,
    route_recipient,
    webhook_targets,
)
from rail.inbound.results import authentication_results, remove_own_results
from rail.mail.headers import HeaderLimits, format_date, parse_header_section
from rail.mail.limits import check_header_section
from rail.policy.verdict import Reject
from rail.refusals import Refusals
from rail.smtp.bounceintake import ORDINARY, BounceIntake
from rail.smtp.session import Envelope, Reply
from rail.store.ids import new_message_id
from rail.store.model import QueueFullError, StoreUnavailableError

__all__ = ["InboundSession", "ReportMailbox", "Verifier"]

_log = Logger()

_NEED_TLS = Reject(530, "5.7.0", "Must issue a STARTTLS command first")
_VERIFY_FAILED = Reply(451, "4.4.3", "Temporary failure checking the sender; try again later")
_QUEUE_FULL = Reply(452, "4.3.1", "Insufficient system storage; try again later")
_UNAVAILABLE = Reply(451, "4.3.0", "Requested action aborted: local error in processing")


class Verifier(Protocol):
    """What the session needs of :class:`rail.inbound.verifier.Verifier`."""

    def verify(self, peer_ip: str, helo: str, sender: str, data: bytes) -> Any:
        """A Deferred firing with the message's :class:`Authentication`."""


class ReportMailbox(Protocol):
    """Rail's own TLS-RPT mailbox (:class:`rail.tlsrpt.mailbox.ReportMailbox`): mail to
    it is read as a report, not stored nor sent to a webhook."""

    def accepts(self, address: str) -> bool: ...
    def receive(self, data: bytes, peer: str) -> Any: ...


class InboundSession:
    """The port-25 half of one SMTP session (see :class:`rail.smtp.session.Session`).

    ``recipients()`` returns the current routing table
    (:meth:`rail.inbound.directory.Directory.current`); ``settings`` is ``config.inbound``.
    ``verify_timeout`` bounds the SPF/DKIM/DMARC checks: past it the client is told to
    try again later (``451 4.4.3``) rather than being held forever.
    """

    def __init__(
        self,
        *,
        store: IInboundStore,
        verifier: Verifier,
        recipients: Callable[[], RecipientTable],
        settings: Inbound,
        clock: IReactorTime,
        hostname: str,
        authserv_id: str | None = None,
        verify_timeout: float = 120.0,
        header_limits: HeaderLimits | None = None,
        refusals: Refusals | None = None,
        forwarding: Forwarding | None = None,
        reports: ReportMailbox | None = None,
        bounces: BounceIntake | None = None,
    ) -> None:
        self._forwarding = forwarding
        self._returns: dict[str, Return] = {}
        self._reports = reports
        self._report_rcpts: set[str] = set()
        self._bounces = bounces  # return paths (bounces.enabled): rail.smtp.bounceintake
        self._header_limits = header_limits or HeaderLimits()
        self._refusals = refusals
        self._store = store
        self._verifier = verifier
        self._recipients = recipients
        self._settings = settings
        self._clock = clock
        self._hostname = hostname
        self._authserv_id = authserv_id or hostname
        self._verify_timeout = verify_timeout
        self._routes: dict[str, Route] = {}
        self._tls_info: str | None = None

    def handshake_completed(self, transport: Any) -> None:
        # No client certificate on port 25: only note the TLS version for Received.
        try:
            handle = transport.getHandle()
            self._tls_info = (
                f"using {handle.get_protocol_version_name()} with cipher {handle.get_cipher_name()}"
            )
        except Exception:  # informational only: a transport without it is fine
            self._tls_info = None

    def check_mail(self, envelope: Envelope) -> Reject | None:
        self._routes = {}
        self._returns = {}
        self._report_rcpts = set()
        if self._bounces is not None:
            self._bounces.reset()
        if self._settings.require_tls and not envelope.tls:
            return _NEED_TLS
        return None

    def check_rcpt(self, envelope: Envelope, recipient: str) -> Reject | None:
        if self._reports is not None and self._reports.accepts(recipient):
            self._report_rcpts.add(recipient)
            return None
        table = self._recipients()
        if self._bounces is not None:
            taken = self._bounces.check_rcpt(table, envelope, recipient, bool(self._routes))
            if taken is not ORDINARY:
                return taken
        returned = (
            self._forwarding.rcpt(table, recipient, envelope.peer) if self._forwarding else None
        )
        if isinstance(returned, Reject | Return):
            return self._returned(recipient, returned)
        routed_as = self._bounces.route_address(table, recipient) if self._bounces else recipient
        decision = route_recipient(table, routed_as)
        if isinstance(decision, Refusal):
            _log.info(
                "refused rcpt={rcpt} peer={peer} reason={reason} code={code}",
                rcpt=recipient,
                peer=envelope.peer,
                reason=decision.reason,
                code=decision.reject.code,
                client=decision.client,
            )
            return decision.reject
        if decision.forward and self._forwarding is not None:
            limited = self._forwarding.over_limit(table, decision, envelope.peer)
            if limited is not None:
                return limited
        self._routes[recipient] = decision
        return None

    def _returned(self, recipient: str, returned: Return | Reject) -> Reject | None:
        """A bounce to an SRS address: refused when bad, else returned at the end."""
        if isinstance(returned, Reject):
            return returned
        self._returns[recipient] = returned
        return None

    def deliver(self, envelope: Envelope, data: bytes) -> Any:
        over = check_header_section(data, self._header_limits)
        if over is not None:
            # Before the checks: verification parses the whole header section.
            self._routes = {}
            if self._refusals is not None:
                self._refusals.refuse("inbound", over[0], envelope.peer)
            return over[1]
        reports, self._report_rcpts = self._report_rcpts, set()
        if reports and self._reports is not None:
            reading = self._reports.receive(data, envelope.peer)
            if reports.issuperset(envelope.recipients):
                self._routes = {}
                return reading.addCallback(lambda _: Reply(250, "2.0.0", "Ok: report received"))
        routes, self._routes = self._routes, {}
        returned, self._returns = self._returns, {}
        if self._bounces is not None and self._bounces.active:
            handled = self._bounces.deliver(self._recipients(), envelope, data)
            if isinstance(handled, Reply):
                return handled
            return handled.addCallback(self._after_report, envelope, data, reports, returned)
        return self._route(envelope, data, reports, routes, returned)

    def _after_report(
        self,
        handled: Reply | Route,
        envelope: Envelope,
        data: bytes,
        reports: set[str],
        returned: dict[str, Return],
    ) -> Any:
        """A report recorded (its reply), or not a report: then the postmaster's mail."""
        if not isinstance(handled, Route):
            return handled
        routes = dict.fromkeys(envelope.recipients, handled)
        return self._route(envelope, data, reports, routes, returned)

    def _route(
        self,
        envelope: Envelope,
        data: bytes,
        reports: set[str],
        routes: dict[str, Route],
        returned: dict[str, Return],
    ) -> Any:
        routed: list[tuple[str, Route]] = []
        returns = tuple(returned[r] for r in envelope.recipients if r in returned)
        for recipient in envelope.recipients:
            if recipient in returned or recipient in reports:
                continue
            route = routes.get(recipient)
            if route is None:  # not expected: every recipient passed check_rcpt
                decision = route_recipient(self._recipients(), recipient)
                if isinstance(decision, Refusal):
                    return decision.reject
                route = decision
            routed.append((recipient, route))
        verifying: defer.Deferred[Authentication] = defer.maybeDeferred(
            self._verifier.verify, envelope.peer, envelope.helo, envelope.sender, data
        )
        verifying.addTimeout(self._verify_timeout, self._clock)
        return verifying.addCallbacks(
            self._verified,
            self._verify_failed,
            callbackArgs=(envelope, data, tuple(routed), returns),
            errbackArgs=(envelope,),
        )

    def _verify_failed(self, failure: Failure, envelope: Envelope) -> Reply:
        _log.warn(
            "authentication checks failed for peer={peer} sender={sender}: {why}",
            peer=envelope.peer,
            sender=envelope.sender or "<>",
            why=failure.getErrorMessage() or type(failure.value).__name__,
        )
        return _VERIFY_FAILED

    def _verified(
        self,
        auth: Authentication,
        envelope: Envelope,
        data: bytes,
        routed: tuple[tuple[str, Route], ...],
        returns: tuple[Return, ...] = (),
    ) -> Any:
        verdict = authentication_verdict(auth, self._settings)
        if verdict is not None:
            _log.info(
                "refused message peer={peer} sender={sender} spf={spf} dmarc={dmarc} code={code}",
                peer=envelope.peer,
                sender=envelope.sender or "<>",
                spf=auth.spf,
                dmarc=auth.dmarc,
                code=verdict.code,
            )
            return verdict
        now = self._clock.seconds()
        message_id = new_message_id(now)
        received = received_field(
            helo=envelope.helo,
            peer=envelope.peer,
            hostname=self._hostname,
            message_id=message_id,
            date=format_date(now),
            tls=envelope.tls,
            smtputf8=envelope.smtputf8,
            recipients=envelope.recipients,
            tls_info=self._tls_info if envelope.tls else None,
        )
        body = remove_own_results(data, self._authserv_id)
        results = authentication_results(self._authserv_id, auth)
        stored = (received + "\r\n" + results + "\r\n").encode("utf-8") + body
        subjects = parse_header_section(body).values("subject")
        targets = webhook_targets(routed)
        requests = tuple(
            ForwardRequest(alias, route.forward, route.index)
            for alias, route in routed
            if route.forward and route.index is not None
        )
        message = InboundMessage(
            id=message_id,
            sender=envelope.sender,
            targets=targets,
            data=stored,
            received_at=now,
            subject=decode_subject(subjects[0] if subjects else None),
            authentication=auth.as_json(),
            bounce_allowed=bounce_allowed(envelope.sender, auth),
            peer=envelope.peer,
            tls=envelope.tls,
        )
        if self._forwarding is None or not (requests or returns):
            return self._spool(message, auth)
        original = Received(
            received=(received + "\r\n").encode("utf-8"),
            results=(results + "\r\n").encode("utf-8"),
            original=body,
            sender=envelope.sender,
            received_at=now,
            smtputf8=envelope.smtputf8,
            eight_bit=envelope.eight_bit,
        )
        table = self._recipients()
        copying = self._forwarding.copies(original, requests, returns)
        return copying.addCallbacks(
            self._copied,
            self._failed,
            callbackArgs=(message, auth, table, requests),
            errbackArgs=(message,),
        )

    def _copied(
        self,
        forwards: tuple[Any, ...],
        message: InboundMessage,
        auth: Authentication,
        table: RecipientTable,
        requests: tuple[ForwardRequest, ...],
    ) -> Any:
        spooled = self._spool(attrs.evolve(message, forwards=forwards), auth)
        if self._forwarding is not None and requests:
            forwarding = self._forwarding
            spooled.addCallback(lambda reply: _counted(reply, forwarding, table, requests))
        return spooled

    def _spool(self, message: InboundMessage, auth: Authentication) -> defer.Deferred[Any]:
        accepted: defer.Deferred[Any] = defer.maybeDeferred(self._store.accept_inbound, message)
        return accepted.addCallbacks(
            self._accepted, self._failed, callbackArgs=(message, auth), errbackArgs=(message,)
        )

    def _accepted(self, result: Any, message: InboundMessage, auth: Authentication) -> Reply:
        _log.info(
            "inbound accepted msg_id={msg_id} peer={peer} from={sender} clients={clients}"
            " recipients={recipients} size={size} spf={spf} dmarc={dmarc} tls={tls}"
            " forwards={forwards}",
            msg_id=message.id,
            peer=message.peer,
            sender=message.sender or "<>",
            clients=",".join(target.client for target in message.targets),
            recipients=sum(len(target.recipients) for target in message.targets),
            size=len(message.data),
            spf=auth.spf,
            dmarc=auth.dmarc,
            tls=message.tls,
            forwards=",".join(f"{m.id}:{m.client}" for m in message.forwards) or "-",
        )
        return Reply(250, "2.0.0", f"Ok: queued as {message.id}")

    def _failed(self, failure: Failure, message: InboundMessage) -> Reply:
        if isinstance(failure.value, QueueFullError):
            _log.warn(
                "inbound spool full: refusing a message from peer={peer} ({why})",
                peer=message.peer,
                why=str(failure.value),
            )
            return _QUEUE_FULL
        if isinstance(failure.value, StoreUnavailableError):
            _log.error("inbound spool unavailable: {why}", why=str(failure.value))
        else:
            _log.failure("storing an inbound message failed", failure)
        return _UNAVAILABLE


def _counted(
    reply: Any, forwarding: Forwarding, table: RecipientTable, requests: tuple[ForwardRequest, ...]
) -> Any:
    """A forwarded message counts against its routes' rate limits once it is accepted."""
    if isinstance(reply, Reply) and reply.code == 250:
        forwarding.counted(table, requests)
    return reply
