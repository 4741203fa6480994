"""Readers: small functions that check one value of the document and convert it.

A reader takes the value found at a :class:`Cursor` and returns the config value, or raises
:class:`InvalidError` (one problem, reported at the cursor's path by whoever called it) or
:class:`ReportedError` (a list or mapping whose items' problems are already recorded, each at
its own path). Readers compose: :func:`section` turns a table of them into a reader of a
mapping, :func:`list_of` one reader into a reader of a list. Every "expected X, got Y" message
in the configuration comes from here, so they read alike.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import attrs

from rail.config.errors import ROOT, Problem, index_path, key_path
from rail.config.listen import parse_listen
from rail.config.units import parse_duration, parse_size

__all__ = [
    "Cursor",
    "InvalidError",
    "Reader",
    "ReportedError",
    "boolean",
    "choice",
    "client_name",
    "domain_name",
    "duration",
    "email",
    "host",
    "integer",
    "ip_address",
    "kind",
    "list_of",
    "listener",
    "nameserver",
    "non_empty",
    "optional",
    "path",
    "read_value",
    "route_match",
    "section",
    "size",
    "spf_term",
    "suggestion",
    "text",
    "unique",
    "uri",
]


class InvalidError(Exception):
    """The value at the reader's path is wrong; the argument is the message for the operator."""


class ReportedError(Exception):
    """A reader of a mapping or list has already recorded its items' problems."""


@attrs.frozen
class Cursor:
    """Where in the document a reader is, and where it records problems."""

    path: str
    base_dir: Path
    problems: list[Problem]

    def key(self, key: str) -> Cursor:
        return attrs.evolve(self, path=key_path(self.path, key))

    def index(self, index: int) -> Cursor:
        return attrs.evolve(self, path=index_path(self.path, index))

    def report(self, message: str) -> None:
        self.problems.append(Problem(self.path or ROOT, message))


Reader = Callable[[object, Cursor], Any]
"""Turns the document's value at the cursor into a config value (see the module docstring)."""


def read_value(reader: Reader, value: object, at: Cursor) -> tuple[bool, Any]:
    """Run ``reader``, recording its problem; return whether it produced a value, and it."""
    try:
        return True, reader(value, at)
    except InvalidError as e:
        at.report(str(e))
    except ReportedError:
        pass
    return False, None


# -- Types and messages ---------------------------------------------------------------------


