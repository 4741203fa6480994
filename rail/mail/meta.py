"""An app's ``tag`` and ``metadata`` on a message: their bounds, from JSON and from headers.

The same bounds hold on both paths (docs/api.md, "Metadata and tags"): at most
:data:`MAX_KEYS` keys, each 1 to :data:`MAX_KEY` characters of ``[A-Za-z0-9_.-]``, each
value a string of at most :data:`MAX_VALUE` characters, a tag of 1 to :data:`MAX_TAG`
characters, and no control characters anywhere. What breaks a bound is refused, never
cut: the app would otherwise search for a value Rail never stored.

Over SMTP the app writes ``X-Rail-Tag: ...`` and ``X-Rail-Metadata-<key>: ...`` header
fields. They are for Rail, not for the recipient: :func:`take_meta_headers` reads them and
returns the message without them, before it is stored, signed or sent. Values are taken
as written (unfolded, outer blanks stripped; RFC 2047 encoded words are not decoded), keys
in the case of the field name as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "MAX_KEY",
    "MAX_KEYS",
    "MAX_TAG",
    "MAX_VALUE",
    "MetaFields",
    "check_meta",
    "take_meta_headers",
]

MAX_KEYS = 20
MAX_KEY = 40
MAX_VALUE = 500
MAX_TAG = 100

_KEY = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_KEY}}}")
# C0 and C1 controls, DEL, and what str.splitlines() also treats as line breaks.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TAG_FIELD = b"x-rail-tag"
_METADATA_FIELD = b"x-rail-metadata-"
_FIELD_START = re.compile(rb"\r\n(?![ \t])")
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


@attrs.frozen
class MetaFields:
    """A tag and metadata that passed the bounds."""

    tag: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)


def _tag_problem(label: str, tag: Any) -> str | None:
    if not isinstance(tag, str):
        return f"{label} must be a string"
    if not 1 <= len(tag) <= MAX_TAG:
        return f"{label} must be 1 to {MAX_TAG} characters"
    if _CONTROL.search(tag):
        return f"{label} must not contain control characters"
    return None


def _value_problem(label: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{label} must be a string"
    if len(value) > MAX_VALUE:
        return f"{label} is longer than {MAX_VALUE} characters"
    if _CONTROL.search(value):
        return f"{label} must not contain control characters"
    return None


def _key_problem(label: str, key: str) -> str | None:
    if not _KEY.fullmatch(key):
        return f"{label}: a key is 1 to {MAX_KEY} characters of A-Z a-z 0-9 _ . -"
    return None


def check_meta(tag: Any, metadata: Any) -> MetaFields | str:
    """``tag`` and ``metadata`` from a JSON request (None when absent), or the problem
    with them, naming the field (``metadata.order``, ``tag``)."""
    if tag is not None:
        problem = _tag_problem("tag", tag)
        if problem is not None:
            return problem
    if metadata is None:
        return MetaFields(tag, {})
    if not isinstance(metadata, dict):
        return "metadata must be an object of string keys to string values"
    if len(metadata) > MAX_KEYS:
        return f"metadata has {len(metadata)} keys; at most {MAX_KEYS} are allowed"
    for key, value in metadata.items():
        problem = _key_problem(f"metadata key {key[: MAX_KEY + 1]!r}", key) or _value_problem(
            f"metadata.{key}", value
        )
        if problem is not None:
            return problem
    return MetaFields(tag, dict(metadata))


def take_meta_headers(data: bytes, end: int) -> tuple[bytes, MetaFields] | str:
    """``data`` without its ``X-Rail-Tag`` and ``X-Rail-Metadata-*`` fields, and what they
    said; or the problem with them, naming the field. ``end`` is where the header section
    ends (:attr:`rail.mail.headers.HeaderSection.end`). Linear in the header section."""
    head, rest = data[:end], data[end:]
    if not head:
        return data, MetaFields()
    kept: list[bytes] = []
    tag: str | None = None
    metadata: dict[str, str] = {}
    folded: set[str] = set()
    found = False
    for chunk in _FIELD_START.split(head.removesuffix(b"\r\n")):
        match = _FIELD_NAME.match(chunk)
        name = b"" if match is None else match.group(1).lower()
        if match is None or not name.startswith(b"x-rail-"):
            kept.append(chunk)
            continue
        if name != _TAG_FIELD and not name.startswith(_METADATA_FIELD):
            kept.append(chunk)  # not a field Rail reads: left as the app wrote it
            continue
        found = True
        written = match.group(1).decode("ascii")
        try:
            value = chunk[match.end() :].replace(b"\r\n", b"").decode("utf-8").strip(" \t")
        except UnicodeDecodeError:
            return f"{written}: the value is not UTF-8"
        if name == _TAG_FIELD:
            if tag is not None:
                return "X-Rail-Tag is given more than once"
            problem = _tag_problem(written, value)
            if problem is not None:
                return problem
            tag = value
            continue
        key = written[len(_METADATA_FIELD) :]
        problem = _key_problem(written, key) or _value_problem(written, value)
        if problem is not None:
            return problem
        if key.lower() in folded:
            return f"{written}: the key is given more than once (in any case)"
        folded.add(key.lower())
        if len(folded) > MAX_KEYS:
            return f"more than {MAX_KEYS} X-Rail-Metadata-* fields"
        metadata[key] = value
    if not found:
        return data, MetaFields()
    stripped = b"".join(chunk + b"\r\n" for chunk in kept)
    return stripped + rest, MetaFields(tag, metadata)
