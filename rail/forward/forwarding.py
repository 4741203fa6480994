"""What port 25 asks of forwarding: SRS bounce addresses at RCPT, the per-route rate
limits, and the outbound copies (sealed in a thread) spooled with the inbound message.

Glue: :meth:`Forwarding.copies` runs the ARC sealing (RSA signatures, DKIM keys created
on first use: CPU and file work) in a thread pool, never on the reactor; the rest is
cheap in-memory work. The session (:mod:`rail.smtp.inbound`) calls :meth:`rcpt` first
for every recipient (one line), :meth:`over_limit` for a forwarding route, and
:meth:`copies` after the authentication checks have let the message through (mail that
failed SPF or DMARC under a reject policy was refused before: it is never forwarded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.dkim.names import a_label
from rail.forward.copies import (
    ForwardRequest,
    Received,
    SealKey,
    arc_set,
    forwarded_copy,
    returned_bounce,
)
from rail.forward.limits import ForwardLimits
from rail.forward.srs import SRS, SRSError, is_srs
from rail.inbound.recipients import RecipientTable, Route
from rail.policy.verdict import Reject
from rail.refusals import Refusals
from rail.store.ids import new_message_id
from rail.store.model import NewMessage

__all__ = ["BAD_SRS", "FORWARD_LIMITED", "Forwarding", "Return"]

_log = Logger()

BAD_SRS = Reject(550, "5.1.1", "User unknown")
"""A bounce to an SRS address whose hash or age is wrong: dropped (forged, or too old)."""
FORWARD_LIMITED = Reject(451, "4.7.0", "Too much mail for this address; try again later")


@attrs.frozen
class Return:
    """Mail to ``address``, a valid SRS address of ``domain``, goes back to ``original``."""

    address: str
    original: str
    domain: str


class Forwarding:
    """One per server. ``clock`` gives the time (SRS ages, rate windows, message ids);
    ``in_thread(f, *args)`` runs ``f`` off the reactor and returns a Deferred of its
    result; ``on_reactor(f, *args, **kwargs)`` runs ``f`` on the reactor thread (log
    lines from the sealing thread; by default at once, for tests that seal inline)."""

    def __init__(
        self,
        *,
        srs: SRS,
        keys: KeyStore,
        clock: Any,
        authserv_id: str,
        in_thread: Callable[..., Deferred[Any]],
        refusals: Refusals | None = None,
        on_reactor: Callable[..., Any] | None = None,
    ) -> None:
        self._on_reactor = on_reactor or (lambda f, *a, **k: f(*a, **k))
        self._srs = srs
        self._keys = keys
        self._clock = clock
        self._authserv_id = authserv_id
        self._in_thread = in_thread
        self._refusals = refusals
        self._limits = ForwardLimits()
        self._pems: dict[tuple[str, str], bytes] = {}

    @classmethod
    def in_pool(cls, reactor: Any, **kwargs: Any) -> Forwarding:
        """A Forwarding that seals in ``reactor``'s thread pool."""

        def in_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

        return cls(clock=reactor, in_thread=in_thread, on_reactor=reactor.callFromThread, **kwargs)

    # -- RCPT --------------------------------------------------------------------------

    def rcpt(self, table: RecipientTable, recipient: str, peer: str) -> Return | Reject | None:
        """``None`` when ``recipient`` is not an SRS address of a local domain (route it
        as usual); a :class:`Return` when it is a valid one; :data:`BAD_SRS`, logged,
        when its hash or age is bad."""
        local, at, raw_domain = recipient.rpartition("@")
        if not at or not is_srs(local):
            return None
        domain = a_label(raw_domain)
        if domain is None or domain not in table.local_domains:
            return None
        try:
            original = self._srs.reverse(recipient, self._clock.seconds())
        except SRSError as error:
            _log.info(
                "srs bounce dropped rcpt={rcpt} peer={peer} reason={reason}",
                rcpt=recipient,
                peer=peer,
                reason=str(error),
            )
            if self._refusals is not None:
                self._refusals.refuse("inbound", "srs_invalid", peer)
            return BAD_SRS
        return Return(recipient, original, domain)

    def over_limit(self, table: RecipientTable, route: Route, peer: str) -> Reject | None:
        """:data:`FORWARD_LIMITED`, logged and counted, when ``route`` has forwarded as
        much as its limits allow for now."""
        if route.index is None or route.index >= len(table.routes):
            return None
        config = table.routes[route.index]
        if self._limits.allows(route.index, config, self._clock.seconds()):
            return None
        _log.info(
            "forward rate limit route={route} match={match} peer={peer} code=451",
            route=route.index,
            match=config.match,
            peer=peer,
        )
        if self._refusals is not None:
            self._refusals.refuse("inbound", "forward_rate", peer)
        return FORWARD_LIMITED

    def counted(self, table: RecipientTable, requests: Sequence[ForwardRequest]) -> None:
        """The message forwarded by ``requests`` was accepted: count it once per route."""
        now = self._clock.seconds()
        for index in dict.fromkeys(r.index for r in requests):
            if index < len(table.routes):
                self._limits.count(index, table.routes[index], now)

    # -- DATA --------------------------------------------------------------------------

    def copies(
        self,
        message: Received,
        requests: Sequence[ForwardRequest],
        returns: Sequence[Return],
    ) -> Deferred[tuple[NewMessage, ...]]:
        """In a thread: the outbound messages for ``requests`` (sealed, SRS sender) and
        ``returns`` (null sender). A target several aliases forward to gets one copy."""
        return self._in_thread(self._make, message, tuple(requests), tuple(returns))

    def _make(
        self,
        message: Received,
        requests: tuple[ForwardRequest, ...],
        returns: tuple[Return, ...],
    ) -> tuple[NewMessage, ...]:
        now = self._clock.seconds()
        made: list[NewMessage] = []
        seen: set[str] = set()
        for request in requests:
            targets = tuple(t for t in request.targets if t.lower() not in seen)
            seen.update(t.lower() for t in targets)
            if not targets:
                continue
            key = self._seal_key(request.domain, message.received_at)
            seal = arc_set(message, key, self._authserv_id) if key is not None else b""
            sender = self._srs.forward(message.sender, request.domain, now)
            made.append(
                forwarded_copy(
                    new_message_id(now),
                    message,
                    attrs.evolve(request, targets=targets),
                    sender,
                    seal,
                )
            )
        for returned in returns:
            made.append(
                returned_bounce(new_message_id(now), message, returned.domain, returned.original)
            )
        return tuple(made)

    def _seal_key(self, domain: str, received_at: float) -> SealKey | None:
        """The domain's RSA key (created on first use, as delivery does), or None."""
        keys = self._keys.signing_keys(domain, received_at)
        if keys is None:
            try:
                self._keys.ensure([domain], received_at)
            except (DKIMKeyError, OSError) as error:
                self._on_reactor(
                    _log.error,
                    "cannot create DKIM keys for {domain}: {error}; forwarded unsealed",
                    domain=domain,
                    error=str(error),
                )
                return None
            keys = self._keys.signing_keys(domain, received_at)
            if keys is None:
                return None
        cache_key = (keys.domain, keys.rsa_selector)
        pem = self._pems.get(cache_key)
        if pem is None:
            pem = keys.rsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            self._pems[cache_key] = pem
        return SealKey(keys.domain, keys.rsa_selector, pem)
