"""A TLS client connection that authenticates the server by its TLSA records (RFC 7672).

``DaneTLS(host, records, now)`` is what the SMTP client passes to ``startTLS``: SNI is
the MX host name, TLS 1.2 at least, renegotiation off, and the certificate chain the
server presents is judged by :func:`rail.delivery.dane.check_chain` inside OpenSSL's
verification, so a chain that does not match ends the handshake (an alert to the server,
no byte of mail sent). The reason travels as the handshake's error,
:class:`DaneMismatch`, which the client reports as ``451 4.7.5 TLS negotiation failed:
DANE: ...`` and the queue defers. OpenSSL's own verdict (the platform trust store) is
ignored: for DANE the DNS is the trust store.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from rail.delivery.dane import TLSARecord, check_chain

__all__ = ["DaneMismatch", "DaneTLS"]


class DaneMismatch(SSL.Error):
    """The server's certificate chain does not satisfy its TLSA records.

    A subclass of OpenSSL's error so that Twisted's TLS transport treats it as any
    failed handshake (pyOpenSSL re-raises what a verify callback raised).
    """


@implementer(IOpenSSLClientConnectionCreator)
class DaneTLS:
    """Client TLS to ``host`` authenticated by ``records``; ``now()`` gives the POSIX
    time for DANE-TA validity checks; ``names`` are further reference identifiers
    accepted for DANE-TA after ``host`` (RFC 7672 §3.2.2)."""

    def __init__(
        self,
        host: str,
        records: Sequence[TLSARecord],
        now: Callable[[], float],
        names: Sequence[str] = (),
    ) -> None:
        self._host = host.rstrip(".").lower()
        self._records = tuple(records)
        self._names = (self._host, *names)
        self._now = now
        self.verdict: str | None = None
        """Why the last handshake's chain passed (for the log), once it has."""
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_RENEGOTIATION)
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        self._context = context

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_tlsext_host_name(self._host.encode("idna"))
        connection.set_connect_state()
        return connection

    def _verify(
        self, connection: SSL.Connection, certificate: Any, errno: int, depth: int, ok: int
    ) -> bool:
        """OpenSSL calls this for every certificate it looks at, the server's own
        (depth 0) last: the whole presented chain is judged then."""
        if depth > 0:
            return True
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
        now = datetime.datetime.fromtimestamp(self._now(), datetime.UTC)
        verdict = check_chain(self._records, chain, self._names, now)
        if not verdict.ok:
            raise DaneMismatch(f"DANE: {verdict.reason} of {self._host}")
        self.verdict = verdict.reason
        return True
