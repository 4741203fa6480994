"""The audit log: one structured line per accepted message, whichever way it came in.

Events go to the ``rail.audit`` namespace with stable fields (``msg_id``, ``client``,
``sender``, ``recipients``, ``size``, ``channel``), so JSON log observers can index them and
the text log reads as ``key=value`` pairs; ``rail_event`` names the line kind
(``message.accepted``) for the JSON log (see :mod:`rail.logjson`).
"""

from __future__ import annotations

from twisted.logger import Logger

from rail.store.model import NewMessage

__all__ = ["log_accepted"]

_audit = Logger(namespace="rail.audit")


def log_accepted(message: NewMessage) -> None:
    _audit.info(
        "accepted id={msg_id} client={client} from={sender} recipients={recipients}"
        " size={size} channel={channel}",
        rail_event="message.accepted",
        msg_id=message.id,
        client=message.client,
        sender=message.sender or "<>",
        recipients=len(message.recipients),
        size=len(message.data),
        channel=message.channel,
    )
