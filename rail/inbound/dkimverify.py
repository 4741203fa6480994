"""DKIM verification (RFC 6376; rsa-sha256 and, RFC 8463, ed25519-sha256) by dkimpy.

Every DKIM-Signature field, top to bottom, up to :data:`MAX_SIGNATURES`, gets its own
:class:`rail.inbound.model.DKIMResult`; further ones are not evaluated (RFC 6376 §6.1
lets a verifier limit its work) and not reported.

dkimpy's ``verify`` answers True or False and logs why; to report the RFC 8601 result
the key look-up goes through a recording ``dnsfunc`` that tells a DNS failure
(``temperror``) from a missing or unusable key (``permerror``), and the signature's tags
are validated before (a malformed or expired signature is ``permerror``). What remains
false is a signature that does not verify: ``fail``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from rail.inbound.answers import DNSLookup, DNSTemporaryError
from rail.inbound.model import DKIMResult

__all__ = ["MAX_SIGNATURES", "MAX_SIGNATURE_SIZE", "verify_dkim"]

MAX_SIGNATURES = 5
MAX_SIGNATURE_SIZE = 16 * 1024
"""Octets of a DKIM-Signature field's value beyond which it is not evaluated
(``permerror``); real ones are well under 2 KB."""
_HEADER_B = 12
_SIGNATURE_FIELD = re.compile(rb"(?im)^dkim-signature[ \t]*:")
_WSP = re.compile(rb"\s+")
_WSP_RUN = re.compile(rb"[ \t]+")
_LINE_END = re.compile(rb"\r?\n")
_DKIMPY_FIELD = re.compile(rb"([\x21-\x7e]+?):")


class _KeyFetch:
    """dkimpy's ``dnsfunc``: answers from ``lookup`` and remembers what went wrong."""

    def __init__(self, lookup: DNSLookup) -> None:
        self._lookup = lookup
        self.problem: tuple[str, str] | None = None
        self.name = b""
        self.record: bytes | None = None

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        self.problem, self.record = None, None
        text = name.decode("ascii", "replace")
        try:
            records = self._lookup.txt(text)
        except DNSTemporaryError as error:
            self.problem = ("temperror", f"key lookup failed: {error}")
            return None
        if not records:
            self.problem = ("permerror", "no key for signature")
            return None
        if len(records) > 1:
            # RFC 6376 §3.6.2.2: several key records at one name are an error we can
            # only guess around; refusing is what most verifiers do.
            self.problem = ("permerror", "several key records")
            return None
        self.name, self.record = name, records[0]
        return records[0]

    def key_problem(self) -> tuple[str, str] | None:
        """After a failed verification: whether the key record was the reason. Parsing
        it again only here keeps the common (passing) path to one parse per key."""
        if self.problem is not None or self.record is None:
            return self.problem
        try:
            dkim.evaluate_pk(self.name, self.record)
        except Exception as error:
            return ("permerror", f"bad key record: {type(error).__name__}")
        return None


def verify_dkim(
    lookup: DNSLookup, data: bytes, max_signatures: int = MAX_SIGNATURES
) -> tuple[DKIMResult, ...]:
    """One result per DKIM-Signature of ``data`` (a CRLF message), in field order; empty
    when the message has none. Runs in a worker thread: ``lookup`` blocks."""
    header = data.split(b"\r\n\r\n", 1)[0]
    if _SIGNATURE_FIELD.search(header) is None:
        return ()
    try:
        message = _parsed(data)
    except dkim.DKIMException as error:
        return (DKIMResult("permerror", reason=f"message unparsable: {type(error).__name__}"),)
    bodies = _Bodies(message.body)
    fields = [value for name, value in message.headers if name.lower() == b"dkim-signature"]
    return tuple(
        _verify_one(message, bodies, index, value, lookup)
        for index, value in enumerate(fields[:max_signatures])
    )


