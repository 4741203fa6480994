"""Port 25's side of the return path: bounces and complaints for Rail's bounce domains.

A recipient in a bounce domain (``bounces.<local domain>``, :mod:`rail.bounces.verp`) is
taken only when its tag verifies; any other address there is unknown (``550 5.1.1``), so
a forged report never gets past RCPT. Such a transaction holds return paths only: a
recipient of another kind in the same transaction is deferred (``452 4.5.3``, RFC 5321
§3.3), so each kind is committed alone.

At the end of DATA the message is read (:func:`rail.bounces.reports.parse_report`, linear
and bounded by ``bounces.max_report_size``, in a thread: a 4 MB report costs tens of
milliseconds the reactor must not spend) and what it says is recorded, with its events
and suppressions, in one store transaction before the ``250``: the report is accepted
when its facts are on disk, and is not spooled as inbound mail nor POSTed to any app. A
message there that is neither a DSN nor an ARF report (an auto-reply, a person answering
the return path) goes to the postmaster route, as undeliverable-looking mail does today.

``postmaster@`` a bounce domain is the one other address there: Rail is that domain's
MX, and RFC 5321 §4.5.1 wants postmaster accepted at every domain a server receives
mail for. It is ordinary mail, routed as the parent domain's postmaster
(:meth:`BounceIntake.route_address`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.bounces.reports import DeliveryReport, FeedbackReport, Unreadable, parse_report
from rail.bounces.verp import ReturnPaths, VerpAddress
from rail.dkim.names import a_label
from rail.inbound.recipients import RecipientTable, Route, route_recipient
from rail.policy.verdict import Reject
from rail.refusals import Refusals
from rail.smtp.session import Envelope, Reply
from rail.store.model import QueueFullError, StoreUnavailableError

__all__ = ["ORDINARY", "BounceIntake", "Ordinary", "ReportStore"]

_log = Logger()

_UNKNOWN = Reject(550, "5.1.1", "User unknown")
_MIXED = Reject(452, "4.5.3", "Too many recipients; send the others in another transaction")
_TOO_BIG = Reply(552, "5.3.4", "Message too big for a delivery report")
_UNREADABLE = Reply(550, "5.6.0", "Not a delivery status or feedback report")
_QUEUE_FULL = Reply(452, "4.3.1", "Insufficient system storage; try again later")
_UNAVAILABLE = Reply(451, "4.3.0", "Requested action aborted: local error in processing")


class Ordinary(Enum):
    """What :meth:`BounceIntake.check_rcpt` answers for an address that is not on a
    bounce domain: route it as usual."""

    ADDRESS = "ordinary"


ORDINARY = Ordinary.ADDRESS


class ReportStore(Protocol):
    """What the intake needs of the store (:class:`rail.store.queuestore.QueueStore`)."""

    def record_report(
        self, message_id: str, report: DeliveryReport | FeedbackReport, now: float
    ) -> Any:
        """A Deferred firing with the :class:`rail.store.bouncereports.Noted` list."""


class BounceIntake:
    """One port-25 session's handling of return paths; :meth:`reset` at every MAIL."""

    def __init__(
        self,
        *,
        store: ReportStore,
        paths: ReturnPaths,
        max_size: int,
        clock: Any,
        in_thread: Callable[[Callable[[], Any]], defer.Deferred[Any]],
        refusals: Refusals | None = None,
    ) -> None:
        """``in_thread(f)``: a Deferred of ``f()`` run off the reactor."""
        self._in_thread = in_thread
        self._store = store
        self._paths = paths
        self._max_size = max_size
        self._clock = clock
        self._refusals = refusals
        self._taken: dict[str, VerpAddress] = {}

    @property
    def active(self) -> bool:
        """Whether this transaction's recipients are return paths."""
        return bool(self._taken)

    def reset(self) -> None:
        self._taken = {}

    def _refuse(self, reason: str, peer: str) -> None:
        if self._refusals is not None:
            self._refusals.refuse("inbound", reason, peer)

    def check_rcpt(
        self, table: RecipientTable, envelope: Envelope, recipient: str, routed: bool
    ) -> Reject | Ordinary | None:
        """:data:`ORDINARY`: not an address of a bounce domain, route it as usual (but
        not into a transaction of return paths: then ``452``). ``None``: a verified
        return path, taken. A :class:`Reject` refuses it. ``routed`` says whether the
        transaction already holds ordinary recipients."""
        local, at, raw_domain = recipient.rpartition("@")
        domain = a_label(raw_domain) if at else None
        parent = self._paths.sender_domain(domain) if domain else None
        if parent is None or parent not in table.local_domains or local.lower() == "postmaster":
            return _MIXED if self._taken else ORDINARY
        verp = self._paths.verify(f"{local}@{domain}", table.local_domains)
        if verp is None:
            _log.info(
                "refused rcpt={rcpt} peer={peer} reason=forged_return_path code=550",
                rcpt=recipient,
                peer=envelope.peer,
            )
            self._refuse("forged_return_path", envelope.peer)
            return _UNKNOWN
        if routed:
            return _MIXED
        self._taken[recipient] = verp
        return None

    def route_address(self, table: RecipientTable, recipient: str) -> str:
        """The address to route ``recipient`` as: ``postmaster@<parent>`` for the
        postmaster of a bounce domain whose parent is local, else ``recipient``."""
        local, at, raw_domain = recipient.rpartition("@")
        if not at or local.lower() != "postmaster":
            return recipient
        domain = a_label(raw_domain)
        parent = self._paths.sender_domain(domain) if domain else None
        if parent is None or parent not in table.local_domains:
            return recipient
        return f"postmaster@{parent}"

    def deliver(
        self, table: RecipientTable, envelope: Envelope, data: bytes
    ) -> Reply | defer.Deferred[Any]:
        """Read and record the report; a :class:`Route` means: not a report, deliver the
        message there (the postmaster's) as ordinary inbound mail."""
        taken, self._taken = self._taken, {}
        if len(data) > self._max_size:
            _log.info(
                "refused report peer={peer} size={size} reason=report_too_big code=552",
                peer=envelope.peer,
                size=len(data),
            )
            self._refuse("report_too_big", envelope.peer)
            return _TOO_BIG
        parsing: defer.Deferred[DeliveryReport | FeedbackReport | Unreadable] = self._in_thread(
            lambda: parse_report(data)
        )
        return parsing.addCallbacks(
            self._parsed, self._failed, callbackArgs=(table, envelope, taken)
        )

    def _parsed(
        self,
        report: DeliveryReport | FeedbackReport | Unreadable,
        table: RecipientTable,
        envelope: Envelope,
        taken: dict[str, VerpAddress],
    ) -> Reply | Route | defer.Deferred[Reply]:
        """The parsed report: recorded (a Deferred of the reply), or the postmaster's
        route for mail that is no report, or a refusal."""
        if isinstance(report, Unreadable):
            parent = next(iter(taken.values())).domain
            route = route_recipient(table, f"postmaster@{parent}")
            _log.info(
                "unreadable report peer={peer} ({why}): to {where}",
                peer=envelope.peer,
                why=report.reason,
                where="postmaster" if isinstance(route, Route) else "nobody, refused",
            )
            if isinstance(route, Route):
                return route
            self._refuse("unreadable_report", envelope.peer)
            return _UNREADABLE
        now = self._clock.seconds()
        recorded = [
            defer.maybeDeferred(self._store.record_report, verp.message_id, report, now)
            for verp in dict.fromkeys(taken.values())
        ]
        done = defer.gatherResults(recorded, consumeErrors=True)
        return done.addCallbacks(
            self._recorded,
            self._failed,
            callbackArgs=(envelope, report, list(dict.fromkeys(taken.values()))),
        )

    def _recorded(
        self,
        results: list[list[Any]],
        envelope: Envelope,
        report: DeliveryReport | FeedbackReport,
        verps: list[VerpAddress],
    ) -> Reply:
        kind = "dsn" if isinstance(report, DeliveryReport) else "arf"
        for verp, noted in zip(verps, results, strict=True):
            for entry in noted:
                _log.info(
                    "{kind} report msg_id={msg_id} client={client} rcpt={rcpt}"
                    " outcome={outcome} suppressed={suppressed} peer={peer}",
                    kind=kind,
                    msg_id=verp.message_id,
                    client=entry.client,
                    rcpt=entry.recipient,
                    outcome=entry.outcome,
                    suppressed=entry.suppressed,
                    peer=envelope.peer,
                )
        return Reply(250, "2.0.0", "Ok: report recorded")

    def _failed(self, failure: Failure) -> Reply:
        error = failure.value
        if isinstance(error, defer.FirstError):
            error = error.subFailure.value
        if isinstance(error, QueueFullError):
            return _QUEUE_FULL
        if isinstance(error, StoreUnavailableError):
            _log.error("cannot record a delivery report: {why}", why=str(error))
        else:
            _log.failure("recording a delivery report failed", failure)
        return _UNAVAILABLE
