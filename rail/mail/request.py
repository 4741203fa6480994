"""The JSON body of ``POST /api/v1/send``, validated before anything is built from it.

Validation is kept apart from message building so that every field is checked, and the
first problem reported as a :class:`ComposeError` naming the field, before the ``email``
package sees any of it. Nothing the client sends can reach a header unchecked: CR, LF,
NUL and other control characters are refused in every header-bound field, because the
``email`` package folds and re-wraps values and would otherwise turn them into new headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator
from email.errors import HeaderParseError
from email.header import decode_header
from typing import Any

import attrs

from rail.mail.addresses import Mailbox, _address_problem, _unescape, _unquote
from rail.mail.meta import MetaFields, check_meta
from rail.store.model import IdempotencyKey

__all__ = [
    "FORBIDDEN_HEADERS",
    "INVALID_JSON",
    "INVALID_REQUEST",
    "Attachment",
    "ComposeError",
    "SendRequest",
    "fingerprint",
    "parse_request",
]

INVALID_JSON = "INVALID_JSON"
INVALID_REQUEST = "INVALID_REQUEST"

_FIELDS = frozenset(
    (
        "from to cc bcc reply_to subject body_text body_html headers attachments request_id"
        " tag metadata"
    ).split()
)
_ATTACHMENT_FIELDS = frozenset({"filename", "content_type", "content"})

# Headers Rail writes from the typed fields or the MIME structure, plus those that would
# let an app speak for someone else (Sender, Resent-*) or forge trace and signature
# headers that belong to the transport (Received, Return-Path, DKIM-Signature).
FORBIDDEN_HEADERS = frozenset(
    (
        "from to cc bcc subject date message-id reply-to"
        " content-type content-transfer-encoding mime-version content-disposition"
        " sender return-path received dkim-signature"
    ).split()
)
_FORBIDDEN_PREFIXES = ("resent-",)

# RFC 5322 ftext: printable US-ASCII except ':'.
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")
# RFC 2045 token, for content types and their parameters.
_MIME_ATOM = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_CONTENT_TYPE = re.compile(rf"({_MIME_ATOM})/({_MIME_ATOM})")
_PARAMETER = re.compile(rf'\s*({_MIME_ATOM})\s*=\s*(?:({_MIME_ATOM})|"((?:[^"\\]|\\.)*)")\s*')
# C0 controls (except TAB), DEL, and what str.splitlines() also treats as line breaks.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_ENCODINGS = ("q", "Q", "b", "B")
_BASE64_SPACE = re.compile(r"[ \t\r\n]+")
_MAX_DISPLAY_NAME = 256
_MAX_ATTACHMENT_FIELD = 255
_MAX_KEY = 255


@attrs.frozen
class ComposeError:
    """Why a send request is refused: the API's error ``code``, HTTP status and a message
    naming the field, written for the developer of the calling app."""

    code: str
    http_status: int
    message: str
    limit: str | None = None
    """For a refusal by a configured bound, which one (``header_size``...), for the
    refusal counter."""


def _invalid(message: str) -> ComposeError:
    return ComposeError(INVALID_REQUEST, 400, message)


@attrs.frozen
class Attachment:
    filename: str
    maintype: str
    subtype: str
    params: tuple[tuple[str, str], ...]
    content: bytes


@attrs.frozen
class SendRequest:
    """A request whose every field passed validation (authorization comes later)."""

    sender: Mailbox
    to: tuple[Mailbox, ...] = ()
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()
    reply_to: tuple[Mailbox, ...] = ()
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    idempotency: IdempotencyKey | None = None
    meta: MetaFields = attrs.field(factory=MetaFields)

    @property
    def recipients(self) -> tuple[str, ...]:
        """The envelope: distinct bare addresses across to, cc and bcc in order of first
        appearance; the domain is compared case-insensitively, the local part is not."""
        seen: set[str] = set()
        result: list[str] = []
        for mailbox in (*self.to, *self.cc, *self.bcc):
            key = f"{mailbox.local}@{mailbox.domain.lower()}"
            if key not in seen:
                seen.add(key)
                result.append(mailbox.address)
        return tuple(result)

    @property
    def smtputf8(self) -> bool:
        """A non-ASCII address can only travel with SMTPUTF8, in the envelope and as raw
        UTF-8 in the headers (RFC 6531/6532)."""
        mailboxes = (self.sender, *self.to, *self.cc, *self.bcc, *self.reply_to)
        return not all(m.address.isascii() for m in mailboxes)


def fingerprint(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the body without ``request_id``: a retry of the
    same request matches however its client ordered keys or spaced the JSON."""
    rest = {k: v for k, v in document.items() if k != "request_id"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load(body: bytes) -> dict[str, Any] | ComposeError:
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        if isinstance(document, dict) and b"\\u" in body:
            # Lone surrogates decode from \ud800 escapes (strict UTF-8 decoding refuses
            # them in raw form) but cannot become UTF-8 later.
            json.dumps(document, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        return ComposeError(INVALID_JSON, 400, "the body is not valid UTF-8 JSON")
    if not isinstance(document, dict):
        return ComposeError(INVALID_JSON, 400, "the body must be a JSON object")
    return document


def _encoded_words(value: str) -> Iterator[str]:
    r"""The RFC 2047 encoded words in ``value``, found as broadly as
    ``email.header.decode_header`` finds them (``=?charset?q|b?text?=``, the charset up to
    the first ``?``, the text up to the first ``?=``), left to right without overlap.

    The same as ``re.finditer(r"=\?[^?]*\?[qQbB]\?.*?\?=")`` in linear time: that
    pattern scans to the end of ``value`` from every ``=?`` when no ``?=`` follows, which
    is quadratic in a long Subject of such prefixes.
    """
    position = 0
    while True:
        start = value.find("=?", position)
        if start < 0:
            return
        mark = value.find("?", start + 2)
        if mark < 0:
            return
        if value[mark + 1 : mark + 2] in _ENCODINGS and value.startswith("?", mark + 2):
            end = value.find("?=", mark + 3)
            if end < 0:
                return  # no "?=" after this point: no later word can close either
            yield value[start : end + 2]
            position = end + 2
        else:
            position = start + 1


def _encoded_unsafe(value: str) -> bool:
    """Whether an RFC 2047 encoded word in ``value`` decodes to a control character or
    cannot be decoded strictly. The ``email`` package decodes such words (leniently,
    mid-word and inside quoted display names too) and can write what they hold out raw,
    so a CR or LF here would become a line break in the header."""
    for word in _encoded_words(value):
        try:
            parts = decode_header(word)
        except (HeaderParseError, ValueError):
            return True
        for data, charset in parts:
            if not isinstance(data, bytes):
                continue
            try:
                text = data.decode(charset or "ascii", "replace")
            except (LookupError, UnicodeError):
                # Not a text codec: the email package falls back to ASCII, controls kept.
                text = data.decode("latin-1")
            if _UNSAFE.search(text):
                return True
    return False


def _unsafe(label: str, value: str) -> ComposeError | None:
    if _UNSAFE.search(value) or ("=?" in value and _encoded_unsafe(value)):
        return _invalid(
            f"{label} must not contain CR, LF, NUL or other control characters,"
            " nor RFC 2047 encoded words that decode to them"
        )
    return None


def _optional_string(document: dict[str, Any], field: str) -> str | ComposeError | None:
    value = document.get(field)
    if value is None or isinstance(value, str):
        return value
    return _invalid(f"{field} must be a string")


def _mailbox(label: str, value: Any) -> Mailbox | ComposeError:
    """``addr@domain`` or ``Display Name <addr@domain>`` (the name may be quoted)."""
    if not isinstance(value, str):
        return _invalid(f"{label} must be a string")
    error = _unsafe(label, value)
    if error is not None:
        return error
    text = value.strip()
    name = ""
    if text.endswith(">"):
        start = text.rfind("<")
        if start < 0:
            return _invalid(f"{label}: unbalanced '>'")
        name, text = _unquote(text[:start].strip()), text[start + 1 : -1].strip()
    if "<" in name or ">" in name or "<" in text or ">" in text:
        return _invalid(f"{label} must be one address, optionally as Name <address>")
    if len(name) > _MAX_DISPLAY_NAME:
        return _invalid(f"{label}: display name is longer than {_MAX_DISPLAY_NAME} characters")
    problem = _address_problem(text)
    if problem is not None:
        return _invalid(f"{label} {problem}")
    local, _, domain = text.rpartition("@")
    return Mailbox(display_name=name, local=local, domain=domain)


def _mailboxes(
    document: dict[str, Any], field: str, allow_string: bool = False
) -> tuple[Mailbox, ...] | ComposeError:
    value = document.get(field)
    if value is None:
        return ()
    if allow_string and isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        kind = "a string or a list of strings" if allow_string else "a list of strings"
        return _invalid(f"{field} must be {kind}")
    result: list[Mailbox] = []
    for index, item in enumerate(value):
        mailbox = _mailbox(f"{field}[{index}]", item)
        if isinstance(mailbox, ComposeError):
            return mailbox
        result.append(mailbox)
    return tuple(result)


def _headers(document: dict[str, Any]) -> tuple[tuple[str, str], ...] | ComposeError:
    value = document.get("headers")
    if value is None:
        return ()
    if not isinstance(value, dict):
        return _invalid("headers must be an object of header name to string value")
    result: list[tuple[str, str]] = []
    for name, header_value in value.items():
        error = _unsafe("headers (a field name)", name)
        if error is not None:
            return error
        if not _FIELD_NAME.fullmatch(name):
            return _invalid(
                f"headers: {name!r} is not a header field name"
                " (1 to 76 printable ASCII characters other than ':')"
            )
        lowered = name.lower()
        if lowered in FORBIDDEN_HEADERS or lowered.startswith(_FORBIDDEN_PREFIXES):
            return _invalid(f"headers: {name} cannot be set through headers")
        if not isinstance(header_value, str):
            return _invalid(f"headers.{name} must be a string")
        error = _unsafe(f"headers.{name}", header_value)
        if error is not None:
            return error
        result.append((name, header_value))
    return tuple(result)


def _content_type(value: str) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    head, *parameters = value.split(";")
    match = _CONTENT_TYPE.fullmatch(head.strip())
    if match is None:
        return None
    params: list[tuple[str, str]] = []
    for parameter in parameters:
        found = _PARAMETER.fullmatch(parameter)
        if found is None:
            return None
        name, token, quoted = found.groups()
        params.append((name.lower(), token if token is not None else _unescape(quoted)))
    return match.group(1).lower(), match.group(2).lower(), tuple(params)


def _attachment(index: int, value: Any) -> Attachment | ComposeError:
    label = f"attachments[{index}]"
    if not isinstance(value, dict):
        return _invalid(f"{label} must be an object with filename, content_type and content")
    unknown = sorted(set(value) - _ATTACHMENT_FIELDS)
    if unknown:
        return _invalid(f"{label}: unknown field {unknown[0]!r}")
    filename = value.get("filename")
    if not isinstance(filename, str) or not filename:
        return _invalid(f"{label}.filename must be a non-empty string")
    content_type = value.get("content_type", "application/octet-stream")
    if not isinstance(content_type, str):
        return _invalid(f"{label}.content_type must be a string")
    for field, text in (("filename", filename), ("content_type", content_type)):
        if len(text) > _MAX_ATTACHMENT_FIELD:
            # Written by the email package, whose header parser is quadratic in length.
            return _invalid(f"{label}.{field} is longer than {_MAX_ATTACHMENT_FIELD} characters")
        error = _unsafe(f"{label}.{field}", text)
        if error is not None:
            return error
    parsed = _content_type(content_type)
    if parsed is None:
        return _invalid(f"{label}.content_type must look like type/subtype[; name=value]")
    maintype, subtype, params = parsed
    if maintype in ("multipart", "message"):
        return _invalid(f"{label}.content_type: {maintype}/* attachments are not supported")
    content = value.get("content")
    if not isinstance(content, str):
        return _invalid(f"{label}.content must be a base64 string")
    try:
        data = base64.b64decode(_BASE64_SPACE.sub("", content).encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return _invalid(f"{label}.content is not valid base64")
    return Attachment(filename, maintype, subtype, params, data)


def _idempotency(
    document: dict[str, Any], header: str | None
) -> IdempotencyKey | ComposeError | None:
    request_id = document.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        return _invalid("request_id must be a string")
    if request_id is not None and header is not None and request_id != header:
        return _invalid("request_id and the Idempotency-Key header differ")
    key = request_id if request_id is not None else header
    if key is None:
        return None
    if not 1 <= len(key) <= _MAX_KEY or not all(" " <= c <= "~" for c in key):
        return _invalid(f"request_id must be 1 to {_MAX_KEY} printable ASCII characters")
    return IdempotencyKey(key=key, fingerprint=fingerprint(document))


def parse_request(body: bytes, idempotency_header: str | None = None) -> SendRequest | ComposeError:
    """Validate every field of the JSON body; the first problem found is reported.

    ``null`` is the same as an absent optional field. ``idempotency_header`` is the
    ``Idempotency-Key`` header, an alternative to ``request_id``.
    """
    document = _load(body)
    if isinstance(document, ComposeError):
        return document
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        return _invalid(f"unknown field {unknown[0]!r}")
    if document.get("from") is None:
        return _invalid("from is required")
    sender = _mailbox("from", document["from"])
    if isinstance(sender, ComposeError):
        return sender
    lists: dict[str, tuple[Mailbox, ...]] = {}
    for field in ("to", "cc", "bcc", "reply_to"):
        found = _mailboxes(document, field, allow_string=field == "reply_to")
        if isinstance(found, ComposeError):
            return found
        lists[field] = found
    texts: dict[str, str | None] = {}
    for field in ("subject", "body_text", "body_html"):
        text = _optional_string(document, field)
        if isinstance(text, ComposeError):
            return text
        texts[field] = text
    error = _unsafe("subject", texts["subject"] or "")
    if error is not None:
        return error
    for field in ("body_text", "body_html"):
        if "\x00" in (texts[field] or ""):
            return _invalid(f"{field} must not contain NUL characters")
    headers = _headers(document)
    if isinstance(headers, ComposeError):
        return headers
    raw_attachments = document.get("attachments")
    if raw_attachments is not None and not isinstance(raw_attachments, list):
        return _invalid("attachments must be a list of objects")
    attachments: list[Attachment] = []
    for index, item in enumerate(raw_attachments or ()):
        attachment = _attachment(index, item)
        if isinstance(attachment, ComposeError):
            return attachment
        attachments.append(attachment)
    idempotency = _idempotency(document, idempotency_header)
    if isinstance(idempotency, ComposeError):
        return idempotency
    meta = check_meta(document.get("tag"), document.get("metadata"))
    if isinstance(meta, str):
        return ComposeError(INVALID_REQUEST, 400, meta, limit="metadata")
    if not (lists["to"] or lists["cc"] or lists["bcc"]):
        return _invalid("at least one recipient is required in to, cc or bcc")
    if texts["body_text"] is None and texts["body_html"] is None and not attachments:
        return _invalid("body_text, body_html or attachments is required")
    return SendRequest(
        sender=sender,
        to=lists["to"],
        cc=lists["cc"],
        bcc=lists["bcc"],
        reply_to=lists["reply_to"],
        subject=texts["subject"],
        body_text=texts["body_text"],
        body_html=texts["body_html"],
        headers=headers,
        attachments=tuple(attachments),
        idempotency=idempotency,
        meta=meta,
    )
