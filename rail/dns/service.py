"""The ``dns`` service: Rail's authoritative DNS on UDP and TCP at one address and port.

Wiring only. :func:`build_dns` makes the service from the configuration; the root
service adds it as a child, and the reload path calls :meth:`DNSService.refresh` with the
new configuration (SIGHUP, after ``rail dkim rotate``). The service also refreshes its
zones every ``refresh_interval`` seconds, so a newly issued client certificate's domain
and DKIM keys no longer needed by queued mail show up without a signal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from rail.config import Config
from rail.config.listen import ListenSpec
from rail.connections import GateLimits
from rail.dkim.keys import KeyStore
from rail.dns.protocol import DNSUDP, DNSStreamFactory
from rail.dns.ratelimit import RateLimiter
from rail.dns.server import DNSServer
from rail.dns.sources import load_zones
from rail.dns.zone import Zone
from rail.gate import Gate
from rail.listener import ListenError
from rail.refusals import Refusals

__all__ = ["DNSService", "build_dns", "rate_limiter"]

_log = Logger()
_BIND_TRIES = 20

ZoneSource = Callable[[Config], Sequence[Zone]]


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
        zones: ZoneSource | None = None,
        refresh_interval: float | None = 60.0,
        clock: Any = None,
        gate: GateLimits | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        """``clock`` (default ``reactor``) times TCP idle timeouts and zone refreshes;
        ``gate`` bounds TCP connections (per listener and per address), reporting
        refusals to ``refusals``."""
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
        self._ports: list[Any] = []
        self._loop: task.LoopingCall | None = None

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

    def refresh(self, config: Config | None = None) -> None:
        """Rebuild the zones (from ``config`` when given: a reload); a failure is logged
        and the zones being served stay."""
        if config is not None:
            if self.config is None or config.dns.rate_limit != self.config.dns.rate_limit:
                self.server.set_rate_limiter(rate_limiter(config))
            self.config = config
        if self._zones is None or self.config is None:
            return
        try:
            zones = self._zones(self.config)
        except Exception:
            _log.failure("DNS zones not refreshed; still serving the previous ones")
            return
        self.server.update(zones)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()  # type: ignore[no-untyped-call, unused-ignore]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
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
) -> DNSService | None:
    """The DNS service for ``config`` (``None`` when ``listen.dns`` is null), serving
    the zones of every local domain with ``keys``' DKIM records; ``gate`` bounds its
    TCP connections."""
    spec = config.listen.dns
    if spec is None:
        return None

    def zones(current: Config) -> Sequence[Zone]:
        return load_zones(current, keys, reactor.seconds())

    server = DNSServer(zones(config), reactor, rate_limiter(config), refusals=refusals)
    return DNSService(
        reactor,
        spec,
        server,
        config=config,
        zones=zones,
        refresh_interval=refresh_interval,
        gate=gate,
        refusals=refusals,
    )
