"""TLS server contexts for Rail's listeners, with Rail's client-certificate rules.

Twisted's ``CertificateOptions`` verifies a client chain against the CA list it is given
but has no hook for revocation, EKU presence or naming Rail's CA in the
CertificateRequest; :func:`server_options` adds those to the context it builds, and
builds it at once so bad TLS material fails at start-up, not at the first connection.
:class:`ServerTLS` is what listeners hold, so new material (SIGHUP, ACME) can be swapped
in for new connections without rebinding ports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet._sslverify import protosFromProtocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from zope.interface import implementer

from rail.pki.clientauth import client_certificate_problem, verify_error_text
from rail.pki.keys import PrivateKey
from rail.pki.revocations import Revocations

__all__ = [
    "ClientAuth",
    "PreparedTLS",
    "ServerMaterial",
    "ServerTLS",
    "replace_all",
    "server_options",
]

_log = Logger()


@attrs.frozen
class ServerMaterial:
    """The server's certificate chain (leaf first) and private key."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey


@attrs.frozen
class ClientAuth:
    """Client certificates verified against Rail's CA.

    ``required`` is True for submission (no certificate, no handshake) and False for
    HTTPS, where paths decide whether they need an identity.
    """

    ca: x509.Certificate
    revocations: Revocations
    required: bool


def server_options(material: ServerMaterial, client_auth: ClientAuth | None) -> CertificateOptions:
    """Build (and eagerly instantiate) the TLS options for one listener."""
    leaf, *rest = material.chain
    extra = [crypto.X509.from_cryptography(c) for c in rest]
    # Twisted accepts cryptography objects here (pyOpenSSL's are deprecated) but its
    # annotations still name PKey/X509.
    key: Any = material.key
    certificate: Any = leaf
    if client_auth is None:
        options = CertificateOptions(
            privateKey=key,
            certificate=certificate,
            extraCertChain=extra,
            raiseMinimumTo=TLSVersion.TLSv1_2,
        )
        options.getContext().set_alpn_select_callback(_alpn_select)
        return options
    ca = crypto.X509.from_cryptography(client_auth.ca)
    options = CertificateOptions(
        privateKey=key,
        certificate=certificate,
        extraCertChain=extra,
        raiseMinimumTo=TLSVersion.TLSv1_2,
        verify=True,
        caCerts=[ca],
        requireCertificate=client_auth.required,
    )
    context = options.getContext()
    flags = SSL.VERIFY_PEER
    if client_auth.required:
        flags |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    context.set_verify(flags, _verifier(lambda: client_auth.revocations.serials))
    store = context.get_cert_store()
    assert store is not None
    store.add_crl(client_auth.revocations.crl)
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
    # Name Rail's CA in the CertificateRequest so clients holding several certificates
    # (browsers, curl with a store) pick the right one.
    context.set_client_ca_list([ca.get_subject()])
    context.set_alpn_select_callback(_alpn_select)
    return options


