"""Header sections on the wire (CRLF bytes): reading and completing what an SMTP client
submitted, and writing the fields of a message the API composes.

Rail changes a submitted message only by adding header fields, never by rewriting the
ones the app wrote, so what the app signed off is what is DKIM-signed and sent. Parsing is
deliberately small: header fields are found by RFC 5322 syntax on raw lines; addresses are
read with the stdlib's strict ``getaddresses``.

Writing gives exactly the bytes ``EmailMessage`` gives for ``message[name] = value`` under
:data:`ASCII_POLICY` or :data:`UTF8_POLICY`. The stdlib parses every value into a token
tree and folds it again, about 30 µs per field; a value that is printable ASCII words and
fits on one 78-character line comes out of that unchanged, so such values are written
directly and everything else still goes through the header registry.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.policy import EmailPolicy
from email.utils import format_datetime, getaddresses
from typing import Any

import attrs

from rail.mail.addresses import Mailbox
from rail.mail.longfields import REGISTRY_MAX, fold_text, join_address_fields

__all__ = [
    "ASCII_POLICY",
    "HEADER_FIELDS",
    "HEADER_SIZE",
    "UTF8_POLICY",
    "HeaderLimits",
    "HeaderSection",
    "WrittenField",
    "completed",
    "format_date",
    "header_excess",
    "is_unstructured",
    "line_limit",
    "parse_header_section",
    "write_address_field",
    "write_field",
]

_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# Where a header field starts: after a CRLF that is not followed by WSP (a fold).
_FIELD_START = re.compile(rb"\r\n(?![ \t])")
_FIELD_PREFIX = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*")


@attrs.frozen
class HeaderSection:
    """``fields`` are (lower-case name, unfolded value) pairs in order; ``end`` is the
    offset where the header section ends (before the empty line), ``has_separator``
    whether the message has the empty line that separates it from the body."""

    fields: tuple[tuple[str, str], ...]
    end: int
    has_separator: bool

    def values(self, name: str) -> list[str]:
        return [value for field, value in self.fields if field == name]

    def has(self, name: str) -> bool:
        return any(field == name for field, _ in self.fields)

    def addresses(self, name: str) -> list[str]:
        """The addr-specs in every ``name`` field; an unparsable field yields ``""``
        (the stdlib raises RecursionError on comments nested a thousand deep)."""
        try:
            pairs = getaddresses(self.values(name))
        except RecursionError:
            pairs = []
        return [address for _, address in pairs] or [""] * len(self.values(name))


def parse_header_section(data: bytes) -> HeaderSection:
    """Find the header fields at the start of ``data`` (CRLF lines).

    The section ends at the empty line, or at the first line that is neither a field nor
    a continuation; such a message has no separator and :func:`completed` adds one, so the
    line stays body rather than becoming a malformed header.

    Fields are cut out whole (a CRLF not followed by WSP starts the next one): the cost is
    linear in the header section however its fields are folded.
    """
    if data.startswith(b"\r\n"):
        return HeaderSection(fields=(), end=0, has_separator=True)
    stop = data.find(b"\r\n\r\n")
    head = data if stop < 0 else data[:stop]
    fields: list[tuple[str, bytes]] = []
    position = 0
    for chunk in _FIELD_START.split(head.removesuffix(b"\r\n")):
        match = _FIELD.match(chunk)
        if match is None:
            return _section(fields, position, False)
        fields.append((match.group(1).decode("ascii").lower(), chunk[match.end() :]))
        position += len(chunk) + 2
    if stop < 0:
        return _section(fields, len(data), False)
    return _section(fields, stop + 2, True)


def _section(fields: list[tuple[str, bytes]], end: int, separator: bool) -> HeaderSection:
    decoded = tuple(
        (name, value.replace(b"\r\n", b"").decode("utf-8", "replace").strip(" \t"))
        for name, value in fields
    )
    return HeaderSection(fields=decoded, end=end, has_separator=separator)


@attrs.frozen
class HeaderLimits:
    """The largest header section Rail takes (``limits.header_size``, in octets up to the
    empty line, and ``limits.header_fields``)."""

    size: int = 1024 * 1024
    fields: int = 1000


HEADER_SIZE = "header_size"
HEADER_FIELDS = "header_fields"


def header_excess(data: bytes, limits: HeaderLimits) -> str | None:
    """:data:`HEADER_SIZE` or :data:`HEADER_FIELDS` when the header section of ``data``
    (as :func:`parse_header_section` delimits it) is over ``limits``, else ``None``.

    Reads at most ``limits.size`` and a few octets of ``data`` and builds nothing per
    field, so checking a hostile message costs no more than the limit allows.
    """
    window = limits.size + 2
    if data.startswith(b"\r\n"):
        return None
    start = 0
    count = 0
    while True:
        if data.startswith(b"\r\n", start):
            return None  # the empty line: the section ended within the limits
        if _FIELD.match(data, start, window) is None:
            name = _FIELD_PREFIX.match(data, start, window)
            if name is not None and name.end() >= window:
                # Cut by the window: a field running past the limit (or a line as long,
                # which SMTP's line limit excludes; it is refused too).
                return HEADER_SIZE
            return None  # a line that is not a field ends the section
        count += 1
        if count > limits.fields:
            return HEADER_FIELDS
        following = _FIELD_START.search(data, start, window)
        if following is None:
            return HEADER_SIZE if len(data) > limits.size else None
        start = following.end()
        if start > limits.size:
            return HEADER_SIZE  # the section ends at the earliest here


def format_date(now: float) -> str:
    """An RFC 5322 date-time in UTC (``Sat, 21 Nov 2026 04:07:13 +0000``).

    The text of the last second is kept: a busy relay stamps many messages a second, and
    formatting a date costs more than the rest of a Received field."""
    second = int(now)
    if _last_date[0] != second:
        _last_date[:] = [second, format_datetime(datetime.fromtimestamp(second, UTC))]
    return str(_last_date[1])


_last_date: list[Any] = [None, ""]


def completed(
    data: bytes,
    section: HeaderSection,
    *,
    prepend: list[str],
    defaults: list[tuple[str, str]],
) -> bytes:
    """``data`` with ``prepend`` fields (complete ``Name: value`` strings, folded with CRLF
    TAB where needed) at the top, and each ``(name, field)`` of ``defaults`` added at the
    end of the header section when no field ``name`` exists."""
    top = "".join(f"{field}\r\n" for field in prepend).encode("utf-8")
    added = "".join(
        f"{field}\r\n" for name, field in defaults if not section.has(name.lower())
    ).encode("utf-8")
    head, body = data[: section.end], data[section.end :]
    if head and not head.endswith(b"\r\n"):
        head += b"\r\n"
    if not section.has_separator:
        body = b"\r\n" + body
    return top + head + added + body


class _CachedHeaderRegistry(HeaderRegistry):
    """The stdlib's registry builds a new header class (``type(...)``) on every lookup,
    which was a third of the API's CPU per message; the classes never change. Every name
    the registry does not know gets the same class, so apps choosing new field names
    cannot grow the cache."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str | None, Any] = {}

    def __getitem__(self, name: str) -> Any:
        key: str | None = name.lower()
        if key not in self.registry:
            key = None
        found = self._classes.get(key)
        if found is None:
            found = self._classes[key] = super().__getitem__(name)
        return found


