"""What Rail accepts as an address from an app, decided in one place.

Apps write addresses as free text; Rail takes only the unquoted dot-atom form (plus UTF-8,
sent with SMTPUTF8) with a checked, IDNA-valid domain, so the same address is valid in the
envelope Rail sends and in the header the ``email`` package writes, and no peer has to
guess at quoting rules.
"""

from __future__ import annotations

import re
from email.headerregistry import Address

import attrs

from rail.pki.names import validate_domain

__all__ = ["Mailbox"]

# RFC 5322 atext; non-ASCII characters are allowed too (RFC 6532, sent with SMTPUTF8).
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+")
_MAX_ADDRESS = 254
_MAX_LOCAL = 64


@attrs.frozen
class Mailbox:
    """One address as the app wrote it, split so the envelope gets the bare address and
    the header gets the display name, quoted and encoded by the ``email`` package."""

    display_name: str
    local: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    def header(self) -> Address:
        return Address(display_name=self.display_name, username=self.local, domain=self.domain)


def _address_problem(address: str) -> str | None:
    if not address:
        return "is empty"
    if address.startswith('"'):
        return "has a quoted local part, which Rail does not support"
    if any(c.isspace() for c in address):
        return "must not contain whitespace"
    if len(address.encode("utf-8")) > _MAX_ADDRESS:
        return f"is longer than {_MAX_ADDRESS} octets"
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "must be an address like name@example.com"
    if "@" in local:
        return "must contain exactly one '@'"
    if len(local.encode("utf-8")) > _MAX_LOCAL:
        return f"has a local part longer than {_MAX_LOCAL} octets"
    if not all(_ATEXT.fullmatch(atom) for atom in local.split(".")):
        return "has a local part with a character not allowed in an unquoted address"
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return "has a domain that is not a valid internationalized domain name"
    problem = validate_domain(domain)
    return None if problem is None else f"has an invalid domain: {problem}"


def _unescape(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted)


def _unquote(name: str) -> str:
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        return _unescape(name[1:-1])
    return name
