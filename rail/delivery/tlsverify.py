"""Client TLS for outbound SMTP and MTA-STS fetches: shared contexts, one check per session.

Two OpenSSL contexts are built once (at start, where reading the trust store is allowed):
an unverifying one for opportunistic TLS, and a verifying one holding the system's trust
store plus an optional PEM file of extra anchors (``ca_file``, for a private relay or
tests). Both refuse TLS 1.2 renegotiation (``OP_NO_RENEGOTIATION``): a client has no use
for it, and a server that asks gets an alert.

Each connection gets a :class:`PeerCheck`, Twisted's client connection creator, that sends
SNI (the MX or relay name) and, where the requirement asks for web-PKI verification,
records every chain error OpenSSL reports and checks the leaf against the reference names
with service_identity (wildcards per RFC 6125, as RFC 8461 §4.2 asks). Its ``verdict``
says afterwards what failed, as an RFC 8460 result type and a line of text; with
``enforce`` the handshake is also refused, so nothing, not even EHLO, goes to a peer that
failed. A requirement in ``dane`` mode fails closed here until TLSA matching is plugged in
through ``dane_check``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions
from zope.interface import implementer

from rail.delivery.tlspolicy import TLSRequirement

__all__ = ["PeerCheck", "TLSContexts", "Verdict"]

# OpenSSL X509_V_ERR_* codes, grouped by the RFC 8460 result type they are reported as.
_EXPIRED = {9: "certificate is not yet valid", 10: "certificate has expired"}
_UNTRUSTED = {
    2: "unable to get issuer certificate",
    18: "self-signed certificate",
    19: "self-signed certificate in the chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    27: "certificate not trusted",
}


@attrs.frozen
class Verdict:
    """Why a peer's certificate failed: an RFC 8460 result type and a line of text."""

    result: str
    reason: str


DANECheck = Callable[[SSL.Connection, TLSRequirement, str], "Verdict | None"]
"""``(connection, requirement, host) -> Verdict | None``: TLSA matching for ``dane``."""


class TLSContexts:
    """The client contexts, built once; see the module docstring.

    ``ca_file``: extra trust anchors (PEM) added to the system's, or alone when
    ``system_roots`` is False (tests). ``dane_check`` verifies ``dane`` sessions.
    """

    def __init__(
        self,
        ca_file: str | None = None,
        *,
        system_roots: bool = True,
        dane_check: DANECheck | None = None,
    ) -> None:
        self.ca_file = ca_file
        self.dane_check = dane_check
        self.unverified = _context()
        self.verifying = _context()
        if system_roots:
            self.verifying.set_default_verify_paths()
        if ca_file is not None:
            self.verifying.load_verify_locations(ca_file.encode())

    def check(self, requirement: TLSRequirement, host: str) -> PeerCheck:
        """The connection creator for one session to ``host`` (a host name, or an
        address when no name is known) under ``requirement``."""
        verify = requirement.webpki or requirement.mode == "dane"
        return PeerCheck(
            self.verifying if verify else self.unverified,
            host,
            requirement,
            verify=verify,
            enforce=requirement.tls_required,
            dane_check=self.dane_check,
        )

    def https(self, host: str) -> PeerCheck:
        """The connection creator for an HTTPS fetch from ``host`` (an MTA-STS policy
        host): web PKI against ``host``, the handshake refused on failure."""
        requirement = TLSRequirement(mode="sts-enforce", verify_names=(host,))
        return PeerCheck(self.verifying, host, requirement, verify=True, enforce=True)


def _context() -> SSL.Context:
    context: SSL.Context = CertificateOptions().getContext()
    context.set_options(SSL.OP_NO_RENEGOTIATION)
    return context


def _sni(host: str) -> bytes | None:
    """The host name as sent in SNI: an A-label name; never an address (RFC 6066 §3)."""
    name = host.rstrip(".")
    if not name or name.replace(".", "").isdigit() or ":" in name or name.startswith("["):
        return None
    try:
        return name.encode("idna")
    except UnicodeError:
        return None


@implementer(IOpenSSLClientConnectionCreator)
class PeerCheck:
    """Makes the TLS connection of one session and judges the peer's certificate."""

    def __init__(
        self,
        context: SSL.Context,
        host: str,
        requirement: TLSRequirement,
        *,
        verify: bool,
        enforce: bool,
        dane_check: DANECheck | None = None,
    ) -> None:
        self.host = host
        self.requirement = requirement
        # RFC 7672 §8.1: under DANE, SNI names the TLSA base domain, the first of the
        # DANE names (the CNAME-expanded MX name when its TLSA records were used).
        dane_base = requirement.verify_names[0] if requirement.mode == "dane" else None
        self.server_name = _sni(dane_base or host)
        self.verdict: Verdict | None = None
        """Set when verification ran and failed (None: passed, or not checked)."""
        self.verified = False
        """Whether the certificate was checked and passed."""
        self._context = context
        self._verify = verify
        self._enforce = enforce
        self._dane_check = dane_check
        self._errors: list[tuple[int, int]] = []

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        if self.server_name is not None:
            connection.set_tlsext_host_name(self.server_name)
        if self._verify:
            connection.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify_callback
            )
        return connection

    def _verify_callback(
        self, connection: SSL.Connection, cert: Any, error: int, depth: int, ok: int
    ) -> bool:
        if error:
            self._errors.append((error, depth))
        if depth != 0:
            return True  # decided at the leaf, with every error of the chain known
        try:
            self.verdict = self._judge(connection, cert)
        except Exception as e:  # an OpenSSL callback must not raise
            self.verdict = Verdict("validation-failure", f"verification failed: {e}")
        self.verified = self.verdict is None
        return self.verified or not self._enforce

    def _judge(self, connection: SSL.Connection, cert: Any) -> Verdict | None:
        if self.requirement.mode == "dane":
            if self._dane_check is None:
                return Verdict("tlsa-invalid", "DANE verification is not available")
            return self._dane_check(connection, self.requirement, self.host)
        for error, _depth in self._errors:
            if error in _EXPIRED:
                return Verdict("certificate-expired", _EXPIRED[error])
        for error, depth in self._errors:
            text = _UNTRUSTED.get(error, f"verification error {error} at depth {depth}")
            return Verdict(
                "certificate-not-trusted" if error in _UNTRUSTED else "validation-failure", text
            )
        names = self.requirement.names_for(self.host)
        patterns = extract_patterns(cert)
        for name in names:
            try:
                verify_service_identity(patterns, [_service_id(name)], [])
            except VerificationError:
                continue
            return None
        return Verdict(
            "certificate-host-mismatch", f"certificate does not match {' or '.join(names)}"
        )


def _service_id(name: str) -> Any:
    """The reference identity for ``name``: an IP address (a relay named by address)
    or a DNS name."""
    try:
        return IPAddress_ID(name)
    except ValueError:
        return DNS_ID(name)
