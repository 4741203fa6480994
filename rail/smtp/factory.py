"""Factories that give each SMTP connection its protocol and a fresh session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory

from rail.refusals import Refusals
from rail.smtp.budget import DataBudget
from rail.smtp.server import RailESMTP, SMTPLimits
from rail.smtp.session import Session

__all__ = ["SMTPServerFactory"]


class SMTPServerFactory(ServerFactory):
    """Builds :class:`RailESMTP` protocols; ``new_session`` makes the per-connection
    :class:`~rail.smtp.session.Session` (submission or inbound). ``budget`` is shared by
    every SMTP listener (DATA memory); ``refusals`` counts what the bounds refuse, under
    the listener's ``name``."""

    noisy = False

    def __init__(
        self,
        new_session: Callable[[], Session],
        *,
        hostname: str,
        limits: SMTPLimits,
        clock: IReactorTime,
        starttls: Any = None,
        budget: DataBudget | None = None,
        refusals: Refusals | None = None,
        name: str = "smtp",
    ) -> None:
        self._new_session = new_session
        self._hostname = hostname
        self._limits = limits
        self._clock = clock
        self._starttls = starttls
        self._budget = budget
        self._refusals = refusals
        self._name = name

    def buildProtocol(self, addr: Any) -> Protocol:
        protocol = RailESMTP(
            self._new_session(),
            hostname=self._hostname,
            limits=self._limits,
            clock=self._clock,
            starttls=self._starttls,
            budget=self._budget,
            refusals=self._refusals,
            listener=self._name,
        )
        protocol.factory = self
        return protocol
