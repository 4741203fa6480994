"""The client certificate a request arrived with, if any.

The TLS layer has already verified it against Rail's CA (chain, validity, EKU,
revocation), so a certificate found here is an authenticated identity.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

__all__ = ["peer_certificate"]


def peer_certificate(request: Any) -> x509.Certificate | None:
    transport = request.channel.transport if request.channel is not None else None
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    certificate = get()
    if certificate is None:
        return None
    result: x509.Certificate = certificate.to_cryptography()
    return result
