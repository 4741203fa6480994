"""DKIM signing of outbound mail: ed25519-sha256 and rsa-sha256 together (RFC 8463 §3).

Two signatures because receivers that do not know ed25519 yet must still see a valid
signature, and those that do get the stronger one. Both are relaxed/relaxed (headers and
body survive the re-wrapping and whitespace changes relays make) and over-sign From, so
that nobody can add a second From after signing.

The private-key operations are OpenSSL's (the ``cryptography`` package): dkimpy's RSA is
pure Python and takes 7-8 ms per signature, OpenSSL's a few tenths of a millisecond. RSA
PKCS#1 v1.5 and Ed25519 signatures are deterministic, so the signatures are exactly the
ones dkimpy would compute over the same canonical data.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from email.utils import getaddresses

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from rail.dkim.canonical import relaxed_body, relaxed_field, select_fields, split_message
from rail.dkim.names import a_label

__all__ = ["SIGNED_FIELDS", "DomainKeys", "from_domain", "sign", "signed_header_names"]

SIGNED_FIELDS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
"""The fields signed when present: who, what and when, and what the body means (MIME).
Trace and list fields are left out on purpose: relays add them."""

_OVERSIGNED = b"from"
_LINE = 78  # RFC 5322 §2.1.1 SHOULD
_FIELD_NAME = b"DKIM-Signature"
_SIGNED = tuple(name.encode("ascii") for name in SIGNED_FIELDS)
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


@attrs.frozen
class DomainKeys:
    """What signing for ``domain`` needs: a selector and a loaded private key per
    algorithm (loaded once: parsing a PEM key costs more than a signature)."""

    domain: str
    ed25519_selector: str
    rsa_selector: str
    ed25519_key: ed25519.Ed25519PrivateKey
    rsa_key: rsa.RSAPrivateKey


def signed_header_names(present: list[bytes]) -> list[bytes]:
    """The ``h=`` list for a message whose fields are named ``present`` (lower-case): each
    of :data:`SIGNED_FIELDS` once per occurrence, and ``from`` once more."""
    counts = Counter(present)
    names: list[bytes] = []
    for name in _SIGNED:
        names.extend([name] * (counts[name] + (name == _OVERSIGNED)))
    return names


def sign(data: bytes, keys: DomainKeys, now: float) -> bytes:
    """The two ``DKIM-Signature`` fields for ``data`` (a complete CRLF message), rsa-sha256
    first, folded, CRLF-terminated, to be put in front of ``data`` unchanged.

    RSA comes first for verifiers that only evaluate the topmost signature: those are the
    old ones, which cannot check ed25519. ``t=`` is ``now``. ``ValueError`` if the header
    section has a line that is not a header field.
    """
    fields, body = split_message(data)
    names = signed_header_names([name for name, _ in fields])
    signed = b"".join(select_fields(fields, names))
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
    domain = b"d=" + keys.domain.encode("ascii") + b";"
    common = (
        b"t=" + str(int(now)).encode("ascii") + b";",
        b"h=" + b" : ".join(names) + b";",
        b"bh=" + body_hash + b";",
    )

    rsa_head = _unsigned_field(b"rsa-sha256", domain, keys.rsa_selector, common)
    rsa_signature = keys.rsa_key.sign(signed + _canonical(rsa_head), _PKCS1, _SHA256)
    ed_head = _unsigned_field(b"ed25519-sha256", domain, keys.ed25519_selector, common)
    ed_digest = hashlib.sha256(signed + _canonical(ed_head)).digest()
    ed_signature = keys.ed25519_key.sign(ed_digest)  # RFC 8463 §3: sign the SHA-256 digest
    return _completed(rsa_head, rsa_signature) + _completed(ed_head, ed_signature)


def from_domain(data: bytes) -> str | None:
    """The domain to sign ``data`` for: that of its single From address, lower-cased and
    in A-label form. ``None`` when there is not exactly one From field holding exactly
    one address, or it cannot be read: the message is then sent unsigned rather than
    signed for a domain a verifier would not align with. Addresses are read with the
    stdlib's ``getaddresses``, as sender authorization reads them, so the domain signed
    for is the domain that was authorized."""
    try:
        fields, _ = split_message(data)
    except ValueError:
        return None
    values = [value for name, value in fields if name == b"from"]
    if len(values) != 1:
        return None
    try:
        text = values[0].replace(b"\r\n", b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        addresses = [address for _, address in getaddresses([text]) if address]
    except RecursionError:  # comments nested too deep for the stdlib's parser
        return None
    if len(addresses) != 1:
        return None
    local, at, domain = addresses[0].rpartition("@")
    if not local or not at:
        return None
    return a_label(domain)


def _unsigned_field(
    algorithm: bytes, domain: bytes, selector: str, common: tuple[bytes, ...]
) -> bytes:
    """The signature field up to and including the empty ``b=``, folded only at spaces.

    ``b=`` starts a line of its own, so adding its value changes nothing before it: the
    field hashed here is the field a verifier reconstructs by emptying ``b=``.
    """
    words = [
        b"v=1;",
        b"a=" + algorithm + b";",
        b"c=relaxed/relaxed;",
        domain,
        b"s=" + selector.encode("ascii") + b";",
    ]
    for tag in common:
        words.extend(tag.split(b" "))
    lines = [_FIELD_NAME + b":"]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > _LINE and lines[-1] != _FIELD_NAME + b":":
            lines.append(b"")
        lines[-1] += b" " + word
    return b"\r\n".join(lines) + b"\r\n b="


def _canonical(field: bytes) -> bytes:
    name, _, value = field.partition(b":")
    return relaxed_field(name.lower(), value)


def _completed(field: bytes, signature: bytes) -> bytes:
    """``field`` with the signature appended, folded inside the base64 (which allows FWS)."""
    value = base64.b64encode(signature)
    first = _LINE - 3  # after " b="
    chunks = [value[:first]] + [
        value[start : start + _LINE - 1] for start in range(first, len(value), _LINE - 1)
    ]
    return field + b"\r\n ".join(chunks) + b"\r\n"
