"""Listener addresses, written as Twisted server endpoint descriptions.

Operators already know ``tcp:465:interface=0.0.0.0`` from Twisted, so Rail keeps that syntax,
restricted to plain TCP: Rail adds TLS itself (with its own certificates and client
authentication), so an ``ssl:`` description would bypass it. The interface defaults to
loopback because exposing a port to the network should be a deliberate choice.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

import attrs

__all__ = ["ListenSpec", "parse_listen"]

ListenKind = Literal["tcp", "tcp6"]

_EXAMPLE = '"tcp:443:interface=0.0.0.0"'
_DEFAULT_INTERFACE: dict[ListenKind, str] = {"tcp": "127.0.0.1", "tcp6": "::1"}
# Twisted's listenTCP default is 50: a burst of new SMTP connections while the reactor is
# busy overflowed it (the kernel drops the SYN, the client waits a second to retry). 511 is
# nginx's and Redis's default; the kernel caps it at net.core.somaxconn.
_DEFAULT_BACKLOG = 511
_KEYWORDS = ("port", "interface", "backlog")
_EVERY_ADDRESS: dict[ListenKind, str] = {
    "tcp": "write interface=0.0.0.0 to listen on every IPv4 address",
    "tcp6": "write interface=\\:\\: to listen on every IPv6 address",
}
_NUMBER = re.compile(r"[0-9]+")


@attrs.frozen
class ListenSpec:
    """Where one listener binds: a TCP port on one IP address."""

    kind: ListenKind
    """``tcp`` for IPv4, ``tcp6`` for IPv6, as in Twisted."""
    port: int
    """0 to 65535; 0 asks the OS for a free port (used by tests)."""
    interface: str
    """The IP address to bind, in canonical form (``::1``, not ``0:0:0:0:0:0:0:1``)."""
    backlog: int = _DEFAULT_BACKLOG
    """Length of the kernel's queue of connections not yet accepted."""

    @property
    def description(self) -> str:
        """The canonical Twisted endpoint description, e.g. ``tcp6:443:interface=\\:\\:1``.

        The backlog is written only when it differs from Rail's default, so the
        description of a default listener reads the way operators write it (Rail binds
        with :attr:`backlog`; Twisted would read a description without one as 50).
        """
        text = f"{self.kind}:{self.port}:interface={_escape(self.interface)}"
        if self.backlog != _DEFAULT_BACKLOG:
            text += f":backlog={self.backlog}"
        return text


def parse_listen(text: str) -> ListenSpec:
    """Parse ``tcp:PORT`` or ``tcp6:PORT`` with optional ``interface=`` and ``backlog=``.

    The port may also be given as ``port=N``. Backslash escapes the next character, as in
    Twisted (``tcp6:443:interface=\\:\\:1``). Raises :class:`ValueError` with a message for
    the operator.
    """
    if not text:
        raise ValueError(f"expected an endpoint description like {_EXAMPLE}, got {text!r}")
    args, keywords = _split(text)
    if not args:
        raise ValueError(f"missing endpoint type: write something like {_EXAMPLE}")
    kind = args[0]
    if kind not in ("tcp", "tcp6"):
        if _NUMBER.fullmatch(kind):
            raise ValueError(f'missing endpoint type: write "tcp:{kind}"')
        raise ValueError(
            f"unsupported endpoint type {kind!r}: give a tcp: or tcp6: description like"
            f" {_EXAMPLE} (Rail adds TLS itself)"
        )
    kind_: ListenKind = "tcp" if kind == "tcp" else "tcp6"
    if len(args) > 2:
        raise ValueError(
            f"expected name=value after the port, got {args[2]!r}"
            f" (to choose the address, write interface={_escape(args[2])})"
        )
    if len(args) == 2:
        if "port" in keywords:
            raise ValueError("port given twice")
        keywords["port"] = args[1]
    if "port" not in keywords:
        raise ValueError(f"missing port: write something like {_EXAMPLE}")
    port = _number("port", keywords["port"], 0)
    backlog = _number("backlog", keywords.get("backlog", str(_DEFAULT_BACKLOG)), 1)
    interface = _interface(kind_, keywords.get("interface", _DEFAULT_INTERFACE[kind_]))
    return ListenSpec(kind=kind_, port=port, interface=interface, backlog=backlog)


def _split(text: str) -> tuple[list[str], dict[str, str]]:
    """Split like Twisted's ``endpoints._parse``, but refuse what it silently accepts.

    Twisted keeps the last of a repeated keyword and ignores unknown ones only to fail later
    with a ``TypeError``; here both are errors naming the keyword.
    """
    args: list[str] = []
    keywords: dict[str, str] = {}
    for part in _parts(text):
        if len(part) == 1:
            if keywords:
                raise ValueError(f"expected name=value after a name=value, got {part[0]!r}")
            args.append(part[0])
            continue
        name, value = part
        if name not in _KEYWORDS:
            raise ValueError(f"unknown parameter {name!r}: expected one of {', '.join(_KEYWORDS)}")
        if name in keywords:
            raise ValueError(f"{name} given twice")
        keywords[name] = value
    return args, keywords


def _parts(text: str) -> list[tuple[str, ...]]:
    """Colon-separated parts, each ``(value,)`` or ``(name, value)``, backslash escapes undone.

    After ``=`` only ``:`` ends the value, so a value may contain ``=`` (as in Twisted).
    """
    parts: list[tuple[str, ...]] = []
    current: list[str] = []
    token = ""
    chars = iter(text)
    for char in chars:
        if char == ":":
            parts.append((*current, token))
            current, token = [], ""
        elif char == "=" and not current:
            current, token = [token], ""
        elif char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError(f"endpoint description ends with a lone backslash: {text!r}")
            token += escaped
        else:
            token += char
    parts.append((*current, token))
    return parts


def _number(name: str, text: str, low: int) -> int:
    if not _NUMBER.fullmatch(text) or not low <= int(text) <= 65535:
        raise ValueError(f"{name} must be a number from {low} to 65535, got {text!r}")
    return int(text)


def _interface(kind: ListenKind, text: str) -> str:
    """The canonical form of ``text``, which must be an address of ``kind``'s family."""
    if not text:
        raise ValueError(f"interface must not be empty: {_EVERY_ADDRESS[kind]}")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"interface must be an IP address, got {text!r}") from None
    if kind == "tcp" and address.version != 4:
        raise ValueError(
            f"interface must be an IPv4 address for tcp:, got {text!r} (use tcp6: for IPv6)"
        )
    if kind == "tcp6" and address.version != 6:
        raise ValueError(
            f"interface must be an IPv6 address for tcp6:, got {text!r} (use tcp: for IPv4)"
        )
    return str(address)


def _escape(value: str) -> str:
    return re.sub(r"([\\:=])", r"\\\1", value)
