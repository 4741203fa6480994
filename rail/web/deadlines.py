"""Whole-request deadlines for HTTP: the header section in bounded time, the body at a rate.

twisted.web's only clock is an idle timeout, reset by every byte, so a client sending one
header line (or one body byte) every few seconds holds a connection, and its buffers, as
long as it likes. :class:`DeadlineChannel` adds two bounds:

- the request line and headers must be complete ``header_timeout`` seconds after the
  connection opens, or, on a kept-alive connection, after the first byte of the request;
- the body must keep pace: ``t`` seconds after the headers, at least
  ``(t - body_grace) * body_min_rate`` bytes of it must have arrived (Apache's
  ``mod_reqtimeout`` rule). The timer moves itself to the moment what has arrived stops
  being enough, so a fast body costs no timer work per chunk.

A request that misses either gets ``408`` with a JSON ``REQUEST_TIMEOUT`` error and the
connection is closed; the refusal is counted and logged through the site's
:class:`rail.refusals.Refusals`. Waiting between requests stays the idle timeout's job.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

from rail.web.jsonapi import error_body

__all__ = ["HEADER_TIMEOUT", "SLOW_BODY", "DeadlineChannel", "deadline_channel"]

HEADER_TIMEOUT = "http_header_timeout"
SLOW_BODY = "http_body_rate"

_IDLE, _HEADERS, _BODY, _HANDLING = range(4)
_MIN_RECHECK = 1.0
"""Seconds between two body-rate checks at least: the bound is about seconds, not bytes."""


class DeadlineChannel(HTTPChannel):
    """An :class:`HTTPChannel` whose site (a ``RailSite``) sets ``header_timeout``,
    ``body_grace``, ``body_min_rate`` (None: no such bound), ``refusals`` and ``name``."""

    site: Any
    callLater: Any
    _phase = _IDLE
    _timer: IDelayedCall | None = None
    _due = 0.0
    _body_start = 0.0
    _body_received = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        self._await_headers()

    def dataReceived(self, data: bytes) -> None:
        if self._phase == _IDLE and data:
            self._await_headers()
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._phase = _BODY if self.length != 0 else _HANDLING
        super().allHeadersReceived()
        # A refused request (413) is already closing: no answer after that one.
        if self._phase == _BODY and not getattr(self.transport, "disconnecting", False):
            now = self._now()
            self._body_start = now
            self._body_received = 0
            grace = getattr(self.site, "body_grace", None)
            if grace is not None and getattr(self.site, "body_min_rate", None):
                self._arm(now, now + grace)

    def rawDataReceived(self, data: bytes) -> None:
        if self._phase == _BODY:
            self._body_received += len(data)
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self._phase = _HANDLING
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # Before the buffered next request (if any) is replayed into dataReceived.
        self._phase = _IDLE
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        super().connectionLost(reason)

    # The timer. Phases change at every request, so rather than cancel and schedule a
    # call each time (the reactor's heap, twice per request), the bound of the current
    # phase is a time (_due) and one timer per connection checks it when it fires: it
    # moves itself on if the phase's bound is later, and stops when no bound applies.

    def _now(self) -> float:
        seconds: float = self.site.reactor.seconds()
        return seconds

    def _await_headers(self) -> None:
        self._phase = _HEADERS
        timeout = getattr(self.site, "header_timeout", None)
        if timeout is not None:
            now = self._now()
            self._arm(now, now + timeout)

    def _arm(self, now: float, due: float) -> None:
        """Make the timer fire at ``due`` at the latest."""
        self._due = due
        timer = self._timer
        if timer is None:
            self._timer = self.callLater(max(due - now, 0.0), self._tick)
        elif timer.getTime() > due:
            timer.reset(max(due - now, 0.0))

    def _tick(self) -> None:
        self._timer = None
        now = self._now()
        if self._phase == _HEADERS:
            if now >= self._due:
                self._expire(HEADER_TIMEOUT)
            else:
                self._arm(now, self._due)
        elif self._phase == _BODY:
            grace = getattr(self.site, "body_grace", None)
            rate = getattr(self.site, "body_min_rate", None)
            if grace is None or not rate:
                return
            if now < self._body_start + grace:
                self._arm(now, self._due)
                return
            enough_until = self._body_start + grace + self._body_received / rate
            if now > enough_until:
                self._expire(SLOW_BODY)
            else:
                self._arm(now, max(enough_until, now + _MIN_RECHECK))

    def _expire(self, reason: str) -> None:
        self._phase = _HANDLING  # nothing more is read as a request
        transport: Any = self.transport
        refusals = getattr(self.site, "refusals", None)
        if refusals is not None:
            refusals.refuse(self.site.name, reason, getattr(transport.getPeer(), "host", ""))
        message = (
            "request headers not complete in time"
            if reason == HEADER_TIMEOUT
            else "request body arriving too slowly"
        )
        body = error_body("REQUEST_TIMEOUT", message)
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\n"
            b"Content-Type: application/json; charset=utf-8\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\n\r\n" + body
        )
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.loseConnection()
        # As twisted.web's own timeout does: a peer that does not read the answer is cut.
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)


def deadline_channel(site: Any) -> Any:
    """The ``protocol`` of a site whose channels are :class:`DeadlineChannel`.

    Wrapped as twisted.web wraps its own channel (``_genericHTTPChannelProtocolFactory``),
    so that ALPN could still switch a connection to HTTP/2.
    """
    return _GenericHTTPChannelProtocol(DeadlineChannel())
