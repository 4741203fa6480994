"""SIGHUP reload: what a re-read configuration changes in a running process, and what a
bad one leaves alone. Real files: config, CA, server certificates, DKIM keys."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml
from twisted.internet.defer import Deferred
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
            connect=lambda a, h: None,  # type: ignore[arg-type,return-value]
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
            self.assertTrue(self.reloader.reload())
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
        self.assertTrue(self.reloader.reload())
        keys = self.keys.signing_keys("rail.test", _NOW + 6)
        assert keys is not None
        self.assertEqual(keys.ed25519_selector, generation.ed25519_selector)

    def test_bad_config_changes_nothing(self) -> None:
        """An invalid file is refused with its problems logged; nothing is applied."""
        self.document["delivery"] = {"retry": [], "concurrency": 9}
        self._write()
        with capturedLogs() as events:
            self.assertFalse(self.reloader.reload())
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
        self.assertTrue(self.reloader.reload())
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
            self.assertTrue(self.reloader.reload())
        warnings = [e.get("setting") for e in events if e.get("setting")]
        self.assertEqual(warnings, ["delivery.prepare_timeout", "delivery.prepare_threads"])

    def test_log_format_needs_a_restart(self) -> None:
        """Changing logging.format is reported as needing a restart (twistd's log
        observer is chosen once, at start)."""
        self.document["logging"] = {"format": "json"}
        self._write()
        with capturedLogs() as events:
            self.assertTrue(self.reloader.reload())
        self.assertEqual([e.get("setting") for e in events if e.get("setting")], ["logging"])

    def test_dkim_step_in_a_thread_then_hooks(self) -> None:
        """With ``in_thread``, nothing of the DKIM step runs on the calling (reactor)
        thread: a new local domain has no keys until the thread's work has run; the
        hooks run after it, so the DNS zones see the new keys."""
        pending: list[tuple[Deferred[list[str]], Callable[[], list[str]]]] = []

        def in_thread(work: Callable[[], list[str]]) -> Deferred[list[str]]:
            pending.append((Deferred(), work))
            return pending[-1][0]

        seen: list[bool] = []
        self.reloader.in_thread = in_thread
        self.reloader.hooks = [
            lambda c: seen.append(self.keys.signing_keys("new.example", _NOW + 20) is not None)
        ]
        self.document["local_domains"] = ["rail.test", "new.example"]
        self._write()
        self.assertTrue(self.reloader.reload())
        self.assertIsNone(self.keys.signing_keys("new.example", _NOW + 20))
        self.assertEqual(seen, [])
        [(done, work)] = pending
        with capturedLogs() as events:
            done.callback(work())
        self.assertEqual(seen, [True])
        self.assertIn("new.example", [e.get("domains") for e in events])
