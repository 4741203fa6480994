"""The Sender Rewriting Scheme (SRS), as libsrs2 and postsrsd write it ("guarded" SRS0
and SRS1, Shevek's scheme), so a forwarded message's envelope sender is in Rail's domain
(SPF passes) and a bounce can still find its way back.

Pure: times are passed in (``now``, seconds since the epoch), so the age check is
tested with a Clock. A small module of Rail's own rather than ``srslib`` or ``pysrs``:
both read the wall clock themselves (no injected time), ``pysrs`` has had no release
since 2018 and ``srslib`` declares Python up to 3.6 only; the scheme is forty lines.

``SRS0=HHHH=TT=domain=local@forwarder``: ``TT`` is the day number modulo 1024 in two
base32 characters, ``HHHH`` the first four characters of the base64 HMAC-SHA1, under
Rail's secret, of ``TT``, ``domain`` and ``local`` lower-cased. A sender that is already
an SRS address is wrapped as SRS1 (``SRS1=HHHH=first-forwarder==HHHH=TT=domain=local``),
which returns bounces to the first forwarder rather than growing at each hop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import attrs

__all__ = ["MAX_AGE_DAYS", "SRS", "SRSError", "is_srs"]

MAX_AGE_DAYS = 21
"""A bounce to an SRS0 address older than this many days is refused (libsrs2's default)."""

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DAY = 86400
_SLOTS = 1024  # TT wraps every 1024 days
_HASH_LENGTH = 4


class SRSError(ValueError):
    """An address is not a valid SRS address of ours: the argument says why (for the
    log), e.g. ``bad hash`` or ``too old``."""


def is_srs(local: str) -> bool:
    """Whether the local part ``local`` has the shape of an SRS address."""
    head = local[:5].upper()
    return head in ("SRS0=", "SRS0+", "SRS0-", "SRS1=", "SRS1+", "SRS1-")


def _timestamp(now: float) -> str:
    day = int(now // _DAY) % _SLOTS
    return _BASE32[day >> 5] + _BASE32[day & 31]


def _age_days(stamp: str, now: float) -> int | None:
    if len(stamp) != 2 or any(c not in _BASE32 for c in stamp.upper()):
        return None
    upper = stamp.upper()
    then = _BASE32.index(upper[0]) << 5 | _BASE32.index(upper[1])
    today = int(now // _DAY) % _SLOTS
    return (today - then) % _SLOTS


@attrs.frozen
class SRS:
    """Rewrites and reverses SRS addresses under one ``secret`` (bytes)."""

    secret: bytes = attrs.field(repr=False)
    max_age_days: int = MAX_AGE_DAYS

    def _hash(self, *parts: str) -> str:
        text = "".join(parts).lower().encode("utf-8")
        digest = hmac.new(self.secret, text, hashlib.sha1).digest()
        return base64.b64encode(digest).decode("ascii")[:_HASH_LENGTH]

    def _check(self, given: str, *parts: str) -> None:
        # Compared case-insensitively, as libsrs2 does: some relays change case.
        if not hmac.compare_digest(given.lower(), self._hash(*parts).lower()):
            raise SRSError("bad hash")

    def forward(self, sender: str, domain: str, now: float) -> str:
        """The envelope sender to forward mail from ``sender`` with, in ``domain`` (a
        domain Rail publishes SPF for). The null sender stays null; an address already in
        ``domain`` is kept (it is ours)."""
        if not sender:
            return ""
        local, _, sender_domain = sender.rpartition("@")
        if sender_domain.lower() == domain.lower():
            return sender
        if local[:4].upper() == "SRS0" and len(local) > 4:
            rest = local[4:]  # "=HHHH=TT=domain=local", its separator included
            return f"SRS1={self._hash(sender_domain, rest)}={sender_domain}={rest}@{domain}"
        if local[:4].upper() == "SRS1" and len(local) > 5:
            fields = local[5:].split("=", 2)
            if len(fields) == 3:
                _, first, rest = fields  # the first forwarder keeps the SRS0 part
                return f"SRS1={self._hash(first, rest)}={first}={rest}@{domain}"
        stamp = _timestamp(now)
        hashed = self._hash(stamp, sender_domain, local)
        return f"SRS0={hashed}={stamp}={sender_domain}={local}@{domain}"

    def reverse(self, address: str, now: float) -> str:
        """The address an SRS ``address`` (``local@domain``) stands for: the original
        sender for SRS0, the first forwarder's SRS0 address for SRS1. Raises
        :class:`SRSError` when it is not ours, or too old."""
        local = address.rpartition("@")[0]
        if not is_srs(local):
            raise SRSError("not an SRS address")
        kind, rest = local[:4].upper(), local[5:]
        if kind == "SRS1":
            fields = rest.split("=", 2)
            if len(fields) != 3 or not fields[1] or not fields[2]:
                raise SRSError("malformed SRS1 address")
            given, first, srs0 = fields
            self._check(given, first, srs0)
            return f"SRS0{srs0}@{first}"
        fields = rest.split("=", 3)
        if len(fields) != 4 or not all(fields):
            raise SRSError("malformed SRS0 address")
        given, stamp, domain, original = fields
        age = _age_days(stamp, now)
        if age is None:
            raise SRSError("malformed timestamp")
        self._check(given, stamp, domain, original)
        if age > self.max_age_days:
            raise SRSError("too old")
        return f"{original}@{domain}"
