"""``POST /api/v1/send``: an app submits a message as JSON over mTLS.

The resource is glue: :func:`rail.mail.compose.compose` decides everything about the
request, the store makes it durable, and this module maps both outcomes to HTTP. The
answer waits for the store's fsync (RAIL.md §4: 202 only once the message is on disk),
so rendering is asynchronous.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

from rail.audit import log_accepted
from rail.mail.compose import Submission, compose
from rail.mail.headers import HeaderLimits
from rail.mail.request import ComposeError
from rail.policy.identity import ClientIdentity, identity_from_certificate
from rail.policy.rates import ClientRates
from rail.refusals import Refusals
from rail.store.ids import new_message_id
from rail.store.model import (
    Accepted,
    Conflict,
    IQueueStore,
    QueueFullError,
    Replayed,
    StoreUnavailableError,
)
from rail.web.identity import peer_certificate
from rail.web.jsonapi import JSONResource, certificate_required, write_error, write_json

__all__ = [
    "INLINE_LIMIT",
    "RETRY_AFTER",
    "Send",
    "SendSettings",
    "accepted_to_json",
    "client_identity",
    "finish_later",
    "json_content_type",
]

_log = Logger()

# Seconds a client should wait after a 503 before trying again.
RETRY_AFTER = 60

INLINE_LIMIT = 64 * 1024
"""Request bodies up to this many bytes are composed on the reactor thread."""


def _peer(request: Any) -> str:
    return str(getattr(request.getClientAddress(), "host", ""))


def client_identity(request: Any) -> ClientIdentity | bytes:
    """The authenticated client, or the body of a 401 already set on ``request``."""
    # One connection has one certificate: read it once, not on every keep-alive request.
    channel = request.channel
    identity = getattr(channel, "_rail_identity", None)
    if identity is None:
        certificate = peer_certificate(request)
        if certificate is not None:
            try:
                identity = identity_from_certificate(certificate)
            except ValueError:
                identity = None
        if identity is not None and channel is not None:
            channel._rail_identity = identity
    if identity is None:
        return certificate_required(request)
    return identity


def finish_later(request: Any, answer: Deferred[bytes]) -> Any:
    """Return NOT_DONE_YET and write ``answer``'s body when it fires, unless the client
    has gone: writing to a finished or disconnected request raises."""
    gone = False

    def went_away(_: object) -> None:
        nonlocal gone
        gone = True

    def write(body: bytes) -> None:
        if gone:
            return
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        request.write(body)
        request.finish()

    request.notifyFinish().addBoth(went_away)
    answer.addCallback(write)
    answer.addErrback(lambda failure: _log.failure("writing an API answer failed", failure))
    return NOT_DONE_YET


def accepted_to_json(outcome: Accepted | Replayed) -> dict[str, Any]:
    """The 202 answer (docs/api.md): ``recipients`` counts every recipient accepted,
    ``suppressed`` lists those of them on the client's suppression list, not queued."""
    return {
        "id": outcome.id,
        "status": "queued",
        "recipients": outcome.recipients,
        "suppressed": [
            {"address": entry.address, "reason": entry.reason} for entry in outcome.suppressed
        ],
    }


def json_content_type(value: bytes | None) -> bool:
    if value is None:
        return False
    media_type, _, parameters = value.partition(b";")
    if media_type.strip().lower() != b"application/json":
        return False
    for parameter in parameters.split(b";"):
        name, _, charset = parameter.partition(b"=")
        if name.strip().lower() == b"charset" and charset.strip(b' "').lower() != b"utf-8":
            return False
    return True


class SendSettings(JSONResource):
    """What single and batch sends share: the store, the clock and the limits a message
    is composed and accepted under."""

    def __init__(
        self,
        store: IQueueStore,
        clock: IReactorTime,
        *,
        hostname: str,
        max_message_size: int,
        max_recipients: int,
        header_limits: HeaderLimits | None = None,
        refusals: Refusals | None = None,
        in_thread: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
        rates: ClientRates | None = None,
        count_accepted: Callable[[float, int], None] | None = None,
    ) -> None:
        """``count_accepted(now, messages)`` counts the messages the store accepted
        (the console's and ``/stats``' acceptance rate)."""
        super().__init__()
        self._rates = rates
        self._count_accepted = count_accepted
        self._store = store
        self._clock = clock
        self._hostname = hostname
        self._max_message_size = max_message_size
        self._max_recipients = max_recipients
        self._header_limits = header_limits or HeaderLimits()
        self._refusals = refusals
        self._in_thread = in_thread

    def _compose(
        self, request: Any, identity: ClientIdentity, work: Callable[[], Any], large: bool
    ) -> Any:
        """Run ``work`` (composing the request's body): in place, or by ``in_thread``
        when the body is ``large`` (too long to compose on the reactor); then
        :meth:`_composed` or :meth:`_compose_failed`."""
        if self._in_thread is not None and large:
            composing = self._in_thread(work)
        else:
            composing = maybeDeferred(work)
        answer = composing.addCallbacks(
            self._composed,
            self._compose_failed,
            callbackArgs=(request, identity),
            errbackArgs=(request, identity),
        )
        return finish_later(request, answer)

    def _composed(self, result: Any, request: Any, identity: ClientIdentity) -> Any:
        """Answer the request with what composing made."""
        raise NotImplementedError

    def _compose_failed(self, failure: Failure, request: Any, identity: ClientIdentity) -> bytes:
        """Answer the request when composing raised (a bug)."""
        raise NotImplementedError


