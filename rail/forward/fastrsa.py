"""dkimpy's ARC signing with OpenSSL's RSA instead of its pure-Python arithmetic.

dkimpy signs rsa-sha256 with Python integers (two modular exponentiations per signature,
7-8 ms each, and an ASN.1 parse of the PEM key per call); an ARC set is two signatures,
so sealing cost about 15 ms of CPU per forwarded message. RSASSA-PKCS1-v1_5 is
deterministic: OpenSSL (the ``cryptography`` package, as :mod:`rail.dkim.sign` uses)
computes the very same signature in a fraction of a millisecond.

:func:`install` replaces, in dkimpy's namespace, ``parse_pem_private_key`` with one that
remembers each key it parsed (up to :data:`_MAX_KEYS`) together with its OpenSSL form, and
``RSASSA_PKCS1_v1_5_sign`` with one that signs such a key's SHA-256 digest through
OpenSSL. Anything else (another digest, a key dict built elsewhere) goes to dkimpy's own
functions, so other users of dkimpy in the process get the same bytes as before. Done
once, when :mod:`rail.forward.copies` is imported, as :mod:`rail.inbound.spfcheck`
installs its pyspf hook.
"""

from __future__ import annotations

import threading
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

__all__ = ["install"]

_MAX_KEYS = 256
_original_parse = dkim.parse_pem_private_key
_original_sign = dkim.RSASSA_PKCS1_v1_5_sign
_lock = threading.Lock()
_keys: dict[bytes, _Key] = {}


class _Key(dict[str, Any]):
    """dkimpy's key dict, with the same key loaded by OpenSSL."""

    openssl: rsa.RSAPrivateKey


def _parse(data: bytes) -> Any:
    key = _keys.get(data)
    if key is not None:
        return key
    parsed = _original_parse(data)
    loaded = serialization.load_pem_private_key(data, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        return parsed
    key = _Key(parsed)
    key.openssl = loaded
    with _lock:
        if len(_keys) < _MAX_KEYS:
            _keys[data] = key
    return key


def _sign(digest: Any, private_key: Any) -> bytes:
    if isinstance(private_key, _Key) and digest.name.lower() == "sha256":
        return private_key.openssl.sign(
            digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
    return bytes(_original_sign(digest, private_key))


def install() -> None:
    """Route dkimpy's RSA signing through OpenSSL (idempotent)."""
    dkim.parse_pem_private_key = _parse
    dkim.RSASSA_PKCS1_v1_5_sign = _sign