def _parsed(data: bytes) -> Any:
    """A dkimpy message for ``data``, split as dkimpy's ``rfc822_parse`` splits it.

    dkimpy's own parse appends each continuation line to its field's bytes, which is
    quadratic in continuation lines; this collects the lines and joins them once.
    """
    headers: list[bytes] = []
    parts: list[list[bytes]] = []
    lines = _LINE_END.split(data)
    end = len(lines)  # without an empty line, all header and no body
    for number, line in enumerate(lines):
        if not line:
            end = number + 1
            break
        if line[0] in (0x09, 0x20):
            if not parts:
                raise dkim.MessageFormatError("continuation line before any header field")
            parts[-1].append(line + b"\r\n")
            continue
        match = _DKIMPY_FIELD.match(line)
        if match is not None:
            headers.append(match.group(1))
            parts.append([line[match.end() :] + b"\r\n"])
        elif not line.startswith(b"From "):
            raise dkim.MessageFormatError("Unexpected characters in RFC822 header")
    message = dkim.DKIM()
    message.headers = [[name, b"".join(part)] for name, part in zip(headers, parts, strict=True)]
    message.body = b"\r\n".join(lines[end:])
    return message


class _Bodies:
    """The message's body as received, and in relaxed form once a signature asks."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @functools.cached_property
    def relaxed(self) -> bytes:
        return _relaxed_body(self.raw)


def _relaxed_body(body: bytes) -> bytes:
    """``body`` with WSP before each CRLF removed and other WSP runs made one space.

    dkimpy's relaxed body canonicalization removes trailing WSP with a pattern that
    backtracks over every run of spaces not followed by CRLF (quadratic in its length);
    given a body already in this form it has nothing left to do, and the result (hence
    the body hash) is the same, since both steps are idempotent."""
    lines = body.split(b"\r\n")
    stripped = [line.rstrip(b" \t") for line in lines[:-1]]
    stripped.append(lines[-1])
    return _WSP_RUN.sub(b" ", b"\r\n".join(stripped))


def _verify_one(
    message: Any, bodies: _Bodies, index: int, value: bytes, lookup: DNSLookup
) -> DKIMResult:
    if len(value) > MAX_SIGNATURE_SIZE:
        # RFC 6376 §6.1 lets a verifier limit its work; dkimpy reads some tags with
        # patterns that are quadratic in runs of white space.
        return DKIMResult("permerror", reason="signature field too long")
    try:
        tags = parse_tag_value(value)
    except (InvalidTagValueList, ValueError):
        return DKIMResult("permerror", reason="signature syntax")
    relaxed = tags.get(b"c", b"simple").partition(b"/")[2].strip().lower() == b"relaxed"
    message.body = bodies.relaxed if relaxed else bodies.raw
    described = _describe(tags)
    try:
        dkim.validate_signature_fields(tags)
    except dkim.DKIMException as error:
        return _result(described, "permerror", _short(error))
    fetch = _KeyFetch(lookup)
    try:
        verified = message.verify(index, dnsfunc=fetch)
    except dkim.ValidationError as error:
        return _result(described, "fail", _short(error))  # body hash mismatch
    except dkim.KeyFormatError as error:
        return _result(described, "permerror", _short(error))  # key too small
    except dkim.DKIMException as error:
        return _result(described, "permerror", _short(error))
    if verified:
        return _result(described, "pass", None)
    problem = fetch.key_problem()
    if problem is not None:
        return _result(described, *problem)
    return _result(described, "fail", "signature did not verify")


def _describe(tags: dict[bytes, bytes]) -> dict[str, str | None]:
    def text(tag: bytes) -> str | None:
        raw = tags.get(tag)
        return None if raw is None else raw.decode("ascii", "replace")

    b = tags.get(b"b")
    domain = text(b"d")
    return {
        "domain": domain.lower().rstrip(".") if domain else None,
        "selector": text(b"s"),
        "algorithm": text(b"a"),
        "header_b": _WSP.sub(b"", b)[:_HEADER_B].decode("ascii", "replace") if b else None,
    }


def _result(described: dict[str, str | None], result: Any, reason: str | None) -> DKIMResult:
    return DKIMResult(result=result, reason=reason, **described)


def _short(error: Exception) -> str:
    """The exception's message without the data it quotes (hashes, keys): a class name
    and the words before the first parenthesis or colon."""
    text = str(error).split("(")[0].split(":")[0].strip()
    return text[:80] or type(error).__name__
