"""The renewal service on a Clock: when it orders, backs off, installs and stops."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.acme.challenges import PendingChallenges
from rail.acme.service import AcmeService, build_acme
from rail.acme.storage import save_acme_material
from rail.config import ConfigError
from rail.pki.tls import ServerMaterial
from tests.acme.helpers import DAY, NOW, leaf, material
from tests.integration.fixtures import make_config

_NAMES = ("mail.rail.test", "mta-sts.rail.test")
_RENEW_BEFORE = 30 * DAY


class _Orders:
    """A fake ``obtain``: each call returns a Deferred the test fires."""

    def __init__(self) -> None:
        self.pending: list[Deferred[ServerMaterial]] = []
        self.cancelled = 0

    def __call__(self) -> Deferred[ServerMaterial]:
        def cancel(_: object) -> None:
            self.cancelled += 1

        order: Deferred[ServerMaterial] = Deferred(cancel)
        self.pending.append(order)
        return order


class AcmeServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.orders = _Orders()
        self.installed: list[ServerMaterial] = []
        self.jitter = 0.0

    def service(self, current: object = None) -> AcmeService:
        service = AcmeService(
            clock=self.clock,
            obtain=self.orders,
            install=self.installed.append,
            names=_NAMES,
            renew_before=_RENEW_BEFORE,
            current=current,  # type: ignore[arg-type]
            rng=lambda: self.jitter,
        )
        service.startService()
        self.addCleanup(self.stopped, service)
        return service

    def stopped(self, service: AcmeService) -> None:
        if service.running:
            service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_orders_at_start_without_certificate(self) -> None:
        """With no ACME certificate an order starts as soon as the reactor runs, and the
        issued material is installed; the next check is a day later."""
        service = self.service()
        self.assertEqual(self.orders.pending, [])
        self.clock.advance(0)
        self.assertEqual(len(self.orders.pending), 1)
        self.assertIsNone(service.next_check)
        issued = material(_NAMES, not_after=NOW + 90 * DAY)
        self.orders.pending[0].callback(issued)
        self.assertEqual(self.installed, [issued])
        self.assertEqual(service.next_check, NOW + DAY)

    def test_valid_certificate_checked_daily_then_renewed(self) -> None:
        """A certificate outside its renewal window is left alone, looked at daily, and
        ordered again exactly when renew_before is reached."""
        current = leaf(_NAMES, not_after=NOW + 32 * DAY)
        service = self.service(current)
        self.clock.advance(0)
        self.assertEqual(self.orders.pending, [])
        self.assertEqual(service.next_check, NOW + DAY)
        self.clock.advance(DAY)
        self.assertEqual(self.orders.pending, [])
        self.assertEqual(service.next_check, NOW + 2 * DAY)
        self.clock.advance(DAY)
        self.assertEqual(len(self.orders.pending), 1)
        self.assertEqual(self.clock.seconds(), NOW + 2 * DAY)

    def test_missing_name_orders(self) -> None:
        """A certificate lacking one of the names (a new local domain) is replaced."""
        self.service(leaf(("mail.rail.test",), not_after=NOW + 80 * DAY))
        self.clock.advance(0)
        self.assertEqual(len(self.orders.pending), 1)

    def test_failure_backs_off_then_recovers(self) -> None:
        """Failed orders retry after 1, 2, 4 minutes (less jitter) and are logged; a
        success resets the count."""
        service = self.service()
        self.clock.advance(0)
        self.jitter = 0.5
        delays = []
        with capturedLogs() as events:
            for attempt in range(3):
                self.orders.pending[attempt].errback(RuntimeError("CA down"))
                assert service.next_check is not None
                delays.append(service.next_check - self.clock.seconds())
                self.clock.advance(delays[-1])
        self.assertEqual(delays, [52.5, 105.0, 210.0])
        self.assertEqual(service.failures, 3)
        self.assertEqual(len(self.orders.pending), 4)
        warnings = [e for e in events if "failed" in e["log_format"]]
        self.assertEqual([e["error"] for e in warnings], ["RuntimeError: CA down"] * 3)
        self.orders.pending[3].callback(material(_NAMES))
        self.assertEqual(service.failures, 0)
        self.assertEqual(len(self.installed), 1)

    def test_install_failure_is_a_failure(self) -> None:
        """If installing the new certificate raises, the service backs off and retries."""

        def refuse(material: ServerMaterial) -> None:
            raise ValueError("bad key")

        service = AcmeService(
            clock=self.clock,
            obtain=self.orders,
            install=refuse,
            names=_NAMES,
            renew_before=_RENEW_BEFORE,
            rng=lambda: 0.0,
        )
        service.startService()
        self.addCleanup(self.stopped, service)
        self.clock.advance(0)
        self.orders.pending[0].callback(material(_NAMES))
        self.assertEqual(service.failures, 1)
        self.assertEqual(service.next_check, NOW + 60)

    def later_install(self) -> tuple[AcmeService, list[Deferred[None]]]:
        """A service whose install finishes when the test fires its Deferred, after an
        order has been issued."""
        installs: list[Deferred[None]] = []

        def install(material: ServerMaterial) -> Deferred[None]:
            installs.append(Deferred())
            return installs[-1]

        service = AcmeService(
            clock=self.clock,
            obtain=self.orders,
            install=install,
            names=_NAMES,
            renew_before=_RENEW_BEFORE,
            rng=lambda: 0.0,
        )
        service.startService()
        self.addCleanup(self.stopped, service)
        self.clock.advance(0)
        self.orders.pending[0].callback(material(_NAMES, not_after=NOW + 90 * DAY))
        return service, installs

    def test_install_in_a_thread_is_waited_for(self) -> None:
        """An install that finishes later (contexts built in a thread) is waited for:
        the next check is scheduled only once it is done."""
        service, [install] = self.later_install()
        self.assertIsNone(service.next_check)
        install.callback(None)
        self.assertEqual(service.next_check, NOW + DAY)
        self.assertEqual(service.failures, 0)

    def test_install_in_a_thread_fails(self) -> None:
        """An install that fails later backs off and orders again, as a failed order."""
        service, [install] = self.later_install()
        install.errback(ValueError("bad key"))
        self.assertEqual(service.failures, 1)
        self.assertEqual(service.next_check, NOW + 60)

    def test_already_due_certificate_does_not_loop(self) -> None:
        """A CA issuing certificates shorter-lived than renew_before does not cause a
        tight loop of orders: the next one waits a back-off step."""
        service = self.service()
        self.clock.advance(0)
        self.orders.pending[0].callback(material(_NAMES, not_after=NOW + 10 * DAY))
        self.assertEqual(len(self.installed), 1)
        self.assertEqual(service.next_check, NOW + 60)

    def test_stop_cancels_everything(self) -> None:
        """Stopping cancels the scheduled check and the order in progress; a late result
        is not installed."""
        service = self.service()
        self.clock.advance(0)
        service.stopService()
        self.assertEqual(self.orders.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.installed, [])

    def test_stop_before_first_check(self) -> None:
        """Stopping right after start leaves nothing scheduled and orders nothing."""
        service = self.service()
        service.stopService()
        self.clock.advance(DAY)
        self.assertEqual(self.orders.pending, [])


class BuildAcmeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = Path(self.mktemp()).absolute()

    def config(self, **acme: object) -> object:
        return make_config(
            self.data, tls={"acme": {"directory": "https://127.0.0.1:1/dir", **acme}}
        )

    def test_saved_certificate_is_current(self) -> None:
        """build_acme starts from the saved ACME certificate: a fresh one orders nothing."""
        clock = Clock()
        clock.advance(NOW)
        save_acme_material(self.data, material(_NAMES, not_after=NOW + 80 * DAY))
        service = build_acme(
            self.config(),  # type: ignore[arg-type]
            clock,
            install=lambda m: None,
            names=_NAMES,
            challenges=PendingChallenges(),
        )
        self.assertEqual(service.name, "acme")
        service.startService()
        clock.advance(0)
        self.assertEqual(service.next_check, NOW + DAY)
        service.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_dns01_refused(self) -> None:
        """dns-01 is not implemented: the configuration is refused at load time, with
        its path, instead of failing at the first order."""
        error = self.assertRaises(ConfigError, self.config, challenge="dns-01")
        self.assertIn("tls.acme.challenge", str(error))
