"""Where Rail's own DSN for a forwarded message goes: to the original sender.

Pure. A forwarded copy's envelope sender is an SRS address of Rail's; when the final host
refuses it during the SMTP transaction, Rail itself writes the DSN. Sent to the SRS
address, it would leave Rail only to come back to its own port 25 and be unwrapped
there; it goes to the unwrapped address at once instead. An address that does not
verify (not expected: Rail wrote it) keeps the DSN on the SRS address.
"""

from __future__ import annotations

from collections.abc import Callable

from rail.forward.clients import forwarding_domain
from rail.forward.srs import SRS, SRSError, is_srs
from rail.store.model import BounceReport

__all__ = ["dsn_recipient"]


def dsn_recipient(srs: SRS, now: Callable[[], float]) -> Callable[[BounceReport], str]:
    """The DSN recipient for a bounce ``report``: its sender, unwrapped when it is an
    SRS address of the forwarding domain of a forwarded message."""

    def recipient(report: BounceReport) -> str:
        domain = forwarding_domain(report.client)
        local, _, sender_domain = report.sender.rpartition("@")
        if domain is None or sender_domain.lower() != domain or not is_srs(local):
            return report.sender
        try:
            return srs.reverse(report.sender, now())
        except SRSError:
            return report.sender

    return recipient
