"""Opening an SMTP session to one address of a remote host, under Rail's TLS policy.

For MX delivery TLS is opportunistic (RFC 7435): STARTTLS whenever offered, without
certificate verification, because refusing an unverifiable certificate would only push
the mail into plaintext. A failed handshake is retried once, in plaintext, on a new
connection; the session's ``tls_active`` then says TLS was not used. For a smarthost TLS
is required: the certificate is verified for ``tls_hostname`` and there is no plaintext
retry. Addresses are literals: name resolution and MX order are the caller's.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any, Literal

from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS
from twisted.logger import Logger

from rail.delivery.client import ClientTimeouts, SMTPClientProtocol
from rail.delivery.outcome import Reply, SessionError

__all__ = ["TLSMode", "open_session"]

_log = Logger()

TLSMode = Literal["opportunistic", "required", "none"]


async def open_session(
    reactor: Any,
    host: str,
    port: int,
    *,
    helo_name: str,
    clock: IReactorTime,
    timeouts: ClientTimeouts,
    connect_timeout: float,
    tls_mode: TLSMode,
    tls_hostname: str | None = None,
    trust_root: Any = None,
) -> SMTPClientProtocol:
    """Connect to ``host`` (an IPv4 or IPv6 literal) and return a ready session.

    Fails with :class:`SessionError`: a local ``451 4.4.1`` when nothing answers or the
    connection is refused, the server's own reply when it refuses the session, ``451
    4.7.x`` when TLS is required but does not work. ``trust_root`` (for ``required``)
    replaces the platform's trust store, e.g. with a private CA.
    """

    async def attempt(tls: Any, require_tls: bool = False) -> SMTPClientProtocol:
        protocol = SMTPClientProtocol(helo_name, clock, tls, timeouts, require_tls=require_tls)
        endpoint = _endpoint(reactor, host, port, connect_timeout)
        try:
            await connectProtocol(endpoint, protocol)
        except ConnectError as error:
            raise SessionError(_connect_failure(host, port, connect_timeout, error)) from error
        return await protocol.ready

    if tls_mode == "none":
        return await attempt(None)
    if tls_mode == "required":
        if not tls_hostname:
            raise ValueError("tls_mode 'required' needs tls_hostname")
        return await attempt(_verified(tls_hostname, trust_root), require_tls=True)
    try:
        return await attempt(_unverified())
    except SessionError as error:
        if not error.tls_failed:
            raise
        _log.info(
            "STARTTLS with {peer} failed ({reply}); retrying in plaintext",
            peer=f"{host}:{port}",
            reply=str(error.reply),
        )
    return await attempt(None)


def _endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    if ipaddress.ip_address(host).version == 6:
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)


def _connect_failure(host: str, port: int, timeout: float, error: ConnectError) -> Reply:
    peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(error, ConnectionRefusedError):
        text = f"connection refused by {peer}"
    elif isinstance(error, TimeoutError):
        text = f"no answer from {peer} within {timeout:g}s"
    else:
        text = f"cannot connect to {peer}: {error}"
    return Reply(451, "4.4.1", text, remote=False)


@functools.cache
def _unverified() -> CertificateOptions:
    """Opportunistic TLS: ``CertificateOptions()`` sets ``VERIFY_NONE`` (one context,
    built once, shared by every connection)."""
    return CertificateOptions()


@functools.lru_cache(maxsize=16)
def _verified(hostname: str, trust_root: Any) -> Any:
    """Verified TLS for ``hostname``: the platform trust store unless ``trust_root``."""
    return optionsForClientTLS(hostname, trustRoot=trust_root)
