"""The outbound messages forwarding makes from one inbound message.

Pure (dkimpy and the stdlib). Two kinds:

- a *forwarded copy*, for the forward addresses of a route: Rail's ARC set (RFC 8617:
  ARC-Authentication-Results from Rail's own checks, ARC-Message-Signature, ARC-Seal,
  ``cv=`` from the ``arc=`` result Rail's verification found), then Rail's Received
  field, then the message exactly as it arrived (its DKIM signatures kept). The envelope
  sender is rewritten with SRS in the alias's domain, so SPF passes for Rail.
- a *returned bounce*, for mail to a valid SRS address: Rail's Received field and the
  message as it arrived, to the unwrapped address with the null sender.

Rail's own Authentication-Results field is in what ARC signs over (dkimpy reads the
results from it) but not in what is sent: the ARC-Authentication-Results field carries
the same results, under the seal. The ARC signatures are rsa-sha256 (RFC 8617 defines
no other) with the alias domain's DKIM RSA key and selector.
"""

from __future__ import annotations

import attrs
import dkim

from rail.forward import fastrsa
from rail.forward.clients import forward_client, return_client
from rail.store.model import NewMessage

__all__ = ["ForwardRequest", "Received", "SealKey", "arc_set", "forwarded_copy", "returned_bounce"]


fastrsa.install()  # the same signatures as dkimpy's, from OpenSSL


@attrs.frozen
class SealKey:
    """What sealing for ``domain`` needs: its RSA selector and PEM (PKCS#1) private key."""

    domain: str
    selector: str
    private_pem: bytes = attrs.field(repr=False)


@attrs.frozen
class ForwardRequest:
    """Mail to ``alias`` is forwarded to ``targets`` (by ``inbound.routes[index]``)."""

    alias: str
    targets: tuple[str, ...]
    index: int

    @property
    def domain(self) -> str:
        """The forwarding domain: the alias's, lower-cased."""
        return self.alias.rpartition("@")[2].lower()


@attrs.frozen
class Received:
    """One inbound message as the forwarder sees it: Rail's ``received`` field and
    ``results`` (Authentication-Results) field, each CRLF-terminated, and the ``original``
    message as it arrived (CRLF lines)."""

    received: bytes
    results: bytes
    original: bytes
    sender: str
    received_at: float
    smtputf8: bool = False
    eight_bit: bool = False


def arc_set(message: Received, key: SealKey, authserv_id: str) -> bytes:
    """Rail's ARC set for ``message``, CRLF-terminated fields to put on top.

    dkimpy takes ``cv=`` from the ``arc=`` clause of Rail's results field; a ``temperror``
    there (a key look-up failed) is sealed as ``fail``, the only other value ``cv=``
    has. dkimpy answers with no set when the results field cannot be read, and refuses
    a chain past instance 50: then the message goes without a set, unsealed, as it
    would through any plain relay, rather than not at all."""
    results = message.results.replace(b"arc=temperror", b"arc=fail")
    signed = message.received + results + message.original
    try:
        fields = dkim.arc_sign(
            signed,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_pem,
            authserv_id.encode("ascii"),
            timestamp=int(message.received_at),
        )
    except dkim.DKIMException:
        return b""
    return b"".join(fields)


def forwarded_copy(
    message_id: str, message: Received, request: ForwardRequest, sender: str, seal: bytes
) -> NewMessage:
    """The outbound message forwarding ``message`` to ``request.targets``, with the
    envelope sender ``sender`` (already rewritten) and the ARC set ``seal``."""
    return NewMessage(
        id=message_id,
        client=forward_client(request.alias),
        sender=sender,
        recipients=request.targets,
        data=seal + message.received + message.original,
        channel="smtp",
        received_at=message.received_at,
        smtputf8=message.smtputf8,
        eight_bit=message.eight_bit,
    )


def returned_bounce(message_id: str, message: Received, domain: str, to: str) -> NewMessage:
    """The outbound message returning a bounce that came to an SRS address of
    ``domain`` to ``to``, its original sender, with the null sender (a bounce is never
    bounced)."""
    return NewMessage(
        id=message_id,
        client=return_client(domain),
        sender="",
        recipients=(to,),
        data=message.received + message.original,
        channel="smtp",
        received_at=message.received_at,
        smtputf8=message.smtputf8,
        eight_bit=message.eight_bit,
    )