def kind(value: object) -> str:
    """The YAML name of ``value``'s type, for "expected X, got Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, datetime):
        return "timestamp"
    names = {str: "string", dict: "mapping", list: "list", date: "date", bytes: "binary"}
    return names.get(type(value), type(value).__name__)


def suggestion(word: str, choices: Mapping[str, object] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to a mistyped ``word``, if any is
    close: most unknown keys are typos, and the fix is then obvious."""
    matches = difflib.get_close_matches(word.lower(), list(choices), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


# -- Leaf readers ---------------------------------------------------------------------------


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidError(f"expected a string, got {kind(value)}")
    return value


def boolean(value: object, at: Cursor) -> bool:
    """A YAML boolean. The string ``"false"`` is truthy in Python, so strings are refused
    rather than converted."""
    if not isinstance(value, bool):
        raise InvalidError(f"expected true or false, got {kind(value)}")
    return value


_LDH_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def domain_name(noun: str) -> Reader:
    """A reader of DNS names in letters, digits and hyphens, returned lowercase.

    A name needs a dot (or is ``localhost``) because a single label is resolved through
    search domains, which is never what a mail server's own name should depend on.
    """

    def read(value: object, at: Cursor) -> str:
        text = _string(value)
        name = text.lower().removesuffix(".")
        if not name.isascii():
            raise InvalidError(
                f"expected an ASCII {noun} (write internationalized names in their xn-- form),"
                f" got {text!r}"
            )
        if len(name) > 253 or not all(_LDH_LABEL.fullmatch(label) for label in name.split(".")):
            raise InvalidError(
                f"expected a {noun} of dot-separated labels of letters, digits and hyphens,"
                f" got {text!r}"
            )
        if "." not in name and name != "localhost":
            raise InvalidError(f"expected a fully qualified {noun} (with a dot), got {text!r}")
        if name.rsplit(".", 1)[-1].isdigit():
            raise InvalidError(f"expected a {noun}, not an IP address, got {text!r}")
        return name

    return read


def path(value: object, at: Cursor) -> Path:
    """A file system path; relative ones are joined to the config file's directory, so the
    meaning of the file does not depend on where Rail is started from."""
    if not isinstance(value, str):
        raise InvalidError(f"expected a path, got {kind(value)}")
    if not value or "\0" in value:
        raise InvalidError(f"expected a path, got {value!r}")
    if value.startswith("~"):
        raise InvalidError(
            f"'~' is not expanded: give an absolute path or one relative to the configuration"
            f" file, got {value!r}"
        )
    return at.base_dir / value


def optional(reader: Reader) -> Reader:
    """``reader``, except that null means "not set"."""
    return lambda value, at: None if value is None else reader(value, at)


def choice(choices: tuple[str, ...]) -> Reader:
    """A reader of one of ``choices``, spelled exactly."""
    expected = "expected one of " + ", ".join(repr(option) for option in choices)

    def read(value: object, at: Cursor) -> str:
        if not isinstance(value, str):
            raise InvalidError(f"{expected}, got {kind(value)}")
        if value not in choices:
            raise InvalidError(f"{expected}, got {value!r}{suggestion(value, choices)}")
        return value

    return read


def duration(low: str, high: str) -> Reader:
    """A reader of durations from ``low`` to ``high``, both written as in the documentation."""
    bounds = parse_duration(low), parse_duration(high)

    def read(value: object, at: Cursor) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidError(f'expected a duration like "15m" or "5d", got {kind(value)}')
        try:
            seconds = parse_duration(value)  # type: ignore[arg-type]  # numbers: a clear error
        except ValueError as e:
            raise InvalidError(str(e)) from None
        if not bounds[0] <= seconds <= bounds[1]:
            raise InvalidError(f'expected a duration from "{low}" to "{high}", got {value!r}')
        return seconds

    return read


def integer(low: int, high: int) -> Reader:
    """A reader of whole numbers from ``low`` to ``high`` (booleans and floats refused)."""

    def read(value: object, at: Cursor) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidError(f"expected a whole number, got {kind(value)}")
        if not low <= value <= high:
            raise InvalidError(f"expected a number from {low} to {high}, got {value}")
        return value

    return read


def size(low: str, high: str) -> Reader:
    """A reader of sizes from ``low`` to ``high``, both written as in the documentation."""
    bounds = parse_size(low), parse_size(high)

    def read(value: object, at: Cursor) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidError(f'expected a size like "50MB" or "64KB", got {kind(value)}')
        try:
            count = parse_size(value)
        except ValueError as e:
            raise InvalidError(str(e)) from None
        if not bounds[0] <= count <= bounds[1]:
            raise InvalidError(f'expected a size from "{low}" to "{high}", got {value!r}')
        return count

    return read


def host(value: object, at: Cursor) -> str:
    """A host name (lower-cased) or an IP address literal."""
    text = _string(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return domain_name("host name")(text, at)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def client_name(value: object, at: Cursor) -> str:
    """A client name (a certificate CN as ``rail certs issue --name`` accepts it)."""
    text = _string(value)
    if not _NAME.fullmatch(text):
        raise InvalidError(
            f"expected a client name of letters, digits, '.', '_' and '-', got {text!r}"
        )
    return text


_SPF_TERM = re.compile(r"[+?~-]?(include|a|mx|ip4|ip6|exists|ptr)([:/][!-~]+)?")


def spf_term(value: object, at: Cursor) -> str:
    """One SPF mechanism (RFC 7208 §5), e.g. ``include:_spf.example.net``."""
    text = _string(value)
    if not _SPF_TERM.fullmatch(text):
        raise InvalidError(f"expected an SPF mechanism like include:_spf.example.net, got {text!r}")
    return text


def ip_address(version: int) -> Reader:
    """A reader of IPv4 (``version`` 4) or IPv6 (6) addresses, returned in canonical form."""

    def read(value: object, at: Cursor) -> str:
        text = _string(value)
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidError(f"expected an IPv{version} address, got {text!r}") from None
        if address.version != version:
            raise InvalidError(f"expected an IPv{version} address, got {text!r}")
        return str(address)

    return read


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def email(value: object, at: Cursor) -> str:
    """An email address ``local@domain`` (shape only: the CA or the mail will judge it)."""
    text = _string(value)
    if not _EMAIL.fullmatch(text):
        raise InvalidError(f"expected an email address like ops@example.org, got {text!r}")
    return text


def uri(schemes: tuple[str, ...]) -> Reader:
    """A reader of URIs with one of ``schemes`` (``https``, ``mailto``...)."""
    expected = " or ".join(f"{scheme}:" for scheme in schemes)

    def read(value: object, at: Cursor) -> str:
        text = _string(value)
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() not in schemes or not rest.strip("/") or " " in text:
            raise InvalidError(f"expected a {expected} URI, got {text!r}")
        return text

    return read


def text(low: int, high: int) -> Reader:
    """A reader of a line of printable text of ``low`` to ``high`` characters."""

    def read(value: object, at: Cursor) -> str:
        string = _string(value)
        if not low <= len(string) <= high or not string.isprintable():
            raise InvalidError(
                f"expected {low} to {high} printable characters on one line, got {string!r}"
            )
        return string

    return read


def route_match(value: object, at: Cursor) -> str:
    """An inbound route pattern: ``*@domain``, ``local@domain`` or ``regex:PATTERN``."""
    text = _string(value)
    if text.startswith("regex:"):
        try:
            re.compile(text[6:])
        except re.error as e:
            raise InvalidError(f"invalid regular expression {text[6:]!r}: {e}") from None
        return text
    local, at_sign, domain = text.rpartition("@")
    if not at_sign or not local or not domain:
        raise InvalidError(f'expected "*@domain", "local@domain" or "regex:PATTERN", got {text!r}')
    return f"{local}@{domain_name('domain name')(domain, at)}"


def nameserver(value: object, at: Cursor) -> tuple[str, int]:
    """A resolver address: ``"ip"``, ``"ip:port"`` or ``"[ip6]:port"`` (port 53 if absent)."""
    text = _string(value)
    address, port = text, 53
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            raise InvalidError(f'expected "ip", "ip:port" or "[ip6]:port", got {text!r}')
        address, rest = text[1:end], text[end + 2 :]
        port_text: str | None = rest if text[end + 1 :] else None
    elif text.count(":") == 1:
        address, port_text = text.split(":")
    else:
        port_text = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InvalidError(f"expected a port from 1 to 65535 in {text!r}")
        port = int(port_text)
    try:
        return str(ipaddress.ip_address(address)), port
    except ValueError:
        raise InvalidError(f"expected an IP address (not a name), got {address!r}") from None


def listener(value: object, at: Cursor) -> object:
    """An endpoint description, or null to disable the listener."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidError(
            f'expected an endpoint description like "tcp:443:interface=0.0.0.0" or null,'
            f" got {kind(value)}"
        )
    try:
        return parse_listen(value)
    except ValueError as e:
        raise InvalidError(str(e)) from None


# -- Lists and sections ---------------------------------------------------------------------


def list_of(reader: Reader, what: str) -> Reader:
    """A reader of a list whose items ``reader`` reads, each problem at its index."""

    def read(value: object, at: Cursor) -> tuple[object, ...]:
        if not isinstance(value, list):
            raise InvalidError(f"expected a list of {what}, got {kind(value)}")
        results = [read_value(reader, item, at.index(i)) for i, item in enumerate(value)]
        if not all(ok for ok, _ in results):
            raise ReportedError()
        return tuple(item for _, item in results)

    return read


def non_empty(reader: Reader) -> Reader:
    """``reader`` of a list, refusing an empty one (null is how to say "not set")."""

    def read(value: object, at: Cursor) -> tuple[object, ...]:
        items: tuple[object, ...] = reader(value, at)
        if not items:
            raise InvalidError("expected at least one item, got an empty list")
        return items

    return read


def unique(reader: Reader) -> Reader:
    """``reader``, with repeated items of its tuple dropped (the first one stays)."""
    return lambda value, at: tuple(dict.fromkeys(reader(value, at)))


def section(
    cls: type[Any],
    fields: Mapping[str, Reader],
    required: Mapping[str, str] | None = None,
    check: Callable[[Mapping[str, Any]], str | tuple[str, str] | None] | None = None,
) -> Reader:
    """A reader of a mapping into ``cls``, with one reader per attribute of ``cls``.

    A key that is absent takes the schema's default, unless ``required`` maps it to the
    problem to report. ``check`` looks at the section as a whole once its fields are valid,
    and returns the problem, reported at the section's path (or a ``(key, problem)`` pair,
    reported at that key's), or ``None``.
    """
    if set(fields) != set(attrs.fields_dict(cls)):
        raise TypeError(f"readers for {sorted(fields)} do not match the attributes of {cls}")
    required = required or {}

    def read(value: object, at: Cursor) -> object:
        if not isinstance(value, dict):
            raise InvalidError(f"expected a mapping, got {kind(value)}")
        values: dict[str, Any] = {}
        valid = True
        for key, item in value.items():
            if not isinstance(key, str):
                at.report(f"expected keys to be strings, got {kind(key)} {key!r}")
                valid = False
            elif key not in fields:
                at.key(key).report("unknown key" + suggestion(key, fields))
                valid = False
            else:
                ok, values[key] = read_value(fields[key], item, at.key(key))
                valid = valid and ok
        for key, message in required.items():
            if key not in value:
                at.key(key).report(message)
                valid = False
        if not valid:
            raise ReportedError()
        problem = check(values) if check else None
        if isinstance(problem, tuple):  # (key, problem): reported at the key's path
            at.key(problem[0]).report(problem[1])
            raise ReportedError()
        if problem:
            raise InvalidError(problem)
        return cls(**values)

    return read


def auth_username(value: object, at: Cursor) -> str:
    """An SMTP AUTH user name: 1-255 characters, none of them a control character (it is
    sent base64-encoded, but a NUL would split a PLAIN response)."""
    text = _string(value)
    if not 0 < len(text) <= 255 or not text.isprintable():
        raise InvalidError(f"expected a user name of 1-255 printable characters, got {text!r}")
    return text
