"""Rail's own rules for client certificates, on top of what OpenSSL checks.

OpenSSL verifies the chain to Rail's CA and the validity window during the handshake.
It accepts a leaf with no extended key usage at all, a CA certificate presented as a
leaf, and it knows nothing of Rail's revocations; this module decides those cases so the
TLS glue only has to map a problem to a refused handshake.
"""

from __future__ import annotations

from cryptography import x509

from rail.pki.inspect import (
    PROBLEM_CA_CERTIFICATE,
    PROBLEM_MALFORMED_EXTENSIONS,
    PROBLEM_NOT_CLIENT,
    PROBLEM_REVOKED,
    allows_client_auth,
    is_ca,
)

__all__ = ["client_certificate_problem", "verify_error_text"]


def client_certificate_problem(
    certificate: x509.Certificate, revoked_serials: frozenset[int]
) -> str | None:
    """Return why an already chain-verified leaf must still be refused, or None."""
    try:
        if is_ca(certificate):
            return PROBLEM_CA_CERTIFICATE
        if not allows_client_auth(certificate):
            return PROBLEM_NOT_CLIENT
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return PROBLEM_MALFORMED_EXTENSIONS
    if certificate.serial_number in revoked_serials:
        return PROBLEM_REVOKED
    return None


# X509_V_ERR_* codes that a client certificate realistically hits, in words an operator
# reads in the log; anything else is reported by number.
_VERIFY_ERRORS = {
    2: "issuer certificate not found",
    3: "no revocation list for the issuer",
    7: "certificate signature failure",
    9: "not yet valid",
    10: "expired",
    12: "revocation list expired",
    18: "self-signed certificate",
    19: "self-signed certificate in chain",
    20: "not issued by this Rail CA",
    21: "not issued by this Rail CA",
    23: "revoked",
    24: "invalid CA certificate",
    25: "chain too long (Rail's CA issues no intermediates)",
    26: "not a client certificate (wrong purpose)",
    28: "certificate rejected",
}


def verify_error_text(errno: int) -> str:
    """Name an OpenSSL X509 verification error for the refusal log line."""
    return _VERIFY_ERRORS.get(errno, f"verification error {errno}")
