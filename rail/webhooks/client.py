"""The HTTP client that POSTs webhooks, safely: connecting only to addresses
:mod:`rail.webhooks.addresses` allowed.

For each POST the host is resolved once, every address is checked, and the connection goes
to the checked address (no second resolution, so DNS rebinding cannot redirect it). https
uses the URL's host name for SNI and certificate verification (system trust, plus
``ca_file`` when configured). Redirects are never followed (a 3xx is an answer like any
other), the response body is read to at most :data:`MAX_BODY` bytes and thrown away. The
overall timeout is the dispatcher's, on its clock: it cancels the Deferred
:meth:`WebhookClient.post` returns, which cuts the connection.

Requests go through :mod:`rail.webhooks.http` rather than Twisted's Agent or treq: every
inbound message costs one POST, and their general machinery cost more than the request
itself. A URL is checked and split once (:class:`_Target`, cached), and a POST to an
IP-literal URL runs without a coroutine.
"""

from __future__ import annotations

import ssl as stdlib_ssl
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet import error
from twisted.internet import ssl as _ssl
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from rail.webhooks.addresses import WebhookURL, addresses_problem, parse_webhook_url
from rail.webhooks.http import HTTPPool, request_bytes
from rail.webhooks.outcome import Answered, Attempt, Refused, Unreachable
from rail.webhooks.response import HTTPResponse

# Untyped parts of Twisted, called through Any so that mypy --strict passes.
_tls: Any = _ssl

__all__ = ["MAX_BODY", "Resolve", "WebhookClient", "system_resolver", "webhook_trust"]

MAX_BODY = 64 * 1024
"""Bytes of a webhook's response body read (and discarded) before the connection is cut."""
USER_AGENT = "Rail-Webhook/1"

Resolve = Callable[[str], Deferred[list[str]]]
"""Resolves a host name to its IP addresses (empty list: none)."""


def system_resolver(reactor: Any) -> Resolve:
    """Resolution through the reactor's name resolver (getaddrinfo in a thread)."""

    def resolve(host: str) -> Deferred[list[str]]:
        done: Deferred[list[str]] = Deferred()
        found: list[str] = []

        @implementer(IResolutionReceiver)
        class _Receiver:
            def resolutionBegan(self, resolution: object) -> None:
                pass

            def addressResolved(self, address: Any) -> None:
                if address.host not in found:
                    found.append(address.host)

            def resolutionComplete(self) -> None:
                done.callback(found)

        reactor.nameResolver.resolveHostName(_Receiver(), host, 0)
        return done

    return resolve


def webhook_trust(ca_file: Path | None) -> Any:
    """The trust root for https webhooks: the system store, plus ``ca_file``'s PEM
    certificates when given (read now: a bad file is an error at start-up)."""
    if ca_file is None:
        return _tls.platformTrust()
    certificates = list(x509.load_pem_x509_certificates(ca_file.read_bytes()))
    system = stdlib_ssl.get_default_verify_paths().cafile
    if system is not None:
        try:
            with warnings.catch_warnings():  # old roots with odd serials: not ours to fix
                warnings.simplefilter("ignore")
                certificates.extend(x509.load_pem_x509_certificates(Path(system).read_bytes()))
        except (OSError, ValueError):
            pass  # no readable system bundle: ca_file alone
    return _tls.trustRootFromCertificates(
        [_tls.Certificate(crypto.X509.from_cryptography(c)) for c in certificates]
    )


@attrs.frozen
class _Target:
    """A webhook URL that passed :func:`parse_webhook_url`, with what every POST to it
    needs: the request target (path and query), the ``Host`` header (host lower-cased,
    port unless the scheme's default) and, for an IP literal, the verdict on its
    address."""

    url: WebhookURL
    path: str
    host: str
    literal: bool
    problem: str | None


_MAX_TARGETS = 1000
"""URLs whose :class:`_Target` is kept (the cache is emptied when full)."""


