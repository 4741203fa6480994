"""Port 25's bound on concurrent connections per client IP address.

Anyone on the internet may connect to port 25; one address must not be able to take all
of Rail's connections (``inbound.max_connections_per_ip``). The connection over the limit
gets ``421 4.7.0`` (RFC 5321 §3.8: the server may close at once with 421) and is closed;
an address's count drops as its connections close.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.refusals import Refusals
from rail.smtp.budget import DataBudget
from rail.smtp.factory import SMTPServerFactory
from rail.smtp.server import RailESMTP, SMTPLimits
from rail.smtp.session import Session

__all__ = ["ConnectionCounter", "PerAddressSMTPFactory"]

_log = Logger()

TOO_MANY = b"421 4.7.0 Too many connections from your address\r\n"


def _address_key(addr: Any) -> str:
    """The address a connection counts against (IPv4-mapped IPv6 is its IPv4 address)."""
    host = str(getattr(addr, "host", addr))
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class ConnectionCounter:
    """Open connections per address; no entry is kept for an address with none."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def count(self, key: str) -> int:
        return self._open.get(key, 0)

    def acquire(self, key: str) -> bool:
        current = self._open.get(key, 0)
        if current >= self.limit:
            return False
        self._open[key] = current + 1
        return True

    def release(self, key: str) -> None:
        current = self._open.get(key, 0)
        if current <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] = current - 1


class _CountedESMTP(RailESMTP):
    """A RailESMTP that gives its slot back when its connection ends."""

    def __init__(self, release: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        release, self._release = self._release, _nothing
        try:
            super().connectionLost(reason)
        finally:
            release()


def _nothing() -> None:
    return None


class _TooMany(Protocol):
    """Says 421 and hangs up."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(TOO_MANY)
        self.transport.loseConnection()


class PerAddressSMTPFactory(SMTPServerFactory):
    """:class:`rail.smtp.factory.SMTPServerFactory` (same arguments), plus
    ``max_per_address``: the connection beyond that many open ones from one IP address
    is answered ``421 4.7.0`` and closed."""

    def __init__(
        self,
        new_session: Callable[[], Session],
        *,
        hostname: str,
        limits: SMTPLimits,
        clock: IReactorTime,
        max_per_address: int,
        starttls: Any = None,
        budget: DataBudget | None = None,
        refusals: Refusals | None = None,
        name: str = "smtp",
    ) -> None:
        super().__init__(
            new_session,
            hostname=hostname,
            limits=limits,
            clock=clock,
            starttls=starttls,
            budget=budget,
            refusals=refusals,
            name=name,
        )
        self.counter = ConnectionCounter(max_per_address)

    def buildProtocol(self, addr: Any) -> Protocol:
        key = _address_key(addr)
        if not self.counter.acquire(key):
            _log.info(
                "refused connection from peer={peer}: {limit} already open",
                peer=key,
                limit=self.counter.limit,
            )
            refused = _TooMany()
            refused.factory = self
            return refused
        try:
            session = self._new_session()
        except BaseException:
            self.counter.release(key)
            raise
        protocol = _CountedESMTP(
            lambda: self.counter.release(key),
            session,
            hostname=self._hostname,
            limits=self._limits,
            clock=self._clock,
            starttls=self._starttls,
            budget=self._budget,
            refusals=self._refusals,
            listener=self._name,
        )
        protocol.factory = self
        return protocol
