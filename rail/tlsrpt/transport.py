"""How the reporter finds and reaches report addresses: the ``_smtp._tls`` TXT look-up
through Rail's resolver, and the HTTPS POST with treq.

The POST verifies the receiver's certificate against the system trust store plus
``delivery.mta_sts.ca_file`` (the same anchors as MTA-STS policy hosts, through
:meth:`rail.delivery.tlsverify.TLSContexts.https`), follows no redirect, is bounded by
``timeout`` seconds, and reads at most :data:`MAX_RESPONSE` bytes of the answer, which
it throws away: only the status counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import treq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolver
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from rail.delivery.tlsverify import TLSContexts
from rail.tlsrpt.record import parse_tlsrpt_records
from rail.tlsrpt.sender import TemporaryLookupError

__all__ = ["MAX_RESPONSE", "POST_TIMEOUT", "https_poster", "rua_lookup"]

POST_TIMEOUT = 60.0
"""Seconds one report POST may take, connection included."""
MAX_RESPONSE = 64 * 1024
"""Bytes of a receiver's answer read (and discarded)."""

_TIMEOUT: Sequence[int] = (1, 3, 5)
_HEADERS = Headers({b"Content-Type": [b"application/tlsrpt+gzip"]})


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


@implementer(IPolicyForHTTPS)
class _Verified:
    def __init__(self, contexts: TLSContexts) -> None:
        self._contexts = contexts

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return self._contexts.https(hostname.decode("ascii"))


def https_poster(reactor: Any, contexts: TLSContexts, timeout: float = POST_TIMEOUT) -> Any:
    """``post(url, body)``: POST the gzip report, fire with the HTTP status."""
    client = treq.client.HTTPClient(
        Agent(reactor, contextFactory=_Verified(contexts), connectTimeout=timeout)
    )

    async def post(url: str, body: bytes) -> int:
        response = await client.post(
            url,
            data=body,
            headers=_HEADERS,
            allow_redirects=False,
            timeout=timeout,
        )
        seen = [0]

        def collect(data: bytes) -> None:
            seen[0] += len(data)
            if seen[0] > MAX_RESPONSE:
                raise ValueError("response too large")  # treq drops the connection

        with contextlib.suppress(Exception):  # only the status counts; a long answer is cut
            await treq.collect(response, collect)
        code: int = response.code
        return code

    return lambda url, body: Deferred.fromCoroutine(post(url, body))
