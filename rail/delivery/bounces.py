"""Turns a bounced message's report from the store into the DSN message to queue.

Pure glue between :mod:`rail.store` (which decides *when*: the moment a message becomes
final with bounces, inside the transaction that records it) and :mod:`rail.delivery.dsn`
(which decides *what*). The DSN is queued like any message, from the null reverse-path, so
it is delivered, retried and never bounced in turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twisted.logger import Logger

from rail.delivery.dsn import FailedRecipient, build_dsn, should_send_dsn
from rail.delivery.outcome import Reply
from rail.store.deliveries import DSNBuilder
from rail.store.ids import new_message_id
from rail.store.model import BounceReport, NewMessage

__all__ = ["dsn_builder", "reply_from_text"]

_log = Logger()

_REPLY = re.compile(r"^([2-5]\d\d)(?: ([245]\.\d{1,3}\.\d{1,3}))?(?: (.*))?$", re.DOTALL)


def reply_from_text(text: str, *, remote: bool) -> Reply:
    """Read back a reply the store kept as ``str(Reply)``."""
    match = _REPLY.match(text)
    if match is None:
        return Reply(554, "5.0.0", text, remote=remote)
    return Reply(int(match[1]), match[2], match[3] or "", remote=remote)


def dsn_builder(
    hostname: str,
    now: Callable[[], float],
    on_reactor: Callable[..., object] | None = None,
    recipient: Callable[[BounceReport], str] | None = None,
) -> DSNBuilder:
    """A :data:`DSNBuilder` reporting as ``hostname``; ``now`` is the clock.

    It runs on the store's writer thread, inside the transaction that records the bounce.
    With ``on_reactor`` (``reactor.callFromThread``), a DSN that cannot be built (the
    bounced message's header section makes the builder raise) is logged through it and
    none is sent, so the bounce is still recorded: the alternative, failing the record,
    would leave the recipients pending and deliver the message again and again.
    ``recipient(report)`` chooses where the DSN goes (default: the bounced message's
    sender; forwarding unwraps its SRS senders, :mod:`rail.forward.bounces`).
    """

    def build(report: BounceReport) -> NewMessage | None:
        if on_reactor is None:
            return _build(report)
        try:
            return _build(report)
        except Exception as error:
            on_reactor(
                _log.error,
                "cannot build the DSN for {msg_id} ({error}): none is sent",
                msg_id=report.message_id,
                error=type(error).__name__,
            )
            return None

    def _build(report: BounceReport) -> NewMessage | None:
        if not should_send_dsn(report.sender):
            return None
        when = now()
        message_id = new_message_id(when)
        failures = [
            FailedRecipient(
                address=bounced.address,
                reply=reply_from_text(bounced.reply, remote=bounced.remote_mta is not None),
                remote_mta=bounced.remote_mta,
                last_attempt=bounced.updated_at,
            )
            for bounced in report.bounced
        ]
        data = build_dsn(
            reporting_mta=hostname,
            original=report.data,
            original_id=report.message_id,
            sender=report.sender,
            failures=failures,
            arrival=report.received_at,
            now=when,
            message_id=message_id,
        )
        to = recipient(report) if recipient is not None else report.sender
        return NewMessage(
            id=message_id,
            client=report.client,
            sender="",
            recipients=(to,),
            data=data,
            channel="smtp",
            received_at=when,
            smtputf8=not to.isascii(),
            eight_bit=any(byte > 127 for byte in data),
        )

    return build
