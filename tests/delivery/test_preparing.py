"""The Preparer on a Clock, with a fake thread runner whose "threads" the test finishes."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.preparing import Preparer, PrepareTimeoutError
from rail.store.model import DeliveryJob, DueRecipient


def _job(n: int) -> DeliveryJob:
    return DeliveryJob(
        message_id=f"M{n}",
        domain="example.net",
        client="app",
        sender="app@rail.example",
        received_at=0.0,
        smtputf8=False,
        eight_bit=False,
        recipients=(DueRecipient(0, "a@example.net", 0, None),),
        data=f"Subject: {n}\r\n\r\nbody\r\n".encode(),
    )


class _Threads:
    """Each call is a pending "thread": the test runs it with :meth:`finish`."""

    def __init__(self) -> None:
        self.started: list[tuple[Deferred[bytes], Callable[[], bytes]]] = []

    def __call__(self, work: Callable[[], bytes]) -> Deferred[bytes]:
        done: Deferred[bytes] = Deferred()
        self.started.append((done, work))
        return done

    def finish(self, index: int) -> None:
        done, work = self.started[index]
        try:
            result = work()
        except Exception as error:
            done.errback(error)
        else:
            done.callback(result)


class PreparerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.threads = _Threads()

    def preparer(self, prepare: Callable[[DeliveryJob], bytes] | None = None) -> Preparer:
        return Preparer(
            prepare or (lambda job: b"signed " + job.data),
            run_in_thread=self.threads,
            clock=self.clock,
            budget=30.0,
            threads=2,
        )

    def test_result_from_the_thread(self) -> None:
        """The Deferred fires with what prepare returned in its thread; nothing is left
        on the clock."""
        preparer = self.preparer()
        result = preparer(_job(1))
        self.assertNoResult(result)
        self.threads.finish(0)
        self.assertEqual(self.successResultOf(result), b"signed " + _job(1).data)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(preparer.running, 0)

    def test_error_from_the_thread(self) -> None:
        """A prepare that raises fails the Deferred with that error."""

        def prepare(job: DeliveryJob) -> bytes:
            raise ValueError("bad header")

        result = self.preparer(prepare)(_job(1))
        self.threads.finish(0)
        self.failureResultOf(result, ValueError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_at_most_threads_at_once_in_order(self) -> None:
        """Only ``threads`` prepares run at once; the others wait, in order, and their
        budget starts only when their thread does."""
        preparer = self.preparer()
        results = [preparer(_job(n)) for n in range(4)]
        self.assertEqual(len(self.threads.started), 2)
        self.assertEqual(preparer.waiting, 2)
        self.clock.advance(20)
        self.threads.finish(0)
        self.assertEqual(len(self.threads.started), 3)
        self.clock.advance(20)  # 40 s after submission, 20 s after its start
        self.assertNoResult(results[2])
        self.threads.finish(2)
        self.assertEqual(self.successResultOf(results[2]), b"signed " + _job(2).data)
        self.failureResultOf(results[1], PrepareTimeoutError)  # started at 0: 40 s ago

    def test_overrun_fails_and_frees_the_slot(self) -> None:
        """When the budget passes the Deferred fails with PrepareTimeoutError at once and
        the next prepare starts; the stuck thread's late answer is dropped."""
        preparer = self.preparer()
        first, second, third = (preparer(_job(n)) for n in range(3))
        self.clock.advance(30)
        failure = self.failureResultOf(first, PrepareTimeoutError)
        self.assertEqual(str(failure.value), "preparing the message took over 30s")
        self.failureResultOf(second, PrepareTimeoutError)
        self.assertEqual(len(self.threads.started), 4 - 1)
        self.assertEqual((preparer.running, preparer.overrunning), (1, 2))
        self.threads.finish(0)  # the late answer of a stuck thread
        self.assertEqual((preparer.running, preparer.overrunning), (1, 1))
        self.threads.finish(2)
        self.assertEqual(self.successResultOf(third), b"signed " + _job(2).data)

    def test_overrunning_threads_are_bounded(self) -> None:
        """At most ``threads`` overrunning threads are tolerated beside the running ones:
        beyond that, new prepares wait until a stuck thread returns."""
        preparer = self.preparer()
        results = [preparer(_job(n)) for n in range(6)]
        self.clock.advance(30)  # jobs 0 and 1 overrun; 2 and 3 start
        self.assertEqual(len(self.threads.started), 4)
        self.clock.advance(30)  # 2 and 3 overrun too: 4 stuck threads, nothing starts
        self.assertEqual(len(self.threads.started), 4)
        self.assertEqual((preparer.running, preparer.overrunning, preparer.waiting), (0, 4, 2))
        self.threads.finish(1)
        self.assertEqual(len(self.threads.started), 5)
        self.threads.finish(4)
        self.assertEqual(self.successResultOf(results[4]), b"signed " + _job(4).data)
        for stuck in results[:4]:
            self.failureResultOf(stuck, PrepareTimeoutError)

    def test_cancel_waiting_and_running(self) -> None:
        """Cancelling a waiting prepare drops it; cancelling a running one abandons its
        thread (counted as overrunning until it returns) and cancels its timer."""
        preparer = self.preparer()
        running, _, waiting = (preparer(_job(n)) for n in range(3))
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(preparer.waiting, 0)
        running.cancel()
        self.failureResultOf(running, CancelledError)
        self.assertEqual((preparer.running, preparer.overrunning), (1, 1))
        self.threads.finish(0)
        self.threads.finish(1)
        self.assertEqual((preparer.running, preparer.overrunning), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_runner_failing_at_once_does_not_recurse(self) -> None:
        """When the runner starts failing synchronously (its threads stopped) while
        thousands of calls wait, each fails with its error as its turn comes, without
        deep recursion; nothing stays scheduled."""
        broken = False

        def run_in_thread(work: Callable[[], bytes]) -> Deferred[bytes]:
            if broken:
                return fail(RuntimeError("not running"))
            return self.threads(work)

        preparer = Preparer(
            lambda job: job.data,
            run_in_thread=run_in_thread,
            clock=self.clock,
            budget=30.0,
            threads=2,
        )
        results = [preparer(_job(n)) for n in range(5000)]
        self.assertEqual(preparer.waiting, 4998)
        broken = True
        self.threads.finish(0)
        self.threads.finish(1)
        for result in results[2:]:
            self.failureResultOf(result, RuntimeError)
        self.assertEqual((preparer.running, preparer.waiting), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])
