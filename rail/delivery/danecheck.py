"""The DANE check plugged into the client's TLS verification (``TLSContexts(dane_check=)``).

:class:`rail.delivery.tlsverify.PeerCheck` calls it from OpenSSL's verify callback at the
server's certificate (depth 0), for a session whose requirement is ``dane``: the chain the
server presented is judged by :func:`rail.delivery.dane.check_chain` against the host's
TLSA records, DANE-TA against the requirement's reference names (the MX host name, also
sent as SNI). OpenSSL's own verdict on the chain (the system trust store) is not asked:
for DANE the DNS is the trust store. A failure refuses the handshake, so no byte of mail
goes to the server, and the reply says why (``451 4.7.5 DANE for ...``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from OpenSSL import SSL

from rail.delivery.dane import TLSARecord, check_chain
from rail.delivery.tlspolicy import TLSRequirement
from rail.delivery.tlsverify import DANECheck, Verdict

__all__ = ["dane_check"]


def dane_check(now: Callable[[], float]) -> DANECheck:
    """The check, with ``now()`` (POSIX seconds) the time for DANE-TA validity."""

    def check(connection: SSL.Connection, requirement: TLSRequirement, host: str) -> Verdict | None:
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
        records = [r for r in requirement.tlsa if isinstance(r, TLSARecord)]
        when = datetime.datetime.fromtimestamp(now(), datetime.UTC)
        verdict = check_chain(records, chain, requirement.names_for(host), when)
        if verdict.ok:
            return None
        return Verdict(verdict.result or "tlsa-invalid", verdict.reason)

    return check
