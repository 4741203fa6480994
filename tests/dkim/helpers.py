"""Keys, messages and dkimpy verification shared by the DKIM tests.

Keys are real and made once per test run (RSA-2048 generation is slow); DNS is a dict
handed to dkimpy's ``dnsfunc``, filled from the same TXT values Rail would publish.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

import dkim
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.util import parse_tag_value

from rail.dkim.records import PublishedKey, record_name, txt_value
from rail.dkim.sign import DomainKeys

__all__ = [
    "KEYS",
    "MESSAGE",
    "NOW",
    "add_message",
    "dns_table",
    "records_of",
    "verify_each",
]

NOW = 1795237702.0  # Sat, 21 Nov 2026 04:28:22 UTC

KEYS = DomainKeys(
    domain="example.com",
    ed25519_selector="r20261121e",
    rsa_selector="r20261121r",
    ed25519_key=ed25519.Ed25519PrivateKey.generate(),
    rsa_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
)

MESSAGE = (
    b"Received: from app.example.com by rail.test; Sat, 21 Nov 2026 04:28:20 +0000\r\n"
    b"From: Example App <noreply@example.com>\r\n"
    b"To: Some One <someone@example.org>\r\n"
    b"Subject: Your order has shipped\r\n"
    b"Date: Sat, 21 Nov 2026 04:28:20 +0000\r\n"
    b"Message-ID: <01JDB3ZK4T8F6M5N9Q2R7S1V0W@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Mailer: tests\r\n"
    b"\r\n"
    b"Your order left our warehouse today.\r\n"
    b"\r\n"
    b"-- \r\n"
    b"Example\r\n"
)


def records_of(keys: DomainKeys) -> list[PublishedKey]:
    """The records Rail would publish for ``keys``."""
    return [
        PublishedKey(keys.ed25519_selector, "ed25519", txt_value(keys.ed25519_key.public_key())),
        PublishedKey(keys.rsa_selector, "rsa", txt_value(keys.rsa_key.public_key())),
    ]


def dns_table(domain: str, records: Iterable[PublishedKey]) -> dict[bytes, bytes]:
    return {record_name(r.selector, domain).encode(): r.txt.encode() for r in records}


def verify_each(message: bytes, table: Mapping[bytes, bytes]) -> list[tuple[str, bool]]:
    """``(algorithm, verified)`` for every DKIM-Signature field, top to bottom, checked by
    dkimpy against ``table`` instead of DNS."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return table.get(name)

    verifier = dkim.DKIM(message)
    fields = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    results = []
    for index, value in enumerate(fields):
        algorithm = parse_tag_value(value)[b"a"].decode()
        try:
            verified = bool(verifier.verify(idx=index, dnsfunc=dnsfunc))
        except dkim.DKIMException:
            verified = False
        results.append((algorithm, verified))
    return results


def add_message(
    connection: sqlite3.Connection, message_id: str, received_at: float, *statuses: str
) -> None:
    """A stored message with one recipient per status, written as the store writes it."""
    connection.execute(
        "INSERT INTO messages (id, client, sender, channel, smtputf8, eight_bit, received_at,"
        " size, sha256, data) VALUES (?, 'app', 'app@example.com', 'smtp', 0, 0, ?, 1, '', x'00')",
        (message_id, received_at),
    )
    for index, status in enumerate(statuses):
        connection.execute(
            "INSERT INTO recipients (message_id, idx, address, status, attempts, updated_at)"
            " VALUES (?, ?, ?, ?, 0, ?)",
            (message_id, index, f"r{index}@example.org", status, received_at),
        )
