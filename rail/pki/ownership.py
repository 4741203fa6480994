"""Which client owns a sender address, and where valid certificates disagree about it.

An address in a certificate's email SANs is two things: a sender the client may use and,
when the client has a webhook, the address whose inbound mail Rail POSTs to it. Two
clients holding one address could each send as the other, and inbound routing would have
to pick one of them; so ``rail certs issue`` refuses an address another client's valid
certificate holds (unless ``--allow-shared-address``), and where a registry holds such a
conflict anyway, the client whose certificate listing it was issued first keeps it.

Several valid certificates with one name (a rotation in progress) are one client: they
never conflict with each other.

Pure: works on :class:`~rail.pki.registry.CertificateRecord` values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from rail.pki.names import normalize_domain

if TYPE_CHECKING:  # the registry checks claims with this module
    from rail.pki.registry import CertificateRecord

__all__ = [
    "AddressConflict",
    "AddressKey",
    "Holder",
    "address_conflicts",
    "address_key",
    "claim_conflicts",
    "valid_in_issue_order",
]

AddressKey = tuple[str, str]
"""(local part exactly, domain as a lower-case A-label): the form routing compares."""


def address_key(address: str) -> AddressKey:
    """The local part is case-sensitive (as for sender authorization), the domain is not.
    Certificates hold ASCII domains only (U-labels are refused at issue), so this is
    also the A-label that routing compares with."""
    local, _, domain = address.rpartition("@")
    return local, normalize_domain(domain)


@attrs.frozen
class Holder:
    """One client holding an address: its name, and its earliest valid certificate
    that lists the address."""

    name: str
    serial: int
    issued_at: datetime


@attrs.frozen
class AddressConflict:
    """``address`` is in valid certificates of more than one client. ``holders`` has one
    entry per client in the order their certificates were issued: ``holders[0]`` keeps
    the address for inbound routing."""

    address: str
    holders: tuple[Holder, ...]

    @property
    def owner(self) -> str:
        return self.holders[0].name

    def describe(self) -> str:
        """The holders as an operator reads them: ``'app' (serial 1f, issued ...)``."""
        return ", ".join(
            f"{h.name!r} (serial {h.serial:x}, issued {h.issued_at:%Y-%m-%d %H:%M:%S}Z)"
            for h in self.holders
        )


def valid_in_issue_order(
    records: Iterable[CertificateRecord], now: datetime
) -> list[CertificateRecord]:
    """The records valid at ``now``, oldest issue first (serial breaks ties), so that
    every decision built on them is the same whatever order the registry returned."""
    return sorted(
        (r for r in records if r.status(now) == "valid"), key=lambda r: (r.issued_at, r.serial)
    )


def _holders(
    records: Iterable[CertificateRecord], now: datetime
) -> dict[AddressKey, tuple[str, list[Holder]]]:
    found: dict[AddressKey, tuple[str, list[Holder]]] = {}
    for record in valid_in_issue_order(records, now):
        for sender in record.senders:
            _spelling, holders = found.setdefault(address_key(sender), (sender, []))
            if all(h.name != record.name for h in holders):
                holders.append(Holder(record.name, record.serial, record.issued_at))
    return found


def address_conflicts(records: Iterable[CertificateRecord], now: datetime) -> list[AddressConflict]:
    """Every address that valid certificates of two or more clients list, in the order
    the addresses were first issued."""
    return [
        AddressConflict(address, tuple(holders))
        for address, holders in _holders(records, now).values()
        if len(holders) > 1
    ]


def claim_conflicts(
    record: CertificateRecord, records: Iterable[CertificateRecord], now: datetime
) -> list[AddressConflict]:
    """The addresses of ``record`` (about to be added) that another client's valid
    certificate already holds; ``record`` is the last holder of each."""
    others = _holders((r for r in records if r.name != record.name), now)
    newcomer = Holder(record.name, record.serial, record.issued_at)
    conflicts = []
    for sender in record.senders:
        held = others.get(address_key(sender))
        if held is not None:
            conflicts.append(AddressConflict(sender, (*held[1], newcomer)))
    return conflicts