class Send(SendSettings):
    """Mounted at ``/api/v1/send`` and ``/v1/send``.

    Composing costs time linear in the request, which for a large one (tens of MB of
    attachments, a megabyte of header text) is too long for the reactor thread: a
    request over :data:`INLINE_LIMIT` bytes is composed by ``in_thread`` (a function
    running a callable in a worker thread and returning a Deferred of its result).
    Small ones, nearly all, are composed in place, which is faster than a thread hop.
    """

    def render_POST(self, request: Any) -> Any:
        identity = client_identity(request)
        if isinstance(identity, bytes):
            return identity
        if not json_content_type(request.getHeader(b"Content-Type")):
            return write_error(
                request,
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the message as Content-Type: application/json",
            )
        key = request.getHeader(b"Idempotency-Key")
        now = self._clock.seconds()
        body = request.content.read()
        work = functools.partial(
            compose,
            body,
            None if key is None else key.decode("latin-1"),
            identity,
            message_id=new_message_id(now),
            hostname=self._hostname,
            now=now,
            max_recipients=self._max_recipients,
            max_message_size=self._max_message_size,
            header_limits=self._header_limits,
        )
        return self._compose(request, identity, work, len(body) > INLINE_LIMIT)

    def _compose_failed(self, failure: Failure, request: Any, identity: ClientIdentity) -> bytes:
        _log.failure("composing a message failed", failure, client=identity.name)
        return write_error(request, 500, "INTERNAL_ERROR", "Rail failed to build the message")

    def _composed(
        self, result: Submission | ComposeError, request: Any, identity: ClientIdentity
    ) -> Any:
        if isinstance(result, ComposeError):
            if result.limit is not None and self._refusals is not None:
                self._refusals.refuse("https", result.limit, _peer(request))
            return write_error(request, result.http_status, result.code, result.message)
        if self._rates is not None:
            recipients = len(result.message.recipients)
            limited = self._rates.check_message(identity.name, recipients)
            if limited is not None:
                if self._refusals is not None:
                    self._refusals.refuse("https", limited.limit, _peer(request))
                request.setHeader(b"Retry-After", str(limited.retry_after).encode("ascii"))
                return write_error(request, 429, "RATE_LIMITED", limited.text)
        answer = maybeDeferred(self._store.accept, result.message, result.idempotency)
        answer.addCallback(self._stored, request, result)
        # Also catches a bug in _stored, so the request is always answered.
        answer.addErrback(self._failed, request, identity)
        return answer

    def _stored(self, outcome: object, request: Any, submission: Submission) -> bytes:
        if isinstance(outcome, Conflict):
            return write_error(
                request,
                409,
                "IDEMPOTENCY_CONFLICT",
                "this request_id was already used for a different request",
            )
        if isinstance(outcome, Replayed):
            request.setHeader(b"Idempotent-Replayed", b"true")
        elif isinstance(outcome, Accepted):
            # The same line as SMTP submission writes, from the same function.
            log_accepted(submission.message)
            if self._count_accepted is not None:
                self._count_accepted(self._clock.seconds(), 1)
            if self._rates is not None:
                message = submission.message
                self._rates.record(message.client, len(message.recipients))
        else:
            raise TypeError(f"unexpected store outcome {outcome!r}")
        return write_json(request, 202, accepted_to_json(outcome))

    def _failed(self, failure: Failure, request: Any, identity: ClientIdentity) -> bytes:
        request.setHeader(b"Retry-After", str(RETRY_AFTER).encode("ascii"))
        if failure.check(QueueFullError):
            _log.warn("queue full, refused a message from {client}", client=identity.name)
            return write_error(request, 503, "QUEUE_FULL", "the queue is full; retry later")
        if failure.check(StoreUnavailableError):
            _log.warn(
                "store unavailable, refused a message from {client}: {reason}",
                client=identity.name,
                reason=str(failure.value),
            )
        else:
            _log.failure("storing a message failed", failure, client=identity.name)
        return write_error(
            request, 503, "QUEUE_UNAVAILABLE", "the queue is unavailable; retry later"
        )
