"""The HTTPS site: resource tree, request body limit, idle timeout and request deadlines.

twisted.web buffers any request body the client cares to send (to a temporary file past
100 KB); Rail refuses a body over ``limits.http_body_size`` as soon as its length is known
or its chunks pass the limit, answers 413 and closes the connection.

A kept-alive connection outlives its TLS handshake, so every request on a connection
whose client certificate has been revoked since is answered ``401 CERTIFICATE_REVOKED``
(and the connection closed), whatever its path, as the handshake itself would now refuse.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from rail.delivery.stats import DeliveryStats
from rail.inbound.model import IInboundStore
from rail.mail.headers import HeaderLimits
from rail.policy.rates import ClientRates
from rail.refusals import Refusals
from rail.store.adminmodel import IAdminQueue
from rail.store.deliveries import DSNBuilder
from rail.store.model import IDeliveryQueue, IQueueStore
from rail.store.suppressionmodel import ISuppressionList
from rail.web.admin import AdminResource, DomainsReport
from rail.web.batch import SendBatch, SendRoutes
from rail.web.certrevoke import CertificatesResource, Revoke
from rail.web.clientevents import ClientEventsResource, IClientEventSettings
from rail.web.deadlines import deadline_channel
from rail.web.health import Healthz, Readiness, Readyz
from rail.web.identity import peer_serial
from rail.web.inbound import InboundStatusResource
from rail.web.jsonapi import NotFound, error_body, write_error
from rail.web.messagelist import MessagesResource
from rail.web.secretrotate import ClientsResource, Rotate
from rail.web.send import Send
from rail.web.stats import Metrics, Stats
from rail.web.statsaccess import StatsAccess
from rail.web.suppressions import SuppressionsResource
from rail.web.webhookkey import WebhookKeyResource, WebhookSecretResource
from rail.web.who import Who
from rail.webhooks.key import WebhookKey

__all__ = ["LimitedRequest", "RailSite", "build_site"]

_log = Logger()


class _Directory(Resource):
    """A path segment whose unknown children are JSON 404s."""

    def getChild(self, path: bytes, request: Any) -> Resource:
        return NotFound()

    def render(self, request: Any) -> bytes:
        return NotFound().render(request)


class LimitedRequest(Request):
    """A request that refuses bodies larger than its site's ``max_body``."""

    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if length is not None and length > limit:
            self._refuse(limit)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        limit = self._limit()
        if self._received > limit:
            self._refuse(limit)
            return
        super().handleContentChunk(data)

    def _limit(self) -> int:
        site: Any = self.channel.site  # type: ignore[attr-defined]
        limit: int = site.max_body
        return limit

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # The rest of an oversized body may already be in the read buffer, so the
        # channel can still complete the request; it has been answered, drop it.
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def _refuse(self, limit: int) -> None:
        # Answer before reading the body, as _respondToBadRequestAndDisconnect does:
        # waiting for an unbounded body to finish is the thing being prevented.
        self._refused = True
        self.content = io.BytesIO()
        body = error_body("PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes")
        transport: Any = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: application/json; charset=utf-8\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(body)).encode("ascii") + b"\r\n\r\n" + body
        )
        self.channel.loseConnection()


