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

import re
from typing import Any

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from rail.inbound.answers import DNSLookup, DNSTemporaryError
from rail.inbound.model import DKIMResult

__all__ = ["MAX_SIGNATURES", "verify_dkim"]

MAX_SIGNATURES = 5
_HEADER_B = 12
_SIGNATURE_FIELD = re.compile(rb"(?im)^dkim-signature[ \t]*:")
_WSP = re.compile(rb"\s+")


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
        message = dkim.DKIM(data)
    except dkim.DKIMException as error:
        return (DKIMResult("permerror", reason=f"message unparsable: {type(error).__name__}"),)
    fields = [value for name, value in message.headers if name.lower() == b"dkim-signature"]
    return tuple(
        _verify_one(message, index, value, lookup)
        for index, value in enumerate(fields[:max_signatures])
    )


def _verify_one(message: Any, index: int, value: bytes, lookup: DNSLookup) -> DKIMResult:
    try:
        tags = parse_tag_value(value)
    except (InvalidTagValueList, ValueError):
        return DKIMResult("permerror", reason="signature syntax")
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
