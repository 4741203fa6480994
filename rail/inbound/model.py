"""What inbound mail is made of, shared by the port-25 session, the verifier, the spool and
the webhook dispatcher: plain values and the spool's interface.

A message received on port 25 is stored once, with one *webhook job* per client whose
recipients it has (RAIL.md §5: one POST per client per message). Job status vocabulary:
``queued`` (never tried), ``deferred`` (tried, will retry), ``delivered`` (2xx) and
``failed`` (permanent 4xx, too old, or quarantined: its stored message failed
verification or preparing the POST raised; ``last_reply`` then starts with
``quarantined:``); the last two are final.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from zope.interface import Interface

__all__ = [
    "Authentication",
    "DKIMResult",
    "IInboundStore",
    "InboundMessage",
    "InboundStatus",
    "WebhookJob",
    "WebhookResult",
    "WebhookState",
    "WebhookTarget",
    "new_jobs",
]

WebhookState = Literal["queued", "deferred", "delivered", "failed"]


@attrs.frozen
class DKIMResult:
    """One DKIM-Signature's verification (RFC 8601 §2.7.1 ``dkim=`` values)."""

    result: Literal["pass", "fail", "neutral", "temperror", "permerror", "policy"]
    domain: str | None = None
    """The signature's ``d=`` (lower-case), if it could be read."""
    selector: str | None = None
    algorithm: str | None = None
    """``a=``: ``rsa-sha256`` or ``ed25519-sha256``."""
    header_b: str | None = None
    """The first characters of ``b=``, to tell signatures apart in Authentication-Results."""
    reason: str | None = None


@attrs.frozen
class Authentication:
    """What SPF, DKIM and DMARC said about one message, and what policy made of it."""

    spf: Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
    spf_scope: Literal["mailfrom", "helo"]
    """Which identity SPF checked: the MAIL FROM domain, or HELO for the null sender."""
    spf_domain: str
    dkim: tuple[DKIMResult, ...]
    """Empty when the message has no DKIM-Signature (``dkim=none``)."""
    dmarc: Literal["pass", "fail", "none", "temperror", "permerror"]
    from_domain: str | None
    """The RFC5322.From domain DMARC evaluated; None when the From header is unusable."""
    dmarc_policy: Literal["none", "quarantine", "reject"] | None = None
    """The policy that applies to this message's From domain (``sp=`` for subdomains), after
    ``pct``; None without a DMARC record."""
    spf_reason: str | None = None
    dmarc_reason: str | None = None
    arc: Literal["pass", "fail", "none", "temperror"] = "none"
    """The ARC chain's validation (RFC 8617 §5.2, dkimpy's ``arc_verify``): ``none``
    without ARC sets; ``temperror`` when a key could not be fetched."""
    arc_instance: int = 0
    """The highest ARC instance (``i=``) found, 0 without ARC sets."""

    def as_json(self) -> dict[str, Any]:
        """The ``authentication`` field of the webhook payload (docs/webhooks.md)."""
        return {
            "spf": {"result": self.spf, "scope": self.spf_scope, "domain": self.spf_domain},
            "dkim": [
                {
                    "result": d.result,
                    "domain": d.domain,
                    "selector": d.selector,
                    "algorithm": d.algorithm,
                }
                for d in self.dkim
            ]
            or [{"result": "none"}],
            "dmarc": {
                "result": self.dmarc,
                "domain": self.from_domain,
                "policy": self.dmarc_policy,
            },
            "arc": {"result": self.arc, "instance": self.arc_instance},
        }


@attrs.frozen
class WebhookTarget:
    """One client's share of an inbound message: where it is POSTed, and for whom."""

    client: str
    url: str
    recipients: tuple[str, ...]


@attrs.frozen
class InboundMessage:
    """A message accepted on port 25, ready to be made durable.

    ``data`` is the stored message with Rail's Received and Authentication-Results fields
    prepended (CRLF line ends): exactly what ``raw_message`` carries. ``authentication`` is
    :meth:`Authentication.as_json`. ``bounce_allowed`` is False when a failed webhook must
    not produce a DSN (null sender, or SPF ``fail`` or DMARC ``fail``: the sender is likely
    forged, and a DSN would be backscatter).
    """

    id: str
    sender: str
    targets: tuple[WebhookTarget, ...]
    data: bytes
    received_at: float
    subject: str
    authentication: dict[str, Any]
    bounce_allowed: bool
    peer: str = ""
    tls: bool = False
    forwards: tuple[Any, ...] = ()
    """Outbound messages (:class:`rail.store.model.NewMessage`) forwarding makes of this
    one (:mod:`rail.forward.copies`): queued in the same transaction as the message, so
    nothing is lost between accepting it and re-sending it."""


