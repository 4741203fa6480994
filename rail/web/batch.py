"""``POST /api/v1/send/batch`` (and ``/v1/send/batch``): up to 500 messages in one request.

Glue like :mod:`rail.web.send`: :func:`rail.mail.batch.compose_batch` decides every item,
the store makes the good ones durable in ONE transaction (one fsync, through
:class:`IBatchAccept`), and the answer is ``200 {"results": [...]}``, one entry per item in
order: ``{"status": 202, "id", "recipients", "suppressed", "replayed"}`` (a single send's
202 body with the HTTP status in ``status``), or ``{"status": 4xx/5xx, "error": {"code",
"message"}}``. Each item's ``request_id`` replays or
conflicts as a single send's does, and each counts against the client's rate limits in
order (an item over them is ``429 RATE_LIMITED`` with ``retry_after``); an item the store
then does not accept (a replay, a conflict, a full or unavailable queue) is taken back
from the counts, as a single send counts only what the store accepted. Composing a body over
:data:`BATCH_INLINE_LIMIT` runs in a thread.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from rail.audit import log_accepted
from rail.mail.batch import compose_batch
from rail.mail.compose import Submission
from rail.mail.request import ComposeError
from rail.policy.identity import ClientIdentity
from rail.store.ids import new_message_id
from rail.store.model import (
    Accepted,
    Conflict,
    IBatchAccept,
    QueueFullError,
    Replayed,
    StoreUnavailableError,
)
from rail.web.jsonapi import NotFound, write_error, write_json
from rail.web.send import (
    RETRY_AFTER,
    SendSettings,
    accepted_to_json,
    client_identity,
    json_content_type,
)

__all__ = ["BATCH_INLINE_LIMIT", "SendBatch", "SendRoutes"]

_log = Logger()

BATCH_INLINE_LIMIT = 4 * 1024
"""Batch bodies up to this many bytes are composed on the reactor thread. Lower than a
single send's :data:`~rail.web.send.INLINE_LIMIT`: the cost of a batch grows with its
number of messages, and 64 KiB holds hundreds of small ones (tens of milliseconds)."""


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"status": status, "error": {"code": code, "message": message}}


def _item(outcome: object, submission: Submission) -> dict[str, Any]:
    """One accepted item's entry of the answer."""
    if isinstance(outcome, Accepted | Replayed):
        if isinstance(outcome, Accepted):
            log_accepted(submission.message)
        entry = accepted_to_json(outcome)
        entry["status"] = 202
        entry["replayed"] = isinstance(outcome, Replayed)
        return entry
    if isinstance(outcome, Conflict):
        return _error(
            409, "IDEMPOTENCY_CONFLICT", "this request_id was already used for a different request"
        )
    if isinstance(outcome, QueueFullError):
        return _error(503, "QUEUE_FULL", "the queue is full; retry later")
    if isinstance(outcome, StoreUnavailableError):
        return _error(503, "QUEUE_UNAVAILABLE", "the queue is unavailable; retry later")
    raise TypeError(f"unexpected store outcome {outcome!r}")


