"""Rail's small worker threads: results and errors come back on the reactor thread,
nothing is lost at stop, and a stopped service answers with the default at once."""

from __future__ import annotations

import threading

from twisted.internet import reactor
from twisted.python.threadable import isInIOThread
from twisted.trial.unittest import TestCase

from rail.inbound.workers import Workers


class WorkersTests(TestCase):
    timeout = 10

    def started(self, threads: int = 2) -> Workers:
        workers = Workers(reactor, threads=threads, name="test-workers")
        workers.startService()
        self.addCleanup(lambda: workers.running and workers.stopService())
        return workers

    async def test_runs_in_a_worker_thread_and_answers_on_the_reactor(self) -> None:
        workers = self.started()
        seen: list[bool] = []

        def where() -> str:
            return threading.current_thread().name

        result = workers.run(where, default="")
        result.addCallback(lambda name: seen.append(isInIOThread()) or name)  # type: ignore[func-returns-value]
        name = await result
        self.assertTrue(name.startswith("test-workers-"))
        self.assertEqual(seen, [True])

    async def test_exception_is_a_failure(self) -> None:
        workers = self.started()

        def broken() -> int:
            raise ValueError("no")

        with self.assertRaises(ValueError):
            await workers.run(broken, default=0)

    async def test_many_calls_all_answered_in_order_of_arguments(self) -> None:
        workers = self.started(threads=3)
        results = [workers.run(lambda n: n * n, n, default=-1) for n in range(200)]
        self.assertEqual([await r for r in results], [n * n for n in range(200)])

    def test_stop_finishes_queued_work_then_ends_the_threads(self) -> None:
        workers = self.started(threads=2)
        gate = threading.Event()
        done: list[int] = []

        def slow(n: int) -> int:
            gate.wait(5)
            done.append(n)
            return n

        for n in range(5):
            workers.run(slow, n, default=-1)
        gate.set()
        workers.stopService()
        self.assertEqual(sorted(done), [0, 1, 2, 3, 4])
        self.assertFalse([t for t in threading.enumerate() if t.name.startswith("test-workers-")])

    def test_not_running_gives_the_default(self) -> None:
        workers = Workers(reactor, name="test-idle")
        result = workers.run(lambda: 1, default=7)
        self.assertEqual(self.successResultOf(result), 7)
