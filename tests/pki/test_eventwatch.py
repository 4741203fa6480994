"""EventWatch: clients' event settings read from the registry on a clock and on demand,
the registry work in a thread, the result swapped in on the reactor thread."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscription, Subscriptions
from rail.pki.clientevents import ClientEvents, EventSettingsError
from rail.pki.eventwatch import EventWatch
from rail.pki.registry import CertificateRecord, Registry, UnknownClientError, registry_path
from tests.pki.helpers import NOW, issue_client, make_ca
from tests.pki.test_revocationwatch import _Thread


class EventWatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data_dir = Path(self.mktemp())
        self.data_dir.mkdir()
        self.path = registry_path(self.data_dir)
        self.clock = Clock()
        self.thread = _Thread()
        self.installed: list[Subscriptions] = []
        self.watch = EventWatch(
            self.path,
            self.installed.append,
            clock=self.clock,
            in_thread=self.thread,
            now=lambda: NOW,
            allow_http_loopback=lambda: False,
        )

    def tearDown(self) -> None:
        stopped = self.watch.stopService()
        self.thread.run()
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def client(self, name: str = "myapp") -> None:
        certificate, _ = issue_client(make_ca(), name=name)
        with Registry.open(self.path) as registry:
            registry.add(CertificateRecord.from_certificate(certificate, NOW))

    def other_process_sets(self, name: str, *types: str, url: str | None = None) -> None:
        """What ``rail clients events`` does, in its own process."""
        with Registry.open(self.path) as registry:
            registry.set_events(name, types, url, NOW, allow_http_loopback=False)

    def test_no_registry(self) -> None:
        """Without a registry there is nobody to subscribe, and none is created."""
        self.watch.load()
        self.assertEqual((self.watch.current, self.installed), (NO_SUBSCRIPTIONS, []))
        self.assertFalse(self.path.exists())

    def test_load_at_start(self) -> None:
        """load() reads synchronously, before anything runs, and installs the value."""
        self.client()
        self.other_process_sets("myapp", "message.bounced")
        self.watch.load()
        self.assertEqual(
            self.installed,
            [Subscriptions({"myapp": Subscription(frozenset({"message.bounced"}))})],
        )

    def test_follows_other_processes(self) -> None:
        """A change written by another process is installed at the next tick, off the
        reactor thread; an unchanged registry installs nothing again."""
        self.client()
        self.watch.load()
        self.watch.startService()
        self.other_process_sets("myapp", "all", url="https://events.example/in")
        self.clock.advance(1.0)
        self.assertEqual(self.installed, [])  # the read waits for its thread
        self.thread.run()
        (installed,) = self.installed
        self.assertEqual(installed.by_client["myapp"].url, "https://events.example/in")
        self.clock.advance(1.0)
        self.thread.run()
        self.assertEqual(len(self.installed), 1)
        self.other_process_sets("myapp")
        self.clock.advance(1.0)
        self.thread.run()
        self.assertEqual(self.installed[-1], NO_SUBSCRIPTIONS)

    def test_change_answers_once_in_use(self) -> None:
        """change() writes in a thread and fires only once the new value is installed."""
        self.client()
        self.watch.load()
        changed = self.watch.change("myapp", ["message.delivered"], None)
        self.assertNoResult(changed)
        self.thread.run()
        self.assertEqual(
            self.successResultOf(changed), ClientEvents("myapp", ("message.delivered",), None)
        )
        self.assertTrue(self.watch.current.wants("myapp", "message.delivered"))

    def test_change_refused(self) -> None:
        """An unknown client or type fails the change, naming the API's fields, and
        installs nothing."""
        self.client()
        self.watch.load()
        unknown = self.watch.change("ghost", ["all"], None)
        bad = self.watch.change("myapp", ["message.openned"], None)
        self.thread.run()
        self.failureResultOf(unknown, UnknownClientError)
        failure = self.failureResultOf(bad, EventSettingsError)
        self.assertTrue(str(failure.value).startswith("types: unknown event type"))
        self.assertEqual(self.installed, [])

    def test_settings(self) -> None:
        """settings() reads one client's, in a thread."""
        self.client()
        self.other_process_sets("myapp", "inbound.failed")
        read = self.watch.settings("myapp")
        self.thread.run()
        self.assertEqual(self.successResultOf(read).types, ("inbound.failed",))

    def test_unreadable_registry_keeps_loaded(self) -> None:
        """A registry that cannot be read keeps the loaded subscriptions, with a warning."""
        self.client()
        self.other_process_sets("myapp", "all")
        self.watch.load()
        self.watch.startService()
        self.path.rename(self.path.with_name("moved"))
        self.path.mkdir()  # not a database any more
        self.addCleanup(self.path.rmdir)
        with capturedLogs() as events:
            self.clock.advance(1.0)
            self.thread.run()
        self.assertTrue(self.watch.current.wants("myapp", "message.bounced"))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)

    def test_reads_only_when_the_files_change(self) -> None:
        """Each tick costs a stat; the registry is opened only when it or its log changed
        since the last read, or when asked to (SIGHUP, an admin's change)."""
        self.client()
        self.watch.load()
        self.watch.startService()
        opened = []
        real_open = Registry.open

        def counting(path: Path) -> Registry:
            opened.append(path)
            return real_open(path)

        self.patch(Registry, "open", counting)
        for _ in range(3):
            self.clock.advance(1.0)
            self.thread.run()
        self.assertEqual(opened, [])
        self.patch(Registry, "open", real_open)
        self.other_process_sets("myapp", "message.delivered")
        self.patch(Registry, "open", counting)
        self.clock.advance(1.0)
        self.thread.run()
        self.assertEqual(len(opened), 1)
        self.assertTrue(self.watch.current.wants("myapp", "message.delivered"))
        self.watch.refresh()
        self.thread.run()
        self.assertEqual(len(opened), 2)

    def test_unreadable_at_start(self) -> None:
        """A registry that cannot be read at start-up does not stop the start: logged,
        nothing installed, and the first look reads it."""
        self.client()
        self.other_process_sets("myapp", "all")
        self.path.rename(self.path.with_name("moved"))
        self.path.mkdir()
        with capturedLogs() as events:
            self.watch.load()
        self.assertEqual(self.installed, [])
        self.assertEqual([e["log_level"] for e in events], [LogLevel.error])
        self.path.rmdir()
        self.path.with_name("moved").rename(self.path)
        self.watch.startService()
        self.clock.advance(1.0)
        self.thread.run()
        self.assertTrue(self.watch.current.wants("myapp", "inbound.failed"))