def _origin_form(url: str) -> str:
    """The request target for ``url``: its path (``/`` if empty) and query."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _answered(response: HTTPResponse) -> Attempt:
    return Answered(code=response.code, retry_after=response.retry_after)


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _reason(failure: Failure) -> BaseException:
    reason = failure.value
    assert reason is not None
    return reason


def _describe(failure: BaseException, target: WebhookURL, address: str) -> str:
    """The stored reply for a request that got no HTTP answer."""
    where = _hostport(address, target.port)
    if isinstance(failure, error.ConnectionRefusedError):
        return f"connection refused ({where})"
    if isinstance(failure, error.TimeoutError):
        return f"connection timed out ({where})"
    if isinstance(failure, error.ConnectError):
        return f"cannot connect ({where})"
    # RequestFailedError carries the failures that ended the request in ``reasons``.
    reasons: list[Failure] = list(getattr(failure, "reasons", None) or [])
    for reason in reasons:
        value = reason.value
        if type(value).__name__ == "VerificationError":
            return f"TLS failure ({where}): certificate does not match {target.host}"
        if isinstance(value, SSL.Error):
            return f"TLS failure ({where}): handshake or certificate verification failed"
    if reasons:
        return f"connection closed before the response was complete ({where})"
    return f"request failed ({where}): {type(failure).__name__}"


class WebhookClient:
    """POSTs one signed webhook and reports the :data:`Attempt`; never fails (except
    when cancelled: then the dispatcher knows why)."""

    def __init__(
        self,
        reactor: Any,
        *,
        resolve: Resolve,
        allow_private: bool,
        allow_http_loopback: bool,
        trust: Any,
        connect_timeout: float,
        max_body: int = MAX_BODY,
        persistent: bool = False,
        idle_timeout: float = 4.0,
        per_host: int = 4,
        content_type: str = "application/json",
        user_agent: str = USER_AGENT,
    ) -> None:
        """With ``persistent``, connections are kept (``per_host`` idle ones per checked
        address, for ``idle_timeout`` seconds) and reused by later POSTs to the same URL
        host and address: a new TCP (and TLS) connection per webhook costs more than the
        POST. Call :meth:`close` when done. ``content_type`` and ``user_agent`` are for
        the other users of this SSRF-safe client (TLS-RPT's report POSTs).

        The idle timeout is shorter than common servers' own (Node.js closes after 5 s,
        nginx after 75 s): a POST sent just as the server closes the connection fails and
        is only retried later, and it is never sent twice on its own."""
        self._reactor = reactor
        self._persistent = persistent
        self._pool = HTTPPool(
            reactor,
            idle_per_key=per_host if persistent else 0,
            idle_timeout=idle_timeout,
            max_body=max_body,
        )
        self._endpoints: dict[tuple[str, str, int, str], IStreamClientEndpoint] = {}
        self._resolve = resolve
        self._allow_private = allow_private
        self._allow_http_loopback = allow_http_loopback
        self._trust = trust
        self._connect_timeout = connect_timeout
        self._defaults = [("Content-Type", content_type), ("User-Agent", user_agent)]
        self._targets: dict[str, _Target | str] = {}
        self.connections: list[tuple[str, int]] = []
        """Addresses connected to (the most recent 100), for tests and debugging."""

    def close(self) -> Deferred[Any]:
        """Close every kept connection; fires when they are closed."""
        return self._pool.close()

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Deferred[Attempt]:
        target = self._target(url)
        if isinstance(target, str):
            return succeed(Refused(target))
        if not target.literal:
            return Deferred.fromCoroutine(self._post_resolving(target, headers, body))
        if target.problem is not None:
            return succeed(Refused(target.problem))
        address = target.url.host
        posting = self._request(target, address, headers, body)
        return posting.addErrback(self._not_connected, target.url, address)

    def _target(self, url: str) -> _Target | str:
        """The checked form of ``url``, or why Rail will not POST to it (pure, so kept)."""
        found = self._targets.get(url)
        if found is None:
            found = self._check(url)
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = found
        return found

    def _check(self, url: str) -> _Target | str:
        parsed = parse_webhook_url(url, allow_http_loopback=self._allow_http_loopback)
        if isinstance(parsed, str):
            return parsed
        literal = parsed.is_ip_literal
        problem = (
            addresses_problem(parsed, [parsed.host], allow_private=self._allow_private)
            if literal
            else None
        )
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        if (parsed.scheme, parsed.port) not in (("http", 80), ("https", 443)):
            host = f"{host}:{parsed.port}"
        return _Target(
            url=parsed,
            path=_origin_form(url),
            host=host,
            literal=literal,
            problem=problem,
        )

    async def _post_resolving(
        self, target: _Target, headers: dict[str, str], body: bytes
    ) -> Attempt:
        url = target.url
        try:
            addresses = await self._resolve(url.host)
        except CancelledError:
            raise
        except Exception as e:
            return Unreachable(f"cannot resolve {url.host}: {type(e).__name__}")
        if not addresses:
            return Unreachable(f"cannot resolve {url.host}: no address")
        problem = addresses_problem(url, addresses, allow_private=self._allow_private)
        if problem is not None:
            return Refused(problem)
        last: Attempt = Unreachable(f"cannot connect to {url.host}")
        for address in addresses:
            try:
                return await self._request(target, address, headers, body)
            except error.ConnectError as e:  # nothing was sent: try the next address
                last = Unreachable(_describe(e, url, address))
        return last

    def _not_connected(self, failure: Failure, url: WebhookURL, address: str) -> Attempt:
        failure.trap(error.ConnectError)
        return Unreachable(_describe(_reason(failure), url, address))

    def _endpoint(self, target: WebhookURL, address: str) -> IStreamClientEndpoint:
        endpoint_type = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint: IStreamClientEndpoint = endpoint_type(
            self._reactor, address, target.port, timeout=self._connect_timeout
        )
        if target.scheme == "https":
            options = _tls.optionsForClientTLS(target.host, trustRoot=self._trust)
            endpoint = wrapClientTLS(options, endpoint)
        return endpoint

    def _request(
        self, target: _Target, address: str, headers: dict[str, str], body: bytes
    ) -> Deferred[Attempt]:
        """One POST to ``address``: the Attempt, or a failure with a ConnectError
        (nothing was sent) or CancelledError."""
        connections = self.connections
        connections.append((address, target.url.port))
        if len(connections) > 100:
            del connections[0]
        fields = list(self._defaults)
        if not self._persistent:
            fields.append(("Connection", "close"))
        fields.extend(headers.items())
        data = request_bytes(target.path, target.host, fields, body)
        url = target.url
        key = (url.scheme, url.host, url.port, address)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= 1000:  # bounded: forget the oldest
                del self._endpoints[next(iter(self._endpoints))]
            endpoint = self._endpoints[key] = self._endpoint(url, address)
        requested = self._pool.request(key, endpoint, data)
        return requested.addCallbacks(_answered, self._failed, errbackArgs=(url, address))

    def _failed(self, failure: Failure, url: WebhookURL, address: str) -> Attempt | Failure:
        if failure.check(error.ConnectError, CancelledError):
            return failure
        return Unreachable(_describe(_reason(failure), url, address))
