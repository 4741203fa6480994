"""The ``dns`` service: Rail's authoritative DNS on UDP and TCP at one address and port.

Wiring only. :func:`build_dns` makes the service from the configuration; the root
service adds it as a child, and the reload path calls :meth:`DNSService.refresh` with the
new configuration (SIGHUP, after ``rail dkim rotate``). The service also refreshes its
zones every ``refresh_interval`` seconds, so a newly issued client certificate's domain
and DKIM keys no longer needed by queued mail show up without a signal.

A refresh reads the registry, the DKIM keys, the queue (the oldest pending message) and
the serials file, and may rewrite that file with an fsync: all of it runs in a worker
thread, down to the lookup index, and the reactor only swaps the built zones in. Its cost
grows with the queue and the domains, so on the reactor it was a pause of a tenth of a
second or more every minute. Refreshes run one at a time, in the order asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.config import Config
from rail.config.listen import ListenSpec
from rail.connections import GateLimits
from rail.dkim.keys import KeyStore
from rail.dns.lookup import ZoneIndex
from rail.dns.protocol import DNSUDP, DNSStreamFactory
from rail.dns.ratelimit import RateLimiter
from rail.dns.server import DNSServer
from rail.dns.sources import load_zones, zones_from
from rail.dns.zone import Zone
from rail.gate import Gate
from rail.listener import ListenError
from rail.refusals import Refusals
from rail.store.inspect import oldest_pending_received_at
from rail.workers.child import adopt_datagram, adopt_stream

__all__ = ["DNSService", "InThread", "OldestPending", "ZoneBuilder", "build_dns", "rate_limiter"]

_log = Logger()
_BIND_TRIES = 20

InThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]
"""``in_thread(f)`` runs ``f()`` in a worker thread; a Deferred of its result."""

OldestPending = Callable[[], "defer.Deferred[float | None]"]
"""When the queue's oldest pending message was received (None: nothing pending), read
off the reactor thread."""

ZoneBuilder = Callable[[Config], "defer.Deferred[ZoneIndex]"]
"""Builds the zones of a configuration, off the reactor thread."""


def rate_limiter(config: Config) -> RateLimiter | None:
    """The UDP response rate limiter ``dns.rate_limit`` asks for; None when disabled."""
    limit = config.dns.rate_limit
    if limit.responses_per_second <= 0:
        return None
    return RateLimiter(limit.responses_per_second, limit.slip, limit.ipv4_prefix, limit.ipv6_prefix)


class DNSService(Service):
    """Binds UDP and TCP in ``privilegedStartService``; serves :attr:`server`."""

    def __init__(
        self,
        reactor: Any,
        spec: ListenSpec,
        server: DNSServer,
        *,
        config: Config | None = None,
        zones: ZoneBuilder | None = None,
        refresh_interval: float | None = 60.0,
        clock: Any = None,
        gate: GateLimits | None = None,
        refusals: Refusals | None = None,
        adopt: tuple[int, int] | None = None,
    ) -> None:
        """``clock`` (default ``reactor``) times TCP idle timeouts and zone refreshes;
        ``gate`` bounds TCP connections (per listener and per address), reporting
        refusals to ``refusals``; ``adopt`` (a worker's TCP and UDP descriptors, see
        :mod:`rail.workers`) serves on sockets bound by the parent instead of binding."""
        self.setName("dns")  # type: ignore[no-untyped-call, unused-ignore]
        self._reactor = reactor
        self.spec = spec
        self.server = server
        self.config = config
        self._zones = zones
        self._interval = refresh_interval
        self._clock = reactor if clock is None else clock
        self._tcp_factory = DNSStreamFactory(
            server, self._clock, max_connections=None if gate is not None else 256
        )
        self._tcp_listening: Any = self._tcp_factory
        if gate is not None:
            self._tcp_listening = Gate(
                self._tcp_factory,
                name="dns",
                limits=gate,
                clock=self._clock,
                refusals=refusals or Refusals(self._clock),
            )
        self._adopt = adopt
        self._ports: list[Any] = []
        self._loop: task.LoopingCall | None = None
        self._building: defer.Deferred[None] | None = None
        self._waiting: list[defer.Deferred[None]] = []

    @property
    def port(self) -> int:
        """The bound port number (UDP and TCP), useful when ``spec.port`` is 0."""
        if not self._ports:
            raise RuntimeError("the DNS service is not listening")
        port: int = self._ports[0].getHost().port
        return port

    def privilegedStartService(self) -> None:
        super().privilegedStartService()  # type: ignore[no-untyped-call, unused-ignore]
        if not self._ports:
            self._ports = self._bind()

    def _bind(self) -> list[Any]:
        spec, reactor = self.spec, self._reactor
        if self._adopt is not None:
            tcp_fd, udp_fd = self._adopt
            return [
                adopt_datagram(reactor, udp_fd, DNSUDP(self.server)),
                adopt_stream(reactor, tcp_fd, self._tcp_listening),
            ]
        tries = _BIND_TRIES if spec.port == 0 else 1
        error: CannotListenError | None = None
        for _ in range(tries):
            try:
                udp = reactor.listenUDP(spec.port, DNSUDP(self.server), interface=spec.interface)
            except CannotListenError as e:
                error = e
                break
            port = udp.getHost().port
            try:
                tcp = reactor.listenTCP(
                    port, self._tcp_listening, backlog=spec.backlog, interface=spec.interface
                )
            except CannotListenError as e:
                error = e
                udp.stopListening()
                continue
            _log.info(
                "DNS listening on {interface} port {port} (UDP and TCP) for {zones}",
                interface=spec.interface,
                port=port,
                zones=", ".join(self.server.origins) or "no zones",
            )
            return [udp, tcp]
        reason = error.socketError if error is not None else None
        raise ListenError(f"listen.dns: cannot listen on {spec.description}: {reason}")

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call, unused-ignore]
        if not self._ports:
            self._ports = self._bind()
        if self._zones is not None and self._interval:
            self._loop = task.LoopingCall(self.refresh)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=False).addErrback(
                lambda f: _log.failure("DNS zone refresh loop stopped", f)
            )

    def update(self, zones: Sequence[Zone]) -> None:
        """Serve ``zones`` from now on."""
        self.server.update(zones)

    def refresh(self, config: Config | None = None) -> defer.Deferred[None]:
        """Rebuild the zones (from ``config`` when given: a reload) off the reactor thread
        and serve them; a failure is logged and the zones being served stay. Fires once
        a build that started after this call has been served (or has failed): a build
        already running may have read the files before the change the caller knows of."""
        if config is not None:
            if self.config is None or config.dns.rate_limit != self.config.dns.rate_limit:
                self.server.set_rate_limiter(rate_limiter(config))
            self.config = config
        if self._zones is None or self.config is None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(waiter)
        if self._building is None:
            self._build()
        return waiter

    def _build(self) -> None:
        assert self._zones is not None and self.config is not None
        waiters, self._waiting = self._waiting, []
        building: defer.Deferred[Any] = defer.maybeDeferred(self._zones, self.config)
        building.addCallbacks(self.server.install, self._not_refreshed)
        self._building = building
        building.addBoth(self._built, waiters)

    def _not_refreshed(self, failure: Failure) -> None:
        _log.failure("DNS zones not refreshed; still serving the previous ones", failure)

    def _built(self, _: object, waiters: list[defer.Deferred[None]]) -> None:
        self._building = None
        for waiter in waiters:
            waiter.callback(None)
        if self._waiting:
            self._build()

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()  # type: ignore[no-untyped-call, unused-ignore]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._building is not None:
            # Nothing outlives the service: a build in a thread is waited for.
            yield self._building
        ports, self._ports = self._ports, []
        yield defer.DeferredList([defer.maybeDeferred(p.stopListening) for p in ports])
        yield self._tcp_factory.close_all()


def build_dns(
    config: Config,
    reactor: Any,
    keys: KeyStore,
    *,
    refresh_interval: float | None = 60.0,
    gate: GateLimits | None = None,
    refusals: Refusals | None = None,
    in_thread: InThread | None = None,
    oldest_pending: OldestPending | None = None,
    adopt: tuple[int, int] | None = None,
) -> DNSService | None:
    """The DNS service for ``config`` (``None`` when ``listen.dns`` is null), serving
    the zones of every local domain with ``keys``' DKIM records; ``gate`` bounds its
    TCP connections.

    Refreshes build the zones with ``in_thread`` (default: ``reactor``'s thread pool).
    ``oldest_pending`` says how far back queued mail goes, so that DKIM keys it may be
    signed with stay published; by default the queue database is read in
    ``in_thread`` (:func:`rail.store.inspect.oldest_pending_received_at`). The zones
    served from the start are built here, before the reactor runs.
    """
    spec = config.listen.dns
    if spec is None:
        return None
    if in_thread is None:
        pool = reactor.getThreadPool()

        def in_thread(work: Callable[[], Any]) -> defer.Deferred[Any]:
            return deferToThreadPool(reactor, pool, work)

    if oldest_pending is None:
        queue = config.data_dir / "queue"
        run = in_thread

        def oldest_pending() -> defer.Deferred[float | None]:
            return run(lambda: oldest_pending_received_at(queue))

    threaded, pending = in_thread, oldest_pending

    async def build(current: Config) -> ZoneIndex:
        oldest = await pending()
        now = reactor.seconds()
        index: ZoneIndex = await threaded(lambda: ZoneIndex(zones_from(current, keys, now, oldest)))
        return index

    def zones(current: Config) -> defer.Deferred[ZoneIndex]:
        return defer.Deferred.fromCoroutine(build(current))

    server = DNSServer(
        load_zones(config, keys, reactor.seconds()),
        reactor,
        rate_limiter(config),
        refusals=refusals,
    )
    return DNSService(
        reactor,
        spec,
        server,
        config=config,
        zones=zones,
        refresh_interval=refresh_interval,
        gate=gate,
        refusals=refusals,
        adopt=adopt,
    )
