"""The delivery scheduler against MemoryStore, a Clock and scripted SMTP sessions.

No sockets: routing and connections are fakes that answer as the real ones would
(Route / RouteError, Session / SessionError), so every timing is exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.bounces.verp import ReturnPaths
from rail.delivery.decide import RetryPolicy
from rail.delivery.outcome import (
    MessageResult,
    OutboundMessage,
    RecipientResult,
    Reply,
    SessionError,
)
from rail.delivery.preparing import Preparer, inline
from rail.delivery.resolve import Route, RouteError, RouteHost
from rail.delivery.scheduler import RECORD_RETRY, DeliveryLimits, Scheduler
from rail.store.deliveries import DSNBuilder
from rail.store.ids import new_message_id
from rail.store.model import (
    BounceReport,
    DeliveryJob,
    JobResult,
    NewMessage,
    Quarantined,
    StoreUnavailableError,
)
from rail.testing import MemoryStore

_T0 = 1_800_000_000.0
_OK = Reply(250, "2.0.0", "ok")


class _MidRandom(random.Random):
    """Jitter factor exactly 1: retry times are the schedule's."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


class FakeSession:
    """Answers each transaction with ``answer(message)``; or stays silent when it returns
    None, until the test fires ``self.pending``."""

    def __init__(self, answer: Callable[[OutboundMessage], MessageResult | SessionError | None]):
        self.answer = answer
        self.tls_active = True
        self.tls_version: str | None = "TLSv1.3"
        self.closed = False
        self.sent: list[OutboundMessage] = []
        self.quitted = False
        self.aborted = False
        self.pending: Deferred[MessageResult] | None = None

    def send(self, message: OutboundMessage) -> Deferred[MessageResult]:
        self.sent.append(message)
        outcome = self.answer(message)
        if outcome is None:
            self.pending = Deferred()
            return self.pending
        if isinstance(outcome, SessionError):
            return fail(outcome)
        return succeed(outcome)

    def quit(self) -> Deferred[None]:
        self.quitted = True
        self.closed = True
        return succeed(None)

    def abort(self) -> None:
        self.aborted = True
        self.closed = True
        if self.pending is not None and not self.pending.called:
            self.pending.errback(SessionError(Reply(451, "4.4.2", "aborted", remote=False)))


def all_reply(reply: Reply) -> Callable[[OutboundMessage], MessageResult]:
    return lambda m: MessageResult(tuple(RecipientResult(r, reply) for r in m.recipients))


def _dsn(report: BounceReport) -> NewMessage | None:
    if not report.sender:
        return None
    return NewMessage(
        id="DSN" + report.message_id,
        client=report.client,
        sender="",
        recipients=(report.sender,),
        data=b"Subject: bounce\r\n\r\n" + ",".join(b.reply for b in report.bounced).encode(),
        channel="smtp",
        received_at=_T0,
    )


class SchedulerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0)
        self.store = MemoryStore(self.clock)
        self.routes: dict[str, Route | RouteError] = {}
        self.connects: list[tuple[str, str]] = []
        self.refuse: set[str] = set()
        self.sessions: list[FakeSession] = []
        self.answer: Callable[[OutboundMessage], MessageResult | SessionError | None] = all_reply(
            _OK
        )
        self.limits = DeliveryLimits(concurrency=10, per_destination=2, messages_per_connection=3)

    def _route(self, domain: str) -> Deferred[Route]:
        route = self.routes.get(domain, Route(hosts=(RouteHost(f"mx.{domain}", ("192.0.2.1",)),)))
        if isinstance(route, RouteError):
            return fail(route)
        return succeed(route)

    def _connect(self, address: str, host: str, tls: object = None) -> Deferred[FakeSession]:
        self.connects.append((address, host))
        if address in self.refuse:
            return fail(SessionError(Reply(451, "4.4.1", "connection refused", remote=False)))
        session = FakeSession(lambda m: self.answer(m))
        self.sessions.append(session)
        return succeed(session)

    def scheduler(self, return_path: Callable[[DeliveryJob], str] | None = None) -> Scheduler:
        scheduler = Scheduler(
            self.store,
            self.clock,
            route=self._route,
            connect=self._connect,  # type: ignore[arg-type]
            prepare=inline(lambda job: b"DKIM-Signature: x\r\n" + job.data),
            dsn=_dsn,
            policy=RetryPolicy(schedule=(60.0, 300.0), max_age=3600.0),
            limits=self.limits,
            rng=_MidRandom(),
            return_path=return_path,
        )
        return scheduler

    def accept(
        self, *recipients: str, received_at: float = _T0, sender: str = "app@rail.example"
    ) -> str:
        message_id = f"M{len(self.store.messages):03d}"
        self.store.accept(
            NewMessage(
                id=message_id,
                client="app",
                sender=sender,
                recipients=recipients,
                data=f"Subject: {message_id}\r\n\r\nbody\r\n".encode(),
                channel="api",
                received_at=received_at,
            )
        )
        return message_id

    def status(self, message_id: str) -> list[tuple[str, str, int, float | None]]:
        status = self.successResultOf(self.store.status("app", message_id))
        return [(r.status, r.last_reply, r.attempts, r.next_attempt_at) for r in status.recipients]

    def test_delivers_and_reuses_the_connection(self) -> None:
        """Due mail is sent (prepared bytes, envelope kept) and recorded as sent; jobs to
        one domain share a connection up to messages_per_connection, then QUIT."""
        ids = [self.accept("a@one.example") for _ in range(4)]
        scheduler = self.scheduler()
        scheduler.start()
        for message_id in ids:
            self.assertEqual(self.status(message_id), [("sent", "250 2.0.0 ok", 1, None)])
        self.assertEqual(len(self.sessions), 2)
        self.assertEqual([len(s.sent) for s in self.sessions], [3, 1])
        self.assertTrue(all(s.quitted for s in self.sessions))
        first = self.sessions[0].sent[0]
        self.assertEqual((first.sender, first.recipients), ("app@rail.example", ("a@one.example",)))
        self.assertTrue(first.data.startswith(b"DKIM-Signature: x\r\nSubject: M000"))
        self.assertEqual(scheduler.in_flight, 0)
        self.successResultOf(scheduler.stop(10))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_return_path(self) -> None:
        """With return paths, each transaction's MAIL FROM is the message's signed return
        path; a DSN (null reverse-path) keeps the null one."""
        paths = ReturnPaths(b"r" * 32)
        message_id = new_message_id(_T0)
        self.store.accept(
            NewMessage(
                id=message_id,
                client="app",
                sender="app@rail.example",
                recipients=("a@one.example", "b@one.example"),
                data=b"Subject: x\r\n\r\nbody\r\n",
                channel="api",
                received_at=_T0,
            )
        )
        self.accept("c@two.example", sender="")
        scheduler = self.scheduler(lambda job: paths.address(job.message_id, job.sender))
        scheduler.start()
        senders = sorted(m.sender for s in self.sessions for m in s.sent)
        self.assertEqual(senders[0], "")
        self.assertEqual(paths.verify(senders[1]).message_id, message_id)
        self.assertTrue(senders[1].endswith("@bounces.rail.example"))
        self.successResultOf(scheduler.stop(10))

    def test_unrecorded_result_kept_in_flight_and_retried(self) -> None:
        """A delivery whose result the store cannot write (a full disk) is not claimed and
        sent again: the job stays in flight and the same result is recorded once the
        store takes it, RECORD_RETRY seconds later."""
        message_id = self.accept("a@one.example")
        record = self.store.record
        failures = [StoreUnavailableError("cannot write to queue: database or disk is full")]

        def flaky(result: JobResult, dsn: DSNBuilder | None = None) -> Deferred[NewMessage | None]:
            if failures:
                return fail(failures.pop())
            return record(result, dsn)

        self.store.record = flaky  # type: ignore[method-assign]
        scheduler = self.scheduler()
        scheduler.start()
        self.assertEqual(len(self.sessions), 1)
        self.assertEqual(self.status(message_id), [("queued", None, 0, _T0)])
        self.clock.advance(RECORD_RETRY - 1)
        self.assertEqual((len(self.sessions), scheduler.in_flight), (1, 1))
        self.clock.advance(1)
        self.assertEqual(self.status(message_id), [("sent", "250 2.0.0 ok", 1, None)])
        self.assertEqual((len(self.sessions), scheduler.in_flight), (1, 0))
        self.flushLoggedErrors()

    def test_unrecorded_result_abandoned_at_stop(self) -> None:
        """At stop, a result still unrecorded is given up (logged): the recipient stays
        queued and is tried again after the restart; no retry timer is left behind."""
        message_id = self.accept("a@one.example")
        self.store.record = lambda result, dsn=None: fail(  # type: ignore[method-assign]
            StoreUnavailableError("cannot write to queue: database or disk is full")
        )
        scheduler = self.scheduler()
        scheduler.start()
        self.successResultOf(scheduler.stop(10))
        self.assertEqual(scheduler.in_flight, 0)
        self.assertEqual(self.status(message_id), [("queued", None, 0, _T0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_per_domain_transactions(self) -> None:
        """A message to two domains makes one transaction per domain, each with only its
        own recipients."""
        message_id = self.accept("a@one.example", "b@two.example", "c@one.example")
        self.scheduler().start()
        sent = sorted(s.sent[0].recipients for s in self.sessions)
        self.assertEqual(sent, [("a@one.example", "c@one.example"), ("b@two.example",)])
        self.assertEqual([s for s, *_ in self.status(message_id)], ["sent"] * 3)

    def test_temporary_failure_retried_on_schedule(self) -> None:
        """A 4xx defers the recipient to exactly now + 60 s (then + 300 s), and the
        scheduler tries again at that time, not before."""
        message_id = self.accept("a@one.example")
        self.answer = all_reply(Reply(451, "4.7.1", "greylisted"))
        self.scheduler().start()
        self.assertEqual(
            self.status(message_id), [("deferred", "451 4.7.1 greylisted", 1, _T0 + 60)]
        )
        self.clock.advance(59)
        self.assertEqual(len(self.sessions), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.sessions), 2)
        self.assertEqual(
            self.status(message_id), [("deferred", "451 4.7.1 greylisted", 2, _T0 + 360)]
        )
        self.answer = all_reply(_OK)
        self.clock.advance(300)
        self.assertEqual(self.status(message_id), [("sent", "250 2.0.0 ok", 3, None)])

    def test_permanent_failure_bounces_with_one_dsn(self) -> None:
        """5xx bounces at once; once the message is final, one DSN to the sender is queued
        with a null reverse-path, and delivered in turn."""
        message_id = self.accept("a@one.example", "b@one.example")
        self.answer = lambda m: MessageResult(
            tuple(
                RecipientResult(r, Reply(550, "5.1.1", "no such user") if r[0] == "a" else _OK)
                for r in m.recipients
            )
        )
        self.scheduler().start()
        self.assertEqual([s for s, *_ in self.status(message_id)], ["bounced", "sent"])
        dsn = self.store.messages["DSN" + message_id]
        self.assertEqual((dsn.sender, dsn.recipients), ("", ("app@rail.example",)))
        self.assertIn(b"550 5.1.1 no such user", dsn.data)
        delivered = [m for s in self.sessions for m in s.sent if m.sender == ""]
        self.assertEqual(len(delivered), 1)

    def test_next_mx_after_refused_connection(self) -> None:
        """A refused connection to the first MX moves on to the next host."""
        self.routes["one.example"] = Route(
            hosts=(
                RouteHost("mx1.one.example", ("192.0.2.1",)),
                RouteHost("mx2.one.example", ("192.0.2.2",)),
            )
        )
        self.refuse.add("192.0.2.1")
        message_id = self.accept("a@one.example")
        self.scheduler().start()
        self.assertEqual(
            self.connects, [("192.0.2.1", "mx1.one.example"), ("192.0.2.2", "mx2.one.example")]
        )
        self.assertEqual(self.status(message_id)[0][0], "sent")

    def test_no_host_reachable_defers(self) -> None:
        """When every address refuses, the recipient is deferred with the last local reply."""
        self.refuse.add("192.0.2.1")
        message_id = self.accept("a@one.example")
        self.scheduler().start()
        self.assertEqual(
            self.status(message_id), [("deferred", "451 4.4.1 connection refused", 1, _T0 + 60)]
        )

    def test_null_mx_bounces(self) -> None:
        """A routing bounce (null MX) bounces every recipient of the domain at once."""
        self.routes["one.example"] = RouteError(
            Reply(556, "5.1.10", "recipient domain does not accept mail", remote=False)
        )
        message_id = self.accept("a@one.example", "b@one.example")
        self.scheduler().start()
        self.assertEqual([s for s, *_ in self.status(message_id)], ["bounced", "bounced"])
        self.assertIn("DSN" + message_id, self.store.messages)
        self.assertNotIn("mx.one.example", [host for _, host in self.connects])

    def test_lost_after_data_is_retried(self) -> None:
        """A connection lost after the final dot defers the job (it is retried)."""
        self.answer = lambda m: SessionError(
            Reply(451, "4.4.2", "connection lost", remote=False), after_data=True
        )
        message_id = self.accept("a@one.example")
        self.scheduler().start()
        self.assertEqual(self.status(message_id)[0][:2], ("deferred", "451 4.4.2 connection lost"))

    def test_expiry_bounces(self) -> None:
        """A deferral after max_age bounces with 5.4.7, quoting the last reply."""
        message_id = self.accept("a@one.example", received_at=_T0 - 3600)
        self.answer = all_reply(Reply(421, "4.3.2", "busy"))
        self.scheduler().start()
        ((state, reply, _, _),) = self.status(message_id)
        self.assertEqual(state, "bounced")
        self.assertEqual(reply, "554 5.4.7 delivery time expired; last attempt: 421 4.3.2 busy")

    def test_per_destination_limit(self) -> None:
        """No more than per_destination connections to one domain at once."""
        self.answer = lambda m: None  # every transaction hangs
        for _ in range(6):
            self.accept("a@one.example")
        self.accept("b@two.example")
        scheduler = self.scheduler()
        scheduler.start()
        by_host = [c[1] for c in self.connects]
        self.assertEqual(sorted(by_host), ["mx.one.example", "mx.one.example", "mx.two.example"])
        self.assertEqual(scheduler.connections, 3)
        stopped = scheduler.stop(5)
        self.assertNoResult(stopped)
        self.clock.advance(5)
        self.successResultOf(stopped)

    def test_stop_leaves_cut_jobs_untouched(self) -> None:
        """Stopping waits up to the grace period, then cuts the connection; the job stays
        queued, never tried, and nothing is left scheduled."""
        self.answer = lambda m: None
        message_id = self.accept("a@one.example")
        scheduler = self.scheduler()
        scheduler.start()
        stopped = scheduler.stop(5)
        self.clock.advance(4.9)
        self.assertNoResult(stopped)
        self.clock.advance(0.1)
        self.successResultOf(stopped)
        self.assertTrue(self.sessions[0].aborted)
        self.assertEqual(self.status(message_id), [("queued", None, 0, _T0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_lets_a_running_transaction_finish(self) -> None:
        """A transaction that completes within the grace period is recorded."""
        self.answer = lambda m: None
        message_id = self.accept("a@one.example")
        scheduler = self.scheduler()
        scheduler.start()
        stopped = scheduler.stop(5)
        self.sessions[0].pending.callback(all_reply(_OK)(self.sessions[0].sent[0]))
        self.successResultOf(stopped)
        self.assertEqual(self.status(message_id)[0][0], "sent")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_new_mail_wakes_the_scheduler(self) -> None:
        """Mail accepted while idle goes out at once, not at the next poll."""
        scheduler = self.scheduler()
        scheduler.start()
        message_id = self.accept("a@one.example")
        self.assertEqual(self.status(message_id)[0][0], "sent")

    def test_claims_a_bounded_window(self) -> None:
        """With a small backlog, only that many jobs are claimed at once; the rest wait on
        disk and are claimed as the first ones finish."""
        self.limits = DeliveryLimits(
            concurrency=2, per_destination=2, messages_per_connection=1, backlog=4, claim_batch=4
        )
        self.answer = lambda m: None
        ids = [self.accept(f"a{i}@one.example") for i in range(10)]
        scheduler = self.scheduler()
        scheduler.start()
        self.assertEqual(scheduler.in_flight, 4)
        for session in list(self.sessions):
            session.pending.callback(all_reply(_OK)(session.sent[0]))
        self.assertLessEqual(scheduler.in_flight, 4)
        while any(s.pending and not s.pending.called for s in self.sessions):
            for session in list(self.sessions):
                if session.pending and not session.pending.called:
                    session.pending.callback(all_reply(_OK)(session.sent[0]))
        self.assertEqual({self.status(i)[0][0] for i in ids}, {"sent"})

    def test_prepare_raising_quarantines(self) -> None:
        """A message whose preparation (e.g. signing) raises is quarantined: ``failed``
        with the reason, reported once, no DSN, never prepared again however long the
        clock runs; the other jobs on the same connection go out."""
        bad = self.accept("a@one.example", sender="app@rail.example")
        good = self.accept("b@one.example")
        scheduler = self.scheduler()
        reported: list[Quarantined] = []
        self.store.observe_quarantined(reported.append)
        prepared: list[str] = []

        def prepare(job: DeliveryJob) -> bytes:
            prepared.append(job.message_id)
            if job.message_id == bad:
                raise RuntimeError("boom")
            return b"x"

        scheduler._prepare = inline(prepare)  # type: ignore[method-assign]
        scheduler.start()
        reason = "quarantined: preparing the message failed (RuntimeError)"
        self.assertEqual(self.status(bad), [("failed", reason, 0, None)])
        self.assertEqual(self.status(good)[0][0], "sent")
        self.assertEqual(len(self.sessions), 1)
        self.assertEqual(
            reported,
            [Quarantined("outbound", bad, "error", "preparing the message failed (RuntimeError)")],
        )
        self.assertEqual(scheduler.in_flight, 0)
        for _ in range(10):
            self.clock.advance(3600)
        self.assertEqual(prepared, [bad, good])
        self.assertEqual(list(self.store.messages), [bad, good])  # no DSN

    def test_prepare_over_budget_quarantines(self) -> None:
        """A preparation still running when its budget passes (on the Clock) quarantines
        the message at once, with its other-domain jobs; the connection goes on with the
        next job, and the late answer of the stuck thread is dropped."""
        threads: list[tuple[Deferred[bytes], Callable[[], bytes]]] = []

        def run_in_thread(work: Callable[[], bytes]) -> Deferred[bytes]:
            threads.append((Deferred(), work))
            return threads[-1][0]

        preparer = Preparer(
            lambda job: job.data,
            run_in_thread=run_in_thread,
            clock=self.clock,
            budget=30,
            threads=2,
        )
        self.limits = DeliveryLimits(concurrency=1, per_destination=1, messages_per_connection=5)
        slow = self.accept("a@one.example", "b@two.example")
        good = self.accept("c@one.example")
        scheduler = self.scheduler()
        scheduler._prepare = preparer  # type: ignore[method-assign]
        scheduler.start()
        self.assertEqual(len(threads), 1)
        self.clock.advance(29)
        self.assertEqual(self.status(slow)[0][0], "queued")
        self.clock.advance(1)
        reason = "quarantined: preparing the message took over 30s"
        self.assertEqual(
            self.status(slow), [("failed", reason, 0, None), ("failed", reason, 0, None)]
        )
        self.assertEqual(len(threads), 2)  # the next job's prepare started at once
        threads[1][0].callback(threads[1][1]())
        self.assertEqual(self.status(good)[0][0], "sent")
        threads[0][0].callback(b"too late")
        self.assertEqual((preparer.running, preparer.overrunning), (0, 0))
        self.assertEqual(len(self.sessions), 1)
        self.assertEqual([s.sent[0].data for s in self.sessions], [self.store.messages[good].data])
        self.assertEqual(scheduler.in_flight, 0)

    def test_stop_abandons_a_running_prepare(self) -> None:
        """Stopping while a preparation runs: after the grace period it is cancelled and
        its message stays queued, untouched (not quarantined)."""
        waiting: Deferred[bytes] = Deferred()
        message_id = self.accept("a@one.example")
        scheduler = self.scheduler()
        scheduler._prepare = lambda job: waiting  # type: ignore[method-assign, assignment]
        scheduler.start()
        stopped = scheduler.stop(10)
        self.assertNoResult(stopped)
        self.clock.advance(10)
        self.successResultOf(stopped)
        self.assertEqual(self.status(message_id), [("queued", None, 0, _T0)])
        self.assertEqual(scheduler.in_flight, 0)