_REGISTRY = _CachedHeaderRegistry()
# SMTP line ends, 7-bit bodies; raw UTF-8 headers only with SMTPUTF8. Lines of 76, not
# the stdlib's 78: quoted-printable and base64 lines must be at most 76 characters (RFC 2045
# §6.7, §6.8), and the stdlib sizes an encoded word to fill a folded line, which must be at
# most 75 (RFC 2047 §2): one space and 75 characters. Header lines may then be shorter.
MAX_LINE = 76
ASCII_POLICY = policy.SMTP.clone(
    cte_type="7bit", header_factory=_REGISTRY, max_line_length=MAX_LINE
)
UTF8_POLICY = policy.SMTPUTF8.clone(
    cte_type="7bit", header_factory=_REGISTRY, max_line_length=MAX_LINE
)

# Printable ASCII words separated by single spaces: the stdlib's parse and fold give such
# a value back unchanged (when the field fits on one line and holds no encoded word).
_PLAIN = re.compile(r"[!-~]+(?: [!-~]+)*")
# RFC 5322 specials: a display name holding one is written as a quoted string.
_SPECIALS = frozenset('()<>@,:;.\\"[]')


@attrs.frozen
class WrittenField:
    """A header field ready for the wire (folded, CRLF-terminated) and its value as the
    ``email`` package reads it, encoded words decoded: what a line-break check must see.
    ``plain`` fields were written directly, printable ASCII on one line."""

    name: str
    data: bytes
    value: str
    plain: bool = False


