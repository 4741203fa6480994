"""What delivery hands the store for events: where each attempt went, and which bounce is
an expiry. The store turns these into event rows (tests/store/test_emit.py)."""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.decide import RetryPolicy, job_result, with_peer
from rail.delivery.log import NO_PEER, Peer
from rail.delivery.outcome import MessageResult, RecipientResult, Reply
from rail.delivery.preparing import inline
from rail.delivery.resolve import Route, RouteError, RouteHost
from rail.delivery.scheduler import DeliveryLimits, Scheduler
from rail.store.model import DeliveryJob, DueRecipient, JobResult, NewMessage
from rail.testing import MemoryStore
from tests.delivery.test_scheduler import FakeSession, all_reply

_T0 = 1_800_000_000.0


class _Mid(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def _job(attempts: int = 0) -> DeliveryJob:
    return DeliveryJob(
        message_id="M",
        domain="example.net",
        client="app",
        sender="app@rail.example",
        received_at=_T0,
        smtputf8=False,
        eight_bit=False,
        recipients=(DueRecipient(0, "a@example.net", attempts, None),),
        data=b"Subject: x\r\n\r\nx\r\n",
    )


class DecideTests(SynchronousTestCase):
    def test_expiry_keeps_the_last_reply(self) -> None:
        """A deferral at max_age becomes a bounce whose update keeps the attempt's own
        reply in ``expired_after``; an ordinary bounce or deferral has none."""
        policy = RetryPolicy(schedule=(60.0,), max_age=100.0)
        busy = MessageResult((RecipientResult("a@example.net", Reply(421, "4.3.2", "busy")),))
        (expired,) = job_result(
            _job(), busy, now=_T0 + 100, policy=policy, rng=_Mid(), remote_mta="mx"
        ).updates
        self.assertEqual((expired.status, expired.expired_after), ("bounced", "421 4.3.2 busy"))
        (deferred,) = job_result(
            _job(), busy, now=_T0 + 1, policy=policy, rng=_Mid(), remote_mta="mx"
        ).updates
        self.assertEqual((deferred.status, deferred.expired_after), ("deferred", None))
        gone = MessageResult((RecipientResult("a@example.net", Reply(550, "5.1.1", "gone")),))
        (bounced,) = job_result(
            _job(), gone, now=_T0 + 1, policy=policy, rng=_Mid(), remote_mta="mx"
        ).updates
        self.assertEqual((bounced.status, bounced.expired_after), ("bounced", None))

    def test_with_peer(self) -> None:
        """The peer's MX, address and TLS version go with the result; plaintext ("none")
        and an unreached host are None."""
        result = JobResult("M", _T0, ())
        self.assertEqual(
            with_peer(result, Peer("mx.example.net", "192.0.2.1", "TLSv1.3")),
            JobResult("M", _T0, (), mx="mx.example.net", address="192.0.2.1", tls="TLSv1.3"),
        )
        plain = with_peer(result, Peer("mx.example.net", "192.0.2.1", "none"))
        self.assertIsNone(plain.tls)
        self.assertEqual(with_peer(result, NO_PEER), result)


class _Recording(MemoryStore):
    """MemoryStore that keeps every result it was asked to record."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.results: list[JobResult] = []

    def record(self, result: JobResult, dsn: object = None) -> Deferred[NewMessage | None]:
        self.results.append(result)
        return super().record(result, dsn)  # type: ignore[arg-type]


class SchedulerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0)
        self.store = _Recording(self.clock)
        self.sessions: list[FakeSession] = []
        self.routes: dict[str, Route | RouteError] = {}

    def _deliver(self, tls: bool) -> list[JobResult]:
        def connect(address: str, host: str, required: object = None) -> Deferred[FakeSession]:
            session = FakeSession(all_reply(Reply(250, "2.0.0", "ok")))
            session.tls_active = tls
            self.sessions.append(session)
            return succeed(session)

        def route(domain: str) -> Deferred[Route]:
            found = self.routes.get(
                domain, Route(hosts=(RouteHost("mx.one.example", ("192.0.2.9",)),))
            )
            return fail(found) if isinstance(found, RouteError) else succeed(found)

        scheduler = Scheduler(
            self.store,
            self.clock,
            route=route,
            connect=connect,  # type: ignore[arg-type]
            prepare=inline(lambda job: job.data),
            dsn=lambda report: None,
            policy=RetryPolicy(schedule=(60.0,), max_age=3600.0),
            limits=DeliveryLimits(),
            rng=_Mid(),
        )
        self.store.accept(
            NewMessage(
                id="M1",
                client="app",
                sender="app@rail.example",
                recipients=("a@one.example", "b@gone.example"),
                data=b"Subject: x\r\n\r\nx\r\n",
                channel="api",
                received_at=_T0,
            )
        )
        scheduler.start()
        self.successResultOf(scheduler.stop(1))
        return sorted(self.store.results, key=lambda r: r.updates[0].idx)

    def test_results_say_where_they_went(self) -> None:
        """Each recorded result carries the MX host, the address connected to and the
        TLS version; a domain with no route carries none of them."""
        self.routes["gone.example"] = RouteError(
            Reply(550, "5.1.2", "domain gone.example does not exist", remote=False)
        )
        sent, unrouted = self._deliver(tls=True)
        self.assertEqual(
            (sent.mx, sent.address, sent.tls), ("mx.one.example", "192.0.2.9", "TLSv1.3")
        )
        self.assertEqual((unrouted.mx, unrouted.address, unrouted.tls), (None, None, None))

    def test_plaintext(self) -> None:
        """A plaintext session records no TLS version."""
        sent, _ = self._deliver(tls=False)
        self.assertEqual((sent.mx, sent.tls), ("mx.one.example", None))
