"""Sandboxed clients: signed and recorded as sent, never routed nor connected."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.decide import RetryPolicy
from rail.delivery.preparing import inline
from rail.delivery.sandbox import SANDBOX_REPLY, sandbox_result
from rail.delivery.scheduler import Scheduler
from rail.events.model import Event
from rail.store.model import DeliveryJob, DueRecipient, NewMessage
from tests.delivery import test_scheduler as base


class SandboxResultTests(SynchronousTestCase):
    def test_result_and_events(self) -> None:
        """Every recipient is sent with the sandbox reply, each with a message.delivered
        event carrying sandbox true, its attempt number and the delay since acceptance."""
        job = DeliveryJob(
            message_id="M1",
            domain="x.example",
            client="app",
            sender="a@rail.example",
            received_at=base._T0,
            smtputf8=False,
            eight_bit=False,
            recipients=(
                DueRecipient(0, "a@x.example", 0, None),
                DueRecipient(2, "b@x.example", 3, "451"),
            ),
            data=b"",
        )
        result = sandbox_result(job, base._T0 + 5)
        self.assertEqual(
            [(u.idx, u.status, u.reply) for u in result.updates],
            [(0, "sent", SANDBOX_REPLY), (2, "sent", SANDBOX_REPLY)],
        )
        self.assertEqual(
            result.events[1],
            Event(
                type="message.delivered",
                client="app",
                message_id="M1",
                recipient="b@x.example",
                details={
                    "mx": None,
                    "address": None,
                    "tls": None,
                    "reply": SANDBOX_REPLY,
                    "attempt": 4,
                    "delay": 5.0,
                },
                sandbox=True,
            ),
        )


class SandboxSchedulerTests(SynchronousTestCase):
    # The scheduler tests' fakes (store, routes, sessions), not their tests.
    setUp = base.SchedulerTests.setUp
    _route = base.SchedulerTests._route
    _connect = base.SchedulerTests._connect
    accept = base.SchedulerTests.accept
    status = base.SchedulerTests.status

    def sandbox_scheduler(self, prepare: object = None) -> Scheduler:
        self.prepared: list[str] = []

        def sign(job: DeliveryJob) -> bytes:
            self.prepared.append(job.message_id)
            return b"DKIM-Signature: x\r\n" + job.data

        return Scheduler(
            self.store,
            self.clock,
            route=self._route,
            connect=self._connect,  # type: ignore[arg-type]
            prepare=prepare or inline(sign),  # type: ignore[arg-type]
            dsn=base._dsn,
            policy=RetryPolicy(schedule=(60.0, 300.0), max_age=3600.0),
            limits=self.limits,
            rng=base._MidRandom(),
            sandboxed=lambda client: client == "app",
        )

    def test_signed_recorded_not_connected(self) -> None:
        """A sandboxed client's mail is signed, its recipients become sent with the
        sandbox reply and get sandbox events, and no route nor connection is asked for;
        another client's mail is delivered as usual."""
        message_id = self.accept("a@one.example", "b@two.example")
        self.store.accept(
            NewMessage(
                id="REAL",
                client="real",
                sender="r@rail.example",
                recipients=("c@one.example",),
                data=b"Subject: real\r\n\r\nbody\r\n",
                channel="api",
                received_at=base._T0,
            )
        )
        scheduler = self.sandbox_scheduler()
        scheduler.start()
        self.assertEqual(self.status(message_id), [("sent", SANDBOX_REPLY, 1, None)] * 2)
        self.assertEqual(self.prepared.count(message_id), 2)  # one job per domain
        self.assertEqual(self.connects, [("192.0.2.1", "mx.one.example")])
        self.assertEqual([m.sender for s in self.sessions for m in s.sent], ["r@rail.example"])
        events = self.store.recorded_events
        self.assertEqual(sorted(e.recipient for e in events), ["a@one.example", "b@two.example"])
        self.assertTrue(all(e.sandbox and e.type == "message.delivered" for e in events))
        self.successResultOf(scheduler.stop(10))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_signing_failure_quarantines(self) -> None:
        """A message that cannot be signed is quarantined as for real delivery, with no
        event."""
        message_id = self.accept("a@one.example")

        def broken(job: DeliveryJob) -> bytes:
            raise ValueError("no key")

        scheduler = self.sandbox_scheduler(inline(broken))
        scheduler.start()
        [(status, reply, _, _)] = self.status(message_id)
        self.assertEqual(
            (status, reply), ("failed", "quarantined: preparing the message failed (ValueError)")
        )
        self.assertEqual(self.store.recorded_events, [])
        self.successResultOf(scheduler.stop(10))

    def test_stop_cuts_a_signing_in_flight(self) -> None:
        """Stopping while a sandboxed message is being signed waits the grace period, then
        cancels it and leaves the recipient queued, untouched."""
        message_id = self.accept("a@one.example")
        signing: Deferred[bytes] = Deferred()
        scheduler = self.sandbox_scheduler(lambda job: signing)
        scheduler.start()
        stopped = scheduler.stop(10)
        self.assertNoResult(stopped)
        self.clock.advance(10)
        self.successResultOf(stopped)
        self.assertEqual(self.status(message_id), [("queued", None, 0, base._T0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
