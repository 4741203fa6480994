"""The message that carries a TLS-RPT report to a ``mailto:`` rua (RFC 8460 §5.3).

Pure. A ``multipart/report; report-type="tlsrpt"`` message from Rail's report address,
with the ``TLS-Report-Domain`` and ``TLS-Report-Submitter`` header fields, the subject
RFC 8460 §5.3 recommends, a short human-readable part and the gzip-compressed report as
an ``application/tlsrpt+gzip`` attachment named as §5.1 says. Built with the stdlib
``email`` package (CRLF line ends, base64 lines of 76 characters); it is queued like
any outbound message, so it is DKIM-signed for its From domain when delivered.
"""

from __future__ import annotations

import datetime
import email.policy
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = ["report_message"]

# Header fields are not folded below RFC 5322's 998: a folded Subject reads back with a
# leading space in some parsers. Base64 lines stay at 76 characters.
_POLICY = email.policy.SMTP.clone(max_line_length=998)


def report_message(
    *,
    sender: str,
    recipient: str,
    policy_domain: str,
    submitter: str,
    report_id: str,
    filename: str,
    compressed: bytes,
    message_id: str,
    now: float,
) -> bytes:
    """The complete message (CRLF line ends), ready to queue from ``sender`` to
    ``recipient``; ``message_id`` goes into ``Message-ID`` (at the submitter)."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = (
        f"Report Domain: {policy_domain} Submitter: {submitter} Report-ID: <{report_id}>"
    )
    message["Date"] = format_datetime(datetime.datetime.fromtimestamp(now, datetime.UTC))
    message["Message-ID"] = f"<{message_id}@{submitter}>"
    message["TLS-Report-Domain"] = policy_domain
    message["TLS-Report-Submitter"] = submitter
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"This is an aggregate TLS report (RFC 8460) from {submitter} for {policy_domain}.\n"
    )
    message.add_attachment(
        compressed,
        maintype="application",
        subtype="tlsrpt+gzip",
        filename=filename,
    )
    message.replace_header("Content-Type", 'multipart/report; report-type="tlsrpt"')
    # replace_header drops the boundary parameter: put it back.
    message.set_boundary(message.get_boundary() or f"tlsrpt-{message_id}")
    return message.as_bytes()
