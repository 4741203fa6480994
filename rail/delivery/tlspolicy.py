"""The TLS requirement the SMTP client obeys for one destination, and how it is chosen.

Pure. Routing decides a :class:`TLSRequirement` per host it may connect to, from the
recipient domain's MTA-STS policy (RFC 8461), a DANE result for the host (RFC 7672) and
the configuration; :mod:`rail.delivery.connect` then opens the session as it says and
:mod:`rail.delivery.tlsreport` hears how it went. Precedence (RFC 8461 §2): usable
DNSSEC-validated TLSA records for the host make it ``dane``, whatever MTA-STS says; else an
``enforce`` or ``testing`` policy applies; else TLS is opportunistic (RFC 7435).

=====================  ===========  ============  =========================  ============
mode                   TLS          verification  names checked              on failure
=====================  ===========  ============  =========================  ============
``opportunistic``      if offered   none          (SNI only)                 plaintext
``sts-testing``        if offered   web PKI       the MX host name           delivered, reported
``sts-enforce``        required     web PKI       the MX host name           deferred, reported
``dane``               required     TLSA          the DANE code's names      deferred, reported
``smarthost-required`` required     web PKI       the smarthost name         deferred
=====================  ===========  ============  =========================  ============

In every mode with TLS the client sends SNI (the host name) and refuses renegotiation.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from rail.delivery.stspolicy import STSPolicy, mx_matches

__all__ = [
    "OPPORTUNISTIC",
    "DANEResult",
    "PolicyType",
    "TLSMode",
    "TLSRequirement",
    "choose_requirement",
    "smarthost_requirement",
]

TLSMode = Literal["opportunistic", "sts-enforce", "sts-testing", "dane", "smarthost-required"]
PolicyType = Literal["sts", "tlsa", "no-policy-found"]
"""RFC 8460 §4.4 ``policy-type`` values."""

_REQUIRED: frozenset[str] = frozenset({"sts-enforce", "dane", "smarthost-required"})
_WEBPKI: frozenset[str] = frozenset({"sts-enforce", "sts-testing", "smarthost-required"})


@attrs.frozen(kw_only=True)
class TLSRequirement:
    """How to secure sessions to one destination, and for whom to report the outcome."""

    mode: TLSMode = "opportunistic"
    mx_patterns: tuple[str, ...] = ()
    """MTA-STS ``mx`` patterns; in ``sts-enforce`` mode only matching hosts are used."""
    verify_names: tuple[str, ...] = ()
    """Reference identifiers the certificate must match; empty: the host's own name
    (the MX name for MTA-STS, RFC 8461 §4.2)."""
    tlsa: tuple[Any, ...] = ()
    """TLSA records for ``dane`` mode, opaque here (the DANE code's own values)."""
    policy_domain: str | None = None
    """The recipient domain whose policy this is (TLS-RPT's ``policy-domain``)."""
    policy_id: str | None = None
    """The MTA-STS ``id`` of the policy applied, if any."""
    policy_strings: tuple[str, ...] = ()
    """The policy as TLS-RPT reports it (``policy-string``)."""
    ca_file: str | None = None
    """PEM file of trust anchors for web-PKI verification; None: the system trust store."""
    implicit: bool = False
    """TLS from the first byte (a smarthost's port 465), not STARTTLS."""

    @property
    def tls_required(self) -> bool:
        """Whether a session without working TLS must not carry mail."""
        return self.mode in _REQUIRED

    @property
    def webpki(self) -> bool:
        """Whether the certificate is checked against trust anchors and host names."""
        return self.mode in _WEBPKI

    @property
    def plaintext_fallback(self) -> bool:
        """Whether a failed STARTTLS handshake may be retried without TLS."""
        return self.mode in ("opportunistic", "sts-testing")

    @property
    def policy_type(self) -> PolicyType:
        """The TLS-RPT policy type the outcome of a session is reported under."""
        if self.mode in ("sts-enforce", "sts-testing"):
            return "sts"
        if self.mode == "dane":
            return "tlsa"
        return "no-policy-found"

    def matches(self, host: str) -> bool:
        """Whether ``host`` matches an ``mx`` pattern (always, without patterns)."""
        return not self.mx_patterns or any(mx_matches(p, host) for p in self.mx_patterns)

    def allows(self, host: str) -> bool:
        """Whether Rail may deliver to MX ``host`` at all: only an ``sts-enforce``
        requirement excludes hosts (``sts-testing`` reports the mismatch instead)."""
        return self.mode != "sts-enforce" or self.matches(host)

    def names_for(self, host: str) -> tuple[str, ...]:
        """The names the certificate of ``host`` is verified against."""
        return self.verify_names or (host.lower().rstrip("."),)


OPPORTUNISTIC = TLSRequirement()
"""No policy: STARTTLS if offered, unverified, SNI sent."""


@attrs.frozen(kw_only=True)
class DANEResult:
    """What DNSSEC-validated TLSA lookups found for one MX host (made by the DANE code)."""

    tlsa: tuple[Any, ...] = ()
    """The host's DNSSEC-validated TLSA records; empty: DANE does not apply to this host.
    A set with no usable record still requires TLS, unauthenticated (RFC 7672 §2.2)."""
    names: tuple[str, ...] = ()
    """Reference identifiers for DANE-TA(2) records (RFC 7672 §3.2.2); empty: the host."""
    policy_strings: tuple[str, ...] = ()
    """The TLSA records in presentation form, for TLS-RPT."""


def choose_requirement(
    domain: str,
    host: str | None = None,
    *,
    sts: STSPolicy | None,
    sts_id: str | None = None,
    dane: DANEResult | None = None,
    ca_file: str | None = None,
) -> TLSRequirement:
    """The requirement for delivering ``domain``'s mail to MX ``host``.

    ``sts`` is the domain's current MTA-STS policy (None: none, or none usable), ``dane``
    the TLSA result for ``host`` (None: DANE is off or found nothing). DANE with usable
    records wins (RFC 8461 §2); a ``none``-mode policy is no policy. ``host`` may be
    omitted for the domain-wide decision (no DANE).
    """
    domain = domain.lower().rstrip(".")
    if dane is not None and dane.tlsa:
        return TLSRequirement(
            mode="dane",
            verify_names=dane.names,
            tlsa=dane.tlsa,
            policy_domain=domain,
            policy_strings=dane.policy_strings,
        )
    if sts is None or sts.mode == "none":
        return attrs.evolve(OPPORTUNISTIC, policy_domain=domain)
    return TLSRequirement(
        mode="sts-enforce" if sts.mode == "enforce" else "sts-testing",
        mx_patterns=sts.mx,
        policy_domain=domain,
        policy_id=sts_id,
        policy_strings=sts.policy_strings(),
        ca_file=ca_file,
    )


def smarthost_requirement(
    host: str,
    tls: Literal["required", "implicit", "opportunistic"],
    ca_file: str | None = None,
) -> TLSRequirement:
    """The requirement for a smarthost: ``required`` (STARTTLS) and ``implicit`` (port
    465) verify the relay's certificate against ``host``; ``opportunistic`` is as for MX
    hosts."""
    if tls == "opportunistic":
        return OPPORTUNISTIC
    return TLSRequirement(
        mode="smarthost-required",
        verify_names=(host.lower().rstrip("."),),
        ca_file=ca_file,
        implicit=tls == "implicit",
    )
