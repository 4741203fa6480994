"""DANE for SMTP (RFC 7672): which TLSA records count, and whether a server's certificate
chain matches them.

Pure decisions on plain values, so the rules are tested with certificates made in a test:

- Only DANE-TA(2) and DANE-EE(3) records with selector full(0) or SPKI(1) and matching
  type full(0), SHA2-256(1) or SHA2-512(2) are *usable* (RFC 7672 §3.1.3: PKIX-TA(0)
  and PKIX-EE(1) are not for SMTP, whose MX hosts have no agreed trust store). A
  non-empty TLSA RRset with no usable record still makes TLS mandatory, without
  authentication (RFC 7672 §2.2, Postfix's "encrypt" level).
- DANE-EE(3): the server's own certificate (or its public key) matches; no name check
  and no expiry check (RFC 7672 §3.1.1): the DNS record is the whole trust decision.
- DANE-TA(2): a certificate of the chain the server presented, above its own, matches
  (RFC 7672 §3.1.2: servers must send the trust anchor's certificate); the server's
  certificate must then chain to it, be within its validity, and name one of the
  reference identifiers (RFC 7672 §3.2.2: the MX host name, sent as SNI) as a DNS-ID.
  The chain is checked by ``cryptography``'s X.509 verifier with that certificate as
  the only trust anchor.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

__all__ = [
    "DANE_EE",
    "DANE_TA",
    "DaneVerdict",
    "TLSARecord",
    "check_chain",
    "usable_records",
]

DANE_TA = 2
DANE_EE = 3
_SELECTORS = (0, 1)
_MATCHING = (0, 1, 2)


@attrs.frozen
class TLSARecord:
    """One TLSA record (RFC 6698 §2.1): usage, selector, matching type, association data."""

    usage: int
    selector: int
    matching: int
    data: bytes

    @property
    def usable(self) -> bool:
        """Whether RFC 7672 lets an SMTP client use this record (see the module docstring)."""
        return (
            self.usage in (DANE_TA, DANE_EE)
            and self.selector in _SELECTORS
            and self.matching in _MATCHING
        )

    @classmethod
    def from_text(cls, text: str) -> TLSARecord:
        """A record from its presentation form, ``"3 1 1 ab12..."``."""
        usage, selector, matching, *data = text.split()
        return cls(int(usage), int(selector), int(matching), bytes.fromhex("".join(data)))

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.matching} {self.data.hex()}"


@attrs.frozen
class DaneVerdict:
    """The outcome of checking a chain: ``ok``, why (for the log and the reply), and for
    a failure its RFC 8460 result type: ``tlsa-invalid`` when no record matches,
    ``validation-failure`` when a DANE-TA anchor matched but the chain or name did not
    verify."""

    ok: bool
    reason: str
    result: str | None = None


def usable_records(records: Sequence[TLSARecord]) -> tuple[TLSARecord, ...]:
    """The records an SMTP client may authenticate with, in their order."""
    return tuple(record for record in records if record.usable)


def _selected(certificate: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return certificate.public_bytes(serialization.Encoding.DER)
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _matches(record: TLSARecord, certificate: x509.Certificate) -> bool:
    selected = _selected(certificate, record.selector)
    if record.matching == 1:
        selected = hashlib.sha256(selected).digest()
    elif record.matching == 2:
        selected = hashlib.sha512(selected).digest()
    return selected == record.data


# Private CAs of MX hosts are not Web PKI CAs: require only what makes a chain a chain
# (CA certificates say they are CAs), not the CA/Browser Forum's extension profile.
_CA_POLICY = verification.ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, verification.Criticality.AGNOSTIC, None
)
# DNS-IDs only (RFC 7672 §3.2.3 makes CN-IDs optional): the server certificate needs a SAN.
_EE_POLICY = verification.ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
)


def _chains_to(
    anchor: x509.Certificate,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    names: Sequence[str],
    now: datetime.datetime,
) -> str | None:
    """None if ``leaf`` chains to ``anchor`` and names one of ``names``; else why not."""
    policy = (
        verification.PolicyBuilder()
        .store(verification.Store([anchor]))
        .time(now)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
    )
    why = "no reference identifier"
    for name in names:
        try:
            verifier = policy.build_server_verifier(verification.DNSName(name))
            verifier.verify(leaf, list(intermediates))
        except verification.VerificationError as error:
            why = str(error)
            continue
        return None
    return why


def check_chain(
    records: Sequence[TLSARecord],
    chain: Sequence[x509.Certificate],
    names: Sequence[str],
    now: datetime.datetime,
) -> DaneVerdict:
    """Whether the chain a server presented (its own certificate first) satisfies the
    usable ``records``, DANE-EE before DANE-TA; ``names`` are the reference identifiers
    for DANE-TA (the MX host name first), ``now`` the time for its validity checks.

    With no usable record the verdict is ok: TLS is then mandatory but unauthenticated.
    """
    usable = usable_records(records)
    if not usable:
        return DaneVerdict(True, "no usable TLSA record: encrypted, not authenticated")
    if not chain:
        return DaneVerdict(False, "the server presented no certificate", "tlsa-invalid")
    leaf, above = chain[0], chain[1:]
    for record in usable:
        if record.usage == DANE_EE and _matches(record, leaf):
            return DaneVerdict(True, f"DANE-EE record {record.selector} {record.matching}")
    failures: list[str] = []
    for record in usable:
        if record.usage != DANE_TA:
            continue
        for anchor in above:
            if not _matches(record, anchor):
                continue
            why = _chains_to(anchor, leaf, above, names, now)
            if why is None:
                return DaneVerdict(True, f"DANE-TA record {record.selector} {record.matching}")
            failures.append(why)
    if failures:
        return DaneVerdict(
            False,
            f"the certificate does not verify with the DANE-TA anchor: {failures[0]}",
            "validation-failure",
        )
    return DaneVerdict(
        False, "no TLSA record matches the server's certificate chain", "tlsa-invalid"
    )
