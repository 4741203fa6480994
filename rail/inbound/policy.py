"""What Rail decides about an inbound message once SPF, DKIM and DMARC have spoken, and
what it records about it.

Pure: the port-25 session (:mod:`rail.smtp.inbound`) asks :func:`authentication_verdict`
whether to refuse, :func:`bounce_allowed` whether a failed webhook may produce a DSN, and
builds the stored message's trace field with :func:`received_field` and its ``subject``
with :func:`decode_subject`.
"""

from __future__ import annotations

from email import policy as email_policy

from rail.config.schema import Inbound
from rail.inbound.model import Authentication
from rail.policy.verdict import Reject

__all__ = [
    "DMARC_REJECTED",
    "SPF_FAILED",
    "authentication_verdict",
    "bounce_allowed",
    "decode_subject",
    "received_field",
]

SPF_FAILED = Reject(550, "5.7.23", "SPF validation failed")
DMARC_REJECTED = Reject(550, "5.7.1", "Rejected by DMARC policy")


def authentication_verdict(auth: Authentication, settings: Inbound) -> Reject | None:
    """``None`` accepts (results are only tagged); a :class:`Reject` refuses the message.

    SPF ``fail`` is refused under ``spf_fail: reject`` (RFC 7372 ``5.7.23``); DMARC
    ``fail`` is refused when the From domain's policy is ``reject`` and ``dmarc`` is
    ``enforce``. ``p=quarantine`` is accepted: Rail has no junk folder, so the app decides
    from the Authentication-Results field and the webhook's ``authentication``.
    """
    if auth.spf == "fail" and settings.spf_fail == "reject":
        return SPF_FAILED
    if auth.dmarc == "fail" and auth.dmarc_policy == "reject" and settings.dmarc == "enforce":
        return DMARC_REJECTED
    return None


def bounce_allowed(sender: str, auth: Authentication) -> bool:
    """Whether a permanently failed webhook may send a DSN to ``sender``: never to the
    null sender, nor when SPF or DMARC failed (the sender is likely forged and the DSN
    would be backscatter)."""
    return sender != "" and auth.spf != "fail" and auth.dmarc != "fail"


def received_field(
    *,
    helo: str,
    peer: str,
    hostname: str,
    message_id: str,
    date: str,
    tls: bool,
    smtputf8: bool,
    recipients: tuple[str, ...],
    tls_info: str | None = None,
) -> str:
    """Rail's ``Received:`` trace field (RFC 5321 §4.4), folded with CRLF, no final CRLF.

    ``with`` is ``ESMTP``, ``ESMTPS`` (STARTTLS, RFC 3848) or ``UTF8SMTP``/``UTF8SMTPS``
    (RFC 6531); ``for`` names the recipient only when there is exactly one, so a message
    to several people does not tell each of them who else received it.
    """
    protocol = ("UTF8SMTP" if smtputf8 else "ESMTP") + ("S" if tls else "")
    # RFC 5321 §4.4 TCP-info: an address literal, IPv6 ones tagged.
    literal = f"IPv6:{peer}" if ":" in peer else peer
    lines = [f"Received: from {helo} ([{literal}])"]
    if tls_info:
        lines.append(f"\t({tls_info})")
    lines.append(f"\tby {hostname} (Rail) with {protocol} id {message_id}")
    if len(recipients) == 1:
        lines.append(f"\tfor <{recipients[0]}>;")
    else:
        lines[-1] += ";"
    lines.append(f"\t{date}")
    return "\r\n".join(lines)


def decode_subject(raw: str | None) -> str:
    """The Subject as the app should show it: RFC 2047 encoded-words decoded by the
    stdlib (malformed ones are kept as the stdlib reads them, never an error), folding
    whitespace collapsed; ``""`` without a Subject.

    The stdlib's parser copies the rest of the value at every token, which is quadratic
    in a long value, and this runs on the reactor: a Subject longer than
    :data:`_DECODE_PIECE` is decoded in pieces of about that size, cut at white space
    where there is some. Only such a Subject can differ: a space where two encoded words
    met at a cut, or an encoded word cut in two where there was no white space at all."""
    if raw is None:
        return ""
    if raw.isascii() and "=?" not in raw:
        # Nothing to decode: the stdlib would return ``raw`` itself, ten times slower.
        return " ".join(raw.split())
    pieces = []
    start = 0
    while start < len(raw):
        stop = start + _DECODE_PIECE
        if stop < len(raw):
            space = max(raw.rfind(" ", start, stop), raw.rfind("\t", start, stop))
            stop = space if space > start else stop
        pieces.append(_decoded(raw[start:stop]))
        # Cut at white space: a space between the pieces; inside a word: none.
        pieces.append(" " if raw[stop : stop + 1] in (" ", "\t") else "")
        start = stop
    return " ".join("".join(pieces).split())


_DECODE_PIECE = 4096


def _decoded(raw: str) -> str:
    try:
        return str(email_policy.default.header_factory("subject", raw))
    except Exception:  # a header the stdlib cannot read is still shown, undecoded
        return raw
