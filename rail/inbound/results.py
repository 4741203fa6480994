"""The ``Authentication-Results`` header field (RFC 8601) Rail adds to inbound mail, and
the removal of any that claim to be Rail's before it does (RFC 8601 §5: a field with our
authserv-id that we did not write is a forgery).

The clauses are made by ``authres`` (its quoting of values and reasons); the folding is
ours, one clause per line, since authres writes one long line.
"""

from __future__ import annotations

import re

import authres  # type: ignore[import-untyped]
import authres.arc  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]

from rail.inbound.model import Authentication, DKIMResult

__all__ = ["FIELD_NAME", "authentication_results", "remove_own_results"]

FIELD_NAME = "Authentication-Results"
_LINE = 78
_REASON = 120
_UNSAFE = re.compile(r"[^\x20-\x7e]")
_FOLD = "\r\n\t"
_FIELD_START = re.compile(rb"(?i)authentication-results[ \t]*:")
# A field's first line begins at the start of the section or after a CRLF not
# followed by WSP (which would make it a continuation line).
_FIELD_BREAK = re.compile(rb"(?<=\r\n)(?![ \t])")
# Inside a comment: what changes the nesting depth, and quoted pairs, which do not.
_COMMENT_SPECIAL = re.compile(r"\\.|[()]", re.DOTALL)
_SPACE = re.compile(r"\s*")
_AUTHSERV = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;()"]+))')


def authentication_results(authserv_id: str, auth: Authentication) -> str:
    """The whole field, ``Authentication-Results: <authserv-id>; spf=...; dkim=...;
    dmarc=...``, folded, without a final CRLF."""
    clauses = [_spf(auth), *_dkim(auth.dkim), _dmarc(auth), _arc(auth)]
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=clauses)
    lines = [f"{FIELD_NAME}: {header.authserv_id};"]
    for number, clause in enumerate(clauses):
        end = ";" if number < len(clauses) - 1 else ""
        lines.append(_fold_clause(_parts(clause), end))
    return _FOLD.join(lines)


def _spf(auth: Authentication) -> object:
    kind = "mailfrom" if auth.spf_scope == "mailfrom" else "helo"
    return authres.SPFAuthenticationResult(
        result=auth.spf,
        reason=_clean(auth.spf_reason),
        properties=[authres.AuthenticationResultProperty("smtp", kind, auth.spf_domain)],
    )


def _dkim(results: tuple[DKIMResult, ...]) -> list[object]:
    if not results:
        return [authres.DKIMAuthenticationResult(result="none")]
    clauses = []
    for one in results:
        properties = [
            authres.AuthenticationResultProperty("header", name, value)
            for name, value in (
                ("d", one.domain),
                ("s", one.selector),
                ("a", one.algorithm),
                ("b", one.header_b),
            )
            if value
        ]
        clauses.append(
            authres.DKIMAuthenticationResult(
                result=one.result, reason=_clean(one.reason), properties=properties
            )
        )
    return clauses


def _dmarc(auth: Authentication) -> object:
    comment = f"p={auth.dmarc_policy}" if auth.dmarc_policy else None
    properties = []
    if auth.from_domain:
        properties.append(authres.AuthenticationResultProperty("header", "from", auth.from_domain))
    return authres.dmarc.DMARCAuthenticationResult(
        result=auth.dmarc,
        result_comment=comment,
        reason=_clean(auth.dmarc_reason),
        properties=properties,
    )


def _arc(auth: Authentication) -> object:
    """``arc=``: what ARC signing of a forwarded copy takes its ``cv=`` from."""
    comment = f"i={auth.arc_instance}" if auth.arc_instance else None
    return authres.arc.ARCAuthenticationResult(result=auth.arc, result_comment=comment)


def _clean(reason: str | None) -> str | None:
    """A reason as printable ASCII without quotes or backslashes (authres quotes them,
    but parsers, authres's own included, disagree on reading them back), shortened."""
    if not reason:
        return None
    text = _UNSAFE.sub("?", reason.replace('"', "'").replace("\\", "/")).strip()
    return text[:_REASON] or None


def _parts(clause: object) -> list[str]:
    """A clause's words, as authres writes and quotes them: ``method=result (comment)
    reason=...`` first, then each property."""
    properties = list(getattr(clause, "properties", []))
    clause.properties = []  # type: ignore[attr-defined]  # each clause is built for this call
    try:
        head = str(clause)
    finally:
        clause.properties = properties  # type: ignore[attr-defined]
    return [head, *(str(p) for p in properties)]


def _fold_clause(parts: list[str], end: str) -> str:
    lines: list[str] = []
    line = ""
    for part in parts:
        if line and len(line) + 1 + len(part) + 8 > _LINE:
            lines.append(line)
            line = part
        else:
            line = f"{line} {part}" if line else part
    lines.append(line + end)
    return (_FOLD + "  ").join(lines)


def remove_own_results(data: bytes, authserv_id: str) -> bytes:
    """``data`` without the Authentication-Results fields of its header section whose
    authserv-id is ``authserv_id`` (compared case-insensitively); every other octet,
    the body and other such fields included, is left as it was.

    Fields are cut out whole (a CRLF not followed by WSP starts the next one), so the
    work is linear in the header section and per field, not per continuation line.
    """
    end = data.find(b"\r\n\r\n")
    header_end = len(data) if end < 0 else end + 2
    wanted = authserv_id.lower()
    kept: list[bytes] = []
    removed = False
    for field in _FIELD_BREAK.split(data[:header_end]):
        if field and _is_own(field, wanted):
            removed = True
        else:
            kept.append(field)
    if not removed:
        return data
    return b"".join(kept) + data[header_end:]


def _is_own(field: bytes, wanted: str) -> bool:
    """Whether ``field`` (one whole field, folds included) is an Authentication-Results
    field with authserv-id ``wanted``."""
    match = _FIELD_START.match(field)
    if match is None:
        return False
    value = field[match.end() :].replace(b"\r\n", b"")
    return _authserv_id(value.decode("utf-8", "replace")) == wanted


def _authserv_id(value: str) -> str | None:
    """The authserv-id of a field value: comments (RFC 5322 CFWS, nested or not) before
    it skipped, a quoted-string unquoted, lower-cased. One pass over the comments:
    removing them innermost first, a pass per level, was quadratic in their depth."""
    position = _after_cfws(value)
    if position is None:
        return None
    match = _AUTHSERV.match(value, position)
    if match is None:
        return None
    if match.group(1) is not None:
        return re.sub(r"\\(.)", r"\1", match.group(1)).lower()
    return match.group(2).lower()


def _after_cfws(value: str) -> int | None:
    """Where the first token after leading white space and comments starts; ``None`` for
    a comment that never closes."""
    position = _SPACE.match(value).end()  # type: ignore[union-attr]  # \s* always matches
    while value.startswith("(", position):
        depth = 0
        for special in _COMMENT_SPECIAL.finditer(value, position):
            char = special.group()
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            if depth == 0:
                break
        else:
            return None
        position = _SPACE.match(value, special.end()).end()  # type: ignore[union-attr]
    return position
