"""The signed return path: a per-message VERP address on a bounce domain Rail controls.

Outbound mail goes out with ``MAIL FROM:<b-ULID-TAG@bounces.example.com>`` instead of the
app's own address, so a bounce or a complaint that comes back later names the message it
is about. ``ULID`` is Rail's message id; ``TAG`` is the first 64 bits of an HMAC-SHA256,
keyed with a secret in ``data_dir`` (:mod:`rail.bounces.secret`), over the message id and
the bounce domain: nobody without the secret can make an address that names a message,
so a report to an address whose tag does not verify is not about any message of Rail's.

One address per message, not per recipient: a message's recipients in one domain go in
one SMTP transaction, and one MAIL FROM per recipient would cost one transaction per
recipient. The recipient a report is about is read from the report itself (RFC 3464
``Final-Recipient``, RFC 5965 ``Original-Rcpt-To``) and must be one of the message's.

Pure: values in, values out. Local parts are matched case-insensitively, since some
mail systems change the case of an address they answer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection

import attrs

from rail.config.bouncedomain import DEFAULT_TEMPLATE, PLACEHOLDER, template_problem
from rail.dkim.names import a_label

__all__ = ["DEFAULT_TEMPLATE", "ReturnPaths", "VerpAddress"]

_TAG_LENGTH = 16  # hex digits: 64 bits
_LOCAL = re.compile(r"b-([0-9a-hjkmnp-tv-z]{26})-([0-9a-f]{16})", re.IGNORECASE)
_LABEL = b"rail verp v1\0"


@attrs.frozen
class VerpAddress:
    """A return path whose tag verified: it names ``message_id`` and was made for the
    sender domain ``domain`` (whose bounce domain is ``bounce_domain``)."""

    message_id: str
    domain: str
    bounce_domain: str


@attrs.frozen
class ReturnPaths:
    """Makes and checks return paths with ``secret`` (at least 16 bytes) under
    ``template`` (see :func:`template_problem`)."""

    secret: bytes = attrs.field(repr=False)
    template: str = DEFAULT_TEMPLATE

    def __attrs_post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the VERP secret must hold at least 16 bytes")
        problem = template_problem(self.template)
        if problem is not None:
            raise ValueError(f"bounce domain template {self.template!r} {problem}")

    def bounce_domain(self, domain: str) -> str:
        """The bounce domain of sender domain ``domain`` (lower-cased)."""
        return self.template.replace(PLACEHOLDER, domain.lower().rstrip("."))

    def sender_domain(self, bounce_domain: str) -> str | None:
        """The sender domain whose bounce domain ``bounce_domain`` is, if it has the
        template's shape; None otherwise."""
        prefix, suffix = self.template.split(PLACEHOLDER)
        name = bounce_domain.lower().rstrip(".")
        if len(name) <= len(prefix) + len(suffix):
            return None
        if not (name.startswith(prefix) and name.endswith(suffix)):
            return None
        return name[len(prefix) : len(name) - len(suffix)] or None

    def _tag(self, message_id: str, bounce_domain: str) -> str:
        text = f"{message_id.upper()}\0{bounce_domain.lower()}".encode("ascii")
        return hmac.new(self.secret, _LABEL + text, hashlib.sha256).hexdigest()[:_TAG_LENGTH]

    def address(self, message_id: str, sender: str) -> str:
        """The return path of ``message_id`` from envelope sender ``sender``. The null
        reverse-path (a DSN) stays null: bounces are never VERP'd."""
        if not sender:
            return sender
        domain = sender.rpartition("@")[2]
        bounce_domain = self.bounce_domain(a_label(domain) or domain)
        tag = self._tag(message_id, bounce_domain)
        return f"b-{message_id.upper()}-{tag}@{bounce_domain}"

    def looks_like(self, local: str) -> bool:
        """Whether ``local`` has the shape of a VERP local part (tag not checked)."""
        return _LOCAL.fullmatch(local) is not None

    def verify(self, address: str, domains: Collection[str] | None = None) -> VerpAddress | None:
        """The message ``address`` names if it is a return path Rail made (its tag
        verifies, in constant time) and, when ``domains`` is given, its sender domain is
        one of them; None for anything else."""
        local, at, bounce_domain = address.rpartition("@")
        if not at:
            return None
        match = _LOCAL.fullmatch(local)
        if match is None:
            return None
        domain = self.sender_domain(bounce_domain)
        if domain is None or (domains is not None and domain not in domains):
            return None
        message_id = match.group(1).upper()
        expected = self._tag(message_id, bounce_domain)
        if not hmac.compare_digest(expected, match.group(2).lower()):
            return None
        return VerpAddress(message_id, domain, bounce_domain.lower().rstrip("."))