class _CertificateRevoked(Resource):
    """Every request on a connection whose certificate was revoked after its handshake."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.setHeader(b"WWW-Authenticate", b"mutual-tls")
        # The connection's credential will not come back: end it after this answer.
        request.setHeader(b"Connection", b"close")
        request.channel.persistent = False
        return write_error(
            request,
            401,
            "CERTIFICATE_REVOKED",
            "the client certificate of this connection has been revoked",
        )


class RailSite(Site):
    """Site with Rail's limits; access logs name no query strings or bodies.

    ``revoked()`` returns the loaded revoked serials (no I/O: it is called on every
    request that came with a client certificate).
    ``header_timeout``, ``body_grace`` and ``body_min_rate`` are the request deadlines of
    :class:`rail.web.deadlines.DeadlineChannel` (None: not applied); what they refuse is
    reported to ``refusals`` under ``name``.
    """

    requestFactory = LimitedRequest
    protocol = deadline_channel

    def __init__(
        self,
        root: Resource,
        max_body: int,
        idle_timeout: float,
        clock: Any,
        revoked: Callable[[], frozenset[int]] = frozenset,
        *,
        header_timeout: float | None = None,
        body_grace: float | None = None,
        body_min_rate: int | None = None,
        refusals: Any = None,
        name: str = "https",
    ) -> None:
        # Rail reads no form arguments; without this twisted.web parses every POST's
        # Content-Type with an EmailMessage (~50 us) looking for a form.
        super().__init__(root, timeout=idle_timeout, reactor=clock, parsePOSTFormSubmission=False)
        self.max_body = max_body
        self.noisy = False
        self.displayTracebacks = False
        self.header_timeout = header_timeout
        self.body_grace = body_grace
        self.body_min_rate = body_min_rate
        self.refusals = refusals
        self.name = name
        self._revoked = revoked

    def getResourceFor(self, request: Any) -> Any:
        serial = peer_serial(request)
        if serial is not None and serial in self._revoked():
            request.site = self
            _log.info(
                "refused {method} {path} from {peer}: client certificate serial {serial}"
                " was revoked after the handshake",
                method=request.method.decode("ascii", "replace"),
                path=request.path.split(b"?", 1)[0].decode("ascii", "replace"),
                peer=_peer(request),
                serial=format(serial, "x"),
            )
            return _REVOKED
        return super().getResourceFor(request)


_REVOKED = _CertificateRevoked()


def _peer(request: Any) -> str:
    address = request.getClientAddress()
    return f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"


def build_site(
    *,
    ca: x509.Certificate,
    revoked: Callable[[], frozenset[int]],
    readiness: Readiness,
    clock: IReactorTime,
    max_body: int,
    idle_timeout: float,
    store: IQueueStore,
    hostname: str,
    max_message_size: int,
    max_recipients: int,
    header_limits: HeaderLimits | None = None,
    refusals: Refusals | None = None,
    in_thread: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
    stats: DeliveryStats | None = None,
    webhook_key: WebhookKey | None = None,
    mta_sts: Resource | None = None,
    deadlines: dict[str, Any] | None = None,
    public_stats: str = "loopback",
    gather_metrics: Callable[[bytes], Deferred[bytes]] | None = None,
    dsn: DSNBuilder | None = None,
    domains: DomainsReport | None = None,
    client_events: IClientEventSettings | None = None,
    rates: ClientRates | None = None,
    rotate_secret: Rotate | None = None,
    console: Resource | None = None,
    revoke_certificate: Revoke | None = None,
) -> RailSite:
    """The HTTPS site; ``deadlines`` are :class:`RailSite`'s keyword arguments
    (``header_timeout``, ``body_grace``, ``body_min_rate``, ``refusals``);
    ``public_stats`` is ``web.public_stats``; ``gather_metrics`` makes ``/metrics`` cover
    every worker process (:mod:`rail.workers.metrics`); ``dsn`` makes the DSN of an admin's bounce;
    ``domains`` answers ``/api/v1/admin/domains`` (``rail doctor``'s report);
    ``client_events`` answers ``/api/v1/admin/clients/{name}/events``; ``console`` is
    mounted at ``/console`` (:mod:`rail.console`); ``revoke_certificate`` answers
    ``/api/v1/admin/certificates/{serial}/revoke``."""
    root = _Directory()
    api = _Directory()
    api.putChild(b"who", Who(ca, revoked, clock, max_body))
    send = Send(
        store,
        clock,
        hostname=hostname,
        max_message_size=max_message_size,
        max_recipients=max_recipients,
        header_limits=header_limits,
        refusals=refusals,
        in_thread=in_thread,
        rates=rates,
        count_accepted=stats.accepted if stats is not None else None,
    )
    batch = SendBatch(
        store,
        clock,
        hostname=hostname,
        max_message_size=max_message_size,
        max_recipients=max_recipients,
        header_limits=header_limits,
        refusals=refusals,
        in_thread=in_thread,
        rates=rates,
        count_accepted=stats.accepted if stats is not None else None,
    )
    sending = SendRoutes(send, batch)
    v1 = _Directory()
    v1.putChild(b"send", sending)
    v1.putChild(b"messages", MessagesResource(store))
    if IAdminQueue.providedBy(store):
        admin = AdminResource(store, clock, dsn, domains)
        v1.putChild(b"admin", admin)
        if ISuppressionList.providedBy(store):
            admin.putChild(b"suppressions", SuppressionsResource(store, clock, admin=True))
        if revoke_certificate is not None:
            admin.putChild(b"certificates", CertificatesResource(revoke_certificate))
        secrets = ClientsResource(rotate_secret) if rotate_secret is not None else None
        if client_events is not None:
            admin.putChild(b"clients", ClientEventsResource(client_events, other=secrets))
        elif secrets is not None:
            admin.putChild(b"clients", secrets)
    if ISuppressionList.providedBy(store):
        v1.putChild(b"suppressions", SuppressionsResource(store, clock, admin=False))
    if IInboundStore.providedBy(store):
        v1.putChild(b"inbound", InboundStatusResource(store))
    if webhook_key is not None:
        v1.putChild(b"webhook-key", WebhookKeyResource(webhook_key.public_text))
        v1.putChild(b"webhook-secret", WebhookSecretResource(webhook_key))
    api.putChild(b"v1", v1)
    # The seed's examples post to /v1/send as well as /api/v1/send.
    short_v1 = _Directory()
    short_v1.putChild(b"send", sending)
    root.putChild(b"v1", short_v1)
    root.putChild(b"api", api)
    if mta_sts is not None:
        well_known = _Directory()
        well_known.putChild(b"mta-sts.txt", mta_sts)
        root.putChild(b".well-known", well_known)
    if console is not None:
        root.putChild(b"console", console)
    root.putChild(b"healthz", Healthz())
    root.putChild(b"readyz", Readyz(readiness))
    if stats is not None and IDeliveryQueue.providedBy(store):
        policy: Any = public_stats
        root.putChild(b"stats", StatsAccess(Stats(stats, store, clock), policy))
        root.putChild(b"metrics", StatsAccess(Metrics(stats, store, gather_metrics), policy))
    return RailSite(
        root,
        max_body=max_body,
        idle_timeout=idle_timeout,
        clock=clock,
        revoked=revoked,
        **(deadlines or {}),
    )
