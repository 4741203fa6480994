"""The DNS TXT records that publish DKIM public keys (RFC 6376 §3.6.1, RFC 8463 §4.2).

One function per form an operator or Rail's DNS server needs: the record value, its
split into character-strings (one TXT string holds at most 255 octets, and an RSA-2048
value is longer), and a zone-file line to paste into someone else's DNS.
"""

from __future__ import annotations

import base64
from typing import Literal

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = [
    "TTL",
    "Algorithm",
    "PublishedKey",
    "record_name",
    "txt_strings",
    "txt_value",
    "zone_line",
]

Algorithm = Literal["ed25519", "rsa"]

TTL = 3600
"""Seconds resolvers may cache a key record: short enough that a fix propagates within the
hour, long enough that verifying receivers rarely have to ask."""

_MAX_STRING = 255


@attrs.frozen
class PublishedKey:
    """One record to publish at ``<selector>._domainkey.<domain>``; ``txt`` is the whole
    value, e.g. ``v=DKIM1; k=ed25519; p=...``."""

    selector: str
    algorithm: Algorithm
    txt: str


def txt_value(public_key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> str:
    """The record value: ed25519 keys are the raw 32 octets (RFC 8463 §4.2), RSA keys the
    DER SubjectPublicKeyInfo (RFC 6376 §3.6.1), both in base64."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def txt_strings(txt: str) -> list[str]:
    """``txt`` cut into character-strings of at most 255 octets; receivers concatenate
    them without separators (RFC 6376 §3.6.2.2), so any cut point is correct."""
    data = txt.encode("ascii")
    return [
        data[start : start + _MAX_STRING].decode("ascii")
        for start in range(0, max(len(data), 1), _MAX_STRING)
    ]


def record_name(selector: str, domain: str) -> str:
    """The owner name of a key record, fully qualified."""
    return f"{selector}._domainkey.{domain}."


def zone_line(domain: str, key: PublishedKey, ttl: int = TTL) -> str:
    """A zone-file line (RFC 1035 master file syntax). The values are base64 and tag
    punctuation, so no quote or backslash ever needs escaping."""
    strings = " ".join(f'"{part}"' for part in txt_strings(key.txt))
    return f"{record_name(key.selector, domain)} {ttl} IN TXT {strings}"
