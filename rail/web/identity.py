"""The client certificate a request arrived with, if any.

The TLS layer verified it against Rail's CA (chain, validity, EKU, revocation) at the
handshake, so a certificate found here is an authenticated identity, as long as it has
not been revoked since: :class:`rail.web.site.RailSite` checks :func:`peer_serial`
against the loaded revocations before every request.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

__all__ = ["peer_certificate", "peer_serial"]

_UNKNOWN = object()


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


def peer_serial(request: Any) -> int | None:
    """The serial of the connection's client certificate, or None without one; read
    once per connection (kept-alive requests reuse it)."""
    channel = request.channel
    serial = getattr(channel, "_rail_serial", _UNKNOWN)
    if serial is _UNKNOWN:
        transport = channel.transport if channel is not None else None
        get = getattr(transport, "getPeerCertificate", None)
        certificate = get() if get is not None else None
        serial = None if certificate is None else certificate.get_serial_number()
        if channel is not None:
            channel._rail_serial = serial
    result: int | None = serial  # type: ignore[assignment]
    return result
