"""Kept-alive HTTP/1.1 connections for webhook POSTs, one request at a time on each.

Twisted's Agent, with its connection pool, body producers and response protocol, cost
about 20% of the reactor thread per inbound message; the POST itself is one write and the
answer a few hundred bytes. Here the request goes out as one prepared byte string and
:mod:`rail.webhooks.response` reads the answer.

A request is never sent twice: a connection that dies before its answer is complete fails
the request with :class:`RequestFailedError` (the dispatcher retries later, and apps dedupe by
``webhook-id``). Idle connections are kept per key (URL host and checked address), at most
``idle_per_key`` of them, each for ``idle_timeout`` seconds; a server that closes one is
noticed by its ``connectionLost``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from rail.webhooks.response import HTTPResponse, ResponseError, ResponseParser

__all__ = ["HTTPPool", "RequestFailedError", "request_bytes"]


class RequestFailedError(Exception):
    """No complete answer: ``reasons`` are the failures that ended the request (the shape
    of Twisted's ``ResponseFailed``, which callers also know)."""

    def __init__(self, reasons: list[Failure]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


def request_bytes(target: str, host: str, fields: list[tuple[str, str]], body: bytes) -> bytes:
    """A POST with ``body``; ``target`` is the origin-form request target (``/path?q``).

    Raises ValueError for a field that would break the message (CR, LF or NUL), which only
    a bug in Rail could produce: every field is Rail's own.
    """
    parts = [target, host, *(text for field in fields for text in field)]
    if any(c in part for part in parts for c in "\r\n\0"):
        raise ValueError("HTTP request field with CR, LF or NUL")
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines.extend(f"{name}: {value}" for name, value in fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(Protocol):
    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._parser: ResponseParser | None = None
        self._answer: Deferred[HTTPResponse] | None = None
        self._waiting: list[Deferred[None]] = []
        self.lost = False

    def request(self, data: bytes) -> Deferred[HTTPResponse]:
        self._parser = ResponseParser(self._max_body)
        answer: Deferred[HTTPResponse] = Deferred(self._cancel)
        self._answer = answer
        assert self.transport is not None
        self.transport.write(data)
        return answer

    def dataReceived(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # nothing was asked: a peer talking out of turn is not reused
            self._close(abort=True)
            return
        try:
            response = parser.feed(data)
        except ResponseError as e:
            self._close(abort=True)
            self._fail(Failure(e))
            return
        if response is None:
            return
        answer, self._answer, self._parser = self._answer, None, None
        if not response.reusable or parser.leftover:
            response = attrs.evolve(response, reusable=False)
            self._close(abort=False)
        assert answer is not None
        answer.callback(response)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        parser, self._parser = self._parser, None
        if parser is not None and self._answer is not None:
            response = parser.end_of_stream()
            if response is None:
                self._fail(reason)
            else:
                answer, self._answer = self._answer, None
                answer.callback(response)
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            done.callback(None)

    def when_lost(self) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        if self.lost:
            done.callback(None)
        else:
            self._waiting.append(done)
        return done

    def _fail(self, reason: Failure) -> None:
        answer, self._answer, self._parser = self._answer, None, None
        if answer is not None:
            answer.errback(RequestFailedError([reason]))

    def _cancel(self, answer: Deferred[HTTPResponse]) -> None:
        self._answer = self._parser = None
        self._close(abort=True)

    def _close(self, *, abort: bool) -> None:
        transport: Any = self.transport
        if transport is not None and not self.lost:
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()

    def close(self) -> None:
        self._close(abort=False)


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self._max_body)


class HTTPPool:
    """Requests over kept-alive connections, by key."""

    def __init__(
        self, reactor: Any, *, idle_per_key: int, idle_timeout: float, max_body: int
    ) -> None:
        self._reactor = reactor
        self._idle_per_key = idle_per_key
        self._idle_timeout = idle_timeout
        self._factory = _ConnectionFactory(max_body)
        self._idle: dict[Hashable, list[tuple[_Connection, IDelayedCall]]] = {}

    def request(
        self, key: Hashable, endpoint: IStreamClientEndpoint, data: bytes
    ) -> Deferred[HTTPResponse]:
        """Send ``data`` on an idle connection for ``key``, or on a new one from
        ``endpoint``. Fails with the endpoint's error (nothing sent), RequestFailedError or,
        when cancelled, CancelledError (the connection is then cut; while still
        connecting, the endpoint's ConnectingCancelledError)."""
        idle = self._idle.get(key)
        while idle:
            connection, timer = idle.pop()
            if timer.active():
                timer.cancel()
            if not connection.lost:
                if not idle:
                    del self._idle[key]
                return self._send(key, connection, data)
        self._idle.pop(key, None)
        connecting: Deferred[Any] = endpoint.connect(self._factory)
        return connecting.addCallback(self._connected, key, data)

    def _connected(self, connection: _Connection, key: Hashable, data: bytes) -> Any:
        return self._send(key, connection, data)

    def _send(self, key: Hashable, connection: _Connection, data: bytes) -> Deferred[HTTPResponse]:
        answer = connection.request(data)
        return answer.addCallback(self._answered, key, connection)

    def _answered(self, response: HTTPResponse, key: Hashable, connection: _Connection) -> Any:
        if response.reusable and not connection.lost:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._idle_per_key:
                timer = self._reactor.callLater(self._idle_timeout, self._expire, key, connection)
                idle.append((connection, timer))
            else:
                connection.close()
        return response

    def _expire(self, key: Hashable, connection: _Connection) -> None:
        idle = self._idle.get(key, [])
        self._idle[key] = [(c, t) for c, t in idle if c is not connection]
        if not self._idle[key]:
            del self._idle[key]
        connection.close()

    def close(self) -> Deferred[Any]:
        """Close every idle connection (a request in flight is the caller's to cancel);
        fires when they are closed."""
        idle, self._idle = self._idle, {}
        closing = []
        for entries in idle.values():
            for connection, timer in entries:
                if timer.active():
                    timer.cancel()
                if not connection.lost:
                    closing.append(connection.when_lost())
                    connection.close()
        return DeferredList(closing)
