"""The ACME renewal service: orders the server certificate when needed and installs it.

On start, and then daily, it asks :func:`rail.acme.decide.renewal_reason` whether the
current certificate must be replaced; if so it runs an order off the reactor thread and
hands the result to ``install`` (wired to :func:`rail.pki.tls.replace_all`, which builds
every listener's new context in a thread and swaps them in on the reactor), so new
connections get the new certificate without a restart. A failed order is retried after
:func:`rail.acme.decide.backoff_delay`. Scheduling only: the decisions are in ``decide``,
the order in ``client``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from cryptography import x509
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.acme.challenges import PendingChallenges
from rail.acme.client import OrderBusy, OrderRequest, OrderStopped, issue_certificate
from rail.acme.decide import backoff_delay, next_check_delay, renewal_reason
from rail.acme.storage import load_acme_material
from rail.config import Config
from rail.pki.files import PKIError
from rail.pki.inspect import format_time
from rail.pki.tls import ServerMaterial

__all__ = ["AcmeService", "build_acme"]

_log = Logger()
_T = TypeVar("_T")
_JITTER = random.SystemRandom().random


class AcmeService(Service):
    """Keeps an ACME certificate for ``names`` current; see the module docstring.

    ``obtain`` runs one order and fires with the new material (already saved); cancelling
    its Deferred asks the order to stop. ``current`` is the leaf served at start-up if it
    came from ACME (None otherwise). ``rng`` returns floats in [0, 1) for back-off jitter.
    ``install`` may return a Deferred; the next check is scheduled once it has fired.
    """

    name = "acme"

    def __init__(
        self,
        *,
        clock: IReactorTime,
        obtain: Callable[[], Deferred[ServerMaterial]],
        install: Callable[[ServerMaterial], object],
        names: Sequence[str],
        renew_before: float,
        current: x509.Certificate | None = None,
        rng: Callable[[], float] = _JITTER,
    ) -> None:
        self._clock = clock
        self._obtain = obtain
        self._install = install
        self._names = tuple(names)
        self._renew_before = renew_before
        self._current = current
        self._rng = rng
        self._call: IDelayedCall | None = None
        self._in_flight: Deferred[Any] | None = None
        self.failures = 0
        """Orders failed in a row since the last success."""

    def startService(self) -> None:
        cast(Any, super()).startService()  # Service is untyped (mypy --strict)
        self._schedule(0)

    def stopService(self) -> None:
        cast(Any, super()).stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.cancel()

    @property
    def next_check(self) -> float | None:
        """When the next check is scheduled (clock seconds), None while an order runs."""
        return self._call.getTime() if self._call is not None else None

    def _schedule(self, delay: float) -> None:
        self._call = self._clock.callLater(delay, self._check)

    def _check(self) -> None:
        self._call = None
        now = self._clock.seconds()
        reason = renewal_reason(self._current, self._names, now, self._renew_before)
        if reason is None:
            assert self._current is not None
            self._schedule(next_check_delay(self._current, now, self._renew_before))
            return
        _log.info(
            "ordering an ACME certificate for {names}: {reason}",
            names=list(self._names),
            reason=reason,
        )
        ordered = maybeDeferred(self._obtain)
        ordered.addCallback(self._issued)
        ordered.addErrback(self._failed)
        if not ordered.called:
            self._in_flight = ordered

    def _issued(self, material: ServerMaterial) -> Deferred[None] | None:
        self._in_flight = None
        if not self.running:
            return None  # saved on disk: the next start serves it
        # ``install`` may build the new TLS contexts in a thread: wait for it. A failure
        # is an order's failure (backed off and retried).
        installing: Deferred[object] = maybeDeferred(self._install, material)
        return installing.addCallback(lambda _: self._installed(material))

    def _installed(self, material: ServerMaterial) -> None:
        leaf = material.chain[0]
        self._current = leaf
        self.failures = 0
        _log.info(
            "installed ACME certificate serial {serial} for {names}, valid until {not_after}",
            serial=format(leaf.serial_number, "x"),
            names=list(self._names),
            not_after=format_time(leaf.not_valid_after_utc),
        )
        if not self.running:
            return
        now = self._clock.seconds()
        due = renewal_reason(leaf, self._names, now, self._renew_before)
        if due is None:
            self._schedule(next_check_delay(leaf, now, self._renew_before))
            return
        # Already due again (the CA issues certificates shorter-lived than renew_before, or
        # left a name out): do not order in a tight loop, wait like after a failure.
        delay = backoff_delay(1, self._rng())
        _log.warn(
            "the new ACME certificate is already due for renewal ({reason}); next order in"
            " {delay:.0f}s; check tls.acme.renew_before",
            reason=due,
            delay=delay,
        )
        self._schedule(delay)

    def offer(self, material: ServerMaterial) -> Deferred[None]:
        """A certificate another node got (the shared database told us): install it
        unless it is the one in use, then check again when it is due. Fires once done."""
        leaf = material.chain[0]
        if self._current is not None and self._current == leaf:
            return succeed(None)
        installing: Deferred[object] = maybeDeferred(self._install, material)

        def installed(_: object) -> None:
            self._current = leaf
            self.failures = 0
            _log.info(
                "installed the ACME certificate serial {serial} another node got",
                serial=format(leaf.serial_number, "x"),
            )
            if self.running and self._call is not None:
                self._call.cancel()
                now = self._clock.seconds()
                self._schedule(next_check_delay(leaf, now, self._renew_before))

        return installing.addCallback(installed)

    def _failed(self, failure: Failure) -> None:
        self._in_flight = None
        if not self.running or isinstance(failure.value, (CancelledError, OrderStopped)):
            return
        if isinstance(failure.value, OrderBusy):
            # Not this node's failure: look again later, when the other node's
            # certificate is in the database (or it gave up and this node orders).
            delay = backoff_delay(1, self._rng())
            self._schedule(delay)
            _log.info("{why}; checking again in {delay:.0f}s", why=str(failure.value), delay=delay)
            return
        self.failures += 1
        delay = backoff_delay(self.failures, self._rng())
        self._schedule(delay)
        _log.warn(
            "ACME order for {names} failed ({failures} in a row): {error}; retrying in"
            " {delay:.0f}s",
            names=list(self._names),
            failures=self.failures,
            error=f"{type(failure.value).__name__}: {failure.getErrorMessage()}",
            delay=delay,
        )


def in_thread(reactor: Any, function: Callable[[threading.Event], _T]) -> Deferred[_T]:
    """Run ``function(stop)`` in the reactor's thread pool; cancelling the Deferred sets
    ``stop`` (the function checks it between steps) and fires CancelledError at once;
    the thread's late result is dropped."""
    stop = threading.Event()
    outer: Deferred[_T] = Deferred(lambda _: stop.set())

    def relay(result: _T | Failure) -> None:
        if outer.called:
            return  # cancelled; the late result (or error) is dropped
        if isinstance(result, Failure):
            outer.errback(result)
        else:
            outer.callback(result)

    deferToThreadPool(reactor, reactor.getThreadPool(), function, stop).addBoth(relay)
    return outer


