"""Tests for :mod:`rail.delivery.publicaddress`: the one SSRF rule of webhooks, MTA-STS
policy hosts and TLS-RPT report addresses (the address categories themselves are pinned
by tests/webhooks/test_pure.py)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.publicaddress import addresses_problem
from rail.webhooks import addresses as webhook_addresses


class AddressesProblemTests(SynchronousTestCase):
    def test_every_address_checked(self) -> None:
        """One internal address among public ones is enough to refuse the host, and the
        refusal names it and the setting that would allow it."""
        problem = addresses_problem(
            ["93.184.216.34", "2606:2800:220:1::1", "fd00::1"],
            allow_private=False,
            setting="x.allow_private",
        )
        self.assertEqual(
            problem, "address not allowed: fd00::1 is private (x.allow_private is false)"
        )
        self.assertIsNone(
            addresses_problem(["93.184.216.34"], allow_private=False, setting="x.allow_private")
        )

    def test_allow_private_and_no_address(self) -> None:
        """allow_private lets internal addresses through; a host without any address is
        refused either way."""
        self.assertIsNone(addresses_problem(["127.0.0.1"], allow_private=True, setting="x"))
        self.assertEqual(
            addresses_problem([], allow_private=True, setting="x"),
            "address not allowed: the host has no address",
        )

    def test_webhooks_use_the_same_rule(self) -> None:
        """The webhooks' address check is this module's, not a second copy."""
        from rail.delivery import publicaddress

        self.assertIs(webhook_addresses.address_problem, publicaddress.address_problem)
