"""The console's pages that show what is (Overview, Messages, a message, Inbound,
Clients, Domains): each gathers its figures from :class:`ConsoleSources` and hands plain
values to the page modules, so the pages stay pure and these stay free of markup."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.console import (
    clientpages,
    domainpages,
    inboundpages,
    issuing,
    layout,
    messagepages,
    overview,
)
from rail.console.csrf import csrf_token
from rail.console.issuing import IssueForm
from rail.console.requests import LOG_NAMESPACE, MAX_FIELD, SERIAL, Admin, Answer, arg, not_found
from rail.console.sources import ConsoleSources
from rail.delivery.stats import DeliveryStats
from rail.mail.meta import MAX_KEY
from rail.store.adminmodel import LISTED_STATUSES, QueueQuery
from rail.store.ids import is_message_id
from rail.store.suppressionmodel import SuppressionQuery
from rail.web.metaquery import tag_problem

__all__ = ["Reads"]

_log = Logger(namespace=LOG_NAMESPACE)

_META_KEY = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_KEY}}}")
"""A metadata key, as :mod:`rail.mail.meta` allows them."""

_DONE = {
    ("retry", "done"): "Retried: the pending recipients are due now.",
    ("retry", "none"): "Nothing to retry: no pending recipient is waiting.",
    ("hold", "done"): "Held: no delivery until released.",
    ("release", "done"): "Released: the pending recipients are due now.",
    ("delete", "done"): "Deleted: the pending recipients will not be delivered.",
    ("bounce", "done"): "Bounced: the sender gets a DSN.",
    ("any", "not_pending"): "Nothing was done: no recipient is pending.",
    ("any", "already_held"): "Nothing was done: the message is already on hold.",
    ("any", "not_held"): "Nothing was done: the message is not on hold.",
}
"""What an action's outcome (``?done=ACTION&outcome=CODE``) says; only these texts are
shown, so a link cannot put words on the page."""


class Reads:
    """The pages' reads; one per console, as the doctor's run is shared by the requests
    made while it is under way."""

    def __init__(self, sources: ConsoleSources) -> None:
        self._sources = sources
        self._checking: list[Deferred[Any]] = []

    def overview(self) -> Deferred[Answer]:
        """Every figure is read at once; one that cannot be read is left out."""
        sources = self._sources
        now = sources.clock.seconds()
        counts = _or_none(sources.store.recipient_counts())
        disk = _or_none(sources.disk_free()) if sources.disk_free is not None else succeed(None)
        certs = (
            _or_none(sources.certificates()) if sources.certificates is not None else succeed(None)
        )
        deferring = _or_none(sources.store.deferring_domains())
        backlog = _or_none(sources.store.webhook_backlog())
        refreshed: list[Deferred[Any]] = []
        if sources.stats is not None:
            refreshed = [_or_none(maybeDeferred(r)) for r in sources.stats.refreshers]

        def render(found: list[Any]) -> Answer:
            counts_found, disk_found, certs_found, deferring_found, backlog_found = found[:5]
            stats = sources.stats
            snapshot = sent = per_minute = accepted = None
            if stats is not None:
                snapshot = stats.snapshot(now, counts_found or {})
                sent = stats.recent_sent(now)
                per_minute = stats.sent_per_minute(now)
                accepted = stats.accepted_per_minute(now)
            server = sources.server_certificate() if sources.server_certificate else None
            if stats is not None and snapshot is not None:
                snapshot = {**snapshot, "quarantined": _quarantined(stats)}
            page = overview.overview_page(
                now,
                counts_found,
                snapshot,
                sent or [],
                disk_found,
                certs_found,
                deferring_found,
                per_minute or [],
                server,
                backlog_found,
                accepted or [],
            )
            return Answer(page=page)

        reads = [counts, disk, certs, deferring, backlog, *refreshed]
        return gatherResults(reads).addCallback(render)

    def messages(self, args: dict[bytes, list[bytes]]) -> Deferred[Answer]:
        """The search form and, always, a page of results: the newest messages when no
        field is filled in (a listing is bounded whatever the queue holds)."""
        values = {name: arg(args, name) for name in messagepages.SEARCH_FIELDS}
        cursor = arg(args, "cursor") or None
        problem = None
        after = before = None
        metadata: tuple[tuple[str, str], ...] = ()
        if any(len(v) > MAX_FIELD for v in values.values()):
            problem = f"Each field is at most {MAX_FIELD} characters."
        elif values["status"] and values["status"] not in LISTED_STATUSES:
            problem = "Status: pick one from the list."
        elif cursor is not None and not is_message_id(cursor):
            problem = "That link to older messages is not valid."
        elif values["tag"]:
            problem = tag_problem(values["tag"])
        if problem is None:
            after, problem = _utc(values["received_after"], "Received after")
        if problem is None:
            before, problem = _utc(values["received_before"], "Received before")
        if problem is None and values["metadata"]:
            key, equals, value = values["metadata"].partition("=")
            if not equals or not _META_KEY.fullmatch(key.strip()):
                problem = (
                    f"Metadata: key=value, the key 1 to {MAX_KEY} characters of A-Z a-z 0-9 _ . -"
                )
            else:
                metadata = ((key.strip(), value.strip()),)
        if problem is not None:
            return succeed(Answer(400, messagepages.messages_page(values, None, problem)))
        query = QueueQuery(
            status=values["status"] or None,
            client=values["client"] or None,
            recipient=values["recipient"] or None,
            sender=values["sender"] or None,
            request_id=values["request_id"] or None,
            tag=values["tag"] or None,
            metadata=metadata,
            newer_than=after,
            older_than=before,
            cursor=cursor,
            limit=50,
        )
        return self._sources.store.list_messages(query).addCallback(
            lambda found: Answer(page=messagepages.messages_page(values, found, None))
        )

    def message(self, message_id: str, args: dict[bytes, list[bytes]]) -> Deferred[Answer]:
        """One message and its trail; after an action, what it did (``_DONE``)."""
        if not is_message_id(message_id):
            return not_found()
        store = self._sources.store
        action, outcome = arg(args, "done"), arg(args, "outcome")
        done = _DONE.get((action, outcome)) or _DONE.get(("any", outcome))

        def render(found: list[Any]) -> Answer:
            detail, events = found
            if detail is None:
                return Answer(404, layout.notice_page("Not found", "No such message."))
            return Answer(page=messagepages.message_page(detail, events, done))

        return gatherResults(
            [store.show_message(message_id), store.message_events(message_id)]
        ).addCallback(render)

    def inbound(self, args: dict[bytes, list[bytes]]) -> Deferred[Answer]:
        before = arg(args, "before") or None
        if before is not None and not is_message_id(before):
            return not_found()
        retried = arg(args, "retried")
        done = None
        if retried.isdigit():
            done = (
                f"Retried: {retried} webhook job(s) due now."
                if retried != "0"
                else "Nothing to retry: no webhook job is pending."
            )
        return self._sources.store.recent_inbound(before).addCallback(
            lambda found: Answer(page=inboundpages.inbound_page(found, done))
        )

    def clients(self, args: dict[bytes, list[bytes]], admin: Admin) -> Deferred[Answer]:
        sources = self._sources
        done: str | None = None
        now = sources.clock.seconds()
        client, q = arg(args, "client")[:MAX_FIELD], arg(args, "q")[:MAX_FIELD]
        revoked = arg(args, "revoked")
        if SERIAL.fullmatch(revoked):
            done = f"Revoked certificate {revoked}: the server refuses it within a second."
        elif arg(args, "removed") == "1":
            done = "Removed from the suppression list."
        elif arg(args, "removed") == "0":
            done = "That address was not on the list."
        certs = (
            _or_none(sources.certificates()) if sources.certificates is not None else succeed(None)
        )
        events = (
            _or_none(sources.client_events())
            if sources.client_events is not None
            else succeed(None)
        )
        listed: Deferred[Any] = succeed(None)
        if client:
            listed = sources.store.list_suppressions(
                SuppressionQuery(client=client, limit=100, q=q.lower() or None)
            )

        issue = None
        if sources.issuing is not None:
            issue = issuing.issue_form(
                csrf_token(sources.secret, admin.fingerprint, "/console/certificates/issue"),
                IssueForm(),
                sources.issuing.key_types,
                sources.issuing.default_key_type,
            )

        def render(found: list[Any]) -> Answer:
            records, listing, subscribed = found
            policies = sources.policies() if sources.policies is not None else None
            page = clientpages.clients_page(
                now,
                records,
                client,
                q,
                listing,
                done,
                sources.revoke is not None,
                policies,
                {e.name: e for e in subscribed} if subscribed is not None else None,
                issue,
            )
            return Answer(page=page)

        return gatherResults([certs, listed, events]).addCallback(render)

    def domains(self, admin: Admin, check: bool, rotated: str = "") -> Deferred[Answer]:
        """The records, and with ``check`` the doctor's verdicts (a POST: the checks cost
        seconds of DNS queries and connections, so a link from elsewhere cannot start
        them); after a rotation of ``rotated``, its new selectors and records."""
        sources = self._sources
        records: Deferred[Any] = succeed((None, "Records are not available here."))
        if sources.records is not None:
            records = sources.records().addCallbacks(
                lambda text: (text, None), lambda failure: (None, failure.getErrorMessage())
            )
        report: Deferred[Any] = succeed(None)
        if check and sources.domains is not None:
            report = self._doctor()
        token = csrf_token(sources.secret, admin.fingerprint, "/console/domains/check")
        dkim = _or_none(sources.dkim()) if sources.dkim is not None else succeed(None)

        def render(found: list[Any]) -> Answer:
            (text, problem), verdicts, selectors = found
            available = sources.domains is not None
            notice = None
            for each in selectors or ():
                if rotated and each.domain == rotated:
                    notice = issuing.rotated_notice(each)
            page = domainpages.domains_page(
                text,
                verdicts,
                problem,
                token,
                available,
                selectors,
                sources.rotate_dkim is not None,
                notice,
            )
            return Answer(page=page)

        return gatherResults([records, report, dkim]).addCallback(render)

    def _doctor(self) -> Deferred[Any]:
        """The doctor's report; requests made while a run is under way share it."""
        waiter: Deferred[Any] = Deferred()
        self._checking.append(waiter)
        if len(self._checking) == 1:
            assert self._sources.domains is not None

            def finished(result: object) -> None:
                waiting, self._checking = self._checking, []
                for each in waiting:
                    if isinstance(result, Failure):
                        each.callback(
                            {"counts": {}, "checks": [], "error": result.getErrorMessage()}
                        )
                    else:
                        each.callback(result)

            maybeDeferred(self._sources.domains, None).addBoth(finished)
        return waiter


def _quarantined(stats: DeliveryStats) -> dict[str, int]:
    """Messages quarantined since start per queue, from ``rail_quarantined_total``."""
    found: dict[str, int] = {}
    for metric in stats.registry.collect():
        if metric.name != "rail_quarantined":
            continue
        for sample in metric.samples:
            if sample.name == "rail_quarantined_total":
                queue = sample.labels.get("queue", "?")
                found[queue] = found.get(queue, 0) + int(sample.value)
    return found


def _utc(text: str, label: str) -> tuple[float | None, str | None]:
    """A form's ``YYYY-MM-DDTHH:MM[:SS]`` (UTC) as seconds since the epoch, or why not."""
    if not text:
        return None, None
    for form in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            when = datetime.strptime(text, form).replace(tzinfo=UTC)
        except ValueError:
            continue
        return when.timestamp(), None
    return None, f"{label}: a date and time such as 2026-12-04T15:30 (UTC)."


def _or_none(work: Deferred[Any]) -> Deferred[Any]:
    """``work``'s result, or None when it failed (logged): one figure that cannot be
    read leaves the rest of the overview standing."""

    def failed(failure: Failure) -> None:
        _log.failure("console read failed", failure)
        return None

    return work.addErrback(failed)
