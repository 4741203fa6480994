"""SIGHUP reload: what a re-read configuration changes in a running process, and what a
bad one leaves alone. Real files: config, CA, server certificates, DKIM keys."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import yaml
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.config import load_config
from rail.delivery.decide import RetryPolicy
from rail.delivery.preparing import inline
from rail.delivery.scheduler import DeliveryLimits, Scheduler
from rail.dkim.keys import KeyStore
from rail.pki.tls import ClientAuth, ServerTLS
from rail.reload import Reloader
from rail.startup import prepare_pki
from rail.testing import MemoryStore
from tests.support.threads import FakeThreads

_NOW = 1_800_000_000.0


class ReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.path = self.directory / "rail.yaml"
        self.document = {
            "hostname": "rail.test",
            "data_dir": "data",
            "local_domains": ["rail.test"],
            "tls": {"self_signed": True},
            "delivery": {"retry": ["1m"], "concurrency": 5},
        }
        self._write()
        config = load_config(self.path)
        pki = prepare_pki(config, datetime.fromtimestamp(_NOW, UTC))
        self.tls = ServerTLS(pki.server, ClientAuth(pki.ca.certificate, pki.revocations, False))
        self.keys = KeyStore.open(config.data_dir / "dkim")
        self.keys.ensure(["rail.test"], _NOW)
        clock = Clock()
        self.scheduler = Scheduler(
            MemoryStore(clock),
            clock,
            route=lambda d: None,  # type: ignore[arg-type,return-value]
            connect=lambda a, h, t: None,  # type: ignore[arg-type,return-value]
            prepare=inline(lambda job: job.data),
            dsn=lambda report: None,
            policy=RetryPolicy((60.0,), 3600.0),
            limits=DeliveryLimits(concurrency=5),
            rng=random.Random(1),
        )
        self.reloader = Reloader(
            config_path=self.path,
            config=config,
            ca=pki.ca,
            tls=[self.tls],
            keys=self.keys,
            scheduler=self.scheduler,
            dkim_domains=lambda c: sorted({*c.local_domains, c.hostname}),
            now=lambda: _NOW + 10,
        )

    def reload(self) -> Deferred[bool]:
        return self.reloader.reload()

    def _write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.document))

    def test_applies_delivery_settings_and_new_domains(self) -> None:
        """The retry schedule and limits change at once; a new local domain gets DKIM keys;
        a changed listener is only reported as needing a restart."""
        self.document["delivery"] = {"retry": ["2m", "10m"], "concurrency": 7, "max_age": "1d"}
        self.document["local_domains"] = ["rail.test", "new.example"]
        self.document["listen"] = {"https": "tcp:9443"}
        self._write()
        with capturedLogs() as events:
            self.assertTrue(self.successResultOf(self.reload()))
        self.assertEqual(self.scheduler._policy, RetryPolicy((120.0, 600.0), 86400.0))
        self.assertEqual(self.scheduler._limits.concurrency, 7)
        self.assertIsNotNone(self.keys.signing_keys("new.example", _NOW + 20))
        warnings = [e.get("setting") for e in events if e.get("setting")]
        self.assertEqual(warnings, ["listen"])

    def test_picks_up_a_rotation(self) -> None:
        """A generation added by ``rail dkim rotate`` (another KeyStore on the same files)
        signs mail received after the reload."""
        other = KeyStore.open(self.directory / "data" / "dkim")
        generation = other.rotate("rail.test", _NOW + 5)
        self.assertTrue(self.successResultOf(self.reload()))
        keys = self.keys.signing_keys("rail.test", _NOW + 6)
        assert keys is not None
        self.assertEqual(keys.ed25519_selector, generation.ed25519_selector)

    def test_bad_config_changes_nothing(self) -> None:
        """An invalid file is refused with its problems logged; nothing is applied."""
        self.document["delivery"] = {"retry": [], "concurrency": 9}
        self._write()
        with capturedLogs() as events:
            self.assertFalse(self.successResultOf(self.reload()))
        self.assertEqual(self.scheduler._limits.concurrency, 5)
        problems = [str(e.get("problem")) for e in events if e.get("problem")]
        self.assertEqual(
            problems, ["delivery.retry: expected at least one item, got an empty list"]
        )

    def test_new_server_certificate(self) -> None:
        """A new self-signed server certificate on disk is loaded into the TLS context
        that new connections use."""
        before = self.tls.getContext()
        for name in ("server.crt", "server.key"):
            (self.directory / "data" / "tls" / name).unlink()
        self.assertTrue(self.successResultOf(self.reload()))
        self.assertIsNot(self.tls.getContext(), before)

    def test_prepare_settings_need_a_restart(self) -> None:
        """Changing delivery.prepare_timeout or prepare_threads is reported as needing a
        restart (the signing pool and its budget are built at start)."""
        self.document["delivery"] = {
            "retry": ["1m"],
            "concurrency": 5,
            "prepare_timeout": "1m",
            "prepare_threads": 2,
        }
        self._write()
        with capturedLogs() as events:
            self.assertTrue(self.successResultOf(self.reload()))
        warnings = [e.get("setting") for e in events if e.get("setting")]
        self.assertEqual(warnings, ["delivery.prepare_timeout", "delivery.prepare_threads"])

    def test_log_format_needs_a_restart(self) -> None:
        """Changing logging.format is reported as needing a restart (twistd's log
        observer is chosen once, at start)."""
        self.document["logging"] = {"format": "json"}
        self._write()
        with capturedLogs() as events:
            self.assertTrue(self.successResultOf(self.reload()))
        self.assertEqual([e.get("setting") for e in events if e.get("setting")], ["logging"])

    def test_dkim_step_in_a_thread_then_hooks(self) -> None:
        """With ``in_thread``, nothing of the DKIM step runs on the calling (reactor)
        thread: a new local domain has no keys until the thread's work has run; the
        hooks run after it, so the DNS zones see the new keys."""
        threads = FakeThreads()
        seen: list[bool] = []
        self.reloader.in_thread = threads
        self.reloader.hooks = [
            lambda c: seen.append(self.keys.signing_keys("new.example", _NOW + 20) is not None)
        ]
        self.document["local_domains"] = ["rail.test", "new.example"]
        self._write()
        done = self.reloader.reload()
        self.assertIsNone(self.keys.signing_keys("new.example", _NOW + 20))
        self.assertEqual(seen, [])
        with capturedLogs() as events:
            threads.finish()
        self.assertEqual(seen, [True])
        self.assertIn("new.example", [e.get("domains") for e in events])
        self.assertTrue(self.successResultOf(done))


class ThreadedReloadTests(ReloadTests):
    """The same reloads with their file and key work in a (fake) thread; and what only
    a threaded reload can show: nothing is read or applied until the thread's work is
    done, and reloads do not overlap."""

    def setUp(self) -> None:
        super().setUp()
        self.threads = FakeThreads()
        self.reloader.in_thread = self.threads

    def reload(self) -> Deferred[bool]:
        """Reload, then let its thread work (and any queued after it) run."""
        done = self.reloader.reload()
        self.threads.finish_all()
        return done

    def test_nothing_on_the_calling_thread(self) -> None:
        """reload() only hands work to the thread: the configuration file is read, the
        server certificate renewed, its context built and the DKIM keys re-read there;
        until that work is done nothing has changed, and then everything has at once."""
        before = self.tls.getContext()
        for name in ("server.crt", "server.key"):
            (self.directory / "data" / "tls" / name).unlink()
        done = self.reloader.reload()
        # Written after reload() returned: only a read in the thread can see it.
        self.document["delivery"] = {"retry": ["2m"], "concurrency": 7}
        self.document["local_domains"] = ["rail.test", "new.example"]
        self._write()
        self.assertEqual(len(self.threads.queued), 1)
        self.assertFalse((self.directory / "data" / "tls" / "server.crt").exists())
        self.assertIs(self.tls.getContext(), before)
        self.assertEqual(self.scheduler._limits.concurrency, 5)
        self.assertIsNone(self.keys.signing_keys("new.example", _NOW + 20))
        self.assertNoResult(done)
        self.threads.finish()
        self.assertTrue(self.successResultOf(done))
        self.assertTrue((self.directory / "data" / "tls" / "server.crt").exists())
        self.assertIsNot(self.tls.getContext(), before)
        self.assertEqual(self.scheduler._limits.concurrency, 7)
        self.assertIsNotNone(self.keys.signing_keys("new.example", _NOW + 20))

    def test_unusable_tls_material_changes_nothing(self) -> None:
        """A configuration whose certificate cannot be loaded is refused (logged): the
        delivery settings, the TLS context, the DKIM keys (a rotation waiting on disk) and
        the running configuration stay as they were, and no hook runs."""
        before = self.tls.getContext()
        hooked: list[object] = []
        self.reloader.hooks = [hooked.append]
        other = KeyStore.open(self.directory / "data" / "dkim")
        other.rotate("rail.test", _NOW + 5)
        current = self.keys.signing_keys("rail.test", _NOW + 6)
        self.document["tls"] = {"cert_file": "missing.crt", "key_file": "missing.key"}
        self.document["delivery"] = {"retry": ["2m"], "concurrency": 7}
        self._write()
        config = self.reloader.config
        with capturedLogs() as events:
            self.assertFalse(self.successResultOf(self.reload()))
        self.assertIn("missing.crt", " ".join(str(e.get("error")) for e in events))
        self.assertIs(self.tls.getContext(), before)
        self.assertEqual(self.scheduler._limits.concurrency, 5)
        self.assertIs(self.keys.signing_keys("rail.test", _NOW + 6), current)
        self.assertIs(self.reloader.config, config)
        self.assertEqual(hooked, [])

    def test_one_reload_at_a_time(self) -> None:
        """A reload asked for while one runs waits for it, and then reads the files
        again; those asked for meanwhile share that second reload."""
        first = self.reloader.reload()
        self.document["delivery"] = {"retry": ["1m"], "concurrency": 8}
        self._write()
        second = self.reloader.reload()
        third = self.reloader.reload()
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()
        self.assertTrue(self.successResultOf(first))
        self.assertNoResult(second)
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()
        self.assertTrue(self.successResultOf(second))
        self.assertTrue(self.successResultOf(third))
        self.assertEqual(self.scheduler._limits.concurrency, 8)
        self.assertEqual(self.threads.queued, [])

    def test_done_when_the_hooks_are(self) -> None:
        """A hook's own work (the DNS zones, built in a thread) is waited for: the
        reload fires and logs "reload done" once it has; a hook that fails is logged and
        the reload is still done."""
        zones: Deferred[None] = Deferred()
        self.reloader.hooks = [lambda c: zones, lambda c: fail(ValueError("hook broke"))]
        with capturedLogs() as events:
            done = self.reload()
            self.assertNoResult(done)
            self.assertNotIn("reload done", [e.get("log_format") for e in events])
            zones.callback(None)
        self.assertTrue(self.successResultOf(done))
        self.assertIn("reload done", [e.get("log_format") for e in events])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
