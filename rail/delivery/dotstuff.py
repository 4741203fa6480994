"""Turning a stored message into the byte stream sent after DATA (RFC 5321 §4.5.2).

Twisted's ``SMTPClient.transformChunk`` cannot be used for this: it rewrites every ``\\n``
to ``\\r\\n`` (corrupting CRLF input and breaking DKIM signatures) and it only doubles a
dot that follows a line break inside one 16 KiB chunk, so a ``.`` line at byte 0 or at a
chunk boundary goes out as the end of the message, and the rest of the body is read by
the remote MX as commands: an application could smuggle a second, forged message through
Rail. Here the whole message is stuffed with ``bytes.replace`` (C speed, no per-line
Python loop), so no offset is special.

Stored messages are validated CRLF, but the stuffing does not rely on it: a dot is doubled
after *any* CR or LF, not only after CRLF. Whatever line-ending rule a receiver applies
(strict CRLF, or the lenient bare-LF/bare-CR rules behind SMTP smuggling), no line of the
message can then read as a lone ``.``; the only end-of-data is the one appended here. The
price, a doubled dot after a bare CR or LF that a strict receiver keeps, is only ever paid
by a message that was already invalid. NUL and other octets pass through untouched.
"""

from __future__ import annotations

__all__ = ["dot_stuff"]

_END = b".\r\n"


def dot_stuff(data: bytes) -> bytes:
    """The DATA stream for ``data``: every line starting with ``.`` gets another one in
    front, a final CRLF is added if missing, and ``.\\r\\n`` ends it.

    An empty message is sent as the end-of-data line alone (a message of zero octets,
    not one empty line).
    """
    if not data:
        return _END
    stuffed = data.replace(b"\n.", b"\n..")
    if b"\r." in stuffed:
        stuffed = stuffed.replace(b"\r.", b"\r..")
    if stuffed[:1] == b".":
        stuffed = b"." + stuffed
    if stuffed[-2:] == b"\r\n":
        return stuffed + _END
    return stuffed + b"\r\n" + _END
