"""Opening an SMTP session to one address of a remote host, under its TLS requirement.

The :class:`~rail.delivery.tlspolicy.TLSRequirement` says what TLS must achieve. Every
TLS session sends SNI (the host name) and refuses renegotiation
(:mod:`rail.delivery.tlsverify`):

- ``opportunistic`` (RFC 7435): STARTTLS whenever offered, without certificate
  verification, because refusing an unverifiable certificate would only push the mail
  into plaintext. A failed handshake is retried once, in plaintext, on a new connection;
  the session's ``tls_active`` then says TLS was not used.
- ``sts-testing``: as opportunistic, but the certificate is verified against the MX name
  and a failure is reported (a :class:`~rail.delivery.tlsreport.TLSOutcome`) and logged.
- ``sts-enforce``, ``dane``, ``smarthost-required``: TLS is required and verified; a
  server without STARTTLS or a certificate that fails is a temporary failure (``451
  4.7.4``/``4.7.5``) naming the policy, and there is never a plaintext retry.
  ``implicit`` (a relay's port 465) starts TLS before the greeting.

With ``credentials`` the session logs in (:mod:`rail.delivery.smtpauth`) once TLS is up.
Each attempt's TLS outcome goes to ``outcomes`` (for TLS-RPT). Addresses are literals:
name resolution, MX order and MTA-STS host filtering are the caller's.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import ConnectError, ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rail.delivery.client import ClientTimeouts, SMTPClientProtocol
from rail.delivery.outcome import Reply, SessionError
from rail.delivery.smtpauth import Credentials, authenticate
from rail.delivery.tlspolicy import OPPORTUNISTIC, TLSRequirement
from rail.delivery.tlsreport import DISCARD, TLSOutcomeSink, outcome_for
from rail.delivery.tlsverify import PeerCheck, TLSContexts

__all__ = ["open_session"]

_log = Logger()

_DEFAULT_CONTEXTS: list[TLSContexts] = []


def _default_contexts() -> TLSContexts:
    """Contexts with the system's roots, built on first use (tests and tools; the
    service builds its own at start)."""
    if not _DEFAULT_CONTEXTS:
        _DEFAULT_CONTEXTS.append(TLSContexts())
    return _DEFAULT_CONTEXTS[0]


def _what(requirement: TLSRequirement) -> str:
    """The policy named in a failure's text."""
    domain = requirement.policy_domain
    if requirement.mode in ("sts-enforce", "sts-testing"):
        return f"MTA-STS policy of {domain} ({requirement.mode[4:]})"
    if requirement.mode == "dane":
        return f"DANE for {domain}"
    return "smarthost TLS"


async def open_session(
    reactor: Any,
    host: str,
    port: int,
    *,
    helo_name: str,
    clock: IReactorTime,
    timeouts: ClientTimeouts,
    connect_timeout: float,
    requirement: TLSRequirement | None = OPPORTUNISTIC,
    server_name: str | None = None,
    contexts: TLSContexts | None = None,
    outcomes: TLSOutcomeSink = DISCARD,
    credentials: Credentials | None = None,
) -> SMTPClientProtocol:
    """Connect to ``host`` (an IPv4 or IPv6 literal) and return a ready session.

    ``server_name`` is the MX or relay host name (SNI, verification, reports); without
    it the address is used and no SNI is sent. ``requirement`` None never starts TLS
    (tests). Fails with :class:`SessionError`: a local ``451 4.4.1`` when nothing answers
    or the connection is refused, the server's own reply when it refuses the session,
    ``451 4.7.x`` when required TLS, verification or login does not work.
    """
    name = server_name or host
    contexts = contexts or (_default_contexts() if requirement is not None else None)

    async def attempt(check: PeerCheck | None) -> SMTPClientProtocol:
        implicit = check is not None and check.requirement.implicit
        protocol = SMTPClientProtocol(
            helo_name,
            clock,
            None if implicit else check,
            timeouts,
            require_tls=check is not None and check.requirement.tls_required and not implicit,
        )
        endpoint = _endpoint(reactor, host, port, connect_timeout)
        if check is not None and implicit:
            endpoint = wrapClientTLS(check, endpoint)
        try:
            await connectProtocol(endpoint, protocol)
        except ConnectError as error:
            raise SessionError(_connect_failure(host, port, connect_timeout, error)) from error
        return await protocol.ready

    if requirement is None:
        return await attempt(None)
    assert contexts is not None
    check = contexts.check(requirement, name)
    try:
        session = await attempt(check)
    except SessionError as error:
        failure = _tls_failure(requirement, check, error, name)
        if failure is None:
            raise
        result, reason, reply = failure
        outcomes.record(outcome_for(requirement, name, host, result, reason))
        if not requirement.plaintext_fallback:
            # The reply names the failure; the scheduler logs it once ("cannot deliver
            # through ..."), so a verification failure is one line, never a traceback.
            raise SessionError(reply, tls_failed=True) from None
        _log.info(
            "STARTTLS with {peer} failed ({reason}); retrying in plaintext",
            peer=f"{name} ({host}:{port})",
            reason=reason,
        )
        return await attempt(None)
    if requirement.tls_required and not (session.tls_active and check.verified):
        # Cannot happen (the handshake is refused first); checked so that no path can
        # carry mail over TLS that a policy required and nobody verified.
        session.abort()
        raise SessionError(_reply("4.7.5", f"{_what(requirement)}: {name}: TLS not verified"))
    _report(requirement, check, session, name, host, outcomes)
    if credentials is not None:
        try:
            await authenticate(session, credentials, name)
        except SessionError as error:
            _log.info("cannot log in to {mx}: {reply}", mx=name, reply=str(error.reply))
            session.abort()
            raise
    return session