class SendBatch(SendSettings):
    """Mounted at ``send/batch`` (see :class:`SendRoutes`); the same settings as Send."""

    def render_POST(self, request: Any) -> Any:
        identity = client_identity(request)
        if isinstance(identity, bytes):
            return identity
        if not json_content_type(request.getHeader(b"Content-Type")):
            return write_error(
                request,
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the batch as Content-Type: application/json",
            )
        if request.getHeader(b"Idempotency-Key") is not None:
            return write_error(
                request,
                400,
                "INVALID_REQUEST",
                "a batch takes no Idempotency-Key header; give each message its request_id",
            )
        now = self._clock.seconds()
        body = request.content.read()
        work = functools.partial(
            compose_batch,
            body,
            identity,
            new_id=lambda: new_message_id(now),
            hostname=self._hostname,
            now=now,
            max_recipients=self._max_recipients,
            max_message_size=self._max_message_size,
            header_limits=self._header_limits,
        )
        return self._compose(request, identity, work, len(body) > BATCH_INLINE_LIMIT)

    def _compose_failed(self, failure: Failure, request: Any, identity: ClientIdentity) -> bytes:
        _log.failure("composing a batch failed", failure, client=identity.name)
        return write_error(request, 500, "INTERNAL_ERROR", "Rail failed to build the messages")

    def _composed(
        self,
        results: list[Submission | ComposeError] | ComposeError,
        request: Any,
        identity: ClientIdentity,
    ) -> Any:
        if isinstance(results, ComposeError):
            return write_error(request, results.http_status, results.code, results.message)
        peer = str(getattr(request.getClientAddress(), "host", ""))
        counted_at = self._clock.seconds()
        limited: dict[int, dict[str, Any]] = {}
        for index, result in enumerate(results):
            if isinstance(result, ComposeError) and result.limit is not None:
                if self._refusals is not None:
                    self._refusals.refuse("https", result.limit, peer)
            if isinstance(result, Submission) and self._rates is not None:
                refusal = self._rate_limited(identity.name, result, peer, counted_at)
                if refusal is not None:
                    limited[index] = refusal
        good = [
            result
            for index, result in enumerate(results)
            if isinstance(result, Submission) and index not in limited
        ]
        stored = self._accept(good) if good else maybeDeferred(list)
        stored.addBoth(self._take_back, good, counted_at)
        stored.addCallback(self._stored, request, results, good, limited)
        stored.addErrback(self._failed, request, identity)
        return stored

    def _take_back(self, outcomes: Any, good: list[Submission], counted_at: float) -> Any:
        """Uncount the items the store did not accept (all of them if the batch failed)."""
        if self._rates is not None:
            failed = not isinstance(outcomes, list)
            for index, submission in enumerate(good):
                if failed or not isinstance(outcomes[index], Accepted):
                    message = submission.message
                    self._rates.forget(message.client, len(message.recipients), counted_at)
        return outcomes

    def _rate_limited(
        self, client: str, submission: Submission, peer: str, at: float
    ) -> dict[str, Any] | None:
        """The entry of an item over the client's rate limits, or None: then the item is
        counted at once, so the items after it in the batch see it (taken back if the
        store then does not accept it: :meth:`_take_back`)."""
        assert self._rates is not None
        recipients = len(submission.message.recipients)
        refusal = self._rates.check_message(client, recipients)
        if refusal is None:
            self._rates.record(client, recipients, at)
            return None
        if self._refusals is not None:
            self._refusals.refuse("https", refusal.limit, peer)
        entry = _error(429, "RATE_LIMITED", refusal.text)
        entry["retry_after"] = refusal.retry_after
        return entry

    def _accept(self, good: Sequence[Submission]) -> Deferred[list[object]]:
        items = [(s.message, s.idempotency) for s in good]
        if IBatchAccept.providedBy(self._store):
            accepted: Deferred[list[object]] = self._store.accept_many(items)
            return accepted
        # A store without batches (test fakes): one accept per item, refusals as values.
        each = [
            maybeDeferred(self._store.accept, message, key).addErrback(lambda f: f.value)
            for message, key in items
        ]
        return gatherResults(each)

    def _stored(
        self,
        outcomes: list[object],
        request: Any,
        results: list[Submission | ComposeError],
        good: list[Submission],
        limited: dict[int, dict[str, Any]],
    ) -> bytes:
        by_submission = dict(zip(map(id, good), outcomes, strict=True))
        if self._count_accepted is not None:
            accepted = sum(isinstance(outcome, Accepted) for outcome in outcomes)
            self._count_accepted(self._clock.seconds(), accepted)
        answer: list[dict[str, Any]] = []
        for index, result in enumerate(results):
            if index in limited:
                answer.append(limited[index])
            elif isinstance(result, ComposeError):
                answer.append(_error(result.http_status, result.code, result.message))
            else:
                answer.append(_item(by_submission[id(result)], result))
        return write_json(request, 200, {"results": answer})

    def _failed(self, failure: Failure, request: Any, identity: ClientIdentity) -> bytes:
        request.setHeader(b"Retry-After", str(RETRY_AFTER).encode("ascii"))
        if failure.check(StoreUnavailableError):
            _log.warn(
                "store unavailable, refused a batch from {client}: {reason}",
                client=identity.name,
                reason=str(failure.value),
            )
        else:
            _log.failure("storing a batch failed", failure, client=identity.name)
        return write_error(
            request, 503, "QUEUE_UNAVAILABLE", "the queue is unavailable; retry later"
        )


class SendRoutes(Resource):
    """``send`` itself (a single message) and ``send/batch`` below it."""

    def __init__(self, send: Resource, batch: Resource) -> None:
        super().__init__()
        self._send = send
        self._batch = batch

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"batch":
            return self._batch
        if path == b"":
            return self._send
        return NotFound()

    def render(self, request: Any) -> Any:
        return self._send.render(request)