@attrs.frozen
class WebhookJob:
    """A due POST: one inbound message for one client."""

    message_id: str
    client: str
    url: str
    recipients: tuple[str, ...]
    sender: str
    subject: str
    received_at: float
    authentication: dict[str, Any]
    bounce_allowed: bool
    attempts: int
    data: bytes

    @property
    def key(self) -> tuple[str, str]:
        """Identifies the job among those in flight."""
        return (self.message_id, self.client)


def new_jobs(message: InboundMessage) -> list[WebhookJob]:
    """The webhook jobs a just-stored ``message`` creates, as a claim would read them:
    the dispatcher can start them without reading the message back."""
    return [
        WebhookJob(
            message_id=message.id,
            client=target.client,
            url=target.url,
            recipients=target.recipients,
            sender=message.sender,
            subject=message.subject,
            received_at=message.received_at,
            authentication=message.authentication,
            bounce_allowed=message.bounce_allowed,
            attempts=0,
            data=message.data,
        )
        for target in message.targets
    ]


@attrs.frozen
class WebhookResult:
    """The outcome of one POST. ``next_attempt_at`` is set for ``deferred`` only; ``reply``
    says what happened (``HTTP 503``, ``timeout after 30s``, ``connection refused``...)."""

    message_id: str
    client: str
    attempted_at: float
    status: Literal["delivered", "deferred", "failed"]
    reply: str
    next_attempt_at: float | None = None


@attrs.frozen
class InboundStatus:
    """``GET /api/v1/inbound/{id}`` for the owning client."""

    id: str
    client: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    size: int
    received_at: float
    status: WebhookState
    attempts: int
    last_reply: str | None
    next_attempt_at: float | None
    updated_at: float
    authentication: dict[str, Any]
    body_purged_at: float | None = None
    """When retention dropped the message's bytes (``storage.retention.body``), or None."""


class IInboundStore(Interface):
    """The durable inbound spool. Every method returns a Deferred and never blocks."""

    def accept_inbound(message: InboundMessage) -> Any:  # noqa: N805
        """Make ``message``, one ``queued`` webhook job per target and its ``forwards``
        (queued for outbound delivery) durable (fsynced); fires with
        :class:`rail.store.model.Accepted` (``recipients`` = number of jobs), or
        fails with QueueFullError or StoreUnavailableError and stores nothing."""

    def claim_webhooks(now: float, limit: int, exclude: frozenset[tuple[str, str]]) -> Any:  # noqa: N805
        """Fires with up to ``limit`` :class:`WebhookJob` due at ``now`` (oldest due
        first), none whose key is in ``exclude``."""

    def record_webhook(result: WebhookResult, dsn: Any = None) -> Any:  # noqa: N805
        """Make ``result`` durable. When it is ``failed`` and the job's message allows
        bounces, ``dsn(BounceReport)`` is called (a :data:`rail.store.deliveries.DSNBuilder`)
        and the NewMessage it returns is queued for outbound delivery in the same
        transaction. Fires with that NewMessage or None; or with
        :class:`rail.store.model.Stale` when the store is shared and another node holds
        the job now (nothing was written)."""

    def quarantine_inbound(message_id: str, kind: Any, reason: str, now: float) -> Any:  # noqa: N805
        """Make every pending webhook job of ``message_id`` ``failed`` for good, with
        ``last_reply`` ``quarantined: <reason>`` and no DSN; fires with True once that is
        on disk (observers of quarantines are told, as for outbound mail), False if none
        was pending. A claim quarantines a message whose stored row fails verification by
        itself and hands out the other jobs."""

    def inbound_status(client: str, message_id: str) -> Any:  # noqa: N805
        """Fires with the :class:`InboundStatus` of ``client``'s job for ``message_id``,
        or None (no such message, or not addressed to ``client``)."""

    def webhook_counts() -> Any:
        """Fires with the number of webhook jobs in each status."""

    def observe_inbound(callback: Any) -> None:  # noqa: N805
        """Call ``callback(jobs)`` on the reactor whenever a new inbound message is
        stored, with its new webhook jobs (:func:`new_jobs`), before the caller of
        ``accept_inbound`` hears of it."""