def build_acme(
    config: Config,
    reactor: Any,
    *,
    install: Callable[[ServerMaterial], object],
    names: Sequence[str],
    challenges: PendingChallenges,
    clock: IReactorTime | None = None,
    rng: Callable[[], float] | None = None,
    order: Callable[[Callable[[], ServerMaterial]], ServerMaterial] | None = None,
) -> AcmeService:
    """The renewal service for ``config.tls.acme``.

    ``names`` are the certificate's DNS names (``[hostname, *mta-sts names]``);
    ``challenges`` is shared with the port-80 site (:func:`rail.web.http80.http80_site`);
    ``install`` receives each new certificate on the reactor thread and may return a
    Deferred (building the TLS contexts in a thread), waited for. Orders run in
    ``reactor``'s thread pool; ``clock`` (default ``reactor``) schedules the checks.
    ``order(run)`` wraps each order's ``run()`` in the thread (with the shared database:
    one node at a time, :func:`rail.shared.acme.ordered_once`).
    Raises ValueError for a configuration this version cannot serve (dns-01).
    """
    acme = config.tls.acme
    if acme is None:
        raise ValueError("tls.acme: not configured")
    if acme.challenge != "http-01":
        raise ValueError(f"tls.acme.challenge: {acme.challenge} is not supported yet; use http-01")
    request = OrderRequest(
        directory=acme.directory,
        names=tuple(names),
        data_dir=config.data_dir,
        email=acme.email,
        ca_file=acme.ca_file,
    )
    timer: IReactorTime = reactor if clock is None else clock
    current = _current_leaf(config, datetime.fromtimestamp(timer.seconds(), UTC))

    def obtain() -> Deferred[ServerMaterial]:
        def run(stop: threading.Event) -> ServerMaterial:
            once = lambda: issue_certificate(request, challenges, stop)  # noqa: E731
            return once() if order is None else order(once)

        return in_thread(reactor, run)

    return AcmeService(
        clock=timer,
        obtain=obtain,
        install=install,
        names=names,
        renew_before=acme.renew_before,
        current=current,
        rng=_JITTER if rng is None else rng,
    )


def _current_leaf(config: Config, now: datetime) -> x509.Certificate | None:
    try:
        material = load_acme_material(config.data_dir, now)
    except PKIError:
        return None  # prepare_pki has said why it is not served; the service replaces it
    return material.chain[0] if material is not None else None
