"""Validation of what goes into a client certificate: its name, senders and webhook.

A certificate cannot be edited after issuance, so a mistake here lasts for its whole
validity. The checks are therefore strict and return one message per problem, phrased for
the operator who typed the value (the caller prefixes the option name). Each function returns
``None`` when the value is acceptable.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "HTTP_WEBHOOK_MESSAGE",
    "normalize_domain",
    "sender_matches",
    "split_address",
    "validate_client_name",
    "validate_domain",
    "validate_sender",
    "validate_webhook",
]

HTTP_WEBHOOK_MESSAGE = (
    "webhook must use https:// (plain http:// is only allowed for loopback hosts"
    " when webhooks.allow_http_loopback and webhooks.allow_private are both true)"
)

_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]+")
# RFC 5322 atext; a dot-atom is atext runs separated by single dots.
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
# RFC 3986 unreserved, reserved and '%' (fragments are refused separately).
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]+")
_LDH_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
_MAX_NAME = 64
_MAX_ADDRESS = 254
_MAX_LOCAL = 64
_MAX_DOMAIN = 253
_MAX_LABEL = 63


def _has_space_or_control(value: str) -> bool:
    return any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


def validate_client_name(name: str) -> str | None:
    """The name becomes the CN and appears in every audit log line, so keep it shell- and
    log-safe: no spaces, quotes or non-ASCII look-alikes."""
    if not name:
        return "must not be empty"
    if len(name) > _MAX_NAME:
        return f"must be at most {_MAX_NAME} characters"
    if not _NAME_CHARS.fullmatch(name):
        return "may contain only ASCII letters, digits, '.', '_' and '-'"
    if not name[0].isalnum():
        return "must start with a letter or digit"
    return None


def validate_domain(domain: str) -> str | None:
    """A host name as it may appear after the ``@`` of an SMTP Mailbox (RFC 5321 Domain).

    U-labels are refused rather than converted: the certificate must hold exactly the
    bytes that applications will send in MAIL FROM, and that is the A-label form.
    """
    if not domain:
        return "domain must not be empty"
    if domain.startswith("["):
        return "address literals ([...]) are not supported; use a domain name"
    if not domain.isascii():
        try:
            suggestion = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return f"domain {domain!r} is not a valid internationalized domain name"
        return f"domain {domain!r} must be written in punycode ({suggestion!r})"
    if len(domain) > _MAX_DOMAIN:
        return f"domain must be at most {_MAX_DOMAIN} characters"
    labels = domain.split(".")
    if len(labels) < 2:
        return f"domain {domain!r} must contain at least one dot"
    for label in labels:
        if not label:
            return f"domain {domain!r} has an empty label"
        if len(label) > _MAX_LABEL:
            return f"domain label {label!r} is longer than {_MAX_LABEL} characters"
        if not _LDH_LABEL.fullmatch(label):
            return (
                f"domain label {label!r} may contain only letters, digits and '-'"
                " (not at the start or end)"
            )
        if label[:4].lower() == "xn--":
            try:
                # The stdlib codec (IDNA 2003) checks the round trip, not just the punycode.
                label.lower().encode("ascii").decode("idna")
            except UnicodeError:
                return f"domain label {label!r} is not valid punycode"
    if labels[-1].isdigit():
        return f"domain {domain!r} must not end in an all-numeric label"
    return None


def validate_sender(address: str) -> str | None:
    """An RFC 5321 Mailbox with a dot-atom local part.

    Quoted local parts are refused: they are legal but nobody sends from them, and
    supporting them would make "the address as the application writes it" ambiguous.
    """
    if not address:
        return "must not be empty"
    if address.startswith('"'):
        return "quoted local parts are not supported"
    if _has_space_or_control(address):
        return "must not contain whitespace or control characters"
    if len(address) > _MAX_ADDRESS:
        return f"must be at most {_MAX_ADDRESS} characters"
    if "@" not in address:
        return "must be an address like name@example.com"
    local, _, domain = address.rpartition("@")
    if not local:
        return "local part (before '@') must not be empty"
    if not local.isascii():
        return "local part must be ASCII (internationalized addresses are not supported)"
    if "@" in local:
        return "must contain exactly one '@'"
    if len(local) > _MAX_LOCAL:
        return f"local part must be at most {_MAX_LOCAL} characters"
    if not all(_ATEXT.fullmatch(atom) for atom in local.split(".")):
        if local.startswith(".") or local.endswith(".") or ".." in local:
            return "local part must not start or end with '.' or contain '..'"
        return "local part contains a character not allowed in an unquoted address"
    return validate_domain(domain)


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        if not host.endswith("]"):
            return f"webhook host {host!r} is not a valid IPv6 literal"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"webhook host {host!r} is not a valid IPv6 literal"
        return None
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return None
    labels = host.split(".")
    if len(host) > _MAX_DOMAIN or not all(
        len(label) <= _MAX_LABEL and _LDH_LABEL.fullmatch(label) for label in labels
    ):
        return f"webhook host {host!r} is not a valid host name or IP address"
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_webhook(url: str, allow_http_loopback: bool) -> str | None:
    """The URL Rail will POST inbound mail to; it travels in the certificate's URI SAN.

    Plain http is refused except towards loopback in development, because inbound mail
    (and Rail's webhook signature) would otherwise cross the network in clear.
    """
    if not url:
        return "must not be empty"
    if _has_space_or_control(url):
        return "must not contain whitespace or control characters"
    if not url.isascii():
        return "must be ASCII (percent-encode the path and use punycode for the host)"
    if "#" in url:
        return "must not contain a fragment ('#...')"
    if not _URI_CHARS.fullmatch(url):
        return "contains a character that is not allowed in a URL (percent-encode it)"
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in ("https", "http"):
        return "must be an absolute https:// URL (https://host[:port]/path)"
    netloc = re.split(r"[/?]", rest, maxsplit=1)[0]
    if "@" in netloc:
        return "must not contain user information ('user:password@')"
    if netloc.startswith("["):
        end = netloc.find("]") + 1 or len(netloc)
        host, rest = netloc[:end], netloc[end:]
    else:
        host, colon, port = netloc.partition(":")
        rest = colon + port
    if not host:
        return "must include a host (https://host[:port]/path)"
    problem = _host_problem(host)
    if problem is not None:
        return problem
    if rest and not rest.startswith(":"):
        return f"webhook host {netloc!r} is not a valid host name or IP address"
    if rest:
        port = rest[1:]
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"webhook port {port!r} must be a number from 1 to 65535"
    if scheme == "http" and not (allow_http_loopback and _is_loopback(host)):
        return HTTP_WEBHOOK_MESSAGE
    return None


def normalize_domain(domain: str) -> str:
    """The form in which domains are compared: lowercase, without a root dot.

    RFC 5321 makes domains case-insensitive; the trailing dot appears in DNS-style config.
    """
    domain = domain.lower()
    return domain[:-1] if domain.endswith(".") else domain


def split_address(address: str) -> tuple[str, str]:
    """Split at the last ``@`` (a quoted local part may contain ``@``; a domain never does)."""
    local, at, domain = address.rpartition("@")
    if not at:
        raise ValueError(f"{address!r} is not an address (no '@')")
    return local, domain


def sender_matches(allowed: str, candidate: str) -> bool:
    """Sender authorization: the local part is case-sensitive and the domain is not.

    RFC 5321 leaves local-part case to the receiving host; Rail is that host for its
    senders and chooses the strict reading, so ``Alerts@`` does not pass for ``alerts@``.
    """
    try:
        allowed_local, allowed_domain = split_address(allowed)
        local, domain = split_address(candidate)
    except ValueError:
        return False
    return local == allowed_local and domain.lower() == allowed_domain.lower()