def _alpn_select(connection: SSL.Connection, offered: list[bytes]) -> Any:
    """Pick the listener's preferred ALPN protocol, or carry on without ALPN.

    Twisted's own callback answers ``b""`` when nothing overlaps, which OpenSSL turns
    into an internal-error alert: curl (h2, http/1.1) against a factory without ALPN,
    or any SMTPS client that offers ALPN, would fail the handshake.
    """
    acceptable = protosFromProtocol(connection.get_app_data(), ())
    for protocol in acceptable:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _verifier(revoked: Callable[[], frozenset[int]]) -> Callable[..., bool]:
    def verify(
        connection: SSL.Connection, certificate: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        if not ok:
            reason = verify_error_text(errno)
            if depth > 0:
                reason = f"{reason} (in the chain, depth {depth})"
            _refused(connection, certificate, reason)
            return False
        if depth != 0:
            return True
        leaf = certificate.to_cryptography()
        problem = client_certificate_problem(leaf, revoked())
        if problem is not None:
            _refused(connection, certificate, problem)
            return False
        return True

    return verify


def _refused(connection: SSL.Connection, certificate: crypto.X509, reason: str) -> None:
    leaf = certificate.to_cryptography()
    try:
        names = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        cn = str(names[0].value) if names else ""
    except (ValueError, TypeError):  # malformed name: still log the refusal
        cn = "(malformed subject)"
    _log.info(
        "refused client certificate {cn!r} serial {serial} from {peer}: {reason}",
        cn=cn,
        serial=format(leaf.serial_number, "x"),
        peer=_peer(connection),
        reason=reason,
    )


def _peer(connection: SSL.Connection) -> str:
    protocol: Any = connection.get_app_data()
    try:
        address = protocol.transport.getPeer()
        return f"{address.host}:{address.port}"
    except AttributeError:
        return "unknown"


@attrs.frozen
class PreparedTLS:
    """A listener's context built for new material, ready to install."""

    material: ServerMaterial
    options: CertificateOptions
    generation: int


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """A listener's current TLS context, rebuilt when its inputs change.

    New material (:meth:`replace`: SIGHUP, ACME) or a new CRL (installed by
    :class:`~rail.pki.revocationwatch.RevocationWatch`) affects new handshakes; open
    connections are checked against the new CRL by their protocols (SMTP ``MAIL FROM``,
    each HTTP request). A new CRL gets a whole new context rather than ``add_crl`` on the old store:
    OpenSSL keeps every CRL added and may prefer an older one issued in the same second.
    """

    def __init__(self, material: ServerMaterial, client_auth: ClientAuth | None) -> None:
        self._client_auth = client_auth
        self._material = material
        self._options = server_options(material, client_auth)
        self._generation = client_auth.revocations.generation if client_auth else 0

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf certificate new connections are served (the console shows its
        expiry)."""
        return self._material.chain[0]

    def replace(self, material: ServerMaterial) -> None:
        """Build the context for new material now (errors surface to the caller)."""
        self.install(self.prepare(material))

    def prepare(self, material: ServerMaterial) -> PreparedTLS:
        """Build the context for ``material`` without using it yet: safe in a worker
        thread (building a context loads the key into OpenSSL), so that the reactor
        thread only has to :meth:`install` it. Errors surface to the caller."""
        auth = self._client_auth
        # Read before building: a CRL installed meanwhile makes _current rebuild.
        generation = auth.revocations.generation if auth else 0
        return PreparedTLS(material, server_options(material, auth), generation)

    def install(self, prepared: PreparedTLS) -> None:
        """New connections use the context :meth:`prepare` built, from now on."""
        self._material = prepared.material
        self._options = prepared.options
        self._generation = prepared.generation

    def _current(self) -> CertificateOptions:
        auth = self._client_auth
        # No file work here, on the reactor thread: RevocationWatch installs a new CRL
        # and this notices its generation.
        if auth is not None:
            if auth.revocations.generation != self._generation:
                self._options = server_options(self._material, auth)
                self._generation = auth.revocations.generation
        return self._options

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self._current().serverConnectionForTLS(tlsProtocol)
        connection.set_app_data(tlsProtocol)
        return connection

    def getContext(self) -> SSL.Context:
        """The current context, for STARTTLS callers that want an old-style factory."""
        return self._current().getContext()


def replace_all(
    listeners: Sequence[ServerTLS],
    material: ServerMaterial,
    in_thread: Callable[[Callable[[], Any]], Deferred[Any]],
) -> Deferred[None]:
    """Give every listener ``material``: the contexts are built by ``in_thread`` (off
    the reactor thread: loading the key into OpenSSL), then installed together on the
    calling thread. If one cannot be built, none is installed and the Deferred fails."""
    built: Deferred[list[PreparedTLS]] = in_thread(
        lambda: [listener.prepare(material) for listener in listeners]
    )

    def install(prepared: list[PreparedTLS]) -> None:
        for listener, context in zip(listeners, prepared, strict=True):
            listener.install(context)

    return built.addCallback(install)
