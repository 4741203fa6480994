"""How the reporter finds and reaches report addresses: the ``_smtp._tls`` TXT look-up
through Rail's resolver, and the HTTPS POST through the webhooks' SSRF-safe client.

A recipient domain's record chooses the ``https:`` address, so the POST obeys the rule
webhooks obey (:class:`rail.webhooks.client.WebhookClient`): the host is resolved once,
every address must be globally routable unless ``tlsrpt.allow_private`` (tests), and the
connection goes to the checked address (no second resolution: no DNS rebinding). The
receiver's certificate is verified against the system trust store plus
``delivery.mta_sts.ca_file`` (the same anchors as MTA-STS policy hosts), no redirect is
followed, the POST is bounded by ``timeout`` seconds, and at most :data:`MAX_RESPONSE`
bytes of the answer are read and thrown away: only the status counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolver
from twisted.names import dns
from twisted.names.error import DNSNameError

from rail.tlsrpt.record import parse_tlsrpt_records
from rail.tlsrpt.sender import TemporaryLookupError
from rail.webhooks.client import Resolve, WebhookClient, system_resolver, webhook_trust
from rail.webhooks.outcome import Answered, Refused

__all__ = ["MAX_RESPONSE", "POST_TIMEOUT", "ReportRefusedError", "https_poster", "rua_lookup"]

POST_TIMEOUT = 60.0
"""Seconds one report POST may take, connection included."""
MAX_RESPONSE = 64 * 1024
"""Bytes of a receiver's answer read (and discarded)."""

_TIMEOUT: Sequence[int] = (1, 3, 5)
CONTENT_TYPE = "application/tlsrpt+gzip"
USER_AGENT = "Rail-TLSRPT/1"


def rua_lookup(resolver: IResolver) -> Any:
    """``lookup(domain)``: the report URIs of ``domain``'s ``_smtp._tls`` record; ``()``
    when the name does not exist or asks for nothing; :class:`TemporaryLookupError` for
    any other failure."""

    async def lookup(domain: str) -> tuple[str, ...]:
        name = f"_smtp._tls.{domain}"
        try:
            result: Any = await resolver.lookupText(name, _TIMEOUT)
        except DNSNameError:
            return ()
        except Exception as error:
            raise TemporaryLookupError(type(error).__name__) from error
        answers = result[0]
        texts = [
            b"".join(rr.payload.data).decode("utf-8", "replace")
            for rr in answers
            if rr.type == dns.TXT and rr.name.name.decode("ascii", "replace").lower() == name
        ]
        return parse_tlsrpt_records(texts)

    return lambda domain: Deferred.fromCoroutine(lookup(domain))


class ReportRefusedError(Exception):
    """The report address was not POSTed to: not allowed, or not reachable."""


def https_poster(
    reactor: Any,
    ca_file: Path | None,
    *,
    allow_private: bool,
    timeout: float = POST_TIMEOUT,
    resolve: Resolve | None = None,
) -> Any:
    """``post(url, body)``: POST the gzip report, fire with the HTTP status; fail with
    :class:`ReportRefusedError` when the address is refused or unreachable."""
    client = WebhookClient(
        reactor,
        resolve=resolve if resolve is not None else system_resolver(reactor),
        allow_private=allow_private,
        allow_http_loopback=False,
        trust=webhook_trust(ca_file),
        connect_timeout=timeout,
        max_body=MAX_RESPONSE,
        content_type=CONTENT_TYPE,
        user_agent=USER_AGENT,
    )

    async def post(url: str, body: bytes) -> int:
        posting = client.post(url, {}, body)
        posting.addTimeout(timeout, reactor)
        attempt = await posting
        if isinstance(attempt, Answered):
            return attempt.code
        if isinstance(attempt, Refused):
            setting = "" if allow_private else " (tlsrpt.allow_private is false)"
            raise ReportRefusedError(f"{attempt.reason}{setting}")
        raise ReportRefusedError(attempt.reason)

    return lambda url, body: Deferred.fromCoroutine(post(url, body))
