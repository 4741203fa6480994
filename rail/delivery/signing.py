"""DKIM-signs each message as it leaves, for the domain of its From address.

Forwarded mail (:mod:`rail.forward`) is the exception: its From is someone else's, so it
is signed for the *forwarding domain* named by its ``client`` value instead (the alias's
domain; its original signatures stay in the message, untouched).

Signing happens per attempt, over the stored bytes, with the key generation that was active
when the message was accepted (so ``rail dkim rotate`` never strands queued mail). A domain
with no keys yet (a certificate issued for a new domain since start-up) gets them on first
use. A message whose From has no usable domain goes out unsigned, logged: refusing it here
would turn a harmless oddity into a bounce.

:meth:`Signer.prepare` runs in a worker thread (:mod:`rail.delivery.preparing`), never on
the reactor: signing costs CPU in proportion to the message, and creating keys costs RSA
generation and fsyncs. Its log lines are handed to the reactor thread (``on_reactor``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.dkim.sign import from_domain, sign
from rail.forward.clients import forwarding_domain
from rail.store.model import DeliveryJob

__all__ = ["Signer"]

_log = Logger()


def _now(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    call(*args, **kwargs)


class Signer:
    """``on_reactor(f, *args, **kwargs)`` runs ``f`` on the reactor thread:
    ``reactor.callFromThread`` when :meth:`prepare` runs in a thread; by default ``f`` is
    called at once (tests that prepare inline)."""

    def __init__(
        self,
        keys: KeyStore,
        clock: IReactorTime,
        on_reactor: Callable[..., Any] = _now,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._on_reactor = on_reactor

    def prepare(self, job: DeliveryJob) -> bytes:
        """The bytes to send for ``job``: its DKIM-Signature fields, then the message."""
        log = self._on_reactor
        domain = forwarding_domain(job.client) or from_domain(job.data)
        if domain is None:
            log(
                _log.warn,
                "message {msg_id} has no From domain: sent unsigned",
                msg_id=job.message_id,
            )
            return job.data
        now = self._clock.seconds()
        keys = self._keys.signing_keys(domain, job.received_at)
        if keys is None:
            try:
                self._keys.ensure([domain], now)
            except (DKIMKeyError, OSError) as error:
                log(
                    _log.error,
                    "cannot create DKIM keys for {domain}: {error}",
                    domain=domain,
                    error=str(error),
                )
                return job.data
            log(_log.info, "created DKIM keys for {domain}", domain=domain)
            keys = self._keys.signing_keys(domain, job.received_at)
            if keys is None:
                return job.data
        return sign(job.data, keys, now) + job.data
