"""Parsing of SMTP command arguments: HELO/EHLO names, MAIL and RCPT paths and parameters.

Pure functions from bytes to values or a :class:`Reject`, so the protocol class only maps
results to replies. Paths follow RFC 5321 §4.1.2 strictly (angle brackets required, one
optional space after the colon tolerated because widespread clients send it);
internationalized addresses need ``SMTPUTF8`` on MAIL (RFC 6531).
"""

from __future__ import annotations

import ipaddress
import re

import attrs

from rail.policy.verdict import Reject

__all__ = [
    "MailCommand",
    "RcptCommand",
    "parse_helo",
    "parse_mail",
    "parse_rcpt",
    "parse_size_param",
]

_MAX_LOCAL = 64
_MAX_DOMAIN = 255
_MAX_PATH = 256

_SYNTAX = Reject(501, "5.5.4", "Syntax error in parameters or arguments")
_BAD_PATH = Reject(501, "5.1.3", "Bad address syntax")
_BAD_SENDER = Reject(501, "5.1.7", "Bad sender address syntax")
_NEEDS_UTF8 = Reject(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
_UNKNOWN_PARAM = Reject(555, "5.5.4", "Unsupported MAIL or RCPT parameter")

# RFC 5321 Dot-string atoms (atext) and Quoted-string contents; UTF-8 (RFC 6531) is checked
# separately so that these stay ASCII.
_ATOM = re.compile(rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_QUOTED = re.compile(rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_LABEL = re.compile(rb"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_HELO_LABEL = re.compile(rb"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_PARAM = re.compile(rb"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?")
_PATH = re.compile(rb"<([^<>]*)>")


@attrs.frozen
class MailCommand:
    """A parsed ``MAIL FROM``: ``sender`` is ``""`` for the null reverse-path."""

    sender: str
    size: int | None = None
    eight_bit: bool = False
    smtputf8: bool = False


@attrs.frozen
class RcptCommand:
    recipient: str


def _is_utf8(text: bytes) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _domain_ok(domain: bytes, utf8: bool) -> bool:
    if not domain or len(domain) > _MAX_DOMAIN:
        return False
    if domain.startswith(b"["):
        return _literal_ok(domain)
    if not domain.isascii():
        if not utf8:
            return False
        try:
            domain = domain.decode("utf-8").encode("idna")
        except UnicodeError:
            return False
    return all(_LABEL.fullmatch(label) and len(label) <= 63 for label in domain.split(b"."))


def _literal_ok(literal: bytes) -> bool:
    # ipaddress accepts IPv6 zone ids ("%anything"); an address literal has none.
    if not literal.endswith(b"]") or not literal.isascii() or b"%" in literal:
        return False
    inner = literal[1:-1].decode("ascii")
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def _local_ok(local: bytes, utf8: bool) -> bool:
    if not local or len(local) > _MAX_LOCAL:
        return False
    if local.startswith(b'"'):
        return _QUOTED.fullmatch(local) is not None
    if not local.isascii():
        if not utf8:
            return False
        # RFC 6531 extends atext with UTF8-non-ascii; check the ASCII skeleton.
        local = bytes(b if b < 0x80 else 0x61 for b in local)
    return all(_ATOM.fullmatch(atom) for atom in local.split(b"."))


def _mailbox(path: bytes, utf8: bool) -> str | Reject:
    """The address inside ``<...>`` (source route dropped, RFC 5321 §4.1.1.3 and C)."""
    if path.startswith(b"@"):
        colon = path.find(b":")
        if colon < 0:
            return _BAD_PATH
        path = path[colon + 1 :]
    if len(path) > _MAX_PATH - 2:
        return _BAD_PATH
    if not path.isascii():
        if not utf8:
            return _NEEDS_UTF8
        if not _is_utf8(path):
            return _BAD_PATH
    local, at, domain = path.rpartition(b"@")
    if not at or not _local_ok(local, utf8) or not _domain_ok(domain, utf8):
        return _BAD_PATH
    return path.decode("utf-8")


def _split(arg: bytes, keyword: bytes) -> tuple[bytes, list[bytes]] | Reject:
    if arg[: len(keyword)].upper() != keyword:
        return _SYNTAX
    rest = arg[len(keyword) :]
    if rest.startswith(b" "):
        rest = rest[1:]
    match = _PATH.match(rest)
    if match is None:
        return _SYNTAX
    tail = rest[match.end() :]
    if tail and not tail.startswith(b" "):
        return _SYNTAX
    return match.group(1), tail.split()


def parse_size_param(value: bytes | None) -> int | Reject:
    if value is None or not value.isdigit() or len(value) > 20:
        return _SYNTAX
    return int(value)


def parse_mail(arg: bytes, *, esmtp: bool, max_size: int) -> MailCommand | Reject:
    """``arg`` is everything after ``MAIL``, e.g. ``b"FROM:<a@b.example> SIZE=100"``.

    Parameters exist only after EHLO; ``SIZE`` over ``max_size`` is refused here, before
    the client sends the data (RFC 1870).
    """
    split = _split(arg, b"FROM:")
    if isinstance(split, Reject):
        return split
    path, params = split
    if params and not esmtp:
        return _UNKNOWN_PARAM
    size: int | None = None
    eight_bit = smtputf8 = False
    seen: set[bytes] = set()
    for param in params:
        match = _PARAM.fullmatch(param)
        if match is None:
            return _SYNTAX
        name, value = match.group(1).upper(), match.group(2)
        if name in seen:
            return _SYNTAX
        seen.add(name)
        if name == b"SIZE":
            parsed = parse_size_param(value)
            if isinstance(parsed, Reject):
                return parsed
            if parsed > max_size:
                return Reject(552, "5.3.4", "Message size exceeds fixed maximum message size")
            size = parsed
        elif name == b"BODY":
            if value is None or value.upper() not in (b"7BIT", b"8BITMIME"):
                return _UNKNOWN_PARAM
            eight_bit = value.upper() == b"8BITMIME"
        elif name == b"SMTPUTF8" and value is None:
            smtputf8 = True
        else:
            return _UNKNOWN_PARAM
    if path == b"":
        return MailCommand(sender="", size=size, eight_bit=eight_bit, smtputf8=smtputf8)
    mailbox = _mailbox(path, smtputf8)
    if isinstance(mailbox, Reject):
        return _BAD_SENDER if mailbox is _BAD_PATH else mailbox
    return MailCommand(sender=mailbox, size=size, eight_bit=eight_bit, smtputf8=smtputf8)


def parse_rcpt(arg: bytes, *, smtputf8: bool, hostname: str) -> RcptCommand | Reject:
    """``arg`` is everything after ``RCPT``. ``<postmaster>`` without a domain means this
    host's postmaster (RFC 5321 §4.1.1.3); no RCPT parameters are supported."""
    split = _split(arg, b"TO:")
    if isinstance(split, Reject):
        return split
    path, params = split
    if params:
        return _UNKNOWN_PARAM
    if path.lower() == b"postmaster":
        return RcptCommand(recipient=f"postmaster@{hostname}")
    mailbox = _mailbox(path, smtputf8)
    if isinstance(mailbox, Reject):
        return mailbox
    return RcptCommand(recipient=mailbox)


def parse_helo(arg: bytes) -> str | Reject:
    """A HELO/EHLO argument: a host name or an address literal, nothing else.

    It is written into the Received header, so anything that is not a plain name is
    refused rather than escaped. Names without a dot (many hosts' default name) and
    underscores (Windows host names) are tolerated: the name is informational.
    """
    name = arg.strip(b" ")
    if not name or b" " in name:
        return Reject(501, "5.5.4", "Send a host name or address literal")
    if name.startswith(b"["):
        if not _literal_ok(name):
            return Reject(501, "5.5.4", "Invalid address literal")
        return name.decode("ascii")
    stripped = name[:-1] if name.endswith(b".") else name
    if len(stripped) > _MAX_DOMAIN or not all(
        _HELO_LABEL.fullmatch(label) and len(label) <= 63 for label in stripped.split(b".")
    ):
        return Reject(501, "5.5.4", "Invalid host name")
    return name.decode("ascii")