def line_limit(write_policy: EmailPolicy[Any]) -> int:
    """Where the policy folds header lines (and the stdlib's rule for ``None``)."""
    return write_policy.max_line_length or sys.maxsize


def _plain(line: str, value: str, limit: int) -> bool:
    return len(line) <= limit and "=?" not in value and _PLAIN.fullmatch(value) is not None


def _registry_field(name: str, value: Any, write_policy: EmailPolicy[Any]) -> WrittenField:
    # Exactly what EmailMessage.__setitem__ stores and BytesGenerator writes.
    _, header = write_policy.header_store_parse(name, value)
    return WrittenField(name, write_policy.fold_binary(name, header), str(header))


def is_unstructured(name: str) -> bool:
    """Whether the registry reads field ``name`` as unstructured text (any field it does
    not know, Subject, Comments...): only those may be longer than
    :data:`~rail.mail.longfields.REGISTRY_MAX` characters."""
    return issubclass(_REGISTRY[name], UnstructuredHeader)


def write_field(
    name: str, value: str, write_policy: EmailPolicy[Any], *, canonical: bool = False
) -> WrittenField:
    """``name: value`` as ``EmailMessage`` writes it. ``canonical`` says Rail generated the
    value in the form the registry writes it (a :func:`format_date` date, a
    ``<id@host>`` Message-ID), so a structured field may skip the registry too."""
    line = f"{name}: {value}"
    unstructured = is_unstructured(name)
    if (canonical or unstructured) and _plain(line, value, line_limit(write_policy)):
        return WrittenField(name, line.encode("ascii") + b"\r\n", value, plain=True)
    if len(value) > REGISTRY_MAX:
        if not unstructured:
            raise ValueError(f"a {name} field cannot be {len(value)} characters long")
        return WrittenField(name, fold_text(name, value, write_policy.utf8), value)
    return _registry_field(name, value, write_policy)


def _mailbox_text(mailbox: Mailbox) -> str | None:
    """The mailbox as ``str(mailbox.header())`` writes it, when that is plain ASCII."""
    address = mailbox.address
    name = mailbox.display_name
    if not address.isascii() or not _PLAIN.fullmatch(address):
        return None
    if not name:
        return address
    if '"' in name or "\\" in name or "=?" in name or not _PLAIN.fullmatch(name):
        return None
    if not _SPECIALS.isdisjoint(name):
        name = f'"{name}"'
    return f"{name} <{address}>"


def write_address_field(
    name: str, mailboxes: Sequence[Mailbox], write_policy: EmailPolicy[Any]
) -> WrittenField:
    """An address field (From, To, Cc, Reply-To) as ``EmailMessage`` writes
    ``message[name] = [Address(...), ...]``."""
    texts: list[str] = []
    for mailbox in mailboxes:
        text = _mailbox_text(mailbox)
        if text is None:
            break
        texts.append(text)
    else:
        value = ", ".join(texts)
        line = f"{name}: {value}"
        if len(line) <= line_limit(write_policy):
            return WrittenField(name, line.encode("ascii") + b"\r\n", value, plain=True)
    if sum(len(m.display_name) + len(m.address) + 4 for m in mailboxes) > REGISTRY_MAX:
        # Too long for the registry's parser in one piece: one mailbox at a time.
        written = [_registry_field(name, [m.header()], write_policy) for m in mailboxes]
        data = join_address_fields(name, [field.data for field in written])
        return WrittenField(name, data, ", ".join(field.value for field in written))
    return _registry_field(name, [mailbox.header() for mailbox in mailboxes], write_policy)
