"""``POST /api/v1/send/batch``: many send requests in one body, each composed on its own.

The body is ``{"messages": [...]}`` with 1 to :data:`MAX_BATCH_ITEMS` send objects, each
exactly what ``POST /api/v1/send`` takes. :func:`compose_batch` decides every item (its
message or its error, in order) so the store can make all the good ones durable in one
transaction. Two items with the same ``request_id`` cannot both be meant: the later one is
refused with :data:`DUPLICATE_REQUEST_ID` (the first is handled as a single send would).

Pure and linear in the body: the API runs it in a thread for large bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from rail.mail.compose import Submission, compose
from rail.mail.headers import HeaderLimits
from rail.mail.request import ComposeError, _invalid, _load
from rail.policy.identity import ClientIdentity

__all__ = ["DUPLICATE_REQUEST_ID", "MAX_BATCH_ITEMS", "compose_batch"]

MAX_BATCH_ITEMS = 500
DUPLICATE_REQUEST_ID = "DUPLICATE_REQUEST_ID"


def compose_batch(
    body: bytes,
    identity: ClientIdentity,
    *,
    new_id: Callable[[], str],
    hostname: str,
    now: float,
    max_recipients: int,
    max_message_size: int,
    header_limits: HeaderLimits,
) -> list[Submission | ComposeError] | ComposeError:
    """Each item of the batch ``body`` composed (see :func:`rail.mail.compose.compose`),
    in order; or the error of the batch as a whole (not JSON, no ``messages`` list, too
    many items). ``new_id()`` gives each item's message id."""
    document = _load(body)
    if isinstance(document, ComposeError):
        return document
    unknown = sorted(set(document) - {"messages"})
    if unknown:
        return _invalid(f'unknown field {unknown[0]!r}; the body is {{"messages": [...]}}')
    items = document.get("messages")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_ITEMS:
        return _invalid(f"messages must be a list of 1 to {MAX_BATCH_ITEMS} send requests")
    results: list[Submission | ComposeError] = []
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            results.append(_invalid(f"messages[{index}] must be a send request object"))
            continue
        composed = compose(
            json.dumps(item, ensure_ascii=False).encode("utf-8"),
            None,
            identity,
            message_id=new_id(),
            hostname=hostname,
            now=now,
            max_recipients=max_recipients,
            max_message_size=max_message_size,
            header_limits=header_limits,
        )
        if isinstance(composed, Submission) and composed.idempotency is not None:
            key = composed.idempotency.key
            if key in first:
                composed = ComposeError(
                    DUPLICATE_REQUEST_ID,
                    400,
                    f"request_id {key!r} is also used by messages[{first[key]}] of this batch",
                )
            else:
                first[key] = index
        results.append(composed)
    return results