def _tls_failure(
    requirement: TLSRequirement, check: PeerCheck, error: SessionError, name: str
) -> tuple[str, str, Reply] | None:
    """The TLS-RPT result, reason and reply when ``error`` is a TLS failure, else None."""
    if check.verdict is not None:
        result, reason = check.verdict.result, check.verdict.reason
        return result, reason, _reply("4.7.5", f"{_what(requirement)}: {name}: {reason}")
    lost_in_handshake = requirement.implicit and error.reply.enhanced == "4.4.2"
    if error.tls_failed or lost_in_handshake:
        reason = error.reply.text
        return "validation-failure", reason, _reply("4.7.5", f"{_what(requirement)}: {reason}")
    if error.reply.enhanced == "4.7.4" and not error.reply.remote:
        reason = f"{name} does not offer STARTTLS"
        return "starttls-not-supported", reason, _reply("4.7.4", f"{_what(requirement)}: {reason}")
    return None


def _reply(enhanced: str, text: str) -> Reply:
    return Reply(451, enhanced, text[:300], remote=False)


def _report(
    requirement: TLSRequirement,
    check: PeerCheck,
    session: SMTPClientProtocol,
    name: str,
    address: str,
    outcomes: TLSOutcomeSink,
) -> None:
    """Report a session that opened: TLS verified (or not needed), not offered, or
    (``sts-testing``) offered with a certificate that failed, or to an unlisted host."""
    if not session.tls_active:
        result, reason = "starttls-not-supported", f"{name} does not offer STARTTLS"
    elif check.verdict is not None:
        result, reason = check.verdict.result, check.verdict.reason
    elif not requirement.matches(name):  # sts-testing: enforce drops such hosts earlier
        result, reason = "validation-failure", f"MX host {name} is not listed in the policy"
    else:
        outcomes.record(outcome_for(requirement, name, address))
        return
    outcomes.record(outcome_for(requirement, name, address, result, reason))
    if requirement.mode == "sts-testing":
        _log.info(
            "{policy}: {mx} ({address}): {reason}; delivering anyway (testing mode)",
            policy=_what(requirement),
            mx=name,
            address=address,
            reason=reason,
        )


def _endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    if ipaddress.ip_address(host).version == 6:
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)


def _connect_failure(host: str, port: int, timeout: float, error: ConnectError) -> Reply:
    peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(error, ConnectionRefusedError):
        text = f"connection refused by {peer}"
    elif isinstance(error, TimeoutError):
        text = f"no answer from {peer} within {timeout:g}s"
    else:
        text = f"cannot connect to {peer}: {error}"
    return Reply(451, "4.4.1", text, remote=False)
